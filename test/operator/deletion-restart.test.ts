/**
 * `kubectl delete` holds the Key for the deletion delay; the operator is killed and restarted
 * during the wait, and the deadline is kept (timers are recomputed from stored timestamps).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, kubectl } from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  getKey,
  installCrd,
  isReady,
  keyManifest,
  type OperatorProcess,
  readMaterial,
  sleep,
  startOperator,
  waitForKey,
  waitGone,
} from './helpers.ts';

let ns: string;
let opNs: string;
let op: OperatorProcess | undefined;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-del');
  opNs = await createOperatorNamespace('kw-del-op');
});

afterAll(async () => {
  await op?.kill();
});

it('holds a deleted Key for the delay across an operator restart, then erases it', async () => {
  op = startOperator({ opNs, watchNs: ns, identity: 'del-1', deletionDelay: '20s', leaseDuration: '3s' });
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'doomed', { usage: 'AES256' }) });
  await waitForKey(ns, 'doomed', 'Ready', (k) => isReady(k));
  await kubectl(['delete', '-n', ns, 'key/doomed', '--wait=false']);
  const pending = await waitForKey(
    ns,
    'doomed',
    'PendingDeletion',
    (k) => k.status?.state === 'PendingDeletion',
  );
  const deletionTimestamp = Date.parse(String(pending.metadata.deletionTimestamp));
  const scheduled = Date.parse(pending.status?.deletionScheduledTime ?? '');
  expect(scheduled).toBe(deletionTimestamp + 20_000);
  expect(pending.status?.conditions?.find((c) => c.type === 'PendingDeletion')).toMatchObject({
    status: 'True',
    reason: 'DeletionScheduled',
  });
  expect(pending.status?.conditions?.find((c) => c.type === 'Enabled')?.status).toBe('False');

  // Kill the operator hard, wait a while, start a new one.
  await op.kill('SIGKILL');
  await sleep(5000);
  expect(await getKey(ns, 'doomed')).toBeDefined();
  op = startOperator({ opNs, watchNs: ns, identity: 'del-2', deletionDelay: '20s', leaseDuration: '3s' });

  // Still held before the deadline, with the material present...
  while (Date.now() < scheduled - 2500) {
    expect(await getKey(ns, 'doomed')).toBeDefined();
    expect(await readMaterial(opNs, ns, 'doomed')).toBeDefined();
    await sleep(1000);
  }
  // ...and gone shortly after it, with the material erased.
  await waitGone(ns, 'doomed', scheduled - Date.now() + 10_000);
  const goneAt = Date.now();
  expect(goneAt).toBeGreaterThanOrEqual(scheduled);
  expect(await readMaterial(opNs, ns, 'doomed')).toBeUndefined();
}, 90_000);
