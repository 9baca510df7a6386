/**
 * The crypto worker. Two kinds of task (protocol.ts): an item task runs a batch of one op whose
 * items and outputs live in one buffer that comes and goes back (layout.ts); a request task runs
 * a whole batch request from its raw body (request-runner.ts).
 *
 * Key versions are registered once per worker, under the id of their material (protocol.ts
 * `TaskKey`): a task names only ids, and a worker that lacks one hands the task back to be sent
 * again with the material. What the worker keeps of a key is KeyObjects (OpenSSL memory), never
 * the raw bytes: the material it receives is zeroed once they are made. For convergent keys it
 * keeps the HKDF pseudorandom key (another KeyObject), from which each context's keys are
 * expanded and cached (ops.ts `DerivedKeyCache`). Both caches are bounded (FIFO).
 *
 * Eviction: the pool broadcasts the ids of disabled or destroyed keys on a BroadcastChannel; the
 * worker drops them and their derived keys as soon as its event loop turns (the pool runs Piscina
 * without its Atomics wait loop, so an idle worker gets the message), and drains the channel at
 * the start of every task too, so no task runs on a key evicted before it was sent.
 *
 * Plaintexts are zeroed as soon as they are used: the task's inputs once the batch ran, decrypted
 * plaintexts and data keys once copied into the task's buffer (the main thread zeroes the buffer
 * once it has read the outputs).
 */

import {
  BroadcastChannel,
  type MessagePort,
  receiveMessageOnPort,
  threadId,
  workerData,
} from 'node:worker_threads';
import { move, Piscina } from 'piscina';
import { convergentPrk } from '../crypto/convergent.ts';
import { prepareKey } from '../crypto/prepared-key.ts';
import { TaskRegion } from './layout.ts';
import {
  DerivedKeyCache,
  type HeldKey,
  type ItemContext,
  NonceSource,
  PLAINTEXT_OUTPUTS,
  runItem,
} from './ops.ts';
import {
  FIELDS_PER_OP,
  ITEM_FAILED,
  ITEM_INVALID,
  type ItemResult,
  type ItemTask,
  type PoolBroadcast,
  type PoolWorkerData,
  type RequestTask,
  type WireKey,
  type WorkerTask,
} from './protocol.ts';
import { type RequestOutcome, runRequest } from './request-runner.ts';
import { threadHeap } from './thread-heap.ts';

const data = workerData as PoolWorkerData;
const keys = new Map<string, HeldKey>();
const ctx: ItemContext = { nonces: new NonceSource(), derived: new DerivedKeyCache(data.maxDerivedKeys) };
let registrations = 0;

function evict(ids: readonly string[]): void {
  for (const id of ids) keys.delete(id);
  ctx.derived.evict(new Set(ids));
}

const channel = data.channel === undefined ? undefined : new BroadcastChannel(data.channel);

function onBroadcast(message: PoolBroadcast): void {
  if (message.type === 'evict') evict(message.ids);
  else if (message.type === 'census') {
    channel!.postMessage({
      type: 'census-reply',
      request: message.request,
      threadId,
      ids: [...keys.keys()],
      contexts: ctx.derived.size,
      registrations,
      heap: threadHeap(),
    } satisfies PoolBroadcast);
  }
}

if (channel !== undefined) {
  channel.onmessage = (event) => onBroadcast((event as unknown as { data: PoolBroadcast }).data);
  // The worker lives as long as Piscina keeps it; the channel must not hold it open on its own.
  channel.unref();
}

/** Applies evictions already posted (they are queued before any task sent after them). */
function drainBroadcasts(): void {
  if (channel === undefined) return;
  // receiveMessageOnPort takes a BroadcastChannel too (Node ≥ 15.4); @types/node types a port.
  const port = channel as unknown as MessagePort;
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    onBroadcast(m.message as PoolBroadcast);
  }
}

function register(wire: WireKey, material: Uint8Array): HeldKey {
  try {
    const entry: HeldKey = { prepared: prepareKey(wire.usage, material) };
    if (wire.convergent) entry.prk = convergentPrk(material);
    if (keys.size >= data.maxKeys) evict([keys.keys().next().value!]);
    keys.set(wire.id, entry);
    registrations++;
    return entry;
  } finally {
    material.fill(0);
  }
}

/** Registers the material a task brought (zeroing it either way). */
function registerAll(brought: readonly WireKey[] | undefined): void {
  for (const wire of brought ?? []) {
    if (wire.material === undefined) continue;
    if (keys.has(wire.id)) wire.material.fill(0);
    else register(wire, wire.material);
  }
}

/** Runs an item task in its buffer; false when this worker lacks the key (send again). */
function runItems(task: ItemTask): boolean {
  registerAll(task.key.material === undefined ? undefined : [task.key]);
  const entry = keys.get(task.key.id);
  if (entry === undefined) return false;
  const region = new TaskRegion(task.buffer);
  if (region.fields !== FIELDS_PER_OP[task.op]) throw new RangeError('task field count does not match op');
  const plaintextOut = PLAINTEXT_OUTPUTS.has(task.op);
  const three = region.fields === 3;
  const two = region.fields >= 2;
  const empty = Buffer.alloc(0);
  for (let i = 0; i < region.count; i++) {
    let out: Buffer | undefined;
    try {
      out = runItem(
        task.op,
        task.key.id,
        entry,
        task.params,
        region.field(i, 0),
        two ? region.field(i, 1) : empty,
        three ? region.field(i, 2) : empty,
        ctx,
      );
      if (!region.setOutput(i, out)) region.setStatus(i, ITEM_FAILED);
    } catch (err) {
      // Authentication failures come back as KeywardError INVALID_ARGUMENT; anything else is
      // reported without detail so no key-dependent message crosses back.
      region.setStatus(
        i,
        (err as { code?: string }).code === 'INVALID_ARGUMENT' ? ITEM_INVALID : ITEM_FAILED,
      );
    } finally {
      if (plaintextOut && out !== undefined) out.fill(0);
    }
  }
  region.wipeInputs();
  return true;
}

/** `value`, with `buffer` moved (not copied) back to the main thread. */
function moved<T>(value: T, buffer: ArrayBuffer): unknown {
  return move({ [Piscina.transferableSymbol]: [buffer], [Piscina.valueSymbol]: value } as never);
}

/**
 * Piscina entry point. An item task returns its buffer (moved back) with `ran` true once the
 * outputs are in it, or false when this worker does not hold the task's key and the task brought
 * no material. A request task returns its RequestOutcome, the body moved back.
 */
export default function runTask(task: WorkerTask): unknown {
  drainBroadcasts();
  if (task.kind === 'items') {
    const result: ItemResult = { ran: runItems(task), buffer: task.buffer };
    return moved(result, task.buffer);
  }
  return runRequestTask(task);
}

function runRequestTask(task: RequestTask): unknown {
  registerAll(task.keys);
  const outcome: RequestOutcome = runRequest(task.op, task.ring, task.body, (id) => keys.get(id), ctx);
  return outcome.type === 'error' ? outcome : moved(outcome, outcome.body);
}
