// `npm run image`: reproducible (the same commit gives the same digest, cache or no cache), and
// minimal (node, its libraries, production dependencies and the files .dockerignore lets in; no
// shell, no npm; uid 65532). Needs no root, so it runs even where the node tier is skipped.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheCurrent, readCache } from '../../engine/boot/stripped-sources.mjs';
import { contextFiles } from '../../scripts/image/files.ts';
import {
  buildKeywardImage,
  type KeywardImage,
  pinnedNodeBinary,
  REPO_ROOT,
  STRIPPED_SOURCES,
  sharedLibraries,
} from '../../scripts/image/keyward-image.ts';

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

describe('npm run image', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-image-test-'));
  let cached: KeywardImage;
  let fresh: KeywardImage;

  beforeAll(() => {
    cached = buildKeywardImage({ outDir: join(dir, 'a') });
    fresh = buildKeywardImage({ outDir: join(dir, 'b'), cache: false });
    console.log(
      `image ${cached.ref} ${cached.digest}: ${mb(cached.compressedSize)} compressed, ${mb(cached.unpackedSize)} unpacked; built in ${cached.seconds.toFixed(1)} s with the cache, ${fresh.seconds.toFixed(1)} s without`,
    );
  }, 600_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is reproducible: two builds of the same tree, one without any cache, have the same digest and bytes', () => {
    expect(fresh.digest).toBe(cached.digest);
    expect(readFileSync(fresh.archive).equals(readFileSync(cached.archive))).toBe(true);
    expect(readFileSync(join(dir, 'a', 'ref'), 'utf8')).toBe(`${cached.ref}\n`);
    expect(cached.ref).toMatch(/^localhost\/keyward\/keyward:\d+\.\d+\.\d+/);
  });

  it('holds node, its libraries, the production dependencies and the .dockerignore files; no shell, no npm, no tests', () => {
    const layout = join(dir, 'layout');
    execFileSync('mkdir', ['-p', layout]);
    execFileSync('tar', ['-xf', cached.archive, '-C', layout]);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    expect(index.manifests[0]?.annotations['io.containerd.image.name']).toBe(cached.ref);
    const blob = (digest: string) => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]?.digest as string), 'utf8')) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as {
      config: { User: string; Entrypoint: string[]; WorkingDir: string };
    };
    expect(config.config).toMatchObject({
      User: '65532:65532',
      Entrypoint: ['/usr/local/bin/node', '/app/engine/cli/keyward.mjs'],
      WorkingDir: '/app',
    });
    const entries = manifest.layers.flatMap((l) =>
      execFileSync('tar', ['--numeric-owner', '-tvzf', blob(l.digest)], {
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      })
        .trim()
        .split('\n')
        .map((line) => line.split(/\s+/)),
    );
    const paths = entries.map((e) => (e[5] as string).replace(/\/$/, ''));
    expect(new Set(entries.map((e) => e[1]))).toEqual(new Set(['0/0']));
    for (const bad of [
      'bin/sh',
      'bin/bash',
      'usr/bin/env',
      'usr/local/bin/npm',
      'usr/local/lib/node_modules/npm',
    ])
      expect(paths).not.toContain(bad);
    expect(paths.filter((p) => p.includes('/.bin/') || p.endsWith('.d.ts') || p.endsWith('.map'))).toEqual(
      [],
    );
    // The project's own tests stay out (dependencies may ship theirs; nothing loads them).
    expect(paths.filter((p) => !p.startsWith('app/node_modules/') && p.endsWith('.test.ts'))).toEqual([]);
    const libs = sharedLibraries(
      pinnedNodeBinary(
        JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).devDependencies.node,
      ),
    );
    expect(paths).toEqual(expect.arrayContaining(['usr/local/bin/node', ...libs.map((l) => l.slice(1))]));
    const app = paths.filter(
      (p) =>
        p.startsWith('app/') &&
        !p.startsWith('app/node_modules') &&
        entries[paths.indexOf(p)]?.[0]?.startsWith('-'),
    );
    expect(app.map((p) => p.slice('app/'.length)).sort()).toEqual(
      [...contextFiles(REPO_ROOT), STRIPPED_SOURCES].sort(),
    );
    // The stripped-sources cache covers every runtime module, each for its exact source, made by
    // the image's node: the image never loads Node's TypeScript stripper.
    const appLayer = join(dir, 'app-layer');
    execFileSync('mkdir', ['-p', appLayer]);
    execFileSync('tar', ['-xzf', blob(manifest.layers.at(-1)?.digest as string), '-C', appLayer]);
    const cache = readCache(join(appLayer, 'app', STRIPPED_SOURCES));
    expect(cache).toBeDefined();
    const modules = contextFiles(REPO_ROOT).filter(
      (f) => f.endsWith('.ts') && /^(engine|operator)\//.test(f),
    );
    expect([...(cache?.keys() ?? [])].sort()).toEqual(
      modules.map((f) => pathToFileURL(join(REPO_ROOT, f)).href).sort(),
    );
    expect(cacheCurrent(cache!)).toBe(true);
    expect(paths).toContain('app/node_modules/fastify/package.json');
    expect(paths.some((p) => p.startsWith('app/node_modules/vitest'))).toBe(false);
  });
});
