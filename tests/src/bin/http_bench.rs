//! Benchmark of the HTTP layers (`tk_redis::http`): requests/s and p50/p99
//! latency of a search API like the example app's (`GET /api/search`,
//! JSON over a small catalogue) served by axum on 127.0.0.1, with
//!
//! - no layer (the floor),
//! - each tk-redis layer alone (RateLimitLayer with 2 policies,
//!   SessionLayer with a logged-in cookie, CacheLayer answering hits),
//! - all three together,
//! - tower-governor's in-memory limiter (no Redis at all),
//!
//! against one `redis-server` with the module, started by the test harness.
//! For scale it also measures one Redis round trip (`PING`, sequential).
//! The load generator runs in the same process (reqwest, keep-alive,
//! [`CONCURRENCY`] tasks), so absolute numbers include its cost and depend
//! on the machine; compare the rows with each other. Nothing asserts.
//!
//! Usage: `TK_MODULE_PATH=target/release/libtk_redis.so cargo run --release
//! -p tk-redis-tests --bin http_bench [-- --secs N] [--write]`. With `--write`
//! the table replaces the "HTTP layers" section of docs/BENCHMARKS.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use tk_redis::http::{
    AuthenticatedUser, CacheLayer, ClientIp, Policy, RateLimitLayer, SessionCookie, SessionLayer,
    UserKey,
};
use tk_redis::{Cache, Quota, RateLimiter, SessionStore};
use tk_redis_tests::http::{client, HttpServer};
use tk_redis_tests::{all_command_stats, workspace_dir, Server};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

/// Concurrent request loops.
const CONCURRENCY: usize = 16;
/// Distinct queries the loops cycle through (the cache holds them all).
const QUERIES: [&str; 4] = ["rate", "session", "cache", "lock"];
/// The section of docs/BENCHMARKS.md this bench owns.
const SECTION: &str = "## HTTP layers";

const CATALOGUE: &[&str] = &[
    "rate limiting with GCRA",
    "sliding window counters",
    "login sessions in Redis",
    "per-user response caching",
    "fencing tokens for locks",
    "leaderboards with sorted sets",
];

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(Query(query): Query<SearchQuery>) -> Response {
    let results: Vec<&str> = CATALOGUE
        .iter()
        .copied()
        .filter(|title| title.contains(query.q.as_str()))
        .collect();
    Json(serde_json::json!({ "query": query.q, "results": results })).into_response()
}

fn base() -> Router {
    Router::new().route("/api/search", get(search))
}

/// The same search with one `PING` first: what one Redis round trip costs
/// under this load, the yardstick for the layers.
fn with_one_round_trip(conn: &ConnectionManager) -> Router {
    let conn = conn.clone();
    Router::new().route(
        "/api/search",
        get(move |query: Query<SearchQuery>| {
            let mut conn = conn.clone();
            async move {
                let _: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .expect("PING");
                search(query).await
            }
        }),
    )
}

/// The cache layer alone needs a user: what an app's own authentication
/// would provide.
async fn as_bench_user(mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(AuthenticatedUser("bench".into()));
    next.run(request).await
}

/// Policies that never refuse during the run: the cost measured is the
/// check's, not a 429's.
fn policies() -> [Policy; 2] {
    [
        Policy::new("burst", Quota::per_second(10_000_000)),
        Policy::new("hour", Quota::per_hour(1_000_000_000)),
    ]
}

fn cache_layer(conn: &ConnectionManager) -> CacheLayer<ConnectionManager> {
    CacheLayer::new(Cache::new(conn.clone()))
        .route("/api/search", "search", Duration::from_secs(300))
        .expect("valid route")
}

fn session_layer(conn: &ConnectionManager) -> SessionLayer<(), ConnectionManager> {
    let cookie = SessionCookie {
        secure: false,
        ..SessionCookie::default()
    };
    SessionLayer::new(SessionStore::<(), _>::new(conn.clone())).cookie(cookie)
}

/// One run's numbers.
struct Load {
    requests: usize,
    errors: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

struct Row {
    name: &'static str,
    /// One request at a time: the latency a request sees on an idle app.
    sequential: Load,
    /// [`CONCURRENCY`] loops: throughput, and latency under saturation.
    loaded: Load,
    /// Redis time (`INFO commandstats` usec) per request of the loaded run.
    redis_us: f64,
}

/// Drives the app at `http` with `loops` concurrent request loops for
/// `duration`, each request carrying `cookie` if any.
async fn run(
    http: &Arc<HttpServer>,
    cookie: &Option<String>,
    loops: usize,
    duration: Duration,
) -> Load {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for n in 0..loops {
        let http = Arc::clone(http);
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut i = n;
            while Instant::now() < deadline {
                let url = http.url(&format!("/api/search?q={}", QUERIES[i % QUERIES.len()]));
                i += 1;
                let mut request = client.get(url);
                if let Some(cookie) = &cookie {
                    request = request.header("cookie", cookie);
                }
                let sent = Instant::now();
                let ok = match request.send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                errors += usize::from(!ok);
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (some, failed) = task.await.expect("load loop");
        latencies.extend(some);
        errors += failed;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Load {
        requests: latencies.len(),
        errors,
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// Serves `router` and measures it: a warm-up, a sequential run and a
/// loaded one, `secs` seconds each.
async fn measure(
    redis: &mut ConnectionManager,
    name: &'static str,
    router: Router,
    cookie: Option<String>,
    secs: u64,
) -> Row {
    let http = Arc::new(HttpServer::start(router).await);
    let duration = Duration::from_secs(secs);
    run(&http, &cookie, CONCURRENCY, Duration::from_millis(500)).await;
    let sequential = run(&http, &cookie, 1, duration).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(redis)
        .await
        .expect("CONFIG RESETSTAT");
    let loaded = run(&http, &cookie, CONCURRENCY, duration).await;
    let usec: u64 = all_command_stats(redis)
        .await
        .iter()
        .filter(|(command, _)| command.as_str() != "config|resetstat")
        .map(|(_, stats)| stats.usec)
        .sum();
    eprintln!(
        "==> {name}: {} sequential, {} loaded requests",
        sequential.requests, loaded.requests
    );
    Row {
        name,
        redis_us: usec as f64 / loaded.requests.max(1) as f64,
        sequential,
        loaded,
    }
}

fn micros(duration: Duration) -> String {
    format!("{:.0}", duration.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs = args
        .iter()
        .position(|arg| arg == "--secs")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |n| n.parse().expect("--secs N"));
    let write = args.iter().any(|arg| arg == "--write");

    let server = Server::start().await;
    let conn = server.manager().await;
    let store = SessionStore::<(), _>::new(conn.clone());
    let (token, _) = store.create("bench", &()).await.expect("a session");
    let cookie = format!("tk_session={}", token.as_str());
    let limiter = RateLimiter::new(conn.clone());
    let per_ip = RateLimitLayer::new(limiter.clone(), "bench", ClientIp::new(), policies())
        .expect("valid layer");
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .expect("governor config");
    let all = base()
        .layer(cache_layer(&conn))
        .layer(
            RateLimitLayer::new(limiter.clone(), "bench-all", UserKey, policies())
                .expect("valid layer"),
        )
        .layer(session_layer(&conn));

    let mut redis = server.manager().await;
    let mut rows = Vec::new();
    rows.push(measure(&mut redis, "no layer", base(), None, secs).await);
    rows.push(
        measure(
            &mut redis,
            "no layer, one PING in the handler",
            with_one_round_trip(&conn),
            None,
            secs,
        )
        .await,
    );
    rows.push(
        measure(
            &mut redis,
            "tower-governor (in memory, per IP)",
            base().layer(GovernorLayer::new(governor)),
            None,
            secs,
        )
        .await,
    );
    rows.push(
        measure(
            &mut redis,
            "RateLimitLayer (per IP, 2 policies)",
            base().layer(per_ip),
            None,
            secs,
        )
        .await,
    );
    rows.push(
        measure(
            &mut redis,
            "SessionLayer (logged in, MINGAP 60 s)",
            base().layer(session_layer(&conn)),
            Some(cookie.clone()),
            secs,
        )
        .await,
    );
    rows.push(
        measure(
            &mut redis,
            "CacheLayer (hits)",
            base()
                .layer(cache_layer(&conn))
                .layer(middleware::from_fn(as_bench_user)),
            None,
            secs,
        )
        .await,
    );
    rows.push(
        measure(
            &mut redis,
            "all three (session, per-user limit, cache)",
            all,
            Some(cookie),
            secs,
        )
        .await,
    );

    let mut table = format!(
        "{SECTION}\n\n\
         Written by `cargo run --release -p tk-redis-tests --bin http_bench -- --write`\n\
         (tests/src/bin/http_bench.rs; it replaces only this section, and\n\
         `scripts/bench` keeps it). `GET /api/search`, a JSON search like the\n\
         example app's, served by axum on 127.0.0.1 against one redis-server\n\
         with the module; the load generator (reqwest, keep-alive) runs in the\n\
         same process. Each row: {secs} s with one request at a time\n\
         (*sequential*: the latency of a request on an idle app), then {secs} s\n\
         with {CONCURRENCY} concurrent loops (*loaded*: throughput; the machine's\n\
         cores are saturated, so latency there is mostly queueing).\n\
         *Redis µs/req* is the server time of all commands (`INFO commandstats`)\n\
         per request of the loaded run. The row \"one PING in the handler\" is\n\
         the yardstick: one Redis round trip. Compare rows, not machines.\n\n\
         | router | sequential p50 µs | sequential p99 µs | loaded req/s | loaded p50 µs | loaded p99 µs | Redis µs/req | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in &rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.0} | {} | {} | {:.1} | {} |",
            row.name,
            micros(row.sequential.p50),
            micros(row.sequential.p99),
            row.loaded.rps,
            micros(row.loaded.p50),
            micros(row.loaded.p99),
            row.redis_us,
            row.sequential.errors + row.loaded.errors
        );
    }
    table.push_str(
        "\nEach tk-redis layer costs one Redis round trip (`TK.RATELIMIT.ALL`,\n\
         `TK.SESSION.TOUCH` with `MINGAP`, `TK.CACHE.GET`), plus the module\n\
         command's own server time and the client's hashing and JSON: about one\n\
         and a half \"PING in the handler\" each, sequentially. tower-governor\n\
         keeps its counts in the process's memory: no round trip, but its limits\n\
         are per process (not shared by several instances of the app) and\n\
         forgotten at each restart. Redis measures whole microseconds per call,\n\
         so a PING shows as 0.\n",
    );
    println!("{table}");
    if write {
        let path = workspace_dir().join("docs/BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).expect("read docs/BENCHMARKS.md");
        let kept = doc.find(SECTION).map_or(doc.as_str(), |at| &doc[..at]);
        std::fs::write(&path, format!("{}\n{table}", kept.trim_end()))
            .expect("write docs/BENCHMARKS.md");
        eprintln!("==> wrote {}", path.display());
    }
}
