// Runs last in the node tier (test/node/sequencer.ts): the node is torn down after a simulated
// crash, and down must leave nothing on the machine, restore the kernel settings, and be
// harmless when run again.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { downNode } from '../../scripts/cluster/node.ts';
import { nodeLeftovers } from '../../scripts/cluster/node-host.ts';
import { readHolder } from '../../scripts/cluster/node-lock.ts';
import { NODE_TIER_DIR } from './global-setup.ts';
import { describeOnNode, nodeState, nodeTier } from './harness.ts';

describeOnNode('tearing the node down', () => {
  it.skipIf(!nodeTier().ownNode)(
    'down after a crash (supervisor and every component killed -9, pods still running) leaves nothing, and down again is harmless',
    async () => {
      const state = nodeState();
      // Pods run, so there are containers, mounts, veths, chains and cgroups to clean up.
      expect(nodeLeftovers().some((l) => l.startsWith('mount '))).toBe(true);
      // The crash: everything of ours that could clean up dies at once; containerd's shims and
      // the containers they run survive, as they would.
      for (const pgid of [state.node.supervisorPid, ...Object.values(state.node.groups)]) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      const started = performance.now();
      const first = await downNode({ dir: NODE_TIER_DIR });
      console.log(
        `down after a crash: ${((performance.now() - started) / 1000).toFixed(1)} s\n${first.report}`,
      );
      expect(first.wasRunning).toBe(true);
      expect(nodeLeftovers()).toEqual([]);
      expect(readHolder()).toBeNull();
      const after: Record<string, string> = {};
      for (const key of Object.keys(nodeTier().sysctlsBefore))
        after[key] = readFileSync(`/proc/sys/${key}`, 'utf8').trim();
      expect(after).toEqual(nodeTier().sysctlsBefore);

      const second = await downNode({ dir: NODE_TIER_DIR });
      expect(second.wasRunning).toBe(false);
      expect(nodeLeftovers()).toEqual([]);
    },
  );
});
