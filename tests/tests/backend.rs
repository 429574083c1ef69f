//! The client chooses the tk backend by itself (issue 16): the typed
//! clients work unchanged on a plain redis-server without the module (the
//! Functions library is loaded on first use), give the same results as
//! with the module, and `REDIS_TK_MODE` forces either backend.

use std::time::Duration;

use tk_redis::functions::{loaded_library_version, Backend, LIBRARY_VERSION};
use tk_redis::{Cache, Error, Lock, Quota, RateLimiter, RequestIdentity, SessionStore, TkMode};
use tk_redis_tests::harness::Server;
use tk_redis_tests::Conn;

/// A small scripted scenario through every typed client, as text to
/// compare between servers: only fields that do not depend on the time.
async fn scenario(conn: Conn, mode: TkMode) -> Vec<String> {
    let mut out = Vec::new();
    let limiter = RateLimiter::new(conn.clone()).with_tk_mode(mode);
    let quota = Quota::per_minute(2);
    for _ in 0..3 {
        let decision = limiter.check("user:1", &quota, 1).await.unwrap();
        out.push(format!("check {} {}", decision.allowed, decision.remaining));
    }
    out.push(format!(
        "reset {}",
        limiter.reset(&["user:1"]).await.unwrap()
    ));
    let decision = limiter.check("user:1", &quota, 1).await.unwrap();
    out.push(format!(
        "after reset {} {}",
        decision.allowed, decision.remaining
    ));
    assert_eq!(limiter.backend(), Some(expected(mode)));

    let store: SessionStore<String, _> = SessionStore::new(conn.clone()).with_tk_mode(mode);
    let (token, session) = store.create("alice", &"dark".to_owned()).await.unwrap();
    out.push(format!("session {} v{}", session.user, session.version));
    let (second, _) = store.create("alice", &"light".to_owned()).await.unwrap();
    let got = store.get(&token).await.unwrap().unwrap();
    out.push(format!("get {} v{}", got.data, got.version));
    out.push(format!("list {}", store.list("alice").await.unwrap().len()));
    out.push(format!(
        "destroy {}",
        store.destroy(&second, "alice").await.unwrap()
    ));
    out.push(format!(
        "gone {}",
        store.get(&second).await.unwrap().is_none()
    ));

    let cache = Cache::new(conn.clone()).with_tk_mode(mode);
    let identity = RequestIdentity::for_user("alice", "GET", "/items", [("page", "1")]);
    let ttl = Duration::from_secs(300);
    for value in ["v1", "v2"] {
        let got: String = cache
            .get_or_compute("alice", "http", &identity, ttl, || async move {
                Ok::<_, std::convert::Infallible>(value.to_owned())
            })
            .await
            .unwrap();
        out.push(format!("cache {got}"));
    }
    cache.invalidate_user("alice").await.unwrap();
    let got: String = cache
        .get_or_compute("alice", "http", &identity, ttl, || async {
            Ok::<_, std::convert::Infallible>("v3".to_owned())
        })
        .await
        .unwrap();
    out.push(format!("cache after invalidate {got}"));

    let locks = Lock::new(conn).with_tk_mode(mode);
    let mut guard = locks
        .try_acquire("job", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");
    out.push(format!("fence {}", guard.fence()));
    let busy = locks
        .try_acquire("job", Duration::from_secs(60))
        .await
        .unwrap();
    out.push(format!("busy {}", busy.is_none()));
    out.push(format!(
        "extend {}",
        guard.extend(Duration::from_secs(60)).await.unwrap()
    ));
    out.push(format!("release {}", guard.release().await.unwrap()));
    out
}

fn expected(mode: TkMode) -> Backend {
    match mode {
        TkMode::Functions => Backend::Library,
        _ => Backend::Module,
    }
}

#[tokio::test]
async fn auto_mode_works_unchanged_without_the_module_and_agrees_with_it() {
    let with_module = Server::start().await;
    let module_run = scenario(with_module.conn().await, TkMode::Auto).await;
    assert_eq!(
        loaded_library_version(&with_module.conn().await)
            .await
            .unwrap(),
        None,
        "the module is used: no library is loaded"
    );

    let plain = Server::builder().without_module().start().await;
    let mut plain_conn = plain.conn().await;
    assert_eq!(loaded_library_version(&plain_conn).await.unwrap(), None);
    // Same scenario, same client code, in auto mode: learnt as the library.
    let limiter = RateLimiter::new(plain_conn.clone());
    limiter
        .check("probe", &Quota::per_minute(1), 1)
        .await
        .unwrap();
    assert_eq!(limiter.backend(), Some(Backend::Library));
    let library_run = scenario_on_library(plain_conn.clone()).await;
    assert_eq!(library_run, module_run);
    assert_eq!(
        loaded_library_version(&plain_conn)
            .await
            .unwrap()
            .as_deref(),
        Some(LIBRARY_VERSION)
    );
    // Through FCALL only: the server never saw a TK.* command.
    assert!(plain.command_stats("fcall").await.calls > 0);
    let _: () = redis::cmd("PING")
        .query_async(&mut plain_conn)
        .await
        .unwrap();
}

/// [`scenario`] in auto mode on a server without the module, where every
/// client learns the library.
async fn scenario_on_library(conn: Conn) -> Vec<String> {
    // `scenario` asserts the backend of the mode: in auto mode on a plain
    // server that is the library, so run it in functions mode for that
    // assertion, after checking that auto learns the same.
    let auto = Lock::new(conn.clone());
    let guard = auto
        .try_acquire("probe-lock", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("free");
    assert!(guard.release().await.unwrap());
    assert_eq!(auto.backend(), Some(Backend::Library));
    scenario(conn, TkMode::Functions).await
}

#[tokio::test]
async fn module_mode_on_a_plain_server_says_the_module_is_not_loaded() {
    let plain = Server::builder().without_module().start().await;
    let conn = plain.conn().await;
    let limiter = RateLimiter::new(conn.clone()).with_tk_mode(TkMode::Module);
    let err = limiter
        .check("k", &Quota::per_minute(1), 1)
        .await
        .unwrap_err();
    assert!(err.is_module_not_loaded(), "{err:?}");
    assert_eq!(loaded_library_version(&conn).await.unwrap(), None);
    assert_eq!(plain.command_stats("function").await.calls, 0);
}

#[tokio::test]
async fn functions_mode_on_a_module_server_calls_the_library() {
    let server = Server::start().await;
    let conn = server.conn().await;
    let fcalls = server.command_stats("fcall").await.calls;
    let run = scenario(conn.clone(), TkMode::Functions).await;
    assert!(run.iter().any(|line| line == "check false 0"), "{run:?}");
    assert!(server.command_stats("fcall").await.calls > fcalls + 10);
    assert_eq!(server.command_stats("tk.ratelimit").await.calls, 0);
    assert_eq!(server.command_stats("tk.session.create").await.calls, 0);
    assert_eq!(
        loaded_library_version(&conn).await.unwrap().as_deref(),
        Some(LIBRARY_VERSION)
    );
}

#[tokio::test]
async fn the_library_is_learnt_again_when_it_disappears() {
    let plain = Server::builder().without_module().start().await;
    let mut conn = plain.conn().await;
    let limiter = RateLimiter::new(conn.clone());
    let quota = Quota::per_minute(5);
    assert!(limiter.check("k", &quota, 1).await.unwrap().allowed);
    // An operator flushes the functions (or a failover lands on a server
    // without them): the next call loads the library again.
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let decision = limiter.check("k", &quota, 1).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 3);
}

#[tokio::test]
async fn an_acl_user_without_functions_gets_the_documented_error() {
    let plain = Server::builder().without_module().start().await;
    let mut admin = plain.conn().await;
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "app",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-fcall",
            "-fcall_ro",
            "-function",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let app = plain.conn_as("app", "pw").await;
    let err = RateLimiter::new(app)
        .check("k", &Quota::per_minute(1), 1)
        .await
        .unwrap_err();
    match &err {
        Error::NoBackend { code, message } => {
            assert_eq!(code, "NOPERM");
            assert!(message.contains("+fcall +fcall_ro"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn health_reports_the_backend_in_use() {
    use tk_redis::health::{check, HealthOptions, Status};

    let with_module = Server::start().await;
    let health = check(&with_module.conn().await, &HealthOptions::default()).await;
    assert_eq!(health.status, Status::Ok, "{health:?}");
    assert_eq!(health.backend, Some(Backend::Module));
    assert_eq!(health.library_version, None);

    let plain = Server::builder().without_module().start().await;
    let conn = plain.conn().await;
    // Nothing loaded yet: degraded, saying the first call will load it.
    let before = check(&conn, &HealthOptions::default()).await;
    assert_eq!(before.status, Status::Degraded);
    assert_eq!(before.backend, None);
    assert!(
        before
            .problems
            .iter()
            .any(|p| p.contains("Functions library")),
        "{before:?}"
    );
    RateLimiter::new(conn.clone())
        .check("k", &Quota::per_minute(1), 1)
        .await
        .unwrap();
    let after = check(&conn, &HealthOptions::default()).await;
    assert_eq!(after.status, Status::Ok, "{after:?}");
    assert_eq!(after.backend, Some(Backend::Library));
    assert_eq!(after.library_version.as_deref(), Some(LIBRARY_VERSION));
    assert_eq!(after.module_version, None);
}

/// On a Redis Cluster, FCALL is routed by its first key (the redis crate
/// routes FCALL by the key after numkeys) and FUNCTION LOAD reaches every
/// primary: functions mode works for keys on every node.
#[tokio::test]
async fn functions_mode_on_a_cluster_loads_every_primary_and_routes_by_key() {
    let cluster = tk_redis_tests::topology::Cluster::start_with(3, 0).await;
    library_on_every_primary(&cluster, TkMode::Functions).await;
}

/// A cluster without the module (and without the library): auto mode finds
/// no module, loads the library on every primary and routes each FCALL by
/// its first key.
#[tokio::test]
async fn auto_mode_on_a_cluster_without_the_module_loads_every_primary() {
    let cluster = tk_redis_tests::topology::Cluster::start_without_module(3).await;
    library_on_every_primary(&cluster, TkMode::Auto).await;
}

/// Rate limits on keys of every primary and a lock through `mode`: the
/// library serves them, loaded on every primary, and the module none.
async fn library_on_every_primary(cluster: &tk_redis_tests::topology::Cluster, mode: TkMode) {
    let conn = tk_redis::Config::builder()
        .cluster_nodes(cluster.seed_addrs())
        .tk_mode(mode)
        .build()
        .unwrap();
    let mode = conn.tk_mode();
    let conn = conn.connect().await.unwrap();
    let limiter = RateLimiter::new(conn.clone()).with_tk_mode(mode);
    let quota = Quota::per_minute(2);
    // Keys on every primary.
    let mut keys = Vec::new();
    let mut primaries = std::collections::BTreeSet::new();
    for index in 0.. {
        let key = format!("rl:{index}");
        if primaries.insert(cluster.master_of_key(&key).await) {
            keys.push(key);
        }
        if primaries.len() == 3 {
            break;
        }
    }
    for key in &keys {
        assert!(limiter.check(key, &quota, 1).await.unwrap().allowed);
        assert!(limiter.check(key, &quota, 1).await.unwrap().allowed);
        assert!(!limiter.check(key, &quota, 1).await.unwrap().allowed);
    }
    assert_eq!(limiter.backend(), Some(Backend::Library));
    // RATELIMIT.ALL with keys sharing a slot, and a lock (two keys).
    let all = limiter
        .check_all(&[("{t}a", quota), ("{t}b", quota)], 1)
        .await;
    assert!(all.is_ok(), "{all:?}");
    let locks = Lock::new(conn).with_tk_mode(mode);
    let guard = locks
        .try_acquire("job", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");
    assert!(guard.release().await.unwrap());
    for primary in primaries {
        let node = cluster.node_conn(primary).await;
        assert_eq!(
            loaded_library_version(&node).await.unwrap().as_deref(),
            Some(LIBRARY_VERSION),
            "primary {primary}"
        );
        assert!(cluster.node(primary).command_stats("fcall").await.calls >= 3);
        assert_eq!(
            cluster
                .node(primary)
                .command_stats("tk.ratelimit")
                .await
                .calls,
            0
        );
    }
}

/// A user allowed only the module's commands (the README's `+@tk`; named
/// one by one, as Redis 7.0 has no module ACL categories) may use neither
/// `COMMAND` nor the library: auto mode then uses the module.
#[tokio::test]
async fn a_user_confined_to_the_module_commands_uses_the_module() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "tkonly",
            "reset",
            "on",
            ">pw",
            "~*",
            "+tk.ratelimit",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let limiter = RateLimiter::new(server.conn_as("tkonly", "pw").await);
    let quota = Quota::per_minute(1);
    assert!(limiter.check("k", &quota, 1).await.unwrap().allowed);
    assert!(!limiter.check("k", &quota, 1).await.unwrap().allowed);
    assert_eq!(limiter.backend(), Some(Backend::Module));
}
