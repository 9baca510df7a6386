/**
 * Validation of key names and key specs (PRODUCT.md §2). Pure: no I/O, no clock.
 *
 * Every error is an INVALID_ARGUMENT `KeywardError` whose `field` names the offending field
 * (`name`, `rotation.periodDays`, `spec.memo`, ...), except `checkRegion`, which refuses a key
 * this engine may not serve (KEY_STATE).
 */
import {
  DEFAULT_ROTATION_PERIOD_DAYS,
  KEY_BOUNDARY_NAMES,
  KEY_NAME_PATTERN as KEY_NAME_SOURCE,
  MAX_KEY_NAME,
  MAX_MEMO_CHARS,
  MAX_ROTATION_PERIOD_DAYS,
  MIN_KEY_NAME,
  MIN_ROTATION_PERIOD_DAYS,
  REGION_PATTERN as REGION_SOURCE,
} from '../crypto/limits.ts';
import { invalidArgument, KeywardError } from '../errors.ts';
import type { KeyBoundary, KeySpec, KeyUsage, RotationPolicy } from './model.ts';
import { KEY_USAGES } from './model.ts';

/** §2: 3 to 15 characters, starting with a letter; letters, digits, `_` and `-` (ASCII only). */
export const KEY_NAME_PATTERN = new RegExp(KEY_NAME_SOURCE);

/**
 * Kubernetes mode: `metadata.name` must also be a DNS-1123 name, so lowercase, no `_`, and it
 * must end with a letter or digit. (Dots are legal in DNS-1123 subdomains but not in key names.)
 */
const KUBERNETES_KEY_NAME_PATTERN = /^[a-z][a-z0-9-]{1,13}[a-z0-9]$/;

/** A region name as given to `--region` or a key's `region`. */
export const REGION_PATTERN = new RegExp(REGION_SOURCE);

export { MAX_MEMO_CHARS, MAX_ROTATION_PERIOD_DAYS, MIN_ROTATION_PERIOD_DAYS };

/** The rotation policy a key gets when its spec says nothing. */
export const DEFAULT_ROTATION: Readonly<RotationPolicy> = Object.freeze({
  enabled: true,
  periodDays: DEFAULT_ROTATION_PERIOD_DAYS,
});

const BOUNDARIES: readonly KeyBoundary[] = KEY_BOUNDARY_NAMES;
const SPEC_FIELDS = ['usage', 'convergent', 'boundary', 'region', 'rotation', 'memo'] as const;
const ROTATION_FIELDS = ['enabled', 'periodDays'] as const;
const IMMUTABLE_FIELDS = ['usage', 'convergent', 'boundary', 'region'] as const;

/** Options of `validateKeyName`. */
export interface KeyNameOptions {
  /** Also require a valid Kubernetes object name (lowercase, no `_`, ends in a letter or digit). */
  kubernetes?: boolean;
}

/**
 * Checks a key name against §2 and returns it unchanged. Uniqueness (ignoring case) is the
 * store's job, not this function's.
 */
export function validateKeyName(name: unknown, opts: KeyNameOptions = {}): string {
  if (typeof name !== 'string') throw invalidArgument('name', 'name must be a string');
  if (name.length < MIN_KEY_NAME || name.length > MAX_KEY_NAME) {
    throw invalidArgument('name', `name must be ${MIN_KEY_NAME} to ${MAX_KEY_NAME} characters long`);
  }
  if (!/^[A-Za-z]/.test(name)) throw invalidArgument('name', 'name must start with a letter');
  if (!KEY_NAME_PATTERN.test(name)) {
    throw invalidArgument('name', 'name may contain only letters, digits, "_" and "-"');
  }
  if (opts.kubernetes === true && !KUBERNETES_KEY_NAME_PATTERN.test(name)) {
    throw invalidArgument(
      'name',
      'in Kubernetes a key name must be lowercase, contain no "_" and end with a letter or digit',
    );
  }
  return name;
}

/**
 * The form of a key name that uniqueness and lookups compare: ASCII letters lowercased, nothing
 * else touched. JavaScript's `toLowerCase` folds by Unicode rules (KELVIN SIGN U+212A becomes
 * `k`), which would let a name that is not a key name find a key.
 */
export function foldKeyName(name: string): string {
  return name.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

/** Options of `parseKeySpec`. */
export interface ParseSpecOptions {
  /** Prefix for error fields: with `spec`, a bad memo is reported as `spec.memo`. */
  fieldPrefix?: string;
  /**
   * Top-level fields that may be present but are not part of the spec and are ignored here
   * (for example `name` in a POST body, or `state` in a Key resource's spec).
   */
  ignoreFields?: readonly string[];
}

/**
 * Parses and validates a key spec strictly: unknown fields and wrong types are refused, defaults
 * are applied (convergent false, boundary Global, rotation enabled every 90 days, memo '').
 *
 * Region rule: `Isolated` requires `region`; `Global` refuses it, because a Global key is usable
 * by every engine and a region there would only suggest a restriction that does not exist.
 */
export function parseKeySpec(input: unknown, opts: ParseSpecOptions = {}): KeySpec {
  const f = prefixer(opts.fieldPrefix);
  const obj = expectObject(input, opts.fieldPrefix ?? 'spec');
  rejectUnknown(obj, [...SPEC_FIELDS, ...(opts.ignoreFields ?? [])], f);

  const usage = parseUsage(obj.usage, f('usage'));
  const convergent = optionalBoolean(obj.convergent, f('convergent')) ?? false;
  if (convergent && usage !== 'AES256') {
    throw invalidArgument(f('convergent'), 'convergent is only allowed for AES256 keys');
  }
  const boundary = parseBoundary(obj.boundary, f('boundary')) ?? 'Global';
  const region = obj.region === undefined ? undefined : validateRegion(obj.region, f('region'));
  if (boundary === 'Isolated' && region === undefined) {
    throw invalidArgument(f('region'), 'region is required when boundary is Isolated');
  }
  if (boundary === 'Global' && region !== undefined) {
    throw invalidArgument(f('region'), 'region is only allowed when boundary is Isolated');
  }
  const rotation = parseRotation(obj.rotation, f('rotation'));
  const memo = obj.memo === undefined ? '' : parseMemo(obj.memo, f('memo'));

  const spec: KeySpec = {
    usage,
    convergent,
    boundary,
    rotation: {
      enabled: rotation.enabled ?? DEFAULT_ROTATION.enabled,
      periodDays: rotation.periodDays ?? DEFAULT_ROTATION.periodDays,
    },
    memo,
  };
  if (region !== undefined) spec.region = region;
  return spec;
}

/** What a PATCH may change: the memo and the rotation policy, nothing else. */
export interface KeyUpdate {
  memo?: string;
  rotation?: Partial<RotationPolicy>;
}

/**
 * Parses a PATCH body. Only `memo` and `rotation` (either or both of its fields) may change.
 * `usage`, `convergent`, `boundary` and `region` are immutable: sending one is refused, unless
 * `current` is given and the value equals it (so a client may send back the whole object).
 */
export function parseKeyUpdate(input: unknown, current?: KeySpec): KeyUpdate {
  const obj = expectObject(input, 'body');
  for (const field of IMMUTABLE_FIELDS) {
    if (!(field in obj)) continue;
    if (current !== undefined && obj[field] === current[field]) continue;
    throw invalidArgument(field, `${field} is immutable and cannot be changed`);
  }
  rejectUnknown(obj, ['memo', 'rotation', ...IMMUTABLE_FIELDS], (n) => n);
  const update: KeyUpdate = {};
  if (obj.memo !== undefined) update.memo = parseMemo(obj.memo, 'memo');
  if (obj.rotation !== undefined) {
    const rotation = parseRotation(obj.rotation, 'rotation');
    update.rotation = {};
    if (rotation.enabled !== undefined) update.rotation.enabled = rotation.enabled;
    if (rotation.periodDays !== undefined) update.rotation.periodDays = rotation.periodDays;
  }
  return update;
}

/**
 * Refuses an Isolated key on an engine that does not serve the key's region (including an
 * engine started without `--region`). KEY_STATE, not PERMISSION_DENIED: the caller's identity is
 * fine, it is the key that cannot be used here, exactly like a disabled key. The message names
 * neither the key's region nor the engine's, so a caller without read access learns nothing.
 */
export function checkRegion(
  key: Pick<KeySpec, 'boundary' | 'region'>,
  engineRegion: string | undefined,
): void {
  if (key.boundary !== 'Isolated') return;
  if (engineRegion !== undefined && key.region === engineRegion) return;
  throw new KeywardError('KEY_STATE', 'the key is isolated to a region this engine does not serve');
}

// ---- small parsers ---------------------------------------------------------------------------

function prefixer(prefix: string | undefined): (name: string) => string {
  return prefix === undefined || prefix === '' ? (name) => name : (name) => `${prefix}.${name}`;
}

function expectObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(field, `${field} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function rejectUnknown(
  obj: Record<string, unknown>,
  allowed: readonly string[],
  f: (n: string) => string,
): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw invalidArgument(f(key), `unknown field ${f(key)}`);
  }
}

function parseUsage(value: unknown, field: string): KeyUsage {
  if (value === undefined) throw invalidArgument(field, `${field} is required`);
  if (typeof value !== 'string' || !(KEY_USAGES as readonly string[]).includes(value)) {
    throw invalidArgument(field, `${field} must be one of ${KEY_USAGES.join(', ')}`);
  }
  return value as KeyUsage;
}

function parseBoundary(value: unknown, field: string): KeyBoundary | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(BOUNDARIES as readonly string[]).includes(value)) {
    throw invalidArgument(field, `${field} must be ${BOUNDARIES.join(' or ')}`);
  }
  return value as KeyBoundary;
}

/** Checks a region name (`--region`, a key's `region`) and returns it; INVALID_ARGUMENT naming `field`. */
export function validateRegion(value: unknown, field = 'region'): string {
  if (typeof value !== 'string' || !REGION_PATTERN.test(value)) {
    throw invalidArgument(field, `${field} must be 1 to 63 lowercase letters, digits or "-"`);
  }
  return value;
}

function optionalBoolean(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalidArgument(field, `${field} must be true or false`);
  return value;
}

function parseMemo(value: unknown, field: string): string {
  if (typeof value !== 'string') throw invalidArgument(field, `${field} must be a string`);
  if ([...value].length > MAX_MEMO_CHARS) {
    throw invalidArgument(field, `${field} must be at most ${MAX_MEMO_CHARS} characters`);
  }
  return value;
}

function parseRotation(value: unknown, field: string): Partial<RotationPolicy> {
  if (value === undefined) return {};
  const obj = expectObject(value, field);
  rejectUnknown(obj, ROTATION_FIELDS, (n) => `${field}.${n}`);
  const out: Partial<RotationPolicy> = {};
  const enabled = optionalBoolean(obj.enabled, `${field}.enabled`);
  if (enabled !== undefined) out.enabled = enabled;
  if (obj.periodDays !== undefined) {
    const p = obj.periodDays;
    if (
      typeof p !== 'number' ||
      !Number.isInteger(p) ||
      p < MIN_ROTATION_PERIOD_DAYS ||
      p > MAX_ROTATION_PERIOD_DAYS
    ) {
      throw invalidArgument(
        `${field}.periodDays`,
        `${field}.periodDays must be a whole number of days from ${MIN_ROTATION_PERIOD_DAYS} to ${MAX_ROTATION_PERIOD_DAYS}`,
      );
    }
    out.periodDays = p;
  }
  return out;
}
