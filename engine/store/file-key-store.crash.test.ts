/**
 * kill -9 during writes loses nothing acknowledged and tears nothing (PRODUCT.md §10). A child
 * process rewrites keys in a tight loop and prints each acknowledged write; we kill it at a
 * random moment, reopen the store and check every record. (kill -9 keeps the page cache, so this
 * proves atomicity of the rename protocol; power-loss durability rests on the fsyncs.)
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileKeyStore } from './file-key-store.ts';
import { crashRecord } from './fixtures/crash-record.ts';

const WRITER = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));
const KEYS = 4;
const ROUNDS = 8;
const ROUND_SPAN = 1_000_000;

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-crash-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

interface RoundResult {
  /** Last acknowledged put per key name. */
  acked: Map<string, number>;
  created: Set<string>;
}

/** Runs the writer until it has acknowledged `killAfter` puts, then kills it with SIGKILL. */
function runAndKill(firstSeq: number, killAfter: number): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    // process.execPath is the pinned Node 24 that runs vitest, which strips types natively.
    const child = spawn(process.execPath, [WRITER, dataDir, String(KEYS), String(firstSeq)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<string, number>();
    const created = new Set<string>();
    let puts = 0;
    let buffered = '';
    let stderr = '';
    let killed = false;
    const kill = () => {
      if (!killed) {
        killed = true;
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(kill, 20_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr += d;
    });
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? ''; // a partial line was not fully acknowledged
      for (const line of lines) {
        const [kind, name, seq] = line.split(' ');
        if (kind === 'created' && name) created.add(name);
        if (kind === 'ack' && name && seq) {
          acked.set(name, Number(seq));
          puts++;
        }
      }
      // A random extra delay decorrelates the kill from the child's ack, so it lands anywhere in a write.
      if (puts >= killAfter && (killAfter > 0 || created.size > 0)) setTimeout(kill, Math.random() * 4);
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL')
        reject(new Error(`writer exited on its own (${code}): ${stderr.slice(0, 500)}`));
      else resolve({ acked, created });
    });
  });
}

describe('FileKeyStore crash safety', () => {
  it('runs the writer on Node 24', () => {
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(24);
  });

  it('keeps every acknowledged write, complete, across kill -9 at random moments', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const firstSeq = round * ROUND_SPAN;
      const killAfter = round === 0 ? 0 : 1 + Math.floor(Math.random() * 400);
      const { acked, created } = await runAndKill(firstSeq, killAfter);

      // Reopening parses every record file strictly: a torn file would make this throw.
      const store = await FileKeyStore.open(dataDir);
      for (const name of created) expect(await store.get('default', name)).toBeDefined();
      for (const [name, seq] of acked) {
        const record = await store.get('default', name);
        expect(record, `${name} lost after round ${round}`).toBeDefined();
        const onDisk = Number(record!.memo.replace('seq-', ''));
        // Either the acknowledged write, or the next write to that key, which was in flight.
        expect([seq, seq + KEYS], `${name} after round ${round}`).toContain(onDisk);
        expect(record).toEqual(crashRecord(name, onDisk));
      }
      for (const ns of await readdir(join(dataDir, 'keys'))) {
        const files = await readdir(join(dataDir, 'keys', ns));
        expect(
          files.filter((f) => !f.endsWith('.json')),
          'temp files left after open',
        ).toEqual([]);
      }
      if (round > 0) expect(acked.size).toBeGreaterThan(0);
    }
  }, 120_000);
});
