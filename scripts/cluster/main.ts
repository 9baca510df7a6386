/**
 * `npm run cluster -- <up|down|status|build> [--node]`: the test clusters by hand.
 *
 *   up           build if needed, start etcd + kube-apiserver, write .cluster/kubeconfig
 *   up --node    as root: a real single-node cluster (kubelet, containerd, kube-proxy, CoreDNS,
 *                controller-manager, scheduler) running the Keyward image; see node.ts
 *   down         stop whichever runs and remove what it made (harmless when nothing runs)
 *   status       print whether it runs and where
 *   build        only build the binaries into .controlplane/bin (--node: the node's too)
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  BIN_DIR,
  DEFAULT_CLUSTER_DIR,
  down,
  ensureBinaries,
  isHealthy,
  REPO_ROOT,
  readState,
  up,
} from './cluster.ts';
import { downNode, isNodeHealthy, isNodeState, upNode } from './node.ts';
import { NodePreflightError } from './node-host.ts';
import { NodeBusyError, readHolder } from './node-lock.ts';

const USAGE = `usage: npm run cluster -- <up|down|status|build> [--node]

  up          start etcd + kube-apiserver (no root needed), write .cluster/kubeconfig
  up --node   as root: a real single-node cluster that runs pods and the Keyward image
  down        stop the cluster or node of this checkout and remove everything it made
  status      say whether it runs and where
  build       build the binaries only (--node: the node's as well)`;

function printState(state: { server: string; kubeconfig: string; dir: string }, what: string): void {
  console.log(what);
  console.log(`  server      ${state.server}`);
  console.log(`  kubeconfig  ${state.kubeconfig}`);
  console.log(`  kubectl     ${join(BIN_DIR, 'kubectl')}`);
  console.log(`  helm        ${join(BIN_DIR, 'helm')}`);
  console.log(`  logs        ${join(state.dir, 'logs')}`);
  console.log(`export KUBECONFIG=${state.kubeconfig} PATH=${BIN_DIR}:$PATH`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const node = rest.includes('--node');
  const unknown = rest.filter((a) => a !== '--node');
  if (unknown.length > 0 || (node && command !== 'up' && command !== 'build')) {
    console.error(`cluster: unexpected ${unknown[0] ?? '--node'}\n${USAGE}`);
    return 2;
  }
  switch (command) {
    case 'up': {
      if (node) {
        const before = readState();
        const state = await upNode({ log: (line) => console.log(`  ${line}`) });
        const reused = before !== null && before.startedAt === state.startedAt;
        printState(state, reused ? 'node already up' : 'node up');
        if (state.node.image)
          console.log(`  image       ${state.node.image.ref} (${state.node.image.digest})`);
        const t = state.node.timings;
        if (!reused)
          console.log(`  timings     node Ready ${t['node Ready']} s, CoreDNS Ready ${t['CoreDNS Ready']} s`);
        return 0;
      }
      const before = readState();
      if (isNodeState(before)) {
        printState(before, 'a node runs here (it includes the control plane)');
        return 0;
      }
      const state = await up();
      const reused = before !== null && before.startedAt === state.startedAt;
      printState(state, reused ? 'cluster already up' : 'cluster up');
      return 0;
    }
    case 'down': {
      const state = readState();
      const holder = readHolder();
      let stopped = false;
      if (state && !isNodeState(state)) stopped = await down();
      if (isNodeState(state) || holder?.repo === REPO_ROOT || (process.getuid?.() === 0 && holder === null)) {
        const result = await downNode();
        if (result.report) console.log(result.report);
        stopped ||= result.wasRunning;
      }
      console.log(stopped ? 'cluster down' : 'no cluster was running');
      return 0;
    }
    case 'status': {
      const state = readState();
      if (!state) {
        const holder = readHolder();
        console.log(
          `no cluster recorded in ${DEFAULT_CLUSTER_DIR}${holder ? ` (a node of ${holder.repo} holds this machine)` : ''}`,
        );
        return 1;
      }
      const healthy = isNodeState(state) ? await isNodeHealthy(state) : await isHealthy(state);
      const kind = isNodeState(state) ? 'node' : 'control plane';
      console.log(
        `${healthy ? 'healthy' : 'NOT healthy'} ${kind}: ${state.server} (kubeconfig ${state.kubeconfig})`,
      );
      return healthy ? 0 : 1;
    }
    case 'build':
      if (node)
        execFileSync('bash', [join(REPO_ROOT, 'scripts', 'cluster', 'build.sh'), '--node'], {
          stdio: 'inherit',
        });
      else ensureBinaries();
      return 0;
    case '-h':
    case '--help':
      console.log(USAGE);
      return 0;
    default:
      console.error(USAGE);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Preflight and lock refusals are one line by design; other errors carry a log tail.
    const message = error instanceof Error ? error.message : String(error);
    const oneLine = error instanceof NodePreflightError || error instanceof NodeBusyError;
    console.error(`cluster: ${oneLine ? message.split('\n')[0] : message}`);
    process.exitCode = 1;
  },
);
