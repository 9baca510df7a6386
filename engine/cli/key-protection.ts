/**
 * Key-protection parts of the CLI: `keyward master-key rotate`, and the options `keyward serve`
 * takes for the master key and the nonce budget (registered by serve.ts and program.ts).
 */
import { Command } from 'commander';
import { MAX_NONCE_BUDGET } from '../keys/nonce-budget.ts';
import { rotateMasterKey } from '../store/master-key-rotation.ts';
import { DEFAULT_DATA_DIR } from './options.ts';

const MASTER_KEY_FILE_HELP =
  'the master-key file, e.g. outside the data dir so that a copy of the data dir holds no key ' +
  '(default: $KEYWARD_MASTER_KEY_FILE, else <data-dir>/master.key)';

/** Parses `--nonce-budget`: a whole number 1..2^32. */
export function parseNonceBudget(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > MAX_NONCE_BUDGET) {
    throw new Error(
      `--nonce-budget must be a whole number from 1 to ${MAX_NONCE_BUDGET} (2^32), not ${value}`,
    );
  }
  return n;
}

/** Adds `--master-key-file` and `--nonce-budget` to `keyward serve`. */
export function keyProtectionOptions(cmd: Command): Command {
  return cmd
    .option('--master-key-file <path>', MASTER_KEY_FILE_HELP)
    .option(
      '--nonce-budget <n>',
      'random-nonce AES-GCM encryptions per key version before the key rotates by itself (default 2^30)',
      parseNonceBudget,
    );
}

/** Builds `keyward master-key`. */
export function masterKeyCommand(): Command {
  const masterKey = new Command('master-key').description('manage the standalone master key');
  masterKey
    .command('rotate')
    .description(
      'create a new master-key version, re-wrap every key version under it, and retire the old one once ' +
        'nothing is wrapped under it. Stop the server first. Safe to interrupt: run it again to finish.',
    )
    .option(
      '--data-dir <dir>',
      'the data dir of the keys to re-wrap',
      process.env.KEYWARD_DATA_DIR ?? DEFAULT_DATA_DIR,
    )
    .option('--master-key-file <path>', MASTER_KEY_FILE_HELP)
    .action(async (opts: { dataDir: string; masterKeyFile?: string }) => {
      const result = await rotateMasterKey({
        dataDir: opts.dataDir,
        ...(opts.masterKeyFile === undefined ? {} : { masterKeyFile: opts.masterKeyFile }),
        onProgress: (line) => process.stderr.write(`${line}\n`),
      });
      const out = [
        `${result.resumed ? 'Finished the interrupted rotation' : 'Rotated the master key'}: version ${result.current} ` +
          `of ${result.location.path} wraps every key (${result.rewrapped} key record(s) re-wrapped by this run).`,
      ];
      if (result.retired.length > 0) out.push(`Retired master-key version(s) ${result.retired.join(', ')}.`);
      process.stdout.write(`${out.join('\n')}\n`);
      await recordRotation(opts.dataDir, result);
      if (result.stuck.length > 0) {
        const list = result.stuck.map((s) => `${s.key} v${s.version}`).join(', ');
        throw new Error(
          `${result.stuck.length} key version(s) cannot be unwrapped and stay under their old master key, which is kept: ${list}`,
        );
      }
    });
  return masterKey;
}

/** Records the rotation in the data dir's audit log (docs/audit.md "Operator records"). */
async function recordRotation(
  dataDir: string,
  result: Awaited<ReturnType<typeof rotateMasterKey>>,
): Promise<void> {
  const detail =
    `master-key version ${result.current}${result.resumed ? ' (an interrupted rotation finished)' : ''}; ` +
    `${result.rewrapped} key record(s) re-wrapped` +
    (result.retired.length > 0 ? `; version(s) ${result.retired.join(', ')} retired` : '') +
    (result.stuck.length > 0 ? `; ${result.stuck.length} key version(s) left under an old version` : '');
  try {
    // Loaded here: the other commands need none of the audit log.
    const { commandActor, recordInDataDir } = await import('../audit/data-dir-record.ts');
    const { readMasterKeyFile } = await import('../audit/verify-files.ts');
    await recordInDataDir(
      dataDir,
      {
        type: 'operator',
        operation: 'rotate-master-key',
        actor: commandActor(),
        trigger: 'keyward master-key rotate',
        outcome: result.stuck.length > 0 ? 'INCOMPLETE' : 'ok',
        detail,
      },
      await readMasterKeyFile(result.location.path),
    );
  } catch (err) {
    process.stderr.write(`warning: the rotation is not in the audit log: ${(err as Error).message}\n`);
  }
}
