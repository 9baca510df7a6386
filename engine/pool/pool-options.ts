/**
 * The options of the engine's worker pool (crypto-pool.ts) and the defaults of its bounds.
 */
import type { ResourceLimits } from 'node:worker_threads';

/** The options of a CryptoPool: its threads, the bounds on what waits or runs, and its workers' limits. */
export interface CryptoPoolOptions {
  /** Worker threads; default: the machine's available parallelism. */
  threads?: number;
  /** Most items in one item task. */
  maxBatch?: number;
  /** Items waiting or running before new work is refused with OVERLOADED. */
  maxPendingItems?: number;
  /**
   * Bytes waiting or running (inputs and output space of items, bodies of batch requests) before
   * new work is refused with OVERLOADED.
   */
  maxPendingBytes?: number;
  /** Largest item task, in bytes (a task holds at most this much of items and output space). */
  maxTaskBytes?: number;
  /** Bytes of task buffers kept for reuse. */
  retainedBytes?: number;
  /** Key versions each worker keeps (FIFO beyond). */
  maxWorkerKeys?: number;
  /** Convergent derived-key sets each worker keeps (FIFO beyond). */
  maxDerivedKeys?: number;
  /** V8 heap limits of each worker (default POOL_DEFAULTS.workerResourceLimits, chosen on measurement). */
  resourceLimits?: ResourceLimits;
  /**
   * Told when a worker dies outside a task (Piscina's `error` event; the worker is replaced). By
   * default a process warning is written to stderr: a crash is never silent.
   */
  onWorkerError?: (err: Error) => void;
}

/** Default bounds; docs/performance.md says how they were chosen. */
export const POOL_DEFAULTS = {
  maxBatch: 512,
  maxPendingItems: 65_536,
  maxPendingBytes: 64 * 1024 * 1024,
  maxTaskBytes: 2 * 1024 * 1024,
  retainedBytes: 8 * 1024 * 1024,
  maxWorkerKeys: 2048,
  maxDerivedKeys: 4096,
  /**
   * A worker's young generation: V8's default let each worker's grow to 64 MiB under load; 12
   * keeps it at 8 (measured with bench/soak.ts; docs/performance.md, memory). The old generation
   * is capped at 256 MiB not for the cap itself but for how V8 grows a heap below it: after each
   * full collection it lets the old generation grow to its live size times a factor whose ceiling
   * is 4 for limits of 1 GiB and more and about 1.3–1.4 at 256 MiB, and soaks had caught workers
   * holding 22–37 MiB where 9 were live. A batch at the body limit needs about 64
   * (test/http/batch-limit.test.ts fails at 32); a worker over its limit dies.
   */
  workerResourceLimits: { maxYoungGenerationSizeMb: 12, maxOldGenerationSizeMb: 256 },
} as const;
