import { createHash, randomBytes, sign, verify } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHighS, lowSRaw, rawToDer } from './ecdsa-low-s.ts';
import { opensslOk, type Scratch, scratch } from './fixtures/openssl.ts';
import { generateMaterial } from './material.ts';
import { type PreparedKeyPair, prepareKey } from './prepared-key.ts';
import { exportPublicKey } from './public-key.ts';
import { type SignatureAlgorithm, signBytes, verifyBytes } from './signing.ts';

const N = p256.Point.Fn.ORDER;
const sha256 = (m: Uint8Array): Buffer => createHash('sha256').update(m).digest();

/** s of a signature, parsed by noble (independent of ecdsa-low-s.ts). */
function sOf(sig: Uint8Array, algorithm: SignatureAlgorithm): bigint {
  return p256.Signature.fromBytes(sig, algorithm === 'ECDSA_SHA_256' ? 'der' : 'compact').s;
}

/** The high-S twin (r, n − s) of a signature, encoded by noble. */
function twin(sig: Uint8Array, algorithm: SignatureAlgorithm): Uint8Array {
  const format = algorithm === 'ECDSA_SHA_256' ? 'der' : 'compact';
  const parsed = p256.Signature.fromBytes(sig, format);
  return new p256.Signature(parsed.r, N - parsed.s).toBytes(format);
}

let tmp: Scratch;
let ec: PreparedKeyPair;
let pubPath: string;

beforeAll(() => {
  tmp = scratch();
  ec = prepareKey('ECDSA', generateMaterial('ECDSA')) as PreparedKeyPair;
  pubPath = tmp.write('ec.pub.pem', exportPublicKey(ec).pem);
});
afterAll(() => tmp.dispose());

describe('ECDSA signatures are low-S (review finding: OpenSSL returned high-S half the time)', () => {
  const cases: Array<[SignatureAlgorithm, boolean]> = [
    ['ECDSA_SHA_256', false],
    ['ECDSA_SHA_256_RAW', false],
    ['ECDSA_SHA_256', true],
    ['ECDSA_SHA_256_RAW', true],
  ];
  for (const [algorithm, prehashed] of cases) {
    it(`${algorithm}${prehashed ? ' prehashed' : ''}: 200 signatures, every s ≤ n/2, all valid`, () => {
      for (let i = 0; i < 200; i++) {
        const message = randomBytes(16);
        const sig = signBytes(ec, prehashed ? sha256(message) : message, { algorithm, prehashed });
        expect(sOf(sig, algorithm) <= N / 2n).toBe(true);
        // Valid for OpenSSL (through node) as the message's signature.
        const der = algorithm === 'ECDSA_SHA_256' ? sig : rawToDer(sig);
        expect(verify('sha256', message, ec.publicKey, der)).toBe(true);
      }
    });
  }

  it('openssl dgst -verify accepts the low-S DER signatures', () => {
    for (let i = 0; i < 5; i++) {
      const message = randomBytes(32);
      const sig = signBytes(ec, message, { algorithm: 'ECDSA_SHA_256', prehashed: false });
      const msgPath = tmp.write(`m${i}`, message);
      const sigPath = tmp.write(`s${i}`, sig);
      expect(opensslOk(['dgst', '-sha256', '-verify', pubPath, '-signature', sigPath, msgPath])).toBe(true);
    }
  });
});

describe('verify accepts high-S signatures (the policy of OpenSSL, Go, AWS KMS and Vault)', () => {
  for (const prehashed of [false, true]) {
    for (const algorithm of ['ECDSA_SHA_256', 'ECDSA_SHA_256_RAW'] as const) {
      it(`${algorithm}${prehashed ? ' prehashed' : ''}: the (r, n − s) twin of a signature is valid`, () => {
        const message = randomBytes(24);
        const data = prehashed ? sha256(message) : message;
        const sig = signBytes(ec, data, { algorithm, prehashed });
        const high = twin(sig, algorithm);
        expect(sOf(high, algorithm) > N / 2n).toBe(true);
        expect(verifyBytes(ec, data, high, { algorithm, prehashed })).toBe(true);
        // ...and a different message still fails with it.
        const other = prehashed ? sha256(randomBytes(24)) : randomBytes(24);
        expect(verifyBytes(ec, other, high, { algorithm, prehashed })).toBe(false);
      });
    }
  }
});

describe('lowSRaw and rawToDer', () => {
  it('agree with OpenSSL: rawToDer of its raw signature equals its DER form, once s is low', () => {
    let highSeen = 0;
    for (let i = 0; i < 100; i++) {
      const message = randomBytes(8);
      const raw = sign('sha256', message, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
      if (isHighS(raw.subarray(32))) highSeen++;
      const low = lowSRaw(raw);
      expect(low.subarray(0, 32).equals(raw.subarray(0, 32))).toBe(true);
      const der = rawToDer(low);
      const parsed = p256.Signature.fromBytes(der, 'der');
      expect(parsed.s <= N / 2n).toBe(true);
      expect(Buffer.from(parsed.toBytes('der')).equals(der)).toBe(true);
      expect(verify('sha256', message, ec.publicKey, der)).toBe(true);
    }
    // OpenSSL does make high-S signatures: the normalization is not a no-op.
    expect(highSeen).toBeGreaterThan(10);
  });

  it('encodes small values minimally and refuses a wrong length', () => {
    const raw = Buffer.alloc(64);
    raw[31] = 1;
    raw[63] = 0x80;
    expect(rawToDer(raw).toString('hex')).toBe('3007020101020200' + '80');
    expect(() => rawToDer(Buffer.alloc(63))).toThrow(RangeError);
    expect(() => lowSRaw(Buffer.alloc(65))).toThrow(RangeError);
  });
});
