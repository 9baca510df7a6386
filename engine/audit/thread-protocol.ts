/** The messages between the engine's audit thread proxy (audit-thread.ts) and its worker. */

import type { WorkerHeap } from '../pool/protocol.ts';
import type { AuditStats } from './audit-log.ts';
import type { CheckpointKeyMaterial } from './checkpoint-key.ts';
import type { RequestTextAround } from './records.ts';

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
 * A batch of events is one string: an entry per line, `time␁id␁payload`, where `id` 0 is a
 * `record` and any other number a `write` to acknowledge, and the payload is either an event's
 * JSON or a request record already rendered around its seq, `before␁after` (records.ts
 * `requestTextAround`). JSON text never holds a newline or U+0001 unescaped, so neither needs
 * escaping; and the audit thread completes rendered text without parsing it.
 */
const FIELD = '\u0001';

/** The line of a batch for an event sent as JSON (see above). */
export function eventEntry(time: number, id: number, event: unknown): string {
  return `${time}${FIELD}${id}${FIELD}${JSON.stringify(event)}`;
}

/** The line of a batch for a rendered request record (see above). */
export function textEntry(time: number, id: number, text: RequestTextAround): string {
  return `${time}${FIELD}${id}${FIELD}${text[0]}${FIELD}${text[1]}`;
}

/** An entry read back: `text` for a rendered request record, else `event`. */
export interface DecodedEntry {
  time: number;
  id: number;
  text?: RequestTextAround;
  event?: unknown;
}

/** The entries of a batch, in order. */
export function decodeEntries(batch: string): DecodedEntry[] {
  return batch.split('\n').map((line) => {
    const f = line.split(FIELD);
    const time = Number(f[0]);
    const id = Number(f[1]);
    return f.length === 4 ? { time, id, text: [f[2]!, f[3]!] } : { time, id, event: JSON.parse(f[2]!) };
  });
}

/** Engine → worker, besides event batches. */
export type ControlMessage =
  | { t: 'key'; key: CheckpointKeyMaterial }
  | { t: 'flush'; id: number }
  | { t: 'close' };

/** Worker → engine. */
export type WorkerMessage =
  | { t: 'open'; chain: string; memory: WorkerHeap }
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
      /** The audit thread's own V8 heap (pool/thread-heap.ts). */
      memory: WorkerHeap;
    }
  | { t: 'flushed'; id: number }
  | { t: 'log'; level: 'error' | 'warn' | 'info'; obj: Record<string, unknown>; msg: string };
