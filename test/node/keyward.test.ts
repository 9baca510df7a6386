// Keyward as users run it: `helm install` of charts/keyward with the image built here, on a real
// node, called from workload pods with their own ServiceAccount tokens. The steps build on each
// other (one release, like a user's cluster): install, examples, a workload in namespace `shop`
// encrypting through the Service, the refusals, hardening seen from inside, operator failover,
// a rolling restart under load, an upgrade, and an uninstall that keeps the keys.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { helm, kubectl, waitFor } from '../cluster/harness.ts';
import {
  chartImageValues,
  describeOnNode,
  freshNamespace,
  keyReady,
  keywardImage,
  podNames,
  waitPodsReady,
} from './harness.ts';
import {
  type CallResult,
  MOUNTS,
  runClient,
  type SigtermProbe,
  type StreamStats,
  workloadPod,
} from './workload.ts';

const RELEASE = 'keyward';
const NS = 'keyward-system';
// The names; a node started by hand may still hold them from an earlier run (Keys keep
// their namespace until erased), and then a fresh suffix keeps this run independent.
let SHOP = 'shop';
let EXAMPLES = 'examples';
const ENGINE_URL = `https://keyward-engine.${NS}.svc`;
const CHART = join(REPO_ROOT, 'charts', 'keyward');

const engineSelector = 'app.kubernetes.io/component=engine';
const operatorSelector = 'app.kubernetes.io/component=operator';

async function leaseHolder(): Promise<string> {
  const out = await kubectl(
    ['get', 'lease', `${RELEASE}-operator`, '-n', NS, '-o', 'jsonpath={.spec.holderIdentity}'],
    {
      allowFailure: true,
    },
  );
  return out.stdout.trim();
}

/** The CA the chart publishes in its own namespace. */
async function chartCa(): Promise<string> {
  return (await kubectl(['get', 'configmap', `${RELEASE}-ca`, '-n', NS, '-o', 'jsonpath={.data.ca\\.crt}']))
    .stdout;
}

/**
 * Waits until the operator's copy of the engine's CA, `keyward-ca.crt` in the workload's namespace
 * (issue #17: nobody copies it by hand), holds `ca`.
 */
async function waitForCaCopy(ca: string): Promise<void> {
  await waitFor(
    `keyward-ca.crt in ${SHOP} to hold the chart's CA`,
    async () => {
      const copy = await kubectl(
        ['get', 'configmap', 'keyward-ca.crt', '-n', SHOP, '-o', 'jsonpath={.data.ca\\.crt}'],
        { allowFailure: true },
      );
      return copy.code === 0 && copy.stdout.trim() === ca.trim() ? true : undefined;
    },
    120_000,
    1000,
  );
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** One call from the workload pod `pod` in `shop`, with the token at `tokenFile`. */
function call(pod: string, path: string, body: object, tokenFile = MOUNTS.token): Promise<CallResult> {
  return runClient<CallResult>(SHOP, pod, {
    mode: 'call',
    url: ENGINE_URL,
    method: 'POST',
    path,
    body,
    tokenFile,
  });
}

/** Polls an encrypt from the app pod until the Service answers (kube-proxy lags endpoints). */
async function encryptWhenServed(key: string, text: string): Promise<string> {
  return waitFor(
    `an encrypt with ${key} through the Service`,
    async () => {
      const res = await call('app-client', `/v1/namespaces/${SHOP}/keys/${key}/encrypt`, {
        plaintext: b64(text),
      });
      if (res.status !== 200) throw new Error(`${res.status} ${res.body}`);
      return (JSON.parse(res.body) as { ciphertext: string }).ciphertext;
    },
    120_000,
    1000,
  );
}

async function decrypt(ciphertext: string, key = 'orders'): Promise<string> {
  const res = await call('app-client', `/v1/namespaces/${SHOP}/keys/${key}/decrypt`, { ciphertext });
  expect(res.status, res.body).toBe(200);
  return Buffer.from((JSON.parse(res.body) as { plaintext: string }).plaintext, 'base64').toString();
}

const keyManifest = (name: string) => `apiVersion: keyward.io/v1alpha1
kind: Key
metadata: {name: ${name}, namespace: ${SHOP}}
spec: {usage: AES256, memo: node tier}
`;

describeOnNode('Keyward on a real node', () => {
  let ordersCiphertext = '';

  beforeAll(async () => {
    // A node started by hand may still hold an earlier run's release.
    await helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '120s'], {
      allowFailure: true,
      timeoutMs: 150_000,
    });
    SHOP = await freshNamespace('shop');
    EXAMPLES = await freshNamespace('examples');
  });

  afterAll(async () => {
    // Erase this run's keys while an operator still runs (Keys hold their namespace until
    // then), drop the namespaces, then the release. The CRD stays (crds.keep).
    for (const ns of [SHOP, EXAMPLES]) {
      await kubectl(
        ['annotate', 'keys.keyward.io', '--all', '-n', ns, 'keyward.io/delete-now=true', '--overwrite'],
        {
          allowFailure: true,
        },
      );
      await kubectl(['delete', 'keys.keyward.io', '--all', '-n', ns, '--timeout=120s'], {
        allowFailure: true,
        timeoutMs: 130_000,
      });
      await kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
    }
    await helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '120s'], {
      allowFailure: true,
      timeoutMs: 150_000,
    });
  });

  it('helm install --wait: 2 operators (one leader) and 2 engines become Ready through their probes', async () => {
    const started = performance.now();
    await helm(
      [
        'install',
        RELEASE,
        CHART,
        '-n',
        NS,
        '--create-namespace',
        '--wait',
        '--timeout',
        '300s',
        ...chartImageValues(),
      ],
      {
        timeoutMs: 330_000,
      },
    );
    console.log(`helm install --wait took ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const deployments = JSON.parse(
      (await kubectl(['get', 'deployments', '-n', NS, '-o', 'json'])).stdout,
    ) as {
      items: { metadata: { name: string }; status: { readyReplicas?: number } }[];
    };
    const ready = Object.fromEntries(
      deployments.items.map((d) => [d.metadata.name, d.status.readyReplicas ?? 0]),
    );
    expect(ready).toEqual({ [`${RELEASE}-engine`]: 2, [`${RELEASE}-operator`]: 2 });
    const operators = await podNames(NS, operatorSelector);
    expect(operators).toHaveLength(2);
    await waitFor(
      'a leader',
      async () => (operators.includes(await leaseHolder()) ? true : undefined),
      60_000,
      500,
    );
  });

  it('every file in examples/ is applied with kubectl and becomes Ready', async () => {
    const files = readdirSync(join(REPO_ROOT, 'examples')).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files)
      await kubectl(['apply', '-n', EXAMPLES, '-f', join(REPO_ROOT, 'examples', file)]);
    const names = (
      await kubectl(['get', 'keys.keyward.io', '-n', EXAMPLES, '-o', 'jsonpath={.items[*].metadata.name}'])
    ).stdout
      .split(/\s+/)
      .filter(Boolean);
    expect(names).toHaveLength(files.length);
    for (const name of names) await keyReady(EXAMPLES, name);
  });

  it('a workload in shop with ServiceAccount app, bound to keyward-encrypter and keyward-decrypter, encrypts and decrypts through the Service with TLS verified', async () => {
    await kubectl(['apply', '-f', '-'], { input: keyManifest('orders') });
    await keyReady(SHOP, 'orders');
    for (const sa of ['app', 'other'])
      await kubectl(['create', 'serviceaccount', sa, '-n', SHOP], { allowFailure: true });
    for (const role of ['keyward-encrypter', 'keyward-decrypter']) {
      await kubectl(
        [
          'create',
          'rolebinding',
          `app-${role}`,
          '-n',
          SHOP,
          `--clusterrole=${role}`,
          `--serviceaccount=${SHOP}:app`,
        ],
        {
          allowFailure: true,
        },
      );
    }
    // The operator keeps the chart's CA in every namespace that holds a Key, as keyward-ca.crt:
    // the workload mounts it from its own namespace and verifies the engine's certificate with it.
    const ca = await chartCa();
    expect(ca).toContain('BEGIN CERTIFICATE');
    await waitForCaCopy(ca);
    const image = keywardImage();
    await kubectl(['apply', '-f', '-'], {
      input: `${workloadPod(SHOP, 'app-client', 'app', image, 'keyward-ca.crt')}---\n${workloadPod(SHOP, 'other-client', 'other', image, 'keyward-ca.crt')}`,
    });
    await waitPodsReady(SHOP, 'app in (app-client,other-client)');

    ordersCiphertext = await encryptWhenServed('orders', 'card 4111 1111');
    expect(ordersCiphertext).toMatch(/^keyward:v1:/);
    expect(await decrypt(ordersCiphertext)).toBe('card 4111 1111');
  });

  it('a pod with another ServiceAccount gets 403, and a token of another audience gets 401', async () => {
    const path = `/v1/namespaces/${SHOP}/keys/orders/encrypt`;
    const denied = await call('other-client', path, { plaintext: b64('x') });
    expect(denied.status, denied.body).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ error: { code: 'PERMISSION_DENIED' } });
    const wrongAudience = await call('app-client', path, { plaintext: b64('x') }, MOUNTS.otherAudienceToken);
    expect(wrongAudience.status, wrongAudience.body).toBe(401);
    expect(JSON.parse(wrongAudience.body)).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
  });

  it('the image is hardened as seen from inside a running engine: uid 65532, read-only root, no capabilities', async () => {
    const [engine] = await podNames(NS, engineSelector);
    const script = `const fs = require('node:fs');
      let write = 'written';
      try { fs.writeFileSync('/app/probe', 'x'); } catch (e) { write = e.code; }
      const status = fs.readFileSync('/proc/self/status', 'utf8');
      const cap = (name) => status.match(new RegExp(name + ':\\\\s*([0-9a-f]+)'))[1];
      const shell = ['/bin/sh', '/bin/bash', '/usr/bin/npm'].filter((p) => fs.existsSync(p));
      console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), write, capEff: cap('CapEff'), capPrm: cap('CapPrm'), capBnd: cap('CapBnd'), noNewPrivs: cap('NoNewPrivs'), shell }));`;
    const out = await kubectl([
      'exec',
      '-n',
      NS,
      engine as string,
      '-c',
      'engine',
      '--',
      '/usr/local/bin/node',
      '-e',
      script,
    ]);
    expect(JSON.parse(out.stdout.trim())).toEqual({
      uid: 65532,
      gid: 65532,
      write: 'EROFS',
      capEff: '0000000000000000',
      capPrm: '0000000000000000',
      capBnd: '0000000000000000',
      noNewPrivs: '1',
      shell: [],
    });
  });

  it('force-deleting the leader operator pod hands leadership over, and a Key created afterwards becomes Ready', async () => {
    const before = await podNames(NS, operatorSelector);
    const leader = await leaseHolder();
    expect(before).toContain(leader);
    const standby = before.find((p) => p !== leader);
    await kubectl(['delete', 'pod', leader, '-n', NS, '--grace-period=0', '--force'], { allowFailure: true });
    const started = performance.now();
    const next = await waitFor(
      'a new leader',
      async () => {
        const holder = await leaseHolder();
        return holder !== '' && holder !== leader ? holder : undefined;
      },
      120_000,
      250,
    );
    console.log(
      `failover: ${leader} -> ${next} in ${((performance.now() - started) / 1000).toFixed(1)} s (${next === standby ? 'the standby' : 'a replacement pod'})`,
    );
    expect(next).not.toBe(leader);
    await kubectl(['apply', '-f', '-'], { input: keyManifest('after-failover') });
    await keyReady(SHOP, 'after-failover');
    const ciphertext = await encryptWhenServed('after-failover', 'after failover');
    expect(await decrypt(ciphertext, 'after-failover')).toBe('after failover');
    await waitPodsReady(NS, operatorSelector);
  });

  it('on SIGTERM an engine fails readiness at once, keeps serving (closing each connection) for its shutdown delay, then exits inside the grace period', async () => {
    const [engine] = await podNames(NS, engineSelector);
    const ip = (
      await kubectl(['get', 'pod', engine as string, '-n', NS, '-o', 'jsonpath={.status.podIP}'])
    ).stdout.trim();
    const probe = runClient<SigtermProbe>(
      SHOP,
      'app-client',
      {
        mode: 'sigterm-probe',
        url: `https://${ip}:8443`,
        servername: `keyward-engine.${NS}.svc`,
        ns: SHOP,
        key: 'orders',
        tokenFile: MOUNTS.token,
        maxSeconds: 60,
        timeoutMs: 2000,
      },
      90_000,
    );
    await new Promise((ok) => setTimeout(ok, 1500));
    const deleted = performance.now();
    await kubectl(['delete', 'pod', engine as string, '-n', NS, '--wait=false']);
    const gone = kubectl(['wait', '--for=delete', `pod/${engine}`, '-n', NS, '--timeout=90s'], {
      timeoutMs: 100_000,
    }).then(() => (performance.now() - deleted) / 1000);
    const [seen, goneAfter] = await Promise.all([probe, gone]);
    console.log(
      `SIGTERM probe of ${engine}: ${JSON.stringify(seen)}; pod gone ${goneAfter.toFixed(1)} s after the delete`,
    );
    expect(seen.firstNotReady).not.toBeNull();
    // Served for the shutdown delay (5 s) after readiness failed, every answer closing its
    // connection so that keep-alive clients move to another replica...
    expect((seen.lastEncryptOk ?? 0) - (seen.firstNotReady ?? 0)).toBeGreaterThanOrEqual(3500);
    expect(seen.okAfterNotReady).toBeGreaterThan(5);
    expect(seen.okAfterNotReadyWithClose).toBe(seen.okAfterNotReady);
    expect(seen.failuresWhileServing).toBe(0);
    // ...then stopped listening, well inside the 30 s grace period.
    expect(seen.firstRefused).not.toBeNull();
    expect(goneAfter).toBeLessThan(30);
    await waitPodsReady(NS, engineSelector);
  });

  it('kubectl rollout restart of the engine under a steady stream from a workload pod loses no request', async () => {
    const before = await podNames(NS, engineSelector);
    const stream = runClient<StreamStats>(
      SHOP,
      'app-client',
      {
        mode: 'stream',
        url: ENGINE_URL,
        ns: SHOP,
        key: 'orders',
        tokenFile: MOUNTS.token,
        concurrency: 2,
        maxSeconds: 400,
      },
      450_000,
    );
    let settled = false;
    void stream.finally(() => {
      settled = true;
    });
    // Let it run in steady state first.
    await new Promise((ok) => setTimeout(ok, 3000));
    expect(settled).toBe(false);
    const started = performance.now();
    await kubectl(['rollout', 'restart', `deployment/${RELEASE}-engine`, '-n', NS]);
    await kubectl(['rollout', 'status', `deployment/${RELEASE}-engine`, '-n', NS, '--timeout=300s'], {
      timeoutMs: 310_000,
    });
    // Until the old pods are gone (their shutdown delay and drain), plus a little steady state.
    await waitFor(
      'the old engine pods gone',
      async () => {
        const now = await podNames(NS, engineSelector);
        return now.every((p) => !before.includes(p)) && now.length === 2 ? true : undefined;
      },
      120_000,
      500,
    );
    const rolloutSeconds = (performance.now() - started) / 1000;
    await new Promise((ok) => setTimeout(ok, 2000));
    await kubectl([
      'exec',
      '-n',
      SHOP,
      'app-client',
      '--',
      '/usr/local/bin/node',
      '-e',
      `require('node:fs').writeFileSync('${MOUNTS.stopFile}', '')`,
    ]);
    const stats = await stream;
    console.log(
      `rollout restart under load (${rolloutSeconds.toFixed(1)} s): sent ${stats.sent}, succeeded ${stats.succeeded}, retried ${stats.retried}, failed ${stats.failed}, wrong ${stats.wrong}; ${JSON.stringify(stats.errors)}`,
    );
    expect(stats.failed).toBe(0);
    expect(stats.wrong).toBe(0);
    expect(stats.succeeded).toBe(stats.sent);
    expect(stats.sent).toBeGreaterThan(50);
    await kubectl([
      'exec',
      '-n',
      SHOP,
      'app-client',
      '--',
      '/usr/local/bin/node',
      '-e',
      `require('node:fs').rmSync('${MOUNTS.stopFile}')`,
    ]);
  });

  it('helm upgrade with a changed value rolls every pod, and every key still works', async () => {
    const before = [...(await podNames(NS, engineSelector)), ...(await podNames(NS, operatorSelector))];
    await helm(
      [
        'upgrade',
        RELEASE,
        CHART,
        '-n',
        NS,
        '--reuse-values',
        '--set',
        'logLevel=debug',
        '--wait',
        '--timeout',
        '300s',
      ],
      {
        timeoutMs: 330_000,
      },
    );
    await waitFor(
      'only new pods',
      async () => {
        const after = [...(await podNames(NS, engineSelector)), ...(await podNames(NS, operatorSelector))];
        return after.length === 4 && after.every((p) => !before.includes(p)) ? true : undefined;
      },
      180_000,
      1000,
    );
    await waitPodsReady(NS, 'app.kubernetes.io/instance=keyward');
    const env = (
      await kubectl([
        'get',
        'deployment',
        `${RELEASE}-engine`,
        '-n',
        NS,
        '-o',
        'jsonpath={.spec.template.spec.containers[0].env[0].value}',
      ])
    ).stdout;
    expect(env).toBe('debug');
    expect(await decrypt(ordersCiphertext)).toBe('card 4111 1111');
    const fresh = await encryptWhenServed('orders', 'after upgrade');
    expect(await decrypt(fresh)).toBe('after upgrade');
    for (const name of (
      await kubectl(['get', 'keys.keyward.io', '-n', EXAMPLES, '-o', 'jsonpath={.items[*].metadata.name}'])
    ).stdout
      .split(/\s+/)
      .filter(Boolean)) {
      await keyReady(EXAMPLES, name);
    }
  });

  it('helm uninstall keeps the CRD, the Keys and their material (docs/helm.md); a reinstall decrypts old ciphertexts', async () => {
    const secretsBefore = (
      await kubectl(['get', 'secrets', '-n', NS, '-o', 'jsonpath={.items[*].metadata.name}'])
    ).stdout
      .split(/\s+/)
      .filter((s) => s !== '' && !s.startsWith('sh.helm.release') && s !== `${RELEASE}-engine-tls`);
    expect(secretsBefore).toContain('keyward-master-key');
    expect(secretsBefore.length).toBeGreaterThan(3);
    await helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '180s'], { timeoutMs: 200_000 });
    await waitFor(
      'the release pods gone',
      async () =>
        (await podNames(NS, 'app.kubernetes.io/instance=keyward')).length === 0 ? true : undefined,
      120_000,
      1000,
    );
    expect((await kubectl(['get', 'crd', 'keys.keyward.io'], { allowFailure: true })).code).toBe(0);
    const keys = (
      await kubectl(['get', 'keys.keyward.io', '-n', SHOP, '-o', 'jsonpath={.items[*].metadata.name}'])
    ).stdout;
    expect(keys.split(/\s+/)).toEqual(expect.arrayContaining(['orders', 'after-failover']));
    const secretsAfter = (
      await kubectl(['get', 'secrets', '-n', NS, '-o', 'jsonpath={.items[*].metadata.name}'])
    ).stdout.split(/\s+/);
    expect(secretsAfter).toEqual(expect.arrayContaining(secretsBefore));

    await helm(['install', RELEASE, CHART, '-n', NS, '--wait', '--timeout', '300s', ...chartImageValues()], {
      timeoutMs: 330_000,
    });
    await keyReady(SHOP, 'orders');
    // The CA is new (the TLS Secret went with the release): the operator updates the copy in the
    // workload's namespace, the kubelet updates the mounted file, and the running workload then
    // verifies the new certificate with it.
    await waitForCaCopy(await chartCa());
    await waitFor(
      'the old ciphertext decrypts after the reinstall',
      async () => {
        const res = await call('app-client', `/v1/namespaces/${SHOP}/keys/orders/decrypt`, {
          ciphertext: ordersCiphertext,
        });
        if (res.status !== 200) throw new Error(`${res.status} ${res.body}`);
        return Buffer.from((JSON.parse(res.body) as { plaintext: string }).plaintext, 'base64').toString();
      },
      180_000,
      2000,
    ).then((text) => expect(text).toBe('card 4111 1111'));
  });
});
