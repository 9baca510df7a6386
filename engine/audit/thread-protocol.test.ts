import { describe, expect, it } from 'vitest';
import type { RequestEvent } from './record.ts';
import { completeRequestText, eventText, requestTextAround } from './records.ts';
import { decodeEntries, eventEntry, textEntry } from './thread-protocol.ts';

const request: RequestEvent = {
  type: 'request',
  requestId: 'r-1',
  // A caller's id may hold the framing's own characters; JSON escapes them.
  clientRequestId: 'a\nb\u0001c"d',
  source: '127.0.0.1',
  namespace: 'default',
  key: 'k\u0001ey',
  operation: 'encrypt',
  outcome: 'ok',
  status: 200,
  latencyUs: 12,
  principal: { name: 'sa\nname', uid: 'u', groups: ['g1', 'g\u00012'] },
  batch: { ok: 2, failed: 1 },
  version: 3,
};

describe('the audit thread protocol', () => {
  it('reads back every entry of a batch in order, rendered text and JSON events alike', () => {
    const around = requestTextAround(request, 'chain-1', '2026-01-01T00:00:00.000Z');
    const other = { type: 'operator', action: 'x\ny\u0001z' };
    const batch = [textEntry(1, 0, around), eventEntry(2, 7, other), textEntry(3, 9, around)].join('\n');
    const entries = decodeEntries(batch);
    expect(entries).toEqual([
      { time: 1, id: 0, text: [around[0], around[1]] },
      { time: 2, id: 7, event: other },
      { time: 3, id: 9, text: [around[0], around[1]] },
    ]);
  });

  it('completes rendered text into exactly the record text the log would seal from the event', () => {
    const h = { chain: 'chain-1', seq: 41, time: '2026-01-01T00:00:00.000Z' };
    const around = requestTextAround(request, h.chain, h.time);
    const [decoded] = decodeEntries(textEntry(1, 0, around));
    expect(completeRequestText(decoded!.text!, h.seq)).toBe(eventText(request, h));
    expect(JSON.parse(completeRequestText(decoded!.text!, h.seq))).toMatchObject({
      seq: 41,
      key: 'k\u0001ey',
    });
  });
});
