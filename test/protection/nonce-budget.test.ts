/**
 * The nonce budget across kill -9 (PRODUCT.md §4.4): a real `keyward serve --nonce-budget 20`
 * is killed in the middle of concurrent encryptions, again and again; counting every ciphertext a
 * caller received, no key version ever carried more than its budget (a crash may over-count, it
 * must never under-count), and the log says why each rotation happened.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { b64, call, KEYS, type ServerProcess, serve } from './helpers.ts';

const BUDGET = 20;
let dataDir: string;
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('nonce budget across kill -9', { timeout: 300_000 }, () => {
  it('never lets a version carry more than its budget, however the process dies', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'keyward-nonce-crash-'));
    const args = ['--nonce-budget', String(BUDGET)];
    let server: ServerProcess = await serve(dataDir, args);
    expect(
      (await call(server, 'POST', KEYS, { name: 'hot', usage: 'AES256', rotation: { enabled: false } }))
        .status,
    ).toBe(201);
    const received: string[] = [];
    const logs: string[] = [];
    for (let round = 0; round < 4; round++) {
      let stop = false;
      const worker = async () => {
        while (!stop) {
          try {
            const path = `${KEYS}/hot/${received.length % 3 === 0 ? 'data-key' : 'encrypt'}`;
            const r = await call(
              server,
              'POST',
              path,
              path.endsWith('encrypt') ? { plaintext: b64('x') } : {},
            );
            if (r.status === 200) received.push(r.body.ciphertext);
          } catch {
            return; // killed
          }
        }
      };
      const workers = Array.from({ length: 6 }, worker);
      // Let the round reach a few rotations, then kill it mid-flight.
      const target = received.length + BUDGET * 2 + 7 * (round + 1);
      const deadline = Date.now() + 60_000;
      while (received.length < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await server.kill9();
      stop = true;
      await Promise.all(workers);
      logs.push(server.output());
      server = await serve(dataDir, args);
    }
    await server.stop();
    logs.push(server.output());

    const perVersion = new Map<number, number>();
    for (const c of received) {
      const v = Number(c.split(':')[1]!.slice(1));
      perVersion.set(v, (perVersion.get(v) ?? 0) + 1);
    }
    expect(received.length).toBeGreaterThan(4 * BUDGET);
    for (const [version, n] of perVersion) expect(n, `version ${version}`).toBeLessThanOrEqual(BUDGET);
    expect(perVersion.size).toBeGreaterThanOrEqual(Math.ceil(received.length / BUDGET));
    expect(logs.join('\n')).toMatch(
      /reached its nonce budget of 20 random-nonce encryptions \(automatic rotation is off/,
    );
  });
});
