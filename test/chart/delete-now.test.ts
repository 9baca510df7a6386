/**
 * Destruction gated by RBAC on the real apiserver (issue 11; review finding: anyone with the
 * built-in `edit` role could destroy a key in seconds, with one patch of spec.state and the
 * keyward.io/delete-now annotation). The chart is installed with helm, so the policy, its binding
 * and the user roles under test are the chart's own; the operator runs as the chart's operator
 * ServiceAccount. Users are impersonated (`kubectl --as`), so the policy's authorizer check sees
 * each of them.
 *
 * `edit` only gains keyward-key-admin's rules through ClusterRole aggregation, which the
 * kube-controller-manager does; the test control plane has none, so this suite starts one with
 * only its ClusterRole aggregation controller (no node needed).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN_DIR, REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { createNamespace, helm, kubeconfigPath, kubectl, waitFor } from '../cluster/harness.ts';
import {
  getKey,
  isReady,
  keyManifest,
  type OperatorProcess,
  readMaterial,
  startOperator,
  waitForKey,
  waitGone,
} from '../operator/helpers.ts';
import { adoptCrd, CHART_DIR, CRD_NAME, serviceAccountKubeconfig } from './helpers.ts';

const RELEASE = 'kwd';
const OPERATOR = `${RELEASE}-keyward-operator`;
let relNs: string; // the release (and operator) namespace
let app: string; // where the Keys live
let op: OperatorProcess | undefined;
let kcm: ChildProcess | undefined;
let kcmLog = '';

/** Runs kubectl as `user`; resolves with its exit code and stderr. */
function as(user: string, args: string[], input?: string) {
  return kubectl(['--as', user, '-n', app, ...args], { allowFailure: true, ...(input ? { input } : {}) });
}

const COMBINED =
  '{"spec":{"state":"PendingDeletion"},"metadata":{"annotations":{"keyward.io/delete-now":"true"}}}';

async function expectRefused(user: string, args: string[], why: RegExp, input?: string): Promise<void> {
  const r = await as(user, args, input);
  expect(r.code, `${user} ${args.join(' ')} was allowed`).not.toBe(0);
  expect(r.stderr).toMatch(/ValidatingAdmissionPolicy 'keyward-delete-now'.*denied request/);
  expect(r.stderr).toMatch(
    /needs the verb delete-now on keys\.keyward\.io \(ClusterRole keyward-key-destroyer\)/,
  );
  expect(r.stderr).toMatch(why);
}

async function expectAllowed(user: string, args: string[], input?: string): Promise<void> {
  const r = await as(user, args, input);
  expect(r.code, `${user} ${args.join(' ')}: ${r.stderr}`).toBe(0);
}

async function newKey(name: string): Promise<void> {
  await expectAllowed('alice', ['apply', '-f', '-'], keyManifest(app, name, { usage: 'AES256' }));
  await waitForKey(app, name, 'Ready', (k) => isReady(k), 60_000);
}

beforeAll(async () => {
  relNs = await createNamespace('destroy');
  app = await createNamespace('destroy-app');
  await adoptCrd(RELEASE, relNs);
  await helm(
    ['install', RELEASE, CHART_DIR, '--namespace', relNs, '--set', 'rbac.aggregateToAdminEdit=true'],
    { timeoutMs: 120_000 },
  );
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', `crd/${CRD_NAME}`]);
  const bind = (user: string, role: string) =>
    kubectl([
      'create',
      'rolebinding',
      `${user}-${role}`,
      '-n',
      app,
      `--clusterrole=${role}`,
      `--user=${user}`,
    ]);
  await bind('alice', 'keyward-key-admin');
  await bind('dave', 'keyward-key-destroyer');
  await bind('erin', 'edit');

  // The ClusterRole aggregation controller of a real kube-controller-manager (no node needed).
  const binary = join(BIN_DIR, 'kube-controller-manager');
  if (!existsSync(binary)) {
    execFileSync('bash', [join(REPO_ROOT, 'scripts', 'cluster', 'build.sh'), '--node'], { stdio: 'inherit' });
  }
  kcm = spawn(
    binary,
    [
      `--kubeconfig=${kubeconfigPath()}`,
      '--controllers=clusterrole-aggregation',
      '--leader-elect=false',
      '--secure-port=0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  kcm.stdout?.on('data', (c) => {
    kcmLog += c;
  });
  kcm.stderr?.on('data', (c) => {
    kcmLog += c;
  });

  op = startOperator({
    opNs: relNs,
    watchNs: app,
    identity: 'destroy-op',
    kubeconfig: await serviceAccountKubeconfig(relNs, OPERATOR),
  });
}, 900_000);

afterAll(async () => {
  await op?.kill();
  if (kcm && kcm.exitCode === null) {
    kcm.kill('SIGTERM');
    await new Promise((done) => kcm!.once('exit', done));
  }
  if (app) {
    const left = await kubectl(['get', 'keys.keyward.io', '-n', app, '-o', 'name'], { allowFailure: true });
    for (const key of left.stdout.split('\n').filter(Boolean)) {
      await kubectl(['patch', key, '-n', app, '--type=merge', '-p', '{"metadata":{"finalizers":null}}'], {
        allowFailure: true,
      });
    }
    await kubectl(['delete', 'keys.keyward.io', '--all', '-n', app, '--wait=false'], { allowFailure: true });
  }
  if (relNs)
    await helm(['uninstall', RELEASE, '--namespace', relNs], { allowFailure: true, timeoutMs: 120_000 });
});

describe('erasing a Key before its time needs the delete-now verb', { timeout: 180_000 }, () => {
  it('refuses a keyward-key-admin user every way to erase early, and allows the rest', async () => {
    await newKey('ledger');
    // The finding's one patch.
    await expectRefused(
      'alice',
      ['patch', 'key', 'ledger', '--type=merge', '-p', COMBINED],
      /may not set the annotation/,
    );
    await expectRefused('alice', ['annotate', 'key', 'ledger', 'keyward.io/delete-now=true'], /may not set/);
    await expectRefused('alice', ['annotate', 'key', 'ledger', 'keyward.io/delete-now=yes'], /may not set/);
    // A new Key that arrives armed (it could adopt kept material of the same name) is refused too.
    await expectRefused(
      'alice',
      ['apply', '-f', '-'],
      /may not set/,
      keyManifest(app, 'armed-new', { usage: 'AES256' }, { 'keyward.io/delete-now': 'true' }),
    );
    // Everything else a key admin does is allowed.
    await expectAllowed('alice', [
      'patch',
      'key',
      'ledger',
      '--type=merge',
      '-p',
      '{"spec":{"memo":"still here"}}',
    ]);
    expect((await readMaterial(relNs, app, 'ledger'))?.record.state).toBe('Enabled');
  });

  it('refuses a user bound to edit, with keyward-key-admin aggregated into it', async () => {
    await waitFor(
      'edit to aggregate keyward-key-admin',
      async () => {
        const edit = JSON.parse((await kubectl(['get', 'clusterrole', 'edit', '-o', 'json'])).stdout);
        const rules = (edit.rules ?? []) as Array<{ apiGroups?: string[]; verbs?: string[] }>;
        return rules.some((r) => r.apiGroups?.includes('keyward.io') && r.verbs?.includes('patch'))
          ? true
          : undefined;
      },
      60_000,
    ).catch((err) => {
      throw new Error(`${err}\nkube-controller-manager: ${kcmLog.slice(-2000)}`);
    });
    // edit may now manage Keys...
    await expectAllowed('erin', [
      'patch',
      'key',
      'ledger',
      '--type=merge',
      '-p',
      '{"spec":{"memo":"by an editor"}}',
    ]);
    // ...but not destroy one, and the destroyer role was not aggregated.
    await expectRefused('erin', ['patch', 'key', 'ledger', '--type=merge', '-p', COMBINED], /may not set/);
    const canI = await kubectl(
      ['auth', 'can-i', 'delete-now', 'keys.keyward.io', '-n', app, '--as', 'erin'],
      {
        allowFailure: true,
      },
    );
    expect(canI.stdout.trim()).toBe('no');
    expect((await readMaterial(relNs, app, 'ledger'))?.record.state).toBe('Enabled');
  });

  it('lets a keyward-key-destroyer user erase a Key at once', async () => {
    await newKey('doomed');
    await expectAllowed('dave', ['patch', 'key', 'doomed', '--type=merge', '-p', COMBINED]);
    await waitGone(app, 'doomed', 60_000);
    expect(await readMaterial(relNs, app, 'doomed')).toBeUndefined();
  });

  it('refuses a key admin to complete what a destroyer armed, and lets them disarm it', async () => {
    await newKey('armed');
    await expectAllowed('dave', ['annotate', 'key', 'armed', 'keyward.io/delete-now=true']);
    await expectRefused(
      'alice',
      ['patch', 'key', 'armed', '--type=merge', '-p', '{"spec":{"state":"PendingDeletion"}}'],
      /asking for PendingDeletion would erase it at once/,
    );
    await expectRefused(
      'alice',
      ['delete', 'key', 'armed', '--wait=false'],
      /deleting it would erase it at once/,
    );
    await expectAllowed('alice', ['annotate', 'key', 'armed', 'keyward.io/delete-now-']);
    expect((await readMaterial(relNs, app, 'armed'))?.record.state).toBe('Enabled');
  });

  it('keeps the 72-hour path for a plain kubectl delete by a key admin', async () => {
    await expectAllowed('alice', ['delete', 'key', 'armed', '--wait=false']);
    const pending = await waitForKey(
      app,
      'armed',
      'PendingDeletion',
      (k) => k.status?.state === 'PendingDeletion',
      60_000,
    );
    const scheduled = new Date(pending.status!.deletionScheduledTime!).getTime();
    const requested = new Date(pending.metadata.deletionTimestamp!).getTime();
    expect(scheduled - requested).toBe(72 * 3_600_000);
    expect((await readMaterial(relNs, app, 'armed'))?.record.state).toBe('PendingDeletion');
    // The key admin still cannot cut the wait short; a destroyer can.
    await expectRefused('alice', ['annotate', 'key', 'armed', 'keyward.io/delete-now=true'], /may not set/);
    expect(await getKey(app, 'armed')).toBeDefined();
    await expectAllowed('dave', ['annotate', 'key', 'armed', 'keyward.io/delete-now=true']);
    await waitGone(app, 'armed', 60_000);
    expect(await readMaterial(relNs, app, 'armed')).toBeUndefined();
  });
});
