/**
 * Writes OCI images without Docker or a registry: layers as deterministic gzipped tars, the
 * config, the manifest and an index, packed as an OCI image-layout archive that
 * `ctr images import`, `skopeo copy oci-archive:...`, `podman load` and recent `docker load`
 * accept. Same inputs, same bytes, same digest.
 *
 * Gzipping the ~100 MB runtime layer is the slow part of a build, so compressed layers are
 * cached by the digest of their uncompressed tar (the diff ID): an unchanged layer costs a
 * hash.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { sortEntries, type TarEntry, writeTar } from './tar.ts';

/** A content descriptor (OCI image-spec). */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string };
  annotations?: Record<string, string>;
}

/** One layer: its entries and a history line. */
export interface LayerInput {
  entries: TarEntry[];
  createdBy: string;
}

/** The image config's `config` part (what a runtime reads). */
export interface RuntimeConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
}

/** What {@link buildImage} needs. */
export interface ImageInput {
  /** Full reference, e.g. `localhost/keyward/keyward:0.1.0`. */
  ref: string;
  layers: LayerInput[];
  config: RuntimeConfig;
  /** Seconds since the epoch: every file's mtime and the image's creation time. */
  created: number;
  /** Where compressed layers are cached by diff ID; no cache when absent. */
  cacheDir?: string;
  /** gzip level, 1..9; default 6. */
  gzipLevel?: number;
}

/** A built image: its blobs and the descriptors that name them. */
export interface BuiltImage {
  ref: string;
  /** The manifest digest: what `ctr images ls` shows and what a registry would serve. */
  digest: string;
  /** Every blob by digest (layers, config, manifest). */
  blobs: Map<string, Buffer>;
  manifest: Descriptor;
  layers: { digest: string; diffId: string; size: number; unpacked: number }[];
  /** Sum of the compressed layers: the download size. */
  compressedSize: number;
  /** Sum of the uncompressed layer tars: about the size on disk. */
  unpackedSize: number;
}

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

const sha256 = (data: Uint8Array): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Builds the layers, config and manifest of an image (in memory). */
export function buildImage(input: ImageInput): BuiltImage {
  const blobs = new Map<string, Buffer>();
  const layers: BuiltImage['layers'] = [];
  for (const layer of input.layers) {
    const tar = writeTar(sortEntries(layer.entries), input.created);
    const diffId = sha256(tar);
    const gz = compressed(tar, diffId, input.cacheDir, input.gzipLevel ?? 6);
    const digest = sha256(gz);
    blobs.set(digest, gz);
    layers.push({ digest, diffId, size: gz.length, unpacked: tar.length });
  }
  const createdIso = new Date(input.created * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const config = json({
    created: createdIso,
    architecture: 'amd64',
    os: 'linux',
    config: input.config,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: input.layers.map((l) => ({ created: createdIso, created_by: l.createdBy })),
  });
  const configDigest = sha256(config);
  blobs.set(configDigest, config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: MEDIA.layer, digest: l.digest, size: l.size })),
  });
  const digest = sha256(manifest);
  blobs.set(digest, manifest);
  return {
    ref: input.ref,
    digest,
    blobs,
    manifest: {
      mediaType: MEDIA.manifest,
      digest,
      size: manifest.length,
      platform: { architecture: 'amd64', os: 'linux' },
      annotations: {
        // containerd names the imported image from this; other tools from ref.name.
        'io.containerd.image.name': input.ref,
        'org.opencontainers.image.ref.name': tagOf(input.ref),
      },
    },
    layers,
    compressedSize: layers.reduce((n, l) => n + l.size, 0),
    unpackedSize: layers.reduce((n, l) => n + l.unpacked, 0),
  };
}

/** The OCI image-layout archive (a tar of `oci-layout`, `index.json` and `blobs/sha256/*`). */
export function ociArchive(image: BuiltImage, created: number): Buffer {
  const index = json({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [image.manifest] });
  const entries: TarEntry[] = [
    { type: 'file', path: 'oci-layout', mode: 0o644, data: json({ imageLayoutVersion: '1.0.0' }) },
    { type: 'file', path: 'index.json', mode: 0o644, data: index },
  ];
  for (const [digest, data] of image.blobs) {
    entries.push({ type: 'file', path: `blobs/sha256/${digest.slice('sha256:'.length)}`, mode: 0o644, data });
  }
  return writeTar(sortEntries(entries), created);
}

/** Writes the archive to `path` atomically (a rename), so a reader never sees half an image. */
export function writeArchive(image: BuiltImage, created: number, path: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, ociArchive(image, created));
  renameSync(tmp, path);
}

/** The tag part of a reference (`0.1.0` of `localhost/keyward/keyward:0.1.0`). */
export function tagOf(ref: string): string {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? ref.slice(colon + 1) : 'latest';
}

function compressed(tar: Buffer, diffId: string, cacheDir: string | undefined, level: number): Buffer {
  const cached = cacheDir ? join(cacheDir, `${diffId.slice('sha256:'.length)}.${level}.gz`) : undefined;
  if (cached && existsSync(cached)) return readFileSync(cached);
  // Node's gzip header has no file name and mtime 0, so the bytes depend on the data alone.
  const gz = gzipSync(tar, { level });
  if (cached && cacheDir) {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(`${cached}.tmp-${process.pid}`, gz);
    renameSync(`${cached}.tmp-${process.pid}`, cached);
  }
  return gz;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
