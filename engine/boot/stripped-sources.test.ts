import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'keyward-stripped-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * An --import module (it runs in every thread) that reports every 100 ms whether its thread has
 * loaded Node's stripper: a worker ended by terminate() runs no exit handler.
 */
const PROBE = join(scratch, 'probe.mjs');
writeFileSync(
  PROBE,
  `import { threadId } from 'node:worker_threads';
const report = () => process.stderr.write('STRIPPER ' + JSON.stringify({ thread: threadId, loaded: process.moduleLoadList.some((m) => m.includes('amaro')) }) + '\\n');
setInterval(report, 100).unref();
`,
);

/** Starts `keyward serve` through `entry` and reports, for each thread, whether it loaded the stripper. */
async function stripperPerThread(entry: string): Promise<Map<number, boolean>> {
  const dataDir = mkdtempSync(join(scratch, 'data-'));
  const proc: ChildProcess = spawn(
    process.execPath,
    [
      '--import',
      PROBE,
      join(ROOT, 'engine/cli', entry),
      'serve',
      '--data-dir',
      dataDir,
      '--port',
      '0',
      '--tls',
      'off',
      '--threads',
      '2',
    ],
    {
      env: { ...process.env, KEYWARD_TOKEN: randomBytes(24).toString('hex') },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  proc.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  for (let i = 0; i < 150 && !existsSync(join(dataDir, 'server.json')); i++)
    await new Promise((r) => setTimeout(r, 100));
  expect(existsSync(join(dataDir, 'server.json')), stderr).toBe(true);
  // Every thread has started and reported since.
  await new Promise((r) => setTimeout(r, 500));
  proc.kill('SIGTERM');
  await exited;
  const threads = new Map<number, boolean>();
  for (const m of stderr.matchAll(/^STRIPPER (.*)$/gm)) {
    const r = JSON.parse(m[1]!) as { thread: number; loaded: boolean };
    threads.set(r.thread, r.loaded);
  }
  return threads;
}

describe('the stripped-sources cache (engine/boot)', () => {
  // Node's TypeScript stripper is a WebAssembly module of about 16 MiB resident per process
  // (issue #16): a server started as users start it must not load it on any thread.
  it('keyward serve started through keyward.mjs never loads the stripper, on its main thread or in a worker', async () => {
    const threads = await stripperPerThread('keyward.mjs');
    // The main thread (0), the two crypto workers and the audit thread.
    expect(threads.size).toBe(4);
    expect([...threads.values()]).toEqual([false, false, false, false]);
    // The probe can tell: started from main.ts, Node strips the main thread's modules itself.
    expect((await stripperPerThread('main.ts')).get(0)).toBe(true);
  }, 60_000);

  it('serves a module only for the exact source it was stripped from: an edited module runs as edited', () => {
    // A project of one module, with the boot files of this one.
    const root = mkdtempSync(join(scratch, 'root-'));
    mkdirSync(join(root, 'engine'));
    cpSync(join(ROOT, 'engine/boot'), join(root, 'engine/boot'), {
      recursive: true,
      filter: (f) => !f.endsWith('.test.ts'),
    });
    const mod = join(root, 'engine/x.ts');
    const run = (): { v: number; loaded: boolean } =>
      JSON.parse(
        execFileSync(
          process.execPath,
          [
            '--input-type=module',
            '-e',
            `const boot = await import(${JSON.stringify(join(root, 'engine/boot/stripped-sources.mjs'))});
boot.useStrippedSources();
const x = await import(${JSON.stringify(mod)});
console.log(JSON.stringify({ v: x.v, loaded: process.moduleLoadList.some((m) => m.includes('amaro')) }));`,
          ],
          { encoding: 'utf8' },
        ),
      );
    const cache = join(root, '.keyward-cache/stripped-sources.json');
    writeFileSync(mod, 'export const v: number = 1;\n');
    expect(run()).toEqual({ v: 1, loaded: false });
    expect(existsSync(cache)).toBe(true);
    // Edited: the cache is rebuilt at start.
    writeFileSync(mod, 'export const v: number = 2;\n');
    expect(run()).toEqual({ v: 2, loaded: false });
    expect(readFileSync(cache, 'utf8')).toContain('export const v         = 2;');
    // Edited so that the start's stat check cannot tell (the cache records the edited file's size
    // and mtime): the load hook's hash still refuses the stale entry, and Node strips the module.
    writeFileSync(mod, 'export const v: number = 5;\n');
    const c = JSON.parse(readFileSync(cache, 'utf8')) as {
      files: Record<string, { size: number; mtimeMs: number }>;
    };
    const st = statSync(mod);
    c.files['engine/x.ts'] = { ...c.files['engine/x.ts']!, size: st.size, mtimeMs: st.mtimeMs };
    writeFileSync(cache, JSON.stringify(c));
    expect(run()).toEqual({ v: 5, loaded: true });
    expect(readFileSync(cache, 'utf8')).toContain('export const v         = 2;');
    // Edited where the cache cannot be rebuilt (no builder): the stale entry is not served; Node
    // strips the module itself.
    rmSync(join(root, 'engine/boot/strip-sources.mjs'));
    writeFileSync(mod, 'export const v: number = 3;\n');
    expect(run()).toEqual({ v: 3, loaded: true });
  }, 60_000);

  it('the builder has --help, refuses any other flag in one line, and writes where --out says', () => {
    const builder = join(ROOT, 'engine/boot/strip-sources.mjs');
    const run = (args: string[]) => spawnSync(process.execPath, [builder, ...args], { encoding: 'utf8' });
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: node engine\/boot\/strip-sources\.mjs \[--out FILE\]/);
    for (const bad of [['--bogus'], ['--out'], ['--out', 'a', 'b']]) {
      const r = run(bad);
      expect(r.status, bad.join(' ')).toBe(2);
      expect(r.stderr).toBe('strip-sources: the only option is --out FILE\n');
    }
    const out = join(scratch, 'out', 'cache.json');
    const built = run(['--out', out]);
    expect(built.status, built.stderr).toBe(0);
    const cache = JSON.parse(readFileSync(out, 'utf8')) as {
      files: Record<string, { sha256: string; size: number; mtimeMs: number }>;
    };
    const entry = cache.files['engine/cli/main.ts']!;
    expect(entry.sha256).toBe(
      createHash('sha256')
        .update(readFileSync(join(ROOT, 'engine/cli/main.ts')))
        .digest('hex'),
    );
    expect(entry.size).toBe(statSync(join(ROOT, 'engine/cli/main.ts')).size);
    expect(Object.keys(cache.files).some((f) => f.endsWith('.test.ts'))).toBe(false);
  });
});
