import { describe, expect, it } from 'vitest';
import { abytes, assertAad, assertContext, assertPlaintextSize, assertSignData } from './assert.ts';

const code = (code: string, field: string) => expect.objectContaining({ code, field });

describe('edge asserts', () => {
  it('abytes accepts Uint8Array and Buffer only', () => {
    expect(() => abytes(new Uint8Array(1), 'x')).not.toThrow();
    expect(() => abytes(Buffer.alloc(1), 'x')).not.toThrow();
    for (const bad of ['str', [1, 2], null, undefined, new ArrayBuffer(1)]) {
      expect(() => abytes(bad, 'x')).toThrow(code('INVALID_ARGUMENT', 'x'));
    }
  });

  it('assertPlaintextSize applies 32 KiB for AES, 190 bytes for RSA and refuses ECDSA', () => {
    expect(() => assertPlaintextSize('AES256', Buffer.alloc(32768))).not.toThrow();
    expect(() => assertPlaintextSize('AES256', Buffer.alloc(32769))).toThrow(
      code('PAYLOAD_TOO_LARGE', 'plaintext'),
    );
    expect(() => assertPlaintextSize('RSA2048', Buffer.alloc(190))).not.toThrow();
    expect(() => assertPlaintextSize('RSA2048', Buffer.alloc(191))).toThrow(
      code('PAYLOAD_TOO_LARGE', 'plaintext'),
    );
    expect(() => assertPlaintextSize('ECDSA', Buffer.alloc(1))).toThrow(
      expect.objectContaining({ code: 'KEY_STATE' }),
    );
  });

  it('assertContext requires 1..1024 bytes', () => {
    expect(() => assertContext(Buffer.alloc(1))).not.toThrow();
    expect(() => assertContext(Buffer.alloc(1024))).not.toThrow();
    expect(() => assertContext(Buffer.alloc(0))).toThrow(code('INVALID_ARGUMENT', 'context'));
    expect(() => assertContext(Buffer.alloc(1025))).toThrow(code('PAYLOAD_TOO_LARGE', 'context'));
    expect(() => assertContext(undefined)).toThrow(code('INVALID_ARGUMENT', 'context'));
  });

  it('assertAad allows absence and up to 8 KiB', () => {
    expect(() => assertAad(undefined)).not.toThrow();
    expect(() => assertAad(Buffer.alloc(8192))).not.toThrow();
    expect(() => assertAad(Buffer.alloc(8193))).toThrow(code('PAYLOAD_TOO_LARGE', 'aad'));
    expect(() => assertAad('x')).toThrow(code('INVALID_ARGUMENT', 'aad'));
  });

  it('assertSignData wants 8 KiB messages or exact 32-byte digests', () => {
    expect(() => assertSignData(Buffer.alloc(8192), false)).not.toThrow();
    expect(() => assertSignData(Buffer.alloc(8193), false)).toThrow(code('PAYLOAD_TOO_LARGE', 'data'));
    expect(() => assertSignData(Buffer.alloc(32), true)).not.toThrow();
    for (const n of [0, 31, 33, 64]) {
      expect(() => assertSignData(Buffer.alloc(n), true)).toThrow(code('INVALID_ARGUMENT', 'data'));
    }
  });
});
