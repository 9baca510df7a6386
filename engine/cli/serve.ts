/** `keyward serve`: the standalone engine (what `npm start` runs). */
import { join } from 'node:path';
import { Command } from 'commander';
import { addAuditOptions, auditConfigFromFlags, defaultAuditConfig } from '../audit/config.ts';
import { ADMIN_TOKEN_FILE } from '../http/admin-token.ts';
import { createLogger } from '../http/logger.ts';
import { defaultMetricsPort } from '../http/metrics-server.ts';
import { DEFAULT_PORT, startStandalone } from '../http/standalone.ts';
import { parseTlsMode } from '../http/tls.ts';
import { parseDuration } from './duration.ts';
import { keyProtectionOptions } from './key-protection.ts';
import { DEFAULT_DATA_DIR } from './options.ts';

function portOf(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n > 65535) throw new Error(`${flag} must be 0..65535, not ${value}`);
    return n;
  };
}
const port = portOf('--port');

/** `--metrics-port`: a port, or `off` for no metrics listener. */
function metricsPort(value: string): number | 'off' {
  return value === 'off' ? 'off' : portOf('--metrics-port')(value);
}

function threads(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 256) throw new Error(`--threads must be 1..256, not ${value}`);
  return n;
}

/** Builds `keyward serve`. */
export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('run the standalone key engine (HTTPS REST API, file-backed key store)')
    .option(
      '--data-dir <dir>',
      'where keys, the master key, the admin token and TLS files live',
      process.env.KEYWARD_DATA_DIR ?? DEFAULT_DATA_DIR,
    )
    .option('--port <n>', 'port to listen on (0: any free port)', port, DEFAULT_PORT)
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option(
      '--tls <mode>',
      'auto (self-signed, kept in the data dir), off (loopback only), or CERT,KEY',
      'auto',
    )
    .option('--region <region>', 'the region this engine serves (Isolated keys of other regions are refused)')
    .option('--threads <n>', 'crypto worker threads (default: CPU count)', threads)
    .option(
      '--metrics-port <n|off>',
      'port of the Prometheus /metrics listener, apart from the API (default 9464; 0 with --port 0)',
      metricsPort,
    )
    .option('--metrics-host <host>', 'address the metrics listener binds', '127.0.0.1')
    .option(
      '--deletion-delay-for-tests <duration>',
      'FOR TESTS ONLY: shorten the 72 h deletion delay (e.g. 20s)',
    )
    .action(async (opts) => {
      const audit = auditConfigFromFlags(opts, defaultAuditConfig());
      const logger = createLogger();
      const tls = parseTlsMode(opts.tls);
      let deletionDelayMs: number | undefined;
      if (opts.deletionDelayForTests !== undefined) {
        deletionDelayMs = parseDuration(opts.deletionDelayForTests);
        logger.warn(
          { deletionDelayMs },
          'the deletion delay is shortened by --deletion-delay-for-tests: for tests only, never in production',
        );
      }
      const server = await startStandalone({
        dataDir: opts.dataDir,
        host: opts.host,
        port: opts.port,
        tls,
        logger,
        ...(opts.region === undefined ? {} : { region: opts.region }),
        ...(opts.threads === undefined ? {} : { threads: opts.threads }),
        ...(deletionDelayMs === undefined ? {} : { deletionDelayMs }),
        audit,
        metrics:
          opts.metricsPort === 'off'
            ? false
            : { host: opts.metricsHost, port: opts.metricsPort ?? defaultMetricsPort(opts.port) },
        ...(opts.masterKeyFile === undefined ? {} : { masterKeyFile: opts.masterKeyFile }),
        ...(opts.nonceBudget === undefined ? {} : { nonceBudget: opts.nonceBudget }),
      });
      const out: string[] = [`Keyward listening on ${server.url} (data dir ${opts.dataDir})`];
      if (server.tls) {
        out.push(`TLS certificate ${server.tls.certPath}${server.tls.created ? ' (new, self-signed)' : ''}`);
        out.push(`  SHA-256 fingerprint ${server.tls.fingerprint256}`);
      } else {
        out.push('TLS off (loopback only)');
      }
      if (server.token.created) {
        out.push(`Admin token (shown once; also in ${join(opts.dataDir, ADMIN_TOKEN_FILE)}, mode 0600):`);
        out.push(`  ${server.token.token}`);
      } else {
        out.push(
          server.token.source === 'env'
            ? 'Admin token: from KEYWARD_TOKEN'
            : `Admin token: in ${join(opts.dataDir, ADMIN_TOKEN_FILE)}`,
        );
      }
      out.push(
        audit.enabled
          ? `Audit log in ${join(opts.dataDir, 'audit')}${audit.required ? ' (required: requests are refused when it cannot write)' : ''}`
          : 'Audit log off (--no-audit)',
      );
      out.push(server.metricsUrl ? `Metrics: ${server.metricsUrl}` : 'Metrics: off');
      out.push('Try: keyward key create my-key --usage AES256');
      process.stdout.write(`${out.join('\n')}\n`);

      const stop = (signal: string): void => {
        logger.info({ signal }, 'shutting down');
        server.close().then(
          () => process.exit(0),
          (err) => {
            logger.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
  return keyProtectionOptions(addAuditOptions(cmd));
}
