/**
 * Real processes: `keyward serve --audit-required` killed with SIGKILL during a burst of requests,
 * then `keyward audit verify`. After kill -9 the log verifies up to its last complete record
 * (with --open: a crashed writer never wrote its closing checkpoint, and without --open verify
 * says so and exits 1), and every request the server answered is in it (required mode writes the
 * record before the response). A restart goes on with the same chain, and once it stops cleanly
 * the whole log verifies strictly. Also pins the CLI's exit codes: 0 valid, 1 tampered, 2 error.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type ServerProcess, startServerProcess } from '../cli/harness.ts';
import { readLines, removeDir, segmentFiles, tempDir, writeLines } from './fixtures.ts';

const KEYS = '/v1/namespaces/default/keys';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) removeDir(d);
});

async function post(server: ServerProcess, path: string, body: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

const requestIds = (dir: string): Set<string> =>
  new Set(
    segmentFiles(join(dir, 'audit'))
      .flatMap(readLines)
      .flatMap((l) => {
        try {
          const r = JSON.parse(l) as { requestId?: string };
          return r.requestId ? [r.requestId] : [];
        } catch {
          return []; // the cut line a crash may leave
        }
      }),
  );

describe('kill -9 during a burst', { timeout: 180_000 }, () => {
  it('leaves a log that verifies up to its last record and holds every answered request', async () => {
    const dataDir = tempDir('keyward-audit-crash-');
    dirs.push(dataDir);
    const args = ['--tls', 'off', '--audit-required', '--audit-checkpoint-records', '50'];
    let server = await startServerProcess(dataDir, args);
    expect((await post(server, KEYS, { name: 'burst', usage: 'AES256' })).status).toBe(201);

    const answered: string[] = [];
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const res = await post(server, `${KEYS}/burst/encrypt`, {
            plaintext: randomBytes(64).toString('base64'),
          });
          await res.arrayBuffer();
          if (res.status === 200) answered.push(res.headers.get('x-request-id')!);
        } catch {
          return; // the server is gone
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    const deadline = Date.now() + 60_000;
    while (answered.length < 400 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await server.kill9();
    stop = true;
    await Promise.all(workers);
    expect(answered.length).toBeGreaterThanOrEqual(400);

    // Strict: the log ends without its closing checkpoint, and verify says where.
    const strict = await runCli(['audit', 'verify', '--data-dir', dataDir]);
    expect(strict.code, strict.out + strict.stderr).toBe(1);
    expect(strict.out).toMatch(
      /^not closed: .*audit-00000001\.jsonl:\d+: (.*without a closing checkpoint|the log ends with an incomplete line)/,
    );
    // --open: valid up to the last complete record.
    const open = await runCli(['audit', 'verify', '--data-dir', dataDir, '--open']);
    expect(open.code, open.out + open.stderr).toBe(0);
    expect(open.out).toMatch(/^valid: \d+ records in 1 chain/);
    const logged = requestIds(dataDir);
    expect(answered.filter((id) => !logged.has(id))).toEqual([]);

    // A restart goes on with the chain; a clean stop closes it; the whole log then verifies.
    server = await startServerProcess(dataDir, args);
    const after = await post(server, `${KEYS}/burst/encrypt`, { plaintext: 'aGk=' });
    expect(after.status).toBe(200);
    await server.stop();
    const whole = await runCli(['audit', 'verify', '--data-dir', dataDir]);
    expect(whole.code, whole.out + whole.stderr).toBe(0);
    expect(whole.out).toMatch(/ended without closing the log \(a crash or kill\)/);
    expect(segmentFiles(join(dataDir, 'audit'))).toHaveLength(2);
  });
});

describe('keyward audit verify exit codes', { timeout: 120_000 }, () => {
  it('0 valid, 1 tampered (file:line), 2 for errors and usage', async () => {
    const dataDir = tempDir('keyward-audit-cli-');
    dirs.push(dataDir);
    const server = await startServerProcess(dataDir, ['--tls', 'off']);
    await post(server, KEYS, { name: 'cli-key', usage: 'AES256' });
    await server.stop();
    const ok = await runCli(['audit', 'verify', '--data-dir', dataDir]);
    expect(ok.code, ok.out + ok.stderr).toBe(0);
    expect(ok.out).toMatch(/^valid: 5 records in 1 chain, 2 checkpoints \(2 MACs checked\)/);
    const json = await runCli(['audit', 'verify', '--data-dir', dataDir, '-o', 'json']);
    expect(JSON.parse(json.out)).toMatchObject({ valid: true, records: 5, macsChecked: 2 });
    // Given as files, with the master key by file.
    const file = segmentFiles(join(dataDir, 'audit'))[0]!;
    const byFile = await runCli(['audit', 'verify', file, '--master-key-file', join(dataDir, 'master.key')]);
    expect(byFile.code).toBe(0);

    const wrongKey = join(dataDir, 'other.key');
    writeFileSync(wrongKey, `${randomBytes(32).toString('base64')}\n`);
    const wrong = await runCli(['audit', 'verify', file, '--master-key-file', wrongKey]);
    expect(wrong.code).toBe(2);
    expect(wrong.out).toMatch(/no master key given matches/);
    // A master key file that cannot be read, or holds no master key: one line naming the file.
    const missingKey = join(dataDir, 'missing.key');
    const unreadable = await runCli(['audit', 'verify', file, '--master-key-file', missingKey]);
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toContain(`cannot read the master key file ${missingKey} (ENOENT)`);
    const junkKey = join(dataDir, 'junk.key');
    writeFileSync(junkKey, 'not a master key\n');
    const junk = await runCli(['audit', 'verify', file, '--master-key-file', junkKey]);
    expect(junk.code).toBe(2);
    expect(junk.stderr.trim().split('\n')).toHaveLength(1);
    expect(junk.stderr).toContain(`${junkKey} `);
    const noKey = await runCli(['audit', 'verify', file]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/need the master key.*--chain-only/);
    expect((await runCli(['audit', 'verify', file, '--chain-only'])).code).toBe(0);
    expect((await runCli(['audit', 'verify', file, '--bogus'])).code).toBe(2);
    expect((await runCli(['audit', 'verify', join(dataDir, 'missing.jsonl'), '--chain-only'])).code).toBe(2);
    expect((await runCli(['audit', 'verify', '--help'])).code).toBe(0);

    const lines = readLines(file);
    lines[3] = lines[3]!.replace('"cli-key"', '"cli-kez"');
    writeLines(file, lines);
    const bad = await runCli(['audit', 'verify', '--data-dir', dataDir]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain(`tampered: ${file}:4: the record's hash does not match its content`);
  });
});
