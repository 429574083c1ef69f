//! Side-by-side benchmark of the tk module's commands and the plain-Redis
//! ways the app did the same thing, all against one `redis-server` (with
//! the module) that the test harness starts:
//!
//! 1. rate limiting: INCR / SET (the floor for a write), the Lua token
//!    bucket (EVALSHA: HMGET, HMSET, EXPIRE), the 4-command sorted-set
//!    window, TK.RATELIMIT in each algorithm, TK.RATELIMIT.ALL with 2 limits
//!    vs two separate calls; memory per key after 50 requests each
//! 2. sessions: TK.SESSION.TOUCH vs GET + JSON decode/encode + SET vs HGETALL
//! 3. cache invalidation: TK.CACHE.INVALIDATEUSER vs KEYS + DEL vs a
//!    SCAN-based delete, on a 1,000,000-key keyspace, with the worst PING a
//!    second client saw meanwhile
//! 4. client overhead: the typed tk-redis call vs a raw `redis::cmd`
//!
//! It only reports; nothing asserts on timings. The report goes to stdout
//! and (unless `--no-write`) to docs/BENCHMARKS.md, with the raw numbers in
//! docs/bench/results.json and results.csv and a chart in
//! docs/bench/server_us.png. Progress goes to stderr.
//!
//! Usage: `bench [--quick] [--no-write] [--out DIR]`

mod bench {
    pub mod chart;
}

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{RedisResult, Value};
use serde_json::json;
use tk_redis_tests::Conn;
use tk_redis_tests::{all_command_stats, info_section, workspace_dir, Server};

/// Distinct keys every load run spreads over.
const KEYS: usize = 10_000;
/// Concurrent connections (one task each) in every load run.
const CONNS: usize = 50;
/// Every measurement is repeated this many times (median and spread).
const REPEATS: usize = 3;
/// Pipeline depths of the load runs.
const PIPELINES: [usize; 2] = [1, 16];
/// Requests per key in the memory runs.
const MEMORY_REQUESTS: usize = 50;
/// Keys whose `MEMORY USAGE` is averaged.
const MEMORY_SAMPLES: usize = 32;
/// Filler keys of the cache-invalidation keyspace.
const KEYSPACE: usize = 1_000_000;
/// Cache entries per user in the invalidation runs.
const USER_SIZES: [usize; 3] = [10, 1_000, 100_000];
/// The heading of the section of BENCHMARKS.md that `http_bench` owns.
const HTTP_SECTION: &str = "## HTTP layers";
/// Sequential calls per repeat in the client-overhead run.
const CLIENT_CALLS: usize = 20_000;

/// The app's Lua token bucket: capacity ARGV[1] refilled by ARGV[1] per
/// ARGV[2] ms, state in a hash (HMGET, HMSET, EXPIRE). Server time. Also
/// counted by scripts/callgrind.
const BUCKET_SCRIPT: &str = include_str!("bucket.lua");

/// A session as the app stored it (JSON in a string) and as TK keeps `data`.
const SESSION_JSON: &str = r#"{"user_id":"u-000042","email":"someone@example.com","roles":["member","beta"],"csrf":"6f1c2a9e0b7d4e3f8a5c1b2d3e4f5a6b","locale":"en-GB","created":1767225600000,"last_active":1767225600000}"#;

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Incr,
    Set,
    LuaBucket,
    ZsetWindow,
    Gcra,
    /// GCRA through the Functions library (tk.lua), for servers without
    /// the module.
    LibraryGcra,
    Sliding,
    Fixed,
    All2,
    TwoCalls,
    Touch,
    JsonSession,
    Hgetall,
    Typed,
    Raw,
}

impl Case {
    const LOAD: [Case; 15] = [
        Case::Incr,
        Case::Set,
        Case::LuaBucket,
        Case::ZsetWindow,
        Case::Gcra,
        Case::LibraryGcra,
        Case::Sliding,
        Case::Fixed,
        Case::All2,
        Case::TwoCalls,
        Case::Touch,
        Case::JsonSession,
        Case::Hgetall,
        Case::Typed,
        Case::Raw,
    ];
    /// Rate-limit cases whose memory per key is measured.
    const MEMORY: [Case; 7] = [
        Case::Incr,
        Case::LuaBucket,
        Case::ZsetWindow,
        Case::Gcra,
        Case::LibraryGcra,
        Case::Sliding,
        Case::Fixed,
    ];

    fn id(self) -> &'static str {
        match self {
            Case::Incr => "incr",
            Case::Set => "set",
            Case::LuaBucket => "lua_bucket",
            Case::ZsetWindow => "zset_window",
            Case::Gcra => "tk_gcra",
            Case::LibraryGcra => "tk_lua_gcra",
            Case::Sliding => "tk_sliding",
            Case::Fixed => "tk_fixed",
            Case::All2 => "tk_all_2",
            Case::TwoCalls => "tk_two_calls",
            Case::Touch => "tk_session_touch",
            Case::JsonSession => "json_get_set",
            Case::Hgetall => "hgetall",
            Case::Typed => "client_typed",
            Case::Raw => "client_raw",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Case::Touch | Case::JsonSession | Case::Hgetall => "2. sessions",
            Case::Typed | Case::Raw => "4. client",
            _ => "1. rate limit",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Incr => "INCR (floor)",
            Case::Set => "SET (floor)",
            Case::LuaBucket => "Lua token bucket (EVALSHA)",
            Case::ZsetWindow => "ZSET window, 4 commands",
            Case::Gcra => "TK.RATELIMIT GCRA",
            Case::LibraryGcra => "tk.lua GCRA (FCALL tk_ratelimit)",
            Case::Sliding => "TK.RATELIMIT SLIDING",
            Case::Fixed => "TK.RATELIMIT FIXED",
            Case::All2 => "TK.RATELIMIT.ALL, 2 limits",
            Case::TwoCalls => "2 × TK.RATELIMIT",
            Case::Touch => "TK.SESSION.TOUCH",
            Case::JsonSession => "GET + JSON + SET",
            Case::Hgetall => "HGETALL (same hash)",
            Case::Typed => "typed RateLimiter::check",
            Case::Raw => "raw redis::cmd TK.RATELIMIT",
        }
    }

    /// Top-level commands whose commandstats time one logical operation
    /// needs. Commands run inside a script or by the module are part of
    /// their caller's time and are not counted again.
    fn counted(self) -> &'static [&'static str] {
        match self {
            Case::Incr => &["incr"],
            Case::Set => &["set"],
            Case::LuaBucket => &["evalsha"],
            Case::LibraryGcra => &["fcall"],
            Case::ZsetWindow => &["zremrangebyscore", "zcard", "zadd", "expire"],
            Case::Gcra | Case::Sliding | Case::Fixed | Case::TwoCalls => &["tk.ratelimit"],
            Case::Typed | Case::Raw => &["tk.ratelimit"],
            Case::All2 => &["tk.ratelimit.all"],
            Case::Touch => &["tk.session.touch"],
            Case::JsonSession => &["get", "set"],
            Case::Hgetall => &["hgetall"],
        }
    }

    fn number(self) -> usize {
        Case::LOAD.iter().position(|c| *c == self).expect("listed")
    }

    /// Key `index` of this case; equal length for every rate-limit case.
    fn key(self, index: usize) -> String {
        match self {
            Case::Touch | Case::Hgetall => format!("tk:s:{{u{index:06}}}:s"),
            Case::JsonSession => format!("sess:{index:06}"),
            _ => format!("rl:{{{:02}:{index:06}}}", self.number()),
        }
    }
}

struct Ctx {
    bucket_sha: String,
    seq: AtomicU64,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tk_ratelimit(key: &str, algo: Option<&str>) -> redis::Cmd {
    let mut cmd = redis::cmd("TK.RATELIMIT");
    // Exactly what the typed client sends for `Quota::per_minute(100)`.
    cmd.arg(key).arg(100).arg(60_000);
    if let Some(algo) = algo {
        cmd.arg("ALGO").arg(algo);
    }
    cmd
}

/// Runs one batch of logical operations (one per key index, pipelined
/// round by round). Returns the round trips the batch took.
async fn run_batch(
    case: Case,
    conn: &mut Conn,
    idx: &[usize],
    ctx: &Ctx,
    limiter: Option<&tk_redis::RateLimiter<Conn>>,
) -> RedisResult<usize> {
    let keys: Vec<String> = idx.iter().map(|&i| case.key(i)).collect();
    let single = |f: &dyn Fn(&str) -> redis::Cmd| {
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.add_command(f(key));
        }
        pipe
    };
    let pipe = match case {
        Case::Incr => single(&|k| redis::cmd("INCR").arg(k).clone()),
        Case::Set => single(&|k| redis::cmd("SET").arg(k).arg("1").clone()),
        Case::LuaBucket => single(&|k| {
            redis::cmd("EVALSHA")
                .arg(&ctx.bucket_sha)
                .arg(1)
                .arg(k)
                .arg(100)
                .arg(60_000)
                .clone()
        }),
        Case::Gcra | Case::Raw => single(&|k| tk_ratelimit(k, None)),
        Case::LibraryGcra => single(&|k| {
            redis::cmd("FCALL")
                .arg("tk_ratelimit")
                .arg(1)
                .arg(k)
                .arg(100)
                .arg(60_000)
                .clone()
        }),
        Case::Sliding => single(&|k| tk_ratelimit(k, Some("SLIDING"))),
        Case::Fixed => single(&|k| tk_ratelimit(k, Some("FIXED"))),
        Case::All2 => single(&|k| {
            redis::cmd("TK.RATELIMIT.ALL")
                .arg(2)
                .arg(format!("{k}:s"))
                .arg(format!("{k}:h"))
                .arg(1000)
                .arg("1s")
                .arg(100_000)
                .arg("1h")
                .clone()
        }),
        Case::Touch => single(&|k| redis::cmd("TK.SESSION.TOUCH").arg(k).clone()),
        Case::Hgetall => single(&|k| redis::cmd("HGETALL").arg(k).clone()),
        Case::TwoCalls => {
            for suffix in [":s", ":h"] {
                let (limit, period) = if suffix == ":s" {
                    (1000, "1s")
                } else {
                    (100_000, "1h")
                };
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("TK.RATELIMIT")
                        .arg(format!("{key}{suffix}"))
                        .arg(limit)
                        .arg(period);
                }
                let _: Value = pipe.query_async(conn).await?;
            }
            return Ok(2);
        }
        Case::ZsetWindow => {
            let now = unix_millis();
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(key)
                    .arg(0)
                    .arg(now.saturating_sub(60_000))
                    .ignore();
            }
            let _: Value = pipe.query_async(conn).await?;
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("ZCARD").arg(key);
            }
            let counts: Vec<u64> = pipe.query_async(conn).await?;
            let admitted: Vec<&String> = keys
                .iter()
                .zip(&counts)
                .filter(|(_, &n)| n < 100)
                .map(|(k, _)| k)
                .collect();
            if admitted.is_empty() {
                return Ok(2);
            }
            let mut pipe = redis::pipe();
            for key in &admitted {
                let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
                pipe.cmd("ZADD")
                    .arg(*key)
                    .arg(now)
                    .arg(format!("{now}-{seq:010}"))
                    .ignore();
            }
            let _: Value = pipe.query_async(conn).await?;
            let mut pipe = redis::pipe();
            for key in &admitted {
                pipe.cmd("EXPIRE").arg(*key).arg(60).ignore();
            }
            let _: Value = pipe.query_async(conn).await?;
            return Ok(4);
        }
        Case::JsonSession => {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("GET").arg(key);
            }
            let blobs: Vec<Option<String>> = pipe.query_async(conn).await?;
            let now = unix_millis();
            let mut pipe = redis::pipe();
            for (key, blob) in keys.iter().zip(blobs) {
                let Some(blob) = blob else { continue };
                let mut session: serde_json::Value =
                    serde_json::from_str(&blob).expect("session JSON");
                session["last_active"] = json!(now);
                let text = serde_json::to_string(&session).expect("encode");
                pipe.cmd("SET")
                    .arg(key)
                    .arg(text)
                    .arg("EX")
                    .arg(86_400)
                    .ignore();
            }
            let _: Value = pipe.query_async(conn).await?;
            return Ok(2);
        }
        Case::Typed => {
            let limiter = limiter.expect("typed case has a limiter");
            let quota = tk_redis::Quota::per_minute(100);
            let calls = keys.iter().map(|k| limiter.check(k, &quota, 1));
            for result in futures_util::future::join_all(calls).await {
                result.map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Io, "typed", e.to_string()))
                })?;
            }
            return Ok(1);
        }
    };
    let _: Value = pipe.query_async(conn).await?;
    Ok(1)
}

// ---------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------

/// splitmix64: a seedable generator for key choice.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// CPU seconds of the server's main thread (user + system), from `INFO cpu`.
async fn server_cpu_seconds(ctl: &mut Conn) -> f64 {
    let info = info_section(ctl, "cpu").await;
    let get = |name: &str| {
        info.get(name)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    get("used_cpu_user_main_thread") + get("used_cpu_sys_main_thread")
}

async fn reset_stats(ctl: &mut Conn) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(ctl)
        .await
        .expect("CONFIG RESETSTAT");
}

/// One load run's results.
struct Run {
    us_per_op: f64,
    cpu_us_per_op: f64,
    calls_per_op: f64,
    round_trips_per_op: f64,
    ops_per_sec: f64,
}

/// `ops` logical operations over [`KEYS`] keys, `pipeline` per batch, from
/// [`CONNS`] tasks with one connection each.
async fn load(
    case: Case,
    ctl: &mut Conn,
    conns: &[Conn],
    ops: usize,
    pipeline: usize,
    ctx: &Arc<Ctx>,
    seed: u64,
) -> Run {
    reset_stats(ctl).await;
    let cpu_before = server_cpu_seconds(ctl).await;
    let batches = Arc::new(AtomicUsize::new(ops / pipeline));
    let rounds = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (t, conn) in conns.iter().enumerate() {
        let mut conn = conn.clone();
        let (batches, rounds, ctx) = (batches.clone(), rounds.clone(), ctx.clone());
        let limiter = (case == Case::Typed).then(|| tk_redis::RateLimiter::new(conn.clone()));
        tasks.push(tokio::spawn(async move {
            let mut rng = SplitMix64(seed ^ (t as u64) << 32);
            let mut idx = Vec::with_capacity(pipeline);
            while batches
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                idx.clear();
                idx.extend((0..pipeline).map(|_| (rng.next_u64() % KEYS as u64) as usize));
                let n = run_batch(case, &mut conn, &idx, &ctx, limiter.as_ref())
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
                rounds.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = server_cpu_seconds(ctl).await;
    let stats = all_command_stats(ctl).await;
    let done = (ops / pipeline * pipeline) as f64;
    let (calls, usec) = case
        .counted()
        .iter()
        .filter_map(|name| stats.get(*name))
        .fold((0, 0), |(c, u), s| (c + s.calls, u + s.usec));
    Run {
        us_per_op: usec as f64 / done,
        cpu_us_per_op: (cpu_after - cpu_before).max(0.0) * 1e6 / done,
        calls_per_op: calls as f64 / done,
        round_trips_per_op: rounds.load(Ordering::Relaxed) as f64 / (ops / pipeline) as f64,
        ops_per_sec: done / elapsed,
    }
}

/// Median and (min, max) of a sample.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Spread as ± half the min–max range, in percent of the median.
fn spread_pct(values: &[f64]) -> f64 {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = median(values);
    if m == 0.0 || !m.is_finite() {
        0.0
    } else {
        (max - min) / 2.0 / m * 100.0
    }
}

fn fmt_ms(values: &[f64], decimals: usize) -> String {
    format!(
        "{:.*} ±{:.0}%",
        decimals,
        median(values),
        spread_pct(values)
    )
}

#[derive(Default)]
struct CaseResult {
    us_per_op: Vec<f64>,
    cpu_us_per_op: Vec<f64>,
    calls_per_op: f64,
    round_trips: f64,
    ops_p1: Vec<f64>,
    ops_p16: Vec<f64>,
}

async fn memory_usage(ctl: &mut Conn, key: &str) -> Option<u64> {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(ctl)
        .await
        .ok()
        .flatten()
}

async fn used_memory(ctl: &mut Conn) -> f64 {
    info_section(ctl, "memory")
        .await
        .get("used_memory")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn sample_usage(ctl: &mut Conn, case: Case) -> f64 {
    let mut total = 0;
    let mut found = 0;
    for i in 0..MEMORY_SAMPLES {
        if let Some(bytes) = memory_usage(ctl, &case.key(i * KEYS / MEMORY_SAMPLES)).await {
            total += bytes;
            found += 1;
        }
    }
    total as f64 / found.max(1) as f64
}

async fn flushall(ctl: &mut Conn) {
    let _: () = redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query_async(ctl)
        .await
        .expect("FLUSHALL");
}

#[derive(Default, Clone)]
struct MemoryResult {
    usage_after_1: f64,
    usage_after_50: f64,
    delta_per_key: Vec<f64>,
}

/// [`KEYS`] keys, each sent [`MEMORY_REQUESTS`] requests (round by round
/// over all keys, so a key's requests are milliseconds apart).
async fn memory_run(
    case: Case,
    ctl: &mut Conn,
    conns: &[Conn],
    ctx: &Arc<Ctx>,
    result: &mut MemoryResult,
    first: bool,
) {
    flushall(ctl).await;
    let before = used_memory(ctl).await;
    let per_conn = KEYS / conns.len();
    for round in 0..MEMORY_REQUESTS {
        let mut tasks = Vec::new();
        for (t, conn) in conns.iter().enumerate() {
            let mut conn = conn.clone();
            let ctx = ctx.clone();
            let range = t * per_conn..if t + 1 == conns.len() {
                KEYS
            } else {
                (t + 1) * per_conn
            };
            tasks.push(tokio::spawn(async move {
                let idx: Vec<usize> = range.collect();
                for chunk in idx.chunks(500) {
                    run_batch(case, &mut conn, chunk, &ctx, None)
                        .await
                        .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
                    if case == Case::Incr && round == 0 {
                        let mut pipe = redis::pipe();
                        for &i in chunk {
                            pipe.cmd("EXPIRE").arg(case.key(i)).arg(60).ignore();
                        }
                        let _: Value = pipe.query_async(&mut conn).await.expect("EXPIRE");
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("memory task");
        }
        if round == 0 && first {
            result.usage_after_1 = sample_usage(ctl, case).await;
        }
    }
    let after = used_memory(ctl).await;
    if first {
        result.usage_after_50 = sample_usage(ctl, case).await;
    }
    result.delta_per_key.push((after - before) / KEYS as f64);
    flushall(ctl).await;
}

// ---------------------------------------------------------------------------
// Cache invalidation
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Invalidation {
    Tk,
    Keys,
    Scan,
}

impl Invalidation {
    const ALL: [Invalidation; 3] = [Invalidation::Tk, Invalidation::Keys, Invalidation::Scan];
    fn label(self) -> &'static str {
        match self {
            Invalidation::Tk => "TK.CACHE.INVALIDATEUSER",
            Invalidation::Keys => "KEYS pattern + UNLINK",
            Invalidation::Scan => "SCAN MATCH (COUNT 1000) + UNLINK",
        }
    }
}

#[derive(Default, Clone)]
struct InvalidationResult {
    /// Longest single command the server ran (slowlog), µs.
    longest_us: Vec<f64>,
    /// Server time of all commands the invalidation sent, µs.
    total_us: Vec<f64>,
    /// Wall time until the user's entries were gone (incl. background reclaim), ms.
    wall_ms: Vec<f64>,
    /// Worst PING round trip another client saw meanwhile, ms.
    worst_ping_ms: Vec<f64>,
    round_trips: f64,
}

async fn fill_user(conn: &mut Conn, user: usize, entries: usize) {
    let value = "x".repeat(100);
    for start in (0..entries).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 1000).min(entries) {
            pipe.cmd("TK.CACHE.SET")
                .arg(format!("tk:c:{{u{user}}}:http:{i:08}"))
                .arg(format!("tk:cg:{{u{user}}}"))
                .arg(format!("tk:ci:{{u{user}}}"))
                .arg("http")
                .arg("10m")
                .arg(&value)
                .ignore();
        }
        let _: Value = pipe.query_async(conn).await.expect("TK.CACHE.SET");
    }
}

/// The longest slowlog entry among the commands named in `only`, µs.
async fn slowlog_max(ctl: &mut Conn, only: &[&str]) -> f64 {
    let entries: Vec<Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(ctl)
        .await
        .expect("SLOWLOG GET");
    let mut max = 0i64;
    for entry in entries {
        let Value::Array(items) = entry else { continue };
        let (Some(Value::Int(us)), Some(Value::Array(args))) = (items.get(2), items.get(3)) else {
            continue;
        };
        let name = match args.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).to_ascii_lowercase(),
            _ => String::new(),
        };
        if only.contains(&name.as_str()) {
            max = max.max(*us);
        }
    }
    max as f64
}

async fn invalidate(how: Invalidation, user: usize, conn: &mut Conn) -> (usize, Duration) {
    let start = Instant::now();
    let gen = format!("tk:cg:{{u{user}}}");
    let index = format!("tk:ci:{{u{user}}}");
    let pattern = format!("tk:c:{{u{user}}}:*");
    let mut round_trips = 0;
    match how {
        Invalidation::Tk => {
            let _: i64 = redis::cmd("TK.CACHE.INVALIDATEUSER")
                .arg(&gen)
                .arg(&index)
                .query_async(conn)
                .await
                .expect("INVALIDATEUSER");
            round_trips += 1;
            // Wait for the background reclaim (not round trips of the app).
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let exists: i64 = redis::cmd("EXISTS")
                    .arg(&index)
                    .query_async(conn)
                    .await
                    .expect("EXISTS");
                if exists == 0 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Invalidation::Keys => {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(conn)
                .await
                .expect("KEYS");
            round_trips += 1;
            for chunk in keys.chunks(1000) {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async(conn)
                    .await
                    .expect("UNLINK");
                round_trips += 1;
            }
        }
        Invalidation::Scan => {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(conn)
                    .await
                    .expect("SCAN");
                round_trips += 1;
                if !keys.is_empty() {
                    let _: i64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(conn)
                        .await
                        .expect("UNLINK");
                    round_trips += 1;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    // Baselines leave the user's bookkeeping keys behind; drop them.
    let _: i64 = redis::cmd("DEL")
        .arg(&gen)
        .arg(&index)
        .query_async(conn)
        .await
        .expect("DEL");
    (round_trips, elapsed)
}

async fn cache_runs(
    server: &Server,
    ctl: &mut Conn,
    quick: bool,
) -> Vec<(usize, Invalidation, InvalidationResult)> {
    eprintln!("==> cache: DEBUG POPULATE {KEYSPACE}");
    flushall(ctl).await;
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(KEYSPACE)
        .arg("filler")
        .arg(64)
        .query_async(ctl)
        .await
        .expect("DEBUG POPULATE");
    for (name, value) in [
        ("slowlog-log-slower-than", "0"),
        ("slowlog-max-len", "200000"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(ctl)
            .await
            .expect("CONFIG SET");
    }
    let mut out = Vec::new();
    let mut conn = server.conn().await;
    let mut fill_conn = server.conn().await;
    let repeats = if quick { 1 } else { REPEATS };
    let mut user = 0;
    for &size in &USER_SIZES {
        for how in Invalidation::ALL {
            eprintln!("==> cache: {} for a user with {size} entries", how.label());
            let mut result = InvalidationResult::default();
            for _ in 0..repeats {
                user += 1;
                fill_user(&mut fill_conn, user, size).await;
                let _: () = redis::cmd("SLOWLOG")
                    .arg("RESET")
                    .query_async(ctl)
                    .await
                    .expect("SLOWLOG RESET");
                reset_stats(ctl).await;
                // The prober: another client pinging back to back.
                let stop = Arc::new(AtomicBool::new(false));
                let worst = Arc::new(AtomicU64::new(0));
                let mut probe_conn = server.conn().await;
                let prober = {
                    let (stop, worst) = (stop.clone(), worst.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            let _: String = redis::cmd("PING")
                                .query_async(&mut probe_conn)
                                .await
                                .expect("PING");
                            worst.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        }
                    })
                };
                let (round_trips, elapsed) = invalidate(how, user, &mut conn).await;
                stop.store(true, Ordering::Relaxed);
                prober.await.expect("prober");
                let stats = all_command_stats(ctl).await;
                let names: &[&str] = match how {
                    Invalidation::Tk => &["tk.cache.invalidateuser"],
                    Invalidation::Keys => &["keys", "unlink"],
                    Invalidation::Scan => &["scan", "unlink"],
                };
                let total: u64 = names
                    .iter()
                    .filter_map(|n| stats.get(*n))
                    .map(|s| s.usec)
                    .sum();
                // INVALIDATEUSER is one call, so its commandstats time is
                // its duration (the slowlog can be rotated out by the
                // reclaimer's UNLINK / ZREM calls of a large user).
                let longest = match how {
                    Invalidation::Tk => total as f64,
                    _ => slowlog_max(ctl, names).await,
                };
                result.longest_us.push(longest);
                result.total_us.push(total as f64);
                result.wall_ms.push(elapsed.as_secs_f64() * 1e3);
                result
                    .worst_ping_ms
                    .push(worst.load(Ordering::Relaxed) as f64 / 1e3);
                result.round_trips = round_trips as f64;
            }
            out.push((size, how, result));
        }
    }
    for (name, value) in [
        ("slowlog-log-slower-than", "10000"),
        ("slowlog-max-len", "128"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(ctl)
            .await
            .expect("CONFIG SET");
    }
    out
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

struct Options {
    quick: bool,
    write: bool,
    out: PathBuf,
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        write: true,
        out: workspace_dir().join("docs"),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--no-write" => opts.write = false,
            "--out" => opts.out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other:?}")),
        }
    }
    Ok(opts)
}

const USAGE: &str = "usage: bench [--quick] [--no-write] [--out DIR]

  --quick     fewer operations per run and one repeat of the cache runs (a smoke test)
  --no-write  print the report only; leave docs/ alone
  --out DIR   where BENCHMARKS.md and bench/ go (default: the workspace's docs/)";

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_options(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    eprintln!("==> starting redis-server with the module");
    let server = Server::start().await;
    let mut ctl = server.conn().await;
    let version = info_section(&mut ctl, "server")
        .await
        .get("redis_version")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let bucket_sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(BUCKET_SCRIPT)
        .query_async(&mut ctl)
        .await
        .expect("SCRIPT LOAD");
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(tk_redis::functions::LIBRARY_SOURCE)
        .query_async(&mut ctl)
        .await
        .expect("FUNCTION LOAD of tk.lua");
    let ctx = Arc::new(Ctx {
        bucket_sha,
        seq: AtomicU64::new(0),
    });
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        conns.push(server.conn().await);
    }

    // Memory per key first, on an empty server.
    let mut memory: Vec<(Case, MemoryResult)> = Vec::new();
    for case in Case::MEMORY {
        eprintln!("==> memory: {}", case.label());
        let mut result = MemoryResult::default();
        for rep in 0..REPEATS {
            memory_run(case, &mut ctl, &conns[..4], &ctx, &mut result, rep == 0).await;
        }
        memory.push((case, result));
    }

    // Sessions: the TK hash and the app's JSON string, KEYS of each.
    eprintln!("==> sessions: creating {KEYS} TK sessions and {KEYS} JSON sessions");
    let before = used_memory(&mut ctl).await;
    for start in (0..KEYS).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..start + 1000 {
            pipe.cmd("TK.SESSION.CREATE")
                .arg(Case::Touch.key(i))
                .arg(format!("tk:si:{{u{i:06}}}:u{i:06}"))
                .arg(format!("u{i:06}"))
                .arg("24h")
                .arg(SESSION_JSON)
                .ignore();
        }
        let _: Value = pipe.query_async(&mut ctl).await.expect("TK.SESSION.CREATE");
    }
    let tk_session_bytes = (used_memory(&mut ctl).await - before) / KEYS as f64;
    let before = used_memory(&mut ctl).await;
    for start in (0..KEYS).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..start + 1000 {
            pipe.cmd("SET")
                .arg(Case::JsonSession.key(i))
                .arg(SESSION_JSON)
                .arg("EX")
                .arg(86_400)
                .ignore();
        }
        let _: Value = pipe.query_async(&mut ctl).await.expect("SET");
    }
    let json_session_bytes = (used_memory(&mut ctl).await - before) / KEYS as f64;
    let tk_session_usage = sample_usage(&mut ctl, Case::Touch).await;
    let json_session_usage = sample_usage(&mut ctl, Case::JsonSession).await;

    // Load runs: every case, pipeline 1 and 16, REPEATS times, interleaved
    // so that a noisy moment hits every case alike.
    let ops = |pipeline: usize| match (opts.quick, pipeline) {
        (true, 1) => 5_000,
        (true, _) => 16_000,
        (false, 1) => 20_000,
        (false, _) => 64_000,
    };
    // Live keys: one request per key before measuring.
    for case in Case::LOAD {
        let idx: Vec<usize> = (0..KEYS).collect();
        let mut conn = conns[0].clone();
        let limiter = tk_redis::RateLimiter::new(conn.clone());
        for chunk in idx.chunks(500) {
            run_batch(case, &mut conn, chunk, &ctx, Some(&limiter))
                .await
                .unwrap_or_else(|e| panic!("{}: warm-up: {e}", case.label()));
        }
    }
    let mut results: Vec<CaseResult> = Case::LOAD.iter().map(|_| CaseResult::default()).collect();
    for rep in 0..REPEATS {
        for (n, case) in Case::LOAD.into_iter().enumerate() {
            eprintln!("==> load {}/{REPEATS}: {}", rep + 1, case.label());
            for pipeline in PIPELINES {
                let run = load(
                    case,
                    &mut ctl,
                    &conns,
                    ops(pipeline),
                    pipeline,
                    &ctx,
                    (rep * 100 + n) as u64,
                )
                .await;
                let r = &mut results[n];
                if pipeline == 1 {
                    r.us_per_op.push(run.us_per_op);
                    r.cpu_us_per_op.push(run.cpu_us_per_op);
                    r.calls_per_op = run.calls_per_op;
                    r.round_trips = run.round_trips_per_op;
                    r.ops_p1.push(run.ops_per_sec);
                } else {
                    r.ops_p16.push(run.ops_per_sec);
                }
            }
        }
    }

    // Client overhead: one connection, sequential calls, alternating.
    eprintln!("==> client overhead: {CLIENT_CALLS} sequential calls each, {REPEATS} rounds");
    let mut typed_us = Vec::new();
    let mut raw_us = Vec::new();
    {
        let mut conn = server.conn().await;
        let limiter = tk_redis::RateLimiter::new(conn.clone());
        let quota = tk_redis::Quota::per_minute(100);
        let calls = if opts.quick { 2_000 } else { CLIENT_CALLS };
        // Blocks of 250 calls, alternating, so drift on the noisy machine
        // hits both alike.
        const BLOCK: usize = 250;
        for _ in 0..REPEATS {
            let (mut typed, mut raw) = (Duration::ZERO, Duration::ZERO);
            for block in 0..calls / BLOCK {
                let t = Instant::now();
                for i in block * BLOCK..(block + 1) * BLOCK {
                    let key = Case::Typed.key(i % KEYS);
                    limiter.check(&key, &quota, 1).await.expect("typed check");
                }
                typed += t.elapsed();
                let t = Instant::now();
                for i in block * BLOCK..(block + 1) * BLOCK {
                    let key = Case::Raw.key(i % KEYS);
                    let _: Vec<i64> = tk_ratelimit(&key, None)
                        .query_async(&mut conn)
                        .await
                        .expect("raw");
                }
                raw += t.elapsed();
            }
            let n = (calls / BLOCK * BLOCK) as f64;
            typed_us.push(typed.as_secs_f64() * 1e6 / n);
            raw_us.push(raw.as_secs_f64() * 1e6 / n);
        }
    }

    let cache = cache_runs(&server, &mut ctl, opts.quick).await;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("==> done in {elapsed:.0} s");

    let data = Data {
        version,
        results,
        memory,
        tk_session_bytes,
        json_session_bytes,
        tk_session_usage,
        json_session_usage,
        typed_us,
        raw_us,
        cache,
        elapsed,
        quick: opts.quick,
    };
    let report = report(&data);
    println!("{report}");
    if opts.write {
        let dir = opts.out.join("bench");
        if let Err(e) = write_outputs(&opts.out, &dir, &report, &data) {
            eprintln!("error: writing the report: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("==> wrote {}", opts.out.join("BENCHMARKS.md").display());
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

struct Data {
    version: String,
    results: Vec<CaseResult>,
    memory: Vec<(Case, MemoryResult)>,
    tk_session_bytes: f64,
    json_session_bytes: f64,
    tk_session_usage: f64,
    json_session_usage: f64,
    typed_us: Vec<f64>,
    raw_us: Vec<f64>,
    cache: Vec<(usize, Invalidation, InvalidationResult)>,
    elapsed: f64,
    quick: bool,
}

impl Data {
    fn us(&self, case: Case) -> f64 {
        median(&self.results[case.number()].us_per_op)
    }
    fn mem(&self, case: Case) -> Option<&MemoryResult> {
        self.memory.iter().find(|(c, _)| *c == case).map(|(_, m)| m)
    }
    /// Bytes per logged request of the sliding log and its fixed header,
    /// from MEMORY USAGE after 1 and after 50 requests.
    fn sliding_slope(&self) -> (f64, f64) {
        let m = self.mem(Case::Sliding).expect("measured");
        let per = (m.usage_after_50 - m.usage_after_1) / (MEMORY_REQUESTS - 1) as f64;
        (per, m.usage_after_1 - per)
    }
}

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

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

/// The targets: (what, measured, met).
fn targets(d: &Data) -> Vec<(String, String, bool)> {
    let gcra = d.us(Case::Gcra);
    let incr = d.us(Case::Incr);
    let lua = d.us(Case::LuaBucket);
    let zset = d.us(Case::ZsetWindow);
    let mut out = vec![
        (
            "TK.RATELIMIT GCRA ≤ 6× INCR µs/call".into(),
            format!("{:.2}× ({gcra:.2} vs {incr:.2} µs)", gcra / incr),
            gcra <= 6.0 * incr,
        ),
        (
            "GCRA ≥ 7× cheaper than the Lua bucket".into(),
            format!("{:.2}× ({lua:.2} vs {gcra:.2} µs)", lua / gcra),
            lua >= 7.0 * gcra,
        ),
        (
            "GCRA ≥ 5× cheaper than the 4-command window".into(),
            format!("{:.2}× ({zset:.2} vs {gcra:.2} µs)", zset / gcra),
            zset >= 5.0 * gcra,
        ),
    ];
    let library = d.us(Case::LibraryGcra);
    out.push((
        "tk.lua GCRA ≤ 1.2× the Lua bucket (no module)".into(),
        format!("{:.2}× ({library:.2} vs {lua:.2} µs)", library / lua),
        library <= 1.2 * lua,
    ));
    out.push((
        "module GCRA ≥ 5× cheaper than tk.lua GCRA".into(),
        format!("{:.2}× ({library:.2} vs {gcra:.2} µs)", library / gcra),
        library >= 5.0 * gcra,
    ));
    if let (Some(g), Some(i)) = (d.mem(Case::Gcra), d.mem(Case::Incr)) {
        let (g, i) = (median(&g.delta_per_key), median(&i.delta_per_key));
        out.push((
            "GCRA state ≤ 1.25× an INCR counter with expiry (used_memory Δ / key)".into(),
            format!("{:.2}× ({g:.0} vs {i:.0} B)", g / i),
            g <= 1.25 * i,
        ));
    }
    let (per, header) = d.sliding_slope();
    out.push((
        "sliding log ≤ 8 B per logged request + fixed header".into(),
        format!("{per:.1} B/request + {header:.0} B (MEMORY USAGE, 1 vs 50 requests)"),
        per <= 8.0,
    ));
    let touch = &d.results[Case::Touch.number()];
    out.push((
        "TK.SESSION.TOUCH: one round trip".into(),
        format!("{:.2}", touch.round_trips),
        (touch.round_trips - 1.0).abs() < 1e-9,
    ));
    let (t, h) = (d.us(Case::Touch), d.us(Case::Hgetall));
    out.push((
        "TOUCH ≤ 2× HGETALL of the same session".into(),
        format!("{:.2}× ({t:.2} vs {h:.2} µs)", t / h),
        t <= 2.0 * h,
    ));
    let tk_max = d
        .cache
        .iter()
        .filter(|(_, how, _)| *how == Invalidation::Tk)
        .map(|(_, _, r)| r.longest_us.iter().copied().fold(0.0, f64::max))
        .fold(0.0, f64::max);
    out.push((
        "INVALIDATEUSER: longest server command < 0.5 ms at any user size".into(),
        format!("{tk_max:.0} µs (worst of all runs)"),
        tk_max < 500.0,
    ));
    let keys_1m = d
        .cache
        .iter()
        .filter(|(_, how, _)| *how == Invalidation::Keys)
        .map(|(_, _, r)| median(&r.longest_us))
        .fold(f64::INFINITY, f64::min);
    let ratio = keys_1m / tk_max.max(1.0);
    out.push((
        "≥ 400× less blocking than KEYS at 1M keys".into(),
        format!("{ratio:.0}× ({keys_1m:.0} µs KEYS vs {tk_max:.0} µs)"),
        ratio >= 400.0,
    ));
    let (typed, raw) = (median(&d.typed_us), median(&d.raw_us));
    let overhead = (typed / raw - 1.0) * 100.0;
    out.push((
        "typed client ≤ 5% over a raw redis::cmd".into(),
        format!("{overhead:+.1}% ({typed:.1} vs {raw:.1} µs per sequential call)"),
        overhead <= 5.0,
    ));
    out
}

fn report(d: &Data) -> String {
    let mut s = String::new();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let w = &mut s;
    let _ = writeln!(w, "## Results\n");
    let _ = writeln!(
        w,
        "redis-server {}, {cpus} CPUs, {KEYS} keys, {CONNS} connections, {REPEATS} runs per \
         number (median ±half the min–max range), run took {:.0} s{}.\n",
        d.version,
        d.elapsed,
        if d.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(w, "### Targets\n");
    let _ = writeln!(w, "| target | measured | |");
    let _ = writeln!(w, "|---|---|---|");
    for (what, measured, ok) in targets(d) {
        let _ = writeln!(w, "| {what} | {measured} | {} |", met(ok));
    }
    let _ = writeln!(w, "\n### Cases 1, 2, 4: per operation\n");
    let _ = writeln!(
        w,
        "| group | case | server µs/op | server main-thread CPU µs/op, incl. I/O | commands/op | round trips/op | ops/s, pipeline 1 | ops/s, pipeline 16 |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|");
    for case in Case::LOAD {
        let r = &d.results[case.number()];
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} ±{:.0}% | {} ±{:.0}% |",
            case.group(),
            case.label(),
            fmt_ms(&r.us_per_op, 2),
            fmt_ms(&r.cpu_us_per_op, 2),
            r.calls_per_op,
            r.round_trips,
            thousands(median(&r.ops_p1)),
            spread_pct(&r.ops_p1),
            thousands(median(&r.ops_p16)),
            spread_pct(&r.ops_p16),
        );
    }
    let _ = writeln!(w, "\n### Memory per key\n");
    let _ = writeln!(
        w,
        "Rate limits: {KEYS} keys, {MEMORY_REQUESTS} requests each (limit 100 per 60 s, all \
         admitted). Sessions: {KEYS} sessions with the same ~230-byte JSON.\n"
    );
    let _ = writeln!(
        w,
        "| case | used_memory Δ / key | MEMORY USAGE after 1 request | MEMORY USAGE after {MEMORY_REQUESTS} |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|");
    for (case, m) in &d.memory {
        let _ = writeln!(
            w,
            "| {} | {} | {:.0} | {:.0} |",
            case.label(),
            fmt_ms(&m.delta_per_key, 0),
            m.usage_after_1,
            m.usage_after_50
        );
    }
    let _ = writeln!(
        w,
        "| TK session (hash + per-user index) | {:.0} | {:.0} (hash only) | |",
        d.tk_session_bytes, d.tk_session_usage
    );
    let _ = writeln!(
        w,
        "| JSON session (string) | {:.0} | {:.0} | |",
        d.json_session_bytes, d.json_session_usage
    );
    let (per, header) = d.sliding_slope();
    let _ = writeln!(
        w,
        "\nSliding log: {per:.1} bytes per logged request + {header:.0} bytes fixed. \
         Sorted set: {:.1} bytes per request.",
        d.mem(Case::ZsetWindow)
            .map(|m| (m.usage_after_50 - m.usage_after_1) / (MEMORY_REQUESTS - 1) as f64)
            .unwrap_or(f64::NAN)
    );
    let _ = writeln!(w, "\n### Case 3: cache invalidation on {KEYSPACE} keys\n");
    let _ = writeln!(
        w,
        "| entries | approach | longest server command µs | server µs, all commands | round trips | wall ms (incl. reclaim) | worst PING ms, other client |"
    );
    let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|");
    for (size, how, r) in &d.cache {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {:.0} | {} | {} |",
            thousands(*size as f64),
            how.label(),
            fmt_ms(&r.longest_us, 0),
            fmt_ms(&r.total_us, 0),
            r.round_trips,
            fmt_ms(&r.wall_ms, 1),
            fmt_ms(&r.worst_ping_ms, 2),
        );
    }
    let reclaim_ping = d
        .cache
        .iter()
        .filter(|(_, how, _)| *how == Invalidation::Tk)
        .map(|(_, _, r)| median(&r.worst_ping_ms))
        .fold(0.0, f64::max);
    let _ = writeln!(
        w,
        "\nTK.CACHE.INVALIDATEUSER's longest command is the invalidation itself; the \
         background reclaim that deletes the entries afterwards runs in module timer \
         ticks, not as a command, and the worst PING seen meanwhile (median of the runs, \
         worst user size) was {reclaim_ping:.2} ms."
    );
    let _ = writeln!(
        w,
        "\n### Case 4: client overhead (one connection, sequential)\n"
    );
    let _ = writeln!(
        w,
        "| call | µs per call (client + round trip + server) |\n|---|---:|\n| typed `RateLimiter::check` | {} |\n| raw `redis::cmd(\"TK.RATELIMIT\")` | {} |",
        fmt_ms(&d.typed_us, 1),
        fmt_ms(&d.raw_us, 1)
    );
    let _ = writeln!(
        w,
        "\nChart: [bench/server_us.png](bench/server_us.png). Raw numbers: \
         [bench/results.json](bench/results.json), [bench/results.csv](bench/results.csv)."
    );
    s
}

fn to_json(d: &Data) -> serde_json::Value {
    let cases: Vec<_> = Case::LOAD
        .iter()
        .map(|case| {
            let r = &d.results[case.number()];
            json!({
                "id": case.id(), "label": case.label(), "group": case.group(),
                "server_us_per_op": r.us_per_op,
                "server_main_thread_cpu_us_per_op": r.cpu_us_per_op, "commands_per_op": r.calls_per_op,
                "round_trips_per_op": r.round_trips,
                "ops_per_sec_pipeline_1": r.ops_p1, "ops_per_sec_pipeline_16": r.ops_p16,
            })
        })
        .collect();
    let memory: Vec<_> = d
        .memory
        .iter()
        .map(|(case, m)| {
            json!({
                "id": case.id(), "used_memory_delta_per_key": m.delta_per_key,
                "memory_usage_after_1": m.usage_after_1,
                "memory_usage_after_50": m.usage_after_50,
            })
        })
        .collect();
    let cache: Vec<_> = d
        .cache
        .iter()
        .map(|(size, how, r)| {
            json!({
                "entries": size, "approach": how.label(), "longest_command_us": r.longest_us,
                "server_us_total": r.total_us, "round_trips": r.round_trips,
                "wall_ms": r.wall_ms, "worst_ping_ms": r.worst_ping_ms,
            })
        })
        .collect();
    let targets: Vec<_> = targets(d)
        .into_iter()
        .map(|(what, measured, ok)| json!({"target": what, "measured": measured, "met": ok}))
        .collect();
    json!({
        "redis_version": d.version, "keys": KEYS, "connections": CONNS, "repeats": REPEATS,
        "elapsed_s": d.elapsed, "quick": d.quick,
        "cases": cases, "memory": memory,
        "sessions": {
            "tk_used_memory_delta_per_session": d.tk_session_bytes,
            "json_used_memory_delta_per_session": d.json_session_bytes,
            "tk_memory_usage": d.tk_session_usage, "json_memory_usage": d.json_session_usage,
        },
        "client_overhead": {"typed_us": d.typed_us, "raw_us": d.raw_us},
        "cache_invalidation": cache, "targets": targets,
    })
}

fn to_csv(d: &Data) -> String {
    let mut s = String::from("section,case,metric,run,value\n");
    let mut row = |section: &str, case: &str, metric: &str, values: &[f64]| {
        for (i, v) in values.iter().enumerate() {
            let _ = writeln!(s, "{section},{case},{metric},{},{v}", i + 1);
        }
    };
    for case in Case::LOAD {
        let r = &d.results[case.number()];
        row("load", case.id(), "server_us_per_op", &r.us_per_op);
        row("load", case.id(), "server_cpu_us_per_op", &r.cpu_us_per_op);
        row("load", case.id(), "ops_per_sec_p1", &r.ops_p1);
        row("load", case.id(), "ops_per_sec_p16", &r.ops_p16);
        row("load", case.id(), "round_trips_per_op", &[r.round_trips]);
    }
    for (case, m) in &d.memory {
        row(
            "memory",
            case.id(),
            "used_memory_delta_per_key",
            &m.delta_per_key,
        );
        row(
            "memory",
            case.id(),
            "memory_usage_after_1",
            &[m.usage_after_1],
        );
        row(
            "memory",
            case.id(),
            "memory_usage_after_50",
            &[m.usage_after_50],
        );
    }
    row("client", "client_typed", "us_per_call", &d.typed_us);
    row("client", "client_raw", "us_per_call", &d.raw_us);
    for (size, how, r) in &d.cache {
        let id = format!("{:?}_{size}", how).to_ascii_lowercase();
        row("cache", &id, "longest_command_us", &r.longest_us);
        row("cache", &id, "server_us_total", &r.total_us);
        row("cache", &id, "wall_ms", &r.wall_ms);
        row("cache", &id, "worst_ping_ms", &r.worst_ping_ms);
    }
    s
}

fn write_outputs(
    docs: &std::path::Path,
    dir: &std::path::Path,
    report: &str,
    d: &Data,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(&to_json(d)).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("results.json"), json + "\n")?;
    std::fs::write(dir.join("results.csv"), to_csv(d))?;
    let bars: Vec<(String, f64)> = Case::LOAD
        .iter()
        .map(|c| (c.label().to_string(), d.us(*c)))
        .collect();
    bench::chart::bars(
        &dir.join("server_us.png"),
        "server µs per operation (median, INFO commandstats)",
        &bars,
    )
    .map_err(std::io::Error::other)?;
    let path = docs.join("BENCHMARKS.md");
    // The HTTP layers' section is written by another bench (http_bench.rs):
    // keep it.
    let http_section = std::fs::read_to_string(&path)
        .ok()
        .and_then(|old| old.find(HTTP_SECTION).map(|at| old[at..].to_owned()));
    let mut doc = format!("{}\n{report}", include_str!("bench/header.md"));
    if let Some(section) = http_section {
        doc = format!("{}\n\n{section}", doc.trim_end());
    }
    std::fs::write(path, doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert_eq!(spread_pct(&[90.0, 100.0, 110.0]), 10.0);
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn keys_have_equal_length() {
        let lens: Vec<usize> = Case::MEMORY.iter().map(|c| c.key(9_999).len()).collect();
        assert!(lens.windows(2).all(|w| w[0] == w[1]), "{lens:?}");
    }

    #[test]
    fn options() {
        let o = parse_options(["--quick".to_string(), "--no-write".to_string()]).expect("ok");
        assert!(o.quick && !o.write);
        assert!(parse_options(["--bogus".to_string()]).is_err());
    }
}
