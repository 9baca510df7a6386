#!/usr/bin/env node
/**
 * The `keyward` entry point. Errors are one clear line on stderr and a non-zero exit (no stack
 * trace); `verify` reports an invalid signature with exit 1 and errors with exit 2.
 *
 * Kubernetes commands (`keyward operator`, `keyward engine`) are added by importing their
 * registration module here, which calls `registerCommands` from `./program.ts`.
 */
import { CommanderError } from 'commander';
import { KeywardError } from '../errors.ts';
import { CliError } from './client.ts';
import './kube-commands.ts';
import { printable } from './output.ts';
import { buildProgram } from './program.ts';

const isVerify = process.argv[2] === 'verify';

// `keyward key list | head`: when the reader goes away, stop quietly, as other CLIs do, instead
// of dying on an unhandled EPIPE with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

function fail(message: string, code: number): void {
  process.stderr.write(`keyward: ${printable(message.split('\n')[0]!)}\n`);
  process.exitCode = isVerify ? 2 : code;
}

try {
  const program = buildProgram();
  program.exitOverride();
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version exit 0; usage errors were already printed by commander.
    process.exitCode = err.exitCode === 0 ? 0 : isVerify ? 2 : err.exitCode;
  } else if (err instanceof CliError) {
    fail(err.message, err.exitCode);
  } else if (err instanceof KeywardError) {
    fail(`${err.code}: ${err.message}`, 1);
  } else if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    fail(code ? `${err.message} (${code})` : err.message, 1);
  } else {
    fail(String(err), 1);
  }
}
