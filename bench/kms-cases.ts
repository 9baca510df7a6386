/**
 * KMS v2 plugin benchmark cases (issue #14):
 *
 * - `kms-plugin-encrypt` / `kms-plugin-decrypt`: Encrypt and Decrypt calls per second over the
 *   unix socket, the real `keyward kms-plugin --data-dir` process against a bare grpc-js
 *   KeyManagementService in its own process that does the same AES-256-GCM inline (one reused
 *   KeyObject, the same `keyward:v1:` format, the key_id as AAD). Both are called by the same
 *   gRPC client from this process, 16 calls in flight (the apiserver calls far less often: once per
 *   DEK seed, and once per seed it has not opened yet).
 * - `kms-apiserver-start-1000-secrets`: how fast a kube-apiserver starts and lists 1,000 Secrets
 *   stored through the plugin, against the same with the identity provider, each with its own
 *   etcd. Reported as Secrets listed per second of start (1000 / seconds from the apiserver's
 *   exec to the LIST of all 1,000): the ratio is the cost of KMS at start.
 *
 * Run as a script with `--baseline-plugin SOCKET` this file *is* the baseline plugin.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus, Server, ServerCredentials } from '@grpc/grpc-js';
import pino from 'pino';
import { startStandalone } from '../engine/http/standalone.ts';
import { kmsServiceDefinition } from '../engine/kms/proto.ts';
import { DEFAULT_CLUSTER_DIR } from '../scripts/cluster/cluster.ts';
import { encryptionConfig, identityConfig, KmsControlPlane } from '../test/kms/control-plane.ts';
import { KmsClient, type PluginProcess, startPlugin } from '../test/kms/harness.ts';
import type { BenchCase, BenchSample } from './case.ts';

const CONCURRENCY = 16;
const SECRETS = 1000;

// ---- the baseline plugin (child process) ------------------------------------------------------------

function runBaselinePlugin(socketPath: string): void {
  const key = createSecretKey(randomBytes(32));
  const keyId = 'baseline/default/kek/v1/0000000000000000';
  const aad = Buffer.from(`keyward kms-plugin v2\0${keyId}`);
  const server = new Server();
  server.addService(kmsServiceDefinition(), {
    Status: (_call: unknown, cb: (e: null, r: object) => void) =>
      cb(null, { version: 'v2', healthz: 'ok', key_id: keyId }),
    Encrypt: (call: { request: { plaintext: Buffer } }, cb: (e: null, r: object) => void) => {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(aad);
      const body = Buffer.concat([
        nonce,
        cipher.update(call.request.plaintext),
        cipher.final(),
        cipher.getAuthTag(),
      ]);
      cb(null, {
        ciphertext: Buffer.from(`keyward:v1:${body.toString('base64')}`),
        key_id: keyId,
        annotations: {},
      });
    },
    Decrypt: (call: { request: { ciphertext: Buffer } }, cb: (e: object | null, r?: object) => void) => {
      const body = Buffer.from(
        call.request.ciphertext.toString('utf8').slice('keyward:v1:'.length),
        'base64',
      );
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, 12));
        decipher.setAAD(aad);
        decipher.setAuthTag(body.subarray(body.length - 16));
        const plaintext = Buffer.concat([
          decipher.update(body.subarray(12, body.length - 16)),
          decipher.final(),
        ]);
        cb(null, { plaintext });
      } catch {
        cb({ code: GrpcStatus.INVALID_ARGUMENT, details: 'ciphertext is invalid' });
      }
    },
  });
  server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
    process.stdout.write('"kms plugin serving"\n');
  });
}

// ---- load ---------------------------------------------------------------------------------------------

/** `CONCURRENCY` loops calling `call` for `durationMs`; calls per second. */
async function load(durationMs: number, call: () => Promise<unknown>): Promise<BenchSample> {
  let done = 0;
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await call();
        done++;
      }
    }),
  );
  return { opsPerSec: done / ((performance.now() - start) / 1000) };
}

interface PluginPair {
  root: string;
  engine: PluginProcess;
  baseline: ChildProcess;
  baselineClient: KmsClient;
  close(): Promise<void>;
}

/** A data dir with one key, the real plugin on it, and the baseline plugin. */
async function plugins(): Promise<PluginPair> {
  const root = await mkdtemp(join(tmpdir(), 'kw-kms-bench-'));
  try {
    return await startPlugins(root);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

async function startPlugins(root: string): Promise<PluginPair> {
  const dataDir = await dataDirWithKey(root);
  const engine = await startPlugin(
    join(root, 'engine.sock'),
    ['--key', 'default/etcd-kek', '--data-dir', dataDir],
    {
      env: { KEYWARD_LOG_LEVEL: 'info' },
    },
  );
  const baselineSocket = join(root, 'baseline.sock');
  const baseline = spawn(process.execPath, [import.meta.filename, '--baseline-plugin', baselineSocket], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    baseline.stdout!.once('data', () => resolve());
    baseline.once('exit', (code) => reject(new Error(`baseline plugin exited ${code}`)));
  });
  const baselineClient = new KmsClient(baselineSocket);
  return {
    root,
    engine,
    baseline,
    baselineClient,
    close: async () => {
      baselineClient.close();
      baseline.kill('SIGTERM');
      await engine.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A standalone data dir under `root` holding the AES256 key default/etcd-kek. */
async function dataDirWithKey(root: string): Promise<string> {
  const dataDir = join(root, 'data');
  const standalone = await startStandalone({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    tls: { mode: 'off' },
    logger: pino({ level: 'silent' }),
    env: {},
    threads: 1,
  });
  await standalone.service.create('default', { name: 'etcd-kek', usage: 'AES256' });
  await standalone.close();
  return dataDir;
}

function rpcCase(op: 'encrypt' | 'decrypt'): BenchCase {
  let pair: PluginPair | undefined;
  let engineCall: () => Promise<unknown>;
  let baselineCall: () => Promise<unknown>;
  return {
    name: `kms-plugin-${op}`,
    baselineLabel: `bare grpc-js KMS v2 plugin, AES-GCM inline (${CONCURRENCY} in flight, unix socket)`,
    async setup() {
      const p = await plugins();
      pair = p;
      const seed = randomBytes(32);
      if (op === 'encrypt') {
        engineCall = () => p.engine.client.encrypt(seed);
        baselineCall = () => p.baselineClient.encrypt(seed);
      } else {
        const e = await p.engine.client.encrypt(seed);
        const b = await p.baselineClient.encrypt(seed);
        engineCall = () => p.engine.client.decrypt(e.ciphertext, e.key_id);
        baselineCall = () => p.baselineClient.decrypt(b.ciphertext, b.key_id);
      }
    },
    engine: (ms) => load(ms, engineCall),
    baseline: (ms) => load(ms, baselineCall),
    teardown: async () => pair?.close(),
  };
}

// ---- apiserver start ------------------------------------------------------------------------------------

interface StartBench {
  kms: KmsControlPlane;
  identity: KmsControlPlane;
  plugin: PluginProcess;
  root: string;
}

async function fill(cp: KmsControlPlane, ns: string): Promise<void> {
  await cp.kubectlOk(['create', 'namespace', ns]);
  const items = Array.from({ length: SECRETS }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `s-${i}`, namespace: ns },
    stringData: { value: randomBytes(24).toString('hex') },
  }));
  await cp.kubectlOk(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
}

/** Restarts the apiserver and times it from exec to a LIST that returns all Secrets. */
async function timedStart(cp: KmsControlPlane, ns: string): Promise<BenchSample> {
  await cp.stopApiserver();
  const started = performance.now();
  await cp.startApiserver({ ready: true });
  const list = await cp.health(`/api/v1/namespaces/${ns}/secrets`);
  const count = (JSON.parse(list.body) as { items?: unknown[] }).items?.length;
  if (list.status !== 200 || count !== SECRETS)
    throw new Error(`listed ${count} Secrets (HTTP ${list.status})`);
  const seconds = (performance.now() - started) / 1000;
  return { opsPerSec: SECRETS / seconds };
}

function apiserverStartCase(): BenchCase {
  let bench: StartBench | undefined;
  const ns = 'bench';
  return {
    name: 'kms-apiserver-start-1000-secrets',
    baselineLabel: `the same start with the identity provider (${SECRETS} Secrets/s of start, real apiserver)`,
    warmUp: false,
    async setup() {
      const root = await mkdtemp(join(tmpdir(), 'kw-kms-start-'));
      const dataDir = await dataDirWithKey(root);
      const socket = join(root, 'kms.sock');
      const plugin = await startPlugin(socket, ['--key', 'default/etcd-kek', '--data-dir', dataDir], {
        env: { KEYWARD_LOG_LEVEL: 'info' },
      });
      const base = join(DEFAULT_CLUSTER_DIR, 'runs', `bench-kms-${process.pid}`);
      const kms = await KmsControlPlane.start(join(base, 'kms'), encryptionConfig('keyward', socket));
      const identity = await KmsControlPlane.start(join(base, 'identity'), identityConfig());
      await fill(kms, ns);
      await fill(identity, ns);
      bench = { kms, identity, plugin, root };
    },
    engine: () => timedStart(bench!.kms, ns),
    baseline: () => timedStart(bench!.identity, ns),
    async teardown() {
      if (bench === undefined) return;
      await bench.kms.down();
      await bench.identity.down();
      await bench.plugin.stop();
      await rm(bench.root, { recursive: true, force: true });
      await rm(join(DEFAULT_CLUSTER_DIR, 'runs', `bench-kms-${process.pid}`), {
        recursive: true,
        force: true,
      });
    },
  };
}

/** The KMS plugin cases, for bench/run.ts. */
export function kmsCases(): BenchCase[] {
  return [rpcCase('encrypt'), rpcCase('decrypt'), apiserverStartCase()];
}

if (import.meta.main && process.argv[2] === '--baseline-plugin') runBaselinePlugin(process.argv[3]!);
