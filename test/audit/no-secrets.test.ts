/**
 * No secret in any record: a real `keyward serve` process does one of everything (every key type,
 * every crypto route single and batch, data keys with their plaintext, convergent contexts and
 * AAD, admin actions, refused tokens), then the whole audit log and the server's own output are
 * scanned for every secret of the run: plaintexts, contexts, AAD, ciphertexts, signatures, data
 * keys, the admin token and a wrong one, their SHA-256 hashes, the master key, and every key
 * version's material (unwrapped from the store with the master key) and its wrapped form.
 */
import { createHash, createSecretKey, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unwrapMaterial } from '../../engine/crypto/wrap.ts';
import type { KeyUsage } from '../../engine/keys/model.ts';
import { type ServerProcess, startServerProcess } from '../cli/harness.ts';
import { readLines, removeDir, segmentFiles, tempDir } from './fixtures.ts';

const KEYS = '/v1/namespaces/default/keys';
const secrets = new Map<string, string>(); // needle -> what it is
let dataDir: string;
afterAll(() => removeDir(dataDir));

/** Adds the forms a secret could leak in: base64, base64url, hex, and text when it is text. */
function secret(what: string, value: Buffer | string): void {
  const buf = typeof value === 'string' ? Buffer.from(value) : value;
  if (typeof value === 'string' && value.length >= 12) secrets.set(value, what);
  for (const form of [buf.toString('base64'), buf.toString('base64url'), buf.toString('hex')]) {
    if (form.length >= 12) secrets.set(form, what);
  }
}

async function call(s: ServerProcess, method: string, path: string, body?: unknown, token = s.token) {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: inspected field by field
  return { status: res.status, body: (await res.json()) as any };
}

const fresh = (what: string, n = 24): string => {
  const b = randomBytes(n);
  secret(what, b);
  return b.toString('base64');
};

describe('audit records hold no secret', { timeout: 120_000 }, () => {
  it('a full run leaves none of its secrets in the audit log or the server output', async () => {
    dataDir = tempDir('keyward-audit-secrets-');
    const s = await startServerProcess(dataDir, ['--tls', 'off', '--audit-checkpoint-records', '7']);
    secret('admin token', s.token);
    secret('admin token sha256', createHash('sha256').update(s.token).digest());
    const keys: Array<[string, KeyUsage, boolean?]> = [
      ['aes-key', 'AES256'],
      ['conv-key', 'AES256', true],
      ['rsa-key', 'RSA2048'],
      ['ec-key', 'ECDSA'],
    ];
    for (const [name, usage, convergent] of keys) {
      expect((await call(s, 'POST', KEYS, { name, usage, convergent: convergent ?? false })).status).toBe(
        201,
      );
      await call(s, 'POST', `${KEYS}/${name}/rotate`);
    }
    for (const name of ['aes-key', 'conv-key', 'rsa-key']) {
      const context = name === 'conv-key' ? fresh('context') : undefined;
      const aad = name === 'rsa-key' ? undefined : fresh('aad', 16);
      const plaintext = fresh('plaintext');
      const enc = await call(s, 'POST', `${KEYS}/${name}/encrypt`, { plaintext, context, aad });
      expect(enc.status).toBe(200);
      secret('ciphertext', enc.body.ciphertext);
      secret('ciphertext body', enc.body.ciphertext.split(':')[2]);
      const dec = await call(s, 'POST', `${KEYS}/${name}/decrypt`, {
        ciphertext: enc.body.ciphertext,
        context,
        aad,
      });
      expect(dec.body.plaintext).toBe(plaintext);
      const re = await call(s, 'POST', `${KEYS}/${name}/re-encrypt`, {
        ciphertext: enc.body.ciphertext,
        context,
        aad,
      });
      secret('ciphertext', re.body.ciphertext);
      const batch = await call(s, 'POST', `${KEYS}/${name}/batch/encrypt`, {
        requests: [{ plaintext: fresh('plaintext'), context, aad }, { plaintext: 'bad!' }],
      });
      for (const r of batch.body.results) if (r.ciphertext) secret('ciphertext', r.ciphertext);
      const bdec = await call(s, 'POST', `${KEYS}/${name}/batch/decrypt`, {
        requests: batch.body.results
          .filter((r: { ciphertext?: string }) => r.ciphertext)
          .map((r: { ciphertext: string }) => ({ ciphertext: r.ciphertext, context, aad })),
      });
      expect(bdec.status).toBe(200);
    }
    for (const bits of [128, 256, 512]) {
      const dk = await call(s, 'POST', `${KEYS}/aes-key/data-key`, { bits, aad: fresh('aad', 16) });
      secret('data key', Buffer.from(dk.body.plaintext, 'base64'));
      secret('wrapped data key', dk.body.ciphertext);
    }
    for (const name of ['rsa-key', 'ec-key']) {
      const data = fresh('message');
      const sig = await call(s, 'POST', `${KEYS}/${name}/sign`, { data });
      secret('signature', sig.body.signature);
      secret('signature body', sig.body.signature.split(':')[2]);
      expect(
        (await call(s, 'POST', `${KEYS}/${name}/verify`, { data, signature: sig.body.signature })).body.valid,
      ).toBe(true);
      const bsig = await call(s, 'POST', `${KEYS}/${name}/batch/sign`, {
        requests: [{ data: fresh('message') }],
      });
      secret('signature', bsig.body.results[0].signature);
      await call(s, 'GET', `${KEYS}/${name}/public-key`);
    }
    const wrongToken = `wrong-${randomBytes(16).toString('hex')}`;
    secret('wrong token', wrongToken);
    secret('wrong token sha256', createHash('sha256').update(wrongToken).digest());
    expect(
      (await call(s, 'POST', `${KEYS}/aes-key/encrypt`, { plaintext: fresh('plaintext') }, wrongToken))
        .status,
    ).toBe(401);
    await call(s, 'POST', `${KEYS}/aes-key/disable`);
    await call(s, 'POST', `${KEYS}/aes-key/encrypt`, { plaintext: fresh('plaintext') });
    await call(s, 'POST', `${KEYS}/aes-key/request-deletion`);
    await call(s, 'DELETE', `${KEYS}/aes-key`);
    await call(s, 'GET', KEYS);
    await s.stop();

    // The key material, unwrapped from the store with the master key, and its wrapped form.
    const masterRaw = readFileSync(join(dataDir, 'master.key'));
    secret('master key', masterRaw);
    const master = createSecretKey(masterRaw);
    let versions = 0;
    for (const file of readdirSync(join(dataDir, 'keys', 'default'))) {
      const rec = JSON.parse(readFileSync(join(dataDir, 'keys', 'default', file), 'utf8'));
      for (const v of rec.versions) {
        const wrapped = Buffer.from(v.wrapped, 'base64');
        secret('wrapped material', v.wrapped);
        const material = unwrapMaterial(
          master,
          { store: 'default', name: rec.name, usage: rec.usage, version: v.version },
          wrapped,
        );
        secret('key material', material);
        versions++;
      }
    }
    expect(versions).toBeGreaterThanOrEqual(6);

    const files = segmentFiles(join(dataDir, 'audit'));
    const audit = files.map((f) => readFileSync(f, 'utf8')).join('');
    const records = files.flatMap(readLines).map((l) => JSON.parse(l));
    // The run is recorded: every operation shows up, the refused token as UNAUTHENTICATED.
    const ops = new Set(records.filter((r) => r.type === 'request').map((r) => r.operation));
    for (const op of [
      'create',
      'rotate',
      'encrypt',
      'decrypt',
      're-encrypt',
      'generate-data-key',
      'sign',
      'verify',
      'get-public-key',
      'disable',
      'request-deletion',
      'delete',
      'list',
    ]) {
      expect(ops).toContain(op);
    }
    expect(records.some((r) => r.outcome === 'UNAUTHENTICATED')).toBe(true);
    // The server prints the admin token once, on purpose, when it creates it (PRODUCT.md §6).
    const banner = /Admin token \(shown once[^\n]*\n {2}\S+\n/;
    expect(s.output()).toMatch(banner);
    const output = s.output().replace(banner, '');
    expect(secrets.size).toBeGreaterThan(60);
    const leaks = [...secrets].filter(([needle]) => audit.includes(needle) || output.includes(needle));
    expect(leaks.map(([, what]) => what)).toEqual([]);
  });
});
