/**
 * Canonical bytes of a record: the RFC 8785 JSON Canonicalization Scheme (JCS) of the record
 * without its chain fields `hash` and `prev`. Records hold only strings, safe integers, booleans,
 * arrays and objects, so JCS is: object keys sorted by UTF-16 code units, no whitespace, strings
 * and integers exactly as ECMAScript's JSON.stringify writes them. Any JCS library in any language
 * reproduces these bytes from a parsed record (docs/audit.md).
 */

/** A JSON value as records use them. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * JCS of `value`. Throws on numbers that are not safe integers (records never hold others, and
 * JCS number formatting is only trivial for those) and on non-JSON values. `undefined` members
 * are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.isWellFormed() ? value : value.toWellFormed());
    case 'number':
      if (!Number.isSafeInteger(value)) throw new TypeError('audit records hold only safe integers');
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const obj = value as Record<string, unknown>;
      // The default sort compares UTF-16 code units, which is the order JCS asks for.
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`audit records cannot hold ${typeof value}`);
  }
}

/** The record without its chain fields, as the canonical bytes cover it. */
export function withoutChainFields(record: Record<string, unknown>): Record<string, unknown> {
  const { hash: _hash, prev: _prev, ...rest } = record;
  return rest;
}
