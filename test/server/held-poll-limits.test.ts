// Issue 12, item 8: one token holder (or one address) cannot fill the global
// long-poll cap and raise X-Poll-Interval for everyone.
import { request, type ClientRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { signSubscriberToken } from '../../server/auth/tokens.js';
import type { Config } from '../../server/config.js';
import { TEST_SUBSCRIBER_SECRET } from '../support/context.js';
import { startTestServer, type TestServer } from '../support/server.js';

const servers: TestServer[] = [];
const reqs: ClientRequest[] = [];
afterEach(async () => {
  for (const r of reqs.splice(0)) r.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(over: Partial<Config>): Promise<TestServer> {
  const s = await startTestServer(over);
  servers.push(s);
  return s;
}

const tokenFor = (sub: string) => signSubscriberToken(TEST_SUBSCRIBER_SECRET, { sub, ch: ['a'], ttlSeconds: 300 });

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: string }
/** A long-poll of channel a at its head; resolves when answered (held ones stay pending). */
async function longPoll(s: TestServer, sub: string, from = '127.0.0.1'): Promise<{ answered: Promise<Answer> }> {
  const head = await s.ctx.bus.head('a');
  const token = await tokenFor(sub);
  let req!: ClientRequest;
  const answered = new Promise<Answer>((resolve, reject) => {
    req = request({
      host: '127.0.0.1', port: s.port, path: '/v1/poll?channels=a', localAddress: from, agent: false,
      headers: { authorization: `Bearer ${token}`, 'if-none-match': `"a=${head}"`, prefer: 'wait=20' },
    }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
  answered.catch(() => {});
  reqs.push(req);
  return { answered };
}
const heldNow = async (s: TestServer) => (await s.ctx.metrics.heldPolls.get()).values[0]?.value ?? 0;

describe('held long-polls per holder', () => {
  it('holds exactly maxHeldPollsPerSub for one token subject and answers 429 + Retry-After past it; other subjects are unaffected', async () => {
    // Before: one subject could hold up to the global cap (10,000).
    const s = await start({ maxHeldPollsPerSub: 3 });
    for (let i = 0; i < 3; i++) await longPoll(s, 'mallory');
    await expect.poll(() => heldNow(s)).toBe(3);
    const past = await (await longPoll(s, 'mallory')).answered;
    expect(past.status).toBe(429);
    expect(JSON.parse(past.body)).toMatchObject({ error: 'too_many_polls' });
    expect(past.headers['retry-after']).toBe('5');
    expect(past.headers['x-poll-interval']).toBe('5');
    await longPoll(s, 'alice');
    await expect.poll(() => heldNow(s)).toBe(4);
  });

  it('holds exactly maxHeldPollsPerSource from one address, whatever the subjects; another address still gets held', async () => {
    const s = await start({ maxHeldPollsPerSource: 3 });
    for (let i = 0; i < 3; i++) await longPoll(s, `u${i}`, '127.0.0.2');
    await expect.poll(() => heldNow(s)).toBe(3);
    const past = await (await longPoll(s, 'u9', '127.0.0.2')).answered;
    expect(past.status).toBe(429);
    await longPoll(s, 'u9', '127.0.0.3');
    await expect.poll(() => heldNow(s)).toBe(4);
  });

  it('a flood from one subject (bounded: 60 polls) leaves X-Poll-Interval at its base for everyone', async () => {
    const s = await start({ maxHeldPolls: 100, maxHeldPollsPerSub: 5 });
    const answers = await Promise.all(Array.from({ length: 60 }, () => longPoll(s, 'mallory')));
    await expect.poll(() => heldNow(s)).toBe(5);
    const statuses: number[] = [];
    for (const a of answers) void a.answered.then((x) => statuses.push(x.status), () => {});
    await expect.poll(() => statuses.length, { timeout: 10_000 }).toBe(55);
    expect(new Set(statuses)).toEqual(new Set([429]));
    expect(await heldNow(s)).toBe(5);
    // 5 held of 100: the interval stays at the base (it doubles at half the global cap).
    const plain = await fetch(`${s.url}/v1/poll?channels=a`, { headers: { authorization: `Bearer ${await tokenFor('alice')}` } });
    expect(plain.headers.get('x-poll-interval')).toBe('5');
  });
});
