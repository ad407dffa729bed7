// Replay memory: what a `hello` asking for history may cost (issue 12, item 7).
//
// A ~60-byte hello can ask for the whole retained history of several channels
// (1000 events of up to 64 KiB each). Two bounds: per connection, the replay is
// written at most config.replayWindowBytes ahead of what the socket has handed
// to the kernel (so an unread replay pins little user-space memory); over all
// connections, replay events read and not yet written may hold at most
// config.maxReplayBytes, past which a new replay is refused with 1013 (try again
// later: the client reconnects with backoff and its cursor, nothing is lost).
import type { Replay } from '../pubsub/bus.js';

/** Bytes the replay events hold (their stored JSON plus the message envelope, ~64 bytes each). */
export function replayBytes(replays: readonly (Replay | null | undefined)[]): number {
  let n = 0;
  for (const r of replays) {
    if (r === null || r === undefined || r.kind !== 'events') continue;
    for (const e of r.events) n += e.json.length + 64;
  }
  return n;
}

/**
 * Whether a replay of `bytes` may start while `held` bytes of other replays are
 * in memory. One replay alone is always admitted (a history larger than the
 * budget must still be replayable, one connection at a time).
 */
export function admitReplay(held: number, bytes: number, max: number): boolean {
  return held === 0 || held + bytes <= max;
}
