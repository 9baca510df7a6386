/** The messages between the engine's audit thread proxy (audit-thread.ts) and its worker. */
import type { AuditStats } from './audit-log.ts';
import type { CheckpointKeyMaterial } from './checkpoint-key.ts';

/** What the worker opens, as `workerData`. */
export interface AuditThreadSetup {
  name: string;
  /** Segment directory, if any. */
  dir: string | undefined;
  segmentBytes: number;
  /** Every line on fd 1 too (cluster mode). */
  stdout: boolean;
  checkpointRecords: number;
  checkpointIntervalMs: number;
  /** The checkpoint key, when the master key is already known. */
  key: CheckpointKeyMaterial | undefined;
}

/**
 * A batch of events, sent as JSON: `[time, id, event]` each, where `id` 0 is a `record` and any
 * other number a `write` to acknowledge.
 */
export type EventBatch = Array<[number, number, unknown]>;

/** Engine → worker, besides event batches. */
export type ControlMessage =
  | { t: 'key'; key: CheckpointKeyMaterial }
  | { t: 'flush'; id: number }
  | { t: 'close' };

/** Worker → engine. */
export type WorkerMessage =
  | { t: 'open'; chain: string }
  | { t: 'open-failed'; message: string }
  | {
      t: 'state';
      /** Events received so far. */
      received: number;
      healthy: boolean;
      stats: AuditStats;
      /** `write` ids now on every sink, and ids refused. */
      acked: number[];
      refused: number[];
    }
  | { t: 'flushed'; id: number }
  | { t: 'log'; level: 'error' | 'warn' | 'info'; obj: Record<string, unknown>; msg: string };
