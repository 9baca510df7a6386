/**
 * The chart's narrowing of the components' rights (issue #11: "the operator's ServiceAccount can
 * write any Secret in its namespace (it could replace the TLS Secret the chart republishes as the
 * trusted CA), and the engine's can overwrite any ConfigMap there, including the CA bundle, and
 * forge usage reports"; "the master key can live in its own namespace, readable only through
 * resourceNames"). The chart is installed with helm on the real apiserver, and every check acts
 * as one of its ServiceAccounts (TokenRequest tokens, one of them bound to a Pod as in a pod).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { spawnEngine } from '../cluster/engine-helpers.ts';
import { createNamespace, helm, kubectl, waitFor } from '../cluster/harness.ts';
import { installCrd } from '../operator/helpers.ts';
import { CHART_DIR, serviceAccountKubeconfig, valuesArgs } from './helpers.ts';

const RELEASE = 'kwp';
const OPERATOR = `${RELEASE}-keyward-operator`;
const ENGINE = `${RELEASE}-keyward-engine`;
let ns: string;
let masterNs: string;
let app: string;
let operatorKc: string;
let engineKc: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('chart-prot');
  app = await createNamespace('chart-prot-app');
  // A name of its own for the master key's namespace; the chart creates it.
  masterNs = `${ns}-mk`;
  await helm(
    [
      'install',
      RELEASE,
      CHART_DIR,
      '--namespace',
      ns,
      ...valuesArgs({
        crds: { enabled: false },
        rbac: { userRoles: false },
        masterKey: { namespace: masterNs },
      }),
    ],
    { timeoutMs: 120_000 },
  );
  operatorKc = await serviceAccountKubeconfig(ns, OPERATOR);
  engineKc = await serviceAccountKubeconfig(ns, ENGINE);
  // A new admission policy takes effect within a few seconds: wait until it refuses a probe.
  await waitFor(
    'the write guards in force',
    async () => {
      const r = await as(operatorKc, [
        'create',
        'secret',
        'generic',
        'guard-probe',
        '-n',
        ns,
        '--from-literal=a=b',
      ]);
      if (r.code === 0) await kubectl(['delete', 'secret', 'guard-probe', '-n', ns]);
      return r.code !== 0 && /writes only key-material/.test(r.stderr) ? true : undefined;
    },
    60_000,
  );
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : 0)));
  await kubectl(
    [
      'patch',
      'keys.keyward.io',
      'vault',
      '-n',
      app,
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ],
    {
      allowFailure: true,
    },
  );
  if (ns) await helm(['uninstall', RELEASE, '--namespace', ns], { allowFailure: true, timeoutMs: 120_000 });
  // Kept by the chart on uninstall (helm.sh/resource-policy: keep): removed by hand here.
  if (masterNs) await kubectl(['delete', 'namespace', masterNs, '--wait=false'], { allowFailure: true });
});

/** Runs kubectl as the identity of `kubeconfig`; resolves with the result, failures included. */
function as(kubeconfig: string, args: string[], input?: string) {
  return kubectl(['--kubeconfig', kubeconfig, ...args], {
    allowFailure: true,
    ...(input === undefined ? {} : { input }),
  });
}

const configMap = (name: string, labels: Record<string, string> = {}) =>
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: ns, labels },
    data: { x: '1' },
  });
const usageLabel = { 'keyward.io/usage-report': 'true' };

describe('write guards: the operator', () => {
  it('may not replace the TLS Secret the chart publishes, nor write other Secrets', async () => {
    const tls = await as(operatorKc, ['get', 'secret', `${ENGINE}-tls`, '-n', ns, '-o', 'json']);
    expect(tls.code).toBe(0);
    const body = JSON.parse(tls.stdout);
    body.data['ca.crt'] = Buffer.from('forged').toString('base64');
    const replaced = await as(operatorKc, ['replace', '-f', '-'], JSON.stringify(body));
    expect(replaced.code).not.toBe(0);
    expect(replaced.stderr).toMatch(/writes only key-material and master-key Secrets/);
    const opaque = await as(operatorKc, [
      'create',
      'secret',
      'generic',
      'stray',
      '-n',
      ns,
      '--from-literal=a=b',
    ]);
    expect(opaque.code).not.toBe(0);
    expect(opaque.stderr).toMatch(/writes only key-material/);
    const deleted = await as(operatorKc, ['delete', 'secret', `${ENGINE}-tls`, '-n', ns]);
    expect(deleted.code).not.toBe(0);
  });

  it('may write key-material Secrets, and delete only usage reports among ConfigMaps', async () => {
    const material = JSON.stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'keyward.io/key-material',
      metadata: { name: 'kkey.x.probe', namespace: ns },
      data: { 'record.json': Buffer.from('{}').toString('base64') },
    });
    expect((await as(operatorKc, ['create', '-f', '-'], material)).code).toBe(0);
    expect((await as(operatorKc, ['delete', 'secret', 'kkey.x.probe', '-n', ns])).code).toBe(0);
    await kubectl(['apply', '-f', '-'], { input: configMap('keyward-usage-gone', usageLabel) });
    await kubectl(['apply', '-f', '-'], { input: configMap('app-settings') });
    expect((await as(operatorKc, ['delete', 'configmap', 'keyward-usage-gone', '-n', ns])).code).toBe(0);
    const other = await as(operatorKc, ['delete', 'configmap', 'app-settings', '-n', ns]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/deletes only usage reports/);
  });
});

describe('write guards: the engine', () => {
  it('with a token bound to no pod: only usage-report ConfigMaps, never the CA bundle', async () => {
    expect(
      (await as(engineKc, ['create', '-f', '-'], configMap('keyward-usage-probe', usageLabel))).code,
    ).toBe(0);
    const cas = JSON.parse(
      (await kubectl(['get', 'configmaps', '-n', ns, '-o', 'json'])).stdout,
    ).items.filter((c: { data?: Record<string, string> }) => c.data?.['ca.crt'] !== undefined);
    expect(cas.length).toBeGreaterThan(0);
    const ca = cas[0];
    ca.data['ca.crt'] = 'forged';
    const forged = await as(engineKc, ['replace', '-f', '-'], JSON.stringify(ca));
    expect(forged.code).not.toBe(0);
    expect(forged.stderr).toMatch(/writes only usage-report ConfigMaps|own usage report/);
    const unlabelled = await as(engineKc, ['create', '-f', '-'], configMap('keyward-usage-bare'));
    expect(unlabelled.code).not.toBe(0);
  });

  it('with a token bound to its pod: its own report and shards only, not another replica’s', async () => {
    // A Pod object of the engine's ServiceAccount (no node runs it here): its token carries the
    // pod name, as every engine replica's does.
    await kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'engine-a', namespace: ns },
        spec: { serviceAccountName: ENGINE, containers: [{ name: 'c', image: 'keyward:none' }] },
      }),
    });
    const token = (
      await kubectl([
        'create',
        'token',
        ENGINE,
        '-n',
        ns,
        '--bound-object-kind',
        'Pod',
        '--bound-object-name',
        'engine-a',
      ])
    ).stdout.trim();
    const withToken = (args: string[], input: string) =>
      kubectl([...args, '--token', token, '--kubeconfig', engineKc], { allowFailure: true, input });
    expect(
      (await withToken(['create', '-f', '-'], configMap('keyward-usage-engine-a', usageLabel))).code,
    ).toBe(0);
    expect(
      (await withToken(['create', '-f', '-'], configMap('keyward-usage-engine-a.1', usageLabel))).code,
    ).toBe(0);
    const forged = await withToken(['create', '-f', '-'], configMap('keyward-usage-engine-b', usageLabel));
    expect(forged.code).not.toBe(0);
    expect(forged.stderr).toMatch(/only its own usage report \(keyward-usage-engine-a\)/);
    const prefixed = await withToken(['create', '-f', '-'], configMap('keyward-usage-engine-ab', usageLabel));
    expect(prefixed.code).not.toBe(0);
  });
});

describe('the master key in a namespace of its own', () => {
  it('is read by name only, and the operator and engine work with it there', async () => {
    const deny = async (kc: string, args: string[]) =>
      expect((await as(kc, ['auth', 'can-i', ...args])).stdout.trim()).toBe('no');
    const allow = async (kc: string, args: string[]) =>
      expect((await as(kc, ['auth', 'can-i', ...args])).stdout.trim()).toBe('yes');
    await allow(operatorKc, ['get', 'secret/keyward-master-key', '-n', masterNs]);
    await allow(operatorKc, ['create', 'secrets', '-n', masterNs]);
    await deny(operatorKc, ['get', 'secret/other', '-n', masterNs]);
    await deny(operatorKc, ['list', 'secrets', '-n', masterNs]);
    await deny(operatorKc, ['delete', 'secret/keyward-master-key', '-n', masterNs]);
    await allow(engineKc, ['get', 'secret/keyward-master-key', '-n', masterNs]);
    await deny(engineKc, ['get', 'secret/other', '-n', masterNs]);
    await deny(engineKc, ['list', 'secrets', '-n', masterNs]);
    await deny(engineKc, ['watch', 'secrets', '-n', masterNs]);

    const run = (script: string, args: string[]) => {
      const child = spawn(process.execPath, [`${REPO_ROOT}/${script}`, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, KEYWARD_LOG_LEVEL: 'warn' },
      });
      children.push(child);
      let out = '';
      child.stdout?.on('data', (d) => {
        out += d;
      });
      child.stderr?.on('data', (d) => {
        out += d;
      });
      return () => out;
    };
    const opOut = run('operator/cli.ts', [
      `--kubeconfig=${operatorKc}`,
      `--namespace=${ns}`,
      `--master-key-namespace=${masterNs}`,
      `--watch-namespace=${app}`,
      `--lease-name=${OPERATOR}`,
      '--metrics-port=0',
      '--lease-duration=3s',
    ]);
    await kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'keyward.io/v1alpha1',
        kind: 'Key',
        metadata: { name: 'vault', namespace: app },
        spec: { usage: 'AES256' },
      }),
    });
    await waitFor(
      'the Key to be Ready',
      async () => {
        const k = JSON.parse(
          (await kubectl(['get', 'keys.keyward.io', 'vault', '-n', app, '-o', 'json'])).stdout,
        );
        return (k.status?.conditions ?? []).some(
          (c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True',
        )
          ? true
          : undefined;
      },
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${opOut()}`);
    });
    // The master key is in its namespace, not beside the material.
    expect((await kubectl(['get', 'secret', 'keyward-master-key', '-n', masterNs])).code).toBe(0);
    expect(
      (await kubectl(['get', 'secret', 'keyward-master-key', '-n', ns], { allowFailure: true })).code,
    ).not.toBe(0);
    expect((await kubectl(['get', 'secret', `kkey.${app}.vault`, '-n', ns])).code).toBe(0);
    expect(opOut()).not.toMatch(/forbidden|\b403\b/i);
    // The engine is ready only once it has read the master key: from its namespace, by name.
    const engine = await spawnEngine([
      '--kubeconfig',
      engineKc,
      '--namespace',
      ns,
      '--master-key-namespace',
      masterNs,
      '--no-audit',
    ]);
    await engine.stop();
    expect(engine.stderr()).not.toMatch(/forbidden|\b403\b/i);
  });
});
