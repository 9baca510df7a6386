/** Tiny helpers for Node's system errors (`err.code === 'ENOENT'`...). */

/** True when `err` is a Node system error with this `code`. */
export function isErrno(err: unknown, code: string): boolean {
  return errnoCode(err) === code;
}

/** The system error code of `err` (`ENOENT`...), or `error` when it has none. */
export function errnoCode(err: unknown): string {
  if (typeof err !== 'object' || err === null) return 'error';
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'error';
}
