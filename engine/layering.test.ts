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

describe('the core below the HTTP layer', () => {
  // The pool's workers run whole batch requests, so they parse the API's wire format; that lives
  // in engine/wire/, below both. The core imports nothing of the HTTP server.
  it('engine/{pool,crypto,keys,service,store,wire} and the engine import nothing from engine/http/', () => {
    const offenders: string[] = [];
    const core = ['pool', 'crypto', 'keys', 'service', 'store', 'wire'].flatMap((d) =>
      sources(join(ENGINE, d)),
    );
    for (const file of [...core, join(ENGINE, 'engine.ts'), join(ENGINE, 'operation-plans.ts')]) {
      const text = readFileSync(file, 'utf8');
      const imports = [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
      if (imports.some((spec) => /(^|\/)http\//.test(spec))) offenders.push(relative(ENGINE, file));
    }
    expect(offenders).toEqual([]);
  });
});

describe('dependencies', () => {
  // The image holds the production dependencies only (issue #17 moved yaml, used by tests and
  // scripts alone, to devDependencies): runtime code must not import anything else.
  it('runtime code (engine/, operator/) imports only node: builtins and production dependencies', () => {
    const root = join(ENGINE, '..');
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const allowed = new Set(Object.keys(pkg.dependencies));
    const bad: string[] = [];
    for (const dir of ['engine', 'operator']) {
      for (const file of sources(join(root, dir))) {
        if (/\.(unit\.)?test\.ts$|\.fixtures\.ts$|\/fixtures\//.test(file)) continue;
        const text = readFileSync(file, 'utf8');
        for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)) {
          const spec = m[1]!;
          if (spec.startsWith('.') || spec.startsWith('node:')) continue;
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          if (!allowed.has(name)) bad.push(`${relative(root, file)}: ${spec}`);
        }
      }
    }
    expect(bad).toEqual([]);
    expect(allowed.has('yaml')).toBe(false);
  });
});
