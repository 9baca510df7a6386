/**
 * The heap the cluster engine's auth caches take when full (issue #16): 10,000 token decisions
 * and 10,000 access decisions (KubeAuthenticator's bounds), with realistic ServiceAccount users
 * (a pod-bound token's `extra`, three groups). Run with `node --expose-gc bench/auth-cache-memory.ts`.
 */
import { randomUUID } from 'node:crypto';
import { TtlCache } from '../engine/cluster/ttl-cache.ts';

const ENTRIES = 10_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

function heapUsed(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

const id = (): string => Buffer.from(randomUUID()).toString('base64url'); // about as long as the sha256 ids used as keys
const before = heapUsed();
const tokens = new TtlCache<string, object>({ maxEntries: ENTRIES });
const decisions = new TtlCache<string, object>({ maxEntries: ENTRIES });
const now = Date.now();
for (let i = 0; i < ENTRIES * 2; i++) {
  const user = {
    username: `system:serviceaccount:team-${i % 300}:workload-${i}`,
    uid: randomUUID(),
    groups: ['system:serviceaccounts', `system:serviceaccounts:team-${i % 300}`, 'system:authenticated'],
    extra: {
      'authentication.kubernetes.io/pod-name': [`workload-${i}-7d9f8c6b5-x2x9q`],
      'authentication.kubernetes.io/pod-uid': [randomUUID()],
    },
  };
  const value = { ok: true, user, expiresAt: now + 3_600_000 };
  tokens.set(id(), { value, freshUntil: now, staleUntil: now }, 60_000);
}
const withTokens = heapUsed();
for (let i = 0; i < ENTRIES * 2; i++)
  decisions.set(id(), { value: true, freshUntil: now, staleUntil: now }, 60_000);
const after = heapUsed();
// Read both after the measurement, so neither cache is collected before it.
if (tokens.size !== ENTRIES || decisions.size !== ENTRIES) throw new Error('a cache passed its bound');
const per = (bytes: number): string => `${(bytes / ENTRIES).toFixed(0)} bytes each`;
console.log(
  `${ENTRIES} token and ${ENTRIES} access decisions (each cache filled twice over: the bound holds): ` +
    `${((after - before) / 2 ** 20).toFixed(1)} MiB of heap; tokens ${per(withTokens - before)}, ` +
    `access ${per(after - withTokens)}`,
);
