/**
 * `keyward kms-plugin --addr`: the plugin in front of a remote engine (a real `keyward serve`
 * process over HTTPS with its self-signed certificate), including the engine being stopped,
 * hung (SIGSTOP) and given a bad token.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEngineUrl } from '../../engine/kms/remote-backend.ts';
import { freePorts } from '../../scripts/cluster/proc.ts';
import {
  grpcError,
  type PluginProcess,
  runCli,
  startPlugin,
  startServerProcess,
  waitFor,
} from './harness.ts';

type Server = Awaited<ReturnType<typeof startServerProcess>>;

let root: string;
let dataDir: string;
let port: number;
let server: Server;
let tokenFile: string;
let adminToken: string;
const plugins: PluginProcess[] = [];
const plaintexts: Buffer[] = [];

async function cli(...args: string[]): Promise<void> {
  const r = await runCli([...args, '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`keyward ${args.join(' ')}: ${r.stderr}`);
}

async function remotePlugin(socket: string, extra: string[] = []): Promise<PluginProcess> {
  const p = await startPlugin(join(root, socket), [
    '--key',
    'default/etcd-kek',
    '--addr',
    server.url,
    '--token-file',
    tokenFile,
    '--ca-file',
    join(dataDir, 'tls', 'cert.pem'),
    '--state-dir',
    join(root, 'state'),
    ...extra,
  ]);
  plugins.push(p);
  return p;
}

function seed(): Buffer {
  const b = randomBytes(32);
  plaintexts.push(b);
  return b;
}

async function unhealthy(p: PluginProcess, timeoutMs = 30_000): Promise<string> {
  return waitFor(
    'an unhealthy Status',
    async () => {
      const st = await p.client.status();
      return st.healthz === 'ok' ? undefined : st.healthz;
    },
    timeoutMs,
  );
}

async function healthy(p: PluginProcess): Promise<string> {
  return waitFor('a healthy Status', async () => {
    const st = await p.client.status();
    return st.healthz === 'ok' ? st.key_id : undefined;
  });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-kms-remote-'));
  dataDir = join(root, 'data');
  [port] = (await freePorts(1)) as [number];
  server = await startServerProcess(dataDir, ['--port', String(port), '--metrics-port', '0']);
  adminToken = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  tokenFile = join(root, 'token');
  await writeFile(tokenFile, `${adminToken}\n`, { mode: 0o600 });
  await cli('key', 'create', 'etcd-kek', '--usage', 'AES256');
});

afterAll(async () => {
  server?.proc.kill('SIGCONT');
  for (const p of plugins) await p.kill9();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
  const logs = plugins.map((p) => p.output()).join('\n');
  for (const secret of [...plaintexts, Buffer.from(adminToken)]) {
    for (const form of [secret.toString('hex'), secret.toString('base64'), secret.toString('utf8')]) {
      if (form.length >= 16) expect(logs).not.toContain(form);
    }
  }
});

describe('kms-plugin with a remote engine', () => {
  let p: PluginProcess;
  let old: { ciphertext: Buffer; key_id: string };

  it('serves Status, Encrypt and Decrypt through the engine over HTTPS', async () => {
    p = await remotePlugin('remote.sock', ['--timeout', '1s']);
    const st = await p.client.status();
    expect(st).toEqual({
      version: 'v2',
      healthz: 'ok',
      key_id: expect.stringMatching(/^keyward\/default\/etcd-kek\/v1\//),
    });
    const s = seed();
    const enc = await p.client.encrypt(s);
    expect(enc.key_id).toBe(st.key_id);
    expect((await p.client.decrypt(enc.ciphertext, enc.key_id)).plaintext.equals(s)).toBe(true);
  });

  it('gives the same key_ids and ciphertexts as a plugin on the data dir, so a cluster can move between backends', async () => {
    const local = await startPlugin(join(root, 'local.sock'), [
      '--key',
      'default/etcd-kek',
      '--data-dir',
      dataDir,
    ]);
    plugins.push(local);
    const remoteId = (await p.client.status()).key_id;
    expect((await local.client.status()).key_id).toBe(remoteId);
    const s = seed();
    const fromRemote = await p.client.encrypt(s);
    expect((await local.client.decrypt(fromRemote.ciphertext, fromRemote.key_id)).plaintext.equals(s)).toBe(
      true,
    );
    const fromLocal = await local.client.encrypt(s);
    expect((await p.client.decrypt(fromLocal.ciphertext, fromLocal.key_id)).plaintext.equals(s)).toBe(true);
    await local.stop();
  });

  it('follows a rotation and reports a disabled key', async () => {
    const before = (await p.client.status()).key_id;
    old = await p.client.encrypt(seed());
    await cli('key', 'rotate', 'etcd-kek');
    const after = await healthy(p);
    expect(after).not.toBe(before);
    expect(after).toMatch(/\/v2\//);
    expect((await p.client.decrypt(old.ciphertext, old.key_id)).plaintext.length).toBe(32);

    await cli('key', 'disable', 'etcd-kek');
    expect(await unhealthy(p)).toMatch(/^key default\/etcd-kek is Disabled/);
    expect((await p.client.status()).key_id).toBe('');
    expect((await grpcError(p.client.encrypt(seed()))).code).toBe(GrpcStatus.FAILED_PRECONDITION);
    await cli('key', 'enable', 'etcd-kek');
    expect(await healthy(p)).toBe(after);
  });

  it('a hung engine (SIGSTOP) gives an unhealthy Status within the timeout, and recovery after SIGCONT', async () => {
    const keyId = (await p.client.status()).key_id;
    server.proc.kill('SIGSTOP');
    try {
      const started = Date.now();
      const st = await p.client.status(20_000);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(st.healthz).toMatch(/^the engine at https:\/\/127\.0\.0\.1:\d+ did not answer within \d+ ms$/);
      expect(st.key_id).toBe('');
      const err = await grpcError(p.client.decrypt(old.ciphertext, old.key_id, 20_000));
      expect(err.code).toBe(GrpcStatus.UNAVAILABLE);
      expect(err.details).toMatch(/did not answer within/);
    } finally {
      server.proc.kill('SIGCONT');
    }
    expect(await healthy(p)).toBe(keyId);
  });

  it('a stopped engine is reported, and the plugin recovers when it is back', async () => {
    const keyId = (await p.client.status()).key_id;
    await server.stop();
    expect(await p.client.status()).toEqual({
      version: 'v2',
      healthz: expect.stringMatching(
        /^cannot reach the engine at https:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/,
      ),
      key_id: '',
    });
    expect((await grpcError(p.client.encrypt(seed()))).code).toBe(GrpcStatus.UNAVAILABLE);
    server = await startServerProcess(dataDir, ['--port', String(port), '--metrics-port', '0']);
    expect(await healthy(p)).toBe(keyId);
  });

  it('reads a replaced token file again, and says so when the engine refuses the token', async () => {
    await writeFile(tokenFile, 'not-the-token-0123456789\n');
    expect(await unhealthy(p)).toMatch(/^the engine answered UNAUTHENTICATED/);
    await writeFile(tokenFile, `${adminToken}\n`);
    await healthy(p);
  });

  it("fails TLS verification without the engine's CA, naming the fix", async () => {
    const q = await startPlugin(join(root, 'noca.sock'), [
      '--key',
      'default/etcd-kek',
      '--addr',
      server.url,
      '--token-file',
      tokenFile,
    ]);
    plugins.push(q);
    expect((await q.client.status()).healthz).toMatch(
      /^TLS verification of https:\/\/127\.0\.0\.1:\d+ failed \(.+\); set KEYWARD_CA_FILE/,
    );
    expect(q.output()).toContain('the key_id history is kept in memory only');
    await q.stop();
  });

  it('refuses plain http to anything but loopback, so a token never crosses a network in clear', () => {
    expect(() => parseEngineUrl('http://keyward.example:7443')).toThrow(
      /plain http:\/\/ is allowed only on a loopback/,
    );
    expect(() => parseEngineUrl('ftp://x')).toThrow(/must be https/);
    expect(() => parseEngineUrl('https://user:pw@x:1')).toThrow(/just https/);
    expect(parseEngineUrl('http://127.0.0.1:7443').host).toBe('127.0.0.1:7443');
  });
});
