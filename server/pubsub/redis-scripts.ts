// The Redis side of the bus: key names, the cursor format, and the `tidings`
// Redis 7 FUNCTION library that every node loads (FUNCTION LOAD REPLACE) on
// every primary and that storage backends may call directly (docs/redis.md).
//
// Why a FUNCTION and not MULTI from the client: XADD and SPUBLISH must happen as
// one step, so the order of live delivery and the order of history agree, and a
// backend that publishes without HTTP gets exactly the same semantics.
//
// Every key and the live channel of a Tidings channel carry the channel name as
// a hash tag (`tidings:{user:42}:h`), so they live in one Redis Cluster slot:
// the function touches one slot (no CROSSSLOT) and its SPUBLISH reaches only
// the shard that owns the channel. The same layout serves a single Redis.

/** Stream holding a channel's history (XADD ... MAXLEN ~ history). */
export const streamKey = (channel: string): string => `tidings:{${channel}}:h`;
/**
 * The channel's epoch (generation): created on first use, so it disappears with
 * the data. Cursors carry it, so a cursor from before a data loss never passes
 * for a valid resume point in the new dataset (PROTOCOL.md "No silent loss").
 * Per channel, so a loss costs a reset on the channels it touched only.
 */
export const epochKey = (channel: string): string => `tidings:{${channel}}:g`;
/** Sharded Pub/Sub channel (SPUBLISH/SSUBSCRIBE) carrying live events, as `<cursor> <json>`. */
export const liveKey = (channel: string): string => `tidings:{${channel}}:e`;
/** Pure: the Tidings channel of a liveKey, or null for anything else. */
export function channelOfLiveKey(key: string): string | null {
  return key.startsWith('tidings:{') && key.endsWith('}:e') ? key.slice(9, -3) : null;
}
export const LIBRARY_NAME = 'tidings';
/** Stream entry ID of a channel that has never been published to. */
export const ZERO_ID = '0-0';

/**
 * A cursor is `<epoch>.<stream entry ID>`, e.g. `mi5x3k2p1a.1764000000500-0`:
 * at most 13 + 1 + 41 = 55 characters of `[0-9a-z.-]`, inside PROTOCOL.md's
 * 1-64 of `[0-9A-Za-z_.-]`.
 */
const CURSOR_RE = /^([0-9a-z]{1,13})\.(\d{1,20})-(\d{1,20})$/;

export interface ParsedCursor {
  epoch: string;
  /** Stream entry ID `ms-seq`. */
  id: string;
  ms: string;
  seq: string;
}

/** Pure: split a cursor, or null when it is not one of ours (then the caller answers reset). */
export function parseCursor(cursor: string): ParsedCursor | null {
  const m = CURSOR_RE.exec(cursor);
  if (!m) return null;
  const [, epoch, ms, seq] = m as unknown as [string, string, string, string];
  // Redis never emits leading zeros; a cursor that has them was not issued by us.
  if ((ms.length > 1 && ms[0] === '0') || (seq.length > 1 && seq[0] === '0')) return null;
  return { epoch, id: `${ms}-${seq}`, ms, seq };
}

/** Compare two decimal strings without leading zeros (exact beyond 2^53: seq is a u64). */
function cmpDecimal(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Pure: order of two parsed cursors. Epochs are base-36 of the creation time in
 * microseconds (digits sort before letters in ASCII), so a newer dataset sorts later.
 */
export function compareCursors(a: ParsedCursor, b: ParsedCursor): number {
  return cmpDecimal(a.epoch, b.epoch) || cmpDecimal(a.ms, b.ms) || cmpDecimal(a.seq, b.seq);
}

/**
 * The library. Keys are declared (KEYS[1] stream, KEYS[2] epoch) as Redis asks of
 * functions, and both carry the channel as hash tag. Errors are replies with a
 * stable first word (BADCHANNEL, BADJSON, BADHISTORY, BADTTL, BADKEY) so callers
 * can tell them from outages.
 *
 * `ttl` (seconds, 0 = none) bounds the memory of channels nobody publishes to:
 * every publish sets it on both keys together, so they expire together and a
 * cursor from before the expiry meets a new epoch (reset), never an empty
 * history that passes for "nothing happened".
 */
export const LIBRARY = `#!lua name=${LIBRARY_NAME}

local B36 = '0123456789abcdefghijklmnopqrstuvwxyz'

local function check_ttl(ttl)
  local n = tonumber(ttl or '0')
  if not n or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

-- The channel's epoch; created (from TIME, in base 36) when missing, with the ttl.
local function epoch(key, ttl)
  local e = redis.call('GET', key)
  if e then return e end
  local t = redis.call('TIME')
  local n = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(B36, d + 1, d + 1) .. s
    n = math.floor(n / 36)
  until n == 0
  if ttl > 0 then redis.call('SET', key, s, 'EX', ttl) else redis.call('SET', key, s) end
  return s
end

local function check_channel(keys, channel)
  if type(channel) ~= 'string' or #channel < 1 or #channel > 128
    or not string.match(channel, '^[A-Za-z0-9:_%.%-]+$') then
    return redis.error_reply('BADCHANNEL channel must match ^[A-Za-z0-9:_.-]{1,128}$')
  end
  if keys[1] ~= 'tidings:{' .. channel .. '}:h' or keys[2] ~= 'tidings:{' .. channel .. '}:g' then
    return redis.error_reply('BADKEY keys must be tidings:{<channel>}:h and tidings:{<channel>}:g')
  end
  return nil
end

-- Stream IDs "ms-seq" compared as decimals of any length.
local function cmp_dec(a, b)
  if #a ~= #b then return (#a < #b) and -1 or 1 end
  if a == b then return 0 end
  return (a < b) and -1 or 1
end
local function cmp_id(a, b)
  local am, as = string.match(a, '^(%d+)%-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)%-(%d+)$')
  local c = cmp_dec(am, bm)
  if c ~= 0 then return c end
  return cmp_dec(as, bs)
end

-- What a stream has and had: last-generated-id, max-deleted-entry-id (XDEL),
-- the first retained ID, and whether anything was ever removed (entries-added >
-- length: trimmed or deleted). Redis 7.0 does not move max-deleted-entry-id on
-- MAXLEN trimming, so trimming is proven by entries-added and the first entry.
local function stream_info(stream)
  local s = { last = '0-0', maxdel = '0-0', first = nil, removed = false }
  if redis.call('EXISTS', stream) == 1 then
    local x = redis.call('XINFO', 'STREAM', stream)
    local length, added = 0, 0
    for i = 1, #x, 2 do
      local k, v = x[i], x[i + 1]
      if k == 'last-generated-id' then s.last = v
      elseif k == 'max-deleted-entry-id' then s.maxdel = v
      elseif k == 'length' then length = v
      elseif k == 'entries-added' then added = v
      elseif k == 'first-entry' and v then s.first = v[1] end
    end
    s.removed = added > length
  end
  return s
end

-- FCALL tidings_publish 2 tidings:{<ch>}:h tidings:{<ch>}:g <ch> <json> [history=1000] [ttl=0]
-- Appends to history and publishes live (SPUBLISH, same slot) in one step; returns the cursor.
redis.register_function('tidings_publish', function(keys, args)
  local channel, json, history = args[1], args[2], args[3] or '1000'
  local bad = check_channel(keys, channel)
  if bad then return bad end
  if type(json) ~= 'string' or not pcall(cjson.decode, json) then
    return redis.error_reply('BADJSON data must be JSON text')
  end
  local n = tonumber(history)
  if not n or n < 1 or n ~= math.floor(n) then
    return redis.error_reply('BADHISTORY history must be a positive integer')
  end
  local ttl = check_ttl(args[4])
  if not ttl then return redis.error_reply('BADTTL ttl must be a non-negative integer (seconds)') end
  local e = epoch(keys[2], ttl)
  -- MAXLEN ~ trims whole macro nodes: Redis may keep more than n, never fewer.
  local id = redis.call('XADD', keys[1], 'MAXLEN', '~', n, '*', 'd', json)
  if ttl > 0 then
    redis.call('EXPIRE', keys[1], ttl)
    redis.call('EXPIRE', keys[2], ttl)
  else
    redis.call('PERSIST', keys[1])
    redis.call('PERSIST', keys[2])
  end
  local cursor = e .. '.' .. id
  redis.call('SPUBLISH', 'tidings:{' .. channel .. '}:e', cursor .. ' ' .. json)
  return cursor
end)

-- FCALL tidings_head 2 tidings:{<ch>}:h tidings:{<ch>}:g <ch> [ttl=0] -> cursor (epoch.0-0 if never published)
redis.register_function('tidings_head', function(keys, args)
  local bad = check_channel(keys, args[1])
  if bad then return bad end
  local ttl = check_ttl(args[2])
  if not ttl then return redis.error_reply('BADTTL ttl must be a non-negative integer (seconds)') end
  return epoch(keys[2], ttl) .. '.' .. stream_info(keys[1]).last
end)

-- FCALL tidings_heads 2N h1 g1 ... hN gN <ttl> <ch1> ... <chN> -> {cursor1, ..., cursorN}
-- The heads of N channels in one call (a node that starts watching many new
-- channels at once, e.g. a connect storm of per-user channels): what N calls of
-- tidings_head return, for one round of call overhead. On a cluster the keys
-- of one call must share a slot (Redis refuses CROSSSLOT): callers batch per slot.
redis.register_function('tidings_heads', function(keys, args)
  local ttl = check_ttl(args[1])
  if not ttl then return redis.error_reply('BADTTL ttl must be a non-negative integer (seconds)') end
  local n = #args - 1
  if n < 1 or #keys ~= 2 * n then
    return redis.error_reply('BADKEY keys must be tidings:{<channel>}:h and tidings:{<channel>}:g for each channel, in order')
  end
  -- All checked before any epoch is created: a refused call changes nothing.
  for i = 1, n do
    local bad = check_channel({ keys[2 * i - 1], keys[2 * i] }, args[i + 1])
    if bad then return bad end
  end
  local out = {}
  for i = 1, n do out[i] = epoch(keys[2 * i], ttl) .. '.' .. stream_info(keys[2 * i - 1]).last end
  return out
end)

-- FCALL tidings_read 2 tidings:{<ch>}:h tidings:{<ch>}:g <ch> <epoch> <id> [ttl=0]
-- -> {'events', head, cursor1, json1, cursor2, json2, ...} or {'reset', head}.
-- Continuity proof: same epoch; cursor not ahead of the last generated ID;
-- the cursor's own entry still exists (unless it is 0-0, or was XDELed: at
-- or before max-deleted-entry-id), which catches a cursor of an entry a
-- failover lost even after newer IDs were generated (replication is in
-- order: a replicated XDEL at or after the cursor implies its XADD was too);
-- nothing after the cursor deleted (max-deleted-entry-id <= cursor); and if
-- anything was ever trimmed, the first retained entry is at or before the
-- cursor. Otherwise reset: we may hold more than asked, never guess.
redis.register_function('tidings_read', function(keys, args)
  local bad = check_channel(keys, args[1])
  if bad then return bad end
  local ttl = check_ttl(args[4])
  if not ttl then return redis.error_reply('BADTTL ttl must be a non-negative integer (seconds)') end
  local e = epoch(keys[2], ttl)
  local s = stream_info(keys[1])
  local last = s.last
  local head = e .. '.' .. last
  local ce, cid = args[2], args[3]
  if ce ~= e or type(cid) ~= 'string' or not string.match(cid, '^%d+%-%d+$')
    or cmp_id(cid, last) > 0 or cmp_id(s.maxdel, cid) > 0
    or (s.removed and cmp_id(cid, last) < 0 and (not s.first or cmp_id(s.first, cid) > 0))
    or (cid ~= '0-0' and cmp_id(cid, s.maxdel) > 0 and #redis.call('XRANGE', keys[1], cid, cid) == 0) then
    return {'reset', head}
  end
  local out = {'events', head}
  if cid ~= last then
    local entries = redis.call('XRANGE', keys[1], '(' .. cid, '+')
    for _, entry in ipairs(entries) do
      local f = entry[2]
      local json = nil
      for i = 1, #f, 2 do if f[i] == 'd' then json = f[i + 1] end end
      if json then
        out[#out + 1] = e .. '.' .. entry[1]
        out[#out + 1] = json
      end
    end
  end
  return out
end)
`;
