/**
 * Records an action of a command run on a stopped standalone server's data dir (`keyward
 * master-key rotate`) in that data dir's audit log: the chain is continued in a new segment, the
 * record written, and the log closed with a checkpoint, under the data-dir lock so no server
 * writes beside it. A data dir without an audit directory (always run with --no-audit) is left
 * without one.
 */
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { lockDataDir } from '../store/data-dir-lock.ts';
import { AuditLog } from './audit-log.ts';
import type { MasterKeyInput } from './checkpoint-key.ts';
import { DEFAULT_SEGMENT_BYTES } from './config.ts';
import { fieldText, type OperatorEvent } from './record.ts';
import { SegmentSink } from './sinks.ts';
import { AUDIT_DIR } from './verify-files.ts';

/** Who runs this process, for the record's `actor`: `user@host`. */
export function commandActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry for the uid (a container): the uid is still worth naming.
    user = `uid ${process.getuid?.() ?? '?'}`;
  }
  return fieldText(`${user}@${hostname()}`);
}

/**
 * Writes `event` to `<dataDir>/audit` (see the module comment); resolves false when the data dir
 * has no audit log. Throws when the data dir is in use or the log cannot be written.
 */
export async function recordInDataDir(
  dataDir: string,
  event: OperatorEvent,
  masterKey: MasterKeyInput,
): Promise<boolean> {
  const dir = join(dataDir, AUDIT_DIR);
  if (!existsSync(dir)) return false;
  const unlock = await lockDataDir(dataDir);
  try {
    const log = await AuditLog.open({
      name: hostname(),
      segments: new SegmentSink(dir, DEFAULT_SEGMENT_BYTES),
      masterKey: () => masterKey,
    });
    try {
      await log.write(event);
    } finally {
      await log.close();
    }
    return true;
  } finally {
    await unlock();
  }
}
