/**
 * Python tools the test suite runs (schemathesis), installed by the project itself: a virtual
 * environment per tool under `.tools/` (git-ignored), created on first use with the machine's
 * `python3 -m venv` and filled from PyPI with pinned versions. A finished install leaves a
 * `READY` file naming what it holds; anything else (an interrupted install, another pin) is
 * removed and installed again. Needs only Python 3 (with its venv module) and PyPI.
 *
 * `node scripts/python-tools.ts schemathesis` installs it ahead of time.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root. */
const REPO_ROOT = resolve(import.meta.dirname, '..');

/** Where the environments live. */
export const TOOLS_DIR = join(REPO_ROOT, '.tools');

/** The tools and their pinned requirements. */
export const PYTHON_TOOLS = {
  schemathesis: { requirements: ['schemathesis==4.32.5'], bin: 'schemathesis' },
} as const;

export type PythonTool = keyof typeof PYTHON_TOOLS;

function python(): string {
  for (const candidate of ['python3', 'python']) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
      if (/^Python 3\./.test(version)) return candidate;
    } catch {
      // not this one
    }
  }
  throw new Error('Python 3 is needed for the schemathesis suite (python3 with its venv module)');
}

/**
 * The path of `tool`'s executable, installing it first when needed (about 15 s). Synchronous
 * and idempotent; two processes installing at once is not supported (one test uses it).
 */
export function ensurePythonTool(tool: PythonTool): string {
  const spec = PYTHON_TOOLS[tool];
  const dir = join(TOOLS_DIR, tool);
  const ready = join(dir, 'READY');
  const want = spec.requirements.join('\n');
  const bin = join(dir, 'bin', spec.bin);
  if (existsSync(ready) && readFileSync(ready, 'utf8') === want && existsSync(bin)) return bin;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(TOOLS_DIR, { recursive: true });
  const run = (cmd: string, args: string[]): void => {
    try {
      execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      throw new Error(
        `installing ${tool} failed: ${cmd} ${args.join(' ')}: ${e.stderr?.toString().trim() || e.message}`,
      );
    }
  };
  run(python(), ['-m', 'venv', dir]);
  run(join(dir, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', ...spec.requirements]);
  writeFileSync(ready, want);
  return bin;
}

if (import.meta.main) {
  const tool = (process.argv[2] ?? 'schemathesis') as PythonTool;
  if (!(tool in PYTHON_TOOLS)) {
    process.stderr.write(`unknown tool ${tool}; known: ${Object.keys(PYTHON_TOOLS).join(', ')}\n`);
    process.exit(2);
  }
  process.stdout.write(`${ensurePythonTool(tool)}\n`);
}
