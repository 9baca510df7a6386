/**
 * Helpers of the node tier (test/node): the node's state and skip reason from the global setup,
 * namespaces that are ready for pods, and waits. kubectl and helm come from
 * test/cluster/harness.ts, which the global setup points at the node.
 */
import { randomBytes } from 'node:crypto';
import { describe, inject } from 'vitest';
import type { NodeState } from '../../scripts/cluster/node.ts';
import { kubectl, waitFor } from '../cluster/harness.ts';
import type { NodeTierContext } from './provided.ts';
import './provided.ts';

/** What the global setup found out. */
export function nodeTier(): NodeTierContext {
  return inject('keywardNode');
}

/** The node's state; throws when the tier is skipped. */
export function nodeState(): NodeState {
  const state = inject('keywardNodeState');
  if (!state) throw new Error(`no node: ${nodeTier().skip ?? 'the global setup provided none'}`);
  return state;
}

/** `describe` that is skipped, with the reason in its name, when the node tier is skipped. */
export function describeOnNode(name: string, fn: () => void): void {
  const skip = nodeTier().skip;
  describe.skipIf(skip !== null)(skip === null ? name : `${name} (skipped: ${skip})`, fn);
}

/** The Keyward image the node imported. */
export function keywardImage(): string {
  const image = nodeState().node.image;
  if (!image) throw new Error('the node was started without the Keyward image');
  return image.ref;
}

/**
 * Creates namespace `name` (or `<prefix>-<random>`) and waits until pods can be created in it:
 * its `default` ServiceAccount and `kube-root-ca.crt` exist (the controller-manager adds both).
 */
export async function readyNamespace(name: string): Promise<string> {
  await kubectl(['create', 'namespace', name]);
  await waitFor(
    `namespace ${name} ready for pods`,
    async () => {
      const sa = await kubectl(['get', 'serviceaccount', 'default', '-n', name], { allowFailure: true });
      const ca = await kubectl(['get', 'configmap', 'kube-root-ca.crt', '-n', name], { allowFailure: true });
      return sa.code === 0 && ca.code === 0 ? true : undefined;
    },
    60_000,
    250,
  );
  return name;
}

/** A fresh namespace name with a prefix. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

/** Waits until `kubectl wait` says every selected pod is Ready. */
export async function waitPodsReady(namespace: string, selector: string, timeoutS = 180): Promise<void> {
  await waitFor(
    `pods ${selector} in ${namespace}`,
    async () => {
      const got = await kubectl(['get', 'pods', '-n', namespace, '-l', selector, '-o', 'name'], {
        allowFailure: true,
      });
      return got.stdout.trim() !== '' ? true : undefined;
    },
    timeoutS * 1000,
  );
  await kubectl(
    ['wait', '--for=condition=Ready', 'pod', '-n', namespace, '-l', selector, `--timeout=${timeoutS}s`],
    {
      timeoutMs: (timeoutS + 10) * 1000,
    },
  );
}

/** helm flags that point charts/keyward at the image the node imported. */
export function chartImageValues(): string[] {
  const ref = keywardImage();
  const colon = ref.lastIndexOf(':');
  return [
    '--set',
    `image.repository=${ref.slice(0, colon)}`,
    '--set',
    `image.tag=${ref.slice(colon + 1)}`,
    '--set',
    'image.pullPolicy=Never',
  ];
}

/** Names of the pods of `namespace` that match `selector`, sorted. */
export async function podNames(namespace: string, selector: string): Promise<string[]> {
  const out = await kubectl([
    'get',
    'pods',
    '-n',
    namespace,
    '-l',
    selector,
    '-o',
    'jsonpath={.items[*].metadata.name}',
  ]);
  return out.stdout.split(/\s+/).filter(Boolean).sort();
}

/** Waits until the Key's Ready condition is True. */
export async function keyReady(namespace: string, name: string, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `Key ${namespace}/${name} Ready`,
    async () => {
      const out = await kubectl(
        [
          'get',
          'keys.keyward.io',
          name,
          '-n',
          namespace,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ],
        { allowFailure: true },
      );
      return out.stdout.trim() === 'True' ? true : undefined;
    },
    timeoutMs,
    500,
  );
}

/** `name` when no such namespace exists yet, else `name-<random>`; ready for pods either way. */
export async function freshNamespace(name: string): Promise<string> {
  const exists = (await kubectl(['get', 'namespace', name], { allowFailure: true })).code === 0;
  return readyNamespace(exists ? uniqueName(name) : name);
}
