import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { baseKeyId } from './key-id.ts';
import { KeyIdHistory } from './key-id-history.ts';

const identity = { namespace: 'default', name: 'etcd-kek', keyCreatedTime: 1, versionCreatedTime: 1 };
const A = baseKeyId({ ...identity, version: 1 });
const B = baseKeyId({ ...identity, name: 'other-kek', version: 1 });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyward-kms-history-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('KeyIdHistory', () => {
  it('remembers across restarts: a key switched away from and back to after a restart gets a new key_id', async () => {
    const path = join(dir, 'state', 'kms.sock.key-ids.json');
    const first = await KeyIdHistory.open(path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await first.report(A)).toEqual({ keyId: A, changed: true });
    expect(await first.report(B)).toEqual({ keyId: B, changed: true });

    const restarted = await KeyIdHistory.open(path);
    expect(restarted.last).toBe(B);
    expect(await restarted.report(B)).toEqual({ keyId: B, changed: false });
    expect(await restarted.report(A)).toEqual({ keyId: `${A}~1`, changed: true });
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ version: 1, keyIds: [A, B, `${A}~1`] });
  });

  it('refuses a damaged file instead of starting over (which could reuse an old key_id)', async () => {
    const path = join(dir, 'h.json');
    for (const text of [
      '{',
      '{"version":2,"keyIds":[]}',
      '{"version":1,"keyIds":["not-a-key-id"]}',
      'null',
    ]) {
      await writeFile(path, text);
      await expect(KeyIdHistory.open(path)).rejects.toThrow(/damaged/);
    }
  });

  it('fails a report it cannot make durable, so no key_id is reported unremembered', async () => {
    const path = join(dir, 'h.json');
    const history = await KeyIdHistory.open(path);
    await rm(dir, { recursive: true, force: true });
    await writeFile(dir, 'a file where the directory was');
    await expect(history.report(A)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(history.last).toBeUndefined();
    await rm(dir, { force: true });
  });

  it('keeps the history in memory without a path, for the life of the process', async () => {
    const history = await KeyIdHistory.open(undefined);
    expect(history.path).toBeUndefined();
    await history.report(A);
    await history.report(B);
    expect((await history.report(A)).keyId).toBe(`${A}~1`);
  });
});
