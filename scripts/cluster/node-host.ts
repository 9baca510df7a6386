/**
 * Host-level steps of the real node: the preflight checks that make `up --node` fail at once
 * with one line, the kernel settings it changes (recorded first, restored by the sweep), the
 * bridge, the egress guard, and the inventory of leftovers that `down` must leave at zero.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { NODE, NODE_CHAIN_PREFIXES, NODE_PATHS, NODE_SYSCTLS } from './node-layout.ts';

/** A failed precondition of `up --node`: one line saying what is missing and what to do. */
export class NodePreflightError extends Error {
  override name = 'NodePreflightError';
}

/**
 * Runs a preflight probe: `ok` when it exits 0, `out` its output, or why it could not run at all
 * (not on PATH, timed out), so that the preflight's one line never ends in nothing.
 */
export function runProbe(cmd: string, args: string[], timeoutMs = 15_000): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? `${cmd} is not installed or not on PATH (${process.env.PATH ?? ''})`
        : code === 'ETIMEDOUT'
          ? `${cmd} did not answer within ${timeoutMs / 1000} s`
          : `${cmd} cannot run: ${r.error.message}`;
    return { ok: false, out: why };
  }
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** Throws {@link NodePreflightError} unless this process may start a node (checked first). */
export function assertRoot(what = 'up --node'): void {
  if (process.platform !== 'linux')
    throw new NodePreflightError(`${what} needs Linux, not ${process.platform}`);
  if (process.getuid?.() !== 0) {
    const does = what === 'up --node' ? 'creates' : 'removes';
    throw new NodePreflightError(
      `${what} needs root: it ${does} a bridge, iptables chains, mounts and cgroups (the plain \`up\` does not)`,
    );
  }
}

/**
 * Throws {@link NodePreflightError} when the kernel lacks what the node needs: overlayfs,
 * bridge netfilter, veth and bridge links, cgroups with the memory, cpu and pids controllers,
 * working iptables; or when the pod or Service range collides with this machine's networks.
 */
export function assertKernel(): void {
  const filesystems = readFileSync('/proc/filesystems', 'utf8');
  if (!/\boverlay\b/.test(filesystems)) {
    runProbe('modprobe', ['overlay']);
    if (!/\boverlay\b/.test(readFileSync('/proc/filesystems', 'utf8')))
      throw new NodePreflightError('the kernel has no overlayfs (containerd unpacks images onto it)');
  }
  if (!existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) {
    runProbe('modprobe', ['br_netfilter']);
    if (!existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables'))
      throw new NodePreflightError(
        'the kernel has no br_netfilter (Services between pods on the bridge need it)',
      );
  }
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').split(/\s+/)
    : [];
  for (const controller of ['memory', 'cpu', 'pids']) {
    if (!existsSync(`/sys/fs/cgroup/${controller}`) && !v2.includes(controller))
      throw new NodePreflightError(
        `no ${controller} cgroup controller (the kubelet needs memory, cpu and pids)`,
      );
  }
  const probe = runProbe('ip', ['link', 'add', 'kw-probe0', 'type', 'veth', 'peer', 'name', 'kw-probe1']);
  runProbe('ip', ['link', 'del', 'kw-probe0']);
  if (!probe.ok) throw new NodePreflightError(`cannot create a veth pair (pods need them): ${probe.out}`);
  const bridge = runProbe('ip', ['link', 'add', 'kw-probe2', 'type', 'bridge']);
  runProbe('ip', ['link', 'del', 'kw-probe2']);
  if (!bridge.ok) throw new NodePreflightError(`cannot create a bridge: ${bridge.out}`);
  const ipt = runProbe('iptables', ['-t', 'nat', '-S', 'POSTROUTING']);
  if (!ipt.ok)
    throw new NodePreflightError(`iptables does not work (kube-proxy needs it): ${ipt.out.split('\n')[0]}`);
  const clash = rangeClash(runProbe('ip', ['-4', 'route', 'show', 'table', 'all']).out);
  if (clash) throw new NodePreflightError(clash);
}

/** The first route of this machine that overlaps the pod or Service range, as a message; else null. */
export function rangeClash(routes: string): string | null {
  for (const line of routes.split('\n')) {
    const [dst = '', ...rest] = line.trim().split(/\s+/);
    if (
      dst === '' ||
      dst === 'default' ||
      dst === 'broadcast' ||
      dst === 'local' ||
      rest.includes(NODE.bridge)
    )
      continue;
    if (!/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dst)) continue;
    for (const range of [NODE.podCidr, NODE.serviceCidr]) {
      if (overlaps(dst.includes('/') ? dst : `${dst}/32`, range))
        return `${range} (the node's ${range === NODE.podCidr ? 'pod' : 'Service'} range) overlaps this machine's route ${line.trim()}`;
    }
  }
  return null;
}

function overlaps(a: string, b: string): boolean {
  const parse = (cidr: string): [number, number] => {
    const [ip = '', bits = '32'] = cidr.split('/');
    const n = ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
    const size = 2 ** (32 - Number(bits));
    return [n - (n % size), size];
  };
  const [a0, as] = parse(a);
  const [b0, bs] = parse(b);
  return a0 < b0 + bs && b0 < a0 + as;
}

/** Records the kernel settings the node changes, once (a re-up after a crash keeps the first record). */
export function recordSysctls(): void {
  if (existsSync(NODE_PATHS.sysctlsBefore)) return;
  const lines = NODE_SYSCTLS.filter((k) => existsSync(`/proc/sys/${k}`)).map(
    (k) => `${k} ${readFileSync(`/proc/sys/${k}`, 'utf8').trim()}`,
  );
  writeFileSync(NODE_PATHS.sysctlsBefore, `${lines.join('\n')}\n`, { mode: 0o600 });
}

/** Writes one kernel setting (`net/ipv4/ip_forward`, say). */
export function setSysctl(key: string, value: string): void {
  writeFileSync(`/proc/sys/${key}`, value);
}

/** The bridge pods attach to, with the node's address: before the apiserver, which binds to it. */
export function createBridge(): void {
  execFileSync('ip', ['link', 'add', NODE.bridge, 'type', 'bridge']);
  execFileSync('ip', ['addr', 'add', `${NODE.nodeIp}/24`, 'dev', NODE.bridge]);
  execFileSync('ip', ['link', 'set', NODE.bridge, 'up']);
}

/** Name of the egress guard's chain (mangle table). */
export const EGRESS_CHAIN = 'KEYWARD-NODE-EGRESS';

/**
 * The network rule of this machine: pods reach nothing beyond the node. Every packet forwarded
 * from the bridge to another interface is dropped, in the mangle table so that no rule of
 * kube-proxy's (filter table) can accept it first. Pod to pod, pod to Service and pod to node
 * stay open; CoreDNS runs on the host network, so only its own queries reach the machine's
 * resolver.
 */
export function installEgressGuard(): void {
  const ipt = (...args: string[]) => execFileSync('iptables', ['-w', '5', '-t', 'mangle', ...args]);
  ipt('-N', EGRESS_CHAIN);
  ipt('-A', EGRESS_CHAIN, '-i', NODE.bridge, '-o', NODE.bridge, '-j', 'RETURN');
  ipt(
    '-A',
    EGRESS_CHAIN,
    '-i',
    NODE.bridge,
    '-m',
    'comment',
    '--comment',
    'pods reach nothing off the node',
    '-j',
    'DROP',
  );
  ipt('-I', 'FORWARD', '1', '-j', EGRESS_CHAIN);
}

/** True when the egress guard is in place (a test checks it rather than sending traffic off the machine). */
export function egressGuardInstalled(): boolean {
  const r = runProbe('iptables', ['-w', '5', '-t', 'mangle', '-S', 'FORWARD']);
  const chain = runProbe('iptables', ['-w', '5', '-t', 'mangle', '-S', EGRESS_CHAIN]);
  return (
    r.out.split('\n')[1]?.includes(`-j ${EGRESS_CHAIN}`) === true && /-i kw-node0 .*-j DROP/.test(chain.out)
  );
}

/**
 * What a node left on this machine, one line per thing (empty: nothing). `down` and the tests
 * hold it to zero.
 */
export function nodeLeftovers(): string[] {
  const out: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(`${NODE.run}/`) || cmd.includes(`${NODE.root}/`))
        out.push(`process ${entry}: ${cmd.slice(0, 100)}`);
    } catch {
      // gone
    }
  }
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (
      point &&
      (point.startsWith(NODE.root) || point.startsWith(NODE.run) || point.startsWith('/tmp/containerd-mount'))
    )
      out.push(`mount ${point}`);
  }
  if (runProbe('ip', ['link', 'show', NODE.bridge]).ok) out.push(`link ${NODE.bridge}`);
  for (const family of ['iptables-save', 'ip6tables-save']) {
    const saved = runProbe(family, []).out;
    for (const line of saved.split('\n')) {
      if (NODE_CHAIN_PREFIXES.some((p) => line.startsWith(`:${p}`)))
        out.push(`${family.replace('-save', '')} chain ${line.split(' ')[0]?.slice(1)}`);
    }
  }
  for (const hierarchy of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
    if (existsSync(`/sys/fs/cgroup/${hierarchy}/kubepods`))
      out.push(`cgroup /sys/fs/cgroup/${hierarchy}/kubepods`);
  }
  if (existsSync(NODE.root)) out.push(`folder ${NODE.root}`);
  for (const path of ['/var/lib/kubelet/device-plugins/kubelet.sock', '/run/containerd/s']) {
    if (existsSync(path) && (!path.endsWith('/s') || readdirSync(path).length > 0)) out.push(`file ${path}`);
  }
  if (existsSync('/var/log/containers')) {
    for (const name of readdirSync('/var/log/containers')) out.push(`file /var/log/containers/${name}`);
  }
  return out;
}
