/**
 * The audit settings of `keyward serve` and `keyward engine`, their flags, and the one function
 * both modes (and the operator) call to open the log; http-audit.ts adds the HTTP hooks.
 *
 * Flags (both modes): --no-audit, --audit-required, --audit-checkpoint-records N,
 * --audit-checkpoint-interval DURATION, --audit-segment-size SIZE; cluster mode also
 * --audit-dir DIR (segment files besides stdout).
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { parseDuration } from '../cli/duration.ts';
import {
  AuditLog,
  type AuditLogHandle,
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  DEFAULT_CHECKPOINT_RECORDS,
} from './audit-log.ts';
import { AuditThread } from './audit-thread.ts';
import type { MasterKeyInput } from './checkpoint-key.ts';
import { type AuditSink, SegmentSink, StreamSink } from './sinks.ts';

/** Segments rotate at 64 MiB by default. */
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;

/** Audit settings. */
export interface AuditConfig {
  /** On by default. */
  enabled: boolean;
  /** Refuse requests (503) rather than serve them unrecorded; off by default standalone. */
  required: boolean;
  checkpointRecords: number;
  checkpointIntervalMs: number;
  segmentBytes: number;
  /** Segment directory; standalone: `<data-dir>/audit`; cluster: only with --audit-dir. */
  dir?: string;
  /** Also one JSON line per record on stdout (cluster mode). */
  stdout: boolean;
}

/** The defaults (the directory and stdout are set by each mode). */
export function defaultAuditConfig(): AuditConfig {
  return {
    enabled: true,
    required: false,
    checkpointRecords: DEFAULT_CHECKPOINT_RECORDS,
    checkpointIntervalMs: DEFAULT_CHECKPOINT_INTERVAL_MS,
    segmentBytes: DEFAULT_SEGMENT_BYTES,
    stdout: false,
  };
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Bytes of `64MiB`, `512k`, `1048576`; throws a one-line Error. */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new Error(`invalid size ${JSON.stringify(text)}: use e.g. 64MiB, 512KiB`);
  const n = Number(m[1]) * unit;
  if (n < 4096) throw new Error('--audit-segment-size must be at least 4KiB');
  return n;
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || !Number.isSafeInteger(n)) {
    throw new Error(`${flag} must be a positive integer, not ${JSON.stringify(text)}`);
  }
  return n;
}

/** Raw flag values, as either CLI parser gives them. */
export interface AuditFlags {
  audit?: boolean;
  auditRequired?: boolean;
  auditCheckpointRecords?: string;
  auditCheckpointInterval?: string;
  auditSegmentSize?: string;
  auditDir?: string;
}

/** Applies validated flags to `base`; throws an Error with a one-line message on a bad value. */
export function auditConfigFromFlags(flags: AuditFlags, base: AuditConfig): AuditConfig {
  const c = { ...base };
  if (flags.audit === false) c.enabled = false;
  if (flags.auditRequired === true) c.required = true;
  if (flags.auditCheckpointRecords !== undefined) {
    c.checkpointRecords = positiveInt('--audit-checkpoint-records', flags.auditCheckpointRecords);
  }
  if (flags.auditCheckpointInterval !== undefined) {
    c.checkpointIntervalMs = parseDuration(flags.auditCheckpointInterval);
    if (c.checkpointIntervalMs < 100) throw new Error('--audit-checkpoint-interval must be at least 100ms');
  }
  if (flags.auditSegmentSize !== undefined) c.segmentBytes = parseSize(flags.auditSegmentSize);
  if (flags.auditDir !== undefined) c.dir = flags.auditDir;
  if (!c.enabled && c.required) throw new Error('--audit-required and --no-audit exclude each other');
  return c;
}

/** Adds the audit flags to `keyward serve`. */
export function addAuditOptions(cmd: Command): Command {
  return cmd
    .option('--no-audit', 'do not write the audit log (<data-dir>/audit); it is on by default')
    .option('--audit-required', 'refuse requests (503) when the audit log cannot record them')
    .option(
      '--audit-checkpoint-records <n>',
      `a keyed checkpoint every N records (default ${DEFAULT_CHECKPOINT_RECORDS})`,
    )
    .option(
      '--audit-checkpoint-interval <duration>',
      `... or every DURATION, whichever comes first (default ${DEFAULT_CHECKPOINT_INTERVAL_MS / 1000}s)`,
    )
    .option('--audit-segment-size <size>', 'start a new audit segment file at this size (default 64MiB)');
}

/** The options of node:util parseArgs for the cluster engine's audit flags. */
export const AUDIT_PARSE_ARGS = {
  'no-audit': { type: 'boolean' },
  'audit-required': { type: 'boolean' },
  'audit-checkpoint-records': { type: 'string' },
  'audit-checkpoint-interval': { type: 'string' },
  'audit-segment-size': { type: 'string' },
  'audit-dir': { type: 'string' },
} as const;

/** Reads {@link AUDIT_PARSE_ARGS} values. */
export function auditFlagsFromParsed(values: Record<string, string | boolean | undefined>): AuditFlags {
  const str = (k: string): string | undefined =>
    typeof values[k] === 'string' ? (values[k] as string) : undefined;
  const flags: AuditFlags = {};
  if (values['no-audit'] === true) flags.audit = false;
  if (values['audit-required'] === true) flags.auditRequired = true;
  const records = str('audit-checkpoint-records');
  if (records !== undefined) flags.auditCheckpointRecords = records;
  const interval = str('audit-checkpoint-interval');
  if (interval !== undefined) flags.auditCheckpointInterval = interval;
  const size = str('audit-segment-size');
  if (size !== undefined) flags.auditSegmentSize = size;
  const dir = str('audit-dir');
  if (dir !== undefined) flags.auditDir = dir;
  return flags;
}

/** What {@link openAuditLog} needs besides the config. */
export interface OpenAuditOptions {
  /** What a new chain is named after (the host or pod). */
  name: string;
  /** The master key once known; checkpoints wait for it. */
  masterKey: () => MasterKeyInput | undefined;
  log?: Logger;
  /** Where `config.stdout` writes; process.stdout by default. */
  stdout?: NodeJS.WritableStream;
  /**
   * Seal and write on a thread of its own (audit-thread.ts): what the engine's HTTP servers do,
   * so that requests do not wait behind the chain. Not with a `stdout` of the caller's own.
   */
  thread?: boolean;
}

/** Opens the audit log `config` describes (undefined when disabled). */
export async function openAuditLog(
  config: AuditConfig,
  o: OpenAuditOptions,
): Promise<AuditLogHandle | undefined> {
  if (!config.enabled) return undefined;
  if (o.thread === true && o.stdout === undefined) {
    return AuditThread.open(
      {
        name: o.name,
        dir: config.dir,
        segmentBytes: config.segmentBytes,
        stdout: config.stdout,
        checkpointRecords: config.checkpointRecords,
        checkpointIntervalMs: config.checkpointIntervalMs,
      },
      { masterKey: o.masterKey, ...(o.log === undefined ? {} : { log: o.log }) },
    );
  }
  const streams: AuditSink[] = [];
  if (config.stdout) streams.push(new StreamSink((o.stdout ?? process.stdout) as never));
  return AuditLog.open({
    name: o.name,
    ...(config.dir === undefined ? {} : { segments: new SegmentSink(config.dir, config.segmentBytes) }),
    streams,
    checkpointRecords: config.checkpointRecords,
    checkpointIntervalMs: config.checkpointIntervalMs,
    masterKey: o.masterKey,
    ...(o.log === undefined ? {} : { log: o.log }),
  });
}
