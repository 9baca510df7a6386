// Keyward's TypeScript modules with their types already stripped, so that a process started
// through engine/cli/keyward.mjs never loads Node's TypeScript stripper: a WebAssembly module that
// holds about 16 MiB resident in every process that uses it (`keyward serve` idle, Node 24.21;
// docs/performance.md, memory). Plain JavaScript on purpose: it runs before any `.ts` file can.
//
// The cache (CACHE_FILE) is written by strip-sources.mjs in a process of its own: at `npm run
// image`, and at start when it is missing or any file it lists has changed. Each entry holds the
// SHA-256 of the source it was stripped from, and is served only to that exact source; any other
// file is left to Node's own loader, so a stale or missing cache costs memory, never correctness.
// Entries also hold their file's size and mtime: the check at start reads and hashes only files
// whose stat differs, since the load hook hashes every module it serves anyway.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { registerHooks, stripTypeScriptTypes } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The project's root (engine/boot/../..). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where strip-sources.mjs writes the cache. */
export const CACHE_FILE = join(ROOT, '.keyward-cache', 'stripped-sources.json');
const BUILDER = join(ROOT, 'engine', 'boot', 'strip-sources.mjs');
/** The cache's format; bumped when it changes. */
export const CACHE_FORMAT = 1;

/**
 * @typedef {{ sha256: string, code: string, size?: number, mtimeMs?: number }} CacheEntry
 * @typedef {{ format: number, node: string, files: Record<string, CacheEntry> }} CacheFile
 */

/** @type {Map<string, CacheEntry> | undefined} */
let entries;

/** @param {string} text */
export function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The cache at `file` by file URL, or undefined when it is missing, unreadable, of another format
 * or written by another Node (whose stripper may differ).
 * @param {string} [file]
 * @returns {Map<string, CacheEntry> | undefined}
 */
export function readCache(file = CACHE_FILE) {
  /** @type {CacheFile} */
  let cache;
  try {
    cache = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  if (cache?.format !== CACHE_FORMAT || cache.node !== process.version || typeof cache.files !== 'object') {
    return undefined;
  }
  const map = new Map();
  for (const [path, entry] of Object.entries(cache.files))
    map.set(pathToFileURL(join(ROOT, path)).href, entry);
  return map;
}

/**
 * True when every file `cache` lists still has the source it was stripped from, as far as a check
 * at start need tell: a file whose size and mtime are those recorded is taken as unchanged, any
 * other is read and hashed. (An edit that keeps both is still caught when the module loads.)
 * @param {Map<string, CacheEntry>} cache
 */
export function cacheCurrent(cache) {
  for (const [url, entry] of cache) {
    const path = fileURLToPath(url);
    try {
      const st = statSync(path);
      if (st.size === entry.size && st.mtimeMs === entry.mtimeMs) continue;
      if (sha256(readFileSync(path, 'utf8')) !== entry.sha256) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * The cached stripped code of the module at `url` whose source is `text`; undefined when the cache
 * has none for exactly that source.
 * @param {string} url
 * @param {string} text
 */
export function cachedCode(url, text) {
  const entry = entries?.get(url);
  return entry !== undefined && entry.sha256 === sha256(text) ? entry.code : undefined;
}

/**
 * The module at `url` (source `text`) with its types stripped: from the cache when it has it, else
 * by Node's stripper (which then loads in this thread).
 * @param {string} url
 * @param {string} text
 */
export function strippedCode(url, text) {
  return cachedCode(url, text) ?? stripQuietly(text);
}

/**
 * Node's stripper on `text`, without its warning that it is experimental (Node's own loader is
 * the same stripper in the same mode).
 * @param {string} text
 */
export function stripQuietly(text) {
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    return stripTypeScriptTypes(text, { mode: 'strip' });
  } finally {
    process.emitWarning = emitWarning;
  }
}

/**
 * Serves this process's `.ts` modules from the cache, (re)building it first in a child process
 * when it is missing or stale. A read-only install (the image) that cannot rebuild goes on with
 * what it has; the builder's failure is never the caller's.
 */
export function useStrippedSources() {
  let cache = readCache();
  if (cache === undefined || !cacheCurrent(cache)) {
    try {
      execFileSync(process.execPath, [BUILDER], { stdio: 'ignore', timeout: 60_000 });
      cache = readCache();
    } catch {
      // Left to Node's loader below.
    }
  }
  entries = cache;
  registerHooks({
    load(url, context, nextLoad) {
      if (entries !== undefined && url.startsWith('file:') && url.endsWith('.ts')) {
        const entry = entries.get(url);
        if (entry !== undefined) {
          const code = cachedCode(url, readFileSync(fileURLToPath(url), 'utf8'));
          if (code !== undefined) return { format: 'module', source: code, shortCircuit: true };
        }
      }
      return nextLoad(url, context);
    },
  });
}
