//! TK.CACHE.* against real servers: visibility, invalidation (user and
//! namespace), the IFGEN race, background reclaim of a 100,000-entry user,
//! replication, AOF and every error path. No timing assertions: the PING
//! latency during a large invalidation is reported, not asserted.
//!
//! The behavioural tests run on a standalone server and on a Redis Cluster
//! ([`tk_redis_tests::topology_tests!`] at the end of the file); every
//! multi-key call uses one user's keys, which share that user's hash tag.
//! Replication, AOF, error paths and command metadata stay standalone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::Value;
use tk_redis_tests::functions::assert_read_only_functions;
use tk_redis_tests::harness::{debug_digest, info_section, wait_for_sync, Server};
use tk_redis_tests::raw::{assert_refused_changing_nothing, dbsize, pexpiretime, snapshot};
use tk_redis_tests::topology::Topology;
use tk_redis_tests::{module_mode, Conn};

/// The three bookkeeping keys of a test user `u` (one hash tag).
fn generations(user: &str) -> String {
    format!("tk:cg:{{{user}}}")
}
fn index(user: &str) -> String {
    format!("tk:ci:{{{user}}}")
}
fn entry(user: &str, namespace: &str, id: &str) -> String {
    format!("tk:c:{{{user}}}:{namespace}:{id}")
}

async fn get(
    conn: &mut impl ConnectionLike,
    user: &str,
    namespace: &str,
    id: &str,
) -> (i64, Vec<u8>) {
    let reply: (i64, Vec<u8>) = redis::cmd("TK.CACHE.GET")
        .arg(entry(user, namespace, id))
        .arg(generations(user))
        .arg(namespace)
        .query_async(conn)
        .await
        .unwrap();
    reply
}

async fn set(
    conn: &mut impl ConnectionLike,
    user: &str,
    namespace: &str,
    id: &str,
    ttl: &str,
    value: &str,
    ifgen: Option<&[u8]>,
) -> i64 {
    let mut cmd = redis::cmd("TK.CACHE.SET");
    cmd.arg(entry(user, namespace, id))
        .arg(generations(user))
        .arg(index(user))
        .arg(namespace)
        .arg(ttl)
        .arg(value);
    if let Some(token) = ifgen {
        cmd.arg("IFGEN").arg(token);
    }
    cmd.query_async(conn).await.unwrap()
}

async fn invalidate_user(conn: &mut impl ConnectionLike, user: &str) -> i64 {
    redis::cmd("TK.CACHE.INVALIDATEUSER")
        .arg(generations(user))
        .arg(index(user))
        .query_async(conn)
        .await
        .unwrap()
}

async fn invalidate_namespace(conn: &mut impl ConnectionLike, user: &str, namespace: &str) -> i64 {
    redis::cmd("TK.CACHE.INVALIDATENS")
        .arg(generations(user))
        .arg(index(user))
        .arg(namespace)
        .query_async(conn)
        .await
        .unwrap()
}

/// A plain connection to the server holding `user`'s keys: the standalone
/// server, or the cluster master serving the user's hash tag. Its `INFO tk`
/// counts that user's commands and its reclaimer frees that user's entries.
async fn user_node(topology: &Topology, user: &str) -> Conn {
    topology.node_for(&generations(user)).await.conn().await
}

/// Waits (bounded) until the reclaimer of the server behind `conn` has
/// nothing pending. The library has no background reclaimer: it reclaims a
/// bounded batch inside each SET and INVALIDATE*, so there is nothing to
/// wait for.
async fn wait_for_reclaim(conn: &mut impl ConnectionLike) {
    if !module_mode() {
        return;
    }
    for _ in 0..600 {
        let info = info_section(conn, "tk").await;
        if info.get("tk_cache_reclaim_pending").map(String::as_str) == Some("0") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reclaimer did not finish within 30 s");
}

async fn hit_miss_and_generation_tokens(topology: &Topology) {
    let mut conn = topology.connection().await;
    assert_eq!(get(&mut conn, "a", "http", "1").await, (0, b"0.0".to_vec()));
    assert_eq!(
        set(&mut conn, "a", "http", "1", "5m", "page", Some(b"0.0")).await,
        1
    );
    assert_eq!(
        get(&mut conn, "a", "http", "1").await,
        (1, b"page".to_vec())
    );
    // Native types: the entry is a readable hash with an absolute expiry.
    let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(entry("a", "http", "1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields["v"], "page");
    assert_eq!(fields["ns"], "http");
    let entry_expiry = pexpiretime(&mut conn, &entry("a", "http", "1")).await;
    assert!(entry_expiry > 0);
    // The index outlives the entry it lists; no generations key until needed.
    assert!(pexpiretime(&mut conn, &index("a")).await >= entry_expiry);
    assert_eq!(pexpiretime(&mut conn, &generations("a")).await, -2);
}

async fn invalidating_one_user_leaves_another_untouched(topology: &Topology) {
    let mut conn = topology.connection().await;
    for user in ["a", "b"] {
        for namespace in ["http", "search", "analytics"] {
            set(&mut conn, user, namespace, "x", "5m", user, None).await;
        }
    }
    assert_eq!(invalidate_user(&mut conn, "a").await, 1);
    for namespace in ["http", "search", "analytics"] {
        assert_eq!(
            get(&mut conn, "a", namespace, "x").await.0,
            0,
            "a/{namespace}"
        );
        assert_eq!(
            get(&mut conn, "b", namespace, "x").await,
            (1, b"b".to_vec()),
            "b/{namespace}"
        );
    }
    // The token of a miss after invalidation carries the new generation.
    assert_eq!(get(&mut conn, "a", "http", "x").await.1, b"1.0");
}

async fn namespace_invalidation_only_hides_that_namespace(topology: &Topology) {
    let mut conn = topology.connection().await;
    for namespace in ["http", "analytics"] {
        set(&mut conn, "a", namespace, "x", "15m", namespace, None).await;
    }
    assert_eq!(invalidate_namespace(&mut conn, "a", "analytics").await, 1);
    assert_eq!(
        get(&mut conn, "a", "analytics", "x").await,
        (0, b"0.1".to_vec())
    );
    assert_eq!(
        get(&mut conn, "a", "http", "x").await,
        (1, b"http".to_vec())
    );
    wait_for_reclaim(&mut user_node(topology, "a").await).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&[entry("a", "analytics", "x"), entry("a", "http", "x")])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        exists, 1,
        "the invalidated entry was reclaimed, the other kept"
    );
}

async fn a_value_computed_before_an_invalidation_is_not_stored(topology: &Topology) {
    let mut conn = topology.connection().await;
    set(&mut conn, "a", "search", "q", "5m", "old", None).await;
    invalidate_user(&mut conn, "a").await;
    // Reader misses and starts computing with the generations it saw...
    let (hit, token) = get(&mut conn, "a", "search", "q").await;
    assert_eq!(hit, 0);
    // ...meanwhile the user's data changes and the cache is invalidated...
    invalidate_namespace(&mut conn, "a", "search").await;
    // ...so the now-stale result is refused, and nothing is visible.
    assert_eq!(
        set(&mut conn, "a", "search", "q", "5m", "stale", Some(&token)).await,
        0
    );
    assert_eq!(get(&mut conn, "a", "search", "q").await.0, 0);
    // A fresh computation with the current token is stored.
    let (_, token) = get(&mut conn, "a", "search", "q").await;
    assert_eq!(
        set(&mut conn, "a", "search", "q", "5m", "fresh", Some(&token)).await,
        1
    );
    assert_eq!(
        get(&mut conn, "a", "search", "q").await,
        (1, b"fresh".to_vec())
    );
    if module_mode() {
        let info = info_section(&mut user_node(topology, "a").await, "tk").await;
        assert_eq!(info["tk_cache_sets_refused"], "1");
    }
}

async fn entries_and_bookkeeping_expire_by_themselves(topology: &Topology) {
    let mut conn = topology.connection().await;
    set(&mut conn, "a", "http", "1", "150ms", "v", None).await;
    set(&mut conn, "a", "http", "2", "300ms", "v", None).await;
    let last = pexpiretime(&mut conn, &entry("a", "http", "2")).await;
    assert_eq!(
        pexpiretime(&mut conn, &index("a")).await,
        last,
        "index expires with its last entry"
    );
    for _ in 0..100 {
        if dbsize(&mut conn).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("entries or bookkeeping keys did not expire");
}

async fn a_user_with_100k_entries_is_invalidated_in_one_step_and_reclaimed(topology: &Topology) {
    let mut conn = topology.connection().await;
    // The server holding "big": it runs the invalidation and the reclaim.
    let big_node = topology.node_for(&generations("big")).await;
    let mut node = big_node.conn().await;
    set(&mut conn, "other", "http", "keep", "1h", "safe", None).await;
    let baseline = dbsize(&mut conn).await;
    const ENTRIES: usize = 100_000;
    for chunk in 0..(ENTRIES / 5_000) {
        let mut pipe = redis::pipe();
        for i in chunk * 5_000..(chunk + 1) * 5_000 {
            pipe.cmd("TK.CACHE.SET")
                .arg(entry("big", "http", &i.to_string()))
                .arg(generations("big"))
                .arg(index("big"))
                .arg("http")
                .arg("1h")
                .arg("cached response body")
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    assert_eq!(dbsize(&mut conn).await, baseline + ENTRIES as i64 + 1);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut node)
        .await
        .unwrap();

    // Another client pings that server throughout; its worst round trip is
    // reported.
    let mut pinger = big_node
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pings = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut count = 0u32;
        loop {
            let started = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut pinger).await.unwrap();
            worst = worst.max(started.elapsed());
            count += 1;
            if stop_rx.try_recv().is_ok() {
                return (worst, count);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    assert_eq!(invalidate_user(&mut conn, "big").await, 1);
    let invalidate_took = started.elapsed();
    // Invisible at once, before any reclaim: sample across the range.
    for i in (0..ENTRIES).step_by(9_973) {
        assert_eq!(
            get(&mut conn, "big", "http", &i.to_string()).await.0,
            0,
            "entry {i}"
        );
    }
    if !module_mode() {
        // The library reclaims 32 entries per SET/INVALIDATE* call, not in
        // the background: the rest expire with their TTL (tk.lua's header).
        stop_tx.send(()).unwrap();
        pings.await.unwrap();
        return;
    }
    wait_for_reclaim(&mut node).await;
    stop_tx.send(()).unwrap();
    let (worst_ping, pings) = pings.await.unwrap();
    println!(
        "100,000-entry invalidation: command round trip {invalidate_took:?}; \
         worst PING round trip during invalidation and reclaim {worst_ping:?} over {pings} pings"
    );
    // Memory is back: only the generations key of the invalidated user remains.
    assert_eq!(dbsize(&mut conn).await, baseline + 1);
    assert_eq!(
        get(&mut conn, "other", "http", "keep").await,
        (1, b"safe".to_vec())
    );
    let info = info_section(&mut node, "tk").await;
    assert_eq!(info["tk_cache_entries_reclaimed"], ENTRIES.to_string());
    // Nothing scanned the keyspace.
    let stats = info_section(&mut node, "commandstats").await;
    assert!(!stats.contains_key("cmdstat_keys"), "{stats:?}");
    assert!(!stats.contains_key("cmdstat_scan"), "{stats:?}");
}

// Standalone only: compares one primary with its own replica key by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reaches_identical_state_including_reclaim() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    for user in ["a", "b"] {
        for i in 0..300 {
            let namespace = ["http", "search", "analytics"][i % 3];
            set(&mut conn, user, namespace, &i.to_string(), "1h", "v", None).await;
        }
    }
    invalidate_namespace(&mut conn, "b", "search").await;
    invalidate_user(&mut conn, "a").await;
    let (_, token) = get(&mut conn, "b", "http", "x").await;
    set(&mut conn, "b", "http", "x", "1h", "fresh", Some(&token)).await;
    // Inside MULTI and scripts the effects replicate, not the calls.
    let _: Vec<i64> = redis::pipe()
        .atomic()
        .cmd("TK.CACHE.SET")
        .arg(&[
            entry("c", "http", "t").as_str(),
            &generations("c"),
            &index("c"),
            "http",
            "1h",
            "tx",
        ])
        .cmd("TK.CACHE.INVALIDATENS")
        .arg(&[generations("c").as_str(), &index("c"), "http"])
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_for_reclaim(&mut conn).await;
    wait_for_sync(&primary, &replica).await;
    let mut replica_conn = replica.conn().await;
    let primary_state = snapshot(&mut conn).await;
    assert_eq!(primary_state, snapshot(&mut replica_conn).await);
    assert_eq!(
        debug_digest(&mut conn).await,
        debug_digest(&mut replica_conn).await
    );
    assert!(
        primary_state.len() > 100,
        "b's http and analytics entries remain"
    );
    // Reads run on the replica with the primary's answers.
    let reply: (i64, Vec<u8>) = redis::cmd("TK.CACHE.GET")
        .arg(&[entry("b", "http", "x").as_str(), &generations("b"), "http"])
        .query_async(&mut replica_conn)
        .await
        .unwrap();
    assert_eq!(reply, (1, b"fresh".to_vec()));
}

// Standalone only: restarts one server from its AOF.
#[tokio::test]
async fn aof_restart_keeps_entries_and_generations() {
    let mut server = Server::builder().aof(true).start().await;
    let mut conn = server.conn().await;
    set(&mut conn, "a", "http", "1", "1h", "kept", None).await;
    set(&mut conn, "a", "search", "1", "1h", "gone", None).await;
    invalidate_namespace(&mut conn, "a", "search").await;
    wait_for_reclaim(&mut conn).await;
    let before = snapshot(&mut conn).await;
    drop(conn);
    server.restart().await;
    let mut conn = server.conn().await;
    assert_eq!(snapshot(&mut conn).await, before);
    assert_eq!(
        get(&mut conn, "a", "http", "1").await,
        (1, b"kept".to_vec())
    );
    assert_eq!(
        get(&mut conn, "a", "search", "1").await,
        (0, b"0.1".to_vec())
    );
}

// Standalone only: compares the whole keyspace before and after, and some
// cases deliberately mix keys of different slots.
#[tokio::test]
async fn every_error_path_replies_err_and_changes_nothing() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    // Keys of other types, each under its own user's tag.
    let str_entry = entry("s1", "http", "x");
    let (str_generations, str_index) = (generations("s2"), index("s3"));
    for key in [&str_entry, &str_generations, &str_index] {
        let _: () = redis::cmd("SET")
            .arg(&[key.as_str(), "x"])
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Generations hashes tk could not have written: not a number, and
    // above 2^63 - 1 (both WRONGTYPE at every command); and the largest
    // generation, which cannot be invalidated further.
    let mut hand_written = Vec::new();
    for (user, value) in [
        ("bad", "not-a-number"),
        ("big", "18446744073709551615"),
        ("max", "9223372036854775807"),
    ] {
        let key = generations(user);
        let _: () = redis::cmd("HSET")
            .arg(&[key.as_str(), "u", value])
            .query_async(&mut conn)
            .await
            .unwrap();
        hand_written.push((entry(user, "http", "1"), key, index(user)));
    }
    let [(bad_e, bad_g, bad_i), (big_e, big_g, big_i), (_, max_g, max_i)] = &hand_written[..]
    else {
        unreachable!()
    };
    set(&mut conn, "a", "http", "1", "1h", "v", None).await;
    let e = entry("a", "http", "2");
    let g = generations("a");
    let i = index("a");
    let k_entry_b_http_2 = entry("b", "http", "2");
    let k_entry_s2_http_x = entry("s2", "http", "x");
    let k_entry_s3_http_x = entry("s3", "http", "x");
    let k_generations_b = generations("b");
    let k_generations_s1 = generations("s1");
    let k_generations_s3 = generations("s3");
    let k_index_b = index("b");
    let k_index_s1 = index("s1");
    let k_index_s2 = index("s2");
    const NAMES: &str =
        "ERR cache keys must be tk:c:{<tag>}:<name>, tk:cg:{<tag>} and tk:ci:{<tag>}, with one tag";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["TK.CACHE.GET", &e, &g],
            "ERR wrong number of arguments",
        ),
        (
            vec!["TK.CACHE.GET", &e, &e, "http"],
            "ERR syntax error: the same key",
        ),
        (
            vec!["TK.CACHE.GET", &e, &g, "bad ns"],
            "ERR syntax error: namespace must be",
        ),
        (
            vec!["TK.CACHE.GET", &str_entry, &k_generations_s1, "http"],
            "WRONGTYPE",
        ),
        (
            vec!["TK.CACHE.GET", &k_entry_s2_http_x, &str_generations, "http"],
            "WRONGTYPE",
        ),
        (
            vec!["TK.CACHE.GET", bad_e, bad_g, "http"],
            "WRONGTYPE cache generations key",
        ),
        (
            vec!["TK.CACHE.GET", big_e, big_g, "http"],
            "WRONGTYPE cache generations key",
        ),
        // Names outside the layout, or of two users.
        (vec!["TK.CACHE.GET", "x", &g, "http"], NAMES),
        (vec!["TK.CACHE.GET", &e, "x", "http"], NAMES),
        (vec!["TK.CACHE.GET", &e, &k_generations_b, "http"], NAMES),
        (vec!["TK.CACHE.GET", &e, &i, "http"], NAMES),
        (
            vec!["TK.CACHE.SET", &e, &g, &i, "http", "5m"],
            "ERR wrong number of arguments",
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, &i, "http", "0", "v"],
            "ERR ttl must be between",
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, &i, "http", "8d", "v"],
            "ERR ttl must be a duration",
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, &i, "http", "5m", "v", "IFGEN", "x"],
            "ERR syntax error: IFGEN takes",
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, &i, "http", "5m", "v", "NX", "1"],
            "ERR syntax error: unknown option",
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, &g, "http", "5m", "v"],
            "ERR syntax error: the same key",
        ),
        (
            vec![
                "TK.CACHE.SET",
                &str_entry,
                &k_generations_s1,
                &k_index_s1,
                "http",
                "5m",
                "v",
            ],
            "WRONGTYPE",
        ),
        (
            vec![
                "TK.CACHE.SET",
                &k_entry_s3_http_x,
                &k_generations_s3,
                &str_index,
                "http",
                "5m",
                "v",
            ],
            "WRONGTYPE",
        ),
        (
            vec!["TK.CACHE.SET", bad_e, bad_g, bad_i, "http", "5m", "v"],
            "WRONGTYPE cache generations key",
        ),
        (
            vec!["TK.CACHE.SET", big_e, big_g, big_i, "http", "5m", "v"],
            "WRONGTYPE cache generations key",
        ),
        (
            vec!["TK.CACHE.SET", "users:42", &g, &i, "http", "5m", "v"],
            NAMES,
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, "rl:cidx", "http", "5m", "v"],
            NAMES,
        ),
        (
            vec!["TK.CACHE.SET", &e, &g, &k_index_b, "http", "5m", "v"],
            NAMES,
        ),
        (
            vec!["TK.CACHE.SET", &k_entry_b_http_2, &g, &i, "http", "5m", "v"],
            NAMES,
        ),
        (
            vec!["TK.CACHE.INVALIDATEUSER", &g],
            "ERR wrong number of arguments",
        ),
        (
            vec!["TK.CACHE.INVALIDATEUSER", &str_generations, &k_index_s2],
            "WRONGTYPE",
        ),
        (
            vec!["TK.CACHE.INVALIDATEUSER", &k_generations_s3, &str_index],
            "WRONGTYPE",
        ),
        (
            vec!["TK.CACHE.INVALIDATEUSER", bad_g, bad_i],
            "WRONGTYPE cache generations key",
        ),
        (
            vec!["TK.CACHE.INVALIDATEUSER", big_g, big_i],
            "WRONGTYPE cache generations key",
        ),
        (
            vec!["TK.CACHE.INVALIDATEUSER", max_g, max_i],
            "ERR generation limit reached",
        ),
        (vec!["TK.CACHE.INVALIDATEUSER", "rl:cgen", "rl:cidx"], NAMES),
        (vec!["TK.CACHE.INVALIDATEUSER", &g, &k_index_b], NAMES),
        (
            vec!["TK.CACHE.INVALIDATENS", &k_generations_b, &i, "http"],
            NAMES,
        ),
        (
            vec!["TK.CACHE.INVALIDATENS", &g, &i],
            "ERR wrong number of arguments",
        ),
        (
            vec!["TK.CACHE.INVALIDATENS", &g, &i, "a:b"],
            "ERR syntax error: namespace must be",
        ),
    ];
    let cases: Vec<(&[&str], &str)> = cases
        .iter()
        .map(|(args, expected)| (args.as_slice(), *expected))
        .collect();
    assert_refused_changing_nothing(&mut conn, &cases).await;
}

// Standalone only: command metadata, and INFO counters of one server.
#[tokio::test]
async fn key_specs_flags_docs_and_info() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&["GETKEYS", "TK.CACHE.SET", "e", "g", "i", "http", "5m", "v"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["e", "g", "i"]);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&["GETKEYS", "TK.CACHE.INVALIDATENS", "g", "i", "http"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["g", "i"]);
    if !module_mode() {
        // The library's counterpart of the flags (it has no docs or
        // counters): only GET is a `no-writes` function.
        assert_read_only_functions(
            &mut conn,
            &[
                ("tk.cache.get", true),
                ("tk.cache.set", false),
                ("tk.cache.invalidateuser", false),
                ("tk.cache.invalidatens", false),
            ],
        )
        .await;
        return;
    }
    let info: Value = redis::cmd("COMMAND")
        .arg(&["INFO", "tk.cache.get"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(format!("{info:?}").contains("readonly"));
    for name in [
        "tk.cache.get",
        "tk.cache.set",
        "tk.cache.invalidateuser",
        "tk.cache.invalidatens",
    ] {
        let docs: Value = redis::cmd("COMMAND")
            .arg(&["DOCS", name])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(format!("{docs:?}").contains("complexity"), "{name}");
    }
    get(&mut conn, "a", "http", "1").await;
    set(&mut conn, "a", "http", "1", "1m", "v", None).await;
    get(&mut conn, "a", "http", "1").await;
    invalidate_user(&mut conn, "a").await;
    let info = info_section(&mut conn, "tk").await;
    for (field, value) in [
        ("tk_cache_hits", "1"),
        ("tk_cache_misses", "1"),
        ("tk_cache_sets", "1"),
        ("tk_cache_invalidations", "1"),
    ] {
        assert_eq!(info.get(field).map(String::as_str), Some(value), "{field}");
    }
    assert!(info.contains_key("tk_cache_entries_reclaimed"));
    assert!(info.contains_key("tk_cache_reclaim_pending"));
}

// ---- the client crate, end to end ----

async fn client_get_or_compute_caches_per_user_and_invalidates(topology: &Topology) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use tk_redis::{Cache, RequestIdentity};

    let cache = Cache::new(topology.connection().await);
    let computed = AtomicU32::new(0);
    let page = |user: &str| {
        RequestIdentity::for_user(
            user,
            "get",
            "/api/bookmarks",
            [("page", "1"), ("sort", "new")],
        )
    };
    let compute = |value: &'static str| {
        computed.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::convert::Infallible>(value.to_owned()) }
    };
    let ttl = Duration::from_secs(300);
    let first: String = cache
        .get_or_compute("alice", "http", &page("alice"), ttl, || compute("alice v1"))
        .await
        .unwrap();
    assert_eq!(first, "alice v1");
    // Cached: not computed again, even with the query in another order.
    let reordered = RequestIdentity::for_user(
        "alice",
        "GET",
        "/api/bookmarks",
        [("sort", "new"), ("page", "1")],
    );
    let again: String = cache
        .get_or_compute("alice", "http", &reordered, ttl, || compute("recomputed"))
        .await
        .unwrap();
    assert_eq!(again, "alice v1");
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    // Another user never sees alice's page.
    let bob: String = cache
        .get_or_compute("bob", "http", &page("bob"), ttl, || compute("bob v1"))
        .await
        .unwrap();
    assert_eq!(bob, "bob v1");
    // Invalidating alice recomputes hers only.
    cache.invalidate_user("alice").await.unwrap();
    let fresh: String = cache
        .get_or_compute("alice", "http", &page("alice"), ttl, || compute("alice v2"))
        .await
        .unwrap();
    assert_eq!(fresh, "alice v2");
    let bob_again: String = cache
        .get_or_compute("bob", "http", &page("bob"), ttl, || compute("bob v2"))
        .await
        .unwrap();
    assert_eq!(bob_again, "bob v1");
    // Namespaces are independent.
    let query = RequestIdentity::for_user_from_parts("alice", ["tags:rust"]);
    cache
        .set("alice", "analytics", &query, &42u32, ttl, None)
        .await
        .unwrap();
    cache
        .invalidate_namespace("alice", "analytics")
        .await
        .unwrap();
    assert!(!cache
        .get::<u32>("alice", "analytics", &query)
        .await
        .unwrap()
        .is_hit());
    assert!(cache
        .get::<String>("alice", "http", &page("alice"))
        .await
        .unwrap()
        .is_hit());
    let metrics = cache.metrics();
    assert!(metrics.hits >= 2 && metrics.misses >= 3, "{metrics:?}");
}

async fn client_refuses_a_stale_store(topology: &Topology) {
    use tk_redis::{Cache, Lookup, RequestIdentity};

    let cache = Cache::new(topology.connection().await);
    let id = RequestIdentity::for_user_from_parts("carol", ["search", "rust"]);
    let Lookup::Miss(generation) = cache.get::<String>("carol", "search", &id).await.unwrap()
    else {
        panic!("expected a miss");
    };
    cache.invalidate_user("carol").await.unwrap();
    let stored = cache
        .set(
            "carol",
            "search",
            &id,
            "stale",
            Duration::from_secs(60),
            Some(&generation),
        )
        .await
        .unwrap();
    assert!(
        !stored,
        "a value computed before the invalidation was stored"
    );
    assert!(!cache
        .get::<String>("carol", "search", &id)
        .await
        .unwrap()
        .is_hit());
}

/// Needs a server without the module: standalone only.
#[tokio::test]
async fn client_reports_module_missing() {
    use tk_redis::{Cache, RequestIdentity};

    let plain = Server::builder().without_module().start().await;
    // REDIS_TK_MODE=module: auto would load the Functions library instead.
    let cache = Cache::connect(plain.url())
        .await
        .unwrap()
        .with_tk_mode(tk_redis::TkMode::Module);
    let id = RequestIdentity::for_user_from_parts("carol", ["search", "rust"]);
    let error = cache
        .get::<String>("carol", "search", &id)
        .await
        .unwrap_err();
    assert!(error.is_module_not_loaded(), "{error:?}");
}

tk_redis_tests::topology_tests!(
    hit_miss_and_generation_tokens,
    invalidating_one_user_leaves_another_untouched,
    namespace_invalidation_only_hides_that_namespace,
    a_value_computed_before_an_invalidation_is_not_stored,
    entries_and_bookkeeping_expire_by_themselves,
    a_user_with_100k_entries_is_invalidated_in_one_step_and_reclaimed,
    client_get_or_compute_caches_per_user_and_invalidates,
    client_refuses_a_stale_store,
);
