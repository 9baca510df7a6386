/**
 * Memory under sustained load (issue #16): starts `keyward serve --tls off --threads 2`, loads it
 * with a mix of single and batch AES, RSA and ECDSA requests for `--minutes`, and samples the
 * engine's resident memory every second and its per-thread memory (/metrics: the main thread's
 * V8 heap spaces and external memory, each worker's heap spaces, the pool's bytes) every 10 s.
 * Then it idles `--settle` seconds and samples again. Prints a summary (peak, median per minute,
 * growth after the first minute, settled) and writes the samples to `--out` as JSON.
 *
 * Usage: node bench/soak.ts [--minutes 10] [--settle 30] [--node-args="--max-semi-space-size=8"]
 *        [--threads 2] [--no-audit] [--node-defaults] [--out bench/results/soak.json]
 * The engine runs with the flags and malloc settings it ships with (keyward-env.ts), or with
 * Node's and glibc's defaults (`--node-defaults`); `--node-args` come on top.
 * The audit log is on, as by default.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { KEYWARD_ENV } from './keyward-env.ts';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'engine/cli/keyward.mjs');
const TOKEN = `soak-${randomBytes(16).toString('hex')}`;
const KEYS = '/v1/namespaces/default/keys';

type Autocannon = (opts: Record<string, unknown>) => Promise<{
  requests: { total: number };
  non2xx: number;
  errors: number;
}> & {
  stop?: () => void;
};
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** The load: each stream runs for the whole soak, all at once. */
function streams(): Array<{ name: string; path: string; body: string; connections: number }> {
  const pt = randomBytes(1024).toString('base64');
  const data = randomBytes(256).toString('base64');
  const batch = (item: object, n: number) =>
    JSON.stringify({ requests: Array.from({ length: n }, () => item) });
  return [
    {
      name: 'aes-single',
      path: `${KEYS}/aes/encrypt`,
      body: JSON.stringify({ plaintext: pt }),
      connections: 32,
    },
    {
      name: 'aes-batch100',
      path: `${KEYS}/aes/batch/encrypt`,
      body: batch({ plaintext: pt }, 100),
      connections: 8,
    },
    { name: 'rsa-single', path: `${KEYS}/rsa/sign`, body: JSON.stringify({ data }), connections: 4 },
    { name: 'rsa-batch10', path: `${KEYS}/rsa/batch/sign`, body: batch({ data }, 10), connections: 2 },
    { name: 'ecdsa-single', path: `${KEYS}/ecdsa/sign`, body: JSON.stringify({ data }), connections: 8 },
    { name: 'ecdsa-batch100', path: `${KEYS}/ecdsa/batch/sign`, body: batch({ data }, 100), connections: 4 },
  ];
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** Selected /metrics series, in MiB. */
async function breakdown(metricsUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m =
      /^(keyward_nodejs_heap_space_size_total_bytes|keyward_nodejs_external_memory_bytes|keyward_nodejs_heap_size_used_bytes|keyward_engine_worker_heap_space_bytes|keyward_engine_worker_external_bytes|keyward_engine_pool_bytes)(\{[^}]*\})? (\S+)$/.exec(
        line,
      );
    if (m === null) continue;
    const labels = (m[2] ?? '').replace(/[{}"]/g, '').replace(/space=|worker=|kind=/g, '');
    const name = m[1]!.replace(/^keyward_/, '');
    out[labels === '' ? name : `${name}{${labels}}`] = Number(m[3]) / 1048576;
  }
  return out;
}

async function start(
  threads: number,
  nodeArgs: string[],
  audit: boolean,
  shipped: boolean,
): Promise<{ child: ChildProcess; dir: string; url: string; metricsUrl: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-soak-'));
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      MAIN,
      'serve',
      '--data-dir',
      dir,
      '--port',
      '0',
      '--tls',
      'off',
      '--threads',
      String(threads),
      ...(audit ? [] : ['--no-audit']),
    ],
    {
      // As shipped (keyward-env.ts), unless --node-defaults.
      env: {
        ...process.env,
        ...(shipped ? KEYWARD_ENV : {}),
        KEYWARD_TOKEN: TOKEN,
        KEYWARD_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  for (let i = 0; i < 300; i++) {
    try {
      const info = JSON.parse(await readFile(join(dir, 'server.json'), 'utf8'));
      return { child, dir, url: info.url, metricsUrl: info.metricsUrl };
    } catch {
      await sleep(100);
    }
  }
  throw new Error('the engine did not start');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      settle: { type: 'string', default: '30' },
      threads: { type: 'string', default: '2' },
      'node-args': { type: 'string', default: '' },
      'no-audit': { type: 'boolean', default: false },
      'node-defaults': { type: 'boolean', default: false },
      out: { type: 'string', default: join(ROOT, 'bench/results/soak.json') },
    },
  });
  const minutes = Number(values.minutes);
  const nodeArgs = values['node-args']!.split(' ').filter(Boolean);
  const server = await start(Number(values.threads), nodeArgs, !values['no-audit'], !values['node-defaults']);
  const pid = server.child.pid!;
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  for (const [name, usage] of [
    ['aes', 'AES256'],
    ['rsa', 'RSA2048'],
    ['ecdsa', 'ECDSA'],
  ]) {
    const res = await fetch(`${server.url}${KEYS}`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name, usage }),
    });
    if (res.status !== 201) throw new Error(`creating key ${name}: ${res.status}`);
  }
  const idleMiB = await rssMiB(pid);
  const idleBreakdown = await breakdown(server.metricsUrl);
  process.stderr.write(`idle: ${idleMiB.toFixed(0)} MiB\n`);

  const t0 = performance.now();
  const rss: Array<[number, number]> = [];
  const details: Array<{ t: number; rss: number; m: Record<string, number> }> = [];
  let sampling = true;
  const sampler = (async () => {
    let n = 0;
    while (sampling) {
      const t = (performance.now() - t0) / 1000;
      const r = await rssMiB(pid);
      rss.push([Number(t.toFixed(1)), Number(r.toFixed(1))]);
      if (n++ % 10 === 0) {
        details.push({ t: Number(t.toFixed(1)), rss: r, m: await breakdown(server.metricsUrl) });
        process.stderr.write(`  ${t.toFixed(0)} s: ${r.toFixed(0)} MiB\n`);
      }
      await sleep(1000);
    }
  })();
  const loads = streams().map((s) =>
    autocannon({
      url: server.url + s.path,
      method: 'POST',
      headers,
      body: s.body,
      connections: s.connections,
      duration: minutes * 60,
    }).then((r) => ({ name: s.name, requests: r.requests.total, non2xx: r.non2xx, errors: r.errors })),
  );
  const results = await Promise.all(loads);
  const loadSeconds = (performance.now() - t0) / 1000;
  await sleep(Number(values.settle) * 1000);
  sampling = false;
  await sampler;
  const settledMiB = await rssMiB(pid);
  const settledBreakdown = await breakdown(server.metricsUrl);
  server.child.kill('SIGTERM');
  await new Promise((r) => server.child.once('exit', r));
  await rm(server.dir, { recursive: true, force: true });

  const underLoad = rss.filter(([t]) => t <= loadSeconds);
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1] ?? Number.NaN;
  const perMinute: number[] = [];
  // Whole minutes of load only (the last samples of a run may spill a second past them).
  for (let m = 0; m < Math.floor(loadSeconds / 60); m++)
    perMinute.push(median(underLoad.filter(([t]) => t >= m * 60 && t < (m + 1) * 60).map(([, r]) => r)));
  const firstMinute = perMinute[0] ?? Number.NaN;
  const afterFirst = underLoad.filter(([t]) => t >= 60).map(([, r]) => r);
  const minute2 = perMinute[1] ?? Number.NaN;
  const last = perMinute.at(-1) ?? Number.NaN;
  const summary = {
    date: new Date().toISOString(),
    loadavg: (await readFile('/proc/loadavg', 'utf8')).trim(),
    nodeArgs,
    env: values['node-defaults'] ? 'node defaults' : KEYWARD_ENV,
    threads: Number(values.threads),
    minutes,
    idleMiB: Number(idleMiB.toFixed(1)),
    peakMiB: Math.max(...underLoad.map(([, r]) => r)),
    peakAfterFirstMinuteMiB: afterFirst.length > 0 ? Math.max(...afterFirst) : Number.NaN,
    medianPerMinuteMiB: perMinute.map((v) => Number(v.toFixed(1))),
    firstMinuteMedianMiB: firstMinute,
    growthAfterMinute2Pct: Number((((last - minute2) / minute2) * 100).toFixed(2)),
    settledMiB: Number(settledMiB.toFixed(1)),
    requests: results,
    requestsPerSecond: Object.fromEntries(results.map((r) => [r.name, Math.round(r.requests / loadSeconds)])),
    idleBreakdown,
    settledBreakdown,
  };
  console.log(JSON.stringify({ ...summary, idleBreakdown: undefined, settledBreakdown: undefined }, null, 2));
  await mkdir(dirname(values.out!), { recursive: true });
  await writeFile(values.out!, `${JSON.stringify({ ...summary, rss, details }, null, 1)}\n`);
  process.exit(0);
}

await main();
