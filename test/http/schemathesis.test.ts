/**
 * Schemathesis (PyPI) against `/openapi.json` of a real standalone server: generated valid and
 * invalid requests, undeclared methods, stateful sequences (create a key, then use it). Every
 * check runs (server errors, status codes, headers and bodies against the document, schema-valid
 * requests accepted, schema-violating ones rejected, 405 with Allow); the few exceptions are in
 * schemathesis/schemathesis.toml with their reasons. Installed by scripts/python-tools.ts on
 * first use (a pinned virtual environment under .tools/).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensurePythonTool } from '../../scripts/python-tools.ts';
import { removeDir, startTestServer, type TestServer } from './harness.ts';

/** Examples per operation and phase: about 1,500 requests in 20 to 40 s here. */
const MAX_EXAMPLES = process.env.KEYWARD_SCHEMATHESIS_EXAMPLES ?? '30';
/** A fixed seed, so a failure reproduces; set KEYWARD_SCHEMATHESIS_SEED to explore others. */
const SEED = process.env.KEYWARD_SCHEMATHESIS_SEED ?? '20261130';

let s: TestServer;
let work: string;
beforeAll(async () => {
  s = await startTestServer();
  work = await mkdtemp(join(tmpdir(), 'keyward-st-'));
});
afterAll(async () => {
  await s.stop();
  await removeDir(s.dataDir);
  await rm(work, { recursive: true, force: true });
});

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out }));
  });
}

it('finds no failure in /openapi.json against the server', { timeout: 600_000 }, async () => {
  const st = ensurePythonTool('schemathesis');
  const { code, out } = await run(
    st,
    [
      '--config-file',
      join(import.meta.dirname, 'schemathesis', 'schemathesis.toml'),
      'run',
      `${s.url}/openapi.json`,
      '--header',
      `Authorization: Bearer ${s.token}`,
      '--max-examples',
      MAX_EXAMPLES,
      '--seed',
      SEED,
      '--no-color',
    ],
    work, // its Hypothesis database and reports stay in a temp dir
  );
  const summary = out.slice(out.lastIndexOf('SUMMARY'));
  expect(code, out.length > 20_000 ? out.slice(-20_000) : out).toBe(0);
  expect(summary).toMatch(/\d+ generated, \d+ passed/);
  expect(summary).not.toMatch(/failures?,|found \d+ unique failures/);
});
