/**
 * RBAC sufficiency and least privilege of the chart, with the chart's own ServiceAccounts as
 * installed by helm: each acts through a kubeconfig holding only a TokenRequest token of that
 * ServiceAccount.
 * - Access reviews (`kubectl auth can-i`, a SelfSubjectAccessReview made with the token) show
 *   that each component may do what it needs and nothing around it.
 * - The real operator and engine then run as local processes with those kubeconfigs: the operator
 *   leads, creates the master key, reconciles a Key and records Events; the engine serves it with
 *   the chart's generated certificate, authenticates a workload token (audience keyward) and
 *   authorizes it through the keyward-encrypter/decrypter ClusterRoles.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { createNamespace, helm, KUBECTL, kubeconfigPath, kubectl, waitFor } from '../cluster/harness.ts';
import {
  adoptCrd,
  CHART_DIR,
  installChartServiceAccounts,
  type K8sObject,
  serviceAccountKubeconfig,
} from './helpers.ts';

const RELEASE = 'kwr';
const OPERATOR = `${RELEASE}-keyward-operator`;
const ENGINE = `${RELEASE}-keyward-engine`;

let ns: string; // the release namespace
let app: string; // a workload's namespace, where its Keys live
let operatorKc: string;
let engineKc: string;
const children: ChildProcess[] = [];
const outputs = new Map<ChildProcess, () => string>();
const scratch = mkdtempSync(join(tmpdir(), 'keyward-chart-rbac-'));

beforeAll(async () => {
  ns = await createNamespace('chart-rbac');
  app = await createNamespace('chart-app');
  await adoptCrd(RELEASE, ns);
  await helm(['install', RELEASE, CHART_DIR, '--namespace', ns], { timeoutMs: 120_000 });
  operatorKc = await serviceAccountKubeconfig(ns, OPERATOR);
  engineKc = await serviceAccountKubeconfig(ns, ENGINE);
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(
    children.map((c) => (c.exitCode === null ? new Promise((done) => c.once('exit', done)) : undefined)),
  );
  // The Key's finalizer would otherwise hold it forever once the operator is gone.
  if (app) {
    await kubectl(
      [
        'patch',
        'keys.keyward.io',
        'orders',
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
    await kubectl(['delete', 'keys.keyward.io', '--all', '-n', app, '--wait=false'], { allowFailure: true });
  }
  if (ns) await helm(['uninstall', RELEASE, '--namespace', ns], { allowFailure: true, timeoutMs: 120_000 });
});

/** `kubectl auth can-i` as the identity of `kubeconfig`: true for yes, false for no. */
function canI(kubeconfig: string, args: readonly string[]): Promise<boolean> {
  return new Promise((resolve, reject) => {
    execFile(KUBECTL, ['--kubeconfig', kubeconfig, 'auth', 'can-i', ...args], (error, stdout, stderr) => {
      const answer = stdout.trim().split('\n').pop();
      if (answer === 'yes') resolve(true);
      else if (answer === 'no') resolve(false);
      else reject(new Error(`kubectl auth can-i ${args.join(' ')}: ${error?.message ?? ''} ${stderr}`));
    });
  });
}

/** Checks every `[expected, ...can-i args]` row and reports all mismatches at once. */
async function expectAccess(
  kubeconfig: string,
  rows: ReadonlyArray<readonly [boolean, ...string[]]>,
): Promise<void> {
  const wrong: string[] = [];
  for (const [expected, ...args] of rows) {
    const got = await canI(kubeconfig, args);
    if (got !== expected) wrong.push(`${expected ? 'should' : 'should not'} be allowed: ${args.join(' ')}`);
  }
  expect(wrong).toEqual([]);
}

describe('the operator ServiceAccount', () => {
  it('may do what the operator does', async () => {
    await expectAccess(operatorKc, [
      [true, 'list', 'keys.keyward.io', '-A'],
      [true, 'watch', 'keys.keyward.io', '-A'],
      [true, 'get', 'keys.keyward.io', '-n', app],
      [true, 'patch', 'keys.keyward.io', '-n', app],
      [true, 'delete', 'keys.keyward.io', '-n', app],
      [true, 'patch', 'keys.keyward.io', '--subresource=status', '-n', app],
      [true, 'update', 'keys.keyward.io', '--subresource=finalizers', '-n', app],
      [true, 'create', 'events.events.k8s.io', '-n', app],
      [true, 'get', 'secrets', '-n', ns],
      [true, 'list', 'secrets', '-n', ns],
      [true, 'watch', 'secrets', '-n', ns],
      [true, 'create', 'secrets', '-n', ns],
      [true, 'update', 'secrets', '-n', ns],
      [true, 'delete', 'secrets', '-n', ns],
      [true, 'get', 'leases.coordination.k8s.io', '-n', ns],
      [true, 'create', 'leases.coordination.k8s.io', '-n', ns],
      [true, 'update', 'leases.coordination.k8s.io', '-n', ns],
      [true, 'list', 'configmaps', '-n', ns],
      [true, 'watch', 'configmaps', '-n', ns],
      [true, 'delete', 'configmaps', '-n', ns],
      // keyward-ca.crt in every namespace that holds a Key (issue #17)
      [true, 'create', 'configmaps', '-n', app],
      [true, 'get', 'configmaps/keyward-ca.crt', '-n', app],
      [true, 'update', 'configmaps/keyward-ca.crt', '-n', app],
      [true, 'delete', 'configmaps/keyward-ca.crt', '-n', app],
      [true, 'list', 'namespaces'],
    ]);
  });

  it('may not read Secrets elsewhere, create Keys, or touch anything else', async () => {
    await expectAccess(operatorKc, [
      [false, 'get', 'secrets', '-n', app],
      [false, 'list', 'secrets', '-n', app],
      [false, 'create', 'secrets', '-n', app],
      [false, 'list', 'secrets', '-A'],
      [false, 'create', 'keys.keyward.io', '-n', app],
      [false, 'update', 'keys.keyward.io', '-n', app],
      [false, 'create', 'leases.coordination.k8s.io', '-n', app],
      [false, 'delete', 'leases.coordination.k8s.io', '-n', ns],
      [false, 'create', 'events', '-n', app], // core/v1 Events: it writes events.k8s.io/v1 only
      [false, 'update', 'configmaps', '-n', ns],
      [false, 'list', 'configmaps', '-n', app],
      [false, 'get', 'configmaps', '-n', app],
      [false, 'get', 'configmaps/app-settings', '-n', app],
      [false, 'update', 'configmaps/app-settings', '-n', app],
      [false, 'delete', 'configmaps/app-settings', '-n', app],
      [false, 'get', 'namespaces', '-n', app],
      [false, 'create', 'pods', '-n', ns],
      [false, 'encrypt', 'keys.keyward.io', '-n', app],
      [false, 'create', 'tokenreviews.authentication.k8s.io'],
      [false, 'create', 'clusterroles.rbac.authorization.k8s.io'],
      [false, 'impersonate', 'serviceaccounts', '-n', ns],
    ]);
  });
});

describe('the engine ServiceAccount', () => {
  it('may do what the engine does', async () => {
    await expectAccess(engineKc, [
      [true, 'get', 'keys.keyward.io', '-n', app],
      [true, 'list', 'keys.keyward.io', '-A'],
      [true, 'watch', 'keys.keyward.io', '-A'],
      [true, 'get', 'secrets', '-n', ns],
      [true, 'list', 'secrets', '-n', ns],
      [true, 'watch', 'secrets', '-n', ns],
      [true, 'create', 'tokenreviews.authentication.k8s.io'],
      [true, 'create', 'subjectaccessreviews.authorization.k8s.io'],
      [true, 'create', 'configmaps', '-n', ns],
      [true, 'update', 'configmaps', '-n', ns],
    ]);
  });

  it('may not read Secrets of other namespaces, write Keys or material, or lead', async () => {
    await expectAccess(engineKc, [
      [false, 'get', 'secrets', '-n', app],
      [false, 'list', 'secrets', '-A'],
      [false, 'create', 'secrets', '-n', ns],
      [false, 'update', 'secrets', '-n', ns],
      [false, 'delete', 'secrets', '-n', ns],
      [false, 'create', 'keys.keyward.io', '-n', app],
      [false, 'patch', 'keys.keyward.io', '-n', app],
      [false, 'delete', 'keys.keyward.io', '-n', app],
      [false, 'patch', 'keys.keyward.io', '--subresource=status', '-n', app],
      [false, 'create', 'configmaps', '-n', app],
      [false, 'delete', 'configmaps', '-n', ns],
      [false, 'create', 'leases.coordination.k8s.io', '-n', ns],
      [false, 'create', 'events.events.k8s.io', '-n', app],
      [false, 'encrypt', 'keys.keyward.io', '-n', app],
      [false, 'create', 'serviceaccounts/token', '-n', ns],
    ]);
  });
});

describe('the user ClusterRoles', () => {
  const as = (sa: string) => `--as=system:serviceaccount:${app}:${sa}`;

  it('grant key use through RoleBindings, verb by verb and key by key', async () => {
    const admin = kubeconfigPath();
    await kubectl(['create', 'serviceaccount', 'writer', '-n', app]);
    await kubectl([
      'create',
      'rolebinding',
      'writer-enc',
      '-n',
      app,
      '--clusterrole=keyward-encrypter',
      `--serviceaccount=${app}:writer`,
    ]);
    // A Role narrowed to one key with resourceNames, as NOTES.txt shows.
    await kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'signer', namespace: app } },
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'Role',
            metadata: { name: 'sign-orders', namespace: app },
            rules: [
              { apiGroups: ['keyward.io'], resources: ['keys'], resourceNames: ['orders'], verbs: ['sign'] },
            ],
          },
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'RoleBinding',
            metadata: { name: 'sign-orders', namespace: app },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'sign-orders' },
            subjects: [{ kind: 'ServiceAccount', name: 'signer', namespace: app }],
          },
        ],
      }),
    });
    await expectAccess(admin, [
      [true, as('writer'), 'encrypt', 'keys.keyward.io/orders', '-n', app],
      [true, as('writer'), 're-encrypt', 'keys.keyward.io/orders', '-n', app],
      [true, as('writer'), 'generate-data-key', 'keys.keyward.io/orders', '-n', app],
      [false, as('writer'), 'decrypt', 'keys.keyward.io/orders', '-n', app],
      [false, as('writer'), 'get', 'keys.keyward.io/orders', '-n', app],
      [false, as('writer'), 'encrypt', 'keys.keyward.io/orders', '-n', ns],
      [true, as('signer'), 'sign', 'keys.keyward.io/orders', '-n', app],
      [false, as('signer'), 'sign', 'keys.keyward.io/payments', '-n', app],
      [false, as('signer'), 'verify', 'keys.keyward.io/orders', '-n', app],
    ]);
  });
});

describe('installChartServiceAccounts (for the operator and engine suites)', () => {
  it('installs a second release beside this one and exports kubeconfigs held to its RBAC', async () => {
    const other = await createNamespace('chart-sa');
    const sa = await installChartServiceAccounts(other, 'kwt');
    try {
      expect(process.env.KEYWARD_TEST_KUBECONFIG_OPERATOR).toBe(sa.operator);
      expect(process.env.KEYWARD_TEST_KUBECONFIG_ENGINE).toBe(sa.engine);
      await expectAccess(sa.engine, [
        [true, 'list', 'secrets', '-n', other],
        [false, 'list', 'secrets', '-n', ns],
        [true, 'list', 'keys.keyward.io', '-A'],
      ]);
      await expectAccess(sa.operator, [
        [true, 'create', 'leases.coordination.k8s.io', '-n', other],
        [false, 'create', 'leases.coordination.k8s.io', '-n', ns],
      ]);
    } finally {
      await sa.uninstall();
    }
  });
});

/** Starts a Node 24 child running `script args`; collects its output for failure messages. */
function start(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [join(REPO_ROOT, script), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, KEYWARD_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stderr?.on('data', (d) => {
    out = (out + String(d)).slice(-8000);
  });
  const output = (): string => out;
  outputs.set(child, output);
  return { child, output };
}

/** One HTTPS call to the engine, trusting only the chart's CA. */
function call(
  port: number,
  ca: string,
  servername: string,
  method: string,
  path: string,
  token?: string,
  body?: object,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        ca,
        servername,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += String(d);
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : {} });
          } catch {
            resolve({ status: res.statusCode ?? 0, json: { raw: text } });
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The container args of a Deployment of the release, as helm installed it. */
async function renderedArgs(deployment: string): Promise<string[]> {
  const d = JSON.parse(
    (await kubectl(['get', 'deployment', deployment, '-n', ns, '-o', 'json'])).stdout,
  ) as K8sObject;
  return d.spec.template.spec.containers[0].args as string[];
}

/** Drops the subcommand and replaces the values of `--flag=value` args named in `replace`. */
function localArgs(args: readonly string[], replace: Record<string, string>): string[] {
  const out = args.slice(1).map((arg) => {
    const flag = arg.split('=', 1)[0] ?? arg;
    return flag in replace ? `${flag}=${replace[flag]}` : arg;
  });
  for (const flag of Object.keys(replace)) {
    if (!out.some((a) => a.startsWith(`${flag}=`))) throw new Error(`the chart does not pass ${flag}`);
  }
  expect(out.join(' ')).not.toContain('$(');
  return out;
}

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `keyward <component> ARGS` as the image does (`node engine/cli/main.ts`), or, until the
 * CLI wires that subcommand, the component's own entry (operator/cli.ts, engine/cluster/cli.ts),
 * which takes the same flags.
 */
async function startComponent(
  component: 'operator' | 'engine',
  args: string[],
): Promise<ReturnType<typeof start>> {
  const wired = await new Promise<boolean>((resolve) => {
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'engine/cli/main.ts'), component, '--help'],
      // An unknown command prints the top-level usage; a wired one runs its own parser.
      (_error, stdout, stderr) =>
        resolve(!`${stdout}${stderr}`.includes('Usage: keyward [options] [command]')),
    );
  });
  if (wired) return start('engine/cli/main.ts', [component, ...args]);
  return start(component === 'operator' ? 'operator/cli.ts' : 'engine/cluster/cli.ts', args);
}

describe('the real operator and engine, with only the chart RBAC', () => {
  it('the operator leads, creates the master key, reconciles a Key and records Events', async () => {
    // The operator runs with the arguments the chart renders, with only its kubeconfig, identity
    // and metrics port adapted to a local process (and a short Lease for the test).
    const args = localArgs(await renderedArgs(OPERATOR), {
      '--metrics-port': '0',
      '--identity': 'chart-test-operator',
    });
    const op = await startComponent('operator', [
      ...args,
      `--kubeconfig=${operatorKc}`,
      '--lease-duration=3s',
    ]);
    await kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'keyward.io/v1alpha1',
        kind: 'Key',
        metadata: { name: 'orders', namespace: app },
        spec: { usage: 'AES256' },
      }),
    });
    const key = await waitFor(
      'the Key to be Ready',
      async () => {
        if (op.child.exitCode !== null)
          throw new Error(`operator exited ${op.child.exitCode}: ${op.output()}`);
        const k = JSON.parse(
          (await kubectl(['get', 'keys.keyward.io', 'orders', '-n', app, '-o', 'json'])).stdout,
        ) as K8sObject;
        const ready = (k.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Ready');
        return ready?.status === 'True' ? k : undefined;
      },
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\noperator output:\n${op.output()}`);
    });
    expect(key.status.currentVersion).toBe(1);
    expect(key.metadata.finalizers).toContain('keyward.io/key-protection');
    // The Lease, the master key and the material live in the release namespace.
    const lease = JSON.parse(
      (await kubectl(['get', 'lease', OPERATOR, '-n', ns, '-o', 'json'])).stdout,
    ) as K8sObject;
    expect(lease.spec.holderIdentity).toBeTruthy();
    await kubectl(['get', 'secret', 'keyward-master-key', '-n', ns]);
    await kubectl(['get', 'secret', `kkey.${app}.orders`, '-n', ns]);
    // Events on the Key, in the Key's namespace.
    const events = await waitFor('an Event on the Key', async () => {
      const list = JSON.parse(
        (await kubectl(['get', 'events.events.k8s.io', '-n', app, '-o', 'json'])).stdout,
      ) as K8sObject;
      const mine = (list.items as K8sObject[]).filter((e) => e.regarding?.name === 'orders');
      return mine.length > 0 ? mine : undefined;
    });
    expect(events[0]?.reportingController).toBe('keyward.io/operator');
    expect(op.output()).not.toMatch(/forbidden|\b403\b/i);
  });

  it('the engine serves the Key with the chart certificate and authorizes by the user roles', async () => {
    // The chart's generated serving certificate, trusted through the CA ConfigMap.
    const secret = JSON.parse(
      (await kubectl(['get', 'secret', `${ENGINE}-tls`, '-n', ns, '-o', 'json'])).stdout,
    ) as K8sObject;
    const certPath = join(scratch, 'tls.crt');
    const keyPath = join(scratch, 'tls.key');
    writeFileSync(certPath, Buffer.from(secret.data['tls.crt'], 'base64'));
    writeFileSync(keyPath, Buffer.from(secret.data['tls.key'], 'base64'), { mode: 0o600 });
    const cm = JSON.parse(
      (await kubectl(['get', 'configmap', `${RELEASE}-keyward-ca`, '-n', ns, '-o', 'json'])).stdout,
    ) as K8sObject;
    const ca = cm.data['ca.crt'] as string;
    const servername = `${ENGINE}.${ns}.svc`;

    // The engine runs with the arguments the chart renders, on a free local port.
    const port = await freePort();
    const args = localArgs(await renderedArgs(ENGINE), {
      '--port': String(port),
      '--tls': `${certPath},${keyPath}`,
      '--identity': 'chart-test',
      // The chart's 9464 may be taken on a test machine (another engine, a dev server).
      '--metrics-port': '0',
    });
    const en = await startComponent('engine', [
      ...args,
      '--host=127.0.0.1',
      `--kubeconfig=${engineKc}`,
      '--usage-report-ms=300',
      '--threads=1',
    ]);

    await waitFor(
      'the engine to be ready',
      async () => {
        if (en.child.exitCode !== null) throw new Error(`engine exited ${en.child.exitCode}`);
        const r = await call(port, ca, servername, 'GET', '/readyz');
        return r.status === 200 ? true : undefined;
      },
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nengine output:\n${en.output()}`);
    });

    const token = (
      await kubectl(['create', 'token', 'writer', '-n', app, '--audience', 'keyward', '--duration', '1h'])
    ).stdout.trim();
    const base = `/v1/namespaces/${app}/keys/orders`;
    const plaintext = Buffer.from('chart rbac').toString('base64');
    const enc = await waitFor(
      'an encrypt to succeed',
      async () => {
        const r = await call(port, ca, servername, 'POST', `${base}/encrypt`, token, { plaintext });
        return r.status === 200 ? r : undefined;
      },
      30_000,
    ).catch(async (err: Error) => {
      const r = await call(port, ca, servername, 'POST', `${base}/encrypt`, token, { plaintext });
      throw new Error(
        `${err.message}: last ${r.status} ${JSON.stringify(r.json)}\nengine output:\n${en.output()}`,
      );
    });
    expect(enc.json.ciphertext).toMatch(/^keyward:v1:/);
    expect(enc.json.keyVersion).toBe(1);

    // keyward-encrypter does not grant decrypt.
    const denied = await call(port, ca, servername, 'POST', `${base}/decrypt`, token, {
      ciphertext: enc.json.ciphertext,
    });
    expect(denied.status).toBe(403);
    expect((denied.json.error as { code: string }).code).toBe('PERMISSION_DENIED');
    // A token for another audience is refused (the test apiserver's default audiences include
    // keyward, so name another one explicitly).
    const apiToken = (
      await kubectl(['create', 'token', 'writer', '-n', app, '--audience', 'vault', '--duration', '1h'])
    ).stdout.trim();
    expect(
      (await call(port, ca, servername, 'POST', `${base}/encrypt`, apiToken, { plaintext })).status,
    ).toBe(401);

    // Binding keyward-decrypter grants it (once the cached decision expires).
    await kubectl([
      'create',
      'rolebinding',
      'writer-dec',
      '-n',
      app,
      '--clusterrole=keyward-decrypter',
      `--serviceaccount=${app}:writer`,
    ]);
    const dec = await waitFor(
      'a decrypt to be allowed',
      async () => {
        const r = await call(port, ca, servername, 'POST', `${base}/decrypt`, token, {
          ciphertext: enc.json.ciphertext,
        });
        return r.status === 200 ? r : undefined;
      },
      30_000,
    );
    expect(Buffer.from(dec.json.plaintext as string, 'base64').toString()).toBe('chart rbac');

    // The usage report ConfigMap, written with the engine's own RBAC.
    await waitFor(
      'the usage report ConfigMap',
      async () => {
        const r = await kubectl(['get', 'configmaps', '-n', ns, '-o', 'name'], { allowFailure: true });
        return r.stdout.includes('configmap/keyward-usage-') ? true : undefined;
      },
      30_000,
    );
    expect(en.output()).not.toMatch(/forbidden|\b403\b/i);
  });

  it('the operator erases the material and releases a Key deleted with delete-now', async () => {
    await kubectl(['annotate', 'keys.keyward.io', 'orders', '-n', app, 'keyward.io/delete-now=true']);
    await kubectl(['delete', 'keys.keyward.io', 'orders', '-n', app, '--wait=false']);
    await waitFor(
      'the Key and its material to be gone',
      async () => {
        const key = await kubectl([
          'get',
          'keys.keyward.io',
          'orders',
          '-n',
          app,
          '--ignore-not-found',
          '-o',
          'name',
        ]);
        const secret = await kubectl([
          'get',
          'secret',
          `kkey.${app}.orders`,
          '-n',
          ns,
          '--ignore-not-found',
          '-o',
          'name',
        ]);
        return key.stdout.trim() === '' && secret.stdout.trim() === '' ? true : undefined;
      },
      60_000,
    );
    // Over the whole run, neither component was refused anything.
    for (const child of children) expect(outputs.get(child)?.() ?? '').not.toMatch(/forbidden|\b403\b/i);
  });
});
