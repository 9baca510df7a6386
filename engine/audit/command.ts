/**
 * `keyward audit verify [FILE|DIR...]`: checks an audit log's chain and checkpoints and names the
 * first bad record by file and line. Exit 0 valid, 1 tampered, 2 error (docs/audit.md).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { CliError } from '../cli/client.ts';
import { MASTER_KEY_ENV, MASTER_KEY_FILE } from '../store/master-key.ts';
import { readSecretCheckpointKeys } from './secret-keys.ts';
import type { VerifyReport } from './verify.ts';
import {
  AUDIT_DIR,
  expandInputs,
  readCheckpointKeys,
  VerifyInputError,
  verifyFiles,
} from './verify-files.ts';

interface VerifyFlags {
  dataDir?: string;
  masterKeyFile: string[];
  masterKeySecret: string[];
  chainOnly?: boolean;
  open?: boolean;
  allowPruned?: boolean;
  skipForeignLines?: boolean;
  output: 'text' | 'json';
}

/** Usage errors exit 2 like every other error of `audit verify` (1 means tampered). */
function exitTwo(cmd: Command): Command {
  return cmd.exitOverride((err) => {
    throw new CommanderError(err.exitCode === 0 ? 0 : 2, err.code, err.message);
  });
}

function output(value: string): 'text' | 'json' {
  if (value === 'text' || value === 'json') return value;
  throw new InvalidArgumentError('use text or json');
}

/** Builds `keyward audit`. */
export function auditCommand(): Command {
  const audit = exitTwo(new Command('audit').description('work with the audit log (see docs/audit.md)'));
  audit.addCommand(
    exitTwo(
      new Command('verify')
        .description(
          'check an audit log: the BLAKE3 chain, the checkpoints and their MACs; names the first bad record by file and line',
        )
        .argument(
          '[paths...]',
          'segment files or directories of them, in log order (default: DATA_DIR/audit)',
        )
        .option(
          '--data-dir <dir>',
          `a standalone data dir: its ${AUDIT_DIR}/ segments when no path is given, and its master key (${MASTER_KEY_FILE}, or ${MASTER_KEY_ENV})`,
        )
        .option(
          '--master-key-file <file>',
          'a master key (32 raw bytes or base64) to check checkpoint MACs; repeat it for keys of before a master-key rotation',
          (v: string, all: string[]) => [...all, v],
          [] as string[],
        )
        .option(
          '--master-key-secret <file>',
          "a cluster's master-key Secret as `kubectl get secret keyward-master-key -n NS -o json` prints it (- reads standard input): every master-key version it holds and the audit keys it kept for retired ones; repeatable",
          (v: string, all: string[]) => [...all, v],
          [] as string[],
        )
        .option('--chain-only', 'check the hash chain without a master key (checkpoint MACs are not checked)')
        .option('--open', 'accept a log without a closing checkpoint: its writer is running, or crashed')
        .option('--allow-pruned', 'accept chains whose oldest segment files were removed on purpose')
        .option(
          '--skip-foreign-lines',
          'skip lines that are not audit records (a container log with other output)',
        )
        .option('-o, --output <format>', 'text or json', output, 'text' as const)
        .addHelpText(
          'after',
          `
Exit status: 0 valid, 1 tampered or not closed (the first bad record is named by file and line), 2 error.
Without a master key only the chain can be checked: whoever can write the log could rebuild it.`,
        )
        .action(async (paths: string[], flags: VerifyFlags) => {
          process.exitCode = await runVerify(paths, flags);
        }),
    ),
  );
  return audit;
}

async function runVerify(paths: string[], flags: VerifyFlags): Promise<number> {
  try {
    const inputs = paths.length > 0 ? paths : flags.dataDir ? [join(flags.dataDir, AUDIT_DIR)] : [];
    if (inputs.length === 0) throw new VerifyInputError('give audit files or directories, or --data-dir');
    const keyFiles = [...flags.masterKeyFile];
    if (flags.dataDir !== undefined && !flags.chainOnly) {
      const own = process.env[MASTER_KEY_ENV] || join(flags.dataDir, MASTER_KEY_FILE);
      if (existsSync(own)) keyFiles.push(own);
      else if (keyFiles.length === 0)
        throw new VerifyInputError(`${own} does not exist: give --master-key-file`);
    }
    const secrets = flags.masterKeySecret;
    if (flags.chainOnly && (flags.masterKeyFile.length > 0 || secrets.length > 0)) {
      throw new VerifyInputError(
        '--chain-only and --master-key-file or --master-key-secret exclude each other',
      );
    }
    if (secrets.filter((s) => s === '-').length > 1) {
      throw new VerifyInputError('--master-key-secret - (standard input) can be given once');
    }
    if (!flags.chainOnly && keyFiles.length === 0 && secrets.length === 0) {
      throw new VerifyInputError(
        'checkpoint MACs need the master key: give --data-dir, --master-key-file or --master-key-secret (or --chain-only to check the chain alone)',
      );
    }
    const keys = flags.chainOnly
      ? undefined
      : [
          ...(await Promise.all(keyFiles.map(readCheckpointKeys))).flat(),
          ...(await Promise.all(secrets.map(readSecretCheckpointKeys))).flat(),
        ];
    const report = await verifyFiles(await expandInputs(inputs), {
      keys,
      open: flags.open === true,
      allowPruned: flags.allowPruned === true,
      skipForeignLines: flags.skipForeignLines === true,
    });
    print(report, flags.output);
    if (report.error !== undefined) return 2;
    return report.valid ? 0 : 1;
  } catch (err) {
    if (err instanceof VerifyInputError) throw new CliError(err.message, 2);
    throw err;
  }
}

function print(report: VerifyReport, format: 'text' | 'json'): void {
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const out: string[] = [];
  const chains = report.chains.length;
  const summary = `${report.records} records in ${chains} chain${chains === 1 ? '' : 's'}, ${report.checkpoints} checkpoints (${report.macsChecked} MACs checked)`;
  if (report.error !== undefined) out.push(`error: ${report.error}`);
  else if (report.finding !== undefined) {
    const f = report.finding;
    out.push(`${f.kind === 'unclosed' ? 'not closed' : 'tampered'}: ${f.file}:${f.line}: ${f.message}`);
    out.push(`  (${summary} checked before it)`);
  } else {
    out.push(`valid: ${summary}`);
  }
  for (const c of report.chains) {
    out.push(`  chain ${c.chain}: seq ${c.firstSeq}..${c.lastSeq}${c.closed ? ', closed' : ', open'}`);
  }
  if (report.skippedLines > 0) out.push(`  skipped ${report.skippedLines} lines that are not audit records`);
  for (const note of report.notes) out.push(`note: ${note}`);
  process.stdout.write(`${out.join('\n')}\n`);
}
