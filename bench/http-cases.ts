/**
 * HTTP benchmark cases (PRODUCT.md §9): the real `keyward serve` process against a bare node:http
 * server doing the same AES-256-GCM inline (one reused secret KeyObject, the same JSON parsing,
 * strict base64 decoding, bearer check and response shape), both loaded by autocannon's
 * programmatic API in this process. Each server runs in its own child process so the load
 * generator never shares an event loop with the server it measures.
 *
 * Run as a script with `--baseline-server` this file *is* the baseline server.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createHash, createSecretKey, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchCase, BenchSample, CaseMemory, SideMemory } from './case.ts';
import { KEYWARD_ENV } from './keyward-env.ts';

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

// ---- the baseline server (child process) ----------------------------------------------------------

function runBaselineServer(): void {
  const key = createSecretKey(randomBytes(32));
  const expected = createHash('sha256').update(tokenFromEnv()).digest();
  const seal = (b64: unknown): { ciphertext: string; keyVersion: number } | { error: { code: string } } => {
    if (typeof b64 !== 'string') return { error: { code: 'INVALID_ARGUMENT' } };
    // The same strict check as the engine's edge (engine/wire/base64.ts): decode, re-encode, compare.
    const plaintext = Buffer.from(b64, 'base64');
    if (plaintext.toString('base64') !== b64) return { error: { code: 'INVALID_ARGUMENT' } };
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    const body = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return { ciphertext: `keyward:v1:${body.toString('base64')}`, keyVersion: 1 };
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const auth = req.headers.authorization ?? '';
      const ok = timingSafeEqual(createHash('sha256').update(auth.slice(7)).digest(), expected);
      let out: unknown;
      let status = 200;
      if (!ok) {
        status = 401;
        out = { error: { code: 'UNAUTHENTICATED' } };
      } else {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          plaintext?: string;
          requests?: Array<{ plaintext?: string }>;
        };
        out = req.url?.endsWith('/batch/encrypt')
          ? { results: (body.requests ?? []).map((r) => seal(r.plaintext)) }
          : seal(body.plaintext);
      }
      const text = JSON.stringify(out);
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
}

function tokenFromEnv(): string {
  return process.env.BENCH_TOKEN ?? '';
}

// ---- harness ------------------------------------------------------------------------------------

interface Servers {
  engineUrl: string;
  baselineUrl: string;
  dataDir: string;
  children: ChildProcess[];
}
let servers: Servers | undefined;
let users = 0;

function waitForLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

async function startServers(): Promise<Servers> {
  const dataDir = await mkdtemp(join(tmpdir(), 'keyward-bench-'));
  const env = { ...process.env, KEYWARD_TOKEN: TOKEN, BENCH_TOKEN: TOKEN, KEYWARD_LOG_LEVEL: 'warn' };
  const engine = spawn(
    process.execPath,
    [
      // Node flags for the engine process only (`--cpu-prof --cpu-prof-dir=DIR` for a profile).
      ...(process.env.BENCH_ENGINE_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      MAIN,
      'serve',
      '--data-dir',
      dataDir,
      '--port',
      '0',
      '--tls',
      'off',
      ...(process.env.BENCH_ENGINE_THREADS ? ['--threads', process.env.BENCH_ENGINE_THREADS] : []),
    ],
    // The engine runs as shipped (keyward-env.ts); the bare baseline with Node's defaults.
    { env: { ...env, ...KEYWARD_ENV }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await waitForLine(engine);
  const info = JSON.parse(await readFile(join(dataDir, 'server.json'), 'utf8')) as { url: string };
  const baseline = spawn(process.execPath, [import.meta.filename, '--baseline-server'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const { port } = JSON.parse(await waitForLine(baseline)) as { port: number };
  const created = await fetch(`${info.url}/v1/namespaces/default/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', usage: 'AES256' }),
  });
  if (created.status !== 201 && created.status !== 409)
    throw new Error(`cannot create the bench key: ${created.status}`);
  return {
    engineUrl: info.url,
    baselineUrl: `http://127.0.0.1:${port}`,
    dataDir,
    children: [engine, baseline],
  };
}

async function setup(): Promise<void> {
  users++;
  servers ??= await startServers();
}

async function teardown(): Promise<void> {
  if (--users > 0 || servers === undefined) return;
  const s = servers;
  servers = undefined;
  await Promise.all(
    s.children.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
        }),
    ),
  );
  await rm(s.dataDir, { recursive: true, force: true });
}

async function load(
  url: string,
  body: string,
  connections: number,
  durationMs: number,
  itemsPerRequest: number,
): Promise<BenchSample> {
  const result = await autocannon({
    url,
    method: 'POST',
    connections,
    duration: Math.max(1, durationMs / 1000),
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body,
  });
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`${url}: ${result.errors} errors, ${result.non2xx} non-2xx responses`);
  }
  return {
    opsPerSec: result.requests.average * itemsPerRequest,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
  };
}

/**
 * One connection, one request at a time, for `durationMs`: the latency a sequential caller sees
 * (p50 and p99, measured here to the microsecond; autocannon rounds to whole milliseconds).
 */
async function sequential(url: string, body: string, durationMs: number): Promise<BenchSample> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  const headers = {
    authorization: `Bearer ${TOKEN}`,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
  };
  const once = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const start = performance.now();
      const req = request(
        { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers, agent },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`${url}: status ${res.statusCode}`));
            else resolve(performance.now() - start);
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const latencies: number[] = [];
  const start = performance.now();
  while (performance.now() - start < durationMs) latencies.push(await once());
  const elapsed = performance.now() - start;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return {
    opsPerSec: (latencies.length * 1000) / elapsed,
    p50Ms: Number(at(0.5).toFixed(3)),
    p99Ms: Number(at(0.99).toFixed(3)),
  };
}

// ---- CPU of the server under load and of the load generator ---------------------------------------

/** CPU seconds (user + system, every thread) that `pid` has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/**
 * Runs one round against the server `pid` and adds what it cost: the server's CPU per operation
 * (µs, all its threads) and the cores the load generator (this process) used meanwhile. With
 * both sides' figures, the ceiling a server on these 2 cores could reach is computable: the
 * cores the load generator leaves, at the baseline's CPU per operation (docs/performance.md).
 */
async function withCpu(pid: number, round: () => Promise<BenchSample>): Promise<BenchSample> {
  const server0 = await cpuSeconds(pid);
  const self0 = process.cpuUsage();
  const start = performance.now();
  const sample = await round();
  const seconds = (performance.now() - start) / 1000;
  const self = process.cpuUsage(self0);
  const serverSeconds = (await cpuSeconds(pid)) - server0;
  return {
    ...sample,
    extra: {
      ...sample.extra,
      cpuUsPerOp: Number(((serverSeconds * 1e6) / (sample.opsPerSec * seconds)).toFixed(2)),
      serverCores: Number((serverSeconds / seconds).toFixed(2)),
      loadGeneratorCores: Number(((self.user + self.system) / 1e6 / seconds).toFixed(2)),
    },
  };
}

// ---- resident memory of the two servers ---------------------------------------------------------------

/** Resident memory of `pid` in MiB, or 0 once it is gone. */
async function rssMiB(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return Math.round(kib / 1024);
  } catch {
    return 0;
  }
}

/** Seconds without load before the settled figure is read. */
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 5);
let sampler: { timer: NodeJS.Timeout; peak: { engine: number; baseline: number } } | undefined;

function beginMemory(): void {
  if (sampler !== undefined) clearInterval(sampler.timer);
  const peak = { engine: 0, baseline: 0 };
  const sample = async () => {
    const [engine, baseline] = await Promise.all([
      rssMiB(servers?.children[0]?.pid),
      rssMiB(servers?.children[1]?.pid),
    ]);
    peak.engine = Math.max(peak.engine, engine);
    peak.baseline = Math.max(peak.baseline, baseline);
  };
  sampler = { timer: setInterval(() => void sample(), 100), peak };
}

async function memory(): Promise<CaseMemory> {
  const s = sampler!;
  clearInterval(s.timer);
  sampler = undefined;
  await sleep(SETTLE_SECONDS * 1000);
  const side = async (peak: number, pid: number | undefined): Promise<SideMemory> => {
    const settled = await rssMiB(pid);
    return { peakMiB: Math.max(peak, settled), settledMiB: settled };
  };
  return {
    engine: await side(s.peak.engine, servers?.children[0]?.pid),
    baseline: await side(s.peak.baseline, servers?.children[1]?.pid),
    settleSeconds: SETTLE_SECONDS,
  };
}

const KEY_PATH = '/v1/namespaces/default/keys/bench';

/**
 * The engine and baseline sides of a case: `round` against each server's URL, with that server's
 * CPU accounted (withCpu).
 */
function bothSides(
  round: (url: string, ms: number) => Promise<BenchSample>,
): Pick<BenchCase, 'engine' | 'baseline'> {
  const side = (which: 0 | 1) => (ms: number) => {
    const s = servers!;
    return withCpu(s.children[which]!.pid!, () => round(which === 0 ? s.engineUrl : s.baselineUrl, ms));
  };
  return { engine: side(0), baseline: side(1) };
}

/** The HTTP cases for `npm run bench`. */
export function httpCases(): BenchCase[] {
  const single = JSON.stringify({ plaintext: PLAINTEXT_1K });
  const batch = JSON.stringify({
    requests: Array.from({ length: 100 }, () => ({ plaintext: PLAINTEXT_1K })),
  });
  return [
    {
      name: 'http-encrypt-1k-single',
      baselineLabel: 'bare node:http, inline AES-256-GCM, 64 connections',
      setup,
      teardown,
      beginMemory,
      memory,
      ...bothSides((url, ms) => load(`${url}${KEY_PATH}/encrypt`, single, 64, ms, 1)),
    },
    {
      name: 'http-encrypt-1k-single-seq',
      baselineLabel: 'bare node:http, inline AES-256-GCM, 1 connection, one request at a time',
      latency: true,
      setup,
      teardown,
      beginMemory,
      memory,
      ...bothSides((url, ms) => sequential(`${url}${KEY_PATH}/encrypt`, single, ms)),
    },
    {
      name: 'http-encrypt-1k-batch100',
      baselineLabel: 'bare node:http, inline AES-256-GCM loop, batches of 100, 16 connections',
      setup,
      teardown,
      beginMemory,
      memory,
      ...bothSides((url, ms) => load(`${url}${KEY_PATH}/batch/encrypt`, batch, 16, ms, 100)),
    },
  ];
}

if (process.argv.includes('--baseline-server')) runBaselineServer();
