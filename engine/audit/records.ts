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

function requestText(e: RequestEvent, h: RecordHead): string {
  const p = e.principal;
  return JSON.stringify({
    batch: e.batch === undefined ? undefined : { failed: e.batch.failed, ok: e.batch.ok },
    chain: h.chain,
    clientRequestId: e.clientRequestId,
    key: e.key,
    latencyUs: e.latencyUs,
    namespace: e.namespace,
    operation: e.operation,
    outcome: e.outcome,
    principal: p === undefined ? undefined : { groups: p.groups, name: p.name, uid: p.uid },
    requestId: e.requestId,
    seq: h.seq,
    source: e.source,
    status: e.status,
    time: h.time,
    type: 'request',
    version: e.version,
  });
}

/** The canonical text of an event's record. */
export function eventText(e: AuditEvent, h: RecordHead): string {
  if (e.type === 'request') return requestText(e, h);
  return canonicalJson({ ...e, chain: h.chain, seq: h.seq, time: h.time });
}

/** The canonical text of a record of the log's own (segment, start, checkpoint). */
export function ownText(fields: Record<string, unknown>, h: RecordHead): string {
  return canonicalJson({ ...fields, chain: h.chain, seq: h.seq, time: h.time });
}
