/**
 * The operator reaches the apiserver through a TCP proxy that the test can cut: every
 * connection, the Key watch included, is destroyed mid-stream. The informer supervisor must
 * notice and restart, and reconciliation must continue.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { apiserverUrl, createNamespace, kubectl } from '../cluster/harness.ts';
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
let proxy: Server;
const sockets = new Set<Socket>();

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-cut');
  opNs = await createOperatorNamespace('kw-cut-op');
  const target = new URL(apiserverUrl());
  proxy = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
});

afterAll(async () => {
  await op?.kill();
  for (const s of sockets) s.destroy();
  proxy?.close();
});

function cutEverything(): number {
  const n = sockets.size;
  for (const s of sockets) s.destroy();
  return n;
}

it('keeps reconciling after its watch connections are cut', async () => {
  // The chart's operator ServiceAccount, through the cutting proxy.
  const kc = new KubeConfig();
  kc.loadFromFile(operatorKubeconfig(opNs));
  const port = (proxy.address() as { port: number }).port;
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no cluster in kubeconfig');
  const proxied = JSON.parse(kc.exportConfig());
  for (const c of proxied.clusters) c.cluster.server = `https://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'kw-cut-'));
  const path = join(dir, 'kubeconfig');
  writeFileSync(path, JSON.stringify(proxied), { mode: 0o600 });

  op = startOperator({ opNs, watchNs: ns, identity: 'cut-op', kubeconfig: path });
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: keyManifest(ns, 'before-cut', { usage: 'AES256' }),
  });
  await waitForKey(ns, 'before-cut', 'Ready', (k) => isReady(k));

  for (let round = 1; round <= 3; round++) {
    expect(cutEverything()).toBeGreaterThan(0);
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
