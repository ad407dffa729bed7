// A Node reference server as its own process (measured from outside through
// /proc): `node bench/ref/serve.mjs ws|net` prints `listening on http://127.0.0.1:<port>`.
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from '../lib/token.mjs';

const kind = process.argv[2];
const opts = { secret: BENCH_SECRET, publisherKey: BENCH_PUBLISHER_KEY };
const mod = kind === 'ws' ? await import('./ws-server.mjs') : kind === 'net' ? await import('./net-server.mjs') : null;
if (!mod) { console.error(`unknown server ${kind}`); process.exit(2); }
const s = kind === 'ws' ? mod.createWsServer(opts) : mod.createNetServer(opts);
s.server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => console.log(`listening on http://127.0.0.1:${s.server.address().port}`));
