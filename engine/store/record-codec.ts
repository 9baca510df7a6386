/**
 * The on-disk form of a key record: the `KeyRecord` as pretty-printed JSON. Decoding checks every
 * known field, so a damaged or hand-edited file is refused with a clear error instead of being
 * served. Fields this version does not know are kept as they are, so a record written by a newer
 * model survives a round trip.
 */
import { KeywardError } from '../errors.ts';
import type { KeyRecord, KeyVersionRecord } from '../keys/model.ts';
import { KEY_OPERATIONS, KEY_STATES } from '../keys/model.ts';
import { parseKeySpec, validateKeyName } from '../keys/spec.ts';
import { validateNamespace } from './namespace.ts';

/** Standard base64 with padding: how wrapped material is stored. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Serializes a record for its file. */
export function encodeKeyRecord(record: KeyRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

/**
 * Parses and checks a record file's text. `source` names the file in errors. Throws INTERNAL
 * (the store is damaged, not the request); messages never include wrapped material.
 */
export function decodeKeyRecord(text: string, source: string): KeyRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw damaged(source, 'not valid JSON');
  }
  try {
    return checkRecord(value);
  } catch (err) {
    if (err instanceof KeywardError && err.code !== 'INTERNAL') {
      throw damaged(source, `${err.field ?? 'record'}: ${err.message}`);
    }
    throw err;
  }
}

function damaged(source: string, reason: string): KeywardError {
  return new KeywardError('INTERNAL', `stored key record ${source} is damaged: ${reason}`);
}

function bad(field: string, message: string): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', message, { field });
}

function checkRecord(value: unknown): KeyRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw bad('record', 'not an object');
  const r = value as Record<string, unknown>;
  // parseKeySpec would fill defaults; a stored record must be complete, so demand every field.
  for (const field of ['usage', 'convergent', 'boundary', 'rotation', 'memo'] as const) {
    if (r[field] === undefined) throw bad(field, 'is missing');
  }
  const rotation = r.rotation as Record<string, unknown> | null;
  if (
    typeof rotation === 'object' &&
    rotation !== null &&
    (rotation.enabled === undefined || rotation.periodDays === undefined)
  ) {
    throw bad('rotation', 'is incomplete');
  }
  const spec = parseKeySpec({
    usage: r.usage,
    convergent: r.convergent,
    boundary: r.boundary,
    ...(r.region === undefined ? {} : { region: r.region }),
    rotation: r.rotation,
    memo: r.memo,
  });
  validateNamespace(r.namespace);
  validateKeyName(r.name);
  if (typeof r.state !== 'string' || !(KEY_STATES as readonly string[]).includes(r.state)) {
    throw bad('state', 'unknown state');
  }
  time(r.createdTime, 'createdTime');
  time(r.rotationAnchorTime, 'rotationAnchorTime');
  if (r.state === 'PendingDeletion') time(r.deletionScheduledTime, 'deletionScheduledTime');
  else if (r.deletionScheduledTime !== undefined)
    throw bad('deletionScheduledTime', 'set outside PendingDeletion');
  if (r.lastUsedTime !== undefined) time(r.lastUsedTime, 'lastUsedTime');
  if (!Array.isArray(r.versions) || r.versions.length === 0)
    throw bad('versions', 'must be a non-empty array');
  r.versions.forEach((v, i) => {
    checkVersion(v, `versions[${i}]`);
  });
  if (!Number.isSafeInteger(r.currentVersion) || !r.versions.some((v) => v.version === r.currentVersion)) {
    throw bad('currentVersion', 'does not name a stored version');
  }
  const counts = r.operationCounts;
  if (typeof counts !== 'object' || counts === null || Array.isArray(counts)) {
    throw bad('operationCounts', 'must be an object');
  }
  for (const [op, n] of Object.entries(counts)) {
    if (!(KEY_OPERATIONS as readonly string[]).includes(op))
      throw bad(`operationCounts.${op}`, 'unknown operation');
    if (!Number.isSafeInteger(n) || (n as number) < 0) throw bad(`operationCounts.${op}`, 'must be a count');
  }
  return { ...r, ...spec } as unknown as KeyRecord;
}

function checkVersion(value: unknown, field: string): KeyVersionRecord {
  if (typeof value !== 'object' || value === null) throw bad(field, 'must be an object');
  const v = value as Record<string, unknown>;
  if (!Number.isSafeInteger(v.version) || (v.version as number) < 1)
    throw bad(`${field}.version`, 'must be ≥ 1');
  time(v.createdTime, `${field}.createdTime`);
  if (typeof v.wrapped !== 'string' || v.wrapped.length === 0 || !BASE64.test(v.wrapped)) {
    throw bad(`${field}.wrapped`, 'must be base64');
  }
  if (v.nonceCount !== undefined && (!Number.isSafeInteger(v.nonceCount) || (v.nonceCount as number) < 0)) {
    throw bad(`${field}.nonceCount`, 'must be a count');
  }
  return v as unknown as KeyVersionRecord;
}

function time(value: unknown, field: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0)
    throw bad(field, 'must be a millisecond timestamp');
  return value as number;
}
