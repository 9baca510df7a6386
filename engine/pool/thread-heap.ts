/**
 * The V8 heap of the calling thread's isolate, as the engine's worker threads report it: the crypto
 * workers in their census (worker-channel.ts) and the audit thread in its state messages.
 */
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import type { WorkerHeap } from './protocol.ts';

/** This thread's heap: used, total, external, and the size of each space. */
export function threadHeap(): WorkerHeap {
  const stats = getHeapStatistics();
  return {
    used: stats.used_heap_size,
    total: stats.total_heap_size,
    external: stats.external_memory,
    spaces: Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size])),
  };
}
