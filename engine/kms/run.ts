/**
 * Starts the KMS plugin from a checked config: the backend, the `key_id` history, a first Status
 * (so the log says at once whether the key serves, and which `key_id` it has), then the socket.
 * A key that is missing, disabled or unreachable does not stop the start: the plugin serves and
 * its Status tells the apiserver why it is unhealthy, and recovers by itself once the key does.
 */
import type { Logger } from 'pino';
import type { KmsBackend } from './backend.ts';
import type { KmsPluginConfig } from './config.ts';
import { DataDirBackend } from './data-dir-backend.ts';
import { type KmsServer, startKmsServer } from './grpc-server.ts';
import { KeyIdHistory } from './key-id-history.ts';
import { kmsPluginId } from './nonce-file.ts';
import { KmsPlugin } from './plugin.ts';
import { RemoteBackend } from './remote-backend.ts';

/** A running plugin. */
export interface RunningKmsPlugin {
  plugin: KmsPlugin;
  server: KmsServer;
  backend: KmsBackend;
  /** Stops serving (running calls may finish), removes the socket, releases the backend. */
  close(): Promise<void>;
}

/** See the module comment. */
export async function runKmsPlugin(config: KmsPluginConfig, logger: Logger): Promise<RunningKmsPlugin> {
  const backend: KmsBackend =
    config.backend.kind === 'data-dir'
      ? await DataDirBackend.open({
          dataDir: config.backend.dataDir,
          namespace: config.namespace,
          name: config.name,
          pluginId: kmsPluginId(config.socketPath),
          ...(config.nonceBudget === undefined ? {} : { nonceBudget: config.nonceBudget }),
        })
      : RemoteBackend.create({
          url: config.backend.url,
          namespace: config.namespace,
          name: config.name,
          token: config.backend.token,
          ...(config.backend.ca === undefined ? {} : { ca: config.backend.ca }),
        });
  try {
    const history = await KeyIdHistory.open(config.historyFile);
    if (history.path === undefined) {
      logger.warn(
        'no --state-dir: the key_id history is kept in memory only, so a key this plugin moves away from and back to after a restart would get its old key_id again',
      );
    }
    const plugin = new KmsPlugin({
      backend,
      history,
      namespace: config.namespace,
      name: config.name,
      logger,
    });
    const first = await plugin.status(config.timeoutMs);
    const server = await startKmsServer({
      socketPath: config.socketPath,
      plugin,
      logger,
      timeoutMs: config.timeoutMs,
    });
    logger.info(
      {
        socket: config.socketPath,
        key: `${config.namespace}/${config.name}`,
        backend: backend.description,
        keyId: first.key_id,
        healthz: first.healthz,
        keyIdHistory: history.path ?? 'memory',
      },
      'kms plugin serving',
    );
    let closing: Promise<void> | undefined;
    return {
      plugin,
      server,
      backend,
      close: () => {
        closing ??= (async () => {
          await server.close();
          await backend.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await backend.close();
    throw err;
  }
}
