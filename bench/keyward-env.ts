/**
 * The Node flags and glibc malloc settings Keyward's processes run with, chosen on measurement
 * (docs/performance.md, memory): the chart's defaults (values.yaml `nodeOptions`,
 * `mallocArenaMax`, `mallocMmapThreshold`; test/chart/render.test.ts keeps them equal) and
 * `npm start`. The benches start Keyward's processes with them, so they measure what ships.
 */
export const KEYWARD_ENV = {
  // The main thread's young generation: 6 MiB semi-spaces (it otherwise grows to 64 MiB under
  // load). Its old generation capped at 1 GiB: V8 then lets the heap grow to at most about 1.6
  // times what is live between full collections, instead of 4 (docs/performance.md, "Large
  // buffers freed at once").
  NODE_OPTIONS: '--max-semi-space-size=6 --max-old-space-size=1024',
  // Worker threads share two malloc arenas instead of growing one each.
  MALLOC_ARENA_MAX: '2',
  // Blocks of 64 KiB and more are mapped and unmapped on their own, not kept in the heap.
  MALLOC_MMAP_THRESHOLD_: '65536',
} as const;

/**
 * The operator's: the same malloc settings, a 4 MiB semi-space, and its old generation capped at
 * 512 MiB so that V8 collects before the heap nears the chart's limit (768Mi) instead of growing
 * into it (at 10,000 Keys its heap in use was 116-377 MiB).
 */
export const KEYWARD_OPERATOR_ENV = {
  ...KEYWARD_ENV,
  NODE_OPTIONS: '--max-semi-space-size=4 --max-old-space-size=512',
} as const;
