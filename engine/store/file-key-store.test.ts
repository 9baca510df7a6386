import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { FileKeyStore, type WriteFileFn } from './file-key-store.ts';
import { crashRecord } from './fixtures/crash-record.ts';

let dataDir: string;
beforeEach(async () => {
  dataDir = join(await mkdtemp(join(tmpdir(), 'keyward-store-')), 'data');
});
afterEach(async () => {
  await rm(join(dataDir, '..'), { recursive: true, force: true });
});

const rec = (name: string, seq = 0, namespace = 'default'): KeyRecord => ({
  ...crashRecord(name, seq),
  namespace,
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(KeywardError);
    return (err as KeywardError).code;
  }
}

describe('FileKeyStore', () => {
  it('creates the data dir with mode 0700 and stores one file per key, lowercased', async () => {
    const store = await FileKeyStore.open(dataDir);
    await store.create(rec('Orders'));
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect(await readdir(join(dataDir, 'keys', 'default'))).toEqual(['orders.json']);
    const onDisk = JSON.parse(await readFile(join(dataDir, 'keys', 'default', 'orders.json'), 'utf8'));
    expect(onDisk).toEqual(rec('Orders'));
    expect((await stat(join(dataDir, 'keys', 'default', 'orders.json'))).mode & 0o777).toBe(0o600);
  });

  it('round-trips records across a reopen', async () => {
    const store = await FileKeyStore.open(dataDir);
    await store.create(rec('alpha'));
    await store.create(rec('Beta', 1, 'team-b'));
    await store.put(rec('alpha', 2));
    const reopened = await FileKeyStore.open(dataDir);
    expect(await reopened.get('default', 'alpha')).toEqual(rec('alpha', 2));
    expect(await reopened.get('team-b', 'beta')).toEqual(rec('Beta', 1, 'team-b'));
    expect((await reopened.list()).map((r) => `${r.namespace}/${r.name}`)).toEqual([
      'default/alpha',
      'team-b/Beta',
    ]);
    expect((await reopened.list('team-b')).map((r) => r.name)).toEqual(['Beta']);
    expect(await reopened.list('empty')).toEqual([]);
  });

  it('looks names up ignoring case and refuses a second key of the same name in any case', async () => {
    const store = await FileKeyStore.open(dataDir);
    await store.create(rec('MyKey'));
    expect((await store.get('default', 'mykey'))?.name).toBe('MyKey');
    expect((await store.get('default', 'MYKEY'))?.name).toBe('MyKey');
    expect(await codeOf(store.create(rec('mykey')))).toBe('ALREADY_EXISTS');
    expect(await codeOf(store.create(rec('MyKey')))).toBe('ALREADY_EXISTS');
    // Another namespace is another key store.
    await store.create(rec('mykey', 0, 'other'));
    expect(await store.get('default', 'nothere')).toBeUndefined();
  });

  it('refuses concurrent creates of one name in different cases: exactly one wins', async () => {
    const store = await FileKeyStore.open(dataDir);
    const results = await Promise.allSettled([
      store.create(rec('Dup')),
      store.create(rec('dup')),
      store.create(rec('DUP')),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(await readdir(join(dataDir, 'keys', 'default'))).toEqual(['dup.json']);
  });

  it('put replaces only existing keys; remove deletes durably and reports absence', async () => {
    const store = await FileKeyStore.open(dataDir);
    expect(await codeOf(store.put(rec('ghost')))).toBe('KEY_NOT_FOUND');
    await store.create(rec('gone'));
    expect(await store.remove('default', 'GONE')).toBe(true);
    expect(await store.remove('default', 'gone')).toBe(false);
    expect(await store.get('default', 'gone')).toBeUndefined();
    expect(await readdir(join(dataDir, 'keys', 'default'))).toEqual([]);
    expect(await (await FileKeyStore.open(dataDir)).get('default', 'gone')).toBeUndefined();
  });

  it('returns copies: mutating a result does not change the store', async () => {
    const store = await FileKeyStore.open(dataDir);
    const r = rec('copyme');
    await store.create(r);
    r.memo = 'changed after create';
    const got = await store.get('default', 'copyme');
    got!.memo = 'changed after get';
    expect((await store.get('default', 'copyme'))?.memo).toBe('seq-0');
  });

  it('validates namespace and name before touching the disk', async () => {
    const store = await FileKeyStore.open(dataDir);
    expect(await codeOf(store.create(rec('ok-name', 0, '../etc')))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.create({ ...rec('x'), name: '../../x' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.get('Bad_NS', 'abc'))).toBe('INVALID_ARGUMENT');
    expect(await readdir(join(dataDir, 'keys'))).toEqual([]);
  });

  it('serializes concurrent puts to one key: no overlap, and the last put wins', async () => {
    const inFlight = new Map<string, number>();
    let maxOverlap = 0;
    const slowWrite: WriteFileFn = async (path, data) => {
      const n = (inFlight.get(path) ?? 0) + 1;
      inFlight.set(path, n);
      maxOverlap = Math.max(maxOverlap, n);
      // Later writes are faster: without serialization they would finish first and be overwritten.
      await new Promise((r) => setTimeout(r, Math.max(0, 20 - (data.length % 7) - n)));
      await writeFileAtomic(path, data);
      inFlight.set(path, (inFlight.get(path) ?? 1) - 1);
    };
    const store = await FileKeyStore.open(dataDir, { writeFile: slowWrite });
    await store.create(rec('busy'));
    await Promise.all(Array.from({ length: 25 }, (_, i) => store.put(rec('busy', i + 1))));
    expect(maxOverlap).toBe(1);
    expect((await store.get('default', 'busy'))?.memo).toBe('seq-25');
    const reopened = await FileKeyStore.open(dataDir);
    expect(await reopened.get('default', 'busy')).toEqual(rec('busy', 25));
  });

  it('a failed write leaves the index and disk as they were', async () => {
    let fail = false;
    const flaky: WriteFileFn = async (path, data) => {
      if (fail) throw new Error('disk full');
      await writeFileAtomic(path, data);
    };
    const store = await FileKeyStore.open(dataDir, { writeFile: flaky });
    await store.create(rec('steady'));
    fail = true;
    await expect(store.put(rec('steady', 9))).rejects.toThrow('disk full');
    await expect(store.create(rec('never'))).rejects.toThrow('disk full');
    expect((await store.get('default', 'steady'))?.memo).toBe('seq-0');
    expect(await store.get('default', 'never')).toBeUndefined();
    fail = false;
    await store.create(rec('never'));
  });

  it('ignores and removes leftover temp files; a torn temp file is never read as a record', async () => {
    const store = await FileKeyStore.open(dataDir);
    await store.create(rec('kept'));
    const dir = join(dataDir, 'keys', 'default');
    const torn = JSON.stringify(rec('kept', 7)).slice(0, 100);
    await writeFile(join(dir, `.kept.json.999.abcdef.tmp`), torn);
    await writeFile(join(dir, `.other.json.999.abcdef.tmp`), JSON.stringify(rec('other')));
    const reopened = await FileKeyStore.open(dataDir);
    expect(await reopened.get('default', 'kept')).toEqual(rec('kept'));
    expect(await reopened.get('default', 'other')).toBeUndefined();
    expect(await readdir(dir)).toEqual(['kept.json']);
  });

  it('refuses to open over a damaged record, naming the file', async () => {
    const store = await FileKeyStore.open(dataDir);
    await store.create(rec('broken'));
    await writeFile(join(dataDir, 'keys', 'default', 'broken.json'), '{"name": "bro');
    await expect(FileKeyStore.open(dataDir)).rejects.toThrow(/default\/broken\.json/);
  });

  it('refuses a record stored under the wrong file name', async () => {
    await (await FileKeyStore.open(dataDir)).create(rec('right'));
    const dir = join(dataDir, 'keys', 'default');
    await writeFile(join(dir, 'wrong.json'), await readFile(join(dir, 'right.json')));
    await expect(FileKeyStore.open(dataDir)).rejects.toThrow(/does not match its file name/);
  });
});
