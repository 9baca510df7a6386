import { hkdfSync } from 'node:crypto';
import { blake3, createBLAKE3 } from 'hash-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from './fingerprint.ts';
import { openssl, type Scratch, scratch } from './fixtures/openssl.ts';
import { generateMaterial } from './material.ts';

let tmp: Scratch;
beforeAll(() => {
  tmp = scratch();
});
afterAll(() => tmp.dispose());

const SHAPE = /^blake3:[0-9a-f]{32}$/;

describe('the BLAKE3 implementation (hash-wasm) itself', () => {
  it('matches the published BLAKE3 digests of "" and "abc"', async () => {
    expect(await blake3('')).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
    expect(await blake3('abc')).toBe('6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
  });
});

describe('fingerprint', () => {
  for (const usage of ['RSA2048', 'ECDSA'] as const) {
    it(`${usage}: is BLAKE3 of the SPKI DER that openssl derives from the material`, async () => {
      const material = generateMaterial(usage);
      const spki = openssl([
        'pkey',
        '-inform',
        'DER',
        '-in',
        tmp.write(`${usage}.der`, material),
        '-pubout',
        '-outform',
        'DER',
      ]);
      const expected = `blake3:${(await blake3(spki)).slice(0, 32)}`;
      const fp = await fingerprint(usage, material);
      expect(fp).toMatch(SHAPE);
      expect(fp).toBe(expected);
      expect(await fingerprint(usage, Buffer.from(material))).toBe(fp);
      expect(await fingerprint(usage, generateMaterial(usage))).not.toBe(fp);
    });
  }

  it('AES256: is the documented keyed check value, stable, distinct per key', async () => {
    const material = generateMaterial('AES256');
    const fk = Buffer.from(
      hkdfSync('sha256', material, Buffer.alloc(0), Buffer.from('keyward fingerprint v1'), 32),
    );
    const h = await createBLAKE3(256, fk);
    const expected = `blake3:${h.init().update('keyward key check value v1').digest('hex').slice(0, 32)}`;
    const fp = await fingerprint('AES256', material);
    expect(fp).toMatch(SHAPE);
    expect(fp).toBe(expected);
    expect(await fingerprint('AES256', Buffer.from(material))).toBe(fp);
    const others = new Set<string>();
    for (let i = 0; i < 50; i++) others.add(await fingerprint('AES256', generateMaterial('AES256')));
    expect(others.size).toBe(50);
    expect(others.has(fp)).toBe(false);
  });

  it('AES256: does not contain or trivially reveal the key bytes', async () => {
    const material = generateMaterial('AES256');
    const fp = await fingerprint('AES256', material);
    const hex = material.toString('hex');
    expect(fp).not.toContain(hex.slice(0, 8));
    // Not an unkeyed hash of the key, nor BLAKE3 keyed directly with the key.
    expect(fp.slice(7)).not.toBe((await blake3(material)).slice(0, 32));
    expect(fp.slice(7)).not.toBe((await blake3('keyward key check value v1', 256, material)).slice(0, 32));
    // A one-bit change of the key changes about half the output bits.
    const flipped = Buffer.from(material);
    flipped[0]! ^= 1;
    const a = BigInt(`0x${fp.slice(7)}`);
    const b = BigInt(`0x${(await fingerprint('AES256', flipped)).slice(7)}`);
    const diff = (a ^ b).toString(2).replaceAll('0', '').length;
    expect(diff).toBeGreaterThan(30);
    expect(diff).toBeLessThan(98);
  });

  it('is safe under concurrent calls sharing the one hasher', async () => {
    const materials = Array.from({ length: 8 }, () => generateMaterial('ECDSA'));
    const sequential: string[] = [];
    for (const m of materials) sequential.push(await fingerprint('ECDSA', m));
    expect(await Promise.all(materials.map((m) => fingerprint('ECDSA', m)))).toEqual(sequential);
  });

  it('refuses malformed material without echoing it', async () => {
    await expect(fingerprint('AES256', Buffer.alloc(31))).rejects.toThrow(/malformed/);
    await expect(fingerprint('ECDSA', Buffer.from('not a key'))).rejects.toThrow(/malformed/);
  });
});
