/**
 * Authentication and authorization of the cluster engine end to end: real TokenReview and
 * SubjectAccessReview on the test apiserver, RBAC Roles granting key verbs, real HTTPS on
 * loopback. The engine runs as its own least-privilege ServiceAccount, never as admin.
 *
 * Key names: the brief's `k1`/`k2` are shorter than the 3-character minimum the CRD enforces
 * (PRODUCT.md §2), so the keys are `key1`/`key2`.
 *
 * Expired tokens: the TokenRequest API refuses `expirationSeconds` under 600, so no real token
 * can expire within the test. The test instead re-signs a real token's claims with the cluster's
 * service-account signing key (`<dataDir>/sa.key`) with `exp` in the past; the same re-signing
 * with the claims untouched is accepted, which shows that only the expiry is refused.
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  applyKeyCrd,
  b64,
  call,
  createKey,
  type EngineProcess,
  engineServiceAccount,
  keyPath,
  operatorNamespace,
  saToken,
  spawnEngine,
} from './engine-helpers.ts';
import { cluster, createNamespace, kubectl } from './harness.ts';

let op: { namespace: string; master: KeyObject };
let a: string;
let b: string;
let engine: EngineProcess;
let appToken: string;

/** The chart's `keyward-encrypter` role (mirrored here until the chart lands), bound to `app`. */
async function encrypterFor(namespace: string): Promise<void> {
  const docs = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'app', namespace } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'key1-encrypter', namespace },
      rules: [
        {
          apiGroups: ['keyward.io'],
          resources: ['keys'],
          resourceNames: ['key1'],
          verbs: ['encrypt', 're-encrypt', 'generate-data-key'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'app-key1-encrypter', namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'key1-encrypter' },
      subjects: [{ kind: 'ServiceAccount', name: 'app', namespace }],
    },
  ];
  await kubectl(['apply', '-f', '-'], { input: docs.map((d) => stringify(d)).join('---\n') });
}

/** Re-signs `token`'s claims, changed by `edit`, with `key` (RS256, the header kept). */
function resign(
  token: string,
  key: KeyObject | string,
  edit: (claims: Record<string, unknown>) => void,
): string {
  const [header, payload] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
  edit(claims);
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${body}.${sign('sha256', Buffer.from(body), key).toString('base64url')}`;
}

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  a = await createNamespace('a');
  b = await createNamespace('b');
  await createKey(op, a, 'key1');
  await createKey(op, a, 'key2');
  await createKey(op, b, 'key1');
  await encrypterFor(a);
  await encrypterFor(b);
  const kubeconfig = await engineServiceAccount(op.namespace);
  engine = await spawnEngine(['--kubeconfig', kubeconfig, '--namespace', op.namespace]);
  appToken = await saToken(a, 'app', 'keyward');
});

afterAll(async () => {
  await engine?.stop();
});

const encrypt = (ns: string, name: string, token: string | undefined) =>
  call(engine, 'POST', keyPath(ns, name, '/encrypt'), {
    ...(token === undefined ? {} : { token }),
    body: { plaintext: b64('secret data') },
  });

describe('Kubernetes auth', () => {
  it('lets the bound ServiceAccount use the verbs its Role grants on a/key1', async () => {
    const enc = await encrypt(a, 'key1', appToken);
    expect(enc.status).toBe(200);
    expect(enc.body.ciphertext).toMatch(/^keyward:v1:/);
    const re = await call(engine, 'POST', keyPath(a, 'key1', '/re-encrypt'), {
      token: appToken,
      body: { ciphertext: enc.body.ciphertext },
    });
    expect(re.status).toBe(200);
    const dk = await call(engine, 'POST', keyPath(a, 'key1', '/data-key'), {
      token: appToken,
      body: { bits: 256 },
    });
    expect(dk.status).toBe(200);
    expect(Buffer.from(dk.body.plaintext, 'base64')).toHaveLength(32);
    const batch = await call(engine, 'POST', keyPath(a, 'key1', '/batch/encrypt'), {
      token: appToken,
      body: { requests: [{ plaintext: b64('one') }, { plaintext: b64('two') }] },
    });
    expect(batch.status).toBe(200);
    expect(batch.body.results).toHaveLength(2);
  });

  it('refuses with 403 the verbs and keys the Role does not grant', async () => {
    const enc = await encrypt(a, 'key1', appToken);
    const cases = [
      call(engine, 'POST', keyPath(a, 'key1', '/decrypt'), {
        token: appToken,
        body: { ciphertext: enc.body.ciphertext },
      }),
      call(engine, 'POST', keyPath(a, 'key1', '/batch/decrypt'), {
        token: appToken,
        body: { requests: [{ ciphertext: enc.body.ciphertext }] },
      }),
      call(engine, 'POST', keyPath(a, 'key1', '/sign'), { token: appToken, body: { data: b64('x') } }),
      call(engine, 'GET', keyPath(a, 'key1'), { token: appToken }),
      call(engine, 'GET', `/v1/namespaces/${a}/keys`, { token: appToken }),
      encrypt(a, 'key2', appToken),
      encrypt(b, 'key1', appToken),
    ];
    for (const r of await Promise.all(cases)) {
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('PERMISSION_DENIED');
      expect(r.body.error.message).toContain(`system:serviceaccount:${a}:app`);
    }
  });

  it('refuses a ServiceAccount of another namespace on a/key1 (403)', async () => {
    const other = await saToken(b, 'app', 'keyward');
    expect((await encrypt(b, 'key1', other)).status).toBe(200);
    const r = await encrypt(a, 'key1', other);
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('PERMISSION_DENIED');
  });

  it('refuses tokens for another audience (401)', async () => {
    // Not the default audience: this test apiserver runs with --api-audiences=<issuer>,keyward,
    // so its default tokens carry both. The apiserver's own audience alone is refused.
    for (const audience of ['https://kubernetes.default.svc.cluster.local', 'not-keyward']) {
      const token = await saToken(a, 'app', audience);
      const r = await encrypt(a, 'key1', token);
      expect(r.status, `audience ${audience}`).toBe(401);
      expect(r.body.error.code).toBe('UNAUTHENTICATED');
    }
  });

  it('refuses an expired token (401), re-signed with the cluster signing key', async () => {
    const saKey = readFileSync(join(cluster().dataDir, 'sa.key'), 'utf8');
    // Control: the same claims re-signed are accepted, so the signature is the cluster's.
    const same = resign(appToken, saKey, () => {});
    expect((await encrypt(a, 'key1', same)).status).toBe(200);
    const now = Math.floor(Date.now() / 1000);
    const expired = resign(appToken, saKey, (c) => {
      c.iat = now - 7200;
      c.nbf = now - 7200;
      c.exp = now - 3600;
    });
    const r = await encrypt(a, 'key1', expired);
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('UNAUTHENTICATED');
  });

  it('refuses garbage, forged and missing tokens (401), without echoing them', async () => {
    const forger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const forged = resign(appToken, forger, () => {});
    for (const token of ['garbage', 'a.b.c', forged, `${appToken}x`, undefined]) {
      const r = await encrypt(a, 'key1', token);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('UNAUTHENTICATED');
      if (token !== undefined) expect(JSON.stringify(r.body)).not.toContain(token);
    }
  });

  it('answers 405 to admin routes for an authenticated caller', async () => {
    const r = await call(engine, 'POST', keyPath(a, 'key1', '/rotate'), { token: appToken, body: {} });
    expect(r.status).toBe(405);
    const c = await call(engine, 'POST', `/v1/namespaces/${a}/keys`, {
      token: appToken,
      body: { name: 'key9', usage: 'AES256' },
    });
    expect(c.status).toBe(405);
  });

  it('logs no token', () => {
    expect(engine.stderr()).not.toContain(appToken);
    expect(engine.stderr()).not.toContain(appToken.split('.')[2]!);
  });

  it('leaves the probes open, and serves metrics on their own port only', async () => {
    expect((await call(engine, 'GET', '/readyz')).status).toBe(200);
    expect((await call(engine, 'GET', '/livez')).status).toBe(200);
    expect((await call(engine, 'GET', '/metrics')).status).toBe(404);
    const metrics = await call(engine, 'GET', engine.metricsUrl);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('keyward_operations_total');
  });
});
