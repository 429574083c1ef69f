use super::*;

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
