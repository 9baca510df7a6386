/** Types what the node tier's global setup provides through vitest's inject(). */
import type { NodeState } from '../../scripts/cluster/node.ts';

/** What the node tier knows about its node. */
export interface NodeTierContext {
  /** Why the node suites are skipped (not root, opted out, ...), or null when they run. */
  skip: string | null;
  /** True when this run started the node (and may tear it down); false for a node started by hand. */
  ownNode: boolean;
  /** The kernel settings before this run started the node (down must restore them). */
  sysctlsBefore: Record<string, string>;
  /** How long bringing the node up took in this run, in seconds (0 when reused). */
  upSeconds: number;
}

declare module 'vitest' {
  export interface ProvidedContext {
    keywardNode: NodeTierContext;
    keywardNodeState: NodeState | null;
  }
}
