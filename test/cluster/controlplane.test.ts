/**
 * Acceptance of the test control plane (issue 4): the apiserver built from Go modules does what
 * the operator and chart suites rely on: CRDs with a status subresource and CEL rules, watches
 * through @kubernetes/client-node on Node 24, finalizers, TokenRequest + TokenReview, RBAC
 * SubjectAccessReview, and a helm that lints charts.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  CustomObjectsApi,
  type KubeConfig,
  Watch,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { httpGet } from '../../scripts/cluster/proc.ts';
import { apiserverUrl, cluster, createNamespace, helm, kubectl, makeKubeConfig, waitFor } from './harness.ts';

const GROUP = 'controlplane.test.keyward.io';
const PLURAL = 'widgets';

const CRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${PLURAL}.${GROUP}
spec:
  group: ${GROUP}
  scope: Namespaced
  names: { plural: ${PLURAL}, singular: widget, kind: Widget, listKind: WidgetList }
  versions:
    - name: v1
      served: true
      storage: true
      subresources: { status: {} }
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: { type: integer }
              x-kubernetes-validations:
                - rule: "self.size <= 10"
                  message: "size must be at most 10"
            status:
              type: object
              properties:
                phase: { type: string }
`;

/** The version that go.mod pins for a module (the replace target for staging modules). */
function pinnedVersion(module: string): string {
  const gomod = readFileSync(join(REPO_ROOT, 'test', 'controlplane', 'go.mod'), 'utf8');
  const match = gomod.match(new RegExp(`^\\s*${module.replaceAll('.', '\\.')} (v[0-9][^\\s]*)`, 'm'));
  if (!match?.[1]) throw new Error(`${module} not in go.mod`);
  return match[1];
}

function widget(ns: string, name: string, size: number): string {
  return JSON.stringify({
    apiVersion: `${GROUP}/v1`,
    kind: 'Widget',
    metadata: { name, namespace: ns },
    spec: { size },
  });
}

let kc: KubeConfig;
let ns: string;

beforeAll(async () => {
  kc = makeKubeConfig();
  ns = await createNamespace('cp');
  await kubectl(['apply', '-f', '-'], { input: CRD });
  await kubectl(['wait', '--for=condition=Established', `crd/${PLURAL}.${GROUP}`, '--timeout=60s']);
});

describe('apiserver', () => {
  it('reports the version it was built from on /version', async () => {
    const { stdout } = await kubectl(['get', '--raw', '/version']);
    const version = JSON.parse(stdout) as { gitVersion: string; major: string; minor: string };
    const k8s = pinnedVersion('k8s.io/kubernetes');
    expect(version.gitVersion).toBe(k8s);
    expect(`v${version.major}.${version.minor}`).toBe(k8s.split('.').slice(0, 2).join('.'));
  });

  it('answers /readyz for the admin token and 401 for a wrong one', async () => {
    const { caPem, token } = cluster();
    expect((await httpGet(`${apiserverUrl()}/readyz`, { token, ca: caPem })).status).toBe(200);
    const wrong = await httpGet(`${apiserverUrl()}/api/v1/namespaces`, {
      token: 'not-the-admin-token',
      ca: caPem,
    });
    expect(wrong.status).toBe(401);
    const denied = await kubectl(['get', 'ns', '--token', 'not-the-admin-token'], { allowFailure: true });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Unauthorized|must be logged in/i);
  });
});

describe('custom resources', () => {
  it('enforces the CEL rule with its message', async () => {
    const bad = await kubectl(['create', '-f', '-'], {
      input: widget(ns, 'too-big', 11),
      allowFailure: true,
    });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('size must be at most 10');
  });

  it('updates status through the subresource and a client-node Watch sees it', async () => {
    const events: Array<{ type: string; phase: string | undefined; generation: number }> = [];
    const watch = new Watch(kc);
    const controller = await watch.watch(
      `/apis/${GROUP}/v1/namespaces/${ns}/${PLURAL}`,
      {},
      (type, obj: { status?: { phase?: string }; metadata: { generation: number } }) => {
        events.push({ type, phase: obj.status?.phase, generation: obj.metadata.generation });
      },
      () => {},
    );
    try {
      await kubectl(['create', '-f', '-'], { input: widget(ns, 'watched', 3) });
      await waitFor('ADDED event', async () => (events.some((e) => e.type === 'ADDED') ? true : undefined));

      // Status written through the main resource is ignored when a status subresource exists.
      await kubectl([
        '-n',
        ns,
        'patch',
        `${PLURAL}.${GROUP}`,
        'watched',
        '--type=merge',
        '-p',
        '{"status":{"phase":"Ignored"}}',
      ]);
      const api = kc.makeApiClient(CustomObjectsApi);
      const ignored = (await api.getNamespacedCustomObject({
        group: GROUP,
        version: 'v1',
        namespace: ns,
        plural: PLURAL,
        name: 'watched',
      })) as { status?: { phase?: string } };
      expect(ignored.status?.phase).toBeUndefined();

      await kubectl([
        '-n',
        ns,
        'patch',
        `${PLURAL}.${GROUP}`,
        'watched',
        '--subresource=status',
        '--type=merge',
        '-p',
        '{"status":{"phase":"Ready"}}',
      ]);
      const modified = await waitFor('MODIFIED event with status', async () =>
        events.find((e) => e.type === 'MODIFIED' && e.phase === 'Ready'),
      );
      // A status write does not bump the generation: that is what observedGeneration relies on.
      expect(modified.generation).toBe(1);
    } finally {
      controller.abort();
    }
  });

  it('holds a deleted object until its finalizer is removed', async () => {
    await kubectl(['create', '-f', '-'], { input: widget(ns, 'held', 1) });
    await kubectl([
      '-n',
      ns,
      'patch',
      `${PLURAL}.${GROUP}`,
      'held',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":["test.keyward.io/hold"]}}',
    ]);
    await kubectl(['-n', ns, 'delete', `${PLURAL}.${GROUP}`, 'held', '--wait=false']);

    const held = JSON.parse(
      (await kubectl(['-n', ns, 'get', `${PLURAL}.${GROUP}`, 'held', '-o', 'json'])).stdout,
    ) as {
      metadata: { deletionTimestamp?: string; finalizers?: string[] };
    };
    expect(held.metadata.deletionTimestamp).toBeTruthy();
    expect(held.metadata.finalizers).toEqual(['test.keyward.io/hold']);

    await kubectl([
      '-n',
      ns,
      'patch',
      `${PLURAL}.${GROUP}`,
      'held',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ]);
    await waitFor('object gone', async () => {
      const got = await kubectl(['-n', ns, 'get', `${PLURAL}.${GROUP}`, 'held'], { allowFailure: true });
      return got.code !== 0 && /NotFound|not found/.test(got.stderr) ? true : undefined;
    });
  });
});

describe('service-account tokens', () => {
  let token: string;

  beforeAll(async () => {
    await kubectl(['-n', ns, 'create', 'serviceaccount', 'workload']);
    token = (await kubectl(['-n', ns, 'create', 'token', 'workload', '--audience', 'keyward'])).stdout.trim();
  });

  async function review(candidate: string, audiences: string[]) {
    const api = makeKubeConfig().makeApiClient(AuthenticationV1Api);
    const res = await api.createTokenReview({ body: { spec: { token: candidate, audiences } } });
    return res.status ?? {};
  }

  it('authenticates a keyward-audience token with TokenReview', async () => {
    const status = await review(token, ['keyward']);
    expect(status.authenticated).toBe(true);
    expect(status.user?.username).toBe(`system:serviceaccount:${ns}:workload`);
    expect(status.user?.groups).toContain(`system:serviceaccounts:${ns}`);
    expect(status.audiences).toEqual(['keyward']);
  });

  it('rejects the token for another audience, and a tampered token', async () => {
    expect((await review(token, ['someone-else'])).authenticated).toBeFalsy();
    const [head, body, sig] = token.split('.');
    const flipped = `${head}.${body}.${sig?.startsWith('A') ? 'B' : 'A'}${sig?.slice(1)}`;
    expect((await review(flipped, ['keyward'])).authenticated).toBeFalsy();
  });
});

describe('RBAC', () => {
  const subject = () => ({
    user: `system:serviceaccount:${ns}:caller`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
  });

  async function allowed(verb: string, name: string, namespace = ns): Promise<boolean> {
    const api = makeKubeConfig().makeApiClient(AuthorizationV1Api);
    const res = await api.createSubjectAccessReview({
      body: {
        spec: {
          ...subject(),
          resourceAttributes: { group: 'keyward.io', resource: 'keys', verb, namespace, name },
        },
      },
    });
    return res.status?.allowed === true;
  }

  beforeAll(async () => {
    await kubectl(['-n', ns, 'create', 'serviceaccount', 'caller']);
    // As a manifest: `kubectl create role` insists that the resource is served, and RBAC
    // does not care (Keyward's verbs are checked by SubjectAccessReview, not by a resource).
    await kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'use-key', namespace: ns },
        rules: [
          { apiGroups: ['keyward.io'], resources: ['keys'], verbs: ['encrypt'], resourceNames: ['payments'] },
        ],
      }),
    });
    await kubectl([
      '-n',
      ns,
      'create',
      'rolebinding',
      'use-key',
      '--role=use-key',
      `--serviceaccount=${ns}:caller`,
    ]);
  });

  it('allows what the Role grants, after the binding propagates', async () => {
    await waitFor(
      'RBAC allow',
      async () => ((await allowed('encrypt', 'payments')) ? true : undefined),
      30_000,
    );
  });

  it('denies other verbs, other keys and other namespaces', async () => {
    expect(await allowed('decrypt', 'payments')).toBe(false);
    expect(await allowed('encrypt', 'payroll')).toBe(false);
    expect(await allowed('encrypt', 'payments', 'default')).toBe(false);
  });
});

describe('helm', () => {
  it('reports the version it was built from', async () => {
    const { stdout } = await helm(['version', '--short']);
    expect(stdout.trim()).toMatch(
      new RegExp(`^${pinnedVersion('helm.sh/helm/v3').replaceAll('.', '\\.')}\\b`),
    );
  });

  it('lints a good chart, fails a broken one, and renders the stamped Kubernetes version', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyward-chart-'));
    await helm(['create', join(dir, 'demo')]);
    const lint = await helm(['lint', join(dir, 'demo')]);
    expect(lint.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');

    writeFileSync(
      join(dir, 'demo', 'templates', 'version.yaml'),
      'kube: {{ .Capabilities.KubeVersion.Version }}\n',
    );
    const rendered = await helm([
      'template',
      'demo',
      join(dir, 'demo'),
      '--show-only',
      'templates/version.yaml',
    ]);
    const minor = pinnedVersion('k8s.io/api').split('.')[1];
    expect(rendered.stdout).toContain(`kube: v1.${minor}.0`);

    writeFileSync(join(dir, 'demo', 'Chart.yaml'), 'apiVersion: v2\nname: demo\n');
    const broken = await helm(['lint', join(dir, 'demo')], { allowFailure: true });
    expect(broken.code).not.toBe(0);
    expect(broken.stdout + broken.stderr).toMatch(/version is required/);
  });
});
