/** Helpers for the key-protection suites: real `keyward` processes over temp data dirs. */
import { type ServerProcess, startServerProcess } from '../cli/harness.ts';

export { runCli, type ServerProcess, startServerProcess } from '../cli/harness.ts';

export const KEYS = '/v1/namespaces/default/keys';

/** Calls a server with its admin token; returns status and parsed JSON body. */
export async function call(server: ServerProcess, method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${server.token}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  // biome-ignore lint/suspicious/noExplicitAny: inspected field by field
  return { status: res.status, body: (await res.json()) as any };
}

/** Starts `keyward serve --tls off` with extra arguments. */
export function serve(dataDir: string, args: string[] = []): Promise<ServerProcess> {
  return startServerProcess(dataDir, ['--tls', 'off', ...args]);
}

export const b64 = (text: string): string => Buffer.from(text).toString('base64');
