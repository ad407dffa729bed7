import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log.js';
import { createMetrics } from '../../server/metrics.js';

function capture(): { stream: Writable; lines: () => string } {
  let out = '';
  const stream = new Writable({ write(chunk, _enc, cb) { out += chunk.toString(); cb(); } });
  return { stream, lines: () => out };
}

describe('createLogger', () => {
  it('never writes tokens, keys or Authorization headers', () => {
    const { stream, lines } = capture();
    const log = createLogger({ level: 'info', destination: stream });
    log.info({ token: 'tok-SECRET1', req: { headers: { authorization: 'Bearer SECRET2', host: 'h' } } }, 'a');
    log.info({ hello: { token: 'SECRET3' }, config: { publisherKey: 'SECRET4', subscriberSecret: 'SECRET5', port: 1 } }, 'b');
    log.info({ headers: { authorization: 'Bearer SECRET6' }, key: 'SECRET7' }, 'c');
    const text = lines();
    for (let i = 1; i <= 7; i++) expect(text).not.toContain(`SECRET${i}`);
    expect(text).toContain('[redacted]');
    expect(text).toContain('"host":"h"');
    expect(text).toContain('"port":1');
  });

  it('honours the level', () => {
    const { stream, lines } = capture();
    createLogger({ level: 'warn', destination: stream }).info('quiet');
    expect(lines()).toBe('');
  });
});

describe('createMetrics', () => {
  it('keeps metrics on its own registry, so two instances do not collide', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.publishes.inc(2);
    expect((await a.publishes.get()).values[0]!.value).toBe(2);
    expect((await b.publishes.get()).values[0]!.value).toBe(0);
    a.close();
    b.close();
  });

  it('reports a blocked event loop once the lag window rolls, and holds the value until the next roll', async () => {
    let t = 0;
    const m = createMetrics({ lagWindowMs: 1000, now: () => t });
    // What is measured is the real event loop, so it is really blocked (no fake clock can do this).
    await new Promise((r) => setTimeout(r, 30)); // let the monitor take its first samples
    const until = performance.now() + 120;
    while (performance.now() < until) { /* busy */ }
    await new Promise((r) => setTimeout(r, 30));
    t = 999;
    expect(m.eventLoopLagMs()).toBe(0); // window not yet rolled
    t = 1000;
    const lag = m.eventLoopLagMs();
    expect(lag).toBeGreaterThanOrEqual(50);
    t = 1999;
    expect(m.eventLoopLagMs()).toBe(lag);
    m.close();
  });
});
