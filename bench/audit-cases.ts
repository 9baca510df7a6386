/**
 * Audit log cases (issue #13), each against its baseline in the same run:
 * - HTTP, audit on vs off: two real `keyward serve` processes (one with --no-audit), the single
 *   and the batch encrypt cases of http-cases.ts; and --audit-required (the chart's default) vs
 *   off. Target: audit-on at least 0.9x audit-off.
 * - Chain hashing on the same realistic records: hash-wasm BLAKE3 (the chain's) vs the pure-JS
 *   BLAKE3 of @noble/hashes, and vs node:crypto SHA-256 (leaf + link each).
 * - Where leaves are hashed: on the main thread (what the log does) vs shipped to a worker pool
 *   in batches, counted per second of main-thread time (event-loop utilization), since the main
 *   thread is what the HTTP server runs on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { blake3 } from '@noble/hashes/blake3.js';
import { Piscina } from 'piscina';
import { ChainHasher, GENESIS_PREV } from '../engine/audit/chain.ts';
import type { RequestEvent } from '../engine/audit/record.ts';
import { eventText } from '../engine/audit/records.ts';
import type { BenchCase, BenchSample } from './case.ts';

interface AutocannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  errors: number;
  non2xx: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const MAIN = join(import.meta.dirname, '../engine/cli/keyward.mjs');
const TOKEN = `bench-${randomBytes(16).toString('hex')}`;
const PLAINTEXT_1K = randomBytes(1024).toString('base64');
const KEY_PATH = '/v1/namespaces/default/keys/bench';

// ---- HTTP: audit on vs off --------------------------------------------------------------------

type Variant = 'off' | 'on' | 'required';
interface Server {
  url: string;
  dir: string;
  child: ChildProcess;
}
let servers: Partial<Record<Variant, Server>> = {};
let users = 0;

async function startServer(variant: Variant): Promise<Server> {
  const dir = await mkdtemp(join(tmpdir(), `keyward-bench-audit-${variant}-`));
  const flags = variant === 'off' ? ['--no-audit'] : variant === 'required' ? ['--audit-required'] : [];
  const child = spawn(
    process.execPath,
    [MAIN, 'serve', '--data-dir', dir, '--port', '0', '--tls', 'off', ...flags],
    {
      env: { ...process.env, KEYWARD_TOKEN: TOKEN, KEYWARD_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  const { url } = JSON.parse(await readFile(join(dir, 'server.json'), 'utf8')) as { url: string };
  const res = await fetch(`${url}/v1/namespaces/default/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', usage: 'AES256' }),
  });
  if (res.status !== 201) throw new Error(`cannot create the bench key: ${res.status}`);
  return { url, dir, child };
}

async function setup(): Promise<void> {
  users++;
  for (const v of ['off', 'on', 'required'] as const) servers[v] ??= await startServer(v);
}

async function teardown(): Promise<void> {
  if (--users > 0) return;
  const all = Object.values(servers);
  servers = {};
  await Promise.all(
    all.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.child.once('exit', () => resolve());
          s.child.kill('SIGTERM');
        }),
    ),
  );
  for (const s of all) await rm(s.dir, { recursive: true, force: true });
}

/** CPU time (user + system, all threads) a process has used, in seconds; Linux only. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function load(
  variant: Variant,
  route: string,
  body: string,
  connections: number,
  ms: number,
  items: number,
  perCpuSecond = false,
): Promise<BenchSample> {
  const pid = servers[variant]!.child.pid!;
  const cpuBefore = await cpuSeconds(pid);
  const started = performance.now();
  const r = await autocannon({
    url: `${servers[variant]!.url}${KEY_PATH}${route}`,
    method: 'POST',
    connections,
    duration: Math.max(1, ms / 1000),
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body,
  });
  if (r.errors > 0 || r.non2xx > 0) throw new Error(`${variant}: ${r.errors} errors, ${r.non2xx} non-2xx`);
  const opsPerSec = r.requests.average * items;
  if (perCpuSecond) {
    // Items per second of the server's own CPU time: what the server spends per item, far less
    // sensitive than throughput to other processes on a busy machine.
    const cpu = (await cpuSeconds(pid)) - cpuBefore;
    const seconds = (performance.now() - started) / 1000;
    return { opsPerSec: (opsPerSec * seconds) / Math.max(cpu, 0.01) };
  }
  return { opsPerSec, p50Ms: r.latency.p50, p99Ms: r.latency.p99 };
}

function httpCases(): BenchCase[] {
  const single = JSON.stringify({ plaintext: PLAINTEXT_1K });
  const batch = JSON.stringify({
    requests: Array.from({ length: 100 }, () => ({ plaintext: PLAINTEXT_1K })),
  });
  const pair = (
    name: string,
    variant: Variant,
    route: string,
    body: string,
    conns: number,
    items: number,
    perCpu = false,
  ): BenchCase => ({
    name,
    baselineLabel: `the same keyward serve with --no-audit, ${conns} connections${perCpu ? ', items per server CPU-second' : ''}`,
    setup,
    teardown,
    engine: (ms) => load(variant, route, body, conns, ms, items, perCpu),
    baseline: (ms) => load('off', route, body, conns, ms, items, perCpu),
  });
  return [
    pair('http-encrypt-1k-single-audit', 'on', '/encrypt', single, 64, 1),
    pair('http-encrypt-1k-batch100-audit', 'on', '/batch/encrypt', batch, 16, 100),
    pair('http-encrypt-1k-single-audit-required', 'required', '/encrypt', single, 64, 1),
    pair('http-encrypt-1k-batch100-audit-required', 'required', '/batch/encrypt', batch, 16, 100),
    pair('http-encrypt-1k-single-audit-cpu', 'on', '/encrypt', single, 64, 1, true),
    pair('http-encrypt-1k-batch100-audit-cpu', 'on', '/batch/encrypt', batch, 16, 100, true),
    pair('http-encrypt-1k-single-audit-required-cpu', 'required', '/encrypt', single, 64, 1, true),
  ];
}

// ---- chain hashing ------------------------------------------------------------------------------

/** Realistic records: the canonical texts the log hashes (about 330 to 420 bytes each). */
function sampleTexts(n: number): string[] {
  const ops = ['encrypt', 'decrypt', 'sign', 'verify', 'generate-data-key'];
  return Array.from({ length: n }, (_, i) => {
    const e: RequestEvent = {
      type: 'request',
      requestId: `${randomBytes(4).toString('hex')}-${i.toString(36)}`,
      principal: {
        name: `system:serviceaccount:team-${i % 7}:app-${i % 13}`,
        uid: '6f1c2e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6',
        groups: ['system:serviceaccounts', `system:serviceaccounts:team-${i % 7}`, 'system:authenticated'],
      },
      source: `10.244.${i % 3}.${i % 250}`,
      namespace: `team-${i % 7}`,
      key: `orders-${i % 11}`,
      version: 1 + (i % 3),
      operation: ops[i % ops.length]!,
      outcome: i % 50 === 0 ? 'PERMISSION_DENIED' : 'ok',
      status: i % 50 === 0 ? 403 : 200,
      latencyUs: 300 + (i % 900),
    };
    return eventText(e, {
      chain: 'engine-7d9f8-abcde/1a2b3c4d',
      seq: 1_000_000 + i,
      time: new Date().toISOString(),
    });
  });
}

const TEXTS = sampleTexts(1024);
const UTF8 = TEXTS.map((t) => Buffer.from(t));

/** Hashes the whole sample as a chain (leaf, then link) until `ms` passes; records/s. */
function chainLoop(ms: number, step: (i: number, prev: Uint8Array) => Uint8Array): BenchSample {
  const start = performance.now();
  let n = 0;
  let prev: Uint8Array = new Uint8Array(32);
  while (performance.now() - start < ms) {
    for (let i = 0; i < TEXTS.length; i++) prev = step(i, prev);
    n += TEXTS.length;
  }
  return { opsPerSec: (n * 1000) / (performance.now() - start) };
}

let wasm: ChainHasher | undefined;
const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function wasmStep(i: number, prev: Uint8Array): Uint8Array {
  // As the log does it: leaf of the text, link in hex (what records carry).
  return Buffer.from(wasm!.link(hexOf(prev), wasm!.leaf(TEXTS[i]!)), 'hex');
}

function hashCases(): BenchCase[] {
  const wasmSide = async (ms: number) => {
    wasm ??= await ChainHasher.create();
    return chainLoop(ms, wasmStep);
  };
  return [
    {
      name: 'audit-chain-blake3-wasm-vs-js',
      baselineLabel: '@noble/hashes BLAKE3 (pure JS), the same records, leaf + link',
      engine: wasmSide,
      baseline: async (ms) =>
        chainLoop(ms, (i, prev) => {
          const leaf = blake3(UTF8[i]!);
          const link = new Uint8Array(64);
          link.set(prev, 0);
          link.set(leaf, 32);
          return Buffer.from(hexOf(blake3(link)), 'hex');
        }),
    },
    {
      name: 'audit-chain-blake3-wasm-vs-sha256',
      baselineLabel: 'node:crypto SHA-256 (OpenSSL), the same records, leaf + link',
      engine: wasmSide,
      baseline: async (ms) =>
        chainLoop(ms, (i, prev) => {
          const leaf = createHash('sha256').update(TEXTS[i]!).digest();
          return Buffer.from(createHash('sha256').update(prev).update(leaf).digest('hex'), 'hex');
        }),
    },
  ];
}

// ---- where leaves are hashed ---------------------------------------------------------------------

const LEAF_BATCH = 64;
const POOL_IN_FLIGHT = 4;
let pool: Piscina | undefined;

/** Runs `fn` for `ms`; returns records per second of main-thread (event-loop) busy time. */
async function perMainThreadSecond(
  ms: number,
  fn: (deadline: number) => Promise<number>,
): Promise<BenchSample> {
  const before = performance.eventLoopUtilization();
  const records = await fn(performance.now() + ms);
  const elu = performance.eventLoopUtilization(before);
  return { opsPerSec: records / (elu.active / 1000) };
}

function placementCases(): BenchCase[] {
  return [
    {
      name: 'audit-leaves-main-vs-pool',
      baselineLabel: `leaves in a worker pool (batches of ${LEAF_BATCH}, ${POOL_IN_FLIGHT} in flight), per main-thread second`,
      setup: async () => {
        wasm ??= await ChainHasher.create();
        pool = new Piscina({
          filename: join(import.meta.dirname, 'audit-leaf-worker.ts'),
          maxThreads: 2,
          minThreads: 2,
        });
      },
      teardown: async () => {
        await pool?.destroy();
        pool = undefined;
      },
      engine: (ms) =>
        perMainThreadSecond(ms, async (deadline) => {
          let n = 0;
          let prev = GENESIS_PREV;
          while (performance.now() < deadline) {
            for (let b = 0; b < TEXTS.length; b += LEAF_BATCH) {
              for (let i = b; i < b + LEAF_BATCH; i++) prev = wasm!.link(prev, wasm!.leaf(TEXTS[i]!));
              n += LEAF_BATCH;
              // Yield as the log does between batches (one write per event-loop turn).
              await new Promise((r) => setImmediate(r));
            }
          }
          return n;
        }),
      baseline: (ms) =>
        perMainThreadSecond(ms, async (deadline) => {
          let n = 0;
          let prev = GENESIS_PREV;
          let next = 0;
          const inflight: Array<Promise<ArrayBuffer>> = [];
          const send = (): void => {
            const b = next;
            next = (next + LEAF_BATCH) % TEXTS.length;
            inflight.push(pool!.run(TEXTS.slice(b, b + LEAF_BATCH)) as Promise<ArrayBuffer>);
          };
          while (inflight.length < POOL_IN_FLIGHT) send();
          while (performance.now() < deadline) {
            const leaves = new Uint8Array(await inflight.shift()!);
            for (let i = 0; i < LEAF_BATCH; i++)
              prev = wasm!.link(prev, leaves.subarray(32 * i, 32 * i + 32));
            n += LEAF_BATCH;
            send();
          }
          await Promise.all(inflight);
          return n;
        }),
    },
  ];
}

/** The audit cases for `npm run bench`. */
export function auditCases(): BenchCase[] {
  return [...hashCases(), ...placementCases(), ...httpCases()];
}
