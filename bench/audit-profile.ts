/**
 * The audit log's share of the server's main thread, from a CPU profile: a real `keyward serve`
 * (audit on, `--cpu-prof`) under autocannon load, then the self time of frames whose nearest
 * JavaScript frame is in engine/audit/ (natives and hash-wasm count for their caller), as a
 * share of the main thread's busy time. A share within one process, so it holds up on a busy
 * machine where throughput ratios do not (docs/performance.md#audit-log).
 *
 * Usage: node bench/audit-profile.ts [single|batch] [--audit-required]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const autocannon = createRequire(import.meta.url)('autocannon') as (
  o: Record<string, unknown>,
) => Promise<{ requests: { average: number }; non2xx: number }>;
const MAIN = join(import.meta.dirname, '../engine/cli/keyward.mjs');

async function main(): Promise<void> {
  const batch = process.argv[2] === 'batch';
  const extra = process.argv.includes('--audit-required') ? ['--audit-required'] : [];
  const dir = await mkdtemp(join(tmpdir(), 'keyward-audit-prof-'));
  const profDir = join(dir, 'profiles');
  const token = `prof-${randomBytes(16).toString('hex')}`;
  const child = spawn(
    process.execPath,
    [
      `--cpu-prof`,
      `--cpu-prof-dir=${profDir}`,
      MAIN,
      'serve',
      '--data-dir',
      join(dir, 'data'),
      '--port',
      '0',
      '--tls',
      'off',
      ...extra,
    ],
    {
      env: { ...process.env, KEYWARD_TOKEN: token, KEYWARD_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise((r) => child.stdout!.once('data', r));
  const { url } = JSON.parse(await readFile(join(dir, 'data', 'server.json'), 'utf8')) as { url: string };
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  await fetch(`${url}/v1/namespaces/default/keys`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ name: 'bench', usage: 'AES256' }),
  });
  const plaintext = randomBytes(1024).toString('base64');
  const r = await autocannon({
    url: `${url}/v1/namespaces/default/keys/bench/${batch ? 'batch/encrypt' : 'encrypt'}`,
    method: 'POST',
    connections: batch ? 16 : 64,
    duration: 6,
    headers,
    body: JSON.stringify(
      batch ? { requests: Array.from({ length: 100 }, () => ({ plaintext })) } : { plaintext },
    ),
  });
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  // Each thread writes its own profile; the main thread's is the one that ran engine/audit code.
  const shares: string[] = [];
  for (const file of await readdir(profDir)) {
    const p = JSON.parse(await readFile(join(profDir, file), 'utf8')) as Profile;
    const self = new Map<number, number>();
    for (const [i, id] of p.samples.entries()) self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const inAudit = (id: number): boolean => {
      for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
        const u = byId.get(x)!.callFrame.url;
        if (u === '' || u.includes('hash-wasm')) continue;
        return u.includes('/engine/audit/');
      }
      return false;
    };
    let busy = 0;
    let audit = 0;
    for (const n of p.nodes) {
      const t = self.get(n.id) ?? 0;
      if (n.callFrame.functionName === '(idle)') continue;
      busy += t;
      if (inAudit(n.id)) audit += t;
    }
    if (audit > 0) shares.push(`${((100 * audit) / busy).toFixed(1)} % of ${(busy / 1e6).toFixed(1)} s busy`);
  }
  console.log(
    `${batch ? 'batch100' : 'single'}${extra.length ? ' (required)' : ''}: ${r.requests.average.toFixed(0)} requests/s, ${r.non2xx} non-2xx; audit share of the main thread: ${shares.join(', ') || 'none'}`,
  );
  await rm(dir, { recursive: true, force: true });
}

await main();
