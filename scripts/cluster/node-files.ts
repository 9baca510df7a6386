/**
 * The files the real node's components read, written at each `up --node`: the node's CA and the
 * apiserver's kubelet-client certificate, the ServiceAccount signing keys, one static token per
 * component identity, the CNI config, and the admin kubeconfig.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { cniConfig, tokenFile } from './node-config.ts';
import { NODE_PATHS } from './node-layout.ts';
import { makeCa, makeClientCert } from './node-pki.ts';

/** Keys, certificates, tokens and configs the components read; returns their paths and the tokens. */
export function writeNodeFiles() {
  const p = (name: string) => join(NODE_PATHS.pki, name);
  const ca = makeCa('keyward-node-ca');
  const client = makeClientCert(ca, 'kube-apiserver-kubelet-client', ['system:masters']);
  const sa = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const write = (path: string, text: string) => writeFileSync(path, text, { mode: 0o600 });
  write(p('ca.crt'), ca.cert);
  write(p('ca.key'), ca.key);
  write(p('apiserver-kubelet-client.crt'), client.cert);
  write(p('apiserver-kubelet-client.key'), client.key);
  write(p('sa.pub'), sa.publicKey);
  write(p('sa.key'), sa.privateKey);
  const token = () => randomBytes(32).toString('hex');
  const tokensByName = {
    admin: token(),
    controllerManager: token(),
    scheduler: token(),
    kubelet: token(),
    proxy: token(),
  };
  const tokens = join(NODE_PATHS.config, 'tokens.csv');
  write(tokens, tokenFile(tokensByName));
  writeFileSync(join(NODE_PATHS.cniConf, '10-keyward.conflist'), cniConfig(), { mode: 0o644 });
  return {
    tokens,
    tokensByName,
    adminToken: tokensByName.admin,
    saPublic: p('sa.pub'),
    saPrivate: p('sa.key'),
    kubeletClientCert: p('apiserver-kubelet-client.crt'),
    kubeletClientKey: p('apiserver-kubelet-client.key'),
  };
}

/** The admin kubeconfig of a node (token auth, the apiserver's CA inline). */
export function adminKubeconfig(state: { server: string; caPem: string; token: string }): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'keyward-node',
        cluster: {
          server: state.server,
          'certificate-authority-data': Buffer.from(state.caPem).toString('base64'),
        },
      },
    ],
    users: [{ name: 'keyward-admin', user: { token: state.token } }],
    contexts: [
      {
        name: 'keyward-node',
        context: { cluster: 'keyward-node', user: 'keyward-admin', namespace: 'default' },
      },
    ],
    'current-context': 'keyward-node',
  });
}
