use super::*;

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
