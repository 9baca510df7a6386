/**
 * The Keyward image, built from the working tree without Docker or a registry:
 *
 *   layer 1  the `node` binary of the pinned devDependency (stripped) and the shared libraries
 *            `ldd` lists for it, /etc/passwd and /etc/group naming uid 65532, and /tmp
 *   layer 2  the production dependencies (`npm ci --omit=dev --ignore-scripts`), without .bin,
 *            type declarations and source maps
 *   layer 3  the project's runtime files: exactly what .dockerignore lets into a Docker build,
 *            and the stripped-sources cache made from them by the image's node
 *            (engine/boot/stripped-sources.mjs), so the image never loads Node's TypeScript stripper
 *
 * There is no shell and no npm in it. It runs as 65532:65532 and writes nothing outside /tmp, so
 * it works on a read-only root filesystem. Every file belongs to root and has mode 0644 or 0755,
 * and every mtime is the commit time (or SOURCE_DATE_EPOCH), so the same commit gives the same
 * image digest.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { contextFiles } from './files.ts';
import { type BuiltImage, buildImage, writeArchive } from './oci.ts';
import type { TarEntry } from './tar.ts';

/** The repository root. */
export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/** Where `npm run image` writes keyward.tar, ref and image.json. */
export const IMAGE_DIR = join(REPO_ROOT, '.image');
/** The image's user and group (distroless' "nonroot"), as the chart's pods require. */
export const IMAGE_UID = 65532;

/** Options of {@link buildKeywardImage}. */
export interface KeywardImageOptions {
  /** Output folder; `.image`. */
  outDir?: string;
  /** Reuse the npm install and the compressed layers of earlier builds; default true. */
  cache?: boolean;
  /** Progress lines; silent by default. */
  log?: (line: string) => void;
}

/** What a build wrote. */
export interface KeywardImage {
  ref: string;
  digest: string;
  archive: string;
  compressedSize: number;
  unpackedSize: number;
  layers: BuiltImage['layers'];
  seconds: number;
}

/** Builds the image into `<outDir>/keyward.tar` and writes `ref` and `image.json` beside it. */
export function buildKeywardImage(options: KeywardImageOptions = {}): KeywardImage {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const outDir = options.outDir ?? IMAGE_DIR;
  const cacheDir = options.cache === false ? undefined : join(IMAGE_DIR, 'cache');
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    version: string;
    devDependencies: Record<string, string>;
  };
  const ref = `localhost/keyward/keyward:${pkg.version}`;
  const created = sourceDateEpoch();
  const scratch = mkdtempSync(join(tmpdir(), 'keyward-image-'));
  try {
    log('runtime layer: node binary and its libraries');
    const runtime = runtimeEntries(pkg.devDependencies.node ?? '', scratch);
    log('dependency layer: npm ci --omit=dev');
    const deps = dependencyEntries(cacheDir, scratch);
    const app = contextFiles(REPO_ROOT).map((path) => fileEntry(join(REPO_ROOT, path), `app/${path}`));
    log(`app layer: ${app.length} files from .dockerignore, and the stripped-sources cache`);
    app.push(fileEntry(strippedSources(pkg.devDependencies.node ?? '', scratch), `app/${STRIPPED_SOURCES}`));
    const image = buildImage({
      ref,
      created,
      ...(cacheDir ? { cacheDir: join(cacheDir, 'layers') } : {}),
      layers: [
        { entries: runtime, createdBy: `node ${pkg.devDependencies.node} and the libraries ldd lists` },
        { entries: deps, createdBy: 'npm ci --omit=dev --ignore-scripts' },
        { entries: app, createdBy: 'the files .dockerignore lets in' },
      ],
      config: {
        User: `${IMAGE_UID}:${IMAGE_UID}`,
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production', 'HOME=/tmp'],
        Entrypoint: ['/usr/local/bin/node', '/app/engine/cli/keyward.mjs'],
        Cmd: ['--help'],
        WorkingDir: '/app',
        ExposedPorts: { '8443/tcp': {}, '8080/tcp': {} },
        Labels: {
          'org.opencontainers.image.title': 'keyward',
          'org.opencontainers.image.version': pkg.version,
          'org.opencontainers.image.revision': gitRevision(),
        },
      },
    });
    mkdirSync(outDir, { recursive: true });
    const archive = join(outDir, 'keyward.tar');
    writeArchive(image, created, archive);
    writeFileSync(join(outDir, 'ref'), `${ref}\n`);
    const result: KeywardImage = {
      ref,
      digest: image.digest,
      archive,
      compressedSize: image.compressedSize,
      unpackedSize: image.unpackedSize,
      layers: image.layers,
      seconds: (performance.now() - started) / 1000,
    };
    const { seconds: _, ...stable } = result;
    writeFileSync(join(outDir, 'image.json'), `${JSON.stringify(stable, null, 2)}\n`);
    return result;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The commit time of HEAD, or SOURCE_DATE_EPOCH when set (reproducible-builds.org). */
function sourceDateEpoch(): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined && /^\d+$/.test(env)) return Number(env);
  try {
    return Number(
      execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim(),
    );
  } catch {
    return 0;
  }
}

function gitRevision(): string {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    }).trim();
    return dirty === '' ? head : `${head}-dirty`;
  } catch {
    return 'unknown';
  }
}

/** The pinned node binary; refuses another version (a stale node_modules, say). */
export function pinnedNodeBinary(version: string): string {
  const bin = join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(bin)) throw new Error(`no ${bin}: run npm ci first`);
  const actual = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  if (actual !== `v${version}`)
    throw new Error(`${bin} is ${actual}, package.json pins node ${version}: run npm ci`);
  return bin;
}

/** Absolute paths of the shared libraries (and the loader) that `ldd` lists for `bin`. */
export function sharedLibraries(bin: string): string[] {
  const out = execFileSync('ldd', [bin], { encoding: 'utf8' });
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1]) libs.add(m[1]);
    if (/not found/.test(line)) throw new Error(`ldd ${bin}: ${line.trim()}`);
  }
  return [...libs].sort();
}

function runtimeEntries(nodeVersion: string, scratch: string): TarEntry[] {
  const bin = pinnedNodeBinary(nodeVersion);
  // Debug symbols are a sixth of the binary and never used at run time. `strip` is in binutils;
  // without it the image is larger but the same otherwise.
  let node = readFileSync(bin);
  try {
    const stripped = join(scratch, 'node');
    execFileSync('strip', ['--strip-all', '-o', stripped, bin], { stdio: 'ignore' });
    node = readFileSync(stripped);
  } catch {
    // keep the unstripped binary
  }
  const entries: TarEntry[] = [{ type: 'file', path: 'usr/local/bin/node', mode: 0o755, data: node }];
  for (const lib of sharedLibraries(bin)) {
    // The real file under the name the loader looks for (readFileSync follows symlinks).
    entries.push({ type: 'file', path: lib.slice(1), mode: 0o755, data: readFileSync(lib) });
  }
  const text = (s: string) => Buffer.from(s);
  entries.push(
    {
      type: 'file',
      path: 'etc/passwd',
      mode: 0o644,
      data: text(
        `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${IMAGE_UID}:${IMAGE_UID}:nonroot:/tmp:/sbin/nologin\n`,
      ),
    },
    { type: 'file', path: 'etc/group', mode: 0o644, data: text(`root:x:0:\nnonroot:x:${IMAGE_UID}:\n`) },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
  );
  return entries;
}

/**
 * Files of the dependencies that nothing loads at run time (type declarations and source maps:
 * 48 MB of the 114 MB). The Dockerfile's deps stage deletes the same suffixes (a test checks).
 */
export const DEPENDENCY_PRUNE = ['.d.ts', '.d.mts', '.d.cts', '.map'] as const;

/**
 * The production dependencies, installed exactly as locked into a staging folder. With a cache
 * the install is kept by the digest of package.json and package-lock.json.
 */
function dependencyEntries(cacheDir: string | undefined, scratch: string): TarEntry[] {
  const manifest = readFileSync(join(REPO_ROOT, 'package.json'));
  const lock = readFileSync(join(REPO_ROOT, 'package-lock.json'));
  const key = createHash('sha256').update(manifest).update(lock).digest('hex').slice(0, 16);
  const staged = cacheDir ? join(cacheDir, `deps-${key}`) : join(scratch, 'deps');
  if (!existsSync(join(staged, 'node_modules'))) {
    const work = cacheDir ? `${staged}.tmp-${process.pid}` : staged;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    writeFileSync(join(work, 'package.json'), manifest);
    writeFileSync(join(work, 'package-lock.json'), lock);
    execFileSync(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
      {
        cwd: work,
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, npm_config_update_notifier: 'false' },
      },
    );
    if (work !== staged) {
      rmSync(staged, { recursive: true, force: true });
      renameSync(work, staged);
    }
  }
  const entries: TarEntry[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (name === '.bin') continue; // launcher scripts need a shell; the image has none
      if (DEPENDENCY_PRUNE.some((suffix) => name.endsWith(suffix))) continue;
      const abs = join(dir, name);
      const path = `${rel}/${name}`;
      const st = lstatSync(abs);
      if (st.isSymbolicLink()) entries.push({ type: 'symlink', path, target: readlinkSync(abs) });
      else if (st.isDirectory()) {
        entries.push({ type: 'dir', path, mode: 0o755 });
        walk(abs, path);
      } else if (st.isFile()) entries.push(fileEntry(abs, path));
    }
  };
  walk(join(staged, 'node_modules'), 'app/node_modules');
  return entries;
}

/** Where the image holds the stripped-sources cache, under /app (as `npm start` does). */
export const STRIPPED_SOURCES = '.keyward-cache/stripped-sources.json';

/** Writes the stripped-sources cache of the working tree with the pinned node; returns its path. */
function strippedSources(nodeVersion: string, scratch: string): string {
  const out = join(scratch, 'stripped-sources.json');
  execFileSync(
    pinnedNodeBinary(nodeVersion),
    [join(REPO_ROOT, 'engine/boot/strip-sources.mjs'), '--out', out],
    {
      stdio: 'ignore',
    },
  );
  return out;
}

/** A file entry with a normalised mode: 0755 when any execute bit is set, else 0644. */
function fileEntry(abs: string, path: string): TarEntry {
  const mode = statSync(abs).mode & 0o111 ? 0o755 : 0o644;
  return { type: 'file', path, mode, data: readFileSync(abs) };
}
