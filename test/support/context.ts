// A ServerContext for tests: the real in-memory bus, a silent logger, real
// metrics on their own registry, and a control block that records what it is asked.
import { DEFAULTS, type Config } from '../../server/config.js';
import type { ServerContext } from '../../server/context.js';
import { createLogger } from '../../server/log.js';
import { createMetrics } from '../../server/metrics.js';
import { signSubscriberToken } from '../../server/auth/tokens.js';
import type { Bus, StoredEvent } from '../../server/pubsub/bus.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';

export const TEST_SUBSCRIBER_SECRET = 'test-subscriber-secret-0123456789abcdef';
export const TEST_PUBLISHER_KEY = 'test-publisher-key-0123456789';
/** The epoch of the default test bus, so cursors are predictable: `${TEST_EPOCH}-3`. */
export const TEST_EPOCH = 'testep0';

export interface TestContextOverrides {
  config?: Partial<Config>;
  /** A bus of your own; by default a MemoryBus with TEST_EPOCH and config.history. */
  bus?: Bus;
  draining?: boolean;
}

export interface TestContext extends ServerContext {
  /** dropAll() codes, in call order. */
  readonly dropped: number[];
  /** A subscriber token for `channels` signed with the context's secret. */
  token(channels: string[], opts?: { sub?: string; ttlSeconds?: number }): Promise<string>;
  /** Stop the metrics monitor and close the bus. */
  close(): Promise<void>;
}

/**
 * The bus's onEvent is set to fan out to onLiveEvent listeners (as server.ts does
 * besides the hub). A test that wires a hub into bus.onEvent should call the
 * previous onEvent too, or long-poll waiters will not wake.
 */
export function makeTestContext(overrides: TestContextOverrides = {}): TestContext {
  const config: Config = {
    ...DEFAULTS,
    subscriberSecret: TEST_SUBSCRIBER_SECRET,
    publisherKey: TEST_PUBLISHER_KEY,
    ...overrides.config,
  };
  const bus = overrides.bus ?? new MemoryBus({ history: config.history, epoch: TEST_EPOCH });
  const listeners = new Set<(e: StoredEvent) => void>();
  bus.onEvent = (e) => {
    for (const l of [...listeners]) l(e);
  };
  const metrics = createMetrics();
  const dropped: number[] = [];
  const ctx: TestContext = {
    config,
    bus,
    log: createLogger({ level: 'silent' }),
    metrics,
    draining: overrides.draining ?? false,
    control: {
      dropAll(code = 1011) {
        dropped.push(code);
        return 0;
      },
      blockUpgrades: false,
      frozen: false,
      connections: () => 0,
    },
    onLiveEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dropped,
    token: (channels, opts = {}) =>
      signSubscriberToken(config.subscriberSecret, { sub: opts.sub ?? 'u1', ch: channels, ttlSeconds: opts.ttlSeconds ?? 300 }),
    async close() {
      metrics.close();
      await bus.close();
    },
  };
  return ctx;
}
