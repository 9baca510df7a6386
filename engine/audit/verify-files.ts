/**
 * `keyward audit verify` over files: expands directories to their segment files (in name order,
 * which is log order), reads the master keys the checkpoints need, and feeds the verifier.
 */

import { createSecretKey, type KeyObject } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MasterKeyFileError,
  parseMasterKeyFile,
  parseMasterKeyFileContents,
} from '../store/master-key-file.ts';
import { ChainHasher } from './chain.ts';
import { type CheckpointKey, checkpointKeyFrom, deriveCheckpointKey } from './checkpoint-key.ts';
import { SEGMENT_FILE } from './sinks.ts';
import { Verifier, type VerifyOptions, type VerifyReport } from './verify.ts';

/** The audit directory inside a standalone data dir. */
export const AUDIT_DIR = 'audit';

/** A file the verifier cannot use (exit 2). */
export class VerifyInputError extends Error {
  override name = 'VerifyInputError';
}

/** Files to verify: each FILE as given, each DIR as its segment files in order. */
export async function expandInputs(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(path);
    } catch (err) {
      throw new VerifyInputError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (st.isDirectory()) {
      const names = (await readdir(path)).filter((n) => SEGMENT_FILE.test(n)).sort();
      if (names.length === 0) throw new VerifyInputError(`${path} holds no audit segment files`);
      files.push(...names.map((n) => join(path, n)));
    } else {
      files.push(path);
    }
  }
  return files;
}

/**
 * Reads the master key file at `path` and parses it with `parse`, with one line for each way that
 * fails; the file's bytes are zeroed once parsed (what `parse` returns is the caller's to zero).
 */
async function parseMasterKeyFileAt<T>(path: string, parse: (bytes: Buffer) => T): Promise<T> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new VerifyInputError(
      `cannot read the master key file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  try {
    return parse(bytes);
  } catch (err) {
    if (err instanceof MasterKeyFileError) throw new VerifyInputError(`${path} ${err.message}`);
    throw err;
  } finally {
    bytes.fill(0);
  }
}

/**
 * Reads every master-key version of a master key file: 32 raw bytes or 44 characters of standard
 * base64 (version 1, as `KEYWARD_MASTER_KEY_FILE` and the master-key Secret's entry hold it), or
 * the versioned form `keyward master-key rotate` writes (engine/store/master-key-file.ts).
 */
export async function readMasterKeyVersions(path: string): Promise<KeyObject[]> {
  // Every master-key version the file holds; checkpoints name theirs by key id.
  const versions = await parseMasterKeyFileAt(path, parseMasterKeyFile);
  try {
    return [...versions.values()].map((k) => createSecretKey(k));
  } finally {
    for (const k of versions.values()) k.fill(0);
  }
}

/** The newest master-key version of a master-key file (see `readMasterKeyVersions`). */
export async function readMasterKeyFile(path: string): Promise<KeyObject> {
  return (await readMasterKeyVersions(path)).at(-1)!;
}

/**
 * The checkpoint keys a master key file gives: one per master-key version it holds, and those
 * kept for versions a master-key rotation retired (engine/store/master-key-file.ts).
 */
export async function readCheckpointKeys(path: string): Promise<CheckpointKey[]> {
  const contents = await parseMasterKeyFileAt(path, parseMasterKeyFileContents);
  try {
    return await Promise.all([
      ...[...contents.keys.values()].map((k) => deriveCheckpointKey(createSecretKey(k))),
      // checkpointKeyFrom keeps its own copy: the buffers here are zeroed below.
      ...contents.auditKeys.map((a) => checkpointKeyFrom(new Uint8Array(a.key), a.id)),
    ]);
  } finally {
    for (const k of contents.keys.values()) k.fill(0);
    for (const a of contents.auditKeys) a.key.fill(0);
  }
}

/** Derives the checkpoint keys of the given master keys. */
export async function checkpointKeys(masters: readonly KeyObject[]): Promise<CheckpointKey[]> {
  return Promise.all(masters.map((m) => deriveCheckpointKey(m)));
}

/** Verifies `files` in the order given. */
export async function verifyFiles(files: readonly string[], options: VerifyOptions): Promise<VerifyReport> {
  const verifier = new Verifier(options, await ChainHasher.create());
  for (const file of files) {
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch (err) {
      throw new VerifyInputError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (buf.length === 0) continue;
    const lines = buf.toString('utf8').split('\n');
    // A file that ends with a newline splits into a last empty string, which is no line.
    const terminated = lines.at(-1) === '';
    if (terminated) lines.pop();
    // The bytes of a cut last line, counted in the file (a cut may split a UTF-8 sequence).
    const tornBytes = terminated ? 0 : buf.length - (buf.lastIndexOf(0x0a) + 1);
    for (let i = 0; i < lines.length; i++) {
      const last = i === lines.length - 1;
      if (!verifier.line(file, i + 1, lines[i]!, terminated || !last, last ? tornBytes : undefined)) break;
    }
    if (verifier.stopped) break;
  }
  return verifier.finish();
}
