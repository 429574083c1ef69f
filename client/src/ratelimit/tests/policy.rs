use super::*;

const POLICIES: [FailurePolicy; 3] = [
    FailurePolicy::FailOpen,
    FailurePolicy::FailClosed,
    FailurePolicy::Error,
];

fn connection_reset() -> Fake {
    Fake::new(|_| {
        Some(Err(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )
        .into()))
    })
}

fn metrics(checks: u64, open: u64, closed: u64, errors: u64) -> RateLimitMetrics {
    RateLimitMetrics {
        checks,
        fallbacks_open: open,
        fallbacks_closed: closed,
        errors,
    }
}

#[tokio::test]
async fn fail_open_admits_on_connection_errors() {
    let limiter = RateLimiter::new(connection_reset());
    let quota = Quota::per_minute(10);
    let decision = limiter.check("k", &quota, 3).await.unwrap();
    assert_eq!(
        decision,
        Decision {
            allowed: true,
            limit: 10,
            remaining: 0,
            retry_after: Duration::ZERO,
            reset_after: Duration::ZERO,
            fallback: true,
        }
    );
    assert_eq!(decision.retry_after_secs(), 0);
    assert_eq!(limiter.metrics(), metrics(1, 1, 0, 0));
}

#[tokio::test]
async fn fail_open_admits_on_timeouts() {
    let limiter = RateLimiter::new(Fake::new(|_| None))
        .with_timeout(Duration::from_millis(20))
        .with_failure_policy(FailurePolicy::FailOpen);
    let decision = limiter.peek("k", &Quota::per_second(5)).await.unwrap();
    assert!(decision.allowed && decision.fallback);
    assert_eq!(decision.limit, 5);
    assert_eq!(limiter.metrics(), metrics(1, 1, 0, 0));
}

#[tokio::test]
async fn fail_closed_refuses_with_a_short_retry_after() {
    let limiter =
        RateLimiter::new(connection_reset()).with_failure_policy(FailurePolicy::FailClosed);
    assert_eq!(limiter.failure_policy(), FailurePolicy::FailClosed);
    let decision = limiter.check("k", &Quota::per_hour(7), 1).await.unwrap();
    assert_eq!(
        decision,
        Decision {
            allowed: false,
            limit: 7,
            remaining: 0,
            retry_after: FAIL_CLOSED_RETRY_AFTER,
            reset_after: FAIL_CLOSED_RETRY_AFTER,
            fallback: true,
        }
    );
    assert_eq!(decision.retry_after_secs(), 1);
    // Timeouts too.
    let limiter = RateLimiter::new(Fake::new(|_| None))
        .with_timeout(Duration::from_millis(20))
        .with_failure_policy(FailurePolicy::FailClosed);
    let decision = limiter.peek("k", &Quota::per_hour(7)).await.unwrap();
    assert!(!decision.allowed && decision.fallback);
    assert_eq!(limiter.metrics(), metrics(1, 0, 1, 0));
}

#[tokio::test]
async fn error_policy_returns_transient_errors_unchanged() {
    let limiter = RateLimiter::new(connection_reset()).with_failure_policy(FailurePolicy::Error);
    let err = limiter
        .check("k", &Quota::per_second(1), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    let limiter = RateLimiter::new(Fake::new(|_| None))
        .with_timeout(Duration::from_millis(20))
        .with_failure_policy(FailurePolicy::Error);
    let err = limiter
        .check_all(&[("a", Quota::per_second(1))], 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert_eq!(limiter.metrics(), metrics(1, 0, 0, 1));
}

#[tokio::test]
async fn check_all_fallbacks_report_the_first_limit() {
    let limits = [("a", Quota::per_second(3)), ("b", Quota::per_hour(100))];
    let open = RateLimiter::new(connection_reset());
    let all = open.check_all(&limits, 2).await.unwrap();
    assert_eq!(all.index, 0);
    assert!(all.decision.allowed && all.decision.fallback);
    assert_eq!(all.decision.limit, 3);
    let closed = open.clone().with_failure_policy(FailurePolicy::FailClosed);
    let all = closed.check_all(&limits, 2).await.unwrap();
    assert_eq!(all.index, 0);
    assert!(!all.decision.allowed && all.decision.fallback);
    assert_eq!(all.decision.retry_after, FAIL_CLOSED_RETRY_AFTER);
    // Clones share the counters.
    assert_eq!(open.metrics(), metrics(2, 1, 1, 0));
    assert_eq!(closed.metrics(), open.metrics());
}

#[tokio::test]
async fn non_transient_errors_are_never_hidden() {
    let quota = Quota::per_second(1);
    for policy in POLICIES {
        // Module not loaded.
        let limiter = RateLimiter::new(Fake::replying(error_reply(
            "ERR unknown command 'TK.RATELIMIT'",
        )))
        .with_failure_policy(policy);
        let err = limiter.check("k", &quota, 1).await.unwrap_err();
        assert!(err.is_module_not_loaded(), "{policy:?}: {err:?}");
        // A server refusal (WRONGTYPE), for peek and check_all too.
        let limiter = RateLimiter::new(Fake::replying(error_reply(
            "WRONGTYPE Operation against a key",
        )))
        .with_failure_policy(policy);
        assert!(matches!(
            limiter.peek("k", &quota).await,
            Err(Error::Server { .. })
        ));
        assert!(matches!(
            limiter.check_all(&[("k", quota)], 1).await,
            Err(Error::Server { .. })
        ));
        // Rejected before sending: nothing sent, still an error.
        let fake = connection_reset();
        let limiter = RateLimiter::new(fake.clone()).with_failure_policy(policy);
        assert!(matches!(
            limiter.check("k", &Quota::per_second(0), 1).await,
            Err(Error::InvalidQuota(_))
        ));
        let none: [(&str, Quota); 0] = [];
        assert!(matches!(
            limiter.check_all(&none, 1).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(fake.sent().is_empty());
        // A malformed reply, and an out-of-range index.
        let limiter = RateLimiter::new(Fake::replying(Value::Okay)).with_failure_policy(policy);
        assert!(matches!(
            limiter.check("k", &quota, 1).await,
            Err(Error::UnexpectedReply(_))
        ));
        let limiter =
            RateLimiter::new(Fake::replying(ints(&[1, 1, 0, 0, 0, 5]))).with_failure_policy(policy);
        assert!(matches!(
            limiter.check_all(&[("k", quota)], 1).await,
            Err(Error::UnexpectedReply(_))
        ));
        assert_eq!(limiter.metrics(), metrics(1, 0, 0, 1), "{policy:?}");
    }
}

#[tokio::test]
async fn reset_ignores_the_policy_and_is_not_counted() {
    for policy in POLICIES {
        let limiter = RateLimiter::new(connection_reset()).with_failure_policy(policy);
        let err = limiter.reset(&["k"]).await.unwrap_err();
        assert!(matches!(err, Error::Connection(_)), "{policy:?}: {err:?}");
        assert_eq!(limiter.metrics(), RateLimitMetrics::default());
    }
}

#[tokio::test]
async fn metrics_count_every_outcome() {
    // Replies in turn: a decision, a connection error, a server error.
    let calls = Arc::new(Mutex::new(0u32));
    let fake = Fake::new(move |_| {
        let mut n = calls.lock().unwrap();
        *n += 1;
        Some(match *n % 3 {
            1 => Ok(ints(&[1, 10, 9, 0, 100])),
            2 => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into()),
            _ => Ok(error_reply("ERR bad")),
        })
    });
    let open = RateLimiter::new(fake);
    let closed = open.clone().with_failure_policy(FailurePolicy::FailClosed);
    let quota = Quota::per_minute(10);
    let first = open.check("k", &quota, 1).await.unwrap();
    assert!(first.allowed && !first.fallback);
    assert!(open.check("k", &quota, 1).await.unwrap().fallback);
    assert!(open.check("k", &quota, 1).await.is_err());
    assert!(!closed.peek("k", &quota).await.unwrap().fallback);
    assert!(!closed.peek("k", &quota).await.unwrap().allowed);
    assert!(closed.peek("k", &quota).await.is_err());
    let m = open.metrics();
    assert_eq!(m, metrics(6, 1, 1, 2));
    assert_eq!(
        m.checks - m.fallbacks_open - m.fallbacks_closed - m.errors,
        2,
        "decisions made by redis"
    );
    // A new limiter on the same connection has its own counters.
    let other = RateLimiter::new(open.connection().clone());
    assert_eq!(other.metrics(), RateLimitMetrics::default());
}

// ---- compile-time checks -----------------------------------------

fn assert_send<T: Send>(_: &T) {}

/// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
/// for the default and the cluster connection.
#[allow(dead_code)]
fn futures_are_send(
    single: &RateLimiter,
    cluster: &RateLimiter<redis::cluster_async::ClusterConnection>,
    multiplexed: &RateLimiter<redis::aio::MultiplexedConnection>,
    quota: &Quota,
) {
    assert_send(&single.check("k", quota, 1));
    assert_send(&single.peek("k", quota));
    assert_send(&single.reset(&["k"]));
    assert_send(&single.check_all(&[("k", *quota)], 1));
    assert_send(&cluster.check("k", quota, 1));
    assert_send(&cluster.check_all(&[("k", *quota)], 1));
    assert_send(&multiplexed.check("k", quota, 1));
    assert_send(&multiplexed.peek("k", quota));
}
