/**
 * The fault suite's harness. The suite kills and hangs the control plane, so it runs its OWN
 * etcd and kube-apiserver (scripts/cluster `up` in a private folder), never the run's shared one,
 * and drives real processes: the cluster engine and two operator replicas, as local processes.
 *
 * - {@link Load}: a steady open-loop load of encrypt/decrypt requests across existing keys, with
 *   one ServiceAccount token validated before any fault; every request's outcome and time is kept,
 *   so each fault window reports requests sent, failed and the longest gap between successes.
 * - {@link LeaderMonitor}: polls both operators' `keyward_operator_leader` gauge and records any
 *   moment when both claim to lead.
 * - {@link etcdHistory}: every write etcd stored since a revision (etcd's own total order of
 *   writes, read through its gRPC gateway), so the suite can check whose writes these were and
 *   that no Key's status ever went backwards, including writes no watcher could see during the
 *   outage.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { BIN_DIR, type ClusterState, REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { call as callEngine } from '../cluster/engine-helpers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the built kubectl against `state`'s cluster. */
export function kubectlAt(
  state: ClusterState,
  args: readonly string[],
  input?: string,
  timeoutMs = 30_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      join(BIN_DIR, 'kubectl'),
      ['--kubeconfig', state.kubeconfig, '--request-timeout', '10s', ...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

/** kubectl that must succeed. */
export async function kubectlOk(
  state: ClusterState,
  args: readonly string[],
  input?: string,
): Promise<string> {
  const r = await kubectlAt(state, args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Retries a kubectl call every second until it succeeds (the apiserver may be down). */
export async function kubectlEventually(
  state: ClusterState,
  args: readonly string[],
  input?: string,
): Promise<void> {
  for (;;) {
    const r = await kubectlAt(state, args, input, 15_000);
    if (r.code === 0) return;
    await sleep(1000);
  }
}

/** A KubeConfig for the admin of `state`. */
export function adminKubeConfig(state: ClusterState): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(state.kubeconfig);
  return kc;
}

// ---- processes ----------------------------------------------------------------------------------

/** A spawned Keyward process whose output goes to a log file. */
export interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** kill -9 (or `signal`) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * SIGTERM, then SIGKILL if the process has not exited within `graceMs`. Resolves with how long
   * the exit took, or `undefined` if SIGKILL was needed (a hang on shutdown: in a pod, the lease or
   * the endpoint would be held until the kubelet's SIGKILL).
   */
  terminate(graceMs: number): Promise<number | undefined>;
}

function spawnLogged(name: string, args: string[], logDir: string): { proc: Proc; output: () => string } {
  const logFile = join(logDir, `${name}.log`);
  const log = createWriteStream(logFile);
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KEYWARD_LOG_LEVEL: 'info' },
  });
  let out = '';
  const collect = (d: Buffer): void => {
    log.write(d);
    if (out.length < 1_000_000) out += d.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    proc: {
      name,
      child,
      logFile,
      kill: async (signal = 'SIGKILL') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        await exited;
      },
      terminate: async (graceMs) => {
        if (child.exitCode !== null || child.signalCode !== null) return 0;
        const started = Date.now();
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), graceMs);
          }),
        ]);
        clearTimeout(timer);
        if (inTime) return Date.now() - started;
        child.kill('SIGKILL');
        await exited;
        return undefined;
      },
    },
    output: () => out,
  };
}

/** An operator replica and its metrics port. */
export interface OperatorProc extends Proc {
  identity: string;
  port: number;
}

/** Starts `operator/cli.ts` as `identity`; resolves once its health server listens. */
export async function startOperatorProc(
  state: ClusterState,
  o: { opNs: string; watchNs: string; identity: string; logDir: string },
): Promise<OperatorProc> {
  const { proc, output } = spawnLogged(
    o.identity,
    [
      join(REPO_ROOT, 'operator', 'cli.ts'),
      '--kubeconfig',
      state.kubeconfig,
      '--namespace',
      o.opNs,
      '--watch-namespace',
      o.watchNs,
      '--metrics-port',
      '0',
      '--lease-name',
      'fault-suite',
      '--lease-duration',
      '6s',
      '--identity',
      o.identity,
      '--workers',
      '8',
      '--usage-interval',
      '3s',
    ],
    o.logDir,
  );
  for (let i = 0; i < 600; i++) {
    const m = /"port":(\d+),"msg":"health server listening"/.exec(output());
    if (m) return { ...proc, identity: o.identity, port: Number(m[1]) };
    if (proc.child.exitCode !== null) throw new Error(`${o.identity} exited: ${output().slice(-2000)}`);
    await sleep(100);
  }
  throw new Error(`${o.identity} did not start: ${output().slice(-2000)}`);
}

/** The cluster engine process. */
export interface EngineProc extends Proc {
  url: string;
  ca: string;
}

/** Starts `engine/cluster/cli.ts` on loopback; resolves once it serves `/readyz`. */
export async function startEngineProc(
  state: ClusterState,
  o: { opNs: string; logDir: string },
): Promise<EngineProc> {
  const { proc, output } = spawnLogged(
    'engine',
    [
      join(REPO_ROOT, 'engine', 'cluster', 'cli.ts'),
      '--kubeconfig',
      state.kubeconfig,
      '--namespace',
      o.opNs,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--threads',
      '1',
      '--identity',
      'fault-engine',
      '--usage-report-ms',
      '2000',
    ],
    o.logDir,
  );
  let info: { url: string; caFile: string } | undefined;
  for (let i = 0; i < 600 && info === undefined; i++) {
    const line = output()
      .split('\n')
      .find((l) => l.startsWith('{"url"'));
    if (line) info = JSON.parse(line) as { url: string; caFile: string };
    else if (proc.child.exitCode !== null) throw new Error(`engine exited: ${output().slice(-2000)}`);
    else await sleep(100);
  }
  if (info === undefined) throw new Error('engine did not start');
  const engine: EngineProc = { ...proc, url: info.url, ca: readFileSync(info.caFile, 'utf8') };
  for (let i = 0; i < 600; i++) {
    const r = await call(engine, 'GET', '/readyz').catch(() => undefined);
    if (r?.status === 200) return engine;
    await sleep(100);
  }
  throw new Error(`engine never ready: ${output().slice(-2000)}`);
}

const agents = new Map<string, Agent>();

/** One HTTPS call to the engine over a keep-alive connection, with a 15 s deadline. */
export function call(
  engine: { url: string; ca: string },
  method: string,
  path: string,
  o: { token?: string; body?: unknown } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  let agent = agents.get(engine.ca);
  if (agent === undefined) {
    agent = new Agent({ keepAlive: true, maxSockets: 64, ca: engine.ca });
    agents.set(engine.ca, agent);
  }
  return callEngine(engine, method, path, { ...o, agent, timeoutMs: 15_000 });
}

/** Closes the keep-alive connections. */
export function closeAgents(): void {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}

// ---- load ---------------------------------------------------------------------------------------

/** One request's outcome. */
interface Outcome {
  at: number;
  ok: boolean;
  latencyMs: number;
  error?: string;
}

/** What a window of the load saw. */
export interface WindowStats {
  sent: number;
  failed: number;
  /** The longest time without a successful response (ms). */
  longestGapMs: number;
  maxLatencyMs: number;
  /** Requests per second sent over the window. */
  rate: number;
  /** A few failure descriptions, with their time after the window's start. */
  failures: string[];
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/**
 * An open-loop load: `rate` requests per second, whatever the answers, across `keys`; half encrypt
 * a fresh plaintext, half decrypt an earlier ciphertext of the same key and check the plaintext.
 */
export class Load {
  readonly outcomes: Outcome[] = [];
  /** Ciphertexts made during the run with their plaintexts, to decrypt again at the end. */
  readonly samples: Array<{ key: string; ciphertext: string; plaintext: string }> = [];
  readonly #latest = new Map<string, { ciphertext: string; plaintext: string }>();
  #timer: NodeJS.Timeout | undefined;
  /** When the load started (epoch ms). */
  startedAt = 0;
  #issued = 0;
  #seq = 0;
  #inflight = new Set<Promise<void>>();

  private readonly engine: { url: string; ca: string };
  private readonly token: string;
  private readonly ns: string;
  private readonly keys: readonly string[];
  private readonly rate: number;

  constructor(
    engine: { url: string; ca: string },
    token: string,
    ns: string,
    keys: readonly string[],
    rate = 250,
  ) {
    this.engine = engine;
    this.token = token;
    this.ns = ns;
    this.keys = keys;
    this.rate = rate;
  }

  start(): void {
    const started = Date.now();
    this.startedAt = started;
    this.#timer = setInterval(() => {
      const due = Math.floor(((Date.now() - started) / 1000) * this.rate);
      while (this.#issued < due) {
        this.#issued++;
        const p = this.#one().finally(() => this.#inflight.delete(p));
        this.#inflight.add(p);
      }
    }, 10);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await Promise.all([...this.#inflight]);
  }

  async #one(): Promise<void> {
    const n = this.#seq++;
    const key = this.keys[n % this.keys.length]!;
    const latest = this.#latest.get(key);
    // Every key gets both operations: alternate per round over the keys.
    const decrypt = latest !== undefined && Math.floor(n / this.keys.length) % 2 === 1;
    const started = Date.now();
    const path = `/v1/namespaces/${this.ns}/keys/${key}`;
    let outcome: Outcome;
    try {
      if (decrypt && latest !== undefined) {
        const r = await call(this.engine, 'POST', `${path}/decrypt`, {
          token: this.token,
          body: { ciphertext: latest.ciphertext },
        });
        const ok = r.status === 200 && r.body.plaintext === b64(latest.plaintext);
        outcome = {
          at: Date.now(),
          ok,
          latencyMs: Date.now() - started,
          ...(ok ? {} : { error: `decrypt ${key}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}` }),
        };
      } else {
        const plaintext = `fault-${key}-${n}`;
        const r = await call(this.engine, 'POST', `${path}/encrypt`, {
          token: this.token,
          body: { plaintext: b64(plaintext) },
        });
        const ok = r.status === 200 && typeof r.body.ciphertext === 'string';
        if (ok) {
          const sample = { ciphertext: r.body.ciphertext as string, plaintext };
          this.#latest.set(key, sample);
          if (n % 97 === 0) this.samples.push({ key, ...sample });
        }
        outcome = {
          at: Date.now(),
          ok,
          latencyMs: Date.now() - started,
          ...(ok ? {} : { error: `encrypt ${key}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}` }),
        };
      }
    } catch (err) {
      outcome = {
        at: Date.now(),
        ok: false,
        latencyMs: Date.now() - started,
        error: `${key}: ${(err as Error).message}`,
      };
    }
    this.outcomes.push(outcome);
  }

  /** The outcomes of requests that completed in [from, to]. */
  stats(from: number, to: number): WindowStats {
    const inWindow = this.outcomes.filter((o) => o.at >= from && o.at <= to);
    const ok = inWindow.filter((o) => o.ok).map((o) => o.at);
    ok.sort((a, b) => a - b);
    let gap = 0;
    let last = from;
    for (const t of ok) {
      gap = Math.max(gap, t - last);
      last = t;
    }
    gap = Math.max(gap, to - last);
    const failed = inWindow.filter((o) => !o.ok);
    return {
      sent: inWindow.length,
      failed: failed.length,
      longestGapMs: gap,
      maxLatencyMs: Math.max(0, ...inWindow.map((o) => o.latencyMs)),
      rate: inWindow.length / ((to - from) / 1000),
      failures: failed
        .filter((_, i) => i < 3 || i === failed.length - 1)
        .map((o) => `+${((o.at - from) / 1000).toFixed(1)}s ${o.error ?? '?'}`),
    };
  }
}

// ---- leadership -----------------------------------------------------------------------------------

/** Polls the operators' leader gauge; records whenever more than one claims to lead. */
export class LeaderMonitor {
  readonly samples: Array<{ at: number; leaders: string[] }> = [];
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  private readonly operators: () => readonly OperatorProc[];

  constructor(operators: () => readonly OperatorProc[]) {
    this.operators = operators;
  }

  start(): void {
    this.#timer = setInterval(() => void this.#poll(), 250);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  async #poll(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const at = Date.now();
      const states = await Promise.all(
        this.operators().map(async (op) => ((await leaderGauge(op)) === 1 ? op.identity : undefined)),
      );
      this.samples.push({ at, leaders: states.filter((s): s is string => s !== undefined) });
    } finally {
      this.#running = false;
    }
  }

  /** Samples in [from, to] where two replicas led at once. */
  overlaps(from = 0, to = Number.POSITIVE_INFINITY): Array<{ at: number; leaders: string[] }> {
    return this.samples.filter((s) => s.at >= from && s.at <= to && s.leaders.length > 1);
  }

  /** Leadership changes seen in [from, to] (a new sole leader), from the leader before `from`. */
  changes(from: number, to: number): number {
    let current: string | undefined;
    let n = 0;
    for (const s of this.samples) {
      if (s.at > to || s.leaders.length !== 1) continue;
      if (s.at < from) {
        current = s.leaders[0];
        continue;
      }
      if (current !== undefined && s.leaders[0] !== current) n++;
      current = s.leaders[0];
    }
    return n;
  }

  /** The sole leader now, if exactly one leads. */
  current(): string | undefined {
    const s = this.samples.at(-1);
    return s?.leaders.length === 1 ? s.leaders[0] : undefined;
  }
}

/** The `keyward_operator_leader` value of one replica; 0 when it does not answer. */
export async function leaderGauge(op: OperatorProc): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${op.port}/metrics`, { signal: AbortSignal.timeout(1000) });
    const line = (await res.text()).split('\n').find((l) => l.startsWith('keyward_operator_leader '));
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  } catch {
    return 0;
  }
}

// ---- etcd history ---------------------------------------------------------------------------------

/** One write etcd stored: a put (value) or a delete (no value). */
export interface EtcdEvent {
  revision: number;
  key: string;
  value: Buffer | undefined;
}

const enc = (s: string) => Buffer.from(s).toString('base64');

async function etcdPost(
  state: ClusterState,
  path: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`http://127.0.0.1:${state.etcd.clientPort}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
    ...(signal ? { signal } : {}),
  });
}

/** etcd's current revision. */
export async function etcdRevision(state: ClusterState): Promise<number> {
  const res = await etcdPost(state, '/v3/kv/range', { key: enc('/registry/'), count_only: true });
  const json = (await res.json()) as { header: { revision: string } };
  return Number(json.header.revision);
}

/** The values under `prefix` as they were at `revision`. */
export async function etcdSnapshot(
  state: ClusterState,
  prefix: string,
  revision: number,
): Promise<Map<string, Buffer>> {
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const res = await etcdPost(state, '/v3/kv/range', {
    key: enc(prefix),
    range_end: enc(end),
    revision: String(revision),
  });
  const json = (await res.json()) as { kvs?: Array<{ key: string; value: string }> };
  return new Map(
    (json.kvs ?? []).map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value, 'base64')]),
  );
}

/** Every write under `prefix` from revision `from` to the current revision, in etcd's order. */
export async function etcdHistory(state: ClusterState, prefix: string, from: number): Promise<EtcdEvent[]> {
  const until = await etcdRevision(state);
  if (until < from) return [];
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 30_000);
  const events: EtcdEvent[] = [];
  try {
    const res = await etcdPost(
      state,
      '/v3/watch',
      { create_request: { key: enc(prefix), range_end: enc(end), start_revision: String(from) } },
      ctl.signal,
    );
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let seen = from - 1;
    const lastRevision = await lastRevisionUnder(state, prefix, until);
    if (lastRevision < from) return [];
    while (seen < lastRevision) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf('\n');
        if (line === '') continue;
        const msg = JSON.parse(line) as {
          result?: {
            events?: Array<{ type?: string; kv: { key: string; value?: string; mod_revision: string } }>;
          };
        };
        for (const e of msg.result?.events ?? []) {
          const revision = Number(e.kv.mod_revision);
          seen = Math.max(seen, revision);
          if (revision > until) continue;
          events.push({
            revision,
            key: Buffer.from(e.kv.key, 'base64').toString(),
            value:
              e.type === 'DELETE' || e.kv.value === undefined ? undefined : Buffer.from(e.kv.value, 'base64'),
          });
        }
      }
      if (seen >= lastRevision) break;
    }
    await reader.cancel().catch(() => undefined);
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
  return events;
}

/** The last revision, up to `until`, at which anything under `prefix` changed. */
async function lastRevisionUnder(state: ClusterState, prefix: string, until: number): Promise<number> {
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const res = await etcdPost(state, '/v3/kv/range', {
    key: enc(prefix),
    range_end: enc(end),
    revision: String(until),
    keys_only: true,
    sort_order: 'DESCEND',
    sort_target: 'MOD',
    limit: '1',
  });
  const json = (await res.json()) as { kvs?: Array<{ mod_revision: string }> };
  return Number(json.kvs?.[0]?.mod_revision ?? 0);
}
