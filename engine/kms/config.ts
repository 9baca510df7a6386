/**
 * The flags of `keyward kms-plugin`, checked into one config. Every mistake is a one-line Error
 * naming the flag. Pure apart from reading the CA file and checking the token file exists, so
 * that a bad path stops the start instead of showing up as an unhealthy plugin.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, normalize } from 'node:path';
import { MAX_NONCE_BUDGET } from '../keys/nonce-budget.ts';
import { validateKeyName } from '../keys/spec.ts';
import { errnoCode } from '../store/errno.ts';
import { validateNamespace } from '../store/namespace.ts';
import type { TokenSource } from './remote-backend.ts';

/** Flags as commander hands them over. */
export interface KmsPluginFlags {
  listen?: string;
  key?: string;
  dataDir?: string;
  addr?: string;
  tokenFile?: string;
  caFile?: string;
  timeout?: string;
  stateDir?: string;
  nonceBudget?: string;
}

/** What `runKmsPlugin` needs. */
export interface KmsPluginConfig {
  socketPath: string;
  namespace: string;
  name: string;
  backend:
    | { kind: 'data-dir'; dataDir: string }
    | { kind: 'remote'; url: string; token: TokenSource; ca?: string; caFile?: string };
  timeoutMs: number;
  /** The `key_id` history file; undefined keeps it in memory only. */
  historyFile: string | undefined;
  /** `--data-dir`: random-nonce encryptions per key version (keyward serve's `--nonce-budget`). */
  nonceBudget?: number;
}

/** The default cap on one call to the backend (the apiserver's own default timeout is 3 s). */
export const DEFAULT_TIMEOUT = '3s';

// sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107;

/** `unix:///abs/path` (as in the apiserver's EncryptionConfiguration) to `/abs/path`. */
export function parseListen(text: string | undefined): string {
  if (text === undefined || text === '') throw new Error('--listen is required: unix:///path/to/kms.sock');
  if (!text.startsWith('unix://'))
    throw new Error(
      `--listen must be unix:///ABSOLUTE/PATH (as the apiserver's endpoint), not ${JSON.stringify(text)}`,
    );
  const path = text.slice('unix://'.length);
  if (!isAbsolute(path) || path.endsWith('/'))
    throw new Error(`--listen must name an absolute socket path after unix://, not ${JSON.stringify(path)}`);
  if (path.includes('\0')) throw new Error('--listen must not contain NUL');
  if (normalize(path) !== path)
    throw new Error(`--listen must be a normalized path, not ${JSON.stringify(path)}`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES)
    throw new Error(
      `--listen path is ${Buffer.byteLength(path)} bytes; unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}`,
    );
  return path;
}

/** `NAMESPACE/NAME` to its parts. */
export function parseKeyRef(text: string | undefined): { namespace: string; name: string } {
  if (text === undefined || text === '')
    throw new Error('--key is required: NAMESPACE/NAME (e.g. default/etcd-kek)');
  const parts = text.split('/');
  if (parts.length !== 2) throw new Error(`--key must be NAMESPACE/NAME, not ${JSON.stringify(text)}`);
  const [namespace, name] = parts as [string, string];
  try {
    validateNamespace(namespace);
  } catch (err) {
    throw new Error(`--key ${JSON.stringify(text)}: ${(err as Error).message}`);
  }
  try {
    validateKeyName(name);
  } catch (err) {
    throw new Error(`--key ${JSON.stringify(text)}: key ${(err as Error).message}`);
  }
  return { namespace, name };
}

/** Milliseconds of `--timeout`: 100ms to 60s. */
export function parseTimeout(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text.trim());
  if (!match)
    throw new Error(`--timeout must be a duration such as 500ms or 3s, not ${JSON.stringify(text)}`);
  const ms = Math.round(Number(match[1]) * (match[2] === 's' ? 1000 : 1));
  if (ms < 100 || ms > 60_000) throw new Error(`--timeout must be between 100ms and 60s, not ${text}`);
  return ms;
}

function readCa(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the CA file ${path} (${errnoCode(err)})`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    throw new Error(`the CA file ${path} holds no PEM certificate`);
  return text;
}

/** Parses `--nonce-budget`: a whole number 1..2^32. */
function parseNonceBudget(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > MAX_NONCE_BUDGET)
    throw new Error(
      `--nonce-budget must be a whole number from 1 to ${MAX_NONCE_BUDGET} (2^32), not ${text}`,
    );
  return n;
}

/** Checks the flags (and KEYWARD_ADDR / KEYWARD_TOKEN / KEYWARD_CA_FILE) into a config. */
export function resolveKmsPluginConfig(
  flags: KmsPluginFlags,
  env: Readonly<Record<string, string | undefined>> = process.env,
): KmsPluginConfig {
  const socketPath = parseListen(flags.listen);
  const { namespace, name } = parseKeyRef(flags.key);
  const timeoutMs = parseTimeout(flags.timeout ?? DEFAULT_TIMEOUT);
  const addr = flags.addr ?? (env.KEYWARD_ADDR || undefined);
  if (flags.dataDir !== undefined && flags.addr !== undefined)
    throw new Error('use either --data-dir (a local key store) or --addr (a remote engine), not both');
  if (flags.dataDir === '') throw new Error('--data-dir must not be empty');
  const stateDir = flags.stateDir === '' ? undefined : flags.stateDir;
  const historyName = `${basename(socketPath)}.key-ids.json`;

  if (flags.dataDir !== undefined) {
    if (flags.tokenFile !== undefined || flags.caFile !== undefined)
      throw new Error('--token-file and --ca-file apply to a remote engine (--addr), not to --data-dir');
    const dir = stateDir ?? join(flags.dataDir, 'kms-plugin');
    return {
      socketPath,
      namespace,
      name,
      backend: { kind: 'data-dir', dataDir: flags.dataDir },
      timeoutMs,
      historyFile: join(dir, historyName),
      ...(flags.nonceBudget === undefined ? {} : { nonceBudget: parseNonceBudget(flags.nonceBudget) }),
    };
  }
  if (flags.nonceBudget !== undefined)
    throw new Error('--nonce-budget applies to --data-dir (a remote engine counts its own)');
  if (addr === undefined)
    throw new Error(
      'choose a backend: --data-dir DIR (a local key store) or --addr URL / KEYWARD_ADDR (a remote engine)',
    );

  let token: TokenSource;
  if (flags.tokenFile !== undefined) {
    try {
      if (!statSync(flags.tokenFile).isFile()) throw new Error('not a file');
    } catch (err) {
      throw new Error(`cannot read the token file ${flags.tokenFile} (${errnoCode(err)})`);
    }
    token = { file: flags.tokenFile };
  } else if (env.KEYWARD_TOKEN) {
    token = { token: env.KEYWARD_TOKEN };
  } else {
    throw new Error('a remote engine needs a token: --token-file FILE or KEYWARD_TOKEN');
  }
  const caFile = flags.caFile ?? (env.KEYWARD_CA_FILE || undefined);
  const ca = caFile === undefined ? undefined : readCa(caFile);
  return {
    socketPath,
    namespace,
    name,
    backend: {
      kind: 'remote',
      url: addr,
      token,
      ...(ca === undefined ? {} : { ca, caFile: caFile! }),
    },
    timeoutMs,
    historyFile: stateDir === undefined ? undefined : join(stateDir, historyName),
  };
}
