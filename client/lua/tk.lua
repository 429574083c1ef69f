#!lua name=tk
--[[
tk: the tk module's commands as a Redis Functions library, for servers that
do not allow MODULE LOAD (managed Redis and Valkey). Same arguments, same
replies, same error texts and the same stored data as the module
(module/src/*, docs/COMMANDS.md), so one deployment can move between the two
without losing state.

Naming: each command is a function named like the command, lower case, with
the dots replaced by underscores: TK.RATELIMIT.PEEK is `tk_ratelimit_peek`,
TK.LOCK.ACQUIRE is `tk_lock_acquire`. `tk_version` returns the library's
version (the client crate's), so a client can tell whether to FUNCTION LOAD
REPLACE it.

Keys and arguments: the command's keys go in KEYS (so Cluster routing and ACL
key patterns apply), in the command's order, everything else in ARGV:

  TK.RATELIMIT k 10 1s           FCALL tk_ratelimit 1 k 10 1s
  TK.RATELIMIT.ALL 2 a b ...     FCALL tk_ratelimit_all 2 a b ...
  TK.RATELIMIT.RESET a b         FCALL tk_ratelimit_reset 2 a b
  TK.LOCK.ACQUIRE l f tok 30s    FCALL tk_lock_acquire 2 l f tok 30s
  TK.SESSION.CREATE s i u 1h d   FCALL tk_session_create 2 s i u 1h d
  TK.SESSION.REVOKEALL i EXCEPT s  FCALL tk_session_revokeall 1 i EXCEPT s
  TK.CACHE.SET e g i ns 5m v     FCALL tk_cache_set 3 e g i ns 5m v

(REVOKEALL's EXCEPT key is only compared, never accessed: an ARGV.)

A call with the wrong number of keys is refused (`ERR <function> takes ...`).
Read-only commands (PEEK, SESSION.GET, SESSION.LIST, CACHE.GET) are
flagged `no-writes`, so FCALL_RO runs them on replicas.

Keys an index lists (a user's sessions, cache entries) are not in KEYS,
as for the module (its key specs name only the index). The library reads
and deletes them as the module does, only after the module's name rule
(`tk:s:{tag}:...` in `tk:si:{tag}:<user>`, `tk:c:{tag}:...` in
`tk:ci:{tag}`), which puts them in the declared keys' slot: Cluster lets
a script touch undeclared keys of that slot. The module asks the ACL
whether the caller may touch a listed key; a script cannot ask, so it
tries: a refused read fails inside pcall, and write commands first try a
no-op `PEXPIREAT key 1 GT` (1 is before any expiry: nothing is set, and
nothing replicates), refused where the caller may not delete. Either
makes the key foreign, as in the module: unlisted (or skipped), never
read further or deleted. The refusals show in ACL LOG.

The cache reclaim: the module frees invalidated entries from a timer;
Functions have none. Here each tk_cache_set (when the generations key
exists) and each invalidation examines at most RECLAIM_BATCH (32) index
members with the module's rule (core plan::reclaim), resuming at an index
score kept in field `r` of the generations hash (which the module never
reads), and wrapping at the end. No call scans the keyspace.

Time: `redis.call('TIME')`, read once per call (µs). Functions replicate
their effects (SET ... PXAT <absolute ms>, PEXPIREAT, UNLINK), as the module
does, so replicas and AOF reach the primary's state whatever their clocks.

Numbers: Lua 5.1 has only doubles, exact for integers up to 2^53.
- Nanosecond instants (about 1.8e18 today) do not fit. Every nanosecond
  quantity (GCRA's TAT, its emission interval T and tolerance tau, `now`) is
  therefore kept as a pair (ms, ns): whole milliseconds (< 2^53, exact) and
  the nanoseconds within the millisecond (0..999999). That is also the GCRA
  stored form, chosen partly for this: the key's PXAT expiry is the TAT
  rounded up to a millisecond and its value the TAT's nanoseconds within
  that last millisecond, 6 digits ("000000".."999999"):
    TAT = (PEXPIRETIME - 1) ms + value ns, or PEXPIRETIME ms if value = 0.
  Values of the 0.1 format (the whole TAT in ns, 7 to 20 digits) are split
  as text: all digits but the last 6 are the ms, the last 6 the ns.
- Products that could exceed 2^53 are split (see `mul`), and quotients of
  large numbers are corrected to the exact floor (see `div_floor`).
- Where a number cannot be exact in a double, the library's range is
  smaller than the module's, on data no tk build writes: a FIXED window
  starting after 2^52 ms (year ~144,000), a SLIDING timestamp or cost of
  2^53 or more (timestamps are µs: year 2255), or SLIDING costs summing to
  2^53, are refused as not being a state (WRONGTYPE, like any foreign
  value). A lock's fencing token stops at 2^53 (the module's at 2^63-1):
  a Lua integer reply is exact only up to there. A lock key given an
  expiry beyond 2^53 ms by hand gets an approximate remaining time.
- Sessions store ms times, a version and an idle TTL; a field of 2^53 or
  more (no tk build writes one: times are ms, a version counts SETs)
  makes the hash not a session (WRONGTYPE, or foreign when listed), and
  SET stops at version 2^53 - 1 (`ERR version limit reached`).
- Cache generations are kept as their canonical text, so GET, SET and
  IFGEN compare them exactly up to 2^63 - 1, like the module; an
  invalidation stops at 2^53 - 1 (`ERR generation limit reached`), the
  largest reply a double holds exactly.
- Integers are sent to Redis formatted with %d, never as Lua numbers (which
  Redis would print with an exponent).

Other differences from the module: FCALL checks its own numkeys first
(`ERR Number of keys can't be greater than number of args`); the library
refuses keys outside KEYS; the clock is TIME's microseconds (the module
uses the millisecond clock on Redis 7.0); there are no `INFO tk` counters
and no key specs. A session whose expiry falls in the very millisecond
of a TOUCH is deleted at once by PEXPIREAT (the module's key API keeps it
through that millisecond).
]]

local VERSION = '0.2.0'

-- Globals are looked up through the functions sandbox on every use: the
-- hot ones are bound once, at the first call (loading runs in an
-- environment without `math` and `string`).
local floor, min, max, format

local function bind_globals()
    floor, min, max = math.floor, math.min, math.max
    format = string.format
end

-- ---------------------------------------------------------------------------
-- Errors
-- ---------------------------------------------------------------------------

-- Parsing and checks raise {err = <reply text>}; `command` (below) turns it
-- into the error reply, without the " script: ..." suffix Redis appends to
-- errors that escape a function.
local function fail(message)
    error({ err = message })
end

-- A registered function's body: runs `body` and replies its error text as
-- is. (Inside pcall, Redis hands a raised {err = ...} back as its text; some
-- versions may keep the table.) Anything without an error code is a bug in
-- this library, replied as the module replies its own bugs.
local function command(body)
    return function(keys, argv)
        if not floor then
            bind_globals()
        end
        local ok, result = pcall(body, keys, argv)
        if ok then
            return result
        end
        if type(result) == 'table' then
            result = result.err
        end
        result = tostring(result)
        if not result:find('^[A-Z][A-Z]+ ') then
            result = 'ERR internal error: ' .. result
        end
        return redis.error_reply(result)
    end
end

local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

-- ---------------------------------------------------------------------------
-- Arguments (module/src/args.rs)
-- ---------------------------------------------------------------------------

-- An argument as error messages show it: at most 32 bytes, anything outside
-- printable ASCII as '?', '...' when cut.
local function token_text(raw)
    local shown = (raw:sub(1, 32):gsub('[^!-~]', '?'))
    if #raw > 32 then
        shown = shown .. '...'
    end
    return shown
end

local function arity_error(command)
    fail("ERR wrong number of arguments for '" .. command .. "' command")
end

-- An optional '-', then 1 to 20 ASCII digits; nil for anything else. Values
-- beyond 2^53 come back approximate, which only range checks (whose bounds
-- are far below) ever see.
local function parse_integer(raw)
    if not raw:find('^%-?%d+$') then
        return nil
    end
    local digits = #raw
    if raw:byte(1) == 45 then -- '-'
        digits = digits - 1
    end
    if digits > 20 then
        return nil
    end
    return tonumber(raw)
end

local DURATION_SCALE = { [''] = 1, ms = 1, s = 1000, m = 60000, h = 3600000 }

-- `<integer>[ms|s|m|h]` in ms (unit case-insensitive); nil when malformed.
local function parse_duration_ms(raw)
    if raw:find('^%d+$') then
        -- No unit (the common case): milliseconds.
        return parse_integer(raw)
    end
    local last_digit = raw:match('.*()%d')
    if not last_digit then
        return nil
    end
    local scale = DURATION_SCALE[raw:sub(last_digit + 1):lower()]
    local value = parse_integer(raw:sub(1, last_digit))
    if not scale or not value then
        return nil
    end
    return value * scale
end

-- A forward-only cursor over a command's arguments, as the module's `Args`:
-- `list` is argv without the command name.
local function new_args(list, command)
    return { list = list, pos = 1, command = command }
end

local function next_bytes(args)
    local raw = args.list[args.pos]
    if raw == nil then
        arity_error(args.command)
    end
    args.pos = args.pos + 1
    return raw
end

local function in_range(value, what, min, max)
    if value < min or value > max then
        fail('ERR ' .. what .. ' must be between ' .. format('%d', min) .. ' and '
            .. format('%d', max))
    end
    return value
end

local function next_integer(args, what, min, max)
    local value = parse_integer(next_bytes(args))
    if not value then
        fail('ERR ' .. what .. ' must be an integer')
    end
    return in_range(value, what, min, max)
end

local function next_duration_ms(args, what, min, max)
    local value = parse_duration_ms(next_bytes(args))
    if not value then
        fail('ERR ' .. what .. ' must be a duration: an integer number of milliseconds, '
            .. 'optionally with a unit suffix ms, s, m or h')
    end
    return in_range(value, what, min, max)
end

-- If the next argument is one of `keywords` (upper case; matched
-- case-insensitively), consumes it and returns it.
local function next_keyword(args, keywords)
    local raw = args.list[args.pos]
    if raw == nil then
        return nil
    end
    local upper = raw:upper()
    for _, keyword in ipairs(keywords) do
        if upper == keyword then
            args.pos = args.pos + 1
            return keyword
        end
    end
    return nil
end

local function unknown_option(raw)
    fail("ERR syntax error: unknown option '" .. token_text(raw) .. "'")
end

local function expect_end(args)
    local raw = args.list[args.pos]
    if raw ~= nil then
        unknown_option(raw)
    end
end

-- The command's argument list (argv without its name): KEYS then ARGV,
-- after Redis's own arity check for the command (`arity` as the module
-- registers it: negative for "at least"), which replies with the command's
-- upper-case name. Each caller then checks that its keys came in KEYS.
local function command_args(keys, argv, redis_name, arity)
    local count = 1 + #keys + #argv
    if (arity >= 0 and count ~= arity) or (arity < 0 and count < -arity) then
        arity_error(redis_name)
    end
    local list = {}
    for i = 1, #keys do
        list[i] = keys[i]
    end
    for i = 1, #argv do
        list[#keys + i] = argv[i]
    end
    return list
end

-- A function's own check that its keys came in KEYS, `count` of them:
-- the module's key positions are fixed, FCALL's are the caller's.
local function takes_keys(count, actual, fname, usage)
    if actual ~= count then
        local noun = count == 1 and ' key' or ' keys'
        fail('ERR ' .. fname .. ' takes ' .. count .. noun .. ': FCALL ' .. fname .. ' ' .. count
            .. ' ' .. usage)
    end
end

-- ---------------------------------------------------------------------------
-- Nanosecond arithmetic on (ms, ns) pairs: ms a whole number < 2^53, ns in
-- 0..999999. See the header.
-- ---------------------------------------------------------------------------

local NS_PER_MS = 1000000
-- u64::MAX ns = 18446744073709 ms + 551615 ns: the module saturates there.
local U64_MS, U64_NS = 18446744073709, 551615
local U64_MAX_TEXT = '18446744073709551615'
local TWO_53 = 9007199254740992

local function normalize(ms, ns)
    if ns >= NS_PER_MS then
        local carry = floor(ns / NS_PER_MS)
        return ms + carry, ns - carry * NS_PER_MS
    end
    return ms, ns
end

local function less(a_ms, a_ns, b_ms, b_ns)
    return a_ms < b_ms or (a_ms == b_ms and a_ns < b_ns)
end

local function add(a_ms, a_ns, b_ms, b_ns)
    return normalize(a_ms + b_ms, a_ns + b_ns)
end

-- a - b, or 0 when b > a (the module's saturating_sub).
local function sub_floor0(a_ms, a_ns, b_ms, b_ns)
    if less(a_ms, a_ns, b_ms, b_ns) then
        return 0, 0
    end
    if a_ns < b_ns then
        return a_ms - b_ms - 1, a_ns - b_ns + NS_PER_MS
    end
    return a_ms - b_ms, a_ns - b_ns
end

-- (ms, ns) * k for a whole k < 2^42, when the product is below 2^53 ms
-- (callers multiply only quantities bounded by tau, about 10 years). ns * k
-- can pass 2^53, so ns is split into µs and ns below 1000 first.
local function mul(ms, ns, k)
    local us_part = floor(ns / 1000)
    local us = us_part * k
    local rest = (ns - us_part * 1000) * k
    local us_ms = floor(us / 1000)
    local rest_ms = floor(rest / NS_PER_MS)
    return normalize(ms * k + us_ms + rest_ms,
        (us - us_ms * 1000) * 1000 + (rest - rest_ms * NS_PER_MS))
end

-- floor(a / b) for b > 0 when the quotient is below 2^42. The quotient of
-- the doubles is within one of the exact one; the loops make it exact.
local TWO_52 = 4503599627370496
local function div_floor(a_ms, a_ns, b_ms, b_ns)
    local a, b = a_ms * NS_PER_MS + a_ns, b_ms * NS_PER_MS + b_ns
    local q = floor(a / b)
    if a < TWO_52 and b < TWO_52 then
        -- Both exact, and so is q * b (below a + b < 2^53): one correction
        -- step at most, without the pair arithmetic.
        local r = a - q * b
        if r < 0 then
            return q - 1
        elseif r >= b then
            return q + 1
        end
        return q
    end
    while q > 0 do
        local p_ms, p_ns = mul(b_ms, b_ns, q)
        if not less(a_ms, a_ns, p_ms, p_ns) then
            break
        end
        q = q - 1
    end
    while true do
        local p_ms, p_ns = mul(b_ms, b_ns, q + 1)
        if less(a_ms, a_ns, p_ms, p_ns) then
            break
        end
        q = q + 1
    end
    return q
end

-- Rounds up to whole milliseconds.
local function ceil_ms(ms, ns)
    if ns > 0 then
        return ms + 1
    end
    return ms
end

-- The module's u64 saturation.
local function min_u64(ms, ns)
    if less(U64_MS, U64_NS, ms, ns) then
        return U64_MS, U64_NS
    end
    return ms, ns
end

-- Whether a * b >= c * d, exactly, for whole numbers below 2^48: each is
-- split in base 2^24 and the products compared limb by limb.
local LIMB = 16777216
local function product_limbs(a, b)
    local a1, b1 = floor(a / LIMB), floor(b / LIMB)
    local a0, b0 = a - a1 * LIMB, b - b1 * LIMB
    local limbs = { a0 * b0, a1 * b0 + a0 * b1, a1 * b1, 0 }
    for i = 1, 3 do
        local carry = floor(limbs[i] / LIMB)
        limbs[i] = limbs[i] - carry * LIMB
        limbs[i + 1] = limbs[i + 1] + carry
    end
    return limbs
end

local function product_at_least(a, b, c, d)
    -- Products below 2^53 are exact doubles: compared as they are (the
    -- common case, without the limb tables).
    local ab, cd = a * b, c * d
    if ab < TWO_53 and cd < TWO_53 then
        return ab >= cd
    end
    local left, right = product_limbs(a, b), product_limbs(c, d)
    for i = 4, 1, -1 do
        if left[i] ~= right[i] then
            return left[i] > right[i]
        end
    end
    return true
end

-- `redis.call('TIME')` as a (ms, ns) pair.
local function now_pair()
    local time = redis.call('TIME')
    local seconds, micros = tonumber(time[1]), tonumber(time[2])
    local ms = floor(micros / 1000)
    return seconds * 1000 + ms, (micros - ms * 1000) * 1000
end

local function format_int(value)
    return format('%d', value)
end

-- A string key's value (false when absent); WRONGTYPE for another type.
local function get_string(key)
    local value = redis.pcall('GET', key)
    if type(value) == 'table' then
        fail(WRONGTYPE)
    end
    return value
end

-- ---------------------------------------------------------------------------
-- Rate limiting (module/src/ratelimit/)
-- ---------------------------------------------------------------------------

local MAX_COUNT = 1099511627776 -- 2^40
local MAX_SPAN_MS = 315360000000 -- 10 years
local MAX_ALL_KEYS = 16
local LIMIT_OPTIONS = { 'BURST', 'COST', 'ALGO' }
local ALGORITHMS = { 'GCRA', 'SLIDING', 'FIXED' }
local ALGORITHM_STATE = { GCRA = 'a GCRA', SLIDING = 'a SLIDING', FIXED = 'a FIXED' }

-- One `<limit> <period> [BURST n] [COST n] [ALGO a]` (spec.rs parse_limit).
local function parse_limit(args)
    local limit = next_integer(args, 'limit', 1, MAX_COUNT)
    local period_ms = next_duration_ms(args, 'period', 1, MAX_SPAN_MS)
    local burst, cost, algorithm = nil, 1, 'GCRA'
    local seen -- created at the first option: most calls have none
    while true do
        local option = next_keyword(args, LIMIT_OPTIONS)
        if not option then
            break
        end
        seen = seen or {}
        if seen[option] then
            fail('ERR syntax error: option ' .. option .. ' given more than once')
        end
        seen[option] = true
        if option == 'BURST' then
            burst = next_integer(args, 'BURST', 1, MAX_COUNT)
        elseif option == 'COST' then
            cost = next_integer(args, 'COST', 0, MAX_COUNT)
        else
            local raw = next_bytes(args):upper()
            algorithm = nil
            for _, name in ipairs(ALGORITHMS) do
                if raw == name then
                    algorithm = name
                end
            end
            if not algorithm then
                fail('ERR ALGO must be one of GCRA, SLIDING or FIXED')
            end
        end
    end
    if burst and algorithm ~= 'GCRA' then
        fail('ERR syntax error: BURST only applies to ALGO GCRA')
    end
    burst = burst or limit
    local capacity = limit
    if algorithm == 'GCRA' then
        capacity = burst
    end
    if cost > capacity then
        fail('ERR COST ' .. format_int(cost) .. ' exceeds the capacity ' .. format_int(capacity)
            .. ' of this limit and could never be admitted')
    end
    -- floor(period * burst / limit) > MAX_SPAN_MS, i.e.
    -- period * burst >= (MAX_SPAN_MS + 1) * limit, compared exactly.
    if algorithm == 'GCRA' and product_at_least(period_ms, burst, MAX_SPAN_MS + 1, limit) then
        fail('ERR period * BURST / limit must not exceed 315360000000 ms (10 years)')
    end
    return { limit = limit, period_ms = period_ms, burst = burst, cost = cost, algorithm = algorithm }
end

-- A decision: { allowed, limit, remaining, retry_after_ms, reset_after_ms }
-- (the reply), and the write that makes it happen: nil, or
-- { value = <string>, expire_at_ms = <ms> }.

-- GCRA (gcra.rs). The emission interval T = ceil(period_ns / limit), at
-- least 1 ns, computed by long division so that no step passes 2^53.
local function emission_interval(period_ms, limit)
    local q1 = floor(period_ms / limit)
    local r1 = period_ms - q1 * limit
    local x = r1 * 1000
    local q2 = floor(x / limit)
    local r2 = x - q2 * limit
    local y = r2 * 1000
    local q3 = floor(y / limit)
    local r3 = y - q3 * limit
    local ns = q2 * 1000 + q3
    if r3 > 0 then
        ns = ns + 1
    end
    local ms
    ms, ns = normalize(q1, ns)
    if ms == 0 and ns == 0 then
        ns = 1
    end
    return ms, ns
end

-- The stored TAT of a GCRA key, or nil when the value is not a GCRA state.
-- (gcra.rs from_stored)
local function gcra_stored_tat(key, value)
    if not value:find('^%d+$') then
        return nil
    end
    local length = #value
    if length == 6 then
        local rest = tonumber(value)
        -- The split form always has an expiry; without one (PERSIST by hand)
        -- the TAT is unknown.
        local expire_at_ms = redis.call('PEXPIRETIME', key)
        if expire_at_ms < 0 then
            return nil
        end
        local last_ms = expire_at_ms
        if rest ~= 0 then
            if expire_at_ms == 0 then
                return nil
            end
            last_ms = expire_at_ms - 1
        end
        if less(U64_MS, U64_NS, last_ms, rest) then
            return nil
        end
        return last_ms, rest
    end
    if length >= 7 and length <= 20 then
        if length == 20 and value > U64_MAX_TEXT then
            return nil
        end
        return tonumber(value:sub(1, length - 6)), tonumber(value:sub(length - 5))
    end
    return nil
end

-- Units admissible at `now` when the TAT is x: floor((now + tau - x) / T),
-- at most BURST (limit = now + tau).
local function gcra_units_left(limit_ms, limit_ns, x_ms, x_ns, t_ms, t_ns, burst)
    local d_ms, d_ns = sub_floor0(limit_ms, limit_ns, x_ms, x_ns)
    return min(div_floor(d_ms, d_ns, t_ms, t_ns), burst)
end

-- Whole ms from now until `until`, rounded up (0 when past).
local function wait_ms(now_ms, now_ns, until_ms, until_ns)
    return ceil_ms(min_u64(sub_floor0(until_ms, until_ns, now_ms, now_ns)))
end

local function gcra_decide(key, value, now_ms, now_ns, spec)
    local stored_ms, stored_ns
    if value then
        stored_ms, stored_ns = gcra_stored_tat(key, value)
        if not stored_ms then
            return nil
        end
    end
    local t_ms, t_ns = emission_interval(spec.period_ms, spec.limit)
    local tau_ms, tau_ns = mul(t_ms, t_ns, spec.burst)
    -- A TAT in the past means the limit is full; one ahead of a clock that
    -- stepped back is kept, so going back in time frees nothing.
    local tat_ms, tat_ns = now_ms, now_ns
    if stored_ms and less(now_ms, now_ns, stored_ms, stored_ns) then
        tat_ms, tat_ns = stored_ms, stored_ns
    end
    local cost_ms, cost_ns = mul(t_ms, t_ns, spec.cost)
    local new_ms, new_ns = add(tat_ms, tat_ns, cost_ms, cost_ns)
    local allow_ms, allow_ns = sub_floor0(new_ms, new_ns, tau_ms, tau_ns)
    local limit_ms, limit_ns = add(now_ms, now_ns, tau_ms, tau_ns)
    if spec.cost == 0 or less(now_ms, now_ns, allow_ms, allow_ns) then
        local allowed = spec.cost == 0
        local retry = 0
        if not allowed then
            retry = wait_ms(now_ms, now_ns, allow_ms, allow_ns)
        end
        return { allowed and 1 or 0, spec.limit,
            gcra_units_left(limit_ms, limit_ns, tat_ms, tat_ns, t_ms, t_ns, spec.burst), retry,
            wait_ms(now_ms, now_ns, tat_ms, tat_ns) }, nil
    end
    local decision = { 1, spec.limit,
        gcra_units_left(limit_ms, limit_ns, new_ms, new_ns, t_ms, t_ns, spec.burst), 0,
        wait_ms(now_ms, now_ns, new_ms, new_ns) }
    local stored_tat_ms, stored_tat_ns = min_u64(new_ms, new_ns)
    return decision, {
        value = format('%06d', stored_tat_ns),
        expire_at_ms = ceil_ms(stored_tat_ms, stored_tat_ns),
    }
end

-- FIXED (fixed.rs): "<window_start_ms>:<count>", windows aligned to
-- multiples of the period since the epoch.
local MAX_FIXED_START = 4503599627370496 -- 2^52: start + period stays exact

local function decimal_u64(text)
    if #text > 20 or (#text == 20 and text > U64_MAX_TEXT) then
        return nil
    end
    return tonumber(text)
end

local function fixed_decide(_, value, now_ms, now_ns, spec)
    local start, count
    if value then
        local start_text, count_text = value:match('^(%d+):(%d+)$')
        if not start_text then
            return nil
        end
        start, count = decimal_u64(start_text), decimal_u64(count_text)
        -- A count beyond 2^53 is approximate: it is only compared with
        -- limits far below.
        if not start or not count or start >= MAX_FIXED_START then
            return nil
        end
    end
    local period_ms = spec.period_ms
    local current = now_ms - now_ms % period_ms
    local window = current
    if start and start >= current then
        window = start
    else
        count = 0
    end
    local end_ms = window + period_ms
    local until_end_ms = ceil_ms(min_u64(sub_floor0(end_ms, 0, now_ms, now_ns)))
    local total = count + spec.cost
    local allowed = total <= spec.limit
    local after = count
    if allowed and spec.cost > 0 then
        after = total
    end
    local decision = {
        allowed and 1 or 0,
        spec.limit,
        max(spec.limit - after, 0),
        allowed and 0 or until_end_ms,
        after == 0 and 0 or until_end_ms,
    }
    if allowed and spec.cost > 0 then
        return decision, {
            value = format_int(window) .. ':' .. format_int(total),
            expire_at_ms = max(end_ms, now_ms + 1),
        }
    end
    return decision, nil
end

-- SLIDING (sliding.rs): an exact log of admitted requests,
--   0xA1, the first entry's µs timestamp (u64 little-endian), then per
--   entry LEB128(delta_us << 1 | has_cost) [LEB128(cost) if has_cost].
local SLIDING_TAG = 0xA1
local MAX_VARINT_HIGH = 70368744177664 -- 2^46: values stay below 2^53

-- Reads one strict LEB128 varint at `pos`: returns the next position, the
-- low 7 bits and the value above them (value = low + 128 * high), or nil
-- when malformed or beyond the library's range.
local function read_varint(bytes, pos)
    local first = bytes:byte(pos)
    if not first then
        return nil
    end
    pos = pos + 1
    if first < 128 then
        return pos, first, 0
    end
    local high, scale = 0, 1
    for _ = 2, 10 do
        local byte = bytes:byte(pos)
        -- A last byte of 0 is an overlong form.
        if not byte or byte == 0 then
            return nil
        end
        pos = pos + 1
        high = high + (byte % 128) * scale
        if high >= MAX_VARINT_HIGH then
            return nil
        end
        if byte < 128 then
            return pos, first % 128, high
        end
        scale = scale * 128
    end
    return nil
end

-- The entries of a state: timestamps and costs, oldest first; nil when the
-- value is not a SLIDING state the library can read exactly.
local function sliding_entries(value)
    if #value < 9 or value:byte(1) ~= SLIDING_TAG then
        return nil
    end
    local b1, b2, b3, b4, b5, b6, b7, b8 = value:byte(2, 9)
    if b8 ~= 0 or b7 >= 32 then -- base >= 2^53
        return nil
    end
    local previous = ((((((b7 * 256 + b6) * 256 + b5) * 256 + b4) * 256 + b3) * 256 + b2) * 256) + b1
    local stamps, costs = {}, {}
    local pos, length, total = 10, #value, 0
    while pos <= length do
        local low, high
        pos, low, high = read_varint(value, pos)
        if not pos then
            return nil
        end
        local delta = floor(low / 2) + high * 64
        local cost = 1
        if low % 2 == 1 then
            local cost_low, cost_high
            pos, cost_low, cost_high = read_varint(value, pos)
            if not pos then
                return nil
            end
            cost = cost_low + cost_high * 128
            if cost < 2 then
                return nil
            end
        end
        local stamp = previous + delta
        total = total + cost
        if stamp >= TWO_53 or total >= TWO_53 then
            return nil
        end
        stamps[#stamps + 1] = stamp
        costs[#costs + 1] = cost
        previous = stamp
    end
    return stamps, costs
end

local function write_varint(out, value)
    while value >= 128 do
        local low = value % 128
        out[#out + 1] = string.char(low + 128)
        value = (value - low) / 128
    end
    out[#out + 1] = string.char(value)
end

-- Encodes entries (nondecreasing stamps, costs >= 1).
local function sliding_encode(stamps, costs)
    local out = { string.char(SLIDING_TAG) }
    local base = stamps[1]
    for _ = 1, 8 do
        local byte = base % 256
        out[#out + 1] = string.char(byte)
        base = (base - byte) / 256
    end
    local previous = stamps[1]
    for i = 1, #stamps do
        local delta = stamps[i] - previous
        previous = stamps[i]
        local has_cost = 0
        if costs[i] > 1 then
            has_cost = 1
        end
        -- LEB128(delta << 1 | has_cost) without forming the shifted value,
        -- which could pass 2^53.
        local first = (delta % 64) * 2 + has_cost
        local high = (delta - delta % 64) / 64
        if high == 0 then
            out[#out + 1] = string.char(first)
        else
            out[#out + 1] = string.char(first + 128)
            write_varint(out, high)
        end
        if has_cost == 1 then
            write_varint(out, costs[i])
        end
    end
    return table.concat(out)
end

local function sliding_decide(_, value, now_ms, now_ns, spec)
    local stamps, costs = {}, {}
    if value then
        stamps, costs = sliding_entries(value)
        if not stamps then
            return nil
        end
    end
    local period_us = spec.period_ms * 1000
    local now_sub_us = floor(now_ns / 1000)
    local now_us = now_ms * 1000 + now_sub_us
    local now_rest_ns = now_ns - now_sub_us * 1000
    -- ms until the entry stamped `stamp` stops counting, rounded up:
    -- ceil(((stamp + period) µs - now) / 1 ms), 0 if past.
    local function uncounted_in_ms(stamp)
        local d_us = (stamp - now_us) + period_us
        if d_us <= 0 then
            return 0
        end
        local whole_ms = floor(d_us / 1000)
        if (d_us - whole_ms * 1000) * 1000 - now_rest_ns > 0 then
            return whole_ms + 1
        end
        return whole_ms
    end
    -- Entries still counted: stamp + period > now (µs). Stamps are
    -- nondecreasing, so they are a suffix, from `first_live`.
    local first_live, count = nil, 0
    local oldest_counted = now_us - period_us
    for i = 1, #stamps do
        if stamps[i] > oldest_counted then
            first_live = first_live or i
            count = count + costs[i]
        end
    end
    local newest = stamps[#stamps]
    local reset_after_ms = 0
    if first_live then
        reset_after_ms = uncounted_in_ms(newest)
    end
    local limit, cost = spec.limit, spec.cost
    local total = count + cost
    if cost == 0 or total > limit then
        local allowed = cost == 0
        local retry = 0
        if not allowed then
            -- The oldest entry whose expiry frees enough units.
            local must_free = total - limit
            local freed, wait_for = 0, nil
            if first_live then
                wait_for = newest
                for i = first_live, #stamps do
                    freed = freed + costs[i]
                    if freed >= must_free then
                        wait_for = stamps[i]
                        break
                    end
                end
            end
            if wait_for then
                retry = uncounted_in_ms(wait_for)
            end
        end
        return { allowed and 1 or 0, limit, max(limit - count, 0), retry, reset_after_ms }, nil
    end
    -- Admitted: the live entries, then this one (merged into the newest when
    -- stamped the same µs), never stamped before the newest entry.
    local stamp = now_us
    if now_rest_ns > 0 then
        stamp = stamp + 1
    end
    if newest and newest > stamp then
        stamp = newest
    end
    local kept_stamps, kept_costs = {}, {}
    if first_live then
        for i = first_live, #stamps do
            kept_stamps[#kept_stamps + 1] = stamps[i]
            kept_costs[#kept_costs + 1] = costs[i]
        end
    end
    local last = #kept_stamps
    if last > 0 and kept_stamps[last] == stamp then
        kept_costs[last] = kept_costs[last] + cost
    else
        kept_stamps[last + 1] = stamp
        kept_costs[last + 1] = cost
    end
    -- ceil((stamp + period) µs / 1 ms), at least now + 1 ms.
    local stamp_ms = floor(stamp / 1000)
    local expire_at_ms = stamp_ms + spec.period_ms
    if stamp - stamp_ms * 1000 > 0 then
        expire_at_ms = expire_at_ms + 1
    end
    return { 1, limit, max(limit - total, 0), 0, uncounted_in_ms(stamp) }, {
        value = sliding_encode(kept_stamps, kept_costs),
        expire_at_ms = max(expire_at_ms, now_ms + 1),
    }
end

local DECIDERS = { GCRA = gcra_decide, SLIDING = sliding_decide, FIXED = fixed_decide }

-- Reads the key and decides, without writing.
local function evaluate(key, spec, now_ms, now_ns)
    local value = get_string(key)
    local decision, write = DECIDERS[spec.algorithm](key, value, now_ms, now_ns, spec)
    if not decision then
        fail('WRONGTYPE key holds a string that is not ' .. ALGORITHM_STATE[spec.algorithm]
            .. ' state (another algorithm\'s, or set by hand); TK.RATELIMIT.RESET it first')
    end
    return decision, write
end

local function apply(key, write)
    if write then
        redis.call('SET', key, write.value, 'PXAT', format_int(write.expire_at_ms))
    end
end

-- TK.RATELIMIT / TK.RATELIMIT.PEEK (spec.rs parse_single).
local function parse_single(keys, argv, redis_name, command, fname)
    local list = command_args(keys, argv, redis_name, -4)
    takes_keys(1, #keys, fname, '<key> <limit> <period> [options]')
    local args = new_args(list, command)
    next_bytes(args)
    local spec = parse_limit(args)
    expect_end(args)
    return spec
end

local function ratelimit(keys, argv)
    local spec = parse_single(keys, argv, 'TK.RATELIMIT', 'tk.ratelimit', 'tk_ratelimit')
    local now_ms, now_ns = now_pair()
    local decision, write = evaluate(keys[1], spec, now_ms, now_ns)
    apply(keys[1], write)
    return decision
end

local function ratelimit_peek(keys, argv)
    local spec = parse_single(keys, argv, 'TK.RATELIMIT.PEEK', 'tk.ratelimit.peek', 'tk_ratelimit_peek')
    local now_ms, now_ns = now_pair()
    return (evaluate(keys[1], spec, now_ms, now_ns))
end

-- Which limit ALL reports (spec.rs reported_limit): when refused, the
-- refusing one with the longest retry_after_ms; when admitted, the one with
-- the fewest remaining; ties to the first.
local function reported_limit(decisions, allowed)
    local best = 1
    for i = 2, #decisions do
        local current, candidate = decisions[best], decisions[i]
        local better
        if allowed then
            better = candidate[3] < current[3]
        else
            better = candidate[1] == 0 and (current[1] == 1 or candidate[4] > current[4])
        end
        if better then
            best = i
        end
    end
    return best
end

-- TK.RATELIMIT.ALL: FCALL's numkeys is the command's numkeys.
local function ratelimit_all(keys, argv)
    -- The module's argv has numkeys first: one more argument than KEYS and
    -- ARGV hold.
    local list = command_args(keys, argv, 'TK.RATELIMIT.ALL', -4)
    local args = new_args({ format_int(#keys) }, 'tk.ratelimit.all')
    for i = 1, #list do
        args.list[i + 1] = list[i]
    end
    local count = next_integer(args, 'numkeys', 1, MAX_ALL_KEYS)
    for i = 1, count do
        for j = 1, i - 1 do
            if keys[j] == keys[i] then
                fail('ERR syntax error: the same key is given twice')
            end
        end
    end
    args.pos = args.pos + count
    local specs = {}
    for i = 1, count do
        -- Between limits, anything that is not a number is a stray option.
        local raw = args.list[args.pos]
        if raw ~= nil and not parse_integer(raw) then
            unknown_option(raw)
        end
        specs[i] = parse_limit(args)
    end
    expect_end(args)
    local now_ms, now_ns = now_pair()
    local decisions, writes, allowed = {}, {}, true
    for i = 1, count do
        decisions[i], writes[i] = evaluate(keys[i], specs[i], now_ms, now_ns)
        allowed = allowed and decisions[i][1] == 1
    end
    if allowed then
        for i = 1, count do
            apply(keys[i], writes[i])
        end
    end
    local reported = reported_limit(decisions, allowed)
    local reply = decisions[reported]
    reply[6] = reported - 1
    return reply
end

-- TK.RATELIMIT.RESET: every argument is a key.
local function ratelimit_reset(keys, argv)
    command_args(keys, argv, 'TK.RATELIMIT.RESET', -2)
    if #argv > 0 or #keys == 0 then
        fail('ERR tk_ratelimit_reset takes its keys in KEYS: FCALL tk_ratelimit_reset <numkeys> <key> [<key> ...]')
    end
    -- Nothing is deleted when one key holds another type.
    for i = 1, #keys do
        get_string(keys[i])
    end
    return redis.call('UNLINK', unpack(keys))
end

-- ---------------------------------------------------------------------------
-- Locks (module/src/lock/): the lock key holds the owner's token and
-- expires at an absolute time; the fence key holds a decimal counter
-- without expiry, incremented by every granted acquire.
-- ---------------------------------------------------------------------------

local MAX_TOKEN_LEN = 128
local MAX_TTL_MS = 86400000
local MAX_FENCE_TEXT = '9223372036854775807'
-- The library's largest fencing token: Lua replies integers exactly only up
-- to 2^53 (the module's maximum is 2^63 - 1). See the header.
local LIBRARY_MAX_FENCE = TWO_53

local function next_token(args)
    local token = next_bytes(args)
    if #token == 0 or #token > MAX_TOKEN_LEN then
        fail('ERR token length must be between 1 and 128')
    end
    return token
end

local function next_ttl(args)
    return next_duration_ms(args, 'ttl', 1, MAX_TTL_MS)
end

-- A stored fence counter: "0", or 1 to 19 digits without a leading zero, at
-- most 2^63 - 1 (what INCR writes). Above 2^53 the number is approximate,
-- which only the comparison with LIBRARY_MAX_FENCE sees.
local function decode_fence(text)
    if text == '0' then
        return 0
    end
    if not text:find('^[1-9]%d*$') or #text > 19 or (#text == 19 and text > MAX_FENCE_TEXT) then
        fail('WRONGTYPE fence key holds a string that is not a fence counter '
            .. '(a decimal integer from 0 to 9223372036854775807)')
    end
    return tonumber(text)
end

-- A lock taken at `now` for `ttl_ms` expires at now rounded up to a ms,
-- plus the TTL: never before now + ttl.
local function lock_expiry_ms(now_ms, now_ns, ttl_ms)
    return ceil_ms(now_ms, now_ns) + ttl_ms
end

-- TK.LOCK.ACQUIRE <lock_key> <fence_key> <token> <ttl>
local function lock_acquire(keys, argv)
    local list = command_args(keys, argv, 'TK.LOCK.ACQUIRE', 5)
    takes_keys(2, #keys, 'tk_lock_acquire', '<lock_key> <fence_key> <token> <ttl>')
    local args = new_args(list, 'tk.lock.acquire')
    local lock_key, fence_key = next_bytes(args), next_bytes(args)
    if lock_key == fence_key then
        fail('ERR syntax error: the lock key and the fence key must be different keys')
    end
    local token = next_token(args)
    local ttl_ms = next_ttl(args)
    local now_ms, now_ns = now_pair()
    local holder = get_string(lock_key)
    local fence_text = get_string(fence_key)
    -- The fence is checked whatever the outcome.
    local current = 0
    if fence_text then
        current = decode_fence(fence_text)
    end
    if holder and holder ~= token then
        -- Still held: at least 1 ms left (like PTTL), -1 without expiry.
        local expire_at_ms = redis.call('PEXPIRETIME', lock_key)
        local remaining_ms = -1
        if expire_at_ms >= 0 then
            remaining_ms = max(expire_at_ms - now_ms, 1)
        end
        return { 0, 0, remaining_ms }
    end
    if current >= LIBRARY_MAX_FENCE then
        fail('ERR the fence counter is at its maximum (' .. format_int(LIBRARY_MAX_FENCE)
            .. ' in the Functions library); no larger fencing token can be issued')
    end
    local fence = current + 1
    -- Fence first, as the module: a failure after it skips a token, never
    -- leaves a lock without one.
    redis.call('SET', fence_key, format_int(fence))
    redis.call('SET', lock_key, token, 'PXAT', format_int(lock_expiry_ms(now_ms, now_ns, ttl_ms)))
    return { 1, fence, ttl_ms }
end

-- TK.LOCK.RELEASE <lock_key> <token>
local function lock_release(keys, argv)
    local list = command_args(keys, argv, 'TK.LOCK.RELEASE', 3)
    takes_keys(1, #keys, 'tk_lock_release', '<lock_key> <token>')
    local args = new_args(list, 'tk.lock.release')
    local lock_key = next_bytes(args)
    local token = next_token(args)
    if get_string(lock_key) ~= token then
        return 0
    end
    redis.call('UNLINK', lock_key)
    return 1
end

-- TK.LOCK.EXTEND <lock_key> <token> <ttl>
local function lock_extend(keys, argv)
    local list = command_args(keys, argv, 'TK.LOCK.EXTEND', 4)
    takes_keys(1, #keys, 'tk_lock_extend', '<lock_key> <token> <ttl>')
    local args = new_args(list, 'tk.lock.extend')
    local lock_key = next_bytes(args)
    local token = next_token(args)
    local ttl_ms = next_ttl(args)
    local now_ms, now_ns = now_pair()
    if get_string(lock_key) ~= token then
        return 0
    end
    redis.call('PEXPIREAT', lock_key, format_int(lock_expiry_ms(now_ms, now_ns, ttl_ms)))
    return 1
end

-- ---------------------------------------------------------------------------
-- Key names (core/src/keys.rs): which keys an index may list.
-- ---------------------------------------------------------------------------

-- Splits `<prefix>{<tag>}<rest>`: (tag, rest), or nil unless `key` starts
-- with `prefix` directly followed by a non-empty `{tag}`.
local function split_tagged(key, prefix)
    if key:sub(1, #prefix + 1) ~= prefix .. '{' then
        return nil
    end
    local open = #prefix + 2
    local close = key:find('}', open, true)
    if not close or close == open then
        return nil
    end
    return key:sub(open, close - 1), key:sub(close + 1)
end

-- Whether `key` is `<prefix>{tag}:<non-empty rest>` for exactly this tag
-- (and so in the slot of every other key of the tag).
local function is_tagged_member(key, prefix, tag)
    local key_tag, rest = split_tagged(key, prefix)
    return key_tag == tag and #rest > 1 and rest:sub(1, 1) == ':'
end

-- Byte-wise `a < b` (Lua's `<` on strings follows the locale).
local function bytes_less(a, b)
    for i = 1, min(#a, #b) do
        local x, y = a:byte(i), b:byte(i)
        if x ~= y then
            return x < y
        end
    end
    return #a < #b
end

-- The type of a key, as TYPE names it ('none' when absent).
local function key_type(key)
    return redis.call('TYPE', key).ok
end

-- WRONGTYPE unless `key` is absent or of `expected` type; whether present.
local function expect_type(key, expected)
    local kind = key_type(key)
    if kind == 'none' then
        return false
    end
    if kind ~= expected then
        fail(WRONGTYPE)
    end
    return true
end

-- A key's absolute expiry in ms, nil when it has none (or is absent).
local function expiry_of(key)
    local at = redis.call('PEXPIRETIME', key)
    if at < 0 then
        return nil
    end
    return at
end

-- `redis.call('TIME')` in whole ms: the module's `now` for sessions and
-- the cache.
local function now_whole_ms()
    return (now_pair())
end

-- ---------------------------------------------------------------------------
-- Sessions (core/src/session/, module/src/session/command.rs)
--
-- `tk:s:{tag}:<id>`: a hash (user, data, created, last_active, expires_at,
-- max_expires_at, version, idle) expiring at expires_at;
-- `tk:si:{tag}:<user>`: a sorted set of the user's session keys scored by
-- their max_expires_at, expiring when the last of them can.
-- ---------------------------------------------------------------------------

local MAX_SESSION_DURATION_MS = 31536000000 -- 1 year
local DEFAULT_MAX_LIFETIME_MS = 2592000000 -- 30 days
local MAX_SESSIONS_CAP = 10000
local MAX_STORED_TEXT = '9223372036854775807' -- i64::MAX
-- The library's stored numbers stop below 2^53 (see the header): every
-- time tk writes is far below, and a version gets there after 2^53 SETs.
local LIBRARY_MAX_STORED = TWO_53 - 1
local SESSION_FIELDS = {
    'user', 'data', 'created', 'last_active', 'expires_at', 'max_expires_at', 'version', 'idle',
}
local NOT_A_SESSION = 'WRONGTYPE key holds a hash that is not a tk session (written by hand?)'

-- A session index's name, `tk:si:{tag}:<user>`, as {tag, user}.
local function session_index(index)
    local tag, rest = split_tagged(index, 'tk:si:')
    if not tag or #rest < 2 or rest:sub(1, 1) ~= ':' then
        fail('ERR a session index must be named tk:si:{<tag>}:<user>')
    end
    return { tag = tag, user = rest:sub(2) }
end

-- Whether `session` may be listed in `shape`: `tk:s:{tag}:<id>`, same tag.
local function index_lists(shape, session)
    return is_tagged_member(session, 'tk:s:', shape.tag)
end

local function check_session_name(shape, session)
    if not index_lists(shape, session) then
        fail('ERR a session key must be tk:s:{<tag>}:<id>, with the tag of its index '
            .. 'tk:si:{<tag>}:<user>')
    end
end

-- A stored session number: as the module reads it (an optional '-', 1 to
-- 20 digits, not negative), below 2^53; nil for anything else.
local function stored_number(raw)
    if not raw then
        return nil
    end
    local value = parse_integer(raw)
    if not value or value < 0 or value > LIBRARY_MAX_STORED then
        return nil
    end
    return value + 0 -- "-0" is 0
end

-- The session read from HMGET's values: nil unless it is one tk could have
-- written (rules.rs Times::is_plausible).
local function decode_session(values)
    local user, data = values[1], values[2]
    if not user or not data then
        return nil
    end
    local s = { user = user, data = data }
    for i = 3, 8 do
        local value = stored_number(values[i])
        if not value then
            return nil
        end
        s[SESSION_FIELDS[i]] = value
    end
    if s.version < 1 or s.created > s.last_active or s.expires_at > s.max_expires_at then
        return nil
    end
    return s
end

-- Reads the session in `key`: (session), (nil) when absent, or
-- (nil, reason) when the key cannot be read ('error': another type, or a
-- key the caller's ACL does not allow) or is not a session ('foreign').
local function load_session(key)
    local values = redis.pcall('HMGET', key, unpack(SESSION_FIELDS))
    if values.err then
        return nil, 'error'
    end
    local session = decode_session(values)
    if session then
        return session
    end
    for i = 1, 8 do
        if values[i] then
            return nil, 'foreign'
        end
    end
    -- No field at all: absent, or a hash of other fields.
    if redis.call('EXISTS', key) == 1 then
        return nil, 'foreign'
    end
    return nil
end

-- The session in `key`, a command's argument: nil when absent; WRONGTYPE
-- for another type or a hash that is not a session.
local function read_session(key)
    local session, reason = load_session(key)
    if reason == 'error' then
        fail(WRONGTYPE)
    elseif reason == 'foreign' then
        fail(NOT_A_SESSION)
    end
    return session
end

-- Alive at `now`: Redis keeps a key through its expiry millisecond, and a
-- session past expires_at or max_expires_at is dead whatever its TTL.
local function session_is_live(s, now)
    return now <= s.expires_at and now <= s.max_expires_at
end

local function session_reply(user, data, s)
    return { user, data, s.created, s.last_active, s.expires_at, s.max_expires_at, s.version }
end

-- What a key listed in an index is (rules.rs Listed): 'foreign', 'gone',
-- 'dead' or 'live' (with the session). A listed key is untrusted: it must
-- fit the index's name rule (so it is in the index's slot), be readable by
-- the caller (and, for `for_write`, writable: probed with a no-op
-- `PEXPIREAT key 1 GT`, which sets nothing since 1 is before any expiry,
-- so a key the caller may not delete is never planned for deletion), be
-- a session and be the index user's. The module checks the ACL without
-- trying; here a refused call, caught by pcall, makes the key foreign.
local function classify(shape, member, now, for_write)
    if not index_lists(shape, member) then
        return 'foreign'
    end
    if for_write then
        local probe = redis.pcall('PEXPIREAT', member, '1', 'GT')
        if type(probe) == 'table' and probe.err then
            return 'foreign'
        end
    end
    local session, reason = load_session(member)
    if reason then
        return 'foreign'
    end
    if not session then
        return 'gone'
    end
    if session.user ~= shape.user then
        return 'foreign'
    end
    if session_is_live(session, now) then
        return 'live', session
    end
    return 'dead'
end

-- An index's members: all, or those scored at or after `from`.
local function index_members(index, from)
    if from then
        return redis.call('ZRANGE', index, format_int(from), '+inf', 'BYSCORE')
    end
    return redis.call('ZRANGE', index, '0', '-1')
end

-- Lists `session`, scored by its max lifetime (the index's order).
local function list_session(index, session, max_expires_at)
    redis.call('ZADD', index, format_int(max_expires_at), session)
end

-- Keeps the index alive at least until `max_expires_at` (`index_expiry`:
-- its expiry before the command, nil for none).
local function extend_index(index, index_expiry, max_expires_at)
    if not index_expiry or index_expiry < max_expires_at then
        redis.call('PEXPIREAT', index, format_int(max_expires_at))
    end
end

local function option_once(seen, option)
    if seen[option] then
        fail('ERR syntax error: option ' .. option .. ' given more than once')
    end
    seen[option] = true
end

local function next_choice(args, what, choices, expected)
    local raw = next_bytes(args):upper()
    for _, choice in ipairs(choices) do
        if raw == choice then
            return choice
        end
    end
    fail('ERR ' .. what .. ' must be one of ' .. expected)
end

local function next_session_duration(args, what)
    return next_duration_ms(args, what, 1, MAX_SESSION_DURATION_MS)
end

local function distinct(a, b)
    if a == b then
        fail('ERR syntax error: the same key is given twice')
    end
end

-- TK.SESSION.CREATE <skey> <ikey> <user> <idle_ttl> <data>
--     [MAXLIFETIME <ttl>] [MAXSESSIONS <n> EVICT|REJECT]
local function session_create(keys, argv)
    local list = command_args(keys, argv, 'TK.SESSION.CREATE', -6)
    takes_keys(2, #keys, 'tk_session_create',
        '<skey> <ikey> <user> <idle_ttl> <data> [options]')
    local args = new_args(list, 'tk.session.create')
    local skey, ikey = next_bytes(args), next_bytes(args)
    distinct(skey, ikey)
    local user = next_bytes(args)
    if user == '' then
        fail('ERR syntax error: user must not be empty')
    end
    local idle = next_session_duration(args, 'idle_ttl')
    local data = next_bytes(args)
    local max_lifetime, cap, policy = DEFAULT_MAX_LIFETIME_MS, nil, nil
    local seen = {}
    while true do
        local option = next_keyword(args, { 'MAXLIFETIME', 'MAXSESSIONS' })
        if not option then
            break
        end
        option_once(seen, option)
        if option == 'MAXLIFETIME' then
            max_lifetime = next_session_duration(args, 'MAXLIFETIME')
        else
            cap = next_integer(args, 'MAXSESSIONS', 1, MAX_SESSIONS_CAP)
            policy = next_choice(args, 'the MAXSESSIONS policy', { 'EVICT', 'REJECT' }, 'EVICT or REJECT')
        end
    end
    expect_end(args)
    local shape = session_index(ikey)
    check_session_name(shape, skey)
    if user ~= shape.user then
        fail('ERR the user must be the one its index names (tk:si:{<tag>}:<user>)')
    end
    if expect_type(skey, 'hash') then
        fail('ERR session already exists')
    end
    expect_type(ikey, 'zset')
    local now = now_whole_ms()
    -- Members scored before now are past their max lifetime: dropped by
    -- score below, unread.
    local members = index_members(ikey, now)
    local cleanup, live, last_active = {}, {}, {}
    for i, member in ipairs(members) do
        local kind, session = classify(shape, member, now, true)
        if kind == 'live' then
            cleanup[i] = 'keep'
            live[#live + 1] = i
            last_active[i] = session.last_active
        elseif kind == 'dead' then
            cleanup[i] = 'delete'
        else
            cleanup[i] = 'unlist'
        end
    end
    -- Decided before anything is written: a refusal changes nothing.
    if cap and #live + 1 > cap then
        if policy == 'REJECT' then
            fail('ERR session limit reached')
        end
        -- The least recently active go first, ties by key.
        table.sort(live, function(a, b)
            if last_active[a] ~= last_active[b] then
                return last_active[a] < last_active[b]
            end
            return bytes_less(members[a], members[b])
        end)
        for j = 1, #live + 1 - cap do
            cleanup[live[j]] = 'delete'
        end
    end
    local max_expires_at = now + max_lifetime
    local s = {
        created = now,
        last_active = now,
        expires_at = min(now + idle, max_expires_at),
        max_expires_at = max_expires_at,
        version = 1,
        idle = idle,
    }
    local index_expiry = expiry_of(ikey)
    -- Listed first, so the index never empties within the command.
    list_session(ikey, skey, max_expires_at)
    redis.call('ZREMRANGEBYSCORE', ikey, '-inf', '(' .. format_int(now))
    for i, member in ipairs(members) do
        -- A stale entry of the new session's own name is now its entry.
        if member ~= skey then
            if cleanup[i] == 'delete' then
                redis.call('UNLINK', member)
            end
            if cleanup[i] ~= 'keep' then
                redis.call('ZREM', ikey, member)
            end
        end
    end
    redis.call('HSET', skey, 'user', user, 'data', data, 'created', format_int(s.created),
        'last_active', format_int(s.last_active), 'expires_at', format_int(s.expires_at),
        'max_expires_at', format_int(s.max_expires_at), 'version', '1', 'idle', format_int(idle))
    redis.call('PEXPIREAT', skey, format_int(s.expires_at))
    extend_index(ikey, index_expiry, max_expires_at)
    return session_reply(user, data, s)
end

-- The session in argument `skey` if alive at `now`, for a write command;
-- otherwise nil, a dead session deleted (so it is dead everywhere).
local function live_for_write(skey, now)
    local s = read_session(skey)
    if s and not session_is_live(s, now) then
        redis.call('UNLINK', skey)
        return nil
    end
    return s
end

-- TK.SESSION.TOUCH <skey> [IDLE <ttl>] [MINGAP <ttl>] → the session, or nil.
local function session_touch(keys, argv)
    local list = command_args(keys, argv, 'TK.SESSION.TOUCH', -2)
    takes_keys(1, #keys, 'tk_session_touch', '<skey> [IDLE <ttl>] [MINGAP <ttl>]')
    local args = new_args(list, 'tk.session.touch')
    local skey = next_bytes(args)
    local idle, min_gap = nil, nil
    local seen = {}
    while true do
        local option = next_keyword(args, { 'IDLE', 'MINGAP' })
        if not option then
            break
        end
        option_once(seen, option)
        if option == 'IDLE' then
            idle = next_session_duration(args, 'IDLE')
        else
            min_gap = next_session_duration(args, 'MINGAP')
        end
    end
    expect_end(args)
    local now = now_whole_ms()
    local s = live_for_write(skey, now)
    if not s then
        return false
    end
    -- MINGAP: no write when the last activity is recent enough (and the
    -- idle TTL unchanged).
    if min_gap and max(now - s.last_active, 0) < min_gap and (not idle or idle == s.idle) then
        return session_reply(s.user, s.data, s)
    end
    s.idle = idle or s.idle
    -- A clock that stepped back never moves last_active backwards.
    s.last_active = max(now, s.last_active)
    s.expires_at = min(s.last_active + s.idle, s.max_expires_at)
    redis.call('HSET', skey, 'last_active', format_int(s.last_active),
        'expires_at', format_int(s.expires_at), 'idle', format_int(s.idle))
    redis.call('PEXPIREAT', skey, format_int(s.expires_at))
    return session_reply(s.user, s.data, s)
end

-- TK.SESSION.GET <skey> → the session, or nil. Read-only: a dead session
-- is reported gone and left to the next write (or Redis's expiry).
local function session_get(keys, argv)
    command_args(keys, argv, 'TK.SESSION.GET', 2)
    takes_keys(1, #keys, 'tk_session_get', '<skey>')
    local now = now_whole_ms()
    local s = read_session(keys[1])
    if s and session_is_live(s, now) then
        return session_reply(s.user, s.data, s)
    end
    return false
end

-- IFVERSION's value: 0 to 2^63 - 1, the bound compared as text (a double
-- cannot hold it).
local function next_if_version(args)
    local raw = next_bytes(args)
    local value = parse_integer(raw)
    if not value then
        fail('ERR IFVERSION must be an integer')
    end
    local digits = raw:gsub('^%-?0*', '')
    if value < 0 or #digits > 19 or (#digits == 19 and digits > MAX_STORED_TEXT) then
        fail('ERR IFVERSION must be between 0 and ' .. MAX_STORED_TEXT)
    end
    return value
end

-- TK.SESSION.SET <skey> <data> [IFVERSION <v>] → the new version, or nil.
local function session_set(keys, argv)
    local list = command_args(keys, argv, 'TK.SESSION.SET', -3)
    takes_keys(1, #keys, 'tk_session_set', '<skey> <data> [IFVERSION <v>]')
    local args = new_args(list, 'tk.session.set')
    local skey = next_bytes(args)
    local data = next_bytes(args)
    local if_version = nil
    if next_keyword(args, { 'IFVERSION' }) then
        if_version = next_if_version(args)
    end
    expect_end(args)
    local now = now_whole_ms()
    local s = live_for_write(skey, now)
    if not s then
        return false
    end
    if if_version and if_version ~= s.version then
        fail('ERR version mismatch: the session was changed since it was read')
    end
    if s.version >= LIBRARY_MAX_STORED then
        fail('ERR version limit reached')
    end
    local version = s.version + 1
    -- The expiry is kept: the session lives exactly as long as before.
    redis.call('HSET', skey, 'data', data, 'version', format_int(version))
    return version
end

-- TK.SESSION.DESTROY <skey> <ikey> → 1 if a session was deleted, else 0.
local function session_destroy(keys, argv)
    command_args(keys, argv, 'TK.SESSION.DESTROY', 3)
    takes_keys(2, #keys, 'tk_session_destroy', '<skey> <ikey>')
    local skey, ikey = keys[1], keys[2]
    distinct(skey, ikey)
    check_session_name(session_index(ikey), skey)
    expect_type(ikey, 'zset')
    -- Only a session is deleted: another type or shape is refused.
    local exists = read_session(skey) ~= nil
    if exists then
        redis.call('UNLINK', skey)
    end
    redis.call('ZREM', ikey, skey)
    return exists and 1 or 0
end

-- TK.SESSION.ROTATE <old_skey> <new_skey> <ikey> → 1, or nil if the old
-- session is gone. Same data and expiry under the new key.
local function session_rotate(keys, argv)
    command_args(keys, argv, 'TK.SESSION.ROTATE', 4)
    takes_keys(3, #keys, 'tk_session_rotate', '<old_skey> <new_skey> <ikey>')
    local old, new, ikey = keys[1], keys[2], keys[3]
    distinct(old, new)
    distinct(old, ikey)
    distinct(new, ikey)
    local shape = session_index(ikey)
    check_session_name(shape, old)
    check_session_name(shape, new)
    expect_type(old, 'hash')
    if expect_type(new, 'hash') then
        fail('ERR session already exists')
    end
    expect_type(ikey, 'zset')
    local now = now_whole_ms()
    local s = read_session(old)
    if not s then
        return false
    end
    if s.user ~= shape.user then
        fail('ERR the session belongs to another user than the index names')
    end
    if not session_is_live(s, now) then
        redis.call('UNLINK', old)
        redis.call('ZREM', ikey, old)
        return false
    end
    local index_expiry = expiry_of(ikey)
    -- RENAME moves the hash with its expiry; the new key is listed before
    -- the old is unlisted.
    redis.call('RENAME', old, new)
    list_session(ikey, new, s.max_expires_at)
    redis.call('ZREM', ikey, old)
    extend_index(ikey, index_expiry, s.max_expires_at)
    return 1
end

-- TK.SESSION.LIST <ikey> → [[skey, created, last_active, expires_at], ...],
-- most recently active first. Read-only: dead and foreign entries are
-- skipped here and unlisted by the next write to the index.
local function session_list(keys, argv)
    command_args(keys, argv, 'TK.SESSION.LIST', 2)
    takes_keys(1, #keys, 'tk_session_list', '<ikey>')
    local ikey = keys[1]
    local shape = session_index(ikey)
    expect_type(ikey, 'zset')
    local now = now_whole_ms()
    local live = {}
    for _, member in ipairs(index_members(ikey)) do
        local kind, s = classify(shape, member, now, false)
        if kind == 'live' then
            live[#live + 1] = { member, s }
        end
    end
    table.sort(live, function(a, b)
        if a[2].last_active ~= b[2].last_active then
            return a[2].last_active > b[2].last_active
        end
        return bytes_less(a[1], b[1])
    end)
    local reply = {}
    for i, entry in ipairs(live) do
        local s = entry[2]
        reply[i] = { entry[1], s.created, s.last_active, s.expires_at }
    end
    return reply
end

-- TK.SESSION.REVOKEALL <ikey> [EXCEPT <skey>] → sessions deleted (live
-- sessions of the index's user; foreign entries are only unlisted). The
-- EXCEPT key is only compared, never accessed: it is an ARGV.
local function session_revokeall(keys, argv)
    local list = command_args(keys, argv, 'TK.SESSION.REVOKEALL', -2)
    takes_keys(1, #keys, 'tk_session_revokeall', '<ikey> [EXCEPT <skey>]')
    local args = new_args(list, 'tk.session.revokeall')
    local ikey = next_bytes(args)
    local except = nil
    if next_keyword(args, { 'EXCEPT' }) then
        except = next_bytes(args)
    end
    expect_end(args)
    if except then
        distinct(ikey, except)
    end
    local shape = session_index(ikey)
    if except then
        check_session_name(shape, except)
    end
    expect_type(ikey, 'zset')
    local now = now_whole_ms()
    local revoked = 0
    local plan = {}
    for _, member in ipairs(index_members(ikey)) do
        if member ~= except then
            plan[#plan + 1] = { member, (classify(shape, member, now, true)) }
        end
    end
    -- Decided before anything is deleted: one member's fate never depends
    -- on another's deletion.
    for _, entry in ipairs(plan) do
        local member, kind = entry[1], entry[2]
        if kind == 'live' then
            revoked = revoked + 1
        end
        if kind == 'live' or kind == 'dead' then
            redis.call('UNLINK', member)
        end
        redis.call('ZREM', ikey, member)
    end
    return revoked
end

-- ---------------------------------------------------------------------------
-- Cache (core/src/cache/, module/src/cache/)
--
-- `tk:c:{tag}:<ns>:<id>`: a hash (v value, g / ng the user and namespace
-- generations it was written under, ns namespace) expiring with its TTL;
-- `tk:cg:{tag}`: a hash of generations (u the user's, n:<ns> each
-- namespace's; absent = 0); `tk:ci:{tag}`: a sorted set of the entry keys
-- scored by their expiry.
--
-- Generations are kept as their canonical decimal text (no sign, no
-- leading zero), so GET and SET compare them exactly up to 2^63 - 1, as
-- the module does; only an invalidation turns one into a number, to add 1
-- and reply it, which a double does exactly below 2^53 (see the header).
-- ---------------------------------------------------------------------------

local MAX_CACHE_TTL_MS = 604800000 -- 7 days
local GENERATION_RETENTION_MS = 86400000 -- 24 h
local CORRUPT_GENERATIONS =
    'WRONGTYPE cache generations key holds a field that is not a generation (edited by hand?)'
local BAD_CACHE_KEYS =
    'ERR cache keys must be tk:c:{<tag>}:<name>, tk:cg:{<tag>} and tk:ci:{<tag>}, with one tag'
-- Index members the library's reclaim examines per SET or INVALIDATE*
-- (the module's background timer examines 64 per tick).
local RECLAIM_BATCH = 32
-- The generations hash field holding the reclaim's resume point: an index
-- score (entry expiry, ms). The module reads only `u` and `n:<ns>`.
local RECLAIM_FIELD = 'r'

-- The tag of `tk:cg:{tag}` / `tk:ci:{tag}` (nothing after the tag).
local function cache_tag(key, prefix)
    local tag, rest = split_tagged(key, prefix)
    if not tag or rest ~= '' then
        fail(BAD_CACHE_KEYS)
    end
    return tag
end

local function cache_lists(tag, entry)
    return is_tagged_member(entry, 'tk:c:', tag)
end

local function check_entry(tag, entry)
    if not cache_lists(tag, entry) then
        fail(BAD_CACHE_KEYS)
    end
end

-- A namespace: 1 to 64 of A-Z a-z 0-9 _ . - (it becomes part of names).
local function next_namespace(args)
    local namespace = next_bytes(args)
    if #namespace == 0 or #namespace > 64 or namespace:find('[^%w_%.%-]') then
        fail('ERR syntax error: namespace must be 1 to 64 characters of A-Z a-z 0-9 _ . -')
    end
    return namespace
end

-- A stored generation as canonical text: absent is '0'; otherwise 1 to 19
-- digits, no leading zero, at most 2^63 - 1; nil for anything else.
local function parse_generation(text)
    if not text then
        return '0'
    end
    if not text:find('^%d+$') or #text > 19 or (#text > 1 and text:sub(1, 1) == '0')
        or (#text == 19 and text > MAX_STORED_TEXT) then
        return nil
    end
    return text
end

-- `"<user>.<namespace>"`, both parts strict; nil otherwise.
local function parse_token(token)
    local dot = token:find('.', 1, true)
    if not dot then
        return nil
    end
    local user = parse_generation(token:sub(1, dot - 1))
    local namespace = parse_generation(token:sub(dot + 1))
    if not user or not namespace then
        return nil
    end
    return user .. '.' .. namespace
end

-- The generations of `namespace` as a token `"<u>.<n>"`; WRONGTYPE for a
-- key of another type or a field tk could not have written. (The module
-- builds the field from at most 64 bytes of the namespace.)
local function current_generations(generations_key, namespace)
    local values = redis.pcall('HMGET', generations_key, 'u', 'n:' .. namespace:sub(1, 64))
    if values.err then
        fail(WRONGTYPE)
    end
    local user, ns = parse_generation(values[1]), parse_generation(values[2])
    if not user or not ns then
        fail(CORRUPT_GENERATIONS)
    end
    return user .. '.' .. ns
end

-- An entry's recorded generations as a token; nil when damaged.
local function entry_generations(user, namespace)
    if not user or not namespace then
        return nil
    end
    local u, n = parse_generation(user), parse_generation(namespace)
    if not u or not n then
        return nil
    end
    return u .. '.' .. n
end

-- The library's reclaim, in place of the module's background timer: each
-- SET and INVALIDATE* examines at most RECLAIM_BATCH index members, from
-- the score kept in the generations hash's RECLAIM_FIELD, and wraps to the
-- start once it reaches the end. The rule is the reclaimer's (plan.rs
-- reclaim): a member that breaks the name rule, that the caller may not
-- read and delete (probed with a no-op `PEXPIREAT key 1 GT`; a refused
-- call makes it foreign) or of another type is only unlisted; one whose
-- entry is gone is unlisted; an entry whose generations are not current
-- (or damaged) is deleted and unlisted; a visible one stays. No key outside
-- the index is examined.
local function reclaim(generations_key, index, tag)
    local stored_from = redis.call('HGET', generations_key, RECLAIM_FIELD)
    local from = 0
    if stored_from and stored_from:find('^%d+$') and #stored_from <= 15 then
        from = tonumber(stored_from)
    end
    local batch = redis.call('ZRANGE', index, format_int(from), '+inf', 'BYSCORE',
        'LIMIT', '0', format_int(RECLAIM_BATCH), 'WITHSCORES')
    local known = {}
    local count = #batch / 2
    for i = 1, count do
        local member = batch[2 * i - 1]
        local verdict = 'unlist'
        if cache_lists(tag, member) then
            local probe = redis.pcall('PEXPIREAT', member, '1', 'GT')
            local fields = nil
            if not (type(probe) == 'table' and probe.err) then
                fields = redis.pcall('HMGET', member, 'g', 'ng', 'ns')
            end
            if fields and not fields.err and (fields[1] or fields[2] or fields[3]) then
                verdict = 'delete'
                local namespace = fields[3]
                if namespace then
                    local current = known[namespace]
                    if not current then
                        local values = redis.call('HMGET', generations_key, 'u',
                            'n:' .. namespace:sub(1, 64))
                        local u, n = parse_generation(values[1]), parse_generation(values[2])
                        if not u or not n then
                            -- As the module's job: generations edited by
                            -- hand stop the reclaim; entries expire.
                            return
                        end
                        current = u .. '.' .. n
                        known[namespace] = current
                    end
                    if entry_generations(fields[1], fields[2]) == current then
                        verdict = 'keep'
                    end
                end
            end
        end
        if verdict == 'delete' then
            redis.call('UNLINK', member)
        end
        if verdict ~= 'keep' then
            redis.call('ZREM', index, member)
        end
    end
    -- Resume at the last score examined (members sharing it are looked at
    -- again, kept ones only), past it when the whole batch shared one
    -- score, and from the start after the end.
    local next_from = 0
    if count == RECLAIM_BATCH then
        local first, last = tonumber(batch[2]), tonumber(batch[2 * count])
        next_from = last
        if first == last then
            next_from = last + 1
        end
    end
    if next_from ~= from or (stored_from and stored_from ~= format_int(from)) then
        redis.call('HSET', generations_key, RECLAIM_FIELD, format_int(next_from))
    end
end

-- TK.CACHE.GET <entry_key> <generations_key> <namespace>
--     → [1, value] on a hit, [0, "<u>.<n>"] on a miss.
local function cache_get(keys, argv)
    local list = command_args(keys, argv, 'TK.CACHE.GET', 4)
    takes_keys(2, #keys, 'tk_cache_get', '<entry_key> <generations_key> <namespace>')
    local args = new_args(list, 'tk.cache.get')
    local entry, generations_key = next_bytes(args), next_bytes(args)
    distinct(entry, generations_key)
    local namespace = next_namespace(args)
    check_entry(cache_tag(generations_key, 'tk:cg:'), entry)
    local current = current_generations(generations_key, namespace)
    local fields = redis.pcall('HMGET', entry, 'v', 'g', 'ng', 'ns')
    if fields.err then
        fail(WRONGTYPE)
    end
    -- The namespace check guards against a key reused across namespaces.
    if fields[1] and entry_generations(fields[2], fields[3]) == current and fields[4] == namespace then
        return { 1, fields[1] }
    end
    return { 0, current }
end

-- TK.CACHE.SET <entry_key> <generations_key> <index_key> <namespace> <ttl>
--     <value> [IFGEN <token>] → 1 stored, 0 refused (IFGEN not current).
local function cache_set(keys, argv)
    local list = command_args(keys, argv, 'TK.CACHE.SET', -7)
    takes_keys(3, #keys, 'tk_cache_set',
        '<entry_key> <generations_key> <index_key> <namespace> <ttl> <value> [IFGEN <token>]')
    local args = new_args(list, 'tk.cache.set')
    if #list ~= 6 and #list ~= 8 then
        arity_error('tk.cache.set')
    end
    local entry, generations_key, index = next_bytes(args), next_bytes(args), next_bytes(args)
    distinct(entry, generations_key)
    distinct(entry, index)
    distinct(generations_key, index)
    local namespace = next_namespace(args)
    local ttl = next_duration_ms(args, 'ttl', 1, MAX_CACHE_TTL_MS)
    local value = next_bytes(args)
    local if_generations = nil
    if next_keyword(args, { 'IFGEN' }) then
        if_generations = parse_token(next_bytes(args))
        if not if_generations then
            fail('ERR syntax error: IFGEN takes the generation token returned by TK.CACHE.GET '
                .. '("<user>.<namespace>")')
        end
    end
    expect_end(args)
    local tag = cache_tag(index, 'tk:ci:')
    if cache_tag(generations_key, 'tk:cg:') ~= tag then
        fail(BAD_CACHE_KEYS)
    end
    check_entry(tag, entry)
    -- Every type is checked before anything is written.
    expect_type(entry, 'hash')
    local generations_exist = expect_type(generations_key, 'hash')
    expect_type(index, 'zset')
    local now = now_whole_ms()
    local current = current_generations(generations_key, namespace)
    local index_expiry = expiry_of(index)
    local generations_expiry = expiry_of(generations_key)
    if if_generations and if_generations ~= current then
        return 0
    end
    local dot = current:find('.', 1, true)
    local expire_at = now + ttl
    redis.call('HSET', entry, 'v', value, 'g', current:sub(1, dot - 1), 'ng', current:sub(dot + 1),
        'ns', namespace)
    redis.call('PEXPIREAT', entry, format_int(expire_at))
    redis.call('ZADD', index, format_int(expire_at), entry)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. format_int(now))
    if not index_expiry or index_expiry < expire_at then
        redis.call('PEXPIREAT', index, format_int(expire_at))
    end
    -- A generations key without expiry is left alone (INVALIDATE* gives it
    -- one).
    if generations_expiry and generations_expiry < expire_at then
        redis.call('PEXPIREAT', generations_key, format_int(expire_at))
    end
    -- Without a generations key every generation is 0: nothing to reclaim
    -- but damaged entries, which expire; and no key to keep a cursor in.
    if generations_exist then
        reclaim(generations_key, index, tag)
    end
    return 1
end

-- TK.CACHE.INVALIDATEUSER / INVALIDATENS: bumps one generation, keeps the
-- generations key alive past the user's entries and 24 h, then reclaims
-- a batch.
local function invalidate(keys, argv, redis_name, command, fname, with_namespace)
    local arity = with_namespace and 4 or 3
    local list = command_args(keys, argv, redis_name, arity)
    takes_keys(2, #keys, fname, '<generations_key> <index_key>' .. (with_namespace and ' <namespace>' or ''))
    local args = new_args(list, command)
    local generations_key, index = next_bytes(args), next_bytes(args)
    distinct(generations_key, index)
    local field = 'u'
    if with_namespace then
        field = 'n:' .. next_namespace(args)
    end
    local tag = cache_tag(index, 'tk:ci:')
    if cache_tag(generations_key, 'tk:cg:') ~= tag then
        fail(BAD_CACHE_KEYS)
    end
    expect_type(generations_key, 'hash')
    local index_exists = expect_type(index, 'zset')
    local stored = parse_generation(redis.call('HGET', generations_key, field))
    if not stored then
        fail(CORRUPT_GENERATIONS)
    end
    local now = now_whole_ms()
    local index_expiry = index_exists and expiry_of(index) or nil
    local generations_expiry = expiry_of(generations_key)
    -- The library's last generation is 2^53 - 1 (a reply exact in a double).
    local current = tonumber(stored)
    if current >= TWO_53 - 1 then
        fail('ERR generation limit reached')
    end
    local generation = current + 1
    local wanted = max(now + GENERATION_RETENTION_MS, index_expiry or 0, generations_expiry or 0)
    redis.call('HSET', generations_key, field, format_int(generation))
    if generations_expiry ~= wanted then
        redis.call('PEXPIREAT', generations_key, format_int(wanted))
    end
    if index_exists then
        reclaim(generations_key, index, tag)
    end
    return generation
end

local function cache_invalidateuser(keys, argv)
    return invalidate(keys, argv, 'TK.CACHE.INVALIDATEUSER', 'tk.cache.invalidateuser',
        'tk_cache_invalidateuser', false)
end

local function cache_invalidatens(keys, argv)
    return invalidate(keys, argv, 'TK.CACHE.INVALIDATENS', 'tk.cache.invalidatens',
        'tk_cache_invalidatens', true)
end

-- ---------------------------------------------------------------------------
-- Registration
-- ---------------------------------------------------------------------------

redis.register_function {
    function_name = 'tk_version',
    callback = function()
        return VERSION
    end,
    flags = { 'no-writes' },
}

redis.register_function('tk_ratelimit', command(ratelimit))
redis.register_function {
    function_name = 'tk_ratelimit_peek',
    callback = command(ratelimit_peek),
    flags = { 'no-writes' },
}
redis.register_function('tk_ratelimit_all', command(ratelimit_all))
redis.register_function('tk_ratelimit_reset', command(ratelimit_reset))
redis.register_function('tk_lock_acquire', command(lock_acquire))
redis.register_function('tk_lock_release', command(lock_release))
redis.register_function('tk_lock_extend', command(lock_extend))

redis.register_function('tk_session_create', command(session_create))
redis.register_function('tk_session_touch', command(session_touch))
redis.register_function {
    function_name = 'tk_session_get',
    callback = command(session_get),
    flags = { 'no-writes' },
}
redis.register_function('tk_session_set', command(session_set))
redis.register_function('tk_session_destroy', command(session_destroy))
redis.register_function('tk_session_rotate', command(session_rotate))
redis.register_function {
    function_name = 'tk_session_list',
    callback = command(session_list),
    flags = { 'no-writes' },
}
redis.register_function('tk_session_revokeall', command(session_revokeall))
redis.register_function {
    function_name = 'tk_cache_get',
    callback = command(cache_get),
    flags = { 'no-writes' },
}
redis.register_function('tk_cache_set', command(cache_set))
redis.register_function('tk_cache_invalidateuser', command(cache_invalidateuser))
redis.register_function('tk_cache_invalidatens', command(cache_invalidatens))
