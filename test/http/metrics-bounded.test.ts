/**
 * /metrics stays bounded under hostile callers (issue #12: 2,000 requests with bad base64 to
 * `/v1/namespaces/anyns/keys/<anything>/encrypt` and case variants of a real key made 2,063
 * series). Per-key series exist only for keys that exist, under their stored name; every other
 * name is `(unknown)`. Metrics are served on their own listener, never on the API port.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from './harness.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
  await s.call('POST', KEYS, { name: 'RealKey', usage: 'AES256' });
  await s.call('POST', KEYS, { name: 'signer', usage: 'ECDSA' });
});
afterAll(async () => {
  await s.stop();
  await removeDir(s.dataDir);
});

/**
 * The series requests can reach: Keyward's own families. (The Node process families, GC kinds
 * and the like, are closed sets that load alone fills in.)
 */
async function series(): Promise<string[]> {
  const text = await (await fetch(s.server.metricsUrl!)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('keyward_') && !/^keyward_(nodejs|process)_/.test(line));
}

/** Case variants of `name` (about 2^n of them). */
function caseVariant(name: string, i: number): string {
  return [...name].map((c, j) => ((i >> j) & 1 ? c.toUpperCase() : c.toLowerCase())).join('');
}

/** The hostile request number `i`: every kind the issue names, with fresh names each time. */
function hostile(i: number): { method: string; path: string; body?: unknown } {
  const junk = randomBytes(5).toString('hex');
  switch (i % 10) {
    case 0: // bad base64 to a random namespace and name
      return {
        method: 'POST',
        path: `/v1/namespaces/ns${junk}/keys/k${junk}/encrypt`,
        body: { plaintext: '***' },
      };
    case 1: // good request, nonexistent key
      return { method: 'POST', path: `${KEYS}/n${junk}/encrypt`, body: { plaintext: b64('x') } };
    case 2: // case variants of a real key, bad input
      return {
        method: 'POST',
        path: `${KEYS}/${caseVariant('realkey', i)}/encrypt`,
        body: { plaintext: '!' },
      };
    case 3: // case variants of a real key, good input
      return {
        method: 'POST',
        path: `${KEYS}/${caseVariant('realkey', i)}/encrypt`,
        body: { plaintext: b64('x') },
      };
    case 4: // not a key name at all
      return { method: 'POST', path: `${KEYS}/${junk}%E2%84%AA/decrypt`, body: { ciphertext: 'x' } };
    case 5: // batches to random names
      return { method: 'POST', path: `${KEYS}/b${junk}/batch/sign`, body: { requests: [{ data: 'AA==' }] } };
    case 6: // unknown routes and methods
      return { method: 'PUT', path: `${KEYS}/r${junk}/${junk}` };
    case 7: // public keys of random versions
      return { method: 'GET', path: `${KEYS}/signer/public-key?version=${(i % 997) + 2}` };
    case 8: // wrong usage on a real key
      return {
        method: 'POST',
        path: `${KEYS}/${caseVariant('signer', i)}/encrypt`,
        body: { plaintext: b64('x') },
      };
    default: // random namespaces, listing
      return { method: 'GET', path: `/v1/namespaces/x${junk}/keys` };
  }
}

async function send(from: number, count: number): Promise<void> {
  let next = from;
  const worker = async (): Promise<void> => {
    while (next < from + count) {
      const r = hostile(next++);
      await s.call(r.method, r.path, r.body);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}

describe('metrics cardinality', () => {
  it('10,000 hostile requests add no series beyond the first round of each kind', {
    timeout: 180_000,
  }, async () => {
    const before = await series();
    await send(0, 200); // every kind, a few times: the label sets they can reach
    const warm = await series();
    await send(200, 10_000);
    const after = await series();
    // A constant: what one round of each kind adds, however many requests follow.
    expect(warm.length - before.length).toBeLessThan(400);
    const added = after.filter((l) => !warm.some((w) => w.split(' ')[0] === l.split(' ')[0]));
    expect(added.map((l) => l.split(' ')[0])).toEqual([]);
    const keys = new Set(
      after.flatMap((line) => {
        const m = /^keyward_operations_total\{key="([^"]*)"/.exec(line);
        return m ? [m[1]!] : [];
      }),
    );
    expect([...keys].sort()).toEqual(['(unknown)', 'default/RealKey', 'default/signer']);
    // Operations on a case variant count under the stored name.
    const ok = after.find((l) =>
      l.startsWith('keyward_operations_total{key="default/RealKey",operation="encrypt",result="ok"}'),
    );
    expect(Number(ok?.split(' ').pop())).toBeGreaterThanOrEqual(1000);
  });
});
