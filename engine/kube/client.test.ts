/**
 * KubeClient against a local HTTPS server that plays the apiserver (a real TLS server on
 * loopback, so deadlines, connection reuse and aborts are the real ones): every request has a
 * deadline, connections are pooled, a guard fences requests, lists are paginated.
 */
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, type V1NamespaceList } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { loadOrCreateAutoCert } from '../http/tls.ts';
import { KubeClient, listAll, type RequestGuard } from './client.ts';

let server: Server | undefined;
let client: KubeClient | undefined;
afterEach(async () => {
  await client?.close();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
});

type Handler = (url: URL, respond: (status: number, body: unknown) => void) => void;

/** An HTTPS server; returns a KubeClient for it and the number of TLS connections it saw. */
async function fakeApiserver(
  handle: Handler,
  timeoutMs = 5000,
): Promise<{ connections: () => number; requests: () => number }> {
  const tls = await loadOrCreateAutoCert(await mkdtemp(join(tmpdir(), 'kw-client-')), '127.0.0.1');
  let connections = 0;
  let requests = 0;
  server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    requests++;
    handle(new URL(req.url ?? '/', 'https://x'), (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: `https://127.0.0.1:${port}`, caData: Buffer.from(tls.cert).toString('base64') },
    ],
    users: [{ name: 'u', token: 'test-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  client = new KubeClient(kc, { requestTimeoutMs: timeoutMs, userAgent: 'keyward-test/1' });
  return { connections: () => connections, requests: () => requests };
}

const ns = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });

describe('KubeClient', () => {
  // The finding this pins: no apiserver call had a timeout (client-node's undici default is
  // 300 s), so a hung renew never reached the renew-deadline check.
  it('gives every request a deadline: a hung apiserver fails the call, it does not hold it', async () => {
    await fakeApiserver(() => undefined, 300);
    const started = Date.now();
    const err = await client!
      .api(CoreV1Api)
      .readNamespace({ name: 'x' })
      .catch((e: unknown) => e);
    expect(String(err)).toMatch(/timeout|aborted/i);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  // The finding this pins: a new undici Agent (a TCP and TLS handshake) for every request, and
  // KubeConfig's private method patched to avoid it.
  it('reuses pooled connections instead of a handshake per request', async () => {
    const seen: string[] = [];
    const { connections, requests } = await fakeApiserver((url, respond) => {
      seen.push(url.pathname);
      respond(200, ns(url.pathname.split('/').pop() ?? ''));
    });
    const api = client!.api(CoreV1Api);
    for (let i = 0; i < 20; i++)
      expect((await api.readNamespace({ name: `n${i}` })).metadata?.name).toBe(`n${i}`);
    expect(requests()).toBe(20);
    // One handshake per request before; now the pool's connection or two (a response body is
    // released a moment after the call returns) serve every call.
    expect(connections()).toBeLessThanOrEqual(2);
  });

  it('a guard refuses to send once over, and cuts what is in flight', async () => {
    const { requests } = await fakeApiserver(() => undefined);
    const ctl = new AbortController();
    let over = false;
    const guard: RequestGuard = {
      signal: ctl.signal,
      check: () => {
        if (over) throw new Error('not the leader any more');
      },
    };
    const api = client!.api(CoreV1Api, guard);
    const inFlight = api.readNamespace({ name: 'a' }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    ctl.abort('term over');
    over = true;
    expect(String(await inFlight)).toMatch(/term over|abort/i);
    const refused = await api.readNamespace({ name: 'b' }).catch((e: unknown) => e);
    expect(String(refused)).toMatch(/not the leader/);
    expect(requests()).toBe(1);
  });

  it('lists every item page by page', async () => {
    await fakeApiserver((url, respond) => {
      const page = Number(url.searchParams.get('continue') ?? '0');
      expect(url.searchParams.get('limit')).toBe('500');
      const items = Array.from({ length: page < 2 ? 500 : 7 }, (_, i) => ns(`p${page}-${i}`));
      respond(200, {
        apiVersion: 'v1',
        kind: 'NamespaceList',
        metadata: { resourceVersion: '42', ...(page < 2 ? { continue: String(page + 1) } : {}) },
        items,
      } satisfies V1NamespaceList & { kind: string });
    });
    const api = client!.api(CoreV1Api);
    const all = await listAll(async (page) => await api.listNamespace(page));
    expect(all.items).toHaveLength(1007);
    expect(all.metadata?.resourceVersion).toBe('42');
  });

  // The finding this pins: an operator sometimes never exited on SIGTERM (fault suite, loaded
  // machine). client-node's ListWatch checks `stopped` only before its list, so an informer stopped
  // while its list was in flight still opened a watch afterwards that nothing aborted, and the
  // pool's close() waited for that watch forever.
  it('opens no watch after an informer stops mid-list, and close() does not wait for a watch', async () => {
    let watches = 0;
    await fakeApiserver((url) => {
      if (url.searchParams.get('watch') === 'true') watches++;
      // Never answered: a watch (or a hung request) the pool must not wait for.
    });
    let listed!: () => void;
    const informer = client!.informer('/api/v1/namespaces', async () => {
      await new Promise<void>((r) => {
        listed = r;
      });
      return { apiVersion: 'v1', kind: 'NamespaceList', items: [], metadata: { resourceVersion: '5' } };
    });
    informer.on('error', () => undefined);
    void informer.start();
    await new Promise((r) => setTimeout(r, 50));
    await informer.stop();
    listed();
    await new Promise((r) => setTimeout(r, 300));
    expect(watches).toBe(0);

    // A request still in flight at close() is cut after the grace period.
    const hung = client!
      .api(CoreV1Api)
      .readNamespace({ name: 'x' })
      .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await client!.close(200);
    expect(Date.now() - started).toBeLessThan(2000);
    await hung;
  });
});
