/** The full lifecycle through the `keyward` CLI against a real `keyward serve` process (TLS auto). */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAIN, runCli, type ServerProcess, startServerProcess } from './harness.ts';

let dataDir: string;
let server: ServerProcess;
const kw = (args: string[], input?: string | Buffer) =>
  runCli([...args, '--data-dir', dataDir], input === undefined ? {} : { input });

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-cli-'));
  server = await startServerProcess(dataDir, ['--tls', 'auto']);
});
afterAll(async () => {
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

// Each command is a fresh Node process: generous timeouts on busy 2-core machines.
describe('keyward CLI', { timeout: 120_000 }, () => {
  it('serve prints the URL, the certificate fingerprint and the new admin token once', () => {
    const out = server.output();
    expect(out).toContain(`Keyward listening on ${server.url}`);
    expect(out).toMatch(/SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    expect(out).toContain(server.token);
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:/);
  });

  it('manages a key through its whole lifecycle', async () => {
    const created = await kw([
      'key',
      'create',
      'cli-key',
      '--usage',
      'AES256',
      '--rotation-days',
      '30',
      '--memo',
      'from cli',
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.out).toContain('Created key cli-key.');
    expect(created.out).toMatch(/Rotation:\s+every 30 days/);

    const list = await kw(['key', 'list']);
    expect(list.out).toMatch(/^NAME\s+USAGE\s+STATE/);
    expect(list.out).toMatch(/cli-key\s+AES256\s+Enabled\s+1/);

    const json = await kw(['key', 'get', 'cli-key', '-o', 'json']);
    expect(JSON.parse(json.out)).toMatchObject({ name: 'cli-key', memo: 'from cli', state: 'Enabled' });

    const updated = await kw([
      'key',
      'update',
      'cli-key',
      '--memo',
      'changed',
      '--no-rotation',
      '-o',
      'json',
    ]);
    expect(JSON.parse(updated.out)).toMatchObject({ memo: 'changed', rotation: { enabled: false } });

    const data = Buffer.from([0, 1, 2, 255, 254, 10, 13]);
    const enc = await kw(['encrypt', '--key', 'cli-key', '--context', 'ignored-not-convergent'], data);
    // A non-convergent key refuses a context: one clear line, non-zero exit.
    expect(enc.code).toBe(1);
    expect(enc.stderr.trim().split('\n')).toHaveLength(1);
    expect(enc.stderr).toMatch(/^keyward: INVALID_ARGUMENT: .*context/);

    const ct = await kw(['encrypt', '--key', 'cli-key'], data);
    expect(ct.code, ct.stderr).toBe(0);
    expect(ct.out).toMatch(/^keyward:v1:\S+\n$/);
    const ctFile = join(dataDir, 'ct.txt');
    await writeFile(ctFile, ct.out);
    const pt = await kw(['decrypt', '--key', 'cli-key', '--in', ctFile]);
    expect(pt.code).toBe(0);
    expect(pt.stdout).toEqual(data);

    expect((await kw(['key', 'rotate', 'cli-key'])).out).toMatch(/Current version:\s+2/);
    const moved = await kw(['re-encrypt', '--key', 'cli-key', '-o', 'json'], ct.out);
    expect(JSON.parse(moved.out).keyVersion).toBe(2);

    expect((await kw(['key', 'disable', 'cli-key'])).out).toMatch(/State:\s+Disabled/);
    const refused = await kw(['encrypt', '--key', 'cli-key'], 'x');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe('keyward: KEY_STATE: the key is disabled\n');
    expect((await kw(['key', 'enable', 'cli-key'])).code).toBe(0);

    const del = await kw(['key', 'delete', 'cli-key']);
    expect(del.code).toBe(0);
    expect(del.out).toMatch(/State:\s+PendingDeletion/);
    expect(del.stderr).toMatch(/warning: key was used in the last 7 days/);
    expect((await kw(['key', 'cancel-deletion', 'cli-key'])).out).toMatch(/State:\s+Disabled/);
    await kw(['key', 'delete', 'cli-key']);
    const now = await kw(['key', 'delete-now', 'cli-key']);
    expect(now.out).toBe('Key cli-key destroyed.\n');
    const gone = await kw(['key', 'get', 'cli-key']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe('keyward: KEY_NOT_FOUND: key cli-key not found (field name)\n');
  });

  it('signs and verifies (exit 0 valid, 1 invalid), prints public keys and data keys', async () => {
    expect((await kw(['key', 'create', 'signer', '--usage', 'ECDSA'])).code).toBe(0);
    const sig = (await kw(['sign', '--key', 'signer'], 'document')).out.trim();
    expect(sig).toMatch(/^keyward:v1:/);
    const valid = await kw(['verify', '--key', 'signer', '--signature', sig], 'document');
    expect([valid.code, valid.out]).toEqual([0, 'valid\n']);
    const invalid = await kw(['verify', '--key', 'signer', '--signature', sig], 'tampered');
    expect([invalid.code, invalid.out]).toEqual([1, 'invalid\n']);
    const error = await kw(['verify', '--key', 'nobody', '--signature', sig], 'document');
    expect(error.code).toBe(2);
    const pem = await kw(['public-key', '--key', 'signer']);
    expect(pem.out).toMatch(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+-----END PUBLIC KEY-----\n$/);

    await kw(['key', 'create', 'envelope', '--usage', 'AES256', '--convergent']);
    const dk = JSON.parse(
      (await kw(['data-key', '--key', 'envelope', '--context', 'app', '-o', 'json', '--bits', '128'])).out,
    );
    expect(Buffer.from(dk.plaintext, 'base64')).toHaveLength(16);
    const sealed = await kw(['data-key', '--key', 'envelope', '--context', 'app', '--no-plaintext']);
    expect(sealed.out).toMatch(/^ciphertext: keyward:v1:\S+\n$/);
  });

  it('refuses bad usage with one line and a non-zero exit', async () => {
    const badName = await kw(['key', 'create', '1bad', '--usage', 'AES256']);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/^keyward: INVALID_ARGUMENT: .*\(field name\)\n$/);
    const badUsage = await kw(['key', 'create', 'okname', '--usage', 'DES']);
    expect(badUsage.code).not.toBe(0);
    expect(badUsage.stderr).toMatch(/DES/);
    const wrongToken = await runCli(['key', 'list', '--data-dir', dataDir], {
      env: { KEYWARD_TOKEN: 'not-the-token' },
    });
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toBe('keyward: UNAUTHENTICATED: invalid token\n');
    const empty = await mkdtemp(join(tmpdir(), 'keyward-none-'));
    const noServer = await runCli(['key', 'list', '--data-dir', empty]);
    expect(noServer.code).toBe(1);
    expect(noServer.stderr).toMatch(/^keyward: no server found: set KEYWARD_ADDR/);
    await rm(empty, { recursive: true, force: true });
  });

  it('exits quietly when its reader closes the pipe (keyward key list | true), not with EPIPE', async () => {
    await kw(['key', 'create', 'piped', '--usage', 'AES256']);
    // `true` exits at once, so the CLI writes its answer into a closed pipe.
    const shell = spawnSync(
      'bash',
      [
        '-c',
        `"${process.execPath}" "${MAIN}" key list --data-dir "${dataDir}" 2>"$ERR" | true; echo \${PIPESTATUS[0]}`,
      ],
      {
        env: { ...process.env, KEYWARD_TOKEN: '', KEYWARD_ADDR: '', ERR: join(dataDir, 'pipe.err') },
        encoding: 'utf8',
      },
    );
    expect(shell.stdout.trim()).toBe('0');
    expect(await readFile(join(dataDir, 'pipe.err'), 'utf8')).toBe('');
  });

  it('works from KEYWARD_ADDR and KEYWARD_TOKEN alone, trusting only a given CA', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'keyward-client-'));
    try {
      const env = { KEYWARD_ADDR: server.url, KEYWARD_TOKEN: server.token };
      const noCa = await runCli(['key', 'list', '--data-dir', elsewhere], { env });
      expect(noCa.code).toBe(1);
      expect(noCa.stderr).toMatch(/TLS verification .* failed/);
      const withCa = await runCli(['key', 'list', '--data-dir', elsewhere], {
        env: { ...env, KEYWARD_CA_FILE: join(dataDir, 'tls', 'cert.pem') },
      });
      expect(withCa.code, withCa.stderr).toBe(0);
      expect(withCa.out).toContain('signer');
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});
