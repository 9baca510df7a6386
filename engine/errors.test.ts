import { describe, expect, it } from 'vitest';
import { HTTP_STATUS, invalidCiphertext, KeywardError } from './errors.ts';

describe('KeywardError', () => {
  it('maps codes to their documented HTTP status', () => {
    expect(new KeywardError('KEY_STATE', 'disabled').status).toBe(409);
    expect(new KeywardError('OVERLOADED', 'busy', { status: 503 }).status).toBe(503);
    expect(HTTP_STATUS.PAYLOAD_TOO_LARGE).toBe(413);
  });

  it('serialises without a stack trace', () => {
    const body = JSON.stringify(invalidCiphertext());
    expect(JSON.parse(body)).toEqual({
      code: 'INVALID_ARGUMENT',
      message: 'ciphertext is invalid',
      field: 'ciphertext',
    });
    expect(body).not.toContain('at ');
  });

  it('marks overload as retryable', () => {
    expect(new KeywardError('OVERLOADED', 'x').retryable).toBe(true);
    expect(new KeywardError('INVALID_ARGUMENT', 'x').retryable).toBe(false);
  });
});
