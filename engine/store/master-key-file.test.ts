import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  encodeMasterKeyFile,
  MasterKeyFileError,
  parseMasterKeyFile,
  parseMasterKeyFileContents,
} from './master-key-file.ts';

describe('master-key files', () => {
  it('round-trips the versioned form, and writes version 1 alone as 32 raw bytes', () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const both = encodeMasterKeyFile(
      new Map([
        [7, b],
        [2, a],
      ]),
    );
    expect(both.subarray(0, 4).toString()).toBe('KWMK');
    expect(both.length).toBe(6 + 2 * 36);
    const parsed = parseMasterKeyFile(both);
    expect([...parsed.keys()]).toEqual([2, 7]);
    expect(parsed.get(2)!.equals(a) && parsed.get(7)!.equals(b)).toBe(true);
    expect(encodeMasterKeyFile(new Map([[1, a]])).equals(a)).toBe(true);
    expect(encodeMasterKeyFile(new Map([[3, a]])).length).toBe(42);
  });

  it('keeps the audit keys of retired versions beside the master keys', () => {
    const mk = randomBytes(32);
    const audit = randomBytes(32);
    const bytes = encodeMasterKeyFile(new Map([[3, mk]]), [
      { version: 2, key: audit, id: '0123456789abcdef' },
    ]);
    expect(bytes[4]).toBe(2);
    const contents = parseMasterKeyFileContents(bytes);
    expect([...contents.keys.keys()]).toEqual([3]);
    expect(contents.keys.get(3)!.equals(mk)).toBe(true);
    expect(contents.auditKeys).toHaveLength(1);
    expect(contents.auditKeys[0]!.version).toBe(2);
    expect(contents.auditKeys[0]!.id).toBe('0123456789abcdef');
    expect(contents.auditKeys[0]!.key.equals(audit)).toBe(true);
    // Readers of master keys see only the master keys.
    expect([...parseMasterKeyFile(bytes).keys()]).toEqual([3]);
    // A file of audit keys alone holds no master key: refused.
    const noKey = Buffer.from(bytes);
    noKey[6] = 1;
    expect(() => parseMasterKeyFileContents(noKey)).toThrow(MasterKeyFileError);
  });

  it('reads 32 raw bytes as version 1, even bytes that start with the magic', () => {
    const raw = Buffer.concat([Buffer.from('KWMK'), randomBytes(28)]);
    expect(parseMasterKeyFile(raw).get(1)!.equals(raw)).toBe(true);
  });

  it('reads canonical base64 (with an optional newline) and nothing else', () => {
    const raw = randomBytes(32);
    for (const text of [
      raw.toString('base64'),
      `${raw.toString('base64')}\n`,
      `${raw.toString('base64')}\r\n`,
    ]) {
      expect(parseMasterKeyFile(Buffer.from(text)).get(1)!.equals(raw)).toBe(true);
    }
    // The same bytes with the two spare bits set are not canonical base64 of them.
    const b64 = raw.toString('base64');
    const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.indexOf(b64[42]!);
    const loose = `${b64.slice(0, 42)}${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'[last | 1]}=`;
    if (loose !== b64) expect(() => parseMasterKeyFile(Buffer.from(loose))).toThrow(MasterKeyFileError);
  });

  it.each<[string, Buffer]>([
    ['an unknown format byte', Buffer.concat([Buffer.from('KWMK'), Buffer.of(2, 1), Buffer.alloc(36)])],
    ['a truncated entry', Buffer.concat([Buffer.from('KWMK'), Buffer.of(1, 1), Buffer.alloc(35)])],
    ['zero versions', Buffer.concat([Buffer.from('KWMK'), Buffer.of(1, 0)])],
    [
      'versions out of order',
      Buffer.concat([
        Buffer.from('KWMK'),
        Buffer.of(1, 2),
        Buffer.of(0, 0, 0, 2),
        Buffer.alloc(32),
        Buffer.of(0, 0, 0, 1),
        Buffer.alloc(32),
      ]),
    ],
    ['version 0', Buffer.concat([Buffer.from('KWMK'), Buffer.of(1, 1), Buffer.alloc(36)])],
    ['31 bytes', randomBytes(31)],
  ])('refuses %s, without key bytes in the message', (_what, bytes) => {
    try {
      parseMasterKeyFile(bytes);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(MasterKeyFileError);
      const secret = bytes.subarray(10, 30);
      if (secret.length > 0) expect((err as Error).message).not.toContain(secret.toString('hex'));
    }
  });
});
