/**
 * One item of an item task as the pool sees it: its fields, its outcome, and the bytes it holds
 * against the pool's bounds while it waits or runs.
 */
import { outputBound } from './ops.ts';
import type { TaskParams, WorkerOp } from './protocol.ts';

/**
 * An item's outcome: its output bytes, or a status code (ITEM_INVALID, ITEM_FAILED). Output bytes
 * of ops that are not plaintext are a view into shared memory, valid only during the `finish`
 * call that receives them; plaintext outputs are a copy of their own.
 */
export type ItemOutcome = Buffer | number;

/** Fields of one item, in the order FIELDS_PER_OP gives. */
export type ItemFields = readonly (Uint8Array | undefined)[];

/** Bytes an item holds while queued or running: its inputs and its output space. */
export function itemBytes(op: WorkerOp, params: TaskParams, fields: ItemFields): number {
  let input = 0;
  for (const f of fields) input += f?.byteLength ?? 0;
  return input + outputBound(op, params, input);
}
