/**
 * AuditLog's policies: checkpoints every N records and every T ms, segment rotation by size, the
 * chain continuing across runs (and across a cut line a crash left), a master key that arrives
 * after start (the cluster engine's case), and the stdout stream of cluster mode.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, MAX_PENDING_EVENTS } from '../../engine/audit/audit-log.ts';
import { SegmentSink, StreamSink } from '../../engine/audit/sinks.ts';
import { checkpointKeys, verifyFiles } from '../../engine/audit/verify-files.ts';
import { event, masterKey, readLines, removeDir, segmentFiles, tempDir, verifyDir } from './fixtures.ts';

const dirs: string[] = [];
const dir = (): string => {
  const d = tempDir();
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) removeDir(d);
});

const types = (file: string): string[] =>
  readLines(file).map((l) => {
    const r = JSON.parse(l) as { type: string; reason?: string };
    return r.reason ? `${r.type}:${r.reason}` : r.type;
  });

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('AuditLog', () => {
  it('checkpoints every N records, and at start and close', async () => {
    const d = dir();
    const { key } = masterKey();
    const log = await AuditLog.open({
      name: 'h',
      segments: new SegmentSink(d, 1 << 20),
      masterKey: () => key,
      checkpointRecords: 5,
      checkpointIntervalMs: 60_000,
    });
    for (let i = 0; i < 12; i++) await log.write(event(i));
    await log.close();
    const t = types(segmentFiles(d)[0]!);
    expect(t.slice(0, 3)).toEqual(['segment', 'start', 'checkpoint:start']);
    // 5 requests, a checkpoint, 5 more, a checkpoint, 2 more, the closing checkpoint.
    expect(t.slice(3)).toEqual([
      ...Array(5).fill('request'),
      'checkpoint:records',
      ...Array(5).fill('request'),
      'checkpoint:records',
      'request',
      'request',
      'checkpoint:close',
    ]);
    expect((await verifyDir(d, [key])).valid).toBe(true);
  });

  it('checkpoints every T ms when records are few, and not when there are none', async () => {
    const d = dir();
    const { key } = masterKey();
    const log = await AuditLog.open({
      name: 'h',
      segments: new SegmentSink(d, 1 << 20),
      masterKey: () => key,
      checkpointRecords: 1000,
      checkpointIntervalMs: 150,
    });
    await log.write(event(1));
    const file = segmentFiles(d)[0]!;
    await until('an interval checkpoint', () => types(file).includes('checkpoint:interval'));
    const after = types(file).length;
    await new Promise((r) => setTimeout(r, 400));
    expect(types(file).length).toBe(after); // nothing new to seal: no more checkpoints
    await log.close();
  });

  it('rotates segments by size, ending each with a checkpoint', async () => {
    const d = dir();
    const { key } = masterKey();
    const log = await AuditLog.open({
      name: 'h',
      segments: new SegmentSink(d, 4096),
      masterKey: () => key,
      checkpointRecords: 1000,
      checkpointIntervalMs: 60_000,
    });
    for (let i = 0; i < 60; i++) await log.write(event(i));
    await log.close();
    const files = segmentFiles(d);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files.slice(0, -1)) {
      expect(types(f).at(-1)).toBe('checkpoint:rotate');
      // A segment ends at the first batch past the limit: here one record of ~400 bytes.
      expect(readFileSync(f).length).toBeLessThan(4096 + 2048);
    }
    for (const f of files.slice(1)) expect(types(f)[0]).toBe('segment');
    expect((await verifyDir(d, [key])).valid).toBe(true);
  });

  it('goes on from a crashed run, accounting for the cut line it left', async () => {
    const d = dir();
    const { key } = masterKey();
    const open = () =>
      AuditLog.open({
        name: 'h',
        segments: new SegmentSink(d, 1 << 20),
        masterKey: () => key,
        checkpointIntervalMs: 60_000,
      });
    const first = await open();
    for (let i = 0; i < 3; i++) await first.write(event(i));
    // A crash in the middle of a write: the process is gone and half a line is on disk.
    const cut = '{"chain":"h/0000","key":"half-writ';
    appendFileSync(segmentFiles(d)[0]!, cut);
    const second = await open();
    expect(second.chain).toBe(first.chain);
    await second.write(event(3));
    await second.close();
    const files = segmentFiles(d);
    expect(files).toHaveLength(2);
    const head = JSON.parse(readLines(files[1]!)[0]!) as { type: string; tornBytes: number };
    expect(head).toMatchObject({ type: 'segment', tornBytes: Buffer.byteLength(cut) });
    const r = await verifyDir(d, [key]);
    expect(r.finding).toBeUndefined();
    expect(r.valid).toBe(true);
    expect(r.notes.join('\n')).toMatch(/ended without closing the log/);
  });

  it('writes its first checkpoint once the master key is known', async () => {
    const d = dir();
    const { key } = masterKey();
    let known: typeof key | undefined;
    const log = await AuditLog.open({
      name: 'h',
      segments: new SegmentSink(d, 1 << 20),
      masterKey: () => known,
      checkpointRecords: 3,
      checkpointIntervalMs: 60_000,
    });
    for (let i = 0; i < 4; i++) await log.write(event(i));
    expect(types(segmentFiles(d)[0]!).filter((t) => t.startsWith('checkpoint'))).toEqual([]);
    known = key;
    await log.write(event(4));
    await log.close();
    const t = types(segmentFiles(d)[0]!);
    // The first checkpoint counts every record since the start, so it seals them all.
    const first = readLines(segmentFiles(d)[0]!).find((l) => l.includes('"type":"checkpoint"'))!;
    expect(JSON.parse(first).records).toBe(7);
    expect(t.at(-1)).toBe('checkpoint:close');
    expect((await verifyDir(d, [key])).valid).toBe(true);
  });

  it('writes one JSON line per record to a stream (cluster mode), verifiable on its own', async () => {
    const { key } = masterKey();
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => {
      text += c.toString();
    });
    const log = await AuditLog.open({
      name: 'engine-0',
      streams: [new StreamSink(out)],
      masterKey: () => key,
      checkpointIntervalMs: 60_000,
    });
    for (let i = 0; i < 5; i++) log.record(event(i));
    await log.close();
    expect(log.chain).toMatch(/^engine-0\/[0-9a-f]{8}$/);
    const lines = text.trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).type)).toEqual([
      'start',
      'checkpoint',
      ...Array(5).fill('request'),
      'checkpoint',
    ]);
    // A collector's file with other output in it, as `kubectl logs` gives it.
    const d = dir();
    const file = join(d, 'engine-0.log');
    appendFileSync(file, `{"url":"https://127.0.0.1:7443"}\n${text}`);
    const r = await verifyFiles([file], {
      keys: await checkpointKeys([key]),
      open: false,
      allowPruned: false,
      skipForeignLines: true,
    });
    expect(r).toMatchObject({ valid: true, skippedLines: 1, records: 8 });
  });

  it('caps what waits behind a write that never returns (a reader that stopped reading)', async () => {
    // A stand-in for a stdout pipe whose reader was stopped: writes after the opening one never end.
    let writes = 0;
    const stuck = new Writable({
      write(_chunk, _enc, done) {
        if (writes++ === 0) done();
      },
    });
    const log = await AuditLog.open({
      name: 'stuck',
      streams: [new StreamSink(stuck)],
      masterKey: () => undefined,
      checkpointIntervalMs: 60_000,
    });
    log.record(event(0));
    await until('the write to hang', () => writes === 2);
    for (let i = 0; i < MAX_PENDING_EVENTS + 5; i++) log.record(event(i));
    expect(log.stats.dropped).toBe(5);
    await expect(log.write(event(1))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
