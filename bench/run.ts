/**
 * `npm run bench`: every case against its baseline in the same run, interleaved rounds, medians
 * and ratios (PRODUCT.md §9). Writes bench/results/latest.json.
 *
 * Usage: npm run bench [-- --rounds N --duration MS --only name1,name2 --skip name3 --side engine|baseline]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import type { BenchCase, BenchSample, CaseMemory } from './case.ts';
import { closeEngineCases, engineCases } from './engine-cases.ts';

interface CaseResult {
  name: string;
  opsPerSec: number;
  baseline: number;
  ratio: number;
  baselineLabel: string;
  rounds: number;
  p50Ms?: number;
  p99Ms?: number;
  baselineP50Ms?: number;
  baselineP99Ms?: number;
  /** Medians of the engine side's extra figures (memory, times). */
  extra?: Record<string, number>;
  /** Latency cases: median over rounds of the engine's p50 ÷ the baseline's p50. */
  p50Ratio?: number;
  /** Ratios of every round, for the spread. */
  roundRatios: number[];
  memory?: CaseMemory;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianOf(samples: BenchSample[], key: 'p50Ms' | 'p99Ms'): number | undefined {
  const values = samples.map((s) => s[key]).filter((v): v is number => v !== undefined);
  return values.length > 0 ? median(values) : undefined;
}

/** Loads optional case modules (HTTP, operator) when they exist. */
async function optionalCases(moduleName: string, exportName: string): Promise<BenchCase[]> {
  try {
    const mod = (await import(moduleName)) as Record<string, () => BenchCase[] | Promise<BenchCase[]>>;
    const factory = mod[exportName];
    return factory ? await factory() : [];
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') return [];
    throw error;
  }
}

/** `--side engine|baseline` runs one side only (for profiles); ratios are then meaningless. */
type Side = 'engine' | 'baseline' | undefined;

async function runCase(c: BenchCase, rounds: number, durationMs: number, side: Side): Promise<CaseResult> {
  await c.setup?.();
  const idle = async (): Promise<BenchSample> => ({ opsPerSec: Number.NaN });
  const runEngine = side === 'baseline' ? idle : (ms: number) => c.engine(ms);
  const runBaseline = side === 'engine' ? idle : (ms: number) => c.baseline(ms);
  const engine: BenchSample[] = [];
  const baseline: BenchSample[] = [];
  const ratios: number[] = [];
  const p50Ratios: number[] = [];
  let memory: CaseMemory | undefined;
  try {
    c.beginMemory?.();
    // Untimed warm-up of both sides, so no round measures JIT compilation or worker start-up.
    if (c.warmUp !== false) {
      await runEngine(Math.min(500, durationMs));
      await runBaseline(Math.min(500, durationMs));
    }
    for (let r = 0; r < rounds; r++) {
      // Alternate which side goes first so slow drift of a shared machine hits both alike.
      let e: BenchSample;
      let b: BenchSample;
      if (r % 2 === 0) {
        e = await runEngine(durationMs);
        b = await runBaseline(durationMs);
      } else {
        b = await runBaseline(durationMs);
        e = await runEngine(durationMs);
      }
      engine.push(e);
      baseline.push(b);
      ratios.push(e.opsPerSec / b.opsPerSec);
      if (c.latency && e.p50Ms !== undefined && b.p50Ms !== undefined) p50Ratios.push(e.p50Ms / b.p50Ms);
      process.stderr.write(
        `  ${c.name} round ${r + 1}/${rounds}: ${e.opsPerSec.toFixed(0)} vs ${b.opsPerSec.toFixed(0)} ops/s` +
          `${c.latency ? `, p50 ${e.p50Ms?.toFixed(3)} vs ${b.p50Ms?.toFixed(3)} ms` : ''}\n`,
      );
    }
    memory = await c.memory?.();
  } finally {
    await c.teardown?.();
  }
  const result: CaseResult = {
    name: c.name,
    opsPerSec: Math.round(median(engine.map((s) => s.opsPerSec))),
    baseline: Math.round(median(baseline.map((s) => s.opsPerSec))),
    ratio: Number(median(ratios).toFixed(3)),
    baselineLabel: c.baselineLabel,
    rounds,
    roundRatios: ratios.map((r) => Number(r.toFixed(3))),
    ...(p50Ratios.length > 0 ? { p50Ratio: Number(median(p50Ratios).toFixed(3)) } : {}),
    ...(memory === undefined ? {} : { memory }),
  };
  const extras = {
    p50Ms: medianOf(engine, 'p50Ms'),
    p99Ms: medianOf(engine, 'p99Ms'),
    baselineP50Ms: medianOf(baseline, 'p50Ms'),
    baselineP99Ms: medianOf(baseline, 'p99Ms'),
  };
  for (const [k, v] of Object.entries(extras))
    if (v !== undefined) (result as unknown as Record<string, number>)[k] = v;
  const sides = [
    ['', engine],
    ['baseline ', baseline],
  ] as const;
  for (const [prefix, samples] of sides) {
    for (const name of new Set(samples.flatMap((s) => Object.keys(s.extra ?? {})))) {
      result.extra ??= {};
      result.extra[prefix + name] = Number(
        median(samples.map((s) => s.extra?.[name] ?? Number.NaN)).toFixed(2),
      );
    }
  }
  const ceiling = ceilingRatio(result);
  if (ceiling !== undefined && result.extra !== undefined) result.extra.ceilingRatio = ceiling;
  return result;
}

/**
 * For cases that measure CPU (the HTTP ones): the ratio a server could reach on this machine if
 * it spent exactly the baseline's CPU per operation and had every core the load generator left it
 * during the engine's rounds. An upper bound: the load generator needs more at a higher rate.
 */
function ceilingRatio(r: CaseResult): number | undefined {
  const loadGenerator = r.extra?.loadGeneratorCores;
  const baselineCpuUs = r.extra?.['baseline cpuUsPerOp'];
  // Not for latency cases: one caller at a time leaves the cores idle by design.
  if (r.p50Ratio !== undefined) return undefined;
  if (loadGenerator === undefined || baselineCpuUs === undefined || !(r.baseline > 0)) return undefined;
  const opsAtBaselineCost = ((availableParallelism() - loadGenerator) * 1e6) / baselineCpuUs;
  return Number((opsAtBaselineCost / r.baseline).toFixed(2));
}

function printTable(results: CaseResult[]): void {
  const mib = (m: CaseMemory | undefined) =>
    m === undefined
      ? ''
      : `${m.engine.peakMiB}/${m.engine.settledMiB} (${m.baseline.peakMiB}/${m.baseline.settledMiB})`;
  const rows = results.map((r) => [
    r.name,
    r.opsPerSec.toLocaleString('en-US'),
    r.baseline.toLocaleString('en-US'),
    `${r.ratio.toFixed(2)}×`,
    r.p50Ms === undefined
      ? ''
      : `${r.p50Ms.toFixed(2)}/${r.p99Ms?.toFixed(2)} ms` +
        (r.p50Ratio === undefined
          ? ''
          : ` (base ${r.baselineP50Ms?.toFixed(2)}/${r.baselineP99Ms?.toFixed(2)}; p50 ${r.p50Ratio.toFixed(2)}×)`),
    mib(r.memory),
    r.baselineLabel,
  ]);
  const head = [
    'case',
    'engine ops/s',
    'baseline ops/s',
    'ratio',
    'p50/p99',
    'RSS MiB peak/settled (base)',
    'baseline',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
  for (const r of results) {
    if (r.extra === undefined) continue;
    const figures = Object.entries(r.extra).map(([k, v]) => `${k} ${v}`);
    console.log(`${r.name}: ${figures.join(', ')} (medians)`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '1500' },
      only: { type: 'string' },
      skip: { type: 'string' },
      side: { type: 'string' },
    },
  });
  const rounds = Math.max(3, Number(values.rounds));
  const durationMs = Number(values.duration);
  const only = values.only?.split(',');
  const skip = values.skip?.split(',') ?? [];
  if (values.side !== undefined && values.side !== 'engine' && values.side !== 'baseline')
    throw new Error('--side must be engine or baseline');
  const side = values.side as Side;
  const cases = [
    ...engineCases(),
    ...(await optionalCases('./http-cases.ts', 'httpCases')),
    ...(await optionalCases('./operator-cases.ts', 'operatorCases')),
    ...(await optionalCases('./kms-cases.ts', 'kmsCases')),
    ...(await optionalCases('./audit-cases.ts', 'auditCases')),
  ].filter((c) => (only === undefined || only.includes(c.name)) && !skip.includes(c.name));

  const results: CaseResult[] = [];
  try {
    for (const c of cases) {
      process.stderr.write(`${c.name}\n`);
      results.push(await runCase(c, rounds, durationMs, side));
    }
  } finally {
    await closeEngineCases();
  }
  printTable(results);
  await mkdir(new URL('./results/', import.meta.url), { recursive: true });
  const out = new URL('./results/latest.json', import.meta.url);
  await writeFile(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cases: results }, null, 2)}\n`,
  );
  console.log(`\nwrote ${out.pathname}`);
}

await main();
// Anything a case left running (a socket, a timer) must not keep a finished bench alive.
process.exit(0);
