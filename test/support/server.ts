// A real Tidings server on a free loopback port, for integration tests.
// Defaults: known secrets (test/support/context.ts), a silent logger.
import { DEFAULTS, type Config } from '../../server/config.js';
import type { ServerContext } from '../../server/context.js';
import { createLogger } from '../../server/log.js';
import { createTidingsServer, type ServerOptions, type TidingsServer } from '../../server/server.js';
import { signSubscriberToken } from '../../server/auth/tokens.js';
import { TEST_PUBLISHER_KEY, TEST_SUBSCRIBER_SECRET } from './context.js';

export interface TestServer {
  /** http://127.0.0.1:PORT */
  url: string;
  /** ws://127.0.0.1:PORT/v1/ws */
  wsUrl: string;
  port: number;
  ctx: ServerContext;
  /** The composed server (wheel, hub, drain). */
  server: TidingsServer;
  /** Publish straight into the bus (no HTTP); resolves with the cursor. */
  publish(channel: string, data: unknown): Promise<string>;
  /** A subscriber token for `channels`, valid `ttlSeconds` (default 300; negative = already expired). */
  token(channels: string[], ttlSeconds?: number): Promise<string>;
  close(): Promise<void>;
}

export async function startTestServer(overrides: Partial<Config> = {}, opts: ServerOptions = {}): Promise<TestServer> {
  const config: Config = {
    ...DEFAULTS,
    host: '127.0.0.1',
    port: 0,
    subscriberSecret: TEST_SUBSCRIBER_SECRET,
    publisherKey: TEST_PUBLISHER_KEY,
    logLevel: 'silent',
    // Tests that drain want it over at once; the drain tests set it explicitly.
    drainListenMs: 0,
    ...overrides,
  };
  const server = createTidingsServer(config, { log: createLogger({ level: config.logLevel }), ...opts });
  const { port } = await server.listen();
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    port,
    ctx: server.ctx,
    server,
    async publish(channel, data) {
      const [cursor] = await server.ctx.bus.publish([{ channel, json: JSON.stringify(data) }]);
      return cursor!;
    },
    token: (channels, ttlSeconds = 300) =>
      signSubscriberToken(config.subscriberSecret, { sub: 'test-user', ch: channels, ttlSeconds }),
    close: () => server.close(),
  };
}
