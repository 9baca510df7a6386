/**
 * The engine's crypto cases (issue 2). Each baseline is inline, single-thread node:crypto doing
 * the same work (the same primitives, formats and KeyObject reuse) in the same run.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { openAesGcm, sealAesGcm } from '../engine/crypto/aes-gcm.ts';
import { type ConvergentKeys, deriveConvergentKeys, sealConvergent } from '../engine/crypto/convergent.ts';
import { formatCiphertext, parseCiphertext } from '../engine/crypto/format.ts';
import { generateMaterial } from '../engine/crypto/material.ts';
import { type PreparedSecretKey, prepareKey } from '../engine/crypto/prepared-key.ts';
import { type SignatureAlgorithm, signBytes } from '../engine/crypto/signing.ts';
import { CryptoEngine, type KeyRing } from '../engine/engine.ts';
import { createKeyRing } from '../engine/key-ring.ts';
import type { KeyUsage } from '../engine/keys/model.ts';
import type { BenchCase, BenchSample } from './case.ts';

const BATCH = 512;
const SINGLE_CALLERS = 256;
// Enough batches in flight to keep every worker busy while the main thread packs the next.
const BATCHES_IN_FLIGHT = 4;
const PAYLOAD = randomBytes(1024);
const CONTEXT = Buffer.from('tenant-42');

/** Runs `step` (which does `n` ops) until `durationMs` passes; returns ops/s. */
function inlineLoop(durationMs: number, n: number, step: () => void): BenchSample {
  const start = performance.now();
  let ops = 0;
  while (performance.now() - start < durationMs) {
    step();
    ops += n;
  }
  return { opsPerSec: (ops * 1000) / (performance.now() - start) };
}

/** Runs `workers` concurrent async loops of `step` (each doing `n` ops) for `durationMs`. */
async function concurrentLoop(
  durationMs: number,
  workers: number,
  n: number,
  step: () => Promise<unknown>,
): Promise<BenchSample> {
  const start = performance.now();
  let ops = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() - start < durationMs) {
        await step();
        ops += n;
      }
    }),
  );
  return { opsPerSec: (ops * 1000) / (performance.now() - start) };
}

function fixture(usage: KeyUsage, convergent = false): { ring: KeyRing; material: Buffer } {
  const material = generateMaterial(usage);
  return {
    ring: createKeyRing(`bench/${usage}${convergent ? '-c' : ''}`, usage, convergent, [material]),
    material,
  };
}

// One engine for all cases, so worker start-up is not measured.
let shared: CryptoEngine | undefined;
function engine(): CryptoEngine {
  shared ??= new CryptoEngine();
  return shared;
}

function aesEncryptInline(secret: PreparedSecretKey): () => void {
  return () => {
    const nonces = randomFillSync(Buffer.allocUnsafe(BATCH * 12));
    for (let i = 0; i < BATCH; i++) {
      formatCiphertext(1, sealAesGcm(secret.secret, nonces.subarray(i * 12, i * 12 + 12), PAYLOAD));
    }
  };
}

function aesCases(): BenchCase[] {
  const { ring, material } = fixture('AES256');
  const secret = prepareKey('AES256', material) as PreparedSecretKey;
  const encryptItems = Array.from({ length: BATCH }, () => ({ plaintext: PAYLOAD }));
  let ciphertexts: string[] = [];
  return [
    {
      name: 'aes256gcm-encrypt-1k',
      baselineLabel: 'inline node:crypto, 1 thread',
      engine: (ms) =>
        concurrentLoop(ms, BATCHES_IN_FLIGHT, BATCH, () => engine().batch('encrypt', ring, encryptItems)),
      baseline: async (ms) => inlineLoop(ms, BATCH, aesEncryptInline(secret)),
    },
    {
      name: 'aes256gcm-decrypt-1k',
      baselineLabel: 'inline node:crypto, 1 thread',
      async setup() {
        const results = await engine().batch('encrypt', ring, encryptItems);
        ciphertexts = results.map((r) => (r.ok ? r.value.ciphertext : ''));
      },
      engine: (ms) => {
        const items = ciphertexts.map((ciphertext) => ({ ciphertext }));
        return concurrentLoop(ms, BATCHES_IN_FLIGHT, BATCH, () => engine().batch('decrypt', ring, items));
      },
      baseline: async (ms) =>
        inlineLoop(ms, BATCH, () => {
          for (const c of ciphertexts) openAesGcm(secret.secret, parseCiphertext(c).body);
        }),
    },
    {
      name: 'aes256gcm-encrypt-1k-single',
      baselineLabel: 'inline node:crypto, 1 thread',
      engine: (ms) =>
        concurrentLoop(ms, SINGLE_CALLERS, 1, () => engine().encrypt(ring, { plaintext: PAYLOAD })),
      baseline: async (ms) => inlineLoop(ms, BATCH, aesEncryptInline(secret)),
    },
  ];
}

function convergentCase(): BenchCase {
  const { ring, material } = fixture('AES256', true);
  const items = Array.from({ length: BATCH }, () => ({ plaintext: randomBytes(1024), context: CONTEXT }));
  // The baseline caches derived keys just as the workers do.
  const cache = new Map<string, ConvergentKeys>();
  return {
    name: 'convergent-encrypt-1k',
    baselineLabel: 'inline node:crypto, 1 thread, derived-key cache',
    engine: (ms) =>
      concurrentLoop(ms, BATCHES_IN_FLIGHT, BATCH, () => engine().batch('encrypt', ring, items)),
    baseline: async (ms) =>
      inlineLoop(ms, BATCH, () => {
        for (const item of items) {
          const id = item.context.toString('base64');
          let keys = cache.get(id);
          if (keys === undefined) {
            keys = deriveConvergentKeys(material, item.context);
            cache.set(id, keys);
          }
          formatCiphertext(1, sealConvergent(keys, undefined, item.plaintext));
        }
      }),
  };
}

function signCase(name: string, usage: 'ECDSA' | 'RSA2048', algorithm: SignatureAlgorithm): BenchCase {
  const { ring, material } = fixture(usage);
  const prepared = prepareKey(usage, material);
  const items = Array.from({ length: BATCH }, (_, i) => ({ data: Buffer.from(`message ${i}`) }));
  return {
    name,
    baselineLabel: 'inline node:crypto, 1 thread',
    engine: (ms) => concurrentLoop(ms, BATCHES_IN_FLIGHT, BATCH, () => engine().batch('sign', ring, items)),
    baseline: async (ms) =>
      inlineLoop(ms, BATCH, () => {
        for (const item of items)
          formatCiphertext(1, signBytes(prepared, item.data, { algorithm, prehashed: false }));
      }),
  };
}

/** The engine's cases, in the order the issue names them. */
export function engineCases(): BenchCase[] {
  return [
    ...aesCases(),
    convergentCase(),
    signCase('ecdsa-p256-sign', 'ECDSA', 'ECDSA_SHA_256'),
    signCase('rsa2048-pss-sign', 'RSA2048', 'RSASSA_PSS_SHA_256'),
  ];
}

/** Stops the shared engine's workers after the last case. */
export async function closeEngineCases(): Promise<void> {
  await shared?.close();
  shared = undefined;
}
