/**
 * The worker's TypeScript modules with their types stripped, for worker-entry.mjs: the main
 * thread has Node's stripper loaded anyway, so each worker is spared its own copy (measured: about
 * 10 MiB resident per thread; docs/performance.md, memory). The module graph is followed through
 * static value imports and re-exports of relative `.ts` paths; a module missed here is still
 * loaded by Node in the worker, only at that memory cost.
 */
import { readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { fileURLToPath } from 'node:url';

const IMPORT = /^(?:import|export)\s+(?!type\s)[^;]*?from\s+'(\.{1,2}\/[^']+\.ts)';/gms;

const cached = new Map<string, Record<string, string>>();

/** Stripped sources by file URL, of `entry` and every module it imports (computed once). */
export function workerSources(entry: URL): Record<string, string> {
  const known = cached.get(entry.href);
  if (known !== undefined) return known;
  const sources: Record<string, string> = {};
  const pending = [entry.href];
  // stripTypeScriptTypes warns that it is experimental: Node's own loader, which this main thread
  // already runs on the same files, is the same stripper in the same mode.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    for (let url = pending.pop(); url !== undefined; url = pending.pop()) {
      if (sources[url] !== undefined) continue;
      const text = readFileSync(fileURLToPath(url), 'utf8');
      sources[url] = stripTypeScriptTypes(text, { mode: 'strip' });
      for (const m of text.matchAll(IMPORT)) pending.push(new URL(m[1]!, url).href);
    }
  } finally {
    process.emitWarning = emitWarning;
  }
  cached.set(entry.href, sources);
  return sources;
}
