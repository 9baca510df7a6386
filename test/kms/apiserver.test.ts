/**
 * Keyward encrypts the cluster's own Secrets at rest: the project's real kube-apiserver (v1.35.4)
 * with an EncryptionConfiguration whose first provider for Secrets is `keyward kms-plugin`
 * (KMS v2, identity after), etcd read directly with etcdctl, and a real `keyward serve` on the
 * plugin's data dir to rotate and disable the key as an administrator would.
 *
 * It runs its own etcd and apiserver (it restarts the apiserver and stops the plugin), in the
 * cluster project only because that project builds the binaries.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeyId } from '../../engine/kms/key-id.ts';
import { DEFAULT_CLUSTER_DIR } from '../../scripts/cluster/cluster.ts';
import { encryptionConfig, KmsControlPlane } from './control-plane.ts';
import { type PluginProcess, runCli, startPlugin, startServerProcess, waitFor } from './harness.ts';

const PROVIDER = 'keyward';
const PREFIX = `k8s:enc:kms:v2:${PROVIDER}:`;

type Server = Awaited<ReturnType<typeof startServerProcess>>;

let root: string;
let clusterDir: string;
let dataDir: string;
let socketPath: string;
let server: Server;
let plugin: PluginProcess | undefined;
const stoppedPlugins: PluginProcess[] = [];
let cp: KmsControlPlane;
const ns = `kms-${randomBytes(3).toString('hex')}`;
/** name → plaintext value of every Secret the suite wrote. */
const secrets = new Map<string, string>();

async function keyCli(...args: string[]): Promise<void> {
  const r = await runCli(['key', ...args, '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`keyward key ${args.join(' ')}: ${r.stderr}`);
}

async function startKmsPlugin(): Promise<PluginProcess> {
  plugin = await startPlugin(socketPath, ['--key', 'default/etcd-kek', '--data-dir', dataDir]);
  return plugin;
}

async function stopKmsPlugin(): Promise<void> {
  if (plugin === undefined) return;
  const p = plugin;
  plugin = undefined;
  stoppedPlugins.push(p);
  expect(await p.stop()).toBe(0);
}

function secretManifest(name: string, value: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: ns },
    stringData: { value },
  });
}

async function createSecret(name: string): Promise<string> {
  const value = `kw-secret-${randomBytes(12).toString('hex')}`;
  await cp.kubectlOk(['create', '-f', '-'], secretManifest(name, value));
  secrets.set(name, value);
  return value;
}

async function readSecret(name: string): Promise<string> {
  const out = await cp.kubectlOk(['get', 'secret', '-n', ns, name, '-o', 'jsonpath={.data.value}']);
  return Buffer.from(out, 'base64').toString('utf8');
}

/** The stored value of a Secret, checked to be KMS v2 ciphertext that holds no plaintext. */
async function stored(name: string): Promise<Buffer> {
  const raw = await cp.etcdGet(`/registry/secrets/${ns}/${name}`);
  expect(raw.subarray(0, PREFIX.length).toString('latin1')).toBe(PREFIX);
  const value = secrets.get(name)!;
  for (const form of [value, Buffer.from(value).toString('base64')])
    expect(raw.includes(form), `${name}: plaintext in etcd`).toBe(false);
  return raw;
}

/** The key_id a stored value was sealed under (the EncryptedObject holds it in clear). */
async function storedKeyId(name: string): Promise<string> {
  const raw = (await stored(name)).toString('latin1');
  const m = /keyward\/[a-z0-9-]+\/[a-z0-9_-]+\/v\d+\/[0-9a-f]{16}(?:~\d+)?/.exec(raw);
  if (m === null) throw new Error(`no key_id in the stored value of ${name}`);
  return m[0];
}

/** Waits until `path` answers 200 (`pass`) or not (`fail`); resolves with the last body. */
function health(path: string, want: 'pass' | 'fail', timeoutMs = 60_000): Promise<string> {
  return waitFor(
    `${path} to ${want}`,
    async () => {
      const res = await cp.health(path);
      return (res.status === 200) === (want === 'pass') ? res.body : undefined;
    },
    timeoutMs,
    1_000,
  );
}

/** A Secret read and a Secret write both fail, and nothing else does. */
async function secretsUnusable(): Promise<void> {
  const read = await cp.kubectl(['get', 'secret', '-n', ns, 'before-0']);
  expect(read.code).not.toBe(0);
  expect(read.stderr).toMatch(/Internal error occurred/);
  const write = await cp.kubectl(
    ['create', '-f', '-'],
    secretManifest(`refused-${randomBytes(3).toString('hex')}`, 'x'),
  );
  expect(write.code).not.toBe(0);
  expect(write.stderr).toMatch(/Internal error occurred/);
  // ConfigMaps are not encrypted: they keep working.
  await cp.kubectlOk(['get', 'configmap', '-n', ns, 'plain']);
}

/** Every Secret written so far reads back, and a new one can be written and read. */
async function secretsUsable(name: string): Promise<void> {
  for (const [n, value] of secrets) expect(await readSecret(n)).toBe(value);
  await createSecret(name);
  expect(await readSecret(name)).toBe(secrets.get(name));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kw-kms-'));
  socketPath = join(root, 'kms.sock');
  dataDir = join(root, 'data');
  clusterDir = join(DEFAULT_CLUSTER_DIR, 'runs', `kms-${process.pid}`);
  server = await startServerProcess(dataDir);
  await keyCli('create', 'etcd-kek', '--usage', 'AES256');
  await startKmsPlugin();
  cp = await KmsControlPlane.start(clusterDir, encryptionConfig(PROVIDER, socketPath));
  await cp.kubectlOk(['create', 'namespace', ns]);
});

afterAll(async () => {
  await cp?.down();
  await plugin?.kill9();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
  await rm(clusterDir, { recursive: true, force: true });
  // Nothing secret in the plugin's logs, in any encoding.
  const logs = [...stoppedPlugins, ...(plugin ? [plugin] : [])].map((p) => p.output()).join('\n');
  for (const value of secrets.values()) {
    expect(logs).not.toContain(value);
    expect(logs).not.toContain(Buffer.from(value).toString('base64'));
  }
});

describe('Secrets at rest through keyward kms-plugin', () => {
  let firstKeyId: string;

  it('stores Secrets in etcd as k8s:enc:kms:v2:keyward: ciphertext with no plaintext, and kubectl reads them back', async () => {
    firstKeyId = (await plugin!.client.status()).key_id;
    expect(parseKeyId(firstKeyId)?.version).toBe(1);
    for (let i = 0; i < 3; i++) await createSecret(`before-${i}`);
    for (const [name, value] of secrets) {
      expect(await storedKeyId(name)).toBe(firstKeyId);
      expect(await readSecret(name)).toBe(value);
    }
    // A ConfigMap is not in the configuration: it stays in clear, which shows the check above means something.
    await cp.kubectlOk(['create', 'configmap', '-n', ns, 'plain', '--from-literal=v=visible-value']);
    const raw = await cp.etcdGet(`/registry/configmaps/${ns}/plain`);
    expect(raw.includes('visible-value')).toBe(true);
    expect((await cp.health('/readyz/kms-providers')).status).toBe(200);
  });

  it('keeps every Secret readable across an apiserver restart', async () => {
    await cp.restartApiserver({ ready: true });
    for (const [name, value] of secrets) expect(await readSecret(name)).toBe(value);
    await createSecret('after-restart');
    expect(await storedKeyId('after-restart')).toBe(firstKeyId);
  });

  it('after a rotation, new writes carry the new key_id, old Secrets stay readable, and a rewrite of all Secrets moves them', async () => {
    await keyCli('rotate', 'etcd-kek');
    const newKeyId = (await plugin!.client.status()).key_id;
    expect(parseKeyId(newKeyId)?.version).toBe(2);
    // The apiserver polls Status every minute, and at /readyz once its last answer is 20 s old.
    let n = 0;
    await waitFor(
      'a new Secret sealed under the new key_id',
      async () => {
        await cp.health('/readyz');
        const name = `probe-${n++}`;
        await createSecret(name);
        return (await storedKeyId(name)) === newKeyId ? true : undefined;
      },
      120_000,
      2_000,
    );
    for (const name of ['before-0', 'before-1', 'before-2', 'after-restart'])
      expect(await storedKeyId(name)).toBe(firstKeyId);
    for (const [name, value] of secrets) expect(await readSecret(name)).toBe(value);

    // The storage migration of the Kubernetes docs: read every Secret and write it back.
    const all = await cp.kubectlOk(['get', 'secrets', '-A', '-o', 'json']);
    await cp.kubectlOk(['replace', '-f', '-'], all);
    for (const [name, value] of secrets) {
      expect(await storedKeyId(name), name).toBe(newKeyId);
      expect(await readSecret(name)).toBe(value);
    }
  });

  it("a disabled key fails the apiserver's kms-providers check with the plugin's reason, a restarted apiserver cannot use Secrets, and enabling recovers", async () => {
    await keyCli('disable', 'etcd-kek');
    const body = await health('/readyz/kms-providers', 'fail');
    expect(body).toContain('got unexpected healthz status: key default/etcd-kek is Disabled');
    // A disabled key gives no key_id: a new apiserver gets no DEK seed, so it can neither read
    // Secrets it has not opened nor write any (the running one stops writing within 3 minutes,
    // as with a stopped plugin below).
    await cp.restartApiserver({ ready: false });
    await secretsUnusable();

    await keyCli('enable', 'etcd-kek');
    await health('/readyz', 'pass');
    await secretsUsable('after-enable');
  }, 180_000);

  it('with the plugin stopped: /readyz reports kms-providers, writes fail clearly once the DEK expires, and all recovers when it returns', async () => {
    await stopKmsPlugin();
    const body = await health('/readyz/kms-providers', 'fail');
    expect(body).toMatch(
      /kms-provider-0: failed to perform status section of the healthz check for KMS Provider keyward/,
    );
    const verbose = await cp.health('/readyz?verbose');
    expect(verbose.status).toBe(500);
    expect(verbose.body).toContain('[-]kms-providers failed');
    expect((await cp.health('/livez')).status).toBe(200);

    // KMS v2 lets the apiserver keep writing with its current DEK seed for up to 3 minutes
    // after the last good Status; then every write of a Secret fails.
    let n = 0;
    const failure = await waitFor(
      'a Secret write to fail',
      async () => {
        const name = `down-${n++}`;
        const value = `kw-secret-${randomBytes(12).toString('hex')}`;
        const r = await cp.kubectl(['create', '-f', '-'], secretManifest(name, value));
        if (r.code === 0) {
          secrets.set(name, value);
          return undefined;
        }
        return r.stderr;
      },
      300_000,
      5_000,
    );
    expect(failure).toMatch(/Internal error occurred: .*encryptedDEKSource with keyID hash .* expired/);
    // Secrets already read are served from the apiserver's cache of opened DEKs.
    expect(await readSecret('before-0')).toBe(secrets.get('before-0'));

    await startKmsPlugin();
    await health('/readyz/kms-providers', 'pass', 90_000);
    await secretsUsable('back');
  }, 480_000);

  it('an apiserver restarted while the plugin is down cannot read or write Secrets, and recovers when the plugin returns', async () => {
    await stopKmsPlugin();
    await cp.restartApiserver({ ready: false });
    expect((await cp.health('/readyz')).status).toBe(500);
    await secretsUnusable();

    await startKmsPlugin();
    await health('/readyz', 'pass', 90_000);
    await secretsUsable('after-recovery');
  }, 300_000);
});
