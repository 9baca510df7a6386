import { randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { wrapMaterial } from '../engine/crypto/wrap.ts';
import { createKeyRecord } from '../engine/keys/lifecycle.ts';
import {
  MASTER_KEY_ENTRY,
  masterKeysFromSecret,
  needsRewrap,
  rewrapStored,
} from '../engine/kube/master-key-secret.ts';
import { encodeMaterialSecret, type StoredKey } from '../engine/kube/material-secret.ts';
import { rotateOrRetireStep } from './master-key.ts';

const log = pino({ level: 'silent' });

function masterSecret(annotations: Record<string, string> = {}): V1Secret {
  return {
    metadata: { name: 'keyward-master-key', resourceVersion: '1', annotations },
    data: { [MASTER_KEY_ENTRY]: randomBytes(32).toString('base64') },
  };
}

function storedUnder(secret: V1Secret): StoredKey {
  const set = masterKeysFromSecret(secret);
  const wrapped = wrapMaterial(set, { store: 'ns', name: 'k', usage: 'AES256', version: 1 }, randomBytes(32));
  return {
    record: createKeyRecord(
      {
        namespace: 'ns',
        name: 'k',
        spec: {
          usage: 'AES256',
          convergent: false,
          boundary: 'Global',
          rotation: { enabled: true, periodDays: 90 },
          memo: '',
        },
        firstVersion: { version: 1, createdTime: 1, wrapped: wrapped.toString('base64') },
      },
      1,
    ),
  };
}

/** Runs one step, applying its write to `secret` as the apiserver would. */
async function step(
  secret: V1Secret,
  material: StoredKey[] | undefined,
): Promise<{ secret: V1Secret; wrote: boolean }> {
  let next = secret;
  const wrote = await rotateOrRetireStep(
    { set: masterKeysFromSecret(secret), secret },
    material?.map((m) => encodeMaterialSecret('op', m) as V1Secret),
    async (s) => {
      next = {
        ...s,
        metadata: { ...s.metadata, resourceVersion: String(Number(s.metadata?.resourceVersion) + 1) },
      };
    },
    log,
  );
  return { secret: next, wrote };
}

describe('cluster master-key rotation, one resumable step at a time', () => {
  it('adds a version for a new annotation value once, re-wraps, and retires the old version only when unused', async () => {
    let secret = masterSecret({ 'keyward.io/rotate-master-key': 'r1' });
    const k = storedUnder(secret);
    ({ secret } = await step(secret, [k]));
    const set = masterKeysFromSecret(secret);
    expect(set.versions).toEqual([1, 2]);
    expect(set.current).toBe(2);
    expect(secret.metadata?.annotations?.['keyward.io/master-key-rotated']).toBe('r1');
    // Run again (a restarted operator): the request is handled; version 1 is still in use.
    const again = await step(secret, [k]);
    expect(again.wrote).toBe(false);
    // Re-wrapped under version 2, the material unwraps the same; then version 1 is retired.
    expect(needsRewrap(k, set)).toBe(true);
    const rewrapped = rewrapStored(k, set);
    expect(needsRewrap(rewrapped, set)).toBe(false);
    expect(Object.keys(rewrapped.masterKeyChecks ?? {})).toEqual(['2']);
    const retired = await step(secret, [rewrapped]);
    expect(retired.wrote).toBe(true);
    expect(masterKeysFromSecret(retired.secret).versions).toEqual([2]);
  });

  it('retires nothing while the material cache is not synced or holds a record it cannot read', async () => {
    let secret = masterSecret({ 'keyward.io/rotate-master-key': 'r1' });
    ({ secret } = await step(secret, []));
    expect((await step(secret, undefined)).wrote).toBe(false);
    const unreadable = { metadata: { name: 'kkey.ns.bad' }, data: { 'record.json': 'not json' } } as V1Secret;
    const wrote = await rotateOrRetireStep(
      { set: masterKeysFromSecret(secret), secret },
      [unreadable],
      async () => {
        throw new Error('must not write');
      },
      log,
    );
    expect(wrote).toBe(false);
  });
});
