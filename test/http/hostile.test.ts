/**
 * Hostile inputs at the edge of the real server (issue #12). The first part is table-driven over
 * the route table itself (`ROUTES`), so a route added to the API is probed by default: auth before
 * anything, names checked before lookups, prototype-named fields, a JSON `null` body, undeclared
 * methods, and the security headers on every answer. The rest pins each finding of the issue by
 * name; each failed before its fix.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_KEY_VERSIONS } from '../../engine/crypto/limits.ts';
import { ROUTES, type RouteDef } from '../../engine/http/routes.ts';
import { b64, KEYS, type Reply, removeDir, startTestServer, type TestServer } from './harness.ts';

let s: TestServer;
let aesCt: string;
beforeAll(async () => {
  s = await startTestServer({ requestTimeoutMs: 1_500 });
  for (const [name, usage] of [
    ['aeskey', 'AES256'],
    ['eckey', 'ECDSA'],
    ['offkey', 'AES256'],
  ] as const) {
    expect((await s.call('POST', KEYS, { name, usage })).status).toBe(201);
  }
  expect((await s.call('POST', `${KEYS}/offkey/disable`)).status).toBe(200);
  aesCt = (await s.call('POST', `${KEYS}/aeskey/encrypt`, { plaintext: b64('hi') })).body.ciphertext;
});
afterAll(async () => {
  await s.stop();
  await removeDir(s.dataDir);
});

/** A concrete path for a route: namespace `default`, the key `name`. */
function pathOf(route: RouteDef, name = 'aeskey', namespace = 'default'): string {
  return route.path.replace('{namespace}', namespace).replace('{name}', name);
}

/** A body that passes the route's schema (so only the probed part is wrong). */
function validBody(route: RouteDef): Record<string, unknown> | undefined {
  if (route.body === undefined) return undefined;
  if (route.tag === 'batch') return { requests: [{ plaintext: b64('x') }] };
  switch (route.operationId) {
    case 'createKey':
      return { name: 'fresh1', usage: 'AES256' };
    case 'updateKey':
      return { memo: 'm' };
    case 'encrypt':
      return { plaintext: b64('x') };
    case 'decrypt':
    case 'reEncrypt':
      return { ciphertext: aesCt };
    case 'sign':
      return { data: b64('m') };
    case 'verify':
      return { data: b64('m'), signature: 'keyward:v1:AAAA' };
    default:
      return {}; // data-key and the actions take {}
  }
}

function expectApiError(r: Reply, status: number, code: string, field?: string): void {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.body.error.code).toBe(code);
  if (field !== undefined) expect(r.body.error.field).toBe(field);
}

function expectSecurityHeaders(headers: Headers): void {
  expect(headers.get('cache-control')).toBe('no-store');
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('x-frame-options')).toBe('DENY');
  expect(headers.get('content-security-policy')).toContain("default-src 'none'");
}

const withName = ROUTES.filter((r) => r.path.includes('{name}'));
const withBody = ROUTES.filter((r) => r.body !== undefined);

describe('every route', () => {
  it.each(ROUTES.map((r) => [`${r.method} ${r.path}`, r] as const))(
    'authenticates first: a malformed namespace without a token is 401 (%s)',
    async (_label, route) => {
      const r = await s.call(route.method, pathOf(route, 'aeskey', 'Bad_NS'), validBody(route), {
        authorization: '',
      });
      expectApiError(r, 401, 'UNAUTHENTICATED');
      expectSecurityHeaders(r.headers);
    },
  );

  it.each(withName.map((r) => [`${r.method} ${r.path}`, r] as const))(
    'validates the key name before any lookup: KELVIN SIGN, dots and length are 400 (%s)',
    async (_label, route) => {
      // `aes\u212Aey` lowercases to `aeskey` by JavaScript's Unicode rules.
      for (const name of ['aes%E2%84%AAey', 'a.b.c', 'ab', 'a234567890123456', '%00abc']) {
        const r = await s.call(route.method, pathOf(route, name), validBody(route));
        expectApiError(r, 400, 'INVALID_ARGUMENT', 'name');
      }
    },
  );

  it.each(withBody.map((r) => [`${r.method} ${r.path}`, r] as const))(
    'refuses body fields named like Object.prototype members (%s)',
    async (_label, route) => {
      for (const field of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
        const body = JSON.stringify(validBody(route)).replace(/^\{/, `{"${field}":1,`).replace(/,}$/, '}');
        const r = await s.call(route.method, pathOf(route), body);
        expectApiError(r, 400, 'INVALID_ARGUMENT', field);
        expect(r.body.error.message).toContain('unknown field');
      }
    },
  );

  it.each(withBody.map((r) => [`${r.method} ${r.path}`, r] as const))(
    'refuses a JSON body of null instead of reading it as {} (%s)',
    async (_label, route) => {
      const r = await s.call(route.method, pathOf(route), 'null');
      expectApiError(r, 400, 'INVALID_ARGUMENT', 'body');
    },
  );

  it.each([...new Set(ROUTES.map((r) => r.path))])(
    'answers undeclared methods with 405 and Allow (%s)',
    async (path) => {
      const declared = ROUTES.filter((r) => r.path === path).map((r) => r.method);
      const concrete = path.replace('{namespace}', 'default').replace('{name}', 'aeskey');
      for (const method of ['PUT', 'PATCH', 'DELETE', 'POST', 'GET'].filter(
        (m) => !declared.includes(m as never),
      )) {
        const r = await s.call(method, concrete);
        expectApiError(r, 405, 'METHOD_NOT_ALLOWED');
        const allow = r.headers.get('allow')!.split(', ');
        for (const m of declared) expect(allow).toContain(m);
        expectSecurityHeaders(r.headers);
      }
    },
  );
});

describe('issue #12 findings, by name', () => {
  it('the KELVIN SIGN name no longer returns the key aeskey', async () => {
    expectApiError(await s.call('GET', `${KEYS}/aes%E2%84%AAey`), 400, 'INVALID_ARGUMENT', 'name');
    // ASCII case still finds it.
    expect((await s.call('GET', `${KEYS}/AESKEY`)).body.name).toBe('aeskey');
  });

  it('prototype-named fields in batch items fail their item, not pass', async () => {
    const r = await s.call('POST', `${KEYS}/aeskey/batch/encrypt`, {
      requests: [{ plaintext: b64('a') }, JSON.parse('{"plaintext":"aGk=","constructor":1}')],
    });
    expect(r.status).toBe(200);
    expect(r.body.results[0].ciphertext).toMatch(/^keyward:v1:/);
    expect(r.body.results[1].error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'constructor' });
  });

  it('a batch whose items are all invalid still gets the key-level errors first', async () => {
    const bad = { requests: [{ plaintext: '!!' }, { nope: 1 }] };
    expectApiError(await s.call('POST', `${KEYS}/missing/batch/encrypt`, bad), 404, 'KEY_NOT_FOUND');
    expectApiError(await s.call('POST', `${KEYS}/offkey/batch/encrypt`, bad), 409, 'KEY_STATE');
    // A wrong-usage key fails the whole batch, not each item inside a 200.
    const wrong = await s.call('POST', `${KEYS}/eckey/batch/encrypt`, {
      requests: [{ plaintext: b64('x') }],
    });
    expectApiError(wrong, 409, 'KEY_STATE');
    expectApiError(
      await s.call('POST', `${KEYS}/aeskey/batch/sign`, { requests: [{ data: b64('m') }] }),
      409,
      'KEY_STATE',
    );
  });

  it('a JSON null body is not {} on /enable, /rotate and /data-key', async () => {
    for (const tail of ['enable', 'rotate', 'data-key']) {
      expectApiError(await s.call('POST', `${KEYS}/aeskey/${tail}`, 'null'), 400, 'INVALID_ARGUMENT', 'body');
    }
    expect((await s.call('GET', `${KEYS}/aeskey`)).body.currentVersion).toBe(1);
  });

  it('refused operations do not count as uses, and the deletion warning stays quiet', async () => {
    await s.call('POST', KEYS, { name: 'unusedkey', usage: 'AES256' });
    const key = `${KEYS}/unusedkey`;
    expectApiError(await s.call('POST', `${key}/sign`, { data: b64('m') }), 409, 'KEY_STATE');
    expectApiError(
      await s.call('POST', `${key}/decrypt`, { ciphertext: 'garbage' }),
      400,
      'INVALID_ARGUMENT',
    );
    expectApiError(await s.call('POST', `${key}/decrypt`, { ciphertext: aesCt }), 400, 'INVALID_ARGUMENT');
    const big = b64(Buffer.alloc(32 * 1024 + 1));
    expectApiError(await s.call('POST', `${key}/encrypt`, { plaintext: big }), 413, 'PAYLOAD_TOO_LARGE');
    const batch = await s.call('POST', `${key}/batch/encrypt`, { requests: [{ plaintext: '!' }] });
    expect(batch.status).toBe(200);
    expect(batch.body.results[0].error.code).toBe('INVALID_ARGUMENT');
    const view = (await s.call('GET', key)).body;
    expect(view.operationCounts).toEqual({});
    expect(view.lastUsedTime).toBeNull();
    const deletion = await s.call('POST', `${key}/request-deletion`);
    expect(deletion.status).toBe(200);
    expect(deletion.body.warnings).toBeUndefined();
    // A successful use still counts.
    await s.call('POST', `${KEYS}/aeskey/encrypt`, { plaintext: b64('x') });
    expect((await s.call('GET', `${KEYS}/aeskey`)).body.operationCounts.encrypt).toBeGreaterThanOrEqual(1);
  });

  it('answers that carry secrets, and every other, say Cache-Control: no-store', async () => {
    const dk = await s.call('POST', `${KEYS}/aeskey/data-key`, {});
    expect(dk.body.plaintext).toBeTypeOf('string');
    expectSecurityHeaders(dk.headers);
    const pt = await s.call('POST', `${KEYS}/aeskey/decrypt`, { ciphertext: aesCt });
    expect(pt.status).toBe(200);
    expectSecurityHeaders(pt.headers);
    for (const path of ['/livez', '/readyz', '/openapi.json', '/nothing', KEYS]) {
      expectSecurityHeaders((await s.call('GET', path)).headers);
    }
  });

  it('?version with more than 9 digits is 400, and the document says so', async () => {
    await s.call('POST', KEYS, { name: 'pubkey', usage: 'ECDSA' });
    expectApiError(
      await s.call('GET', `${KEYS}/pubkey/public-key?version=1234567890`),
      400,
      'INVALID_ARGUMENT',
      'version',
    );
    expect((await s.call('GET', `${KEYS}/pubkey/public-key?version=1`)).status).toBe(200);
    const doc = (await s.call('GET', '/openapi.json')).body;
    const param = doc.paths['/v1/namespaces/{namespace}/keys/{name}/public-key'].get.parameters.find(
      (p: { name: string }) => p.name === 'version',
    );
    expect(new RegExp(param.schema.pattern).test('1234567890')).toBe(false);
    expect(new RegExp(param.schema.pattern).test('999999999')).toBe(true);
  });

  it('the OpenAPI document matches behaviour: PATCH body, base64 patterns, empty context, 415, names', async () => {
    const doc = (await s.call('GET', '/openapi.json')).body;
    const key = doc.paths['/v1/namespaces/{namespace}/keys/{name}'];
    // An empty PATCH is 400, so its body is required.
    expect(key.patch.requestBody.required).toBe(true);
    expectApiError(await s.call('PATCH', `${KEYS}/aeskey`, {}), 400, 'INVALID_ARGUMENT');
    const enc = doc.paths['/v1/namespaces/{namespace}/keys/{name}/encrypt'].post;
    const props = enc.requestBody.content['application/json'].schema.properties;
    const b64re = new RegExp(props.plaintext.pattern);
    for (const ok of ['', 'AA==', 'AAA=', 'AAAA', b64(Buffer.alloc(100, 7))])
      expect(b64re.test(ok)).toBe(true);
    for (const bad of ['YR==', 'a-_b', 'YQ', '***', 'YWJj ZA']) expect(b64re.test(bad)).toBe(false);
    // An empty context is 400, so the schema forbids it.
    expect(props.context.minLength).toBe(4);
    expectApiError(
      await s.call('POST', `${KEYS}/aeskey/encrypt`, { plaintext: b64('x'), context: '' }),
      400,
      'INVALID_ARGUMENT',
      'context',
    );
    expect(enc.responses['415']).toBeDefined();
    const name = enc.parameters.find((p: { name: string }) => p.name === 'name');
    expect(name.schema.pattern).toBe('^[A-Za-z][A-Za-z0-9_-]{2,14}$');
  });

  it('node-level parse errors answer in the API error shape, with the security headers', async () => {
    const port = new URL(s.url).port;
    const raw = (text: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1');
        let out = '';
        socket.on('data', (d) => {
          out += d.toString();
        });
        socket.on('close', () => resolve(out));
        socket.on('error', reject);
        socket.end(text);
      });
    const auth = `Authorization: Bearer ${s.token}`;
    const cases = [
      `GET /livez HTTP/1.1\nHost: x\n\n`, // bare LF
      `GET /livez HTTP/1.1\r\nHost: x\rX: y\r\n\r\n`, // CR in a header
      `POST ${KEYS}/aeskey/encrypt HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST ${KEYS}/aeskey/encrypt HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`,
      `POST ${KEYS}/aeskey/encrypt HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
    ];
    for (const request of cases) {
      const answer = await raw(request);
      expect(answer, JSON.stringify(request)).toMatch(/^HTTP\/1\.1 400 /);
      const [head, body] = answer.split('\r\n\r\n');
      expect(head!.toLowerCase()).toContain('cache-control: no-store');
      expect(head!.toLowerCase()).toContain('content-type: application/json');
      expect(JSON.parse(body!)).toEqual({
        error: { code: 'INVALID_ARGUMENT', message: 'the HTTP request is malformed' },
      });
    }
  });

  it('a client that stalls mid-body is answered 408 and disconnected within the bound', async () => {
    const port = Number(new URL(s.url).port);
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let out = '';
      socket.on('data', (d) => {
        out += d.toString();
      });
      socket.on('close', () => resolve(out));
      socket.on('error', reject);
      // Headers and half the body, then nothing: the server must not wait forever.
      socket.write(
        `POST ${KEYS}/aeskey/encrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"plaintext":`,
      );
    });
    const elapsed = Date.now() - started;
    // requestTimeoutMs 1.5 s here (30 s by default), checked every second: well under 10 s.
    expect(elapsed).toBeLessThan(10_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"code":"INVALID_ARGUMENT"');
  });

  it(`caps key versions at ${MAX_KEY_VERSIONS}: the next rotation is a clear KEY_STATE`, {
    timeout: 240_000,
  }, async () => {
    await s.call('POST', KEYS, { name: 'rotated', usage: 'AES256' });
    let last: Reply | undefined;
    for (let v = 2; v <= MAX_KEY_VERSIONS; v++) {
      last = await s.call('POST', `${KEYS}/rotated/rotate`);
      if (last.status !== 200) break;
    }
    expect(last?.body.currentVersion).toBe(MAX_KEY_VERSIONS);
    const refused = await s.call('POST', `${KEYS}/rotated/rotate`);
    expectApiError(refused, 409, 'KEY_STATE');
    expect(refused.body.error.message).toContain(`${MAX_KEY_VERSIONS} versions`);
    const view = await s.call('GET', `${KEYS}/rotated`);
    expect(view.body.nextRotationTime).toBeNull();
    expect(view.body.versions).toHaveLength(MAX_KEY_VERSIONS);
    // Old versions still decrypt.
    const ct = (await s.call('POST', `${KEYS}/rotated/encrypt`, { plaintext: b64('v') })).body.ciphertext;
    expect(ct).toMatch(new RegExp(`^keyward:v${MAX_KEY_VERSIONS}:`));
  });
});
