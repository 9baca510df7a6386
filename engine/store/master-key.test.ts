import { createSecretKey, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeywardError } from '../errors.ts';
import { loadOrCreateMasterKey, MASTER_KEY_ENV } from './master-key.ts';

let root: string;
let dataDir: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-master-'));
  dataDir = join(root, 'data');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<KeywardError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KeywardError);
    return err as KeywardError;
  }
  throw new Error('expected failure');
}

describe('loadOrCreateMasterKey', () => {
  it('creates a 32-byte master.key with mode 0600 in a 0700 data dir, stable across reopen', async () => {
    const key = await loadOrCreateMasterKey(dataDir, {});
    expect(key.type).toBe('secret');
    expect(key.symmetricKeySize).toBe(32);
    const st = await stat(join(dataDir, 'master.key'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(32);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    const again = await loadOrCreateMasterKey(dataDir, {});
    expect(again.equals(key)).toBe(true);
    expect(await readdir(dataDir)).toEqual(['master.key']);
  });

  it('gives every concurrent starter the same key', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateMasterKey(dataDir, {})));
    for (const k of keys) expect(k.equals(keys[0]!)).toBe(true);
    expect(await readdir(dataDir)).toEqual(['master.key']);
  });

  it('refuses a master.key readable by group or others', async () => {
    await loadOrCreateMasterKey(dataDir, {});
    await chmod(join(dataDir, 'master.key'), 0o644);
    const err = await failure(loadOrCreateMasterKey(dataDir, {}));
    expect(err.message).toMatch(/0644.*chmod 600/);
    await chmod(join(dataDir, 'master.key'), 0o400);
    await expect(loadOrCreateMasterKey(dataDir, {})).resolves.toBeDefined();
  });

  it('refuses a master.key of the wrong size, without overwriting it', async () => {
    await loadOrCreateMasterKey(dataDir, {});
    await writeFile(join(dataDir, 'master.key'), randomBytes(31), { mode: 0o600 });
    const err = await failure(loadOrCreateMasterKey(dataDir, {}));
    expect(err.message).toMatch(/32 bytes, found 31/);
    expect((await readFile(join(dataDir, 'master.key'))).length).toBe(31);
  });

  it('reads KEYWARD_MASTER_KEY_FILE as 32 raw bytes or as base64', async () => {
    const raw = randomBytes(32);
    const rawFile = join(root, 'raw.key');
    const b64File = join(root, 'b64.key');
    await writeFile(rawFile, raw);
    await writeFile(b64File, `${raw.toString('base64')}\n`);
    const expected = createSecretKey(raw);
    expect((await loadOrCreateMasterKey(dataDir, { [MASTER_KEY_ENV]: rawFile })).equals(expected)).toBe(true);
    expect((await loadOrCreateMasterKey(dataDir, { [MASTER_KEY_ENV]: b64File })).equals(expected)).toBe(true);
    // The data dir's own key is not created when an external one is given.
    expect(await readdir(dataDir)).toEqual([]);
  });

  it.each<[string, Buffer | string]>([
    ['31 raw bytes', randomBytes(31)],
    ['33 raw bytes', randomBytes(33)],
    ['base64 of 21 bytes', randomBytes(21).toString('base64')],
    ['base64 with a bad character', `${randomBytes(32).toString('base64').slice(0, 42)}!=`],
    ['an empty file', ''],
    ['a huge file', Buffer.alloc(4096, 1)],
  ])('refuses KEYWARD_MASTER_KEY_FILE holding %s, without echoing it', async (_label, content) => {
    const file = join(root, 'bad.key');
    await writeFile(file, content);
    const err = await failure(loadOrCreateMasterKey(dataDir, { [MASTER_KEY_ENV]: file }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.field).toBe(MASTER_KEY_ENV);
    expect(err.message).toMatch(/32 raw bytes or 44 characters of base64/);
    if (typeof content === 'string' && content.length > 0)
      expect(err.message).not.toContain(content.slice(0, 20));
  });

  it('refuses a KEYWARD_MASTER_KEY_FILE that does not exist', async () => {
    const err = await failure(loadOrCreateMasterKey(dataDir, { [MASTER_KEY_ENV]: join(root, 'nope') }));
    expect(err.message).toMatch(/cannot be read \(ENOENT\)/);
  });
});
