/**
 * The cluster engine's auth fails closed: when TokenReview or SubjectAccessReview cannot be had
 * (apiserver unreachable, hanging, or refusing the engine's own credentials) every request gets
 * 503 UNAVAILABLE and nothing is allowed. The engine runs in-process here with its informers on
 * the real apiserver and only its auth client pointed elsewhere, so no other suite is disturbed.
 * Also: the decision caches (allow and deny) spare the apiserver repeated reviews.
 */
import type { KeyObject } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeAuthenticator } from '../../engine/cluster/kube-auth.ts';
import { type RunningClusterEngine, runClusterEngine } from '../../engine/cluster/main.ts';
import { KeywardError } from '../../engine/errors.ts';
import { KubeClient } from '../../engine/kube/client.ts';
import {
  applyKeyCrd,
  b64,
  call,
  createKey,
  engineServiceAccount,
  fileAudit,
  keyPath,
  operatorNamespace,
  saToken,
  writeKubeconfig,
} from './engine-helpers.ts';
import { createNamespace, kubectl, tcpProxy, waitFor } from './harness.ts';

const silent = pino({ level: 'silent' });
let op: { namespace: string; master: KeyObject };
let ns: string;
let engineKubeconfig: string;
let appToken: string;
const running: RunningClusterEngine[] = [];
const auditDirs: Array<ReturnType<typeof fileAudit>> = [];
const sockets: Socket[] = [];
let hanging: Server;
let hangingPort: number;
let deadPort: number;

function kubeConfigFor(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function engineWithAuthAt(server: string): Promise<RunningClusterEngine & { ca: string }> {
  auditDirs.push(fileAudit());
  const engine = await runClusterEngine({
    kubeconfig: engineKubeconfig,
    namespace: op.namespace,
    host: '127.0.0.1',
    port: 0,
    threads: 1,
    authKubeConfig: kubeConfigFor(writeKubeconfig(server, 'unused-token', 'dead')),
    auth: { requestTimeoutMs: 1_000 },
    audit: auditDirs.at(-1)!,
    logger: silent,
  });
  running.push(engine);
  const started = Date.now();
  while (!engine.backend.ready()) {
    if (Date.now() - started > 30_000) throw new Error('engine not ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ...engine, ca: engine.tls!.cert };
}

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  ns = await createNamespace('kw-unav');
  await createKey(op, ns, 'key1');
  engineKubeconfig = await engineServiceAccount(op.namespace);
  await kubectl(['create', 'serviceaccount', 'app', '-n', ns]);
  await kubectl(['create', 'role', 'user', '-n', ns, '--verb=encrypt', '--resource=keys.keyward.io']);
  await kubectl(['create', 'rolebinding', 'user', '-n', ns, '--role=user', `--serviceaccount=${ns}:app`]);
  appToken = await saToken(ns, 'app', 'keyward');
  deadPort = await freePort();
  // Accepts connections and never answers: a hung apiserver.
  hanging = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  hangingPort = (hanging.address() as { port: number }).port;
});

afterAll(async () => {
  for (const e of running) await e.close();
  for (const s of sockets) s.destroy();
  await new Promise((r) => hanging?.close(r));
  for (const a of auditDirs) rmSync(a.dir, { recursive: true, force: true });
});

describe('auth fails closed', () => {
  it('answers 503 when the apiserver is unreachable, for valid and invalid tokens alike', async () => {
    const engine = await engineWithAuthAt(`https://127.0.0.1:${deadPort}`);
    for (const token of [appToken, appToken, 'garbage']) {
      const r = await call(engine, 'POST', keyPath(ns, 'key1', '/encrypt'), {
        token,
        body: { plaintext: b64('x') },
      });
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe('UNAVAILABLE');
      expect(r.body.error.message).toMatch(/cannot reach the Kubernetes API/);
      expect(JSON.stringify(r.body)).not.toContain(appToken);
    }
    // No token at all is still a plain 401: there is nothing to review.
    const anon = await call(engine, 'POST', keyPath(ns, 'key1', '/encrypt'), {
      body: { plaintext: b64('x') },
    });
    expect(anon.status).toBe(401);
  });

  it('answers 503 when the apiserver hangs, after the review deadline', async () => {
    const engine = await engineWithAuthAt(`https://127.0.0.1:${hangingPort}`);
    const started = Date.now();
    const r = await call(engine, 'POST', keyPath(ns, 'key1', '/encrypt'), {
      token: appToken,
      body: { plaintext: b64('x') },
    });
    expect(r.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('answers 503 when the engine itself may not create reviews', async () => {
    await kubectl(['create', 'serviceaccount', 'powerless', '-n', op.namespace]);
    const token = await saToken(op.namespace, 'powerless');
    const auth = new KubeAuthenticator({
      client: new KubeClient(
        kubeConfigFor(
          writeKubeconfig(kubeConfigFor(engineKubeconfig).getCurrentCluster()!.server, token, 'p'),
        ),
      ),
    });
    const err = await auth
      .authenticate({ headers: { authorization: `Bearer ${appToken}` }, remoteAddress: undefined })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeywardError);
    expect((err as KeywardError).code).toBe('UNAVAILABLE');
  });
});

describe('decision caches', () => {
  it('reuses TokenReview and SubjectAccessReview decisions, allow and deny', async () => {
    const auth = new KubeAuthenticator({ client: new KubeClient(kubeConfigFor(engineKubeconfig)) });
    const req = { headers: { authorization: `Bearer ${appToken}` }, remoteAddress: undefined };
    const p1 = await auth.authenticate(req);
    const p2 = await auth.authenticate(req);
    expect(p1.name).toBe(`system:serviceaccount:${ns}:app`);
    expect(p2.name).toBe(p1.name);
    expect(auth.reviews.token).toBe(1);

    await auth.authorize(p1, 'encrypt', ns, 'key1');
    await auth.authorize(p2, 'encrypt', ns, 'key1');
    expect(auth.reviews.access).toBe(1);
    for (let i = 0; i < 2; i++) {
      const denied = await auth.authorize(p1, 'decrypt', ns, 'key1').catch((e: unknown) => e);
      expect((denied as KeywardError).code).toBe('PERMISSION_DENIED');
    }
    expect(auth.reviews.access).toBe(2);

    // Concurrent first requests share one review; bad tokens are cached as refusals too.
    const bad = { headers: { authorization: 'Bearer not-a-token' }, remoteAddress: undefined };
    const results = await Promise.allSettled([
      auth.authenticate(bad),
      auth.authenticate(bad),
      auth.authenticate(bad),
    ]);
    expect(
      results.every((r) => r.status === 'rejected' && (r.reason as KeywardError).code === 'UNAUTHENTICATED'),
    ).toBe(true);
    expect(auth.reviews.token).toBe(2);

    // A principal not made by this authenticator is refused outright.
    const fake = await auth.authorize({ name: p1.name }, 'encrypt', ns, 'key1').catch((e: unknown) => e);
    expect((fake as KeywardError).code).toBe('UNAUTHENTICATED');
  });

  it('expires cached decisions after their ttl', async () => {
    let now = Date.now();
    const auth = new KubeAuthenticator({
      client: new KubeClient(kubeConfigFor(engineKubeconfig)),
      now: () => now,
      staleTtlMs: 0,
    });
    const req = { headers: { authorization: `Bearer ${appToken}` }, remoteAddress: undefined };
    const p = await auth.authenticate(req);
    await auth.authorize(p, 'encrypt', ns, 'key1');
    now += 5_001;
    await auth.authorize(p, 'encrypt', ns, 'key1');
    expect(auth.reviews.access).toBe(2);
    now += 5_000;
    await auth.authenticate(req);
    expect(auth.reviews.token).toBe(2);
  });
});

describe('through an apiserver outage', () => {
  it('keeps serving callers validated before the outage, refuses new ones, and stops at the stale limit', async () => {
    const proxy = await tcpProxy(kubeConfigFor(engineKubeconfig).getCurrentCluster()!.server);
    const token = kubeConfigFor(engineKubeconfig).getCurrentUser()!.token!;
    let now = Date.now();
    const auth = new KubeAuthenticator({
      client: new KubeClient(kubeConfigFor(writeKubeconfig(proxy.url, token, 'proxied')), {
        requestTimeoutMs: 1_000,
      }),
      now: () => now,
      staleTtlMs: 60_000,
    });
    try {
      const req = { headers: { authorization: `Bearer ${appToken}` }, remoteAddress: undefined };
      const p = await auth.authenticate(req);
      await auth.authorize(p, 'encrypt', ns, 'key1');
      for (const outage of ['refuse', 'hang'] as const) {
        proxy.mode(outage);
        now += 20_000; // past both fresh TTLs (10 s and 5 s)
        const again = await auth.authenticate(req);
        await auth.authorize(again, 'encrypt', ns, 'key1');
        // A caller never seen before is not let in on an error.
        const stranger = await auth
          .authenticate({
            headers: { authorization: `Bearer ${await saToken(ns, 'app', 'keyward')}` },
            remoteAddress: undefined,
          })
          .catch((e: unknown) => e);
        expect((stranger as KeywardError).code).toBe('UNAVAILABLE');
        // Nor is a decision that was a denial.
        const denied = await auth.authorize(again, 'decrypt', ns, 'key1').catch((e: unknown) => e);
        expect((denied as KeywardError).code).toBe('UNAVAILABLE');
      }
      expect(auth.staleServed).toBeGreaterThanOrEqual(4);
      // Past the stale limit the decision is gone: the outage now refuses the caller too.
      now += 60_000;
      const late = await auth.authenticate(req).catch((e: unknown) => e);
      expect((late as KeywardError).code).toBe('UNAVAILABLE');
    } finally {
      proxy.close();
    }
  });

  it('applies a revocation on the request after the refresh that saw it', async () => {
    const proxy = await tcpProxy(kubeConfigFor(engineKubeconfig).getCurrentCluster()!.server);
    const token = kubeConfigFor(engineKubeconfig).getCurrentUser()!.token!;
    let now = Date.now();
    const auth = new KubeAuthenticator({
      client: new KubeClient(kubeConfigFor(writeKubeconfig(proxy.url, token, 'proxied'))),
      now: () => now,
    });
    try {
      await kubectl(['create', 'serviceaccount', 'revoked', '-n', ns]);
      await kubectl([
        'create',
        'rolebinding',
        'revoked',
        '-n',
        ns,
        '--role=user',
        `--serviceaccount=${ns}:revoked`,
      ]);
      const req = {
        headers: { authorization: `Bearer ${await saToken(ns, 'revoked', 'keyward')}` },
        remoteAddress: undefined,
      };
      const p = await auth.authenticate(req);
      await auth.authorize(p, 'encrypt', ns, 'key1');
      await kubectl(['delete', 'rolebinding', 'revoked', '-n', ns]);
      now += 5_001;
      // Served from the stale decision while the refresh runs...
      await auth.authorize(p, 'encrypt', ns, 'key1');
      // ...and refused once the refresh has answered.
      const refused = await waitFor('the revocation', async () => {
        const err = await auth.authorize(p, 'encrypt', ns, 'key1').catch((e: unknown) => e);
        return (err as KeywardError | undefined)?.code === 'PERMISSION_DENIED' ? err : undefined;
      });
      expect((refused as KeywardError).code).toBe('PERMISSION_DENIED');
    } finally {
      proxy.close();
    }
  });
});
