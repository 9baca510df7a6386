/**
 * The batch routes: each item is validated and decoded on its own, the good ones go to the
 * backend in one call, and the results come back in request order. One bad item never fails the
 * others; key-level refusals (no such key, disabled, wrong region, wrong usage) fail the whole
 * request, and come first whatever the items hold: the backend is asked even when no item is valid.
 */
import type { SignatureAlgorithm } from '../crypto/signing.ts';
import { KeywardError } from '../errors.ts';
import type { BatchInputs, BatchOperation, BatchOutputs } from '../service/backend.ts';
import { decodeBase64, decodeOptional } from './base64.ts';
import type { RouteContext } from './routes.ts';
import { batchItemSchemas } from './schemas.ts';
import { check } from './validate.ts';

type Item = Record<string, unknown>;
type ErrorResult = { error: ReturnType<KeywardError['toJSON']> };

function decodeItem<O extends BatchOperation>(op: O, item: Item): BatchInputs[O] {
  const s = (k: string): string | undefined => item[k] as string | undefined;
  switch (op) {
    case 'encrypt':
      return {
        plaintext: decodeBase64(s('plaintext') ?? '', 'plaintext'),
        aad: decodeOptional(s('aad'), 'aad'),
        context: decodeOptional(s('context'), 'context'),
      } as unknown as BatchInputs[O];
    case 'decrypt':
    case 're-encrypt':
      return {
        ciphertext: s('ciphertext') ?? '',
        aad: decodeOptional(s('aad'), 'aad'),
        context: decodeOptional(s('context'), 'context'),
      } as unknown as BatchInputs[O];
    default:
      return {
        data: decodeBase64(s('data') ?? '', 'data'),
        prehashed: item.prehashed as boolean | undefined,
        algorithm: s('algorithm') as SignatureAlgorithm | undefined, // the item schema allows only these
        ...(op === 'verify' ? { signature: s('signature') ?? '' } : {}),
      } as unknown as BatchInputs[O];
  }
}

function encodeOutput(op: BatchOperation, value: BatchOutputs[BatchOperation]): object {
  if (op === 'decrypt') {
    // Encoded, then wiped: the response string is all that is left of the plaintext here.
    const plaintext = (value as BatchOutputs['decrypt']).plaintext;
    const text = plaintext.toString('base64');
    plaintext.fill(0);
    return { plaintext: text };
  }
  return value;
}

/** Runs one batch request; returns `{results}` in request order. */
export async function runBatch(ctx: RouteContext, op: BatchOperation): Promise<{ results: object[] }> {
  const requests = ctx.body.requests as unknown[];
  const schema = batchItemSchemas[op];
  const results: Array<object | undefined> = new Array(requests.length);
  const good: BatchInputs[BatchOperation][] = [];
  const slots: number[] = [];
  const counts = new Map<string, number>();
  const tally = (result: string): void => {
    counts.set(result, (counts.get(result) ?? 0) + 1);
  };
  for (let i = 0; i < requests.length; i++) {
    try {
      const err = check(schema, requests[i]);
      if (err) throw err;
      good.push(decodeItem(op, requests[i] as Item));
      slots.push(i);
    } catch (err) {
      const e = err instanceof KeywardError ? err : new KeywardError('INVALID_ARGUMENT', 'invalid item');
      results[i] = { error: e.toJSON() } satisfies ErrorResult;
      tally(e.code);
    }
  }
  ctx.observeBatch(op, requests.length);
  try {
    const out = await ctx.backend.batch(ctx.namespace, ctx.name, op, good);
    for (let j = 0; j < out.length; j++) {
      const r = out[j]!;
      const slot = slots[j]!;
      if (r.ok) {
        results[slot] = encodeOutput(op, r.value);
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
  return { results: results as object[] };
}
