use super::*;

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
