/** The OpenAPI base64 pattern and the decoder the server uses must give the same answer. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeBase64 } from './base64.ts';
import { BASE64_PATTERN } from './schema-fields.ts';

const pattern = new RegExp(BASE64_PATTERN);
const decodes = (text: string): boolean => {
  try {
    decodeBase64(text, 'x');
    return true;
  } catch {
    return false;
  }
};

describe('BASE64_PATTERN', () => {
  it('accepts every canonical encoding of 0 to 64 random bytes', () => {
    for (let n = 0; n <= 64; n++) {
      const text = randomBytes(n).toString('base64');
      expect(pattern.test(text), text).toBe(true);
      expect(decodes(text)).toBe(true);
    }
  });

  it('agrees with decodeBase64 on 50,000 random strings near the alphabet', () => {
    const alphabet = 'AQgwEIMYBbcz09+/=-_ \n';
    let disagreements = 0;
    let accepted = 0;
    for (let i = 0; i < 50_000; i++) {
      const length = i % 13;
      let text = '';
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(Math.random() * alphabet.length)];
      const a = pattern.test(text);
      if (a) accepted++;
      if (a !== decodes(text)) disagreements++;
    }
    expect(disagreements).toBe(0);
    expect(accepted).toBeGreaterThan(100);
  });
});
