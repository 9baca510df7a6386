/**
 * The layering docs/architecture.md states: the operator and the HTTP layer call the engine, and
 * nothing under engine/ depends on operator/. The one reference is the `keyward` CLI's
 * composition point, engine/cli/kube-commands.ts, which loads operator/cli.ts lazily when
 * `keyward operator` runs (so `keyward serve` never loads the operator or the Kubernetes client).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ENGINE = import.meta.dirname;
const ALLOWED = new Set(['cli/kube-commands.ts']);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('layering', () => {
  it('nothing under engine/ imports operator/, but the CLI composition point', () => {
    const offenders: string[] = [];
    for (const file of sources(ENGINE)) {
      const text = readFileSync(file, 'utf8');
      const imports = [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
      if (imports.some((spec) => /(^|\/)operator\//.test(spec))) offenders.push(relative(ENGINE, file));
    }
    expect(offenders.filter((f) => !ALLOWED.has(f))).toEqual([]);
    expect(offenders).toEqual([...ALLOWED]);
  });
});
