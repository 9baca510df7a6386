/**
 * Records of the lifecycle actions the standalone key service takes by itself (a rotation on
 * schedule or at the nonce budget, a destruction when the deletion delay has passed): no request
 * asks for them, so without these the log would show a key's deletion requested and never done.
 * They are `operator` records with actor `scheduler` (docs/audit.md "Operator records").
 *
 * The service starts, and may carry out what fell due while it was down, before the log opens:
 * those actions are held (one per key at most) until {@link ScheduledActionRecords.attach}.
 */
import type { ScheduledAction } from '../service/lifecycle-work.ts';
import type { AuditRecorder } from './audit-log.ts';
import { fieldText, type OperatorEvent } from './record.ts';

/** See the module comment. */
export class ScheduledActionRecords {
  #recorder: AuditRecorder | undefined;
  #held: OperatorEvent[] = [];

  /** Records `action` (held until a log is attached). */
  record(action: ScheduledAction): void {
    const event: OperatorEvent = {
      type: 'operator',
      operation: action.operation,
      actor: 'scheduler',
      namespace: fieldText(action.namespace),
      key: fieldText(action.name),
      version: action.version,
      trigger: action.trigger,
      outcome: 'ok',
    };
    if (this.#recorder === undefined) this.#held.push(event);
    else this.#recorder.record(event);
  }

  /** Sends what was held, and every later action, to `recorder`. */
  attach(recorder: AuditRecorder): void {
    this.#recorder = recorder;
    for (const event of this.#held) recorder.record(event);
    this.#held = [];
  }
}
