/**
 * `keyward master-key rotate` through real processes: every key version re-wrapped under a new
 * master-key version, the old one retired, and a kill -9 half-way through loses nothing: a re-run
 * finishes the rotation (PRODUCT.md §4.3, issue 11).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { masterKeysFrom } from '../../engine/crypto/master-keys.ts';
import { generateMaterial } from '../../engine/crypto/material.ts';
import { unwrapMaterial, wrapMaterial, wrappedMasterKeyVersion } from '../../engine/crypto/wrap.ts';
import { createKeyRecord } from '../../engine/keys/lifecycle.ts';
import { parseKeySpec } from '../../engine/keys/spec.ts';
import { FileKeyStore } from '../../engine/store/file-key-store.ts';
import { parseMasterKeyFile } from '../../engine/store/master-key-file.ts';
import { readRegistry } from '../../engine/store/master-key-registry.ts';
import { MAIN } from '../cli/harness.ts';
import { b64, call, KEYS, runCli, serve } from './helpers.ts';

let root: string;
let dataDir: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-rotate-'));
  dataDir = join(root, 'data');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Sealed {
  key: string;
  ciphertext: string;
  plaintext: string;
}

/**
 * A store with keys made through the server (AES, RSA, ECDSA, a rotated one) and `bulk` more AES
 * keys written straight into the store (so a rotation has a lot to re-wrap). Returns ciphertexts
 * to check afterwards, and each bulk key's material.
 */
async function seed(
  bulk: number,
  args: string[] = [],
): Promise<{ sealed: Sealed[]; materials: Map<string, Buffer> }> {
  const sealed: Sealed[] = [];
  const server = await serve(dataDir, args);
  try {
    for (const [name, usage] of [
      ['aes-a', 'AES256'],
      ['rsa-a', 'RSA2048'],
      ['ec-a', 'ECDSA'],
    ] as const) {
      expect((await call(server, 'POST', KEYS, { name, usage })).status).toBe(201);
    }
    await call(server, 'POST', `${KEYS}/aes-a/rotate`);
    for (const key of ['aes-a', 'rsa-a']) {
      const plaintext = b64(`${key} secret`);
      sealed.push({
        key,
        plaintext,
        ...(await call(server, 'POST', `${KEYS}/${key}/encrypt`, { plaintext })).body,
      });
    }
  } finally {
    await server.stop();
  }
  const keyFile = args.includes('--master-key-file')
    ? args[args.indexOf('--master-key-file') + 1]!
    : join(dataDir, 'master.key');
  const raw = parseMasterKeyFile(await readFile(keyFile));
  const keys = masterKeysFrom(raw, 1);
  const store = await FileKeyStore.open(dataDir);
  const materials = new Map<string, Buffer>();
  for (let i = 0; i < bulk; i++) {
    const name = `bulk-${String(i).padStart(4, '0')}`;
    const material = generateMaterial('AES256');
    materials.set(name, material);
    const wrapped = wrapMaterial(keys, { store: 'default', name, usage: 'AES256', version: 1 }, material);
    await store.create(
      createKeyRecord(
        {
          namespace: 'default',
          name,
          spec: parseKeySpec({ usage: 'AES256' }),
          firstVersion: { version: 1, createdTime: Date.now(), wrapped: wrapped.toString('base64') },
        },
        Date.now(),
      ),
    );
  }
  return { sealed, materials };
}

const readdirSafe = (dir: string) => readdir(dir).catch(() => [] as string[]);

/** Master-key versions named by every stored blob, with counts. */
async function blobVersions(): Promise<Map<number | undefined, number>> {
  const out = new Map<number | undefined, number>();
  for (const r of await (await FileKeyStore.open(dataDir)).list()) {
    for (const v of r.versions) {
      const m = wrappedMasterKeyVersion(v.wrapped);
      out.set(m, (out.get(m) ?? 0) + 1);
    }
  }
  return out;
}

/** Checks everything after a finished rotation: files, blobs, materials, ciphertexts. */
async function checkRotated(
  to: number,
  seeded: { sealed: Sealed[]; materials: Map<string, Buffer> },
  keyFile = join(dataDir, 'master.key'),
  args: string[] = [],
): Promise<void> {
  const file = parseMasterKeyFile(await readFile(keyFile));
  expect([...file.keys()]).toEqual([to]);
  const registry = (await readRegistry(dataDir))!;
  expect(registry.current).toBe(to);
  for (const v of registry.versions) {
    if (v.version !== to) expect(v.retiredTime).toBeGreaterThan(0);
  }
  // The bulk keys, aes-a (2 versions), rsa-a and ec-a.
  expect([...(await blobVersions())]).toEqual([[to, seeded.materials.size + 4]]);
  // The material itself is unchanged: only its wrapping moved.
  const keys = masterKeysFrom(file, to);
  const store = await FileKeyStore.open(dataDir);
  for (const [name, material] of seeded.materials) {
    const r = (await store.get('default', name))!;
    const unwrapped = unwrapMaterial(
      keys,
      { store: 'default', name, usage: 'AES256', version: 1 },
      Buffer.from(r.versions[0]!.wrapped, 'base64'),
    );
    expect(unwrapped.equals(material), name).toBe(true);
  }
  const server = await serve(dataDir, args);
  try {
    for (const s of seeded.sealed) {
      const r = await call(server, 'POST', `${KEYS}/${s.key}/decrypt`, { ciphertext: s.ciphertext });
      expect(r.body.plaintext, s.key).toBe(s.plaintext);
    }
    const signed = await call(server, 'POST', `${KEYS}/ec-a/sign`, { data: b64('m') });
    expect(signed.status).toBe(200);
    const got = await call(server, 'GET', `${KEYS}/aes-a`);
    expect(got.body.versions.map((v: { masterKeyVersion: number }) => v.masterKeyVersion)).toEqual([to, to]);
    // New material is wrapped under the new version too.
    const made = await call(server, 'POST', KEYS, { name: 'after', usage: 'AES256' });
    expect(made.body.versions[0].masterKeyVersion).toBe(to);
    const cli = await runCli(['key', 'get', 'aes-a', '--data-dir', dataDir], {
      env: { KEYWARD_ADDR: server.url, KEYWARD_TOKEN: server.token },
    });
    expect(cli.out).toMatch(new RegExp(`v2 \\S+ \\(master key v${to}`));
  } finally {
    await server.stop();
  }
}

/** Runs `keyward master-key rotate` and kills it with SIGKILL after `killAfter` progress lines. */
function rotateAndKill(killAfter: number, args: string[] = []): Promise<{ killed: boolean; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [MAIN, 'master-key', 'rotate', '--data-dir', dataDir, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let progress = 0;
    let killed = false;
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      progress = (stderr.match(/re-wrapped \d+\/\d+ keys/g) ?? []).length;
      if (!killed && progress >= killAfter) {
        killed = true;
        proc.kill('SIGKILL');
      }
    });
    proc.on('error', reject);
    proc.on('exit', () => resolve({ killed, stderr }));
  });
}

describe('keyward master-key rotate', { timeout: 300_000 }, () => {
  it('re-wraps every key version under a new master-key version and retires the old one', async () => {
    const seeded = await seed(40);
    const before = await readFile(join(dataDir, 'master.key'));
    const r = await runCli(['master-key', 'rotate', '--data-dir', dataDir]);
    expect(r.stderr).toMatch(/master-key version 2 created/);
    expect(r.stderr).toMatch(/re-wrapped 43\/43 keys/);
    expect(r.out).toMatch(
      /Rotated the master key: version 2 .* wraps every key \(43 key record\(s\) re-wrapped/,
    );
    expect(r.out).toMatch(/Retired master-key version\(s\) 1/);
    expect(r.code).toBe(0);
    // The old key is gone from the file.
    const after = await readFile(join(dataDir, 'master.key'));
    expect(after.includes(before)).toBe(false);
    await checkRotated(2, seeded);
    // The audit log written before the rotation still verifies: the file keeps the retired
    // version's audit checkpoint key (one-way derived), not the key itself.
    const audit = await runCli(['audit', 'verify', '--data-dir', dataDir]);
    expect(audit.code, audit.out + audit.stderr).toBe(0);
    expect(audit.out).toMatch(/^valid: .* \([1-9]\d* MACs checked\)/);
    // The rotation itself is in the log (issue #13: master-key rotation), after the server's
    // records, sealed by a checkpoint under the new master-key version.
    const records = (await readdir(join(dataDir, 'audit')))
      .sort()
      .flatMap((f) => readFileSync(join(dataDir, 'audit', f), 'utf8').split('\n'))
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const rotation = records.filter((r) => r.operation === 'rotate-master-key');
    expect(rotation).toHaveLength(1);
    expect(rotation[0]).toMatchObject({
      type: 'operator',
      trigger: 'keyward master-key rotate',
      outcome: 'ok',
      detail: 'master-key version 2; 43 key record(s) re-wrapped; version(s) 1 retired',
    });
    expect(rotation[0]?.actor).toMatch(/^.+@.+$/);
    expect(records.at(-1)).toMatchObject({ type: 'checkpoint', reason: 'close' });
    // And again (with the key made since): version 3, version 2 retired.
    const again = await runCli(['master-key', 'rotate', '--data-dir', dataDir]);
    expect(again.out).toMatch(/version 3 .* \(44 key record\(s\) re-wrapped/);
    expect([...parseMasterKeyFile(await readFile(join(dataDir, 'master.key'))).keys()]).toEqual([3]);
    expect((await runCli(['audit', 'verify', '--data-dir', dataDir])).code).toBe(0);
  });

  it('refuses to run beside a running server', async () => {
    await seed(0);
    const server = await serve(dataDir);
    try {
      const r = await runCli(['master-key', 'rotate', '--data-dir', dataDir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/in use by another keyward server \(pid \d+\)/);
      expect([...(await blobVersions()).keys()]).toEqual([1]);
    } finally {
      await server.stop();
    }
  });

  it('loses nothing when killed with kill -9 half-way, again and again, and a re-run finishes', async () => {
    const seeded = await seed(400);
    let mixedSeen = false;
    for (const killAfter of [1, 4, 9]) {
      const run = await rotateAndKill(killAfter);
      expect(run.killed, run.stderr).toBe(true);
      const versions = await blobVersions();
      if (versions.size === 2) mixedSeen = true;
      // Half-way, both master-key versions are in use and the server starts and serves.
      const server = await serve(dataDir);
      try {
        for (const s of seeded.sealed) {
          const r = await call(server, 'POST', `${KEYS}/${s.key}/decrypt`, { ciphertext: s.ciphertext });
          expect(r.body.plaintext).toBe(s.plaintext);
        }
        expect(
          (await call(server, 'POST', `${KEYS}/bulk-0399/encrypt`, { plaintext: b64('x') })).status,
        ).toBe(200);
      } finally {
        await server.stop();
      }
    }
    expect(mixedSeen).toBe(true);
    const final = await runCli(['master-key', 'rotate', '--data-dir', dataDir]);
    expect(final.code, final.stderr).toBe(0);
    expect(final.out).toMatch(/Finished the interrupted rotation: version 2/);
    await checkRotated(2, seeded);
  });

  it('rotates a --master-key-file outside the data dir, and says so when it cannot write it', async () => {
    await mkdir(join(root, 'secure'), { mode: 0o700 });
    const file = join(root, 'secure', 'mk');
    const args = ['--master-key-file', file];
    const seeded = await seed(5, args);
    await chmod(join(root, 'secure'), 0o500);
    const refused = await runCli(['master-key', 'rotate', '--data-dir', dataDir, ...args]);
    await chmod(join(root, 'secure'), 0o700);
    if (process.getuid?.() !== 0) {
      // (root writes through a read-only directory, so this half runs only as another user)
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/cannot be written \(EACCES\): rotate where the file is managed/);
    }
    const done = await runCli(['master-key', 'rotate', '--data-dir', dataDir, ...args]);
    expect(done.code, done.stderr).toBe(0);
    await checkRotated(refused.code === 0 ? 3 : 2, seeded, file, args);
    expect(await readdirSafe(dataDir)).not.toContain('master.key');
  });
});
