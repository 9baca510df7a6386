/**
 * The operator against the real apiserver: examples reach Ready with real material, the desired
 * state is applied, manual rotation, delete-now, cancel-deletion and re-adoption.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createNamespace, kubectl } from '../cluster/harness.ts';
import {
  checkMaterial,
  createOperatorNamespace,
  getKey,
  installCrd,
  isReady,
  keyManifest,
  type OperatorProcess,
  ROOT,
  readMaterial,
  startOperator,
  waitForKey,
  waitGone,
} from './helpers.ts';

let ns: string;
let opNs: string;
let op: OperatorProcess;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-keys');
  opNs = await createOperatorNamespace('kw-keys-op');
  op = startOperator({ opNs, watchNs: ns, identity: 'keys-op', deletionDelay: '60s' });
  await op.port;
});

afterAll(async () => {
  await op?.kill();
});

async function apply(manifest: string): Promise<void> {
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: manifest });
}

describe('examples', () => {
  for (const file of ['aes256.yaml', 'aes256-convergent.yaml', 'rsa2048.yaml', 'ecdsa.yaml']) {
    it(`${file} reaches Ready with valid material of its usage`, async () => {
      const text = readFileSync(join(ROOT, 'examples', file), 'utf8');
      const name = (parse(text) as { metadata: { name: string } }).metadata.name;
      await apply(text);
      const key = await waitForKey(ns, name, 'Ready', (k) => isReady(k), 20_000);
      expect(key.metadata.finalizers).toContain('keyward.io/key-protection');
      expect(key.status).toMatchObject({ state: 'Enabled', currentVersion: 1, versions: [{ version: 1 }] });
      expect(key.status?.fingerprint).toMatch(/^blake3:[0-9a-f]{32}$/);
      const stored = await readMaterial(opNs, ns, name);
      expect(stored?.record.usage).toBe(key.spec.usage);
      await checkMaterial(opNs, stored!);
      // nothing secret in status
      expect(JSON.stringify(key.status)).not.toContain(stored!.record.versions[0]!.wrapped);
    });
  }

  it('records an Event for the creation', async () => {
    const r = await kubectl(['get', 'events.events.k8s.io', '-n', ns, '-o', 'json']);
    const reasons = (JSON.parse(r.stdout).items as Array<{ reason: string; regarding: { name: string } }>)
      .filter((e) => e.regarding.name === 'orders-aes')
      .map((e) => e.reason);
    expect(reasons).toContain('Created');
  });
});

describe('desired state', () => {
  it('disable and enable are reflected in status', async () => {
    await apply(keyManifest(ns, 'toggle', { usage: 'ECDSA' }));
    await waitForKey(ns, 'toggle', 'Ready', (k) => isReady(k));
    await apply(keyManifest(ns, 'toggle', { usage: 'ECDSA', state: 'Disabled' }));
    const disabled = await waitForKey(
      ns,
      'toggle',
      'Disabled',
      (k) => k.status?.state === 'Disabled' && isReady(k, false),
    );
    expect(disabled.status?.conditions?.find((c) => c.type === 'Enabled')?.reason).toBe('Disabled');
    expect(disabled.status?.nextRotationTime).toBeUndefined();
    expect((await readMaterial(opNs, ns, 'toggle'))?.record.state).toBe('Disabled');
    await apply(keyManifest(ns, 'toggle', { usage: 'ECDSA', state: 'Enabled' }));
    await waitForKey(ns, 'toggle', 'Enabled again', (k) => k.status?.state === 'Enabled' && isReady(k));
  });

  it('state PendingDeletion schedules the deletion; setting Disabled cancels it', async () => {
    await apply(keyManifest(ns, 'pending', { usage: 'AES256' }));
    await waitForKey(ns, 'pending', 'Ready', (k) => isReady(k));
    const before = Date.now();
    await apply(keyManifest(ns, 'pending', { usage: 'AES256', state: 'PendingDeletion' }));
    const p = await waitForKey(
      ns,
      'pending',
      'PendingDeletion',
      (k) => k.status?.state === 'PendingDeletion',
    );
    const scheduled = Date.parse(p.status?.deletionScheduledTime ?? '');
    expect(scheduled).toBeGreaterThanOrEqual(before + 60_000 - 2000);
    expect(scheduled).toBeLessThanOrEqual(Date.now() + 60_000 + 2000);
    expect(p.status?.conditions?.find((c) => c.type === 'PendingDeletion')?.status).toBe('True');
    await apply(keyManifest(ns, 'pending', { usage: 'AES256', state: 'Disabled' }));
    const d = await waitForKey(ns, 'pending', 'Disabled', (k) => k.status?.state === 'Disabled');
    expect(d.status?.deletionScheduledTime).toBeUndefined();
    expect(d.status?.conditions?.find((c) => c.type === 'PendingDeletion')?.status).toBe('False');
  });
});

describe('rotation', () => {
  it('rotates exactly once per new keyward.io/rotate value and keeps old versions', async () => {
    await apply(keyManifest(ns, 'rotor', { usage: 'RSA2048' }));
    const k1 = await waitForKey(ns, 'rotor', 'Ready', (k) => isReady(k));
    const fp1 = k1.status?.fingerprint;
    await kubectl(['annotate', '-n', ns, 'key/rotor', 'keyward.io/rotate=first']);
    const k2 = await waitForKey(ns, 'rotor', 'version 2', (k) => k.status?.currentVersion === 2);
    expect(k2.status?.rotateHandled).toBe('first');
    expect(k2.status?.fingerprint).not.toBe(fp1);
    // an unrelated change does not rotate again
    await kubectl(['annotate', '-n', ns, 'key/rotor', 'unrelated=1']);
    await kubectl(['label', '-n', ns, 'key/rotor', 'touched=yes']);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getKey(ns, 'rotor'))?.status?.currentVersion).toBe(2);
    await kubectl(['annotate', '--overwrite', '-n', ns, 'key/rotor', 'keyward.io/rotate=second']);
    const k3 = await waitForKey(ns, 'rotor', 'version 3', (k) => k.status?.currentVersion === 3);
    expect(k3.status?.versions?.map((v) => v.version)).toEqual([1, 2, 3]);
    const stored = await readMaterial(opNs, ns, 'rotor');
    const material = await checkMaterial(opNs, stored!);
    expect(material.size).toBe(3);
    expect(material.get(1)?.equals(material.get(3)!)).toBe(false);
  });
});

describe('deletion', () => {
  it('delete-now erases the material at once', async () => {
    await apply(keyManifest(ns, 'goner', { usage: 'AES256' }));
    await waitForKey(ns, 'goner', 'Ready', (k) => isReady(k));
    await kubectl(['annotate', '-n', ns, 'key/goner', 'keyward.io/delete-now=true']);
    await kubectl(['delete', '-n', ns, 'key/goner', '--wait=false']);
    await waitGone(ns, 'goner', 15_000);
    expect(await readMaterial(opNs, ns, 'goner')).toBeUndefined();
  });

  it('cancel-deletion keeps the material as Disabled and a same-usage Key adopts it; another usage does not', async () => {
    await apply(keyManifest(ns, 'phoenix', { usage: 'ECDSA' }));
    const original = await waitForKey(ns, 'phoenix', 'Ready', (k) => isReady(k));
    await kubectl(['delete', '-n', ns, 'key/phoenix', '--wait=false']);
    await waitForKey(ns, 'phoenix', 'PendingDeletion', (k) => k.status?.state === 'PendingDeletion');
    await kubectl(['annotate', '-n', ns, 'key/phoenix', 'keyward.io/cancel-deletion=true']);
    await waitGone(ns, 'phoenix', 15_000);
    const kept = await readMaterial(opNs, ns, 'phoenix');
    expect(kept?.record.state).toBe('Disabled');
    expect(kept?.ownerUid).toBeUndefined();

    // A different usage must not adopt it.
    await apply(keyManifest(ns, 'phoenix', { usage: 'AES256' }));
    const conflict = await waitForKey(
      ns,
      'phoenix',
      'MaterialConflict',
      (k) =>
        k.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'MaterialConflict') ?? false,
    );
    expect(conflict.status?.conditions?.find((c) => c.type === 'Ready')?.message).toMatch(/ECDSA/);
    expect((await readMaterial(opNs, ns, 'phoenix'))?.record.usage).toBe('ECDSA');
    await kubectl(['delete', '-n', ns, 'key/phoenix', '--timeout=20s']);
    expect((await readMaterial(opNs, ns, 'phoenix'))?.record.usage).toBe('ECDSA'); // untouched

    // The original usage takes the material back, as Disabled first, then as the spec says.
    await apply(keyManifest(ns, 'phoenix', { usage: 'ECDSA', state: 'Disabled' }));
    const adopted = await waitForKey(ns, 'phoenix', 'adopted', (k) => isReady(k, false));
    expect(adopted.status?.fingerprint).toBe(original.status?.fingerprint);
    expect(adopted.status?.versions).toEqual(original.status?.versions);
    expect((await readMaterial(opNs, ns, 'phoenix'))?.ownerUid).toBe(adopted.metadata.uid);
    await apply(keyManifest(ns, 'phoenix', { usage: 'ECDSA', state: 'Enabled' }));
    await waitForKey(ns, 'phoenix', 'Enabled', (k) => isReady(k, true));
  });
});

describe('health and metrics', () => {
  it('serves /livez, /readyz and the metrics the issue lists', async () => {
    const port = await op.port;
    expect((await fetch(`http://127.0.0.1:${port}/livez`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/^keyward_operator_reconciles_total\{result="success"\} [1-9]/m);
    expect(text).toMatch(/^keyward_operator_reconcile_errors_total \d+/m);
    expect(text).toMatch(/^keyward_operator_queue_depth \d+/m);
    expect(text).toMatch(/^keyward_operator_keys\{state="Enabled"\} [1-9]/m);
    expect(text).toMatch(/^keyward_operator_leader 1/m);
  });
});
