/**
 * Two operator replicas: only the Lease holder reconciles; killing it hands over to the other
 * within the lease duration.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, kubectl, waitFor } from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  installCrd,
  isReady,
  keyManifest,
  metric,
  type OperatorProcess,
  sleep,
  startOperator,
  waitForKey,
} from './helpers.ts';

let ns: string;
let opNs: string;
const replicas: OperatorProcess[] = [];

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-ha');
  opNs = await createOperatorNamespace('kw-ha-op');
});

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.kill()));
});

async function leaderOf(): Promise<{ leader: OperatorProcess; standby: OperatorProcess }> {
  return waitFor('one leader', async () => {
    const states = await Promise.all(
      replicas.map(async (r) => (await metric(await r.port, 'keyward_operator_leader')) === 1),
    );
    if (states.filter(Boolean).length !== 1) return undefined;
    const i = states.indexOf(true);
    return { leader: replicas[i]!, standby: replicas[1 - i]! };
  });
}

it('only the leader reconciles, and the standby takes over when the leader dies', async () => {
  replicas.push(startOperator({ opNs, watchNs: ns, identity: 'replica-a', leaseDuration: '4s' }));
  replicas.push(startOperator({ opNs, watchNs: ns, identity: 'replica-b', leaseDuration: '4s' }));
  const { leader, standby } = await leaderOf();
  for (const name of ['ha-one', 'ha-two', 'ha-three']) {
    await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, name, { usage: 'AES256' }) });
  }
  for (const name of ['ha-one', 'ha-two', 'ha-three']) await waitForKey(ns, name, 'Ready', (k) => isReady(k));
  expect(
    await metric(await leader.port, 'keyward_operator_reconciles_total', '{result="success"}'),
  ).toBeGreaterThan(0);
  expect(
    await metric(await standby.port, 'keyward_operator_reconciles_total', '{result="success"}'),
  ).toBeUndefined();
  const lease = JSON.parse((await kubectl(['get', 'lease', `op-${opNs}`, '-n', opNs, '-o', 'json'])).stdout);
  expect(lease.spec.holderIdentity).toBe(leader.identity);

  // Kill the leader without letting it release the Lease.
  await leader.kill('SIGKILL');
  const killedAt = Date.now();
  await waitFor('standby to lead', async () =>
    (await metric(await standby.port, 'keyward_operator_leader')) === 1 ? true : undefined,
  );
  // within the lease duration (4 s), plus a retry period and the polling, with slack for load
  expect(Date.now() - killedAt).toBeLessThan(4000 + 4000);
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'ha-four', { usage: 'ECDSA' }) });
  await waitForKey(ns, 'ha-four', 'Ready after failover', (k) => isReady(k));
  expect(
    await metric(await standby.port, 'keyward_operator_reconciles_total', '{result="success"}'),
  ).toBeGreaterThan(0);

  // A graceful stop releases the Lease at once.
  await standby.kill('SIGTERM');
  const after = JSON.parse((await kubectl(['get', 'lease', `op-${opNs}`, '-n', opNs, '-o', 'json'])).stdout);
  expect(after.spec.holderIdentity ?? '').toBe('');
  await sleep(10);
}, 90_000);
