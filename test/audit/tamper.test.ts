/**
 * Issue #13's tamper cases, each detected at the right record: an edited byte, a deleted line, an
 * inserted line, two lines swapped, a truncated tail, a segment file removed, a checkpoint forged
 * without the key. The log is a real one written by AuditLog (three runs, rotated segments); each
 * case edits a copy the way an attacker with write access to the files would.
 */
import { appendFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyDir,
  findLines,
  masterKey,
  readLines,
  rechain,
  removeDir,
  segmentFiles,
  tempDir,
  verifyDir,
  writeLines,
  writeLog,
} from './fixtures.ts';

const { key: master } = masterKey();
let log: string;
const copies: string[] = [];

function copy(): { dir: string; files: string[] } {
  const dir = copyDir(log);
  copies.push(dir);
  return { dir, files: segmentFiles(dir) };
}

beforeAll(async () => {
  log = tempDir();
  // 3 runs of 60 events, checkpoints every 10 records, segments of ~8 KiB: several segments per run.
  await writeLog(log, master, { runs: 3, perRun: 60, checkpointRecords: 10, segmentBytes: 8 * 1024 });
});

afterAll(() => {
  removeDir(log);
  for (const d of copies) removeDir(d);
});

describe('an untouched log', () => {
  it('verifies, chain and MACs, across its segment files', async () => {
    const files = segmentFiles(log);
    expect(files.length).toBeGreaterThan(5);
    const r = await verifyDir(log, [master]);
    expect(r.finding).toBeUndefined();
    expect(r.valid).toBe(true);
    expect(r.records).toBe(files.reduce((n, f) => n + readLines(f).length, 0));
    expect(r.macsChecked).toBe(r.checkpoints);
    expect(r.checkpoints).toBeGreaterThan(18);
    expect(r.chains).toHaveLength(1);
    expect(r.chains[0]!.closed).toBe(true);
  });
});

describe('tamper cases', () => {
  it('an edited byte: the edited line, by its own hash', async () => {
    const { dir, files } = copy();
    const file = files[2]!;
    const lines = readLines(file);
    const at = findLines(file, (r) => r.type === 'request')[3]!;
    lines[at - 1] = lines[at - 1]!.replace('"key":"key-', '"key":"kez-');
    writeLines(file, lines);
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file, line: at });
    expect(r.finding!.message).toMatch(/hash does not match its content/);
    expect(r.finding!.kind).toBe('tampered');
  });

  it('an edited byte in the chain fields: that line', async () => {
    const { dir, files } = copy();
    const file = files[1]!;
    const lines = readLines(file);
    const at = 4;
    const flip = (c: string): string => (c === '0' ? '1' : '0');
    const l = lines[at - 1]!;
    const i = l.indexOf('"prev":"') + 10;
    lines[at - 1] = l.slice(0, i) + flip(l[i]!) + l.slice(i + 1);
    writeLines(file, lines);
    expect((await verifyDir(dir, [master])).finding).toMatchObject({ file, line: at });
  });

  it('a deleted line: where the gap is', async () => {
    const { dir, files } = copy();
    const file = files[3]!;
    const lines = readLines(file);
    lines.splice(5, 1); // line 6
    writeLines(file, lines);
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file, line: 6 });
    expect(r.finding!.message).toMatch(/1 record \(seq \d+\) missing/);
  });

  it('an inserted line (a copy of a real record): the inserted line', async () => {
    const { dir, files } = copy();
    const file = files[2]!;
    const lines = readLines(file);
    lines.splice(7, 0, readLines(files[1]!)[3]!); // becomes line 8
    writeLines(file, lines);
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file, line: 8 });
    expect(r.finding!.message).toMatch(/inserted, duplicated or moved/);
  });

  it('an inserted line that is not a record: that line', async () => {
    const { dir, files } = copy();
    const file = files[2]!;
    const lines = readLines(file);
    lines.splice(2, 0, '{"note":"nothing to see"}');
    writeLines(file, lines);
    expect((await verifyDir(dir, [master])).finding).toMatchObject({ file, line: 3 });
  });

  it('two lines swapped: the first of them', async () => {
    const { dir, files } = copy();
    const file = files[4]!;
    const lines = readLines(file);
    [lines[4], lines[5]] = [lines[5]!, lines[4]!]; // lines 5 and 6
    writeLines(file, lines);
    expect((await verifyDir(dir, [master])).finding).toMatchObject({ file, line: 5 });
  });

  it('a truncated tail past the last checkpoint: the new end, as an unclosed log', async () => {
    const { dir, files } = copy();
    const last = files.at(-1)!;
    const lines = readLines(last);
    // Cut the closing checkpoint and the records after the checkpoint before it.
    const checkpoints = findLines(last, (r) => r.type === 'checkpoint');
    const keep = checkpoints.at(-2)! + 1;
    writeLines(last, lines.slice(0, keep));
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file: last, line: keep });
    expect(r.finding!.message).toMatch(/without a closing checkpoint/);
    expect(r.finding!.kind).toBe('unclosed');
    // A live writer's log is accepted with --open, and says how much of it is not sealed yet.
    const open = await verifyDir(dir, [master], { open: true });
    expect(open.valid).toBe(true);
    expect(open.notes.join('\n')).toMatch(/1 record\(s\) after the last checkpoint/);
  });

  it('a tail truncated inside a line: that line', async () => {
    const { dir, files } = copy();
    const last = files.at(-1)!;
    truncateSync(last, statSync(last).size - 30);
    const r = await verifyDir(dir, [master]);
    const n = readLines(last).length;
    expect(r.finding).toMatchObject({ file: last, line: n });
    expect(r.finding!.message).toMatch(/incomplete line/);
  });

  it('a segment file removed from the middle: the first record after the gap', async () => {
    const { dir, files } = copy();
    rmSync(files[3]!);
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file: files[4], line: 1 });
    expect(r.finding!.message).toMatch(/missing .*removed segment file/);
  });

  it('the first segment file removed: the chain does not begin at its start', async () => {
    const { dir, files } = copy();
    rmSync(files[0]!);
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file: files[1], line: 1 });
    expect(r.finding!.message).toMatch(/begins at seq \d+, not at its start/);
    // Segments removed on purpose (retention) are accepted when the verifier is told so.
    expect((await verifyDir(dir, [master], { allowPruned: true })).valid).toBe(true);
  });

  it('a record edited and the chain rebuilt without the key: the next checkpoint', async () => {
    const { dir, files } = copy();
    const file = files[2]!;
    const lines = readLines(file);
    const at = findLines(file, (r) => r.type === 'request')[1]!;
    lines[at - 1] = lines[at - 1]!.replace('"outcome":"ok"', '"outcome":"PERMISSION_DENIED"');
    writeLines(file, lines);
    await rechain(files.slice(2), at);
    // The chain alone now looks whole ...
    const chainOnly = await verifyDir(dir, undefined);
    expect(chainOnly.valid).toBe(true);
    expect(chainOnly.notes.join('\n')).toMatch(/MACs not checked/);
    // ... but the first checkpoint after the edit cannot be re-keyed.
    const next = findLines(file, (r) => r.type === 'checkpoint').find((l) => l > at)!;
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file, line: next });
    expect(r.finding!.message).toMatch(/MAC does not match/);
  });

  it('a checkpoint forged without the key (records added after the close): the forged checkpoint', async () => {
    const { dir, files } = copy();
    const last = files.at(-1)!;
    const lines = readLines(last);
    // Append a fabricated request and a closing checkpoint with a made-up MAC, chained properly.
    const close = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    const fake = { ...JSON.parse(lines.at(-2)!), seq: (close.seq as number) + 1, key: 'forged' };
    const forged = { ...close, seq: (close.seq as number) + 2, records: 1, mac: 'ab'.repeat(32) };
    lines.push(JSON.stringify(fake), JSON.stringify(forged));
    writeLines(last, lines);
    await rechain([last], lines.length - 1);
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file: last, line: lines.length });
    expect(r.finding!.message).toMatch(/MAC does not match/);
  });

  it('the wrong master key: an error, not a verdict', async () => {
    const r = await verifyDir(log, [masterKey().key]);
    expect(r.valid).toBe(false);
    expect(r.finding).toBeUndefined();
    expect(r.error).toMatch(/no master key given matches key id/);
  });

  it('a cut line left by a crash is accounted for by the next run, and nowhere else', async () => {
    const { dir, files } = copy();
    const mid = files[2]!;
    appendFileSync(mid, '{"chain":"cut');
    const r = await verifyDir(dir, [master]);
    expect(r.finding).toMatchObject({ file: mid, line: readLines(mid).length });
    expect(r.finding!.message).toMatch(/incomplete line inside the log/);
  });
});
