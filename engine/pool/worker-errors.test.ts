/**
 * The finding this pins: Piscina's `error` events (a worker that dies with no task in flight)
 * were swallowed with no log or metric. The event is raised on a real worker thread of the pool
 * (Worker is an EventEmitter; Piscina listens to it), since no public API makes an idle worker
 * crash on demand.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CryptoPool } from './crypto-pool.ts';

let pool: CryptoPool | undefined;
afterEach(async () => {
  await pool?.close();
});

describe('crypto worker errors', () => {
  it('are counted and reported, not swallowed', async () => {
    const reported: string[] = [];
    pool = new CryptoPool({ threads: 1, onWorkerError: (err) => reported.push(err.message) });
    while (pool.threads.length === 0) await new Promise((r) => setTimeout(r, 10));
    expect(pool.workerErrors).toBe(0);
    pool.threads[0]!.emit('error', new Error('worker crashed'));
    await new Promise((r) => setTimeout(r, 50));
    expect(pool.workerErrors).toBe(1);
    expect(reported).toEqual(['worker crashed']);
  });
});
