import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { masterKeyCheckValue, masterKeysFrom } from '../crypto/master-keys.ts';
import { wrapMaterial } from '../crypto/wrap.ts';
import { KeywardError } from '../errors.ts';
import { createKeyRecord } from '../keys/lifecycle.ts';
import type { KeyRecord } from '../keys/model.ts';
import { parseKeySpec } from '../keys/spec.ts';
import { MASTER_KEY_ENV, type OpenedMasterKeys, openMasterKeys } from './master-key.ts';
import { encodeMasterKeyFile } from './master-key-file.ts';
import { readRegistry, registryPath } from './master-key-registry.ts';

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

/** A key record wrapped under `raw` as master-key version `version`. */
function record(name: string, raw: Buffer, version = 1): KeyRecord {
  const keys = masterKeysFrom(new Map([[version, raw]]), version);
  const wrapped = wrapMaterial(
    keys,
    { store: 'default', name, usage: 'AES256', version: 1 },
    randomBytes(32),
  );
  return createKeyRecord(
    {
      namespace: 'default',
      name,
      spec: parseKeySpec({ usage: 'AES256' }),
      firstVersion: { version: 1, createdTime: 1, wrapped: wrapped.toString('base64') },
    },
    1,
  );
}

function open(
  records: readonly KeyRecord[] = [],
  env: Record<string, string> = {},
  masterKeyFile?: string,
): Promise<OpenedMasterKeys> {
  return openMasterKeys({ dataDir, records, env, ...(masterKeyFile ? { masterKeyFile } : {}) });
}

const keyBytes = (o: OpenedMasterKeys, version = o.keys.current): Buffer => o.keys.key(version)!.export();

describe('openMasterKeys: the first start', () => {
  it('creates a 32-byte master.key (0600, in a 0700 data dir) and records its check value', async () => {
    const first = await open();
    expect(first.created).toBe(true);
    const st = await stat(join(dataDir, 'master.key'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(32);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    const registry = (await readRegistry(dataDir))!;
    expect(registry.current).toBe(1);
    expect(registry.versions[0]!.check).toBe(masterKeyCheckValue(keyBytes(first)));
    // The registry holds no key bytes.
    const text = await readFile(registryPath(dataDir), 'utf8');
    expect(text).not.toContain(keyBytes(first).toString('hex'));
    expect(text).not.toContain(keyBytes(first).toString('base64'));
    const again = await open();
    expect(again.created).toBe(false);
    expect(keyBytes(again).equals(keyBytes(first))).toBe(true);
  });

  it('gives every concurrent starter the same key', async () => {
    const all = await Promise.all(Array.from({ length: 8 }, () => open()));
    for (const o of all) expect(keyBytes(o).equals(keyBytes(all[0]!))).toBe(true);
    expect((await readdir(dataDir)).sort()).toEqual(['keys', 'master.key']);
  });

  it('creates --master-key-file outside the data dir, and nothing in the data dir', async () => {
    const file = join(root, 'secure', 'mk');
    await mkdir(join(root, 'secure'));
    const opened = await open([], {}, file);
    expect(opened.created).toBe(true);
    expect(opened.location).toEqual({ path: file, external: true });
    expect((await readFile(file)).length).toBe(32);
    expect(await readdir(dataDir)).toEqual(['keys']);
  });
});

describe('openMasterKeys refuses a missing or wrong master key (review finding: it made a new one)', () => {
  it('refuses a missing master.key when keys exist, naming the file, and creates nothing', async () => {
    const first = await open();
    const records = [record('alpha', keyBytes(first)), record('beta', keyBytes(first))];
    await rm(join(dataDir, 'master.key'));
    const err = await failure(open(records));
    expect(err.message).toContain(join(dataDir, 'master.key'));
    expect(err.message).toMatch(/is missing, but the 2 key\(s\).*restore it from your backup/);
    expect(err.message).not.toContain('\n');
    expect(await readdir(dataDir)).toEqual(['keys']);
  });

  it('refuses a missing master.key when the registry records one, even with no keys left', async () => {
    await open();
    await rm(join(dataDir, 'master.key'));
    const err = await failure(open([]));
    expect(err.message).toMatch(/records one in use: restore the file.*delete .*master-keys\.json/);
    await rm(registryPath(dataDir));
    expect((await open([])).created).toBe(true);
  });

  it('refuses 32 random bytes in place of master.key (key-check value mismatch)', async () => {
    const first = await open();
    const records = [record('alpha', keyBytes(first))];
    const wrong = randomBytes(32);
    await writeFile(join(dataDir, 'master.key'), wrong, { mode: 0o600 });
    const err = await failure(open(records));
    expect(err.message).toMatch(/is not the master key of .*key-check value of master-key version 1 differs/);
    // Not overwritten.
    expect((await readFile(join(dataDir, 'master.key'))).equals(wrong)).toBe(true);
  });

  it('refuses a file that lacks a version the store uses', async () => {
    const v2 = randomBytes(32);
    await mkdir(join(dataDir, 'keys'), { recursive: true });
    const file = join(root, 'mk');
    const first = await open([], {}, file);
    // Rotate by hand: the registry names version 2, the file holds only 1.
    const reg = (await readRegistry(dataDir))!;
    reg.versions.push({ version: 2, check: masterKeyCheckValue(v2), createdTime: 2 });
    reg.current = 2;
    await writeFile(registryPath(dataDir), JSON.stringify(reg));
    const err = await failure(open([record('alpha', v2, 2)], {}, file));
    expect(err.message).toMatch(/lacks master-key version 2, which wraps 1 key version/);
    expect(keyBytes(first).length).toBe(32);
  });

  it('checks a store from before key-check values by unwrapping its keys', async () => {
    const raw = randomBytes(32);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await writeFile(join(dataDir, 'master.key'), raw, { mode: 0o600 });
    const records = [record('alpha', raw), record('beta', raw)];
    // A wrong key is refused...
    await writeFile(join(dataDir, 'master.key'), randomBytes(32), { mode: 0o600 });
    const err = await failure(open(records));
    expect(err.message).toMatch(/does not unwrap the keys/);
    expect(await readRegistry(dataDir)).toBeUndefined();
    // ...the right one is checked and recorded.
    await writeFile(join(dataDir, 'master.key'), raw, { mode: 0o600 });
    const opened = await open(records);
    expect(opened.created).toBe(false);
    expect((await readRegistry(dataDir))!.versions[0]!.check).toBe(masterKeyCheckValue(raw));
  });
});

describe('master-key files', () => {
  it('refuses a master.key readable by group or others', async () => {
    await open();
    await chmod(join(dataDir, 'master.key'), 0o644);
    const err = await failure(open());
    expect(err.message).toMatch(/0644.*chmod 600/);
    await chmod(join(dataDir, 'master.key'), 0o400);
    await expect(open()).resolves.toBeDefined();
  });

  it('reads a given file as raw bytes, base64 or the versioned form, from the flag or the environment', async () => {
    const raw = randomBytes(32);
    const forms: Array<[string, Buffer | string]> = [
      ['raw.key', raw],
      ['b64.key', `${raw.toString('base64')}\n`],
      ['multi.key', encodeMasterKeyFile(new Map([[1, raw]]))],
    ];
    for (const [name, content] of forms) {
      await writeFile(join(root, name), content);
      expect(keyBytes(await open([], { [MASTER_KEY_ENV]: join(root, name) })).equals(raw)).toBe(true);
      expect(keyBytes(await open([], {}, join(root, name))).equals(raw)).toBe(true);
    }
    // The flag wins over the environment.
    const other = join(root, 'other.key');
    await writeFile(other, randomBytes(32));
    await rm(join(dataDir, 'keys'), { recursive: true });
    const opened = await open([], { [MASTER_KEY_ENV]: other }, join(root, 'raw.key'));
    expect(opened.location.path).toBe(join(root, 'raw.key'));
  });

  it.each<[string, Buffer | string]>([
    ['31 raw bytes', randomBytes(31)],
    ['33 raw bytes', randomBytes(33)],
    ['base64 of 21 bytes', randomBytes(21).toString('base64')],
    ['base64 with a bad character', `${randomBytes(32).toString('base64').slice(0, 42)}!=`],
    ['an empty file', ''],
    ['a huge file', Buffer.alloc(40_000, 1)],
  ])('refuses a file holding %s, without echoing it', async (_label, content) => {
    const file = join(root, 'bad.key');
    await writeFile(file, content);
    const err = await failure(open([], { [MASTER_KEY_ENV]: file }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.field).toBe('master-key-file');
    expect(err.message).toContain(file);
    if (typeof content === 'string' && content.length > 0)
      expect(err.message).not.toContain(content.slice(0, 20));
  });

  it('warns when master.key is still in the data dir beside an external master key', async () => {
    await open();
    const own = await readFile(join(dataDir, 'master.key'));
    const file = join(root, 'moved.key');
    await writeFile(file, own);
    const opened = await open([], {}, file);
    expect(opened.warnings.join('\n')).toMatch(/master\.key is still in the data dir.*delete it/);
  });
});
