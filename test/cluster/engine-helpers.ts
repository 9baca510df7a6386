/**
 * Fixtures of the cluster-engine suites (test/cluster/engine-*.test.ts): the Key CRD, an
 * operator namespace with a master key, Keys with material written the way the operator writes
 * it (operator/material-secret.ts encoders and the engine's wrap), the engine's least-privilege
 * ServiceAccount and kubeconfig, a spawned engine process and an HTTPS client for it.
 *
 * Material is written here rather than by the operator so these suites test the engine alone
 * (the operator has suites of its own); the format is the operator's, through its encoders.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { type Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, type V1Secret } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type AuditConfig, defaultAuditConfig } from '../../engine/audit/config.ts';
import { fingerprint } from '../../engine/crypto/fingerprint.ts';
import { generateMaterial } from '../../engine/crypto/material.ts';
import { wrapMaterial } from '../../engine/crypto/wrap.ts';
import type { KeyRecord, KeyState, KeyUsage } from '../../engine/keys/model.ts';
import {
  decodeMaterialSecret,
  encodeMaterialSecret,
  materialSecretName,
} from '../../engine/kube/material-secret.ts';
import { MASTER_KEY_ENTRY, MASTER_KEY_SECRET } from '../../operator/material-store.ts';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { cluster, createNamespace, kubectl, makeKubeConfig, waitFor } from './harness.ts';

export const custom = (): CustomObjectsApi => makeKubeConfig().makeApiClient(CustomObjectsApi);
export const core = (): CoreV1Api => makeKubeConfig().makeApiClient(CoreV1Api);

/** Applies the Key CRD and waits until it is served. */
export async function applyKeyCrd(): Promise<void> {
  await kubectl(['apply', '-f', join(REPO_ROOT, 'crds', 'keys.keyward.io.yaml')]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/keys.keyward.io']);
}

/** An operator namespace holding a master-key Secret as the operator creates it. */
export async function operatorNamespace(): Promise<{ namespace: string; master: KeyObject }> {
  const namespace = await createNamespace('kw-eng');
  const raw = randomBytes(32);
  await core().createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: MASTER_KEY_SECRET, labels: { 'keyward.io/master-key': 'true' } },
      type: 'keyward.io/master-key',
      data: { [MASTER_KEY_ENTRY]: raw.toString('base64') },
    },
  });
  return { namespace, master: createSecretKey(raw) };
}

/** What {@link createKey} makes. */
export interface KeyFixture {
  namespace: string;
  name: string;
  uid: string;
}

/**
 * Creates Key `namespace/name` and its material (version 1) and status, as a reconciled key looks.
 * `state` is written to the material record and the status (the spec stays Enabled unless given).
 */
export async function createKey(
  op: { namespace: string; master: KeyObject },
  namespace: string,
  name: string,
  options: {
    usage?: KeyUsage;
    state?: KeyState;
    specState?: KeyState;
    boundary?: 'Global' | 'Isolated';
    region?: string;
  } = {},
): Promise<KeyFixture> {
  const usage = options.usage ?? 'AES256';
  const spec: Record<string, unknown> = { usage, state: options.specState ?? 'Enabled' };
  if (options.boundary === 'Isolated') Object.assign(spec, { boundary: 'Isolated', region: options.region });
  const key = (await custom().createNamespacedCustomObject({
    group: 'keyward.io',
    version: 'v1alpha1',
    plural: 'keys',
    namespace,
    body: { apiVersion: 'keyward.io/v1alpha1', kind: 'Key', metadata: { name }, spec },
  })) as { metadata: { uid: string } };
  const now = Date.now();
  const material = generateMaterial(usage);
  const record: KeyRecord = {
    namespace,
    name,
    usage,
    convergent: false,
    boundary: options.boundary ?? 'Global',
    ...(options.region === undefined ? {} : { region: options.region }),
    rotation: { enabled: true, periodDays: 90 },
    memo: '',
    state: options.state ?? 'Enabled',
    createdTime: now,
    currentVersion: 1,
    versions: [
      {
        version: 1,
        createdTime: now,
        wrapped: wrapMaterial(op.master, { store: namespace, name, usage, version: 1 }, material).toString(
          'base64',
        ),
      },
    ],
    rotationAnchorTime: now,
    operationCounts: {},
  };
  const fp = await fingerprint(usage, material);
  const secret = encodeMaterialSecret(op.namespace, { record, ownerUid: key.metadata.uid, fingerprint: fp });
  await core().createNamespacedSecret({ namespace: op.namespace, body: secret as V1Secret });
  await setStatusState(namespace, name, record.state, 1);
  return { namespace, name, uid: key.metadata.uid };
}

/** Writes `status.state` (and currentVersion) as the operator would. */
export async function setStatusState(
  namespace: string,
  name: string,
  state: KeyState,
  version: number,
): Promise<void> {
  await kubectl([
    'patch',
    'keys.keyward.io',
    name,
    '-n',
    namespace,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status: { state, currentVersion: version } }),
  ]);
}

/** Adds a version to the key's material and makes it current (a rotation, as the operator does it). */
export async function rotateKey(
  op: { namespace: string; master: KeyObject },
  key: KeyFixture,
): Promise<number> {
  const name = materialSecretName(key.namespace, key.name);
  const secret = await core().readNamespacedSecret({ name, namespace: op.namespace });
  const stored = decodeMaterialSecret({ data: secret.data ?? {} });
  const r = stored.record;
  const version = r.currentVersion + 1;
  const material = generateMaterial(r.usage);
  const wrapped = wrapMaterial(
    op.master,
    { store: r.namespace, name: r.name, usage: r.usage, version },
    material,
  );
  const next: KeyRecord = {
    ...r,
    currentVersion: version,
    versions: [...r.versions, { version, createdTime: Date.now(), wrapped: wrapped.toString('base64') }],
  };
  const body = encodeMaterialSecret(op.namespace, {
    ...stored,
    record: next,
    fingerprint: await fingerprint(r.usage, material),
  }) as V1Secret;
  body.metadata = { ...body.metadata, resourceVersion: secret.metadata?.resourceVersion };
  await core().replaceNamespacedSecret({ name, namespace: op.namespace, body });
  await setStatusState(key.namespace, key.name, r.state, version);
  return version;
}

/**
 * The engine's ServiceAccount with exactly the RBAC the chart grants (docs/cluster-engine.md),
 * and a kubeconfig file that authenticates as it with a TokenRequest token.
 */
export async function engineServiceAccount(opNamespace: string): Promise<string> {
  const sa = 'keyward-engine';
  const role = `keyward-engine-${opNamespace}`;
  const manifest = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: opNamespace } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: role },
      rules: [
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
        { apiGroups: ['keyward.io'], resources: ['keys'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: role },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [{ kind: 'ServiceAccount', name: sa, namespace: opNamespace }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'keyward-engine', namespace: opNamespace },
      rules: [
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'update'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'keyward-engine', namespace: opNamespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'keyward-engine' },
      subjects: [{ kind: 'ServiceAccount', name: sa, namespace: opNamespace }],
    },
  ];
  await kubectl(['apply', '-f', '-'], { input: manifest.map((m) => stringify(m)).join('---\n') });
  const token = (await kubectl(['create', 'token', sa, '-n', opNamespace, '--duration', '2h'])).stdout.trim();
  return writeKubeconfig(cluster().server, token, `engine-${opNamespace}`);
}

/** Writes a kubeconfig (0600) for `server` with a bearer token; returns its path. */
export function writeKubeconfig(server: string, token: string, user: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-engine-kc-'));
  const path = join(dir, 'kubeconfig');
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'test',
        cluster: { server, 'certificate-authority-data': Buffer.from(cluster().caPem).toString('base64') },
      },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user } }],
    'current-context': 'test',
  };
  writeFileSync(path, stringify(doc), { mode: 0o600 });
  return path;
}

/** A ServiceAccount token from the TokenRequest API. */
export async function saToken(namespace: string, sa: string, audience?: string): Promise<string> {
  const args = ['create', 'token', sa, '-n', namespace, '--duration', '1h'];
  if (audience !== undefined) args.push('--audience', audience);
  return (await kubectl(args)).stdout.trim();
}

/**
 * Audit settings for an engine run inside the test process: the log stays on, as in production,
 * but goes to segment files in a temp dir instead of stdout, where its lines (thousands in a
 * load test) would bury the test output. Tests may read and verify the files.
 */
export function fileAudit(): AuditConfig & { dir: string } {
  return {
    ...defaultAuditConfig(),
    stdout: false,
    dir: mkdtempSync(join(tmpdir(), 'keyward-engine-audit-')),
  };
}

/** A spawned engine process. */
export interface EngineProcess {
  url: string;
  /** The /metrics listener (its own port, same TLS). */
  metricsUrl: string;
  ca: string;
  child: ChildProcess;
  stderr: () => string;
  stop(): Promise<void>;
}

/** Spawns `engine/cluster/cli.ts` and waits until it listens and `/readyz` answers 200. */
export async function spawnEngine(args: string[]): Promise<EngineProcess> {
  const child = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'engine', 'cluster', 'cli.ts'),
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--threads',
      '1',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KEYWARD_LOG_LEVEL: 'warn' } },
  );
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out: string | undefined = '';
    child.stdout?.on('data', (d: Buffer) => {
      // Audit records (JSON lines too) share stdout: once the listening line is found, the rest is
      // read and dropped rather than kept for the whole life of the process.
      if (out === undefined) return;
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{"url"'));
      if (line !== undefined) {
        out = undefined;
        resolve(line);
      }
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${err}`)));
  });
  const info = JSON.parse(line) as { url: string; metricsUrl: string; caFile: string };
  const engine: EngineProcess = {
    url: info.url,
    metricsUrl: info.metricsUrl,
    ca: readFileSync(info.caFile, 'utf8'),
    child,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
  await waitFor(
    'engine ready',
    async () => ((await call(engine, 'GET', '/readyz')).status === 200 ? true : undefined),
    60_000,
  );
  return engine;
}

/** A JSON response body, inspected loosely by the assertions. */
// biome-ignore lint/suspicious/noExplicitAny: tests read response fields by path and assert them
export type Body = any;

/** One HTTPS call to an engine. */
export function call(
  engine: { url: string; ca: string },
  method: string,
  path: string,
  options: { token?: string; body?: unknown; agent?: Agent; timeoutMs?: number } = {},
): Promise<{ status: number; body: Body }> {
  const url = new URL(path, engine.url);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ca: engine.ca,
        ...(options.agent === undefined ? {} : { agent: options.agent }),
        ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timed out after ${options.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

export const b64 = (text: string): string => Buffer.from(text).toString('base64');
export const keyPath = (namespace: string, name: string, tail = ''): string =>
  `/v1/namespaces/${namespace}/keys/${name}${tail}`;
