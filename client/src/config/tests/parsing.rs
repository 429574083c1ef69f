use super::*;

#[test]
fn good_addresses() {
    for (text, host, port) in [
        ("redis:6379", "redis", 6379),
        ("127.0.0.1:1", "127.0.0.1", 1),
        ("my_redis-1.internal:65535", "my_redis-1.internal", 65535),
        ("[::1]:6380", "::1", 6380),
        ("[fe80::1]:7000", "fe80::1", 7000),
    ] {
        for variable in ADDRESS_VARIABLES {
            let mut env = vec![(variable, text)];
            if variable == vars::SENTINEL_ADDRS {
                env.push((vars::SENTINEL_MASTER, "mymaster"));
            }
            let config = lookup(&env).unwrap();
            let addr = match variable {
                vars::ADDR => config.addr(),
                vars::CACHE_ADDR => config.cache_addr().unwrap(),
                vars::CLUSTER_NODES => &config.cluster_nodes()[0],
                _ => &config.sentinel_addrs()[0],
            };
            assert_eq!((addr.host(), addr.port()), (host, port), "{text}");
            assert_eq!(addr.to_string(), text);
        }
    }
}

#[test]
fn bad_addresses() {
    for (text, expected) in [
        ("redis", "missing port"),
        ("redis:", "missing port"),
        (":6379", "missing host"),
        ("redis:0", "1 to 65535"),
        ("redis:65536", "1 to 65535"),
        ("redis:-1", "1 to 65535"),
        ("redis:+1", "1 to 65535"),
        ("redis:http", "1 to 65535"),
        ("::1:6379", "brackets"),
        ("[::1]", "missing port"),
        ("[::1", "missing ']'"),
        ("[nope]:6379", "not an IPv6 address"),
        ("[::1]x:6379", "after ']'"),
        ("re dis:6379", "invalid character"),
        ("user@redis:6379", "invalid character"),
        ("redis://redis:6379", "not a URL"),
    ] {
        for variable in ADDRESS_VARIABLES {
            let reason = invalid(variable, text);
            assert!(reason.contains(expected), "{variable}={text}: {reason}");
        }
    }
}

// ---- numbers and flags --------------------------------------------

#[test]
fn db_values() {
    assert_eq!(lookup(&[("REDIS_DB", "0")]).unwrap().db(), 0);
    assert_eq!(lookup(&[("REDIS_DB", "15")]).unwrap().db(), 15);
    assert_eq!(
        lookup(&[("REDIS_DB", "4294967295")]).unwrap().db(),
        u32::MAX
    );
    for bad in ["-1", "+1", "1.0", "one", "4294967296", "1 2", "0x1"] {
        let reason = invalid(vars::DB, bad);
        assert!(reason.contains("database number"), "{bad}: {reason}");
    }
}

#[test]
fn pool_size_values() {
    assert_eq!(lookup(&[("REDIS_POOL_SIZE", "1")]).unwrap().pool_size(), 1);
    assert_eq!(
        lookup(&[("REDIS_POOL_SIZE", "1000")]).unwrap().pool_size(),
        1000
    );
    for bad in ["0", "-5", "ten", "2.5", "99999999999999999999999"] {
        let reason = invalid(vars::POOL_SIZE, bad);
        assert!(reason.contains("at least 1"), "{bad}: {reason}");
    }
}

#[test]
fn boolean_values() {
    for variable in [
        vars::SESSIONS_ENABLED,
        vars::CACHE_ENABLED,
        vars::RATELIMIT_ENABLED,
    ] {
        let flag = |value: &str| {
            let config = lookup(&[(variable, value)]).unwrap();
            match variable {
                vars::SESSIONS_ENABLED => config.sessions_enabled(),
                vars::CACHE_ENABLED => config.cache_enabled(),
                _ => config.ratelimit_enabled(),
            }
        };
        for yes in ["true", "TRUE", "True", "1", "yes", "YES", "on", "On"] {
            assert!(flag(yes), "{variable}={yes}");
        }
        for no in ["false", "FALSE", "0", "no", "No", "off", "OFF"] {
            assert!(!flag(no), "{variable}={no}");
        }
        for bad in ["2", "y", "n", "enabled", "t", "truee", "-1"] {
            let reason = invalid(variable, bad);
            assert!(reason.contains("true/false"), "{bad}: {reason}");
        }
    }
}

// ---- durations -----------------------------------------------------

#[test]
fn good_durations() {
    for (text, expected) in [
        ("5s", secs(5)),
        ("500ms", ms(500)),
        ("1m", secs(60)),
        ("2h", secs(7_200)),
        ("1m30s", secs(90)),
        ("1h1m1s", secs(3_661)),
        ("30s1m", secs(90)),
        ("1.5s", ms(1_500)),
        ("0.5s", ms(500)),
        ("1.5h", secs(5_400)),
        ("0.001s", ms(1)),
        ("100us", Duration::from_micros(100)),
        ("100µs", Duration::from_micros(100)),
        ("250ns", Duration::from_nanos(250)),
        ("1s500ms", ms(1_500)),
        ("+5s", secs(5)),
        ("5", secs(5)),
        ("300", secs(300)),
        // What humantime adds: spaces, longer unit names, days.
        ("5 s", secs(5)),
        ("1m 30s", secs(90)),
        ("5sec", secs(5)),
        ("3 seconds", secs(3)),
        ("2min", secs(120)),
        ("1d", secs(86_400)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
}

#[test]
fn bad_durations() {
    for (text, expected) in [
        ("", "expected a number"),
        ("-5s", "negative"),
        ("-1", "negative"),
        ("5x", "unknown unit \"x\""),
        ("5S", "unknown unit \"S\""),
        ("5 parsecs", "unknown unit \"parsecs\""),
        ("1.5", "missing unit"),
        ("1m30", "missing unit"),
        ("s", "expected a number"),
        (".s", "expected a number"),
        ("+", "expected a number"),
        ("1..5s", "invalid character"),
        // Go accepted these; humantime does not (see the CHANGELOG).
        (".5s", "expected a number"),
        ("1.s", "invalid character"),
        ("100\u{3bc}s", "invalid character"),
        ("0.0000000001s", "finer than a nanosecond"),
        ("99999999999999999999999", "too large"),
        ("9999999999999999999999999h", "too large"),
        ("99999999999999999999999999999999999999999s", "too large"),
    ] {
        let reason = parse_duration(text).expect_err(text);
        assert!(reason.contains(expected), "{text}: {reason}");
    }
}

#[test]
fn timeout_variables() {
    for variable in [vars::DIAL_TIMEOUT, vars::READ_TIMEOUT, vars::WRITE_TIMEOUT] {
        let config = lookup(&[(variable, "250ms")]).unwrap();
        let got = match variable {
            vars::DIAL_TIMEOUT => config.dial_timeout(),
            vars::READ_TIMEOUT => config.read_timeout(),
            _ => config.write_timeout(),
        };
        assert_eq!(got, ms(250), "{variable}");
        for (bad, expected) in [
            ("0", "greater than zero"),
            ("0s", "greater than zero"),
            ("0.0000000001s", "finer than a nanosecond"),
            ("-3s", "negative"),
            ("3x", "unknown unit"),
            ("three", "expected a number"),
        ] {
            let reason = invalid(variable, bad);
            assert!(reason.contains(expected), "{variable}={bad}: {reason}");
        }
    }
}

// ---- error messages ------------------------------------------------

#[test]
fn error_message_names_variable_and_value() {
    let err = lookup(&[("REDIS_READ_TIMEOUT", "3 lightyears")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid REDIS_READ_TIMEOUT=\"3 lightyears\": unknown unit \"lightyears\" \
         (use ns, us, ms, s, m or h, e.g. 500ms, 5s or 1m30s)"
    );
    let err = lookup(&[("REDIS_POOL_SIZE", "0")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid REDIS_POOL_SIZE=\"0\": expected a whole number of at least 1"
    );
}

#[test]
fn first_bad_variable_is_reported_and_nothing_is_defaulted() {
    // A bad value never falls back to the default silently.
    let err = lookup(&[("REDIS_DB", "x"), ("REDIS_ADDR", "redis:6379")]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            variable: "REDIS_DB",
            ..
        }
    ));
}

// ---- URLs ------------------------------------------------------------

#[test]
fn good_urls() {
    let config = Config::from_url("redis://127.0.0.1:6379").unwrap();
    assert_eq!(config, Config::default());
    let config = Config::from_url("redis://redis").unwrap();
    assert_eq!(config.addr().to_string(), "redis:6379");
    let config = Config::from_url("redis://:p%40ss%3Aw%2Fd@redis:6380/5").unwrap();
    assert_eq!(config.addr().to_string(), "redis:6380");
    assert_eq!(config.password(), Some("p@ss:w/d"));
    assert_eq!(config.db(), 5);
    let config = Config::from_url("redis://default:secret@redis:6379/").unwrap();
    assert_eq!((config.password(), config.db()), (Some("secret"), 0));
    let config = Config::from_url("redis://:@redis:6379").unwrap();
    assert_eq!(config.password(), None);
    let config = Config::from_url("REDISS://[::1]:7000/1").unwrap();
    assert!(config.tls());
    assert_eq!(config.addr().host(), "::1");
    assert_eq!(config.db(), 1);
    // Unencoded '@', '/', '?' or '#' in the password: the last '@' ends it.
    let config = Config::from_url("redis://:a@b/c?d#e@redis:6379/2").unwrap();
    assert_eq!(config.password(), Some("a@b/c?d#e"));
    assert_eq!(config.db(), 2);
    // An ACL user, with or without a password.
    let config = Config::from_url("redis://app%3A1:secret@redis:6379").unwrap();
    assert_eq!(
        (config.username(), config.password()),
        (Some("app:1"), Some("secret"))
    );
    let config = Config::from_url("redis://app@redis:6379").unwrap();
    assert_eq!((config.username(), config.password()), (Some("app"), None));
    assert_eq!(
        Config::from_url("redis://default:x@redis")
            .unwrap()
            .username(),
        None
    );
}

#[test]
fn acl_user_from_env_and_in_every_connection() {
    let config = lookup(&[("REDIS_USERNAME", " app "), ("REDIS_PASSWORD", "pw")]).unwrap();
    assert_eq!(config.username(), Some("app"));
    let settings = config.connection_info().redis_settings().clone();
    assert_eq!(
        (settings.username(), settings.password()),
        (Some("app"), Some("pw"))
    );
    assert_eq!(lookup(&[("REDIS_USERNAME", " ")]).unwrap().username(), None);
    assert!(
        format!("{config:?}").contains("app"),
        "a user name is not a secret"
    );
}

#[test]
fn bad_urls() {
    for (url, expected) in [
        ("redis:6379", "expected redis://"),
        ("", "expected redis://"),
        ("http://redis:6379", "unsupported scheme"),
        ("unix:///tmp/redis.sock", "unsupported scheme"),
        ("redis://", "missing host"),
        ("redis://:6379", "missing host"),
        ("redis://redis:0", "1 to 65535"),
        ("redis://redis:port", "1 to 65535"),
        ("redis://redis:6379/x", "database number"),
        ("redis://redis:6379/-1", "database number"),
        ("redis://redis:6379/0/1", "database number"),
        ("redis://redis:6379/?protocol=resp3", "query"),
        ("rediss://redis:6379/#insecure", "fragment"),
        ("redis://:%zz@redis:6379", "password: invalid %-escape"),
        ("redis://:%ff@redis:6379", "password: not valid UTF-8"),
        ("redis://::1:6379", "brackets"),
        (" redis://redis:6379", "unsupported scheme \" redis\""),
        ("redis://redis:6379 ", "invalid character ' '"),
        ("redis://re\tdis:6379", "invalid character '\\t'"),
        ("redis://redis:63\n79", "invalid character '\\n'"),
    ] {
        let reason = url_error(url);
        assert!(reason.contains(expected), "{url}: {reason}");
    }
}

#[test]
fn url_errors_never_show_the_password() {
    let err = Config::from_url("redis://:hunter2@redis:6379/x").unwrap_err();
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("redis://:<redacted>@redis:6379/x"),
        "{message}"
    );
    assert_eq!(redact_url("redis://redis:6379"), "redis://redis:6379");
    assert_eq!(redact_url("redis://user@redis"), "redis://<redacted>@redis");
    assert_eq!(redact_url("redis://default@redis"), "redis://default@redis");
    assert_eq!(
        redact_url("redis://alice:pa/ss?#@redis/0"),
        "redis://alice:<redacted>@redis/0"
    );
    assert_eq!(redact_url("nonsense"), "nonsense");
    assert_eq!(
        redact_url("redis://:a@b@h/0?x#y"),
        "redis://:<redacted>@h/0?x#y"
    );
}

#[test]
fn redis_url_round_trips() {
    for config in [
        Config::default(),
        Config::builder()
            .addr("[::1]:7000")
            .password("p@ss wörd:/%")
            .db(9)
            .tls(true)
            .build()
            .unwrap(),
        Config::builder()
            .username("app:1")
            .password("pw")
            .build()
            .unwrap(),
        Config::builder().username("app").build().unwrap(),
    ] {
        let url = config.redis_url();
        let back = Config::from_url(&url).unwrap();
        assert_eq!(back, config, "{url}");
    }
    assert_eq!(Config::default().redis_url(), "redis://127.0.0.1:6379/0");
    let config = Config::builder().password("a b").tls(true).build().unwrap();
    assert_eq!(config.redis_url(), "rediss://:a%20b@127.0.0.1:6379/0");
}

// ---- builder ---------------------------------------------------------
