/**
 * An action is recorded once it is written, never per reconcile attempt (issue #13 phase 2). The
 * Key controller runs in-process on the real apiserver as the chart's operator ServiceAccount,
 * with its trail recording into memory. The ServiceAccount's right to update Secrets is taken
 * away, so a rotation's Secret write is refused (403) reconcile after reconcile: nothing is
 * recorded. The right is given back: the retry writes, and exactly one `rotate` is recorded. A
 * refused adoption (MATERIAL_CONFLICT), which writes no Secret, is recorded once too.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditRecorder } from '../../engine/audit/audit-log.ts';
import type { AuditEvent } from '../../engine/audit/record.ts';
import { KubeClient } from '../../engine/kube/client.ts';
import { OperatorAudit } from '../../operator/audit.ts';
import { OperatorCaches } from '../../operator/caches.ts';
import { KeyController } from '../../operator/key-controller.ts';
import { LeadershipTerm } from '../../operator/leader.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { createNamespace, kubectl, waitFor } from '../cluster/harness.ts';
import {
  createOperatorNamespace,
  installCrd,
  isReady,
  keyManifest,
  operatorKubeconfig,
  sleep,
  waitForKey,
} from './helpers.ts';

const log = pino({ level: 'silent' });
let ns: string;
let opNs: string;
let client: KubeClient;
let caches: OperatorCaches;
let metrics: OperatorMetrics;
let controller: KeyController;
const recorded: AuditEvent[] = [];
const recorder: AuditRecorder = {
  record: (e) => void recorded.push(e),
  write: async (e) => void recorded.push(e),
  healthy: true,
};

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-aud1');
  opNs = await createOperatorNamespace('kw-aud1-op');
  const kc = new KubeConfig();
  kc.loadFromFile(operatorKubeconfig(opNs));
  client = new KubeClient(kc);
  caches = new OperatorCaches({ client, namespace: opNs, watchNamespace: ns, usageNamespace: opNs, log });
  metrics = new OperatorMetrics({
    queueDepth: () => 0,
    parkedKeys: () => 0,
    keysByState: () => ({}),
    isLeader: () => true,
  });
  controller = new KeyController({
    client,
    caches,
    namespace: opNs,
    watchNamespace: ns,
    workers: 2,
    lifecycle: { deletionDelayMs: 72 * 3_600_000 },
    metrics,
    audit: new OperatorAudit(recorder),
    log,
  });
  await caches.start();
});

afterAll(async () => {
  await caches.stop();
  await client.close();
});

/**
 * Sets the verbs of the chart's operator Role on Secrets, and waits until the apiserver's
 * authorizer applies them (it follows RBAC objects through an informer: a loaded machine shows
 * the change only a moment later).
 */
async function setSecretVerbs(verbs: string[]): Promise<void> {
  const roles = JSON.parse((await kubectl(['get', 'role', '-n', opNs, '-o', 'json'])).stdout) as {
    items: Array<{ metadata: { name: string }; rules: Array<{ resources?: string[]; verbs: string[] }> }>;
  };
  // The operator's Role is the one that may delete Secrets (the engine's only reads them).
  const role = roles.items.find((r) =>
    r.rules.some((x) => x.resources?.includes('secrets') && x.verbs.includes('delete')),
  );
  if (role === undefined) throw new Error('no operator Role for secrets');
  const bindings = JSON.parse((await kubectl(['get', 'rolebinding', '-n', opNs, '-o', 'json'])).stdout) as {
    items: Array<{ roleRef: { name: string }; subjects?: Array<{ name: string; namespace?: string }> }>;
  };
  const sa = bindings.items.find((b) => b.roleRef.name === role.metadata.name)?.subjects?.[0];
  if (sa === undefined) throw new Error('no binding of the operator Role');
  const rules = role.rules.map((x) => (x.resources?.includes('secrets') ? { ...x, verbs } : x));
  await kubectl([
    'patch',
    'role',
    role.metadata.name,
    '-n',
    opNs,
    '--type=merge',
    '-p',
    JSON.stringify({ rules }),
  ]);
  const want = verbs.includes('update') ? 'yes' : 'no';
  const as = `--as=system:serviceaccount:${sa.namespace ?? opNs}:${sa.name}`;
  await waitFor(`update secrets: ${want}`, async () => {
    const r = await kubectl(['auth', 'can-i', 'update', 'secrets', '-n', opNs, as], { allowFailure: true });
    return r.stdout.trim() === want ? true : undefined;
  });
}

const errors = async (): Promise<number> => (await metrics.errors.get()).values[0]?.value ?? 0;
const ops = (key: string) =>
  recorded
    .filter((e) => e.type === 'operator' && e.key === key)
    .map((e) => (e.type === 'operator' ? [e.operation, e.version, e.outcome] : []));

it('records a rotation once when its Secret write is refused again and again before it succeeds', async () => {
  const term = new LeadershipTerm('replica-once', Date.now() + 600_000, Date.now);
  const run = controller.run(term);
  try {
    await kubectl(['apply', '-n', ns, '-f', '-'], {
      input: keyManifest(ns, 'once-key', { usage: 'AES256' }),
    });
    await waitForKey(ns, 'once-key', 'Ready', (k) => isReady(k));
    expect(ops('once-key')).toEqual([['create', 1, 'ok']]);
    expect(recorded.some((e) => e.type === 'operator' && e.operation === 'create-master-key')).toBe(true);

    await setSecretVerbs(['get', 'list', 'watch', 'create', 'delete']);
    const before = await errors();
    await kubectl(['annotate', '-n', ns, 'key/once-key', 'keyward.io/rotate=one']);
    await waitFor(
      'three refused attempts',
      async () => ((await errors()) >= before + 3 ? true : undefined),
      30_000,
    );
    expect(ops('once-key')).toEqual([['create', 1, 'ok']]);

    await setSecretVerbs(['get', 'list', 'watch', 'create', 'update', 'delete']);
    await waitForKey(ns, 'once-key', 'version 2', (k) => k.status?.currentVersion === 2, 60_000);
    // Later passes (resync, the cache catching up) add nothing.
    controller.resync();
    await sleep(1500);
    expect(ops('once-key')).toEqual([
      ['create', 1, 'ok'],
      ['rotate', 2, 'ok'],
    ]);

    // A refused adoption writes no Secret: it is recorded once, with the status that reports it.
    await kubectl(['annotate', '-n', ns, 'key/once-key', 'keyward.io/cancel-deletion=true']);
    await kubectl(['delete', '-n', ns, 'key/once-key', '--wait=true', '--timeout=60s']);
    await kubectl(['apply', '-n', ns, '-f', '-'], { input: keyManifest(ns, 'once-key', { usage: 'ECDSA' }) });
    // Passes back to back, so that some run on a cache that does not show the status just
    // written yet: they plan the refusal again (found so under load: recorded twice).
    const passes = setInterval(() => controller.resync(), 5);
    await waitForKey(ns, 'once-key', 'MaterialConflict', (k) =>
      (k.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.reason === 'MaterialConflict'),
    );
    await sleep(1500);
    clearInterval(passes);
    expect(ops('once-key')).toEqual([
      ['create', 1, 'ok'],
      ['rotate', 2, 'ok'],
      ['cancel-deletion', 2, 'ok'],
      ['adopt', 2, 'MATERIAL_CONFLICT'],
    ]);
    // Every action names the replica that acted.
    for (const e of recorded) if (e.type === 'operator') expect(e.actor).toBe('replica-once');
  } finally {
    await setSecretVerbs(['get', 'list', 'watch', 'create', 'update', 'delete']).catch(() => {});
    term.end('test over');
    await run;
  }
}, 120_000);
