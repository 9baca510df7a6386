/** Options shared by the client commands, and the context they resolve to. */
import type { Command } from 'commander';
import type { KeywardError } from '../errors.ts';
import { validateKeyName } from '../keys/spec.ts';
import { CliError, type ClientConfig, resolveClientConfig } from './client.ts';
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
    .option(
      '--wait <seconds>',
      'keep retrying while the server is not reachable yet (0..3600)',
      parseWait,
      0,
    );
}

/** Parses a key name argument by the key-name rule, erring as the API would (before any call). */
export function keyName(value: string): string {
  try {
    return validateKeyName(value);
  } catch (err) {
    const e = err as KeywardError;
    throw new CliError(`${e.code}: ${e.message} (field ${e.field ?? 'name'})`);
  }
}

/** Longest `--wait`. */
const MAX_WAIT_SECONDS = 3600;

/** Parses `--wait`: a number of seconds from 0 to an hour. */
export function parseWait(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n) || n > MAX_WAIT_SECONDS) {
    throw new Error(
      `--wait must be a number of seconds from 0 to ${MAX_WAIT_SECONDS}, not ${JSON.stringify(value)}`,
    );
  }
  return n;
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
    waitSeconds: opts.wait,
    keysPath: `/v1/namespaces/${encodeURIComponent(opts.namespace)}/keys`,
  };
}

/** `/v1/namespaces/<ns>/keys/<name>` */
export function keyPath(ctx: ClientContext, name: string): string {
  return `${ctx.keysPath}/${encodeURIComponent(name)}`;
}
