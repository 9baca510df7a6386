/** Human-readable output for the CLI (`-o json` prints the API's JSON instead). */
import type { KeyView } from '../service/backend.ts';

/** The output format chosen with `-o`. */
export type OutputFormat = 'text' | 'json';

/** Parses `-o`. */
export function parseOutput(value: string): OutputFormat {
  if (value === 'text' || value === 'json') return value;
  throw new Error(`-o must be text or json, not ${JSON.stringify(value)}`);
}

/**
 * `text` safe to print on a terminal: C0 and C1 control characters (escape sequences start with
 * ESC or CSI), DEL and the bidirectional overrides that reorder what a reader sees are shown as
 * `\u{..}` escapes. Key memos, names from the server and error messages all pass through here.
 */
export function printable(text: string): string {
  return text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`,
  );
}

/** Prints JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const dash = (v: string | null | undefined): string => (v === null || v === undefined || v === '' ? '-' : v);

/** A table of keys: one line each. */
export function formatKeyTable(keys: readonly KeyView[]): string {
  if (keys.length === 0) return 'No keys.\n';
  const rows = [
    ['NAME', 'USAGE', 'STATE', 'VERSION', 'NEXT ROTATION', 'LAST USED'],
    ...keys.map((k) => [
      k.name,
      k.usage + (k.convergent ? ' (convergent)' : ''),
      k.materialError === undefined ? k.state : `${k.state} (material unavailable)`,
      String(k.currentVersion),
      dash(k.nextRotationTime),
      dash(k.lastUsedTime),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => printable(r[i]!).length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => printable(c).padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

/** One key in detail. */
export function formatKey(k: KeyView & { warnings?: string[] }): string {
  const counts = Object.entries(k.operationCounts)
    .map(([op, n]) => `${op}=${n}`)
    .join(' ');
  const lines = [
    ['Name', `${k.namespace}/${k.name}`],
    ['Usage', k.usage],
    ['Convergent', String(k.convergent)],
    ['Boundary', k.boundary + (k.region ? ` (${k.region})` : '')],
    ['State', k.state],
    ['Current version', String(k.currentVersion)],
    [
      'Versions',
      k.versions
        .map(
          (v) =>
            `v${v.version} ${v.createdTime} (master key v${v.masterKeyVersion ?? '?'}` +
            `${v.nonceCount === undefined ? '' : `, nonces used ${v.nonceCount}`})`,
        )
        .join(', '),
    ],
    ['Rotation', k.rotation.enabled ? `every ${k.rotation.periodDays} days` : 'off'],
    ['Next rotation', dash(k.nextRotationTime)],
    ['Deletion scheduled', dash(k.deletionScheduledTime)],
    ['Memo', dash(k.memo)],
    ['Fingerprint', k.fingerprint ?? '-'],
    ...(k.materialError === undefined ? [] : [['Material error', k.materialError]]),
    ['Created', k.createdTime],
    ['Last used', dash(k.lastUsedTime)],
    ['Operations', counts === '' ? '-' : counts],
  ];
  const width = Math.max(...lines.map(([label]) => label!.length));
  return `${lines.map(([label, value]) => `${`${label}:`.padEnd(width + 2)}${printable(value!)}`).join('\n')}\n`;
}
