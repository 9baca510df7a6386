/**
 * Test file order: vitest's own (slowest and failed first) for everything, except the node tier,
 * whose files share one node and run in the order below: teardown.test.ts tears the node down,
 * so it must come last.
 */
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const NODE_TIER_ORDER = ['node.test.ts', 'image.test.ts', 'keyward.test.ts', 'teardown.test.ts'];

function rank(spec: TestSpecification): number {
  const match = /\/test\/node\/([^/]+)$/.exec(spec.moduleId);
  if (!match) return -1;
  const i = NODE_TIER_ORDER.indexOf(match[1] as string);
  return i === -1 ? NODE_TIER_ORDER.length - 1 : i;
}

/** See the module comment. */
export default class KeywardSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const node = sorted.filter((f) => rank(f) >= 0).sort((a, b) => rank(a) - rank(b));
    return [...sorted.filter((f) => rank(f) < 0), ...node];
  }
}
