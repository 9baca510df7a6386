/** Types what the cluster global setup provides to the suites through vitest's inject(). */
import type { ClusterState } from '../../scripts/cluster/cluster.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    keywardCluster: ClusterState;
  }
}
