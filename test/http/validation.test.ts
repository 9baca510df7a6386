/** Every §2 rule and every §10 bad input gets a clear error naming the field. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from './harness.ts';

// Every case runs on both engine paths (issue #15): single operations inline when the pool is idle
// and batches run whole in the workers (the defaults), and everything pooled and parsed on the
// main thread.
describe.each([
  ['fast paths', {}],
  ['pooled, main-thread batches', { inline: false, workerBatches: false }],
])('%s', (_path, paths) => {
  let s: TestServer;
  let aesCt: string;
  let convCt: string;
  beforeAll(async () => {
    s = await startTestServer({ paths });
    await s.call('POST', KEYS, { name: 'aes', usage: 'AES256' });
    await s.call('POST', KEYS, { name: 'conv', usage: 'AES256', convergent: true });
    await s.call('POST', KEYS, { name: 'ecdsa1', usage: 'ECDSA' });
    aesCt = (await s.call('POST', `${KEYS}/aes/encrypt`, { plaintext: b64('secret'), aad: b64('hdr') })).body
      .ciphertext;
    convCt = (
      await s.call('POST', `${KEYS}/conv/encrypt`, { plaintext: b64('secret'), context: b64('tenant-1') })
    ).body.ciphertext;
  });
  afterAll(async () => {
    await s.stop();
    await removeDir(s.dataDir);
  });

  async function expectError(
    method: string,
    path: string,
    body: unknown,
    status: number,
    code: string,
    field?: string,
  ): Promise<{ code: string; message: string; field?: string }> {
    const r = await s.call(method, path, body);
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(r.body.error.code).toBe(code);
    if (field !== undefined) expect(r.body.error.field).toBe(field);
    expect(r.body.error.message).toBeTypeOf('string');
    expect(JSON.stringify(r.body)).not.toMatch(/ at .*\.ts|stack/);
    return r.body.error;
  }

  describe('§2 key rules', () => {
    it.each([
      ['ab', 'too short'],
      ['a234567890123456', 'too long'],
      ['1abc', 'leading digit'],
      ['ab.c', 'dot'],
      ['ab c', 'space'],
      ['_abc', 'leading underscore'],
    ])('refuses the name %j (%s)', async (name) => {
      await expectError('POST', KEYS, { name, usage: 'AES256' }, 400, 'INVALID_ARGUMENT', 'name');
    });

    it('accepts names of 3 and 15 characters with _ and -', async () => {
      expect((await s.call('POST', KEYS, { name: 'a_-', usage: 'AES256' })).status).toBe(201);
      expect((await s.call('POST', KEYS, { name: 'A2345678901234z', usage: 'AES256' })).status).toBe(201);
    });

    it('refuses a memo over 100 characters, accepts exactly 100', async () => {
      await expectError(
        'POST',
        KEYS,
        { name: 'memo1', usage: 'AES256', memo: 'x'.repeat(101) },
        400,
        'INVALID_ARGUMENT',
        'memo',
      );
      expect(
        (await s.call('POST', KEYS, { name: 'memo2', usage: 'AES256', memo: 'é'.repeat(100) })).status,
      ).toBe(201);
    });

    it.each([0, 731, 1.5, -1])('refuses periodDays %j', async (periodDays) => {
      await expectError(
        'POST',
        KEYS,
        { name: 'rot1', usage: 'AES256', rotation: { periodDays } },
        400,
        'INVALID_ARGUMENT',
        'rotation.periodDays',
      );
    });

    it('accepts periodDays 1 and 730', async () => {
      expect(
        (await s.call('POST', KEYS, { name: 'rot2', usage: 'AES256', rotation: { periodDays: 1 } })).status,
      ).toBe(201);
      expect(
        (await s.call('POST', KEYS, { name: 'rot3', usage: 'AES256', rotation: { periodDays: 730 } })).status,
      ).toBe(201);
    });

    it('allows convergent only on AES256', async () => {
      await expectError(
        'POST',
        KEYS,
        { name: 'conv2', usage: 'ECDSA', convergent: true },
        400,
        'INVALID_ARGUMENT',
        'convergent',
      );
      await expectError(
        'POST',
        KEYS,
        { name: 'conv3', usage: 'RSA2048', convergent: true },
        400,
        'INVALID_ARGUMENT',
        'convergent',
      );
    });

    it('requires a region for Isolated, and an engine serving it', async () => {
      await expectError(
        'POST',
        KEYS,
        { name: 'iso1', usage: 'AES256', boundary: 'Isolated' },
        400,
        'INVALID_ARGUMENT',
        'region',
      );
      // This engine serves no region, so it cannot hold an Isolated key.
      await expectError(
        'POST',
        KEYS,
        { name: 'iso2', usage: 'AES256', boundary: 'Isolated', region: 'kr-1' },
        400,
        'INVALID_ARGUMENT',
        'region',
      );
    });

    it('refuses unknown usages, boundaries, fields and wrong types', async () => {
      await expectError('POST', KEYS, { name: 'bad1', usage: 'AES128' }, 400, 'INVALID_ARGUMENT', 'usage');
      await expectError(
        'POST',
        KEYS,
        { name: 'bad1', usage: 'AES256', boundary: 'Local' },
        400,
        'INVALID_ARGUMENT',
        'boundary',
      );
      await expectError(
        'POST',
        KEYS,
        { name: 'bad1', usage: 'AES256', colour: 'red' },
        400,
        'INVALID_ARGUMENT',
        'colour',
      );
      await expectError(
        'POST',
        KEYS,
        { name: 'bad1', usage: 'AES256', rotation: { every: 3 } },
        400,
        'INVALID_ARGUMENT',
        'rotation.every',
      );
      await expectError(
        'POST',
        KEYS,
        { name: 'bad1', usage: 'AES256', convergent: 'yes' },
        400,
        'INVALID_ARGUMENT',
        'convergent',
      );
      await expectError('POST', KEYS, { name: 42, usage: 'AES256' }, 400, 'INVALID_ARGUMENT', 'name');
      await expectError('POST', KEYS, { usage: 'AES256' }, 400, 'INVALID_ARGUMENT', 'name');
      await expectError('POST', KEYS, [1, 2], 400, 'INVALID_ARGUMENT', 'body');
      await expectError('POST', `${KEYS}/aes/disable`, { force: true }, 400, 'INVALID_ARGUMENT', 'force');
      await expectError('PATCH', `${KEYS}/aes`, {}, 400, 'INVALID_ARGUMENT');
    });
  });

  describe('§10 bad input', () => {
    it.each([
      ['not base64 characters', '***'],
      ['missing padding', 'YWJj ZA'],
      ['url-safe alphabet', 'a-_b'],
      ['unpadded', 'YQ'],
      ['non-canonical padding bits', 'YR=='],
    ])('refuses malformed base64 (%s) naming the field', async (_what, plaintext) => {
      await expectError('POST', `${KEYS}/aes/encrypt`, { plaintext }, 400, 'INVALID_ARGUMENT', 'plaintext');
    });

    it('names aad and context fields with bad base64', async () => {
      await expectError(
        'POST',
        `${KEYS}/aes/encrypt`,
        { plaintext: b64('x'), aad: '%%' },
        400,
        'INVALID_ARGUMENT',
        'aad',
      );
      await expectError(
        'POST',
        `${KEYS}/conv/encrypt`,
        { plaintext: b64('x'), context: '%%' },
        400,
        'INVALID_ARGUMENT',
        'context',
      );
      await expectError('POST', `${KEYS}/ecdsa1/sign`, { data: 'x' }, 400, 'INVALID_ARGUMENT', 'data');
    });

    it('refuses oversize payloads with 413', async () => {
      const big = b64(Buffer.alloc(32 * 1024 + 1));
      await expectError(
        'POST',
        `${KEYS}/aes/encrypt`,
        { plaintext: big },
        413,
        'PAYLOAD_TOO_LARGE',
        'plaintext',
      );
      const ok = await s.call('POST', `${KEYS}/aes/encrypt`, { plaintext: b64(Buffer.alloc(32 * 1024)) });
      expect(ok.status).toBe(200);
      const huge = b64(Buffer.alloc(1024 * 1024));
      await expectError('POST', `${KEYS}/aes/encrypt`, { plaintext: huge }, 413, 'PAYLOAD_TOO_LARGE', 'body');
      await expectError(
        'POST',
        `${KEYS}/ecdsa1/sign`,
        { data: b64(Buffer.alloc(8193)) },
        413,
        'PAYLOAD_TOO_LARGE',
        'data',
      );
    });

    it('refuses wrong types and unknown fields on crypto routes', async () => {
      await expectError(
        'POST',
        `${KEYS}/aes/encrypt`,
        { plaintext: 12 },
        400,
        'INVALID_ARGUMENT',
        'plaintext',
      );
      await expectError(
        'POST',
        `${KEYS}/aes/encrypt`,
        { plaintext: null },
        400,
        'INVALID_ARGUMENT',
        'plaintext',
      );
      await expectError(
        'POST',
        `${KEYS}/aes/encrypt`,
        { plaintext: b64('x'), iv: 'AAAA' },
        400,
        'INVALID_ARGUMENT',
        'iv',
      );
      await expectError(
        'POST',
        `${KEYS}/aes/decrypt`,
        { ciphertext: ['a'] },
        400,
        'INVALID_ARGUMENT',
        'ciphertext',
      );
      await expectError(
        'POST',
        `${KEYS}/ecdsa1/sign`,
        { data: b64('m'), prehashed: 'true' },
        400,
        'INVALID_ARGUMENT',
        'prehashed',
      );
      await expectError('POST', `${KEYS}/aes/data-key`, { bits: 192 }, 400, 'INVALID_ARGUMENT', 'bits');
      await expectError('POST', `${KEYS}/aes/encrypt`, '{"plaintext":', 400, 'INVALID_ARGUMENT', 'body');
    });

    it('truncated, bit-flipped, re-versioned ciphertexts and wrong aad all give the same invalid error', async () => {
      const body = aesCt.slice('keyward:v1:'.length);
      const raw = Buffer.from(body, 'base64');
      const flipped = Buffer.from(raw);
      flipped[20]! ^= 0x01;
      const variants = [
        { ciphertext: `keyward:v1:${raw.subarray(0, raw.length - 1).toString('base64')}`, aad: b64('hdr') },
        { ciphertext: `keyward:v1:${raw.subarray(0, 10).toString('base64')}`, aad: b64('hdr') },
        { ciphertext: `keyward:v1:${flipped.toString('base64')}`, aad: b64('hdr') },
        { ciphertext: `keyward:v7:${body}`, aad: b64('hdr') },
        { ciphertext: aesCt, aad: b64('other') },
        { ciphertext: aesCt },
        { ciphertext: 'keyward:v1:' },
        { ciphertext: 'garbage' },
      ];
      const messages = new Set<string>();
      for (const v of variants) {
        const e = await expectError('POST', `${KEYS}/aes/decrypt`, v, 400, 'INVALID_ARGUMENT', 'ciphertext');
        messages.add(e.message);
      }
      expect(messages.size).toBe(1);
      const ok = await s.call('POST', `${KEYS}/aes/decrypt`, { ciphertext: aesCt, aad: b64('hdr') });
      expect(Buffer.from(ok.body.plaintext, 'base64').toString()).toBe('secret');
    });

    it('convergent keys need the right context', async () => {
      await expectError(
        'POST',
        `${KEYS}/conv/encrypt`,
        { plaintext: b64('x') },
        400,
        'INVALID_ARGUMENT',
        'context',
      );
      await expectError(
        'POST',
        `${KEYS}/conv/decrypt`,
        { ciphertext: convCt },
        400,
        'INVALID_ARGUMENT',
        'context',
      );
      await expectError(
        'POST',
        `${KEYS}/conv/decrypt`,
        { ciphertext: convCt, context: b64('tenant-2') },
        400,
        'INVALID_ARGUMENT',
        'ciphertext',
      );
      await expectError(
        'POST',
        `${KEYS}/conv/encrypt`,
        { plaintext: b64('x'), context: b64(Buffer.alloc(1025)) },
        413,
        'PAYLOAD_TOO_LARGE',
        'context',
      );
      // Same version, context and plaintext: the same ciphertext.
      const again = await s.call('POST', `${KEYS}/conv/encrypt`, {
        plaintext: b64('secret'),
        context: b64('tenant-1'),
      });
      expect(again.body.ciphertext).toBe(convCt);
      const other = await s.call('POST', `${KEYS}/conv/encrypt`, {
        plaintext: b64('secret'),
        context: b64('tenant-2'),
      });
      expect(other.body.ciphertext).not.toBe(convCt);
    });

    it('wrong usage is KEY_STATE; unknown keys are KEY_NOT_FOUND', async () => {
      await expectError('POST', `${KEYS}/ecdsa1/encrypt`, { plaintext: b64('x') }, 409, 'KEY_STATE');
      await expectError('GET', `${KEYS}/aes/public-key`, undefined, 409, 'KEY_STATE');
      await expectError('POST', `${KEYS}/nothere/encrypt`, { plaintext: b64('x') }, 404, 'KEY_NOT_FOUND');
      await expectError('GET', '/v1/namespaces/Bad_NS/keys', undefined, 400, 'INVALID_ARGUMENT', 'namespace');
    });

    it('refuses missing and wrong tokens with 401, in constant time', async () => {
      for (const headers of [
        { authorization: '' },
        { authorization: 'Bearer wrong-token' },
        { authorization: `Basic ${s.token}` },
      ]) {
        const r = await fetch(`${s.url}${KEYS}`, { headers });
        expect(r.status).toBe(401);
        expect(r.headers.get('www-authenticate')).toMatch(/Bearer/);
        expect(((await r.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');
      }
      // Auth comes before the body: an anonymous oversize body is 401, not 413.
      const r = await fetch(`${s.url}${KEYS}/aes/encrypt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ plaintext: b64(Buffer.alloc(500_000)) }),
      });
      expect(r.status).toBe(401);
    });

    it('answers unknown routes with JSON 404 and other content types with 415', async () => {
      const r = await s.call('GET', '/v1/nothing');
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe('NOT_FOUND');
      const t = await fetch(`${s.url}${KEYS}/aes/encrypt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.token}`, 'content-type': 'text/plain' },
        body: 'hello',
      });
      expect(t.status).toBe(415);
      expect(((await t.json()) as { error: { code: string } }).error.code).toBe('INVALID_ARGUMENT');
    });
  });
});
