/**
 * The apiserver itself rejects what PRODUCT.md §2 forbids, with the field in the message: the
 * CRD's schema and CEL rules, no operator involved.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createNamespace, kubectl } from '../cluster/harness.ts';
import { installCrd, keyManifest } from './helpers.ts';

let ns: string;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace('kw-crd');
});

async function applyFails(manifest: string): Promise<string> {
  const r = await kubectl(['apply', '-f', '-'], { input: manifest, allowFailure: true });
  expect(r.code, `expected rejection, got: ${r.stdout}`).not.toBe(0);
  return r.stderr;
}

describe('Key CRD validation', () => {
  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['a name shorter than 3', 'ab', { usage: 'AES256' }, /metadata\.name must be 3 to 15 characters/],
    [
      'a name longer than 15',
      'abcdefghijklmnop',
      { usage: 'AES256' },
      /metadata\.name must be 3 to 15 characters/,
    ],
    [
      'a name not starting with a letter',
      '1abc',
      { usage: 'AES256' },
      /metadata\.name must start with a letter/,
    ],
    [
      'periodDays 0',
      'rot-low',
      { usage: 'AES256', rotation: { periodDays: 0 } },
      /spec\.rotation\.periodDays/,
    ],
    [
      'periodDays 731',
      'rot-high',
      { usage: 'AES256', rotation: { periodDays: 731 } },
      /spec\.rotation\.periodDays/,
    ],
    ['a memo over 100', 'memo-long', { usage: 'AES256', memo: 'x'.repeat(101) }, /spec\.memo/],
    ['convergent RSA2048', 'conv-rsa', { usage: 'RSA2048', convergent: true }, /spec\.convergent/],
    ['convergent ECDSA', 'conv-ec', { usage: 'ECDSA', convergent: true }, /spec\.convergent/],
    ['Isolated without region', 'iso-noreg', { usage: 'AES256', boundary: 'Isolated' }, /spec\.region/],
    [
      'a region on a Global key',
      'glob-reg',
      { usage: 'AES256', boundary: 'Global', region: 'kr-1' },
      /spec\.region is only allowed/,
    ],
    ['an unknown usage', 'bad-usage', { usage: 'DES' }, /spec\.usage/],
    ['a bad state', 'bad-state', { usage: 'AES256', state: 'Destroyed' }, /spec\.state/],
  ];
  for (const [what, name, spec, message] of cases) {
    it(`rejects ${what}`, async () => {
      expect(await applyFails(keyManifest(ns, name, spec))).toMatch(message);
    });
  }

  it('applies the defaults', async () => {
    await kubectl(['apply', '-f', '-'], { input: keyManifest(ns, 'defaults', { usage: 'AES256' }) });
    const r = await kubectl(['get', 'key', 'defaults', '-n', ns, '-o', 'json']);
    expect(JSON.parse(r.stdout).spec).toEqual({
      usage: 'AES256',
      convergent: false,
      boundary: 'Global',
      rotation: { enabled: true, periodDays: 90 },
      memo: '',
      state: 'Enabled',
    });
  });

  it('rejects any change to usage, convergent, boundary or region, naming the field', async () => {
    await kubectl(['apply', '-f', '-'], {
      input: keyManifest(ns, 'immutable', { usage: 'AES256', boundary: 'Isolated', region: 'kr-1' }),
    });
    const changes: Array<[Record<string, unknown>, RegExp]> = [
      [{ usage: 'ECDSA', boundary: 'Isolated', region: 'kr-1' }, /spec\.usage is immutable/],
      [
        { usage: 'AES256', convergent: true, boundary: 'Isolated', region: 'kr-1' },
        /spec\.convergent is immutable/,
      ],
      [{ usage: 'AES256', boundary: 'Global', region: 'kr-1' }, /spec\.boundary is immutable/],
      [{ usage: 'AES256', boundary: 'Isolated', region: 'kr-2' }, /spec\.region is immutable/],
    ];
    for (const [spec, message] of changes) {
      expect(await applyFails(keyManifest(ns, 'immutable', spec))).toMatch(message);
    }
    // memo, rotation and state stay mutable
    await kubectl(['apply', '-f', '-'], {
      input: keyManifest(ns, 'immutable', {
        usage: 'AES256',
        boundary: 'Isolated',
        region: 'kr-1',
        memo: 'changed',
        rotation: { periodDays: 30 },
        state: 'Disabled',
      }),
    });
  });

  it('is listed by its short name with the printer columns', async () => {
    const r = await kubectl(['get', 'kkey', '-n', ns]);
    expect(r.stdout.split('\n')[0]).toMatch(/NAME\s+USAGE\s+STATE\s+VERSION\s+NEXT-ROTATION\s+AGE/);
  });
});
