/**
 * The engine's young generations stay small under load (issue #16: "the main thread's V8 young
 * generation grew from 16 to 128 MiB", and each worker's to 64). `keyward serve` runs as a process
 * with the settings it ships with (bench/keyward-env.ts: the chart's defaults and `npm start`),
 * under a few seconds of concurrent single and batch requests; /metrics then shows each thread's
 * new space. Sizes, not timings: a loaded machine changes how fast, not how big.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYWARD_ENV } from '../../bench/keyward-env.ts';

const MAIN = join(import.meta.dirname, '../../engine/cli/keyward.mjs');
const TOKEN = `memory-${randomBytes(16).toString('hex')}`;
const MiB = 1024 * 1024;

let dataDir: string;
let proc: ChildProcess;
let info: { url: string; metricsUrl: string };

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-memory-'));
  proc = spawn(
    process.execPath,
    [MAIN, 'serve', '--data-dir', dataDir, '--port', '0', '--tls', 'off', '--threads', '2'],
    {
      env: { ...process.env, ...KEYWARD_ENV, KEYWARD_TOKEN: TOKEN, KEYWARD_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    },
  );
  const infoPath = join(dataDir, 'server.json');
  const deadline = Date.now() + 60_000;
  while (!existsSync(infoPath)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error('keyward serve did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  info = JSON.parse(readFileSync(infoPath, 'utf8'));
}, 90_000);

afterAll(async () => {
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
  await rm(dataDir, { recursive: true, force: true });
});

/** New-space sizes from /metrics: the main thread's, then each worker's. */
async function newSpaces(): Promise<{ main: number; workers: number[] }> {
  const text = await (await fetch(info.metricsUrl)).text();
  const value = (re: RegExp): number[] =>
    text
      .split('\n')
      .filter((l) => re.test(l))
      .map((l) => Number(l.split(' ').at(-1)));
  return {
    main: value(/^keyward_nodejs_heap_space_size_total_bytes\{space="new"\}/)[0]!,
    workers: value(/^keyward_engine_worker_heap_space_bytes\{worker="\d+",space="new_space"\}/),
  };
}

describe('memory under load', () => {
  it('keeps the young generation of the main thread and of each worker small', async () => {
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const keys = `${info.url}/v1/namespaces/default/keys`;
    expect(
      (await fetch(keys, { method: 'POST', headers, body: JSON.stringify({ name: 'mem', usage: 'AES256' }) }))
        .status,
    ).toBe(201);
    const pt = randomBytes(1024).toString('base64');
    const single = JSON.stringify({ plaintext: pt });
    const batch = JSON.stringify({ requests: Array.from({ length: 100 }, () => ({ plaintext: pt })) });
    const until = Date.now() + 6_000;
    const caller = async (path: string, body: string): Promise<void> => {
      while (Date.now() < until) {
        const res = await fetch(`${keys}/mem/${path}`, { method: 'POST', headers, body });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
    };
    await Promise.all([
      ...Array.from({ length: 24 }, () => caller('encrypt', single)),
      ...Array.from({ length: 6 }, () => caller('batch/encrypt', batch)),
    ]);
    const spaces = await newSpaces();
    // With Node's defaults the main thread's was 32 MiB after these 6 s (128 under minutes of load).
    expect(spaces.main).toBeLessThanOrEqual(16 * MiB);
    expect(spaces.workers).toHaveLength(2);
    for (const w of spaces.workers) expect(w).toBeLessThanOrEqual(16 * MiB);
  }, 60_000);
});
