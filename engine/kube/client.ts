/**
 * Small helpers around @kubernetes/client-node 2.x: error classification, merge-patch options and
 * the MicroTime format. Kept apart so the controllers read as logic, not plumbing.
 */
import { createHash } from 'node:crypto';
import {
  type ConfigurationOptions,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

/** HTTP status of a client-node ApiException (or a watch error), if any. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** True for 404 Not Found. */
export function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404;
}

/** True for 409 Conflict (a stale resourceVersion, or AlreadyExists). */
export function isConflict(err: unknown): boolean {
  return statusOf(err) === 409;
}

/** Request options that send a JSON merge patch. */
export const MERGE_PATCH: ConfigurationOptions = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * A metav1.MicroTime: RFC 3339 with exactly six fractional digits, as the apiserver parses it.
 * Returned as `Date` for client-node's types; the serializer passes strings through untouched.
 */
export function microTime(ms: number): Date {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}

/** A short, safe description of an error for logs (no bodies, which could echo objects). */
export function describeError(err: unknown): string {
  const status = statusOf(err);
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return status === undefined ? (message ?? 'error') : `HTTP ${status}: ${(message ?? '').slice(0, 200)}`;
}

type CreateDispatcher = (cluster: unknown, agentOptions: Record<string, unknown>) => unknown;

/**
 * Makes `kc` reuse one connection pool per TLS identity. client-node 2.0.1 builds a new undici
 * Agent for every request (`createDispatcher` in applySecurityAuthentication), so each API call
 * pays a fresh TCP + TLS handshake on both ends; under load that, not the apiserver's storage,
 * bounds the reconcile rate. The pool is keyed by a digest of the TLS options, so a rotated
 * client certificate or CA still gets a new pool. Returns `kc` for chaining.
 */
export function poolConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createDispatcher: CreateDispatcher };
  const original = target.createDispatcher.bind(kc);
  const pools = new Map<string, unknown>();
  target.createDispatcher = (cluster, agentOptions) => {
    const h = createHash('sha256');
    h.update(JSON.stringify((cluster as { server?: string } | null)?.server ?? ''));
    for (const field of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername']) {
      const value = agentOptions[field];
      h.update(`|${field}=`);
      if (value !== undefined) h.update(Buffer.isBuffer(value) ? value : String(value));
    }
    const id = h.digest('hex');
    let pool = pools.get(id);
    if (pool === undefined) {
      pool = original(cluster, agentOptions);
      pools.set(id, pool);
    }
    return pool;
  };
  return kc;
}
