/**
 * The worker's TypeScript modules with their types stripped, for worker-entry.mjs, so that no
 * worker loads Node's stripper (measured: about 10 MiB resident per thread; docs/performance.md,
 * memory). They come from the stripped-sources cache when it has them (engine/boot), else from the
 * stripper on this thread. The module graph is followed through static value imports and
 * re-exports of relative `.ts` paths; a module missed here is still loaded by Node in the worker,
 * only at that memory cost.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { strippedCode } from '../boot/stripped-sources.mjs';

const IMPORT = /^(?:import|export)\s+(?!type\s)[^;]*?from\s+'(\.{1,2}\/[^']+\.ts)';/gms;

const cached = new Map<string, Record<string, string>>();

/** Stripped sources by file URL, of `entry` and every module it imports (computed once). */
export function workerSources(entry: URL): Record<string, string> {
  const known = cached.get(entry.href);
  if (known !== undefined) return known;
  const sources: Record<string, string> = {};
  const pending = [entry.href];
  for (let url = pending.pop(); url !== undefined; url = pending.pop()) {
    if (sources[url] !== undefined) continue;
    const text = readFileSync(fileURLToPath(url), 'utf8');
    sources[url] = strippedCode(url, text);
    for (const m of text.matchAll(IMPORT)) pending.push(new URL(m[1]!, url).href);
  }
  cached.set(entry.href, sources);
  return sources;
}
