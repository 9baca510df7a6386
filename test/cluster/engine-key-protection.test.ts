/**
 * Key protection in the cluster engine (issue #11 phase 2), in-process against the real apiserver
 * as the engine's least-privilege ServiceAccount:
 * - workers forget material the engine drops: a deleted material Secret (destroyed key) and a
 *   disabled key leave no copy in any crypto worker (`engine.evict` wired in ClusterKeyBackend);
 * - material wrapped under another master key fails alone: its operations answer KEY_STATE, the
 *   namespace list still works and shows it with `materialError`, other keys serve; a replaced
 *   master-key Secret fails every key until the right one is restored;
 * - random-nonce encryptions are reserved through the usage report before they happen, and the
 *   engine refuses past the budget until the operator rotates; a rotation seen while the report
 *   cannot be written encrypts under the earlier version's unspent reservation, never uncounted.
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import { KubeConfig, type V1Secret } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultAuditConfig } from '../../engine/audit/config.ts';
import { type RunningClusterEngine, runClusterEngine } from '../../engine/cluster/main.ts';
import { parseUsageReport, usageReportName } from '../../engine/cluster/usage-report.ts';
import type { CryptoEngine } from '../../engine/engine.ts';
import { MASTER_KEY_ENTRY, MASTER_KEY_SECRET } from '../../engine/kube/master-key-secret.ts';
import {
  decodeMaterialSecret,
  encodeMaterialSecret,
  materialSecretName,
} from '../../engine/kube/material-secret.ts';
import {
  applyKeyCrd,
  core,
  createKey,
  engineServiceAccount,
  type KeyFixture,
  operatorNamespace,
  rotateKey,
} from './engine-helpers.ts';
import { createNamespace, kubectl, waitFor } from './harness.ts';

const silent = pino({ level: 'silent' });
const BUDGET = 30;
let op: Awaited<ReturnType<typeof operatorNamespace>>;
let ns: string;
let engine: RunningClusterEngine;

function kubeConfigFor(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

const pool = (): CryptoEngine['pool'] => (engine.backend as unknown as { engine: CryptoEngine }).engine.pool;

/** Encrypts `name` until both workers hold at least `held` key versions. */
async function warmBothWorkers(name: string, held: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await Promise.all(
      Array.from({ length: 200 }, () =>
        engine.backend.sign(ns, name, { data: Buffer.from('x') }).catch(() => undefined),
      ),
    );
    const caches = await pool().workerCaches(1_000);
    if (caches.length === 2 && caches.every((c) => c.ids.length >= held)) return;
  }
  throw new Error(`${name} never reached both workers`);
}

async function workersUntil(check: (ids: string[][]) => boolean): Promise<string[][]> {
  return waitFor(
    'worker caches',
    async () => {
      const caches = await pool().workerCaches(1_000);
      const ids = caches.map((c) => c.ids);
      return caches.length === 2 && check(ids) ? ids : undefined;
    },
    30_000,
  );
}

async function patchMaterial(key: KeyFixture, change: (s: ReturnType<typeof decodeMaterialSecret>) => void) {
  const name = materialSecretName(key.namespace, key.name);
  const secret = await core().readNamespacedSecret({ name, namespace: op.namespace });
  const stored = decodeMaterialSecret({ data: secret.data ?? {} });
  change(stored);
  const body = encodeMaterialSecret(op.namespace, stored) as V1Secret;
  body.metadata = { ...body.metadata, resourceVersion: secret.metadata?.resourceVersion };
  await core().replaceNamespacedSecret({ name, namespace: op.namespace, body });
}

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  ns = await createNamespace('kw-prot');
  const kubeconfig = await engineServiceAccount(op.namespace);
  engine = await runClusterEngine({
    kubeConfig: kubeConfigFor(kubeconfig),
    namespace: op.namespace,
    host: '127.0.0.1',
    port: 0,
    tls: { mode: 'off' },
    insecureNoAuth: true,
    threads: 2,
    identity: 'engine-prot',
    nonceBudget: BUDGET,
    usageReportMs: 3_600_000,
    masterKeyPollMs: 300,
    audit: { ...defaultAuditConfig(), enabled: false },
    logger: silent,
  });
  await waitFor('engine ready', async () => (engine.backend.ready() ? true : undefined), 30_000);
});

afterAll(async () => {
  await engine?.close();
});

describe('worker caches follow the material Secrets', () => {
  it('a deleted material Secret (destroyed key) leaves no copy in any worker', async () => {
    const doomed = await createKey(op, ns, 'doomed', { usage: 'ECDSA' });
    await createKey(op, ns, 'keeper', { usage: 'ECDSA' });
    await waitFor('keys cached', async () => {
      try {
        await engine.backend.get(ns, 'keeper');
        await engine.backend.get(ns, 'doomed');
        return true;
      } catch {
        return undefined;
      }
    });
    await warmBothWorkers('doomed', 1);
    await warmBothWorkers('keeper', 2);
    await core().deleteNamespacedSecret({
      name: materialSecretName(doomed.namespace, doomed.name),
      namespace: op.namespace,
    });
    const after = await workersUntil((ids) => ids.every((w) => w.length === 1));
    expect(new Set(after.flat()).size).toBe(1);
  });

  it('a disabled key leaves no copy in any worker', async () => {
    const paused = await createKey(op, ns, 'paused', { usage: 'ECDSA' });
    await waitFor('key cached', async () => ((await engine.backend.get(ns, 'paused')) ? true : undefined));
    const before = (await pool().workerCaches(1_000)).map((c) => c.ids.length);
    await warmBothWorkers('paused', 2);
    await patchMaterial(paused, (s) => {
      s.record.state = 'Disabled';
    });
    await workersUntil((ids) => ids.every((w, i) => w.length <= (before[i] ?? 1)));
    await expect(engine.backend.sign(ns, 'paused', { data: Buffer.from('x') })).rejects.toMatchObject({
      code: 'KEY_STATE',
    });
  });
});

describe('master key checked in the engine', () => {
  it('material wrapped under another master key fails alone; the list shows it with its error', async () => {
    const good = await createKey(op, ns, 'good-aes');
    const stranger = randomBytes(32);
    // Material wrapped under a master key this cluster never had (a Secret restored from elsewhere).
    await createKey({ namespace: op.namespace, master: createSecretKey(stranger) }, ns, 'foreign-aes');
    await waitFor('keys cached', async () => {
      try {
        await engine.backend.get(ns, 'good-aes');
        await engine.backend.get(ns, 'foreign-aes');
        return true;
      } catch {
        return undefined;
      }
    });
    await expect(
      engine.backend.encrypt(ns, 'foreign-aes', { plaintext: Buffer.from('p') }),
    ).rejects.toMatchObject({
      code: 'KEY_STATE',
      message: expect.stringMatching(/master-key version 1 in .* does not unwrap/),
    });
    const sealed = await engine.backend.encrypt(ns, good.name, { plaintext: Buffer.from('p') });
    expect(sealed.ciphertext).toMatch(/^keyward:v1:/);
    const list = await engine.backend.list(ns);
    const foreign = list.find((k) => k.name === 'foreign-aes');
    expect(foreign?.materialError).toMatch(/restore the master-key Secret/);
    expect(foreign?.fingerprint).toBeNull();
    expect(list.find((k) => k.name === 'good-aes')?.materialError).toBeUndefined();
    expect(JSON.stringify(list)).not.toContain(stranger.toString('base64'));
  });

  it('a replaced master-key Secret fails every key until the original is restored', async () => {
    await createKey(op, ns, 'steady');
    const plaintext = Buffer.from('kept');
    const sealed = await waitFor('steady encrypts', async () =>
      engine.backend.encrypt(ns, 'steady', { plaintext }).catch(() => undefined),
    );
    const original = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: op.namespace });
    await core().replaceNamespacedSecret({
      name: MASTER_KEY_SECRET,
      namespace: op.namespace,
      body: { ...original, data: { [MASTER_KEY_ENTRY]: randomBytes(32).toString('base64') } },
    });
    await waitFor('steady refused', async () =>
      engine.backend
        .decrypt(ns, 'steady', { ciphertext: sealed.ciphertext })
        .then(() => undefined)
        .catch((err: { code?: string }) => (err.code === 'KEY_STATE' ? true : undefined)),
    );
    const current = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: op.namespace });
    await core().replaceNamespacedSecret({
      name: MASTER_KEY_SECRET,
      namespace: op.namespace,
      body: { ...current, data: original.data },
    });
    const opened = await waitFor('steady restored', async () =>
      engine.backend.decrypt(ns, 'steady', { ciphertext: sealed.ciphertext }).catch(() => undefined),
    );
    expect(opened.plaintext.toString()).toBe('kept');
  });
});

describe('random-nonce reservations (issue #11: cluster engines did not count)', () => {
  it('are published in the usage report before each encryption, and the budget is enforced', async () => {
    await createKey(op, ns, 'hot');
    await waitFor('hot cached', async () => ((await engine.backend.get(ns, 'hot')) ? true : undefined));
    const reportName = usageReportName('engine-prot');
    const reserved = async (): Promise<number> => {
      const cm = await core().readNamespacedConfigMap({ name: reportName, namespace: op.namespace });
      return parseUsageReport(cm.data)?.keys[`${ns}/hot`]?.versions?.['1']?.nonces ?? 0;
    };
    let done = 0;
    for (let i = 0; i < BUDGET; i++) {
      await engine.backend.encrypt(ns, 'hot', { plaintext: Buffer.from(`p${i}`) });
      done++;
      // The report already covers every encryption made (it was written before each block).
      if (i % 7 === 0) expect(await reserved()).toBeGreaterThanOrEqual(done);
    }
    expect(await reserved()).toBeGreaterThanOrEqual(BUDGET);
    // No operator folds or rotates here: the next encryption waits for the rotation.
    await expect(engine.backend.encrypt(ns, 'hot', { plaintext: Buffer.from('over') })).rejects.toMatchObject(
      {
        code: 'UNAVAILABLE',
        message: expect.stringMatching(/nonce budget of 30/),
      },
    );
    // Batches and data keys count too.
    await expect(
      engine.backend.batch(ns, 'hot', 'encrypt', [{ plaintext: Buffer.from('a') }]),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(engine.backend.dataKey(ns, 'hot', {})).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    // Decryption is unaffected.
    const list = await engine.backend.list(ns);
    expect(list.find((k) => k.name === 'hot')?.state).toBe('Enabled');
  });
});

/** Lets the engine's ServiceAccount write its usage report, or not (a real 403 from RBAC). */
async function usageReportWritable(writable: boolean): Promise<void> {
  const verbs = writable ? ['create', 'update'] : ['get'];
  await kubectl([
    'patch',
    'role',
    'keyward-engine',
    '-n',
    op.namespace,
    '--type=json',
    '-p',
    JSON.stringify([{ op: 'replace', path: '/rules/1/verbs', value: verbs }]),
  ]);
}

describe('a rotation seen while the usage report cannot be written', () => {
  // Fault suite, "kill -9 etcd": the rotated key's first encryption under its new version needed a
  // reservation as the apiserver came back, could not publish it, and the caller got 503.
  it('encrypts under the earlier version while its reservation lasts, then under the new one once published', async () => {
    const key = await createKey(op, ns, 'turn');
    await waitFor('turn cached', async () => ((await engine.backend.get(ns, 'turn')) ? true : undefined));
    const encrypt = () => engine.backend.encrypt(ns, 'turn', { plaintext: Buffer.from('p') });
    // A budget of 30 reserves one ahead: v1 holds a reservation of 2 after its first encryption.
    expect((await encrypt()).keyVersion).toBe(1);
    try {
      await usageReportWritable(false);
      await rotateKey(op, key);
      await waitFor('v2 seen', async () =>
        (await engine.backend.get(ns, 'turn'))?.currentVersion === 2 ? true : undefined,
      );
      expect((await encrypt()).keyVersion).toBe(1);
      // v1's reservation is spent and v2's cannot be published: refused, not encrypted uncounted.
      await expect(encrypt()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    } finally {
      await usageReportWritable(true);
    }
    const next = await waitFor(
      'an encryption under v2',
      async () =>
        encrypt().then(
          (r) => r,
          () => undefined,
        ),
      30_000,
    );
    expect(next.keyVersion).toBe(2);
    const cm = await core().readNamespacedConfigMap({
      name: usageReportName('engine-prot'),
      namespace: op.namespace,
    });
    const versions = parseUsageReport(cm.data)?.keys[`${ns}/turn`]?.versions;
    expect(versions?.['1']?.nonces).toBe(2);
    expect(versions?.['2']?.nonces).toBeGreaterThanOrEqual(1);
  });
});
