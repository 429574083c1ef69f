//! TK.RATELIMIT* against a real redis-server with the freshly built module.
//!
//! No assertion here depends on how fast the machine is: tests use periods
//! long enough that time passing during a test cannot change the expected
//! decisions, and the one test that waits (retry_after) only checks that
//! waiting the reported time is enough.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use redis::aio::ConnectionLike;
use redis::Value;
use tk_redis::{Algorithm, Quota, RateLimiter};
use tk_redis_tests::functions::assert_read_only_functions;
use tk_redis_tests::harness::{debug_digest, info_section, wait_for_sync, wait_until, Server};
use tk_redis_tests::raw::{
    assert_refused_changing_nothing, dbsize, error, ints, pexpiretime, snapshot,
};
use tk_redis_tests::topology::Topology;
use tk_redis_tests::{module_mode, skip_in_functions_mode, Conn};

const ALGORITHMS: [&str; 3] = ["GCRA", "SLIDING", "FIXED"];

/// Sends a command and returns its reply as a list of integers.
async fn memory_usage(conn: &mut impl ConnectionLike, key: &str) -> i64 {
    redis::cmd("MEMORY")
        .arg(&["USAGE", key])
        .query_async(conn)
        .await
        .unwrap()
}

async fn get_bytes(conn: &mut impl ConnectionLike, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn module_reports_name_and_version() {
    if skip_in_functions_mode("MODULE LIST and INFO tk are the module's") {
        return;
    }
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let modules: Vec<BTreeMap<String, Value>> = redis::cmd("MODULE")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let tk = modules
        .iter()
        .find(|m| m.get("name") == Some(&Value::BulkString(b"tk".to_vec())))
        .expect("module tk listed");
    assert_eq!(
        tk.get("ver"),
        Some(&Value::Int(tk_redis_tests::harness::module_version()))
    );
    let info = info_section(&mut conn, "tk").await;
    assert_eq!(
        info.get("tk_version"),
        Some(&tk_redis_tests::harness::module_version().to_string())
    );
}

async fn gcra_admits_burst_then_refuses_with_exact_reply(topology: &Topology) {
    let mut conn = topology.connection().await;
    for expected_remaining in (0..5).rev() {
        let reply = ints(&mut conn, &["TK.RATELIMIT", "k", "5", "1h"]).await;
        assert_eq!(reply.len(), 5);
        assert_eq!(&reply[..4], &[1, 5, expected_remaining, 0]);
        assert!(reply[4] > 0 && reply[4] <= 3_600_000);
    }
    // The state is split: the key expires at the TAT (rounded up to a
    // millisecond) and holds the TAT's nanoseconds within that millisecond,
    // 6 digits, overwritten in place by every request.
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        value.len() == 6 && value.bytes().all(|b| b.is_ascii_digit()),
        "{value:?}"
    );
    let before = memory_usage(&mut conn, "k").await;
    ints(&mut conn, &["TK.RATELIMIT.PEEK", "k", "5", "1h"]).await;
    assert_eq!(
        memory_usage(&mut conn, "k").await,
        before,
        "reading never grows the state"
    );
    let refused = ints(&mut conn, &["TK.RATELIMIT", "k", "5", "1h"]).await;
    assert_eq!(&refused[..3], &[0, 5, 0]);
    // One emission interval is 12 minutes.
    assert!(refused[3] > 0 && refused[3] <= 720_000, "{refused:?}");
    // State is a native string that expires exactly when the bucket is full.
    let kind: String = redis::cmd("TYPE")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "string");
    assert!(pexpiretime(&mut conn, "k").await > 0);
    // BURST and COST.
    let reply = ints(
        &mut conn,
        &["TK.RATELIMIT", "b", "1", "1h", "BURST", "3", "COST", "3"],
    )
    .await;
    assert_eq!(&reply[..4], &[1, 1, 0, 0]);
}

async fn sliding_and_fixed_count_costs(topology: &Topology) {
    let mut conn = topology.connection().await;
    for algo in ["SLIDING", "FIXED"] {
        let key = format!("k:{algo}");
        let first = ints(
            &mut conn,
            &["TK.RATELIMIT", &key, "10", "1h", "ALGO", algo, "COST", "4"],
        )
        .await;
        assert_eq!(&first[..4], &[1, 10, 6, 0], "{algo}");
        let second = ints(
            &mut conn,
            &["TK.RATELIMIT", &key, "10", "1h", "ALGO", algo, "COST", "6"],
        )
        .await;
        assert_eq!(&second[..4], &[1, 10, 0, 0], "{algo}");
        let refused = ints(&mut conn, &["TK.RATELIMIT", &key, "10", "1h", "ALGO", algo]).await;
        assert_eq!(&refused[..3], &[0, 10, 0], "{algo}");
        assert!(
            refused[3] > 0 && refused[3] <= 3_600_000,
            "{algo}: {refused:?}"
        );
        // COST 0 behaves like PEEK.
        let peek = ints(
            &mut conn,
            &["TK.RATELIMIT", &key, "10", "1h", "ALGO", algo, "COST", "0"],
        )
        .await;
        assert_eq!(&peek[..3], &[1, 10, 0], "{algo}");
    }
    // FIXED windows are aligned to multiples of the period since the epoch.
    let expiry = pexpiretime(&mut conn, "k:FIXED").await;
    assert_eq!(
        expiry % 3_600_000,
        0,
        "fixed window ends on an hour boundary"
    );
    // SLIDING is stored compactly: one string, a few bytes per request.
    for _ in 0..50 {
        ints(
            &mut conn,
            &["TK.RATELIMIT", "compact", "100", "1h", "ALGO", "SLIDING"],
        )
        .await;
    }
    let size = get_bytes(&mut conn, "compact").await.unwrap().len();
    assert!(
        size <= 9 + 50 * 8,
        "sliding state of 50 requests is {size} bytes"
    );
}

async fn retry_after_is_honoured_by_every_algorithm(topology: &Topology) {
    let mut conn = topology.connection().await;
    for algo in ALGORITHMS {
        let key = format!("retry:{algo}");
        let args = ["TK.RATELIMIT", &key, "2", "300ms", "ALGO", algo];
        let mut refused = None;
        for _ in 0..3 {
            let reply = ints(&mut conn, &args).await;
            if reply[0] == 0 {
                refused = Some(reply);
                break;
            }
        }
        // A refusal must come within 3 calls unless a whole window passed
        // (a very slow machine); then there is nothing to check.
        let Some(refused) = refused else { continue };
        let wait = refused[3];
        assert!(wait > 0 && wait <= 300, "{algo}: {refused:?}");
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        let again = ints(&mut conn, &args).await;
        assert_eq!(
            again[0], 1,
            "{algo}: waited {wait} ms as told, still refused: {again:?}"
        );
    }
}

async fn peek_writes_nothing_and_predicts(topology: &Topology) {
    let mut conn = topology.connection().await;
    for algo in ALGORITHMS {
        let key = format!("peek:{algo}");
        let peek = ints(
            &mut conn,
            &["TK.RATELIMIT.PEEK", &key, "3", "1h", "ALGO", algo],
        )
        .await;
        assert_eq!(&peek[..4], &[1, 3, 2, 0], "{algo}: a fresh key would admit");
        assert_eq!(dbsize(&mut conn).await, 0, "{algo}: PEEK created a key");
    }
    for algo in ALGORITHMS {
        let key = format!("peek:{algo}");
        for _ in 0..3 {
            ints(&mut conn, &["TK.RATELIMIT", &key, "3", "1h", "ALGO", algo]).await;
        }
        let value = get_bytes(&mut conn, &key).await;
        let expiry = pexpiretime(&mut conn, &key).await;
        let peek = ints(
            &mut conn,
            &["TK.RATELIMIT.PEEK", &key, "3", "1h", "ALGO", algo],
        )
        .await;
        assert_eq!(&peek[..3], &[0, 3, 0], "{algo}");
        let real = ints(&mut conn, &["TK.RATELIMIT", &key, "3", "1h", "ALGO", algo]).await;
        assert_eq!(&real[..3], &peek[..3], "{algo}: PEEK predicted the call");
        assert_eq!(get_bytes(&mut conn, &key).await, value, "{algo}");
        assert_eq!(pexpiretime(&mut conn, &key).await, expiry, "{algo}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_peeks_replicate_nothing() {
    // The replication offset only moves once a replica exists (the backlog
    // is created then); the primary's keep-alive pings are pushed out of the
    // way so that only propagated writes move it.
    let primary = Server::builder()
        .arg("--repl-ping-replica-period", "3600")
        .start()
        .await;
    let replica = Server::replica_of(&primary).await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    let offset = |info: std::collections::HashMap<String, String>| {
        info["master_repl_offset"].parse::<i64>().unwrap()
    };
    let start = offset(info_section(&mut conn, "replication").await);
    // Positive control: an admitted call is propagated.
    ints(&mut conn, &["TK.RATELIMIT", "full", "1", "1h"]).await;
    let before = offset(info_section(&mut conn, "replication").await);
    assert!(
        before > start,
        "an admitted call did not reach the replication stream"
    );
    for _ in 0..5 {
        assert_eq!(
            ints(&mut conn, &["TK.RATELIMIT", "full", "1", "1h"]).await[0],
            0
        );
        ints(&mut conn, &["TK.RATELIMIT.PEEK", "full", "1", "1h"]).await;
        ints(&mut conn, &["TK.RATELIMIT.PEEK", "absent", "1", "1h"]).await;
        ints(&mut conn, &["TK.RATELIMIT", "full", "1", "1h", "COST", "0"]).await;
        ints(
            &mut conn,
            &[
                "TK.RATELIMIT.ALL",
                "2",
                "{x}a",
                "full",
                "5",
                "1h",
                "1",
                "1h",
            ],
        )
        .await;
    }
    let removed: i64 = redis::cmd("TK.RATELIMIT.RESET")
        .arg("absent")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 0);
    let after = offset(info_section(&mut conn, "replication").await);
    assert_eq!(
        before, after,
        "a call that changed nothing reached the replication stream"
    );
    drop(replica);
}

async fn all_is_all_or_nothing(topology: &Topology) {
    let mut conn = topology.connection().await;
    // Fill the second limit.
    ints(
        &mut conn,
        &["TK.RATELIMIT", "{u}:hour", "2", "1h", "COST", "2"],
    )
    .await;
    let hour_before = get_bytes(&mut conn, "{u}:hour").await;
    let refused = ints(
        &mut conn,
        &[
            "TK.RATELIMIT.ALL",
            "2",
            "{u}:sec",
            "{u}:hour",
            "10",
            "1s",
            "2",
            "1h",
        ],
    )
    .await;
    assert_eq!(refused.len(), 6);
    assert_eq!(&refused[..3], &[0, 2, 0]);
    assert_eq!(refused[5], 1, "the hourly limit refused");
    assert_eq!(
        get_bytes(&mut conn, "{u}:sec").await,
        None,
        "nothing consumed from the other limit"
    );
    assert_eq!(get_bytes(&mut conn, "{u}:hour").await, hour_before);

    // When every limit allows, all are consumed; the tightest is reported.
    let allowed = ints(
        &mut conn,
        &[
            "TK.RATELIMIT.ALL",
            "2",
            "{v}:a",
            "{v}:b",
            "10",
            "1h",
            "3",
            "1h",
            "ALGO",
            "SLIDING",
        ],
    )
    .await;
    assert_eq!(&allowed[..4], &[1, 3, 2, 0]);
    assert_eq!(allowed[5], 1);
    assert!(get_bytes(&mut conn, "{v}:a").await.is_some());
    assert!(get_bytes(&mut conn, "{v}:b").await.is_some());

    // Keys are visible to COMMAND GETKEYS (and so to Cluster routing).
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&[
            "GETKEYS",
            "TK.RATELIMIT.ALL",
            "2",
            "{v}:a",
            "{v}:b",
            "10",
            "1h",
            "3",
            "1h",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["{v}:a", "{v}:b"]);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&["GETKEYS", "TK.RATELIMIT.RESET", "x", "y", "z"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["x", "y", "z"]);
}

async fn reset_counts_existing_keys(topology: &Topology) {
    let mut conn = topology.connection().await;
    // Keys reset together share a hash tag (one slot on a cluster).
    ints(&mut conn, &["TK.RATELIMIT", "{r}a", "1", "1h"]).await;
    ints(
        &mut conn,
        &["TK.RATELIMIT", "{r}b", "1", "1h", "ALGO", "FIXED"],
    )
    .await;
    let removed: i64 = redis::cmd("TK.RATELIMIT.RESET")
        .arg(&["{r}a", "{r}b", "{r}c"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(dbsize(&mut conn).await, 0);
    assert_eq!(
        ints(&mut conn, &["TK.RATELIMIT", "{r}a", "1", "1h"]).await[0],
        1
    );
}

async fn concurrent_clients_admit_exactly_the_limit(topology: &Topology) {
    for algo in ALGORITHMS {
        let key = format!("hot:{algo}");
        let mut tasks = Vec::new();
        for _ in 0..50 {
            // Separate connections: 50 real clients racing on one key.
            let mut conn = topology.connection().await;
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..4 {
                    let reply: Vec<i64> = redis::cmd("TK.RATELIMIT")
                        .arg(&[key.as_str(), "100", "1h", "ALGO", algo])
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    admitted += reply[0];
                }
                admitted
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        assert_eq!(
            total, 100,
            "{algo}: 200 requests from 50 clients, limit 100"
        );
    }
}

/// A few hundred mixed calls on several keys, from a fixed seed.
async fn mixed_workload(conn: &mut Conn, seed: u64, calls: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..calls {
        let key = format!("{{w}}:{}", rng.random_range(0..6));
        let limit_value: u32 = rng.random_range(1..8);
        let limit = limit_value.to_string();
        let period = ["200ms", "1s", "1h"][rng.random_range(0..3)];
        let cost = rng.random_range(0..=limit_value.min(2)).to_string();
        // Keys keep one algorithm each (a key holds one algorithm's state).
        let algo_for_key = ALGORITHMS[key.as_bytes()[4] as usize % 3];
        let cmd = match rng.random_range(0..10) {
            0 => {
                let mut cmd = redis::cmd("TK.RATELIMIT.RESET");
                cmd.arg(&key);
                cmd
            }
            1 => {
                let mut cmd = redis::cmd("TK.RATELIMIT.PEEK");
                cmd.arg(&[key.as_str(), &limit, period, "ALGO", algo_for_key]);
                cmd
            }
            2 => {
                let other = format!("{{w}}:all{}", rng.random_range(0..2));
                let mut cmd = redis::cmd("TK.RATELIMIT.ALL");
                cmd.arg(&[
                    "2", &other, "{w}:allg", &limit, period, "ALGO", "SLIDING", "3", "1h",
                ]);
                cmd
            }
            _ => {
                let mut cmd = redis::cmd("TK.RATELIMIT");
                cmd.arg(&[
                    key.as_str(),
                    &limit,
                    period,
                    "COST",
                    &cost,
                    "ALGO",
                    algo_for_key,
                ]);
                cmd
            }
        };
        let reply: redis::RedisResult<Value> = cmd.query_async(conn).await;
        reply.unwrap_or_else(|e| panic!("workload call failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reaches_identical_state() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    mixed_workload(&mut conn, 7, 400).await;
    wait_for_sync(&primary, &replica).await;
    // Compare before anything can expire: read both sides back to back and
    // retry if a key expired in between (periods as short as 200 ms).
    let mut replica_conn = replica.conn().await;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let primary_state = snapshot(&mut conn).await;
        let replica_state = snapshot(&mut replica_conn).await;
        let primary_digest = debug_digest(&mut conn).await;
        let replica_digest = debug_digest(&mut replica_conn).await;
        if primary_state == replica_state && primary_digest == replica_digest {
            assert!(!primary_state.is_empty() || attempts > 1);
            break;
        }
        assert!(
            attempts < 20,
            "replica differs:\nprimary {primary_state:?}\nreplica {replica_state:?}"
        );
        // Let any in-flight expiry reach the replica, then compare again.
        wait_for_sync(&primary, &replica).await;
    }
    // Long-lived keys certainly survive: add some and compare exactly.
    for algo in ALGORITHMS {
        ints(
            &mut conn,
            &[
                "TK.RATELIMIT",
                &format!("long:{algo}"),
                "5",
                "1h",
                "ALGO",
                algo,
                "COST",
                "2",
            ],
        )
        .await;
    }
    ints(
        &mut conn,
        &[
            "TK.RATELIMIT.ALL",
            "2",
            "{l}:a",
            "{l}:b",
            "5",
            "1h",
            "9",
            "1h",
            "ALGO",
            "FIXED",
        ],
    )
    .await;
    // Inside MULTI/EXEC and scripts the effects still replicate, not the call.
    let (_, _): (Vec<i64>, Vec<i64>) = redis::pipe()
        .atomic()
        .cmd("TK.RATELIMIT")
        .arg(&["tx:a", "4", "1h", "ALGO", "SLIDING"])
        .cmd("TK.RATELIMIT")
        .arg(&["tx:b", "4", "1h"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let lua = ["TK.RATELIMIT", "lua:c", "4", "1h", "ALGO", "FIXED"];
    if module_mode() {
        let _: Vec<i64> = redis::cmd("EVAL")
            .arg("return redis.call('TK.RATELIMIT', KEYS[1], 4, '1h', 'ALGO', 'FIXED')")
            .arg(1)
            .arg("lua:c")
            .query_async(&mut conn)
            .await
            .unwrap();
    } else {
        // A script cannot call FCALL: the library is called directly.
        ints(&mut conn, &lua).await;
    }
    wait_for_sync(&primary, &replica).await;
    for key in [
        "long:GCRA",
        "long:SLIDING",
        "long:FIXED",
        "{l}:a",
        "{l}:b",
        "tx:a",
        "tx:b",
        "lua:c",
    ] {
        assert_eq!(
            get_bytes(&mut conn, key).await,
            get_bytes(&mut replica_conn, key).await,
            "{key}"
        );
        let expiry = pexpiretime(&mut conn, key).await;
        assert!(expiry > 0, "{key} has an absolute expiry");
        assert_eq!(expiry, pexpiretime(&mut replica_conn, key).await, "{key}");
    }
    // PEEK is readonly and runs on the replica with the primary's answer.
    let on_replica = ints(
        &mut replica_conn,
        &[
            "TK.RATELIMIT.PEEK",
            "long:FIXED",
            "5",
            "1h",
            "ALGO",
            "FIXED",
        ],
    )
    .await;
    let on_primary = ints(
        &mut conn,
        &[
            "TK.RATELIMIT.PEEK",
            "long:FIXED",
            "5",
            "1h",
            "ALGO",
            "FIXED",
        ],
    )
    .await;
    assert_eq!(&on_replica[..3], &on_primary[..3]);
}

#[tokio::test]
async fn aof_restart_keeps_state() {
    let mut server = Server::builder().aof(true).start().await;
    let mut conn = server.conn().await;
    for algo in ALGORITHMS {
        let key = format!("aof:{algo}");
        for _ in 0..3 {
            ints(&mut conn, &["TK.RATELIMIT", &key, "3", "1h", "ALGO", algo]).await;
        }
    }
    ints(&mut conn, &["TK.RATELIMIT", "aof:gone", "3", "1h"]).await;
    let removed: i64 = redis::cmd("TK.RATELIMIT.RESET")
        .arg("aof:gone")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let before = snapshot(&mut conn).await;
    drop(conn);
    server.restart().await;
    let mut conn = server.conn().await;
    assert_eq!(snapshot(&mut conn).await, before);
    for algo in ALGORITHMS {
        let reply = ints(
            &mut conn,
            &[
                "TK.RATELIMIT",
                &format!("aof:{algo}"),
                "3",
                "1h",
                "ALGO",
                algo,
            ],
        )
        .await;
        assert_eq!(
            reply[0], 0,
            "{algo}: the limit is still exhausted after restart"
        );
    }
}

#[tokio::test]
async fn every_error_path_replies_err_and_changes_nothing() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let _: () = redis::cmd("HSET")
        .arg(&["hash", "f", "v"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["text", "not a state"])
        .query_async(&mut conn)
        .await
        .unwrap();
    ints(&mut conn, &["TK.RATELIMIT", "gcra", "5", "1h"]).await;

    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"TK.RATELIMIT", b"k", b"10"],
            "ERR wrong number of arguments",
        ),
        (&[b"TK.RATELIMIT"], "ERR wrong number of arguments"),
        (
            &[b"TK.RATELIMIT", b"k", b"0", b"1s"],
            "ERR limit must be between",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"-3", b"1s"],
            "ERR limit must be between",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"abc", b"1s"],
            "ERR limit must be an integer",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"99999999999999999999999", b"1s"],
            "ERR limit must be an integer",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"10", b"0"],
            "ERR period must be between",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"10", b"5x"],
            "ERR period must be a duration",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"10", b"1s", b"BURST", b"0"],
            "ERR BURST must be between",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"10", b"1s", b"COST", b"11"],
            "ERR COST 11 exceeds",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"10", b"1s", b"ALGO", b"NOPE"],
            "ERR ALGO must be one of",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"10", b"1s", b"WHAT"],
            "ERR syntax error: unknown option",
        ),
        (
            &[
                b"TK.RATELIMIT",
                b"k",
                b"10",
                b"1s",
                b"COST",
                b"1",
                b"cost",
                b"1",
            ],
            "ERR syntax error: option COST given more than once",
        ),
        (
            &[
                b"TK.RATELIMIT",
                b"k",
                b"10",
                b"1s",
                b"ALGO",
                b"FIXED",
                b"BURST",
                b"3",
            ],
            "ERR syntax error: BURST only applies",
        ),
        (
            &[b"TK.RATELIMIT", b"k", b"1", b"1h", b"BURST", b"9999999"],
            "ERR period * BURST / limit",
        ),
        (
            &[b"TK.RATELIMIT.PEEK", b"k", b"0", b"1s"],
            "ERR limit must be between",
        ),
        (
            &[b"TK.RATELIMIT.ALL", b"0", b"k", b"1", b"1s"],
            "ERR numkeys must be between 1 and 16",
        ),
        (
            &[b"TK.RATELIMIT.ALL", b"2", b"a", b"b", b"1", b"1s"],
            "ERR wrong number of arguments",
        ),
        (
            &[
                b"TK.RATELIMIT.ALL",
                b"2",
                b"a",
                b"a",
                b"1",
                b"1s",
                b"1",
                b"1s",
            ],
            "ERR syntax error: the same key",
        ),
        (&[b"TK.RATELIMIT.RESET"], "ERR wrong number of arguments"),
        (&[b"TK.RATELIMIT", b"hash", b"10", b"1s"], "WRONGTYPE"),
        (&[b"TK.RATELIMIT.PEEK", b"hash", b"10", b"1s"], "WRONGTYPE"),
        (
            &[b"TK.RATELIMIT", b"text", b"10", b"1s"],
            "WRONGTYPE key holds a string that is not a GCRA state",
        ),
        (
            &[b"TK.RATELIMIT", b"gcra", b"10", b"1s", b"ALGO", b"SLIDING"],
            "WRONGTYPE key holds a string that is not a SLIDING state",
        ),
        (
            &[b"TK.RATELIMIT", b"gcra", b"10", b"1s", b"ALGO", b"FIXED"],
            "WRONGTYPE",
        ),
        (
            &[
                b"TK.RATELIMIT.ALL",
                b"2",
                b"fresh",
                b"hash",
                b"1",
                b"1s",
                b"1",
                b"1s",
            ],
            "WRONGTYPE",
        ),
        (&[b"TK.RATELIMIT.RESET", b"gcra", b"hash"], "WRONGTYPE"),
    ];
    let count = assert_refused_changing_nothing(&mut conn, cases).await;
    if module_mode() {
        let info = info_section(&mut conn, "tk").await;
        assert!(info["tk_errors"].parse::<u64>().unwrap() >= count as u64 - 3);
    }
}

#[tokio::test]
async fn random_garbage_never_takes_the_server_down() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let commands = [
        "TK.RATELIMIT",
        "TK.RATELIMIT.PEEK",
        "TK.RATELIMIT.ALL",
        "TK.RATELIMIT.RESET",
    ];
    let tokens: [&[u8]; 16] = [
        b"k",
        b"{t}k2",
        b"0",
        b"1",
        b"2",
        b"-1",
        b"10",
        b"1s",
        b"5m",
        b"BURST",
        b"COST",
        b"ALGO",
        b"SLIDING",
        b"FIXED",
        b"GCRA",
        b"18446744073709551616",
    ];
    for batch in 0..20 {
        let mut pipe = redis::pipe();
        for _ in 0..500 {
            let mut cmd = redis::cmd(commands[rng.random_range(0..commands.len())]);
            for _ in 0..rng.random_range(0..10) {
                if rng.random_bool(0.7) {
                    cmd.arg(tokens[rng.random_range(0..tokens.len())]);
                } else {
                    let len = rng.random_range(0..12);
                    let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    cmd.arg(junk);
                }
            }
            pipe.add_command(cmd);
        }
        // Errors are expected; the pipeline must simply get all its replies.
        let replies: Vec<redis::RedisResult<Value>> = match pipe
            .ignore_errors()
            .query_async::<Vec<redis::RedisResult<Value>>>(&mut conn)
            .await
        {
            Ok(replies) => replies,
            Err(e) => panic!("batch {batch}: connection failed: {e}"),
        };
        assert_eq!(replies.len(), 500);
    }
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    if module_mode() {
        let info = info_section(&mut conn, "tk").await;
        assert_eq!(info["tk_panics"], "0");
    }
}

#[tokio::test]
async fn a_panic_is_an_error_reply_not_a_crash() {
    if skip_in_functions_mode("TK.DEBUG.PANIC and tk_panics are the module's") {
        return;
    }
    // RUST_BACKTRACE=1: the module's panic hook must not symbolize a
    // backtrace, which aborted Valkey (see registry::install_panic_hook).
    let server = Server::builder()
        .module_arg("DEBUG-COMMANDS")
        .env("RUST_BACKTRACE", "1")
        .start()
        .await;
    let mut conn = server.conn().await;
    let text = error(&mut conn, &[b"TK.DEBUG.PANIC"]).await;
    assert!(text.starts_with("ERR internal error"), "{text}");
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(info_section(&mut conn, "tk").await["tk_panics"], "1");
    // The guard logs a warning. Under docker the log reaches the test
    // through the container's log stream, a moment after the reply.
    let server = &server;
    wait_until(
        "the guard's warning in the log",
        Duration::from_secs(10),
        || async move {
            if server.log().contains("a command panicked") {
                Ok(())
            } else {
                Err(tail_of(&server.log()))
            }
        },
    )
    .await;
}

/// The last lines of a server log, for a failure message.
fn tail_of(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[tokio::test]
async fn info_counts_calls_per_algorithm() {
    if skip_in_functions_mode("INFO tk counters are the module's") {
        return;
    }
    let server = Server::start().await;
    let mut conn = server.conn().await;
    for _ in 0..3 {
        ints(&mut conn, &["TK.RATELIMIT", "g", "2", "1h"]).await;
    }
    ints(
        &mut conn,
        &["TK.RATELIMIT", "s", "2", "1h", "ALGO", "SLIDING"],
    )
    .await;
    ints(
        &mut conn,
        &["TK.RATELIMIT.PEEK", "f", "2", "1h", "ALGO", "FIXED"],
    )
    .await;
    ints(
        &mut conn,
        &["TK.RATELIMIT.ALL", "1", "f", "2", "1h", "ALGO", "FIXED"],
    )
    .await;
    let info = info_section(&mut conn, "tk").await;
    let field = |name: &str| info.get(name).cloned().unwrap_or_default();
    assert_eq!(field("tk_ratelimit_gcra_calls"), "3");
    assert_eq!(field("tk_ratelimit_gcra_allowed"), "2");
    assert_eq!(field("tk_ratelimit_gcra_denied"), "1");
    assert_eq!(field("tk_ratelimit_sliding_allowed"), "1");
    assert_eq!(field("tk_ratelimit_fixed_calls"), "1");
    assert_eq!(field("tk_ratelimit_peek_calls"), "1");
    assert_eq!(field("tk_ratelimit_all_calls"), "1");
    assert_eq!(field("tk_ratelimit_all_allowed"), "1");
}

#[tokio::test]
async fn command_docs_describe_every_command() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    if !module_mode() {
        // The library has no command docs; its counterpart of the flags:
        // only PEEK is a `no-writes` function (FCALL_RO).
        assert_read_only_functions(
            &mut conn,
            &[
                ("tk.ratelimit", false),
                ("tk.ratelimit.peek", true),
                ("tk.ratelimit.all", false),
                ("tk.ratelimit.reset", false),
            ],
        )
        .await;
        return;
    }
    for name in [
        "tk.ratelimit",
        "tk.ratelimit.peek",
        "tk.ratelimit.all",
        "tk.ratelimit.reset",
    ] {
        let docs: Value = redis::cmd("COMMAND")
            .arg(&["DOCS", name])
            .query_async(&mut conn)
            .await
            .unwrap();
        let text = format!("{docs:?}");
        assert!(
            text.contains("summary") && text.contains("complexity"),
            "{name}: {text}"
        );
    }
    let info: Value = redis::cmd("COMMAND")
        .arg(&["INFO", "tk.ratelimit.peek"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(format!("{info:?}").contains("readonly"));
}

// ---- the client crate, end to end ----

async fn client_checks_peeks_resets_and_checks_all(topology: &Topology) {
    let limiter = RateLimiter::new(topology.connection().await);
    let quota = Quota::per_minute(2);
    let first = limiter.check("c:1", &quota, 1).await.unwrap();
    assert!(first.allowed);
    assert_eq!((first.limit, first.remaining), (2, 1));
    assert!(limiter.check("c:1", &quota, 1).await.unwrap().allowed);
    let refused = limiter.check("c:1", &quota, 1).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(30));
    assert!(!limiter.peek("c:1", &quota).await.unwrap().allowed);
    // Keys reset together share a slot.
    assert_eq!(limiter.reset(&["c:1"]).await.unwrap(), 1);
    assert_eq!(limiter.reset(&["{c:1}:none"]).await.unwrap(), 0);
    assert!(limiter.peek("c:1", &quota).await.unwrap().allowed);

    let sliding = Quota::per_hour(3).algorithm(Algorithm::Sliding);
    let bursty = Quota::per_second(1).burst(5);
    let all = limiter
        .check_all(&[("{c}:a", sliding), ("{c}:b", bursty)], 1)
        .await
        .unwrap();
    assert!(all.decision.allowed);
    assert_eq!(all.index, 0, "the sliding limit has the fewest remaining");
    assert_eq!(all.decision.remaining, 2);
}

#[tokio::test]
async fn client_reports_typed_errors() {
    let server = Server::start().await;
    let limiter = RateLimiter::connect(server.url()).await.unwrap();
    let mut conn = server.conn().await;
    let _: () = redis::cmd("HSET")
        .arg(&["h", "f", "v"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let error = limiter
        .check("h", &Quota::per_second(5), 1)
        .await
        .unwrap_err();
    match &error {
        tk_redis::Error::Server { code, .. } => assert_eq!(code, "WRONGTYPE"),
        other => panic!("expected a WRONGTYPE server error, got {other:?}"),
    }
    let error = limiter
        .check("k", &Quota::per_second(5), 6)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, tk_redis::Error::Server { code, .. } if code == "ERR"),
        "{error:?}"
    );

    let plain = Server::builder().without_module().start().await;
    // REDIS_TK_MODE=module: auto would load the Functions library instead.
    let limiter = RateLimiter::connect(plain.url())
        .await
        .unwrap()
        .with_tk_mode(tk_redis::TkMode::Module);
    let error = limiter
        .check("k", &Quota::per_second(5), 1)
        .await
        .unwrap_err();
    assert!(error.is_module_not_loaded(), "{error:?}");
    assert!(error.to_string().contains("--loadmodule"), "{error}");
}

tk_redis_tests::topology_tests!(
    gcra_admits_burst_then_refuses_with_exact_reply,
    sliding_and_fixed_count_costs,
    retry_after_is_honoured_by_every_algorithm,
    peek_writes_nothing_and_predicts,
    all_is_all_or_nothing,
    reset_counts_existing_keys,
    concurrent_clients_admit_exactly_the_limit,
    client_checks_peeks_resets_and_checks_all,
);

/// Keys written by earlier versions hold the whole TAT in nanoseconds: they
/// are read as such, and rewritten in the split form by the next request.
#[tokio::test]
async fn gcra_reads_the_whole_tat_form_of_earlier_versions() {
    let server = tk_redis_tests::harness::Server::start().await;
    let mut conn = server.conn().await;
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now_ms = seconds * 1000 + micros / 1000;
    // 2 units and change left: TAT = now + 2 * 12 min + 100 s + 1 ns.
    let tat_ns = (now_ms + 2 * 720_000 + 100_000) * 1_000_000 + 1;
    let _: () = redis::cmd("SET")
        .arg("old")
        .arg(tat_ns.to_string())
        .arg("PXAT")
        .arg(tat_ns / 1_000_000 + 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    // PEEK answers as if the request were admitted: one unit left after it.
    let peek = ints(&mut conn, &["TK.RATELIMIT.PEEK", "old", "5", "1h"]).await;
    assert_eq!(&peek[..3], &[1, 5, 1], "{peek:?}");
    let reply = ints(&mut conn, &["TK.RATELIMIT", "old", "5", "1h"]).await;
    assert_eq!(&reply[..3], &[1, 5, 1], "{reply:?}");
    // The TAT moved by exactly one interval (12 min), to its split form.
    let pexpiretime: u64 = redis::cmd("PEXPIRETIME")
        .arg("old")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pexpiretime, (tat_ns + 720_000_000_000).div_ceil(1_000_000));
    let value: String = redis::cmd("GET")
        .arg("old")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "000001", "rewritten in the split form");
}
