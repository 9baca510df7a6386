/**
 * One record per API request in standalone mode, over real HTTP on loopback: crypto (single and
 * batch, with ok/failed counts), admin actions, reads, and refused requests (401 with no identity,
 * 400 after authentication, with the principal); `x-request-id` names each record; probes and metrics are not
 * recorded. The records are read back from the segment files and the log verifies.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_DIR, readMasterKeyFile } from '../../engine/audit/verify-files.ts';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from '../http/harness.ts';
import { readLines, segmentFiles, verifyDir } from './fixtures.ts';

let t: TestServer;
type Rec = Record<string, unknown>;

async function records(): Promise<Rec[]> {
  await t.server.audit!.flush();
  return segmentFiles(join(t.dataDir, AUDIT_DIR)).flatMap((f) =>
    readLines(f).map((l) => JSON.parse(l) as Rec),
  );
}

/** The record of the response `headers` came with. */
async function recordOf(headers: Headers): Promise<Rec> {
  const id = headers.get('x-request-id');
  expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
  const found = (await records()).filter((r) => r.requestId === id);
  expect(found).toHaveLength(1);
  return found[0]!;
}

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.stop();
  removeDir(t.dataDir);
});

describe('standalone request records', () => {
  it('records a create, an encrypt and a decrypt with principal, key, version and latency', async () => {
    const created = await t.call('POST', KEYS, { name: 'orders', usage: 'AES256' });
    expect(created.status).toBe(201);
    expect(await recordOf(created.headers)).toMatchObject({
      type: 'request',
      operation: 'create',
      namespace: 'default',
      key: 'orders',
      outcome: 'ok',
      status: 201,
      version: 1,
      principal: { name: 'admin' },
      source: '127.0.0.1',
    });
    await t.call('POST', `${KEYS}/orders/rotate`);
    const enc = await t.call('POST', `${KEYS}/orders/encrypt`, { plaintext: b64('hello') });
    const r = await recordOf(enc.headers);
    expect(r).toMatchObject({ operation: 'encrypt', key: 'orders', version: 2, outcome: 'ok', status: 200 });
    expect(r.latencyUs as number).toBeGreaterThan(0);
    expect(typeof r.time).toBe('string');
    const dec = await t.call('POST', `${KEYS}/orders/decrypt`, { ciphertext: enc.body.ciphertext });
    expect(await recordOf(dec.headers)).toMatchObject({ operation: 'decrypt', version: 2, outcome: 'ok' });
  });

  it('records a batch with its ok and failed counts', async () => {
    const res = await t.call('POST', `${KEYS}/orders/batch/encrypt`, {
      requests: [{ plaintext: b64('a') }, { plaintext: 'not base64!' }, { plaintext: b64('c') }, {}],
    });
    expect(res.status).toBe(200);
    expect(await recordOf(res.headers)).toMatchObject({
      operation: 'encrypt',
      outcome: 'ok',
      batch: { ok: 2, failed: 2 },
    });
  });

  it('records failures with their error code', async () => {
    await t.call('POST', `${KEYS}/orders/disable`);
    const refused = await t.call('POST', `${KEYS}/orders/encrypt`, { plaintext: b64('x') });
    expect(refused.status).toBe(409);
    expect(await recordOf(refused.headers)).toMatchObject({
      operation: 'encrypt',
      outcome: 'KEY_STATE',
      status: 409,
      principal: { name: 'admin' },
    });
    const missing = await t.call('GET', `${KEYS}/nope-key`);
    expect(await recordOf(missing.headers)).toMatchObject({
      operation: 'get',
      key: 'nope-key',
      outcome: 'KEY_NOT_FOUND',
    });
  });

  it('records refused callers: a bad token (no identity) and a missing one', async () => {
    const bad = await fetch(`${t.url}${KEYS}/orders/encrypt`, {
      method: 'POST',
      headers: { authorization: 'Bearer not-the-token-0000', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(bad.status).toBe(401);
    const r = await recordOf(bad.headers);
    expect(r).toMatchObject({ operation: 'encrypt', key: 'orders', outcome: 'UNAUTHENTICATED', status: 401 });
    expect(r.principal).toBeUndefined();
    const none = await fetch(`${t.url}${KEYS}`);
    expect(await recordOf(none.headers)).toMatchObject({ operation: 'list', outcome: 'UNAUTHENTICATED' });
    // Authentication comes first, so a bad namespace without a token is a 401 too...
    const anonymousBadNs = await fetch(`${t.url}/v1/namespaces/Bad_NS/keys`);
    expect(await recordOf(anonymousBadNs.headers)).toMatchObject({ outcome: 'UNAUTHENTICATED', status: 401 });
    // ...and with one, a 400 recorded with the caller's identity.
    const badNs = await t.call('GET', '/v1/namespaces/Bad_NS/keys');
    const rec = await recordOf(badNs.headers);
    expect(rec).toMatchObject({ outcome: 'INVALID_ARGUMENT', status: 400 });
    expect(rec.principal).toBeDefined();
  });

  it('answers with its own x-request-id, and keeps a caller’s own id as clientRequestId', async () => {
    const sent = await t.call('GET', `${KEYS}/orders`, undefined, { 'x-request-id': 'envoy-7f3a-0001' });
    const id = sent.headers.get('x-request-id');
    expect(id).not.toBe('envoy-7f3a-0001');
    expect(await recordOf(sent.headers)).toMatchObject({ requestId: id, clientRequestId: 'envoy-7f3a-0001' });
    // Ids that are not 1 to 128 visible ASCII characters are left out, never cut or escaped.
    for (const bad of ['a'.repeat(129), 'has space', 'tab\there']) {
      const r = await t.call('GET', `${KEYS}/orders`, undefined, { 'x-request-id': bad });
      expect((await recordOf(r.headers)).clientRequestId).toBeUndefined();
    }
    // 401s carry an id too.
    const refused = await fetch(`${t.url}${KEYS}`, { headers: { 'x-request-id': 'lb-1' } });
    expect(await recordOf(refused.headers)).toMatchObject({
      outcome: 'UNAUTHENTICATED',
      clientRequestId: 'lb-1',
    });
  });

  it('does not record probes, metrics or unknown routes', async () => {
    const before = (await records()).length;
    await fetch(`${t.url}/livez`);
    await fetch(`${t.url}/readyz`);
    await fetch(`${t.url}/metrics`);
    await fetch(`${t.url}/v1/nowhere`);
    expect((await records()).length).toBe(before);
  });

  it('the log of the run verifies, with its master key', async () => {
    const master = await readMasterKeyFile(join(t.dataDir, 'master.key'));
    const r = await verifyDir(join(t.dataDir, AUDIT_DIR), [master], { open: true });
    expect(r.finding).toBeUndefined();
    expect(r.valid).toBe(true);
  });
});
