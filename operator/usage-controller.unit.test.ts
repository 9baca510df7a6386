/**
 * The usage controller: reports indexed by key, and only keys whose reported usage moved are
 * queued, once per interval, while leading; every reported key once when a term starts.
 */
import type { V1ConfigMap } from '@kubernetes/client-node';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { USAGE_REPORT_ENTRY, type UsageReport } from '../engine/cluster/usage-report.ts';
import { KubeClient } from '../engine/kube/client.ts';
import type { InformerEvent } from '../engine/kube/informer-supervisor.ts';
import type { OperatorCaches } from './caches.ts';
import { LeadershipTerm } from './leader.ts';
import { UsageController } from './usage-controller.ts';

const log = pino({ level: 'silent' });
let term: LeadershipTerm | undefined;
afterEach(() => term?.end('test over'));

function setup() {
  let handler: ((type: InformerEvent, cm: V1ConfigMap) => void) | undefined;
  const caches = { onUsageReport: (h: typeof handler) => (handler = h) } as unknown as OperatorCaches;
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }, { name: 'u' });
  const queued: string[] = [];
  const controller = new UsageController({
    client: new KubeClient(kc),
    caches,
    usageNamespace: 'kw',
    intervalMs: 40,
    enqueue: (ns, name) => queued.push(`${ns}/${name}`),
    log,
  });
  const publish = (name: string, instance: string, keys: Record<string, number>): void => {
    const report: UsageReport = {
      format: 2,
      identity: 'engine-a',
      instance,
      startedTime: 1,
      reportedTime: Date.now(),
      shard: 0,
      shards: 1,
      keys: Object.fromEntries(
        Object.entries(keys).map(([id, at]) => {
          const [namespace, key] = id.split('/') as [string, string];
          return [id, { namespace, name: key, lastUsedTime: at, counts: { encrypt: at } }];
        }),
      ),
    };
    handler!('update', { metadata: { name }, data: { [USAGE_REPORT_ENTRY]: JSON.stringify(report) } });
  };
  return {
    controller,
    queued,
    publish,
    remove: (name: string) => handler!('delete', { metadata: { name } }),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('UsageController', () => {
  it('finds the reports of a key by index, and forgets a deleted report', () => {
    const { controller, publish, remove } = setup();
    publish('keyward-usage-engine-a', 'i1', { 'ns/k1': 5 });
    expect(controller.reportsFor('ns', 'k1')).toHaveLength(1);
    expect(controller.reportsFor('ns', 'k1')[0]?.keys['ns/k1']?.lastUsedTime).toBe(5);
    expect(controller.reportsFor('ns', 'other')).toEqual([]);
    remove('keyward-usage-engine-a');
    expect(controller.reportsFor('ns', 'k1')).toEqual([]);
  });

  it('queues every reported key when a term starts, then only keys whose usage moved', async () => {
    const { controller, queued, publish } = setup();
    publish('keyward-usage-engine-a', 'i1', { 'ns/k1': 5, 'ns/k2': 5 });
    term = new LeadershipTerm('me', Date.now() + 60_000, Date.now);
    const running = controller.run(term);
    await sleep(10);
    expect(queued.sort()).toEqual(['ns/k1', 'ns/k2']);
    queued.length = 0;
    publish('keyward-usage-engine-a', 'i1', { 'ns/k1': 5, 'ns/k2': 9 });
    await sleep(60);
    expect(queued).toEqual(['ns/k2']);
    queued.length = 0;
    await sleep(60);
    expect(queued).toEqual([]);
    term.end('done');
    await running;
    // Not leading: moved usage waits for the next term.
    publish('keyward-usage-engine-a', 'i1', { 'ns/k1': 7, 'ns/k2': 9 });
    await sleep(60);
    expect(queued).toEqual([]);
  });
});
