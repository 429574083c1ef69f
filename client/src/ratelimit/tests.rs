//! Unit tests of [`crate::ratelimit`].

use super::*;
use crate::test_support::*;
use redis::Value;
use std::sync::{Arc, Mutex};

fn invalid_quota(result: Result<impl fmt::Debug>) -> String {
    match result {
        Err(Error::InvalidQuota(message)) => message,
        other => panic!("expected InvalidQuota, got {other:?}"),
    }
}

// ---- quotas -------------------------------------------------------

#[test]
fn quota_constructors() {
    assert_eq!(Quota::per_second(5).period, Duration::from_secs(1));
    assert_eq!(Quota::per_minute(5).period, Duration::from_secs(60));
    assert_eq!(Quota::per_hour(5).period, Duration::from_secs(3600));
    let quota = Quota::new(7, Duration::from_millis(250));
    assert_eq!((quota.limit, quota.period), (7, Duration::from_millis(250)));
    assert_eq!((quota.burst, quota.algorithm), (None, None));
}

#[test]
fn quota_builders_chain_and_are_const() {
    const Q: Quota = Quota::per_minute(100).burst(20);
    assert_eq!(Q.limit, 100);
    assert_eq!(Q.burst, Some(20));
    let quota = Quota::per_second(1).algorithm(Algorithm::Sliding);
    assert_eq!(quota.algorithm, Some(Algorithm::Sliding));
    assert!(Q.validate().is_ok());
    assert!(quota.validate().is_ok());
    assert!(Quota::per_second(1)
        .burst(3)
        .algorithm(Algorithm::Gcra)
        .validate()
        .is_ok());
}

#[test]
fn quota_validation() {
    assert!(invalid_quota(Quota::per_second(0).validate()).contains("limit"));
    assert!(invalid_quota(Quota::new(1, Duration::ZERO).validate()).contains("period"));
    assert!(invalid_quota(Quota::new(1, Duration::from_micros(999)).validate()).contains("1 ms"));
    assert!(invalid_quota(Quota::per_second(1).burst(0).validate()).contains("burst"));
    for algorithm in [Algorithm::Sliding, Algorithm::Fixed] {
        let message = invalid_quota(
            Quota::per_second(5)
                .burst(2)
                .algorithm(algorithm)
                .validate(),
        );
        assert!(message.contains("GCRA"), "{message}");
    }
    assert!(invalid_quota(Quota::new(1, Duration::MAX).validate()).contains("too long"));
    assert!(Quota::new(u64::MAX, Duration::from_millis(1))
        .validate()
        .is_ok());
}

#[test]
fn period_is_rounded_up_to_whole_ms() {
    let ms = |period| Quota::new(1, period).period_ms().unwrap();
    assert_eq!(ms(Duration::from_millis(1)), 1);
    assert_eq!(ms(Duration::from_micros(1_001)), 2);
    assert_eq!(ms(Duration::from_nanos(1_999_999)), 2);
    assert_eq!(ms(Duration::from_secs(60)), 60_000);
    assert_eq!(ms(Duration::new(1, 1)), 1_001);
}

#[test]
fn algorithm_names() {
    assert_eq!(Algorithm::Gcra.to_string(), "GCRA");
    assert_eq!(Algorithm::Sliding.as_str(), "SLIDING");
    assert_eq!(Algorithm::Fixed.as_str(), "FIXED");
}

#[test]
fn decision_seconds_round_up() {
    let decision = Decision {
        allowed: false,
        limit: 1,
        remaining: 0,
        retry_after: Duration::from_millis(1_001),
        reset_after: Duration::from_millis(2_000),
        fallback: false,
    };
    assert_eq!(decision.retry_after_secs(), 2);
    assert_eq!(decision.reset_after_secs(), 2);
    assert_eq!(ceil_secs(Duration::ZERO), 0);
    assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
}

// ---- command arguments -------------------------------------------

#[test]
fn check_args_minimal() {
    let cmd = check_cmd(CMD_CHECK, "rl:k", &Quota::per_minute(100), 1).unwrap();
    assert_eq!(args(&cmd), ["TK.RATELIMIT", "rl:k", "100", "60000"]);
}

#[test]
fn check_args_with_every_option() {
    let quota = Quota::per_second(10).burst(20).algorithm(Algorithm::Gcra);
    let cmd = check_cmd(CMD_CHECK, "k", &quota, 3).unwrap();
    assert_eq!(
        args(&cmd),
        [
            "TK.RATELIMIT",
            "k",
            "10",
            "1000",
            "BURST",
            "20",
            "COST",
            "3",
            "ALGO",
            "GCRA"
        ]
    );
    let quota = Quota::new(5, Duration::from_micros(2_500)).algorithm(Algorithm::Fixed);
    let cmd = check_cmd(CMD_CHECK, "k", &quota, 0).unwrap();
    assert_eq!(
        args(&cmd),
        ["TK.RATELIMIT", "k", "5", "3", "COST", "0", "ALGO", "FIXED"]
    );
}

#[test]
fn key_is_sent_as_is() {
    let cmd = check_cmd(CMD_CHECK, "{u1} spaced:ключ", &Quota::per_second(1), 1).unwrap();
    assert_eq!(args(&cmd)[1], "{u1} spaced:ключ");
}

#[test]
fn peek_args() {
    let quota = Quota::per_hour(1000).algorithm(Algorithm::Sliding);
    let cmd = check_cmd(CMD_PEEK, "k", &quota, 1).unwrap();
    assert_eq!(
        args(&cmd),
        [
            "TK.RATELIMIT.PEEK",
            "k",
            "1000",
            "3600000",
            "ALGO",
            "SLIDING"
        ]
    );
}

#[test]
fn invalid_quota_builds_no_command() {
    assert!(check_cmd(CMD_CHECK, "k", &Quota::per_second(0), 1).is_err());
}

#[test]
fn reset_args() {
    assert_eq!(args(&reset_cmd(&["a"])), ["TK.RATELIMIT.RESET", "a"]);
    let owned = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(args(&reset_cmd(&owned)), ["TK.RATELIMIT.RESET", "a", "b"]);
}

#[test]
fn all_args() {
    let limits = [
        ("k1", Quota::per_second(10).burst(5)),
        ("k2", Quota::per_hour(100).algorithm(Algorithm::Fixed)),
    ];
    assert_eq!(
        args(&all_cmd(&limits, 1).unwrap()),
        [
            "TK.RATELIMIT.ALL",
            "2",
            "k1",
            "k2",
            "10",
            "1000",
            "BURST",
            "5",
            "100",
            "3600000",
            "ALGO",
            "FIXED"
        ]
    );
    assert_eq!(
        args(&all_cmd(&limits[..1], 2).unwrap()),
        [
            "TK.RATELIMIT.ALL",
            "1",
            "k1",
            "10",
            "1000",
            "BURST",
            "5",
            "COST",
            "2"
        ]
    );
}

#[test]
fn all_args_validation() {
    let none: [(&str, Quota); 0] = [];
    assert!(matches!(all_cmd(&none, 1), Err(Error::InvalidArgument(_))));
    let limits = [("a", Quota::per_second(1)), ("b", Quota::per_second(0))];
    assert!(invalid_quota(all_cmd(&limits, 1)).starts_with("limit 1: "));
}

#[tokio::test]
async fn check_sends_and_parses() {
    let fake = Fake::replying(ints(&[0, 10, 0, 1_500, 6_000]));
    let limiter = RateLimiter::new(fake.clone());
    let decision = limiter.check("k", &Quota::per_minute(10), 2).await.unwrap();
    assert!(!decision.allowed);
    assert!(!decision.fallback);
    assert_eq!(decision.retry_after_secs(), 2);
    assert_eq!(
        fake.sent(),
        [["TK.RATELIMIT", "k", "10", "60000", "COST", "2"]]
    );
}

#[tokio::test]
async fn peek_sends_peek() {
    let fake = Fake::replying(ints(&[1, 10, 10, 0, 0]));
    let limiter = RateLimiter::new(fake.clone());
    let decision = limiter.peek("k", &Quota::per_minute(10)).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(fake.sent()[0][0], "TK.RATELIMIT.PEEK");
}

#[tokio::test]
async fn invalid_quota_sends_nothing() {
    let fake = Fake::replying(ints(&[1, 1, 0, 0, 1]));
    let limiter = RateLimiter::new(fake.clone());
    let err = limiter
        .check("k", &Quota::per_second(0), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQuota(_)));
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn reset_counts() {
    let fake = Fake::replying(Value::Int(2));
    let limiter = RateLimiter::new(fake.clone());
    assert_eq!(limiter.reset(&["a", "b", "c"]).await.unwrap(), 2);
    let none: [&str; 0] = [];
    assert_eq!(limiter.reset(&none).await.unwrap(), 0);
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn check_all_checks_index_range() {
    let limits = [("a", Quota::per_second(1)), ("b", Quota::per_hour(5))];
    let ok = RateLimiter::new(Fake::replying(ints(&[0, 5, 0, 10, 20, 1])));
    let all = ok.check_all(&limits, 1).await.unwrap();
    assert_eq!(all.index, 1);
    let bad = RateLimiter::new(Fake::replying(ints(&[0, 5, 0, 10, 20, 2])));
    let err = bad.check_all(&limits, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::UnexpectedReply(ref m) if m.contains("index 2")),
        "{err}"
    );
}

#[tokio::test]
async fn error_replies_as_values_or_errors() {
    let line = "ERR unknown command 'TK.RATELIMIT', with args beginning with: 'k' ";
    // As an `Ok(ServerError)` value...
    let limiter = RateLimiter::new(Fake::replying(error_reply(line)));
    let err = limiter
        .check("k", &Quota::per_second(1), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ModuleNotLoaded {
                command: "TK.RATELIMIT"
            }
        ),
        "{err:?}"
    );
    // ...or as an `Err`.
    let limiter = RateLimiter::new(Fake::new(move |_| {
        Some(error_reply("WRONGTYPE Operation against a key").extract_error())
    }));
    let err = limiter.peek("k", &Quota::per_second(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::Server { ref code, .. } if code == "WRONGTYPE"),
        "{err:?}"
    );
    // The command name reported is the one sent.
    let limiter = RateLimiter::new(Fake::replying(error_reply(
        "ERR unknown command 'TK.RATELIMIT.ALL'",
    )));
    let err = limiter
        .check_all(&[("a", Quota::per_second(1))], 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ModuleNotLoaded {
                command: "TK.RATELIMIT.ALL"
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_replies() {
    let limiter = RateLimiter::new(Fake::replying(ints(&[2, 1, 1, 0, 0])));
    let err = limiter
        .check("k", &Quota::per_second(1), 1)
        .await
        .unwrap_err();
    match err {
        Error::UnexpectedReply(message) => {
            assert_eq!(message, "TK.RATELIMIT: allowed must be 0 or 1, got 2");
        }
        other => panic!("{other:?}"),
    }
    let limiter = RateLimiter::new(Fake::replying(Value::Okay));
    assert!(matches!(
        limiter.reset(&["k"]).await,
        Err(Error::UnexpectedReply(_))
    ));
}

#[tokio::test]
async fn io_errors_are_connection_errors() {
    let limiter = RateLimiter::new(Fake::new(|_| {
        Some(Err(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )
        .into()))
    }))
    .with_failure_policy(FailurePolicy::Error);
    let err = limiter
        .check("k", &Quota::per_second(1), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
}

#[tokio::test]
async fn calls_time_out() {
    let limiter = RateLimiter::new(Fake::new(|_| None))
        .with_timeout(Duration::from_millis(20))
        .with_failure_policy(FailurePolicy::Error);
    assert_eq!(limiter.timeout(), Duration::from_millis(20));
    let err = limiter
        .check("k", &Quota::per_second(1), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(err.is_transient());
}

#[test]
fn defaults() {
    let limiter = RateLimiter::new(Fake::replying(Value::Nil));
    assert_eq!(limiter.timeout(), DEFAULT_TIMEOUT);
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(3));
    assert_eq!(limiter.failure_policy(), FailurePolicy::FailOpen);
    assert_eq!(FailurePolicy::default(), FailurePolicy::FailOpen);
    assert_eq!(limiter.metrics(), RateLimitMetrics::default());
    let debug = format!("{limiter:?}");
    assert!(debug.contains("3s"), "{debug}");
    assert!(debug.contains("FailOpen"), "{debug}");
}

// ---- failure policy ----------------------------------------------

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
