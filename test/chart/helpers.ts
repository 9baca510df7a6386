/**
 * Helpers of the chart suites: render charts/keyward with the built helm, parse what it renders,
 * and make kubeconfigs that act as one of the chart's ServiceAccounts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { apiserverUrl, cluster, helm, kubectl, type RunResult } from '../cluster/harness.ts';

/** The chart folder. */
export const CHART_DIR = join(REPO_ROOT, 'charts', 'keyward');
/** The CRD the chart renders. */
export const CRD_NAME = 'keys.keyward.io';

/** A rendered Kubernetes object, loosely typed (tests look into it). */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    finalizers?: string[];
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are free-form; tests check their shape.
  [field: string]: any;
};

const scratch = mkdtempSync(join(tmpdir(), 'keyward-chart-'));
let files = 0;

/** Writes `values` to a temporary JSON file (JSON is YAML) and returns its path. */
export function valuesFile(values: object): string {
  const path = join(scratch, `values-${++files}.json`);
  writeFileSync(path, JSON.stringify(values));
  return path;
}

/** `--values FILE` arguments for `values`, none when it is empty. */
export function valuesArgs(values: object = {}): string[] {
  return Object.keys(values).length === 0 ? [] : ['--values', valuesFile(values)];
}

/** Parses a multi-document YAML stream into objects, skipping empty documents. */
export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`bad YAML from helm: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as K8sObject | null;
    if (value) out.push(value);
  }
  return out;
}

/** Runs `helm template` on the chart; throws when helm fails. */
export async function renderText(
  values: object = {},
  { release = 'kw', namespace = 'keyward-system', extra = [] as string[] } = {},
): Promise<string> {
  const r = await helm([
    'template',
    release,
    CHART_DIR,
    '--namespace',
    namespace,
    ...valuesArgs(values),
    ...extra,
  ]);
  return r.stdout;
}

/** Renders the chart and parses the objects. */
export async function render(
  values: object = {},
  options: { release?: string; namespace?: string; extra?: string[] } = {},
): Promise<K8sObject[]> {
  return parseManifests(await renderText(values, options));
}

/** Runs `helm template` expecting a failure; returns the result. */
export function renderFailure(values: object): Promise<RunResult> {
  return helm(['template', 'kw', CHART_DIR, ...valuesArgs(values)], { allowFailure: true });
}

/** The one object of `kind` named `name` (throws when absent). */
export function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) {
    const have = objects.map((x) => `${x.kind}/${x.metadata.name}`).join(', ');
    throw new Error(`no ${kind}/${name} in the rendered chart (have ${have})`);
  }
  return o;
}

/** All objects of `kind`. */
export function ofKind(objects: readonly K8sObject[], kind: string): K8sObject[] {
  return objects.filter((x) => x.kind === kind);
}

/**
 * Makes the existing Key CRD (applied by another suite with kubectl, or kept by an earlier
 * release) adoptable by helm release `release` in `namespace`, as a user would when moving the
 * CRD under a chart. Does nothing when the CRD is absent.
 */
export async function adoptCrd(release: string, namespace: string): Promise<void> {
  // The CRD and the delete-now policy and binding rendered with it (all kept by crds.keep).
  for (const object of [
    `crd/${CRD_NAME}`,
    'validatingadmissionpolicy/keyward-delete-now',
    'validatingadmissionpolicybinding/keyward-delete-now',
  ]) {
    const got = await kubectl(['get', object, '--ignore-not-found', '-o', 'name']);
    if (got.stdout.trim() === '') continue;
    await kubectl([
      'annotate',
      object,
      '--overwrite',
      `meta.helm.sh/release-name=${release}`,
      `meta.helm.sh/release-namespace=${namespace}`,
    ]);
    await kubectl(['label', object, '--overwrite', 'app.kubernetes.io/managed-by=Helm']);
  }
}

/**
 * Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` with a fresh
 * TokenRequest token (no admin credentials in it) and returns its path.
 */
export async function serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
  const token = (await kubectl(['create', 'token', name, '-n', namespace, '--duration', '1h'])).stdout.trim();
  const caPath = join(scratch, 'apiserver-ca.crt');
  writeFileSync(caPath, cluster().caPem);
  const path = join(scratch, `kubeconfig-${namespace}-${name}`);
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: apiserverUrl(), 'certificate-authority': caPath } }],
    users: [{ name, user: { token } }],
    contexts: [{ name: 'sa', context: { cluster: 'test', user: name, namespace } }],
    'current-context': 'sa',
  };
  writeFileSync(path, JSON.stringify(kubeconfig), { mode: 0o600 });
  return path;
}

/** A set of values that changes nearly everything (ServiceMonitor off: no CRD for it here). */
export const NON_DEFAULT = {
  region: 'eu-west',
  logLevel: 'debug',
  commonLabels: { team: 'security' },
  image: { repository: 'registry.example.com/keyward', digest: `sha256:${'ab'.repeat(32)}` },
  imagePullSecrets: ['regcred'],
  crds: { enabled: true, keep: false },
  operator: {
    replicas: 3,
    metricsPort: 9090,
    extraArgs: ['--workers=4'],
    extraEnv: [{ name: 'EXTRA', value: 'x' }],
    nodeOptions: '',
    mallocArenaMax: 0,
    mallocMmapThreshold: 0,
    nodeSelector: { 'kubernetes.io/os': 'linux' },
    tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'keyward', effect: 'NoSchedule' }],
    podDisruptionBudget: { enabled: false },
  },
  engine: {
    replicas: 4,
    port: 9443,
    threads: 3,
    shutdownDelaySeconds: 10,
    terminationGracePeriodSeconds: 60,
    service: { port: 8443, annotations: { 'example.com/x': 'y' } },
    autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 7, targetCPUUtilizationPercentage: 60 },
    podDisruptionBudget: { enabled: true, maxUnavailable: '25%' },
    affinity: {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: {
              topologyKey: 'kubernetes.io/hostname',
              labelSelector: { matchLabels: { 'app.kubernetes.io/component': 'engine' } },
            },
          },
        ],
      },
    },
  },
  tls: { extraDnsNames: ['kms.example.com'], validityDays: 90 },
  rbac: { aggregateToAdminEdit: false },
  networkPolicy: {
    enabled: true,
    engineFrom: [{ namespaceSelector: { matchLabels: { 'keyward.io/client': 'true' } } }],
  },
};

/** Kubeconfigs of the chart's two ServiceAccounts; see {@link installChartServiceAccounts}. */
export interface ChartServiceAccountKubeconfigs {
  operator: string;
  engine: string;
  /** Uninstalls the release. */
  uninstall: () => Promise<void>;
}

/**
 * For suites that run the operator or the engine as local processes and want them held to the
 * chart's RBAC instead of the admin's: installs the chart as `release` in `namespace` (without
 * the CRD and the user roles, which other releases own) and returns kubeconfigs acting as the
 * chart's operator and engine ServiceAccounts. It also exports them as
 * KEYWARD_TEST_KUBECONFIG_OPERATOR and KEYWARD_TEST_KUBECONFIG_ENGINE in this test process
 * (see docs/helm.md, "RBAC in tests").
 */
export async function installChartServiceAccounts(
  namespace: string,
  release = 'kwt',
): Promise<ChartServiceAccountKubeconfigs> {
  const values = { crds: { enabled: false }, rbac: { userRoles: false } };
  await helm(['install', release, CHART_DIR, '--namespace', namespace, ...valuesArgs(values)], {
    timeoutMs: 120_000,
  });
  const prefix = release.includes('keyward') ? release : `${release}-keyward`;
  const operator = await serviceAccountKubeconfig(namespace, `${prefix}-operator`);
  const engine = await serviceAccountKubeconfig(namespace, `${prefix}-engine`);
  process.env.KEYWARD_TEST_KUBECONFIG_OPERATOR = operator;
  process.env.KEYWARD_TEST_KUBECONFIG_ENGINE = engine;
  return {
    operator,
    engine,
    uninstall: async () => {
      await helm(['uninstall', release, '--namespace', namespace], {
        allowFailure: true,
        timeoutMs: 120_000,
      });
    },
  };
}
