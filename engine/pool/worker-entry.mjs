// The crypto worker's entry (plain JavaScript on purpose). The main thread hands every worker the
// worker's own TypeScript modules with their types already stripped (worker-sources.ts), and this
// file serves them through a module hook, so Node never loads its TypeScript stripper (a
// WebAssembly module of about 10 MiB resident per thread) in the workers. A module it was not
// given is loaded by Node as usual (test/engine/pool.test.ts checks none is: the workers' external
// memory stays small).
import { registerHooks } from 'node:module';
import { workerData } from 'node:worker_threads';

/** @type {Record<string, string>} */
const sources = workerData?.sources ?? {};
registerHooks({
  load(url, context, nextLoad) {
    const source = sources[url];
    if (source !== undefined) return { format: 'module', source, shortCircuit: true };
    return nextLoad(url, context);
  },
});

const worker = await import('./worker.ts');
export default worker.default;
