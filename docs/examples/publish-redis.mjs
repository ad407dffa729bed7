#!/usr/bin/env node
// Publish one Tidings event straight into Redis, without HTTP: what a storage
// backend does after it commits a change. Same effect as POST /v1/publish on
// any node: history (XADD) and live delivery (SPUBLISH) in one atomic FCALL.
//
//   TIDINGS_REDIS_URL=redis://127.0.0.1:6379 node docs/examples/publish-redis.mjs user:42 '{"unread":3}'
//
// Prints the new event's cursor. Needs a running tidings-server node on the
// same Redis (it loads the `tidings` function library with FUNCTION LOAD).
import { Redis } from 'ioredis';

const [channel, json] = process.argv.slice(2);
if (!channel || json === undefined) {
  console.error('usage: publish-redis.mjs <channel> <json data>');
  process.exit(2);
}
const url = process.env.TIDINGS_REDIS_URL || 'redis://127.0.0.1:6379';
const history = process.env.TIDINGS_HISTORY || '1000'; // keep equal to the nodes' TIDINGS_HISTORY
const ttl = process.env.TIDINGS_HISTORY_TTL_S || '604800'; // and to their TIDINGS_HISTORY_TTL_S

const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
redis.on('error', () => {}); // the command below reports the failure
try {
  // FCALL tidings_publish 2 <stream key> <epoch key> <channel> <json> <history> <ttl>
  // (both keys carry the channel as {hash tag}: one Redis Cluster slot)
  const cursor = await redis.fcall('tidings_publish', 2, `tidings:{${channel}}:h`, `tidings:{${channel}}:g`, channel, json, history, ttl);
  console.log(cursor);
} catch (err) {
  const msg = String(err?.message ?? err);
  console.error(
    /Function not found/i.test(msg) ? 'tidings_publish is not loaded: start a tidings-server node with TIDINGS_REDIS_URL first'
      : err?.name === 'ReplyError' ? `publish refused: ${msg}` // BADCHANNEL, BADJSON, BADHISTORY, BADTTL
        : `cannot reach Redis at ${url.replace(/\/\/[^@/]*@/, '//***@')}: ${msg}`);
  process.exitCode = 1;
} finally {
  redis.disconnect();
}
