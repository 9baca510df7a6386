import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { invalidCiphertext, KeywardError } from '../errors.ts';
import { errorOf } from './fixtures/error-of.ts';
import { masterKeysFrom, singleMasterKey } from './master-keys.ts';
import {
  unwrapMaterial,
  WRAP_FORMAT_V1,
  WRAP_FORMAT_V2,
  type WrapBinding,
  wrapAad,
  wrapMaterial,
  wrappedMasterKeyVersion,
} from './wrap.ts';

const INVALID = invalidCiphertext('wrapped').toJSON();
const master = createSecretKey(randomBytes(32));
const binding: WrapBinding = { store: 'payments', name: 'CardKey', usage: 'AES256', version: 3 };
const material = randomBytes(32);

describe('wrapMaterial / unwrapMaterial', () => {
  it('round-trips, with a fresh nonce each time', () => {
    const a = wrapMaterial(master, binding, material);
    const b = wrapMaterial(master, binding, material);
    expect(a[0]).toBe(WRAP_FORMAT_V1);
    expect(a.length).toBe(1 + 12 + 32 + 16);
    expect(a.equals(b)).toBe(false);
    expect(unwrapMaterial(master, binding, a).equals(material)).toBe(true);
    expect(unwrapMaterial(master, binding, b).equals(material)).toBe(true);
  });

  it('binds the name case-insensitively (names are unique ignoring case)', () => {
    const blob = wrapMaterial(master, binding, material);
    expect(unwrapMaterial(master, { ...binding, name: 'cardkey' }, blob).equals(material)).toBe(true);
    expect(unwrapMaterial(master, { ...binding, name: 'CARDKEY' }, blob).equals(material)).toBe(true);
  });

  it('fails identically when moved to another store, name, usage or version, or under another master', () => {
    const blob = wrapMaterial(master, binding, material);
    const moved: WrapBinding[] = [
      { ...binding, store: 'default' },
      { ...binding, store: 'Payments' },
      { ...binding, name: 'CardKey2' },
      { ...binding, usage: 'RSA2048' },
      { ...binding, usage: 'ECDSA' },
      { ...binding, version: 2 },
      { ...binding, version: 4 },
      // Shifting bytes between fields must not give the same AAD.
      { ...binding, store: 'paymentsC', name: 'ardKey' },
    ];
    for (const b of moved) expect(errorOf(() => unwrapMaterial(master, b, blob))).toEqual(INVALID);
    expect(errorOf(() => unwrapMaterial(createSecretKey(randomBytes(32)), binding, blob))).toEqual(INVALID);
  });

  it('fails identically for every single-bit flip, truncation and a wrong format byte', () => {
    const blob = wrapMaterial(master, binding, material);
    for (let bit = 0; bit < blob.length * 8; bit++) {
      const c = Buffer.from(blob);
      c[bit >> 3]! ^= 1 << (bit & 7);
      expect(errorOf(() => unwrapMaterial(master, binding, c))).toEqual(INVALID);
    }
    for (let n = 0; n < blob.length; n++) {
      expect(errorOf(() => unwrapMaterial(master, binding, blob.subarray(0, n)))).toEqual(INVALID);
    }
  });

  it('never puts the material in the error', () => {
    const blob = wrapMaterial(master, binding, material);
    blob[blob.length - 1]! ^= 1;
    try {
      unwrapMaterial(master, binding, blob);
      expect.unreachable();
    } catch (err) {
      const text = `${(err as Error).message} ${JSON.stringify(err)}`;
      expect(text).not.toContain(material.toString('hex'));
      expect(text).not.toContain(material.toString('base64'));
    }
  });

  it('encodes the AAD with a tag and length prefixes', () => {
    const aad = wrapAad({ store: 'ns', name: 'AbC', usage: 'ECDSA', version: 258 });
    expect(aad.toString('hex')).toBe(
      Buffer.concat([
        Buffer.from('keyward wrap v1'),
        Buffer.from('00000002', 'hex'),
        Buffer.from('ns'),
        Buffer.from('00000003', 'hex'),
        Buffer.from('abc'),
        Buffer.from('00000005', 'hex'),
        Buffer.from('ECDSA'),
        Buffer.from('00000102', 'hex'),
      ]).toString('hex'),
    );
  });

  it('refuses a master key that is not 32 bytes and a malformed binding', () => {
    expect(() => wrapMaterial(createSecretKey(randomBytes(16)), binding, material)).toThrow(/master key/);
    expect(() => wrapMaterial(master, { ...binding, version: 0 }, material)).toThrow(KeywardError);
  });
});

describe('master-key versions', () => {
  const raw1 = randomBytes(32);
  const raw7 = randomBytes(32);
  const both = masterKeysFrom(
    new Map([
      [1, raw1],
      [7, raw7],
    ]),
    7,
  );
  const onlyOne = masterKeysFrom(new Map([[1, raw1]]), 1);

  it('wraps under the current version, which the blob names (format 2 for versions ≥ 2)', () => {
    const blob = wrapMaterial(both, binding, material);
    expect(blob[0]).toBe(WRAP_FORMAT_V2);
    expect(blob.readUInt32BE(1)).toBe(7);
    expect(blob.length).toBe(5 + 12 + 32 + 16);
    expect(wrappedMasterKeyVersion(blob)).toBe(7);
    expect(wrappedMasterKeyVersion(blob.toString('base64'))).toBe(7);
    expect(unwrapMaterial(both, binding, blob).equals(material)).toBe(true);
    // Without version 7 the blob cannot be opened, and the error says no more than "invalid".
    expect(errorOf(() => unwrapMaterial(onlyOne, binding, blob))).toEqual(INVALID);
  });

  it('keeps format 1 for version 1, byte-compatible with a bare KeyObject', () => {
    const key1 = createSecretKey(raw1);
    const v1 = wrapMaterial(onlyOne, binding, material);
    expect(v1[0]).toBe(WRAP_FORMAT_V1);
    expect(wrappedMasterKeyVersion(v1.toString('base64'))).toBe(1);
    expect(unwrapMaterial(key1, binding, v1).equals(material)).toBe(true);
    expect(unwrapMaterial(both, binding, wrapMaterial(key1, binding, material)).equals(material)).toBe(true);
    expect(unwrapMaterial(singleMasterKey(key1), binding, v1).equals(material)).toBe(true);
  });

  it('binds the master-key version: a header edited to name another version does not open', () => {
    const blob = wrapMaterial(both, binding, material);
    // Same key held as version 8: only the header and AAD differ.
    const renamed = masterKeysFrom(
      new Map([
        [7, raw7],
        [8, raw7],
      ]),
      8,
    );
    const edited = Buffer.from(blob);
    edited.writeUInt32BE(8, 1);
    expect(errorOf(() => unwrapMaterial(renamed, binding, edited))).toEqual(INVALID);
    expect(unwrapMaterial(renamed, binding, blob).equals(material)).toBe(true);
    expect(wrapAad(binding, 7).subarray(0, 19).toString('hex')).toBe(
      Buffer.concat([Buffer.from('keyward wrap v2'), Buffer.from('00000007', 'hex')]).toString('hex'),
    );
  });

  it('says undefined for something that is not a wrapped blob', () => {
    expect(wrappedMasterKeyVersion('')).toBeUndefined();
    expect(wrappedMasterKeyVersion(Buffer.of(9, 0, 0, 0, 1))).toBeUndefined();
    expect(wrappedMasterKeyVersion(Buffer.of(2, 0, 0, 0, 0))).toBeUndefined();
    expect(wrappedMasterKeyVersion(Buffer.of(2, 0, 0))).toBeUndefined();
  });
});
