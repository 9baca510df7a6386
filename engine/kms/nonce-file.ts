/**
 * Random-nonce counting for `keyward kms-plugin --data-dir` (issue #11: the plugin's encryptions
 * were not counted in the nonce budget). The plugin only reads the data dir's key records
 * (`keyward serve` is their only writer), so it keeps its own durable count beside them, one file
 * per plugin (per socket), which `keyward serve` adds to its own count of the key:
 *
 *   `<data-dir>/kms-plugin/nonces/<namespace>/<lowercase name>/<plugin id>.json`
 *   `{"format":1,"createdTime":<key incarnation>,"versions":{"<N>":<reserved>}}`
 *
 * The plugin reserves blocks ahead (engine/keys/nonce-budget.ts) and writes the file atomically
 * before it encrypts under them; a restarted plugin takes its file's reservation as spent. A
 * crash can only over-count. A file of an earlier incarnation of the key (other `createdTime`)
 * counts for nothing. The plugin refuses to encrypt past the budget (UNAVAILABLE) until
 * `keyward serve`, which checks these files every few seconds, has rotated the key.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { decideNonces, type NonceCounter, nonceCount } from '../keys/nonce-budget.ts';
import { writeFileAtomic } from '../store/atomic-write.ts';
import { errnoCode, isErrno } from '../store/errno.ts';

const FORMAT = 1;

/** The directory of one key's plugin counts. */
export function kmsNonceDir(dataDir: string, namespace: string, name: string): string {
  return join(dataDir, 'kms-plugin', 'nonces', namespace, name.toLowerCase());
}

/** A plugin's id: a digest of its socket path (one plugin per socket). */
export function kmsPluginId(socketPath: string): string {
  return createHash('sha256').update(resolve(socketPath)).digest('hex').slice(0, 16);
}

interface NonceFile {
  format: number;
  createdTime: number;
  versions: Record<string, number>;
}

function parse(text: string): NonceFile | undefined {
  try {
    const f = JSON.parse(text) as NonceFile;
    if (f?.format !== FORMAT || typeof f.createdTime !== 'number' || typeof f.versions !== 'object')
      return undefined;
    return f;
  } catch {
    return undefined;
  }
}

/**
 * What the plugins reserved per version of `record` (this incarnation only), summed over every
 * plugin file of the key except `except`. A missing directory is none. Unreadable files are
 * skipped (an atomic write never leaves a partial one).
 */
export async function readKmsNonces(
  dataDir: string,
  record: Pick<KeyRecord, 'namespace' | 'name' | 'createdTime'>,
  except?: string,
): Promise<Map<number, number>> {
  const dir = kmsNonceDir(dataDir, record.namespace, record.name);
  const out = new Map<number, number>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return out;
    throw err;
  }
  for (const name of names) {
    if (!name.endsWith('.json') || name === `${except}.json`) continue;
    let text: string;
    try {
      text = await readFile(join(dir, name), 'utf8');
    } catch {
      continue;
    }
    const f = parse(text);
    if (f === undefined || f.createdTime !== record.createdTime) continue;
    for (const [v, n] of Object.entries(f.versions)) {
      if (Number.isSafeInteger(n) && n > 0) out.set(Number(v), (out.get(Number(v)) ?? 0) + n);
    }
  }
  return out;
}

/** The plugin's side: counts before it encrypts (see the module comment). */
export class KmsNonceLedger {
  readonly #dataDir: string;
  readonly #id: string;
  readonly #budget: number;
  #incarnation: number | undefined;
  readonly #counters = new Map<number, NonceCounter>();
  /** What serve and the other plugins counted, per version, as last read. */
  #others = new Map<number, number>();
  #writing: Promise<void> | undefined;

  constructor(dataDir: string, pluginId: string, budget: number) {
    this.#dataDir = dataDir;
    this.#id = pluginId;
    this.#budget = budget;
  }

  /** Counts one encryption under `version` of `record`; resolves once it is durably covered. */
  async spend(record: KeyRecord, version: number, count = 1): Promise<void> {
    if (this.#incarnation !== record.createdTime) await this.#load(record);
    for (;;) {
      const counter = this.#counter(version);
      const base = nonceCount(record, version) + (this.#others.get(version) ?? 0);
      const decision = decideNonces(
        { used: base + counter.used, reserved: base + counter.reserved },
        count,
        this.#budget,
      );
      if (decision.action === 'proceed') {
        counter.used += count;
        return;
      }
      if (this.#writing !== undefined) {
        await this.#writing.catch(() => undefined);
        continue;
      }
      if (decision.action === 'rotate') {
        throw new KeywardError(
          'UNAVAILABLE',
          `version ${version} of key ${record.namespace}/${record.name} has spent its nonce budget of ${this.#budget} ` +
            'random-nonce encryptions; keyward serve on this data dir rotates it',
          { retryAfterSeconds: 1 },
        );
      }
      this.#writing = this.#reserve(record, version, decision.reserved - base).finally(() => {
        this.#writing = undefined;
      });
      await this.#writing;
    }
  }

  #counter(version: number): NonceCounter {
    let c = this.#counters.get(version);
    if (c === undefined) {
      c = { used: 0, reserved: 0 };
      this.#counters.set(version, c);
    }
    return c;
  }

  /** A new incarnation (or the first use): this plugin's file is taken as spent. */
  async #load(record: KeyRecord): Promise<void> {
    this.#counters.clear();
    this.#incarnation = record.createdTime;
    const path = join(kmsNonceDir(this.#dataDir, record.namespace, record.name), `${this.#id}.json`);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw this.#unavailable(err);
    }
    const f = text === undefined ? undefined : parse(text);
    if (f !== undefined && f.createdTime === record.createdTime) {
      for (const [v, n] of Object.entries(f.versions)) {
        if (Number.isSafeInteger(n) && n > 0) this.#counters.set(Number(v), { used: n, reserved: n });
      }
    }
    this.#others = await readKmsNonces(this.#dataDir, record, this.#id);
  }

  async #reserve(record: KeyRecord, version: number, reserved: number): Promise<void> {
    const dir = kmsNonceDir(this.#dataDir, record.namespace, record.name);
    const versions: Record<string, number> = {};
    for (const [v, c] of this.#counters) versions[String(v)] = v === version ? reserved : c.reserved;
    const file: NonceFile = { format: FORMAT, createdTime: record.createdTime, versions };
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(join(dir, `${this.#id}.json`), JSON.stringify(file));
      // Whatever the others reserved meanwhile counts from the next decision on.
      this.#others = await readKmsNonces(this.#dataDir, record, this.#id);
    } catch (err) {
      throw this.#unavailable(err);
    }
    this.#counter(version).reserved = reserved;
  }

  #unavailable(err: unknown): KeywardError {
    return new KeywardError(
      'UNAVAILABLE',
      `the plugin's nonce count cannot be recorded in the data dir (${errnoCode(err)}); encryption resumes once it can`,
      { retryAfterSeconds: 1 },
    );
  }
}
