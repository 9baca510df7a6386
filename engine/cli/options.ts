/** Options shared by the client commands, and the context they resolve to. */
import type { Command } from 'commander';
import { type ClientConfig, resolveClientConfig } from './client.ts';
import { type OutputFormat, parseOutput } from './output.ts';

/** The default data dir of serve and of client discovery. */
export const DEFAULT_DATA_DIR = './.data';

/** Adds --data-dir, --namespace, -o and --wait to a client command. */
export function clientOptions(cmd: Command): Command {
  return cmd
    .option(
      '--data-dir <dir>',
      'data dir of a local server, to find its address and token',
      process.env.KEYWARD_DATA_DIR ?? DEFAULT_DATA_DIR,
    )
    .option('-n, --namespace <ns>', 'key store (namespace)', 'default')
    .option('-o, --output <format>', 'text or json', parseOutput, 'text' as OutputFormat)
    .option('--wait <seconds>', 'keep retrying while the server is not reachable yet', (v) => Number(v), 0);
}

/** What a client command works with. */
export interface ClientContext {
  config: ClientConfig;
  namespace: string;
  output: OutputFormat;
  waitSeconds: number;
  /** `/v1/namespaces/<ns>/keys` */
  keysPath: string;
}

/** Resolves the options of `clientOptions`. */
export async function clientContext(opts: {
  dataDir: string;
  namespace: string;
  output: OutputFormat;
  wait: number;
}): Promise<ClientContext> {
  const config = await resolveClientConfig(opts.dataDir);
  return {
    config,
    namespace: opts.namespace,
    output: opts.output,
    waitSeconds: Number.isFinite(opts.wait) ? opts.wait : 0,
    keysPath: `/v1/namespaces/${encodeURIComponent(opts.namespace)}/keys`,
  };
}

/** `/v1/namespaces/<ns>/keys/<name>` */
export function keyPath(ctx: ClientContext, name: string): string {
  return `${ctx.keysPath}/${encodeURIComponent(name)}`;
}
