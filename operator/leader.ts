/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
 * - a candidate acquires the Lease when it is absent, released (no holder) or expired; expiry is
 *   judged on the local clock from when this candidate last saw the Lease change, so clocks of
 *   different machines are never compared;
 * - the leader renews every `retryPeriodMs`; if it cannot renew for `renewDeadlineMs` (less than
 *   the lease duration) it stops leading before anyone else may take over;
 * - on shutdown the leader releases the Lease (empty holder), so a standby takes over at once.
 * All writes carry the resourceVersion read, so two candidates never both win.
 */
import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import { describeError, isConflict, isNotFound, microTime } from '../engine/kube/client.ts';
import type { Logger } from './log.ts';

/** Options of the elector. */
export interface LeaderElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  now?: () => number;
  log: Logger;
  /** Called when this instance becomes the leader. */
  onStartedLeading: () => void;
  /** Called when it stops (lost the Lease or shutting down). */
  onStoppedLeading: () => void;
}

/** One candidate. `run` loops until its signal aborts, then releases the Lease if held. */
export class LeaderElector {
  private readonly o: Required<LeaderElectorOptions>;
  private leading = false;
  private observedHolder = '';
  private observedRenew = '';
  private observedAt = 0;
  private lastRenewed = 0;

  constructor(options: LeaderElectorOptions) {
    const leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.o = {
      leaseDurationMs,
      renewDeadlineMs: options.renewDeadlineMs ?? Math.floor((leaseDurationMs * 2) / 3),
      retryPeriodMs: options.retryPeriodMs ?? Math.max(200, Math.floor(leaseDurationMs / 5)),
      now: options.now ?? Date.now,
      ...options,
    } as Required<LeaderElectorOptions>;
  }

  /** True while this instance holds the Lease. */
  isLeader(): boolean {
    return this.leading;
  }

  /** Campaigns and renews until `signal` aborts; then releases the Lease if held. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        this.o.log.warn({ err: describeError(err) }, 'lease update failed');
      }
      const now = this.o.now();
      if (ok) {
        this.lastRenewed = now;
        if (!this.leading) {
          this.leading = true;
          this.o.log.info({ lease: this.o.name, identity: this.o.identity }, 'became the leader');
          this.o.onStartedLeading();
        }
      } else if (this.leading && now - this.lastRenewed >= this.o.renewDeadlineMs) {
        this.stopLeading('could not renew the lease in time');
      }
      await sleep(this.o.retryPeriodMs, signal);
    }
    if (this.leading) {
      this.stopLeading('shutting down');
      await this.release().catch((err) =>
        this.o.log.warn({ err: describeError(err) }, 'lease release failed'),
      );
    }
  }

  private stopLeading(why: string): void {
    this.leading = false;
    this.o.log.warn({ lease: this.o.name, why }, 'stopped leading');
    this.o.onStoppedLeading();
  }

  /** One round: returns true when this instance holds the Lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity } = this.o;
    const now = this.o.now();
    const durationSeconds = Math.max(1, Math.ceil(this.o.leaseDurationMs / 1000));
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
        return true;
      } catch (createErr) {
        if (isConflict(createErr)) return false;
        throw createErr;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renew = String(spec.renewTime ?? '');
    if (holder !== this.observedHolder || renew !== this.observedRenew) {
      this.observedHolder = holder;
      this.observedRenew = renew;
      this.observedAt = now;
    }
    const held = holder === identity;
    const leaseMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (!held && holder !== '' && now - this.observedAt < leaseMs) return false;
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
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Gives the Lease up so a standby need not wait for it to expire. */
  private async release(): Promise<void> {
    const { api, namespace, name, identity } = this.o;
    const lease = await api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    await api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: microTime(this.o.now()),
          renewTime: microTime(this.o.now()),
        },
      },
    });
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
