/**
 * A batch request gives the same answer whether the main thread parses it or a crypto worker runs
 * it whole (issue #15): the same cases, sent to a server of each kind over one data dir. Compared:
 * every status and error body, every per-item result (exactly where it is deterministic; shape and
 * round trip where nonces are random), the metrics per item and result, the audit record's batch
 * counts, usage counting, and the nonce count (never under the encryptions made).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_DIR } from '../../engine/audit/verify-files.ts';
import { readLines, segmentFiles } from '../audit/fixtures.ts';
import { b64, KEYS, type Reply, removeDir, startTestServer, type TestServer } from './harness.ts';

type Json = Record<string, unknown>;

interface Case {
  name: string;
  key: string;
  op: string;
  /** The raw body, sent as is. */
  body: string;
  /** Results with random nonces are compared by round trip, not byte for byte. */
  randomOutput?: boolean;
}

let dataDir: string;
const answers: Record<'worker' | 'main', Map<string, Reply>> = { worker: new Map(), main: new Map() };
const metrics: Record<'worker' | 'main', string> = { worker: '', main: '' };
const audits: Record<'worker' | 'main', Json[]> = { worker: [], main: [] };
const views: Record<'worker' | 'main', Json> = { worker: {}, main: {} };
const fixtures: Record<string, string> = {};

const batch = (requests: unknown[]): string => JSON.stringify({ requests });

/** Fixtures made once, on the first server; the cases use them on both. */
async function makeFixtures(s: TestServer): Promise<void> {
  for (const [name, usage, convergent] of [
    ['aesk', 'AES256', false],
    ['convk', 'AES256', true],
    ['rsak', 'RSA2048', false],
    ['eck', 'ECDSA', false],
    ['offk', 'AES256', false],
  ] as const) {
    expect((await s.call('POST', KEYS, { name, usage, convergent })).status).toBe(201);
  }
  const v1 = await s.call('POST', `${KEYS}/aesk/encrypt`, { plaintext: b64('version one'), aad: b64('hdr') });
  fixtures.v1 = v1.body.ciphertext;
  await s.call('POST', `${KEYS}/aesk/rotate`);
  fixtures.v2 = (
    await s.call('POST', `${KEYS}/aesk/encrypt`, { plaintext: b64('version two') })
  ).body.ciphertext;
  fixtures.conv = (
    await s.call('POST', `${KEYS}/convk/encrypt`, { plaintext: b64('same'), context: b64('tenant') })
  ).body.ciphertext;
  fixtures.rsa = (
    await s.call('POST', `${KEYS}/rsak/encrypt`, { plaintext: b64('rsa secret') })
  ).body.ciphertext;
  fixtures.ecSig = (await s.call('POST', `${KEYS}/eck/sign`, { data: b64('signed') })).body.signature;
  fixtures.rsaSig = (
    await s.call('POST', `${KEYS}/rsak/sign`, { data: b64('signed'), algorithm: 'RSASSA_PKCS1_V1_5_SHA_256' })
  ).body.signature;
  await s.call('POST', `${KEYS}/offk/disable`);
}

function cases(): Case[] {
  const tampered = `${fixtures.v2!.slice(0, -6)}AAAA==`;
  const goodItems = [
    { plaintext: b64('a') },
    { plaintext: b64('') },
    { plaintext: b64('with aad'), aad: b64('header') },
  ];
  const badItems = [
    { plaintext: 'not base64!' },
    { plaintext: Buffer.alloc(32 * 1024 + 1).toString('base64') },
    { plaintext: b64('x'), context: b64('c') },
    { plaintext: b64('x'), extra: 1 },
    {},
    42,
    null,
    'text',
    [],
    { plaintext: 7 },
  ];
  return [
    {
      name: 'encrypt, good and bad items',
      key: 'aesk',
      op: 'encrypt',
      body: batch([...goodItems, ...badItems]),
      randomOutput: true,
    },
    { name: 'encrypt, only bad items', key: 'aesk', op: 'encrypt', body: batch(badItems) },
    {
      name: 'decrypt, old and current versions, unknown version, tampering, wrong aad, junk',
      key: 'aesk',
      op: 'decrypt',
      body: batch([
        { ciphertext: fixtures.v1, aad: b64('hdr') },
        { ciphertext: fixtures.v2 },
        { ciphertext: fixtures.v1 },
        { ciphertext: fixtures.v2!.replace('keyward:v2:', 'keyward:v9:') },
        { ciphertext: tampered },
        { ciphertext: 'keyward:v1:' },
        { ciphertext: 'garbage' },
        { ciphertext: `keyward:v1:${Buffer.alloc(40_000).toString('base64')}` },
        { ciphertext: 5 },
        { ciphertext: fixtures.v2, context: b64('c') },
      ]),
    },
    {
      name: 're-encrypt, mixed versions',
      key: 'aesk',
      op: 're-encrypt',
      body: batch([
        { ciphertext: fixtures.v1, aad: b64('hdr') },
        { ciphertext: 'bad' },
        { ciphertext: fixtures.v2 },
      ]),
      randomOutput: true,
    },
    {
      name: 'convergent encrypt and decrypt (deterministic)',
      key: 'convk',
      op: 'encrypt',
      body: batch([
        { plaintext: b64('same'), context: b64('tenant') },
        { plaintext: b64('same') },
        { plaintext: b64('same'), context: '' },
      ]),
    },
    {
      name: 'convergent decrypt, right and wrong context',
      key: 'convk',
      op: 'decrypt',
      body: batch([
        { ciphertext: fixtures.conv, context: b64('tenant') },
        { ciphertext: fixtures.conv, context: b64('other') },
        { ciphertext: fixtures.conv },
      ]),
    },
    {
      name: 'rsa decrypt and re-encrypt',
      key: 'rsak',
      op: 'decrypt',
      body: batch([{ ciphertext: fixtures.rsa }, { ciphertext: fixtures.rsa, aad: b64('a') }]),
    },
    {
      name: 'verify, algorithms, prehashed, bad signatures',
      key: 'eck',
      op: 'verify',
      body: batch([
        { data: b64('signed'), signature: fixtures.ecSig },
        { data: b64('other'), signature: fixtures.ecSig },
        { data: b64('signed'), signature: 'nope' },
        { data: b64('signed'), signature: fixtures.ecSig, algorithm: 'RSASSA_PSS_SHA_256' },
        { data: b64('signed'), signature: fixtures.ecSig, prehashed: true },
        { data: b64('signed') },
      ]),
    },
    {
      name: 'rsa verify PKCS#1',
      key: 'rsak',
      op: 'verify',
      body: batch([
        { data: b64('signed'), signature: fixtures.rsaSig, algorithm: 'RSASSA_PKCS1_V1_5_SHA_256' },
        { data: b64('signed'), signature: fixtures.rsaSig },
      ]),
    },
    {
      name: 'ecdsa sign (random) with bad items',
      key: 'eck',
      op: 'sign',
      body: batch([{ data: b64('m') }, { data: b64('m'), algorithm: 'ECDSA_SHA_256_RAW' }, { data: 'x' }]),
      randomOutput: true,
    },
    // Bodies that are not a batch.
    { name: 'invalid JSON', key: 'aesk', op: 'encrypt', body: '{"requests": [' },
    { name: 'null', key: 'aesk', op: 'encrypt', body: 'null' },
    { name: 'an array', key: 'aesk', op: 'encrypt', body: '[]' },
    { name: 'empty body', key: 'aesk', op: 'encrypt', body: '' },
    { name: 'no requests', key: 'aesk', op: 'encrypt', body: '{}' },
    { name: 'zero requests', key: 'aesk', op: 'encrypt', body: batch([]) },
    { name: 'unknown field', key: 'aesk', op: 'encrypt', body: JSON.stringify({ requests: [{}], x: 1 }) },
    { name: 'requests not an array', key: 'aesk', op: 'encrypt', body: JSON.stringify({ requests: {} }) },
    {
      name: '1001 requests',
      key: 'aesk',
      op: 'encrypt',
      body: batch(Array.from({ length: 1001 }, () => ({ plaintext: b64('x') }))),
    },
    // Key-level refusals, with a good body and with a bad one (the body's own error comes first).
    { name: 'unknown key', key: 'nokey', op: 'encrypt', body: batch([{ plaintext: b64('x') }]) },
    { name: 'unknown key, bad body', key: 'nokey', op: 'encrypt', body: '{"requests": 1}' },
    { name: 'disabled key', key: 'offk', op: 'encrypt', body: batch([{ plaintext: b64('x') }, {}]) },
    { name: 'disabled key, bad JSON', key: 'offk', op: 'encrypt', body: 'nope' },
    { name: 'wrong usage', key: 'aesk', op: 'sign', body: batch([{ data: b64('x') }]) },
    { name: 'wrong usage, bad body', key: 'aesk', op: 'sign', body: batch([]) },
    {
      name: 'escaped field names',
      key: 'aesk',
      op: 'encrypt',
      body: '{"\\u0072equests":[{"pl\\u0061intext":"YQ=="},{"\\u00e9":1}]}',
      randomOutput: true,
    },
  ];
}

let boot = '';
/** The request-id prefix of a server's run (docs/audit.md: `<boot>-<counter>`). */
const bootOf = (_s: TestServer): string => boot;

/** The operation and batch-size series of /metrics, by series. */
async function series(s: TestServer): Promise<Map<string, number>> {
  const text = await (await fetch(s.server.metricsUrl!)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!/^keyward_(operations_total|batch_size_(count|sum))/.test(line)) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function runAll(mode: 'worker' | 'main', s: TestServer): Promise<void> {
  boot = String((await s.call('GET', `${KEYS}/aesk`)).headers.get('x-request-id')).split('-')[0]!;
  const before = await series(s);
  for (const c of cases()) {
    const res = await fetch(`${s.url}${KEYS}/${c.key}/batch/${c.op}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
      body: c.body,
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {}
    expect(res.headers.get('content-type'), c.name).toBe('application/json; charset=utf-8');
    answers[mode].set(c.name, { status: res.status, body, headers: res.headers });
  }
  // What this run added to each series.
  const after = await series(s);
  metrics[mode] = [...after]
    .map(([k, v]) => `${k} ${v - (before.get(k) ?? 0)}`)
    .filter((l) => !l.endsWith(' 0'))
    .sort()
    .join('\n');
  await s.server.audit!.flush();
  // This server's records only (the log of the data dir goes on across both).
  audits[mode] = segmentFiles(join(s.dataDir, AUDIT_DIR))
    .flatMap((f) => readLines(f).map((l) => JSON.parse(l) as Json))
    .filter(
      (r) => r.type === 'request' && String(r.requestId).startsWith(bootOf(s)) && typeof r.batch === 'object',
    );
  views[mode] = (await s.call('GET', `${KEYS}/aesk`)).body;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-batch-paths-'));
  const worker = await startTestServer({ dataDir, threads: 2 });
  await makeFixtures(worker);
  // Usage and nonce counts start from what the fixtures left.
  const before = (await worker.call('GET', `${KEYS}/aesk`)).body;
  await runAll('worker', worker);
  await worker.stop();
  const main = await startTestServer({ dataDir, threads: 2, paths: { workerBatches: false } });
  views.main = {};
  const mainBefore = (await main.call('GET', `${KEYS}/aesk`)).body;
  await runAll('main', main);
  await main.stop();
  // Counts relative to each server's start.
  views.worker.delta = delta(before, views.worker);
  views.main.delta = delta(mainBefore, views.main);
}, 120_000);

afterAll(() => removeDir(dataDir));

function delta(before: Json, after: Json): Json {
  const ops = (v: Json) => (v.operationCounts ?? {}) as Record<string, number>;
  const nonces = (v: Json) =>
    Object.fromEntries(
      ((v.versions ?? []) as Array<{ version: number; nonceCount?: number }>).map((x) => [
        x.version,
        x.nonceCount ?? 0,
      ]),
    );
  const out: Json = { operations: {}, nonces: {} };
  for (const [k, n] of Object.entries(ops(after))) (out.operations as Json)[k] = n - (ops(before)[k] ?? 0);
  for (const [k, n] of Object.entries(nonces(after)))
    (out.nonces as Json)[k] = n - ((nonces(before) as Record<string, number>)[k] ?? 0);
  return out;
}

/** A result with its random parts replaced by their shape. */
function shape(result: unknown): unknown {
  if (typeof result !== 'object' || result === null) return result;
  const r = result as Json;
  if (typeof r.ciphertext === 'string')
    return { ...r, ciphertext: r.ciphertext.replace(/:[A-Za-z0-9+/=]+$/, ':<random>') };
  if (typeof r.signature === 'string')
    return { ...r, signature: r.signature.replace(/:[A-Za-z0-9+/=]+$/, ':<random>') };
  return r;
}

describe('batch requests, parsed in a worker or on the main thread', () => {
  for (const c of [
    'encrypt, good and bad items',
    'encrypt, only bad items',
    'decrypt, old and current versions, unknown version, tampering, wrong aad, junk',
    're-encrypt, mixed versions',
    'convergent encrypt and decrypt (deterministic)',
    'convergent decrypt, right and wrong context',
    'rsa decrypt and re-encrypt',
    'verify, algorithms, prehashed, bad signatures',
    'rsa verify PKCS#1',
    'ecdsa sign (random) with bad items',
    'invalid JSON',
    'null',
    'an array',
    'empty body',
    'no requests',
    'zero requests',
    'unknown field',
    'requests not an array',
    '1001 requests',
    'unknown key',
    'unknown key, bad body',
    'disabled key',
    'disabled key, bad JSON',
    'wrong usage',
    'wrong usage, bad body',
    'escaped field names',
  ]) {
    it(`answers alike: ${c}`, () => {
      const w = answers.worker.get(c)!;
      const m = answers.main.get(c)!;
      expect(w.status).toBe(m.status);
      const random = cases().find((x) => x.name === c)!.randomOutput === true;
      if (random) {
        expect((w.body as Json).results as unknown[]).toHaveLength(
          ((m.body as Json).results as unknown[]).length,
        );
        expect(((w.body as Json).results as unknown[]).map(shape)).toEqual(
          ((m.body as Json).results as unknown[]).map(shape),
        );
      } else {
        expect(w.body).toEqual(m.body);
      }
    });
  }

  it('gives the expected per-item answers (not only the same ones)', () => {
    const enc = answers.worker.get('encrypt, good and bad items')!.body as { results: Json[] };
    expect(enc.results.map((r) => (r.error ? (r.error as Json).code : 'ok'))).toEqual([
      'ok',
      'ok',
      'ok',
      'INVALID_ARGUMENT',
      'PAYLOAD_TOO_LARGE',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
    ]);
    const dec = answers.worker.get(
      'decrypt, old and current versions, unknown version, tampering, wrong aad, junk',
    )!.body as { results: Json[] };
    expect(dec.results.slice(0, 2)).toEqual([
      { plaintext: b64('version one') },
      { plaintext: b64('version two') },
    ]);
    for (const r of dec.results.slice(2, 8)) {
      expect(r).toEqual({
        error: { code: 'INVALID_ARGUMENT', message: 'ciphertext is invalid', field: 'ciphertext' },
      });
    }
    expect(answers.worker.get('unknown key, bad body')!.status).toBe(400);
    expect(answers.worker.get('unknown key')!.status).toBe(404);
    expect(answers.worker.get('disabled key')!.status).toBe(409);
    expect(answers.worker.get('disabled key, bad JSON')!.status).toBe(400);
    expect(answers.worker.get('wrong usage')!.status).toBe(409);
    expect(answers.worker.get('wrong usage, bad body')!.status).toBe(400);
    expect(
      (answers.worker.get('escaped field names')!.body as { results: Json[] }).results.map(
        (r) => Object.keys(r)[0],
      ),
    ).toEqual(['ciphertext', 'error']);
  });

  it('counts the same operations per key and result in /metrics', () => {
    expect(metrics.worker).toEqual(metrics.main);
    expect(metrics.worker.split('\n').length).toBeGreaterThan(20);
  });

  it('records the same batch counts in the audit log', () => {
    const counts = (records: Json[]) => records.map((r) => [r.operation, r.key, r.status, r.batch]);
    expect(counts(audits.worker)).toEqual(counts(audits.main));
    expect(audits.worker.length).toBeGreaterThan(8);
  });

  it('records the same uses, and counts no fewer nonces than encryptions made', () => {
    const w = views.worker.delta as { operations: Json; nonces: Record<string, number> };
    const m = views.main.delta as { operations: Json; nonces: Record<string, number> };
    expect(w.operations).toEqual(m.operations);
    // Three good encrypt items, two re-encrypted ones and the one with escaped field names, under
    // version 2: exactly that many in the worker (which counts what it ran), at least that many on
    // the main thread (which counts every item that decoded).
    expect(w.nonces['2']).toBe(6);
    expect(m.nonces['2']).toBeGreaterThanOrEqual(6);
  });
});
