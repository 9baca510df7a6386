/**
 * Canonical text of each record type. Request records are built with their keys already in
 * canonical (sorted) order and written by JSON.stringify, which is then exactly RFC 8785 for them
 * (records.test.ts checks that against canonical.ts): the hot path pays for no sorting.
 */
import { canonicalJson } from './canonical.ts';
import type { AuditEvent, RequestEvent } from './record.ts';

/** What every record has besides its event fields. */
export interface RecordHead {
  chain: string;
  seq: number;
  /** ISO-8601 UTC with milliseconds. */
  time: string;
}

/**
 * A request record's canonical text cut where its `seq` goes: the text is `before + seq + after`.
 * Only the log knows the seq; everything else can be rendered by whoever holds the event, which
 * lets the serving thread send the audit thread text it only has to complete (audit-thread.ts),
 * instead of an event it would parse and serialize again.
 */
export type RequestTextAround = readonly [before: string, after: string];

/** {@link RequestTextAround} of `e`, in chain `chain` at `time` (ISO-8601, see {@link isoTime}). */
export function requestTextAround(e: RequestEvent, chain: string, time: string): RequestTextAround {
  const p = e.principal;
  // Two objects, each with its keys in canonical order: the members before `seq` and after it.
  const before = JSON.stringify({
    batch: e.batch === undefined ? undefined : { failed: e.batch.failed, ok: e.batch.ok },
    chain,
    clientRequestId: e.clientRequestId,
    key: e.key,
    latencyUs: e.latencyUs,
    namespace: e.namespace,
    operation: e.operation,
    outcome: e.outcome,
    principal: p === undefined ? undefined : { groups: p.groups, name: p.name, uid: p.uid },
    requestId: e.requestId,
  });
  const after = JSON.stringify({
    source: e.source,
    status: e.status,
    time,
    type: 'request',
    version: e.version,
  });
  // Both hold members (chain and source always), so '{...}' loses its brace and joins at a comma.
  return [`${before.slice(0, -1)},"seq":`, `,${after.slice(1)}`];
}

/** The canonical text of a request record rendered by {@link requestTextAround}, at `seq`. */
export function completeRequestText(around: RequestTextAround, seq: number): string {
  return `${around[0]}${seq}${around[1]}`;
}

let isoMs = Number.NaN;
let isoText = '';
/** ISO-8601 of `ms`, the form of a record's `time`; records of one millisecond share one formatting. */
export function isoTime(ms: number): string {
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

/** The canonical text of an event's record. */
export function eventText(e: AuditEvent, h: RecordHead): string {
  if (e.type === 'request') return completeRequestText(requestTextAround(e, h.chain, h.time), h.seq);
  return canonicalJson({ ...e, chain: h.chain, seq: h.seq, time: h.time });
}

/** The canonical text of a record of the log's own (segment, start, checkpoint). */
export function ownText(fields: Record<string, unknown>, h: RecordHead): string {
  return canonicalJson({ ...fields, chain: h.chain, seq: h.seq, time: h.time });
}
