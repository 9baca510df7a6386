/**
 * The audit formats against independent references: RFC 8785 (JCS) for the canonical bytes,
 * the official BLAKE3 test vectors and a second BLAKE3 implementation (@noble/hashes) for the
 * chain and the keyed MAC, and the openssl CLI for the HKDF that derives the checkpoint key.
 */
import { randomBytes } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3.js';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../engine/audit/canonical.ts';
import { ChainHasher, GENESIS_PREV, recordLine } from '../../engine/audit/chain.ts';
import { deriveCheckpointKey } from '../../engine/audit/checkpoint-key.ts';
import { fieldText, MAX_FIELD_CHARS, type RequestEvent } from '../../engine/audit/record.ts';
import { eventText } from '../../engine/audit/records.ts';
import { openssl } from '../../engine/crypto/fixtures/openssl.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('canonical bytes (RFC 8785)', () => {
  it('matches the RFC example (its string and literals)', () => {
    // RFC 8785 §3.2.3, without the floating-point numbers that audit records never hold.
    const input = JSON.parse(
      '{"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
    );
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units, at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'x'], c: true }, '\u20ac': 0, A: 2 })).toBe(
      '{"A":2,"a":{"c":true,"d":[1,"x"]},"b":1,"€":0}',
    );
  });

  it('refuses numbers that are not safe integers', () => {
    expect(() => canonicalJson({ a: 1.5 })).toThrow(/integers/);
    expect(() => canonicalJson({ a: 2 ** 60 })).toThrow(/integers/);
  });

  it('request records are written in canonical order already (the hot path does not sort)', () => {
    const full: RequestEvent = {
      type: 'request',
      requestId: 'abc-1',
      clientRequestId: 'envoy-7f3a',
      principal: { name: 'system:serviceaccount:a:b', uid: 'u-1', groups: ['g1', 'system:authenticated'] },
      source: '::ffff:10.0.0.1',
      namespace: 'team-a',
      key: 'orders\u0001\u2028"é',
      version: 3,
      operation: 'encrypt',
      outcome: 'ok',
      status: 200,
      batch: { ok: 3, failed: 1 },
      latencyUs: 1234,
    };
    const minimal: RequestEvent = {
      type: 'request',
      requestId: 'x',
      source: '',
      operation: 'list',
      outcome: 'UNAUTHENTICATED',
      status: 401,
      latencyUs: 0,
    };
    for (const e of [full, minimal]) {
      const text = eventText(e, { chain: 'c/1', seq: 7, time: '2026-01-01T00:00:00.000Z' });
      expect(text).toBe(canonicalJson(JSON.parse(text)));
    }
  });

  it('caps and repairs untrusted text', () => {
    expect(fieldText('a'.repeat(1000))).toHaveLength(MAX_FIELD_CHARS);
    expect(fieldText('x\ud800y')).toBe('x\ufffdy');
  });
});

describe('the BLAKE3 chain (hash-wasm)', () => {
  it('hashes the official test vector and agrees with @noble/hashes', async () => {
    const h = await ChainHasher.create();
    // BLAKE3 official test_vectors.json, input_len 0.
    expect(hex(h.leaf(''))).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
    for (let i = 0; i < 20; i++) {
      const text = randomBytes(1 + i * 97).toString('base64');
      const leaf = h.leaf(text);
      expect(hex(leaf)).toBe(hex(blake3(Buffer.from(text))));
      const prev = randomBytes(32).toString('hex');
      expect(h.link(prev, leaf)).toBe(hex(blake3(Buffer.concat([Buffer.from(prev, 'hex'), leaf]))));
    }
  });

  it('hashes a chain in one step (hash) exactly as leaf then link, across texts, sizes and prevs', async () => {
    const h = await ChainHasher.create();
    const texts = ['', '{"a":1}', 'x\u00e9\u4e16\ud83d\ude00', 'é'.repeat(3000), 'a'.repeat(5000)];
    for (let i = 0; i < 40; i++) texts.push(randomBytes(1 + i * 53).toString(i % 2 ? 'base64' : 'latin1'));
    let prev = GENESIS_PREV;
    for (const [i, text] of texts.entries()) {
      const want = hex(blake3(Buffer.concat([Buffer.from(prev, 'hex'), blake3(Buffer.from(text))])));
      const got = h.hash(prev, text);
      expect(got).toBe(want);
      expect(got).toBe(h.link(prev, h.leaf(text)));
      // In order (prev is the last hash), then out of order (a new prev, as verify may pass).
      prev = i % 3 === 2 ? randomBytes(32).toString('hex') : got;
    }
  });

  it('links from the genesis value and appends the chain fields after the canonical members', async () => {
    const h = await ChainHasher.create();
    const text = '{"a":1}';
    const hash = h.link(GENESIS_PREV, h.leaf(text));
    expect(recordLine(text, hash, GENESIS_PREV)).toBe(`{"a":1,"hash":"${hash}","prev":"${GENESIS_PREV}"}`);
  });
});

describe('the checkpoint key', () => {
  it('is HKDF-SHA256 of the master key (as openssl derives it), and MACs with keyed BLAKE3', async () => {
    const master = randomBytes(32);
    const derive = (info: string, len: number): Buffer =>
      openssl([
        'kdf',
        '-keylen',
        String(len),
        '-kdfopt',
        'digest:SHA256',
        '-kdfopt',
        `hexkey:${master.toString('hex')}`,
        '-kdfopt',
        `info:${info}`,
        '-binary',
        'HKDF',
      ]);
    const key = await deriveCheckpointKey(master);
    expect(key.id).toBe(derive('keyward audit key id v1', 8).toString('hex'));
    const kAudit = derive('keyward audit checkpoint v1', 32);
    const prev = randomBytes(32).toString('hex');
    const canonical = '{"chain":"c","type":"checkpoint"}';
    expect(key.mac(prev, canonical)).toBe(
      hex(blake3(Buffer.concat([Buffer.from(prev, 'hex'), Buffer.from(canonical)]), { key: kAudit })),
    );
  });

  it('keyed BLAKE3 matches the official test vector', async () => {
    const { createBLAKE3 } = await import('hash-wasm');
    const h = await createBLAKE3(256, Buffer.from('whats the Elvish word for friend'));
    h.init();
    expect(h.digest('hex')).toBe('92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26');
  });
});
