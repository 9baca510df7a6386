/**
 * Small helpers around @kubernetes/client-node 2.x: error classification, merge-patch options and
 * the MicroTime format. Kept apart so the controllers read as logic, not plumbing.
 */
import { type ConfigurationOptions, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

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
