/**
 * Where audit lines go (docs/audit.md "Sinks"):
 * - {@link SegmentSink}: append-only segment files `<dir>/audit-NNNNNNNN.jsonl` (mode 0600),
 *   a new one per process start and whenever one reaches its size limit; fdatasync at each
 *   checkpoint. Bytes once written are never rewritten: after a crash the next run starts a new
 *   segment and says, in its first record, how many bytes of a cut line the last one ends with.
 * - {@link StreamSink}: one JSON line per record on a stream (stdout in cluster mode), for the
 *   cluster's log collector.
 */

import { writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { fsyncDir } from '../store/atomic-write.ts';

/** Segment file names: `audit-` and an 8-digit number, so that name order is log order. */
export const SEGMENT_FILE = /^audit-(\d{8})\.jsonl$/;

/** The file name of segment `n`. */
export function segmentFileName(n: number): string {
  return `audit-${String(n).padStart(8, '0')}.jsonl`;
}

/** A failed write; `written` bytes of it reached the sink before the failure. */
export class SinkWriteError extends Error {
  readonly written: number;
  constructor(sink: string, written: number, cause: unknown) {
    super(`${sink}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'SinkWriteError';
    this.written = written;
  }
}

/** A destination of audit lines. */
export interface AuditSink {
  /** For messages: the file or stream. */
  readonly name: string;
  /** Writes whole lines; with `sync`, also forces them to disk. Throws SinkWriteError. */
  write(data: Buffer, sync: boolean): Promise<void>;
  close(): Promise<void>;
}

/** The end of an existing segmented log, as the next run continues it. */
export interface SegmentTail {
  /** The last complete line, parsed. */
  last: Record<string, unknown>;
  /** Bytes of an incomplete line after it (a write cut short by a crash). */
  tornBytes: number;
  /** The highest segment number in the directory. */
  segment: number;
}

/** The most a record line can take (fields are capped); tails are read this far back. */
const TAIL_READ_BYTES = 256 * 1024;

/** Append-only, size-rotated segment files in one directory. */
export class SegmentSink implements AuditSink {
  readonly dir: string;
  readonly segmentBytes: number;
  #fh: FileHandle | undefined;
  #segment = 0;
  #size = 0;
  /** The fdatasync of the last checkpoint, still running; its failure fails the next write. */
  #syncing: Promise<void> | undefined;
  #syncError: unknown;

  constructor(dir: string, segmentBytes: number) {
    this.dir = dir;
    this.segmentBytes = segmentBytes;
  }

  get name(): string {
    return join(this.dir, segmentFileName(this.#segment));
  }

  /** Bytes in the current segment. */
  get size(): number {
    return this.#size;
  }

  /** True once the current segment has reached its size limit. */
  get rotationDue(): boolean {
    return this.#size >= this.segmentBytes;
  }

  /** The segment numbers present, ascending. */
  async segments(): Promise<number[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const numbers: number[] = [];
    for (const name of await readdir(this.dir)) {
      const m = SEGMENT_FILE.exec(name);
      if (m) numbers.push(Number(m[1]));
    }
    return numbers.sort((a, b) => a - b);
  }

  /**
   * Reads the end of the existing log: the last complete line of the newest segment that has
   * one (empty segments, left by a crash right after creating one, are passed over). Undefined
   * for an empty directory. Throws when that line is not JSON (a damaged log: the caller starts a
   * new chain and says so).
   */
  async tail(): Promise<SegmentTail | undefined> {
    const all = await this.segments();
    const newest = all.at(-1);
    if (newest === undefined) return undefined;
    let tornBytes: number | undefined;
    for (let i = all.length - 1; i >= 0; i--) {
      const path = join(this.dir, segmentFileName(all[i]!));
      const size = (await stat(path)).size;
      if (size === 0) continue;
      const start = Math.max(0, size - TAIL_READ_BYTES);
      const fh = await open(path, 'r');
      let text: string;
      try {
        const buf = Buffer.alloc(size - start);
        await fh.read(buf, 0, buf.length, start);
        text = buf.toString('utf8');
      } finally {
        await fh.close();
      }
      const lastNl = text.lastIndexOf('\n');
      // Bytes after the last newline are a cut line; only the newest non-empty segment may end so.
      tornBytes ??= Buffer.byteLength(text.slice(lastNl + 1));
      if (lastNl < 0) continue; // a segment holding only a cut line
      const prevNl = text.lastIndexOf('\n', lastNl - 1);
      const line = text.slice(prevNl + 1, lastNl);
      const last = JSON.parse(line) as Record<string, unknown>;
      return { last, tornBytes, segment: newest };
    }
    return { last: {}, tornBytes: tornBytes ?? 0, segment: newest };
  }

  /** Closes the current segment (if any) and creates the next one; returns its number. */
  async openNext(): Promise<number> {
    await this.#closeFile();
    const next = ((await this.segments()).at(-1) ?? 0) + 1;
    const path = join(this.dir, segmentFileName(next));
    this.#fh = await open(path, 'ax', 0o600);
    this.#segment = next;
    this.#size = 0;
    // The new name must survive a power loss along with the lines written into it.
    await fsyncDir(this.dir);
    return next;
  }

  /**
   * Writes `data`; resolves once the OS has it (it then survives the process being killed). The
   * write itself is synchronous: an append to the page cache takes a few microseconds of the main
   * thread, while a write through the thread pool (fs/promises) cost about 34 µs of CPU per call
   * here, 14 % of the main thread in the HTTP batch case. A disk that stalls the page cache would
   * stall the event loop with it, as it stalls Vault's file audit device. With
   * `sync`, an fdatasync follows, so that a power loss costs at most what came after: it runs
   * while later lines are written (nobody waits on the disk), and if it fails, the next write
   * fails.
   */
  async write(data: Buffer, sync: boolean): Promise<void> {
    const fh = this.#fh;
    if (fh === undefined) throw new SinkWriteError(this.name, 0, new Error('no open segment'));
    if (this.#syncError !== undefined) throw new SinkWriteError(this.name, 0, this.#syncError);
    let written = 0;
    try {
      while (written < data.length) {
        const bytesWritten = writeSync(fh.fd, data, written, data.length - written);
        written += bytesWritten;
        this.#size += bytesWritten;
      }
    } catch (err) {
      throw new SinkWriteError(this.name, written, err);
    }
    if (sync && this.#syncing === undefined) {
      this.#syncing = fh.datasync().then(
        () => {
          this.#syncing = undefined;
        },
        (err: unknown) => {
          this.#syncing = undefined;
          this.#syncError = err;
        },
      );
    }
  }

  async close(): Promise<void> {
    await this.#closeFile();
  }

  async #closeFile(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    // A segment is closed only once its last checkpoint is on disk.
    await this.#syncing;
    this.#syncError = undefined;
    if (fh !== undefined) {
      try {
        await fh.close();
      } catch {
        // A failed segment may not close cleanly; the next one is what matters.
      }
    }
  }
}

/** One JSON line per record on a stream (stdout). */
export class StreamSink implements AuditSink {
  readonly name: string;
  readonly #stream: Writable;

  constructor(stream: Writable, name = 'stdout') {
    this.#stream = stream;
    this.name = name;
  }

  write(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#stream.write(data, (err) => (err ? reject(new SinkWriteError(this.name, 0, err)) : resolve()));
    });
  }

  async close(): Promise<void> {
    // stdout belongs to the process; it is flushed, never closed here.
  }
}

/** What one write to a pipe delivers whole, never interleaved with another writer's (POSIX). */
const PIPE_BUF = 4096;
const pause = new Int32Array(new SharedArrayBuffer(4));
/** How long FdSink waits for a full pipe to drain before it fails. */
const FD_STALL_LIMIT_MS = 10_000;

/**
 * `data` (whole lines) cut into pieces of at most PIPE_BUF bytes that each end at a line's end; a
 * line longer than PIPE_BUF is a piece of its own.
 */
export function pipeChunks(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  let start = 0;
  while (start < data.length) {
    let end = Math.min(start + PIPE_BUF, data.length);
    if (end < data.length) {
      const lastNewline = data.lastIndexOf(0x0a, end - 1);
      end = lastNewline >= start ? lastNewline + 1 : data.indexOf(0x0a, end) + 1 || data.length;
    }
    chunks.push(data.subarray(start, end));
    start = end;
  }
  return chunks;
}

/**
 * One JSON line per record on a file descriptor (stdout), written by the audit thread itself.
 * The engine's own log lines go to the same stdout from another thread, so lines go out in writes
 * of at most PIPE_BUF bytes that end at a line's end: the kernel delivers each whole, and no log
 * line lands inside a record (a longer line, which records never are, goes out alone).
 */
export class FdSink implements AuditSink {
  readonly name: string;
  readonly #fd: number;
  readonly #stallLimitMs: number;

  constructor(fd: number, name = 'stdout', stallLimitMs = FD_STALL_LIMIT_MS) {
    this.#fd = fd;
    this.name = name;
    this.#stallLimitMs = stallLimitMs;
  }

  async write(data: Buffer): Promise<void> {
    let before = 0;
    for (const chunk of pipeChunks(data)) {
      this.#writeAll(chunk, before);
      before += chunk.length;
    }
  }

  /**
   * Writes `chunk` whole, waiting out a full non-blocking pipe (EAGAIN) for up to the stall
   * limit (10 s by default): a reader that stopped reading for that long is a failed sink (the log
   * turns unhealthy and retries), not a reason to hold the audit thread, and its close, forever.
   */
  #writeAll(chunk: Buffer, before: number): void {
    let off = 0;
    let waitingSince: number | undefined;
    while (off < chunk.length) {
      try {
        off += writeSync(this.#fd, chunk, off);
        waitingSince = undefined;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN')
          throw new SinkWriteError(this.name, before + off, err);
        waitingSince ??= Date.now();
        if (Date.now() - waitingSince > this.#stallLimitMs) {
          throw new SinkWriteError(
            this.name,
            before + off,
            new Error(`not read for ${this.#stallLimitMs} ms`),
          );
        }
        // This is the audit thread's own time: waiting here holds up no request.
        Atomics.wait(pause, 0, 0, 1);
      }
    }
  }

  async close(): Promise<void> {
    // stdout belongs to the process; never closed here.
  }
}
