/**
 * Operator and engine together, as the chart runs them (issue 5): every example Key applied with
 * kubectl reaches Ready and is usable through the cluster engine; disable makes the engine refuse,
 * enable restores it; a manual rotation keeps old ciphertexts decryptable. The operator and the
 * engine run as local processes with the chart's ServiceAccounts; the workload calls with a
 * projected-style token (audience keyward) of its own ServiceAccount, authorized by RBAC.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, call, type EngineProcess, keyPath, saToken, spawnEngine } from '../cluster/engine-helpers.ts';
import { createNamespace, kubectl } from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  engineKubeconfig,
  installCrd,
  isReady,
  type OperatorProcess,
  ROOT,
  startOperator,
  waitForKey,
} from './helpers.ts';

let ns: string;
let opNs: string;
let op: OperatorProcess;
let engine: EngineProcess;
let token: string;

const EXAMPLES = join(ROOT, 'examples');

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-e2e');
  opNs = await createOperatorNamespace('kw-e2e-op');
  op = startOperator({ opNs, watchNs: ns, identity: 'e2e-op' });
  // The ECDSA example is Isolated to kr-central-1: this engine serves that region.
  engine = await spawnEngine([
    '--kubeconfig',
    engineKubeconfig(opNs),
    '--namespace',
    opNs,
    '--region',
    'kr-central-1',
  ]);
  // The workload: ServiceAccount `app`, allowed every key operation in its namespace.
  await kubectl(['create', 'serviceaccount', 'app', '-n', ns]);
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'key-user' },
      rules: [
        {
          apiGroups: ['keyward.io'],
          resources: ['keys'],
          verbs: [
            'encrypt',
            'decrypt',
            're-encrypt',
            'sign',
            'verify',
            'generate-data-key',
            'get-public-key',
          ],
        },
      ],
    }),
  });
  await kubectl([
    'create',
    'rolebinding',
    'app-keys',
    '-n',
    ns,
    '--role',
    'key-user',
    `--serviceaccount=${ns}:app`,
  ]);
  token = await saToken(ns, 'app', 'keyward');
}, 240_000);

afterAll(async () => {
  await engine?.stop();
  await op?.kill();
});

const post = (name: string, op: string, body: unknown) =>
  call(engine, 'POST', keyPath(ns, name, `/${op}`), { token, body });

/** Retries while the engine's informers catch up with a change the operator just made. */
async function eventually<T>(what: string, run: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await run();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: last answer ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('operator + engine', () => {
  it('serves every example Key applied with kubectl', async () => {
    for (const file of readdirSync(EXAMPLES)) await kubectl(['apply', '-n', ns, '-f', join(EXAMPLES, file)]);
    for (const name of ['orders-aes', 'email-index', 'partner-rsa', 'release-signer']) {
      await waitForKey(ns, name, 'Ready', (k) => isReady(k));
    }

    const sealed = await eventually(
      'encrypt orders-aes',
      () => post('orders-aes', 'encrypt', { plaintext: b64('order 42') }),
      (r) => r.status === 200,
    );
    const opened = await post('orders-aes', 'decrypt', { ciphertext: sealed.body.ciphertext });
    expect(Buffer.from(opened.body.plaintext, 'base64').toString()).toBe('order 42');

    const context = b64('tenant-a');
    const c1 = await eventually(
      'encrypt email-index',
      () => post('email-index', 'encrypt', { plaintext: b64('a@example.com'), context }),
      (r) => r.status === 200,
    );
    const c2 = await post('email-index', 'encrypt', { plaintext: b64('a@example.com'), context });
    expect(c2.body.ciphertext).toBe(c1.body.ciphertext);

    const rsa = await eventually(
      'encrypt partner-rsa',
      () => post('partner-rsa', 'encrypt', { plaintext: b64('wrapped secret') }),
      (r) => r.status === 200,
    );
    const rsaOpen = await post('partner-rsa', 'decrypt', { ciphertext: rsa.body.ciphertext });
    expect(Buffer.from(rsaOpen.body.plaintext, 'base64').toString()).toBe('wrapped secret');

    const signed = await eventually(
      'sign release-signer',
      () => post('release-signer', 'sign', { data: b64('v1.0.0') }),
      (r) => r.status === 200,
    );
    const verified = await post('release-signer', 'verify', {
      data: b64('v1.0.0'),
      signature: signed.body.signature,
    });
    expect(verified.body).toEqual({ valid: true });
  });

  it('refuses a disabled key and serves it again once enabled', async () => {
    await kubectl([
      'patch',
      'key',
      'orders-aes',
      '-n',
      ns,
      '--type=merge',
      '-p',
      '{"spec":{"state":"Disabled"}}',
    ]);
    await waitForKey(ns, 'orders-aes', 'Disabled', (k) => isReady(k, false));
    const refused = await eventually(
      'refusal',
      () => post('orders-aes', 'encrypt', { plaintext: b64('x') }),
      (r) => r.status === 409,
    );
    expect(refused.body.error.code).toBe('KEY_STATE');

    await kubectl([
      'patch',
      'key',
      'orders-aes',
      '-n',
      ns,
      '--type=merge',
      '-p',
      '{"spec":{"state":"Enabled"}}',
    ]);
    await waitForKey(ns, 'orders-aes', 'Enabled', (k) => isReady(k));
    await eventually(
      'served again',
      () => post('orders-aes', 'encrypt', { plaintext: b64('x') }),
      (r) => r.status === 200,
    );
  });

  it('keeps old ciphertexts decryptable across a manual rotation', async () => {
    const old = await post('orders-aes', 'encrypt', { plaintext: b64('before rotation') });
    expect(old.body.keyVersion).toBe(1);
    await kubectl(['annotate', 'key', 'orders-aes', '-n', ns, 'keyward.io/rotate=r1', '--overwrite']);
    await waitForKey(ns, 'orders-aes', 'version 2', (k) => k.status?.currentVersion === 2);
    const fresh = await eventually(
      'encrypt under v2',
      () => post('orders-aes', 'encrypt', { plaintext: b64('after rotation') }),
      (r) => r.status === 200 && r.body.keyVersion === 2,
    );
    expect(fresh.body.ciphertext.startsWith('keyward:v2:')).toBe(true);
    const opened = await post('orders-aes', 'decrypt', { ciphertext: old.body.ciphertext });
    expect(Buffer.from(opened.body.plaintext, 'base64').toString()).toBe('before rotation');
    const moved = await post('orders-aes', 're-encrypt', { ciphertext: old.body.ciphertext });
    expect(moved.body.keyVersion).toBe(2);
  });
});
