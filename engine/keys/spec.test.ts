import { describe, expect, it } from 'vitest';
import { KeywardError } from '../errors.ts';
import type { KeySpec } from './model.ts';
import { checkRegion, parseKeySpec, parseKeyUpdate, validateKeyName } from './spec.ts';

/** Runs `fn`, expects a KeywardError, and returns it for field/code checks. */
function failure(fn: () => unknown): KeywardError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(KeywardError);
    return err as KeywardError;
  }
  throw new Error('expected a KeywardError, got success');
}

function expectInvalid(fn: () => unknown, field: string, messagePart?: RegExp): void {
  const err = failure(fn);
  expect(err.code).toBe('INVALID_ARGUMENT');
  expect(err.field).toBe(field);
  if (messagePart) expect(err.message).toMatch(messagePart);
}

describe('validateKeyName', () => {
  it.each(['abc', 'Key_1', 'a-b', 'A23456789012345', 'my-key'])('accepts %s', (name) => {
    expect(validateKeyName(name)).toBe(name);
  });

  it.each([
    ['ab', /3 to 15/],
    ['a234567890123456', /3 to 15/],
    ['1abc', /start with a letter/],
    ['_abc', /start with a letter/],
    ['ab.c', /only letters/],
    ['ab c', /only letters/],
    ['abç', /only letters/],
  ])('refuses %s', (name, msg) => {
    expectInvalid(() => validateKeyName(name), 'name', msg);
  });

  it('refuses non-strings', () => {
    expectInvalid(() => validateKeyName(42), 'name', /string/);
    expectInvalid(() => validateKeyName(undefined), 'name');
  });

  it('in Kubernetes mode requires lowercase, no underscore, alphanumeric end', () => {
    expect(validateKeyName('my-key-1', { kubernetes: true })).toBe('my-key-1');
    expectInvalid(() => validateKeyName('MyKey', { kubernetes: true }), 'name', /lowercase/);
    expectInvalid(() => validateKeyName('my_key', { kubernetes: true }), 'name', /_/);
    expectInvalid(() => validateKeyName('mykey-', { kubernetes: true }), 'name', /end with/);
    // The same names are fine standalone.
    expect(validateKeyName('MyKey')).toBe('MyKey');
    expect(validateKeyName('mykey-')).toBe('mykey-');
  });
});

describe('parseKeySpec', () => {
  it('applies the defaults', () => {
    expect(parseKeySpec({ usage: 'AES256' })).toEqual({
      usage: 'AES256',
      convergent: false,
      boundary: 'Global',
      rotation: { enabled: true, periodDays: 90 },
      memo: '',
    });
  });

  it('keeps given values and fills a partial rotation', () => {
    const spec = parseKeySpec({
      usage: 'AES256',
      convergent: true,
      boundary: 'Isolated',
      region: 'eu-west-1',
      rotation: { periodDays: 30 },
      memo: 'payments',
    });
    expect(spec).toEqual({
      usage: 'AES256',
      convergent: true,
      boundary: 'Isolated',
      region: 'eu-west-1',
      rotation: { enabled: true, periodDays: 30 },
      memo: 'payments',
    });
    expect(parseKeySpec({ usage: 'ECDSA', rotation: { enabled: false } }).rotation).toEqual({
      enabled: false,
      periodDays: 90,
    });
  });

  it('refuses non-objects', () => {
    expectInvalid(() => parseKeySpec(null), 'spec');
    expectInvalid(() => parseKeySpec([]), 'spec');
    expectInvalid(() => parseKeySpec('AES256'), 'spec');
  });

  it('refuses unknown fields, naming them', () => {
    expectInvalid(() => parseKeySpec({ usage: 'AES256', colour: 'red' }), 'colour', /unknown/);
    expectInvalid(
      () => parseKeySpec({ usage: 'AES256', rotation: { enabled: true, every: 3 } }),
      'rotation.every',
      /unknown/,
    );
  });

  it('ignores only the fields it is told to ignore', () => {
    expect(parseKeySpec({ usage: 'RSA2048', name: 'abc' }, { ignoreFields: ['name'] }).usage).toBe('RSA2048');
    expectInvalid(() => parseKeySpec({ usage: 'RSA2048', name: 'abc' }), 'name');
  });

  it('prefixes fields', () => {
    expectInvalid(() => parseKeySpec({ usage: 'AES256', memo: 3 }, { fieldPrefix: 'spec' }), 'spec.memo');
    expectInvalid(
      () => parseKeySpec({ usage: 'AES256', rotation: { periodDays: 0 } }, { fieldPrefix: 'spec' }),
      'spec.rotation.periodDays',
    );
  });

  it('requires a known usage', () => {
    expectInvalid(() => parseKeySpec({}), 'usage', /required/);
    expectInvalid(() => parseKeySpec({ usage: 'AES128' }), 'usage', /one of/);
    expectInvalid(() => parseKeySpec({ usage: 1 }), 'usage');
  });

  it('checks types', () => {
    expectInvalid(() => parseKeySpec({ usage: 'AES256', convergent: 'yes' }), 'convergent');
    expectInvalid(() => parseKeySpec({ usage: 'AES256', boundary: 'global' }), 'boundary');
    expectInvalid(() => parseKeySpec({ usage: 'AES256', rotation: 'monthly' }), 'rotation');
    expectInvalid(() => parseKeySpec({ usage: 'AES256', rotation: { enabled: 1 } }), 'rotation.enabled');
    expectInvalid(() => parseKeySpec({ usage: 'AES256', memo: null }), 'memo');
  });

  it.each([0, 731, 1.5, '30', -1, Number.NaN])('refuses periodDays %s', (periodDays) => {
    expectInvalid(
      () => parseKeySpec({ usage: 'AES256', rotation: { periodDays } }),
      'rotation.periodDays',
      /1 to 730/,
    );
  });

  it('accepts periodDays at both bounds', () => {
    expect(parseKeySpec({ usage: 'AES256', rotation: { periodDays: 1 } }).rotation.periodDays).toBe(1);
    expect(parseKeySpec({ usage: 'AES256', rotation: { periodDays: 730 } }).rotation.periodDays).toBe(730);
  });

  it('limits the memo to 100 characters, counting code points', () => {
    expect(parseKeySpec({ usage: 'AES256', memo: 'x'.repeat(100) }).memo).toHaveLength(100);
    expect(parseKeySpec({ usage: 'AES256', memo: '🔑'.repeat(100) }).memo).toBe('🔑'.repeat(100));
    expectInvalid(() => parseKeySpec({ usage: 'AES256', memo: 'x'.repeat(101) }), 'memo', /100/);
  });

  it('allows convergent only for AES256', () => {
    expectInvalid(() => parseKeySpec({ usage: 'RSA2048', convergent: true }), 'convergent', /AES256/);
    expectInvalid(() => parseKeySpec({ usage: 'ECDSA', convergent: true }), 'convergent');
    expect(parseKeySpec({ usage: 'ECDSA', convergent: false }).convergent).toBe(false);
  });

  it('requires a region for Isolated and refuses one for Global', () => {
    expectInvalid(() => parseKeySpec({ usage: 'AES256', boundary: 'Isolated' }), 'region', /required/);
    expectInvalid(() => parseKeySpec({ usage: 'AES256', region: 'kr-1' }), 'region', /Isolated/);
    expectInvalid(
      () => parseKeySpec({ usage: 'AES256', boundary: 'Global', region: 'kr-1' }),
      'region',
      /Isolated/,
    );
  });

  it.each(['', 'EU', 'eu_west', 'a'.repeat(64), 7])('refuses region %s', (region) => {
    expectInvalid(() => parseKeySpec({ usage: 'AES256', boundary: 'Isolated', region }), 'region');
  });
});

describe('parseKeyUpdate', () => {
  const current: KeySpec = {
    usage: 'AES256',
    convergent: false,
    boundary: 'Isolated',
    region: 'kr-1',
    rotation: { enabled: true, periodDays: 90 },
    memo: '',
  };

  it('accepts memo and partial rotation', () => {
    expect(parseKeyUpdate({ memo: 'hi', rotation: { periodDays: 7 } })).toEqual({
      memo: 'hi',
      rotation: { periodDays: 7 },
    });
    expect(parseKeyUpdate({ rotation: { enabled: false } })).toEqual({ rotation: { enabled: false } });
    expect(parseKeyUpdate({})).toEqual({});
  });

  it.each([
    ['usage', 'RSA2048'],
    ['convergent', true],
    ['boundary', 'Global'],
    ['region', 'us-1'],
  ])('refuses a change of %s as immutable', (field, value) => {
    expectInvalid(() => parseKeyUpdate({ [field]: value }), field, /immutable/);
    expectInvalid(() => parseKeyUpdate({ [field]: value }, current), field, /immutable/);
  });

  it('tolerates immutable fields equal to the current spec', () => {
    expect(parseKeyUpdate({ usage: 'AES256', region: 'kr-1', memo: 'm' }, current)).toEqual({ memo: 'm' });
  });

  it('refuses unknown fields, bad values and non-objects', () => {
    expectInvalid(() => parseKeyUpdate({ state: 'Enabled' }), 'state', /unknown/);
    expectInvalid(() => parseKeyUpdate({ rotation: { periodDays: 999 } }), 'rotation.periodDays');
    expectInvalid(() => parseKeyUpdate({ memo: 'x'.repeat(101) }), 'memo');
    expectInvalid(() => parseKeyUpdate(null), 'body');
  });
});

describe('checkRegion', () => {
  it('lets any engine use a Global key', () => {
    expect(() => checkRegion({ boundary: 'Global' }, undefined)).not.toThrow();
    expect(() => checkRegion({ boundary: 'Global' }, 'kr-1')).not.toThrow();
  });

  it('lets only an engine of the same region use an Isolated key', () => {
    expect(() => checkRegion({ boundary: 'Isolated', region: 'kr-1' }, 'kr-1')).not.toThrow();
    for (const engine of ['us-1', undefined]) {
      const err = failure(() => checkRegion({ boundary: 'Isolated', region: 'kr-secret-1' }, engine));
      expect(err.code).toBe('KEY_STATE');
      expect(err.status).toBe(409);
      expect(err.message).not.toContain('kr-secret-1');
      if (engine) expect(err.message).not.toContain(engine);
    }
  });
});
