/**
 * The Node flags and glibc malloc settings Keyward's processes run with, chosen on measurement
 * (docs/performance.md, memory): the chart's defaults (values.yaml `nodeOptions`,
 * `mallocArenaMax`, `mallocMmapThreshold`; test/chart/render.test.ts keeps them equal) and
 * `npm start`. The benches start Keyward's processes with them, so they measure what ships.
 */
export const KEYWARD_ENV = {
  // A 4 MiB semi-space: the main thread's young generation otherwise grows to 64 MiB under load.
  NODE_OPTIONS: '--max-semi-space-size=4',
  // Worker threads share two malloc arenas instead of growing one each.
  MALLOC_ARENA_MAX: '2',
  // Blocks of 64 KiB and more are mapped and unmapped on their own, not kept in the heap.
  MALLOC_MMAP_THRESHOLD_: '65536',
} as const;

/**
 * The operator's: the same, and its old generation capped at 512 MiB so that V8 collects before
 * the heap nears the chart's limit (768Mi) instead of growing into it (at 10,000 Keys its heap in
 * use was 116-377 MiB).
 */
export const KEYWARD_OPERATOR_ENV = {
  ...KEYWARD_ENV,
  NODE_OPTIONS: `${KEYWARD_ENV.NODE_OPTIONS} --max-old-space-size=512`,
} as const;
