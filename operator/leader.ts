/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it, with
 * one addition: each time of leading is a {@link LeadershipTerm} that fences the leader's writes.
 *
 * - A candidate acquires the Lease when it is absent, released (no holder) or expired. Expiry is
 *   judged on the local clock from when this candidate last saw the Lease change, so clocks of
 *   different machines are never compared. Every write carries the resourceVersion read, so two
 *   candidates never both win.
 * - The leader renews every `retryPeriodMs`. A renewal that *started* at `t` makes the term valid
 *   until `t + renewDeadlineMs`; a timer ends the term then unless a later renewal succeeded. A
 *   standby takes over no earlier than `leaseDurationMs` after it saw that renewal, which is after
 *   `t`; since `renewDeadlineMs < leaseDurationMs`, the old leader has stopped acting before a new
 *   one can start. Each Lease call has a deadline shorter than the renew deadline, so a hung
 *   apiserver cannot hold the loop.
 * - Ending a term aborts its signal: the operator's API clients of that term refuse to send
 *   anything more and cut off what is in flight (engine/kube/client.ts `RequestGuard`).
 * - On shutdown the leader releases the Lease (empty holder), so a standby takes over at once.
 *
 * Time comes from an injected {@link Clock}, so the unit tests drive it exactly.
 */
import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import {
  describeError,
  isConflict,
  isNotFound,
  microTime,
  type RequestGuard,
} from '../engine/kube/client.ts';
import type { Logger } from './log.ts';

/** The Lease calls the elector makes. */
export type LeaseApi = Pick<
  CoordinationV1Api,
  'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'
>;

/** Time and timers (real ones by default). */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. Timers are unref'd: an elector never keeps a process alive on its own. */
export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** client-go's defaults. */
export const DEFAULT_LEASE_DURATION_MS = 15_000;

/** Options of the elector. */
export interface LeaderElectorOptions {
  api: LeaseApi;
  namespace: string;
  name: string;
  identity: string;
  /** A standby takes over this long after it last saw the Lease renewed; 15 s. */
  leaseDurationMs?: number;
  /** The leader stops acting this long after its last successful renewal began; 2/3 of the lease. */
  renewDeadlineMs?: number;
  /** Time between two attempts; a fifth of the lease (at least 200 ms). */
  retryPeriodMs?: number;
  /** Deadline of each Lease call; half the renew deadline, at most 5 s. */
  requestTimeoutMs?: number;
  clock?: Clock;
  log: Logger;
  /** Called when this instance becomes the leader, with the term that fences its writes. */
  onStartedLeading: (term: LeadershipTerm) => void;
  /** Called when the term ends (lost, not renewed in time, or shutting down). */
  onStoppedLeading: (reason: string) => void;
  /** Awaited on shutdown after the term ended and before the Lease is released. */
  beforeRelease?: () => Promise<void>;
}

/** Thrown by {@link LeadershipTerm.check} once the term is over. */
export class LeadershipLostError extends Error {
  readonly code = 'LEADERSHIP_LOST';
  constructor(reason: string) {
    super(`not the leader any more: ${reason}`);
    this.name = 'LeadershipLostError';
  }
}

/** One uninterrupted time of leading. A request guard: nothing is sent once it is over. */
export class LeadershipTerm implements RequestGuard {
  readonly identity: string;
  readonly #controller = new AbortController();
  readonly #now: () => number;
  #validUntil: number;

  constructor(identity: string, validUntil: number, now: () => number) {
    this.identity = identity;
    this.#validUntil = validUntil;
    this.#now = now;
  }

  /** Aborts when the term ends. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** When the term ends at the latest unless renewed (epoch ms of the elector's clock). */
  get validUntil(): number {
    return this.#validUntil;
  }

  /** True while this replica may act. */
  get active(): boolean {
    return !this.#controller.signal.aborted && this.#now() < this.#validUntil;
  }

  /** Throws {@link LeadershipLostError} unless the term is active. */
  check(): void {
    if (this.#controller.signal.aborted)
      throw new LeadershipLostError(String(this.#controller.signal.reason));
    if (this.#now() >= this.#validUntil) throw new LeadershipLostError('the renew deadline passed');
  }

  /** @internal A renewal moved the deadline. */
  extend(validUntil: number): void {
    if (validUntil > this.#validUntil) this.#validUntil = validUntil;
  }

  /** @internal Ends the term. */
  end(reason: string): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }
}

interface Timing {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  requestTimeoutMs: number;
}

/**
 * The elector's timing: the caller's values, each default applied only where the caller gave none
 * (an `undefined` never overrides a default). Throws RangeError when the values cannot keep a
 * single leader: retry < renew deadline < lease duration, and each Lease call shorter than the
 * renew deadline.
 */
export function electionTiming(o: Partial<Timing> = {}): Timing {
  const leaseDurationMs = o.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS;
  const renewDeadlineMs = o.renewDeadlineMs ?? Math.floor((leaseDurationMs * 2) / 3);
  const retryPeriodMs = o.retryPeriodMs ?? Math.max(200, Math.floor(leaseDurationMs / 5));
  const requestTimeoutMs = o.requestTimeoutMs ?? Math.min(5_000, Math.floor(renewDeadlineMs / 2));
  const t = { leaseDurationMs, renewDeadlineMs, retryPeriodMs, requestTimeoutMs };
  for (const [name, value] of Object.entries(t)) {
    if (!Number.isFinite(value) || value <= 0)
      throw new RangeError(`${name} must be a positive number, not ${value}`);
  }
  if (leaseDurationMs < 1000) throw new RangeError('the lease duration must be at least 1 s');
  if (renewDeadlineMs >= leaseDurationMs)
    throw new RangeError('the renew deadline must be shorter than the lease duration');
  if (retryPeriodMs >= renewDeadlineMs)
    throw new RangeError('the retry period must be shorter than the renew deadline');
  if (requestTimeoutMs >= renewDeadlineMs)
    throw new RangeError('the request timeout must be shorter than the renew deadline');
  return t;
}

/** One candidate. `run` loops until its signal aborts, then releases the Lease if held. */
export class LeaderElector {
  readonly timing: Timing;
  private readonly o: LeaderElectorOptions;
  private readonly clock: Clock;
  private term: LeadershipTerm | undefined;
  private deadline: unknown;
  private observedHolder = '';
  private observedRenew = '';
  private observedAt = 0;

  constructor(options: LeaderElectorOptions) {
    this.o = options;
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.timing = electionTiming(options);
  }

  /** True while this instance holds the Lease and its term is valid. */
  isLeader(): boolean {
    return this.term?.active ?? false;
  }

  /** The current term, while leading. */
  currentTerm(): LeadershipTerm | undefined {
    return this.term?.active ? this.term : undefined;
  }

  /** Campaigns and renews until `signal` aborts; then releases the Lease if held. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = this.clock.now();
      let ok = false;
      try {
        ok = await this.withDeadline(this.tryAcquireOrRenew(started));
      } catch (err) {
        this.o.log.warn({ err: describeError(err) }, 'lease update failed');
      }
      // A renewal counts from when it started; one that returned too late is no renewal.
      const validUntil = started + this.timing.renewDeadlineMs;
      if (ok && !signal.aborted && this.clock.now() < validUntil) this.renewed(validUntil);
      else if (
        this.term !== undefined &&
        this.observedHolder !== '' &&
        this.observedHolder !== this.o.identity
      ) {
        // Someone else holds the Lease now: stop at once rather than at the deadline.
        this.stopLeading('another replica holds the lease');
      }
      await this.sleep(this.timing.retryPeriodMs, signal);
    }
    if (this.term !== undefined) {
      this.stopLeading('shutting down');
      // What the term started must be over before a standby may take over.
      await this.o.beforeRelease?.().catch(() => undefined);
      await this.withDeadline(this.release()).catch((err) =>
        this.o.log.warn({ err: describeError(err) }, 'lease release failed'),
      );
    }
  }

  private renewed(validUntil: number): void {
    if (this.term === undefined || !this.term.active) {
      if (this.term !== undefined) this.stopLeading('the renew deadline passed');
      this.term = new LeadershipTerm(this.o.identity, validUntil, () => this.clock.now());
      this.o.log.info({ lease: this.o.name, identity: this.o.identity }, 'became the leader');
      this.armDeadline(validUntil);
      this.o.onStartedLeading(this.term);
      return;
    }
    this.term.extend(validUntil);
    this.armDeadline(validUntil);
  }

  private armDeadline(at: number): void {
    if (this.deadline !== undefined) this.clock.clearTimeout(this.deadline);
    this.deadline = this.clock.setTimeout(
      () => {
        this.deadline = undefined;
        if (this.term !== undefined) this.stopLeading('could not renew the lease before the renew deadline');
      },
      Math.max(0, at - this.clock.now()),
    );
  }

  private stopLeading(why: string): void {
    const term = this.term;
    if (term === undefined) return;
    this.term = undefined;
    if (this.deadline !== undefined) this.clock.clearTimeout(this.deadline);
    this.deadline = undefined;
    term.end(why);
    this.o.log.warn({ lease: this.o.name, why }, 'stopped leading');
    this.o.onStoppedLeading(why);
  }

  /** One round: returns true when this instance holds the Lease afterwards. */
  private async tryAcquireOrRenew(now: number): Promise<boolean> {
    const { api, namespace, name, identity } = this.o;
    const durationSeconds = Math.max(1, Math.ceil(this.timing.leaseDurationMs / 1000));
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
        });
        this.observe(identity, String(microTime(now)));
        return true;
      } catch (createErr) {
        if (isConflict(createErr)) return false;
        throw createErr;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    this.observe(holder, String(spec.renewTime ?? ''));
    const held = holder === identity;
    const leaseMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (!held && holder !== '' && this.clock.now() - this.observedAt < leaseMs) return false;
    const next: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(now),
        acquireTime:
          held && spec.acquireTime ? microTime(new Date(spec.acquireTime).getTime()) : microTime(now),
        leaseTransitions: held ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      await api.replaceNamespacedLease({ name, namespace, body: next });
      this.observe(identity, String(microTime(now)));
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Notes what the Lease says; a change (holder or renewal) restarts this candidate's expiry clock. */
  private observe(holder: string, renew: string): void {
    if (holder !== this.observedHolder || renew !== this.observedRenew) {
      this.observedHolder = holder;
      this.observedRenew = renew;
      this.observedAt = this.clock.now();
    }
  }

  /** Gives the Lease up so a standby need not wait for it to expire. */
  private async release(): Promise<void> {
    const { api, namespace, name, identity } = this.o;
    const lease = await api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    const now = this.clock.now();
    await api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: microTime(now),
          renewTime: microTime(now),
        },
      },
    });
  }

  /** Rejects after the request timeout (the API client has its own deadline too). */
  private withDeadline<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.clock.setTimeout(
        () => reject(new Error(`lease call timed out after ${this.timing.requestTimeoutMs} ms`)),
        this.timing.requestTimeoutMs,
      );
      promise.then(
        (v) => {
          this.clock.clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          this.clock.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
