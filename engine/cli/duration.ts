/** Parses durations such as `500ms`, `20s`, `5m`, `72h`, `3d` into milliseconds. */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of `text`, or throws an Error with a one-line message. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) throw new Error(`invalid duration ${JSON.stringify(text)}: use e.g. 500ms, 20s, 5m, 72h`);
  return Math.round(Number(match[1]) * UNITS[match[2]!]!);
}
