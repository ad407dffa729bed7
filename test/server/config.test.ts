import { parseSeed } from '../../server/pubsub/seeds.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULTS, helpText, loadConfig, SETTINGS } from '../../server/config.js';

describe('loadConfig', () => {
  it('uses the documented defaults with an empty environment', () => {
    const { config, help } = loadConfig({}, []);
    expect(help).toBe(false);
    expect(config.port).toBe(8080);
    expect(config.host).toBe('127.0.0.1');
    expect(config.allowedOrigins).toEqual([]);
    expect(config.history).toBe(1000);
    expect(config.pingMs).toBe(25_000);
    expect(config.maxConnections).toBe(100_000);
    expect(config.maxMessageBytes).toBe(64 * 1024);
    expect(config.redisUrl).toBe('');
    expect(config.demo).toBe(false);
  });

  it('generates and reports secrets left unset, different on each start', () => {
    const a = loadConfig({}, []);
    const b = loadConfig({}, []);
    expect(a.generated).toEqual(['subscriberSecret', 'publisherKey']);
    expect(a.config.subscriberSecret.length).toBeGreaterThanOrEqual(32);
    expect(a.config.publisherKey).not.toBe(b.config.publisherKey);
  });

  it('keeps secrets given in the environment and reports none generated', () => {
    const { config, generated } = loadConfig({ TIDINGS_SUBSCRIBER_SECRET: 's3cret-s3cret-s3cret-s3cret-s3cret', TIDINGS_PUBLISHER_KEY: 'pk-0123456789abcdef' }, []);
    expect(config.subscriberSecret).toBe('s3cret-s3cret-s3cret-s3cret-s3cret');
    expect(config.publisherKey).toBe('pk-0123456789abcdef');
    expect(generated).toEqual([]);
  });

  it('reads every PROTOCOL.md environment variable', () => {
    const { config } = loadConfig({
      TIDINGS_PORT: '0', TIDINGS_HOST: '0.0.0.0', TIDINGS_ALLOWED_ORIGINS: 'https://a.example, https://b.example,',
      TIDINGS_HISTORY: '5', TIDINGS_PING_MS: '1000', TIDINGS_MAX_CONNECTIONS: '7', TIDINGS_REDIS_URL: 'redis://127.0.0.1:6379',
    }, []);
    expect(config).toMatchObject({
      port: 0, host: '0.0.0.0', allowedOrigins: ['https://a.example', 'https://b.example'],
      history: 5, pingMs: 1000, maxConnections: 7, redisUrl: 'redis://127.0.0.1:6379',
    });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ TIDINGS_PORT: '' }, []).config.port).toBe(8080);
  });

  it('lets flags win over the environment, in both --flag value and --flag=value forms', () => {
    const { config } = loadConfig({ TIDINGS_PORT: '9000', TIDINGS_HISTORY: '3' }, ['--port', '9001', '--history=4']);
    expect(config.port).toBe(9001);
    expect(config.history).toBe(4);
  });

  it('reads a bare boolean flag as true, and explicit values', () => {
    expect(loadConfig({}, ['--demo']).config.demo).toBe(true);
    expect(loadConfig({}, ['--demo', '--port', '1']).config.demo).toBe(true);
    expect(loadConfig({}, ['--demo=false']).config.demo).toBe(false);
    expect(loadConfig({ TIDINGS_DEMO: 'yes' }, []).config.demo).toBe(true);
  });

  it('reports --help and -h', () => {
    expect(loadConfig({}, ['--help']).help).toBe(true);
    expect(loadConfig({}, ['-h']).help).toBe(true);
  });

  it.each([
    ['a non-integer', { TIDINGS_PORT: 'eighty' }, [], /TIDINGS_PORT must be a non-negative integer/],
    ['a negative integer', {}, ['--history', '-1'], /--history must be a non-negative integer/],
    ['a bad boolean', { TIDINGS_DEMO: 'maybe' }, [], /TIDINGS_DEMO must be true or false/],
    ['an unknown flag', {}, ['--nope'], /unknown flag --nope/],
    ['a positional argument', {}, ['serve'], /unexpected argument "serve"/],
    ['a flag without its value', {}, ['--port'], /--port needs a value/],
    ['a port past 65535', {}, ['--port', '65536'], /port must be at most 65535/],
    ['history 0', {}, ['--history', '0'], /history must be at least 1/],
    ['ping below 100 ms', {}, ['--ping-ms', '99'], /ping-ms must be at least 100/],
    ['a poll wait past 30 s', {}, ['--max-poll-wait-s', '31'], /at most 30/],
    ['workers 0', {}, ['--workers', '0'], /workers must be at least 1/],
    ['several workers without Redis', {}, ['--workers', '2'], /needs TIDINGS_REDIS_URL/],
    ['both a Redis URL and a cluster', { TIDINGS_REDIS_URL: 'redis://x:6379', TIDINGS_REDIS_CLUSTER: '127.0.0.1:7000' }, [], /TIDINGS_REDIS_URL and TIDINGS_REDIS_CLUSTER are both set/],
    ['a cluster seed without a port', { TIDINGS_REDIS_CLUSTER: '127.0.0.1:7000,10.0.0.2' }, [], /TIDINGS_REDIS_CLUSTER: "10.0.0.2" is not a seed node; expected host:port/],
    ['a cluster seed with port 0', { TIDINGS_REDIS_CLUSTER: '10.0.0.2:0' }, [], /is not a seed node/],
    ['a cluster seed past port 65535', { TIDINGS_REDIS_CLUSTER: '10.0.0.2:65536' }, [], /is not a seed node/],
    ['a publish timeout of 0', {}, ['--publish-timeout-ms', '0'], /publish-timeout-ms must be at least 1/],
    ['a watch gather past 1 s', {}, ['--redis-watch-gather-ms', '1001'], /redis-watch-gather-ms must be between 0 and 1000/],
    ['a negative watch gather', { TIDINGS_REDIS_WATCH_GATHER_MS: '-1' }, [], /TIDINGS_REDIS_WATCH_GATHER_MS must be a non-negative integer/],
  ])('refuses %s with a ConfigError', (_name, env, argv, msg) => {
    expect(() => loadConfig(env as Record<string, string>, argv as string[])).toThrow(ConfigError);
    expect(() => loadConfig(env as Record<string, string>, argv as string[])).toThrow(msg);
  });

  it('accepts the limits exactly at their bounds', () => {
    expect(loadConfig({}, ['--port', '65535', '--history', '1', '--ping-ms', '100', '--max-poll-wait-s', '30']).config)
      .toMatchObject({ port: 65535, history: 1, pingMs: 100, maxPollWaitS: 30 });
    expect(loadConfig({ TIDINGS_REDIS_URL: 'redis://x' }, ['--workers', '2']).config.workers).toBe(2);
    expect(loadConfig({ TIDINGS_REDIS_CLUSTER: '10.0.0.1:1, redis://u:p%40ss@r1.example:65535,[::1]:7000' }, ['--workers', '2']).config)
      .toMatchObject({ workers: 2, redisCluster: ['10.0.0.1:1', 'redis://u:p%40ss@r1.example:65535', '[::1]:7000'] });
    expect(loadConfig({}, ['--publish-timeout-ms', '1', '--history-ttl-s', '0']).config).toMatchObject({ publishTimeoutMs: 1, historyTtlS: 0 });
    expect(loadConfig({}, []).config.redisWatchGatherMs).toBe(25);
    expect(loadConfig({}, ['--redis-watch-gather-ms', '1000']).config.redisWatchGatherMs).toBe(1000);
    expect(loadConfig({ TIDINGS_REDIS_WATCH_GATHER_MS: '0' }, []).config.redisWatchGatherMs).toBe(0);
  });

  it('parses cluster seeds with credentials (decoded) and IPv6 hosts', () => {
    expect(parseSeed('redis://u:p%40ss@r1.example:6380')).toEqual({ host: 'r1.example', port: 6380, username: 'u', password: 'p@ss', tls: false });
    expect(parseSeed('rediss://:secret@10.0.0.1:6379/')).toEqual({ host: '10.0.0.1', port: 6379, password: 'secret', tls: true });
    expect(parseSeed('[::1]:7000')).toEqual({ host: '::1', port: 7000, tls: false });
  });
});

describe('helpText', () => {
  it('lists every setting with its flag, variable and default', () => {
    const text = helpText();
    for (const key of Object.keys(SETTINGS) as (keyof typeof SETTINGS)[]) {
      const [env, flag] = SETTINGS[key];
      expect(text).toContain(`--${flag}`);
      expect(text).toContain(env);
    }
    expect(text).toContain(`[default: ${DEFAULTS.history}]`);
    expect(text).toContain('--help');
  });
});
