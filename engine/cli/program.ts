/**
 * The `keyward` command tree. Other parts of Keyward add their commands through
 * `registerCommands` (the Kubernetes helper adds `keyward operator` and `keyward engine` there)
 * before `buildProgram` runs.
 */
import { Command } from 'commander';
import { auditCommand } from '../audit/command.ts';
import { kmsPluginCommand } from '../kms/command.ts';
import { registerCryptoCommands } from './crypto-commands.ts';
import { keyCommand } from './key-commands.ts';
import { masterKeyCommand } from './key-protection.ts';
import { serveCommand } from './serve.ts';

type Registrar = (program: Command) => void;
const registrars: Registrar[] = [];

/** Adds commands to every program built afterwards (e.g. `operator`, `engine`). */
export function registerCommands(registrar: Registrar): void {
  registrars.push(registrar);
}

/** Builds the whole CLI. */
export function buildProgram(): Command {
  const program = new Command('keyward')
    .description('Keyward: a key-management service. Keys never leave the engine.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Client commands find the server and token from KEYWARD_ADDR / KEYWARD_TOKEN (and KEYWARD_CA_FILE
for a self-signed certificate), or from the data dir of a local "keyward serve" (--data-dir,
default ./.data). Exit status: 0 on success, 1 on error; verify exits 0 valid, 1 invalid, 2 on error.`,
    );
  program.addCommand(serveCommand());
  program.addCommand(keyCommand());
  program.addCommand(masterKeyCommand());
  registerCryptoCommands(program);
  program.addCommand(kmsPluginCommand());
  program.addCommand(auditCommand());
  for (const registrar of registrars) registrar(program);
  return program;
}
