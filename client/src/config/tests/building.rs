use super::*;

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
