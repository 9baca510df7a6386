/**
 * Usage history in cluster mode: engines publish usage-report ConfigMaps
 * (engine/cluster/usage-report.ts); the operator folds them into the key's record and status,
 * counting every use exactly once, also across an operator restart.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { USAGE_REPORT_ENTRY, USAGE_REPORT_LABEL } from '../../engine/cluster/usage-report.ts';
import { createNamespace, kubectl, waitFor } from '../cluster/harness.ts';
import {
  clients,
  createOperatorNamespace,
  installCrd,
  isReady,
  keyManifest,
  type OperatorProcess,
  readMaterial,
  sleep,
  startOperator,
  waitForKey,
} from './helpers.ts';

let ns: string;
let opNs: string;
let op: OperatorProcess | undefined;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-use');
  opNs = await createOperatorNamespace('kw-use-op');
});

afterAll(async () => {
  await op?.kill();
});

/** Publishes a report as an engine replica would (cumulative counts for one instance). */
async function publish(uid: string, encrypt: number, lastUsedTime: number): Promise<void> {
  const body = {
    metadata: { name: 'keyward-usage-engine-a', namespace: opNs, labels: { [USAGE_REPORT_LABEL]: 'true' } },
    data: {
      [USAGE_REPORT_ENTRY]: JSON.stringify({
        format: 1,
        identity: 'engine-a',
        instance: 'inst-1',
        startedTime: lastUsedTime - 60_000,
        reportedTime: Date.now(),
        keys: {
          [`${ns}/used`]: { namespace: ns, name: 'used', uid, lastUsedTime, counts: { encrypt, decrypt: 1 } },
        },
      }),
    },
  };
  const { core } = clients();
  try {
    await core.replaceNamespacedConfigMap({ name: body.metadata.name, namespace: opNs, body });
  } catch {
    await core.createNamespacedConfigMap({ namespace: opNs, body });
  }
}

it('folds engine usage reports into status exactly once, across a restart', async () => {
  const start = () =>
    startOperator({
      opNs,
      watchNs: ns,
      identity: 'use-op',
      extra: ['--usage-interval', '1s'],
      leaseDuration: '3s',
    });
  op = start();
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'used', { usage: 'AES256' }) });
  const key = await waitForKey(ns, 'used', 'Ready', (k) => isReady(k));
  const uid = key.metadata.uid ?? '';
  const t1 = Date.parse('2026-11-29T10:00:05Z');
  await publish(uid, 5, t1);
  const k1 = await waitForKey(ns, 'used', 'usage folded', (k) => k.status?.operationCounts?.encrypt === 5);
  expect(k1.status?.lastUsedTime).toBe('2026-11-29T10:00:05Z');
  expect(k1.status?.operationCounts).toEqual({ encrypt: 5, decrypt: 1 });

  // Restart the operator: the same report must not be counted again.
  await op.kill('SIGKILL');
  op = start();
  await sleep(4000);
  expect((await readMaterial(opNs, ns, 'used'))?.record.operationCounts).toEqual({ encrypt: 5, decrypt: 1 });

  // The engine moves on: only the difference is added.
  await publish(uid, 9, t1 + 10_000);
  const k2 = await waitForKey(ns, 'used', 'more usage', (k) => k.status?.operationCounts?.encrypt === 9);
  expect(k2.status?.operationCounts).toEqual({ encrypt: 9, decrypt: 1 });
  expect(k2.status?.lastUsedTime).toBe('2026-11-29T10:00:15Z');

  // Deleting a recently used key warns.
  await kubectl(['delete', '-n', ns, 'key/used', '--wait=false']);
  await waitForKey(ns, 'used', 'PendingDeletion', (k) => k.status?.state === 'PendingDeletion');
  await waitFor('RecentlyUsed warning', async () => {
    const r = await kubectl(['get', 'events.events.k8s.io', '-n', ns, '-o', 'json']);
    const items = JSON.parse(r.stdout).items as Array<{
      type: string;
      reason: string;
      regarding: { name: string };
    }>;
    return items.some(
      (e) => e.regarding.name === 'used' && e.type === 'Warning' && e.reason === 'RecentlyUsed',
    )
      ? true
      : undefined;
  });
}, 90_000);
