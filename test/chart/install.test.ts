/**
 * The chart against the real apiserver: every rendered object passes a server-side dry run, and
 * `helm install` (without --wait: this cluster runs no pods), `helm upgrade` and
 * `helm uninstall` do what they should, the CRD staying behind with crds.keep.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createNamespace, helm, kubectl } from '../cluster/harness.ts';
import {
  adoptCrd,
  CHART_DIR,
  CRD_NAME,
  type K8sObject,
  NON_DEFAULT,
  parseManifests,
  renderText,
  valuesArgs,
} from './helpers.ts';

const RELEASE = 'kwi';
const OPERATOR = `${RELEASE}-keyward-operator`;
const ENGINE = `${RELEASE}-keyward-engine`;
const USER_ROLES = [
  'keyward-decrypter',
  'keyward-encrypter',
  'keyward-key-admin',
  'keyward-key-destroyer',
  'keyward-signer',
  'keyward-verifier',
];

let ns: string;

beforeAll(async () => {
  ns = await createNamespace('chart');
});

async function getJson(args: string[]): Promise<K8sObject> {
  return JSON.parse((await kubectl(['get', ...args, '-o', 'json'])).stdout) as K8sObject;
}

/** Names of the objects of `resource` in the test namespace (or cluster-wide) of this release. */
async function names(resource: string, namespaced = true): Promise<string[]> {
  const list = await getJson([
    resource,
    ...(namespaced ? ['-n', ns] : []),
    '-l',
    `app.kubernetes.io/instance=${RELEASE}`,
  ]);
  return (list.items as K8sObject[]).map((o) => o.metadata.name).sort();
}

describe('kubectl apply --dry-run=server', () => {
  const dryRun = async (values: object): Promise<void> => {
    const text = await renderText(values, { release: 'kwd', namespace: ns });
    const objects = parseManifests(text);
    expect(objects.length).toBeGreaterThan(5);
    const r = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: text, allowFailure: true });
    // Only kubectl's note about objects that exist without its last-applied annotation (the CRD,
    // when an earlier suite installed it with helm) may appear; no other warning or error.
    const stderr = r.stderr
      .split('\n')
      .filter(
        (line) =>
          line.trim() !== '' && !/missing the kubectl.kubernetes.io\/last-applied-configuration/.test(line),
      );
    expect(stderr).toEqual([]);
    expect(r.code).toBe(0);
    // kubectl reports each object it sent.
    const reported = r.stdout.trim().split('\n');
    expect(reported).toHaveLength(objects.length);
    for (const line of reported) expect(line).toMatch(/\((server dry run)\)$/);
  };

  it('accepts every object rendered with the default values', async () => {
    await dryRun({});
  });

  it('accepts every object rendered with non-default values', async () => {
    await dryRun(NON_DEFAULT);
  });

  it('accepts an existing TLS Secret with a published CA, without the CRD and user roles', async () => {
    const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    await dryRun({
      tls: { existingSecret: 'keyward-cert', caBundle: ca },
      crds: { enabled: false },
      rbac: { userRoles: false },
      engine: { autoscaling: { enabled: true }, podDisruptionBudget: { enabled: false } },
      networkPolicy: {
        enabled: true,
        metricsFrom: [{ podSelector: { matchLabels: { app: 'prometheus' } } }],
      },
    });
  });
});

describe('helm install, upgrade and uninstall', () => {
  let firstCa = '';
  let firstCert = '';
  let firstChecksum = '';

  it('installs the CRD, both Deployments, Services, ServiceAccounts, RBAC and the CA ConfigMap', async () => {
    await adoptCrd(RELEASE, ns);
    const r = await helm(['install', RELEASE, CHART_DIR, '--namespace', ns], { timeoutMs: 120_000 });
    expect(r.stdout).toContain('STATUS: deployed');
    // NOTES.txt tells how to create a Key, grant access and call the engine.
    expect(r.stdout).toContain('kind: Key');
    expect(r.stdout).toContain('resourceNames: [orders]');
    expect(r.stdout).toContain('audience: keyward');
    expect(r.stdout).toContain(`https://${ENGINE}.${ns}.svc/v1/namespaces/my-app/keys/orders/encrypt`);
    // The manifests NOTES tells users to apply are valid (checked in this test's namespace).
    const blocks = [...r.stdout.matchAll(/<<'YAML'\n([\s\S]*?)\nYAML\n/g)].map((m) => m[1] ?? '');
    expect(blocks).toHaveLength(2);
    for (const block of blocks) {
      await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: block.replaceAll('my-app', ns) });
    }

    expect(await names('deployments')).toEqual([ENGINE, OPERATOR]);
    const op = await getJson(['deployment', OPERATOR, '-n', ns]);
    expect(op.spec.replicas).toBe(2);
    expect(op.spec.template.spec.containers[0].args.slice(0, 2)).toEqual(['operator', `--namespace=${ns}`]);
    const en = await getJson(['deployment', ENGINE, '-n', ns]);
    expect(en.spec.replicas).toBe(2);
    expect(en.spec.template.spec.containers[0].args[0]).toBe('engine');

    expect(await names('services')).toEqual([ENGINE, `${OPERATOR}-metrics`]);
    expect(await names('serviceaccounts')).toEqual([ENGINE, OPERATOR]);
    expect(await names('roles')).toEqual([ENGINE, OPERATOR]);
    expect(await names('rolebindings')).toEqual([ENGINE, OPERATOR]);
    expect(await names('poddisruptionbudgets')).toEqual([ENGINE, OPERATOR]);
    expect(await names('clusterroles', false)).toEqual([ENGINE, OPERATOR, ...USER_ROLES].sort());
    expect(await names('clusterrolebindings', false)).toEqual([ENGINE, OPERATOR]);
    expect(await names('configmaps')).toEqual([`${RELEASE}-keyward-ca`]);
    expect(await names('secrets')).toEqual([`${ENGINE}-tls`]);

    const crd = await getJson(['crd', CRD_NAME]);
    expect(crd.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect(crd.metadata.annotations?.['meta.helm.sh/release-name']).toBe(RELEASE);
    expect(crd.spec.versions[0].name).toBe('v1alpha1');
    // The CRD serves: a Key can be listed in the new namespace.
    await kubectl(['get', 'keys.keyward.io', '-n', ns]);

    const cm = await getJson(['configmap', `${RELEASE}-keyward-ca`, '-n', ns]);
    const secret = await getJson(['secret', `${ENGINE}-tls`, '-n', ns]);
    firstCa = cm.data['ca.crt'].trim();
    firstCert = secret.data['tls.crt'];
    firstChecksum = en.spec.template.metadata.annotations['checksum/tls'];
    expect(firstChecksum).toMatch(/^[0-9a-f]{64}$/);
    expect(Buffer.from(secret.data['ca.crt'], 'base64').toString().trim()).toBe(firstCa);
  });

  it('upgrades: a changed value is applied, and the CA and certificate are reused', async () => {
    const r = await helm(
      [
        'upgrade',
        RELEASE,
        CHART_DIR,
        '--namespace',
        ns,
        ...valuesArgs({ engine: { replicas: 3 }, region: 'eu-west', networkPolicy: { enabled: true } }),
      ],
      { timeoutMs: 120_000 },
    );
    expect(r.stdout).toContain('STATUS: deployed');
    const en = await getJson(['deployment', ENGINE, '-n', ns]);
    expect(en.spec.replicas).toBe(3);
    expect(en.spec.template.spec.containers[0].args).toContain('--region=eu-west');
    expect(await names('networkpolicies')).toEqual([ENGINE, OPERATOR]);
    const cm = await getJson(['configmap', `${RELEASE}-keyward-ca`, '-n', ns]);
    expect(cm.data['ca.crt'].trim()).toBe(firstCa);
    const secret = await getJson(['secret', `${ENGINE}-tls`, '-n', ns]);
    expect(secret.data['tls.crt']).toBe(firstCert);
    // Same certificate, same checksum: the upgrade rolls the engine for its own change only.
    expect(en.spec.template.metadata.annotations['checksum/tls']).toBe(firstChecksum);
    const history = await helm(['history', RELEASE, '--namespace', ns, '-o', 'json']);
    expect((JSON.parse(history.stdout) as unknown[]).length).toBe(2);
  });

  it('upgrades back to the defaults: the optional objects go away', async () => {
    // Without values helm would reuse the previous ones: --reset-values goes back to the chart's.
    await helm(['upgrade', RELEASE, CHART_DIR, '--namespace', ns, '--reset-values'], { timeoutMs: 120_000 });
    expect(await names('networkpolicies')).toEqual([]);
    expect((await getJson(['deployment', ENGINE, '-n', ns])).spec.replicas).toBe(2);
    expect((await getJson(['configmap', `${RELEASE}-keyward-ca`, '-n', ns])).data['ca.crt'].trim()).toBe(
      firstCa,
    );
  });

  it('uninstalls everything but the CRD (crds.keep)', async () => {
    await helm(['uninstall', RELEASE, '--namespace', ns], { timeoutMs: 120_000 });
    for (const resource of [
      'deployments',
      'services',
      'serviceaccounts',
      'roles',
      'rolebindings',
      'configmaps',
      'secrets',
    ]) {
      expect(await names(resource), resource).toEqual([]);
    }
    expect(await names('clusterroles', false)).toEqual([]);
    expect(await names('clusterrolebindings', false)).toEqual([]);
    const crd = await getJson(['crd', CRD_NAME]);
    expect(crd.metadata.deletionTimestamp).toBeUndefined();
    await kubectl(['get', 'keys.keyward.io', '-n', ns]);
  });
});
