/**
 * The leader wiring: runs the leader election and, for each leadership term, every controller
 * (`run(term)`), so only the Lease holder acts. When the term ends (the Lease lost, not renewed
 * before the renew deadline, or shutdown), the controllers see its signal abort: their fenced
 * API clients send nothing more and cut what is in flight, and they return. On shutdown the Lease
 * is released only after they have all returned.
 */
import { CoordinationV1Api } from '@kubernetes/client-node';
import { describeError, type KubeClient } from '../engine/kube/client.ts';
import { type Clock, LeaderElector, type LeadershipTerm, type LeaseApi } from './leader.ts';
import type { Logger } from './log.ts';

/** A controller that acts only while its replica leads. */
export interface Controller {
  readonly name: string;
  /** Acts while `term` lasts; resolves once its work has stopped after the term ended. */
  run(term: LeadershipTerm): Promise<void>;
}

/** Options of {@link Leadership}. */
export interface LeadershipOptions {
  client: KubeClient;
  /** Where the Lease lives. */
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs?: number;
  requestTimeoutMs?: number;
  controllers: readonly Controller[];
  /** The Lease calls; `client`'s CoordinationV1Api by default (tests pass a stand-in). */
  leaseApi?: LeaseApi;
  clock?: Clock;
  log: Logger;
}

/** See the module comment. */
export class Leadership {
  readonly elector: LeaderElector;
  readonly #o: LeadershipOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> = Promise.resolve();
  #electing: Promise<void> | undefined;

  constructor(o: LeadershipOptions) {
    this.#o = o;
    this.elector = new LeaderElector({
      api: o.leaseApi ?? o.client.api(CoordinationV1Api),
      namespace: o.namespace,
      name: o.leaseName,
      identity: o.identity,
      ...(o.leaseDurationMs === undefined ? {} : { leaseDurationMs: o.leaseDurationMs }),
      ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
      ...(o.clock === undefined ? {} : { clock: o.clock }),
      log: o.log,
      onStartedLeading: (term) => this.#lead(term),
      onStoppedLeading: () => undefined,
      beforeRelease: () => this.#running,
    });
  }

  /** Starts campaigning. */
  start(): void {
    this.#electing ??= this.elector.run(this.#stop.signal);
  }

  /** True while this replica leads. */
  isLeader(): boolean {
    return this.elector.isLeader();
  }

  /** Ends the term (if any), waits for the controllers, releases the Lease. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#electing;
    await this.#running;
  }

  #lead(term: LeadershipTerm): void {
    const previous = this.#running;
    // A new term starts its controllers only after the previous term's have stopped.
    this.#running = previous.then(() =>
      Promise.all(
        this.#o.controllers.map((c) =>
          term.active
            ? c.run(term).catch((err: unknown) => {
                if (!term.signal.aborted)
                  this.#o.log.error({ controller: c.name, err: describeError(err) }, 'controller failed');
              })
            : undefined,
        ),
      ).then(() => undefined),
    );
  }
}
