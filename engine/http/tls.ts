/**
 * TLS for the standalone server. `--tls auto` makes a self-signed serving certificate with
 * node-forge (Node cannot create X.509 certificates) on first start and keeps it in
 * `<data-dir>/tls/`, so restarts serve the same certificate and clients that pinned or trusted
 * it keep working. `--tls CERT,KEY` serves given PEM files; `--tls off` serves plain HTTP and is
 * refused unless the server binds a loopback address.
 */
import { createPrivateKey, generateKeyPair, X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { KeywardError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic-write.ts';

/** A parsed `--tls` value. */
export type TlsMode = { mode: 'auto' } | { mode: 'off' } | { mode: 'files'; cert: string; key: string };

/** What the server serves with, and what to tell the user. */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** SHA-256 fingerprint of the certificate, `AA:BB:...`. */
  fingerprint256: string;
  /** Where the certificate is, for clients that must trust it. */
  certPath: string;
  /** True when this start created it. */
  created: boolean;
}

/** Parses `auto`, `off` or `CERT,KEY`. */
export function parseTlsMode(value: string): TlsMode {
  if (value === 'auto' || value === 'off') return { mode: value };
  const parts = value.split(',');
  if (parts.length === 2 && parts[0] && parts[1]) return { mode: 'files', cert: parts[0], key: parts[1] };
  throw new KeywardError('INVALID_ARGUMENT', '--tls must be auto, off, or CERT,KEY (two PEM file paths)', {
    field: 'tls',
  });
}

/** True for 127.0.0.0/8, ::1 and `localhost`: the only hosts `--tls off` may bind. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '[::1]';
}

/** The certificate files of `--tls auto` inside the data dir. */
export function autoCertPaths(dataDir: string): { cert: string; key: string } {
  return { cert: join(dataDir, 'tls', 'cert.pem'), key: join(dataDir, 'tls', 'key.pem') };
}

function tlsFileError(path: string, reason: string): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', `TLS file ${path}: ${reason}`, { field: 'tls' });
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw tlsFileError(path, `cannot be read (${code ?? 'error'})`);
  }
}

async function readRequired(path: string): Promise<string> {
  const text = await readIfExists(path);
  if (text === undefined) throw tlsFileError(path, 'does not exist');
  return text;
}

/**
 * Parses a certificate and its private key, each error naming its file (OpenSSL's own messages
 * name neither), and checks that the key belongs to the certificate.
 */
function parsePair(cert: string, certPath: string, key: string, keyPath: string): X509Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw tlsFileError(certPath, 'is not a PEM certificate');
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw tlsFileError(keyPath, 'is not a PEM private key (or it is encrypted)');
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw tlsFileError(keyPath, `is not the private key of the certificate ${certPath}`);
  }
  return x509;
}

/** Loads the auto certificate, or creates it (valid 5 years, for localhost, loopback and `host`). */
export async function loadOrCreateAutoCert(dataDir: string, host: string): Promise<TlsMaterial> {
  const paths = autoCertPaths(dataDir);
  const [cert, key] = await Promise.all([readIfExists(paths.cert), readIfExists(paths.key)]);
  if (cert !== undefined && key !== undefined) {
    const x509 = parsePair(cert, paths.cert, key, paths.key);
    if (new Date(x509.validTo).getTime() > Date.now()) {
      return { cert, key, fingerprint256: x509.fingerprint256, certPath: paths.cert, created: false };
    }
  }
  const made = await createSelfSigned(host);
  await mkdir(join(dataDir, 'tls'), { recursive: true, mode: 0o700 });
  // The key first: a crash between the two leaves no certificate without its key.
  await writeFileAtomic(paths.key, made.key, 0o600);
  await writeFileAtomic(paths.cert, made.cert, 0o644);
  const x509 = new X509Certificate(made.cert);
  return { ...made, fingerprint256: x509.fingerprint256, certPath: paths.cert, created: true };
}

/** Reads `--tls CERT,KEY` files. */
export async function loadCertFiles(certPath: string, keyPath: string): Promise<TlsMaterial> {
  const [cert, key] = await Promise.all([readRequired(certPath), readRequired(keyPath)]);
  const x509 = parsePair(cert, certPath, key, keyPath);
  return { cert, key, fingerprint256: x509.fingerprint256, certPath, created: false };
}

/** A self-signed RSA-2048 certificate (keygen by node:crypto off the main thread, X.509 by forge). */
async function createSelfSigned(host: string): Promise<{ cert: string; key: string }> {
  const { privateKey, publicKey } = await new Promise<{ privateKey: string; publicKey: string }>(
    (resolve, reject) =>
      generateKeyPair(
        'rsa',
        {
          modulusLength: 2048,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        },
        (err, pub, priv) => (err ? reject(err) : resolve({ privateKey: priv, publicKey: pub })),
      ),
  );
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = `01${forge.util.bytesToHex(forge.random.getBytesSync(15))}`;
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + 5 * 365 * 86_400_000);
  const attrs = [
    { name: 'commonName', value: 'keyward' },
    { name: 'organizationName', value: 'Keyward (self-signed)' },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  const altNames: Array<{ type: number; value?: string; ip?: string }> = [
    { type: 2, value: 'localhost' },
    { type: 7, ip: '127.0.0.1' },
    { type: 7, ip: '::1' },
  ];
  if (host !== '' && !isLoopback(host) && host !== '0.0.0.0' && host !== '::') {
    altNames.push(isIP(host) ? { type: 7, ip: host } : { type: 2, value: host });
  }
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: privateKey };
}
