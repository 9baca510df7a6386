import { describe, expect, it } from 'vitest';
import { KeyedQueue } from './keyed-queue.ts';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('KeyedQueue', () => {
  it('runs tasks of one key one at a time, in call order', async () => {
    const q = new KeyedQueue();
    const log: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const tasks = [30, 1, 15, 0].map((ms, i) =>
      q.run('k', async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        log.push(`start${i}`);
        await tick(ms);
        log.push(`end${i}`);
        running--;
        return i;
      }),
    );
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3]);
    expect(maxRunning).toBe(1);
    expect(log).toEqual(['start0', 'end0', 'start1', 'end1', 'start2', 'end2', 'start3', 'end3']);
  });

  it('runs different keys concurrently', async () => {
    const q = new KeyedQueue();
    let running = 0;
    let maxRunning = 0;
    const task = async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await tick(10);
      running--;
    };
    await Promise.all([q.run('a', task), q.run('b', task)]);
    expect(maxRunning).toBe(2);
  });

  it('a failed task rejects its caller but does not block the next one, and idle keys are forgotten', async () => {
    const q = new KeyedQueue();
    const failed = q.run('k', async () => {
      throw new Error('boom');
    });
    const next = q.run('k', async () => 'ok');
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('ok');
    await tick(0);
    expect(q.activeKeys).toBe(0);
  });
});
