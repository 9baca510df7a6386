/**
 * `keyward operator` and `keyward engine`: the Kubernetes commands. Each keeps its own flag
 * parser (operator/cli.ts, engine/cluster/cli.ts), so the flags are passed through untouched, and
 * each is imported only when run: the standalone CLI never loads the Kubernetes client.
 */
import type { Command } from 'commander';
import { registerCommands } from './program.ts';

function passThrough(
  program: Command,
  name: string,
  description: string,
  run: (argv: string[]) => Promise<void>,
) {
  program
    .command(name)
    .description(description)
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[flags...]', 'flags of the command (see --help)')
    .action((flags: string[]) => run(flags));
}

registerCommands((program) => {
  passThrough(program, 'operator', 'run the Kubernetes operator (keyward operator --help)', async (argv) => {
    const { main } = await import('../../operator/cli.ts');
    await main(argv);
  });
  passThrough(
    program,
    'engine',
    'run the engine in Kubernetes cluster mode (see docs/cluster-engine.md)',
    async (argv) => {
      const { main } = await import('../cluster/cli.ts');
      await main(argv);
    },
  );
});
