#!/usr/bin/env node
// The `keyward` command (package.json "bin"). Plain JavaScript on purpose: it must start on any
// Node, including the end-of-life Node 20 many machines still have, where the TypeScript CLI
// (main.ts, run through Node 24's type stripping) cannot even be loaded. On Node 24 or later it
// runs the CLI in this process; on an older Node it runs the CLI with the Node 24 the project
// pins (node_modules/node, installed by `npm ci`); without one it says so in one line. It is also
// the entry of `npm start` and of the image (engine/boot/stripped-sources.mjs says why).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REQUIRED_MAJOR = 24;
const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, 'main.ts');
const major = Number(process.versions.node.split('.')[0]);

/** The pinned Node binary of the project this file belongs to, if `npm ci` installed it. */
function pinnedNode() {
  for (let dir = here; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', 'node', 'bin', 'node');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

if (major >= REQUIRED_MAJOR) {
  // The modules come with their types already stripped (a cache checked against each source), so
  // this process never loads Node's TypeScript stripper: about 16 MiB less resident memory.
  const { useStrippedSources } = await import('../boot/stripped-sources.mjs');
  useStrippedSources();
  await import(pathToFileURL(main).href);
} else {
  // A launcher started by this one is on an old Node too: the pinned one is stale (say so, rather
  // than start itself again).
  const relaunched = process.env.KEYWARD_LAUNCHER === '1';
  const node = process.env.KEYWARD_NO_PINNED_NODE === '1' || relaunched ? undefined : pinnedNode();
  if (node === undefined) {
    process.stderr.write(
      `keyward: needs Node ${REQUIRED_MAJOR} or later (this is Node ${process.versions.node}); run "npm ci" in the Keyward folder, then "npx keyward ..." or "npm start"\n`,
    );
    process.exit(1);
  }
  // The pinned Node runs this launcher, so its process serves the stripped sources too.
  const child = spawn(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, KEYWARD_LAUNCHER: '1' },
  });
  // Ctrl-C reaches the child directly (same process group): a second SIGINT from here would cut
  // its graceful shutdown short. SIGTERM and SIGHUP come to this pid alone, so they are passed on.
  process.on('SIGINT', () => {});
  for (const signal of /** @type {const} */ (['SIGTERM', 'SIGHUP']))
    process.on(signal, () => child.kill(signal));
  child.on('error', (err) => {
    process.stderr.write(`keyward: cannot run ${node}: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
