/**
 * Operator scale cases, against the real control plane (etcd + kube-apiserver of scripts/cluster),
 * with the operator (and, for the 10,000-Key case, the cluster engine) as their own processes:
 * - `operator-1000-keys`: the time for 1,000 AES256 Keys applied at once to all reach Ready, as
 *   keys/s; target ≥ 50 keys/s.
 * - `operator-10000-keys`: the same for 10,000 Keys, target ≥ 100 keys/s; it also reports the
 *   operator's and the engine's resident memory with 10,000 Keys cached, and the time of a full
 *   resync (every Key reconciled once, nothing to change).
 *
 * Uses the hand-started cluster (`npm run cluster -- up`) when one is healthy, else starts a
 * private one for the run and stops it afterwards.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
} from '@kubernetes/client-node';
import { KubeClient, MERGE_PATCH } from '../engine/kube/client.ts';
import { KEY_GROUP, KEY_PLURAL, KEY_VERSION, type KeyResource } from '../engine/kube/key-resource.ts';
import {
  BIN_DIR,
  type ClusterState,
  DEFAULT_CLUSTER_DIR,
  down,
  isHealthy,
  REPO_ROOT,
  readState,
  up,
} from '../scripts/cluster/cluster.ts';
import { freePorts } from '../scripts/cluster/proc.ts';
import type { BenchCase } from './case.ts';
import { KEYWARD_ENV, KEYWARD_OPERATOR_ENV } from './keyward-env.ts';

/** The result of one measurement. */
export interface OperatorBenchResult {
  /** Keys that reached Ready per second of wall time, from the first create. */
  opsPerSec: number;
  keys: number;
  /** Wall time from the first create to the last Ready, ms. */
  elapsedMs: number;
  /** Wall time the creates alone took, ms. */
  createdMs: number;
  /** Resident memory of the operator with every Key cached, MiB. */
  operatorRssMiB: number;
  /** The operator's V8 heap in use at the same time, MiB. */
  operatorHeapMiB?: number;
  /** Resident memory of the cluster engine with every Key cached (when it ran), MiB. */
  engineRssMiB?: number;
  /** Under `engineLoadSeconds` of load: the engine's peak and median resident memory, MiB. */
  engineLoadPeakMiB?: number;
  engineLoadMedianMiB?: number;
  /** ... and 10 s after the load. */
  engineSettledMiB?: number;
  /** Requests per second the engine served under that load (single, batch of 100). */
  engineLoadRps?: { single: number; batch100: number };
  /** Seconds one full resync took (every Key reconciled once), when measured. */
  resyncSeconds?: number;
  /** Reconciles that failed and were retried (409s included), and reconciles in all. */
  reconcileErrors?: number;
  reconciles?: number;
}

/** Options of {@link measureOperatorKeys}. */
export interface OperatorBenchOptions {
  /** Keys to create; 1000 for the named case. */
  count?: number;
  /** Concurrent create requests. */
  createConcurrency?: number;
  /** Give up after this long. */
  timeoutMs?: number;
  /** Also run the cluster engine and report its memory. */
  engine?: boolean;
  /**
   * Seconds of HTTPS load on the cluster engine (2 workers, TLS) once every Key is cached: single
   * and batch encryptions over the first 100 Keys; its resident memory is sampled every second.
   */
  engineLoadSeconds?: number;
  /** Also time a full resync. */
  resync?: boolean;
}

/**
 * `KEYWARD_BENCH_PROF=cpu|heap`: the operator writes a CPU or sampling-heap profile to
 * `$TMPDIR/keyward-bench-profiles` when it stops (open it in Chrome DevTools).
 */
const PROFILE_DIR = join(tmpdir(), 'keyward-bench-profiles');
const PROFILE =
  process.env.KEYWARD_BENCH_PROF === 'cpu'
    ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`]
    : process.env.KEYWARD_BENCH_PROF === 'heap'
      ? ['--heap-prof', `--heap-prof-dir=${PROFILE_DIR}`]
      : undefined;

/** Resident set size of a process, MiB (Linux). */
function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Spawns a Keyward process; resolves with it and a reader of its output so far. */
function spawnKeyward(args: string[]): { child: ChildProcess; output: () => string } {
  const profile = PROFILE !== undefined && args[0]?.includes('operator') ? PROFILE : [];
  const child = spawn(process.execPath, [...profile, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // As shipped (keyward-env.ts: the chart's heap flags and malloc settings).
    env: {
      ...process.env,
      ...(args[0]?.includes('operator') ? KEYWARD_OPERATOR_ENV : KEYWARD_ENV),
      KEYWARD_LOG_LEVEL: process.env.KEYWARD_BENCH_LOG ?? 'warn',
    },
  });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-200_000);
    if (process.env.KEYWARD_BENCH_LOG) process.stderr.write(d);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output: () => out };
}

async function scrape(port: number, metric: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${metric} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

/** Measures `operator-1000-keys`. */
export async function measureOperatorKeys(options: OperatorBenchOptions = {}): Promise<OperatorBenchResult> {
  const count = options.count ?? 1000;
  const shared = readState(DEFAULT_CLUSTER_DIR);
  let state: ClusterState;
  let ownDir: string | undefined;
  if (shared && (await isHealthy(shared))) {
    state = shared;
  } else {
    ownDir = join(DEFAULT_CLUSTER_DIR, 'runs', `bench-${process.pid}`);
    state = await up({ dir: ownDir, ownerPid: process.pid });
  }
  const kc = new KubeConfig();
  kc.loadFromFile(state.kubeconfig);
  // Like kubectl, keep connections alive (client-node 2.0.1 would handshake on every request).
  const client = new KubeClient(kc, { requestTimeoutMs: 60_000 });
  const core = client.api(CoreV1Api);
  const custom = client.api(CustomObjectsApi);
  const suffix = randomBytes(4).toString('hex');
  const ns = `kw-bench-${suffix}`;
  const opNs = `kw-bench-op-${suffix}`;
  let operator: ChildProcess | undefined;
  let engine: ChildProcess | undefined;
  let enOutput: () => string = () => '';
  let stopWatcher: () => void = () => undefined;
  try {
    execFileSync(join(BIN_DIR, 'kubectl'), [
      '--kubeconfig',
      state.kubeconfig,
      'apply',
      '--server-side',
      '--force-conflicts',
      '-f',
      join(REPO_ROOT, 'crds', 'keys.keyward.io.yaml'),
    ]);
    execFileSync(join(BIN_DIR, 'kubectl'), [
      '--kubeconfig',
      state.kubeconfig,
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/keys.keyward.io',
    ]);
    for (const name of [ns, opNs]) await core.createNamespace({ body: { metadata: { name } } });
    const [metricsPort] = await freePorts(1);
    const op = spawnKeyward([
      join(REPO_ROOT, 'operator', 'cli.ts'),
      '--kubeconfig',
      state.kubeconfig,
      '--namespace',
      opNs,
      '--watch-namespace',
      ns,
      '--metrics-port',
      String(metricsPort),
      '--lease-name',
      'bench',
      // A resync to time, soon after the Keys are Ready.
      '--resync-interval',
      options.resync ? '20s' : '10m',
    ]);
    operator = op.child;
    if (options.engine) {
      const en = spawnKeyward([
        join(REPO_ROOT, 'engine', 'cluster', 'cli.ts'),
        '--kubeconfig',
        state.kubeconfig,
        '--namespace',
        opNs,
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--tls',
        options.engineLoadSeconds ? 'auto' : 'off',
        '--insecure-no-auth',
        '--threads',
        options.engineLoadSeconds ? '2' : '1',
        '--identity',
        'bench-engine',
      ]);
      engine = en.child;
      enOutput = en.output;
    }
    await waitUntil(async () => {
      try {
        const lease = await client.api(CoordinationV1Api).readNamespacedLease({
          name: 'bench',
          namespace: opNs,
        });
        return Boolean(lease.spec?.holderIdentity);
      } catch {
        return false;
      }
    }, 30_000);

    // Readiness is followed with a watch (an informer), not by listing 1000 Keys over and over,
    // which would load the apiserver being measured.
    const readySet = new Set<string>();
    const watcher = makeInformer<KubernetesObject>(
      kc,
      `/apis/${KEY_GROUP}/${KEY_VERSION}/namespaces/${ns}/${KEY_PLURAL}`,
      async () =>
        (await custom.listNamespacedCustomObject({
          group: KEY_GROUP,
          version: KEY_VERSION,
          plural: KEY_PLURAL,
          namespace: ns,
        })) as KubernetesListObject<KubernetesObject>,
    );
    let signalReady: () => void = () => undefined;
    const allReady = new Promise<void>((resolve, reject) => {
      signalReady = resolve;
      setTimeout(
        () => reject(new Error('timed out waiting for Ready')),
        options.timeoutMs ?? 300_000,
      ).unref();
    });
    const onKey = (obj: KubernetesObject): void => {
      const key = obj as unknown as KeyResource;
      if (key.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
        readySet.add(key.metadata.name);
        if (readySet.size >= count) signalReady();
      }
    };
    watcher.on('add', onKey);
    watcher.on('update', onKey);
    // A dropped watch is restarted, but never after the measurement stopped it: the informer
    // reports an error when its connection closes, and a restart then would outlive the run.
    let watching = true;
    stopWatcher = () => {
      watching = false;
      watcher.stop();
    };
    watcher.on('error', () => {
      if (watching) setTimeout(() => void (watching && watcher.start().catch(() => undefined)), 500);
    });
    await watcher.start();

    const names = Array.from({ length: count }, (_, i) => `bench-${i}`);
    const started = Date.now();
    let next = 0;
    const creator = async (): Promise<void> => {
      while (next < names.length) {
        const name = names[next++]!;
        await custom.createNamespacedCustomObject({
          group: KEY_GROUP,
          version: KEY_VERSION,
          plural: KEY_PLURAL,
          namespace: ns,
          body: {
            apiVersion: `${KEY_GROUP}/${KEY_VERSION}`,
            kind: 'Key',
            metadata: { name },
            spec: { usage: 'AES256' },
          },
        });
      }
    };
    await Promise.all(Array.from({ length: options.createConcurrency ?? 32 }, creator));
    const createdMs = Date.now() - started;
    await allReady;
    stopWatcher();
    const elapsedMs = Date.now() - started;
    const result: OperatorBenchResult = {
      opsPerSec: count / (elapsedMs / 1000),
      keys: count,
      elapsedMs,
      createdMs,
      operatorRssMiB: 0,
    };
    const port = metricsPort ?? Number.NaN;
    if (options.resync && Number.isFinite(port)) {
      // The next full pass starts after every Key is Ready: it finds nothing to change.
      const before = (await scrape(port, 'keyward_operator_resyncs_total')) ?? 0;
      await waitUntil(
        async () => ((await scrape(port, 'keyward_operator_resyncs_total')) ?? 0) >= before + 2,
        120_000,
        500,
      );
      result.resyncSeconds = await scrape(port, 'keyward_operator_resync_seconds');
    }
    if (engine !== undefined) {
      // The engine has every Key and Secret cached once it serves the last one.
      await waitUntil(async () => {
        const m = /"url":"([^"]+)"/.exec(enOutput());
        if (!m) return false;
        return (await status(`${m[1]}/v1/namespaces/${ns}/keys/${names.at(-1)}`)) === 200;
      }, 120_000);
      result.engineRssMiB = rssMiB(engine.pid);
      if (options.engineLoadSeconds) {
        const url = /"url":"([^"]+)"/.exec(enOutput())![1]!;
        Object.assign(
          result,
          await loadEngine(url, ns, names.slice(0, 100), engine.pid!, options.engineLoadSeconds),
        );
      }
    }
    result.operatorRssMiB = rssMiB(operator.pid);
    if (Number.isFinite(port)) {
      result.reconcileErrors = await scrape(port, 'keyward_operator_reconcile_errors_total');
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      result.reconciles = text
        .split('\n')
        .filter((l) => l.startsWith('keyward_operator_reconciles_total{'))
        .reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
      const heap = await scrape(port, 'keyward_operator_nodejs_heap_size_used_bytes');
      if (heap !== undefined) result.operatorHeapMiB = heap / 2 ** 20;
    }
    return result;
  } finally {
    stopWatcher();
    if (PROFILE !== undefined && operator !== undefined) {
      // A profile is written on a clean exit only.
      const exited = new Promise((r) => operator?.once('exit', r));
      operator.kill('SIGTERM');
      await exited;
    }
    operator?.kill('SIGKILL');
    engine?.kill('SIGKILL');
    if (ownDir !== undefined) {
      await down({ dir: ownDir });
    } else {
      await cleanup(custom, core, ns, opNs).catch(() => undefined);
    }
  }
}

/** On a shared cluster: drop the material and release the Keys (namespaces never finalize here). */
async function cleanup(custom: CustomObjectsApi, core: CoreV1Api, ns: string, opNs: string): Promise<void> {
  await core.deleteCollectionNamespacedSecret({ namespace: opNs });
  const list = (await custom.listNamespacedCustomObject({
    group: KEY_GROUP,
    version: KEY_VERSION,
    plural: KEY_PLURAL,
    namespace: ns,
  })) as { items: KeyResource[] };
  let i = 0;
  const worker = async (): Promise<void> => {
    while (i < list.items.length) {
      const key = list.items[i++]!;
      await custom.patchNamespacedCustomObject(
        {
          group: KEY_GROUP,
          version: KEY_VERSION,
          plural: KEY_PLURAL,
          namespace: ns,
          name: key.metadata.name,
          body: { metadata: { finalizers: null } },
        },
        MERGE_PATCH,
      );
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  await custom.deleteCollectionNamespacedCustomObject({
    group: KEY_GROUP,
    version: KEY_VERSION,
    plural: KEY_PLURAL,
    namespace: ns,
  });
}

/** The status of a GET (TLS certificates unchecked: the engine's own self-signed one), or 0. */
function status(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = (url.startsWith('https:') ? httpsGet : httpGet)(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
  });
}

/** HTTPS load on the engine for `seconds`, its resident memory sampled every second. */
async function loadEngine(
  url: string,
  ns: string,
  names: string[],
  pid: number,
  seconds: number,
): Promise<
  Pick<
    OperatorBenchResult,
    'engineLoadPeakMiB' | 'engineLoadMedianMiB' | 'engineSettledMiB' | 'engineLoadRps'
  >
> {
  const autocannon = createRequire(import.meta.url)('autocannon') as (
    o: Record<string, unknown>,
  ) => Promise<{ requests: { average: number }; non2xx: number }>;
  const pt = randomBytes(1024).toString('base64');
  const single = JSON.stringify({ plaintext: pt });
  const batch = JSON.stringify({ requests: Array.from({ length: 100 }, () => ({ plaintext: pt })) });
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(rssMiB(pid)), 1000);
  const headers = { 'content-type': 'application/json' };
  const run = (path: (name: string) => string, body: string, connections: number) =>
    autocannon({
      url,
      method: 'POST',
      connections,
      duration: seconds,
      requests: names.map((name) => ({ method: 'POST', path: path(name), headers, body })),
    });
  const [s, b] = await Promise.all([
    run((n) => `/v1/namespaces/${ns}/keys/${n}/encrypt`, single, 32),
    run((n) => `/v1/namespaces/${ns}/keys/${n}/batch/encrypt`, batch, 8),
  ]);
  clearInterval(timer);
  if (s.non2xx > 0 || b.non2xx > 0) throw new Error(`engine load: ${s.non2xx + b.non2xx} failed requests`);
  await new Promise((r) => setTimeout(r, 10_000));
  const sorted = [...samples].sort((x, y) => x - y);
  return {
    engineLoadPeakMiB: sorted.at(-1)!,
    engineLoadMedianMiB: sorted[sorted.length >> 1]!,
    engineSettledMiB: rssMiB(pid),
    engineLoadRps: { single: Math.round(s.requests.average), batch100: Math.round(b.requests.average) },
  };
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms`);
}

/**
 * The cases of `npm run bench`. They have no inline baseline: the baseline column is the issue's
 * target, so the ratio says how far above or below the target a round landed. The 10,000-Key
 * case also reports memory and the resync time as extra figures.
 */
export function operatorCases(): BenchCase[] {
  return [
    {
      name: 'operator-1000-keys',
      warmUp: false,
      baselineLabel: 'target 50 keys/s (1000 Keys to Ready, real apiserver)',
      engine: async () => ({ opsPerSec: (await measureOperatorKeys({ count: 1000 })).opsPerSec }),
      baseline: async () => ({ opsPerSec: 50 }),
    },
    {
      name: 'operator-10000-keys',
      warmUp: false,
      baselineLabel: 'target 100 keys/s (10,000 Keys to Ready; + memory, resync)',
      engine: async () => {
        const r = await measureOperatorKeys({
          count: 10_000,
          engine: true,
          resync: true,
          timeoutMs: 900_000,
        });
        return {
          opsPerSec: r.opsPerSec,
          extra: {
            operatorRssMiB: r.operatorRssMiB,
            engineRssMiB: r.engineRssMiB ?? Number.NaN,
            resyncSeconds: r.resyncSeconds ?? Number.NaN,
          },
        };
      },
      baseline: async () => ({ opsPerSec: 100 }),
    },
  ];
}

if (import.meta.main) {
  const count = Number(process.argv[2] ?? 1000);
  // `node bench/operator-cases.ts 10000 --engine-load 60`: also the engine's memory under load.
  const load = process.argv.indexOf('--engine-load');
  measureOperatorKeys({
    count,
    engine: count >= 10_000 || load > 0,
    resync: count >= 10_000,
    timeoutMs: 900_000,
    ...(load > 0 ? { engineLoadSeconds: Number(process.argv[load + 1]) } : {}),
  }).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${String(err)}\n`);
      process.exit(1);
    },
  );
}
