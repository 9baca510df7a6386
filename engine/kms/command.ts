/**
 * `keyward kms-plugin`: the Kubernetes KMS v2 plugin (docs/kms-plugin.md). The gRPC stack is
 * imported only when the command runs, so the rest of the CLI never loads it.
 */
import { Command } from 'commander';
import { DEFAULT_TIMEOUT, type KmsPluginFlags } from './config.ts';

/** Builds `keyward kms-plugin`. */
export function kmsPluginCommand(): Command {
  return new Command('kms-plugin')
    .description(
      'serve the Kubernetes KMS v2 API on a unix socket, so kube-apiserver encrypts Secrets with a Keyward key',
    )
    .option('--listen <endpoint>', 'unix:///PATH of the socket (the endpoint in the EncryptionConfiguration)')
    .option('--key <ns/name>', "the AES256 key that wraps the cluster's DEKs, as NAMESPACE/NAME")
    .option(
      '--data-dir <dir>',
      'use the key from this local data dir (read-only; may run beside keyward serve)',
    )
    .option('--addr <url>', 'use the key from a remote engine at this https URL (default: $KEYWARD_ADDR)')
    .option(
      '--token-file <file>',
      'remote engine: bearer token file, re-read when it changes (default: $KEYWARD_TOKEN)',
    )
    .option('--ca-file <file>', 'remote engine: PEM CA of its certificate (default: $KEYWARD_CA_FILE)')
    .option(
      '--timeout <duration>',
      "longest a call to the key may take (capped by the apiserver's deadline)",
      DEFAULT_TIMEOUT,
    )
    .option(
      '--nonce-budget <n>',
      'with --data-dir: random-nonce encryptions per key version, as given to keyward serve (default 2^30)',
    )
    .option(
      '--state-dir <dir>',
      'where the key_id history is kept (default with --data-dir: DIR/kms-plugin; otherwise memory only)',
    )
    .addHelpText(
      'after',
      `
Example (a static pod on a control-plane node):
  keyward kms-plugin --listen unix:///var/run/keyward-kms/kms.sock --key default/etcd-kek \\
    --data-dir /var/lib/keyward

The plugin answers Status with healthz "ok" only after an encrypt/decrypt round trip with the key;
otherwise healthz says why. SIGTERM or SIGINT stops it cleanly and removes the socket.
Log level: KEYWARD_LOG_LEVEL (default info). See docs/kms-plugin.md.`,
    )
    .action(async (flags: KmsPluginFlags) => {
      const { resolveKmsPluginConfig } = await import('./config.ts');
      const config = resolveKmsPluginConfig(flags);
      const { createLogger } = await import('../http/logger.ts');
      const { runKmsPlugin } = await import('./run.ts');
      const logger = createLogger();
      const running = await runKmsPlugin(config, logger);
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          logger.info({ signal }, 'kms plugin shutting down');
          running.close().then(resolve, (err: unknown) => {
            logger.error({ err }, 'kms plugin shutdown failed');
            process.exitCode = 1;
            resolve();
          });
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      // Nothing else should keep the process: exit with the status we have.
      process.exit(process.exitCode ?? 0);
    });
}
