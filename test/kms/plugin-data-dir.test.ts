/**
 * `keyward kms-plugin --data-dir` as the apiserver sees it: a real plugin process on a unix socket
 * beside a real `keyward serve` on the same data dir (which rotates, disables, deletes), called
 * over gRPC with the published KMS v2 .proto.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeyId } from '../../engine/kms/key-id.ts';
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
let server: Server;
const plugins: PluginProcess[] = [];
/** Every plaintext the suite sent: none may show up in a plugin's log. */
const plaintexts: Buffer[] = [];

async function cli(...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`keyward ${args.join(' ')}: ${r.stderr}`);
  return r.out;
}

async function plugin(
  key = 'default/etcd-kek',
  extra: string[] = [],
  socket = 'kms.sock',
): Promise<PluginProcess> {
  const p = await startPlugin(join(root, socket), ['--key', key, '--data-dir', dataDir, ...extra]);
  plugins.push(p);
  return p;
}

function seed(): Buffer {
  const b = randomBytes(32);
  plaintexts.push(b);
  return b;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-kms-'));
  dataDir = join(root, 'data');
  server = await startServerProcess(dataDir);
  await cli('key', 'create', 'etcd-kek', '--usage', 'AES256');
  await cli('key', 'create', 'other-kek', '--usage', 'AES256');
  await cli('key', 'create', 'signer', '--usage', 'ECDSA');
});

afterAll(async () => {
  for (const p of plugins) await p.kill9();
  await server?.stop();
  // Nothing secret in any plugin's log: not the seeds it sealed, in any encoding, nor the master key.
  const logs = plugins.map((p) => p.output()).join('\n');
  const master = readFileSync(join(dataDir, 'master.key'));
  await rm(root, { recursive: true, force: true });
  for (const secret of [...plaintexts, master]) {
    for (const form of [secret.toString('hex'), secret.toString('base64'), secret.toString('base64url')]) {
      expect(logs).not.toContain(form);
    }
  }
  expect(logs).toContain('"kms plugin serving"');
});

describe('kms-plugin with a local data dir', () => {
  let p: PluginProcess;
  let v1KeyId: string;
  let v1Ciphertext: Buffer;
  let v1Seed: Buffer;

  it('answers Status healthy, with version v2 and the key_id of the current version', async () => {
    p = await plugin();
    const st = await p.client.status();
    expect(st).toEqual({
      version: 'v2',
      healthz: 'ok',
      key_id: expect.stringMatching(/^keyward\/default\/etcd-kek\/v1\//),
    });
    v1KeyId = st.key_id;
    expect(existsSync(p.socketPath)).toBe(true);
  });

  it('encrypts a DEK seed under the Status key_id, in under 1 kB, and decrypts it back', async () => {
    v1Seed = seed();
    const enc = await p.client.encrypt(v1Seed);
    expect(enc.key_id).toBe(v1KeyId);
    expect(enc.ciphertext.length).toBeGreaterThan(0);
    expect(enc.ciphertext.length).toBeLessThan(1024);
    expect(enc.ciphertext.toString('utf8')).toMatch(/^keyward:v1:/);
    expect(enc.ciphertext.includes(v1Seed)).toBe(false);
    v1Ciphertext = enc.ciphertext;
    const dec = await p.client.decrypt(enc.ciphertext, enc.key_id);
    expect(dec.plaintext.equals(v1Seed)).toBe(true);
  });

  it('refuses bad input with gRPC codes and one-line reasons', async () => {
    const bad = async (call: Promise<unknown>, code: GrpcStatus, details: RegExp) => {
      const err = await grpcError(call);
      expect(err.code, err.details).toBe(code);
      expect(err.details).toMatch(details);
      expect(err.details).not.toContain('\n');
    };
    await bad(p.client.encrypt(Buffer.alloc(0)), GrpcStatus.INVALID_ARGUMENT, /plaintext must not be empty/);
    await bad(p.client.encrypt(Buffer.alloc(513)), GrpcStatus.INVALID_ARGUMENT, /at most 512 bytes/);
    const flipped = Buffer.from(v1Ciphertext);
    const at = flipped.length - 3;
    flipped[at] = flipped[at]! ^ 1;
    await bad(p.client.decrypt(flipped, v1KeyId), GrpcStatus.INVALID_ARGUMENT, /ciphertext is invalid/);
    await bad(
      p.client.decrypt(Buffer.from('garbage'), v1KeyId),
      GrpcStatus.INVALID_ARGUMENT,
      /ciphertext is invalid/,
    );
    await bad(
      p.client.decrypt(v1Ciphertext, 'not-ours'),
      GrpcStatus.INVALID_ARGUMENT,
      /not issued by a Keyward/,
    );
    // The ciphertext is bound to its key_id: the same bytes under a derivative key_id do not open.
    await bad(
      p.client.decrypt(v1Ciphertext, `${v1KeyId}~1`),
      GrpcStatus.INVALID_ARGUMENT,
      /ciphertext is invalid/,
    );
    const otherKey = v1KeyId.replace('/etcd-kek/', '/other-kek/');
    await bad(p.client.decrypt(v1Ciphertext, otherKey), GrpcStatus.NOT_FOUND, /names key default\/other-kek/);
    const v2Claim = v1KeyId.replace('/v1/', '/v2/');
    await bad(
      p.client.decrypt(v1Ciphertext, v2Claim),
      GrpcStatus.INVALID_ARGUMENT,
      /does not match its key_id/,
    );
  });

  it('follows a rotation made by keyward serve: a new key_id, and the old one still decrypts', async () => {
    await cli('key', 'rotate', 'etcd-kek');
    const st = await p.client.status();
    expect(st.healthz).toBe('ok');
    expect(parseKeyId(st.key_id)?.version).toBe(2);
    expect(st.key_id).not.toBe(v1KeyId);
    const s = seed();
    const enc = await p.client.encrypt(s);
    expect(enc.key_id).toBe(st.key_id);
    expect(enc.ciphertext.toString()).toMatch(/^keyward:v2:/);
    expect((await p.client.decrypt(enc.ciphertext, enc.key_id)).plaintext.equals(s)).toBe(true);
    expect((await p.client.decrypt(v1Ciphertext, v1KeyId)).plaintext.equals(v1Seed)).toBe(true);
  });

  it('a disabled key makes Status unhealthy with a clear reason and no key_id, and refuses Encrypt and Decrypt', async () => {
    const before = await p.client.status();
    await cli('key', 'disable', 'etcd-kek');
    const st = await waitFor('Status to see the disable', async () => {
      const s = await p.client.status();
      return s.healthz === 'ok' ? undefined : s;
    });
    expect(st).toEqual({
      version: 'v2',
      healthz: expect.stringMatching(/^key default\/etcd-kek is Disabled: .*keyward key enable etcd-kek/),
      key_id: '',
    });
    const enc = await grpcError(p.client.encrypt(seed()));
    expect(enc.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(enc.details).toMatch(/is Disabled/);
    const dec = await grpcError(p.client.decrypt(v1Ciphertext, v1KeyId));
    expect(dec.code).toBe(GrpcStatus.FAILED_PRECONDITION);

    await cli('key', 'enable', 'etcd-kek');
    expect(await p.client.status()).toEqual(before);
    expect((await p.client.decrypt(v1Ciphertext, v1KeyId)).plaintext.equals(v1Seed)).toBe(true);
  });

  it('a hung plugin (SIGSTOP) times the caller out, and answers normally after SIGCONT', async () => {
    p.proc.kill('SIGSTOP');
    try {
      const err = await grpcError(p.client.status(1_000));
      expect(err.code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
      // Calls queued while it was stopped arrive past their deadline; they must not upset it.
      await Promise.allSettled([p.client.encrypt(seed(), 500), p.client.decrypt(v1Ciphertext, v1KeyId, 500)]);
    } finally {
      p.proc.kill('SIGCONT');
    }
    expect((await p.client.status()).healthz).toBe('ok');
    expect((await p.client.decrypt(v1Ciphertext, v1KeyId)).plaintext.equals(v1Seed)).toBe(true);
  });

  it('stops cleanly on SIGTERM and removes its socket', async () => {
    expect(await p.stop()).toBe(0);
    expect(existsSync(p.socketPath)).toBe(false);
    expect(p.output()).toContain('"kms plugin shutting down"');
  });

  it('replaces the socket a killed plugin left, and the key_id survives the restart', async () => {
    const first = await plugin();
    const { key_id } = await first.client.status();
    await first.kill9();
    expect(existsSync(first.socketPath)).toBe(true);
    const second = await plugin();
    expect((await second.client.status()).key_id).toBe(key_id);
    expect((await second.client.decrypt(v1Ciphertext, v1KeyId)).plaintext.equals(v1Seed)).toBe(true);
    await second.stop();
  });

  it('refuses to start on a socket another plugin is serving, with one line', async () => {
    const live = await plugin('default/etcd-kek', [], 'busy.sock');
    const second = await startPlugin(live.socketPath, ['--key', 'default/etcd-kek', '--data-dir', dataDir], {
      expectExit: true,
    });
    plugins.push(second);
    expect(second.proc.exitCode).toBe(1);
    expect(second.output().trim()).toMatch(
      /^keyward: UNAVAILABLE: another process is serving on .*busy\.sock/m,
    );
    expect((await live.client.status()).healthz).toBe('ok');
    await live.stop();
  });

  it('never reports a key_id again once it moved away: switching to another key and back gives a derivative', async () => {
    const a = await plugin('default/etcd-kek', [], 'switch.sock');
    const keyA = (await a.client.status()).key_id;
    const sealedUnderA = await a.client.encrypt(seed());
    await a.stop();
    const b = await plugin('default/other-kek', [], 'switch.sock');
    const keyB = (await b.client.status()).key_id;
    expect(keyB).toMatch(/\/other-kek\//);
    await b.stop();
    const back = await plugin('default/etcd-kek', [], 'switch.sock');
    const st = await back.client.status();
    expect(st.key_id).toBe(`${keyA}~1`);
    const enc = await back.client.encrypt(seed());
    expect(enc.key_id).toBe(`${keyA}~1`);
    // Data sealed under the earlier key_id still opens.
    const opened = await back.client.decrypt(sealedUnderA.ciphertext, sealedUnderA.key_id);
    expect(opened.plaintext.length).toBe(32);
    await back.stop();
    // A plugin on its own socket keeps its own history: no derivative there.
    const elsewhere = await plugin('default/etcd-kek', [], 'elsewhere.sock');
    expect((await elsewhere.client.status()).key_id).toBe(keyA);
    await elsewhere.stop();
  });

  it('reports a key it cannot use, and recovers without a restart once the key exists', async () => {
    const p2 = await plugin('default/late-kek', [], 'late.sock');
    const missing = await p2.client.status();
    expect(missing).toEqual({
      version: 'v2',
      healthz: `key default/late-kek not found in the data dir ${dataDir}`,
      key_id: '',
    });
    expect((await grpcError(p2.client.encrypt(seed()))).code).toBe(GrpcStatus.UNAVAILABLE);
    await cli('key', 'create', 'late-kek', '--usage', 'AES256');
    expect((await p2.client.status()).healthz).toBe('ok');
    await p2.stop();

    const p3 = await plugin('default/signer', [], 'signer.sock');
    expect((await p3.client.status()).healthz).toBe(
      'key default/signer is an ECDSA key; the KMS plugin needs a non-convergent AES256 key',
    );
    await p3.stop();
  });

  it('refuses a key_id of an earlier incarnation once the key was destroyed and created again', async () => {
    await cli('key', 'create', 'temp-kek', '--usage', 'AES256');
    const p4 = await plugin('default/temp-kek', [], 'temp.sock');
    const old = await p4.client.encrypt(seed());
    await cli('key', 'delete', 'temp-kek');
    await cli('key', 'delete-now', 'temp-kek');
    await cli('key', 'create', 'temp-kek', '--usage', 'AES256');
    const st = await p4.client.status();
    expect(st.healthz).toBe('ok');
    expect(st.key_id).not.toBe(old.key_id);
    expect(parseKeyId(st.key_id)?.version).toBe(1);
    const err = await grpcError(p4.client.decrypt(old.ciphertext, old.key_id));
    expect(err.code).toBe(GrpcStatus.NOT_FOUND);
    expect(err.details).toMatch(/an earlier incarnation of the key/);
    await p4.stop();
  });

  it('exits with one line when the data dir does not exist', async () => {
    const p5 = await startPlugin(
      join(root, 'x.sock'),
      ['--key', 'default/etcd-kek', '--data-dir', join(root, 'nope')],
      {
        expectExit: true,
      },
    );
    plugins.push(p5);
    expect(p5.proc.exitCode).toBe(1);
    expect(p5.output().trim()).toMatch(
      /^keyward: INVALID_ARGUMENT: cannot use the data dir .*nope \(ENOENT\)$/,
    );
  });

  it('fails to start with a damaged key_id history instead of reusing a key_id', async () => {
    await writeFile(join(dataDir, 'kms-plugin', 'bad.sock.key-ids.json'), '{"version":1');
    const p6 = await startPlugin(
      join(root, 'bad.sock'),
      ['--key', 'default/etcd-kek', '--data-dir', dataDir],
      {
        expectExit: true,
      },
    );
    plugins.push(p6);
    expect(p6.proc.exitCode).toBe(1);
    expect(p6.output()).toMatch(/keyward: INTERNAL: the key_id history .* is damaged/);
  });
});
