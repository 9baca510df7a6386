/**
 * The audit record (docs/audit.md "Records"). Every line of an audit log is one record: the fields
 * below, serialized canonically (canonical.ts), followed by its chain fields `hash` and `prev`
 * (chain.ts). Records name who did what to which key and how it ended; they never carry
 * plaintext, ciphertext, signatures, data keys, tokens or token hashes.
 */

/** The kinds of record. */
export type RecordType = 'segment' | 'start' | 'request' | 'operator' | 'checkpoint';

/** Who made a request, as the authenticator established it. */
export interface AuditPrincipal {
  /** Standalone: `admin`; Kubernetes: the TokenReview username. */
  name: string;
  /** The TokenReview uid (Kubernetes). */
  uid?: string;
  /** The TokenReview groups (Kubernetes). */
  groups?: string[];
}

/** One authenticated (or refused) API request. */
export interface RequestEvent {
  type: 'request';
  /** This server's id of the request (also sent back as the `x-request-id` header). */
  requestId: string;
  /**
   * The caller's own `x-request-id` header, when it sent one (1 to 128 visible ASCII characters;
   * anything else is left out): a proxy's or client's id, to find this record from their logs.
   */
  clientRequestId?: string;
  /** Absent when no identity was established (a missing or invalid token). */
  principal?: AuditPrincipal;
  /** The peer address the request came from. */
  source: string;
  namespace?: string;
  /** The key name (absent for list). */
  key?: string;
  /** The key version used, when known (from the response, or from the ciphertext prefix). */
  version?: number;
  /** The authorization verb: encrypt, decrypt, ..., create, list, get, update, rotate, delete, ... */
  operation: string;
  /** `ok` or the API error code (UNAUTHENTICATED, PERMISSION_DENIED, KEY_STATE, ...). */
  outcome: string;
  /** The HTTP status sent. */
  status: number;
  /** Batch requests: how many items succeeded and failed. */
  batch?: { ok: number; failed: number };
  /** Time from the request's arrival to its response, in microseconds. */
  latencyUs: number;
}

/**
 * An action of the operator on a key's material or lifecycle, recorded by the leader once the
 * action is written (operator/audit.ts; docs/audit.md "Operator records").
 */
export interface OperatorEvent {
  type: 'operator';
  /**
   * `create`, `adopt`, `update`, `enable`, `disable`, `rotate`, `request-deletion`,
   * `cancel-deletion`, `destroy`, `create-master-key`.
   */
  operation: string;
  /**
   * The operator replica that acted: its Lease identity, as the material Secret's
   * `keyward.io/written-by` annotation and the Key's `status.reconciledBy` name it.
   */
  actor?: string;
  namespace?: string;
  key?: string;
  /** The Key object's uid (one incarnation of the name). */
  uid?: string;
  /**
   * The Key's `metadata.generation` and `resourceVersion` the action was decided from: the
   * apiserver's own audit log names who wrote that version.
   */
  generation?: number;
  resourceVersion?: string;
  /** The key version the action made or left current. */
  version?: number;
  /** What asked for the action: `spec.state=Disabled`, `keyward.io/rotate=<value>`, `deletionTimestamp`, `rotation-schedule`, ... */
  trigger?: string;
  /** `ok` or a refusal's code (`MATERIAL_CONFLICT`). */
  outcome: string;
  /** A short, secret-free detail (the usage created, fields updated, the time of erasure). */
  detail?: string;
}

/** What callers hand to the audit log; the log adds `chain`, `seq` and `time`. */
export type AuditEvent = RequestEvent | OperatorEvent;

/** The longest string kept in a record field: hostile input cannot make records large. */
export const MAX_FIELD_CHARS = 256;
/** The most groups kept for a principal. */
export const MAX_GROUPS = 32;

/**
 * Makes untrusted text safe for a record: well-formed UTF-16 (RFC 8785 needs it) and at most
 * {@link MAX_FIELD_CHARS} characters (a longer value is cut and marked with `…`).
 */
export function fieldText(value: string): string {
  const text = value.isWellFormed() ? value : value.toWellFormed();
  return text.length <= MAX_FIELD_CHARS ? text : `${text.slice(0, MAX_FIELD_CHARS - 1)}…`;
}
