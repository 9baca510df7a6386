/**
 * The Kubernetes client speaks HTTP/1.1 to the apiserver, and writes aborted mid-body leave the
 * process's memory bounded.
 *
 * Pins the defect behind CI's "Worker exited unexpectedly with signal SIGKILL" in
 * test/operator/key-controller.test.ts: undici offered h2, the apiserver picked it, and a request
 * aborted while its body was being sent (a leadership term ending with writes in flight) sent
 * Node's HTTP/2 layer into a native loop (`Http2Session::SendPendingData`) that grew the worker
 * to 23 GB until the kernel's OOM killer stopped it. Before the fix the child below passed 2.5 GB
 * within 12 s; with HTTP/1.1 it stays under 1 GB for the whole run.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createNamespace, kubeconfigPath } from './harness.ts';

const CHILD = join(import.meta.dirname, 'fixtures', 'aborted-writes.ts');
/** Far above what the child needs (about 600 MiB with 40 bodies of up to 300 kB in flight). */
const RSS_LIMIT_MIB = 1_500;

function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

it('aborting writes mid-body, round after round, neither speaks h2 nor runs the process out of memory', async () => {
  const ns = await createNamespace('kw-h1');
  const child = spawn(process.execPath, [CHILD, kubeconfigPath(), ns, '40'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let peak = 0;
  let killed = false;
  const watch = setInterval(() => {
    const rss = rssMiB(child.pid ?? 0) ?? 0;
    peak = Math.max(peak, rss);
    if (rss > RSS_LIMIT_MIB && !killed) {
      killed = true;
      child.kill('SIGKILL');
    }
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(watch);
  expect(killed, `the child passed ${RSS_LIMIT_MIB} MiB (peak ${Math.round(peak)} MiB) and was killed`).toBe(
    false,
  );
  expect(code, stderr).toBe(0);
  const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
    outcomes: Record<string, number>;
    alpn: string[];
    maxRssMiB: number;
  };
  console.log(`aborted writes: ${JSON.stringify(result)}`);
  expect(result.alpn).toEqual(['http/1.1']);
  // The rounds really did abort writes in flight, and nothing failed for another reason.
  expect(result.outcomes.aborted ?? 0).toBeGreaterThan(0);
  expect(Object.keys(result.outcomes).filter((o) => o !== 'aborted' && o !== 'created')).toEqual([]);
  expect(result.maxRssMiB).toBeLessThan(RSS_LIMIT_MIB);
}, 120_000);
