/**
 * One benchmark case: the engine path and its baseline, measured side by side in one run.
 * `bench/run.ts` interleaves rounds of `engine` and `baseline` and reports the median ratio.
 */
export interface BenchCase {
  /** Stable case name, as in the issue (`aes256gcm-encrypt-1k`, ...). */
  name: string;
  /** What the baseline is, for the printed table. */
  baselineLabel: string;
  /** False to skip the untimed warm-up (a case whose one round is already long). */
  warmUp?: boolean;
  /** Prepares shared state (keys, servers); called once before the rounds. */
  setup?(): Promise<void>;
  /** Runs the engine path for about `durationMs` and returns what it measured. */
  engine(durationMs: number): Promise<BenchSample>;
  /** Runs the baseline for about `durationMs`. */
  baseline(durationMs: number): Promise<BenchSample>;
  /** Releases what setup made; called once after the rounds. */
  teardown?(): Promise<void>;
}

/** One round's measurement. Latencies are optional (HTTP cases report them). */
export interface BenchSample {
  opsPerSec: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Further figures of a round (memory, times), reported as medians over the rounds. */
  extra?: Record<string, number>;
}
