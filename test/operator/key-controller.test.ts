/**
 * The Key controller in-process, on the real apiserver, as the chart's operator ServiceAccount,
 * driven by hand-made leadership terms: every write records the acting identity, and when a term
 * ends the controller stops acting, in-flight reconciles included: nothing more is written.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KubeClient } from '../../engine/kube/client.ts';
import { WRITTEN_BY_ANNOTATION } from '../../engine/kube/material-secret.ts';
import { OperatorCaches } from '../../operator/caches.ts';
import { KeyController } from '../../operator/key-controller.ts';
import { LeadershipTerm } from '../../operator/leader.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { createNamespace, kubectl, waitFor } from '../cluster/harness.ts';
import {
  clients,
  createOperatorNamespace,
  getKey,
  installCrd,
  isReady,
  keyManifest,
  operatorKubeconfig,
  sleep,
  waitForKey,
} from './helpers.ts';

const log = pino({ level: 'silent' });
let ns: string;
let opNs: string;
let client: KubeClient;
let caches: OperatorCaches;
let controller: KeyController;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-kc');
  opNs = await createOperatorNamespace('kw-kc-op');
  const kc = new KubeConfig();
  kc.loadFromFile(operatorKubeconfig(opNs));
  client = new KubeClient(kc);
  caches = new OperatorCaches({ client, namespace: opNs, watchNamespace: ns, usageNamespace: opNs, log });
  const metrics = new OperatorMetrics({
    queueDepth: () => 0,
    parkedKeys: () => 0,
    keysByState: () => ({}),
    isLeader: () => true,
  });
  controller = new KeyController({
    client,
    caches,
    namespace: opNs,
    watchNamespace: ns,
    workers: 4,
    lifecycle: { deletionDelayMs: 72 * 3_600_000 },
    metrics,
    log,
  });
  await caches.start();
});

afterAll(async () => {
  await caches.stop();
  await client.close();
});

const secretsOf = async (): Promise<Array<{ name: string; rv: string; writer: string | undefined }>> =>
  (
    await clients().core.listNamespacedSecret({ namespace: opNs, labelSelector: 'keyward.io/material=true' })
  ).items.map((s) => ({
    name: s.metadata?.name ?? '',
    rv: s.metadata?.resourceVersion ?? '',
    writer: s.metadata?.annotations?.[WRITTEN_BY_ANNOTATION],
  }));

it('records the acting identity on every write, and stops writing when its term ends', async () => {
  const term1 = new LeadershipTerm('replica-one', Date.now() + 600_000, Date.now);
  const run1 = controller.run(term1);
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'kc-first', { usage: 'AES256' }) });
  const first = await waitForKey(ns, 'kc-first', 'Ready', (k) => isReady(k));
  expect(first.status?.reconciledBy).toBe('replica-one');
  expect((await secretsOf()).map((s) => s.writer)).toEqual(['replica-one']);

  // A burst of RSA keys (slow to generate) keeps reconciles in flight when the term ends.
  const names = Array.from({ length: 12 }, (_, i) => `kc-rsa-${i}`);
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: names.map((n) => keyManifest(ns, n, { usage: 'RSA2048' })).join('\n'),
  });
  await waitFor('a reconcile of the burst', async () => ((await secretsOf()).length > 1 ? true : undefined));
  term1.end('test: the lease was lost');
  const ended = Date.now();
  await run1;
  expect(Date.now() - ended).toBeLessThan(10_000);

  // Nothing is written after the term, by the workers or by anything in flight.
  const before = await secretsOf();
  const keysBefore = await Promise.all(names.map((n) => getKey(ns, n)));
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'kc-after', { usage: 'AES256' }) });
  await sleep(3000);
  expect(await secretsOf()).toEqual(before);
  const keysAfter = await Promise.all(names.map((n) => getKey(ns, n)));
  expect(keysAfter.map((k) => k?.metadata.resourceVersion)).toEqual(
    keysBefore.map((k) => k?.metadata.resourceVersion),
  );
  const untouched = await getKey(ns, 'kc-after');
  expect(untouched?.metadata.finalizers ?? []).toEqual([]);
  expect(untouched?.status).toBeUndefined();

  // A new term (another replica) picks everything up and signs its writes.
  const term2 = new LeadershipTerm('replica-two', Date.now() + 600_000, Date.now);
  const run2 = controller.run(term2);
  for (const n of [...names, 'kc-after']) await waitForKey(ns, n, 'Ready', (k) => isReady(k), 60_000);
  expect((await getKey(ns, 'kc-after'))?.status?.reconciledBy).toBe('replica-two');
  const writers = new Set((await secretsOf()).map((s) => s.writer));
  expect([...writers].every((w) => w === 'replica-one' || w === 'replica-two')).toBe(true);
  expect(writers.has('replica-two')).toBe(true);
  term2.end('test over');
  await run2;
}, 120_000);
