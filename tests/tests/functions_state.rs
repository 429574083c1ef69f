//! The tk Functions library (`client/lua/tk.lua`) against real servers, for
//! the commands that keep state across keys: sessions (and their per-user
//! index). Like `functions.rs`: the same calls through the module and
//! through `FCALL`, compared; state written by one read by the other.
//!
//! Time: the module and the library read the clock at different instants,
//! so the instants a reply carries (created, last_active, expires_at,
//! max_expires_at: Unix ms, above 10^12) may differ by the time between
//! the two calls. Comparisons allow twice the time the whole run took, as
//! measured with the server's own `TIME`; every other value, and every
//! error text, must be identical. Durations are hours, so no session dies
//! during a test: dead sessions are written by hand with past times.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::Value;
use tk_redis_tests::functions::{
    assert_fcalls_refused, functions_server, module_and_library_server, query, send,
    server_time_us, sorted_keys, Call, Pair, Reply, Via,
};
use tk_redis_tests::harness::{debug_digest, wait_for_sync, wait_until, Server};
use tk_redis_tests::Conn;

// ---- helpers -------------------------------------------------------------------

/// Integers from 10^12 on are Unix ms (2001 onwards): compared within
/// `tolerance_ms`; anything else exactly.
fn same_value(module: &Value, library: &Value, tolerance_ms: i64) -> bool {
    const INSTANT: i64 = 1_000_000_000_000;
    match (module, library) {
        (Value::Int(a), Value::Int(b)) if *a >= INSTANT && *b >= INSTANT => {
            (a - b).abs() <= tolerance_ms
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b, tolerance_ms))
        }
        _ => module == library,
    }
}

fn same_reply(module: &Reply, library: &Reply, tolerance_ms: i64) -> bool {
    match (module, library) {
        (Ok(a), Ok(b)) => same_value(a, b, tolerance_ms),
        _ => module == library,
    }
}

/// Runs `call` on both servers and asserts the same reply (instants within
/// `tolerance_ms`); returns the module's.
async fn same_within(pair: &mut Pair, call: &Call, tolerance_ms: i64) -> Reply {
    let (module, library) = pair.run(call).await;
    assert!(
        same_reply(&module, &library, tolerance_ms),
        "{call:?}\nmodule:  {module:?}\nlibrary: {library:?}"
    );
    module
}

/// Everything stored, without the instants: each key's type, its fields
/// (hashes, times left out) or members (sorted sets, scores left out) or
/// value (strings), and whether it expires. Comparable between the two
/// servers.
async fn timeless_state(conn: &mut Conn) -> Vec<String> {
    const TIMES: [&str; 4] = ["created", "last_active", "expires_at", "max_expires_at"];
    let mut out = Vec::new();
    for key in sorted_keys(conn).await {
        let kind: String = query(conn, &["TYPE", &key]).await;
        let ttl: i64 = query(conn, &["PTTL", &key]).await;
        let content = match kind.as_str() {
            "hash" => {
                let mut fields: Vec<(String, Vec<u8>)> = query(conn, &["HGETALL", &key]).await;
                fields.retain(|(field, _)| !TIMES.contains(&field.as_str()));
                fields.sort();
                format!("{fields:?}")
            }
            "zset" => {
                let members: Vec<Vec<u8>> = query(conn, &["ZRANGE", &key, "0", "-1"]).await;
                format!("{members:?}")
            }
            "string" => {
                let value: Vec<u8> = query(conn, &["GET", &key]).await;
                format!("{value:?}")
            }
            _ => String::new(),
        };
        out.push(format!("{key} {kind} expires={} {content}", ttl >= 0));
    }
    out
}

/// The tolerance for a run that started at `start_us` (server time).
async fn tolerance_since(conn: &mut Conn, start_us: i64) -> i64 {
    2 * (server_time_us(conn).await - start_us) / 1000 + 5
}

const ALICE: &str = "tk:si:{t}:alice";
const BOB: &str = "tk:si:{t}:bob";

fn session(id: usize) -> String {
    format!("tk:s:{{t}}:{id}")
}

/// `HSET` of a session by hand: `fields` over a valid live one of `user`.
fn hand_session(key: &str, user: &str, fields: &[(&str, &str)]) -> Vec<String> {
    let far = "99999999999990";
    let mut all: Vec<(String, String)> = [
        ("user", user),
        ("data", "by hand"),
        ("created", "1000"),
        ("last_active", "1000"),
        ("expires_at", far),
        ("max_expires_at", far),
        ("version", "1"),
        ("idle", "3600000"),
    ]
    .iter()
    .map(|(f, v)| (f.to_string(), v.to_string()))
    .collect();
    for (field, value) in fields {
        match all.iter_mut().find(|(f, _)| f == field) {
            Some(slot) => slot.1 = value.to_string(),
            None => all.push((field.to_string(), value.to_string())),
        }
    }
    all.retain(|(_, v)| v != "<none>");
    let mut args = vec!["HSET".to_string(), key.to_string()];
    for (f, v) in all {
        args.extend([f, v]);
    }
    args
}

async fn both_owned(pair: &mut Pair, args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pair.both(&args).await;
}

// ---- sessions: arguments and refusals --------------------------------------------

/// Every malformed session call, and every refusal by state: the same
/// error text from both, nothing changed (DEBUG DIGEST on each server).
#[tokio::test]
async fn session_errors_are_the_modules() {
    let mut pair = Pair::start().await;
    let create = Call::new(
        "TK.SESSION.CREATE",
        &[&session(1), ALICE],
        &["alice", "1h", "d"],
    );
    assert!(pair.run(&create).await.0.is_ok());
    let create_bob = Call::new(
        "TK.SESSION.CREATE",
        &[&session(2), BOB],
        &["bob", "1h", "d"],
    );
    assert!(pair.run(&create_bob).await.0.is_ok());
    pair.both(&["SET", "tk:s:{t}:str", "x"]).await;
    pair.both(&["HSET", "tk:si:{t}:hash", "f", "v"]).await;
    pair.both(&["SET", "tk:si:{t}:carol", "x"]).await;
    let module_before = debug_digest(&mut pair.module).await;
    let library_before = debug_digest(&mut pair.library).await;
    let s1 = session(1);
    let s2 = session(2);
    let s9 = session(9);
    let long = "x".repeat(100);
    let cases: &[(&str, &[&str], &[&str])] = &[
        // Arity and options.
        ("TK.SESSION.CREATE", &[&s9, ALICE], &["alice", "1h"]),
        ("TK.SESSION.CREATE", &[&s9, &s9], &["alice", "1h", "d"]),
        ("TK.SESSION.CREATE", &[&s9, ALICE], &["", "1h", "d"]),
        ("TK.SESSION.CREATE", &[&s9, ALICE], &["alice", "0", "d"]),
        ("TK.SESSION.CREATE", &[&s9, ALICE], &["alice", "1d", "d"]),
        ("TK.SESSION.CREATE", &[&s9, ALICE], &["alice", "8761h", "d"]),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXLIFETIME"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXLIFETIME", "0"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXLIFETIME", "1h", "maxlifetime", "2h"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXSESSIONS", "0", "EVICT"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXSESSIONS", "10001", "EVICT"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXSESSIONS", "x", "EVICT"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXSESSIONS", "2"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXSESSIONS", "2", "DROP"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &[
                "alice",
                "1h",
                "d",
                "MAXSESSIONS",
                "1",
                "REJECT",
                "MAXSESSIONS",
                "2",
                "EVICT",
            ],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", &long],
        ),
        ("TK.SESSION.TOUCH", &[], &[]),
        ("TK.SESSION.TOUCH", &[&s1], &["IDLE"]),
        ("TK.SESSION.TOUCH", &[&s1], &["IDLE", "-1"]),
        ("TK.SESSION.TOUCH", &[&s1], &["MINGAP", "1.5s"]),
        ("TK.SESSION.TOUCH", &[&s1], &["IDLE", "1h", "IDLE", "1h"]),
        ("TK.SESSION.TOUCH", &[&s1], &["NOW"]),
        ("TK.SESSION.GET", &[&s1], &["x"]),
        ("TK.SESSION.SET", &[&s1], &[]),
        ("TK.SESSION.SET", &[&s1], &["d", "IFVERSION"]),
        ("TK.SESSION.SET", &[&s1], &["d", "IFVERSION", "x"]),
        ("TK.SESSION.SET", &[&s1], &["d", "IFVERSION", "-1"]),
        (
            "TK.SESSION.SET",
            &[&s1],
            &["d", "IFVERSION", "9223372036854775808"],
        ),
        (
            "TK.SESSION.SET",
            &[&s1],
            &["d", "IFVERSION", "00009223372036854775808"],
        ),
        ("TK.SESSION.SET", &[&s1], &["d", "IFVERSION", "1", "x"]),
        ("TK.SESSION.DESTROY", &[&s1], &[]),
        ("TK.SESSION.DESTROY", &[&s1, &s1], &[]),
        ("TK.SESSION.ROTATE", &[&s1, &s1, ALICE], &[]),
        ("TK.SESSION.ROTATE", &[&s1, ALICE, ALICE], &[]),
        ("TK.SESSION.LIST", &[ALICE], &["x"]),
        ("TK.SESSION.REVOKEALL", &[ALICE], &["EXCEPT"]),
        ("TK.SESSION.REVOKEALL", &[ALICE], &["BUT", &s1]),
        ("TK.SESSION.REVOKEALL", &[ALICE], &["EXCEPT", ALICE]),
        ("TK.SESSION.REVOKEALL", &[ALICE], &["EXCEPT", &s1, "x"]),
        // Key names.
        (
            "TK.SESSION.CREATE",
            &[&s9, "sessions:alice"],
            &["alice", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, "tk:si:{}:alice"],
            &["alice", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, "tk:si:{t}:"],
            &["alice", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &["tk:s:{u}:9", ALICE],
            &["alice", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &["tk:s:{t}:", ALICE],
            &["alice", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &["tk:s:{t}9", ALICE],
            &["alice", "1h", "d"],
        ),
        ("TK.SESSION.CREATE", &[&s9, ALICE], &["bob", "1h", "d"]),
        ("TK.SESSION.DESTROY", &[&s1, "tk:si:t:alice"], &[]),
        ("TK.SESSION.DESTROY", &["tk:s:{u}:1", ALICE], &[]),
        ("TK.SESSION.ROTATE", &[&s1, "tk:s:{u}:2", ALICE], &[]),
        ("TK.SESSION.ROTATE", &["x", &s9, ALICE], &[]),
        ("TK.SESSION.LIST", &["tk:si:{t}alice"], &[]),
        ("TK.SESSION.REVOKEALL", &["tk:ci:{t}"], &[]),
        ("TK.SESSION.REVOKEALL", &[ALICE], &["EXCEPT", "tk:s:{u}:1"]),
        // State: existing sessions, other types, another user's session.
        ("TK.SESSION.CREATE", &[&s1, ALICE], &["alice", "1h", "d"]),
        (
            "TK.SESSION.CREATE",
            &["tk:s:{t}:str", ALICE],
            &["alice", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, "tk:si:{t}:hash"],
            &["hash", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, "tk:si:{t}:carol"],
            &["carol", "1h", "d"],
        ),
        (
            "TK.SESSION.CREATE",
            &[&s9, ALICE],
            &["alice", "1h", "d", "MAXSESSIONS", "1", "REJECT"],
        ),
        ("TK.SESSION.TOUCH", &["tk:s:{t}:str"], &[]),
        ("TK.SESSION.GET", &["tk:s:{t}:str"], &[]),
        ("TK.SESSION.GET", &["tk:si:{t}:hash"], &[]),
        ("TK.SESSION.SET", &["tk:s:{t}:str"], &["d"]),
        ("TK.SESSION.SET", &[&s1], &["d", "IFVERSION", "2"]),
        ("TK.SESSION.SET", &[&s1], &["d", "IFVERSION", "0"]),
        ("TK.SESSION.DESTROY", &["tk:s:{t}:str", ALICE], &[]),
        ("TK.SESSION.DESTROY", &[&s1, "tk:si:{t}:hash"], &[]),
        ("TK.SESSION.ROTATE", &[&s1, &s2, ALICE], &[]),
        ("TK.SESSION.ROTATE", &[&s1, "tk:s:{t}:str", ALICE], &[]),
        ("TK.SESSION.ROTATE", &["tk:s:{t}:str", &s9, ALICE], &[]),
        ("TK.SESSION.ROTATE", &[&s1, &s9, "tk:si:{t}:carol"], &[]),
        ("TK.SESSION.ROTATE", &[&s2, &s9, ALICE], &[]),
        ("TK.SESSION.LIST", &["tk:si:{t}:carol"], &[]),
        ("TK.SESSION.REVOKEALL", &["tk:si:{t}:carol"], &[]),
    ];
    for (command, keys, args) in cases {
        let reply = pair.same(&Call::new(command, keys, args)).await;
        assert!(
            reply
                .as_ref()
                .is_err_and(|e| e.starts_with("ERR ") || e.starts_with("WRONGTYPE ")),
            "{command} {keys:?} {args:?}: {reply:?}"
        );
    }
    assert_eq!(debug_digest(&mut pair.module).await, module_before);
    assert_eq!(debug_digest(&mut pair.library).await, library_before);
}

/// Calls the library refuses because of how FCALL was used: keys outside
/// KEYS, or in the wrong number.
#[tokio::test]
async fn session_functions_take_their_keys_in_keys() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    let s1 = session(1);
    assert_fcalls_refused(
        &mut conn,
        &[
            (
                "tk_session_create",
                1,
                vec![s1.as_str(), ALICE, "alice", "1h", "d"],
                "ERR tk_session_create takes 2 keys",
            ),
            (
                "tk_session_touch",
                0,
                vec![s1.as_str()],
                "ERR tk_session_touch takes 1 key",
            ),
            (
                "tk_session_get",
                0,
                vec![s1.as_str()],
                "ERR tk_session_get takes 1 key",
            ),
            (
                "tk_session_set",
                2,
                vec![s1.as_str(), "d"],
                "ERR tk_session_set takes 1 key",
            ),
            (
                "tk_session_destroy",
                1,
                vec![s1.as_str(), ALICE],
                "ERR tk_session_destroy takes 2 keys",
            ),
            (
                "tk_session_rotate",
                2,
                vec![s1.as_str(), "tk:s:{t}:2", ALICE],
                "ERR tk_session_rotate takes 3 keys",
            ),
            (
                "tk_session_list",
                0,
                vec![ALICE],
                "ERR tk_session_list takes 1 key",
            ),
            (
                "tk_session_revokeall",
                2,
                vec![ALICE, "EXCEPT"],
                "ERR tk_session_revokeall takes 1 key",
            ),
        ],
    )
    .await;
}

// ---- sessions: stored data -------------------------------------------------------

/// Session hashes tk could not have written, wherever they are: refused as
/// WRONGTYPE when named by the call, foreign (unlisted, skipped, never
/// deleted) when listed in an index. Same replies as the module, and the
/// same keys left behind.
#[tokio::test]
async fn damaged_sessions_and_foreign_members_are_refused_like_the_module() {
    let mut pair = Pair::start().await;
    let start_us = server_time_us(&mut pair.module).await;
    let damaged: &[&[(&str, &str)]] = &[
        &[("user", "<none>")],
        &[("data", "<none>")],
        &[("created", "<none>")],
        &[("idle", "<none>")],
        &[("version", "0")],
        &[("version", "x")],
        &[("version", "+1")],
        &[("version", "1.0")],
        &[("created", "-1")],
        &[("created", "2000")],
        &[("expires_at", "99999999999999")],
        &[("max_expires_at", "9223372036854775808")],
        &[("idle", "18446744073709551615")],
        &[("version", "123456789012345678901")],
    ];
    for (index, fields) in damaged.iter().enumerate() {
        let key = format!("tk:s:{{t}}:bad{index}");
        both_owned(&mut pair, &hand_session(&key, "alice", fields)).await;
        // Listed in alice's index with a far score, so CREATE reads it.
        pair.both(&["ZADD", ALICE, "99999999999990", &key]).await;
    }
    // Unusual but valid: leading zeros, "-0", extra fields.
    both_owned(
        &mut pair,
        &hand_session(
            "tk:s:{t}:odd",
            "alice",
            &[("version", "007"), ("created", "-0"), ("extra", "x")],
        ),
    )
    .await;
    pair.both(&["ZADD", ALICE, "99999999999990", "tk:s:{t}:odd"])
        .await;
    // Foreign members: other names, another user's session, another type.
    both_owned(&mut pair, &hand_session("tk:s:{t}:bobs", "bob", &[])).await;
    pair.both(&["SET", "tk:s:{t}:string", "x"]).await;
    pair.both(&["SET", "config:prod", "secret"]).await;
    pair.both(&["SET", "tk:s:{u}:1", "other tag"]).await;
    for member in [
        "tk:s:{t}:bobs",
        "tk:s:{t}:string",
        "config:prod",
        "tk:s:{u}:1",
        "tk:c:{t}:x",
        "tk:s:{t}:",
        "tk:s:{t}:gone",
    ] {
        pair.both(&["ZADD", ALICE, "99999999999990", member]).await;
    }
    // Named by the call: WRONGTYPE, the module's text.
    for index in 0..damaged.len() {
        let key = format!("tk:s:{{t}}:bad{index}");
        for call in [
            Call::new("TK.SESSION.GET", &[&key], &[]),
            Call::new("TK.SESSION.TOUCH", &[&key], &[]),
            Call::new("TK.SESSION.SET", &[&key], &["d"]),
            Call::new("TK.SESSION.DESTROY", &[&key, ALICE], &[]),
            Call::new("TK.SESSION.ROTATE", &[&key, "tk:s:{t}:new", ALICE], &[]),
        ] {
            let reply = pair.same(&call).await;
            assert!(reply.is_err_and(|e| e.starts_with("WRONGTYPE")), "{call:?}");
        }
    }
    let tolerance = tolerance_since(&mut pair.module, start_us).await + 10_000;
    // The odd one is a session, live.
    let odd = Call::new("TK.SESSION.GET", &["tk:s:{t}:odd"], &[]);
    let reply = same_within(&mut pair, &odd, tolerance).await;
    assert!(matches!(reply, Ok(Value::Array(_))), "{reply:?}");
    // LIST skips every foreign member, and the gone one.
    let list = Call::new("TK.SESSION.LIST", &[ALICE], &[]);
    let listed = same_within(&mut pair, &list, tolerance).await;
    let Ok(Value::Array(listed)) = listed else {
        panic!("{listed:?}")
    };
    assert_eq!(listed.len(), 1, "only the odd one: {listed:?}");
    // CREATE unlists them (the gone one too), deletes none.
    let create = Call::new(
        "TK.SESSION.CREATE",
        &[&session(1), ALICE],
        &["alice", "1h", "d", "MAXSESSIONS", "2", "REJECT"],
    );
    let created = same_within(&mut pair, &create, tolerance).await;
    assert!(created.is_ok(), "only the odd one counts: {created:?}");
    assert_eq!(
        timeless_state(&mut pair.module).await,
        timeless_state(&mut pair.library).await
    );
    let members: Vec<String> = query(&mut pair.library, &["ZRANGE", ALICE, "0", "-1"]).await;
    assert_eq!(
        members,
        [session(1).as_str(), "tk:s:{t}:odd"].map(String::from)
    );
    for key in [
        "tk:s:{t}:bobs",
        "tk:s:{t}:string",
        "config:prod",
        "tk:s:{u}:1",
        "tk:s:{t}:bad0",
    ] {
        let exists: i64 = query(&mut pair.library, &["EXISTS", key]).await;
        assert_eq!(exists, 1, "{key} was deleted");
    }
    // REVOKEALL: the same, and both live sessions go.
    let far = "99999999999990";
    pair.both(&["ZADD", ALICE, far, "config:prod", far, "tk:s:{t}:bobs"])
        .await;
    let revoke = Call::new("TK.SESSION.REVOKEALL", &[ALICE], &[]);
    assert_eq!(pair.same(&revoke).await, Ok(Value::Int(2)));
    assert_eq!(
        timeless_state(&mut pair.module).await,
        timeless_state(&mut pair.library).await
    );
    let exists: i64 = query(
        &mut pair.library,
        &["EXISTS", "config:prod", "tk:s:{t}:bobs"],
    )
    .await;
    assert_eq!(exists, 2);
}

/// Where a double cannot hold a stored number, the library refuses it as
/// not a session (the header's documented range): 2^53 and above.
#[tokio::test]
async fn the_librarys_session_numbers_stop_below_2_pow_53() {
    let server = module_and_library_server().await;
    let mut conn = server.conn().await;
    for (value, library_reads) in [("9007199254740991", true), ("9007199254740992", false)] {
        let key = session(1);
        let args = hand_session(&key, "alice", &[("version", value)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _: Value = query(&mut conn, &args).await;
        let get = Call::new("TK.SESSION.GET", &[&key], &[]);
        assert!(get.run(&mut conn, Via::Module).await.is_ok());
        let library = get.run(&mut conn, Via::Library).await;
        assert_eq!(library.is_ok(), library_reads, "{value}: {library:?}");
        // At the library's last version, SET stops.
        if library_reads {
            let set = Call::new("TK.SESSION.SET", &[&key], &["d"]);
            assert_eq!(
                set.run(&mut conn, Via::Library).await,
                Err("ERR version limit reached".to_string())
            );
        }
        let _: () = query(&mut conn, &["DEL", &key]).await;
    }
}

// ---- sessions: behaviour, both implementations ----------------------------------------

/// The documented life of a session, call by call on both servers: caps
/// (EVICT by least recent activity, REJECT), versions, MINGAP, ROTATE,
/// DESTROY, dead sessions written by hand (deleted by writes, reported
/// gone by reads, never resurrected).
#[tokio::test]
async fn session_lifecycle_replies_like_the_module() {
    let mut pair = Pair::start().await;
    let start_us = server_time_us(&mut pair.module).await;
    // Distinct instants: eviction order depends on last_active.
    let step = || tokio::time::sleep(std::time::Duration::from_millis(3));
    let mut calls: Vec<Call> = Vec::new();
    let s = |i: usize| session(i);
    for i in 1..=3 {
        calls.push(Call::new(
            "TK.SESSION.CREATE",
            &[&s(i), ALICE],
            &["alice", "1h", &format!("data{i}"), "MAXLIFETIME", "10h"],
        ));
    }
    calls.extend([
        Call::new("TK.SESSION.TOUCH", &[&s(1)], &[]),
        Call::new("TK.SESSION.TOUCH", &[&s(1)], &["MINGAP", "1h"]),
        Call::new(
            "TK.SESSION.TOUCH",
            &[&s(2)],
            &["IDLE", "2h", "MINGAP", "1h"],
        ),
        Call::new(
            "TK.SESSION.CREATE",
            &[&s(4), ALICE],
            &["alice", "1h", "d4", "MAXSESSIONS", "3", "REJECT"],
        ),
        // Evicts s3 (least recently active), keeps s1 and s2.
        Call::new(
            "TK.SESSION.CREATE",
            &[&s(4), ALICE],
            &["alice", "1h", "d4", "MAXSESSIONS", "3", "EVICT"],
        ),
        Call::new("TK.SESSION.GET", &[&s(3)], &[]),
        Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        Call::new("TK.SESSION.SET", &[&s(1)], &["v2"]),
        Call::new("TK.SESSION.SET", &[&s(1)], &["v3", "IFVERSION", "2"]),
        Call::new("TK.SESSION.SET", &[&s(1)], &["v4", "IFVERSION", "2"]),
        Call::new("TK.SESSION.SET", &[&s(3)], &["gone"]),
        Call::new("TK.SESSION.TOUCH", &[&s(3)], &[]),
        Call::new("TK.SESSION.GET", &[&s(1)], &[]),
        Call::new("TK.SESSION.ROTATE", &[&s(1), &s(5), ALICE], &[]),
        Call::new("TK.SESSION.ROTATE", &[&s(1), &s(6), ALICE], &[]),
        Call::new("TK.SESSION.GET", &[&s(5)], &[]),
        Call::new("TK.SESSION.DESTROY", &[&s(2), ALICE], &[]),
        Call::new("TK.SESSION.DESTROY", &[&s(2), ALICE], &[]),
        Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        Call::new(
            "TK.SESSION.CREATE",
            &[&s(7), BOB],
            &["bob", "1h", "b", "MAXLIFETIME", "30m"],
        ),
        Call::new("TK.SESSION.LIST", &[BOB], &[]),
        Call::new("TK.SESSION.REVOKEALL", &[ALICE], &["EXCEPT", &s(5)]),
        Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        Call::new("TK.SESSION.REVOKEALL", &[ALICE], &[]),
        Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        Call::new("TK.SESSION.LIST", &["tk:si:{t}:nobody"], &[]),
    ]);
    let mut replies = Vec::new();
    for call in &calls {
        step().await;
        replies.push((call, pair.run(call).await));
    }
    // Dead sessions, written by hand: listed, past their idle expiry.
    let dead = hand_session(
        &s(8),
        "alice",
        &[("expires_at", "2000"), ("last_active", "1500")],
    );
    both_owned(&mut pair, &dead).await;
    pair.both(&["ZADD", ALICE, "99999999999990", &s(8)]).await;
    let dead_calls = [
        Call::new("TK.SESSION.GET", &[&s(8)], &[]),
        Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        Call::new("TK.SESSION.CREATE", &[&s(9), ALICE], &["alice", "1h", "d9"]),
        Call::new("TK.SESSION.GET", &[&s(8)], &[]),
    ];
    for call in &dead_calls {
        step().await;
        replies.push((call, pair.run(call).await));
    }
    let tolerance = tolerance_since(&mut pair.module, start_us).await;
    for (index, (call, (module, library))) in replies.iter().enumerate() {
        assert!(
            same_reply(module, library, tolerance),
            "call {index}: {call:?}\nmodule:  {module:?}\nlibrary: {library:?}"
        );
    }
    // Spot checks of what the module replied.
    let reply = |i: usize| replies[i].1 .0.clone();
    assert_eq!(reply(6), Err("ERR session limit reached".to_string()));
    assert_eq!(reply(8), Ok(Value::Nil), "s3 evicted");
    assert_eq!(
        reply(12),
        Err("ERR version mismatch: the session was changed since it was read".to_string())
    );
    assert_eq!(reply(13), Ok(Value::Nil));
    assert_eq!(reply(16), Ok(Value::Int(1)));
    assert_eq!(reply(17), Ok(Value::Nil));
    assert_eq!(reply(19), Ok(Value::Int(1)));
    assert_eq!(reply(20), Ok(Value::Int(0)));
    assert_eq!(reply(24), Ok(Value::Int(1)));
    assert_eq!(reply(26), Ok(Value::Int(1)));
    assert_eq!(reply(27), Ok(Value::Array(vec![])));
    let dead_create = replies.len() - 2;
    assert!(matches!(reply(dead_create), Ok(Value::Array(_))));
    assert_eq!(reply(replies.len() - 1), Ok(Value::Nil));
    assert_eq!(
        timeless_state(&mut pair.module).await,
        timeless_state(&mut pair.library).await
    );
}

/// The stored form is the module's, whichever writes it: the eight fields,
/// the key expiring at expires_at, the index scoring it by max_expires_at
/// and expiring with its last session.
#[tokio::test]
async fn sessions_are_stored_as_the_module_stores_them() {
    let server = module_and_library_server().await;
    let mut conn = server.conn().await;
    for (via, id) in [(Via::Module, 1), (Via::Library, 2)] {
        let key = session(id);
        let index = format!("tk:si:{{t}}:u{id}");
        let user = format!("u{id}");
        let create = Call::new(
            "TK.SESSION.CREATE",
            &[&key, &index],
            &[&user, "1h", "data", "MAXLIFETIME", "2h"],
        );
        let reply = create.run(&mut conn, via).await.unwrap();
        let Value::Array(items) = reply else {
            panic!("{reply:?}")
        };
        let int = |i: usize| match items[i] {
            Value::Int(n) => n,
            _ => panic!("{items:?}"),
        };
        let (created, expires_at, max_expires_at) = (int(2), int(4), int(5));
        assert_eq!(int(3), created);
        assert_eq!(expires_at, created + 3_600_000);
        assert_eq!(max_expires_at, created + 7_200_000);
        let mut fields: Vec<(String, String)> = query(&mut conn, &["HGETALL", &key]).await;
        fields.sort();
        let expected: Vec<(String, String)> = [
            ("created", created.to_string()),
            ("data", "data".to_string()),
            ("expires_at", expires_at.to_string()),
            ("idle", "3600000".to_string()),
            ("last_active", created.to_string()),
            ("max_expires_at", max_expires_at.to_string()),
            ("user", user.clone()),
            ("version", "1".to_string()),
        ]
        .map(|(f, v)| (f.to_string(), v))
        .to_vec();
        assert_eq!(fields, expected, "{via:?}");
        let pexpiretime: i64 = query(&mut conn, &["PEXPIRETIME", &key]).await;
        assert_eq!(pexpiretime, expires_at, "{via:?}");
        let score: i64 = query(&mut conn, &["ZSCORE", &index, &key]).await;
        assert_eq!(score, max_expires_at, "{via:?}");
        let index_expiry: i64 = query(&mut conn, &["PEXPIRETIME", &index]).await;
        assert_eq!(index_expiry, max_expires_at, "{via:?}");
    }
}

/// On a server with both, a session written by one is used by the other,
/// command by command.
#[tokio::test]
async fn sessions_move_between_module_and_library() {
    let server = module_and_library_server().await;
    let mut conn = server.conn().await;
    let s = |i: usize| session(i);
    let steps: Vec<(Call, Via, Option<Value>)> = vec![
        (
            Call::new("TK.SESSION.CREATE", &[&s(1), ALICE], &["alice", "1h", "a"]),
            Via::Module,
            None,
        ),
        (
            Call::new("TK.SESSION.CREATE", &[&s(2), ALICE], &["alice", "1h", "b"]),
            Via::Library,
            None,
        ),
        (
            Call::new("TK.SESSION.SET", &[&s(1)], &["a2", "IFVERSION", "1"]),
            Via::Library,
            Some(Value::Int(2)),
        ),
        (
            Call::new("TK.SESSION.SET", &[&s(2)], &["b2", "IFVERSION", "1"]),
            Via::Module,
            Some(Value::Int(2)),
        ),
        (
            Call::new("TK.SESSION.SET", &[&s(1)], &["a3", "IFVERSION", "2"]),
            Via::Module,
            Some(Value::Int(3)),
        ),
        (
            Call::new("TK.SESSION.ROTATE", &[&s(1), &s(3), ALICE], &[]),
            Via::Library,
            Some(Value::Int(1)),
        ),
        (
            Call::new("TK.SESSION.ROTATE", &[&s(2), &s(4), ALICE], &[]),
            Via::Module,
            Some(Value::Int(1)),
        ),
        (
            Call::new("TK.SESSION.DESTROY", &[&s(3), ALICE], &[]),
            Via::Module,
            Some(Value::Int(1)),
        ),
        (
            Call::new("TK.SESSION.CREATE", &[&s(5), ALICE], &["alice", "1h", "c"]),
            Via::Module,
            None,
        ),
        (
            Call::new("TK.SESSION.REVOKEALL", &[ALICE], &["EXCEPT", &s(5)]),
            Via::Library,
            Some(Value::Int(1)),
        ),
    ];
    for (call, via, expected) in &steps {
        let reply = call.run(&mut conn, *via).await;
        assert!(reply.is_ok(), "{call:?} via {via:?}: {reply:?}");
        if let Some(expected) = expected {
            assert_eq!(reply.as_ref().unwrap(), expected, "{call:?} via {via:?}");
        }
        // Every read agrees, whichever reads.
        for read in [
            Call::new("TK.SESSION.GET", &[&s(1)], &[]),
            Call::new("TK.SESSION.GET", &[&s(3)], &[]),
            Call::new("TK.SESSION.GET", &[&s(4)], &[]),
            Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        ] {
            let module = read.run(&mut conn, Via::Module).await;
            let library = read.run(&mut conn, Via::Library).await;
            assert_eq!(module, library, "{read:?} after {call:?}");
        }
    }
    // TOUCH by each: the other reads the same activity.
    let touch = Call::new("TK.SESSION.TOUCH", &[&s(5)], &["IDLE", "2h"]);
    let touched = touch.run(&mut conn, Via::Library).await.unwrap();
    let get = Call::new("TK.SESSION.GET", &[&s(5)], &[]);
    assert_eq!(get.run(&mut conn, Via::Module).await.unwrap(), touched);
    let touched = touch.run(&mut conn, Via::Module).await.unwrap();
    assert_eq!(get.run(&mut conn, Via::Library).await.unwrap(), touched);
}

// ---- sessions: differential ------------------------------------------------------

/// One random session call, or a plain write planting hostile data (a dead
/// session, a foreign member, another type): `Err(commands)` for the latter.
fn random_session_step(rng: &mut StdRng) -> Result<Call, Vec<Vec<String>>> {
    let users = ["alice", "bob"];
    let user = users[rng.random_range(0..2)];
    let index = format!("tk:si:{{t}}:{user}");
    let skey = |rng: &mut StdRng| session(rng.random_range(0..8));
    let owned = |command: &'static str, keys: Vec<String>, args: Vec<String>| Call {
        command,
        keys: keys.into_iter().map(String::into_bytes).collect(),
        args: args.into_iter().map(String::into_bytes).collect(),
    };
    let durations = ["1h", "90m", "7200000", "3h"];
    let duration = |rng: &mut StdRng| durations[rng.random_range(0..durations.len())].to_string();
    let call = match rng.random_range(0..100) {
        0..=21 => {
            let owner = if rng.random_bool(0.05) { "carol" } else { user };
            let mut args = vec![
                owner.to_string(),
                duration(rng),
                format!("d{}", rng.random_range(0..100)),
            ];
            if rng.random_bool(0.4) {
                args.extend([
                    "MAXLIFETIME".to_string(),
                    ["2h", "10h", "30m"][rng.random_range(0..3)].to_string(),
                ]);
            }
            if rng.random_bool(0.5) {
                args.extend([
                    "MAXSESSIONS".to_string(),
                    rng.random_range(1..=3).to_string(),
                    ["EVICT", "reject"][rng.random_range(0..2)].to_string(),
                ]);
            }
            owned("TK.SESSION.CREATE", vec![skey(rng), index], args)
        }
        22..=33 => {
            let mut args = Vec::new();
            if rng.random_bool(0.3) {
                args.extend(["IDLE".to_string(), duration(rng)]);
            }
            if rng.random_bool(0.4) {
                args.extend([
                    "MINGAP".to_string(),
                    ["1h", "1ms"][rng.random_range(0..2)].to_string(),
                ]);
            }
            owned("TK.SESSION.TOUCH", vec![skey(rng)], args)
        }
        34..=43 => owned("TK.SESSION.GET", vec![skey(rng)], vec![]),
        44..=55 => {
            let mut args = vec![format!("v{}", rng.random_range(0..100))];
            if rng.random_bool(0.5) {
                args.extend(["IFVERSION".to_string(), rng.random_range(0..4).to_string()]);
            }
            owned("TK.SESSION.SET", vec![skey(rng)], args)
        }
        56..=61 => owned("TK.SESSION.DESTROY", vec![skey(rng), index], vec![]),
        62..=69 => {
            let (old, new) = (skey(rng), skey(rng));
            owned("TK.SESSION.ROTATE", vec![old, new, index], vec![])
        }
        70..=79 => owned("TK.SESSION.LIST", vec![index], vec![]),
        80..=84 => {
            let args = if rng.random_bool(0.5) {
                vec!["EXCEPT".to_string(), skey(rng)]
            } else {
                vec![]
            };
            owned("TK.SESSION.REVOKEALL", vec![index], args)
        }
        85..=89 => {
            // A malformed call.
            let junk = [
                "IDLE",
                "MINGAP",
                "0",
                "-1",
                "1d",
                "x",
                "IFVERSION",
                "EXCEPT",
            ];
            let mut args = vec![duration(rng)];
            args.insert(
                rng.random_range(0..=1),
                junk[rng.random_range(0..junk.len())].to_string(),
            );
            owned("TK.SESSION.TOUCH", vec![skey(rng)], args)
        }
        _ => {
            let key = skey(rng);
            let far = "99999999999990".to_string();
            let listed = vec!["ZADD".into(), index.clone(), far.clone(), key.clone()];
            return Err(match rng.random_range(0..4) {
                // A dead session of this user (or the other), listed.
                0 => vec![
                    vec!["DEL".into(), key.clone()],
                    hand_session(&key, user, &[("expires_at", "2000")]),
                    listed,
                ],
                1 => {
                    let names = ["config:prod", "tk:s:{u}:1", "tk:s:{t}:x"];
                    let name = names[rng.random_range(0..3)].to_string();
                    vec![vec!["ZADD".into(), index, far, name]]
                }
                2 => vec![listed],
                _ => vec![vec!["SET".into(), key, "not a session".into()]],
            });
        }
    };
    Ok(call)
}

/// Random sequences of session calls (with hostile data planted between
/// them) give the module's replies, call by call, and leave the same data
/// behind, instants aside.
#[tokio::test]
async fn random_session_sequences_reply_like_the_module() {
    let mut pair = Pair::start().await;
    for seed in 0..5u64 {
        pair.both(&["FLUSHALL"]).await;
        let start_us = server_time_us(&mut pair.module).await;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut replies = Vec::new();
        for _ in 0..160 {
            // Each call at a later ms than the one before, on both servers:
            // eviction order follows last_active, ties by name.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            match random_session_step(&mut rng) {
                Ok(call) => {
                    let (module, library) = pair.run(&call).await;
                    replies.push((call, module, library));
                }
                Err(commands) => {
                    for args in commands {
                        both_owned(&mut pair, &args).await;
                    }
                }
            }
        }
        let tolerance = tolerance_since(&mut pair.module, start_us).await;
        let (mut sessions, mut nils, mut errors) = (0, 0, 0);
        for (index, (call, module, library)) in replies.iter().enumerate() {
            assert!(
                same_reply(module, library, tolerance),
                "seed {seed}, call {index}: {call:?}\nmodule:  {module:?}\nlibrary: {library:?}"
            );
            match module {
                Ok(Value::Array(items)) if items.len() == 7 => sessions += 1,
                Ok(Value::Nil) => nils += 1,
                Err(_) => errors += 1,
                _ => {}
            }
        }
        assert!(
            sessions > 15 && nils > 5 && errors > 10,
            "seed {seed}: {sessions} sessions, {nils} nil, {errors} errors"
        );
        assert_eq!(
            timeless_state(&mut pair.module).await,
            timeless_state(&mut pair.library).await,
            "seed {seed}"
        );
    }
}

// ---- sessions: replication and ACL -------------------------------------------------

/// A replica of a functions server reaches the primary's exact data after
/// session calls (effects replicate with absolute times), and serves the
/// read-only functions.
#[tokio::test]
async fn a_replica_has_the_primarys_sessions() {
    let primary = functions_server().await;
    let replica = Server::builder()
        .without_module()
        .replica_of(&primary)
        .start()
        .await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        match random_session_step(&mut rng) {
            Ok(call) => {
                let _ = call.run(&mut conn, Via::Library).await;
            }
            Err(commands) => {
                for args in commands {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let _: Value = query(&mut conn, &args).await;
                }
            }
        }
    }
    wait_for_sync(&primary, &replica).await;
    let mut replica_conn = replica.conn().await;
    let size: i64 = query(&mut conn, &["DBSIZE"]).await;
    assert!(size > 0);
    assert_eq!(
        debug_digest(&mut conn).await,
        debug_digest(&mut replica_conn).await
    );
    for call in [
        Call::new("TK.SESSION.LIST", &[ALICE], &[]),
        Call::new("TK.SESSION.GET", &[&session(1)], &[]),
    ] {
        let on_primary = send(&mut conn, &call.fcall_cmd(true)).await;
        let on_replica = send(&mut replica_conn, &call.fcall_cmd(true)).await;
        assert!(on_primary.is_ok());
        assert_eq!(on_primary, on_replica, "{call:?}");
    }
}

/// A listed key the caller's ACL user may not touch is foreign, for the
/// module (which asks the ACL) and for the library (whose call is refused,
/// caught, and taken as foreign): LIST skips it, REVOKEALL only unlists it.
#[tokio::test]
async fn listed_keys_outside_the_callers_acl_are_foreign() {
    let mut pair = Pair::start().await;
    for conn in [&mut pair.module, &mut pair.library] {
        let _: () = query(
            conn,
            &[
                "ACL",
                "SETUSER",
                "app",
                "on",
                ">pw",
                "+@all",
                "-@dangerous",
                "~tk:si:*",
                "~tk:s:{t}:a*",
            ],
        )
        .await;
    }
    for id in ["a1", "b1"] {
        let key = format!("tk:s:{{t}}:{id}");
        let create = Call::new("TK.SESSION.CREATE", &[&key, ALICE], &["alice", "1h", id]);
        let (module, library) = pair.run(&create).await;
        assert!(module.is_ok() && library.is_ok());
    }
    let (module_server, library_server) = pair.servers();
    let mut module_app = module_server.conn_as("app", "pw").await;
    let mut library_app = library_server.conn_as("app", "pw").await;
    let list = Call::new("TK.SESSION.LIST", &[ALICE], &[]);
    let module = list.run(&mut module_app, Via::Module).await;
    let library = list.run(&mut library_app, Via::Library).await;
    let tolerance = 60_000;
    assert!(
        same_reply(&module, &library, tolerance),
        "{module:?} {library:?}"
    );
    let Ok(Value::Array(listed)) = &module else {
        panic!("{module:?}")
    };
    assert_eq!(listed.len(), 1, "only a1 is the caller's: {listed:?}");
    let revoke = Call::new("TK.SESSION.REVOKEALL", &[ALICE], &[]);
    assert_eq!(
        revoke.run(&mut module_app, Via::Module).await,
        Ok(Value::Int(1))
    );
    assert_eq!(
        revoke.run(&mut library_app, Via::Library).await,
        Ok(Value::Int(1))
    );
    for conn in [&mut pair.module, &mut pair.library] {
        let keys = sorted_keys(conn).await;
        assert_eq!(keys, ["tk:s:{t}:b1"], "b1 unlisted, not deleted");
    }
}

// ---- cache: arguments and refusals -------------------------------------------------

const GENS: &str = "tk:cg:{u}";
const INDEX: &str = "tk:ci:{u}";

fn entry(namespace: &str, id: usize) -> String {
    format!("tk:c:{{u}}:{namespace}:{id}")
}

/// Every malformed cache call, and every refusal by state: the same error
/// text from both, nothing changed.
#[tokio::test]
async fn cache_errors_are_the_modules() {
    let mut pair = Pair::start().await;
    let e1 = entry("http", 1);
    let set = Call::new("TK.CACHE.SET", &[&e1, GENS, INDEX], &["http", "1h", "v"]);
    assert_eq!(pair.same(&set).await, Ok(Value::Int(1)));
    let invalidate = Call::new("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &["other"]);
    assert_eq!(pair.same(&invalidate).await, Ok(Value::Int(1)));
    pair.both(&["SET", "tk:c:{u}:str", "x"]).await;
    pair.both(&["SET", "tk:cg:{s}", "x"]).await;
    pair.both(&["SET", "tk:ci:{s}", "x"]).await;
    pair.both(&["HSET", "tk:ci:{h}", "f", "v"]).await;
    let module_before = debug_digest(&mut pair.module).await;
    let library_before = debug_digest(&mut pair.library).await;
    let long = "n".repeat(65);
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("TK.CACHE.GET", &[&e1, GENS], &[]),
        ("TK.CACHE.GET", &[&e1, GENS], &["http", "x"]),
        ("TK.CACHE.GET", &[&e1, &e1], &["http"]),
        ("TK.CACHE.GET", &[&e1, GENS], &[""]),
        ("TK.CACHE.GET", &[&e1, GENS], &[&long]),
        ("TK.CACHE.GET", &[&e1, GENS], &["a b"]),
        ("TK.CACHE.GET", &[&e1, GENS], &["ns:x"]),
        ("TK.CACHE.GET", &[&e1, "tk:cg:{v}"], &["http"]),
        ("TK.CACHE.GET", &[&e1, "tk:cg:{u}:x"], &["http"]),
        ("TK.CACHE.GET", &["users:1", GENS], &["http"]),
        ("TK.CACHE.GET", &["tk:c:{u}:str", GENS], &["http"]),
        ("TK.CACHE.GET", &["tk:c:{s}:1", "tk:cg:{s}"], &["http"]),
        ("TK.CACHE.SET", &[&e1, GENS, INDEX], &["http", "1h"]),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "IFGEN"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "x", "y"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "IFGEN", "1"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "IFGEN", "01.0"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "IFGEN", "1.-1"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "IFGEN", "9223372036854775808.0"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, INDEX],
            &["http", "1h", "v", "IFGEN", ".0"],
        ),
        ("TK.CACHE.SET", &[&e1, GENS, INDEX], &["http", "0", "v"]),
        ("TK.CACHE.SET", &[&e1, GENS, INDEX], &["http", "169h", "v"]),
        ("TK.CACHE.SET", &[&e1, GENS, INDEX], &["http", "1d", "v"]),
        ("TK.CACHE.SET", &[&e1, GENS, INDEX], &["h/t", "1h", "v"]),
        ("TK.CACHE.SET", &[&e1, GENS, GENS], &["http", "1h", "v"]),
        (
            "TK.CACHE.SET",
            &[&e1, GENS, "tk:ci:{v}"],
            &["http", "1h", "v"],
        ),
        (
            "TK.CACHE.SET",
            &[&e1, "tk:cg:{v}", INDEX],
            &["http", "1h", "v"],
        ),
        (
            "TK.CACHE.SET",
            &["tk:c:{v}:1", GENS, INDEX],
            &["http", "1h", "v"],
        ),
        (
            "TK.CACHE.SET",
            &["tk:c:{u}:str", GENS, INDEX],
            &["http", "1h", "v"],
        ),
        (
            "TK.CACHE.SET",
            &["tk:c:{s}:1", "tk:cg:{s}", "tk:ci:{s}"],
            &["http", "1h", "v"],
        ),
        (
            "TK.CACHE.SET",
            &["tk:c:{h}:1", "tk:cg:{h}", "tk:ci:{h}"],
            &["http", "1h", "v"],
        ),
        ("TK.CACHE.INVALIDATEUSER", &[GENS], &[]),
        ("TK.CACHE.INVALIDATEUSER", &[GENS, GENS], &[]),
        ("TK.CACHE.INVALIDATEUSER", &[GENS, "tk:ci:{v}"], &[]),
        ("TK.CACHE.INVALIDATEUSER", &["tk:cg:{s}", "tk:ci:{s}"], &[]),
        ("TK.CACHE.INVALIDATEUSER", &["tk:cg:{h}", "tk:ci:{h}"], &[]),
        ("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &[]),
        ("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &["a", "b"]),
        ("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &["a*"]),
        ("TK.CACHE.INVALIDATENS", &["rl:cgen", INDEX], &["a"]),
    ];
    for (command, keys, args) in cases {
        let reply = pair.same(&Call::new(command, keys, args)).await;
        assert!(
            reply
                .as_ref()
                .is_err_and(|e| e.starts_with("ERR ") || e.starts_with("WRONGTYPE ")),
            "{command} {keys:?} {args:?}: {reply:?}"
        );
    }
    assert_eq!(debug_digest(&mut pair.module).await, module_before);
    assert_eq!(debug_digest(&mut pair.library).await, library_before);
    // A stale IFGEN is refused (0) and writes nothing either.
    let stale = Call::new(
        "TK.CACHE.SET",
        &[&e1, GENS, INDEX],
        &["other", "1h", "v", "IFGEN", "0.0"],
    );
    assert_eq!(pair.same(&stale).await, Ok(Value::Int(0)));
    assert_eq!(debug_digest(&mut pair.module).await, module_before);
    assert_eq!(debug_digest(&mut pair.library).await, library_before);
}

#[tokio::test]
async fn cache_functions_take_their_keys_in_keys() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    let e1 = entry("http", 1);
    assert_fcalls_refused(
        &mut conn,
        &[
            (
                "tk_cache_get",
                1,
                vec![e1.as_str(), GENS, "http"],
                "ERR tk_cache_get takes 2 keys",
            ),
            (
                "tk_cache_set",
                2,
                vec![e1.as_str(), GENS, INDEX, "http", "1h", "v"],
                "ERR tk_cache_set takes 3 keys",
            ),
            (
                "tk_cache_invalidateuser",
                1,
                vec![GENS, INDEX],
                "ERR tk_cache_invalidateuser takes 2 keys",
            ),
            (
                "tk_cache_invalidatens",
                3,
                vec![GENS, INDEX, "http"],
                "ERR tk_cache_invalidatens takes 2 keys",
            ),
        ],
    )
    .await;
}

// ---- cache: stored data ------------------------------------------------------------

/// Generations and entries tk could not have written: the module's replies.
/// Generations up to 2^63 - 1 are compared exactly by both (kept as text);
/// an invalidation stops at the library's 2^53 - 1.
#[tokio::test]
async fn cache_reads_hand_written_data_like_the_module() {
    let mut pair = Pair::start().await;
    let e1 = entry("http", 1);
    let get = Call::new("TK.CACHE.GET", &[&e1, GENS], &["http"]);
    let set = Call::new("TK.CACHE.SET", &[&e1, GENS, INDEX], &["http", "1h", "v"]);
    let invalidate_user = Call::new("TK.CACHE.INVALIDATEUSER", &[GENS, INDEX], &[]);
    let invalidate_ns = Call::new("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &["http"]);
    for bad in [
        "01",
        "x",
        "-1",
        "",
        "1.0",
        "9223372036854775808",
        "99999999999999999999",
    ] {
        pair.both(&["DEL", GENS]).await;
        pair.both(&["HSET", GENS, "u", bad]).await;
        for call in [&get, &set, &invalidate_user] {
            let reply = pair.same(call).await;
            assert!(
                reply.is_err_and(|e| e.starts_with("WRONGTYPE")),
                "{bad}: {call:?}"
            );
        }
        // Another namespace's field is not read by INVALIDATENS http.
        pair.both(&["DEL", GENS]).await;
        pair.both(&["HSET", GENS, "n:http", bad]).await;
        let reply = pair.same(&invalidate_ns).await;
        assert!(reply.is_err_and(|e| e.starts_with("WRONGTYPE")), "{bad}");
    }
    pair.both(&["DEL", GENS]).await;
    // Damaged entries are misses; another namespace's entry too.
    for fields in [
        &["v", "x"][..],
        &["v", "x", "g", "0", "ng", "0"],
        &["v", "x", "g", "00", "ng", "0", "ns", "http"],
        &["v", "x", "g", "0", "ng", "0", "ns", "other"],
        &["g", "0", "ng", "0", "ns", "http"],
        &["v", "x", "g", "0", "ng", "0", "ns", "http"],
    ] {
        pair.both(&["DEL", &e1]).await;
        let mut args = vec!["HSET", e1.as_str()];
        args.extend_from_slice(fields);
        pair.both(&args).await;
        pair.same(&get).await.unwrap();
    }
    // Generations at the top of the range: exact in both.
    pair.both(&[
        "HSET",
        GENS,
        "u",
        "9223372036854775807",
        "n:http",
        "9007199254740993",
    ])
    .await;
    let token = "9223372036854775807.9007199254740993";
    assert_eq!(
        pair.same(&get).await,
        Ok(Value::Array(vec![
            Value::Int(0),
            Value::BulkString(token.into())
        ]))
    );
    let near = "9223372036854775807.9007199254740992";
    let stale = Call::new(
        "TK.CACHE.SET",
        &[&e1, GENS, INDEX],
        &["http", "1h", "w", "IFGEN", near],
    );
    assert_eq!(pair.same(&stale).await, Ok(Value::Int(0)));
    let fresh = Call::new(
        "TK.CACHE.SET",
        &[&e1, GENS, INDEX],
        &["http", "1h", "w", "IFGEN", token],
    );
    assert_eq!(pair.same(&fresh).await, Ok(Value::Int(1)));
    assert_eq!(
        pair.same(&get).await,
        Ok(Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"w".to_vec())
        ]))
    );
    assert_eq!(
        pair.same(&invalidate_user).await,
        Err("ERR generation limit reached".to_string())
    );
    // The library's own limit: it replies generations exactly up to 2^53 - 1.
    pair.both(&["HSET", GENS, "u", "9007199254740990"]).await;
    assert_eq!(
        pair.same(&invalidate_user).await,
        Ok(Value::Int(9_007_199_254_740_991))
    );
    let (module, library) = pair.run(&invalidate_user).await;
    assert_eq!(module, Ok(Value::Int(9_007_199_254_740_992)));
    assert_eq!(library, Err("ERR generation limit reached".to_string()));
}

// ---- cache: behaviour, both implementations ------------------------------------------

/// One random cache call on two namespaces and a few entries.
fn random_cache_call(rng: &mut StdRng) -> Call {
    let namespaces = ["http", "search"];
    let namespace = namespaces[rng.random_range(0..2)];
    // Now and then an entry read or written under the other namespace.
    let entry_ns = if rng.random_bool(0.1) {
        namespaces[rng.random_range(0..2)]
    } else {
        namespace
    };
    let key = entry(entry_ns, rng.random_range(0..4));
    let owned = |command: &'static str, keys: Vec<String>, args: Vec<String>| Call {
        command,
        keys: keys.into_iter().map(String::into_bytes).collect(),
        args: args.into_iter().map(String::into_bytes).collect(),
    };
    match rng.random_range(0..100) {
        0..=44 => owned(
            "TK.CACHE.GET",
            vec![key, GENS.into()],
            vec![namespace.into()],
        ),
        45..=84 => {
            let mut args = vec![
                namespace.to_string(),
                ["1h", "90m", "7200000"][rng.random_range(0..3)].to_string(),
                format!("v{}", rng.random_range(0..100)),
            ];
            if rng.random_bool(0.3) {
                let token = format!("{}.{}", rng.random_range(0..2), rng.random_range(0..2));
                args.extend(["IFGEN".to_string(), token]);
            }
            owned("TK.CACHE.SET", vec![key, GENS.into(), INDEX.into()], args)
        }
        85..=88 => owned(
            "TK.CACHE.INVALIDATEUSER",
            vec![GENS.into(), INDEX.into()],
            vec![],
        ),
        89..=93 => owned(
            "TK.CACHE.INVALIDATENS",
            vec![GENS.into(), INDEX.into()],
            vec![namespace.into()],
        ),
        _ => {
            let junk = ["IFGEN", "x", "0", "1d", "1.x", "a b"];
            let mut args = vec![namespace.to_string(), "1h".to_string(), "v".to_string()];
            args.insert(
                rng.random_range(0..=3),
                junk[rng.random_range(0..junk.len())].to_string(),
            );
            owned("TK.CACHE.SET", vec![key, GENS.into(), INDEX.into()], args)
        }
    }
}

/// Random sequences of cache calls give the module's replies, exactly (no
/// reply carries a time), and the same generations.
#[tokio::test]
async fn random_cache_sequences_reply_like_the_module() {
    let mut pair = Pair::start().await;
    for seed in 0..5u64 {
        pair.both(&["FLUSHALL"]).await;
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut hits, mut misses, mut refused, mut errors) = (0, 0, 0, 0);
        for index in 0..200 {
            let call = random_cache_call(&mut rng);
            let (module, library) = pair.run(&call).await;
            assert_eq!(module, library, "seed {seed}, call {index}: {call:?}");
            match (&module, call.command) {
                (Ok(Value::Array(items)), _) if items.first() == Some(&Value::Int(1)) => hits += 1,
                (Ok(Value::Array(_)), _) => misses += 1,
                (Ok(Value::Int(0)), "TK.CACHE.SET") => refused += 1,
                (Err(_), _) => errors += 1,
                _ => {}
            }
        }
        assert!(
            hits > 10 && misses > 10 && refused > 2 && errors > 3,
            "seed {seed}: {hits} hits, {misses} misses, {refused} refused, {errors} errors"
        );
        let mut module: Vec<(String, String)> = query(&mut pair.module, &["HGETALL", GENS]).await;
        let mut library: Vec<(String, String)> = query(&mut pair.library, &["HGETALL", GENS]).await;
        library.retain(|(field, _)| field != "r");
        module.sort();
        library.sort();
        assert_eq!(module, library, "seed {seed}");
    }
}

/// On a server with both, an entry stored by one is read by the other, a
/// token from one is accepted by the other, and an invalidation by either
/// hides the entries for both.
#[tokio::test]
async fn cache_entries_move_between_module_and_library() {
    let server = module_and_library_server().await;
    let mut conn = server.conn().await;
    for (writer, reader) in [(Via::Module, Via::Library), (Via::Library, Via::Module)] {
        let e = entry("http", writer as usize);
        let get = Call::new("TK.CACHE.GET", &[&e, GENS], &["http"]);
        let Ok(Value::Array(miss)) = get.run(&mut conn, reader).await else {
            panic!("GET failed")
        };
        let Value::BulkString(token) = &miss[1] else {
            panic!("{miss:?}")
        };
        let token = String::from_utf8(token.clone()).unwrap();
        let set = Call::new(
            "TK.CACHE.SET",
            &[&e, GENS, INDEX],
            &["http", "1h", "cached", "IFGEN", &token],
        );
        assert_eq!(set.run(&mut conn, writer).await, Ok(Value::Int(1)));
        let hit = Value::Array(vec![Value::Int(1), Value::BulkString(b"cached".to_vec())]);
        assert_eq!(get.run(&mut conn, reader).await, Ok(hit.clone()));
        assert_eq!(get.run(&mut conn, writer).await, Ok(hit));
        let invalidate = Call::new("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &["http"]);
        let Ok(Value::Int(generation)) = invalidate.run(&mut conn, reader).await else {
            panic!("INVALIDATENS failed")
        };
        for via in [Via::Module, Via::Library] {
            let Ok(Value::Array(reply)) = get.run(&mut conn, via).await else {
                panic!("GET failed")
            };
            assert_eq!(reply[0], Value::Int(0), "{via:?}");
            assert!(
                matches!(&reply[1], Value::BulkString(t) if t.ends_with(format!(".{generation}").as_bytes())),
                "{reply:?}"
            );
        }
        // The old token is refused by both.
        assert_eq!(set.run(&mut conn, Via::Module).await, Ok(Value::Int(0)));
        assert_eq!(set.run(&mut conn, Via::Library).await, Ok(Value::Int(0)));
    }
    // The stored form is the module's, whichever writes.
    for via in [Via::Module, Via::Library] {
        let e = entry("form", via as usize);
        let set = Call::new("TK.CACHE.SET", &[&e, GENS, INDEX], &["form", "1h", "x"]);
        assert_eq!(set.run(&mut conn, via).await, Ok(Value::Int(1)));
        let mut fields: Vec<(String, String)> = query(&mut conn, &["HGETALL", &e]).await;
        fields.sort();
        let user: Option<String> = query(&mut conn, &["HGET", GENS, "u"]).await;
        let user = user.unwrap_or_else(|| "0".to_string());
        assert_eq!(
            fields,
            [
                ("g", user.as_str()),
                ("ng", "0"),
                ("ns", "form"),
                ("v", "x")
            ]
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .to_vec(),
            "{via:?}"
        );
        let expiry: i64 = query(&mut conn, &["PEXPIRETIME", &e]).await;
        let score: i64 = query(&mut conn, &["ZSCORE", INDEX, &e]).await;
        assert_eq!(expiry, score, "{via:?}");
    }
}

// ---- cache: the library's bounded reclaim ---------------------------------------------

async fn zcard(conn: &mut Conn, key: &str) -> i64 {
    query(conn, &["ZCARD", key]).await
}

/// The library frees invalidated entries a bounded batch per call (32
/// index members), from a resume point, until none is left; visible
/// entries and foreign members' keys are never deleted.
#[tokio::test]
async fn the_library_reclaims_a_bounded_batch_per_call() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    // 100 entries, alternating namespaces a and b.
    for i in 0..100 {
        let namespace = if i % 2 == 0 { "a" } else { "b" };
        let e = entry(namespace, i);
        let ttl = format!("{}", 3_600_000 + i * 1000);
        let set = Call::new("TK.CACHE.SET", &[&e, GENS, INDEX], &[namespace, &ttl, "v"]);
        assert_eq!(set.run(&mut conn, Via::Library).await, Ok(Value::Int(1)));
    }
    // Foreign members: never deleted, only unlisted.
    let _: () = query(&mut conn, &["SET", "config:prod", "x"]).await;
    let _: () = query(&mut conn, &["SET", "tk:c:{u}:str", "x"]).await;
    let far = "99999999999990";
    let _: i64 = query(
        &mut conn,
        &[
            "ZADD",
            INDEX,
            far,
            "config:prod",
            far,
            "tk:c:{u}:str",
            far,
            "tk:c:{u}:gone",
        ],
    )
    .await;
    let invalidate_a = Call::new("TK.CACHE.INVALIDATENS", &[GENS, INDEX], &["a"]);
    let mut sizes = vec![zcard(&mut conn, INDEX).await];
    for _ in 0..8 {
        invalidate_a.run(&mut conn, Via::Library).await.unwrap();
        sizes.push(zcard(&mut conn, INDEX).await);
    }
    for pair in sizes.windows(2) {
        assert!(
            pair[0] - pair[1] <= 32,
            "at most a batch per call: {sizes:?}"
        );
    }
    assert_eq!(
        *sizes.last().unwrap(),
        50,
        "only b's entries stay listed: {sizes:?}"
    );
    let keys = sorted_keys(&mut conn).await;
    assert!(
        keys.iter().all(|k| !k.starts_with("tk:c:{u}:a:")),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("tk:c:{u}:b:")).count(),
        50
    );
    for key in ["config:prod", "tk:c:{u}:str"] {
        assert!(keys.contains(&key.to_string()), "{key} deleted");
    }
    // Every b entry still hits.
    let get = Call::new("TK.CACHE.GET", &[&entry("b", 99), GENS], &["b"]);
    assert_eq!(
        get.run(&mut conn, Via::Library).await,
        Ok(Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"v".to_vec())
        ]))
    );
    // SET reclaims too: invalidate the user, then store.
    let invalidate_user = Call::new("TK.CACHE.INVALIDATEUSER", &[GENS, INDEX], &[]);
    invalidate_user.run(&mut conn, Via::Library).await.unwrap();
    let set = Call::new(
        "TK.CACHE.SET",
        &[&entry("c", 0), GENS, INDEX],
        &["c", "1h", "v"],
    );
    for _ in 0..4 {
        set.run(&mut conn, Via::Library).await.unwrap();
    }
    assert_eq!(zcard(&mut conn, INDEX).await, 1);
}

// ---- cache: replication ----------------------------------------------------------------

/// A replica of a functions server has the primary's exact data after cache
/// calls, reclaim included, and serves GET.
#[tokio::test]
async fn a_replica_has_the_primarys_cache() {
    let primary = functions_server().await;
    let replica = Server::builder()
        .without_module()
        .replica_of(&primary)
        .start()
        .await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let _ = random_cache_call(&mut rng)
            .run(&mut conn, Via::Library)
            .await;
    }
    wait_for_sync(&primary, &replica).await;
    let mut replica_conn = replica.conn().await;
    let size: i64 = query(&mut conn, &["DBSIZE"]).await;
    assert!(size > 0);
    assert_eq!(
        debug_digest(&mut conn).await,
        debug_digest(&mut replica_conn).await
    );
    let get = Call::new("TK.CACHE.GET", &[&entry("http", 1), GENS], &["http"]);
    let on_primary = send(&mut conn, &get.fcall_cmd(true)).await;
    assert!(on_primary.is_ok());
    assert_eq!(
        on_primary,
        send(&mut replica_conn, &get.fcall_cmd(true)).await
    );
}

/// An invalidator whose ACL user may read the entries but not delete them
/// frees nothing early, with the module (whose reclaimer asks the ACL) as
/// with the library (whose no-op write probe is refused): the entries are
/// only unlisted, and expire with their TTL.
#[tokio::test]
async fn the_reclaim_deletes_only_what_the_invalidator_may_delete() {
    let mut pair = Pair::start().await;
    for conn in [&mut pair.module, &mut pair.library] {
        let _: () = query(
            conn,
            &[
                "ACL",
                "SETUSER",
                "reader",
                "on",
                ">pw",
                "+@all",
                "-@dangerous",
                "~tk:cg:*",
                "~tk:ci:*",
                "%R~tk:c:*",
            ],
        )
        .await;
    }
    for i in 0..5 {
        let set = Call::new(
            "TK.CACHE.SET",
            &[&entry("http", i), GENS, INDEX],
            &["http", "1h", "v"],
        );
        assert_eq!(pair.same(&set).await, Ok(Value::Int(1)));
    }
    let (module_server, library_server) = pair.servers();
    let mut module_reader = module_server.conn_as("reader", "pw").await;
    let mut library_reader = library_server.conn_as("reader", "pw").await;
    let invalidate = Call::new("TK.CACHE.INVALIDATEUSER", &[GENS, INDEX], &[]);
    assert_eq!(
        invalidate.run(&mut module_reader, Via::Module).await,
        Ok(Value::Int(1))
    );
    assert_eq!(
        invalidate.run(&mut library_reader, Via::Library).await,
        Ok(Value::Int(1))
    );
    // The module's reclaim runs on a timer: wait for it to finish.
    let module = &mut pair.module;
    wait_until(
        "the module's reclaim",
        std::time::Duration::from_secs(10),
        || {
            let mut conn = module.clone();
            async move {
                let left = zcard(&mut conn, INDEX).await;
                if left == 0 {
                    Ok(())
                } else {
                    Err(format!("{left} listed"))
                }
            }
        },
    )
    .await;
    for conn in [&mut pair.module, &mut pair.library] {
        assert_eq!(zcard(conn, INDEX).await, 0);
        let keys = sorted_keys(conn).await;
        let entries = keys
            .iter()
            .filter(|k| k.starts_with("tk:c:{u}:http:"))
            .count();
        assert_eq!(entries, 5, "{keys:?}");
    }
}
