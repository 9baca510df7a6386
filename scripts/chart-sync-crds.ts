/**
 * Copies the CRDs of crds/ (the one source of truth) into charts/keyward/files/crds/, which the
 * chart renders as templates (helm cannot read files outside the chart). `--check` changes
 * nothing and exits 1 when a copy is missing, stale or extra.
 *
 * Usage: npm run chart:sync-crds [-- --check]
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CRD_SOURCE_DIR = join(ROOT, 'crds');
export const CRD_CHART_DIR = join(ROOT, 'charts', 'keyward', 'files', 'crds');

const yamlFiles = (dir: string): string[] => {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .sort();
  } catch {
    return [];
  }
};

/** Differences between crds/ and the chart's copy, one line each; empty when in sync. */
export function crdDrift(): string[] {
  const source = yamlFiles(CRD_SOURCE_DIR);
  const copies = yamlFiles(CRD_CHART_DIR);
  const drift: string[] = [];
  for (const f of source) {
    if (!copies.includes(f)) drift.push(`missing in the chart: ${f}`);
    else if (!readFileSync(join(CRD_SOURCE_DIR, f)).equals(readFileSync(join(CRD_CHART_DIR, f))))
      drift.push(`differs from crds/: ${f}`);
  }
  for (const f of copies) if (!source.includes(f)) drift.push(`not in crds/: ${f}`);
  return drift;
}

/** Makes the chart's copy equal crds/. */
export function syncCrds(): void {
  mkdirSync(CRD_CHART_DIR, { recursive: true });
  const source = yamlFiles(CRD_SOURCE_DIR);
  for (const f of yamlFiles(CRD_CHART_DIR)) if (!source.includes(f)) rmSync(join(CRD_CHART_DIR, f));
  for (const f of source) copyFileSync(join(CRD_SOURCE_DIR, f), join(CRD_CHART_DIR, f));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--check')) {
    const drift = crdDrift();
    for (const line of drift) console.error(`chart CRDs out of sync: ${line}`);
    if (drift.length > 0) {
      console.error('run `npm run chart:sync-crds`');
      process.exit(1);
    }
    console.log('chart CRDs are in sync with crds/');
  } else {
    syncCrds();
    console.log(`copied crds/*.yaml to ${CRD_CHART_DIR}`);
  }
}
