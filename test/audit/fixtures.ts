/**
 * Test helpers of the audit suites: a real audit log written by AuditLog into a temp directory,
 * line-level edits of its segment files, and the attacker's tool (re-chaining lines with the
 * public algorithm, which needs no key).
 */
import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../engine/audit/audit-log.ts';
import { canonicalJson, withoutChainFields } from '../../engine/audit/canonical.ts';
import { ChainHasher, recordLine } from '../../engine/audit/chain.ts';
import type { RequestEvent } from '../../engine/audit/record.ts';
import { SegmentSink } from '../../engine/audit/sinks.ts';
import type { VerifyOptions, VerifyReport } from '../../engine/audit/verify.ts';
import { checkpointKeys, expandInputs, verifyFiles } from '../../engine/audit/verify-files.ts';

export function tempDir(prefix = 'keyward-audit-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function masterKey(): { raw: Buffer; key: KeyObject } {
  const raw = randomBytes(32);
  return { raw, key: createSecretKey(raw) };
}

/** A request event with a recognizable key name. */
export function event(i: number, over: Partial<RequestEvent> = {}): RequestEvent {
  return {
    type: 'request',
    requestId: `req-${i}`,
    principal: { name: 'admin' },
    source: '127.0.0.1',
    namespace: 'default',
    key: `key-${i}`,
    version: 1,
    operation: 'encrypt',
    outcome: 'ok',
    status: 200,
    latencyUs: 100 + i,
    ...over,
  };
}

/** Writes `runs` runs of `perRun` events each into `dir` (closed cleanly unless `close` is false). */
export async function writeLog(
  dir: string,
  master: KeyObject,
  o: {
    runs?: number;
    perRun?: number;
    checkpointRecords?: number;
    segmentBytes?: number;
    close?: boolean;
  } = {},
): Promise<void> {
  let n = 0;
  for (let run = 0; run < (o.runs ?? 1); run++) {
    const log = await AuditLog.open({
      name: 'test-host',
      segments: new SegmentSink(dir, o.segmentBytes ?? 64 * 1024 * 1024),
      masterKey: () => master,
      checkpointRecords: o.checkpointRecords ?? 10,
      checkpointIntervalMs: 60_000,
    });
    for (let i = 0; i < (o.perRun ?? 40); i++) {
      // Awaited one by one in groups, so that segments can rotate between batches.
      if (i % 5 === 4) await log.write(event(n++));
      else log.record(event(n++));
    }
    if (o.close !== false) await log.close();
    else await log.write(event(n++));
  }
}

/** A copy of a log directory, to tamper with. */
export function copyDir(dir: string): string {
  const to = tempDir('keyward-audit-copy-');
  cpSync(dir, to, { recursive: true });
  return to;
}

export function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.jsonl'))
    .sort()
    .map((n) => join(dir, n));
}

export function readLines(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

export function writeLines(file: string, lines: string[]): void {
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
}

/** Line numbers (1-based) of records matching `pred` in a file. */
export function findLines(file: string, pred: (rec: Record<string, unknown>) => boolean): number[] {
  return readLines(file).flatMap((l, i) => (pred(JSON.parse(l) as Record<string, unknown>) ? [i + 1] : []));
}

/**
 * What an attacker who can write the log but lacks the master key can do: recompute `prev` and
 * `hash` of every record from line `fromLine` of `files[0]` to the end of the last file, so the
 * chain is consistent again (checkpoint MACs are copied as they are: they cannot be recomputed).
 */
export async function rechain(files: string[], fromLine: number): Promise<void> {
  const h = await ChainHasher.create();
  let prev: string | undefined;
  for (const [f, file] of files.entries()) {
    const lines = readLines(file);
    const start = f === 0 ? fromLine - 1 : 0;
    prev ??= (JSON.parse(lines[start - 1]!) as { hash: string }).hash;
    for (let i = start; i < lines.length; i++) {
      const rec = JSON.parse(lines[i]!) as Record<string, unknown>;
      const canonical = canonicalJson(withoutChainFields(rec));
      const hash = h.link(prev, h.leaf(canonical));
      lines[i] = recordLine(canonical, hash, prev);
      prev = hash;
    }
    writeLines(file, lines);
  }
}

/** Verifies a directory with the library (the CLI has its own test). */
export async function verifyDir(
  dir: string,
  masters: KeyObject[] | undefined,
  o: Partial<Omit<VerifyOptions, 'keys'>> = {},
): Promise<VerifyReport> {
  return verifyFiles(await expandInputs([dir]), {
    keys: masters === undefined ? undefined : await checkpointKeys(masters),
    open: o.open ?? false,
    allowPruned: o.allowPruned ?? false,
    skipForeignLines: o.skipForeignLines ?? false,
  });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
