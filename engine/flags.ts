/**
 * Parsers of numeric command-line flags, shared by every command (`keyward serve`, `keyward
 * operator`, `keyward engine`). Each throws an Error whose message is one line naming the flag,
 * what it accepts and what it got, so `--workers abc` or `--lease-duration -1` never turn into a
 * silent NaN or zero.
 */
import { parseDuration } from './cli/duration.ts';

/** An integer flag within `[min, max]`. */
export function integerFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new Error(`--${flag} must be an integer from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return n;
}

/** A TCP port (0 picks a free one). */
export function portFlag(flag: string, value: string): number {
  return integerFlag(flag, value, 0, 65_535);
}

/** A duration flag (`1500ms`, `20s`, `5m`, `72h`, `3d`) in milliseconds, within `[minMs, maxMs]`. */
export function durationFlag(
  flag: string,
  value: string,
  minMs: number,
  maxMs = Number.MAX_SAFE_INTEGER,
): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch {
    throw new Error(
      `--${flag} must be a duration such as 1500ms, 20s, 5m or 72h, not ${JSON.stringify(value)}`,
    );
  }
  if (ms < minMs || ms > maxMs) {
    throw new Error(`--${flag} must be between ${describeMs(minMs)} and ${describeMs(maxMs)}, not ${value}`);
  }
  return ms;
}

function describeMs(ms: number): string {
  if (ms >= Number.MAX_SAFE_INTEGER) return 'unbounded';
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/**
 * Joins `--flag -1` into `--flag=-1` for string flags, so node:util's parseArgs passes a negative
 * number through to the flag's own validation (which names the flag and the accepted range)
 * instead of refusing it as an ambiguous option.
 */
export function attachNegativeValues(argv: readonly string[], stringFlags: Iterable<string>): string[] {
  const names = new Set(stringFlags);
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (arg.startsWith('--') && names.has(arg.slice(2)) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}
