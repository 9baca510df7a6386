/**
 * A private etcd + kube-apiserver (scripts/cluster `up`) started with an EncryptionConfiguration
 * whose first provider for Secrets is the Keyward KMS v2 plugin, for the suites and the bench
 * that restart the apiserver and stop the plugin (so they never touch the run's shared cluster).
 *
 * `up` knows no restart, so a restart reads the running apiserver's own command line from /proc,
 * stops its process group, and starts the same command again in a new group watched by the test
 * process: if the test process dies, the apiserver stops too.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { BIN_DIR, type ClusterState, down, up } from '../../scripts/cluster/cluster.ts';
import { groupMembers, httpGet, isGroupAlive, killGroup } from '../../scripts/cluster/proc.ts';

/** The built kubectl and etcdctl (scripts/cluster/build.sh). */
export const KUBECTL = join(BIN_DIR, 'kubectl');
export const ETCDCTL = join(BIN_DIR, 'etcdctl');

/** An EncryptionConfiguration for Secrets: Keyward's KMS v2 provider first, identity after. */
export function encryptionConfig(providerName: string, socketPath: string, timeout = '3s'): string {
  return stringify({
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: [
      {
        resources: ['secrets'],
        providers: [
          { kms: { apiVersion: 'v2', name: providerName, endpoint: `unix://${socketPath}`, timeout } },
          { identity: {} },
        ],
      },
    ],
  });
}

/** The same EncryptionConfiguration without KMS: Secrets stored as they are (the baseline). */
export function identityConfig(): string {
  return stringify({
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: [{ resources: ['secrets'], providers: [{ identity: {} }] }],
  });
}

/** Output of a finished command. */
export interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function run(
  bin: string,
  args: readonly string[],
  input?: string | Buffer,
  timeoutMs = 60_000,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      bin,
      args,
      { encoding: 'buffer', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(error);
          return;
        }
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr: stderr.toString('utf8') });
      },
    );
    // A command that exits before reading its input must not crash the test with EPIPE.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

// Runs the apiserver and stops it when the test process ($1) is gone or the group is signalled.
const WATCH = `
owner="$1"; shift
"$@" & child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
while kill -0 "$child" 2>/dev/null; do
  if ! kill -0 "$owner" 2>/dev/null; then kill -TERM "$child"; sleep 10; kill -KILL "$child" 2>/dev/null; exit 0; fi
  sleep 1 & wait $!
done
`;

/** See the module comment. */
export class KmsControlPlane {
  readonly state: ClusterState;
  readonly #dir: string;
  #apiserverPgid: number;
  #apiserverArgs: string[] | undefined;

  private constructor(dir: string, state: ClusterState) {
    this.#dir = dir;
    this.state = state;
    this.#apiserverPgid = state.apiserver.pgid;
  }

  /** Starts etcd and an apiserver with `encryptionConfigYaml`; the plugin must already serve. */
  static async start(dir: string, encryptionConfigYaml: string): Promise<KmsControlPlane> {
    const configPath = join(dir, 'encryption-config.yaml');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(configPath, encryptionConfigYaml, { mode: 0o600 });
    const state = await up({
      dir,
      ownerPid: process.pid,
      apiserverArgs: [`--encryption-provider-config=${configPath}`],
    });
    return new KmsControlPlane(dir, state);
  }

  /** kubectl against this control plane. */
  kubectl(args: readonly string[], input?: string | Buffer, timeoutMs?: number): Promise<Run> {
    return run(KUBECTL, ['--kubeconfig', this.state.kubeconfig, ...args], input, timeoutMs);
  }

  /** kubectl that must succeed; returns stdout as text. */
  async kubectlOk(args: readonly string[], input?: string | Buffer): Promise<string> {
    const r = await this.kubectl(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.toString('utf8');
  }

  /** The raw bytes etcd holds under `key` (e.g. `/registry/secrets/ns/name`). */
  async etcdGet(key: string): Promise<Buffer> {
    const r = await run(ETCDCTL, [
      `--endpoints=http://127.0.0.1:${this.state.etcd.clientPort}`,
      'get',
      key,
      '--print-value-only',
    ]);
    if (r.code !== 0) throw new Error(`etcdctl get ${key}: ${r.stderr.trim()}`);
    // etcdctl ends the value with a newline of its own.
    return r.stdout.subarray(0, r.stdout.length - 1);
  }

  /** GET a health endpoint (`/readyz`, `/readyz/kms-providers`, `/livez`) with the admin token. */
  health(path: string): Promise<{ status: number; body: string }> {
    return httpGet(`${this.state.server}${path}`, {
      token: this.state.token,
      ca: this.state.caPem,
      timeoutMs: 15_000,
    });
  }

  /** Stops the apiserver (SIGTERM to its group, SIGKILL after a grace). */
  async stopApiserver(): Promise<void> {
    this.#apiserverArgs ??= this.#readArgs();
    await killGroup(this.#apiserverPgid, BIN_DIR);
  }

  /**
   * Starts the apiserver again with the command line it had. Resolves once it serves (`/livez`),
   * or, with `ready`, once `/readyz` passes too (which needs the KMS plugin).
   */
  async startApiserver(opts: { ready: boolean; timeoutMs?: number }): Promise<number> {
    const args = this.#apiserverArgs ?? this.#readArgs();
    const log = openSync(join(this.#dir, 'logs', 'apiserver.log'), 'a', 0o600);
    const started = performance.now();
    try {
      const child = spawn(
        'bash',
        ['-c', WATCH, 'keyward-kms-apiserver', String(process.pid), join(BIN_DIR, 'kube-apiserver'), ...args],
        { detached: true, stdio: ['ignore', log, log] },
      );
      child.unref();
      if (child.pid === undefined) throw new Error('could not start kube-apiserver');
      this.#apiserverPgid = child.pid;
    } finally {
      closeSync(log);
    }
    const path = opts.ready ? '/readyz' : '/livez';
    const deadline = Date.now() + (opts.timeoutMs ?? 180_000);
    for (;;) {
      const res = await this.health(path).catch(() => null);
      if (res?.status === 200) return performance.now() - started;
      if (!isGroupAlive(this.#apiserverPgid, BIN_DIR))
        throw new Error(`kube-apiserver exited:\n${this.#logTail()}`);
      if (Date.now() > deadline)
        throw new Error(`kube-apiserver not ${path} after restart:\n${this.#logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops and starts the apiserver; see {@link startApiserver}. */
  async restartApiserver(opts: { ready: boolean }): Promise<void> {
    await this.stopApiserver();
    await this.startApiserver(opts);
  }

  /** Stops everything and removes the data. */
  async down(): Promise<void> {
    await killGroup(this.#apiserverPgid, BIN_DIR);
    await down({ dir: this.#dir });
  }

  #readArgs(): string[] {
    for (const pid of groupMembers(this.#apiserverPgid, BIN_DIR)) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
      if (argv[0]?.endsWith('/kube-apiserver')) return argv.slice(1);
    }
    throw new Error('kube-apiserver is not running');
  }

  #logTail(): string {
    try {
      return readFileSync(join(this.#dir, 'logs', 'apiserver.log'), 'utf8')
        .split('\n')
        .slice(-20)
        .join('\n');
    } catch {
      return '(no log)';
    }
  }
}
