/**
 * `npm run cluster -- <up|down|status|build>`: the test control plane by hand.
 *
 *   up      build if needed, start etcd + kube-apiserver, write .cluster/kubeconfig
 *   down    stop both and remove the data (harmless when nothing runs)
 *   status  print whether it runs and where
 *   build   only build the binaries into .controlplane/bin
 */
import { join } from 'node:path';
import { BIN_DIR, DEFAULT_CLUSTER_DIR, down, ensureBinaries, isHealthy, readState, up } from './cluster.ts';

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case 'up': {
      const before = readState();
      const state = await up();
      const reused = before !== null && before.startedAt === state.startedAt;
      console.log(reused ? 'cluster already up' : 'cluster up');
      console.log(`  server      ${state.server}`);
      console.log(`  kubeconfig  ${state.kubeconfig}`);
      console.log(`  kubectl     ${join(BIN_DIR, 'kubectl')}`);
      console.log(`  helm        ${join(BIN_DIR, 'helm')}`);
      console.log(`  logs        ${join(state.dir, 'logs')}`);
      console.log(`export KUBECONFIG=${state.kubeconfig} PATH=${BIN_DIR}:$PATH`);
      return 0;
    }
    case 'down':
      console.log((await down()) ? 'cluster down' : 'no cluster was running');
      return 0;
    case 'status': {
      const state = readState();
      if (!state) {
        console.log(`no cluster recorded in ${DEFAULT_CLUSTER_DIR}`);
        return 1;
      }
      const healthy = await isHealthy(state);
      console.log(`${healthy ? 'healthy' : 'NOT healthy'}: ${state.server} (kubeconfig ${state.kubeconfig})`);
      return healthy ? 0 : 1;
    }
    case 'build':
      ensureBinaries();
      return 0;
    default:
      console.error('usage: npm run cluster -- <up|down|status|build>');
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`cluster: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
