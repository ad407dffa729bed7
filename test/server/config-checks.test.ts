// Issue 11, defect 5: configuration mistakes caught at start, with a message a
// person can act on; and the rotation settings (several secrets, *_FILE).
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, publisherKeysOf, subscriberKeyring } from '../../server/config.js';
import { badBearerChar, normalizeAllowedOrigin } from '../../server/config-checks.js';
import { startTestServer } from '../support/server.js';
import { openWs } from '../support/ws-client.js';

const SECRET = 'a-subscriber-secret-of-32-bytes!';
const KEY = 'publisher-key-0123456789-abcdefgh';
const load = (env: Record<string, string>, files: Record<string, string> = {}) =>
  loadConfig({ TIDINGS_SUBSCRIBER_SECRET: SECRET, TIDINGS_PUBLISHER_KEY: KEY, ...env }, [], (p) => {
    if (!(p in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return files[p]!;
  });
const fails = (env: Record<string, string>, files?: Record<string, string>) => {
  try {
    load(env, files);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('publisher keys a Bearer header cannot carry are refused at start', () => {
  it.each([[':', 'key:with-colon-0123456'], ['@', 'key@with-at-0123456789'], ['!', 'key!with-bang-01234567'], ['a space', 'key with space-0123456']])(
    'refuses %s', (what, key) => {
      const msg = fails({ TIDINGS_PUBLISHER_KEY: key });
      expect(msg).toContain('TIDINGS_PUBLISHER_KEY');
      expect(msg).toContain(what === 'a space' ? 'a space' : `"${what}"`);
      expect(msg).toContain('Bearer');
      expect(msg).toContain('openssl rand');
      expect(msg).not.toContain(key); // the message never echoes the secret
    });

  it('accepts the RFC 6750 b64token alphabet, = at the end only', () => {
    expect(badBearerChar('Az09-._~+/==')).toBeNull();
    expect(badBearerChar('a=b')).toBe('=');
    expect(load({ TIDINGS_PUBLISHER_KEY: 'Az09-._~+/Az09-._~+/==' }).config.publisherKey).toBe('Az09-._~+/Az09-._~+/==');
  });

  it('checks every key of TIDINGS_PUBLISHER_KEYS', () => {
    expect(fails({ TIDINGS_PUBLISHER_KEY: '', TIDINGS_PUBLISHER_KEYS: `${KEY},bad:key-0123456789` })).toContain('entry 2');
  });
});

describe('secrets too short', () => {
  it('refuses a 1-character subscriber secret or publisher key', () => {
    expect(fails({ TIDINGS_SUBSCRIBER_SECRET: 'x' })).toMatch(/TIDINGS_SUBSCRIBER_SECRET is 1 byte long; at least 16/);
    expect(fails({ TIDINGS_PUBLISHER_KEY: 'x' })).toMatch(/TIDINGS_PUBLISHER_KEY is 1 byte long/);
  });

  it('refuses 15 bytes; accepts 16 with a warning, 32 without', () => {
    expect(fails({ TIDINGS_SUBSCRIBER_SECRET: 'x'.repeat(15) })).toContain('15 bytes long');
    expect(load({ TIDINGS_SUBSCRIBER_SECRET: 'x'.repeat(16) }).warnings).toEqual([
      'TIDINGS_SUBSCRIBER_SECRET is 16 bytes long; 32 or more are recommended for HS256 (RFC 7518 §3.2)',
    ]);
    expect(load({ TIDINGS_SUBSCRIBER_SECRET: 'x'.repeat(32) }).warnings).toEqual([]);
  });
});

describe('TIDINGS_ALLOWED_ORIGINS is normalised to what browsers send', () => {
  it('lower-cases, drops a trailing slash and a default port, and says so', () => {
    const { config, warnings } = load({ TIDINGS_ALLOWED_ORIGINS: 'https://Mail.Example.com/, http://localhost:3000,https://a.example:443' });
    expect(config.allowedOrigins).toEqual(['https://mail.example.com', 'http://localhost:3000', 'https://a.example']);
    expect(warnings).toEqual([
      'TIDINGS_ALLOWED_ORIGINS: "https://Mail.Example.com/" read as "https://mail.example.com" (the form browsers send in Origin)',
      'TIDINGS_ALLOWED_ORIGINS: "https://a.example:443" read as "https://a.example" (the form browsers send in Origin)',
    ]);
  });

  it('refuses what is not an origin', () => {
    expect(fails({ TIDINGS_ALLOWED_ORIGINS: 'mail.example.com' })).toContain('is not an origin');
    expect(fails({ TIDINGS_ALLOWED_ORIGINS: 'https://mail.example.com/app' })).toContain('use https://mail.example.com');
    expect(fails({ TIDINGS_ALLOWED_ORIGINS: 'ftp://mail.example.com' })).toContain('http:// or https://');
    expect(normalizeAllowedOrigin('HTTP://[::1]:80')).toBe('http://[::1]');
  });
});

describe('allowed origins end to end', () => {
  it('an allow-list written "https://Mail.Example/" lets the browser\'s "https://mail.example" through on WebSocket and polling alike', async () => {
    const { config } = load({ TIDINGS_ALLOWED_ORIGINS: 'https://Mail.Example/' });
    for (const origins of [config.allowedOrigins, ['https://Mail.Example/']]) { // via loadConfig, and embedded as is
      const s = await startTestServer({ allowedOrigins: origins });
      try {
        const ws = await openWs(s.wsUrl, { origin: 'https://mail.example' });
        ws.ws.close();
        const poll = await fetch(`${s.url}/v1/poll?channels=a`, { headers: { origin: 'https://mail.example', authorization: `Bearer ${await s.token(['a'])}` } });
        expect(poll.status).toBe(200);
        await expect(openWs(s.wsUrl, { origin: 'https://evil.example' })).rejects.toThrow();
      } finally {
        await s.close();
      }
    }
  });
});

describe('rotation settings', () => {
  it('TIDINGS_SUBSCRIBER_SECRETS: kid:secret entries, the first signs', () => {
    const { config, generated } = load({ TIDINGS_SUBSCRIBER_SECRET: '', TIDINGS_SUBSCRIBER_SECRETS: `2026-12:${SECRET}B, 2026-11:${SECRET}A` });
    expect(generated).toEqual([]);
    expect(subscriberKeyring(config)).toEqual([{ kid: '2026-12', secret: `${SECRET}B` }, { kid: '2026-11', secret: `${SECRET}A` }]);
    expect(config.subscriberSecret).toBe(`${SECRET}B`);
  });

  it('refuses both forms at once, a missing kid, a repeated kid, a short secret in the list', () => {
    expect(fails({ TIDINGS_SUBSCRIBER_SECRETS: `k:${SECRET}` })).toContain('not both');
    expect(fails({ TIDINGS_SUBSCRIBER_SECRET: '', TIDINGS_SUBSCRIBER_SECRETS: SECRET })).toContain('kid:secret');
    expect(fails({ TIDINGS_SUBSCRIBER_SECRET: '', TIDINGS_SUBSCRIBER_SECRETS: `k:${SECRET},k:${SECRET}x` })).toContain('appears twice');
    expect(fails({ TIDINGS_SUBSCRIBER_SECRET: '', TIDINGS_SUBSCRIBER_SECRETS: `k:${SECRET},old:short` })).toContain('kid old');
    expect(fails({ TIDINGS_PUBLISHER_KEYS: KEY })).toContain('not both');
  });

  it('TIDINGS_PUBLISHER_KEYS: every key accepted, the first is the one tools use', () => {
    const { config } = load({ TIDINGS_PUBLISHER_KEY: '', TIDINGS_PUBLISHER_KEYS: `${KEY}-new,${KEY}-old` });
    expect(publisherKeysOf(config)).toEqual([`${KEY}-new`, `${KEY}-old`]);
    expect(config.publisherKey).toBe(`${KEY}-new`);
  });

  it('reads every secret from *_FILE (trailing newline dropped; lists one per line)', () => {
    const { config, generated } = loadConfig({
      TIDINGS_SUBSCRIBER_SECRETS_FILE: '/run/secrets/subs', TIDINGS_PUBLISHER_KEY_FILE: '/run/secrets/pk', TIDINGS_REDIS_URL_FILE: '/run/secrets/redis',
    }, [], (p) => ({
      '/run/secrets/subs': `new:${SECRET}1\nold:${SECRET}2\n`, '/run/secrets/pk': `${KEY}\n`, '/run/secrets/redis': 'redis://:pw@redis:6379\n',
    } as Record<string, string>)[p]!);
    expect(generated).toEqual([]);
    expect(subscriberKeyring(config).map((k) => k.kid)).toEqual(['new', 'old']);
    expect(config.publisherKey).toBe(KEY);
    expect(config.redisUrl).toBe('redis://:pw@redis:6379');
  });

  it('refuses NAME and NAME_FILE together, and names an unreadable or empty file', () => {
    expect(fails({ TIDINGS_PUBLISHER_KEY_FILE: '/x' })).toBe('set TIDINGS_PUBLISHER_KEY or TIDINGS_PUBLISHER_KEY_FILE, not both');
    expect(fails({ TIDINGS_PUBLISHER_KEY: '', TIDINGS_PUBLISHER_KEY_FILE: '/nope' })).toBe('TIDINGS_PUBLISHER_KEY_FILE: cannot read /nope: ENOENT');
    expect(fails({ TIDINGS_PUBLISHER_KEY: '', TIDINGS_PUBLISHER_KEY_FILE: '/empty' }, { '/empty': '\n' })).toBe('TIDINGS_PUBLISHER_KEY_FILE: /empty is empty');
  });
});
