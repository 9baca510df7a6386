/**
 * The operator's audit trail on the real apiserver (issue #13 phase 2): two replicas run as the
 * chart's ServiceAccount, each with its own chain on stdout and in segment files. A Key is
 * applied, rotated, disabled, then (after the leader hands over) deleted at once. Each action is
 * recorded exactly once, by the replica that led when it was written, with who, what and the
 * outcome; the standby records no action while it waits; resyncs (every second) add nothing;
 * both chains verify with the master key (`keyward audit verify`, the CLI users run), the stdout
 * streams too; and no record holds key bytes.
 */
import { spawnSync } from 'node:child_process';
import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { checkpointKeys, expandInputs, verifyFiles } from '../../engine/audit/verify-files.ts';
import { MASTER_KEY_ENTRY, MASTER_KEY_SECRET } from '../../operator/material-store.ts';
import { createNamespace, kubectl, waitFor } from '../cluster/harness.ts';
import {
  checkMaterial,
  clients,
  createOperatorNamespace,
  getKey,
  installCrd,
  isReady,
  keyManifest,
  metric,
  type OperatorProcess,
  ROOT,
  readMaterial,
  startOperator,
  waitForKey,
  waitGone,
} from './helpers.ts';

let ns: string;
let opNs: string;
let work: string;
const replicas: OperatorProcess[] = [];

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-aud');
  opNs = await createOperatorNamespace('kw-aud-op');
  work = mkdtempSync(join(tmpdir(), 'keyward-op-audit-'));
});

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
  rmSync(work, { recursive: true, force: true });
});

const start = (identity: string): OperatorProcess => {
  const r = startOperator({
    opNs,
    watchNs: ns,
    identity,
    extra: [
      '--audit-dir',
      join(work, identity),
      '--audit-checkpoint-interval',
      '1s',
      // Every Key is reconciled again each second: passes that change nothing record nothing.
      '--resync-interval',
      '1s',
    ],
  });
  replicas.push(r);
  return r;
};

const leads = async (r: OperatorProcess): Promise<boolean> =>
  (await metric(await r.port, 'keyward_operator_leader')) === 1;

type Rec = Record<string, unknown>;
const records = (text: string): Rec[] =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Rec);
const actionsOf = (text: string): Rec[] => records(text).filter((r) => r.type === 'operator');

/** `keyward audit verify` as a user runs it. */
const verifyCli = (args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'engine', 'cli', 'main.ts'), 'audit', 'verify', ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });

it('records each action on a key once, by the leader, in chains that verify, without key bytes', async () => {
  const a = start('audit-a');
  await waitFor('audit-a leads', async () => ((await leads(a)) ? true : undefined), 60_000);
  const b = start('audit-b');
  await b.port;

  // create
  await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'aud-key', { usage: 'AES256' }) });
  const created = await waitForKey(ns, 'aud-key', 'Ready', (k) => isReady(k));
  const uid = created.metadata.uid;
  // rotate (annotation)
  await kubectl(['annotate', '-n', ns, 'key/aud-key', 'keyward.io/rotate=r1']);
  await waitForKey(ns, 'aud-key', 'version 2', (k) => k.status?.currentVersion === 2);
  // disable (spec)
  await kubectl(['patch', '-n', ns, 'key/aud-key', '--type=merge', '-p', '{"spec":{"state":"Disabled"}}']);
  await waitForKey(ns, 'aud-key', 'Disabled', (k) => k.status?.state === 'Disabled');
  // Several resyncs pass over the unchanged Key.
  const reconciles =
    (await metric(await a.port, 'keyward_operator_reconciles_total', '{result="success"}')) ?? 0;
  await waitFor(
    'three more reconciles',
    async () =>
      ((await metric(await a.port, 'keyward_operator_reconciles_total', '{result="success"}')) ?? 0) >=
      reconciles + 3
        ? true
        : undefined,
    30_000,
  );
  const material = await checkMaterial(opNs, (await readMaterial(opNs, ns, 'aud-key'))!);
  expect(material.size).toBe(2);
  const masterRaw = Buffer.from(
    (await clients().core.readNamespacedSecret({ name: MASTER_KEY_SECRET, namespace: opNs })).data?.[
      MASTER_KEY_ENTRY
    ] ?? '',
    'base64',
  );
  expect(masterRaw.length).toBe(32);

  // The leader hands over (SIGTERM releases the Lease); the new leader deletes the key at once.
  await a.kill('SIGTERM');
  await waitFor('audit-b leads', async () => ((await leads(b)) ? true : undefined), 60_000);
  await kubectl(['annotate', '-n', ns, 'key/aud-key', 'keyward.io/delete-now=true']);
  await kubectl(['delete', '-n', ns, 'key/aud-key', '--wait=false']);
  await waitGone(ns, 'aud-key', 60_000);
  expect(await getKey(ns, 'aud-key')).toBeUndefined();
  // The trail's health and counts are on the operator's /metrics, as on the engine's.
  expect(await metric(await b.port, 'keyward_audit_healthy')).toBe(1);
  expect(await metric(await b.port, 'keyward_audit_records_written')).toBeGreaterThan(2);
  await b.kill('SIGTERM');

  // Who did what, once each.
  const fields = (r: Rec) => [r.operation, r.actor, r.namespace, r.key, r.version, r.trigger, r.outcome];
  const aActions = actionsOf(a.stdout());
  const bActions = actionsOf(b.stdout());
  expect(aActions.map((r) => [r.operation, r.actor, r.outcome])).toEqual([
    ['create-master-key', 'audit-a', 'ok'],
    ['create', 'audit-a', 'ok'],
    ['rotate', 'audit-a', 'ok'],
    ['disable', 'audit-a', 'ok'],
  ]);
  expect(aActions.slice(1).map(fields)).toEqual([
    ['create', 'audit-a', ns, 'aud-key', 1, 'new Key', 'ok'],
    ['rotate', 'audit-a', ns, 'aud-key', 2, 'keyward.io/rotate=r1', 'ok'],
    ['disable', 'audit-a', ns, 'aud-key', 2, 'spec.state=Disabled', 'ok'],
  ]);
  expect(bActions.map(fields)).toEqual([
    ['request-deletion', 'audit-b', ns, 'aud-key', 2, 'deletionTimestamp', 'ok'],
    ['destroy', 'audit-b', ns, 'aud-key', 2, 'keyward.io/delete-now=true', 'ok'],
  ]);
  for (const r of [...aActions.slice(1), ...bActions]) {
    expect(r.uid).toBe(uid);
    expect(typeof r.resourceVersion).toBe('string');
    expect(Number.isSafeInteger(r.generation)).toBe(true);
  }
  // The key id in the master-key record names the key the checkpoints use.
  const [keyId] = (await checkpointKeys([createSecretKey(masterRaw)])).map((k) => k.id);
  expect(aActions[0]?.detail).toBe(`Secret ${MASTER_KEY_SECRET}, key id ${keyId}`);
  expect(records(a.stdout()).some((r) => r.type === 'checkpoint' && r.keyId === keyId)).toBe(true);

  // The segment files hold the same chain as stdout, and both verify (closed: SIGTERM closes them).
  const mk = join(work, 'master.key');
  writeFileSync(mk, masterRaw, { mode: 0o600 });
  for (const r of [a, b]) {
    const dir = join(work, r.identity);
    const report = await verifyFiles(await expandInputs([dir]), {
      keys: await checkpointKeys([createSecretKey(masterRaw)]),
      open: false,
      allowPruned: false,
      skipForeignLines: false,
    });
    expect(report.finding, r.identity).toBeUndefined();
    expect(report.valid, r.identity).toBe(true);
    expect(report.chains.every((c) => c.closed)).toBe(true);
    expect(report.macsChecked).toBeGreaterThan(0);
    const stdoutFile = join(work, `${r.identity}.stdout.jsonl`);
    writeFileSync(stdoutFile, r.stdout());
    for (const input of [dir, stdoutFile]) {
      const cli = verifyCli([input, '--master-key-file', mk]);
      expect(cli.status, `${input}: ${cli.stdout}${cli.stderr}`).toBe(0);
    }
    // Nothing but audit records on stdout.
    expect(records(r.stdout()).every((rec) => typeof rec.hash === 'string')).toBe(true);
  }

  // No key bytes, wrapped or not, and no master key in any record.
  const secrets = [masterRaw, ...material.values()];
  for (const text of [a.stdout(), b.stdout()]) {
    for (const s of secrets) {
      expect(text).not.toContain(s.toString('base64'));
      expect(text).not.toContain(s.toString('hex'));
    }
  }
});
