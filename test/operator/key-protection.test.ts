/**
 * Key protection with the operator and an engine as processes, running as the chart's
 * ServiceAccounts on the real apiserver (issue #11 phase 2):
 * - the nonce budget: random-nonce encryptions served by the engine are counted per key version
 *   (reserved through its usage report, folded into the material Secret's `nonceCount`), and the
 *   operator rotates the key at the budget, rotation policy off, with an Event and a log line
 *   that say why; no version carries more ciphertexts than its budget, and no count is under;
 * - the master key: a replaced or deleted master-key Secret turns Keys to `Ready=False` reason
 *   `MasterKeyMismatch` (a message that says what to do, no key bytes), nothing is overwritten or
 *   generated, a deleted Secret is not re-created over existing material, and restoring it brings
 *   every key back.
 */
import { CoreV1Api, EventsV1Api, type V1Secret } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCiphertext } from '../../engine/crypto/format.ts';
import { wrappedMasterKeyVersion } from '../../engine/crypto/wrap.ts';
import { MASTER_KEY_SECRET } from '../../engine/kube/master-key-secret.ts';
import { materialSecretName } from '../../engine/kube/material-secret.ts';
import { b64, call, type EngineProcess, keyPath, saToken, spawnEngine } from '../cluster/engine-helpers.ts';
import { createNamespace, kubectl, makeKubeConfig, waitFor } from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  engineKubeconfig,
  getKey,
  installCrd,
  isReady,
  keyManifest,
  type OperatorProcess,
  readMaterial,
  sleep,
  startOperator,
  waitForKey,
} from './helpers.ts';

const BUDGET = 25;
let ns: string;
let opNs: string;
let op: OperatorProcess;
let engine: EngineProcess;
let token: string;

const core = (): CoreV1Api => makeKubeConfig().makeApiClient(CoreV1Api);

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-prot');
  opNs = await createOperatorNamespace('kw-prot-op');
  op = startOperator({
    opNs,
    watchNs: ns,
    identity: 'prot-op',
    extra: ['--nonce-budget', String(BUDGET), '--usage-interval', '500ms', '--master-key-poll', '500ms'],
  });
  engine = await spawnEngine([
    '--kubeconfig',
    engineKubeconfig(opNs),
    '--namespace',
    opNs,
    '--identity',
    'engine-prot',
    '--nonce-budget',
    String(BUDGET),
    '--usage-report-ms',
    '300',
    '--master-key-poll',
    '500ms',
    '--no-audit',
  ]);
  await kubectl(['create', 'serviceaccount', 'app', '-n', ns]);
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'key-user' },
      rules: [
        { apiGroups: ['keyward.io'], resources: ['keys'], verbs: ['encrypt', 'decrypt', 'list', 'get'] },
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
});

afterAll(async () => {
  await engine?.stop();
  await op?.kill();
});

async function applyKey(name: string, spec: Record<string, unknown>): Promise<void> {
  await kubectl(['apply', '-f', '-'], { input: keyManifest(ns, name, spec) });
  await waitForKey(ns, name, 'Ready', (k) => isReady(k), 60_000);
}

const encrypt = (name: string, text: string) =>
  call(engine, 'POST', keyPath(ns, name, '/encrypt'), { token, body: { plaintext: b64(text) } });

describe('nonce budget in the cluster', () => {
  it('rotates at the budget with rotation off, with an Event and a log line; no version passes it, no count is under', async () => {
    await applyKey('hot', { usage: 'AES256', rotation: { enabled: false, periodDays: 90 } });
    const perVersion = new Map<number, number>();
    let refused = 0;
    const deadline = Date.now() + 90_000;
    let done = 0;
    while (done < BUDGET * 3 && Date.now() < deadline) {
      const r = await encrypt('hot', `p${done}`);
      if (r.status === 503) {
        // The version is spent: the operator's rotation has not reached the engine yet.
        refused++;
        await sleep(50);
        continue;
      }
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const v = parseCiphertext(r.body.ciphertext).version;
      perVersion.set(v, (perVersion.get(v) ?? 0) + 1);
      done++;
    }
    expect(done).toBe(BUDGET * 3);
    for (const [version, n] of perVersion) expect(n, `version ${version}`).toBeLessThanOrEqual(BUDGET);
    expect(perVersion.size).toBeGreaterThanOrEqual(3);
    // The Secret's counts cover every encryption made (an over-count is allowed, never an under).
    const stored = await waitFor('counts folded', async () => {
      const s = await readMaterial(opNs, ns, 'hot');
      const ok = [...perVersion].every(
        ([v, n]) => (s?.record.versions.find((x) => x.version === v)?.nonceCount ?? 0) >= n,
      );
      return ok ? s : undefined;
    });
    expect(stored.record.rotation.enabled).toBe(false);
    const events = await makeKubeConfig()
      .makeApiClient(EventsV1Api)
      .listNamespacedEvent({ namespace: ns, fieldSelector: 'regarding.name=hot' });
    const rotations = events.items.filter((e) => e.reason === 'Rotated').map((e) => e.note ?? '');
    expect(rotations.some((n) => /nonce-budget rotation: version 1 reached its budget of 25/.test(n))).toBe(
      true,
    );
    expect(op.logs()).toMatch(/nonce-budget rotation: version 1 reached its budget of 25/);
    console.info(
      `nonce budget ${BUDGET}: ${done} encryptions over ${perVersion.size} versions, ${refused} refused (503) while rotating`,
    );
  });
});

describe('master key in the cluster', () => {
  it('a replaced or deleted master-key Secret: MasterKeyMismatch, nothing overwritten or re-created; restored, every key is back', async () => {
    await applyKey('mka', { usage: 'AES256' });
    await applyKey('mkb', { usage: 'ECDSA' });
    const sealed = await encrypt('mka', 'before');
    expect(sealed.status).toBe(200);
    const original = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
    // The material, its check values and its versions, as stored. Usage counters are left out: the
    // fold of the first encryption's usage may land after this read, before the operator has seen
    // the replaced master key (a loaded machine showed it), and it changes no material.
    const materialBefore = async () =>
      Promise.all(
        ['mka', 'mkb'].map(async (n) => {
          const data = {
            ...(await core().readNamespacedSecret({ name: materialSecretName(ns, n), namespace: opNs })).data,
          };
          const record = JSON.parse(Buffer.from(data['record.json'] ?? '', 'base64').toString());
          for (const usage of ['operationCounts', 'lastUsedTime', 'usageSeen', 'usageFoldedTime'])
            delete record[usage];
          data['record.json'] = JSON.stringify(record);
          return JSON.stringify(data);
        }),
      );
    const before = await materialBefore();

    // A wrong restore: another 32 bytes in the Secret.
    const wrong = Buffer.alloc(32, 7).toString('base64');
    await core().replaceNamespacedSecret({
      name: MASTER_KEY_SECRET,
      namespace: opNs,
      body: { ...original, data: { 'master.key': wrong } } as V1Secret,
    });
    for (const name of ['mka', 'mkb']) {
      const key = await waitForKey(ns, name, 'MasterKeyMismatch', (k) =>
        (k.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.reason === 'MasterKeyMismatch'),
      );
      const ready = key.status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready?.status).toBe('False');
      expect(ready?.message).toMatch(/restore the master-key Secret/);
      expect(ready?.message).not.toContain(wrong);
      expect(ready?.message).not.toContain(original.data?.['master.key'] ?? 'x');
    }
    // A rotation asked meanwhile and a new Key are not carried out under the wrong master key.
    await kubectl(['annotate', 'key', 'mka', '-n', ns, 'keyward.io/rotate=now', '--overwrite']);
    await kubectl(['apply', '-f', '-'], { input: keyManifest(ns, 'mkc', { usage: 'AES256' }) });
    // The engine refuses the key for its material, and still lists it, with the error.
    const listed = await waitFor('engine lists mka with its material error', async () => {
      const list = await call(engine, 'GET', `/v1/namespaces/${ns}/keys`, { token });
      const mka = list.body?.keys?.find((k: { name: string }) => k.name === 'mka');
      return list.status === 200 && mka?.materialError !== undefined ? mka : undefined;
    });
    expect(listed.materialError).toMatch(/master-key version 1 .* does not match/);
    const refused = await encrypt('mka', 'x');
    expect(refused.status).toBe(409);
    // Deleted altogether: not re-created over existing material.
    await core().deleteNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
    await waitForKey(ns, 'mka', 'missing', (k) =>
      (k.status?.conditions ?? []).some(
        (c) => c.reason === 'MasterKeyMismatch' && /is missing/.test(c.message ?? ''),
      ),
    );
    // The operator looked for the Secret again (twice at least) and created none.
    await waitFor('two polls of the missing Secret', async () =>
      (op.logs().match(/the master-key Secret is missing but material Secrets exist/g) ?? []).length >= 2
        ? true
        : undefined,
    );
    await expect(
      core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs }),
    ).rejects.toMatchObject({
      code: 404,
    });
    expect(await materialBefore()).toEqual(before);
    expect(await readMaterial(opNs, ns, 'mkc')).toBeUndefined();

    // Restored: every key is back, the old ciphertext opens, m3 is created, m1 rotates.
    await core().createNamespacedSecret({
      namespace: opNs,
      body: { metadata: { name: MASTER_KEY_SECRET }, type: original.type, data: original.data } as V1Secret,
    });
    for (const name of ['mka', 'mkb', 'mkc'])
      await waitForKey(ns, name, 'Ready again', (k) => isReady(k), 60_000);
    const opened = await waitFor('m1 decrypts', async () => {
      const r = await call(engine, 'POST', keyPath(ns, 'mka', '/decrypt'), {
        token,
        body: { ciphertext: sealed.body.ciphertext },
      });
      return r.status === 200 ? r : undefined;
    });
    expect(Buffer.from(opened.body.plaintext, 'base64').toString()).toBe('before');
    await waitForKey(ns, 'mka', 'rotated', (k) => k.status?.currentVersion === 2);
  });
});

describe('master-key rotation in the cluster', () => {
  it('re-wraps every key under a new master-key version, serves throughout, and retires the old one', async () => {
    await applyKey('rka', { usage: 'AES256' });
    await applyKey('rkb', { usage: 'RSA2048' });
    const sealed = await encrypt('rka', 'kept across rotation');
    expect(sealed.status).toBe(200);
    // Callers keep using the keys while the master key rotates.
    let stop = false;
    let calls = 0;
    const failures: string[] = [];
    const traffic = (async () => {
      while (!stop) {
        const r = await call(engine, 'POST', keyPath(ns, 'rka', '/decrypt'), {
          token,
          body: { ciphertext: sealed.body.ciphertext },
        });
        calls++;
        if (r.status !== 200) failures.push(`${r.status} ${JSON.stringify(r.body)}`);
        await sleep(20);
      }
    })();
    const before = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
    // Status shows the master-key version that wraps each key (version 1 before the rotation).
    for (const name of ['rka', 'rkb']) {
      const key = await getKey(ns, name);
      expect(key?.status?.masterKeyVersion).toBe(1);
      expect(key?.status?.versions?.map((v) => v.masterKeyVersion)).toEqual([1]);
    }
    await kubectl(['annotate', 'secret', MASTER_KEY_SECRET, '-n', opNs, 'keyward.io/rotate-master-key=r1']);
    // Version 2 is added and current; every material Secret is re-wrapped under it; version 1,
    // with nothing wrapped under it any more, leaves the Secret.
    const after = await waitFor(
      'master-key version 1 retired',
      async () => {
        const s = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
        return s.data?.['master.key'] === undefined && s.data?.['master.key.v2'] !== undefined
          ? s
          : undefined;
      },
      90_000,
    );
    expect(after.metadata?.annotations?.['keyward.io/master-key-rotated']).toBe('r1');
    expect(Buffer.from(after.data?.current ?? '', 'base64').toString()).toBe('2');
    for (const name of ['rka', 'rkb']) {
      const stored = await readMaterial(opNs, ns, name);
      for (const v of stored?.record.versions ?? []) expect(wrappedMasterKeyVersion(v.wrapped)).toBe(2);
      expect(Object.keys(stored?.masterKeyChecks ?? {})).toEqual(['2']);
      const key = await getKey(ns, name);
      expect(isReady(key!)).toBe(true);
    }
    // Every Key of the namespace (the earlier tests' too) shows the new master-key version, in its
    // status, in `kubectl get keys -o wide`, and through the engine's key get.
    const names = JSON.parse((await kubectl(['get', 'keys', '-n', ns, '-o', 'json'])).stdout).items.map(
      (k: { metadata: { name: string } }) => k.metadata.name,
    ) as string[];
    expect(names.length).toBeGreaterThanOrEqual(6);
    for (const name of names) {
      const key = await waitForKey(
        ns,
        name,
        'status shows master-key version 2',
        (k) => k.status?.masterKeyVersion === 2,
      );
      for (const v of key.status?.versions ?? []) expect(v.masterKeyVersion, `${name} v${v.version}`).toBe(2);
    }
    const wide = (await kubectl(['get', 'keys', '-n', ns, '-o', 'wide'])).stdout;
    expect(wide.split('\n')[0]).toMatch(/MASTER-KEY/);
    expect(wide).toMatch(/\brka\b.*\s2\s/);
    const got = await waitFor('engine shows master-key version 2', async () => {
      const r = await call(engine, 'GET', keyPath(ns, 'rkb', ''), { token });
      return r.status === 200 &&
        r.body.versions.every((v: { masterKeyVersion: number }) => v.masterKeyVersion === 2)
        ? r
        : undefined;
    });
    expect(got.body.versions.length).toBeGreaterThanOrEqual(1);
    stop = true;
    await traffic;
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(0);
    // The old ciphertext still opens, a new one is made, and the old master key is gone for good.
    const opened = await call(engine, 'POST', keyPath(ns, 'rka', '/decrypt'), {
      token,
      body: { ciphertext: sealed.body.ciphertext },
    });
    expect(Buffer.from(opened.body.plaintext, 'base64').toString()).toBe('kept across rotation');
    expect((await encrypt('rka', 'after')).status).toBe(200);
    expect(JSON.stringify(after.data)).not.toContain(before.data?.['master.key'] ?? 'none');
    expect(op.logs()).toMatch(/master-key rotation: version 2 is current/);
    expect(op.logs()).toMatch(/master-key version\(s\) 1 retired/);
    console.info(`master-key rotation: ${calls} decrypts during it, ${failures.length} failed`);
  });
});
