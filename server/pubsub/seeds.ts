// TIDINGS_REDIS_CLUSTER's seed nodes. Pure, so config validation can use it
// without loading ioredis.

export interface Seed {
  host: string;
  port: number;
  username?: string;
  password?: string;
  tls: boolean;
}

const SEED_RE = /^(?:(rediss?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?)?(\[[0-9a-fA-F:]+\]|[^:/@\s[\]]+):(\d{1,5})\/?$/;

/** `host:port` or `redis[s]://[user:password@]host:port` -> address and credentials; throws a message a person can act on. */
export function parseSeed(seed: string): Seed {
  const m = SEED_RE.exec(seed.trim());
  if (!m || Number(m[5]) < 1 || Number(m[5]) > 65535) {
    throw new Error(`"${seed}" is not a seed node; expected host:port (e.g. 10.0.0.5:6379) or redis://[user:password@]host:port`);
  }
  const out: Seed = { host: m[4]!.replace(/^\[|\]$/g, ''), port: Number(m[5]), tls: m[1] === 'rediss' };
  if (m[2]) out.username = decodeURIComponent(m[2]);
  if (m[3] !== undefined) out.password = decodeURIComponent(m[3]);
  return out;
}
