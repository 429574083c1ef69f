//! The tk Functions library (`client/lua/tk.lua`) against real servers: on
//! a plain redis-server it must behave exactly like the module, so every
//! test here runs the same calls through the module's commands and through
//! `FCALL` and compares, or checks that state written by one is read by the
//! other.
//!
//! Time: the module and the library read the clock at different instants,
//! so the fields that count time (retry_after_ms, reset_after_ms, a lock's
//! remaining ms) may differ by the time between the two calls. Each
//! comparison allows twice the time the whole run took, as measured with
//! the server's own `TIME` (so the bound is derived, never assumed); every
//! other field, and every error text, must be identical. Quotas are chosen
//! so that decisions do not depend on when a call runs (long periods, one
//! emission interval per GCRA key, FIXED windows that do not roll over
//! during a test).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::Value;
use tk_redis::functions::{LIBRARY_NAME, LIBRARY_VERSION};
use tk_redis_tests::functions::{
    assert_fcalls_refused, functions_server, get, integers, load_library,
    module_and_library_server, query, send, server_time_us, set, sorted_keys, Call, Pair, Reply,
    Via,
};
use tk_redis_tests::harness::{debug_digest, wait_for_sync, Server};

// ---- helpers -------------------------------------------------------------------

/// The indexes of a reply's fields that count time, by command.
fn time_fields(command: &str) -> &'static [usize] {
    match command {
        "TK.RATELIMIT" | "TK.RATELIMIT.PEEK" | "TK.RATELIMIT.ALL" => &[3, 4],
        "TK.LOCK.ACQUIRE" => &[2],
        _ => &[],
    }
}

/// Whether the module's and the library's replies to `call` are the same,
/// time fields within `tolerance_ms`.
fn same_reply(call: &Call, module: &Reply, library: &Reply, tolerance_ms: i64) -> bool {
    match (integers(module), integers(library)) {
        (Some(m), Some(l)) if m.len() == l.len() => {
            let timed = time_fields(call.command);
            m.iter().zip(&l).enumerate().all(|(index, (a, b))| {
                if timed.contains(&index) {
                    (a - b).abs() <= tolerance_ms
                } else {
                    a == b
                }
            })
        }
        _ => module == library,
    }
}

// ---- loading -------------------------------------------------------------------

#[tokio::test]
async fn the_library_loads_on_a_plain_server_and_reports_its_version() {
    let server = Server::builder().without_module().start().await;
    let mut conn = server.conn().await;
    assert_eq!(load_library(&mut conn).await, LIBRARY_NAME);
    // Loading again replaces it.
    assert_eq!(load_library(&mut conn).await, LIBRARY_NAME);
    let version: String = query(&mut conn, &["FCALL_RO", "tk_version", "0"]).await;
    assert_eq!(version, LIBRARY_VERSION);
    // The module's commands are not there: the library is what answers.
    let info: Vec<Value> = query(&mut conn, &["COMMAND", "INFO", "TK.RATELIMIT"]).await;
    assert_eq!(info, vec![Value::Nil]);
    // Read-only functions are flagged so: FCALL_RO accepts them (and
    // refuses the others).
    let peek = Call::new("TK.RATELIMIT.PEEK", &["k"], &["10", "1s"]);
    assert_eq!(
        integers(&send(&mut conn, &peek.fcall_cmd(true)).await),
        Some(vec![1, 10, 9, 0, 100])
    );
    let write = Call::new("TK.RATELIMIT", &["k"], &["10", "1s"]);
    assert!(send(&mut conn, &write.fcall_cmd(true)).await.is_err());
}

// ---- rate limiting: arguments ----------------------------------------------------

/// Every malformed rate-limit call: the same error text from both, and
/// nothing changes (the keys hold states beforehand).
#[tokio::test]
async fn ratelimit_argument_errors_are_the_modules() {
    let mut pair = Pair::start().await;
    for key in ["k", "a", "b"] {
        let (module, library) = pair
            .run(&Call::new("TK.RATELIMIT", &[key], &["10", "1h"]))
            .await;
        assert!(integers(&module).is_some() && integers(&library).is_some());
    }
    let module_before = debug_digest(&mut pair.module).await;
    let library_before = debug_digest(&mut pair.library).await;
    let long = "x".repeat(100);
    let single: &[&[&str]] = &[
        &[],
        &["10"],
        &["10", "1s", "BURST"],
        &["10", "1s", "COST"],
        &["10", "1s", "ALGO"],
        &["0", "1s"],
        &["-5", "1s"],
        &["ten", "1s"],
        &["+5", "1s"],
        &[" 5", "1s"],
        &["0x10", "1s"],
        &["1e3", "1s"],
        &["99999999999999999999", "1s"],
        &["999999999999999999999", "1s"],
        &["1099511627777", "1s"],
        &["10", "0"],
        &["10", "-1s"],
        &["10", "1d"],
        &["10", "1.5s"],
        &["10", "s"],
        &["10", "1m1"],
        &["10", "1 s"],
        &["10", "315360000001"],
        &["10", "87601h"],
        &["10", "1s", "BURST", "0"],
        &["10", "1s", "BURST", "1099511627777"],
        &["10", "1s", "COST", "-1"],
        &["10", "1s", "COST", "11"],
        &["10", "1s", "BURST", "2", "COST", "3"],
        &["10", "1s", "ALGO", "SLIDING", "COST", "11"],
        &["10", "1s", "ALGO", "LEAKY"],
        &["10", "1s", "FOO", "1"],
        &["10", "1s", "COST", "1", "cost", "1"],
        &["10", "1s", "ALGO", "gcra", "algo", "fixed"],
        &["10", "1s", "BURST", "5", "burst", "5"],
        &["10", "1s", "ALGO", "FIXED", "BURST", "5"],
        &["10", "1s", "BURST", "5", "ALGO", "SLIDING"],
        &["1", "1h", "BURST", "87601"],
        &["1", "1h", "BURST", "1000000"],
        &["3", "1s", "BURST", "1099511627776"],
        &["7", "87600h", "BURST", "8"],
        &["10", "1s", "5"],
        &["10", "1s", "COST", "1", "extra"],
        &["10", "1s", &long],
        &["10", &long],
    ];
    for args in single {
        for command in ["TK.RATELIMIT", "TK.RATELIMIT.PEEK"] {
            let reply = pair.same(&Call::new(command, &["k"], args)).await;
            assert!(reply.is_err(), "{command} {args:?} replied {reply:?}");
        }
    }
    // Bytes outside printable ASCII in the echoed option.
    let binary = Call::bytes(
        "TK.RATELIMIT",
        &[b"k"],
        &[
            b"10",
            b"1s",
            b"\x01\xff\r\nabcdefghijklmnopqrstuvwxyz0123456789",
        ],
    );
    assert!(pair.same(&binary).await.is_err());
    let all: &[(&[&str], &[&str])] = &[
        (&["a", "b"], &["10", "1s"]),
        (&["a", "b"], &["10", "1s", "BOGUS", "10", "1s"]),
        (&["a", "b"], &["10", "1s", "10", "1s", "10", "1s"]),
        (&["a", "b"], &["10", "1s", "10"]),
        (&["a", "b"], &["10", "1s", "COST", "11", "10", "1s"]),
        (&["a", "a"], &["10", "1s", "10", "1s"]),
        (&["a"], &["10", "1s", "10", "1s"]),
        (&["a"], &["10"]),
        (&[], &["a", "10", "1s"]),
        (&[], &["a", "10", "1s", "x"]),
        (
            &[
                "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12", "k13",
                "k14", "k15", "k16", "k17",
            ],
            &["10", "1s"],
        ),
    ];
    for (keys, args) in all {
        let reply = pair.same(&Call::new("TK.RATELIMIT.ALL", keys, args)).await;
        assert!(reply.is_err(), "ALL {keys:?} {args:?} replied {reply:?}");
    }
    assert!(pair
        .same(&Call::new("TK.RATELIMIT.RESET", &[], &[]))
        .await
        .is_err());
    assert_eq!(debug_digest(&mut pair.module).await, module_before);
    assert_eq!(debug_digest(&mut pair.library).await, library_before);
}

/// Calls the library refuses because of how FCALL was used: keys outside
/// KEYS. (The module has no such form: its key positions are fixed.)
#[tokio::test]
async fn the_library_takes_keys_only_through_keys() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    assert_fcalls_refused(
        &mut conn,
        &[
            (
                "tk_ratelimit",
                0,
                vec!["k", "10", "1s"],
                "ERR tk_ratelimit takes 1 key",
            ),
            (
                "tk_ratelimit",
                2,
                vec!["k", "10", "1s", "x"],
                "ERR tk_ratelimit takes 1 key",
            ),
            (
                "tk_ratelimit_peek",
                0,
                vec!["k", "10", "1s"],
                "ERR tk_ratelimit_peek takes 1 key",
            ),
            (
                "tk_ratelimit_reset",
                1,
                vec!["a", "b"],
                "ERR tk_ratelimit_reset takes its keys in KEYS",
            ),
            (
                "tk_ratelimit_reset",
                0,
                vec!["a"],
                "ERR tk_ratelimit_reset takes its keys in KEYS",
            ),
            (
                "tk_lock_acquire",
                1,
                vec!["l", "f", "t", "1s"],
                "ERR tk_lock_acquire takes 2 keys",
            ),
            (
                "tk_lock_acquire",
                3,
                vec!["l", "f", "t", "1s"],
                "ERR tk_lock_acquire takes 2 keys",
            ),
            (
                "tk_lock_release",
                0,
                vec!["l", "t"],
                "ERR tk_lock_release takes 1 key",
            ),
            (
                "tk_lock_extend",
                2,
                vec!["l", "t", "1s"],
                "ERR tk_lock_extend takes 1 key",
            ),
        ],
    )
    .await;
    let size: i64 = query(&mut conn, &["DBSIZE"]).await;
    assert_eq!(size, 0);
}

// ---- rate limiting: stored data -----------------------------------------------

/// Keys holding other types, and strings that are no state of the
/// algorithm asked for: the module's WRONGTYPE texts, nothing written.
#[tokio::test]
async fn ratelimit_refuses_foreign_data_like_the_module() {
    let mut pair = Pair::start().await;
    pair.both(&["HSET", "hash", "f", "v"]).await;
    pair.both(&["RPUSH", "list", "v"]).await;
    pair.both(&["SADD", "set", "v"]).await;
    pair.both(&["ZADD", "zset", "1", "v"]).await;
    pair.both(&["XADD", "stream", "*", "f", "v"]).await;
    for key in ["hash", "list", "set", "zset", "stream"] {
        for algo in ["GCRA", "SLIDING", "FIXED"] {
            for command in ["TK.RATELIMIT", "TK.RATELIMIT.PEEK"] {
                let call = Call::new(command, &[key], &["10", "1s", "ALGO", algo]);
                let reply = pair.same(&call).await.unwrap_err();
                assert!(reply.starts_with("WRONGTYPE"), "{reply}");
            }
        }
        let reset = Call::new("TK.RATELIMIT.RESET", &["fresh", key], &[]);
        assert!(pair.same(&reset).await.is_err());
    }
    let mut tagged_long = vec![0xA1u8];
    tagged_long.extend_from_slice(&[0; 8]);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("text", b"abc".to_vec()),
        ("negative", b"-1".to_vec()),
        ("plus", b"+1".to_vec()),
        ("spaced", b" 1".to_vec()),
        ("trailing", b"1 ".to_vec()),
        ("mixed", b"12a".to_vec()),
        ("decimal", b"1.5".to_vec()),
        ("five_digits", b"12345".to_vec()),
        ("beyond_u64", b"18446744073709551616".to_vec()),
        ("21_digits", b"000000000000000000001".to_vec()),
        ("fixed_empty_count", b"1:".to_vec()),
        ("fixed_empty_start", b":1".to_vec()),
        ("fixed_three", b"1:2:3".to_vec()),
        ("fixed_negative", b"-1:2".to_vec()),
        ("fixed_big_start", b"18446744073709551616:1".to_vec()),
        ("fixed_big_count", b"1:18446744073709551616".to_vec()),
        ("sliding_short", vec![0xA1, 0, 0, 0]),
        ("sliding_tag_only", vec![0xA1]),
        ("sliding_wrong_tag", vec![0xA2, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("sliding_cut_varint", [&tagged_long[..], &[0x80]].concat()),
        (
            "sliding_overlong",
            [&tagged_long[..], &[0x80, 0x00]].concat(),
        ),
        (
            "sliding_cost_one",
            [&tagged_long[..], &[0x01, 0x01]].concat(),
        ),
        (
            "sliding_cost_zero",
            [&tagged_long[..], &[0x01, 0x00]].concat(),
        ),
        ("sliding_cost_missing", [&tagged_long[..], &[0x01]].concat()),
        (
            "sliding_eleven_bytes",
            [&tagged_long[..], &[0xff; 10], &[0x01]].concat(),
        ),
        ("binary", vec![0, 255, 13, 10]),
    ];
    for (name, value) in &garbage {
        let key = format!("g:{name}");
        pair.set(&key, value).await;
        for algo in ["GCRA", "SLIDING", "FIXED"] {
            for command in ["TK.RATELIMIT", "TK.RATELIMIT.PEEK"] {
                let call = Call::new(command, &[&key], &["10", "1h", "ALGO", algo]);
                let reply = pair.same(&call).await;
                assert!(
                    reply
                        .as_ref()
                        .is_err_and(|e| e.starts_with("WRONGTYPE key holds")),
                    "{name} with {algo}: {reply:?}"
                );
            }
        }
        let all = Call::new(
            "TK.RATELIMIT.ALL",
            &["fresh", &key],
            &["10", "1h", "10", "1h", "ALGO", "FIXED"],
        );
        assert!(pair.same(&all).await.is_err());
        assert_eq!(get(&mut pair.module, &key).await.as_ref(), Some(value));
        assert_eq!(get(&mut pair.library, &key).await.as_ref(), Some(value));
    }
    // Each algorithm refuses the other two's states.
    for (writer, reader) in [
        ("GCRA", "SLIDING"),
        ("GCRA", "FIXED"),
        ("SLIDING", "GCRA"),
        ("SLIDING", "FIXED"),
        ("FIXED", "GCRA"),
        ("FIXED", "SLIDING"),
    ] {
        let key = format!("x:{writer}:{reader}");
        let write = Call::new("TK.RATELIMIT", &[&key], &["10", "1h", "ALGO", writer]);
        let (module, library) = pair.run(&write).await;
        assert!(integers(&module).is_some() && integers(&library).is_some());
        let read = Call::new("TK.RATELIMIT", &[&key], &["10", "1h", "ALGO", reader]);
        let error = pair.same(&read).await.unwrap_err();
        assert!(
            error.starts_with("WRONGTYPE key holds a string that is not"),
            "{error}"
        );
    }
    // The split GCRA form needs its expiry: without one (PERSIST by hand)
    // it is no state.
    pair.set("persisted", b"000123").await;
    let call = Call::new("TK.RATELIMIT", &["persisted"], &["10", "1h"]);
    assert!(pair.same(&call).await.unwrap_err().starts_with("WRONGTYPE"));
    // Its TAT must fit u64 ns: 18446744073709551615 ns is the last.
    for (value, expire_at, valid) in [
        ("999999", "18446744073710", false),
        ("551616", "18446744073710", false),
        ("551615", "18446744073710", true),
        ("999999", "18446744073709", true),
    ] {
        let key = format!("edge:{value}:{expire_at}");
        pair.set(&key, value.as_bytes()).await;
        pair.both(&["PEXPIREAT", &key, expire_at]).await;
        let call = Call::new("TK.RATELIMIT", &[&key], &["10", "1h"]);
        let (module, library) = pair.run(&call).await;
        assert_eq!(module.is_ok(), valid, "{key}: {module:?}");
        assert!(
            same_reply(&call, &module, &library, 1000),
            "{key}: {module:?} {library:?}"
        );
    }
}

/// States no build writes but the module reads: both read them the same.
#[tokio::test]
async fn unusual_states_are_read_like_the_module() {
    let mut pair = Pair::start().await;
    let start_us = server_time_us(&mut pair.module).await;
    let now_ms = start_us / 1000;
    let fixed_period = fixed_period_ms(now_ms).to_string();
    let mut calls = Vec::new();
    // GCRA in the 0.1 format: the whole TAT in ns, 7 to 20 digits.
    for (name, value) in [
        ("old_tiny", "0000001".to_string()),
        ("old_one", "00000000000000000001".to_string()),
        ("old_max", "18446744073709551615".to_string()),
        // TATs half an emission interval (1 h) away from a whole one, so
        // that no decision depends on the instant of the call.
        (
            "old_soon",
            format!("{}", (now_ms + 210 * 60_000) * 1_000_000 + 123_456),
        ),
        (
            "old_later",
            format!("{}", (now_ms + 1110 * 60_000) * 1_000_000 + 1),
        ),
    ] {
        let key = format!("gcra:{name}");
        pair.set(&key, value.as_bytes()).await;
        for (limit, period, burst, cost) in [
            ("10", "10h", "10", "1"),
            ("10", "10h", "10", "0"),
            ("20", "20h", "40", "5"),
        ] {
            for command in ["TK.RATELIMIT.PEEK", "TK.RATELIMIT"] {
                calls.push(Call::new(
                    command,
                    &[&key],
                    &[limit, period, "BURST", burst, "COST", cost],
                ));
            }
        }
    }
    // FIXED: an old window (count 0), a window from the future (the clock
    // stepped back: it is kept), huge counts.
    for (name, value) in [
        ("old", "0:5".to_string()),
        ("old_huge", "1:18446744073709551615".to_string()),
        ("future", "4000000000000:5".to_string()),
        (
            "future_huge",
            "4000000000000:18446744073709551615".to_string(),
        ),
        ("future_zeros", "0004000000000000:00".to_string()),
    ] {
        let key = format!("fixed:{name}");
        pair.set(&key, value.as_bytes()).await;
        for cost in ["0", "1", "6"] {
            for command in ["TK.RATELIMIT.PEEK", "TK.RATELIMIT"] {
                calls.push(Call::new(
                    command,
                    &[&key],
                    &["6", &fixed_period, "ALGO", "FIXED", "COST", cost],
                ));
            }
        }
    }
    // SLIDING: logs the module could have written at other times, entries
    // with costs, an empty log, entries from the future.
    let entry_us = |offset_ms: i64| u64::try_from(start_us + offset_ms * 1000).unwrap();
    let log = |base: u64, entries: &[(u64, u64)]| {
        let mut out = vec![0xA1u8];
        out.extend_from_slice(&base.to_le_bytes());
        let mut previous = base;
        for &(ts, cost) in entries {
            let head = ((ts - previous) << 1) | u64::from(cost > 1);
            leb128(head, &mut out);
            if cost > 1 {
                leb128(cost, &mut out);
            }
            previous = ts;
        }
        out
    };
    let old = entry_us(-2 * 3_600_000);
    let recent = entry_us(-60_000);
    let future = entry_us(3_600_000);
    for (name, value) in [
        ("empty", log(0, &[])),
        ("empty_base", log(recent, &[])),
        ("expired", log(old, &[(old, 3), (old + 5, 1)])),
        ("mixed", log(old, &[(old, 2), (recent, 3), (recent + 7, 1)])),
        ("base_gap", log(old, &[(recent, 2), (recent, 4)])),
        ("future", log(recent, &[(recent, 1), (future, 2)])),
        ("large_cost", log(recent, &[(recent, 1 << 40)])),
    ] {
        let key = format!("sliding:{name}");
        pair.set(&key, &value).await;
        for cost in ["0", "1", "4"] {
            for command in ["TK.RATELIMIT.PEEK", "TK.RATELIMIT"] {
                calls.push(Call::new(
                    command,
                    &[&key],
                    &["8", "1h", "ALGO", "SLIDING", "COST", cost],
                ));
            }
        }
    }
    let mut replies = Vec::new();
    for call in &calls {
        replies.push((call, pair.run(call).await));
    }
    let tolerance = 2 * (server_time_us(&mut pair.module).await - start_us) / 1000 + 5;
    for (call, (module, library)) in &replies {
        assert!(
            same_reply(call, module, library, tolerance),
            "{call:?}\nmodule:  {module:?}\nlibrary: {library:?}"
        );
    }
    // The FIXED states they wrote are the module's, byte for byte.
    for name in ["old", "future", "future_zeros"] {
        let key = format!("fixed:{name}");
        assert_eq!(
            get(&mut pair.module, &key).await,
            get(&mut pair.library, &key).await,
            "{key}"
        );
    }
}

fn leb128(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Numbers the library cannot hold exactly in a double, on data no tk build
/// writes, are refused as foreign (documented in tk.lua); the module reads
/// them. This pins the library's side of that documented difference.
#[tokio::test]
async fn the_librarys_documented_range_limits() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    let wrongtype = "WRONGTYPE key holds a string that is not";
    let mut base_2_53 = vec![0xA1u8];
    base_2_53.extend_from_slice(&(1u64 << 53).to_le_bytes());
    base_2_53.push(0);
    let mut cost_2_53 = vec![0xA1u8];
    cost_2_53.extend_from_slice(&1_000u64.to_le_bytes());
    cost_2_53.push(1);
    leb128(1 << 53, &mut cost_2_53);
    for (value, algo) in [
        (base_2_53, "SLIDING"),
        (cost_2_53, "SLIDING"),
        (b"4503599627370496:1".to_vec(), "FIXED"),
    ] {
        set(&mut conn, "k", &value).await;
        let call = Call::new("TK.RATELIMIT", &["k"], &["10", "1h", "ALGO", algo]);
        let error = call.run(&mut conn, Via::Library).await.unwrap_err();
        assert!(error.starts_with(wrongtype), "{error}");
        assert_eq!(get(&mut conn, "k").await, Some(value));
    }
    // Just below the limits: read.
    let mut base_below = vec![0xA1u8];
    base_below.extend_from_slice(&((1u64 << 53) - 1).to_le_bytes());
    base_below.push(0);
    for (value, algo) in [
        (base_below, "SLIDING"),
        (b"4503599627370495:1".to_vec(), "FIXED"),
    ] {
        set(&mut conn, "k", &value).await;
        let call = Call::new("TK.RATELIMIT.PEEK", &["k"], &["10", "1h", "ALGO", algo]);
        assert!(integers(&call.run(&mut conn, Via::Library).await).is_some());
    }
}

/// The stored states both write from a known state are the same, to the
/// nanosecond, and are what the algorithms say: a GCRA TAT ahead of `now`
/// moves by exactly cost × T (T = period / limit rounded up to a ns), and a
/// SLIDING log whose newest entry is ahead of `now` gets the request merged
/// into that entry. This pins the library's exact arithmetic (the split
/// ms/ns pairs, the long division of T, the varints) without depending on
/// when the calls run.
#[tokio::test]
async fn stored_states_are_exactly_the_modules() {
    let mut pair = Pair::start().await;
    let now_ms = server_time_us(&mut pair.module).await / 1000;
    let now_ns = u128::try_from(now_ms).unwrap() * 1_000_000;
    const HOUR_NS: u128 = 3_600_000_000_000;
    // (limit, period ms, burst, cost, TAT ahead of now in ns)
    let cases: [(u64, u64, u64, u64, u128); 6] = [
        (7, 3_600_000, 100, 3, HOUR_NS + 123_456_789),
        (3, 1_000, 20_000, 1, HOUR_NS + 999_999),
        (3, 1_000, 20_000, 7, HOUR_NS + 1),
        (1 << 40, 315_360_000_000, 1 << 40, 1 << 36, HOUR_NS + 5),
        (1_000_000, 1, 1 << 40, 12_345, HOUR_NS / 6 + 777),
        (10, 36_000_000, 10, 10, 0),
    ];
    for (index, (limit, period_ms, burst, cost, ahead)) in cases.into_iter().enumerate() {
        let t = (u128::from(period_ms) * 1_000_000).div_ceil(u128::from(limit));
        // The 0.1 form (whole TAT) when there is one, then the split form.
        let mut tat = now_ns + ahead;
        let key = format!("gcra:{index}");
        if ahead > 0 {
            pair.set(&key, tat.to_string().as_bytes()).await;
        }
        for round in 0..3 {
            let call = Call::new(
                "TK.RATELIMIT",
                &[&key],
                &[
                    &limit.to_string(),
                    &period_ms.to_string(),
                    "BURST",
                    &burst.to_string(),
                    "COST",
                    &cost.to_string(),
                ],
            );
            let (module, library) = pair.run(&call).await;
            if ahead == 0 && round == 0 {
                // A fresh key starts at each server's own `now`.
                assert_eq!(integers(&module).unwrap()[0], 1);
                assert_eq!(integers(&library).unwrap()[0], 1);
                continue;
            }
            if ahead == 0 {
                // 10 of 10 were taken (T = 1 h): refused, nothing written.
                assert_eq!(integers(&module).unwrap()[..3], [0, 10, 0]);
                assert_eq!(integers(&library).unwrap()[..3], [0, 10, 0]);
                continue;
            }
            assert_eq!(
                integers(&module).unwrap()[0],
                1,
                "case {index} round {round}"
            );
            assert_eq!(
                integers(&library).unwrap()[0],
                1,
                "case {index} round {round}"
            );
            tat += u128::from(cost) * t;
            let expected_value = format!("{:06}", tat % 1_000_000);
            let expected_expiry = i64::try_from(tat.div_ceil(1_000_000)).unwrap();
            for conn in [&mut pair.module, &mut pair.library] {
                let value = get(conn, &key).await.unwrap();
                let expiry: i64 = query(conn, &["PEXPIRETIME", &key]).await;
                assert_eq!(
                    (String::from_utf8(value).unwrap(), expiry),
                    (expected_value.clone(), expected_expiry),
                    "case {index} round {round}"
                );
            }
        }
    }
    // SLIDING: an expired entry, then two ahead of now (the clock stepped
    // back); admitted requests merge into the newest entry.
    let now_us = u64::try_from(now_ms).unwrap() * 1000;
    let old = now_us - 2 * 3_600_000_000;
    let f1 = now_us + 3_600_000_000 + 17;
    let f2 = f1 + (1 << 35);
    let log = |entries: &[(u64, u64)]| {
        let mut out = vec![0xA1u8];
        out.extend_from_slice(&entries[0].0.to_le_bytes());
        let mut previous = entries[0].0;
        for &(ts, cost) in entries {
            leb128(((ts - previous) << 1) | u64::from(cost > 1), &mut out);
            if cost > 1 {
                leb128(cost, &mut out);
            }
            previous = ts;
        }
        out
    };
    pair.set("sliding", &log(&[(old, 9), (f1, 3), (f2, 1000)]))
        .await;
    let mut merged = 1000;
    for cost in [5u64, 1, 300] {
        let call = Call::new(
            "TK.RATELIMIT",
            &["sliding"],
            &["2000", "1h", "ALGO", "SLIDING", "COST", &cost.to_string()],
        );
        let (module, library) = pair.run(&call).await;
        assert_eq!(
            integers(&module).unwrap()[..3],
            [1, 2000, 2000 - 3 - merged - cost as i64]
        );
        assert_eq!(
            integers(&module).unwrap()[..3],
            integers(&library).unwrap()[..3]
        );
        merged += cost as i64;
        let expected = log(&[(f1, 3), (f2, merged as u64)]);
        let expected_expiry = i64::try_from((f2 + 3_600_000_000).div_ceil(1000)).unwrap();
        for conn in [&mut pair.module, &mut pair.library] {
            assert_eq!(get(conn, "sliding").await.unwrap(), expected);
            let expiry: i64 = query(conn, &["PEXPIRETIME", "sliding"]).await;
            assert_eq!(expiry, expected_expiry);
        }
    }
}

// ---- rate limiting: differential ------------------------------------------------

/// A FIXED period of about 100 hours whose current window started a few
/// seconds before `now_ms` (now / 100 h ms, about 5 s in 2026): no window
/// rolls over during a test. (With m = now / 100 h and p = now / m,
/// now mod p = now mod m < m.)
fn fixed_period_ms(now_ms: i64) -> i64 {
    let m = now_ms / 360_000_000;
    now_ms / m
}

/// One random rate-limit call on a small set of keys. Each key keeps one
/// algorithm and, for GCRA, one emission interval (1 h), so that decisions
/// do not depend on when calls run; ALL combines keys of different
/// algorithms, whose waits are far apart (GCRA at most 20 h, FIXED about
/// 100 h, SLIDING about 300 h), so the limit it reports does not either.
fn random_call(rng: &mut StdRng, fixed_period: &str) -> Call {
    const GCRA_QUOTAS: [(&str, &str); 4] = [
        ("1", "1h"),
        ("2", "120m"),
        ("24", "86400000"),
        ("10", "36000s"),
    ];
    let group = |rng: &mut StdRng, algo: usize, args: &mut Vec<String>| match algo {
        0 => {
            let (limit, period) = GCRA_QUOTAS[rng.random_range(0..GCRA_QUOTAS.len())];
            let burst: u64 = rng.random_range(1..=20);
            args.extend([limit.to_string(), period.to_string()]);
            let capacity = if rng.random_bool(0.7) {
                args.extend(["BURST".to_string(), burst.to_string()]);
                burst
            } else {
                limit.parse().unwrap()
            };
            if rng.random_bool(0.8) {
                let over = u64::from(rng.random_bool(0.05));
                let cost = rng.random_range(0..=capacity + over);
                args.extend(["COST".to_string(), cost.to_string()]);
            }
        }
        _ => {
            let limit: u64 = rng.random_range(1..=10);
            let period = if algo == 1 {
                ["300h", "18000m", "1080000000", "1080000s"][rng.random_range(0..4)].to_string()
            } else {
                fixed_period.to_string()
            };
            args.extend([limit.to_string(), period]);
            let over = u64::from(rng.random_bool(0.05));
            let cost = rng.random_range(0..=limit + over);
            args.extend(["COST".to_string(), cost.to_string()]);
            args.extend([
                "ALGO".to_string(),
                ["", "SLIDING", "fixed"][algo].to_string(),
            ]);
        }
    };
    // Keys 0-1 GCRA, 2-3 SLIDING, 4-5 FIXED.
    let key = |index: usize| format!("{{rl}}:{index}");
    let mut args = Vec::new();
    let call = |command: &'static str, keys: Vec<String>, args: Vec<String>| Call {
        command,
        keys: keys.into_iter().map(String::into_bytes).collect(),
        args: args.into_iter().map(String::into_bytes).collect(),
    };
    match rng.random_range(0..100) {
        0..=69 => {
            let command = if rng.random_range(0..100) < 78 {
                "TK.RATELIMIT"
            } else {
                "TK.RATELIMIT.PEEK"
            };
            let index = rng.random_range(0..6);
            // Now and then the wrong algorithm for the key: WRONGTYPE.
            let algo = if rng.random_bool(0.05) {
                rng.random_range(0..3)
            } else {
                index / 2
            };
            group(rng, algo, &mut args);
            call(command, vec![key(index)], args)
        }
        70..=89 => {
            let count = rng.random_range(1..=3);
            let mut algos = vec![0usize, 1, 2];
            let mut keys = Vec::new();
            for _ in 0..count {
                let algo = algos.remove(rng.random_range(0..algos.len()));
                keys.push(key(algo * 2 + rng.random_range(0..2)));
                group(rng, algo, &mut args);
            }
            call("TK.RATELIMIT.ALL", keys, args)
        }
        90..=94 => {
            let keys = (0..rng.random_range(1..=2))
                .map(|_| key(rng.random_range(0..6)))
                .collect();
            call("TK.RATELIMIT.RESET", keys, Vec::new())
        }
        _ => {
            // A malformed call.
            let algo = rng.random_range(0..3);
            group(rng, algo, &mut args);
            let junk = [
                "BURST",
                "COST",
                "ALGO",
                "x",
                "0",
                "-1",
                "1d",
                "99999999999999999999",
            ];
            let at = rng.random_range(0..=args.len());
            args.insert(at, junk[rng.random_range(0..junk.len())].to_string());
            call("TK.RATELIMIT", vec![key(rng.random_range(0..6))], args)
        }
    }
}

/// Random sequences of rate-limit calls give the module's replies, call by
/// call, and leave the same keys behind.
#[tokio::test]
async fn random_ratelimit_sequences_reply_like_the_module() {
    let mut pair = Pair::start().await;
    for seed in 0..6u64 {
        pair.both(&["FLUSHALL"]).await;
        let start_us = server_time_us(&mut pair.module).await;
        let fixed_period = fixed_period_ms(start_us / 1000).to_string();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut replies = Vec::new();
        for _ in 0..150 {
            let call = random_call(&mut rng, &fixed_period);
            let (module, library) = pair.run(&call).await;
            replies.push((call, module, library));
        }
        let tolerance = 2 * (server_time_us(&mut pair.module).await - start_us) / 1000 + 5;
        let (mut admitted, mut refused, mut errors) = (0, 0, 0);
        for (index, (call, module, library)) in replies.iter().enumerate() {
            assert!(
                same_reply(call, module, library, tolerance),
                "seed {seed}, call {index}: {call:?}\nmodule:  {module:?}\nlibrary: {library:?}"
            );
            match integers(module).as_deref() {
                Some([1, ..]) => admitted += 1,
                Some([0, ..]) => refused += 1,
                _ => errors += usize::from(module.is_err()),
            }
        }
        // The sequence exercised every outcome.
        assert!(
            admitted > 20 && refused > 10 && errors > 5,
            "seed {seed}: {admitted} admitted, {refused} refused, {errors} errors"
        );
        assert_eq!(
            sorted_keys(&mut pair.module).await,
            sorted_keys(&mut pair.library).await,
            "seed {seed}"
        );
    }
}

// ---- rate limiting: one key, both implementations ---------------------------------

/// On a server with the module and the library, the two share state: calls
/// alternating between them on one key count as one limiter.
#[tokio::test]
async fn ratelimit_state_moves_between_module_and_library() {
    let server = module_and_library_server().await;
    let mut conn = server.conn().await;
    let now_ms = server_time_us(&mut conn).await / 1000;
    let fixed_period = fixed_period_ms(now_ms).to_string();
    for (algo, period) in [
        ("GCRA", "10h"),
        ("SLIDING", "10h"),
        ("FIXED", fixed_period.as_str()),
    ] {
        let key = format!("shared:{algo}");
        let args = ["10", period, "ALGO", algo];
        for step in 0..12i64 {
            let via = if step % 2 == 0 {
                Via::Module
            } else {
                Via::Library
            };
            let peek_via = if step % 2 == 0 {
                Via::Library
            } else {
                Via::Module
            };
            let cost = if step == 3 { "2" } else { "1" };
            let call = Call::new(
                "TK.RATELIMIT",
                &[&key],
                &[args[0], args[1], args[2], args[3], "COST", cost],
            );
            let reply = integers(&call.run(&mut conn, via).await).unwrap();
            // 1 + 1 + 1 + 2 + ... : admitted while the 10 units last.
            let used = if step >= 3 { step + 2 } else { step + 1 };
            if used <= 10 {
                assert_eq!(
                    &reply[..3],
                    &[1, 10, 10 - used],
                    "{algo} step {step} via {via:?}"
                );
            } else {
                assert_eq!(&reply[..3], &[0, 10, 0], "{algo} step {step} via {via:?}");
                assert!(reply[3] > 0);
            }
            let peek = Call::new(
                "TK.RATELIMIT.PEEK",
                &[&key],
                &[args[0], args[1], args[2], args[3], "COST", "0"],
            );
            let peeked = integers(&peek.run(&mut conn, peek_via).await).unwrap();
            assert_eq!(
                peeked[2],
                (10 - used).max(0),
                "{algo} step {step} peek via {peek_via:?}"
            );
        }
        // RESET by one, seen by the other.
        let reset = Call::new("TK.RATELIMIT.RESET", &[&key], &[]);
        assert_eq!(reset.run(&mut conn, Via::Library).await, Ok(Value::Int(1)));
        assert_eq!(reset.run(&mut conn, Via::Module).await, Ok(Value::Int(0)));
    }
    // The GCRA stored form is the module's: 6 digits, expiry at the TAT
    // rounded up; a 0.1 whole-TAT value is read by both and rewritten in
    // the split form by the library.
    let call = Call::new("TK.RATELIMIT", &["split"], &["3", "1s"]);
    call.run(&mut conn, Via::Library).await.unwrap();
    let value = get(&mut conn, "split").await.unwrap();
    assert_eq!(value.len(), 6);
    assert!(value.iter().all(u8::is_ascii_digit));
    // TAT = now + 1 h - 1 ms + 42 ns; 10 per 2 h: T = 12 min, tau = 2 h.
    let tat_ns = (now_ms + 3_600_000 - 1) as u128 * 1_000_000 + 42;
    set(&mut conn, "old", tat_ns.to_string().as_bytes()).await;
    let call = Call::new("TK.RATELIMIT", &["old"], &["10", "2h"]);
    let first = integers(&call.run(&mut conn, Via::Library).await).unwrap();
    assert_eq!(&first[..3], &[1, 10, 4]);
    assert_eq!(get(&mut conn, "old").await.unwrap(), b"000042");
    let expire: i64 = query(&mut conn, &["PEXPIRETIME", "old"]).await;
    assert_eq!(expire, now_ms + 3_600_000 + 12 * 60_000);
    let second = integers(&call.run(&mut conn, Via::Module).await).unwrap();
    assert_eq!(&second[..3], &[1, 10, 3]);
}

// ---- replication ------------------------------------------------------------------

/// A replica of a functions server reaches the primary's exact data: the
/// library's writes replicate as effects with absolute times.
#[tokio::test]
async fn a_replica_of_a_functions_server_has_the_same_data() {
    let primary = functions_server().await;
    let replica = Server::builder()
        .without_module()
        .replica_of(&primary)
        .start()
        .await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    let now_ms = server_time_us(&mut conn).await / 1000;
    let fixed_period = fixed_period_ms(now_ms).to_string();
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..200 {
        let call = if rng.random_bool(0.7) {
            random_call(&mut rng, &fixed_period)
        } else {
            random_lock_call(&mut rng)
        };
        let _ = call.run(&mut conn, Via::Library).await;
    }
    wait_for_sync(&primary, &replica).await;
    let mut replica_conn = replica.conn().await;
    let size: i64 = query(&mut conn, &["DBSIZE"]).await;
    assert!(size > 0);
    assert_eq!(
        debug_digest(&mut conn).await,
        debug_digest(&mut replica_conn).await
    );
    // PEEK runs on the replica (FCALL_RO); a write function does not.
    let peek = Call::new("TK.RATELIMIT.PEEK", &["{rl}:0"], &["1", "1h"]);
    assert!(integers(&send(&mut replica_conn, &peek.fcall_cmd(true)).await).is_some());
    let write = Call::new("TK.RATELIMIT", &["{rl}:0"], &["1", "1h"]);
    let refused = send(&mut replica_conn, &write.fcall_cmd(false))
        .await
        .unwrap_err();
    assert!(refused.starts_with("READONLY"), "{refused}");
}

// ---- locks ------------------------------------------------------------------------

/// Every malformed lock call: the same error text from both, nothing
/// changed.
#[tokio::test]
async fn lock_argument_errors_are_the_modules() {
    let mut pair = Pair::start().await;
    let acquire = Call::new("TK.LOCK.ACQUIRE", &["l", "f"], &["holder", "1h"]);
    assert_eq!(
        pair.same(&acquire).await,
        Ok(Value::Array(vec![
            Value::Int(1),
            Value::Int(1),
            Value::Int(3_600_000),
        ]))
    );
    let module_before = debug_digest(&mut pair.module).await;
    let library_before = debug_digest(&mut pair.library).await;
    let long = "t".repeat(129);
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "1s", "NX"]),
        ("TK.LOCK.ACQUIRE", &["l"], &[]),
        ("TK.LOCK.ACQUIRE", &["l", "l"], &["t", "1s"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["", "1s"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &[&long, "1s"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "0"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "0ms"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "-5"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "25h"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "86400001"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "1d"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "soon"]),
        ("TK.LOCK.ACQUIRE", &["l", "f"], &["t", "1.5s"]),
        (
            "TK.LOCK.ACQUIRE",
            &["l", "f"],
            &["t", "99999999999999999999999h"],
        ),
        ("TK.LOCK.RELEASE", &["l"], &[]),
        ("TK.LOCK.RELEASE", &["l"], &["t", "1s"]),
        ("TK.LOCK.RELEASE", &["l"], &[""]),
        ("TK.LOCK.RELEASE", &["l"], &[&long]),
        ("TK.LOCK.EXTEND", &["l"], &["t"]),
        ("TK.LOCK.EXTEND", &["l"], &["", "1s"]),
        ("TK.LOCK.EXTEND", &["l"], &["holder", "0ms"]),
        ("TK.LOCK.EXTEND", &["l"], &["holder", "1.5s"]),
        ("TK.LOCK.EXTEND", &["l"], &["holder", "25h"]),
        ("TK.LOCK.EXTEND", &["l"], &["holder", "1s", "x"]),
    ];
    for (command, keys, args) in cases {
        let reply = pair.same(&Call::new(command, keys, args)).await;
        assert!(
            reply.as_ref().is_err_and(|e| e.starts_with("ERR ")),
            "{command} {keys:?} {args:?}: {reply:?}"
        );
    }
    assert_eq!(debug_digest(&mut pair.module).await, module_before);
    assert_eq!(debug_digest(&mut pair.library).await, library_before);
    // Tokens are any bytes, up to 128 of them.
    let max = "m".repeat(128);
    for token in [max.as_bytes(), b"\x00\xff\r\n"] {
        let call = Call::bytes("TK.LOCK.ACQUIRE", &[b"l2", b"f2"], &[token, b"1h"]);
        let (module, library) = pair.run(&call).await;
        assert_eq!(
            integers(&module).unwrap()[0],
            integers(&library).unwrap()[0]
        );
        let release = Call::bytes("TK.LOCK.RELEASE", &[b"l2"], &[token]);
        assert_eq!(pair.same(&release).await, Ok(Value::Int(1)));
    }
}

/// Keys of other types, fence keys that are not counters, holders set by
/// hand: the module's replies and errors, nothing written.
#[tokio::test]
async fn lock_refuses_foreign_data_like_the_module() {
    let mut pair = Pair::start().await;
    pair.both(&["HSET", "hash", "f", "v"]).await;
    for (keys, args) in [
        (&["hash", "f"][..], &["t", "1s"][..]),
        (&["l", "hash"], &["t", "1s"]),
    ] {
        let call = Call::new("TK.LOCK.ACQUIRE", keys, args);
        assert!(pair
            .same(&call)
            .await
            .unwrap_err()
            .starts_with("WRONGTYPE Operation"));
    }
    for call in [
        Call::new("TK.LOCK.RELEASE", &["hash"], &["t"]),
        Call::new("TK.LOCK.EXTEND", &["hash"], &["t", "1s"]),
    ] {
        assert!(pair
            .same(&call)
            .await
            .unwrap_err()
            .starts_with("WRONGTYPE Operation"));
    }
    // Fence values INCR could not have written: refused whether or not the
    // lock is free.
    pair.set("busy", b"someone").await;
    pair.both(&["PEXPIRE", "busy", "3600000"]).await;
    for fence in [
        &b"007"[..],
        b"00",
        b"abc",
        b"-1",
        b"",
        b" 1",
        b"1 ",
        b"+1",
        b"1.0",
        b"9223372036854775808",
        b"18446744073709551615",
        b"99999999999999999999",
        b"\xff",
    ] {
        pair.set("fence", fence).await;
        for lock in ["free", "busy"] {
            let call = Call::new("TK.LOCK.ACQUIRE", &[lock, "fence"], &["t", "1s"]);
            let error = pair.same(&call).await.unwrap_err();
            assert!(
                error.starts_with("WRONGTYPE fence key"),
                "{fence:?}: {error}"
            );
        }
        assert_eq!(
            get(&mut pair.library, "fence").await.as_deref(),
            Some(fence)
        );
        assert_eq!(get(&mut pair.library, "free").await, None);
    }
    // Canonical counters are used as they are.
    for (fence, next) in [
        ("0", 1),
        ("41", 42),
        ("9007199254740991", 9_007_199_254_740_992),
    ] {
        pair.set("fence", fence.as_bytes()).await;
        let call = Call::new("TK.LOCK.ACQUIRE", &["free", "fence"], &["t", "1h"]);
        let reply = pair.same(&call).await;
        assert_eq!(integers(&reply).unwrap(), vec![1, next, 3_600_000]);
        pair.both(&["DEL", "free"]).await;
    }
    // A holder set by hand: any string; without an expiry it is reported
    // as -1, like PTTL.
    pair.set("manual", b"not a token of ours").await;
    let call = Call::new("TK.LOCK.ACQUIRE", &["manual", "fence"], &["t", "1s"]);
    assert_eq!(integers(&pair.same(&call).await).unwrap(), vec![0, 0, -1]);
    let call = Call::new("TK.LOCK.RELEASE", &["manual"], &["t"]);
    assert_eq!(pair.same(&call).await, Ok(Value::Int(0)));
    let call = Call::new(
        "TK.LOCK.EXTEND",
        &["manual"],
        &["not a token of ours", "1s"],
    );
    assert_eq!(pair.same(&call).await, Ok(Value::Int(1)));
}

/// The library's fencing tokens stop at 2^53 (documented in tk.lua): a
/// Lua integer reply is exact only up to there.
#[tokio::test]
async fn the_librarys_fence_stops_at_2_pow_53() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    for fence in [
        "9007199254740992",
        "9007199254740993",
        "9223372036854775807",
    ] {
        set(&mut conn, "fence", fence.as_bytes()).await;
        let call = Call::new("TK.LOCK.ACQUIRE", &["l", "fence"], &["t", "1s"]);
        let error = call.run(&mut conn, Via::Library).await.unwrap_err();
        assert!(
            error.starts_with("ERR the fence counter is at its maximum"),
            "{error}"
        );
        assert_eq!(get(&mut conn, "fence").await.unwrap(), fence.as_bytes());
        assert_eq!(get(&mut conn, "l").await, None);
    }
}

/// One random lock call on a few locks and owners (TTLs of hours: nothing
/// expires during a test).
fn random_lock_call(rng: &mut StdRng) -> Call {
    let lock = rng.random_range(0..3);
    let lock_key = format!("{{lk}}:{lock}");
    let fence_key = format!("{{lk}}:{lock}:fence");
    let token = ["alice", "bob", "carol"][rng.random_range(0..3)];
    let ttl = ["1h", "2h", "90m", "7200000"][rng.random_range(0..4)];
    match rng.random_range(0..10) {
        0..=4 => Call::new("TK.LOCK.ACQUIRE", &[&lock_key, &fence_key], &[token, ttl]),
        5..=6 => Call::new("TK.LOCK.RELEASE", &[&lock_key], &[token]),
        7..=8 => Call::new("TK.LOCK.EXTEND", &[&lock_key], &[token, ttl]),
        _ => Call::new("TK.LOCK.EXTEND", &[&lock_key], &[token, "0"]),
    }
}

#[tokio::test]
async fn random_lock_sequences_reply_like_the_module() {
    let mut pair = Pair::start().await;
    let start_us = server_time_us(&mut pair.module).await;
    let mut rng = StdRng::seed_from_u64(16);
    let mut replies = Vec::new();
    for _ in 0..300 {
        let call = random_lock_call(&mut rng);
        let (module, library) = pair.run(&call).await;
        replies.push((call, module, library));
    }
    let tolerance = 2 * (server_time_us(&mut pair.module).await - start_us) / 1000 + 5;
    let mut granted = 0;
    for (index, (call, module, library)) in replies.iter().enumerate() {
        assert!(
            same_reply(call, module, library, tolerance),
            "call {index}: {call:?}\nmodule:  {module:?}\nlibrary: {library:?}"
        );
        if call.command == "TK.LOCK.ACQUIRE" && integers(module).is_some_and(|r| r[0] == 1) {
            granted += 1;
        }
    }
    assert!(granted > 10, "only {granted} acquires were granted");
    assert_eq!(
        sorted_keys(&mut pair.module).await,
        sorted_keys(&mut pair.library).await
    );
    for lock in 0..3 {
        let fence = format!("{{lk}}:{lock}:fence");
        assert_eq!(
            get(&mut pair.module, &fence).await,
            get(&mut pair.library, &fence).await
        );
    }
}

/// On a server with both, one lock is one lock: fencing tokens continue
/// and owners are recognised across the module and the library; expiries
/// are now rounded up plus the TTL.
#[tokio::test]
async fn lock_state_moves_between_module_and_library() {
    let server = module_and_library_server().await;
    let mut conn = server.conn().await;
    let acquire =
        |token: &str, ttl: &str| Call::new("TK.LOCK.ACQUIRE", &["{j}l", "{j}f"], &[token, ttl]);
    let mut expected_fence = 0;
    for round in 0..3 {
        for (via, other) in [(Via::Module, Via::Library), (Via::Library, Via::Module)] {
            let before_ms = server_time_us(&mut conn).await / 1000;
            let granted = integers(&acquire("owner", "1h").run(&mut conn, via).await).unwrap();
            let after_ms = server_time_us(&mut conn).await / 1000;
            expected_fence += 1;
            assert_eq!(
                granted,
                vec![1, expected_fence, 3_600_000],
                "round {round} via {via:?}"
            );
            let expiry: i64 = query(&mut conn, &["PEXPIRETIME", "{j}l"]).await;
            assert!(
                (before_ms + 3_600_000..=after_ms + 1 + 3_600_000).contains(&expiry),
                "{expiry} not within [{}, {}]",
                before_ms + 3_600_000,
                after_ms + 1 + 3_600_000
            );
            // The other sees the holder.
            let busy = integers(&acquire("intruder", "1s").run(&mut conn, other).await).unwrap();
            assert_eq!(busy[..2], [0, 0]);
            // (A lock lives up to 1 ms longer than its TTL: now rounded up.)
            assert!((1..=3_600_001).contains(&busy[2]), "{busy:?}");
            let extend = Call::new("TK.LOCK.EXTEND", &["{j}l"], &["owner", "2h"]);
            assert_eq!(extend.run(&mut conn, other).await, Ok(Value::Int(1)));
            let expiry: i64 = query(&mut conn, &["PEXPIRETIME", "{j}l"]).await;
            assert!(expiry >= before_ms + 7_200_000, "{expiry}");
            let release = Call::new("TK.LOCK.RELEASE", &["{j}l"], &["owner"]);
            assert_eq!(release.run(&mut conn, other).await, Ok(Value::Int(1)));
            assert_eq!(release.run(&mut conn, via).await, Ok(Value::Int(0)));
        }
    }
    assert_eq!(get(&mut conn, "{j}f").await.unwrap(), b"6");
    let fence_ttl: i64 = query(&mut conn, &["PTTL", "{j}f"]).await;
    assert_eq!(fence_ttl, -1);
}

// ---- the client's choice -----------------------------------------------------------

#[tokio::test]
async fn ensure_backend_prefers_the_module_and_loads_the_library_otherwise() {
    use tk_redis::functions::{ensure_backend, loaded_library_version, Backend, LIBRARY_SOURCE};

    // With the module: the module, and no library is loaded.
    let with_module = Server::start().await;
    let conn = with_module.conn().await;
    assert_eq!(ensure_backend(&conn).await.unwrap(), Backend::Module);
    assert_eq!(loaded_library_version(&conn).await.unwrap(), None);

    // Without: the library, loaded once and then left alone.
    let plain = Server::builder().without_module().start().await;
    let mut conn = plain.conn().await;
    assert_eq!(loaded_library_version(&conn).await.unwrap(), None);
    assert_eq!(ensure_backend(&conn).await.unwrap(), Backend::Library);
    assert_eq!(
        loaded_library_version(&conn).await.unwrap().as_deref(),
        Some(LIBRARY_VERSION)
    );
    let call = Call::new("TK.RATELIMIT", &["k"], &["10", "1s"]);
    assert!(integers(&call.run(&mut conn, Via::Library).await).is_some());
    assert_eq!(ensure_backend(&conn).await.unwrap(), Backend::Library);

    // An older library is replaced; a newer one (a newer client's) is kept.
    let declared = format!("local VERSION = '{LIBRARY_VERSION}'");
    for (version, kept) in [("0.0.1", false), ("99.0.0", true)] {
        let source = LIBRARY_SOURCE.replace(&declared, &format!("local VERSION = '{version}'"));
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(source)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(ensure_backend(&conn).await.unwrap(), Backend::Library);
        let expected = if kept { version } else { LIBRARY_VERSION };
        assert_eq!(
            loaded_library_version(&conn).await.unwrap().as_deref(),
            Some(expected)
        );
    }
}

/// When the library cannot be loaded or called, the error says what to
/// grant.
#[tokio::test]
async fn ensure_backend_says_what_an_acl_must_grant() {
    use tk_redis::functions::ensure_backend;
    use tk_redis::Error;

    let plain = Server::builder().without_module().start().await;
    let mut admin = plain.conn().await;
    for user in [
        &[
            "ACL",
            "SETUSER",
            "noload",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-function|load",
        ][..],
        &[
            "ACL",
            "SETUSER",
            "nocall",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-fcall_ro",
        ],
    ] {
        let _: () = query(&mut admin, user).await;
    }
    let noload = plain.conn_as("noload", "pw").await;
    match ensure_backend(&noload).await {
        Err(Error::NoBackend { code, message }) => {
            assert_eq!(code, "NOPERM");
            assert!(message.contains("+function|load"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Once an administrator has loaded it, that user can use it.
    load_library(&mut admin).await;
    assert_eq!(
        ensure_backend(&noload).await.unwrap(),
        tk_redis::functions::Backend::Library
    );
    let nocall = plain.conn_as("nocall", "pw").await;
    match ensure_backend(&nocall).await {
        Err(Error::NoBackend { code, message }) => {
            assert_eq!(code, "NOPERM");
            assert!(message.contains("+fcall +fcall_ro"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
