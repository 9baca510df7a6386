/**
 * The engine's cluster mode against the real apiserver: it reads Keys and material through
 * informers as a least-privilege ServiceAccount, serves crypto for Enabled keys, refuses the rest,
 * answers 405 on admin routes, follows a rotation without restart, runs as several replicas and
 * publishes usage reports. Auth is off here (`--insecure-no-auth`, loopback); engine-auth covers it.
 */
import type { KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseUsageReport } from '../../engine/cluster/usage-report.ts';
import {
  applyKeyCrd,
  b64,
  call,
  core,
  createKey,
  type EngineProcess,
  engineServiceAccount,
  type KeyFixture,
  keyPath,
  operatorNamespace,
  rotateKey,
  spawnEngine,
} from './engine-helpers.ts';
import { createNamespace, kubectl, waitFor } from './harness.ts';

let op: { namespace: string; master: KeyObject };
let ns: string;
let kubeconfig: string;
let engine: EngineProcess;
let replica: EngineProcess | undefined;
let aes: KeyFixture;

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  ns = await createNamespace('kw-app');
  kubeconfig = await engineServiceAccount(op.namespace);
  aes = await createKey(op, ns, 'aes1');
  engine = await spawnEngine([
    '--kubeconfig',
    kubeconfig,
    '--namespace',
    op.namespace,
    '--insecure-no-auth',
    '--identity',
    'replica-0',
    '--usage-report-ms',
    '300',
  ]);
});

afterAll(async () => {
  await replica?.stop();
  await engine?.stop();
});

describe('cluster engine', () => {
  it('encrypts and decrypts with an Enabled key and shows it', async () => {
    const enc = await call(engine, 'POST', keyPath(ns, 'aes1', '/encrypt'), {
      body: { plaintext: b64('hello') },
    });
    expect(enc.status).toBe(200);
    expect(enc.body.keyVersion).toBe(1);
    expect(enc.body.ciphertext).toMatch(/^keyward:v1:/);
    const dec = await call(engine, 'POST', keyPath(ns, 'aes1', '/decrypt'), {
      body: { ciphertext: enc.body.ciphertext },
    });
    expect(dec.status).toBe(200);
    expect(Buffer.from(dec.body.plaintext, 'base64').toString()).toBe('hello');

    const view = await call(engine, 'GET', keyPath(ns, 'aes1'));
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({
      name: 'aes1',
      namespace: ns,
      usage: 'AES256',
      state: 'Enabled',
      currentVersion: 1,
    });
    expect(view.body.fingerprint).toMatch(/\S/);
    expect(view.body.lastUsedTime).not.toBeNull();
    const list = await call(engine, 'GET', `/v1/namespaces/${ns}/keys`);
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.body)).toContain('"aes1"');
  });

  it('signs with an ECDSA key and serves its public key', async () => {
    await createKey(op, ns, 'ec1', { usage: 'ECDSA' });
    const signed = await waitFor('ec1 served', async () => {
      const r = await call(engine, 'POST', keyPath(ns, 'ec1', '/sign'), { body: { data: b64('msg') } });
      return r.status === 200 ? r : undefined;
    });
    const ok = await call(engine, 'POST', keyPath(ns, 'ec1', '/verify'), {
      body: { data: b64('msg'), signature: signed.body.signature },
    });
    expect(ok.body).toEqual({ valid: true });
    const pub = await call(engine, 'GET', keyPath(ns, 'ec1', '/public-key'));
    expect(pub.status).toBe(200);
    expect(pub.body.pem).toContain('BEGIN PUBLIC KEY');
  });

  it('refuses a Disabled key, and a key disabled in its spec before the operator caught up', async () => {
    await createKey(op, ns, 'off1', { state: 'Disabled' });
    await createKey(op, ns, 'off2', { specState: 'Disabled' });
    for (const name of ['off1', 'off2']) {
      const r = await waitFor(`${name} known`, async () => {
        const res = await call(engine, 'POST', keyPath(ns, name, '/encrypt'), {
          body: { plaintext: b64('x') },
        });
        return res.status === 404 ? undefined : res;
      });
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('KEY_STATE');
      expect(r.body.error.message).toMatch(/disabled/);
    }
  });

  it('follows a disable and an enable of a served key without restart', async () => {
    await createKey(op, ns, 'tog1');
    const encrypt = () =>
      call(engine, 'POST', keyPath(ns, 'tog1', '/encrypt'), { body: { plaintext: b64('x') } });
    await waitFor('tog1 served', async () => ((await encrypt()).status === 200 ? true : undefined));
    const patch = (state: string) =>
      kubectl([
        'patch',
        'keys.keyward.io',
        'tog1',
        '-n',
        ns,
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { state } }),
      ]);
    await patch('Disabled');
    const refused = await waitFor('tog1 refused', async () => {
      const r = await encrypt();
      return r.status === 409 ? r : undefined;
    });
    expect(refused.body.error.code).toBe('KEY_STATE');
    await patch('Enabled');
    await waitFor('tog1 served again', async () => ((await encrypt()).status === 200 ? true : undefined));
  });

  it('refuses unknown keys (404) and Keys without material (409)', async () => {
    const missing = await call(engine, 'POST', keyPath(ns, 'nosuch', '/encrypt'), {
      body: { plaintext: b64('x') },
    });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('KEY_NOT_FOUND');
    await kubectl(['apply', '-n', ns, '-f', '-'], {
      input:
        'apiVersion: keyward.io/v1alpha1\nkind: Key\nmetadata: { name: bare1 }\nspec: { usage: AES256 }\n',
    });
    const bare = await waitFor('bare1 known', async () => {
      const r = await call(engine, 'POST', keyPath(ns, 'bare1', '/encrypt'), {
        body: { plaintext: b64('x') },
      });
      return r.status === 404 ? undefined : r;
    });
    expect(bare.status).toBe(409);
    expect(bare.body.error.code).toBe('KEY_STATE');
  });

  it('answers 405 on every admin route', async () => {
    const routes: Array<[string, string, unknown]> = [
      ['POST', `/v1/namespaces/${ns}/keys`, { name: 'newkey', usage: 'AES256' }],
      ['PATCH', keyPath(ns, 'aes1'), { memo: 'x' }],
      ['POST', keyPath(ns, 'aes1', '/rotate'), {}],
      ['POST', keyPath(ns, 'aes1', '/disable'), {}],
      ['POST', keyPath(ns, 'aes1', '/request-deletion'), {}],
      ['DELETE', keyPath(ns, 'aes1'), undefined],
    ];
    for (const [method, path, body] of routes) {
      const r = await call(engine, method, path, body === undefined ? {} : { body });
      expect(r.status, `${method} ${path}`).toBe(405);
      expect(r.body.error.code).toBe('METHOD_NOT_ALLOWED');
    }
    const still = await call(engine, 'GET', keyPath(ns, 'aes1'));
    expect(still.body.state).toBe('Enabled');
  });

  it('picks up a rotation without restart; old ciphertexts still decrypt', async () => {
    const before = await call(engine, 'POST', keyPath(ns, 'aes1', '/encrypt'), {
      body: { plaintext: b64('v1 data') },
    });
    expect(before.body.keyVersion).toBe(1);
    await rotateKey(op, aes);
    const after = await waitFor('version 2 served', async () => {
      const r = await call(engine, 'POST', keyPath(ns, 'aes1', '/encrypt'), {
        body: { plaintext: b64('v2 data') },
      });
      return r.body.keyVersion === 2 ? r : undefined;
    });
    expect(after.body.ciphertext).toMatch(/^keyward:v2:/);
    const old = await call(engine, 'POST', keyPath(ns, 'aes1', '/decrypt'), {
      body: { ciphertext: before.body.ciphertext },
    });
    expect(Buffer.from(old.body.plaintext, 'base64').toString()).toBe('v1 data');
    const moved = await call(engine, 'POST', keyPath(ns, 'aes1', '/re-encrypt'), {
      body: { ciphertext: before.body.ciphertext },
    });
    expect(moved.body.keyVersion).toBe(2);
    const view = await call(engine, 'GET', keyPath(ns, 'aes1'));
    expect(view.body.currentVersion).toBe(2);
    expect(view.body.versions).toHaveLength(2);
  });

  it('runs as two replicas that both serve, each with its own region', async () => {
    await createKey(op, ns, 'iso1', { boundary: 'Isolated', region: 'eu-1' });
    replica = await spawnEngine([
      '--kubeconfig',
      kubeconfig,
      '--namespace',
      op.namespace,
      '--insecure-no-auth',
      '--identity',
      'replica-1',
      '--region',
      'eu-1',
    ]);
    const enc = await call(replica, 'POST', keyPath(ns, 'aes1', '/encrypt'), {
      body: { plaintext: b64('both') },
    });
    expect(enc.status).toBe(200);
    const dec = await call(engine, 'POST', keyPath(ns, 'aes1', '/decrypt'), {
      body: { ciphertext: enc.body.ciphertext },
    });
    expect(Buffer.from(dec.body.plaintext, 'base64').toString()).toBe('both');
    // The Isolated key: served by the eu-1 replica only.
    const here = await call(replica, 'POST', keyPath(ns, 'iso1', '/encrypt'), {
      body: { plaintext: b64('x') },
    });
    expect(here.status).toBe(200);
    const there = await call(engine, 'POST', keyPath(ns, 'iso1', '/encrypt'), {
      body: { plaintext: b64('x') },
    });
    expect(there.status).toBe(409);
    expect(there.body.error.message).toMatch(/region/);
  });

  it('publishes its usage counters in its own ConfigMap', async () => {
    const used = await createKey(op, ns, 'use1');
    const encrypt = () =>
      call(engine, 'POST', keyPath(ns, 'use1', '/encrypt'), { body: { plaintext: b64('x') } });
    const first = await waitFor('use1 served', async () => {
      const r = await encrypt();
      return r.status === 200 ? r : undefined;
    });
    for (let i = 0; i < 4; i++) expect((await encrypt()).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const r = await call(engine, 'POST', keyPath(ns, 'use1', '/decrypt'), {
        body: { ciphertext: first.body.ciphertext },
      });
      expect(r.status).toBe(200);
    }
    const report = await waitFor('usage report', async () => {
      const cm = await core().readNamespacedConfigMap({
        name: 'keyward-usage-replica-0',
        namespace: op.namespace,
      });
      const r = parseUsageReport(cm.data);
      return r?.keys[`${ns}/use1`]?.counts.decrypt === 2 ? r : undefined;
    });
    expect(report.identity).toBe('replica-0');
    const k = report.keys[`${ns}/use1`]!;
    expect(k).toMatchObject({
      namespace: ns,
      name: 'use1',
      uid: used.uid,
      counts: { encrypt: 5, decrypt: 2 },
    });
    expect(k.lastUsedTime).toBeGreaterThan(Date.now() - 60_000);
    expect(report.keys[`${ns}/aes1`]?.counts['re-encrypt']).toBe(1);
    expect(JSON.stringify(report)).not.toMatch(/wrapped|plaintext/);
  });

  it('stops serving a key whose material Secret is deleted', async () => {
    await createKey(op, ns, 'gone1');
    await waitFor('gone1 served', async () => {
      const r = await call(engine, 'POST', keyPath(ns, 'gone1', '/encrypt'), {
        body: { plaintext: b64('x') },
      });
      return r.status === 200 ? r : undefined;
    });
    await core().deleteNamespacedSecret({ name: `kkey.${ns}.gone1`, namespace: op.namespace });
    const r = await waitFor('gone1 refused', async () => {
      const res = await call(engine, 'POST', keyPath(ns, 'gone1', '/encrypt'), {
        body: { plaintext: b64('x') },
      });
      return res.status === 200 ? undefined : res;
    });
    expect(r.status).toBe(409);
  });
});
