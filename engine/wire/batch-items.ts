/**
 * One batch item's rules (PRODUCT.md §6), pure, so the main thread and the workers that run whole
 * batch requests (engine/pool/request-runner.ts) apply the same ones: each item is checked against
 * the body schema of the single route and decoded on its own (one bad item fails only itself), and
 * each output is encoded as the single route answers.
 */
import type { SignatureAlgorithm } from '../crypto/signing.ts';
import type { BatchInputs, BatchOperation, BatchOutputs } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { decodeBase64, decodeOptional } from './base64.ts';
import { batchBody, batchItemSchemas } from './schemas.ts';
import { check } from './validate.ts';

type Item = Record<string, unknown>;

/** An item's error as it appears in `results`. */
export interface ItemErrorResult {
  error: ReturnType<KeywardError['toJSON']>;
}

/** The schema of a whole batch body (the items are checked one by one). */
export const BATCH_BODY = batchBody();

/** Checks and decodes one item; throws its KeywardError (INVALID_ARGUMENT, PAYLOAD_TOO_LARGE). */
export function decodeBatchItem<O extends BatchOperation>(op: O, item: unknown): BatchInputs[O] {
  const err = check(batchItemSchemas[op], item);
  if (err) throw err;
  const fields = item as Item;
  const s = (k: string): string | undefined => fields[k] as string | undefined;
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
        prehashed: fields.prehashed as boolean | undefined,
        algorithm: s('algorithm') as SignatureAlgorithm | undefined, // the item schema allows only these
        ...(op === 'verify' ? { signature: s('signature') ?? '' } : {}),
      } as unknown as BatchInputs[O];
  }
}

/** An item's result: its output as the single route gives it (decrypted bytes encoded, then wiped). */
export function encodeBatchOutput(op: BatchOperation, value: BatchOutputs[BatchOperation]): object {
  if (op === 'decrypt') {
    // Encoded, then wiped: the response text is all that is left of the plaintext.
    const plaintext = (value as BatchOutputs['decrypt']).plaintext;
    const text = plaintext.toString('base64');
    plaintext.fill(0);
    return { plaintext: text };
  }
  return value;
}

/** An item's error result; anything that is not a KeywardError says only "invalid item". */
export function batchItemError(err: unknown): ItemErrorResult {
  const e = err instanceof KeywardError ? err : new KeywardError('INVALID_ARGUMENT', 'invalid item');
  return { error: e.toJSON() };
}
