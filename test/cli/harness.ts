/** Real processes: `keyward serve` as a child process, and CLI commands run to completion. */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const MAIN = join(import.meta.dirname, '../../engine/cli/main.ts');

export interface ServerProcess {
  proc: ChildProcess;
  url: string;
  token: string;
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit. */
  kill9(): Promise<void>;
}

/** Starts `keyward serve --data-dir DIR --port 0 ...args` and waits for its server.json. */
export async function startServerProcess(dataDir: string, args: string[] = []): Promise<ServerProcess> {
  const infoPath = join(dataDir, 'server.json');
  const proc = spawn(
    process.execPath,
    [MAIN, 'serve', '--data-dir', dataDir, '--port', '0', '--threads', '1', ...args],
    {
      env: { ...process.env, KEYWARD_TOKEN: '', KEYWARD_ADDR: '', KEYWARD_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout!.on('data', (c) => {
    out += c;
  });
  proc.stderr!.on('data', (c) => {
    out += c;
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`serve exited: ${out}`);
    if (existsSync(infoPath)) {
      const info = JSON.parse(readFileSync(infoPath, 'utf8'));
      if (info.pid === proc.pid) {
        const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
        return {
          proc,
          url: info.url,
          token,
          output: () => out,
          stop: async () => {
            proc.kill('SIGTERM');
            await exited;
          },
          kill9: async () => {
            proc.kill('SIGKILL');
            await exited;
          },
        };
      }
    }
    if (Date.now() > deadline) throw new Error(`serve did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface CliResult {
  code: number;
  stdout: Buffer;
  stderr: string;
  /** stdout as text. */
  out: string;
}

/** Runs `keyward ARGS` with optional stdin; resolves when it exits. */
export function runCli(
  args: string[],
  opts: { input?: string | Buffer; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, KEYWARD_TOKEN: '', KEYWARD_ADDR: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    proc.stdout.on('data', (c: Buffer) => out.push(c));
    proc.stderr.on('data', (c) => {
      err += c;
    });
    proc.on('error', reject);
    proc.on('exit', (code) => {
      const stdout = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout, stderr: err, out: stdout.toString('utf8') });
    });
    proc.stdin.end(opts.input ?? '');
  });
}
