/**
 * Issue #11 phase 2: `keyward kms-plugin --data-dir` did not count its encryptions in the key's
 * nonce budget (the plugin only reads the data dir, and `keyward serve` never saw them: an
 * under-count). A real plugin beside a real `keyward serve --nonce-budget 12` on one data dir:
 * every plugin encryption is counted (`key get` shows it), no version carries more plugin
 * ciphertexts than its budget, and the server rotates the key when the plugin spends it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PluginProcess, runCli, startPlugin, startServerProcess, waitFor } from './harness.ts';

const BUDGET = 12;
let root: string;
let dataDir: string;
let server: Awaited<ReturnType<typeof startServerProcess>>;
let plugin: PluginProcess;
const plugins: PluginProcess[] = [];

async function startOn(socket: string, key: string, extra: string[] = []): Promise<PluginProcess> {
  const p = await startPlugin(join(root, socket), [
    '--key',
    `default/${key}`,
    '--data-dir',
    dataDir,
    ...extra,
  ]);
  plugins.push(p);
  return p;
}

async function cli(...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`keyward ${args.join(' ')}: ${r.stderr}`);
  return r.out;
}

interface KeyJson {
  currentVersion: number;
  versions: Array<{ version: number; nonceCount?: number }>;
}
const getKey = async (name = 'etcd-kek'): Promise<KeyJson> =>
  JSON.parse(await cli('key', 'get', name, '-o', 'json'));

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-kms-nonce-'));
  dataDir = join(root, 'data');
  server = await startServerProcess(dataDir, ['--nonce-budget', String(BUDGET)]);
  await cli('key', 'create', 'etcd-kek', '--usage', 'AES256', '--no-rotation');
  await cli('key', 'create', 'count-kek', '--usage', 'AES256', '--no-rotation');
});

afterAll(async () => {
  for (const p of plugins) await p.kill9();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('kms-plugin --data-dir and the nonce budget', () => {
  it('counts every plugin encryption in the key (the server shows it)', async () => {
    // A plugin with its default budget (2^30): it reserves in blocks of 2^20, all counted.
    plugin = await startOn('kms1.sock', 'count-kek');
    // The plugin's Status probe encrypts too: it counts like any other encryption.
    await plugin.client.status();
    for (let i = 0; i < 5; i++) await plugin.client.encrypt(randomBytes(32));
    const key = await waitFor('the plugin counts in key get', async () => {
      const k = await getKey('count-kek');
      return (k.versions.find((v) => v.version === 1)?.nonceCount ?? 0) >= 6 ? k : undefined;
    });
    expect(key.versions).toHaveLength(key.currentVersion);
  }, 60_000);

  it('never passes the budget with the plugin alone, and the server rotates the key it spent', async () => {
    // Two plugins on one key, told the budget: each counts what the other reserved.
    const other = await startOn('kms2.sock', 'etcd-kek', ['--nonce-budget', String(BUDGET)]);
    for (let i = 0; i < 5; i++) await other.client.encrypt(randomBytes(32));
    plugin = await startOn('kms3.sock', 'etcd-kek', ['--nonce-budget', String(BUDGET)]);
    await plugin.client.status();
    const perVersion = new Map<number, number>();
    let done = 0;
    const deadline = Date.now() + 60_000;
    while (done < BUDGET * 2 && Date.now() < deadline) {
      try {
        const enc = await plugin.client.encrypt(randomBytes(32));
        const v = Number(/^keyward:v(\d+):/.exec(enc.ciphertext.toString('utf8'))?.[1]);
        perVersion.set(v, (perVersion.get(v) ?? 0) + 1);
        done++;
      } catch {
        // UNAVAILABLE while the version is spent: the apiserver asks Status again, which moves
        // to the new version once the server has rotated (its probe encrypts too).
        await new Promise((r) => setTimeout(r, 50));
        await plugin.client.status();
      }
    }
    expect(done, `${server.output().slice(-3000)}\n${plugin.output().slice(-3000)}`).toBe(BUDGET * 2);
    // Version 1 also carries the other plugin's Status probe and five encryptions, and this
    // plugin's Status probe: seven.
    expect((perVersion.get(1) ?? 0) + 7).toBeLessThanOrEqual(BUDGET);
    for (const [, n] of perVersion) expect(n).toBeLessThanOrEqual(BUDGET);
    expect(perVersion.size).toBeGreaterThanOrEqual(2);
    const key = await getKey();
    expect(key.currentVersion).toBeGreaterThanOrEqual(2);
    expect(key.versions.find((v) => v.version === 1)?.nonceCount ?? 0).toBeGreaterThanOrEqual(BUDGET);
    expect(server.output()).toMatch(/reached its nonce budget of 12/);
  }, 90_000);
});
