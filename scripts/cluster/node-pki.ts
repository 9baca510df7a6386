/**
 * The node's small PKI: a CA that the kubelet trusts for client certificates, and the client
 * certificate the apiserver presents to the kubelet (logs, exec, port-forward). Keys come from
 * node:crypto; node-forge writes the X.509 certificates, which Node cannot create.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

/** PEM certificate and key. */
export interface CertPair {
  cert: string;
  key: string;
}

function keyPair(): {
  forgeKey: forge.pki.rsa.PrivateKey;
  forgePublic: forge.pki.rsa.PublicKey;
  pem: string;
} {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const forgeKey = forge.pki.privateKeyFromPem(privateKey);
  const forgePublic = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  return { forgeKey, forgePublic, pem: privateKey };
}

function baseCert(publicKey: forge.pki.rsa.PublicKey, cn: string, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // A positive serial: the first byte's high bit clear.
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * 86_400_000);
  cert.setSubject([{ name: 'commonName', value: cn }]);
  return cert;
}

/** A self-signed CA (1 year; the node is rebuilt far more often). */
export function makeCa(
  cn: string,
): CertPair & { forgeCert: forge.pki.Certificate; forgeKey: forge.pki.rsa.PrivateKey } {
  const k = keyPair();
  const cert = baseCert(k.forgePublic, cn, 365);
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(k.forgeKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: k.pem, forgeCert: cert, forgeKey: k.forgeKey };
}

/** A client certificate signed by `ca`, with common name `cn` and organisations `groups`. */
export function makeClientCert(
  ca: { forgeCert: forge.pki.Certificate; forgeKey: forge.pki.rsa.PrivateKey },
  cn: string,
  groups: string[] = [],
): CertPair {
  const k = keyPair();
  const cert = baseCert(k.forgePublic, cn, 365);
  cert.setSubject([
    { name: 'commonName', value: cn },
    ...groups.map((g) => ({ name: 'organizationName', value: g })),
  ]);
  cert.setIssuer(ca.forgeCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
  ]);
  cert.sign(ca.forgeKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: k.pem };
}
