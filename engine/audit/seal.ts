/**
 * Sealing: turns a batch of queued events into chained lines (canonical text, a BLAKE3 leaf and
 * link each), with keyed checkpoints where the policy says. Pure but for the shared hasher: the
 * caller commits the chain state it returns only once the lines are written (audit-log.ts).
 */
import type { ChainHasher } from './chain.ts';
import { recordLine } from './chain.ts';
import type { CheckpointKey } from './checkpoint-key.ts';
import type { AuditEvent } from './record.ts';
import {
  completeRequestText,
  eventText,
  isoTime,
  ownText,
  type RecordHead,
  type RequestTextAround,
} from './records.ts';

/** Why a checkpoint was written (docs/audit.md "Checkpoints"). */
export type CheckpointReason = 'start' | 'records' | 'interval' | 'rotate' | 'close';

/** One queued entry: an event, a record of the log's own, or a checkpoint. */
export interface Pending {
  event?: AuditEvent;
  /** Or a request record already rendered around its seq (records.ts `requestTextAround`). */
  text?: RequestTextAround;
  /** A record of the log's own (segment, start). */
  own?: Record<string, unknown>;
  /** A checkpoint, with its reason. */
  checkpoint?: CheckpointReason;
  time: number;
  resolve?: () => void;
  reject?: (err: Error) => void;
}

/** The chain's state where a batch begins. */
export interface ChainState {
  chain: string;
  /** The seq the next record gets. */
  seq: number;
  /** The hash of the last record (or the genesis `prev`). */
  head: string;
  /** Records since the last checkpoint. */
  since: number;
}

/** A sealed batch: its lines, and the chain state after each line (to commit a prefix). */
export interface Sealed {
  lines: string[];
  owners: Array<Pending | undefined>;
  /** Chain state after each line. */
  heads: string[];
  sinces: number[];
  /** Per line: true for a checkpoint. */
  checkpoints: boolean[];
  /** True when the batch holds a checkpoint: the segment file is synced after it. */
  sync: boolean;
}

/**
 * Seals `batch` after `state` (no await inside: the hasher is shared). Without a checkpoint key
 * (the master key not known yet), checkpoints are left out; the first one after it seals every
 * record before it. `every` is the records-per-checkpoint policy.
 */
export function sealBatch(
  batch: readonly Pending[],
  state: ChainState,
  every: number,
  hasher: ChainHasher,
  key: CheckpointKey | undefined,
): Sealed {
  const s: Sealed = { lines: [], owners: [], heads: [], sinces: [], checkpoints: [], sync: false };
  const chain = state.chain;
  let { head, seq, since } = state;
  const add = (text: string, owner: Pending | undefined, checkpoint: boolean): void => {
    const hash = hasher.hash(head, text);
    s.lines.push(`${recordLine(text, hash, head)}\n`);
    s.owners.push(owner);
    s.heads.push(hash);
    s.sinces.push(since);
    s.checkpoints.push(checkpoint);
    head = hash;
    seq++;
  };
  const checkpoint = (reason: CheckpointReason, time: number): void => {
    if (key === undefined) return;
    const h: RecordHead = { chain, seq, time: isoTime(time) };
    const fields = { type: 'checkpoint', reason, records: since, keyId: key.id };
    const mac = key.mac(head, ownText(fields, h));
    since = 0;
    add(ownText({ ...fields, mac }, h), undefined, true);
    s.sync = true;
  };
  for (const p of batch) {
    if (p.checkpoint !== undefined) {
      // An interval checkpoint with nothing new to seal is left out; the others always mark.
      if (p.checkpoint !== 'interval' || since > 0) checkpoint(p.checkpoint, p.time);
      continue;
    }
    // A segment record restarts the count: a crashed run's unsealed records are not known to
    // the next run, and the count is a consistency check only (the MAC covers the whole chain).
    if (p.own?.type === 'segment') since = 0;
    since++;
    let text: string;
    if (p.text !== undefined) text = completeRequestText(p.text, seq);
    else {
      const h: RecordHead = { chain, seq, time: isoTime(p.time) };
      text = p.event !== undefined ? eventText(p.event, h) : ownText(p.own!, h);
    }
    add(text, p, false);
    if (since >= every) checkpoint('records', p.time);
  }
  return s;
}

/**
 * How many of `s`'s lines a write that stopped after `written` bytes left whole, and the length of
 * the cut line after them (what the next segment record reports as `tornBytes`).
 */
export function wholeLines(s: Sealed, written: number): { kept: number; torn: number } {
  let kept = 0;
  let bytes = 0;
  while (kept < s.lines.length) {
    const next = bytes + Buffer.byteLength(s.lines[kept]!);
    if (next > written) break;
    bytes = next;
    kept++;
  }
  return { kept, torn: written - bytes };
}
