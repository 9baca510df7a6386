/**
 * Vitest global setup of the `node` project: one real node for the whole tier.
 *
 * - Without root (or with the developer opt-out KEYWARD_NODE_TIER=off, which CI never sets) the
 *   node suites are skipped with a message saying why; the image suite still runs.
 * - A healthy node started by hand (`npm run cluster -- up --node`) is reused and left running.
 * - Otherwise this run starts its own in `.cluster/node-tier`, owned by this process (it tears
 *   itself down if the run is killed), waiting for the machine's node lock when another run
 *   holds it. teardown.test.ts takes it down at the end and checks that nothing is left; the
 *   teardown below is the safety net.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { DEFAULT_CLUSTER_DIR, readState } from '../../scripts/cluster/cluster.ts';
import { downNode, isNodeHealthy, isNodeState, upNode } from '../../scripts/cluster/node.ts';
import { NODE_SYSCTLS } from '../../scripts/cluster/node-layout.ts';
import '../cluster/provided.ts';
import type { NodeTierContext } from './provided.ts';

/** Where this run's own node records its state. */
export const NODE_TIER_DIR = join(DEFAULT_CLUSTER_DIR, 'node-tier');
const LOCK_WAIT_MS = 30 * 60_000;

function skipReason(): string | null {
  if (process.env.KEYWARD_NODE_TIER === 'off')
    return 'KEYWARD_NODE_TIER=off (a developer opt-out; CI never sets it)';
  if (process.platform !== 'linux') return `the real node needs Linux, not ${process.platform}`;
  if (process.getuid?.() !== 0)
    return 'not root: the real node needs root (CI runs as root, so it runs there)';
  return null;
}

function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of NODE_SYSCTLS) {
    if (existsSync(`/proc/sys/${key}`)) out[key] = readFileSync(`/proc/sys/${key}`, 'utf8').trim();
  }
  return out;
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const context: NodeTierContext = { skip: skipReason(), ownNode: false, sysctlsBefore: {}, upSeconds: 0 };
  if (context.skip !== null) {
    console.log(`node tier: SKIPPED: ${context.skip}`);
    project.provide('keywardNode', context);
    project.provide('keywardNodeState', null);
    return undefined;
  }
  const byHand = readState(DEFAULT_CLUSTER_DIR);
  if (isNodeState(byHand) && (await isNodeHealthy(byHand))) {
    console.log(`node tier: reusing the node started by hand (${byHand.server})`);
    project.provide('keywardNode', context);
    project.provide('keywardNodeState', byHand);
    project.provide('keywardCluster', byHand);
    return undefined;
  }
  context.sysctlsBefore = readSysctls();
  const started = performance.now();
  const state = await upNode({
    dir: NODE_TIER_DIR,
    ownerPid: process.pid,
    waitForLockMs: LOCK_WAIT_MS,
    log: (line) => console.log(`node tier: ${line}`),
  });
  context.ownNode = true;
  context.upSeconds = Math.round((performance.now() - started) / 100) / 10;
  const t = state.node.timings;
  console.log(
    `node tier: node up in ${context.upSeconds} s (builds included); node Ready ${t['node Ready']} s, CoreDNS Ready ${t['CoreDNS Ready']} s after start`,
  );
  project.provide('keywardNode', context);
  project.provide('keywardNodeState', state);
  project.provide('keywardCluster', state);
  return async () => {
    // teardown.test.ts normally did this already; then this finds nothing to do.
    const result = await downNode({ dir: NODE_TIER_DIR });
    if (result.wasRunning) console.log('node tier: node torn down by the global teardown');
  };
}
