// What an idle subscriber leaves behind in the server (docs/server.md "Memory").
import { afterAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { subscribe } from '../support/ws-client.js';
import { tokenCacheOf } from '../../server/auth/tokens.js';
import { TEST_SUBSCRIBER_SECRET } from '../support/context.js';

const servers: TestServer[] = [];
afterAll(async () => { await Promise.all(servers.map((s) => s.close())); });

describe('verified-token cache and WebSocket subscribers', () => {
  it('a WebSocket subscriber leaves no cache entry; a poller with the same kind of token does', async () => {
    const s = await startTestServer();
    servers.push(s);
    const cache = tokenCacheOf(TEST_SUBSCRIBER_SECRET);
    cache.clear();
    const clients = [];
    for (let i = 0; i < 5; i++) clients.push((await subscribe(s.wsUrl, await s.token([`user:${i}`]), { [`user:${i}`]: null })).c);
    expect(cache.size).toBe(0);

    const pollToken = await s.token(['user:99']);
    const res = await fetch(`${s.url}/v1/poll?channels=user:99`, { headers: { authorization: `Bearer ${pollToken}` } });
    expect(res.status).toBe(200);
    expect(cache.size).toBe(1);

    // A token the cache already holds is still answered from it over WebSocket.
    const again = await subscribe(s.wsUrl, pollToken, { 'user:99': null });
    expect(again.welcome.type).toBe('welcome');
    expect(cache.size).toBe(1);
    for (const c of [...clients, again.c]) c.ws.close();
  });
});
