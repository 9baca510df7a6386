/**
 * A whole batch request in a worker, run here on this thread with real KeyObjects: what it asks
 * for before any crypto, and what it zeroes (the body once parsed, never before `need`).
 */
import { describe, expect, it } from 'vitest';
import { formatCiphertext } from '../crypto/format.ts';
import { generateMaterial } from '../crypto/material.ts';
import { prepareKey } from '../crypto/prepared-key.ts';
import { DerivedKeyCache, type HeldKey, NonceSource, runItem } from './ops.ts';
import { runRequest, type WireRing } from './request-runner.ts';

const ctx = { nonces: new NonceSource(), derived: new DerivedKeyCache(16) };
const v1: HeldKey = { prepared: prepareKey('AES256', generateMaterial('AES256')) };
const v2: HeldKey = { prepared: prepareKey('AES256', generateMaterial('AES256')) };
const held = new Map([
  ['id-1', v1],
  ['id-2', v2],
]);
const ring = (versions: WireRing['versions']): WireRing => ({
  usage: 'AES256',
  convergent: false,
  currentVersion: 2,
  versions,
});
const body = (value: unknown): ArrayBuffer => {
  const bytes = Buffer.from(JSON.stringify(value));
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
};
const sealedUnder = (key: HeldKey, version: number, text: string): string =>
  formatCiphertext(
    version,
    runItem('aes-seal', 'x', key, {}, Buffer.from(text), Buffer.alloc(0), Buffer.alloc(0), ctx),
  );

describe('runRequest', () => {
  it('asks for versions it does not know and keys it does not hold, before any crypto, body intact', () => {
    const request = body({
      requests: [{ ciphertext: sealedUnder(v1, 1, 'old') }, { ciphertext: sealedUnder(v2, 2, 'new') }],
    });
    const copy = Buffer.from(request);
    const first = runRequest('decrypt', ring([[2, 'id-2']]), request, (id) => held.get(id), ctx);
    expect(first).toMatchObject({ type: 'need', versions: [1], ids: [] });
    expect(Buffer.from(request)).toEqual(copy);
    const missing = runRequest(
      'decrypt',
      ring([
        [1, 'id-1'],
        [2, 'id-3'],
      ]),
      request,
      (id) => held.get(id),
      ctx,
    );
    expect(missing).toMatchObject({ type: 'need', versions: [], ids: ['id-3'] });
  });

  it('decrypts every version it was given, zeroes the body, and counts per result', () => {
    const request = body({
      requests: [
        { ciphertext: sealedUnder(v1, 1, 'old') },
        { ciphertext: sealedUnder(v2, 2, 'new') },
        { ciphertext: 'keyward:v3:AAAA' },
        { ciphertext: 'keyward:v4:AAAA' },
        { nope: 1 },
      ],
    });
    const outcome = runRequest(
      'decrypt',
      ring([
        [1, 'id-1'],
        [2, 'id-2'],
        [3, null],
        [4, { code: 'KEY_STATE', message: 'version 4 cannot be unwrapped', status: 409 }],
      ]),
      request,
      (id) => held.get(id),
      ctx,
    );
    expect(outcome.type).toBe('done');
    if (outcome.type !== 'done') return;
    expect(new Uint8Array(request).every((b) => b === 0)).toBe(true);
    expect(JSON.parse(Buffer.from(outcome.body).toString())).toEqual({
      results: [
        { plaintext: Buffer.from('old').toString('base64') },
        { plaintext: Buffer.from('new').toString('base64') },
        { error: { code: 'INVALID_ARGUMENT', message: 'ciphertext is invalid', field: 'ciphertext' } },
        { error: { code: 'KEY_STATE', message: 'version 4 cannot be unwrapped' } },
        { error: { code: 'INVALID_ARGUMENT', message: 'ciphertext is required', field: 'ciphertext' } },
      ],
    });
    expect(outcome).toMatchObject({
      items: 5,
      seals: 0,
      results: { ok: 2, INVALID_ARGUMENT: 2, KEY_STATE: 1 },
    });
  });

  it('counts the random-nonce seals it ran (encrypt and re-encrypt), and refuses a bad body whole', () => {
    const enc = runRequest(
      'encrypt',
      ring([[2, 'id-2']]),
      body({ requests: [{ plaintext: 'YQ==' }, { plaintext: '!' }] }),
      (id) => held.get(id),
      ctx,
    );
    expect(enc).toMatchObject({ type: 'done', seals: 1, results: { ok: 1, INVALID_ARGUMENT: 1 } });
    const re = runRequest(
      're-encrypt',
      ring([
        [1, 'id-1'],
        [2, 'id-2'],
      ]),
      body({ requests: [{ ciphertext: sealedUnder(v1, 1, 'x') }, { ciphertext: 'bad' }] }),
      (id) => held.get(id),
      ctx,
    );
    expect(re).toMatchObject({ type: 'done', seals: 1 });
    const bad = body({ requests: 'no' });
    expect(runRequest('encrypt', ring([[2, 'id-2']]), bad, (id) => held.get(id), ctx)).toEqual({
      type: 'error',
      error: {
        code: 'INVALID_ARGUMENT',
        message: 'requests must be an array, not string',
        field: 'requests',
        status: 400,
      },
    });
    expect(new Uint8Array(bad).every((b) => b === 0)).toBe(true);
  });
});
