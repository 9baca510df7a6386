/**
 * A whole batch request, run in a crypto worker (issue #15): the main thread authenticates,
 * routes, checks the key and hands over the raw body; this parses it, checks the body and each
 * item with the same schemas and plans as the main thread (json-body.ts, batch-items.ts,
 * operation-plans.ts), runs the crypto, and serializes the response body. The main thread then
 * only writes the bytes: its per-item work is zero.
 *
 * The task names the key versions it knows (`WireRing.versions`). A ciphertext naming a version
 * the task does not list, or a version whose KeyObjects this worker does not hold, makes the whole
 * task come back as `need` before any crypto runs; the pool resolves those versions and sends it
 * again with their material. Items are therefore planned in one pass and run in a second.
 */

import type { BatchInputs, BatchOperation } from '../engine.ts';
import { type ErrorCode, KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import {
  type DecryptInput,
  type EncryptInput,
  finishPlan,
  type KeyRing,
  type Plan,
  planDecrypt,
  planEncrypt,
  planSign,
  planVerify,
  type SignInput,
  type VerifyInput,
} from '../operation-plans.ts';
import { BATCH_BODY, batchItemError, decodeBatchItem, encodeBatchOutput } from '../wire/batch-items.ts';
import { parseJsonBody } from '../wire/json-body.ts';
import { check } from '../wire/validate.ts';
import { type HeldKey, type ItemContext, runItem } from './ops.ts';
import { ITEM_FAILED, ITEM_INVALID, type TaskKey } from './protocol.ts';

/** A KeywardError as it crosses a thread boundary. */
export interface WireError {
  code: ErrorCode;
  message: string;
  field?: string;
  status: number;
}

/** What a request task knows of its key (the main thread's KeyRing, as data). */
export interface WireRing {
  usage: KeyUsage;
  convergent: boolean;
  currentVersion: number;
  /** Known versions: the key id of each, null when the key has no such version, or its error. */
  versions: Array<[number, string | null | WireError]>;
}

/** The outcome of a request task. */
export type RequestOutcome =
  /** The response body (200), and what the main thread counts. */
  | {
      type: 'done';
      body: ArrayBuffer;
      /** Items in the request. */
      items: number;
      /** Items per result: `ok` or an error code. */
      results: Record<string, number>;
      /** Random-nonce encryptions run (nonce-budget.ts): the count the main thread keeps. */
      seals: number;
    }
  /** The request as a whole was refused (bad JSON, bad body shape): this error, no crypto run. */
  | { type: 'error'; error: WireError }
  /** Versions to resolve and key ids to register first; the body comes back to be sent again. */
  | { type: 'need'; versions: number[]; ids: string[]; body: ArrayBuffer };

/** A thrown KeywardError as wire data. */
export function wireError(err: unknown): WireError {
  const e = err instanceof KeywardError ? err : new KeywardError('INTERNAL', 'the request failed');
  return { ...e.toJSON(), status: e.status };
}

/** The KeywardError a WireError stands for. */
export function fromWire(w: WireError): KeywardError {
  return new KeywardError(w.code, w.message, {
    ...(w.field === undefined ? {} : { field: w.field }),
    status: w.status,
  });
}

/** Thrown while planning when a version is not known yet; the item waits for the second send. */
const NEED = Symbol('need');

type Planned =
  | { kind: 'error'; error: unknown }
  | { kind: 'value'; value: object }
  | { kind: 'plan'; plan: Plan<unknown>; input: BatchInputs[BatchOperation] };

/**
 * Runs a batch request of `op` whose body is `body` (UTF-8 bytes, wiped here once parsed unless
 * they go back with `need`). `held(id)` gives this worker's KeyObjects of a key id.
 */
export function runRequest(
  op: BatchOperation,
  wire: WireRing,
  body: ArrayBuffer,
  held: (id: string) => HeldKey | undefined,
  ctx: ItemContext,
): RequestOutcome {
  const bytes = new Uint8Array(body);
  let value: unknown;
  try {
    value = parseJsonBody(Buffer.from(body).toString('utf8'));
    const err = check(BATCH_BODY, value);
    if (err) throw err;
  } catch (err) {
    bytes.fill(0);
    return { type: 'error', error: wireError(err) };
  }
  const requests = (value as { requests: unknown[] }).requests;

  // Pass 1: decode and plan every item, noting versions and keys this task lacks.
  const known = new Map(wire.versions);
  const needVersions = new Set<number>();
  const needIds = new Set<string>();
  const stubs = new Map<string, TaskKey>();
  const ring: KeyRing = {
    id: '',
    usage: wire.usage,
    convergent: wire.convergent,
    currentVersion: wire.currentVersion,
    version(version) {
      if (!known.has(version)) {
        needVersions.add(version);
        throw NEED;
      }
      const entry = known.get(version)!;
      if (entry === null) return undefined;
      if (typeof entry === 'object') throw fromWire(entry);
      if (held(entry) === undefined) needIds.add(entry);
      let stub = stubs.get(entry);
      if (stub === undefined) {
        // Only the id is read from a worker-side TaskKey (the plan's key and batch key).
        stub = { id: entry, usage: wire.usage, convergent: wire.convergent } as TaskKey;
        stubs.set(entry, stub);
      }
      return stub;
    },
  };
  // The current version is needed by every op that seals or signs, even when no item plans it.
  if (op === 'encrypt' || op === 're-encrypt' || op === 'sign') {
    try {
      ring.version(wire.currentVersion);
    } catch {
      // Reported per item below (or as `need`).
    }
  }
  const planned: Planned[] = new Array(requests.length);
  for (let i = 0; i < requests.length; i++) {
    let input: BatchInputs[BatchOperation] | undefined;
    try {
      input = decodeBatchItem(op, requests[i]);
      const plan = planFor(op, ring, input);
      planned[i] =
        typeof plan === 'object' && plan !== null && 'batchKey' in plan
          ? { kind: 'plan', plan: plan as Plan<unknown>, input }
          : { kind: 'value', value: plan as object };
    } catch (error) {
      if (input !== undefined) wipeInput(op, input);
      planned[i] = { kind: 'error', error };
    }
  }
  if (needVersions.size > 0 || needIds.size > 0) {
    for (const p of planned) if (p.kind === 'plan') wipeInput(op, p.input);
    return { type: 'need', versions: [...needVersions], ids: [...needIds], body };
  }
  bytes.fill(0);

  // Pass 2: run, finish and encode each item in order.
  let seals = 0;
  const run = <T>(plan: Plan<T>): T => {
    if (plan.op === 'aes-seal' || (plan.op === 'data-key' && wire.usage === 'AES256' && !wire.convergent))
      seals++;
    const key = held(plan.key.id)!;
    const f = plan.fields;
    let outcome: Buffer | number;
    try {
      outcome = runItem(
        plan.op,
        plan.key.id,
        key,
        plan.params,
        f[0] ?? EMPTY,
        f[1] ?? EMPTY,
        f[2] ?? EMPTY,
        ctx,
      );
    } catch (err) {
      outcome = (err as { code?: string }).code === 'INVALID_ARGUMENT' ? ITEM_INVALID : ITEM_FAILED;
    }
    return finishPlan(plan, outcome);
  };
  const results: object[] = new Array(requests.length);
  const tally: Record<string, number> = {};
  for (let i = 0; i < planned.length; i++) {
    const p = planned[i]!;
    let result: object;
    if (p.kind === 'error') result = batchItemError(p.error);
    else if (p.kind === 'value') result = p.value;
    else {
      try {
        result = encodeBatchOutput(op, runPlanned(op, ring, p.plan, p.input, run) as never);
      } catch (error) {
        result = batchItemError(error);
      } finally {
        wipeInput(op, p.input);
      }
    }
    const code = (result as { error?: { code: string } }).error?.code ?? 'ok';
    tally[code] = (tally[code] ?? 0) + 1;
    results[i] = result;
  }
  const text = JSON.stringify({ results });
  const out = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  out.write(text);
  return { type: 'done', body: out.buffer as ArrayBuffer, items: requests.length, results: tally, seals };
}

const EMPTY = Buffer.alloc(0);

function planFor(
  op: BatchOperation,
  ring: KeyRing,
  input: BatchInputs[BatchOperation],
): Plan<unknown> | object {
  switch (op) {
    case 'encrypt':
      return planEncrypt(ring, input as EncryptInput);
    case 'decrypt':
    case 're-encrypt':
      return planDecrypt(ring, input as DecryptInput);
    case 'sign':
      return planSign(ring, input as SignInput);
    case 'verify':
      return planVerify(ring, input as VerifyInput);
  }
}

/** Runs one planned item; re-encrypt decrypts, then seals under the current version. */
function runPlanned(
  op: BatchOperation,
  ring: KeyRing,
  plan: Plan<unknown>,
  input: BatchInputs[BatchOperation],
  run: <T>(plan: Plan<T>) => T,
): unknown {
  if (op !== 're-encrypt') return run(plan);
  const { plaintext } = run(plan) as { plaintext: Buffer };
  try {
    return run(planEncrypt(ring, { ...(input as DecryptInput), plaintext }));
  } finally {
    plaintext.fill(0);
  }
}

/** Zeroes the decoded plaintext of an encrypt item once it is no longer needed. */
function wipeInput(op: BatchOperation, input: BatchInputs[BatchOperation]): void {
  if (op === 'encrypt') (input as EncryptInput).plaintext.fill(0);
}
