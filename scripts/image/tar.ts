/**
 * A small deterministic tar writer (POSIX ustar, with pax headers for long names): the same
 * entries always give the same bytes. Owners are 0:0 unless given, there are no user or group
 * names, and every mtime is the one passed in, so an image layer depends only on its content.
 */

/** One tar entry. Paths are relative, `/`-separated, without a leading `/`. */
export type TarEntry =
  | { type: 'dir'; path: string; mode: number; uid?: number; gid?: number }
  | { type: 'file'; path: string; mode: number; data: Uint8Array; uid?: number; gid?: number }
  | { type: 'symlink'; path: string; target: string; uid?: number; gid?: number };

const BLOCK = 512;

/**
 * Serialises `entries` in the order given (callers sort them; see {@link sortEntries}) with
 * every mtime set to `mtime` (seconds since the epoch). Ends with the two zero blocks.
 */
export function writeTar(entries: readonly TarEntry[], mtime: number): Buffer {
  const chunks: Buffer[] = [];
  for (const entry of entries) {
    const name = entry.type === 'dir' ? `${entry.path.replace(/\/$/, '')}/` : entry.path;
    const data = entry.type === 'file' ? entry.data : new Uint8Array(0);
    const linkname = entry.type === 'symlink' ? entry.target : '';
    const pax: Record<string, string> = {};
    const split = splitUstarName(name);
    if (split === null) pax.path = name;
    if (Buffer.byteLength(linkname) > 100) pax.linkpath = linkname;
    if (Object.keys(pax).length > 0) {
      const body = paxBody(pax);
      chunks.push(header({ name: 'PaxHeader', size: body.length, type: 'x', mode: 0o644, mtime }), pad(body));
    }
    const [prefix, short] = split ?? ['', name.slice(0, 99)];
    chunks.push(
      header({
        name: short,
        prefix,
        size: data.length,
        type: entry.type === 'dir' ? '5' : entry.type === 'symlink' ? '2' : '0',
        mode: entry.type === 'symlink' ? 0o777 : entry.mode,
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        mtime,
        linkname: linkname.slice(0, 100),
      }),
    );
    if (data.length > 0) chunks.push(pad(Buffer.from(data.buffer, data.byteOffset, data.length)));
  }
  chunks.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(chunks);
}

/**
 * Sorts entries so that every directory comes before what it holds and siblings are in byte
 * order, and adds the parent directories that are missing (mode 0755).
 */
export function sortEntries(entries: readonly TarEntry[]): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const e of entries) byPath.set(e.path.replace(/\/$/, ''), e);
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!byPath.has(dir)) byPath.set(dir, { type: 'dir', path: dir, mode: 0o755 });
    }
  }
  return [...byPath.entries()]
    .sort(([a], [b]) => compareSegments(a.split('/'), b.split('/')))
    .map(([, e]) => e);
}

function compareSegments(a: string[], b: string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] as string;
    const y = b[i] as string;
    if (x !== y) return Buffer.compare(Buffer.from(x), Buffer.from(y));
  }
  return a.length - b.length;
}

/** `[prefix, name]` when the path fits ustar's 155 + 100 byte fields, else null. */
function splitUstarName(path: string): [string, string] | null {
  if (Buffer.byteLength(path) <= 100) return ['', path];
  for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const rest = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '')
      return [prefix, rest];
  }
  return null;
}

function paxBody(records: Record<string, string>): Buffer {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    // Each record is "<length> <key>=<value>\n" where length counts itself.
    const rest = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(rest) + 1;
    while (String(length).length + Buffer.byteLength(rest) !== length) length++;
    text += `${length}${rest}`;
  }
  return Buffer.from(text);
}

function header(h: {
  name: string;
  prefix?: string;
  size: number;
  type: string;
  mode: number;
  uid?: number;
  gid?: number;
  mtime: number;
  linkname?: string;
}): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name, 0, 100, 'utf8');
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, h.uid ?? 0);
  octal(b, 116, 8, h.gid ?? 0);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, h.mtime);
  b.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  b.write(h.type, 156, 1, 'ascii');
  b.write(h.linkname ?? '', 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'ascii');
  b.write(h.prefix ?? '', 345, 155, 'utf8');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return b;
}

function octal(b: Buffer, offset: number, width: number, value: number): void {
  const text = value.toString(8).padStart(width - 1, '0');
  if (text.length > width - 1) throw new Error(`tar: ${value} does not fit ${width} bytes`);
  b.write(`${text}\u0000`, offset, width, 'ascii');
}

function pad(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}
