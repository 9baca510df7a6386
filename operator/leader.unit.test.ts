/**
 * LeaderElector with an injected clock and an in-memory Lease API (a stand-in with the
 * apiserver's optimistic concurrency: reads give a resourceVersion, a stale replace is a 409).
 * The real Lease is covered by test/operator/leader.test.ts and the fault suite; here time is
 * exact, so the deadlines can be checked to the millisecond.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeClock, FakeLeases } from './leader.fixtures.ts';
import {
  electionTiming,
  LeaderElector,
  LeadershipLostError,
  type LeadershipTerm,
  type LeaseApi,
} from './leader.ts';

const log = pino({ level: 'silent' });

interface Candidate {
  elector: LeaderElector;
  api: LeaseApi & { dead: boolean };
  stop: AbortController;
  running: Promise<void>;
  terms: LeadershipTerm[];
  stopped: string[];
}

function candidate(
  clock: FakeClock,
  leases: FakeLeases,
  identity: string,
  timing: { leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number } = {},
): Candidate {
  const api = leases.client();
  const terms: LeadershipTerm[] = [];
  const stopped: string[] = [];
  const elector = new LeaderElector({
    api,
    namespace: 'ns',
    name: 'lease',
    identity,
    ...timing,
    clock,
    log,
    onStartedLeading: (term) => terms.push(term),
    onStoppedLeading: (why) => stopped.push(why),
  });
  const stop = new AbortController();
  return { elector, api, stop, running: elector.run(stop.signal), terms, stopped };
}

const leaders = (cs: Candidate[]): string[] =>
  cs.filter((c) => c.elector.isLeader()).map((c) => c.terms.at(-1)?.identity ?? '?');

describe('electionTiming', () => {
  it('applies each default only where the caller gave none', () => {
    expect(electionTiming({ leaseDurationMs: undefined })).toEqual({
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 3_000,
      requestTimeoutMs: 5_000,
    });
    expect(electionTiming({ leaseDurationMs: 6_000 })).toEqual({
      leaseDurationMs: 6_000,
      renewDeadlineMs: 4_000,
      retryPeriodMs: 1_200,
      requestTimeoutMs: 2_000,
    });
  });

  it('refuses timings that cannot keep one leader', () => {
    expect(() => electionTiming({ leaseDurationMs: Number.NaN })).toThrow(RangeError);
    expect(() => electionTiming({ leaseDurationMs: -1 })).toThrow(RangeError);
    expect(() => electionTiming({ leaseDurationMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(
      /renew deadline/,
    );
    expect(() => electionTiming({ leaseDurationMs: 10_000, retryPeriodMs: 8_000 })).toThrow(/retry period/);
    expect(() => electionTiming({ leaseDurationMs: 15_000, requestTimeoutMs: 12_000 })).toThrow(
      /request timeout/,
    );
  });
});

describe('LeaderElector', () => {
  // The bug this pins: the constructor spread the options after its defaults, so an explicit
  // `leaseDurationMs: undefined` (what runOperator passed without the flag) became NaN and any
  // candidate took a live Lease at once.
  it('a standby with default timing never takes a Lease that is being renewed', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const a = candidate(clock, leases, 'a', { leaseDurationMs: undefined });
    await clock.advance(100);
    expect(a.elector.isLeader()).toBe(true);
    const b = candidate(clock, leases, 'b', { leaseDurationMs: undefined });
    await clock.advance(60_000, () => expect(leaders([a, b])).toEqual(['a']));
    expect(b.terms).toHaveLength(0);
    expect(leases.lease?.spec?.holderIdentity).toBe('a');
    a.stop.abort();
    b.stop.abort();
    await clock.advance(10_000);
  });

  it('a standby takes over a dead leader no sooner than the lease duration after it last saw a renewal', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const a = candidate(clock, leases, 'a');
    await clock.advance(100);
    const b = candidate(clock, leases, 'b');
    await clock.advance(5_000);
    // b has seen a renewal; a dies (its calls never answer).
    a.api.dead = true;
    await clock.advance(3_100); // let b see a's last renewal
    const lastRenew = Date.parse(String(leases.lease?.spec?.renewTime));
    let takeover = 0;
    await clock.advance(30_000, () => {
      if (takeover === 0 && b.elector.isLeader()) takeover = clock.now();
      expect(leaders([a, b]).length).toBeLessThanOrEqual(1);
    });
    expect(takeover).toBeGreaterThan(0);
    expect(takeover - lastRenew).toBeGreaterThanOrEqual(15_000);
    expect(takeover - lastRenew).toBeLessThanOrEqual(15_000 + 2 * 3_000 + 100);
    expect(leases.lease?.spec?.holderIdentity).toBe('b');
    expect(leases.lease?.spec?.leaseTransitions).toBe(1);
    // a's term ended by its deadline, before b started.
    expect(a.terms[0]!.signal.aborted).toBe(true);
    expect(a.stopped[0]).toMatch(/renew deadline/);
    b.stop.abort();
    await clock.advance(10_000);
  });

  it('with the apiserver hung, the leader stops acting at its renew deadline, before the lease can expire, and only one leads afterwards', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const a = candidate(clock, leases, 'a');
    await clock.advance(100);
    const b = candidate(clock, leases, 'b');
    await clock.advance(7_000);
    const term = a.terms[0]!;
    const renewedAt = Date.parse(String(leases.lease?.spec?.renewTime));
    leases.setHung(true);
    let endedAt = 0;
    term.signal.addEventListener('abort', () => {
      endedAt = clock.now();
    });
    await clock.advance(30_000, () => expect(leaders([a, b]).length).toBeLessThanOrEqual(1));
    expect(endedAt).toBeGreaterThan(0);
    expect(endedAt - renewedAt).toBeLessThanOrEqual(10_000);
    expect(() => term.check()).toThrow(LeadershipLostError);
    expect(leaders([a, b])).toEqual([]);
    leases.setHung(false);
    await clock.advance(20_000, () => expect(leaders([a, b]).length).toBeLessThanOrEqual(1));
    expect(leaders([a, b])).toHaveLength(1);
    a.stop.abort();
    b.stop.abort();
    await clock.advance(10_000);
  });

  it('a lost Lease (another holder seen) ends the term at once', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const a = candidate(clock, leases, 'a');
    await clock.advance(100);
    // Someone rewrites the Lease behind a's back (an operator with another lease name config, a human).
    leases.lease!.spec!.holderIdentity = 'intruder';
    leases.lease!.metadata!.resourceVersion = '999';
    await clock.advance(3_100);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.stopped[0]).toMatch(/another replica/);
    a.stop.abort();
    await clock.advance(10_000);
  });

  it('releases the Lease on shutdown so a standby takes over at once', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const a = candidate(clock, leases, 'a');
    await clock.advance(100);
    const b = candidate(clock, leases, 'b');
    await clock.advance(4_000);
    a.stop.abort();
    await a.running;
    expect(a.terms[0]!.signal.aborted).toBe(true);
    expect(leases.lease?.spec?.holderIdentity).toBe('');
    await clock.advance(3_100);
    expect(b.elector.isLeader()).toBe(true);
    b.stop.abort();
    await clock.advance(10_000);
  });

  it('a term is a request guard: it refuses once over and aborts its signal', async () => {
    const clock = new FakeClock();
    const leases = new FakeLeases();
    const a = candidate(clock, leases, 'a');
    await clock.advance(100);
    const term = a.terms[0]!;
    expect(() => term.check()).not.toThrow();
    expect(term.validUntil).toBeGreaterThan(clock.now());
    a.stop.abort();
    await clock.advance(10_000);
    expect(term.signal.aborted).toBe(true);
    expect(() => term.check()).toThrow(/not the leader/);
  });
});
