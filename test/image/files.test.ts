// The image's file list has one source (.dockerignore) for both builds; these tests keep the
// Dockerfile and `npm run image` from drifting apart, and check the pieces of the image builder
// (Docker's ignore rules, the tar writer) against what Docker and GNU tar do.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { contextFiles, isIncluded, parseDockerignore } from '../../scripts/image/files.ts';
import { DEPENDENCY_PRUNE, REPO_ROOT } from '../../scripts/image/keyward-image.ts';
import { sortEntries, writeTar } from '../../scripts/image/tar.ts';

const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
};

/** The Dockerfile's instructions per stage, continuation lines joined. */
function stages(): { from: string; lines: string[] }[] {
  const out: { from: string; lines: string[] }[] = [];
  const joined = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim());
  for (const line of joined) {
    if (line === '' || line.startsWith('#')) continue;
    if (/^FROM\s/i.test(line)) out.push({ from: line, lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

describe('one file list for the Dockerfile and npm run image', () => {
  it('the final stage copies the build context only once and whole, so .dockerignore is its only list', () => {
    const final = stages().at(-1);
    const contextCopies = final?.lines.filter((l) => /^COPY\s/i.test(l) && !/--from=/.test(l)) ?? [];
    expect(contextCopies).toEqual(['COPY --chown=0:0 . ./']);
    expect(final?.lines).toContain('WORKDIR /app');
  });

  it('the Dockerfile pins the node version of package.json, runs as 65532 and starts the same entry point', () => {
    expect(dockerfile).toMatch(
      new RegExp(`^ARG NODE_VERSION=${pkg.devDependencies.node?.replaceAll('.', '\\.')}$`, 'm'),
    );
    expect(dockerfile).toMatch(/^USER 65532:65532$/m);
    expect(dockerfile).toContain('ENTRYPOINT ["/usr/local/bin/node", "/app/engine/cli/keyward.mjs"]');
    // The image's stripped-sources cache, as npm run image makes it (keyward-image.ts STRIPPED_SOURCES).
    expect(dockerfile).toContain('RUN node engine/boot/strip-sources.mjs');
    expect(dockerfile).toContain('COPY --from=stripped --chown=0:0 /app/.keyward-cache ./.keyward-cache');
  });

  it('the Dockerfile prunes the same dependency files as npm run image', () => {
    const deps = stages()[0]?.lines.join(' ') ?? '';
    const pruned = [...deps.matchAll(/-name '\*([^']+)'/g)].map((m) => m[1]);
    expect(pruned.sort()).toEqual([...DEPENDENCY_PRUNE].sort());
    expect(deps).toContain('npm ci --omit=dev --ignore-scripts');
  });

  it('the context holds the runtime files and no tests, benches, docs or local state', () => {
    const files = contextFiles(REPO_ROOT);
    expect(files).toContain('engine/cli/main.ts');
    expect(files).toContain('operator/cli.ts');
    expect(files).toContain('crds/keys.keyward.io.yaml');
    expect(files).toContain('package.json');
    expect(files.filter((f) => f.endsWith('.test.ts'))).toEqual([]);
    const tops = new Set(files.map((f) => f.split('/')[0]));
    expect([...tops].sort()).toEqual(['crds', 'engine', 'operator', 'package-lock.json', 'package.json']);
  });
});

describe("Docker's .dockerignore rules", () => {
  // Cases from Docker's documentation of .dockerignore and moby/patternmatcher.
  const cases: [string, string, boolean][] = [
    ['*\n!engine/', 'engine/cli/main.ts', true],
    ['*\n!engine/', 'test/node/x.ts', false],
    ['*\n!engine/\n**/*.test.ts', 'engine/a/b.test.ts', false],
    ['*/temp*', 'somedir/temporary.txt', false],
    ['*/temp*', 'somedir/sub/temporary.txt', true],
    ['*/*/temp*', 'somedir/subdir/temporary.txt', false],
    ['temp?', 'tempa', false],
    ['temp?', 'tempab', true],
    ['**/*.go', 'a/b/c.go', false],
    ['**/*.go', 'c.go', false],
    ['*.md\n!README*.md\nREADME-secret.md', 'README-secret.md', false],
    ['*.md\n!README*.md\nREADME-secret.md', 'README-x.md', true],
    ['*.md\nREADME-secret.md\n!README*.md', 'README-secret.md', true],
    ['/node_modules', 'node_modules/x/index.js', false],
    ['# comment\n\nnode_modules', 'node_modules', false],
  ];
  it.each(cases)('%j: %s included = %s', (rules, path, included) => {
    expect(isIncluded(parseDockerignore(rules), path)).toBe(included);
  });
});

describe('the tar writer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-tar-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes what GNU tar lists: modes, owners, mtimes, long names, symlinks and implied parents', () => {
    const long = `app/node_modules/${'a'.repeat(60)}/${'b'.repeat(60)}/${'c'.repeat(70)}.js`;
    const tar = writeTar(
      sortEntries([
        { type: 'file', path: 'usr/local/bin/node', mode: 0o755, data: Buffer.from('#!\n') },
        { type: 'dir', path: 'tmp', mode: 0o1777 },
        { type: 'file', path: long, mode: 0o644, data: Buffer.from('x'.repeat(1000)) },
        { type: 'symlink', path: 'app/link', target: '../usr/local/bin/node' },
      ]),
      1_700_000_000,
    );
    const file = join(dir, 'layer.tar');
    writeFileSync(file, tar);
    const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', file], {
      encoding: 'utf8',
      env: { ...process.env, TZ: 'UTC' },
    })
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/));
    const byName = Object.fromEntries(listing.map((f) => [f[5], f]));
    expect(listing.map((f) => f[5])).toEqual([
      'app/',
      'app/link',
      'app/node_modules/',
      `app/node_modules/${'a'.repeat(60)}/`,
      `app/node_modules/${'a'.repeat(60)}/${'b'.repeat(60)}/`,
      long,
      'tmp/',
      'usr/',
      'usr/local/',
      'usr/local/bin/',
      'usr/local/bin/node',
    ]);
    expect(byName['usr/local/bin/node']?.slice(0, 5)).toEqual([
      '-rwxr-xr-x',
      '0/0',
      '3',
      '2023-11-14',
      '22:13:20',
    ]);
    expect(byName['tmp/']?.[0]).toBe('drwxrwxrwt');
    expect(byName[long]?.[2]).toBe('1000');
    expect(byName['app/link']?.slice(5)).toEqual(['app/link', '->', '../usr/local/bin/node']);
    expect(writeTar(sortEntries([{ type: 'dir', path: 'tmp', mode: 0o1777 }]), 1)).toEqual(
      writeTar(sortEntries([{ type: 'dir', path: 'tmp', mode: 0o1777 }]), 1),
    );
  });
});
