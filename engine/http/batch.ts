/**
 * The batch routes: each item is validated and decoded on its own, the good ones go to the
 * backend in one call, and the results come back in request order. One bad item never fails the
 * others; key-level refusals (no such key, disabled, wrong region, wrong usage) fail the whole
 * request, and come first whatever the items hold: the backend is asked even when no item is valid.
 */
import type { BatchInputs, BatchOperation } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { fromWire } from '../pool/request-runner.ts';
import { BATCH_BODY, batchItemError, decodeBatchItem, encodeBatchOutput } from '../wire/batch-items.ts';
import { parseJsonBody } from '../wire/json-body.ts';
import { check } from '../wire/validate.ts';
import { releaseBuffer } from './release-buffer.ts';
import type { RouteContext } from './routes.ts';

/**
 * Runs one batch request; returns `{results}` in request order, or, when the route got the raw
 * body (`ctx.raw`), the response body the worker serialized.
 */
export async function runBatch(
  ctx: RouteContext,
  op: BatchOperation,
): Promise<{ results: object[] } | Buffer> {
  if (ctx.raw !== undefined) return runInWorker(ctx, op, ctx.raw);
  const requests = ctx.body.requests as unknown[];
  const results: Array<object | undefined> = new Array(requests.length);
  const good: BatchInputs[BatchOperation][] = [];
  const slots: number[] = [];
  const counts = new Map<string, number>();
  const tally = (result: string): void => {
    counts.set(result, (counts.get(result) ?? 0) + 1);
  };
  for (let i = 0; i < requests.length; i++) {
    try {
      good.push(decodeBatchItem(op, requests[i]));
      slots.push(i);
    } catch (err) {
      const result = batchItemError(err);
      results[i] = result;
      tally(result.error.code);
    }
  }
  ctx.observeBatch(op, requests.length);
  try {
    const out = await ctx.backend.batch(ctx.namespace, ctx.name, op, good);
    for (let j = 0; j < out.length; j++) {
      const r = out[j]!;
      const slot = slots[j]!;
      if (r.ok) {
        results[slot] = encodeBatchOutput(op, r.value);
        tally('ok');
      } else {
        results[slot] = { error: r.error.toJSON() };
        tally(r.error.code);
      }
    }
  } catch (err) {
    ctx.count(op, err instanceof KeywardError ? err.code : 'INTERNAL', requests.length);
    throw err;
  }
  for (const [result, n] of counts) ctx.count(op, result, n);
  ctx.noteBatch(counts.get('ok') ?? 0, requests.length - (counts.get('ok') ?? 0));
  return { results: results as object[] };
}

/**
 * The same request, parsed, checked, run and serialized in a worker (issue #15): this thread does
 * no per-item work. What the main-thread path above gives, this gives too: the body's own errors
 * before a key refusal, per-item errors in `results`, metrics per item and result, the audit's
 * batch counts.
 */
async function runInWorker(ctx: RouteContext, op: BatchOperation, raw: Buffer): Promise<Buffer> {
  let outcome: Awaited<ReturnType<RouteContext['backend']['batchRequest']>>;
  try {
    outcome = await ctx.backend.batchRequest(ctx.namespace, ctx.name, op, raw);
  } catch (err) {
    // Refused before the body was looked at (no such key, not Enabled, wrong usage, overloaded).
    // On the main thread the body is checked first, and a refusal counts every item: so here.
    const requests = checkedRequests(raw);
    ctx.observeBatch(op, requests.length);
    ctx.count(op, err instanceof KeywardError ? err.code : 'INTERNAL', requests.length);
    throw err;
  } finally {
    raw.fill(0); // it may hold plaintexts
    releaseBuffer(raw);
  }
  if (outcome.type === 'error') throw fromWire(outcome.error);
  ctx.observeBatch(op, outcome.items);
  for (const [result, n] of Object.entries(outcome.results)) ctx.count(op, result, n);
  const ok = outcome.results.ok ?? 0;
  ctx.noteBatch(ok, outcome.items - ok);
  const body = Buffer.from(outcome.body);
  // Decrypted plaintexts are in it: zeroed once it has been handed to the socket.
  ctx.releaseAfterSend(body, { wipe: op === 'decrypt' });
  return body;
}

/** A raw batch body's items, or its error (the body's JSON and shape), as the server checks them. */
function checkedRequests(raw: Buffer): unknown[] {
  const value = parseJsonBody(raw.toString('utf8'));
  const err = check(BATCH_BODY, value);
  if (err) throw err;
  return (value as { requests: unknown[] }).requests;
}
