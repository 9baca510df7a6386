/**
 * KMS v2 `key_id`s (KEP-3299). The apiserver stores the `key_id` of every Encrypt next to the data
 * in etcd, treats the `key_id` from Status as the current write key, marks data under any other
 * `key_id` as stale, and tracks storage migration by `key_id`. So a `key_id` must be public,
 * stable, change whenever the key-encryption key changes, and never name two different things.
 *
 * Ours names one key version of one key incarnation:
 *
 *     keyward/<namespace>/<name>/v<version>/<tag>[~<n>]
 *
 * - `<name>` is lowercased (key names are unique ignoring case);
 * - `<tag>` is 16 hex digits of SHA-256 over the namespace, the name, the key's creation time and
 *   the version's creation time: a key destroyed and created again under the same name (a new
 *   incarnation) gets new `key_id`s, and Decrypt can tell a `key_id` of the old incarnation apart.
 *   Nothing in it is secret: the inputs are all in the key's public view (`GET .../keys/{name}`);
 * - `~<n>` marks the n-th time a `key_id` came back after another one had been reported (the
 *   plugin switched to another key and back, or a data dir was restored to an older version):
 *   Kubernetes asks plugins never to report a `key_id` again once they moved away from it, so
 *   storage migration never mistakes old data for current. See {@link nextKeyId}.
 *
 * Pure: no I/O, no clock.
 */
import { createHash } from 'node:crypto';

/** What identifies one key version for good. Times are milliseconds since the epoch. */
export interface KeyVersionIdentity {
  namespace: string;
  name: string;
  /** The key incarnation's creation time. */
  keyCreatedTime: number;
  version: number;
  versionCreatedTime: number;
}

/** A parsed `key_id`. */
export interface ParsedKeyId {
  namespace: string;
  /** Lowercased. */
  name: string;
  version: number;
  tag: string;
  /** The `~<n>` suffix, 0 when absent. */
  reinstated: number;
  /** The `key_id` without its `~<n>` suffix. */
  base: string;
}

const KEY_ID =
  /^keyward\/([a-z0-9-]{1,63})\/([a-z][a-z0-9_-]{2,14})\/v([1-9][0-9]{0,8})\/([0-9a-f]{16})(?:~([1-9][0-9]{0,8}))?$/;

/** The tag of one key version (see the module comment). */
export function versionTag(id: KeyVersionIdentity): string {
  const input = [
    'keyward kms key_id v1',
    id.namespace,
    id.name.toLowerCase(),
    String(id.keyCreatedTime),
    String(id.version),
    String(id.versionCreatedTime),
  ].join('\0');
  return createHash('sha256').update(input).digest('hex').slice(0, 16);
}

/** The `key_id` of a key version before any `~<n>` suffix. */
export function baseKeyId(id: KeyVersionIdentity): string {
  return `keyward/${id.namespace}/${id.name.toLowerCase()}/v${id.version}/${versionTag(id)}`;
}

/** Parses a `key_id` of this plugin, or returns undefined for anything else. */
export function parseKeyId(keyId: string): ParsedKeyId | undefined {
  const m = KEY_ID.exec(keyId);
  if (m === null) return undefined;
  const reinstated = m[5] === undefined ? 0 : Number(m[5]);
  return {
    namespace: m[1]!,
    name: m[2]!,
    version: Number(m[3]),
    tag: m[4]!,
    reinstated,
    base: reinstated === 0 ? keyId : keyId.slice(0, keyId.lastIndexOf('~')),
  };
}

function baseOf(keyId: string): string {
  const tilde = keyId.lastIndexOf('~');
  return tilde < 0 ? keyId : keyId.slice(0, tilde);
}

/**
 * The `key_id` to report for `base`, given the `key_id`s reported so far (oldest first), and the
 * history to keep afterwards.
 *
 * - the same base as the last report: the same `key_id` (stable; no flip-flop);
 * - a base never reported: the base itself;
 * - a base reported before another one: a derivative, `<base>~<n>`, n counting its returns.
 *   So A, B, A is reported as A, B, A~1, and a fourth switch back to B as B~1.
 */
export function nextKeyId(
  history: readonly string[],
  base: string,
): { keyId: string; history: readonly string[]; changed: boolean } {
  const last = history.at(-1);
  if (last !== undefined && baseOf(last) === base) return { keyId: last, history, changed: false };
  let returns = 0;
  for (const id of history) if (baseOf(id) === base) returns++;
  const keyId = returns === 0 ? base : `${base}~${returns}`;
  return { keyId, history: [...history, keyId], changed: true };
}
