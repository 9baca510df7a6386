/**
 * Summarizes V8 CPU profiles (`node --cpu-prof --cpu-prof-dir=DIR ...`; every thread writes its
 * own file): per file, the busy share and the functions with the most self time, with their
 * share of the thread's busy time. Used for the profiles in docs/performance.md.
 *
 * Usage: node bench/profile-summary.ts DIR [--top N] [--match TEXT] [--callers FUNCTION] [--areas]
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time per node id, in microseconds. */
function selfTimes(p: Profile): Map<number, number> {
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  return self;
}

function frameName(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const file =
    url === '' ? '' : ` ${url.replace(/^.*\/(engine|bench|node_modules)\//, '$1/')}:${lineNumber + 1}`;
  return `${functionName || '(anonymous)'}${file}`;
}

/** Self time of frames named `name`, by the JavaScript frame that called them (natives skipped). */
export function callers(p: Profile, name: string, top: number): string[] {
  const self = selfTimes(p);
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const by = new Map<string, number>();
  let total = 0;
  for (const n of p.nodes) {
    if (!frameName(n).startsWith(name)) continue;
    const t = self.get(n.id) ?? 0;
    total += t;
    const chain: string[] = [];
    for (let x = parent.get(n.id); x !== undefined && chain.length < 3; x = parent.get(x)) {
      const f = byId.get(x)!;
      if (f.callFrame.url !== '') chain.push(frameName(f));
    }
    const key = chain.join(' < ') || '(root)';
    by.set(key, (by.get(key) ?? 0) + t);
  }
  const rows = [...by].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `${name}: ${(total / 1e6).toFixed(2)} s self`,
    ...rows.map(([k, t]) => `  ${((100 * t) / Math.max(total, 1)).toFixed(1).padStart(5)} %  ${k}`),
  ];
}

/** Areas of the code, by the first JavaScript frame (from the leaf up) whose URL matches. */
const AREAS: Array<[string, RegExp]> = [
  ['audit log', /\/engine\/audit\/|hash-wasm/],
  ['metrics (prom-client)', /prom-client/],
  ['fastify', /node_modules\/(fastify|find-my-way|avvio|fast-json-stringify|@fastify|light-my-request|pino)/],
  ['keyward http layer', /\/engine\/http\//],
  ['key service and engine', /\/engine\/(service|pool|crypto|keys|engine|operation-plans|key-ring)/],
  ['node http and net', /node:(_http|net|internal\/streams|internal\/stream_base|events|internal\/http)/],
  ['piscina', /piscina/],
];

/** Self time per area (see AREAS); natives count for the JavaScript frame that called them. */
export function byArea(p: Profile): string[] {
  const self = selfTimes(p);
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  let busy = 0;
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    const name = n.callFrame.functionName;
    if (name === '(idle)') continue;
    busy += t;
    let area =
      name === '(garbage collector)' ? 'garbage collector' : name === '(program)' ? '(program)' : 'other';
    if (area === 'other') {
      for (let x: number | undefined = n.id; x !== undefined; x = parent.get(x)) {
        const url = byId.get(x)!.callFrame.url;
        if (url === '') continue;
        area = AREAS.find(([, re]) => re.test(url))?.[0] ?? 'other';
        break;
      }
    }
    totals.set(area, (totals.get(area) ?? 0) + t);
  }
  return [
    `busy ${(busy / 1e6).toFixed(2)} s`,
    ...[...totals]
      .sort((a, b) => b[1] - a[1])
      .map(([area, t]) => `  ${((100 * t) / busy).toFixed(1).padStart(5)} %  ${area}`),
  ];
}

/** One thread's summary lines. */
export function summarize(p: Profile, top: number, match?: string): string[] {
  const self = selfTimes(p);
  const byName = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    if (n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)') {
      if (n.callFrame.functionName === '(idle)') idle += t;
      else busy += t;
      if (n.callFrame.functionName === '(idle)') continue;
    } else {
      busy += t;
    }
    const name = frameName(n);
    byName.set(name, (byName.get(name) ?? 0) + t);
  }
  const total = busy + idle;
  const lines = [
    `busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)} s (${((100 * busy) / total).toFixed(1)} %)`,
  ];
  const rows = [...byName].filter(([name]) => match === undefined || name.includes(match));
  rows.sort((a, b) => b[1] - a[1]);
  for (const [name, t] of rows.slice(0, top)) {
    lines.push(`  ${((100 * t) / busy).toFixed(1).padStart(5)} %  ${name}`);
  }
  return lines;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '25' },
      match: { type: 'string' },
      callers: { type: 'string' },
      areas: { type: 'boolean' },
    },
  });
  const dir = positionals[0];
  if (dir === undefined) throw new Error('usage: node bench/profile-summary.ts DIR [--top N] [--match TEXT]');
  for (const file of (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
    const p = JSON.parse(await readFile(join(dir, file), 'utf8')) as Profile;
    console.log(`== ${basename(file)}`);
    const lines = values.areas
      ? byArea(p)
      : values.callers === undefined
        ? summarize(p, Number(values.top), values.match)
        : callers(p, values.callers, Number(values.top));
    for (const line of lines) console.log(line);
  }
}

if (import.meta.main) await main();
