/**
 * The audit thread's side (audit-thread.ts is the engine's): runs one AuditLog, so that sealing
 * (canonical text, BLAKE3 in WebAssembly, keyed checkpoints) and the segment writes take no time
 * of the thread that serves requests. It gets the checkpoint key already derived, never the
 * master key.
 *
 * Messages in: a string is a batch of events (thread-protocol.ts, cheaper to send than a cloned
 * array); objects are `{ t: 'key' | 'flush' | 'close' }`. Messages out: `WorkerMessage`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from 'pino';
import { threadHeap } from '../pool/thread-heap.ts';
import { AuditLog } from './audit-log.ts';
import type { CheckpointKeyMaterial } from './checkpoint-key.ts';
import type { AuditEvent } from './record.ts';
import { FdSink, SegmentSink } from './sinks.ts';
import {
  type AuditThreadSetup,
  type ControlMessage,
  decodeEntries,
  type WorkerMessage,
} from './thread-protocol.ts';

const port = parentPort;
if (port === null) throw new Error('audit-worker.ts runs as a worker thread');
const setup = workerData as AuditThreadSetup;
const post = (m: WorkerMessage): void => port.postMessage(m);

// The log's few lines go to the engine's logger.
const forward =
  (level: 'error' | 'warn' | 'info') =>
  (obj: Record<string, unknown>, msg: string): void =>
    post({ t: 'log', level, obj, msg });
const log = { error: forward('error'), warn: forward('warn'), info: forward('info') } as unknown as Logger;

let material: CheckpointKeyMaterial | undefined = setup.key;
/** Events received; the engine bounds what it sends ahead of this. */
let received = 0;
const acked: number[] = [];
const refused: number[] = [];
let reportScheduled = false;
let reportTimer: NodeJS.Timeout | undefined;
const STATE_EVERY_MS = 100;
let lastHealthy = true;

function report(): void {
  clearTimeout(reportTimer);
  reportTimer = undefined;
  reportScheduled = false;
  lastHealthy = audit.healthy;
  post({
    t: 'state',
    received,
    healthy: lastHealthy,
    stats: { ...audit.stats },
    acked: acked.splice(0),
    refused: refused.splice(0),
    memory: threadHeap(),
  });
}

/**
 * The next state message: at the end of this turn when a `write` waits for its acknowledgement,
 * else within STATE_EVERY_MS (each message costs the serving thread an event of its own, and
 * plain records need none: the engine only bounds what it sends ahead).
 */
function scheduleReport(urgent: boolean): void {
  if (reportScheduled && !(urgent && reportTimer !== undefined)) return;
  clearTimeout(reportTimer);
  reportTimer = undefined;
  reportScheduled = true;
  if (urgent) setImmediate(report);
  else reportTimer = setTimeout(report, STATE_EVERY_MS);
}

let audit: AuditLog;
try {
  audit = await AuditLog.open({
    name: setup.name,
    ...(setup.dir === undefined ? {} : { segments: new SegmentSink(setup.dir, setup.segmentBytes) }),
    // fd 1 directly: a worker's process.stdout would hand every line to the main thread.
    streams: setup.stdout ? [new FdSink(1)] : [],
    checkpointRecords: setup.checkpointRecords,
    checkpointIntervalMs: setup.checkpointIntervalMs,
    checkpointKeyMaterial: () => material,
    log,
  });
} catch (err) {
  // Said in a message, not thrown: the engine refuses to start with this reason.
  post({ t: 'open-failed', message: (err as Error).message });
  port.close();
  process.exit(1);
}
post({ t: 'open', chain: audit.chain, memory: threadHeap() });

// The health the engine sees follows the log's within 250 ms, even when nothing is sent.
const healthTimer = setInterval(() => {
  if (audit.healthy !== lastHealthy) report();
}, 250);

port.on('message', (m: string | ControlMessage) => {
  if (typeof m === 'string') {
    for (const { time, id, text, event } of decodeEntries(m)) {
      received++;
      if (id === 0) {
        if (text !== undefined) audit.recordText(text, time);
        else audit.record(event as AuditEvent, time);
      } else {
        const written =
          text !== undefined ? audit.writeText(text, time) : audit.write(event as AuditEvent, time);
        written.then(
          () => {
            acked.push(id);
            scheduleReport(true);
          },
          () => {
            refused.push(id);
            scheduleReport(true);
          },
        );
      }
    }
    scheduleReport(false);
    return;
  }
  switch (m.t) {
    case 'key':
      material = m.key;
      break;
    case 'flush':
      void audit.flush().then(() => {
        report();
        post({ t: 'flushed', id: m.id });
      });
      break;
    case 'close':
      clearInterval(healthTimer);
      void audit.close().then(() => {
        report();
        port.close();
      });
      break;
  }
});
