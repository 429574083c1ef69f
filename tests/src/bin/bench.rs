//! Side-by-side benchmark of six ways to enforce "100 requests per 60 s per
//! key", all against one `redis-server` (with the tk module) started by the
//! test harness, in one run:
//!
//! 1. `TK.RATELIMIT k 100 60s` (GCRA)
//! 2. `TK.RATELIMIT k 100 60s ALGO SLIDING`
//! 3. `TK.RATELIMIT k 100 60s ALGO FIXED`
//! 4. client-side sorted-set sliding window, one round trip per command:
//!    `ZREMRANGEBYSCORE`, `ZCARD`, then (only when admitted) `ZADD`, `EXPIRE`
//! 5. the same sorted-set window as one Lua script (`EVALSHA`, atomic)
//! 6. a Lua token bucket in a hash (`HMGET`, refill, `HSET` + `PEXPIRE`)
//!
//! It only reports; nothing here asserts on timings. The markdown table goes
//! to stdout, progress to stderr. See docs/BENCHMARKS.md for what each column
//! means and how it is measured.
//!
//! Usage: `bench [--requests N] [--concurrency C] [--keys K] [--seed S]`
//! (or `BENCH_REQUESTS`, `BENCH_CONCURRENCY`, `BENCH_KEYS`, `BENCH_SEED`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::RedisResult;
use tk_redis_tests::{info_section, Server};

/// Requests admitted per period, for every approach.
const LIMIT: u64 = 100;
/// The period in milliseconds (`60s`).
const PERIOD_MS: u64 = 60_000;
/// The period as given to TK.RATELIMIT.
const PERIOD_ARG: &str = "60s";
/// The race: this many tasks, each on its own connection ...
///
/// Not 50 × 4: 50 tasks moving in lock step take the count of the
/// client-side window from 0 to 50 to exactly 100, which hides its race;
/// with 40 the lock-step rounds go 40, 80, 120.
const RACE_TASKS: usize = 40;
/// ... each sending this many requests for one key, back to back ...
const RACE_PER_TASK: usize = 5;
/// ... repeated on fresh keys this many times (the outcome varies).
const RACE_ROUNDS: usize = 5;
/// How many "typical" keys `MEMORY USAGE` is asked about per approach.
const MEMORY_SAMPLES: usize = 32;
/// Spacing of the requests that fill the "full" keys: far enough apart
/// that every request gets its own millisecond and the sliding log's time
/// deltas take as many bytes as at the real pace of a saturated key
/// (60 s / 100 = 600 ms: LEB128 of 1.2e6 is 3 bytes, like 2 × 20 000).
const PACED_FILL_INTERVAL: Duration = Duration::from_millis(20);
/// Requests sent (to other keys) before the measured run of each approach.
const WARMUP_REQUESTS: usize = 500;
/// Share of the requests aimed at the hot keys (1 in `HOT_ONE_IN`).
const HOT_ONE_IN: u64 = 4;
/// One key in `HOT_KEYS_PER` is hot.
const HOT_KEYS_PER: usize = 100;

const DEFAULT_REQUESTS: usize = 20_000;
const DEFAULT_CONCURRENCY: usize = 32;
const DEFAULT_KEYS: usize = 1_000;
const DEFAULT_SEED: u64 = 0x5eed_2026_1125;

/// Approach 5: the sorted-set sliding window of approach 4 as one script.
/// KEYS[1] key; ARGV limit, window (ms), unique member. Server time.
/// Replies like TK.RATELIMIT: allowed, limit, remaining, retry_after_ms, reset_after_ms.
const ZSET_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, limit, limit - count - 1, 0, window}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {0, limit, 0, tonumber(oldest[2]) + window - now, tonumber(newest[2]) + window - now}
"#;

/// Approach 6: a token bucket of `capacity` tokens refilled by `capacity`
/// per `period` ms. KEYS[1] key; ARGV capacity, period (ms). Server time.
/// Writes only when admitting (a refusal changes nothing). Same reply shape.
const BUCKET_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local rate = cap / tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(st[1])
local ts = tonumber(st[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
  ts = now
end
if tokens >= 1 then
  tokens = tokens - 1
  local reset = math.ceil((cap - tokens) / rate)
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
  redis.call('PEXPIRE', KEYS[1], reset)
  return {1, cap, math.floor(tokens), 0, reset}
end
return {0, cap, 0, math.ceil((1 - tokens) / rate), math.ceil((cap - tokens) / rate)}
"#;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

struct Config {
    requests: usize,
    concurrency: usize,
    keys: usize,
    seed: u64,
}

const USAGE: &str = "\
usage: bench [--requests N] [--concurrency C] [--keys K] [--seed S]

  --requests N     logical requests per approach in the load run (default 20000; env BENCH_REQUESTS)
  --concurrency C  concurrent tasks, one connection each (default 32; env BENCH_CONCURRENCY)
  --keys K         keys the requests are spread over (default 1000; env BENCH_KEYS)
  --seed S         seed of the request-to-key sequence (env BENCH_SEED)

Starts its own redis-server with the module (see tk_redis_tests::harness for
TK_MODULE_PATH, TK_REDIS_SERVER, TK_TEST_BACKEND) and prints a markdown table.";

enum CliError {
    Help,
    Bad(String),
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, CliError> {
    value
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| CliError::Bad(format!("{name}: not a valid number: {value:?}")))
}

fn env_number<T: std::str::FromStr>(var: &str, default: T) -> Result<T, CliError> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => parse_number(var, &value),
        _ => Ok(default),
    }
}

fn parse_config(args: impl IntoIterator<Item = String>) -> Result<Config, CliError> {
    let mut cfg = Config {
        requests: env_number("BENCH_REQUESTS", DEFAULT_REQUESTS)?,
        concurrency: env_number("BENCH_CONCURRENCY", DEFAULT_CONCURRENCY)?,
        keys: env_number("BENCH_KEYS", DEFAULT_KEYS)?,
        seed: env_number("BENCH_SEED", DEFAULT_SEED)?,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(CliError::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        if !matches!(
            name.as_str(),
            "--requests" | "--concurrency" | "--keys" | "--seed"
        ) {
            return Err(CliError::Bad(format!("unknown argument: {arg:?}")));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(CliError::Bad(format!("{name} needs a value"))),
        };
        match name.as_str() {
            "--requests" => cfg.requests = parse_number(&name, &value)?,
            "--concurrency" => cfg.concurrency = parse_number(&name, &value)?,
            "--keys" => cfg.keys = parse_number(&name, &value)?,
            _ => cfg.seed = parse_number(&name, &value)?,
        }
    }
    if cfg.requests == 0 || cfg.concurrency == 0 || cfg.keys == 0 {
        return Err(CliError::Bad(
            "--requests, --concurrency and --keys must be at least 1".into(),
        ));
    }
    if cfg.keys > 999_999 {
        return Err(CliError::Bad("--keys must be at most 999999".into()));
    }
    Ok(cfg)
}

// ---------------------------------------------------------------------------
// Approaches
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Approach {
    Gcra,
    Sliding,
    Fixed,
    ZsetClient,
    ZsetLua,
    BucketLua,
}

impl Approach {
    const ALL: [Approach; 6] = [
        Approach::Gcra,
        Approach::Sliding,
        Approach::Fixed,
        Approach::ZsetClient,
        Approach::ZsetLua,
        Approach::BucketLua,
    ];

    fn number(self) -> usize {
        Approach::ALL
            .iter()
            .position(|a| *a == self)
            .expect("listed")
            + 1
    }

    fn label(self) -> &'static str {
        match self {
            Approach::Gcra => "TK.RATELIMIT (GCRA)",
            Approach::Sliding => "TK.RATELIMIT ALGO SLIDING",
            Approach::Fixed => "TK.RATELIMIT ALGO FIXED",
            Approach::ZsetClient => "ZSET window, 4 round trips (client-side)",
            Approach::ZsetLua => "ZSET window, Lua (EVALSHA)",
            Approach::BucketLua => "token bucket, Lua (EVALSHA)",
        }
    }

    /// The top-level commands whose `INFO commandstats` time is summed.
    /// Commands called from inside a script or by the module (the module's
    /// own `SET`, a script's `ZADD`) are in commandstats too, but their time
    /// is already part of the caller's, so they are left out.
    fn counted_commands(self) -> &'static [&'static str] {
        match self {
            Approach::Gcra | Approach::Sliding | Approach::Fixed => &["tk.ratelimit"],
            Approach::ZsetClient => &["zremrangebyscore", "zcard", "zadd", "expire"],
            Approach::ZsetLua | Approach::BucketLua => &["evalsha"],
        }
    }

    /// A key of this approach. Every key has the same length, so the key
    /// name weighs the same in `MEMORY USAGE` for every approach.
    /// `kind`: `k` load run, `w` warm-up, `p` paced full key, `b` burst-filled
    /// full key, `r` race.
    fn key(self, kind: char, index: usize) -> String {
        format!("rl:{}:{kind}{index:06}", self.number())
    }
}

/// What the request functions share.
struct Shared {
    zset_sha: String,
    bucket_sha: String,
    /// Makes sorted-set members unique.
    member_seq: AtomicU64,
}

impl Shared {
    fn member(&self) -> (u64, String) {
        let now_us = unix_micros();
        // Fixed width (23 bytes), so members weigh the same in every
        // approach; unique since two requests never share both the
        // microsecond and the counter modulo 10^6.
        let seq = self.member_seq.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        (now_us, format!("{now_us}-{seq:06}"))
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn unix_millis() -> u64 {
    unix_micros() / 1000
}

/// One logical request; `Ok(true)` when admitted.
async fn request(
    approach: Approach,
    conn: &mut MultiplexedConnection,
    key: &str,
    shared: &Shared,
) -> RedisResult<bool> {
    match approach {
        Approach::Gcra => tk_ratelimit(conn, key, None).await,
        Approach::Sliding => tk_ratelimit(conn, key, Some("SLIDING")).await,
        Approach::Fixed => tk_ratelimit(conn, key, Some("FIXED")).await,
        Approach::ZsetClient => {
            let (now_us, member) = shared.member();
            let now_ms = now_us / 1000;
            let _: () = redis::cmd("ZREMRANGEBYSCORE")
                .arg(key)
                .arg(0)
                .arg(now_ms.saturating_sub(PERIOD_MS))
                .query_async(conn)
                .await?;
            let count: u64 = redis::cmd("ZCARD").arg(key).query_async(conn).await?;
            if count >= LIMIT {
                return Ok(false);
            }
            let _: () = redis::cmd("ZADD")
                .arg(key)
                .arg(now_ms)
                .arg(member)
                .query_async(conn)
                .await?;
            let _: () = redis::cmd("EXPIRE")
                .arg(key)
                .arg(PERIOD_MS / 1000)
                .query_async(conn)
                .await?;
            Ok(true)
        }
        Approach::ZsetLua => {
            let (_, member) = shared.member();
            let reply: Vec<i64> = redis::cmd("EVALSHA")
                .arg(&shared.zset_sha)
                .arg(1)
                .arg(key)
                .arg(LIMIT)
                .arg(PERIOD_MS)
                .arg(member)
                .query_async(conn)
                .await?;
            Ok(reply.first() == Some(&1))
        }
        Approach::BucketLua => {
            let reply: Vec<i64> = redis::cmd("EVALSHA")
                .arg(&shared.bucket_sha)
                .arg(1)
                .arg(key)
                .arg(LIMIT)
                .arg(PERIOD_MS)
                .query_async(conn)
                .await?;
            Ok(reply.first() == Some(&1))
        }
    }
}

async fn tk_ratelimit(
    conn: &mut MultiplexedConnection,
    key: &str,
    algo: Option<&str>,
) -> RedisResult<bool> {
    let mut cmd = redis::cmd("TK.RATELIMIT");
    cmd.arg(key).arg(LIMIT).arg(PERIOD_ARG);
    if let Some(algo) = algo {
        cmd.arg("ALGO").arg(algo);
    }
    let reply: Vec<i64> = cmd.query_async(conn).await?;
    if reply.len() != 5 {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "TK.RATELIMIT did not reply with 5 integers",
        )));
    }
    Ok(reply[0] == 1)
}

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

/// splitmix64: a small, seedable generator (the workload must be the same
/// sequence for every approach; no statistical finesse needed).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn hot_keys(keys: usize) -> usize {
    (keys / HOT_KEYS_PER).max(1)
}

/// The key index of every request of the load run: one in [`HOT_ONE_IN`]
/// goes to one of the hot keys (the first `keys / 100`), the rest to any key
/// uniformly, so hot keys are refused a lot and most keys hold some state.
fn key_sequence(cfg: &Config) -> Vec<usize> {
    let hot = hot_keys(cfg.keys);
    let mut rng = SplitMix64(cfg.seed);
    (0..cfg.requests)
        .map(|_| {
            if rng.next_u64().is_multiple_of(HOT_ONE_IN) {
                rng.below(hot)
            } else {
                rng.below(cfg.keys)
            }
        })
        .collect()
}

/// Evenly spread non-hot key indices whose memory is sampled.
fn typical_keys(cfg: &Config) -> Vec<usize> {
    let hot = hot_keys(cfg.keys);
    let (first, span) = if cfg.keys > hot {
        (hot, cfg.keys - hot)
    } else {
        (0, cfg.keys)
    };
    let samples = MEMORY_SAMPLES.min(span);
    (0..samples).map(|j| first + j * span / samples).collect()
}

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

struct LoadRun {
    elapsed: Duration,
    admitted: usize,
    /// Per request, µs, sorted.
    latencies_us: Vec<u64>,
    /// Unix ms at start and end (to tell whether a fixed window boundary was crossed).
    start_ms: u64,
    end_ms: u64,
}

/// Sends `keys.len()` requests from one task per connection; each task takes
/// the next request index from a shared counter until all are sent.
async fn run_load(
    approach: Approach,
    conns: &[MultiplexedConnection],
    kind: char,
    keys: Arc<Vec<usize>>,
    shared: &Arc<Shared>,
) -> LoadRun {
    let next = Arc::new(AtomicUsize::new(0));
    let start_ms = unix_millis();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for conn in conns {
        let mut conn = conn.clone();
        let next = next.clone();
        let keys = keys.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0usize;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&index) = keys.get(i) else { break };
                let key = approach.key(kind, index);
                let t0 = Instant::now();
                let ok = request(approach, &mut conn, &key, &shared)
                    .await
                    .unwrap_or_else(|e| panic!("{}: request on {key}: {e}", approach.label()));
                latencies.push(t0.elapsed().as_micros() as u64);
                admitted += usize::from(ok);
            }
            (admitted, latencies)
        }));
    }
    let mut admitted = 0;
    let mut latencies_us = Vec::with_capacity(keys.len());
    for task in tasks {
        let (a, l) = task.await.expect("load task panicked");
        admitted += a;
        latencies_us.extend(l);
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    LoadRun {
        elapsed,
        admitted,
        latencies_us,
        start_ms,
        end_ms: unix_millis(),
    }
}

/// `(calls, usec)` per lowercased command name from `INFO commandstats`.
async fn commandstats(conn: &mut MultiplexedConnection) -> HashMap<String, (u64, u64)> {
    let info = info_section(conn, "commandstats").await;
    let mut out = HashMap::new();
    for (field, value) in info {
        let Some(name) = field.strip_prefix("cmdstat_") else {
            continue;
        };
        let mut calls = 0;
        let mut usec = 0;
        for part in value.split(',') {
            match part.split_once('=') {
                Some(("calls", v)) => calls = v.parse().unwrap_or(0),
                Some(("usec", v)) => usec = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(name.to_ascii_lowercase(), (calls, usec));
    }
    out
}

/// CPU seconds of the server's main thread (user + system), from `INFO cpu`.
async fn server_cpu_seconds(conn: &mut MultiplexedConnection) -> f64 {
    let info = info_section(conn, "cpu").await;
    let get = |name: &str| info.get(name).and_then(|v| v.parse::<f64>().ok());
    match (
        get("used_cpu_user_main_thread"),
        get("used_cpu_sys_main_thread"),
    ) {
        (Some(user), Some(sys)) => user + sys,
        _ => get("used_cpu_user").unwrap_or(0.0) + get("used_cpu_sys").unwrap_or(0.0),
    }
}

async fn memory_usage(conn: &mut MultiplexedConnection, key: &str) -> Option<u64> {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("MEMORY USAGE {key}: {e}"))
}

/// `RACE_TASKS` tasks on their own connections, released together, each
/// sending `RACE_PER_TASK` requests for the same fresh key (number `round`).
/// Returns the number admitted and how long the race took.
async fn race(
    approach: Approach,
    conns: &[MultiplexedConnection],
    shared: &Arc<Shared>,
    round: usize,
) -> (usize, Duration) {
    let key = Arc::new(approach.key('r', round));
    let barrier = Arc::new(tokio::sync::Barrier::new(conns.len() + 1));
    let mut tasks = Vec::with_capacity(conns.len());
    for conn in conns {
        let mut conn = conn.clone();
        let key = key.clone();
        let barrier = barrier.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut admitted = 0usize;
            for _ in 0..RACE_PER_TASK {
                let ok = request(approach, &mut conn, &key, &shared)
                    .await
                    .unwrap_or_else(|e| panic!("{}: race request: {e}", approach.label()));
                admitted += usize::from(ok);
            }
            admitted
        }));
    }
    let start = Instant::now();
    barrier.wait().await;
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.expect("race task panicked");
    }
    (admitted, start.elapsed())
}

struct Row {
    approach: Approach,
    server_us_per_request: f64,
    calls_per_request: f64,
    cpu_us_per_request: f64,
    requests_per_sec: f64,
    admitted: usize,
    p50_ms: f64,
    p99_ms: f64,
    typical_bytes: Option<f64>,
    typical_found: usize,
    /// Filled at [`PACED_FILL_INTERVAL`] (see [`fill_paced`]).
    full_bytes: Option<u64>,
    /// Filled with 100 back-to-back requests.
    burst_full_bytes: Option<u64>,
    /// Admitted in each race round.
    race_admitted: Vec<usize>,
    /// Mean duration of a race round.
    race_ms: f64,
    notes: Vec<String>,
}

async fn measure(
    approach: Approach,
    cfg: &Config,
    ctl: &mut MultiplexedConnection,
    load_conns: &[MultiplexedConnection],
    race_conns: &[MultiplexedConnection],
    sequence: &Arc<Vec<usize>>,
    shared: &Arc<Shared>,
) -> Row {
    eprintln!("==> {}. {}", approach.number(), approach.label());
    let mut notes = Vec::new();

    // Warm-up on keys that are not measured (connections, allocator, scripts).
    let warm: Vec<usize> = (0..WARMUP_REQUESTS.min(cfg.requests))
        .map(|i| i % cfg.keys)
        .collect();
    run_load(approach, load_conns, 'w', Arc::new(warm), shared).await;

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(ctl)
        .await
        .expect("CONFIG RESETSTAT");
    let cpu_before = server_cpu_seconds(ctl).await;
    let run = run_load(approach, load_conns, 'k', sequence.clone(), shared).await;
    let cpu_after = server_cpu_seconds(ctl).await;
    let stats = commandstats(ctl).await;

    let n = sequence.len() as f64;
    let (calls, usec) = approach
        .counted_commands()
        .iter()
        .filter_map(|name| stats.get(*name))
        .fold((0u64, 0u64), |(c, u), (calls, usec)| (c + calls, u + usec));
    if approach == Approach::Fixed && run.start_ms / PERIOD_MS != run.end_ms / PERIOD_MS {
        notes.push("the load run crossed a fixed-window boundary".into());
    }

    // Memory of typical keys right away (GCRA/FIXED/bucket keys expire).
    let mut found = 0;
    let mut total = 0u64;
    for index in typical_keys(cfg) {
        if let Some(bytes) = memory_usage(ctl, &approach.key('k', index)).await {
            found += 1;
            total += bytes;
        }
    }
    let typical_bytes = (found > 0).then(|| total as f64 / found as f64);

    // One key that has admitted LIMIT requests sent back to back (the paced
    // variant, the one in the main table, is filled later for all at once).
    let burst_key = approach.key('b', 0);
    let mut burst_admitted = 0;
    for _ in 0..LIMIT {
        let ok = request(approach, ctl, &burst_key, shared)
            .await
            .unwrap_or_else(|e| panic!("{}: full-key request: {e}", approach.label()));
        burst_admitted += usize::from(ok);
    }
    if burst_admitted as u64 != LIMIT {
        notes.push(format!(
            "the burst-filled key admitted {burst_admitted} of {LIMIT} back-to-back requests"
        ));
    }
    let burst_full_bytes = memory_usage(ctl, &burst_key).await;

    let race_start_ms = unix_millis();
    let mut race_admitted = Vec::with_capacity(RACE_ROUNDS);
    let mut race_time = Duration::ZERO;
    for round in 0..RACE_ROUNDS {
        let (admitted, took) = race(approach, race_conns, shared, round).await;
        race_admitted.push(admitted);
        race_time += took;
    }
    if approach == Approach::Fixed && race_start_ms / PERIOD_MS != unix_millis() / PERIOD_MS {
        notes.push("the race crossed a fixed-window boundary".into());
    }

    let secs = run.elapsed.as_secs_f64();
    Row {
        approach,
        server_us_per_request: usec as f64 / n,
        calls_per_request: calls as f64 / n,
        cpu_us_per_request: (cpu_after - cpu_before).max(0.0) * 1e6 / n,
        requests_per_sec: if secs > 0.0 { n / secs } else { 0.0 },
        admitted: run.admitted,
        p50_ms: percentile_ms(&run.latencies_us, 0.50),
        p99_ms: percentile_ms(&run.latencies_us, 0.99),
        typical_bytes,
        typical_found: found,
        full_bytes: None,
        burst_full_bytes,
        race_admitted,
        race_ms: race_time.as_secs_f64() * 1e3 / RACE_ROUNDS as f64,
        notes,
    }
}

/// Fills one key per approach with LIMIT requests, one round of all
/// approaches every [`PACED_FILL_INTERVAL`], then sets each row's
/// `full_bytes` to the key's `MEMORY USAGE`.
async fn fill_paced(ctl: &mut MultiplexedConnection, rows: &mut [Row], shared: &Shared) {
    eprintln!(
        "==> filling one key per approach with {LIMIT} requests, {} ms apart",
        PACED_FILL_INTERVAL.as_millis()
    );
    let mut admitted = vec![0u64; rows.len()];
    let start_ms = unix_millis();
    let mut tick = tokio::time::interval(PACED_FILL_INTERVAL);
    // Never closer than the interval, even after a stall.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..LIMIT {
        tick.tick().await;
        for (row, admitted) in rows.iter().zip(admitted.iter_mut()) {
            let approach = row.approach;
            let ok = request(approach, ctl, &approach.key('p', 0), shared)
                .await
                .unwrap_or_else(|e| panic!("{}: paced request: {e}", approach.label()));
            *admitted += u64::from(ok);
        }
    }
    let crossed = start_ms / PERIOD_MS != unix_millis() / PERIOD_MS;
    for (row, admitted) in rows.iter_mut().zip(admitted) {
        let approach = row.approach;
        row.full_bytes = memory_usage(ctl, &approach.key('p', 0)).await;
        if admitted != LIMIT {
            row.notes.push(format!(
                "the paced full key admitted {admitted} of {LIMIT} requests"
            ));
        }
        if approach == Approach::Fixed && crossed {
            row.notes.push(
                "the paced fill crossed a fixed-window boundary: its key holds fewer than 100"
                    .into(),
            );
        }
    }
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (p * (sorted_us.len() - 1) as f64).round() as usize;
    sorted_us[rank.min(sorted_us.len() - 1)] as f64 / 1e3
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// `12345.6` → `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `[100, 118, 104]` → `100–118`; `[100, 100]` → `100`.
fn min_max(values: &[usize]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(min), Some(max)) if min == max => min.to_string(),
        (Some(min), Some(max)) => format!("{min}–{max}"),
        _ => "n/a".into(),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn module_version(tk_version: Option<&String>) -> String {
    match tk_version.and_then(|v| v.parse::<u64>().ok()) {
        Some(v) => format!(
            "{}.{}.{} (tk_version {v})",
            v / 10000,
            v / 100 % 100,
            v % 100
        ),
        None => "unknown".into(),
    }
}

fn print_report(cfg: &Config, server_version: &str, module: &str, rows: &[Row]) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let hot = hot_keys(cfg.keys);
    let typical_requests =
        cfg.requests as f64 * (HOT_ONE_IN - 1) as f64 / HOT_ONE_IN as f64 / cfg.keys as f64;
    println!("# tk-redis rate-limit benchmark");
    println!();
    println!("- redis-server: {server_version}");
    println!("- module: {module}");
    println!("- CPUs: {cpus} ({})", cpu_model());
    println!(
        "- requests: {} per approach, concurrency: {} tasks (one MultiplexedConnection each)",
        cfg.requests, cfg.concurrency
    );
    println!(
        "- keys: {} ({hot} hot keys get 1/{HOT_ONE_IN} of the requests; the rest go to any key \
         uniformly, ~{typical_requests:.0} per typical key), seed {}",
        cfg.keys, cfg.seed
    );
    println!("- limit: {LIMIT} requests per {PERIOD_ARG} per key, every approach");
    println!(
        "- race: {RACE_TASKS} tasks (own connection each) × {RACE_PER_TASK} requests on one \
         fresh key, {RACE_ROUNDS} rounds; the table shows min–max admitted"
    );
    println!();
    println!(
        "| approach | server µs/request | requests/s | bytes per key (typical) \
         | bytes for a key with {LIMIT} admitted | admitted in {}-request race |",
        RACE_TASKS * RACE_PER_TASK
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let typical = row
            .typical_bytes
            .map(|b| format!("{b:.0}"))
            .unwrap_or_else(|| "n/a".into());
        let full = row
            .full_bytes
            .map(|b| b.to_string())
            .unwrap_or_else(|| "n/a".into());
        println!(
            "| {}. {} | {:.2} | {} | {typical} | {full} | {} |",
            row.approach.number(),
            row.approach.label(),
            row.server_us_per_request,
            thousands(row.requests_per_sec),
            min_max(&row.race_admitted),
        );
    }
    println!();
    println!("Details:");
    println!();
    println!(
        "| approach | counted commands | calls/request | server main-thread CPU µs/request \
         | admitted in load run | latency p50 / p99 ms | typical keys found \
         | bytes, {LIMIT} admitted back to back | race rounds (admitted) | race ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|---:|");
    for row in rows {
        println!(
            "| {}. | {} | {:.2} | {:.2} | {} ({:.1}%) | {:.2} / {:.2} | {}/{} | {} | {} | {:.1} |",
            row.approach.number(),
            row.approach.counted_commands().join(", "),
            row.calls_per_request,
            row.cpu_us_per_request,
            row.admitted,
            100.0 * row.admitted as f64 / cfg.requests as f64,
            row.p50_ms,
            row.p99_ms,
            row.typical_found,
            typical_keys(cfg).len(),
            row.burst_full_bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "n/a".into()),
            row.race_admitted
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            row.race_ms,
        );
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.notes
                .iter()
                .map(move |n| format!("- {}.: {n}", row.approach.number()))
        })
        .collect();
    if !notes.is_empty() {
        println!();
        println!("Notes:");
        println!();
        for note in notes {
            println!("{note}");
        }
    }
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async fn connections(server: &Server, n: usize) -> Vec<MultiplexedConnection> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(server.conn().await);
    }
    out
}

async fn script_load(conn: &mut MultiplexedConnection, source: &str) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(source)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("SCRIPT LOAD: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = match parse_config(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(CliError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(CliError::Bad(msg)) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    eprintln!("==> starting redis-server with the module");
    let server = Server::start().await;
    let mut ctl = server.conn().await;
    let server_info = info_section(&mut ctl, "server").await;
    let server_version = server_info
        .get("redis_version")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let tk_info = info_section(&mut ctl, "tk").await;
    let module = module_version(tk_info.get("tk_version"));

    let shared = Arc::new(Shared {
        zset_sha: script_load(&mut ctl, ZSET_SCRIPT).await,
        bucket_sha: script_load(&mut ctl, BUCKET_SCRIPT).await,
        member_seq: AtomicU64::new(0),
    });
    let load_conns = connections(&server, cfg.concurrency).await;
    let race_conns = connections(&server, RACE_TASKS).await;
    let sequence = Arc::new(key_sequence(&cfg));

    let started = Instant::now();
    let mut rows = Vec::new();
    for approach in Approach::ALL {
        rows.push(
            measure(
                approach,
                &cfg,
                &mut ctl,
                &load_conns,
                &race_conns,
                &sequence,
                &shared,
            )
            .await,
        );
    }
    fill_paced(&mut ctl, &mut rows, &shared).await;
    eprintln!(
        "==> done in {:.1} s (server at {})",
        started.elapsed().as_secs_f64(),
        server.addr()
    );
    print_report(&cfg, &server_version, &module, &rows);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cli() {
        let cfg = parse_config(args(&["--requests", "500", "--concurrency=4"]))
            .ok()
            .expect("valid");
        assert_eq!(cfg.requests, 500);
        assert_eq!(cfg.concurrency, 4);
        assert!(matches!(
            parse_config(args(&["--requests", "0"])),
            Err(CliError::Bad(_))
        ));
        assert!(matches!(
            parse_config(args(&["--bogus"])),
            Err(CliError::Bad(_))
        ));
        assert!(matches!(parse_config(args(&["-h"])), Err(CliError::Help)));
    }

    #[test]
    fn workload_is_deterministic_and_in_range() {
        let cfg = Config {
            requests: 1000,
            concurrency: 1,
            keys: 50,
            seed: 7,
        };
        let a = key_sequence(&cfg);
        assert_eq!(a, key_sequence(&cfg));
        assert!(a.iter().all(|&k| k < 50));
        let typical = typical_keys(&cfg);
        assert!(!typical.is_empty() && typical.iter().all(|&k| (1..50).contains(&k)));
    }

    #[test]
    fn keys_have_equal_length() {
        let lens: Vec<usize> = Approach::ALL
            .iter()
            .flat_map(|a| [a.key('k', 1), a.key('f', 0), a.key('r', 999_999)])
            .map(|k| k.len())
            .collect();
        assert!(lens.windows(2).all(|w| w[0] == w[1]), "{lens:?}");
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234.4), "1,234");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(min_max(&[100, 118, 104]), "100–118");
        assert_eq!(min_max(&[100, 100]), "100");
        assert_eq!(min_max(&[]), "n/a");
        assert_eq!(
            module_version(Some(&"10203".to_string())),
            "1.2.3 (tk_version 10203)"
        );
    }
}
