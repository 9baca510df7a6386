// The entry of the engine's worker threads (plain JavaScript on purpose): the crypto workers, and
// the audit thread (workerData.entry names its module). The main thread hands every worker its
// TypeScript modules with their types already stripped (worker-sources.ts), and this file serves
// them through a module hook, so Node never loads its TypeScript stripper (a WebAssembly module of
// about 10 MiB resident per thread) in the workers. A module it was not given is loaded by Node as
// usual (test/engine/pool.test.ts and test/audit/audit-thread.test.ts check none is).
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

const worker = await import(workerData?.entry ?? './worker.ts');
export default worker.default;
