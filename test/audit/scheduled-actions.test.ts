/**
 * Standalone: the actions the key service takes by itself are recorded (issue #13: "material
 * erased", "rotated"). Before, a key destroyed when its deletion delay passed left only the
 * request-deletion request in the log, and a rotation at the nonce budget left nothing. Here: a
 * destruction by the scheduler while serving, one carried out at start (due while the server
 * was down, before the log opens), and a rotation at the nonce budget; the log verifies.
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { AUDIT_DIR, readMasterKeyFile } from '../../engine/audit/verify-files.ts';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from '../http/harness.ts';
import { readLines, segmentFiles, verifyDir } from './fixtures.ts';

type Rec = Record<string, unknown>;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

function records(dataDir: string): Rec[] {
  return segmentFiles(join(dataDir, AUDIT_DIR)).flatMap((f) => readLines(f).map((l) => JSON.parse(l) as Rec));
}

async function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const actions = (recs: Rec[]) =>
  recs
    .filter((r) => r.type === 'operator')
    .map((r) => [r.operation, r.actor, r.namespace, r.key, r.version, r.trigger, r.outcome]);

it('records the destruction the scheduler carries out, while serving and at start', async () => {
  let t: TestServer = await startTestServer({ deletionDelayMs: 1500 });
  dirs.push(t.dataDir);
  for (const name of ['gone-live', 'gone-start']) {
    expect((await t.call('POST', KEYS, { name, usage: 'AES256' })).status).toBe(201);
    await t.call('POST', `${KEYS}/${name}/rotate`);
  }
  await t.call('POST', `${KEYS}/gone-live/request-deletion`);
  await until('gone-live destroyed', async () => (await t.call('GET', `${KEYS}/gone-live`)).status === 404);
  await t.server.audit!.flush();
  expect(actions(records(t.dataDir))).toEqual([
    ['destroy', 'scheduler', 'default', 'gone-live', 2, 'deletion-schedule', 'ok'],
  ]);
  // Due while the server is down: destroyed at start, before the log opens; recorded once it is.
  await t.call('POST', `${KEYS}/gone-start/request-deletion`);
  await t.stop();
  await new Promise((r) => setTimeout(r, 1600));
  t = await startTestServer({ dataDir: t.dataDir, deletionDelayMs: 1500 });
  expect((await t.call('GET', `${KEYS}/gone-start`)).status).toBe(404);
  await t.stop();
  const recs = records(t.dataDir);
  expect(actions(recs)).toEqual([
    ['destroy', 'scheduler', 'default', 'gone-live', 2, 'deletion-schedule', 'ok'],
    ['destroy', 'scheduler', 'default', 'gone-start', 2, 'deletion-schedule', 'ok'],
  ]);
  // The destruction follows the request that asked for it.
  const seqOf = (pred: (r: Rec) => boolean) => recs.findIndex(pred);
  expect(seqOf((r) => r.operation === 'request-deletion' && r.key === 'gone-live')).toBeLessThan(
    seqOf((r) => r.operation === 'destroy' && r.key === 'gone-live'),
  );
  const report = await verifyDir(join(t.dataDir, AUDIT_DIR), [
    await readMasterKeyFile(join(t.dataDir, 'master.key')),
  ]);
  expect(report.finding).toBeUndefined();
  expect(report.valid).toBe(true);
});

it('records a rotation at the nonce budget', async () => {
  const t = await startTestServer({ nonceBudget: 3 });
  dirs.push(t.dataDir);
  await t.call('POST', KEYS, { name: 'busy', usage: 'AES256' });
  for (let i = 0; i < 5; i++) {
    expect((await t.call('POST', `${KEYS}/busy/encrypt`, { plaintext: b64(`m${i}`) })).status).toBe(200);
  }
  await until(
    'the budget rotation',
    async () => (await t.call('GET', `${KEYS}/busy`)).body.currentVersion >= 2,
  );
  await t.server.audit!.flush();
  const rotations = actions(records(t.dataDir)).filter((a) => a[0] === 'rotate');
  expect(rotations[0]).toEqual(['rotate', 'scheduler', 'default', 'busy', 2, 'nonce-budget', 'ok']);
  await t.stop();
});
