/**
 * One node per machine. The lock is a flock on /run/keyward-node/lock held by the node's
 * supervisor: a small detached shell that lives as long as the node. It
 * - holds the lock, so a second `up --node` (from any checkout) fails at once and names the
 *   holder from holder.json;
 * - is the owner of every component's watchdog, so killing it stops the node's processes;
 * - watches the owner process (the test run), and when that dies, or on SIGTERM from `down`,
 *   runs the sweep (node-sweep.sh) under the lock and exits, which releases the lock.
 * A node whose supervisor was killed leaves its host leftovers to the next `up` or `down`,
 * which sweep under the lock before anything else.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './cluster.ts';
import { NODE, NODE_PATHS } from './node-layout.ts';
import { sleep } from './proc.ts';

/** Who holds the node, as recorded in holder.json. */
export interface NodeHolder {
  supervisorPid: number;
  /** The process that ran `up --node`. */
  startedBy: number;
  /** The process whose exit tears the node down; null when started by hand. */
  ownerPid: number | null;
  /** The checkout that started it, and its cluster folder (state.json, kubeconfig). */
  repo: string;
  dir: string;
  startedAt: string;
}

/** `up --node` while another node holds the machine. */
export class NodeBusyError extends Error {
  override name = 'NodeBusyError';
  readonly holder: NodeHolder | null;
  constructor(holder: NodeHolder | null) {
    super(
      holder
        ? `a Keyward node already runs on this machine: started ${holder.startedAt} from ${holder.repo} by pid ${holder.startedBy}${
            holder.ownerPid === null ? '' : ` for the test run pid ${holder.ownerPid}`
          } (supervisor pid ${holder.supervisorPid}); stop it with \`npm run cluster -- down\` in ${holder.repo}`
        : `a Keyward node already runs on this machine (${NODE_PATHS.lock} is locked; no holder recorded yet)`,
    );
    this.holder = holder;
  }
}

const SUPERVISOR = `
exec 9>>"$KW_LOCK" || exit 1
flock -n 9 || exit 75
echo locked
exec >>"$KW_LOG" 2>&1 </dev/null
echo "$(date -u +%FT%TZ) supervisor $$ holds the node lock (owner \${KW_OWNER})"
teardown() {
  echo "$(date -u +%FT%TZ) $1: tearing the node down"
  KEYWARD_NODE_SWEEP_KEEP=$$ bash "$KW_SWEEP"
  rm -f "$KW_HOLDER"
  echo "$(date -u +%FT%TZ) node down; lock released"
  exit 0
}
trap 'teardown "SIGTERM (down)"' TERM INT
while :; do
  if [ "$KW_OWNER" != none ] && ! kill -0 "$KW_OWNER" 2>/dev/null; then teardown "owner $KW_OWNER is gone"; fi
  sleep 1 & wait $!
done
`;

/** Throws {@link NodeBusyError} when another process holds the node lock right now. */
export function assertLockFree(): void {
  if (!existsSync(NODE_PATHS.lock)) return;
  const r = spawnSync('flock', ['-n', NODE_PATHS.lock, 'true']);
  if (r.status !== 0) throw new NodeBusyError(readHolder());
}

/** Reads holder.json, or null. */
export function readHolder(): NodeHolder | null {
  try {
    return JSON.parse(readFileSync(NODE_PATHS.holder, 'utf8')) as NodeHolder;
  } catch {
    return null;
  }
}

/** True when `pid` is a live node supervisor (its command line says so). */
export function isSupervisor(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('keyward-node-supervisor');
  } catch {
    return false;
  }
}

/** The sweep script: the node's own copy (written at up), else this checkout's. */
export function sweepScript(): string {
  return existsSync(NODE_PATHS.sweepScript)
    ? NODE_PATHS.sweepScript
    : join(REPO_ROOT, 'scripts', 'cluster', 'node-sweep.sh');
}

/**
 * Starts the supervisor and takes the lock. Throws {@link NodeBusyError} when another holds it,
 * unless `waitMs` is given: then it retries until the lock is free or the time is up.
 */
export async function acquireNodeLock(options: {
  ownerPid: number | null;
  dir: string;
  waitMs?: number;
  onWait?: (holder: NodeHolder | null) => void;
}): Promise<NodeHolder> {
  mkdirSync(NODE.run, { recursive: true, mode: 0o700 });
  // The sweep must outlive this checkout (a CI clone may be deleted while its node runs).
  copyFileSync(join(REPO_ROOT, 'scripts', 'cluster', 'node-sweep.sh'), NODE_PATHS.sweepScript);
  const deadline = Date.now() + (options.waitMs ?? 0);
  let told = false;
  for (;;) {
    const pid = await startSupervisor(options.ownerPid);
    if (pid !== null) {
      const holder: NodeHolder = {
        supervisorPid: pid,
        startedBy: process.pid,
        ownerPid: options.ownerPid,
        repo: REPO_ROOT,
        dir: options.dir,
        startedAt: new Date().toISOString(),
      };
      writeFileSync(NODE_PATHS.holder, `${JSON.stringify(holder, null, 2)}\n`, { mode: 0o600 });
      return holder;
    }
    const holder = readHolder();
    if (Date.now() >= deadline) throw new NodeBusyError(holder);
    if (!told) options.onWait?.(holder);
    told = true;
    await sleep(2000);
  }
}

/** Resolves with the supervisor's pid once it holds the lock, or null when the lock is taken. */
function startSupervisor(ownerPid: number | null): Promise<number | null> {
  const log = openSync(join(NODE.run, 'supervisor.log'), 'a', 0o600);
  try {
    const child = spawn('bash', ['-c', SUPERVISOR, 'keyward-node-supervisor'], {
      detached: true,
      stdio: ['ignore', 'pipe', log],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        KW_LOCK: NODE_PATHS.lock,
        KW_LOG: join(NODE.run, 'supervisor.log'),
        KW_SWEEP: NODE_PATHS.sweepScript,
        KW_HOLDER: NODE_PATHS.holder,
        KW_OWNER: ownerPid === null ? 'none' : String(ownerPid),
      },
    });
    return new Promise((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('locked')) {
          child.stdout?.destroy();
          child.unref();
          resolve(child.pid ?? null);
        }
      });
      child.once('exit', (code) =>
        code === 75 ? resolve(null) : reject(new Error(`node supervisor exited ${code}`)),
      );
      child.once('error', reject);
    });
  } finally {
    closeSync(log);
  }
}

/**
 * Tears the node down under the lock: through its supervisor when it lives (SIGTERM; it sweeps
 * and exits), else by running the sweep ourselves through flock. Resolves when done.
 */
export async function sweepUnderLock(timeoutMs = 300_000): Promise<string> {
  const holder = readHolder();
  if (holder && isSupervisor(holder.supervisorPid)) {
    try {
      process.kill(holder.supervisorPid, 'SIGTERM');
    } catch {
      // it died meanwhile
    }
    const deadline = Date.now() + timeoutMs;
    while (isSupervisor(holder.supervisorPid)) {
      if (Date.now() > deadline)
        throw new Error(`the node supervisor ${holder.supervisorPid} did not finish its teardown`);
      await sleep(200);
    }
    // It removes holder.json as its teardown's last step. Still there: it died instead (a kill -9
    // racing with this down, say), and the sweep below does the work.
    if (readHolder()?.supervisorPid !== holder.supervisorPid)
      return `supervisor ${holder.supervisorPid} tore the node down`;
  }
  if (!existsSync(NODE.run)) mkdirSync(NODE.run, { recursive: true, mode: 0o700 });
  const r = spawnSync(
    'flock',
    ['-w', String(Math.ceil(timeoutMs / 1000)), NODE_PATHS.lock, 'bash', sweepScript()],
    {
      encoding: 'utf8',
      timeout: timeoutMs + 10_000,
    },
  );
  if (r.status !== 0)
    throw new Error(`node sweep failed (${r.status}): ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
  rmSync(NODE_PATHS.holder, { force: true });
  return r.stdout.trim();
}

/** Runs the sweep while this process's supervisor holds the lock (leftovers of a crashed node). */
export function sweepAsHolder(supervisorPid: number): string {
  const r = spawnSync('bash', [NODE_PATHS.sweepScript], {
    encoding: 'utf8',
    env: { ...process.env, KEYWARD_NODE_SWEEP_KEEP: String(supervisorPid) },
    timeout: 300_000,
  });
  if (r.status !== 0)
    throw new Error(`node sweep failed (${r.status}): ${r.stderr.trim().split('\n').pop()}`);
  return r.stdout.trim();
}
