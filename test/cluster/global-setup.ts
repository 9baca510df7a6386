/**
 * Vitest global setup of the `cluster` project: builds the control-plane binaries when missing
 * and starts a private etcd + kube-apiserver for this run, then stops it afterwards.
 *
 * A cluster started by hand (`npm run cluster -- up`) is reused and left running. Otherwise each
 * run gets its own cluster in `.cluster/runs/<pid>`, so two test runs in one checkout never
 * share (or stop) each other's apiserver; the cluster also stops itself if this process dies.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { DEFAULT_CLUSTER_DIR, down, isHealthy, readState, up } from '../../scripts/cluster/cluster.ts';
import './provided.ts';

/** Brings the cluster up and provides its state to the suites as `inject('keywardCluster')`. */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const shared = readState(DEFAULT_CLUSTER_DIR);
  // A real node started by hand (`up --node`) is not shared: these suites may stop and restart
  // the apiserver, which a node's kube-proxy takes minutes to get over.
  if (shared && !('node' in shared) && (await isHealthy(shared))) {
    project.provide('keywardCluster', shared);
    return undefined;
  }
  await sweepDeadRuns();
  const dir = join(DEFAULT_CLUSTER_DIR, 'runs', String(process.pid));
  const started = Date.now();
  const state = await up({ dir, ownerPid: process.pid });
  console.log(`test control plane up at ${state.server} in ${Date.now() - started} ms`);
  project.provide('keywardCluster', state);
  return async () => {
    await down({ dir });
    // Only the logs remain; a failed start already reported their tail.
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Removes what runs killed before their teardown left in `.cluster/runs/<pid>` (their processes stopped themselves). */
async function sweepDeadRuns(): Promise<void> {
  const runs = join(DEFAULT_CLUSTER_DIR, 'runs');
  if (!existsSync(runs)) return;
  for (const entry of readdirSync(runs)) {
    if (!/^\d+$/.test(entry) || isProcessAlive(Number(entry))) continue;
    await down({ dir: join(runs, entry) });
    rmSync(join(runs, entry), { recursive: true, force: true });
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
