/**
 * The tasks the pool queues for its workers (crypto-pool.ts): an item task (a batch of items of
 * one operation under one key version, coalesced or a caller's batch) or a request task (a whole
 * batch request's body, request-runner.ts).
 */
import type { KeywardError } from '../errors.ts';
import type { ItemFields, ItemOutcome } from './items.ts';
import type { RequestTask, TaskKey, TaskParams, WorkerOp } from './protocol.ts';
import type { RequestOutcome } from './request-runner.ts';

/** Calls back with one item's outcome while its bytes are valid (see ItemOutcome). */
export type Finish = (outcome: ItemOutcome, index: number) => void;

/** An item task waiting for a task slot, or running. */
export interface ItemJob {
  kind: 'items';
  op: WorkerOp;
  key: TaskKey;
  params: TaskParams;
  items: readonly ItemFields[];
  /** Reserved bytes of these items (released when the task settles). */
  bytes: number;
  finish: Finish;
  resolve: () => void;
  reject: (error: KeywardError) => void;
}

/** A request task waiting for a task slot, or running. */
export interface RequestJob {
  kind: 'request';
  task: RequestTask;
  resolve: (outcome: RequestOutcome) => void;
  reject: (error: KeywardError) => void;
}

/** A task waiting for a task slot, or running. */
export type Job = ItemJob | RequestJob;
