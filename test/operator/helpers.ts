/**
 * Shared helpers of the operator suites: install the CRD, run operator replicas as child
 * processes against the test control plane, read Keys and their material, and check that
 * unwrapped material is a real key of its usage.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createSecretKey,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { fingerprint } from '../../engine/crypto/fingerprint.ts';
import { unwrapMaterial } from '../../engine/crypto/wrap.ts';
import type { KeyUsage } from '../../engine/keys/model.ts';
import { KEY_GROUP, KEY_PLURAL, KEY_VERSION, type KeyResource } from '../../engine/kube/key-resource.ts';
import {
  decodeMaterialSecret,
  materialSecretName,
  type StoredKey,
} from '../../engine/kube/material-secret.ts';
import { MASTER_KEY_ENTRY, MASTER_KEY_SECRET } from '../../operator/material-store.ts';
import { type ChartServiceAccountKubeconfigs, installChartServiceAccounts } from '../chart/helpers.ts';
import { createNamespace, kubeconfigPath, kubectl, makeKubeConfig, waitFor } from '../cluster/harness.ts';

/** Repository root. */
export const ROOT = join(import.meta.dirname, '..', '..');
/** The CRD manifest. */
export const CRD = join(ROOT, 'crds', 'keys.keyward.io.yaml');

/** Applies the CRD and waits until it is Established. */
export async function installCrd(): Promise<void> {
  await kubectl(['apply', '--server-side', '--force-conflicts', '-f', CRD]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/keys.keyward.io']);
}

/** Clients for the admin user. */
export function clients(): { custom: CustomObjectsApi; core: CoreV1Api } {
  const kc = makeKubeConfig();
  return { custom: kc.makeApiClient(CustomObjectsApi), core: kc.makeApiClient(CoreV1Api) };
}

/** Reads Key `ns/name`, or undefined when it is gone. */
export async function getKey(ns: string, name: string): Promise<KeyResource | undefined> {
  try {
    return (await clients().custom.getNamespacedCustomObject({
      group: KEY_GROUP,
      version: KEY_VERSION,
      plural: KEY_PLURAL,
      namespace: ns,
      name,
    })) as KeyResource;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/** Waits until Key `ns/name` satisfies `check`, returning it. */
export function waitForKey(
  ns: string,
  name: string,
  what: string,
  check: (key: KeyResource) => boolean,
  timeoutMs = 30_000,
): Promise<KeyResource> {
  return waitFor(
    `${ns}/${name}: ${what}`,
    async () => {
      const key = await getKey(ns, name);
      return key !== undefined && check(key) ? key : undefined;
    },
    timeoutMs,
  );
}

/** Waits until Key `ns/name` no longer exists. */
export async function waitGone(ns: string, name: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `${ns}/${name} to be gone`,
    async () => ((await getKey(ns, name)) === undefined ? true : undefined),
    timeoutMs,
  );
}

/** True when the Key reports Ready=True and Enabled=`enabled` for its current generation. */
export function isReady(key: KeyResource, enabled = true): boolean {
  const c = key.status?.conditions ?? [];
  const ready = c.find((x) => x.type === 'Ready');
  const en = c.find((x) => x.type === 'Enabled');
  return (
    ready?.status === 'True' &&
    en?.status === (enabled ? 'True' : 'False') &&
    key.status?.observedGeneration === key.metadata.generation
  );
}

/** Reads the stored material of Key `ns/name` from the operator namespace `opNs`. */
export async function readMaterial(opNs: string, ns: string, name: string): Promise<StoredKey | undefined> {
  try {
    const s = await clients().core.readNamespacedSecret({
      name: materialSecretName(ns, name),
      namespace: opNs,
    });
    return decodeMaterialSecret({ data: s.data ?? {} });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/**
 * Unwraps every version of `stored` with the master key of `opNs` and checks each is a valid key
 * of its usage (a working AES-256-GCM key, an RSA-2048 or P-256 private key that signs), and that
 * the current version's fingerprint matches. Returns the unwrapped material per version.
 */
export async function checkMaterial(opNs: string, stored: StoredKey): Promise<Map<number, Buffer>> {
  const secret = await clients().core.readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
  const master = createSecretKey(Buffer.from(secret.data?.[MASTER_KEY_ENTRY] ?? '', 'base64'));
  const r = stored.record;
  const out = new Map<number, Buffer>();
  for (const v of r.versions) {
    const material = unwrapMaterial(
      master,
      { store: r.namespace, name: r.name, usage: r.usage, version: v.version },
      Buffer.from(v.wrapped, 'base64'),
    );
    assertValidKey(r.usage, material);
    out.set(v.version, material);
  }
  const current = out.get(r.currentVersion);
  if (current === undefined) throw new Error('current version missing');
  const fp = await fingerprint(r.usage, current);
  if (fp !== stored.fingerprint) throw new Error(`fingerprint mismatch: ${fp} vs ${stored.fingerprint}`);
  return out;
}

function assertValidKey(usage: KeyUsage, material: Buffer): void {
  const data = randomBytes(64);
  if (usage === 'AES256') {
    if (material.length !== 32) throw new Error('AES material is not 32 bytes');
    const key = createSecretKey(material);
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    const ct = Buffer.concat([c.update(data), c.final()]);
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAuthTag(c.getAuthTag());
    if (!Buffer.concat([d.update(ct), d.final()]).equals(data)) throw new Error('AES round trip failed');
    return;
  }
  const priv = createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
  const details = priv.asymmetricKeyDetails ?? {};
  if (usage === 'RSA2048' && (priv.asymmetricKeyType !== 'rsa' || details.modulusLength !== 2048)) {
    throw new Error('not an RSA-2048 key');
  }
  if (usage === 'ECDSA' && (priv.asymmetricKeyType !== 'ec' || details.namedCurve !== 'prime256v1')) {
    throw new Error('not a P-256 key');
  }
  const sig = sign('sha256', data, priv);
  if (!verify('sha256', data, priv, sig)) throw new Error('signature round trip failed');
}

/** A Key manifest (YAML-compatible JSON) for `kubectl apply -f -`. */
export function keyManifest(
  ns: string,
  name: string,
  spec: Record<string, unknown>,
  annotations?: Record<string, string>,
): string {
  return JSON.stringify({
    apiVersion: `${KEY_GROUP}/${KEY_VERSION}`,
    kind: 'Key',
    metadata: { name, namespace: ns, ...(annotations ? { annotations } : {}) },
    spec,
  });
}

/** A running operator replica (child process). */
export interface OperatorProcess {
  child: ChildProcess;
  identity: string;
  /** Resolves with the metrics port once the server listens. */
  port: Promise<number>;
  /** Output so far (pino JSON lines on stderr, audit records on stdout). */
  logs: () => string;
  /** Its stdout so far: the audit records only (logs go to stderr). */
  stdout: () => string;
  /** Sends `signal` and waits for the exit. */
  kill: (signal?: NodeJS.Signals) => Promise<void>;
}

/** Options of {@link startOperator}. */
export interface StartOptions {
  opNs: string;
  watchNs: string;
  identity: string;
  deletionDelay?: string;
  leaseDuration?: string;
  kubeconfig?: string;
  extra?: string[];
}

/** Kubeconfigs of the chart's ServiceAccounts, by operator namespace (see createOperatorNamespace). */
const chartCredentials = new Map<string, ChartServiceAccountKubeconfigs>();

/**
 * Creates the operator's namespace and installs the chart's RBAC and ServiceAccounts into it, so
 * that `startOperator` runs the operator as the chart's operator ServiceAccount, not as admin:
 * every suite that uses it proves the chart grants the operator enough (issue 6).
 */
export async function createOperatorNamespace(prefix: string): Promise<string> {
  const namespace = await createNamespace(prefix);
  chartCredentials.set(namespace, await installChartServiceAccounts(namespace, `rel-${namespace}`));
  return namespace;
}

/** The kubeconfig of the chart's operator ServiceAccount for an operator namespace. */
export function operatorKubeconfig(opNs: string): string {
  const credentials = chartCredentials.get(opNs);
  if (credentials === undefined) throw new Error(`${opNs} was not made by createOperatorNamespace`);
  return credentials.operator;
}

/** The kubeconfig of the chart's engine ServiceAccount for an operator namespace. */
export function engineKubeconfig(opNs: string): string {
  const credentials = chartCredentials.get(opNs);
  if (credentials === undefined) throw new Error(`${opNs} was not made by createOperatorNamespace`);
  return credentials.engine;
}

/** Starts `node operator/cli.ts` for the test cluster (as the chart's ServiceAccount when it can). */
export function startOperator(o: StartOptions): OperatorProcess {
  const args = [
    join(ROOT, 'operator', 'cli.ts'),
    '--kubeconfig',
    o.kubeconfig ?? chartCredentials.get(o.opNs)?.operator ?? kubeconfigPath(),
    '--namespace',
    o.opNs,
    // An empty watchNs: all namespaces.
    ...(o.watchNs === '' ? [] : ['--watch-namespace', o.watchNs]),
    '--metrics-port',
    '0',
    '--lease-name',
    `op-${o.opNs}`,
    '--lease-duration',
    o.leaseDuration ?? '6s',
    '--identity',
    o.identity,
    '--deletion-delay',
    o.deletionDelay ?? '72h',
    ...(o.extra ?? []),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KEYWARD_LOG_LEVEL: 'debug' },
  });
  let out = '';
  let resolvePort: (port: number) => void = () => undefined;
  const port = new Promise<number>((r) => {
    resolvePort = r;
  });
  const onData = (chunk: Buffer): void => {
    out += chunk.toString();
    const m = /"port":(\d+),"msg":"health server listening"/.exec(out);
    if (m) resolvePort(Number(m[1]));
  };
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    onData(chunk);
  });
  child.stderr?.on('data', onData);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    identity: o.identity,
    port,
    logs: () => out,
    stdout: () => stdout,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Scrapes one metric value (first sample matching `name` and optional label text). */
export async function metric(port: number, name: string, labels = ''): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (
      line.startsWith(`${name}${labels} `) ||
      (labels === '' && line.startsWith(`${name}{`) === false && line.startsWith(`${name} `))
    ) {
      return Number(line.split(' ').pop());
    }
  }
  return undefined;
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
