/**
 * The finding this pins: a watch error took down the data plane. The supervisor dropped the
 * informer while readiness stayed true, so during the restart backoff every key answered 404
 * KEY_NOT_FOUND, then 503 until the relist ended, and the material cache was emptied. Here the
 * engine reaches the apiserver through a TCP proxy that cuts every connection (the watches
 * included) while requests flow: every request must still succeed, and a Key deleted while the
 * watches were down must stop working once the relist shows it gone.
 */
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RunningClusterEngine, runClusterEngine } from '../../engine/cluster/main.ts';
import {
  applyKeyCrd,
  b64,
  call,
  core,
  createKey,
  engineServiceAccount,
  keyPath,
  operatorNamespace,
} from './engine-helpers.ts';
import { createNamespace, kubectl, waitFor } from './harness.ts';

let op: { namespace: string; master: KeyObject };
let ns: string;
let engine: RunningClusterEngine & { ca: string };
let proxy: Server;
const sockets = new Set<Socket>();
let accepting = true;

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  ns = await createNamespace('kw-wcut');
  for (const name of ['cut-a', 'cut-b', 'cut-gone']) await createKey(op, ns, name);
  const kc = new KubeConfig();
  kc.loadFromFile(await engineServiceAccount(op.namespace));
  const target = new URL(kc.getCurrentCluster()!.server);
  proxy = createServer((client) => {
    if (!accepting) return client.destroy();
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
  const proxied = JSON.parse(kc.exportConfig());
  for (const c of proxied.clusters)
    c.cluster.server = `https://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  const path = join(mkdtempSync(join(tmpdir(), 'kw-wcut-')), 'kubeconfig');
  writeFileSync(path, JSON.stringify(proxied), { mode: 0o600 });
  const running = await runClusterEngine({
    kubeconfig: path,
    namespace: op.namespace,
    host: '127.0.0.1',
    port: 0,
    threads: 1,
    insecureNoAuth: true,
    logger: pino({ level: 'silent' }),
  });
  engine = { ...running, ca: running.tls!.cert };
  await waitFor('engine ready', async () => (running.backend.ready() ? true : undefined));
});

afterAll(async () => {
  await engine?.close();
  for (const s of sockets) s.destroy();
  proxy?.close();
});

const encrypt = (name: string) =>
  call(engine, 'POST', keyPath(ns, name, '/encrypt'), { body: { plaintext: b64('x') } });

it('keeps serving every key through watch cuts, and applies a deletion made meanwhile', async () => {
  const statuses: number[] = [];
  let flowing = true;
  const load = (async () => {
    while (flowing) {
      for (const name of ['cut-a', 'cut-b']) statuses.push((await encrypt(name)).status);
    }
  })();
  for (let round = 0; round < 3; round++) {
    await new Promise((r) => setTimeout(r, 500));
    // Cut everything and refuse reconnects for a while: the informers stop and back off.
    accepting = false;
    for (const s of sockets) s.destroy();
    if (round === 2) {
      // Deleted while the engine cannot watch: the relist must bring the delete.
      await core().deleteNamespacedSecret({ name: `kkey.${ns}.cut-gone`, namespace: op.namespace });
      await kubectl(['delete', 'keys.keyward.io', 'cut-gone', '-n', ns, '--wait=false']);
    }
    await new Promise((r) => setTimeout(r, 2500));
    accepting = true;
  }
  await waitFor(
    'the deletion to reach the engine',
    async () => ((await encrypt('cut-gone')).status === 404 ? true : undefined),
    30_000,
  );
  flowing = false;
  await load;
  expect(statuses.length).toBeGreaterThan(20);
  expect(statuses.filter((s) => s !== 200)).toEqual([]);
  expect(engine.backend.ready()).toBe(true);
}, 90_000);
