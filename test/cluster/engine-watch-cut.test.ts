/**
 * The finding this pins: a watch error took down the data plane. The supervisor dropped the
 * informer while readiness stayed true, so during the restart backoff every key answered 404
 * KEY_NOT_FOUND, then 503 until the relist ended, and the material cache was emptied. Here the
 * engine reaches the apiserver through a TCP proxy that cuts every connection (the watches
 * included) while requests flow: every request must still succeed, and a Key deleted while the
 * watches were down must stop working once the relist shows it gone.
 */
import type { KeyObject } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { checkpointKeys, expandInputs, verifyFiles } from '../../engine/audit/verify-files.ts';
import { type RunningClusterEngine, runClusterEngine } from '../../engine/cluster/main.ts';
import {
  applyKeyCrd,
  b64,
  call,
  core,
  createKey,
  engineServiceAccount,
  fileAudit,
  keyPath,
  operatorNamespace,
} from './engine-helpers.ts';
import {
  apiserverUrl,
  createNamespace,
  kubeconfigVia,
  kubectl,
  type TcpProxy,
  tcpProxy,
  waitFor,
} from './harness.ts';

let op: { namespace: string; master: KeyObject };
let ns: string;
let engine: RunningClusterEngine & { ca: string };
let proxy: TcpProxy;
const audit = fileAudit();

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  ns = await createNamespace('kw-wcut');
  for (const name of ['cut-a', 'cut-b', 'cut-gone']) await createKey(op, ns, name);
  proxy = await tcpProxy(apiserverUrl());
  const running = await runClusterEngine({
    kubeconfig: kubeconfigVia(await engineServiceAccount(op.namespace), proxy.url),
    namespace: op.namespace,
    host: '127.0.0.1',
    port: 0,
    threads: 1,
    insecureNoAuth: true,
    audit,
    logger: pino({ level: 'silent' }),
  });
  engine = { ...running, ca: running.tls!.cert };
  await waitFor('engine ready', async () => (running.backend.ready() ? true : undefined));
});

afterAll(async () => {
  await engine?.close();
  proxy?.close();
  rmSync(audit.dir, { recursive: true, force: true });
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
    proxy.mode('refuse');
    if (round === 2) {
      // Deleted while the engine cannot watch: the relist must bring the delete.
      await core().deleteNamespacedSecret({ name: `kkey.${ns}.cut-gone`, namespace: op.namespace });
      await kubectl(['delete', 'keys.keyward.io', 'cut-gone', '-n', ns, '--wait=false']);
    }
    await new Promise((r) => setTimeout(r, 2500));
    proxy.mode('pass');
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

  // The audit log kept recording through the cuts: one ok record per request served, in a
  // chain that verifies (closed, with the master key) once the engine stops.
  await engine.close();
  const report = await verifyFiles(await expandInputs([audit.dir]), {
    keys: await checkpointKeys([op.master]),
    open: false,
    allowPruned: false,
    skipForeignLines: false,
  });
  expect(report.finding).toBeUndefined();
  expect(report.valid).toBe(true);
  const served = readdirSync(audit.dir)
    .flatMap((f) => readFileSync(join(audit.dir, f), 'utf8').split('\n'))
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { key?: string; operation?: string; outcome?: string })
    .filter(
      (r) => (r.key === 'cut-a' || r.key === 'cut-b') && r.operation === 'encrypt' && r.outcome === 'ok',
    );
  expect(served.length).toBe(statuses.length);
}, 90_000);
