// The real node itself: Ready, DNS for Services from a pod, the egress guard, the one-node lock
// and the one-line refusals of `up --node`.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { egressGuardInstalled } from '../../scripts/cluster/node-host.ts';
import { NODE } from '../../scripts/cluster/node-layout.ts';
import { readHolder } from '../../scripts/cluster/node-lock.ts';
import { kubectl } from '../cluster/harness.ts';
import {
  describeOnNode,
  keywardImage,
  nodeState,
  readyNamespace,
  uniqueName,
  waitPodsReady,
} from './harness.ts';

/**
 * Runs `npm run cluster -- <args>` (the script itself). `nonRoot` runs it in a fresh user
 * namespace, where it is uid 65534 yet still reads this checkout wherever it lives.
 */
const npmCluster = (args: string[], nonRoot = false) => {
  const argv = [process.execPath, 'scripts/cluster/main.ts', ...args];
  const [cmd, ...rest] = nonRoot ? ['unshare', '--user', ...argv] : argv;
  return spawnSync(cmd as string, rest, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 180_000 });
};

describeOnNode('the real node', () => {
  let ns = '';
  beforeAll(async () => {
    ns = await readyNamespace(uniqueName('node-facts'));
  });
  afterAll(async () => {
    if (ns) await kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
  });

  it('is Ready, runs the CoreDNS pod, and serves the API on the bridge address', async () => {
    const node = JSON.parse((await kubectl(['get', 'node', NODE.nodeName, '-o', 'json'])).stdout) as {
      status: {
        conditions: { type: string; status: string }[];
        addresses: { type: string; address: string }[];
      };
    };
    expect(node.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(node.status.addresses).toContainEqual({ type: 'InternalIP', address: NODE.nodeIp });
    expect(nodeState().server).toBe(`https://${NODE.nodeIp}:${NODE.apiPort}`);
    await waitPodsReady('kube-system', 'k8s-app=kube-dns', 60);
  });

  it('resolves Service names for pods, and pods reach the apiserver through its ClusterIP with the published CA', async () => {
    const script = `
      const dns = require('node:dns').promises;
      const https = require('node:https');
      const fs = require('node:fs');
      (async () => {
        const api = await dns.lookup('kubernetes.default.svc.${NODE.clusterDomain}');
        const short = await dns.lookup('kube-dns.kube-system.svc');
        const ca = fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt');
        const token = fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/token', 'utf8');
        const status = await new Promise((ok, fail) => https.get('https://kubernetes.default.svc/version',
          { ca, headers: { authorization: 'Bearer ' + token } }, (res) => { res.resume(); ok(res.statusCode); }).on('error', fail));
        console.log(JSON.stringify({ api: api.address, dns: short.address, status }));
      })().catch((e) => { console.log(JSON.stringify({ error: e.message })); });`;
    await kubectl([
      'run',
      'dns-check',
      '-n',
      ns,
      `--image=${keywardImage()}`,
      '--image-pull-policy=Never',
      '--restart=Never',
      '--command',
      '--',
      '/usr/local/bin/node',
      '-e',
      script,
    ]);
    await kubectl(
      ['wait', '--for=jsonpath={.status.phase}=Succeeded', 'pod/dns-check', '-n', ns, '--timeout=120s'],
      {
        timeoutMs: 130_000,
      },
    );
    const out = JSON.parse((await kubectl(['logs', 'dns-check', '-n', ns])).stdout.trim()) as Record<
      string,
      unknown
    >;
    expect(out).toEqual({ api: NODE.apiServiceIp, dns: NODE.dnsServiceIp, status: 200 });
  });

  it('keeps pods from reaching anything beyond the node (the egress guard drops forwarded packets)', () => {
    // Checked by inspection, never by sending traffic off this machine (the network rule).
    expect(egressGuardInstalled()).toBe(true);
  });

  it('refuses a second `up --node` at once, naming the holder and how to stop it', () => {
    const holder = readHolder();
    expect(holder?.supervisorPid).toBe(nodeState().node.supervisorPid);
    // The default folder (.cluster) has no node of its own, so this really tries to start one.
    const started = Date.now();
    const r = npmCluster(['up', '--node']);
    expect(r.status).toBe(1);
    const errors = r.stderr.trim().split('\n');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('a Keyward node already runs on this machine');
    expect(errors[0]).toContain(`from ${holder?.repo}`);
    expect(errors[0]).toContain('npm run cluster -- down');
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(readHolder()?.supervisorPid).toBe(holder?.supervisorPid);
  });

  it('refuses `up --node` without root at once, with one line, before touching anything', () => {
    const r = npmCluster(['up', '--node'], true);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'cluster: up --node needs root: it creates a bridge, iptables chains, mounts and cgroups (the plain `up` does not)',
    ]);
  });
});
