// A graceful stop must take the replica out of its Service before the listener closes: once
// draining, /readyz fails and every response closes its keep-alive connection, while requests
// are still answered normally (the zero-downtime rollout of test/node relies on it end to end).
import { afterEach, describe, expect, it } from 'vitest';
import type { KeyBackend } from '../service/backend.ts';
import type { Authenticator } from './auth.ts';
import { createLogger } from './logger.ts';
import { buildServer } from './server.ts';

const backend = { ready: () => true, queueDepth: () => 0 } as unknown as KeyBackend;
const auth = {
  authenticate: async () => ({ name: 'test' }),
  authorize: async () => {},
} as unknown as Authenticator;

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

function server(isDraining?: () => boolean) {
  const { app } = buildServer({
    backend,
    auth,
    logger: createLogger('silent'),
    ...(isDraining ? { isDraining } : {}),
  });
  close = () => app.close();
  return app;
}

describe('draining', () => {
  it('readiness fails and responses close their connection once draining, while requests are still served', async () => {
    let draining = false;
    const app = server(() => draining);
    const before = await app.inject({ method: 'GET', url: '/readyz' });
    expect(before.statusCode).toBe(200);
    expect(before.headers.connection).not.toBe('close');

    draining = true;
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ error: { code: 'UNAVAILABLE', message: 'shutting down' } });
    expect(ready.headers['retry-after']).toBe('1');
    expect(ready.headers.connection).toBe('close');

    const live = await app.inject({ method: 'GET', url: '/livez' });
    expect(live.statusCode).toBe(200);
    expect(live.headers.connection).toBe('close');
  });

  it('a server without a draining hook keeps its connections open', async () => {
    const app = server();
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.headers.connection).not.toBe('close');
  });
});
