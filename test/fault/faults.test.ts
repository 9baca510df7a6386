/**
 * Fault injection on real processes (issue #10): the cluster engine and two operator replicas run
 * as local processes against a control plane of this suite's own, under a steady load of at least
 * 200 requests/s across 50 existing keys from one ServiceAccount token validated before the first
 * fault. Five faults, one after the other:
 *   1. kill -9 the apiserver, restart it 20 s later;
 *   2. SIGSTOP the apiserver for 30 s, then SIGCONT;
 *   3. kill -9 etcd, restart it 15 s later;
 *   4. cut every watch (kill the apiserver and restart it at once);
 *   5. kill -9 the leader operator.
 * For each: requests sent, failed and the longest gap between successes (a table is printed), and
 * - zero failed requests on existing keys for faults 1-4;
 * - never two leaders at once (the replicas' leader gauges), and the operators' writes, in etcd's
 *   own order, never interleave beyond the leadership changes seen (each write records its writer);
 * - a Key created and a Key rotated during the fault are Ready within 30 s after recovery;
 * - no Key's status ever goes backwards, in any write etcd stored;
 * and at the end no material is lost: every version unwraps, and ciphertexts made throughout the
 * run still decrypt.
 */
import { cpSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unwrapMaterial } from '../../engine/crypto/wrap.ts';
import type { KeyResource } from '../../engine/kube/key-resource.ts';
import { masterKeyFromSecret } from '../../engine/kube/master-key-secret.ts';
import { decodeMaterialSecret } from '../../engine/kube/material-secret.ts';
import {
  type ClusterState,
  DEFAULT_CLUSTER_DIR,
  down,
  killComponent,
  REPO_ROOT,
  signalComponent,
  startComponent,
  up,
} from '../../scripts/cluster/cluster.ts';
import {
  call,
  closeAgents,
  type EngineProc,
  etcdHistory,
  etcdRevision,
  etcdSnapshot,
  kubectlAt,
  kubectlEventually,
  kubectlOk,
  LeaderMonitor,
  Load,
  type OperatorProc,
  startEngineProc,
  startOperatorProc,
  type WindowStats,
} from './harness.ts';

const NS = 'kw-fault';
const OPNS = 'kw-fault-op';
const KEYS = Array.from({ length: 50 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
const IDS = ['fault-op-a', 'fault-op-b'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = join(DEFAULT_CLUSTER_DIR, 'runs', `fault-${process.pid}`);
let state: ClusterState;
let engine: EngineProc;
let operators: OperatorProc[] = [];
let load: Load;
let monitor: LeaderMonitor;

interface Row {
  fault: string;
  stats: WindowStats;
  leaderChanges: number;
  writes: Record<string, number>;
  writerRuns: number;
  readyAfterRecoveryMs: number;
  backwards: string[];
  overlaps: number;
}
const rows: Row[] = [];

const keyManifest = (name: string, annotations?: Record<string, string>) =>
  JSON.stringify({
    apiVersion: 'keyward.io/v1alpha1',
    kind: 'Key',
    metadata: { name, namespace: NS, ...(annotations ? { annotations } : {}) },
    spec: { usage: 'AES256' },
  });

async function listKeys(): Promise<KeyResource[]> {
  const r = await kubectlAt(state, ['get', 'keys.keyward.io', '-n', NS, '-o', 'json']);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as { items: KeyResource[] }).items;
}

const ready = (k: KeyResource | undefined): boolean =>
  k?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true &&
  k.status.observedGeneration === k.metadata.generation;

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

async function apiserverReady(): Promise<void> {
  await until(
    'the apiserver',
    async () => ((await kubectlAt(state, ['get', '--raw', '/readyz'])).code === 0 ? true : undefined),
    120_000,
  );
}

/** Steady state: one leader, every Key Ready, the last 5 s of load all good at full rate. */
async function steady(): Promise<void> {
  await until(
    'a steady state',
    async () => {
      if (monitor.current() === undefined || Date.now() - load.startedAt < 5000) return undefined;
      const keys = await listKeys();
      if (keys.length < KEYS.length || !keys.every(ready)) return undefined;
      const s = load.stats(Date.now() - 5000, Date.now());
      return s.rate >= 200 && s.failed === 0 ? true : undefined;
    },
    120_000,
  );
}

/** Checks one Key's status against its previous one; returns what went backwards. */
function backwards(name: string, before: KeyResource | undefined, after: KeyResource): string[] {
  const b = before?.status;
  const a = after.status;
  if (b === undefined) return [];
  const out: string[] = [];
  const less = (x: number | undefined, y: number | undefined) =>
    x !== undefined && (y === undefined || y < x);
  if (less(b.currentVersion, a?.currentVersion))
    out.push(`${name}: currentVersion ${b.currentVersion} → ${a?.currentVersion}`);
  if (less(b.versions?.length, a?.versions?.length)) out.push(`${name}: versions shrank`);
  if (less(b.observedGeneration, a?.observedGeneration)) out.push(`${name}: observedGeneration went back`);
  if (b.state === 'Enabled' && a?.state !== 'Enabled') out.push(`${name}: state ${b.state} → ${a?.state}`);
  const readyBefore = b.conditions?.find((c) => c.type === 'Ready')?.status;
  const readyAfter = a?.conditions?.find((c) => c.type === 'Ready')?.status;
  if (readyBefore === 'True' && readyAfter !== 'True')
    out.push(`${name}: Ready ${readyBefore} → ${readyAfter}`);
  for (const [op, n] of Object.entries(b.operationCounts ?? {})) {
    if (less(n, a?.operationCounts?.[op as keyof typeof a.operationCounts]))
      out.push(`${name}: ${op} count went back`);
  }
  const t = (s: string | undefined) => (s === undefined ? undefined : Date.parse(s));
  if (less(t(b.lastUsedTime), t(a?.lastUsedTime))) out.push(`${name}: lastUsedTime went back`);
  return out;
}

/** Reads what etcd stored since `fromRev`: who wrote, and whether any status went backwards. */
async function analyseWrites(fromRev: number): Promise<Pick<Row, 'writes' | 'writerRuns' | 'backwards'>> {
  const keyPrefix = `/registry/keyward.io/keys/${NS}/`;
  const secretPrefix = `/registry/secrets/${OPNS}/kkey.`;
  const writes: Array<{ revision: number; writer: string }> = [];
  for (const e of await etcdHistory(state, secretPrefix, fromRev)) {
    const writer = e.value === undefined ? undefined : IDS.find((id) => e.value!.includes(id));
    if (writer !== undefined) writes.push({ revision: e.revision, writer });
  }
  const previous = new Map<string, KeyResource>();
  for (const [k, v] of await etcdSnapshot(state, keyPrefix, fromRev - 1))
    previous.set(k, JSON.parse(v.toString()));
  const back: string[] = [];
  for (const e of await etcdHistory(state, keyPrefix, fromRev)) {
    if (e.value === undefined) {
      previous.delete(e.key);
      continue;
    }
    const key = JSON.parse(e.value.toString()) as KeyResource;
    const before = previous.get(e.key);
    if (JSON.stringify(before?.status ?? null) !== JSON.stringify(key.status ?? null)) {
      // Only the operator writes status: this write is the status writer's.
      if (key.status?.reconciledBy !== undefined)
        writes.push({ revision: e.revision, writer: key.status.reconciledBy });
      back.push(...backwards(key.metadata.name, before, key));
    }
    previous.set(e.key, key);
  }
  writes.sort((a, b) => a.revision - b.revision);
  let runs = 0;
  let last: string | undefined;
  const counts: Record<string, number> = {};
  for (const w of writes) {
    counts[w.writer] = (counts[w.writer] ?? 0) + 1;
    if (w.writer !== last) runs++;
    last = w.writer;
  }
  return { writes: counts, writerRuns: runs, backwards: back };
}

/** Runs one fault: inject, change Keys meanwhile, recover, measure. */
async function fault(n: number, name: string, inject: (change: () => void) => Promise<number>): Promise<Row> {
  await steady();
  const fromRev = (await etcdRevision(state)) + 1;
  const from = Date.now();
  const created = `new-${n}`;
  const rotated = KEYS[n]!;
  const rotateValue = `fault-${n}`;
  // Changes made during the fault: applied as soon as the apiserver takes them.
  let changes: Promise<unknown> = Promise.resolve();
  const change = (): void => {
    changes = Promise.all([
      kubectlEventually(state, ['apply', '-f', '-'], keyManifest(created)),
      kubectlEventually(state, [
        'annotate',
        '--overwrite',
        'keys.keyward.io',
        rotated,
        '-n',
        NS,
        `keyward.io/rotate=${rotateValue}`,
      ]),
    ]);
  };
  const recoveredAt = await inject(change);
  await changes;
  const keysReady = await until(
    `${created} Ready and ${rotated} rotated`,
    async () => {
      const keys = await listKeys();
      const c = keys.find((k) => k.metadata.name === created);
      const r = keys.find((k) => k.metadata.name === rotated);
      return ready(c) && ready(r) && r?.status?.rotateHandled === rotateValue ? Date.now() : undefined;
    },
    60_000,
  );
  await sleep(3000);
  const to = Date.now();
  const row: Row = {
    fault: `${n}. ${name}`,
    stats: load.stats(from, to),
    leaderChanges: monitor.changes(from, to),
    readyAfterRecoveryMs: Math.max(0, keysReady - recoveredAt),
    overlaps: monitor.overlaps(from, to).length,
    ...(await analyseWrites(fromRev)),
  };
  rows.push(row);
  return row;
}

beforeAll(async () => {
  state = await up({ dir, ownerPid: process.pid });
  await kubectlOk(state, ['apply', '--server-side', '-f', join(REPO_ROOT, 'crds', 'keys.keyward.io.yaml')]);
  await kubectlOk(state, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/keys.keyward.io']);
  for (const ns of [NS, OPNS]) await kubectlOk(state, ['create', 'namespace', ns]);
  await kubectlOk(state, ['create', 'serviceaccount', 'app', '-n', NS]);
  await kubectlOk(state, [
    'create',
    'role',
    'app',
    '-n',
    NS,
    '--verb=encrypt,decrypt',
    '--resource=keys.keyward.io',
  ]);
  await kubectlOk(state, [
    'create',
    'rolebinding',
    'app',
    '-n',
    NS,
    '--role=app',
    `--serviceaccount=${NS}:app`,
  ]);
  const token = (
    await kubectlOk(state, ['create', 'token', 'app', '-n', NS, '--audience', 'keyward', '--duration', '2h'])
  ).trim();
  const logDir = join(dir, 'logs');
  operators = [
    await startOperatorProc(state, { opNs: OPNS, watchNs: NS, identity: IDS[0]!, logDir }),
    await startOperatorProc(state, { opNs: OPNS, watchNs: NS, identity: IDS[1]!, logDir }),
  ];
  monitor = new LeaderMonitor(() => operators);
  monitor.start();
  await kubectlOk(
    state,
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: KEYS.map((k) => JSON.parse(keyManifest(k))) }),
  );
  await until(
    '50 Keys Ready',
    async () => ((await listKeys()).filter(ready).length === KEYS.length ? true : undefined),
    180_000,
  );
  engine = await startEngineProc(state, { opNs: OPNS, logDir });
  // The token is validated (and every key's first use made) before any fault.
  for (const k of KEYS) {
    const r = await call(engine, 'POST', `/v1/namespaces/${NS}/keys/${k}/encrypt`, {
      token,
      body: { plaintext: 'aGk=' },
    });
    expect(r.status).toBe(200);
  }
  load = new Load(engine, token, NS, KEYS, 250);
  load.start();
}, 600_000);

afterAll(async () => {
  await load?.stop();
  monitor?.stop();
  closeAgents();
  printTable();
  // Whatever the last test left running (after a failure) is killed outright.
  await Promise.all([engine, ...operators].filter(Boolean).map((p) => p.kill('SIGKILL')));
  if (state !== undefined) {
    // The apiserver may still be stopped if a fault failed half-way.
    try {
      signalComponent(state, 'apiserver', 'SIGCONT');
    } catch {}
    await down({ dir });
  }
  // The processes' logs outlive the run, for a failure's post-mortem (one run's worth is kept).
  const kept = join(tmpdir(), 'keyward-fault-logs');
  rmSync(kept, { recursive: true, force: true });
  if (existsSync(join(dir, 'logs'))) {
    cpSync(join(dir, 'logs'), kept, { recursive: true });
    console.log(`fault suite logs: ${kept}`);
  }
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

function printTable(): void {
  const head = [
    'fault',
    'sent',
    'failed',
    'req/s',
    'longest gap',
    'max latency',
    'leader changes',
    'writes by replica',
    'writer runs',
    'Ready after recovery',
  ];
  const lines = rows.map((r) => [
    r.fault,
    String(r.stats.sent),
    String(r.stats.failed),
    r.stats.rate.toFixed(0),
    `${r.stats.longestGapMs} ms`,
    `${r.stats.maxLatencyMs} ms`,
    String(r.leaderChanges),
    Object.entries(r.writes)
      .map(([w, c]) => `${w.replace('fault-op-', '')}:${c}`)
      .join(' '),
    String(r.writerRuns),
    `${(r.readyAfterRecoveryMs / 1000).toFixed(1)} s`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(['', fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt), ''].join('\n'));
}

/** The assertions every fault shares. */
function expectHealthy(row: Row, zeroFailures: boolean): void {
  if (zeroFailures) expect(row.stats.failures, `${row.fault}: failed requests`).toEqual([]);
  expect(row.stats.rate, `${row.fault}: request rate`).toBeGreaterThanOrEqual(200);
  expect(row.overlaps, `${row.fault}: two leaders at once`).toBe(0);
  expect(row.writerRuns, `${row.fault}: writes of two replicas interleaved`).toBeLessThanOrEqual(
    1 + row.leaderChanges,
  );
  expect(row.backwards, `${row.fault}: a status went backwards`).toEqual([]);
  expect(
    row.readyAfterRecoveryMs,
    `${row.fault}: Keys changed during the fault Ready after recovery`,
  ).toBeLessThanOrEqual(30_000);
}

describe('faults', () => {
  it('1. kill -9 the apiserver, restart it 20 s later', async () => {
    const row = await fault(1, 'apiserver kill -9, 20 s', async (change) => {
      const stopped = await killComponent(state, 'apiserver');
      change();
      await sleep(20_000);
      await startComponent(state, stopped);
      return Date.now();
    });
    expectHealthy(row, true);
  }, 240_000);

  it('2. SIGSTOP the apiserver for 30 s', async () => {
    const row = await fault(2, 'apiserver SIGSTOP, 30 s', async (change) => {
      signalComponent(state, 'apiserver', 'SIGSTOP');
      change();
      await sleep(30_000);
      signalComponent(state, 'apiserver', 'SIGCONT');
      await apiserverReady();
      return Date.now();
    });
    expectHealthy(row, true);
  }, 240_000);

  it('3. kill -9 etcd, restart it 15 s later', async () => {
    const row = await fault(3, 'etcd kill -9, 15 s', async (change) => {
      const stopped = await killComponent(state, 'etcd');
      change();
      await sleep(15_000);
      await startComponent(state, stopped);
      await apiserverReady();
      return Date.now();
    });
    expectHealthy(row, true);
  }, 240_000);

  it('4. cut every watch (restart the apiserver at once)', async () => {
    const row = await fault(4, 'watch cut (apiserver restart)', async (change) => {
      const stopped = await killComponent(state, 'apiserver');
      change();
      await startComponent(state, stopped);
      return Date.now();
    });
    expectHealthy(row, true);
  }, 240_000);

  it('5. kill -9 the leader operator', async () => {
    const row = await fault(5, 'leader operator kill -9', async (change) => {
      const leader = operators.find((o) => o.identity === monitor.current());
      if (leader === undefined) throw new Error('no leader');
      await leader.kill('SIGKILL');
      change();
      const standby = operators.find((o) => o !== leader)!;
      await until(
        'the standby to lead',
        async () => (monitor.current() === standby.identity ? true : undefined),
        60_000,
      );
      return Date.now();
    });
    // The engine does not depend on the operator: existing keys keep working here too.
    expectHealthy(row, true);
    expect(row.leaderChanges).toBe(1);
  }, 240_000);

  it('loses no material: every version unwraps, every ciphertext made during the run decrypts', async () => {
    await load.stop();
    const masterJson = await kubectlOk(state, [
      'get',
      'secret',
      'keyward-master-key',
      '-n',
      OPNS,
      '-o',
      'json',
    ]);
    const master = masterKeyFromSecret(JSON.parse(masterJson));
    const secrets = JSON.parse(
      await kubectlOk(state, ['get', 'secrets', '-n', OPNS, '-l', 'keyward.io/material=true', '-o', 'json']),
    ) as { items: Array<{ data: Record<string, string> }> };
    const keys = await listKeys();
    expect(secrets.items.length).toBe(keys.length);
    for (const s of secrets.items) {
      const { record } = decodeMaterialSecret({ data: s.data });
      const key = keys.find((k) => k.metadata.name === record.name);
      expect(record.currentVersion).toBe(key?.status?.currentVersion);
      for (const v of record.versions) {
        const material = unwrapMaterial(
          master,
          { store: record.namespace, name: record.name, usage: record.usage, version: v.version },
          Buffer.from(v.wrapped, 'base64'),
        );
        expect(material.length).toBe(32);
      }
    }
    const token = (
      await kubectlOk(state, ['create', 'token', 'app', '-n', NS, '--audience', 'keyward'])
    ).trim();
    expect(load.samples.length).toBeGreaterThan(100);
    for (const s of load.samples) {
      // A new token needs a fresh access review; on a loaded machine one can time out, and the
      // engine answers 503 (retryable, docs/api.md). Availability is the load's count above;
      // here only what is decrypted counts, so a 503 is retried as a client would.
      let r = await call(engine, 'POST', `/v1/namespaces/${NS}/keys/${s.key}/decrypt`, {
        token,
        body: { ciphertext: s.ciphertext },
      });
      for (let tries = 0; r.status === 503 && tries < 30; tries++) {
        await sleep(1000);
        r = await call(engine, 'POST', `/v1/namespaces/${NS}/keys/${s.key}/decrypt`, {
          token,
          body: { ciphertext: s.ciphertext },
        });
      }
      expect(r.status).toBe(200);
      expect(Buffer.from(r.body.plaintext as string, 'base64').toString()).toBe(s.plaintext);
    }
    expect(monitor.overlaps()).toEqual([]);
  }, 240_000);

  it('every process still running exits on SIGTERM within 20 s (a hang would hold the lease or the endpoint until SIGKILL)', async () => {
    monitor.stop();
    const running = [engine, ...operators].filter(
      (p) => p.child.exitCode === null && p.child.signalCode === null,
    );
    expect(running.length).toBeGreaterThanOrEqual(2);
    const took = await Promise.all(running.map(async (p) => [p.name, await p.terminate(20_000)] as const));
    expect(took.filter(([, ms]) => ms === undefined).map(([name]) => name)).toEqual([]);
    // Exit 0: a clean stop, not the shutdown limit's forced exit.
    expect(running.map((p) => [p.name, p.child.exitCode])).toEqual(running.map((p) => [p.name, 0]));
  }, 60_000);
});
