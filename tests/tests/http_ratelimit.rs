//! RateLimitLayer over real HTTP against a real redis-server with the
//! module: headers on admission and refusal, 429 exactly at the limit,
//! trusted and untrusted proxies, IPv6 grouping, and Redis going away
//! (fail open vs. fail closed).
//!
//! Quotas are per hour, so no refill can happen during a test: every
//! count below is exact whatever the machine's load.

use axum::routing::get;
use axum::Router;
use tk_redis::http::{ClientIp, Policy, RateLimitLayer};
use tk_redis::{FailurePolicy, Quota, RateLimiter};
use tk_redis_tests::harness::Server;
use tk_redis_tests::http::{client, header, short_timeout_connection, HttpServer, SHORT_TIMEOUT};

/// A router answering `GET /` with "ok" behind `layer`.
fn app<K: tk_redis::http::KeyExtractor, C>(layer: RateLimitLayer<K, C>) -> Router
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

/// Sends `GET /` with `X-Forwarded-For: forwarded_for` (if any).
async fn get_root(http: &HttpServer, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = client().get(http.url("/"));
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn headers_on_admission_and_429_exactly_at_the_limit() {
    let server = Server::start().await;
    let limiter = RateLimiter::new(server.manager().await);
    let layer = RateLimitLayer::new(
        limiter,
        "api",
        ClientIp::new(),
        [
            Policy::new("wide", Quota::per_hour(10)),
            Policy::new("hourly", Quota::per_hour(3)),
        ],
    )
    .unwrap()
    .legacy_headers(true);
    let http = HttpServer::start(app(layer)).await;

    for remaining in [2, 1, 0] {
        let response = get_root(&http, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "ratelimit-policy").as_deref(),
            Some(r#""wide";q=10;w=3600, "hourly";q=3;w=3600"#)
        );
        // The quota with the fewest left is the one reported.
        let current = header(&response, "ratelimit").unwrap();
        assert!(
            current.starts_with(&format!("\"hourly\";r={remaining};t=")),
            "{current}"
        );
        let reset: u64 = current.rsplit("t=").next().unwrap().parse().unwrap();
        assert!((1..=3600).contains(&reset), "{current}");
        assert_eq!(header(&response, "x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some(remaining.to_string())
        );
        assert_eq!(header(&response, "x-ratelimit-fallback"), None);
        assert_eq!(response.text().await.unwrap(), "ok");
    }

    // The fourth request is the first one over the limit.
    let response = get_root(&http, None).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    // 3 per hour: the next one is due in at most 20 minutes, and a
    // whole-second value rounded up is at least 1.
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
    assert!(header(&response, "ratelimit")
        .unwrap()
        .starts_with("\"hourly\";r=0;t="));
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["policy"], "hourly");
    assert_eq!(body["retry_after"], retry_after);

    // All-or-nothing: the refused request consumed nothing of "wide", which
    // a check policy by policy would have. A peek predicts the next call:
    // 10 - 3 admitted - 1 = 6 left after it (5 had the refusal counted).
    let mut conn = server.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tk:rl:*:api:wide")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let peek = RateLimiter::new(conn)
        .peek(&keys[0], &Quota::per_hour(10))
        .await
        .unwrap();
    assert_eq!(peek.remaining, 6, "{peek:?}");
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let server = Server::start().await;
    let quota = [Policy::new("hourly", Quota::per_hour(2))];
    let limiter = RateLimiter::new(server.manager().await);

    // Nobody trusted: every request is the peer's, whatever it claims.
    let untrusted =
        RateLimitLayer::new(limiter.clone(), "open", ClientIp::new(), quota.clone()).unwrap();
    let http = HttpServer::start(app(untrusted)).await;
    for (n, spoofed) in ["1.1.1.1", "2.2.2.2"].into_iter().enumerate() {
        let response = get_root(&http, Some(spoofed)).await;
        assert_eq!(response.status(), 200, "request {n}");
    }
    let response = get_root(&http, Some("3.3.3.3")).await;
    assert_eq!(
        response.status(),
        429,
        "a new X-Forwarded-For is no new allowance"
    );

    // The test's peer (127.0.0.1) is a trusted proxy: the header is the
    // client, read from the right.
    let trusted = ClientIp::new().trust_proxies(["127.0.0.1"]).unwrap();
    let layer = RateLimitLayer::new(limiter, "proxied", trusted, quota).unwrap();
    let http = HttpServer::start(app(layer)).await;
    for _ in 0..2 {
        assert_eq!(get_root(&http, Some("1.1.1.1")).await.status(), 200);
    }
    assert_eq!(get_root(&http, Some("1.1.1.1")).await.status(), 429);
    // Whatever the client prepends, the trusted proxy's entry decides.
    let prepended = get_root(&http, Some("9.9.9.9, 1.1.1.1")).await;
    assert_eq!(prepended.status(), 429);
    assert_eq!(get_root(&http, Some("2.2.2.2")).await.status(), 200);
}

#[tokio::test]
async fn ipv6_clients_are_grouped_by_their_64_bit_prefix() {
    let server = Server::start().await;
    let trusted = ClientIp::new().trust_proxies(["127.0.0.1"]).unwrap();
    let layer = RateLimitLayer::new(
        RateLimiter::new(server.manager().await),
        "v6",
        trusted,
        [Policy::new("hourly", Quota::per_hour(1))],
    )
    .unwrap();
    let http = HttpServer::start(app(layer)).await;

    assert_eq!(get_root(&http, Some("2001:db8:1:2::1")).await.status(), 200);
    // Another address of the same /64: the same client.
    let same = get_root(&http, Some("2001:db8:1:2:ffff:eeee:dddd:cccc")).await;
    assert_eq!(same.status(), 429);
    // The next /64: someone else.
    assert_eq!(get_root(&http, Some("2001:db8:1:3::1")).await.status(), 200);
    // Bracketed with a port, as in Forwarded: still the first /64.
    let response = client()
        .get(http.url("/"))
        .header("forwarded", r#"for="[2001:db8:1:2::7]:4711""#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn redis_stopped_fails_open_or_closed_as_configured() {
    let server = Server::start().await;
    let timeout = SHORT_TIMEOUT;
    let conn = short_timeout_connection(&server).await;
    let quota = [Policy::new("hourly", Quota::per_hour(100))];
    let api = RateLimitLayer::new(
        RateLimiter::new(conn.clone()).with_timeout(timeout),
        "api",
        ClientIp::new(),
        quota.clone(),
    )
    .unwrap();
    let login = RateLimitLayer::new(
        RateLimiter::new(conn)
            .with_timeout(timeout)
            .with_failure_policy(FailurePolicy::FailClosed),
        "login",
        ClientIp::new(),
        quota,
    )
    .unwrap();
    let router = Router::new()
        .route("/api", get(|| async { "api" }))
        .route_layer(api)
        .merge(
            Router::new()
                .route("/login", get(|| async { "login" }))
                .route_layer(login),
        );
    let http = HttpServer::start(router).await;
    for path in ["/api", "/login"] {
        let response = client().get(http.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(header(&response, "ratelimit").is_some(), "{path}");
    }

    drop(server); // kills redis-server

    let response = client().get(http.url("/api")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-ratelimit-fallback").as_deref(),
        Some("fail-open")
    );
    // No made-up counts.
    assert_eq!(header(&response, "ratelimit"), None);
    assert_eq!(response.text().await.unwrap(), "api");

    let response = client().get(http.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(
        header(&response, "x-ratelimit-fallback").as_deref(),
        Some("fail-closed")
    );
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
}
