/**
 * Creating the standalone data dir, one level at a time. Node's `mkdir(..., {recursive: true})`
 * never returns for a path under `/proc/self` (mkdir there fails with ENOENT although the parent
 * exists, and it retries forever), so a bad `--data-dir` spun at full CPU. This walk makes each
 * missing level once and turns every failure into one clear error naming the path.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { KeywardError } from '../errors.ts';

function dataDirError(path: string, reason: string): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', `cannot use ${path} as the data dir: ${reason}`, {
    field: 'data-dir',
  });
}

/** Creates `dataDir` (mode 0700 for the levels it makes) or throws an error naming it. */
export async function makeDataDir(dataDir: string): Promise<void> {
  const target = resolve(dataDir);
  const missing: string[] = [];
  let dir = target;
  for (;;) {
    try {
      const st = await stat(dir);
      if (!st.isDirectory()) {
        throw dataDirError(dataDir, `${dir} exists and is not a directory`);
      }
      break;
    } catch (err) {
      if (err instanceof KeywardError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw dataDirError(dataDir, `${dir} cannot be read (${code})`);
      missing.push(dir);
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  for (const level of missing.reverse()) {
    try {
      await mkdir(level, { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw dataDirError(dataDir, `${level} cannot be created (${code})`);
    }
  }
}
