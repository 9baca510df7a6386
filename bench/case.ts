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
  /**
   * Latency cases: the ratio reported is the engine's p50 latency over the baseline's (lower is
   * better), besides the throughput ratio.
   */
  latency?: boolean;
  /** Starts measuring the memory of the processes the case loads (after setup, before warm-up). */
  beginMemory?(): void;
  /** The peak and settled resident memory of both sides since `beginMemory` (after the rounds). */
  memory?(): Promise<CaseMemory>;
}

/** Resident memory (MiB) of one side of a case: its peak under load, and once settled. */
export interface SideMemory {
  peakMiB: number;
  settledMiB: number;
}

/** What `BenchCase.memory` reports. */
export interface CaseMemory {
  engine: SideMemory;
  baseline: SideMemory;
  /** Seconds of idle before `settledMiB` was read. */
  settleSeconds: number;
}

/** One round's measurement. Latencies are optional (HTTP cases report them). */
export interface BenchSample {
  opsPerSec: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Further figures of a round (memory, times), reported as medians over the rounds. */
  extra?: Record<string, number>;
}
