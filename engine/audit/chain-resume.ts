/**
 * Where a log begins: a new chain, or the chain of existing segment files continued from their
 * last complete record (standalone, and cluster mode with --audit-dir), so a data dir keeps one
 * chain across restarts and crashes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { GENESIS_PREV, HASH_HEX } from './chain.ts';
import type { ChainState } from './seal.ts';
import type { SegmentSink } from './sinks.ts';

/** The chain to continue, and the bytes of a cut line the last segment ends with. */
export interface ResumedChain extends ChainState {
  tornBytes: number;
}

/**
 * A new chain is `<name>/<8 hex>`, so that runs never share a name; a chain continued from
 * `segments` keeps its name. A damaged last record starts a new chain (verify shows the break).
 */
export async function resumeChain(
  name: string,
  segments: SegmentSink | undefined,
  log: Logger | undefined,
): Promise<ResumedChain> {
  const fresh: ResumedChain = {
    chain: `${name}/${randomBytes(4).toString('hex')}`,
    seq: 0,
    head: GENESIS_PREV,
    since: 0,
    tornBytes: 0,
  };
  if (segments === undefined) return fresh;
  let tail: Awaited<ReturnType<SegmentSink['tail']>>;
  try {
    tail = await segments.tail();
  } catch (err) {
    log?.error(
      { dir: segments.dir, err: (err as Error).message },
      'the last audit record is damaged; a new chain begins (audit verify will show the break)',
    );
    return fresh;
  }
  const last = tail?.last;
  if (
    last === undefined ||
    typeof last.chain !== 'string' ||
    !Number.isSafeInteger(last.seq) ||
    typeof last.hash !== 'string' ||
    !HASH_HEX.test(last.hash)
  ) {
    return fresh;
  }
  const tornBytes = tail?.tornBytes ?? 0;
  if (last.type !== 'checkpoint' || last.reason !== 'close') {
    log?.warn(
      { dir: segments.dir, lastSeq: last.seq, tornBytes },
      'the previous run did not close the audit log (a crash or kill); the chain goes on from its last complete record',
    );
  }
  return { chain: last.chain, seq: (last.seq as number) + 1, head: last.hash, since: 0, tornBytes };
}
