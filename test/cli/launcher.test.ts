/**
 * The `keyward` command on an old Node (issue #16): Node 20 cannot load the TypeScript CLI, so the
 * package's bin is a plain-JavaScript launcher that runs the CLI with the project's pinned Node 24,
 * or says in one line what to do. Run with a real Node older than 24 from PATH (the machine's
 * system Node); skipped, and says so, where there is none.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const LAUNCHER = join(import.meta.dirname, '../../engine/cli/keyward.mjs');

/** A `node` on PATH older than 24, outside node_modules (the pinned one is 24). */
function oldNode(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir.includes('node_modules')) continue;
    const candidate = join(dir, 'node');
    if (!existsSync(candidate)) continue;
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
      if (Number(version.slice(1).split('.')[0]) < 24) return candidate;
    } catch {
      // not runnable
    }
  }
  return undefined;
}

const old = oldNode();

describe('the keyward launcher', () => {
  it('is what package.json names as the keyward command', () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8'));
    expect(join(import.meta.dirname, '../..', pkg.bin.keyward)).toBe(LAUNCHER);
  });

  it('runs the CLI in-process on Node 24', () => {
    const r = spawnSync(process.execPath, [LAUNCHER, '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('0.1.0');
  });

  it.skipIf(old === undefined)('on an old Node, finds the pinned Node 24 and runs the CLI with it', () => {
    const r = spawnSync(old!, [LAUNCHER, 'key', 'create', '1bad', '--usage', 'AES256'], { encoding: 'utf8' });
    // The real CLI ran: its own one-line error, not ERR_UNKNOWN_FILE_EXTENSION.
    expect(r.stderr).toBe('keyward: INVALID_ARGUMENT: name must start with a letter (field name)\n');
    expect(r.status).toBe(1);
  });

  it.skipIf(old === undefined)('on an old Node, the CLI process loads no TypeScript stripper either', () => {
    // Each process reports at exit whether it loaded Node's stripper (engine/boot says why it must not).
    const probe =
      'data:text/javascript,' +
      encodeURIComponent(
        "process.on('exit', () => process.stderr.write('STRIPPER ' + process.version + ' ' + process.moduleLoadList.some((m) => m.includes('amaro')) + '\\n'));",
      );
    const r = spawnSync(old!, [LAUNCHER, '--version'], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: `--import=${probe}` },
    });
    expect(r.stdout.trim()).toBe('0.1.0');
    const reports = [...r.stderr.matchAll(/^STRIPPER (v\d+)\S* (true|false)$/gm)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    // The CLI on the pinned Node 24 (it exits first), and the launcher on the old Node.
    expect(reports).toHaveLength(2);
    expect(reports[0]).toBe('v24 false');
    expect(reports[1]).toMatch(/^v2[0-3] false$/);
  });

  it.skipIf(old === undefined)(
    'a launcher started by the launcher on an old Node stops with one line',
    () => {
      const r = spawnSync(old!, [LAUNCHER, '--version'], {
        encoding: 'utf8',
        env: { ...process.env, KEYWARD_LAUNCHER: '1' },
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^keyward: needs Node 24 or later/);
    },
  );

  it.skipIf(old === undefined)('on an old Node without the pinned one, says so in one line', () => {
    const r = spawnSync(old!, [LAUNCHER, '--version'], {
      encoding: 'utf8',
      env: { ...process.env, KEYWARD_NO_PINNED_NODE: '1' },
    });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^keyward: needs Node 24 or later \(this is Node 2\d\.[\d.]+\); run "npm ci".*npx keyward/,
    );
  });
});
