/**
 * The leader wiring: controllers run only within a leadership term, stop when it ends, a new
 * term starts them only once the previous term's have stopped, and shutdown releases the Lease
 * only after they have. Lease and clock are the stand-ins of leader.fixtures.ts.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { KubeClient } from '../engine/kube/client.ts';
import { FakeClock, FakeLeases } from './leader.fixtures.ts';
import type { LeadershipTerm } from './leader.ts';
import { type Controller, Leadership } from './leadership.ts';

const log = pino({ level: 'silent' });

/** A controller that records its runs and holds each until its term ends (plus `lingerMs`). */
class Recorder implements Controller {
  readonly name = 'recorder';
  readonly events: string[] = [];
  active = 0;
  private readonly clock: FakeClock;
  private readonly lingerMs: number;
  constructor(clock: FakeClock, lingerMs = 0) {
    this.clock = clock;
    this.lingerMs = lingerMs;
  }
  async run(term: LeadershipTerm): Promise<void> {
    this.active++;
    this.events.push(`start@${this.clock.now()}`);
    await new Promise<void>((r) => term.signal.addEventListener('abort', () => r(), { once: true }));
    if (this.lingerMs > 0) await new Promise<void>((r) => this.clock.setTimeout(r, this.lingerMs));
    this.events.push(`stop@${this.clock.now()}`);
    this.active--;
  }
}

function client(): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }, { name: 'u' });
  return new KubeClient(kc);
}

function leadership(
  clock: FakeClock,
  leases: FakeLeases,
  controller: Controller,
  identity = 'a',
): Leadership {
  return new Leadership({
    client: client(),
    namespace: 'ns',
    leaseName: 'lease',
    identity,
    leaseDurationMs: 6000,
    controllers: [controller],
    leaseApi: leases.client(),
    clock,
    log,
  });
}

describe('Leadership', () => {
  it('runs the controllers only while leading, and stops them when the term ends', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const rec = new Recorder(clock);
    const l = leadership(clock, leases, rec);
    l.start();
    await clock.advance(100);
    expect(rec.active).toBe(1);
    // The apiserver hangs: the term ends at its renew deadline, and so does the controller.
    leases.setHung(true);
    await clock.advance(6000);
    expect(l.isLeader()).toBe(false);
    expect(rec.active).toBe(0);
    // Back: a new term, the controller runs again.
    leases.setHung(false);
    await clock.advance(3000);
    expect(l.isLeader()).toBe(true);
    expect(rec.active).toBe(1);
    expect(rec.events.filter((e) => e.startsWith('start'))).toHaveLength(2);
    const stopping = l.stop();
    await clock.advance(1000);
    await stopping;
    expect(rec.active).toBe(0);
  });

  it("starts a new term's controllers only after the previous term's have returned", async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const rec = new Recorder(clock, 5000); // slow to wind down
    const l = leadership(clock, leases, rec);
    l.start();
    await clock.advance(100);
    leases.setHung(true);
    await clock.advance(4100); // the term ended; the controller is still winding down
    leases.setHung(false);
    await clock.advance(10_000, () => expect(rec.active).toBeLessThanOrEqual(1));
    const [, stop1, start2] = rec.events;
    expect(Number(start2!.split('@')[1])).toBeGreaterThanOrEqual(Number(stop1!.split('@')[1]));
    const stopping = l.stop();
    await clock.advance(10_000);
    await stopping;
  });

  it('releases the Lease on shutdown only after the controllers have returned', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const rec = new Recorder(clock, 3000);
    const l = leadership(clock, leases, rec);
    l.start();
    await clock.advance(100);
    const stopping = l.stop();
    await clock.advance(1000);
    expect(rec.active).toBe(1);
    expect(leases.lease?.spec?.holderIdentity).toBe('a');
    await clock.advance(3000);
    await stopping;
    expect(rec.active).toBe(0);
    expect(leases.lease?.spec?.holderIdentity).toBe('');
  });
});
