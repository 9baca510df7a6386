/**
 * Cluster master-key rotation is resumable (issue #11): with 40 Keys, the operator (a process, as
 * the chart's ServiceAccount on the real apiserver) is killed with SIGKILL while it re-wraps the
 * material Secrets, when some but not all are re-wrapped; a new operator finishes the job. Then
 * every key version unwraps under the new master-key version to the very bytes it held before,
 * the old version is retired from the master-key Secret, and ciphertexts made before the
 * rotation decrypt through the engine.
 *
 * The engine's audit chain then holds checkpoints under both master-key versions, the killed
 * operator's under the retired one; the retired version's checkpoint key was kept in the Secret,
 * so `keyward audit verify --master-key-secret` verifies every chain from the Secret alone (as
 * kubectl prints it).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unwrapMaterial, wrappedMasterKeyVersion } from '../../engine/crypto/wrap.ts';
import {
  MASTER_KEY_SECRET,
  type MasterKeySet,
  masterKeysFromSecret,
} from '../../engine/kube/master-key-secret.ts';
import {
  decodeMaterialSecret,
  MATERIAL_SECRET_TYPE,
  type StoredKey,
} from '../../engine/kube/material-secret.ts';
import { b64, call, type EngineProcess, keyPath, saToken, spawnEngine } from '../cluster/engine-helpers.ts';
import { createNamespace, kubectl, makeKubeConfig, waitFor } from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  engineKubeconfig,
  installCrd,
  isReady,
  keyManifest,
  type OperatorProcess,
  ROOT,
  startOperator,
  waitForKey,
} from './helpers.ts';

const KEYS = 40;
let ns: string;
let opNs: string;
let op: OperatorProcess | undefined;
let engine: EngineProcess | undefined;
let token: string;
let auditDir: string;

const core = (): CoreV1Api => makeKubeConfig().makeApiClient(CoreV1Api);
const names = Array.from({ length: KEYS }, (_, i) => `mk${String(i).padStart(2, '0')}`);

const operator = (identity: string): OperatorProcess =>
  startOperator({
    opNs,
    watchNs: ns,
    identity,
    // One worker re-wraps one Key at a time, so the kill lands part-way.
    extra: [
      '--master-key-poll',
      '300ms',
      '--workers',
      '1',
      '--audit-dir',
      join(auditDir, identity),
      '--audit-checkpoint-interval',
      '200ms',
    ],
  });

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-mkk');
  opNs = await createOperatorNamespace('kw-mkk-op');
  auditDir = mkdtempSync(join(tmpdir(), 'kw-mkk-audit-'));
  op = operator('mkk-op-1');
  await kubectl(['create', 'serviceaccount', 'app', '-n', ns]);
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'key-user' },
      rules: [{ apiGroups: ['keyward.io'], resources: ['keys'], verbs: ['encrypt', 'decrypt', 'get'] }],
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
  engine = await spawnEngine([
    '--kubeconfig',
    engineKubeconfig(opNs),
    '--namespace',
    opNs,
    '--identity',
    'engine-mkk',
    '--master-key-poll',
    '300ms',
    '--audit-dir',
    join(auditDir, 'engine'),
    '--audit-checkpoint-interval',
    '200ms',
  ]);
}, 120_000);

afterAll(async () => {
  await engine?.stop();
  await op?.kill();
  if (auditDir !== undefined) rmSync(auditDir, { recursive: true, force: true });
});

/** `keyward audit verify` as a user runs it, `input` on its standard input. */
const verifyCli = (args: string[], input: string) =>
  spawnSync(process.execPath, [join(ROOT, 'engine', 'cli', 'main.ts'), 'audit', 'verify', ...args], {
    encoding: 'utf8',
    input,
    timeout: 60_000,
  });

/** Every material Secret of the test, decoded. */
async function materials(): Promise<StoredKey[]> {
  const list = await core().listNamespacedSecret({
    namespace: opNs,
    fieldSelector: `type=${MATERIAL_SECRET_TYPE}`,
  });
  return list.items.map((s) => decodeMaterialSecret({ data: s.data ?? {} }));
}

/** How many material Secrets have every blob under master-key version `m`. */
const wrappedUnder = (all: readonly StoredKey[], m: number): number =>
  all.filter((s) => s.record.versions.every((v) => wrappedMasterKeyVersion(v.wrapped) === m)).length;

/** Every key version's material, `ns/name@version` → hex, unwrapped under `set`. */
function unwrapAll(all: readonly StoredKey[], set: MasterKeySet): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of all) {
    const r = s.record;
    for (const v of r.versions) {
      const raw = unwrapMaterial(
        set,
        { store: r.namespace, name: r.name, usage: r.usage, version: v.version },
        Buffer.from(v.wrapped, 'base64'),
      );
      out.set(`${r.namespace}/${r.name}@${v.version}`, raw.toString('hex'));
      raw.fill(0);
    }
  }
  return out;
}

describe('cluster master-key rotation under kill -9', () => {
  it('a killed operator part-way through re-wrapping 40 keys: a new one finishes, nothing is lost, the old version is retired', async () => {
    await kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: names.map((n, i) =>
          JSON.parse(keyManifest(ns, n, { usage: i % 10 === 9 ? 'ECDSA' : 'AES256' })),
        ),
      }),
    });
    for (const n of names) await waitForKey(ns, n, 'Ready', (k) => isReady(k), 120_000);
    // Two versions for some keys, so a re-wrap covers more than the current one.
    for (const n of names.slice(0, 5))
      await kubectl(['annotate', 'key', n, '-n', ns, 'keyward.io/rotate=one']);
    for (const n of names.slice(0, 5))
      await waitForKey(ns, n, 'rotated', (k) => k.status?.currentVersion === 2, 60_000);

    const before = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
    const materialBefore = unwrapAll(await materials(), masterKeysFromSecret(before));
    expect(materialBefore.size).toBe(KEYS + 5);
    // A ciphertext of every key made before the rotation (AES keys: encrypt; ECDSA: skipped).
    const sealed = new Map<string, string>();
    for (const [i, n] of names.entries()) {
      if (i % 10 === 9) continue;
      const r = await call(engine!, 'POST', keyPath(ns, n, '/encrypt'), {
        token,
        body: { plaintext: b64(n) },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      sealed.set(n, r.body.ciphertext);
    }

    await kubectl(['annotate', 'secret', MASTER_KEY_SECRET, '-n', opNs, 'keyward.io/rotate-master-key=kill']);
    // Kill -9 as soon as some, not all, material Secrets are re-wrapped under version 2.
    const seen = await waitFor(
      'some keys re-wrapped',
      async () => {
        const n = wrappedUnder(await materials(), 2);
        return n >= 3 ? n : undefined;
      },
      60_000,
      10,
    );
    await op!.kill('SIGKILL');
    const atKill = await materials();
    const done = wrappedUnder(atKill, 2);
    console.info(`kill -9 with ${done} of ${KEYS} material Secrets re-wrapped (seen ${seen})`);
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(KEYS);
    // Nothing was retired: the old version still wraps the rest.
    const mid = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
    expect(mid.data?.['master.key']).toBe(before.data?.['master.key']);
    expect(mid.data?.['master.key.v2']).toBeDefined();
    // Everything still unwraps with what the Secret holds, to the same bytes.
    expect(unwrapAll(atKill, masterKeysFromSecret(mid))).toEqual(materialBefore);

    op = operator('mkk-op-2');
    const after = await waitFor(
      'version 1 retired',
      async () => {
        const s = await core().readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs });
        return s.data?.['master.key'] === undefined ? s : undefined;
      },
      120_000,
    );
    const set = masterKeysFromSecret(after);
    expect(set.versions).toEqual([2]);
    expect(set.current).toBe(2);
    const final = await materials();
    expect(final.length).toBe(KEYS);
    expect(wrappedUnder(final, 2)).toBe(KEYS);
    for (const s of final) expect(Object.keys(s.masterKeyChecks ?? {})).toEqual(['2']);
    expect(unwrapAll(final, set)).toEqual(materialBefore);
    // Not one version, 1 retired only once: a single rotation happened (no version 3).
    expect(after.metadata?.annotations?.['keyward.io/master-key-rotated']).toBe('kill');
    // Ciphertexts made before the rotation decrypt through the engine; every Key is Ready and
    // shows the new master-key version.
    for (const [n, ciphertext] of sealed) {
      const r = await call(engine!, 'POST', keyPath(ns, n, '/decrypt'), { token, body: { ciphertext } });
      expect(r.status, `${n} ${JSON.stringify(r.body)}`).toBe(200);
      expect(Buffer.from(r.body.plaintext, 'base64').toString()).toBe(n);
    }
    for (const n of names) {
      const k = await waitForKey(
        ns,
        n,
        'status on version 2',
        (x) => x.status?.masterKeyVersion === 2,
        60_000,
      );
      expect(isReady(k)).toBe(true);
    }
  });
  it('the audit chains (engine: checkpoints under the retired and the current version; the killed operator: under the retired one) verify from the Secret alone', async () => {
    await engine!.stop();
    await op!.kill();
    const engineDir = join(auditDir, 'engine');
    const secretJson = (await kubectl(['get', 'secret', MASTER_KEY_SECRET, '-n', opNs, '-o', 'json'])).stdout;
    const secret = JSON.parse(secretJson);
    // Version 1 is retired: its key is gone, its checkpoint key is kept.
    expect(secret.data['master.key']).toBeUndefined();
    expect(secret.data['audit.key.v1']).toBeDefined();
    expect(Buffer.from(secret.data['audit.key.v1'], 'base64').length).toBe(40);
    // The chain holds checkpoints under two key ids (version 1 before, version 2 after).
    const keyIds = new Set<string>();
    for (const f of readdirSync(engineDir).sort())
      for (const line of readFileSync(join(engineDir, f), 'utf8').split('\n')) {
        if (line === '') continue;
        const r = JSON.parse(line) as { type?: string; keyId?: string };
        if (r.type === 'checkpoint' && r.keyId !== undefined) keyIds.add(r.keyId);
      }
    expect(keyIds.size).toBe(2);

    const ok = verifyCli(['--master-key-secret', '-', '-o', 'json', engineDir], secretJson);
    expect(ok.status, ok.stderr + ok.stdout).toBe(0);
    const report = JSON.parse(ok.stdout);
    expect(report.valid).toBe(true);
    expect(report.macsChecked).toBe(report.checkpoints);
    expect(report.checkpoints).toBeGreaterThanOrEqual(3);
    // The operators' chains: the first, killed with SIGKILL (open), keyed by version 1, retired
    // since; the second, stopped (closed). A saved copy of the Secret serves as well as stdin.
    const saved = join(auditDir, 'master-key-secret.json');
    writeFileSync(saved, secretJson, { mode: 0o600 });
    for (const [dir, extra] of [
      ['mkk-op-1', ['--open']],
      ['mkk-op-2', []],
    ] as const) {
      const r = verifyCli(['--master-key-secret', saved, ...extra, '-o', 'json', join(auditDir, dir)], '');
      expect(r.status, `${dir}: ${r.stderr}${r.stdout}`).toBe(0);
      const rep = JSON.parse(r.stdout);
      expect(rep.checkpoints).toBeGreaterThan(0);
      expect(rep.macsChecked).toBe(rep.checkpoints);
    }
    // Without the kept checkpoint key, the checkpoints of version 1 cannot be verified.
    const { 'audit.key.v1': _kept, ...rest } = secret.data;
    const stripped = verifyCli(
      ['--master-key-secret', '-', engineDir],
      JSON.stringify({ ...secret, data: rest }),
    );
    expect(stripped.status).toBe(2);
    expect(stripped.stdout + stripped.stderr).toMatch(/no master key given matches key id/);
    // Not a Secret: a one-line error, exit 2.
    const bad = verifyCli(['--master-key-secret', '-', engineDir], 'apiVersion: v1');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/is not JSON/);
  });
});
