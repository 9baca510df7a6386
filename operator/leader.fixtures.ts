/**
 * Test fixtures of leader election: a virtual clock and an in-memory Lease with the apiserver's
 * optimistic concurrency (reads give a resourceVersion, a stale replace is a 409). Stand-ins for
 * exact timing in unit tests; the real Lease is covered by the cluster suites.
 */
import type { V1Lease } from '@kubernetes/client-node';
import type { Clock, LeaseApi } from './leader.ts';

/** Timers on a virtual clock; `advance` runs them in order and lets promises settle between. */
export class FakeClock implements Clock {
  t = 1_000_000;
  private id = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.id;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (handle: unknown): void => {
    this.timers.delete(handle as number);
  };
  /** Advances `ms` in steps, calling `each` after every step (to check invariants). */
  async advance(ms: number, each?: () => void): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers)
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (next === undefined) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
      await settle();
      each?.();
    }
    this.t = end;
    await settle();
    each?.();
  }
}

export const settle = () => new Promise<void>((r) => setImmediate(r));

/** One Lease in memory. `hung`: calls wait until it is cleared (a SIGSTOP'd apiserver). */
export class FakeLeases {
  lease: V1Lease | undefined;
  private rv = 0;
  hung = false;
  private waiting: Array<() => void> = [];
  calls = 0;

  setHung(hung: boolean): void {
    this.hung = hung;
    if (!hung) for (const w of this.waiting.splice(0)) w();
  }

  /** The API as one replica sees it; `dead()` makes its calls never answer (a killed process). */
  client(): LeaseApi & { dead: boolean } {
    const self = this;
    const gate = async (api: { dead: boolean }): Promise<void> => {
      self.calls++;
      if (api.dead) await new Promise(() => undefined);
      if (self.hung) await new Promise<void>((r) => self.waiting.push(r));
    };
    const api = {
      dead: false,
      async readNamespacedLease(): Promise<V1Lease> {
        await gate(api);
        if (self.lease === undefined) throw Object.assign(new Error('not found'), { code: 404 });
        return structuredClone(self.lease);
      },
      async createNamespacedLease({ body }: { body: V1Lease }): Promise<V1Lease> {
        await gate(api);
        if (self.lease !== undefined) throw Object.assign(new Error('exists'), { code: 409 });
        self.lease = {
          ...structuredClone(body),
          metadata: { ...body.metadata, resourceVersion: String(++self.rv) },
        };
        return structuredClone(self.lease);
      },
      async replaceNamespacedLease({ body }: { body: V1Lease }): Promise<V1Lease> {
        await gate(api);
        if (body.metadata?.resourceVersion !== self.lease?.metadata?.resourceVersion) {
          throw Object.assign(new Error('conflict'), { code: 409 });
        }
        self.lease = {
          ...structuredClone(body),
          metadata: { ...body.metadata, resourceVersion: String(++self.rv) },
        };
        return structuredClone(self.lease);
      },
    };
    return api as unknown as LeaseApi & { dead: boolean };
  }
}
