/**
 * Issue #17: the operator keeps the engine's CA in every namespace that holds a Key, as
 * Kubernetes does with kube-root-ca.crt: a new Key in a new namespace gets `keyward-ca.crt`
 * (key `ca.crt`), a rotated CA reaches every copy, the copy goes with the namespace's last Key,
 * and a user's ConfigMap of that name is left alone. The operator runs as the chart's operator
 * ServiceAccount, so this also proves the chart grants exactly enough.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadOrCreateAutoCert } from '../../engine/http/tls.ts';
import { createNamespace, kubectl, waitFor } from '../cluster/harness.ts';
import {
  clients,
  createOperatorNamespace,
  installCrd,
  isReady,
  keyManifest,
  type OperatorProcess,
  sleep,
  startOperator,
  waitForKey,
  waitGone,
} from './helpers.ts';

let opNs: string;
let op: OperatorProcess | undefined;

const certificate = async (): Promise<string> =>
  (await loadOrCreateAutoCert(await mkdtemp(join(tmpdir(), 'kw-ca-')), 'keyward.test')).cert;

async function publishSource(pem: string): Promise<void> {
  const body = { metadata: { name: 'engine-ca', namespace: opNs }, data: { 'ca.crt': pem } };
  const { core } = clients();
  try {
    await core.replaceNamespacedConfigMap({ name: 'engine-ca', namespace: opNs, body });
  } catch {
    await core.createNamespacedConfigMap({ namespace: opNs, body });
  }
}

async function copyIn(ns: string): Promise<{ pem?: string; labels?: Record<string, string> } | undefined> {
  try {
    const cm = await clients().core.readNamespacedConfigMap({ name: 'keyward-ca.crt', namespace: ns });
    return { pem: cm.data?.['ca.crt'], labels: cm.metadata?.labels };
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

beforeAll(async () => {
  await installCrd();
  opNs = await createOperatorNamespace('kw-ca-op');
});

afterAll(async () => {
  await op?.kill();
});

it('publishes keyward-ca.crt where Keys are, follows a new CA, and removes it with the last Key', async () => {
  const first = await certificate();
  await publishSource(first);
  const [nsA, nsB, nsC] = [
    await createNamespace('kw-ca-a'),
    await createNamespace('kw-ca-b'),
    await createNamespace('kw-ca-c'),
  ];
  // A ConfigMap of that name that Keyward did not make.
  await kubectl(['create', 'configmap', 'keyward-ca.crt', '-n', nsC, '--from-literal=ca.crt=mine']);
  // Watch all namespaces: Keys live in several here.
  op = startOperator({ opNs, watchNs: '', identity: 'ca-op', extra: ['--ca-configmap', 'engine-ca'] });
  for (const [ns, name] of [
    [nsA, 'ca-key-a'],
    [nsB, 'ca-key-b'],
    [nsC, 'ca-key-c'],
  ] as const) {
    await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, name, { usage: 'AES256' }) });
  }
  for (const ns of [nsA, nsB]) {
    const copy = await waitFor(`the CA in ${ns}`, async () =>
      (await copyIn(ns))?.pem === first ? copyIn(ns) : undefined,
    );
    expect(copy?.labels?.['keyward.io/ca-bundle']).toBe('true');
  }
  await waitForKey(nsC, 'ca-key-c', 'Ready', (k) => isReady(k));
  expect((await copyIn(nsC))?.pem).toBe('mine');

  // A new CA reaches every copy.
  const second = await certificate();
  expect(second).not.toBe(first);
  await publishSource(second);
  for (const ns of [nsA, nsB]) {
    await waitFor(`the new CA in ${ns}`, async () => ((await copyIn(ns))?.pem === second ? true : undefined));
  }
  expect((await copyIn(nsC))?.pem).toBe('mine');

  // The last Key of nsA goes (delete-now skips the 72 h delay): so does its copy; nsB keeps its.
  await kubectl(['annotate', 'keys.keyward.io', 'ca-key-a', '-n', nsA, 'keyward.io/delete-now=true']);
  await kubectl(['delete', 'keys.keyward.io', 'ca-key-a', '-n', nsA, '--wait=false']);
  await waitGone(nsA, 'ca-key-a');
  await waitFor('the copy in nsA to go', async () => ((await copyIn(nsA)) === undefined ? true : undefined));
  await sleep(1000);
  expect((await copyIn(nsB))?.pem).toBe(second);
  expect((await copyIn(nsC))?.pem).toBe('mine');
}, 120_000);
