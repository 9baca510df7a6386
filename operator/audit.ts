/**
 * The operator's audit trail (docs/audit.md "Operator records"): one `operator` record per action
 * the leader takes on key material or lifecycle (material created, adopted, rotated, state
 * changed, deletion requested or cancelled, material destroyed, the master key created).
 *
 * - A record is written once its action is: after the material Secret write succeeded (or, for
 *   a refusal, the status that reports it), so a reconcile that fails and is retried records
 *   nothing, and its retry records the action once. Only the leader reconciles, through API
 *   clients fenced by its term, so only the leader records actions.
 * - Records name the acting replica (its Lease identity), the Key (namespace, name, uid, the
 *   generation and resourceVersion the action was decided from), the key version, what asked
 *   for it, and the outcome. Never key bytes: the plan holds none, and strings are bounded.
 * - Each replica keeps its own chain (named after its identity) on stdout by default; a
 *   standby's chain holds its start record and checkpoints only.
 */
import type { KeyObject } from 'node:crypto';
import { CoreV1Api } from '@kubernetes/client-node';
import type { AuditLogHandle, AuditRecorder } from '../engine/audit/audit-log.ts';
import { checkpointKeyMaterial } from '../engine/audit/checkpoint-key.ts';
import { type AuditConfig, openAuditLog } from '../engine/audit/config.ts';
import { fieldText, type OperatorEvent } from '../engine/audit/record.ts';
import { describeError, isNotFound, type KubeClient } from '../engine/kube/client.ts';
import type { KeyResource } from '../engine/kube/key-resource.ts';
import { masterKeyFromSecret } from '../engine/kube/master-key-secret.ts';
import type { Logger } from './log.ts';
import type { PlannedAction } from './plan.ts';

/** See the module comment. */
export class OperatorAudit {
  readonly #recorder: AuditRecorder;
  #master: KeyObject | undefined;

  constructor(recorder: AuditRecorder) {
    this.#recorder = recorder;
  }

  /** The master key the checkpoints are keyed from, once known. */
  get masterKey(): KeyObject | undefined {
    return this.#master;
  }

  /** Records `actions`, taken on `key` by the replica `actor`, as written. */
  actions(key: KeyResource, actions: readonly PlannedAction[], actor: string): void {
    const m = key.metadata;
    for (const a of actions) {
      const event: OperatorEvent = {
        type: 'operator',
        operation: a.operation,
        actor: fieldText(actor),
        namespace: fieldText(m.namespace),
        key: fieldText(m.name),
        trigger: fieldText(a.trigger),
        outcome: a.outcome,
      };
      if (m.uid !== undefined) event.uid = fieldText(m.uid);
      if (Number.isSafeInteger(m.generation)) event.generation = m.generation!;
      if (m.resourceVersion !== undefined) event.resourceVersion = fieldText(m.resourceVersion);
      if (a.version !== undefined) event.version = a.version;
      if (a.detail) event.detail = fieldText(a.detail);
      this.#recorder.record(event);
    }
  }

  /**
   * Tells the trail the master key (its checkpoints are keyed from it); `created` when this
   * replica has just created the master-key Secret, which is recorded with the key's id (the
   * id names it and says nothing about it).
   */
  masterKeyKnown(master: KeyObject, created: boolean, actor: string, secret: string): void {
    this.#master = master;
    if (!created) return;
    this.#recorder.record({
      type: 'operator',
      operation: 'create-master-key',
      actor: fieldText(actor),
      trigger: 'no master-key Secret',
      outcome: 'ok',
      detail: fieldText(`Secret ${secret}, key id ${checkpointKeyMaterial(master).id}`),
    });
  }
}

/** The operator's open audit log and its trail. */
export interface OpenOperatorAudit {
  log: AuditLogHandle;
  trail: OperatorAudit;
}

/** Opens the operator's audit log as `config` says (undefined when disabled). */
export async function openOperatorAudit(
  config: AuditConfig,
  o: { name: string; log: Logger },
): Promise<OpenOperatorAudit | undefined> {
  let trail: OperatorAudit | undefined;
  const log = await openAuditLog(config, { name: o.name, masterKey: () => trail?.masterKey, log: o.log });
  if (log === undefined) return undefined;
  trail = new OperatorAudit(log);
  return { log, trail };
}

/**
 * Reads the master key for the checkpoints of a replica that does not lead (the leader gets it
 * when its term begins). Best effort and read-only: absent (a first start: the leader creates
 * it) or unreadable, the chain's records wait for the leader's key or the next start.
 */
export async function readMasterKeyForAudit(
  client: KubeClient,
  namespace: string,
  secret: string,
  trail: OperatorAudit,
  log: Logger,
): Promise<void> {
  try {
    const master = masterKeyFromSecret(
      await client.api(CoreV1Api).readNamespacedSecret({ name: secret, namespace }),
    );
    if (trail.masterKey === undefined) trail.masterKeyKnown(master, false, '', secret);
  } catch (err) {
    if (!isNotFound(err)) {
      log.warn({ err: describeError(err) }, 'cannot read the master key for audit checkpoints yet');
    }
  }
}
