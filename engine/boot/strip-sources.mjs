// Writes the stripped-sources cache (stripped-sources.mjs): every runtime TypeScript module under
// engine/ and operator/ (tests excluded) with its types stripped by Node's stripper, keyed by the
// SHA-256 of its source. Run in a process of its own (this one loads the stripper, so the server
// need not): `node engine/boot/strip-sources.mjs [--out FILE]`. Writes atomically.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { CACHE_FILE, CACHE_FORMAT, ROOT, sha256, stripQuietly } from './stripped-sources.mjs';

/** Directories whose modules run in a Keyward process. */
const DIRS = ['engine', 'operator'];

/**
 * The runtime `.ts` files under `dir`, relative to ROOT with `/` separators.
 * @param {string} dir
 * @returns {string[]}
 */
function modules(dir) {
  /** @type {string[]} */
  const out = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory() && e.name !== 'node_modules') out.push(...modules(path));
    else if (
      e.isFile() &&
      e.name.endsWith('.ts') &&
      !e.name.endsWith('.test.ts') &&
      !e.name.endsWith('.d.ts')
    )
      out.push(path);
  }
  return out;
}

const args = process.argv.slice(2);
if (args[0] === '--help') {
  process.stdout.write('usage: node engine/boot/strip-sources.mjs [--out FILE]\n');
  process.exit(0);
}
if (args.length !== 0 && (args[0] !== '--out' || args.length !== 2)) {
  process.stderr.write('strip-sources: the only option is --out FILE\n');
  process.exit(2);
}
const out = args[1] ?? CACHE_FILE;
/** @type {Record<string, import('./stripped-sources.mjs').CacheEntry>} */
const files = {};
for (const path of DIRS.filter((d) => existsSync(join(ROOT, d)))
  .flatMap(modules)
  .sort()) {
  // Stat before the read: a file edited in between then fails the stat check at the next start.
  const { size, mtimeMs } = statSync(join(ROOT, path));
  const text = readFileSync(join(ROOT, path), 'utf8');
  files[path] = { sha256: sha256(text), code: stripQuietly(text), size, mtimeMs };
}
mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
writeFileSync(tmp, JSON.stringify({ format: CACHE_FORMAT, node: process.version, files }));
renameSync(tmp, out);
process.stdout.write(
  `${Object.keys(files).length} modules stripped into ${relative(process.cwd(), out) || out}\n`,
);
