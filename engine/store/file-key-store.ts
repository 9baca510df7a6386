/**
 * The durable standalone key store: one JSON file per key under
 * `<data-dir>/keys/<namespace>/<lowercased-name>.json`, written atomically (see atomic-write.ts).
 *
 * All records are loaded into memory at `open`, so reads never touch the disk. Writes to one key
 * are serialized, and the in-memory index changes only after the write is durable, so a reader
 * never sees a record that a crash could take back. The store persists strings only: versions
 * hold material already wrapped under the master key; it never sees plaintext material.
 *
 * One process owns a data directory at a time: the data-dir lock (data-dir-lock.ts) keeps a second
 * server off a directory in use.
 */
import { mkdir, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { foldKeyName, validateKeyName } from '../keys/spec.ts';
import { fsyncDir, isTempFile, writeFileAtomic } from './atomic-write.ts';
import { isErrno } from './errno.ts';
import { KeyedQueue } from './keyed-queue.ts';
import { ensureDataDir } from './master-key.ts';
import { validateNamespace } from './namespace.ts';
import { decodeKeyRecord, encodeKeyRecord } from './record-codec.ts';

/** The write primitive, replaceable for fault-injection tests. */
export type WriteFileFn = (path: string, data: string) => Promise<void>;

/** Options of `FileKeyStore.open`. */
export interface FileKeyStoreOptions {
  /** Replaces `writeFileAtomic`; only tests use this. */
  writeFile?: WriteFileFn;
}

const RECORD_SUFFIX = '.json';

/** The fsck directory a volume's root holds; never a namespace (`+` is not allowed in one). */
const LOST_AND_FOUND = 'lost+found';

/** A file-backed, crash-safe store of key records. */
export class FileKeyStore {
  /** The data directory given to `open`. */
  readonly dataDir: string;
  readonly #keysDir: string;
  readonly #index = new Map<string, KeyRecord>();
  readonly #queue = new KeyedQueue();
  readonly #write: WriteFileFn;

  private constructor(dataDir: string, write: WriteFileFn) {
    this.dataDir = dataDir;
    this.#keysDir = join(dataDir, 'keys');
    this.#write = write;
  }

  /**
   * Opens (creating if needed, mode 0700) the store in `dataDir` and loads every record. Leftover
   * temp files of interrupted writes are deleted; a damaged record file stops the open with an
   * INTERNAL error naming the file, rather than silently dropping a key.
   */
  static async open(dataDir: string, options: FileKeyStoreOptions = {}): Promise<FileKeyStore> {
    const store = new FileKeyStore(dataDir, options.writeFile ?? ((p, d) => writeFileAtomic(p, d, 0o600)));
    await ensureDataDir(dataDir);
    await mkdir(store.#keysDir, { recursive: true, mode: 0o700 });
    await store.#load();
    return store;
  }

  /** All records, or those of one namespace, sorted by namespace then name. Copies. */
  async list(namespace?: string): Promise<KeyRecord[]> {
    if (namespace !== undefined) validateNamespace(namespace);
    const out: KeyRecord[] = [];
    for (const record of this.#index.values()) {
      if (namespace === undefined || record.namespace === namespace) out.push(structuredClone(record));
    }
    return out.sort((a, b) => indexKey(a.namespace, a.name).localeCompare(indexKey(b.namespace, b.name)));
  }

  /** The record named `name` (ignoring case) in `namespace`, or undefined. A copy. */
  async get(namespace: string, name: string): Promise<KeyRecord | undefined> {
    validateNamespace(namespace);
    const record = this.#index.get(indexKey(namespace, name));
    return record === undefined ? undefined : structuredClone(record);
  }

  /** Stores a new record. ALREADY_EXISTS if the namespace holds a key of that name, ignoring case. */
  async create(record: KeyRecord): Promise<void> {
    const key = checkIdentity(record);
    await this.#queue.run(key, async () => {
      const existing = this.#index.get(key);
      if (existing !== undefined) {
        throw new KeywardError('ALREADY_EXISTS', `a key named ${existing.name} already exists`, {
          field: 'name',
        });
      }
      await this.#persist(key, record, true);
    });
  }

  /** Replaces an existing record atomically. KEY_NOT_FOUND if there is none. */
  async put(record: KeyRecord): Promise<void> {
    const key = checkIdentity(record);
    await this.#queue.run(key, async () => {
      if (!this.#index.has(key)) throw notFound(record.name);
      await this.#persist(key, record, false);
    });
  }

  /**
   * Deletes a record durably (unlink, then fsync the directory). Returns false if there was none,
   * so a scheduled destruction racing a delete-now is harmless.
   */
  async remove(namespace: string, name: string): Promise<boolean> {
    validateNamespace(namespace);
    const key = indexKey(namespace, name);
    return this.#queue.run(key, async () => {
      if (!this.#index.has(key)) return false;
      const dir = join(this.#keysDir, namespace);
      try {
        await unlink(join(dir, fileName(name)));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      await fsyncDir(dir);
      this.#index.delete(key);
      return true;
    });
  }

  async #persist(key: string, record: KeyRecord, isNew: boolean): Promise<void> {
    const dir = join(this.#keysDir, record.namespace);
    if (isNew) {
      const made = await mkdir(dir, { recursive: true, mode: 0o700 });
      // A new namespace directory must itself survive a crash.
      if (made !== undefined) await fsyncDir(this.#keysDir);
    }
    const copy = structuredClone(record);
    await this.#write(join(dir, fileName(record.name)), encodeKeyRecord(copy));
    this.#index.set(key, copy);
  }

  async #load(): Promise<void> {
    for (const ns of await readdir(this.#keysDir, { withFileTypes: true })) {
      // `lost+found` is what fsck keeps at the root of a volume: keys/ may be a mount point.
      if (!ns.isDirectory() || ns.name === LOST_AND_FOUND) continue;
      const namespace = ns.name;
      validateNamespaceDir(namespace);
      const dir = join(this.#keysDir, namespace);
      let cleaned = false;
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (isTempFile(entry.name)) {
          // An interrupted write: the rename never happened, so the record is still the old one.
          await rm(join(dir, entry.name), { force: true });
          cleaned = true;
          continue;
        }
        if (!entry.isFile() || !entry.name.endsWith(RECORD_SUFFIX)) continue;
        const source = `${namespace}/${entry.name}`;
        const record = decodeKeyRecord(await readFile(join(dir, entry.name), 'utf8'), source);
        if (record.namespace !== namespace || fileName(record.name) !== entry.name) {
          throw new KeywardError('INTERNAL', `stored key record ${source} does not match its file name`);
        }
        this.#index.set(indexKey(namespace, record.name), record);
      }
      if (cleaned) await fsyncDir(dir);
    }
  }
}

function indexKey(namespace: string, name: string): string {
  return `${namespace}/${foldKeyName(name)}`;
}

function fileName(name: string): string {
  return `${name.toLowerCase()}${RECORD_SUFFIX}`;
}

/** Validates a record's namespace and name before anything touches the disk. */
function checkIdentity(record: KeyRecord): string {
  validateNamespace(record.namespace);
  validateKeyName(record.name);
  return indexKey(record.namespace, record.name);
}

function validateNamespaceDir(namespace: string): void {
  try {
    validateNamespace(namespace);
  } catch {
    throw new KeywardError(
      'INTERNAL',
      `the key store holds a directory that is not a namespace: ${namespace}`,
    );
  }
}

function notFound(name: string): KeywardError {
  return new KeywardError('KEY_NOT_FOUND', `key ${name} not found`, { field: 'name' });
}
