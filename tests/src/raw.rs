//! Raw commands for the integration suites: send a command given as a
//! slice of arguments, read the state back. One copy, shared by every
//! suite.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisError, ToRedisArgs, Value};

/// The command `args[0] args[1..]`.
pub fn command<A: ToRedisArgs>(args: &[A]) -> Cmd {
    let mut cmd = Cmd::new();
    for arg in args {
        cmd.arg(arg);
    }
    cmd
}

/// Sends a command that must succeed and returns its reply.
pub async fn query<T: FromRedisValue>(
    conn: &mut impl ConnectionLike,
    args: &[impl ToRedisArgs + std::fmt::Debug],
) -> T {
    command(args)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// An integer reply.
pub async fn int<A: ToRedisArgs + std::fmt::Debug>(
    conn: &mut impl ConnectionLike,
    args: &[A],
) -> i64 {
    query(conn, args).await
}

/// An array of integers.
pub async fn ints<A: ToRedisArgs + std::fmt::Debug>(
    conn: &mut impl ConnectionLike,
    args: &[A],
) -> Vec<i64> {
    query(conn, args).await
}

/// An error as the client saw it: "<CODE> <detail>".
pub fn error_text(e: &RedisError) -> String {
    format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""))
}

/// Sends a command; its reply, or its error text.
pub async fn outcome<A: ToRedisArgs>(
    conn: &mut impl ConnectionLike,
    args: &[A],
) -> Result<Value, String> {
    command(args)
        .query_async::<Value>(conn)
        .await
        .map_err(|e| error_text(&e))
}

/// Sends a command that must fail and returns its error text.
pub async fn error<A: ToRedisArgs + std::fmt::Debug>(
    conn: &mut impl ConnectionLike,
    args: &[A],
) -> String {
    match outcome(conn, args).await {
        Ok(value) => panic!("{args:?} should fail, replied {value:?}"),
        Err(text) => text,
    }
}

pub async fn dbsize(conn: &mut impl ConnectionLike) -> i64 {
    int(conn, &["DBSIZE"]).await
}

/// The key's absolute expiry in ms (-1: none, -2: no key).
pub async fn pexpiretime(conn: &mut impl ConnectionLike, key: &str) -> i64 {
    int(conn, &["PEXPIRETIME", key]).await
}

/// Every key with its value's digest (`DEBUG DIGEST-VALUE`: any type) and
/// absolute expiry: two snapshots are equal when nothing changed.
pub async fn snapshot(conn: &mut impl ConnectionLike) -> BTreeMap<String, (String, i64)> {
    let keys: Vec<String> = query(conn, &["KEYS", "*"]).await;
    let mut state = BTreeMap::new();
    for key in keys {
        let digest: Vec<String> = query(conn, &["DEBUG", "DIGEST-VALUE", &key]).await;
        let expiry = pexpiretime(conn, &key).await;
        state.insert(key, (digest.concat(), expiry));
    }
    state
}

/// Sends each command of `cases`, which must all fail with an error
/// starting with their expected text, and checks that none changed the
/// data (every key's value and expiry), that the server still answers and
/// that the module did not panic (module mode). Returns how many cases ran.
pub async fn assert_refused_changing_nothing<A: ToRedisArgs + std::fmt::Debug>(
    conn: &mut impl ConnectionLike,
    cases: &[(&[A], &str)],
) -> usize {
    let before = snapshot(conn).await;
    let mut failures = Vec::new();
    for (args, expected) in cases {
        match outcome(conn, args).await {
            Err(text) if text.starts_with(expected) => {}
            other => failures.push(format!("{args:?}: got {other:?}, want {expected:?}")),
        }
    }
    let after = snapshot(conn).await;
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\ndata changed: {}",
        failures.len(),
        failures.join("\n"),
        after != before
    );
    assert_eq!(after, before, "an error changed the data");
    let pong: String = query(conn, &["PING"]).await;
    assert_eq!(pong, "PONG");
    if crate::mode::module_mode() {
        let info = crate::harness::info_section(conn, "tk").await;
        assert_eq!(info.get("tk_panics").map(String::as_str), Some("0"));
    }
    cases.len()
}
