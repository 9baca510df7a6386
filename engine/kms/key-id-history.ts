/**
 * The `key_id`s a plugin has reported, oldest first, kept in a file so that a `key_id` the plugin
 * moved away from is never reported again, even after a restart (see `nextKeyId`). One file per
 * plugin instance: two plugins serving different keys must not share one, or each would see the
 * other's key "come back" on every Status.
 *
 * Without a state dir the history lives in memory only, and the guarantee holds for the life of
 * the process.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KeywardError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic-write.ts';
import { errnoCode, isErrno } from '../store/errno.ts';
import { nextKeyId, parseKeyId } from './key-id.ts';

interface HistoryFile {
  version: 1;
  keyIds: string[];
}

/** See the module comment. Create with `KeyIdHistory.open`. */
export class KeyIdHistory {
  /** The file, or undefined when the history is kept in memory only. */
  readonly path: string | undefined;
  #keyIds: readonly string[];

  private constructor(path: string | undefined, keyIds: readonly string[]) {
    this.path = path;
    this.#keyIds = keyIds;
  }

  /**
   * Loads the history from `path` (creating its directory, mode 0700), or starts an in-memory
   * one. A damaged file stops the start: silently starting over could report an old `key_id`.
   */
  static async open(path: string | undefined): Promise<KeyIdHistory> {
    if (path === undefined) return new KeyIdHistory(undefined, []);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        // Prove now that the file can be written, rather than at the first rotation.
        await writeFileAtomic(path, encode([]), 0o600);
        return new KeyIdHistory(path, []);
      }
      throw new KeywardError('INTERNAL', `cannot read the key_id history ${path} (${errnoCode(err)})`);
    }
    return new KeyIdHistory(path, decode(text, path));
  }

  /** Every `key_id` reported so far, oldest first. */
  get keyIds(): readonly string[] {
    return this.#keyIds;
  }

  /** The last `key_id` reported, if any. */
  get last(): string | undefined {
    return this.#keyIds.at(-1);
  }

  /**
   * The `key_id` to report for `base` (see `nextKeyId`). A new one is durable in the file before
   * this resolves, so it is never reported without being remembered.
   */
  async report(base: string): Promise<{ keyId: string; changed: boolean }> {
    const next = nextKeyId(this.#keyIds, base);
    if (next.changed && this.path !== undefined) {
      try {
        await writeFileAtomic(this.path, encode(next.history), 0o600);
      } catch (err) {
        throw new KeywardError(
          'UNAVAILABLE',
          `cannot record the new key_id in ${this.path} (${errnoCode(err)})`,
        );
      }
    }
    this.#keyIds = next.history;
    return { keyId: next.keyId, changed: next.changed };
  }
}

function encode(keyIds: readonly string[]): string {
  const file: HistoryFile = { version: 1, keyIds: [...keyIds] };
  return `${JSON.stringify(file, null, 2)}\n`;
}

function decode(text: string, path: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw damaged(path);
  }
  const file = value as Partial<HistoryFile> | null;
  if (
    file === null ||
    typeof file !== 'object' ||
    file.version !== 1 ||
    !Array.isArray(file.keyIds) ||
    !file.keyIds.every((id) => typeof id === 'string' && parseKeyId(id) !== undefined)
  ) {
    throw damaged(path);
  }
  return file.keyIds;
}

function damaged(path: string): KeywardError {
  return new KeywardError(
    'INTERNAL',
    `the key_id history ${path} is damaged; restore it from a backup (starting over could report an old key_id again)`,
  );
}
