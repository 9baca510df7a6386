/**
 * The images the node needs besides Keyward's: the pod sandbox (`pause`, built here from
 * scripts/cluster/pause/pause.go) and CoreDNS (the binary build.sh makes from Go modules). Both
 * are single-layer OCI archives made by scripts/image/oci.ts, cached in `.image/node/` and
 * rebuilt only when their binary changes. `importImages` loads archives into the node's
 * containerd, where the CRI finds them (the node never pulls).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildImage, writeArchive } from '../image/oci.ts';
import { BIN_DIR, REPO_ROOT } from './cluster.ts';
import { NODE, NODE_PATHS } from './node-layout.ts';

const run = promisify(execFile);

/** Where the node's own image archives are kept. */
export const NODE_IMAGE_DIR = join(REPO_ROOT, '.image', 'node');

/** Builds `.controlplane/bin/pause` from pause.go when missing or when the source changed. */
export function buildPause(): string {
  const source = join(REPO_ROOT, 'scripts', 'cluster', 'pause', 'pause.go');
  const out = join(BIN_DIR, 'pause');
  const stamp = join(BIN_DIR, '.stamp-pause');
  const digest = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest) return out;
  mkdirSync(BIN_DIR, { recursive: true });
  execFileSync('go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', `${out}.tmp`, source], {
    env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  renameSync(`${out}.tmp`, out);
  writeFileSync(stamp, `${digest}\n`);
  return out;
}

/** An archive of a one-binary image, rebuilt when the binary's digest changes. */
function binaryImage(name: string, ref: string, bin: string, entrypoint: string[], user?: string): string {
  const data = readFileSync(bin);
  const digest = createHash('sha256').update(data).update(ref).digest('hex').slice(0, 16);
  const archive = join(NODE_IMAGE_DIR, `${name}.tar`);
  const stamp = join(NODE_IMAGE_DIR, `${name}.stamp`);
  if (existsSync(archive) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest)
    return archive;
  mkdirSync(NODE_IMAGE_DIR, { recursive: true });
  const image = buildImage({
    ref,
    created: 0,
    gzipLevel: 1,
    layers: [{ entries: [{ type: 'file', path: name, mode: 0o755, data }], createdBy: `${name} binary` }],
    config: { Entrypoint: entrypoint, ...(user ? { User: user } : {}) },
  });
  writeArchive(image, 0, archive);
  writeFileSync(stamp, `${digest}\n`);
  return archive;
}

/** Builds (when stale) the pause and CoreDNS archives; returns their paths. */
export function buildNodeImages(): string[] {
  const coredns = join(BIN_DIR, 'coredns');
  if (!existsSync(coredns)) throw new Error(`missing ${coredns}: run scripts/cluster/build.sh --node`);
  return [
    binaryImage('pause', NODE.pauseImage, buildPause(), ['/pause'], '65535:65535'),
    binaryImage('coredns', NODE.corednsImage, coredns, ['/coredns']),
  ];
}

/** `ctr` against the node's containerd, in the CRI's namespace. */
export function ctrArgs(...args: string[]): string[] {
  return ['--address', NODE_PATHS.containerdSocket, '--namespace', NODE.containerdNamespace, ...args];
}

/** Imports OCI archives into the node's containerd (unpacked for the overlayfs snapshotter). */
export async function importImages(archives: readonly string[]): Promise<void> {
  await Promise.all(
    archives.map(async (archive) => {
      try {
        await run('ctr', ctrArgs('images', 'import', archive), { timeout: 300_000 });
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(
          `ctr images import ${archive} failed: ${(e.stderr ?? e.message).trim().split('\n').pop()}`,
        );
      }
    }),
  );
}

/** References of the images the node's containerd holds. */
export async function listImages(): Promise<string[]> {
  const { stdout } = await run('ctr', ctrArgs('images', 'list', '--quiet'));
  return stdout.split('\n').filter((l) => l.trim() !== '');
}
