/**
 * Workloads of the node tier: pods that call the engine the way a user's application does, from
 * inside the cluster, through the Service's DNS name, with a projected ServiceAccount token of
 * audience `keyward` and the CA from the ConfigMap the chart publishes. The Keyward image is
 * their image (it has node and nothing else), and the client is the plain JavaScript below, run
 * with `node -e` through `kubectl exec`.
 */
import { stringify } from 'yaml';
import { kubectl, type RunResult } from '../cluster/harness.ts';

/** Where the workload pods mount what they need. */
export const MOUNTS = {
  token: '/var/run/keyward/sa/token',
  otherAudienceToken: '/var/run/other/sa/token',
  ca: '/var/run/keyward/ca/ca.crt',
  stopFile: '/tmp/stop',
};

/**
 * The client, as one script for `node -e`. argv[1] is a JSON request:
 * - `{mode: "call", url, method, path, body?, tokenFile}` → prints `{status, body}`;
 * - `{mode: "sigterm-probe", url, servername, ns, key, tokenFile, maxSeconds}`: one engine pod
 *   watched through its SIGTERM (see {@link SigtermProbe});
 * - `{mode: "stream", url, ns, key, tokenFile, concurrency, maxSeconds}`: encrypt then decrypt
 *   in a loop until MOUNTS.stopFile appears, retrying only what docs/api.md calls retryable, and
 *   prints `{sent, succeeded, retried, failed, wrong, errors}` (sent counts operations, retried
 *   counts extra attempts).
 * TLS is verified against the mounted CA; the token is read again for every request (the kubelet
 * rotates projected tokens).
 */
export const CLIENT = String.raw`
const https = require('node:https');
const fs = require('node:fs');
const req = JSON.parse(process.argv[1]);
const ca = fs.readFileSync(${JSON.stringify(MOUNTS.ca)});
const agent = new https.Agent({ keepAlive: true, ca, maxSockets: 8 });
function call(method, path, body) {
  const token = fs.readFileSync(req.tokenFile, 'utf8').trim();
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const r = https.request(new URL(path, req.url), {
      method, agent, timeout: req.timeoutMs || 10000, ...(req.servername ? { servername: req.servername } : {}),
      headers: { authorization: 'Bearer ' + token, ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'], close: res.headers.connection === 'close', body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    r.on('error', reject);
    r.end(data);
  });
}
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
// docs/api.md, "Retrying": connection failures before a response, 503, 429; never other 4xx.
const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH']);
async function withRetry(stats, method, path, body) {
  let delay = 100;
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) stats.retried++;
    let res;
    try {
      res = await call(method, path, body);
    } catch (err) {
      const code = err.code || (/socket hang up/.test(err.message) ? 'ECONNRESET' : 'UNKNOWN');
      stats.errors[code] = (stats.errors[code] || 0) + 1;
      if (!RETRYABLE_CODES.has(code) || attempt >= 8) return { status: 0, body: String(err.message) };
      await sleep(delay + Math.random() * delay); delay = Math.min(delay * 2, 2000);
      continue;
    }
    if ((res.status === 503 || res.status === 429) && attempt < 8) {
      stats.errors['HTTP ' + res.status] = (stats.errors['HTTP ' + res.status] || 0) + 1;
      await sleep(Math.max(delay, 1000 * Number(res.retryAfter || 0))); delay = Math.min(delay * 2, 2000);
      continue;
    }
    return res;
  }
}
async function stream() {
  const stats = { sent: 0, succeeded: 0, retried: 0, failed: 0, wrong: 0, errors: {} };
  const base = '/v1/namespaces/' + req.ns + '/keys/' + req.key;
  const deadline = Date.now() + req.maxSeconds * 1000;
  let n = 0;
  const worker = async () => {
    while (!fs.existsSync(${JSON.stringify(MOUNTS.stopFile)}) && Date.now() < deadline) {
      const plaintext = Buffer.from('order ' + n++).toString('base64');
      stats.sent++;
      const enc = await withRetry(stats, 'POST', base + '/encrypt', { plaintext });
      if (enc.status !== 200) { stats.failed++; stats.errors['final ' + enc.status] = (stats.errors['final ' + enc.status] || 0) + 1; continue; }
      stats.succeeded++;
      stats.sent++;
      const dec = await withRetry(stats, 'POST', base + '/decrypt', { ciphertext: JSON.parse(enc.body).ciphertext });
      if (dec.status !== 200) { stats.failed++; stats.errors['final ' + dec.status] = (stats.errors['final ' + dec.status] || 0) + 1; continue; }
      stats.succeeded++;
      if (JSON.parse(dec.body).plaintext !== plaintext) stats.wrong++;
    }
  };
  await Promise.all(Array.from({ length: req.concurrency }, worker));
  return stats;
}
// Watches one engine pod (by its address) through its SIGTERM: readiness and an encrypt every
// 100 ms, until the pod refuses connections for a second.
async function sigtermProbe() {
  const start = Date.now();
  const base = '/v1/namespaces/' + req.ns + '/keys/' + req.key;
  const out = { firstNotReady: null, lastEncryptOk: null, okAfterNotReady: 0, okAfterNotReadyWithClose: 0, failuresWhileServing: 0, firstRefused: null };
  let refusedInARow = 0;
  while (Date.now() - start < req.maxSeconds * 1000 && refusedInARow < 10) {
    const t = Date.now() - start;
    const ready = await call('GET', '/readyz').catch((e) => ({ status: 0, error: e.code }));
    if (ready.status !== 200 && ready.status !== 0 && out.firstNotReady === null) out.firstNotReady = t;
    const enc = await call('POST', base + '/encrypt', { plaintext: 'aGk=' }).catch((e) => ({ status: 0, error: e.code }));
    if (enc.status === 200) {
      refusedInARow = 0;
      out.lastEncryptOk = Date.now() - start;
      if (out.firstNotReady !== null) { out.okAfterNotReady++; if (enc.close) out.okAfterNotReadyWithClose++; }
    } else if (enc.status === 0) {
      refusedInARow++;
      if (out.firstRefused === null) out.firstRefused = t;
    } else if (out.firstRefused === null) {
      out.failuresWhileServing++;
    }
    await sleep(100);
  }
  return out;
}
(async () => {
  const out = req.mode === 'stream' ? await stream() : req.mode === 'sigterm-probe' ? await sigtermProbe() : await call(req.method, req.path, req.body).catch((e) => ({ status: 0, body: String(e.message) }));
  process.stdout.write(JSON.stringify(out) + '\n');
  agent.destroy();
})();
`;

/** A long-running workload pod in `namespace` with ServiceAccount `sa` (the Keyward image, idle). */
export function workloadPod(
  namespace: string,
  name: string,
  sa: string,
  image: string,
  caConfigMap: string,
): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: name } },
    spec: {
      serviceAccountName: sa,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 1,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'client',
          image,
          imagePullPolicy: 'Never',
          command: [
            '/usr/local/bin/node',
            '-e',
            "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1 << 30);",
          ],
          securityContext: {
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'] },
          },
          volumeMounts: [
            { name: 'keyward-token', mountPath: '/var/run/keyward/sa', readOnly: true },
            { name: 'other-token', mountPath: '/var/run/other/sa', readOnly: true },
            { name: 'keyward-ca', mountPath: '/var/run/keyward/ca', readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        {
          name: 'keyward-token',
          projected: {
            sources: [
              { serviceAccountToken: { audience: 'keyward', expirationSeconds: 3600, path: 'token' } },
            ],
          },
        },
        {
          name: 'other-token',
          projected: {
            sources: [
              { serviceAccountToken: { audience: 'not-keyward', expirationSeconds: 3600, path: 'token' } },
            ],
          },
        },
        { name: 'keyward-ca', configMap: { name: caConfigMap } },
        { name: 'tmp', emptyDir: { sizeLimit: '1Mi' } },
      ],
    },
  });
}

/** Runs the client in `pod` with `request`; resolves with its JSON answer. */
export async function runClient<T>(
  namespace: string,
  pod: string,
  request: object,
  timeoutMs = 60_000,
): Promise<T> {
  const res: RunResult = await kubectl(
    ['exec', '-n', namespace, pod, '--', '/usr/local/bin/node', '-e', CLIENT, JSON.stringify(request)],
    { timeoutMs },
  );
  const line = res.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as T;
}

/** A one-request answer of the client. */
export interface CallResult {
  status: number;
  body: string;
}

/** What the SIGTERM probe saw, in ms from its start. */
export interface SigtermProbe {
  firstNotReady: number | null;
  lastEncryptOk: number | null;
  okAfterNotReady: number;
  okAfterNotReadyWithClose: number;
  failuresWhileServing: number;
  firstRefused: number | null;
}

/** What the stream mode counted. */
export interface StreamStats {
  sent: number;
  succeeded: number;
  retried: number;
  failed: number;
  wrong: number;
  errors: Record<string, number>;
}
