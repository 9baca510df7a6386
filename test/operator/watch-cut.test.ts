/**
 * The operator reaches the apiserver through a TCP proxy that the test can cut: every
 * connection, the Key watch included, is destroyed mid-stream. The informer supervisor must
 * notice and restart, and reconciliation must continue.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  apiserverUrl,
  createNamespace,
  kubeconfigVia,
  kubectl,
  type TcpProxy,
  tcpProxy,
} from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  installCrd,
  isReady,
  keyManifest,
  metric,
  type OperatorProcess,
  operatorKubeconfig,
  sleep,
  startOperator,
  waitForKey,
} from './helpers.ts';

let ns: string;
let opNs: string;
let op: OperatorProcess | undefined;
let proxy: TcpProxy;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-cut');
  opNs = await createOperatorNamespace('kw-cut-op');
  proxy = await tcpProxy(apiserverUrl());
});

afterAll(async () => {
  await op?.kill();
  proxy?.close();
});

it('keeps reconciling after its watch connections are cut', async () => {
  // The chart's operator ServiceAccount, through the cutting proxy.
  const path = kubeconfigVia(operatorKubeconfig(opNs), proxy.url);
  op = startOperator({ opNs, watchNs: ns, identity: 'cut-op', kubeconfig: path });
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: keyManifest(ns, 'before-cut', { usage: 'AES256' }),
  });
  await waitForKey(ns, 'before-cut', 'Ready', (k) => isReady(k));

  for (let round = 1; round <= 3; round++) {
    expect(proxy.cut()).toBeGreaterThan(0);
    await sleep(300);
    const name = `after-cut-${round}`;
    await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, name, { usage: 'ECDSA' }) });
    await waitForKey(ns, name, 'Ready after the cut', (k) => isReady(k), 45_000);
  }
  // And a change to an existing Key is still seen.
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: keyManifest(ns, 'before-cut', { usage: 'AES256', state: 'Disabled' }),
  });
  await waitForKey(ns, 'before-cut', 'Disabled', (k) => k.status?.state === 'Disabled');
  // client-node's informer stopped on each cut ("terminated"); the supervisor restarted it.
  expect(
    await metric(
      await op.port,
      'keyward_operator_informer_restarts_total',
      '{informer="keys",reason="error"}',
    ),
  ).toBeGreaterThanOrEqual(3);
}, 120_000);
