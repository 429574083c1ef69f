//! Tests of the harness itself. They use plain Redis commands only, so they
//! pass whatever commands the module offers (the module must still load).

use std::collections::HashMap;

use redis::aio::ConnectionLike;
use redis::Value;
use tk_redis_tests::{
    backend, debug_digest, info_section, wait_for_sync, Backend, Conn, Flavor, Server,
    CONTAINER_MODULE_PATH,
};

async fn set(conn: &mut Conn, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .expect("SET");
}

async fn get(conn: &mut impl ConnectionLike, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET")
}

async fn config_get(conn: &mut Conn, name: &str) -> String {
    let pair: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .expect("CONFIG GET");
    pair.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("CONFIG GET {name}: {pair:?}"))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// `MODULE LIST` as one `field -> value` map per module (RESP2 flat arrays or RESP3 maps).
async fn module_list(conn: &mut Conn) -> Vec<HashMap<String, Value>> {
    let modules: Vec<Value> = redis::cmd("MODULE")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("MODULE LIST");
    modules
        .into_iter()
        .map(|module| match module {
            Value::Map(pairs) => pairs
                .into_iter()
                .filter_map(|(k, v)| Some((text(&k)?, v)))
                .collect(),
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|pair| match pair {
                    [k, v] => Some((text(k)?, v.clone())),
                    _ => None,
                })
                .collect(),
            other => panic!("unexpected MODULE LIST entry: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn start_set_get() {
    let server = Server::start().await;
    assert_eq!(
        server.addr(),
        format!("{}:{}", server.host(), server.port())
    );
    assert_eq!(server.url(), format!("redis://{}/", server.addr()));

    let mut conn = server.conn().await;
    set(&mut conn, "greeting", "hello").await;
    assert_eq!(get(&mut conn, "greeting").await.as_deref(), Some("hello"));
    assert_eq!(get(&mut conn, "missing").await, None);

    // The manager and a client obtained from the server see the same data.
    let mut manager = server.manager().await;
    let value: Option<String> = redis::cmd("GET")
        .arg("greeting")
        .query_async(&mut manager)
        .await
        .expect("GET via manager");
    assert_eq!(value.as_deref(), Some("hello"));
    let mut other = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("client connection");
    assert_eq!(get(&mut other, "greeting").await.as_deref(), Some("hello"));

    let info = info_section(&mut conn, "server").await;
    assert!(info.contains_key("redis_version"), "{info:?}");
    assert!(
        server.log().contains("Ready to accept connections"),
        "{}",
        server.log()
    );
    assert!(server.dir().is_dir());
    if server.backend() == Backend::Local {
        assert_eq!(info["process_id"], server.pid().expect("pid").to_string());
        assert_eq!(info["tcp_port"], server.port().to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn default_and_extra_args_apply() {
    let server = Server::builder()
        .arg("--maxmemory", "10mb")
        .arg("maxmemory-policy", "allkeys-lru")
        .start()
        .await;
    let mut conn = server.conn().await;
    assert_eq!(config_get(&mut conn, "maxmemory").await, "10485760");
    assert_eq!(
        config_get(&mut conn, "maxmemory-policy").await,
        "allkeys-lru"
    );
    assert_eq!(config_get(&mut conn, "save").await, "");
    assert_eq!(config_get(&mut conn, "appendonly").await, "no");
    // DEBUG is enabled for local connections.
    let digest = debug_digest(&mut conn).await;
    assert_eq!(digest, "0".repeat(40));
    set(&mut conn, "k", "v").await;
    assert_ne!(debug_digest(&mut conn).await, digest);
    if server.backend() == Backend::Local {
        assert_eq!(
            config_get(&mut conn, "dir").await,
            server.dir().canonicalize().unwrap().to_string_lossy()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_run_side_by_side() {
    let (a, b, c) = tokio::join!(Server::start(), Server::start(), Server::start());
    let mut ports = vec![a.port(), b.port(), c.port()];
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{a:?} {b:?} {c:?}");
    for (i, server) in [&a, &b, &c].into_iter().enumerate() {
        set(&mut server.conn().await, "who", &i.to_string()).await;
    }
    for (i, server) in [&a, &b, &c].into_iter().enumerate() {
        assert_eq!(
            get(&mut server.conn().await, "who").await,
            Some(i.to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_receives_writes() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    let mut p = primary.conn().await;
    let mut r = replica.conn().await;

    set(&mut p, "replicated", "yes").await;
    for i in 0..100 {
        let _: () = redis::cmd("RPUSH")
            .arg("list")
            .arg(i)
            .query_async(&mut p)
            .await
            .expect("RPUSH");
    }
    wait_for_sync(&primary, &replica).await;

    assert_eq!(get(&mut r, "replicated").await.as_deref(), Some("yes"));
    let len: i64 = redis::cmd("LLEN")
        .arg("list")
        .query_async(&mut r)
        .await
        .expect("LLEN");
    assert_eq!(len, 100);
    let digest = debug_digest(&mut p).await;
    assert_ne!(digest, "0".repeat(40));
    assert_eq!(debug_digest(&mut r).await, digest);

    let role = info_section(&mut r, "replication").await;
    assert_eq!(role["role"], "slave");
    assert_eq!(role["master_link_status"], "up");

    // A second round: later writes arrive too.
    set(&mut p, "replicated", "again").await;
    wait_for_sync(&primary, &replica).await;
    assert_eq!(get(&mut r, "replicated").await.as_deref(), Some("again"));
    assert_eq!(debug_digest(&mut r).await, debug_digest(&mut p).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn aof_restart_keeps_key_and_expiry() {
    let mut server = Server::builder().aof(true).start().await;
    let mut conn = server.conn().await;
    assert_eq!(config_get(&mut conn, "appendonly").await, "yes");
    assert_eq!(config_get(&mut conn, "appendfsync").await, "always");

    set(&mut conn, "plain", "kept").await;
    let _: () = redis::cmd("SET")
        .arg("expiring")
        .arg("soon")
        .arg("PX")
        .arg(3_600_000)
        .query_async(&mut conn)
        .await
        .expect("SET PX");
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg("expiring")
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    assert!(expire_at > 0, "PEXPIRETIME = {expire_at}");
    let digest = debug_digest(&mut conn).await;
    let pid_before = server.pid();
    drop(conn);

    server.restart().await;

    if server.backend() == Backend::Local {
        assert_ne!(server.pid(), pid_before, "a new process runs");
    }
    let mut conn = server.conn().await;
    assert_eq!(get(&mut conn, "plain").await.as_deref(), Some("kept"));
    assert_eq!(get(&mut conn, "expiring").await.as_deref(), Some("soon"));
    let expire_after: i64 = redis::cmd("PEXPIRETIME")
        .arg("expiring")
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    assert_eq!(expire_after, expire_at);
    assert_eq!(debug_digest(&mut conn).await, digest);
    // The log spans both runs.
    assert!(
        server.log().matches("Ready to accept connections").count() >= 2,
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn module_is_loaded() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let modules = module_list(&mut conn).await;
    let tk = modules
        .iter()
        .find(|m| m.get("name").and_then(text).as_deref() == Some("tk"))
        .unwrap_or_else(|| panic!("module `tk` not in MODULE LIST: {modules:?}"));
    let path = tk.get("path").and_then(text).unwrap_or_default();
    match backend() {
        Backend::Local => assert_eq!(
            std::path::Path::new(&path),
            tk_redis_tests::module_path(),
            "{tk:?}"
        ),
        Backend::Docker => assert_eq!(path, CONTAINER_MODULE_PATH, "{tk:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_start_panics_with_the_log() {
    let outcome = tokio::spawn(async {
        Server::builder()
            .arg("--no-such-directive", "1")
            .start()
            .await
    })
    .await;
    let err = outcome.expect_err("a server with a bad directive must not start");
    assert!(err.is_panic(), "{err}");
    let payload = err.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains("did not start"), "{message}");
    if backend() == Backend::Local {
        // Redis 8 words it differently from 7.x and Valkey.
        let expected = Flavor::of_binary().unknown_directive_log();
        assert!(message.contains(expected), "{message}");
    }
}
