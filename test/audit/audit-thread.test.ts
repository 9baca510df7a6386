/**
 * The audit log on its own thread (engine/audit/audit-thread.ts), as both engine modes run it:
 * the serving thread only queues events, the audit thread seals and writes them. What callers
 * rely on must hold across the thread boundary: order, the callers' times, `write` meaning
 * "written", the checkpoint key following the master key, and a dead thread refusing rather than
 * pretending.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditThread } from '../../engine/audit/audit-thread.ts';
import { checkpointKeyMaterial, type MasterKeyInput } from '../../engine/audit/checkpoint-key.ts';
import { FdSink, pipeChunks, SinkWriteError } from '../../engine/audit/sinks.ts';
import { event, masterKey, removeDir, segmentFiles, tempDir, verifyDir } from './fixtures.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) removeDir(d);
});

function open(
  dir: string,
  master: () => MasterKeyInput | undefined,
  checkpointRecords = 50,
): Promise<AuditThread> {
  return AuditThread.open(
    {
      name: 'thread-test',
      dir,
      segmentBytes: 64 * 1024 * 1024,
      stdout: false,
      checkpointRecords,
      checkpointIntervalMs: 60_000,
    },
    { masterKey: master },
  );
}

function records(dir: string): Array<Record<string, unknown>> {
  return segmentFiles(dir).flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  );
}

describe('the audit thread', () => {
  it('loads its modules pre-stripped, without a TypeScript stripper of its own (issue #16)', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const m = masterKey();
    const log = await open(dir, () => m.key);
    for (let i = 0; i < 200; i++) log.record(event(i));
    await log.flush();
    // Node's stripper is a WebAssembly module of about 10 MiB in each thread that loads a .ts
    // file: with it the thread's external memory was 10.7 MB after opening, without it 3.9
    // (hash-wasm's memory and little else).
    expect(log.memory.external).toBeGreaterThan(0);
    expect(log.memory.external).toBeLessThan(6 * 1024 * 1024);
    expect(log.memory.total).toBeGreaterThan(log.memory.used);
    expect(log.memory.spaces.new_space).toBeGreaterThan(0);
    await log.close();
  });

  it('writes records in the order queued, with the times the caller gave, and the chain verifies', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const m = masterKey();
    const log = await open(dir, () => m.key);
    const base = Date.parse('2026-01-02T03:04:05.000Z');
    const waits: Array<Promise<void>> = [];
    for (let i = 0; i < 400; i++) {
      if (i % 50 === 49) waits.push(log.write(event(i), base + i));
      else log.record(event(i), base + i);
    }
    // A write resolves only once its record is in the segment file.
    await waits[0];
    expect(records(dir).some((r) => r.requestId === 'req-49')).toBe(true);
    await Promise.all(waits);
    await log.flush();
    expect(log.stats.written).toBeGreaterThanOrEqual(400);
    await log.close();

    const requests = records(dir).filter((r) => r.type === 'request');
    expect(requests.map((r) => r.requestId)).toEqual(Array.from({ length: 400 }, (_, i) => `req-${i}`));
    expect(requests.map((r) => r.time)).toEqual(
      Array.from({ length: 400 }, (_, i) => new Date(base + i).toISOString()),
    );
    const report = await verifyDir(dir, [m.key]);
    expect(report.finding).toBeUndefined();
    expect(report.valid).toBe(true);
    expect(log.healthy).toBe(false); // closed
  });

  it('keys checkpoints once the master key is known, and follows it when it changes', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = masterKey();
    const second = masterKey();
    let current: MasterKeyInput | undefined;
    const log = await open(dir, () => current, 10);
    for (let i = 0; i < 15; i++) log.record(event(i));
    await log.flush();
    expect(records(dir).filter((r) => r.type === 'checkpoint')).toEqual([]);
    current = first.key;
    for (let i = 15; i < 30; i++) log.record(event(i));
    await log.flush();
    current = second.key;
    for (let i = 30; i < 45; i++) log.record(event(i));
    await log.close();

    const ids = new Set(
      records(dir)
        .filter((r) => r.type === 'checkpoint')
        .map((r) => r.keyId),
    );
    expect(ids).toEqual(new Set([checkpointKeyMaterial(first.key).id, checkpointKeyMaterial(second.key).id]));
    const report = await verifyDir(dir, [first.key, second.key]);
    expect(report.finding).toBeUndefined();
    expect(report.valid).toBe(true);
    // The master key itself never crosses: no record holds its bytes in any form.
    const text = segmentFiles(dir)
      .map((f) => readFileSync(f, 'utf8'))
      .join('');
    for (const raw of [first.raw, second.raw]) {
      expect(text).not.toContain(raw.toString('hex'));
      expect(text).not.toContain(raw.toString('base64'));
    }
  });

  it('when the thread dies, the log is unhealthy, writes are refused and records are counted as dropped', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const m = masterKey();
    const log = await open(dir, () => m.key);
    await log.write(event(1));
    expect(log.healthy).toBe(true);
    await log.kill();
    expect(log.healthy).toBe(false);
    await expect(log.write(event(2))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const before = log.stats.dropped;
    log.record(event(3));
    expect(log.stats.dropped).toBe(before + 1);
    await log.flush(); // returns: nothing is left to wait for
    await log.close();
  });

  it('refuses to open, as the log on the serving thread does, where it cannot write', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    await expect(open(join(file, 'audit'), () => undefined)).rejects.toThrow(/ENOTDIR|not a directory/);
  });
});

describe('FdSink (the audit thread writes stdout itself)', () => {
  const lines = Array.from({ length: 300 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat((i * 37) % 900)}"}`);
  lines.splice(150, 0, `{"long":"${'y'.repeat(10_000)}"}`); // longer than one pipe write
  const data = Buffer.from(`${lines.join('\n')}\n`);

  it('cuts lines into writes of at most 4096 bytes that end at a line end (a longer line alone)', () => {
    const chunks = pipeChunks(data);
    expect(Buffer.concat(chunks)).toEqual(data);
    expect(chunks.length).toBeGreaterThan(data.length / 4096);
    for (const chunk of chunks) {
      expect(chunk.at(-1)).toBe(0x0a);
      if (chunk.length > 4096) expect(chunk.toString()).toMatch(/^\{"long":"y+"\}\n$/);
    }
  });

  it('writes every byte to its file descriptor', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir, 'out.jsonl');
    const fd = openSync(file, 'w');
    try {
      await new FdSink(fd, 'test').write(data);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file)).toEqual(data);
  });

  it('fails, saying how much got through, when the reader stops reading (a full pipe), instead of waiting forever', async () => {
    // A child that never reads its stdin: the pipe fills after 64 KiB and writes get EAGAIN.
    const child = spawn('sleep', ['30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
      const big = Buffer.from(`${'z'.repeat(999)}\n`.repeat(1024)); // 1000 KiB of lines
      const started = Date.now();
      const err = await new FdSink(fd, 'stdout', 300).write(big).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SinkWriteError);
      expect((err as SinkWriteError).message).toMatch(/not read for 300 ms/);
      const written = (err as SinkWriteError).written;
      expect(written).toBeGreaterThan(0);
      expect(written).toBeLessThan(big.length);
      expect(written % 1000).toBe(0); // whole lines only: each write ends at a line's end
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
