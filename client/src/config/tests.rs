//! Unit tests of the settings, their parsing and the connection settings.

use std::collections::HashMap;
use std::time::Duration;

use redis::ConnectionAddr;

use super::addr::addr_strings;
use super::env::parse_duration;
use super::url::{percent_decode, percent_encode, redact_url};
use super::*;
use crate::error::Error;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn lookup(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| env.get(name).cloned())
}

/// The error for one bad variable; checks that it names the variable
/// and the value, and returns the reason.
fn invalid(variable: &str, value: &str) -> String {
    let err = lookup(&[(variable, value)]).expect_err(value);
    let message = err.to_string();
    match err {
        ConfigError::Invalid {
            variable: named,
            value: shown,
            reason,
        } => {
            assert_eq!(named, variable);
            assert_eq!(shown, value.trim());
            assert!(message.contains(variable), "{message}");
            assert!(
                message.contains(&format!("{:?}", value.trim())),
                "{message}"
            );
            reason
        }
        other => panic!("{other:?}"),
    }
}

fn url_error(url: &str) -> String {
    match Config::from_url(url) {
        Err(ConfigError::InvalidUrl { reason, .. }) => reason,
        other => panic!("{url}: {other:?}"),
    }
}

// ---- defaults ----------------------------------------------------

#[test]
fn defaults() {
    let config = lookup(&[]).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.addr().to_string(), DEFAULT_ADDR);
    assert_eq!(config.addr().host(), "127.0.0.1");
    assert_eq!(config.addr().port(), 6379);
    assert_eq!(config.password(), None);
    assert_eq!(config.db(), 0);
    assert_eq!(config.pool_size(), 20);
    assert_eq!(config.dial_timeout(), secs(5));
    assert_eq!(config.read_timeout(), secs(3));
    assert_eq!(config.write_timeout(), secs(3));
    assert!(config.sessions_enabled());
    assert!(config.cache_enabled());
    assert!(config.ratelimit_enabled());
    assert_eq!(config.cache_addr(), None);
    assert_eq!(config.effective_cache_addr(), config.addr());
    assert!(!config.tls());
    assert_eq!(config.topology(), Topology::Standalone);
    assert!(config.cluster_nodes().is_empty());
    assert!(config.sentinel_addrs().is_empty());
    assert_eq!(config.sentinel_master(), None);
    assert_eq!(config.sentinel_password(), None);
    assert_eq!(Config::builder().build().unwrap(), config);
}

#[test]
fn empty_and_blank_values_count_as_unset() {
    let blank: Vec<(&str, &str)> = vars::ALL.iter().map(|v| (*v, "")).collect();
    assert_eq!(lookup(&blank).unwrap(), Config::default());
    let spaces: Vec<(&str, &str)> = vars::ALL
        .iter()
        .filter(|v| !vars::is_secret(v))
        .map(|v| (*v, "  \t"))
        .collect();
    assert_eq!(lookup(&spaces).unwrap(), Config::default());
}

#[test]
fn every_variable_set() {
    let config = lookup(&[
        ("REDIS_ADDR", "redis:6379"),
        ("REDIS_PASSWORD", "pa ss:@/"),
        ("REDIS_DB", "3"),
        ("REDIS_POOL_SIZE", "50"),
        ("REDIS_DIAL_TIMEOUT", "1m30s"),
        ("REDIS_READ_TIMEOUT", "500ms"),
        ("REDIS_WRITE_TIMEOUT", "2"),
        ("REDIS_SESSIONS_ENABLED", "false"),
        ("REDIS_CACHE_ENABLED", "OFF"),
        ("REDIS_RATELIMIT_ENABLED", "No"),
        ("REDIS_CACHE_ADDR", "redis-cache:6380"),
        ("REDIS_TK_MODE", "Functions"),
    ])
    .unwrap();
    assert_eq!(config.tk_mode(), crate::TkMode::Functions);
    assert_eq!(config.addr().to_string(), "redis:6379");
    assert_eq!(config.password(), Some("pa ss:@/"));
    assert_eq!(config.db(), 3);
    assert_eq!(config.pool_size(), 50);
    assert_eq!(config.dial_timeout(), secs(90));
    assert_eq!(config.read_timeout(), ms(500));
    assert_eq!(config.write_timeout(), secs(2));
    assert!(!config.sessions_enabled());
    assert!(!config.cache_enabled());
    assert!(!config.ratelimit_enabled());
    assert_eq!(
        config.cache_addr().map(Addr::to_string).as_deref(),
        Some("redis-cache:6380")
    );
    assert_eq!(config.effective_cache_addr().port(), 6380);
}

#[test]
fn values_are_trimmed_but_the_password_is_verbatim() {
    let config = lookup(&[
        ("REDIS_ADDR", " redis:6379\n"),
        ("REDIS_DB", " 2 "),
        ("REDIS_PASSWORD", " secret \n"),
        ("REDIS_CACHE_ENABLED", "\tfalse "),
    ])
    .unwrap();
    assert_eq!(config.addr().host(), "redis");
    assert_eq!(config.db(), 2);
    assert_eq!(config.password(), Some(" secret \n"));
    assert!(!config.cache_enabled());
    // A whitespace-only password is a password.
    assert_eq!(
        lookup(&[("REDIS_PASSWORD", " ")]).unwrap().password(),
        Some(" ")
    );
}

// ---- addresses -----------------------------------------------------

/// Every variable holding addresses: one, or a list of them.
const ADDRESS_VARIABLES: [&str; 4] = [
    vars::ADDR,
    vars::CACHE_ADDR,
    vars::CLUSTER_NODES,
    vars::SENTINEL_ADDRS,
];

#[test]
fn address_lists() {
    for (text, expected) in [
        ("a:1", &["a:1"][..]),
        ("a:1,b:2", &["a:1", "b:2"]),
        (" a:1 , b:2 ,c:3 ", &["a:1", "b:2", "c:3"]),
        ("[::1]:7000,10.0.0.1:7001", &["[::1]:7000", "10.0.0.1:7001"]),
        ("a:1,a:1", &["a:1", "a:1"]),
    ] {
        let cluster = lookup(&[(vars::CLUSTER_NODES, text)]).unwrap();
        assert_eq!(addr_strings(cluster.cluster_nodes()), expected, "{text}");
        let sentinel = lookup(&[
            (vars::SENTINEL_ADDRS, text),
            (vars::SENTINEL_MASTER, "mymaster"),
        ])
        .unwrap();
        assert_eq!(addr_strings(sentinel.sentinel_addrs()), expected, "{text}");
    }
    for (text, expected) in [
        ("a:1,", "item 2 is empty"),
        (",a:1", "item 1 is empty"),
        ("a:1,,b:2", "item 2 is empty"),
        ("a:1, ,b:2", "item 2 is empty"),
        (",", "item 1 is empty"),
        ("a:1,b", "item 2 \"b\": missing port"),
        ("a:1;b:2", "item 1 \"a:1;b:2\": "),
        ("a:1 b:2", "item 1 \"a:1 b:2\": "),
        ("a:1,b:x", "item 2 \"b:x\": port must be a number"),
        (
            "a:1,redis://b:2",
            "item 2 \"redis://b:2\": expected host:port, not a URL",
        ),
    ] {
        for variable in [vars::CLUSTER_NODES, vars::SENTINEL_ADDRS] {
            let reason = invalid(variable, text);
            assert!(reason.contains(expected), "{variable}={text}: {reason}");
        }
    }
}

// ---- topologies ------------------------------------------------------

#[test]
fn topology_of_each_combination() {
    // (environment, the topology or the error's message)
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<Topology, &'a str>);
    let cases: &[Case] = &[
        (&[], Ok(Topology::Standalone)),
        (&[("REDIS_ADDR", "redis:6379")], Ok(Topology::Standalone)),
        (
            &[("REDIS_CLUSTER_NODES", "n1:7000,n2:7001")],
            Ok(Topology::Cluster),
        ),
        (
            // REDIS_ADDR is ignored, REDIS_DB=0 is fine.
            &[
                ("REDIS_CLUSTER_NODES", "n1:7000"),
                ("REDIS_ADDR", "redis:6379"),
                ("REDIS_DB", "0"),
            ],
            Ok(Topology::Cluster),
        ),
        (
            &[
                ("REDIS_CLUSTER_NODES", "n1:7000"),
                ("REDIS_CACHE_ADDR", "cache:6379"),
            ],
            Ok(Topology::Cluster),
        ),
        (
            &[
                ("REDIS_SENTINEL_ADDRS", "s1:26379,s2:26379"),
                ("REDIS_SENTINEL_MASTER", "tk-state"),
            ],
            Ok(Topology::Sentinel),
        ),
        (
            &[
                ("REDIS_SENTINEL_ADDRS", "s1:26379"),
                ("REDIS_SENTINEL_MASTER", "tk-state"),
                ("REDIS_SENTINEL_PASSWORD", "s3cret"),
                ("REDIS_DB", "2"),
                ("REDIS_ADDR", "ignored:6379"),
            ],
            Ok(Topology::Sentinel),
        ),
        (
            &[
                ("REDIS_CLUSTER_NODES", "n1:7000"),
                ("REDIS_SENTINEL_ADDRS", "s1:26379"),
                ("REDIS_SENTINEL_MASTER", "tk-state"),
            ],
            Err(
                "REDIS_CLUSTER_NODES and REDIS_SENTINEL_ADDRS cannot be used together: \
                 choose one topology",
            ),
        ),
        (
            &[("REDIS_CLUSTER_NODES", "n1:7000"), ("REDIS_DB", "3")],
            Err(
                "REDIS_CLUSTER_NODES and REDIS_DB cannot be used together: a Redis Cluster \
                 has only database 0, got REDIS_DB=3",
            ),
        ),
        (
            &[("REDIS_SENTINEL_ADDRS", "s1:26379")],
            Err("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set"),
        ),
        (
            &[
                ("REDIS_SENTINEL_ADDRS", "s1:26379"),
                ("REDIS_SENTINEL_MASTER", "  "),
            ],
            Err("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set"),
        ),
        (
            &[("REDIS_SENTINEL_MASTER", "tk-state")],
            Err("REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_MASTER is set"),
        ),
        (
            &[("REDIS_SENTINEL_PASSWORD", "s3cret")],
            Err("REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_PASSWORD is set"),
        ),
        (
            &[
                ("REDIS_CLUSTER_NODES", "n1:7000"),
                ("REDIS_SENTINEL_MASTER", "tk-state"),
            ],
            Err("REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_MASTER is set"),
        ),
        (
            // Unset (blank) lists select nothing.
            &[("REDIS_CLUSTER_NODES", " "), ("REDIS_SENTINEL_ADDRS", "")],
            Ok(Topology::Standalone),
        ),
    ];
    for (env, expected) in cases {
        let built = lookup(env);
        match (built, expected) {
            (Ok(config), Ok(topology)) => {
                assert_eq!(config.topology(), *topology, "{env:?}");
                // The builder agrees.
                assert_eq!(config.to_builder().build().unwrap(), config, "{env:?}");
            }
            (Err(err), Err(message)) => {
                assert!(err.to_string().starts_with(message), "{env:?}: {err}");
            }
            (got, _) => panic!("{env:?}: {got:?}"),
        }
    }
}

#[test]
fn topology_errors_are_typed() {
    let conflict = lookup(&[
        ("REDIS_CLUSTER_NODES", "n:1"),
        ("REDIS_SENTINEL_ADDRS", "s:1"),
    ]);
    assert!(matches!(
        conflict,
        Err(ConfigError::Conflict {
            first: "REDIS_CLUSTER_NODES",
            second: "REDIS_SENTINEL_ADDRS",
            ..
        })
    ));
    let db = lookup(&[("REDIS_CLUSTER_NODES", "n:1"), ("REDIS_DB", "1")]);
    assert!(matches!(
        db,
        Err(ConfigError::Conflict {
            first: "REDIS_CLUSTER_NODES",
            second: "REDIS_DB",
            ..
        })
    ));
    let missing = lookup(&[("REDIS_SENTINEL_ADDRS", "s:1")]);
    assert_eq!(
        missing,
        Err(ConfigError::Missing {
            variable: "REDIS_SENTINEL_MASTER",
            required_by: "REDIS_SENTINEL_ADDRS",
        })
    );
    // A malformed value is reported before any combination.
    let malformed = lookup(&[
        ("REDIS_CLUSTER_NODES", "n"),
        ("REDIS_SENTINEL_ADDRS", "s:1"),
    ]);
    assert!(matches!(
        malformed,
        Err(ConfigError::Invalid {
            variable: "REDIS_CLUSTER_NODES",
            ..
        })
    ));
}

#[test]
fn sentinel_settings() {
    let config = lookup(&[
        ("REDIS_SENTINEL_ADDRS", "sentinel-1:26379, sentinel-2:26380"),
        ("REDIS_SENTINEL_MASTER", " tk-state\n"),
        ("REDIS_SENTINEL_PASSWORD", " s3 cret "),
        ("REDIS_PASSWORD", "redis-pw"),
    ])
    .unwrap();
    assert_eq!(config.sentinel_master(), Some("tk-state"));
    // Taken verbatim, like REDIS_PASSWORD.
    assert_eq!(config.sentinel_password(), Some(" s3 cret "));
    assert_eq!(config.password(), Some("redis-pw"));
    assert_eq!(config.sentinel_addrs()[1].port(), 26380);
    let sentinel = config.sentinel_connection_info(&config.sentinel_addrs()[0]);
    assert_eq!(
        sentinel.addr(),
        &ConnectionAddr::Tcp("sentinel-1".into(), 26379)
    );
    assert_eq!(sentinel.redis_settings().password(), Some(" s3 cret "));
    assert_eq!(sentinel.redis_settings().db(), 0);
    for bad in ["tk state", "tk\tstate", "tk\u{7}"] {
        let err = lookup(&[
            ("REDIS_SENTINEL_ADDRS", "s:1"),
            ("REDIS_SENTINEL_MASTER", bad),
        ])
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { variable: "REDIS_SENTINEL_MASTER", ref reason, .. } if reason.contains("invalid character")),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn builder_topologies() {
    let cluster = Config::builder()
        .cluster_nodes(["n1:7000", "n2:7001,n3:7002"])
        .password("pw")
        .build()
        .unwrap();
    assert_eq!(cluster.topology(), Topology::Cluster);
    assert_eq!(
        addr_strings(cluster.cluster_nodes()),
        ["n1:7000", "n2:7001", "n3:7002"]
    );
    assert_eq!(cluster.to_builder().build().unwrap(), cluster);
    // An empty list unsets.
    let unset = cluster
        .to_builder()
        .cluster_nodes(Vec::<String>::new())
        .build()
        .unwrap();
    assert_eq!(unset.topology(), Topology::Standalone);

    let sentinel = Config::builder()
        .sentinel_addrs(vec!["s1:26379".to_owned()])
        .sentinel_master("tk-state")
        .sentinel_password("spw")
        .db(4)
        .build()
        .unwrap();
    assert_eq!(sentinel.topology(), Topology::Sentinel);
    assert_eq!(sentinel.sentinel_master(), Some("tk-state"));
    assert_eq!(sentinel.sentinel_password(), Some("spw"));
    assert_eq!(sentinel.to_builder().build().unwrap(), sentinel);
    let unset = sentinel
        .to_builder()
        .sentinel_addrs([""])
        .sentinel_master("")
        .sentinel_password("")
        .build()
        .unwrap();
    assert_eq!(unset.topology(), Topology::Standalone);
    assert_eq!(unset.sentinel_password(), None);

    // The builder's errors name the variables, like the environment's.
    for (builder, expected) in [
        (
            Config::builder().cluster_nodes(["n1:7000", ""]),
            "invalid REDIS_CLUSTER_NODES=\"n1:7000,\": item 2 is empty",
        ),
        (
            Config::builder()
                .sentinel_addrs(["s1"])
                .sentinel_master("m"),
            "invalid REDIS_SENTINEL_ADDRS=\"s1\": item 1 \"s1\": missing port",
        ),
        (
            Config::builder()
                .sentinel_addrs(["s1:1"])
                .sentinel_master("a b"),
            "invalid REDIS_SENTINEL_MASTER=\"a b\": invalid character ' '",
        ),
        (
            Config::builder()
                .cluster_nodes(["n:1"])
                .sentinel_addrs(["s:1"]),
            "REDIS_CLUSTER_NODES and REDIS_SENTINEL_ADDRS cannot be used together",
        ),
        (
            Config::builder().cluster_nodes(["n:1"]).db(1),
            "REDIS_CLUSTER_NODES and REDIS_DB cannot be used together",
        ),
        (
            Config::builder().sentinel_addrs(["s:1"]),
            "REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set",
        ),
        (
            Config::builder().sentinel_master("m"),
            "REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_MASTER is set",
        ),
        (
            Config::builder().sentinel_password("p"),
            "REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_PASSWORD is set",
        ),
    ] {
        let err = builder.build().unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
    }
}

#[test]
fn cluster_client_settings() {
    let config = Config::builder()
        .cluster_nodes(["n1:7000", "n2:7001"])
        .password("pw")
        .dial_timeout(ms(700))
        .read_timeout(ms(800))
        .pool_size(7)
        .build()
        .unwrap();
    // No getters on the builder: look at its Debug output.
    let debug = format!("{:?}", config.cluster_builder());
    for expected in [
        "number_of_retries: 0",
        "connection_timeout: Some(700ms)",
        "response_timeout: Some(800ms)",
        "connection_concurrency_limit: Some(7)",
        "\"n1\", 7000",
        "\"n2\", 7001",
    ] {
        assert!(debug.contains(expected), "{expected}: {debug}");
    }
    assert!(!debug.contains("\"pw\""), "{debug}");
    let info = config.connection_info_for(&config.cluster_nodes()[0]);
    assert_eq!(info.redis_settings().password(), Some("pw"));
    assert_eq!(info.redis_settings().db(), 0);
}

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

#[test]
fn builder_sets_every_field() {
    let config = Config::builder()
        .addr("redis:6379")
        .cache_addr("cache:6380")
        .tls(true)
        .password("pw")
        .db(1)
        .pool_size(5)
        .dial_timeout(secs(1))
        .read_timeout(ms(200))
        .write_timeout(ms(300))
        .sessions_enabled(false)
        .cache_enabled(false)
        .ratelimit_enabled(false)
        .build()
        .unwrap();
    assert_eq!(config.addr().to_string(), "redis:6379");
    assert_eq!(config.cache_addr().unwrap().to_string(), "cache:6380");
    assert!(config.tls());
    assert_eq!(config.password(), Some("pw"));
    assert_eq!(config.db(), 1);
    assert_eq!(config.pool_size(), 5);
    assert_eq!(config.dial_timeout(), secs(1));
    assert_eq!(config.read_timeout(), ms(200));
    assert_eq!(config.write_timeout(), ms(300));
    assert!(!config.sessions_enabled());
    assert!(!config.cache_enabled());
    assert!(!config.ratelimit_enabled());
    // And back.
    assert_eq!(config.to_builder().build().unwrap(), config);
    let unset = config
        .to_builder()
        .cache_addr("")
        .password("")
        .build()
        .unwrap();
    assert_eq!(unset.cache_addr(), None);
    assert_eq!(unset.password(), None);
}

#[test]
fn builder_validation() {
    let err = Config::builder().pool_size(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid REDIS_POOL_SIZE=\"0\": expected a whole number of at least 1"
    );
    for (variable, builder) in [
        (
            vars::DIAL_TIMEOUT,
            Config::builder().dial_timeout(Duration::ZERO),
        ),
        (
            vars::READ_TIMEOUT,
            Config::builder().read_timeout(Duration::ZERO),
        ),
        (
            vars::WRITE_TIMEOUT,
            Config::builder().write_timeout(Duration::ZERO),
        ),
    ] {
        match builder.build().unwrap_err() {
            ConfigError::Invalid {
                variable: named,
                value,
                reason,
            } => {
                assert_eq!(named, variable);
                assert_eq!(value, "0ns");
                assert!(reason.contains("greater than zero"));
            }
            other => panic!("{other:?}"),
        }
    }
    let err = Config::builder().addr("redis").build().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid REDIS_ADDR=\"redis\": missing port"),
        "{err}"
    );
    let err = Config::builder().cache_addr("cache:x").build().unwrap_err();
    assert!(
        matches!(err, ConfigError::Invalid { variable: "REDIS_CACHE_ADDR", ref value, .. } if value == "cache:x"),
        "{err:?}"
    );
    assert!(Config::builder()
        .pool_size(1)
        .dial_timeout(Duration::from_nanos(1))
        .build()
        .is_ok());
}

#[test]
fn debug_never_shows_the_password() {
    let config = Config::builder().password("hunter2").build().unwrap();
    let debug = format!("{config:?} {:?}", config.to_builder());
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("password: Some(SecretBox<str>([REDACTED]))"),
        "{debug}"
    );
    assert!(debug.contains("127.0.0.1:6379"), "{debug}");
    let sentinel = Config::builder()
        .sentinel_addrs(["s1:26379", "s2:26379"])
        .sentinel_master("tk-state")
        .sentinel_password("swordfish")
        .build()
        .unwrap();
    let debug = format!("{sentinel:?} {:?}", sentinel.to_builder());
    assert!(!debug.contains("swordfish"), "{debug}");
    assert!(
        debug.contains("sentinel_password: Some(SecretBox<str>([REDACTED]))"),
        "{debug}"
    );
    assert!(debug.contains(r#"["s1:26379", "s2:26379"]"#), "{debug}");
    assert!(
        debug.contains(r#"sentinel_master: Some("tk-state")"#),
        "{debug}"
    );
    assert!(vars::is_secret(vars::SENTINEL_PASSWORD));
    assert!(vars::is_secret(vars::PASSWORD));
    assert!(!vars::is_secret(vars::SENTINEL_MASTER));
}

// ---- connection settings ---------------------------------------------

#[test]
fn connection_info() {
    let config = Config::builder()
        .addr("redis:6380")
        .cache_addr("[::1]:7000")
        .password("pw")
        .db(4)
        .build()
        .unwrap();
    let info = config.connection_info();
    assert_eq!(info.addr(), &ConnectionAddr::Tcp("redis".into(), 6380));
    assert_eq!(info.redis_settings().password(), Some("pw"));
    assert_eq!(info.redis_settings().db(), 4);
    assert_eq!(info.redis_settings().username(), None);
    let cache = config.cache_connection_info();
    assert_eq!(cache.addr(), &ConnectionAddr::Tcp("::1".into(), 7000));
    assert_eq!(cache.redis_settings().password(), Some("pw"));
    assert_eq!(cache.redis_settings().db(), 4);
    // Without REDIS_CACHE_ADDR the cache uses the main address.
    let shared = Config::default().cache_connection_info();
    assert_eq!(
        shared.addr(),
        &ConnectionAddr::Tcp("127.0.0.1".into(), 6379)
    );
    assert_eq!(shared.redis_settings().password(), None);
}

#[test]
fn tls_is_recorded_in_the_connection_info() {
    let config = Config::from_url("rediss://redis:6379").unwrap();
    assert!(matches!(
        config.connection_info().addr(),
        ConnectionAddr::TcpTls { host, port: 6379, insecure: false, .. } if host == "redis"
    ));
    assert!(matches!(
        config.cache_connection_info().addr(),
        ConnectionAddr::TcpTls { .. }
    ));
}

#[test]
fn manager_config_applies_timeouts_and_pool_size() {
    let config = Config::builder()
        .dial_timeout(ms(700))
        .read_timeout(ms(800))
        .pool_size(7)
        .build()
        .unwrap();
    let manager = config.manager_config();
    assert_eq!(manager.connection_timeout(), Some(ms(700)));
    assert_eq!(manager.response_timeout(), Some(ms(800)));
    // No getter for the concurrency limit: look at the Debug output.
    let debug = format!("{manager:?}");
    assert!(debug.contains("concurrency_limit: Some(7)"), "{debug}");
}

#[tokio::test]
async fn connecting_with_tls_fails_clearly_without_tls_support() {
    let config = Config::from_url("rediss://:pw@127.0.0.1:1/0").unwrap();
    if config.connection_info().addr().is_supported() {
        // Some other crate enabled the redis crate's TLS support.
        return;
    }
    let cluster = config
        .to_builder()
        .cluster_nodes(["127.0.0.1:1"])
        .build()
        .unwrap();
    let sentinel = config
        .to_builder()
        .sentinel_addrs(["127.0.0.1:1"])
        .sentinel_master("m")
        .build()
        .unwrap();
    for result in [
        config.connect().await,
        config.connect_cache().await,
        cluster.connect().await,
        sentinel.connect().await,
    ] {
        match result {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("TLS"), "{message}");
                assert!(message.contains("127.0.0.1:1"), "{message}");
                assert!(!message.contains("pw"), "{message}");
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected without TLS"),
        }
    }
}

/// A local port with (very likely) nothing listening.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn unreachable_cluster_or_sentinels_fail_transiently() {
    let node = format!("127.0.0.1:{}", closed_port());
    let quick = Config::builder()
        .dial_timeout(ms(500))
        .read_timeout(ms(500))
        .build()
        .unwrap();
    let cluster = quick
        .to_builder()
        .cluster_nodes([node.as_str()])
        .build()
        .unwrap();
    let sentinel = quick
        .to_builder()
        .sentinel_addrs([node.as_str()])
        .sentinel_master("mymaster")
        .build()
        .unwrap();
    for config in [cluster, sentinel] {
        match config.connect().await {
            Err(err) => assert!(err.is_transient(), "{:?}: {err:?}", config.topology()),
            Ok(conn) => panic!("connected: {conn:?}"),
        }
    }
}

#[test]
fn new_error_messages() {
    assert_eq!(
        ConfigError::Missing {
            variable: vars::SENTINEL_MASTER,
            required_by: vars::SENTINEL_ADDRS
        }
        .to_string(),
        "REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set"
    );
    assert_eq!(
        ConfigError::Conflict {
            first: vars::CLUSTER_NODES,
            second: vars::DB,
            reason: "why".into()
        }
        .to_string(),
        "REDIS_CLUSTER_NODES and REDIS_DB cannot be used together: why"
    );
}

#[test]
fn percent_coding() {
    assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
    assert_eq!(percent_encode("a b@:/%"), "a%20b%40%3A%2F%25");
    assert_eq!(percent_encode("é"), "%C3%A9");
    assert_eq!(percent_decode("%C3%A9%20x").unwrap(), "é x");
    assert!(percent_decode("%4").is_err());
    assert!(percent_decode("%").is_err());
    assert!(percent_decode("%g0").is_err());
}

#[test]
fn tk_mode_defaults_to_auto_and_is_validated() {
    assert_eq!(Config::default().tk_mode(), crate::TkMode::Auto);
    assert_eq!(
        lookup(&[("REDIS_TK_MODE", " module ")]).unwrap().tk_mode(),
        crate::TkMode::Module
    );
    let err = lookup(&[("REDIS_TK_MODE", "lua")]).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Invalid {
            variable: vars::TK_MODE,
            value: "lua".to_owned(),
            reason: "expected auto, module or functions".to_owned(),
        }
    );
    let config = Config::builder()
        .tk_mode(crate::TkMode::Functions)
        .build()
        .unwrap();
    assert_eq!(config.tk_mode(), crate::TkMode::Functions);
    assert_eq!(config.to_builder().build().unwrap(), config);
}
