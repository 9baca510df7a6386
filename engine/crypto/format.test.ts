import { describe, expect, it } from 'vitest';
import { invalidCiphertext, KeywardError } from '../errors.ts';
import { errorOf } from './fixtures/error-of.ts';
import { formatCiphertext, parseCiphertext } from './format.ts';

describe('formatCiphertext / parseCiphertext', () => {
  it('round-trips every body length 1..64 and several versions', () => {
    for (let n = 1; n <= 64; n++) {
      const body = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
      for (const version of [1, 7, 10, 123456789, 999999999]) {
        const text = formatCiphertext(version, body);
        expect(text.startsWith(`keyward:v${version}:`)).toBe(true);
        const parsed = parseCiphertext(text);
        expect(parsed.version).toBe(version);
        expect(parsed.body.equals(body)).toBe(true);
      }
    }
  });

  it('formats a subarray view without leaking the rest of its buffer', () => {
    const big = Buffer.from('0123456789');
    expect(formatCiphertext(1, big.subarray(2, 5))).toBe(
      `keyward:v1:${Buffer.from('234').toString('base64')}`,
    );
  });

  it('uses standard base64 with padding', () => {
    expect(formatCiphertext(3, Buffer.from([0xfb, 0xff]))).toBe('keyward:v3:+/8=');
  });

  it('refuses versions the format cannot carry', () => {
    for (const v of [0, -1, 1.5, 1_000_000_000, Number.NaN]) {
      expect(() => formatCiphertext(v, Buffer.of(1))).toThrow(KeywardError);
    }
  });

  const good = 'keyward:v12:AAECAw==';
  const malformed: Record<string, unknown> = {
    empty: '',
    'missing prefix': 'AAECAw==',
    'wrong prefix': 'keyword:v12:AAECAw==',
    'upper-case prefix': 'KEYWARD:v12:AAECAw==',
    'missing v': 'keyward:12:AAECAw==',
    v0: 'keyward:v0:AAECAw==',
    'leading zero': 'keyward:v012:AAECAw==',
    'negative version': 'keyward:v-1:AAECAw==',
    'non-digit version': 'keyward:v1a:AAECAw==',
    'ten-digit version': 'keyward:v1000000000:AAECAw==',
    'missing version': 'keyward:v:AAECAw==',
    'missing body': 'keyward:v12:',
    'missing second colon': 'keyward:v12AAECAw==',
    'bad base64 character': 'keyward:v12:AAEC*w==',
    'url-safe base64': 'keyward:v12:-_8=',
    'non-canonical trailing bits': 'keyward:v12:AAECAx==',
    'non-canonical one pad': 'keyward:v12:AAB=',
    'missing padding': 'keyward:v12:AAECAw',
    'extra padding': 'keyward:v12:AAECAw===',
    'padding in the middle': 'keyward:v12:AA==AAAA',
    'inner whitespace': 'keyward:v12:AAEC Aw==',
    'trailing newline': `${good}\n`,
    'leading space': ` ${good}`,
    'trailing space': `${good} `,
    'extra colon': 'keyward:v12:AAEC:Aw==',
    'not a string': 42,
  };

  it('accepts the well-formed reference string', () => {
    expect(parseCiphertext(good)).toEqual({ version: 12, body: Buffer.from([0, 1, 2, 3]) });
  });

  for (const [label, text] of Object.entries(malformed)) {
    it(`rejects ${label} with invalidCiphertext`, () => {
      expect(errorOf(() => parseCiphertext(text as string))).toEqual(invalidCiphertext().toJSON());
      expect(errorOf(() => parseCiphertext(text as string, 'wrapped'))).toEqual(
        invalidCiphertext('wrapped').toJSON(),
      );
    });
  }
});

describe('signatures', () => {
  it('share the ciphertext format; a malformed one names the signature field', () => {
    const text = formatCiphertext(2, Buffer.from('sig'));
    expect(parseCiphertext(text, 'signature').body.toString()).toBe('sig');
    expect(errorOf(() => parseCiphertext('keyward:v2:c2ln'.slice(0, -1), 'signature'))).toEqual(
      invalidCiphertext('signature').toJSON(),
    );
  });
});
