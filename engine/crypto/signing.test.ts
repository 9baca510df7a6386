import { createHash, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeywardError } from '../errors.ts';
import { openssl, opensslOk, type Scratch, scratch } from './fixtures/openssl.ts';
import { generateMaterial } from './material.ts';
import { type PreparedKey, prepareKey } from './prepared-key.ts';
import { exportPublicKey } from './public-key.ts';
import { defaultSignatureAlgorithm, type SignatureAlgorithm, signBytes, verifyBytes } from './signing.ts';

// A tiny DER <-> r‖s converter written independently of ecdsa-prehashed.ts, for cross-checks.
function derToRaw(der: Buffer): Buffer {
  let at = 2;
  const part = (): Buffer => {
    const len = der[at + 1]!;
    const v = der.subarray(at + 2, at + 2 + len);
    at += 2 + len;
    const trimmed = v[0] === 0 ? v.subarray(1) : v;
    return Buffer.concat([Buffer.alloc(32 - trimmed.length), trimmed]);
  };
  return Buffer.concat([part(), part()]);
}
function rawToDer(raw: Buffer): Buffer {
  const int = (b: Buffer): Buffer => {
    let i = 0;
    while (i < 31 && b[i] === 0) i++;
    let v = b.subarray(i);
    if (v[0]! >= 0x80) v = Buffer.concat([Buffer.of(0), v]);
    return Buffer.concat([Buffer.of(2, v.length), v]);
  };
  const body = Buffer.concat([int(raw.subarray(0, 32)), int(raw.subarray(32))]);
  return Buffer.concat([Buffer.of(0x30, body.length), body]);
}

const sha256 = (m: Uint8Array): Buffer => createHash('sha256').update(m).digest();

let tmp: Scratch;
let rsa: PreparedKey;
let ec: PreparedKey;
let rsaPub: string;
let ecPub: string;
let rsaPriv: string;
let ecPriv: string;
const message = Buffer.from('Keyward signs this message.\n');
const digest = sha256(message);
let msgPath: string;
let digestPath: string;

beforeAll(() => {
  tmp = scratch();
  const rsaMaterial = generateMaterial('RSA2048');
  const ecMaterial = generateMaterial('ECDSA');
  rsa = prepareKey('RSA2048', rsaMaterial);
  ec = prepareKey('ECDSA', ecMaterial);
  rsaPub = tmp.write('rsa.pub.pem', exportPublicKey(rsa).pem);
  ecPub = tmp.write('ec.pub.pem', exportPublicKey(ec).pem);
  rsaPriv = tmp.write('rsa.der', rsaMaterial);
  ecPriv = tmp.write('ec.der', ecMaterial);
  msgPath = tmp.write('msg', message);
  digestPath = tmp.write('digest', digest);
});
afterAll(() => tmp.dispose());

const opts = (algorithm: SignatureAlgorithm, prehashed = false) => ({ algorithm, prehashed });

/** openssl dgst -verify of `sig` over the message, with extra -sigopt arguments. */
function dgstVerify(pub: string, sig: Buffer, sigopts: string[] = []): boolean {
  const sigPath = tmp.write(`sig-${randomBytes(4).toString('hex')}`, sig);
  return opensslOk(['dgst', '-sha256', ...sigopts, '-verify', pub, '-signature', sigPath, msgPath]);
}
/** openssl pkeyutl -verify of `sig` over the precomputed digest. */
function digestVerify(pub: string, sig: Buffer, pkeyopts: string[] = []): boolean {
  const sigPath = tmp.write(`sig-${randomBytes(4).toString('hex')}`, sig);
  return opensslOk([
    'pkeyutl',
    '-verify',
    '-pubin',
    '-inkey',
    pub,
    '-in',
    digestPath,
    '-sigfile',
    sigPath,
    '-pkeyopt',
    'digest:sha256',
    ...pkeyopts,
  ]);
}
const PSS_MAX = ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:max'];
const PSS_PKEY_MAX = ['-pkeyopt', 'rsa_padding_mode:pss', '-pkeyopt', 'rsa_pss_saltlen:max'];

describe('RSASSA-PSS-SHA256 (maximum salt)', () => {
  it('verifies with openssl dgst -sigopt rsa_pss_saltlen:max, and the salt is exactly the maximum', () => {
    const sig = signBytes(rsa, message, opts('RSASSA_PSS_SHA_256'));
    expect(sig.length).toBe(256);
    expect(dgstVerify(rsaPub, sig, PSS_MAX)).toBe(true);
    // 256 - 32 - 2 = 222: openssl checks an explicit salt length exactly.
    expect(
      dgstVerify(rsaPub, sig, ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:222']),
    ).toBe(true);
    expect(
      dgstVerify(rsaPub, sig, ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32']),
    ).toBe(false);
    expect(dgstVerify(rsaPub, sig)).toBe(false); // not a PKCS#1 v1.5 signature
  });

  it('prehashed: a signature of sha256(m) verifies as a signature of m (openssl and Keyward)', () => {
    const sig = signBytes(rsa, digest, opts('RSASSA_PSS_SHA_256', true));
    expect(dgstVerify(rsaPub, sig, PSS_MAX)).toBe(true);
    expect(digestVerify(rsaPub, sig, PSS_PKEY_MAX)).toBe(true);
    expect(
      dgstVerify(rsaPub, sig, ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:222']),
    ).toBe(true);
    expect(verifyBytes(rsa, message, sig, opts('RSASSA_PSS_SHA_256'))).toBe(true);
    expect(verifyBytes(rsa, digest, sig, opts('RSASSA_PSS_SHA_256', true))).toBe(true);
    expect(verifyBytes(rsa, sha256(digest), sig, opts('RSASSA_PSS_SHA_256', true))).toBe(false);
  });

  it('accepts openssl signatures of any salt length, message and prehashed', () => {
    for (const saltlen of ['max', 'digest', '0', '100']) {
      const sigPath = tmp.path(`pss-${saltlen}`);
      openssl([
        'dgst',
        '-sha256',
        '-sign',
        rsaPriv,
        '-keyform',
        'DER',
        '-sigopt',
        'rsa_padding_mode:pss',
        '-sigopt',
        `rsa_pss_saltlen:${saltlen}`,
        '-out',
        sigPath,
        msgPath,
      ]);
      const sig = tmp.read(`pss-${saltlen}`);
      expect(verifyBytes(rsa, message, sig, opts('RSASSA_PSS_SHA_256'))).toBe(true);
      expect(verifyBytes(rsa, digest, sig, opts('RSASSA_PSS_SHA_256', true))).toBe(true);
      expect(verifyBytes(rsa, Buffer.from('other'), sig, opts('RSASSA_PSS_SHA_256'))).toBe(false);
    }
  });

  it('accepts a signature openssl pkeyutl made over the digest', () => {
    const sig = openssl([
      'pkeyutl',
      '-sign',
      '-inkey',
      rsaPriv,
      '-keyform',
      'DER',
      '-in',
      digestPath,
      '-pkeyopt',
      'digest:sha256',
      ...PSS_PKEY_MAX,
    ]);
    expect(verifyBytes(rsa, digest, sig, opts('RSASSA_PSS_SHA_256', true))).toBe(true);
    expect(verifyBytes(rsa, message, sig, opts('RSASSA_PSS_SHA_256'))).toBe(true);
  });
});

describe('RSASSA-PKCS1-v1_5-SHA256', () => {
  it('verifies with openssl both ways', () => {
    const sig = signBytes(rsa, message, opts('RSASSA_PKCS1_V1_5_SHA_256'));
    expect(dgstVerify(rsaPub, sig)).toBe(true);
    expect(dgstVerify(rsaPub, sig, PSS_MAX)).toBe(false);
    const osig = openssl(['dgst', '-sha256', '-sign', rsaPriv, '-keyform', 'DER', msgPath]);
    expect(verifyBytes(rsa, message, osig, opts('RSASSA_PKCS1_V1_5_SHA_256'))).toBe(true);
    expect(verifyBytes(rsa, digest, osig, opts('RSASSA_PKCS1_V1_5_SHA_256', true))).toBe(true);
    expect(verifyBytes(rsa, message, osig, opts('RSASSA_PSS_SHA_256'))).toBe(false);
  });

  it('prehashed gives byte-identical signatures to message signing (the scheme is deterministic)', () => {
    const a = signBytes(rsa, message, opts('RSASSA_PKCS1_V1_5_SHA_256'));
    const b = signBytes(rsa, digest, opts('RSASSA_PKCS1_V1_5_SHA_256', true));
    expect(b.equals(a)).toBe(true);
    expect(digestVerify(rsaPub, b)).toBe(true);
  });
});

describe('ECDSA P-256 SHA-256', () => {
  it('DER signatures verify with openssl both ways', () => {
    const sig = signBytes(ec, message, opts('ECDSA_SHA_256'));
    expect(sig[0]).toBe(0x30);
    expect(dgstVerify(ecPub, sig)).toBe(true);
    const osig = openssl(['dgst', '-sha256', '-sign', ecPriv, '-keyform', 'DER', msgPath]);
    expect(verifyBytes(ec, message, osig, opts('ECDSA_SHA_256'))).toBe(true);
    expect(verifyBytes(ec, message, derToRaw(osig), opts('ECDSA_SHA_256_RAW'))).toBe(true);
    expect(verifyBytes(ec, message, osig, opts('ECDSA_SHA_256_RAW'))).toBe(false);
  });

  it('RAW signatures are r‖s (64 bytes) and verify with openssl once converted to DER', () => {
    const raw = signBytes(ec, message, opts('ECDSA_SHA_256_RAW'));
    expect(raw.length).toBe(64);
    expect(dgstVerify(ecPub, rawToDer(raw))).toBe(true);
    expect(
      verify(
        'sha256',
        message,
        { key: createPublicKey(exportPublicKey(ec).pem), dsaEncoding: 'ieee-p1363' },
        raw,
      ),
    ).toBe(true);
  });

  it('prehashed DER and RAW signatures verify as signatures of the message (openssl and Keyward)', () => {
    for (let i = 0; i < 5; i++) {
      const der = signBytes(ec, digest, opts('ECDSA_SHA_256', true));
      expect(dgstVerify(ecPub, der)).toBe(true);
      expect(digestVerify(ecPub, der)).toBe(true);
      expect(verifyBytes(ec, message, der, opts('ECDSA_SHA_256'))).toBe(true);
      const raw = signBytes(ec, digest, opts('ECDSA_SHA_256_RAW', true));
      expect(raw.length).toBe(64);
      expect(dgstVerify(ecPub, rawToDer(raw))).toBe(true);
      expect(verifyBytes(ec, message, raw, opts('ECDSA_SHA_256_RAW'))).toBe(true);
    }
  });

  it('prehashed verify accepts openssl and node signatures and rejects a different digest', () => {
    const osig = openssl([
      'pkeyutl',
      '-sign',
      '-inkey',
      ecPriv,
      '-keyform',
      'DER',
      '-in',
      digestPath,
      '-pkeyopt',
      'digest:sha256',
    ]);
    expect(verifyBytes(ec, digest, osig, opts('ECDSA_SHA_256', true))).toBe(true);
    expect(verifyBytes(ec, digest, derToRaw(osig), opts('ECDSA_SHA_256_RAW', true))).toBe(true);
    const pk = ec.usage === 'ECDSA' ? ec.privateKey : undefined;
    for (let i = 0; i < 10; i++) {
      const m = randomBytes(40);
      const s = sign('sha256', m, pk!);
      expect(verifyBytes(ec, sha256(m), s, opts('ECDSA_SHA_256', true))).toBe(true);
      expect(verifyBytes(ec, sha256(Buffer.concat([m, Buffer.of(0)])), s, opts('ECDSA_SHA_256', true))).toBe(
        false,
      );
    }
  });

  it('prehashed verify handles the all-zero digest (u1 = 0) from openssl', () => {
    const zero = tmp.write('zero-digest', Buffer.alloc(32));
    const osig = openssl([
      'pkeyutl',
      '-sign',
      '-inkey',
      ecPriv,
      '-keyform',
      'DER',
      '-in',
      zero,
      '-pkeyopt',
      'digest:sha256',
    ]);
    expect(verifyBytes(ec, Buffer.alloc(32), osig, opts('ECDSA_SHA_256', true))).toBe(true);
    expect(verifyBytes(ec, digest, osig, opts('ECDSA_SHA_256', true))).toBe(false);
    const mine = signBytes(ec, Buffer.alloc(32), opts('ECDSA_SHA_256', true));
    const sigPath = tmp.write('zero-sig', mine);
    expect(
      opensslOk([
        'pkeyutl',
        '-verify',
        '-pubin',
        '-inkey',
        ecPub,
        '-in',
        zero,
        '-sigfile',
        sigPath,
        '-pkeyopt',
        'digest:sha256',
      ]),
    ).toBe(true);
  });

  it('prehashed verify accepts OpenSSL DER signatures (high-S included) and refuses malformed DER', () => {
    const pair = ec.usage === 'ECDSA' ? ec : (undefined as never);
    for (let i = 0; i < 20; i++) {
      const message = randomBytes(8);
      const osig = sign('sha256', message, pair.privateKey);
      const digest = createHash('sha256').update(message).digest();
      expect(verifyBytes(ec, digest, osig, { algorithm: 'ECDSA_SHA_256', prehashed: true })).toBe(true);
      // The same signature with a trailing byte, or r made non-minimal, is not valid DER.
      expect(
        verifyBytes(ec, digest, Buffer.concat([osig, Buffer.of(0)]), {
          algorithm: 'ECDSA_SHA_256',
          prehashed: true,
        }),
      ).toBe(false);
    }
    const digest = createHash('sha256').update('x').digest();
    for (const hex of ['30070202000a02010a', '30060201ff02010a', '']) {
      expect(
        verifyBytes(ec, digest, Buffer.from(hex, 'hex'), { algorithm: 'ECDSA_SHA_256', prehashed: true }),
      ).toBe(false);
    }
  });
});

describe('verifyBytes never throws for a bad signature', () => {
  const cases: Array<[string, () => PreparedKey, SignatureAlgorithm]> = [
    ['PSS', () => rsa, 'RSASSA_PSS_SHA_256'],
    ['PKCS1', () => rsa, 'RSASSA_PKCS1_V1_5_SHA_256'],
    ['ECDSA', () => ec, 'ECDSA_SHA_256'],
    ['ECDSA RAW', () => ec, 'ECDSA_SHA_256_RAW'],
  ];
  for (const [label, key, algorithm] of cases) {
    for (const prehashed of [false, true]) {
      it(`${label}${prehashed ? ' prehashed' : ''}: wrong, garbled, truncated and empty signatures are false`, () => {
        const data = prehashed ? digest : message;
        const good = signBytes(key(), data, opts(algorithm, prehashed));
        expect(verifyBytes(key(), data, good, opts(algorithm, prehashed))).toBe(true);
        const bad: Buffer[] = [
          Buffer.alloc(0),
          good.subarray(0, good.length - 1),
          Buffer.concat([good, Buffer.of(0)]),
          randomBytes(good.length),
          Buffer.alloc(good.length, 0xff),
          Buffer.alloc(good.length),
        ];
        for (let bit = 0; bit < good.length * 8; bit += 13) {
          const c = Buffer.from(good);
          c[bit >> 3]! ^= 1 << (bit & 7);
          bad.push(c);
        }
        for (const sig of bad) expect(verifyBytes(key(), data, sig, opts(algorithm, prehashed))).toBe(false);
        const other = prehashed ? sha256(Buffer.from('other')) : Buffer.from('other');
        expect(verifyBytes(key(), other, good, opts(algorithm, prehashed))).toBe(false);
      });
    }
  }
});

describe('algorithm checks', () => {
  it('defaults to PSS for RSA2048 and DER ECDSA for ECDSA, and refuses AES', () => {
    expect(defaultSignatureAlgorithm('RSA2048')).toBe('RSASSA_PSS_SHA_256');
    expect(defaultSignatureAlgorithm('ECDSA')).toBe('ECDSA_SHA_256');
    expect(() => defaultSignatureAlgorithm('AES256')).toThrow(expect.objectContaining({ code: 'KEY_STATE' }));
  });

  it('signBytes refuses a key/algorithm mismatch instead of producing garbage', () => {
    expect(() => signBytes(ec, message, opts('RSASSA_PSS_SHA_256'))).toThrow(KeywardError);
    expect(() => verifyBytes(rsa, message, Buffer.alloc(64), opts('ECDSA_SHA_256_RAW'))).toThrow(
      KeywardError,
    );
  });
});
