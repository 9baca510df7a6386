/**
 * The worker of bench/audit-cases.ts's leaf-placement case: BLAKE3 leaves of a batch of records'
 * canonical texts, returned in one transferred buffer (what the audit log would do were its leaf
 * hashing moved to the worker pool).
 */
import { createBLAKE3 } from 'hash-wasm';
import { Piscina } from 'piscina';

const hasher = await createBLAKE3(256);

export default function leaves(texts: string[]): ArrayBuffer {
  const out = new Uint8Array(32 * texts.length);
  for (let i = 0; i < texts.length; i++) {
    hasher.init();
    hasher.update(texts[i]!);
    out.set(hasher.digest('binary'), 32 * i);
  }
  return Piscina.move(out.buffer) as ArrayBuffer;
}
