/**
 * The CLI findings of issue #12 against a real `keyward serve` (TLS auto) and real CLI processes:
 * where the admin token may go, what reaches the terminal, how much input is read, and the
 * one-line errors for bad flags. Plus #16's data dir under /proc.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAIN, runCli, type ServerProcess, startServerProcess } from './harness.ts';

let dataDir: string;
let server: ServerProcess;
const kw = (args: string[], opts: { input?: string | Buffer; env?: Record<string, string> } = {}) =>
  runCli([...args, '--data-dir', dataDir], opts);

/** A plain-HTTP listener on loopback that records what reaches it (a stand-in for another server). */
async function recorder(): Promise<{ url: string; seen: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const seen: IncomingHttpHeaders[] = [];
  const srv = createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise((r) => srv.close(() => r())),
  };
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-cli-hostile-'));
  server = await startServerProcess(dataDir, ['--tls', 'auto']);
  const created = await kw(['key', 'create', 'memokey', '--usage', 'AES256']);
  expect(created.code, created.stderr).toBe(0);
});
afterAll(async () => {
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('the admin token goes only to the server that wrote the data dir', { timeout: 120_000 }, () => {
  it('is not sent to another KEYWARD_ADDR, even on loopback', async () => {
    const other = await recorder();
    try {
      const r = await kw(['key', 'list'], { env: { KEYWARD_ADDR: other.url } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^keyward: KEYWARD_ADDR \(http:\/\/127\.0\.0\.1:\d+\) is not the server of .*set KEYWARD_TOKEN/,
      );
      expect(other.seen).toEqual([]);
      // With a token of its own, the CLI may call that server.
      const own = await kw(['key', 'list'], {
        env: { KEYWARD_ADDR: other.url, KEYWARD_TOKEN: 'other-token' },
      });
      expect(own.code, own.stderr).toBe(0);
      expect(other.seen.map((h) => h.authorization)).toEqual(['Bearer other-token']);
    } finally {
      await other.close();
    }
  });

  it('is sent to the same server named explicitly', async () => {
    const r = await kw(['key', 'list'], { env: { KEYWARD_ADDR: server.url } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.out).toContain('memokey');
  });

  it('is not sent when the server presents another certificate than server.json names', async () => {
    const infoPath = join(dataDir, 'server.json');
    const original = await readFile(infoPath, 'utf8');
    const info = JSON.parse(original);
    await writeFile(infoPath, JSON.stringify({ ...info, fingerprint256: 'AA:'.repeat(31).concat('AA') }));
    try {
      const r = await kw(['key', 'list']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/is not the one that wrote the data dir .* the token was not sent\n$/);
    } finally {
      await writeFile(infoPath, original);
    }
  });

  it('no token goes over plain HTTP to a host that is not loopback', async () => {
    // 0.0.0.0 reaches this machine, but is no loopback name: refused before any connection.
    const r = await kw(['key', 'list'], {
      env: { KEYWARD_ADDR: 'http://0.0.0.0:9', KEYWARD_TOKEN: 'x'.repeat(20) },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'keyward: refusing to send a token over plain HTTP to 0.0.0.0: use https://, or a loopback address (127.0.0.1, ::1, localhost)\n',
    );
  });

  it('a damaged server.json is an error naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keyward-cli-json-'));
    try {
      await writeFile(join(dir, 'server.json'), '{"url": ');
      const r = await runCli(['key', 'list', '--data-dir', dir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `keyward: ${join(dir, 'server.json')} is not valid JSON; restart "keyward serve" to write it again\n`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('terminal output and input limits', { timeout: 120_000 }, () => {
  it('key get neutralises escape sequences stored in a memo', async () => {
    const memo = 'hi\u001b]0;pwned\u0007\u001b[2J\u202eevil';
    const set = await kw(['key', 'update', 'memokey', '--memo', memo]);
    expect(set.code, set.stderr).toBe(0);
    const got = await kw(['key', 'get', 'memokey']);
    expect(got.code).toBe(0);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
    expect(got.out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(got.out).toContain('Memo:');
    expect(got.out).toContain('hi\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{202e}evil');
    // JSON output keeps the value exactly (JSON escapes it).
    const json = await kw(['key', 'get', 'memokey', '-o', 'json']);
    expect(JSON.parse(json.out).memo).toBe(memo);
  });

  it('encrypt stops reading stdin at the limit with a clear error', async () => {
    // 256 MiB offered; the CLI must stop after 32 KiB and exit, long before taking it all.
    const total = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    const child = spawn(process.execPath, [MAIN, 'encrypt', '--key', 'memokey', '--data-dir', dataDir], {
      env: { ...process.env, KEYWARD_TOKEN: '', KEYWARD_ADDR: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let written = 0;
    child.stdin.on('error', () => {}); // EPIPE once it stops reading
    for (; written < total && child.exitCode === null; written += chunk.length) {
      if (!child.stdin.write(chunk)) {
        await Promise.race([new Promise((r) => child.stdin.once('drain', r)), exited]);
      }
    }
    child.stdin.end();
    expect(await exited).toBe(1);
    expect(written).toBeLessThan(total);
    expect(stderr).toBe(
      'keyward: the input is over 32768 bytes, the most encrypt takes (use data-key for envelope encryption of larger data)\n',
    );
  });

  it('a file over the limit is refused the same way', async () => {
    const file = join(dataDir, 'big.bin');
    await writeFile(file, Buffer.alloc(8193));
    const r = await kw(['sign', '--key', 'memokey', '--in', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^keyward: the input is over 8192 bytes, the most sign and verify take/);
  });
});

describe('bad flags get one clear line', { timeout: 120_000 }, () => {
  it.each([
    [
      ['key', 'list'],
      { KEYWARD_CA_FILE: '/nonexistent/ca.pem' },
      'keyward: KEYWARD_CA_FILE names a file that does not exist: /nonexistent/ca.pem\n',
    ],
    [
      ['encrypt', '--key', 'memokey', '--context', 'a', '--context-base64', 'Yg=='],
      {},
      'keyward: give --context or --context-base64, not both\n',
    ],
    [
      ['encrypt', '--key', 'memokey', '--aad', 'a', '--aad-base64', 'Yg=='],
      {},
      'keyward: give --aad or --aad-base64, not both\n',
    ],
    [
      ['key', 'list', '--wait', '-1'],
      {},
      'keyward: --wait must be a number of seconds from 0 to 3600, not "-1"\n',
    ],
    [
      ['key', 'list', '--wait', 'soon'],
      {},
      'keyward: --wait must be a number of seconds from 0 to 3600, not "soon"\n',
    ],
    [
      ['key', 'create', 'okname', '--usage', 'AES256', '--rotation-days', '731'],
      {},
      'keyward: --rotation-days must be a whole number of days from 1..730, not "731"\n',
    ],
    [
      ['key', 'create', 'okname', '--usage', 'AES256', '--memo', 'x'.repeat(101)],
      {},
      'keyward: --memo must be at most 100 characters\n',
    ],
    [
      ['key', 'create', 'okname', '--usage', 'AES256', '--region', 'BAD_Region'],
      {},
      'keyward: --region must be 1 to 63 lowercase letters, digits or "-"\n',
    ],
    [
      ['public-key', '--key', 'memokey', '--key-version', '1234567890'],
      {},
      'keyward: --key-version must be a version number from 1 to 999999999, not "1234567890"\n',
    ],
  ] as const)('%j', async (args, env, expected) => {
    const r = await kw([...args], { input: 'data', env: { ...env } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(expected);
  });

  it('serve refuses --region BAD_Region and a data dir under /proc, at once', async () => {
    const region = await runCli([
      'serve',
      '--data-dir',
      join(dataDir, 'other'),
      '--region',
      'BAD_Region',
      '--port',
      '0',
    ]);
    expect(region.code).toBe(1);
    expect(region.stderr).toMatch(/^keyward: INVALID_ARGUMENT: region must be 1 to 63 lowercase/);
    const started = Date.now();
    const proc = await runCli(['serve', '--data-dir', '/proc/self/x', '--port', '0']);
    expect(proc.code).toBe(1);
    expect(proc.stderr).toBe(
      'keyward: INVALID_ARGUMENT: cannot use /proc/self/x as the data dir: /proc/self/x cannot be created (ENOENT)\n',
    );
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});
