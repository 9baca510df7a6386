// A/B two keyward serve processes under the same autocannon load, interleaved rounds.
// usage: node ab.ts ROOT_A ROOT_B [single|batch|seq] rounds seconds [--a-args "..."] [--b-args "..."]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [rootA, rootB, kind = 'single', roundsS = '6', secsS = '3'] = process.argv.slice(2);
const argOf = (flag: string) => {
  const i = process.argv.indexOf(flag);
  return i < 0 ? [] : process.argv[i + 1]!.split(' ').filter(Boolean);
};
const autocannon = createRequire(join(rootA!, 'package.json'))('autocannon');
const token = `ab-${randomBytes(16).toString('hex')}`;
async function start(root: string, nodeArgs: string[], extra: string[], env: string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), 'g-ab-'));
  const child = spawn(
    join(root, 'node_modules/node/bin/node'),
    [
      ...nodeArgs,
      join(root, 'engine/cli/keyward.mjs'),
      'serve',
      '--data-dir',
      dir,
      '--port',
      '0',
      '--tls',
      'off',
      '--threads',
      '2',
      ...extra,
    ],
    {
      env: {
        ...process.env,
        ...Object.fromEntries(env.map((kv) => kv.split('=') as [string, string])),
        KEYWARD_TOKEN: token,
        KEYWARD_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise((r) => child.stdout!.once('data', r));
  const { url } = JSON.parse(await readFile(join(dir, 'server.json'), 'utf8'));
  await fetch(`${url}/v1/namespaces/default/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', usage: 'AES256' }),
  });
  return { url, child, dir };
}
const pt = randomBytes(1024).toString('base64');
const body =
  kind === 'batch'
    ? JSON.stringify({ requests: Array.from({ length: 100 }, () => ({ plaintext: pt })) })
    : JSON.stringify({ plaintext: pt });
const path =
  kind === 'batch'
    ? '/v1/namespaces/default/keys/bench/batch/encrypt'
    : '/v1/namespaces/default/keys/bench/encrypt';
async function seq(url: string, ms: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(url + path);
  const lat: number[] = [];
  const once = () =>
    new Promise<number>((res, rej) => {
      const s = performance.now();
      const q = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          agent,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
          },
        },
        (r) => {
          r.on('data', () => {});
          r.on('end', () => res(performance.now() - s));
        },
      );
      q.on('error', rej);
      q.end(body);
    });
  const t = performance.now();
  while (performance.now() - t < ms) lat.push(await once());
  agent.destroy();
  lat.sort((a, b) => a - b);
  return {
    rps: lat.length / (ms / 1000),
    p50: lat[lat.length >> 1]!,
    p99: lat[Math.floor(lat.length * 0.99)]!,
  };
}
async function load(url: string, ms: number) {
  if (kind === 'seq') return seq(url, ms);
  const r = await autocannon({
    url: url + path,
    method: 'POST',
    connections: kind === 'batch' ? 16 : 64,
    duration: ms / 1000,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body,
  });
  return { rps: r.requests.average * (kind === 'batch' ? 100 : 1), p50: r.latency.p50, p99: r.latency.p99 };
}
const cpu = async (pid: number, thread = false) => {
  const stat = thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`;
  const f = (await readFile(stat, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
// Per-thread CPU seconds, grouped by thread name (comm), for --threads-detail.
const tasks = async (pid: number) => {
  const out: Record<string, number> = {};
  const { readdir } = await import('node:fs/promises');
  for (const t of await readdir(`/proc/${pid}/task`)) {
    try {
      const raw = await readFile(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = `${raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')'))}${t === String(pid) ? '*' : ''}`;
      const f = raw.slice(raw.lastIndexOf(') ') + 2).split(' ');
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
    } catch {}
  }
  return out;
};
const detail = process.argv.includes('--threads-detail');
const a = await start(rootA!, argOf('--a-node'), argOf('--a-args'), argOf('--a-env'));
const b = await start(rootB!, argOf('--b-node'), argOf('--b-args'), argOf('--b-env'));
await load(a.url, 1000);
await load(b.url, 1000);
const ratios: number[] = [];
const cpuRatios: number[] = [];
const mainRatios: number[] = [];
for (let r = 0; r < Number(roundsS); r++) {
  const order = r % 2 ? [b, a] : [a, b];
  const res: Record<string, { rps: number; p50: number; p99: number; cpu: number; main: number }> = {};
  for (const s of order) {
    const c0 = await cpu(s.child.pid!);
    const m0 = await cpu(s.child.pid!, true);
    const t0 = detail ? await tasks(s.child.pid!) : {};
    const x = await load(s.url, Number(secsS) * 1000);
    const c1 = await cpu(s.child.pid!);
    const m1 = await cpu(s.child.pid!, true);
    const ops = x.rps * Number(secsS);
    if (detail) {
      const t1 = await tasks(s.child.pid!);
      const parts = Object.entries(t1).map(
        ([k, v]) => `${k} ${(((v - (t0[k] ?? 0)) / ops) * 1e6).toFixed(1)}`,
      );
      console.log(`  ${s === a ? 'A' : 'B'} threads µs/op: ${parts.join(', ')}`);
    }
    res[s === a ? 'a' : 'b'] = { ...x, cpu: ((c1 - c0) / ops) * 1e6, main: ((m1 - m0) / ops) * 1e6 };
  }
  ratios.push(res.b!.rps / res.a!.rps);
  cpuRatios.push(res.a!.cpu / res.b!.cpu);
  mainRatios.push(res.a!.main / res.b!.main);
  const side = (x: (typeof res)[string]) =>
    `${x.rps.toFixed(0)}/s p50 ${x.p50.toFixed(3)} cpu ${x.cpu.toFixed(1)}µs main ${x.main.toFixed(1)}µs`;
  console.log(
    `round ${r}: A ${side(res.a!)} | B ${side(res.b!)} | B/A ${(res.b!.rps / res.a!.rps).toFixed(2)}`,
  );
}
const med = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1]!;
console.log(
  `median B/A throughput ${med(ratios).toFixed(3)}, A/B cpu per op ${med(cpuRatios).toFixed(3)}, A/B main-thread cpu per op ${med(mainRatios).toFixed(3)}`,
);
for (const s of [a, b]) {
  s.child.kill('SIGTERM');
  await new Promise((r) => s.child.once('exit', r));
  await rm(s.dir, { recursive: true, force: true });
}
process.exit(0);
