/** Health, metrics, OpenAPI and TLS of the real server. */
import { mkdtemp } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStandalone } from '../../engine/http/standalone.ts';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from './harness.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s.stop();
  await removeDir(s.dataDir);
});

describe('unauthenticated endpoints', () => {
  it('metrics are not served on the API port', async () => {
    const r = await s.call('GET', '/metrics');
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('NOT_FOUND');
  });

  it('livez and readyz answer without a token', async () => {
    expect((await fetch(`${s.url}/livez`)).status).toBe(200);
    const ready = await fetch(`${s.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok' });
  });

  it('metrics count operations by key, operation and result, batch sizes and queue depth', async () => {
    await s.call('POST', KEYS, { name: 'metered', usage: 'AES256' });
    await s.call('POST', `${KEYS}/metered/encrypt`, { plaintext: b64('x') });
    await s.call('POST', `${KEYS}/metered/decrypt`, { ciphertext: 'keyward:v1:AAAA' });
    await s.call('POST', `${KEYS}/metered/batch/encrypt`, {
      requests: [{ plaintext: 'AA==' }, { plaintext: '!' }],
    });
    await s.call('POST', `${KEYS}/random-name/encrypt`, { plaintext: 'AA==' });
    expect(s.server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const text = await (await fetch(s.server.metricsUrl!)).text();
    expect(text).toContain(
      'keyward_operations_total{key="default/metered",operation="encrypt",result="ok"} 2',
    );
    expect(text).toContain(
      'keyward_operations_total{key="default/metered",operation="decrypt",result="INVALID_ARGUMENT"} 1',
    );
    expect(text).toContain(
      'keyward_operations_total{key="default/metered",operation="encrypt",result="INVALID_ARGUMENT"} 1',
    );
    // Unknown names share one series, so probing cannot grow the label set.
    expect(text).toContain('key="(unknown)"');
    expect(text).not.toContain('random-name');
    expect(text).toMatch(/keyward_batch_size_count\{operation="encrypt"\} 1/);
    expect(text).toContain('keyward_engine_queue_depth');
    expect(text).toMatch(
      /keyward_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/namespaces\/:namespace\/keys\/:name\/encrypt"/,
    );
  });

  it('serves an OpenAPI 3.1 document covering every route with the validation schemas', async () => {
    // biome-ignore lint/suspicious/noExplicitAny: the document is inspected field by field
    const doc: any = await (await fetch(`${s.url}/openapi.json`)).json();
    expect(doc.openapi).toBe('3.1.0');
    const paths = Object.keys(doc.paths);
    for (const op of [
      'encrypt',
      'decrypt',
      're-encrypt',
      'sign',
      'verify',
      'data-key',
      'public-key',
      'enable',
      'rotate',
    ]) {
      expect(paths).toContain(`/v1/namespaces/{namespace}/keys/{name}/${op}`);
    }
    for (const op of ['encrypt', 'decrypt', 're-encrypt', 'sign', 'verify']) {
      expect(paths).toContain(`/v1/namespaces/{namespace}/keys/{name}/batch/${op}`);
    }
    const enc = doc.paths['/v1/namespaces/{namespace}/keys/{name}/encrypt'].post;
    expect(enc.requestBody.content['application/json'].schema.additionalProperties).toBe(false);
    expect(enc.responses['413']).toBeDefined();
    const create = doc.paths['/v1/namespaces/{namespace}/keys'].post;
    expect(create.requestBody.content['application/json'].schema.required).toEqual(['name', 'usage']);
    const ids = Object.values(doc.paths).flatMap((p) =>
      Object.values(p as Record<string, { operationId: string }>).map((o) => o.operationId),
    );
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('TLS', () => {
  it('--tls auto makes a self-signed certificate that survives a restart', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'keyward-tls-'));
    const start = () =>
      startStandalone({
        dataDir,
        host: '127.0.0.1',
        port: 0,
        tls: { mode: 'auto' },
        logger: pino({ level: 'silent' }),
        env: {},
        threads: 1,
      });
    try {
      const a = await start();
      expect(a.url).toMatch(/^https:/);
      expect(a.tls?.created).toBe(true);
      const status = await new Promise<number>((resolve, reject) => {
        request(`${a.url}/livez`, { ca: a.tls!.cert }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
          .on('error', reject)
          .end();
      });
      expect(status).toBe(200);
      // Without trusting the certificate, verification fails (never disabled).
      await expect(fetch(`${a.url}/livez`)).rejects.toThrow();
      const fp = a.tls!.fingerprint256;
      await a.close();
      const b = await start();
      expect(b.tls?.created).toBe(false);
      expect(b.tls?.fingerprint256).toBe(fp);
      await b.close();
    } finally {
      await removeDir(dataDir);
    }
  });

  it('--tls off is refused on a non-loopback address', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'keyward-tls-'));
    try {
      await expect(
        startStandalone({
          dataDir,
          host: '0.0.0.0',
          port: 0,
          tls: { mode: 'off' },
          logger: pino({ level: 'silent' }),
          env: {},
        }),
      ).rejects.toThrow(/loopback/);
    } finally {
      await removeDir(dataDir);
    }
  });
});
