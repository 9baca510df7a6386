/**
 * The chart as rendered by the real helm: lint, defaults and non-default values, the generated
 * TLS material, the pods' hardening, RBAC rules, the values schema refusing bad values, and the
 * CRD copy kept equal to crds/.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isMap, isScalar, isSeq, parse, parseDocument, type YAMLMap } from 'yaml';
import { KEYWARD_ENV, KEYWARD_OPERATOR_ENV } from '../../bench/keyward-env.ts';
import { CRD_CHART_DIR, crdDrift } from '../../scripts/chart-sync-crds.ts';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { helm } from '../cluster/harness.ts';
import {
  CHART_DIR,
  CRD_NAME,
  find,
  type K8sObject,
  NON_DEFAULT,
  ofKind,
  render,
  renderFailure,
  renderText,
  valuesArgs,
} from './helpers.ts';

const NS = 'keyward-system';
const OPERATOR = 'kw-keyward-operator';
const ENGINE = 'kw-keyward-engine';
const USER_ROLES = [
  'keyward-encrypter',
  'keyward-decrypter',
  'keyward-signer',
  'keyward-verifier',
  'keyward-key-admin',
  'keyward-key-destroyer',
];

/** Every pod template of the rendered objects. */
function podSpecs(objects: readonly K8sObject[]): Array<{ owner: string; spec: K8sObject['spec'] }> {
  const out: Array<{ owner: string; spec: K8sObject['spec'] }> = [];
  for (const o of objects) {
    const spec =
      o.kind === 'Pod'
        ? o.spec
        : o.kind === 'CronJob'
          ? o.spec?.jobTemplate?.spec?.template?.spec
          : o.spec?.template?.spec;
    if (spec?.containers) out.push({ owner: `${o.kind}/${o.metadata.name}`, spec });
  }
  return out;
}

/** Asserts the full hardening of every pod and container; returns how many containers it saw. */
function assertHardened(objects: readonly K8sObject[]): number {
  let containers = 0;
  const pods = podSpecs(objects);
  expect(pods.length).toBeGreaterThanOrEqual(2);
  for (const { owner, spec } of pods) {
    expect(spec.securityContext, owner).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(spec.hostNetwork ?? false, owner).toBe(false);
    expect(spec.hostPID ?? false, owner).toBe(false);
    expect(spec.hostIPC ?? false, owner).toBe(false);
    expect(typeof spec.automountServiceAccountToken, `${owner} says whether it mounts a token`).toBe(
      'boolean',
    );
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      const where = `${owner} container ${c.name}`;
      containers++;
      expect(c.securityContext, where).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        privileged: false,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(c.securityContext.capabilities.add ?? [], where).toEqual([]);
      expect(c.resources?.requests?.cpu, where).toBeDefined();
      expect(c.resources?.requests?.memory, where).toBeDefined();
      expect(c.resources?.limits?.memory, where).toBeDefined();
      expect(c.livenessProbe?.httpGet?.path, where).toBe('/livez');
      expect(c.readinessProbe?.httpGet?.path, where).toBe('/readyz');
    }
  }
  return containers;
}

function args(deployment: K8sObject): string[] {
  return deployment.spec.template.spec.containers[0].args;
}

function ruleVerbs(role: K8sObject, group: string, resource: string): string[] {
  return role.rules
    .filter(
      (r: { apiGroups: string[]; resources: string[] }) =>
        r.apiGroups.includes(group) && r.resources.includes(resource),
    )
    .flatMap((r: { verbs: string[] }) => r.verbs)
    .sort();
}

describe('helm lint', () => {
  it('passes with the default values', async () => {
    const r = await helm(['lint', '--strict', CHART_DIR], { allowFailure: true });
    expect(r.stdout + r.stderr).toContain('0 chart(s) failed');
    expect(r.code).toBe(0);
  });

  it('passes with non-default values and with the ServiceMonitor on', async () => {
    for (const values of [
      NON_DEFAULT,
      { serviceMonitor: { enabled: true }, tls: { existingSecret: 'mine' } },
    ]) {
      const r = await helm(['lint', '--strict', CHART_DIR, ...valuesArgs(values)], { allowFailure: true });
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
  });
});

describe('helm template with the default values', () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    objects = await render({}, { namespace: NS });
  });

  it('renders the expected objects, each namespaced object in the release namespace', () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      [
        `ClusterRole/${ENGINE}`,
        `ClusterRole/${OPERATOR}`,
        ...USER_ROLES.map((r) => `ClusterRole/${r}`),
        `ClusterRoleBinding/${ENGINE}`,
        `ClusterRoleBinding/${OPERATOR}`,
        'ConfigMap/kw-keyward-ca',
        `CustomResourceDefinition/${CRD_NAME}`,
        'ValidatingAdmissionPolicy/keyward-delete-now',
        'ValidatingAdmissionPolicyBinding/keyward-delete-now',
        // Write guards (issue #11): each component writes only its own objects.
        'ValidatingAdmissionPolicy/kw-keyward-keyward-system-engine-writes',
        'ValidatingAdmissionPolicy/kw-keyward-keyward-system-operator-writes',
        'ValidatingAdmissionPolicyBinding/kw-keyward-keyward-system-engine-writes',
        'ValidatingAdmissionPolicyBinding/kw-keyward-keyward-system-operator-writes',
        `Deployment/${ENGINE}`,
        `Deployment/${OPERATOR}`,
        `PodDisruptionBudget/${ENGINE}`,
        `PodDisruptionBudget/${OPERATOR}`,
        `Role/${ENGINE}`,
        `Role/${OPERATOR}`,
        `RoleBinding/${ENGINE}`,
        `RoleBinding/${OPERATOR}`,
        `Secret/${ENGINE}-tls`,
        `Service/${ENGINE}`,
        `Service/${OPERATOR}-metrics`,
        `ServiceAccount/${ENGINE}`,
        `ServiceAccount/${OPERATOR}`,
      ].sort(),
    );
    const clusterScoped = new Set([
      'ClusterRole',
      'ClusterRoleBinding',
      'CustomResourceDefinition',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
    ]);
    for (const o of objects) {
      if (clusterScoped.has(o.kind)) expect(o.metadata.namespace, o.kind).toBeUndefined();
      else expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(NS);
      expect(o.metadata.labels?.['app.kubernetes.io/managed-by'], o.metadata.name).toBe('Helm');
      expect(o.metadata.labels?.['app.kubernetes.io/instance'], o.metadata.name).toBe('kw');
    }
  });

  it('runs 2 leader-electing operators and 2 engines from the appVersion image', () => {
    const op = find(objects, 'Deployment', OPERATOR);
    expect(op.spec.replicas).toBe(2);
    expect(args(op)).toEqual([
      'operator',
      `--namespace=${NS}`,
      `--lease-name=${OPERATOR}`,
      '--identity=$(POD_NAME)',
      '--metrics-port=8080',
      '--ca-configmap=kw-keyward-ca',
    ]);
    const en = find(objects, 'Deployment', ENGINE);
    expect(en.spec.replicas).toBe(2);
    expect(args(en)).toEqual([
      'engine',
      `--namespace=${NS}`,
      '--port=8443',
      '--metrics-port=9464',
      '--tls=/etc/keyward/tls/tls.crt,/etc/keyward/tls/tls.key',
      '--identity=$(POD_NAME)',
      '--audit-required',
      // SIGTERM: serve 5 s with readiness failed, then stop within the 30 s grace period.
      '--shutdown-delay-ms=5000',
      '--shutdown-timeout-ms=23000',
    ]);
    expect(en.spec.template.spec.terminationGracePeriodSeconds).toBe(30);
    for (const d of [op, en]) {
      const c = d.spec.template.spec.containers[0];
      expect(c.image).toBe('ghcr.io/keyward/keyward:0.1.0');
      expect(c.env).toContainEqual({ name: 'KEYWARD_LOG_LEVEL', value: 'info' });
      // Heap flags and malloc arenas chosen on measurement (docs/performance.md, memory).
      // The same the benches measure with (bench/keyward-env.ts).
      const shipped = d === op ? KEYWARD_OPERATOR_ENV : KEYWARD_ENV;
      for (const [name, value] of Object.entries(shipped)) expect(c.env).toContainEqual({ name, value });
      expect(c.env).toContainEqual({
        name: 'POD_NAME',
        valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
      });
      // The selector matches the pod labels and only this component's pods.
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
    }
    expect(op.spec.selector.matchLabels['app.kubernetes.io/component']).toBe('operator');
    expect(en.spec.selector.matchLabels['app.kubernetes.io/component']).toBe('engine');
  });

  it('serves the engine over HTTPS with the generated certificate and publishes its CA', () => {
    const en = find(objects, 'Deployment', ENGINE);
    const pod = en.spec.template.spec;
    expect(pod.volumes).toContainEqual(
      expect.objectContaining({
        name: 'tls',
        secret: expect.objectContaining({ secretName: `${ENGINE}-tls` }),
      }),
    );
    const c = pod.containers[0];
    // Metrics have a port of their own (issue #12): the API port never serves them.
    expect(c.ports).toEqual([
      { name: 'https', containerPort: 8443, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9464, protocol: 'TCP' },
    ]);
    expect(c.args).toContain('--metrics-port=9464');
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
    const svc = find(objects, 'Service', ENGINE);
    expect(svc.spec.ports).toEqual([
      { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' },
      { name: 'metrics', port: 9464, targetPort: 'metrics', protocol: 'TCP', appProtocol: 'https' },
    ]);

    const secret = find(objects, 'Secret', `${ENGINE}-tls`);
    expect(secret.type).toBe('kubernetes.io/tls');
    const pem = (k: string) => Buffer.from(secret.data[k], 'base64').toString('utf8');
    const cert = new X509Certificate(pem('tls.crt'));
    const ca = new X509Certificate(pem('ca.crt'));
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    for (const name of [
      ENGINE,
      `${ENGINE}.${NS}`,
      `${ENGINE}.${NS}.svc`,
      `${ENGINE}.${NS}.svc.cluster.local`,
    ]) {
      expect(cert.checkHost(name), name).toBe(name);
    }
    expect(cert.checkHost(`other.${NS}.svc`)).toBeUndefined();
    // The key matches the certificate.
    expect(pem('tls.key')).toMatch(/-----BEGIN (RSA )?PRIVATE KEY-----/);
    const cm = find(objects, 'ConfigMap', 'kw-keyward-ca');
    expect(cm.data['ca.crt'].trim()).toBe(pem('ca.crt').trim());
    // The CA's private key is never stored.
    expect(Object.keys(secret.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    // The engine pods carry a checksum of this very certificate, so a new one rolls them.
    const material = JSON.stringify({ ca: pem('ca.crt'), crt: pem('tls.crt'), key: pem('tls.key') });
    expect(en.spec.template.metadata.annotations['checksum/tls']).toBe(
      createHash('sha256').update(material).digest('hex'),
    );
  });

  it('renders the CRD from crds/ unchanged, with helm labels and the keep policy', () => {
    const crd = find(objects, 'CustomResourceDefinition', CRD_NAME);
    const source = parse(readFileSync(join(REPO_ROOT, 'crds', 'keys.keyward.io.yaml'), 'utf8'));
    expect(crd.spec).toEqual(source.spec);
    expect(crd.metadata.labels).toMatchObject(source.metadata.labels);
    expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
  });

  it('gives each component its own ServiceAccount, mounting a token only in its own pods', () => {
    for (const name of [OPERATOR, ENGINE]) {
      expect(find(objects, 'ServiceAccount', name).automountServiceAccountToken).toBe(false);
      const pod = find(objects, 'Deployment', name).spec.template.spec;
      expect(pod.serviceAccountName).toBe(name);
      expect(pod.automountServiceAccountToken).toBe(true);
      for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
        const b = find(objects, kind, name);
        expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name, namespace: NS }]);
        expect(b.roleRef.name).toBe(name);
      }
    }
  });

  it('grants the operator and the engine least-privilege RBAC', () => {
    const opCluster = find(objects, 'ClusterRole', OPERATOR);
    // delete-now: the operator deletes a Key a destroyer marked for erasure (the policy checks the deleter).
    expect(ruleVerbs(opCluster, 'keyward.io', 'keys')).toEqual([
      'delete',
      'delete-now',
      'get',
      'list',
      'patch',
      'watch',
    ]);
    expect(ruleVerbs(opCluster, 'keyward.io', 'keys/status')).toEqual(['patch']);
    expect(ruleVerbs(opCluster, 'keyward.io', 'keys/finalizers')).toEqual(['update']);
    expect(ruleVerbs(opCluster, 'events.k8s.io', 'events')).toEqual(['create']);
    expect(ruleVerbs(opCluster, '', 'secrets')).toEqual([]);
    const opNs = find(objects, 'Role', OPERATOR);
    expect(ruleVerbs(opNs, '', 'secrets')).toEqual(['create', 'delete', 'get', 'list', 'update', 'watch']);
    expect(ruleVerbs(opNs, 'coordination.k8s.io', 'leases')).toEqual(['create', 'get', 'update']);
    expect(ruleVerbs(opNs, '', 'configmaps')).toEqual(['delete', 'list', 'watch']);

    const enCluster = find(objects, 'ClusterRole', ENGINE);
    expect(ruleVerbs(enCluster, 'keyward.io', 'keys')).toEqual(['get', 'list', 'watch']);
    expect(ruleVerbs(enCluster, 'authentication.k8s.io', 'tokenreviews')).toEqual(['create']);
    expect(ruleVerbs(enCluster, 'authorization.k8s.io', 'subjectaccessreviews')).toEqual(['create']);
    expect(ruleVerbs(enCluster, '', 'secrets')).toEqual([]);
    const enNs = find(objects, 'Role', ENGINE);
    expect(ruleVerbs(enNs, '', 'secrets')).toEqual(['get', 'list', 'watch']);
    expect(ruleVerbs(enNs, '', 'configmaps')).toEqual(['create', 'update']);
    // No wildcard anywhere.
    for (const role of [...ofKind(objects, 'ClusterRole'), ...ofKind(objects, 'Role')]) {
      for (const rule of role.rules) {
        for (const field of ['apiGroups', 'resources', 'verbs'])
          expect(rule[field], role.metadata.name).not.toContain('*');
      }
    }
  });

  it('renders the user ClusterRoles with the key-use verbs, delete-now only in key-destroyer, and no aggregation', () => {
    const verbs = (name: string) => ruleVerbs(find(objects, 'ClusterRole', name), 'keyward.io', 'keys');
    expect(verbs('keyward-encrypter')).toEqual(['encrypt', 'generate-data-key', 're-encrypt']);
    expect(verbs('keyward-decrypter')).toEqual(['decrypt']);
    expect(verbs('keyward-signer')).toEqual(['get-public-key', 'sign']);
    expect(verbs('keyward-verifier')).toEqual(['get-public-key', 'verify']);
    const admin = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
    expect(verbs('keyward-key-admin')).toEqual(admin);
    expect(verbs('keyward-key-destroyer')).toEqual([...admin, 'delete-now'].sort());
    // Aggregation into admin and edit is off by default (issue 11: edit could destroy keys).
    for (const name of USER_ROLES) {
      const labels = find(objects, 'ClusterRole', name).metadata.labels ?? {};
      expect(
        Object.keys(labels).filter((l) => l.startsWith('rbac.authorization.k8s.io/')),
        name,
      ).toEqual([]);
    }
  });

  it('renders the delete-now policy and binding from crds/ unchanged, kept on uninstall', () => {
    for (const [kind, file] of [
      ['ValidatingAdmissionPolicy', 'keyward-delete-now.policy.yaml'],
      ['ValidatingAdmissionPolicyBinding', 'keyward-delete-now.binding.yaml'],
    ] as const) {
      const rendered = find(objects, kind, 'keyward-delete-now');
      const source = parse(readFileSync(join(REPO_ROOT, 'crds', file), 'utf8'));
      expect(rendered.spec).toEqual(source.spec);
      expect(rendered.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    }
  });

  it('renders no HPA, NetworkPolicy or ServiceMonitor by default', () => {
    for (const kind of ['HorizontalPodAutoscaler', 'NetworkPolicy', 'ServiceMonitor'])
      expect(ofKind(objects, kind)).toEqual([]);
  });

  it('hardens every pod and container', () => {
    expect(assertHardened(objects)).toBe(2);
  });
});

describe('helm template with non-default values', () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    objects = await render(NON_DEFAULT, { namespace: NS });
  });

  it('applies replicas, ports, region, threads, image digest, labels and extra args', () => {
    const op = find(objects, 'Deployment', OPERATOR);
    expect(op.spec.replicas).toBe(3);
    expect(args(op)).toContain('--metrics-port=9090');
    expect(args(op)).toContain('--workers=4');
    expect(op.spec.template.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(op.spec.template.spec.tolerations).toHaveLength(1);
    expect(op.spec.template.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(op.spec.template.spec.containers[0].env).toContainEqual({ name: 'EXTRA', value: 'x' });
    // Empty node options and 0 arenas: Node's and glibc's defaults, no variable set.
    const opEnv = op.spec.template.spec.containers[0].env.map((e: { name: string }) => e.name);
    expect(opEnv).not.toContain('NODE_OPTIONS');
    expect(opEnv).not.toContain('MALLOC_ARENA_MAX');
    expect(opEnv).not.toContain('MALLOC_MMAP_THRESHOLD_');
    const en = find(objects, 'Deployment', ENGINE);
    // The HPA owns the replica count.
    expect(en.spec.replicas).toBeUndefined();
    expect(args(en)).toEqual(
      expect.arrayContaining([
        '--port=9443',
        '--region=eu-west',
        '--threads=3',
        '--shutdown-delay-ms=10000',
        '--shutdown-timeout-ms=48000',
      ]),
    );
    expect(en.spec.template.spec.terminationGracePeriodSeconds).toBe(60);
    expect(en.spec.template.spec.affinity.podAntiAffinity).toBeDefined();
    expect(en.spec.template.spec.containers[0].image).toBe(
      `registry.example.com/keyward@sha256:${'ab'.repeat(32)}`,
    );
    expect(en.spec.template.spec.containers[0].env).toContainEqual({
      name: 'KEYWARD_LOG_LEVEL',
      value: 'debug',
    });
    const svc = find(objects, 'Service', ENGINE);
    expect(svc.spec.ports[0].port).toBe(8443);
    expect(svc.metadata.annotations).toEqual({ 'example.com/x': 'y' });
    for (const o of objects) expect(o.metadata.labels?.team, `${o.kind}/${o.metadata.name}`).toBe('security');
  });

  it('renders the HPA and PodDisruptionBudgets as asked', () => {
    const hpa = find(objects, 'HorizontalPodAutoscaler', ENGINE);
    expect(hpa.spec).toMatchObject({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: ENGINE },
      minReplicas: 3,
      maxReplicas: 7,
      metrics: [
        {
          type: 'Resource',
          resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } },
        },
      ],
    });
    expect(find(objects, 'PodDisruptionBudget', ENGINE).spec.maxUnavailable).toBe('25%');
    expect(ofKind(objects, 'PodDisruptionBudget')).toHaveLength(1);
  });

  it('renders NetworkPolicies that admit only the serving ports', () => {
    const en = find(objects, 'NetworkPolicy', ENGINE);
    expect(en.spec.podSelector.matchLabels['app.kubernetes.io/component']).toBe('engine');
    expect(en.spec.policyTypes).toEqual(['Ingress']);
    expect(en.spec.ingress).toEqual([
      {
        ports: [{ port: 9443, protocol: 'TCP' }],
        from: [{ namespaceSelector: { matchLabels: { 'keyward.io/client': 'true' } } }],
      },
      { ports: [{ port: 9464, protocol: 'TCP' }] },
    ]);
    const op = find(objects, 'NetworkPolicy', OPERATOR);
    expect(op.spec.ingress).toEqual([{ ports: [{ port: 9090, protocol: 'TCP' }] }]);
  });

  it('puts extra DNS names in the certificate and drops the keep policy', () => {
    const secret = find(objects, 'Secret', `${ENGINE}-tls`);
    const cert = new X509Certificate(Buffer.from(secret.data['tls.crt'], 'base64'));
    expect(cert.checkHost('kms.example.com')).toBe('kms.example.com');
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    expect(Math.round(days)).toBe(90);
    expect(find(objects, 'CustomResourceDefinition', CRD_NAME).metadata.annotations ?? {}).toEqual({});
    const labels = find(objects, 'ClusterRole', 'keyward-key-admin').metadata.labels;
    expect(labels?.['rbac.authorization.k8s.io/aggregate-to-admin']).toBeUndefined();
  });

  it('hardens every pod and container', () => {
    expect(assertHardened(objects)).toBe(2);
  });
});

describe('helm template with other switches', () => {
  it('serves an existing TLS Secret and renders no certificate of its own', async () => {
    const objects = await render({ tls: { existingSecret: 'keyward-cert' } });
    expect(ofKind(objects, 'Secret')).toEqual([]);
    expect(ofKind(objects, 'ConfigMap')).toEqual([]);
    const vol = find(objects, 'Deployment', ENGINE).spec.template.spec.volumes.find(
      (v: { name: string }) => v.name === 'tls',
    );
    expect(vol.secret.secretName).toBe('keyward-cert');
    expect(find(objects, 'Deployment', ENGINE).spec.template.metadata.annotations).toBeUndefined();

    const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
    const withCa = await render({ tls: { existingSecret: 'keyward-cert', caBundle: ca } });
    expect(find(withCa, 'ConfigMap', 'kw-keyward-ca').data['ca.crt'].trim()).toBe(ca);
  });

  it('leaves the CRD and the user roles out when asked', async () => {
    const objects = await render({ crds: { enabled: false }, rbac: { userRoles: false } });
    expect(ofKind(objects, 'CustomResourceDefinition')).toEqual([]);
    const roles = ofKind(objects, 'ClusterRole').map((r) => r.metadata.name);
    expect(roles.sort()).toEqual([ENGINE, OPERATOR]);
  });

  it('renders ServiceMonitors (monitoring.coreos.com/v1) only when enabled', async () => {
    const objects = await render(
      { serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'prom' } } },
      { namespace: NS },
    );
    const monitors = ofKind(objects, 'ServiceMonitor');
    expect(monitors.map((m) => m.metadata.name).sort()).toEqual([ENGINE, OPERATOR]);
    for (const m of monitors) {
      expect(m.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(m.metadata.labels?.release).toBe('prom');
      expect(m.spec.namespaceSelector).toEqual({ matchNames: [NS] });
    }
    const engine = find(objects, 'ServiceMonitor', ENGINE);
    expect(engine.spec.selector.matchLabels).toEqual(find(objects, 'Service', ENGINE).spec.selector);
    expect(engine.spec.endpoints).toEqual([
      {
        port: 'metrics',
        path: '/metrics',
        scheme: 'https',
        interval: '15s',
        tlsConfig: {
          serverName: `${ENGINE}.${NS}.svc`,
          ca: { configMap: { name: 'kw-keyward-ca', key: 'ca.crt' } },
        },
      },
    ]);
    const op = find(objects, 'ServiceMonitor', OPERATOR);
    expect(op.spec.endpoints[0]).toMatchObject({ port: 'metrics', scheme: 'http' });
    // Its Service exists and selects the operator pods.
    expect(find(objects, 'Service', `${OPERATOR}-metrics`).spec.ports[0].name).toBe('metrics');
  });

  it('names objects after fullnameOverride', async () => {
    const objects = await render({ fullnameOverride: 'kms' });
    expect(find(objects, 'Deployment', 'kms-engine').kind).toBe('Deployment');
    expect(find(objects, 'Deployment', 'kms-operator').kind).toBe('Deployment');
  });
});

describe('values.schema.json', () => {
  const refused = async (values: object, ...fragments: RegExp[]) => {
    const r = await renderFailure(values);
    expect(r.code, 'helm must refuse these values').not.toBe(0);
    for (const f of fragments) expect(r.stderr).toMatch(f);
  };

  it('refuses a misspelt key at the top and deep down, naming it', async () => {
    await refused({ replicas: 3 }, /additional propert(y|ies) .*'?replicas'? .*not allowed/i);
    await refused({ engine: { replcas: 3 } }, /engine/, /replcas/);
    await refused({ engine: { autoscaling: { enable: true } } }, /autoscaling/, /enable/);
    await refused({ operator: { resources: { requests: { cpus: '1' } } } }, /cpus/);
    await refused({ tls: { existingSecrets: 'x' } }, /existingSecrets/);
  });

  it('refuses wrong types and out-of-range numbers, naming the field', async () => {
    await refused({ engine: { replicas: 'two' } }, /engine\.replicas|\/engine\/replicas/, /integer/i);
    await refused({ engine: { replicas: -1 } }, /engine\.replicas|\/engine\/replicas/);
    await refused({ operator: { replicas: 0 } }, /operator\.replicas|\/operator\/replicas/);
    await refused({ engine: { port: 70000 } }, /engine\.port|\/engine\/port/);
    await refused({ crds: { keep: 'yes' } }, /crds\.keep|\/crds\/keep/, /boolean/i);
    await refused({ logLevel: 'verbose' }, /logLevel/);
    await refused(
      { engine: { service: { type: 'ExternalName' } } },
      /engine\.service\.type|\/engine\/service\/type/,
    );
    await refused({ engine: { shutdownDelaySeconds: -1 } }, /shutdownDelaySeconds/);
    // The engine must be able to finish its drain before the kubelet kills it.
    await refused(
      { engine: { shutdownDelaySeconds: 30, terminationGracePeriodSeconds: 30 } },
      /terminationGracePeriodSeconds must exceed engine\.shutdownDelaySeconds/,
    );
  });

  it('closes every object with additionalProperties, except Kubernetes pass-through objects', () => {
    const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8'));
    const open: string[] = [];
    const walk = (node: Record<string, unknown>, path: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const passthrough = typeof node.$comment === 'string' && node.$comment.startsWith('passthrough:');
      if (node.type === 'object' && node.additionalProperties === undefined && !passthrough)
        open.push(path || '(root)');
      if (node.type === 'object' && node.additionalProperties === true) open.push(path);
      for (const [k, v] of Object.entries(node.properties ?? {}))
        walk(v as Record<string, unknown>, `${path}.${k}`);
      if (node.items) walk(node.items as Record<string, unknown>, `${path}[]`);
      for (const alt of (node.anyOf as Record<string, unknown>[]) ?? []) walk(alt, path);
    };
    walk(schema, '');
    expect(open).toEqual([]);
    expect(schema.additionalProperties).toBe(false);
  });

  it('matches values.yaml key for key, and values.yaml documents every value', () => {
    const text = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
    const doc = parseDocument(text);
    const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8'));
    const undocumented: string[] = [];
    const mismatched: string[] = [];
    const leaves: string[] = [];
    const walk = (map: YAMLMap, node: { properties?: Record<string, unknown> }, path: string): void => {
      const yamlKeys = new Set<string>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        yamlKeys.add(key);
        const here = path ? `${path}.${key}` : key;
        const sub = node.properties?.[key] as
          | { properties?: Record<string, unknown>; description?: string }
          | undefined;
        if (!sub) mismatched.push(`${here}: in values.yaml, not in the schema`);
        // `resources` is a Kubernetes ResourceRequirements: documented as a whole, and its schema
        // allows more quantities (ephemeral-storage) than the defaults set.
        if (isMap(pair.value) && pair.value.items.length > 0 && sub?.properties && key !== 'resources') {
          walk(pair.value, sub, here);
        } else {
          // A leaf: it needs a comment of its own in values.yaml and a description in the schema.
          const first = map.items[0] === pair ? (map.commentBefore ?? '') : '';
          const comment = (pair.key as { commentBefore?: string }).commentBefore ?? first;
          leaves.push(here);
          if (!comment.trim()) undocumented.push(here);
          if (!sub?.description) undocumented.push(`${here} (schema description)`);
          if (isSeq(pair.value) && pair.value.items.length > 0 && !comment.trim()) undocumented.push(here);
        }
      }
      for (const key of Object.keys(node.properties ?? {})) {
        if (!yamlKeys.has(key))
          mismatched.push(`${path ? `${path}.` : ''}${key}: in the schema, not in values.yaml`);
      }
    };
    // The first key's comment is attached to the document when it follows the file's header.
    const root = doc.contents as YAMLMap;
    const first = root.items[0]?.key as { commentBefore?: string } | undefined;
    if (first && !first.commentBefore && doc.commentBefore)
      first.commentBefore = doc.commentBefore.split('\n').pop();
    walk(root, schema, '');
    expect(mismatched).toEqual([]);
    expect(undocumented).toEqual([]);
    // docs/helm.md lists every value too.
    const docs = readFileSync(join(REPO_ROOT, 'docs', 'helm.md'), 'utf8');
    expect(leaves.length).toBeGreaterThan(50);
    expect(leaves.filter((leaf) => !docs.includes(`| \`${leaf}\` |`))).toEqual([]);
  });

  it('accepts the default values as they are', async () => {
    await expect(renderText({})).resolves.toContain('kind: Deployment');
  });
});

describe('the CRD copy in the chart', () => {
  it('is byte-for-byte crds/keys.keyward.io.yaml (run `npm run chart:sync-crds` after changing crds/)', () => {
    expect(crdDrift()).toEqual([]);
    const source = readFileSync(join(REPO_ROOT, 'crds', 'keys.keyward.io.yaml'));
    const copy = readFileSync(join(CRD_CHART_DIR, 'keys.keyward.io.yaml'));
    expect(copy.equals(source)).toBe(true);
  });
});

describe('the CA in every namespace that holds a Key (issue #17)', () => {
  it('gives the operator the flag and only the RBAC it needs, and can be turned off', async () => {
    const on = await render({});
    const role = find(on, 'ClusterRole', OPERATOR);
    const caRules = role.rules.filter((r: { resources: string[] }) =>
      r.resources.some((x) => x === 'configmaps' || x === 'namespaces'),
    );
    expect(caRules).toEqual([
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
      {
        apiGroups: [''],
        resources: ['configmaps'],
        resourceNames: ['keyward-ca.crt'],
        verbs: ['get', 'update', 'delete'],
      },
      { apiGroups: [''], resources: ['namespaces'], verbs: ['list'] },
    ]);
    const off = await render({ caDistribution: { enabled: false } });
    expect(args(find(off, 'Deployment', OPERATOR)).some((a: string) => a.startsWith('--ca-configmap'))).toBe(
      false,
    );
    expect(
      find(off, 'ClusterRole', OPERATOR).rules.some((r: { resources: string[] }) =>
        r.resources.includes('configmaps'),
      ),
    ).toBe(false);
  });

  it('can render a trust-manager Bundle with the chart CA instead of the operator copies', async () => {
    const objs = await render({
      caDistribution: {
        trustManagerBundle: { enabled: true, namespaceSelector: { matchLabels: { team: 'a' } } },
      },
    });
    const bundle = find(objs, 'Bundle', 'keyward-ca.crt');
    expect(bundle.apiVersion).toBe('trust.cert-manager.io/v1alpha1');
    expect(bundle.spec.target).toEqual({
      configMap: { key: 'ca.crt' },
      namespaceSelector: { matchLabels: { team: 'a' } },
    });
    const ca = find(objs, 'ConfigMap', 'kw-keyward-ca').data['ca.crt'];
    expect(bundle.spec.sources[0].inLine.trim()).toBe(ca.trim());
    expect(args(find(objs, 'Deployment', OPERATOR)).some((a: string) => a.startsWith('--ca-configmap'))).toBe(
      false,
    );
  });
});

describe('the audit logs (issue #13)', () => {
  it('are on by default (engine and operator, stdout) and each can be turned off', async () => {
    const on = await render({});
    expect(args(find(on, 'Deployment', OPERATOR))).not.toContain('--no-audit');
    expect(args(find(on, 'Deployment', ENGINE))).not.toContain('--no-audit');
    const off = await render({
      operator: { audit: { enabled: false } },
      engine: { audit: { enabled: false } },
    });
    expect(args(find(off, 'Deployment', OPERATOR))).toContain('--no-audit');
    expect(args(find(off, 'Deployment', ENGINE))).toContain('--no-audit');
    expect(args(find(off, 'Deployment', ENGINE))).not.toContain('--audit-required');
  });
});
