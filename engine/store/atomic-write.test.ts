import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTempFile, tempPathFor, writeFileAtomic } from './atomic-write.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyward-atomic-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('creates and replaces a file, leaving no temp file behind', async () => {
    const path = join(dir, 'a.json');
    await writeFileAtomic(path, 'one');
    await writeFileAtomic(path, 'two');
    expect(await readFile(path, 'utf8')).toBe('two');
    expect(await readdir(dir)).toEqual(['a.json']);
  });

  it('creates files with mode 0600 by default, or the given mode', async () => {
    await writeFileAtomic(join(dir, 'secret'), 'x');
    expect((await stat(join(dir, 'secret'))).mode & 0o777).toBe(0o600);
    await writeFileAtomic(join(dir, 'public'), 'x', 0o640);
    expect((await stat(join(dir, 'public'))).mode & 0o777).toBe(0o640);
  });

  it('keeps the old content and cleans up when the write fails', async () => {
    const path = join(dir, 'a.json');
    await writeFile(path, 'old');
    // A directory cannot be renamed over by a file: the rename fails after the temp was written.
    await mkdir(join(dir, 'sub'));
    await expect(writeFileAtomic(join(dir, 'sub'), 'new')).rejects.toThrow();
    expect((await stat(join(dir, 'sub'))).isDirectory()).toBe(true);
    expect(await readFile(path, 'utf8')).toBe('old');
    expect((await readdir(dir)).filter(isTempFile)).toEqual([]);
  });

  it('fails when the directory does not exist', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'a.json'), 'x')).rejects.toThrow(/ENOENT/);
  });
});

describe('temp file names', () => {
  it('are recognised as temp files and never look like records', () => {
    const tmp = tempPathFor(join(dir, 'orders.json'));
    const name = tmp.slice(dir.length + 1);
    expect(isTempFile(name)).toBe(true);
    expect(name.endsWith('.json')).toBe(false);
    expect(tempPathFor(join(dir, 'x'))).not.toBe(tempPathFor(join(dir, 'x')));
    expect(isTempFile('orders.json')).toBe(false);
    expect(isTempFile('orders.tmp')).toBe(false);
  });
});
