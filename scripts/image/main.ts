/**
 * `npm run image [-- --no-cache] [-- --out DIR]`: builds the Keyward OCI image from the working
 * tree (see keyward-image.ts) and prints its reference, digest and size.
 */
import { parseArgs } from 'node:util';
import { buildKeywardImage } from './keyward-image.ts';

const USAGE = `Usage: npm run image [-- --no-cache] [-- --out DIR]

Builds the Keyward image (node binary + its libraries, production dependencies, runtime files;
uid 65532, no shell) without Docker or a registry and writes
  <out>/keyward.tar   an OCI image-layout archive (ctr -n k8s.io images import, skopeo, podman load)
  <out>/ref           its reference, localhost/keyward/keyward:<version>
  <out>/image.json    reference, digest and sizes

  --out DIR     output folder (default .image)
  --no-cache    reinstall the dependencies and recompress every layer
  -h, --help    show this help`;

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

function main(argv: string[]): number {
  let values: { out?: string; 'no-cache'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        out: { type: 'string' },
        'no-cache': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    console.error(`image: ${(err as Error).message.split('\n')[0]} (see --help)`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const image = buildKeywardImage({
    ...(values.out === undefined ? {} : { outDir: values.out }),
    cache: values['no-cache'] !== true,
    log: (line) => console.log(`  ${line}`),
  });
  console.log(`image ${image.ref}`);
  console.log(`  digest    ${image.digest}`);
  console.log(
    `  size      ${mb(image.compressedSize)} compressed (${image.layers.length} layers), ${mb(image.unpackedSize)} unpacked`,
  );
  console.log(`  archive   ${image.archive}`);
  console.log(`  built in  ${image.seconds.toFixed(1)} s`);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`image: ${(err as Error).message.split('\n')[0]}`);
  process.exitCode = 1;
}
