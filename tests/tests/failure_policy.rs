//! RateLimiter failure policies against a real server that goes away.
//!
//! Once the server is killed, a call fails either quickly (connection
//! refused or dropped) or by timing out while the connection manager
//! retries; both are transient, so no assertion here depends on which, or
//! on how long anything took.

use std::time::Duration;

use tk_redis::config::Config;
use tk_redis::{Error, FailurePolicy, Quota, RateLimiter};
use tk_redis_tests::harness::{command_stats, Server};
use tk_redis_tests::module_mode;

/// Per-call timeout of the limiters, and the connection's timeouts.
const TIMEOUT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn policies_apply_once_the_server_is_gone() {
    let server = Server::start().await;
    let config = Config::builder()
        .addr(server.addr())
        .dial_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .build()
        .unwrap();
    let manager = config.connect().await.unwrap();
    // Separate limiters (own counters) sharing one connection.
    let open = RateLimiter::new(manager.clone()).with_timeout(TIMEOUT);
    let closed = RateLimiter::new(manager.clone())
        .with_timeout(TIMEOUT)
        .with_failure_policy(FailurePolicy::FailClosed);
    let error = RateLimiter::new(manager)
        .with_timeout(TIMEOUT)
        .with_failure_policy(FailurePolicy::Error);
    assert_eq!(open.failure_policy(), FailurePolicy::FailOpen);

    // A period long enough that time passing cannot change the decisions.
    let quota = Quota::per_hour(10);
    for (n, limiter) in [&open, &closed, &error].into_iter().enumerate() {
        let key = format!("fp:{n}");
        let decision = limiter.check(&key, &quota, 1).await.unwrap();
        assert!(decision.allowed && !decision.fallback, "{decision:?}");
        assert_eq!((decision.limit, decision.remaining), (10, 9));
        let peeked = limiter.peek(&key, &quota).await.unwrap();
        assert!(peeked.allowed && !peeked.fallback, "{peeked:?}");
        assert_eq!(limiter.metrics().checks, 2);
        assert_eq!(limiter.metrics().fallbacks_open, 0);
        assert_eq!(limiter.metrics().fallbacks_closed, 0);
        assert_eq!(limiter.metrics().errors, 0);
    }

    drop(server); // kills it

    let decision = open.check("fp:0", &quota, 1).await.unwrap();
    assert!(decision.allowed, "{decision:?}");
    assert!(decision.fallback, "{decision:?}");
    let metrics = open.metrics();
    assert_eq!(metrics.checks, 3);
    assert_eq!(metrics.fallbacks_open, 1);
    assert_eq!(metrics.fallbacks_closed, 0);
    assert_eq!(metrics.errors, 0);

    let decision = closed.check("fp:1", &quota, 1).await.unwrap();
    assert!(!decision.allowed, "{decision:?}");
    assert!(decision.fallback, "{decision:?}");
    assert!(decision.retry_after > Duration::ZERO, "{decision:?}");
    let all = closed
        .check_all(&[("{fp}:a", quota), ("{fp}:b", quota)], 1)
        .await
        .unwrap();
    assert!(!all.decision.allowed && all.decision.fallback, "{all:?}");
    assert_eq!(all.index, 0);
    let metrics = closed.metrics();
    assert_eq!(metrics.checks, 4);
    assert_eq!(metrics.fallbacks_open, 0);
    assert_eq!(metrics.fallbacks_closed, 2);
    assert_eq!(metrics.errors, 0);

    let err = error.check("fp:2", &quota, 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(err, Error::Connection(_) | Error::Timeout),
        "{err:?}"
    );
    let metrics = error.metrics();
    assert_eq!(metrics.checks, 3);
    assert_eq!(metrics.fallbacks_open, 0);
    assert_eq!(metrics.fallbacks_closed, 0);
    assert_eq!(metrics.errors, 1);

    // reset never falls back.
    let err = open.reset(&["fp:0"]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(open.metrics().checks, 3);
}

#[tokio::test]
async fn a_missing_module_is_an_error_even_when_failing_open() {
    let server = Server::builder().without_module().start().await;
    // REDIS_TK_MODE=module: auto would load the Functions library instead.
    let limiter = RateLimiter::new(server.manager().await).with_tk_mode(tk_redis::TkMode::Module);
    assert_eq!(limiter.failure_policy(), FailurePolicy::FailOpen);
    let err = limiter
        .check("fp:k", &Quota::per_minute(5), 1)
        .await
        .unwrap_err();
    assert!(err.is_module_not_loaded(), "{err:?}");
    assert_eq!(limiter.metrics().errors, 1);
    assert_eq!(limiter.metrics().fallbacks_open, 0);
}

/// A primary that refuses writes for lack of replicas in sync (what the old
/// primary of a failover answers with `min-replicas-to-write`) refused
/// before running anything: a transient error, so the policy applies.
#[tokio::test]
async fn noreplicas_is_transient_and_runs_nothing() {
    // Requires one replica in sync; it has none, so every write is refused.
    // Set once the server is up: in functions mode the harness loads the
    // library first, a write that this setting would refuse.
    let server = Server::start().await;
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "min-replicas-to-write", "1"])
        .query_async(&mut server.conn().await)
        .await
        .unwrap();
    let manager = server.manager().await;
    let open = RateLimiter::new(manager.clone());
    let error = RateLimiter::new(manager).with_failure_policy(FailurePolicy::Error);
    let quota = Quota::per_hour(10);

    let err = error.check("fp:norep", &quota, 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(&err, Error::Connection(inner) if inner.code() == Some("NOREPLICAS")),
        "{err:?}"
    );
    let decision = open.check("fp:norep", &quota, 1).await.unwrap();
    assert!(decision.allowed && decision.fallback, "{decision:?}");
    assert_eq!(open.metrics().fallbacks_open, 1);

    // The library runs as FCALL, refused the same way.
    let command = if module_mode() {
        "tk.ratelimit"
    } else {
        "fcall"
    };
    let stats = command_stats(&mut server.conn().await, command).await;
    assert_eq!((stats.calls, stats.rejected_calls), (0, 2), "{stats:?}");
    let mut conn = server.conn().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg("fp:norep")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "nothing was written");
}
