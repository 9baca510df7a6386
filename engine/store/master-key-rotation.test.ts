import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { masterKeysFrom } from '../crypto/master-keys.ts';
import { wrapMaterial, wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import { createKeyRecord } from '../keys/lifecycle.ts';
import { parseKeySpec } from '../keys/spec.ts';
import { FileKeyStore } from './file-key-store.ts';
import { openMasterKeys } from './master-key.ts';
import { encodeMasterKeyFile, parseMasterKeyFile } from './master-key-file.ts';
import { readRegistry } from './master-key-registry.ts';
import { rotateMasterKey } from './master-key-rotation.ts';

let dataDir: string;
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-rotation-'));
});
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const keyFile = () => join(dataDir, 'master.key');

/** A store with `n` AES keys under a fresh master key (version 1). */
async function seed(n: number): Promise<void> {
  const opened = await openMasterKeys({ dataDir, records: [] });
  const store = await FileKeyStore.open(dataDir);
  for (let i = 0; i < n; i++) {
    const name = `key-${i}`;
    const wrapped = wrapMaterial(
      opened.keys,
      { store: 'default', name, usage: 'AES256', version: 1 },
      randomBytes(32),
    );
    await store.create(
      createKeyRecord(
        {
          namespace: 'default',
          name,
          spec: parseKeySpec({ usage: 'AES256' }),
          firstVersion: { version: 1, createdTime: 1, wrapped: wrapped.toString('base64') },
        },
        1,
      ),
    );
  }
}

async function blobVersions(): Promise<number[]> {
  const records = await (await FileKeyStore.open(dataDir)).list();
  return records.flatMap((r) => r.versions.map((v) => wrappedMasterKeyVersion(v.wrapped)!));
}

describe('rotateMasterKey resumes every interrupted step', () => {
  it('adopts a version the file holds but the registry does not (killed after writing the file)', async () => {
    await seed(3);
    const v1 = parseMasterKeyFile(await readFile(keyFile())).get(1)!;
    const v2 = randomBytes(32);
    await writeFile(
      keyFile(),
      encodeMasterKeyFile(
        new Map([
          [1, v1],
          [2, v2],
        ]),
      ),
      { mode: 0o600 },
    );
    const result = await rotateMasterKey({ dataDir });
    expect(result).toMatchObject({ current: 2, resumed: true, rewrapped: 3, retired: [1], stuck: [] });
    const file = parseMasterKeyFile(await readFile(keyFile()));
    expect([...file.keys()]).toEqual([2]);
    expect(file.get(2)!.equals(v2)).toBe(true);
    expect(await blobVersions()).toEqual([2, 2, 2]);
  });

  it('removes a retired version still in the file (killed between retiring and rewriting the file)', async () => {
    await seed(2);
    const v1 = parseMasterKeyFile(await readFile(keyFile())).get(1)!;
    await rotateMasterKey({ dataDir });
    const v2 = parseMasterKeyFile(await readFile(keyFile())).get(2)!;
    await writeFile(
      keyFile(),
      encodeMasterKeyFile(
        new Map([
          [1, v1],
          [2, v2],
        ]),
      ),
      { mode: 0o600 },
    );
    const result = await rotateMasterKey({ dataDir });
    expect(result).toMatchObject({ current: 2, resumed: true, rewrapped: 0, retired: [1] });
    expect([...parseMasterKeyFile(await readFile(keyFile())).keys()]).toEqual([2]);
  });

  it('keeps the old version, and names the key, when a record cannot be unwrapped', async () => {
    await seed(3);
    const path = join(dataDir, 'keys', 'default', 'key-1.json');
    const record = JSON.parse(await readFile(path, 'utf8'));
    const blob = Buffer.from(record.versions[0].wrapped, 'base64');
    blob[20]! ^= 1;
    record.versions[0].wrapped = blob.toString('base64');
    await writeFile(path, JSON.stringify(record));
    const result = await rotateMasterKey({ dataDir });
    expect(result.current).toBe(2);
    expect(result.retired).toEqual([]);
    expect(result.stuck).toEqual([{ key: 'default/key-1', version: 1, masterKeyVersion: 1 }]);
    expect((await blobVersions()).sort()).toEqual([1, 2, 2]);
    // Both versions stay in the file and the registry; a server can still start.
    expect([...parseMasterKeyFile(await readFile(keyFile())).keys()]).toEqual([1, 2]);
    expect((await readRegistry(dataDir))!.versions.every((v) => v.retiredTime === undefined)).toBe(true);
    const records = await (await FileKeyStore.open(dataDir)).list();
    await expect(openMasterKeys({ dataDir, records })).resolves.toMatchObject({ warnings: [] });
  });

  it('refuses a wrong master key before touching anything', async () => {
    await seed(1);
    await writeFile(keyFile(), randomBytes(32), { mode: 0o600 });
    await expect(rotateMasterKey({ dataDir })).rejects.toThrow(/is not the master key/);
    expect(await blobVersions()).toEqual([1]);
    expect((await readRegistry(dataDir))!.current).toBe(1);
    expect(masterKeysFrom(parseMasterKeyFile(await readFile(keyFile())), 1).current).toBe(1);
  });
});
