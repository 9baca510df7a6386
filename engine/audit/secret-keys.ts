/**
 * The checkpoint keys of a cluster's master-key Secret, as `kubectl get secret keyward-master-key
 * -o json` prints it (`keyward audit verify --master-key-secret FILE|-`): one per master-key
 * version the Secret holds, and the audit keys it kept for versions a rotation retired
 * (`audit.key.v<N>`, engine/kube/master-key-secret.ts). JSON only: the CLI's runtime carries no
 * YAML parser.
 */
import { readFile } from 'node:fs/promises';
import type { V1Secret } from '@kubernetes/client-node';
import { masterKeysFromSecret, retiredAuditKeysFromSecret } from '../kube/master-key-secret.ts';
import { type CheckpointKey, checkpointKeyFrom, deriveCheckpointKey } from './checkpoint-key.ts';
import { VerifyInputError } from './verify-files.ts';

/** Reads `path` (`-`: standard input) as a master-key Secret and returns its checkpoint keys. */
export async function readSecretCheckpointKeys(path: string): Promise<CheckpointKey[]> {
  const name = path === '-' ? 'standard input' : path;
  let text: string;
  try {
    text = path === '-' ? await readStdin() : await readFile(path, 'utf8');
  } catch (err) {
    throw new VerifyInputError(
      `cannot read the master-key Secret ${name} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let secret: V1Secret;
  try {
    secret = JSON.parse(text) as V1Secret;
  } catch {
    throw new VerifyInputError(
      `${name} is not JSON: give the Secret as \`kubectl get secret <name> -n <namespace> -o json\` prints it`,
    );
  }
  if (
    secret === null ||
    typeof secret !== 'object' ||
    secret.kind !== 'Secret' ||
    typeof secret.data !== 'object'
  ) {
    throw new VerifyInputError(`${name} is not a Secret with data (kubectl get secret <name> -o json)`);
  }
  try {
    const set = masterKeysFromSecret(secret);
    const retired = retiredAuditKeysFromSecret(secret);
    try {
      return await Promise.all([
        ...set.versions.map((v) => deriveCheckpointKey(set.key(v)!)),
        // checkpointKeyFrom keeps its own copy: the buffers here are zeroed below.
        ...retired.map((a) => checkpointKeyFrom(new Uint8Array(a.key), a.id)),
      ]);
    } finally {
      for (const a of retired) a.key.fill(0);
    }
  } catch (err) {
    if (err instanceof VerifyInputError) throw err;
    throw new VerifyInputError(`${name}: ${(err as Error).message}`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
