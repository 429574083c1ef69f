//! TK.SESSION.* against real servers: the session reply and its native
//! layout, touch/idle/absolute expiry, MINGAP (no write, no replication),
//! versions and the IFVERSION race, DESTROY/ROTATE/REVOKEALL, LIST and the
//! self-cleaning index, MAXSESSIONS under 50 concurrent logins, replication
//! (MULTI and EVAL included), AOF, every error path, key specs and INFO.
//!
//! The behavioural tests are generic over the topology and run twice
//! ([`topology_tests!`](tk_redis_tests::topology_tests), at the end): on one
//! server and on a Redis Cluster. The keys one command names together share
//! a hash tag. Plain `#[tokio::test]`s are single-server by nature: replica
//! and AOF state, the replication offset, `COMMAND` metadata, the error
//! paths (which compare the whole keyspace and deliberately name keys of
//! different tags) and exact `INFO` counters.
//!
//! No timing assertions: expiries are awaited with bounded polling, and
//! sessions that must not expire during a comparison get an idle TTL of 1 h.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Value};
use tk_redis_tests::fixtures::write_session_by_hand;
use tk_redis_tests::functions::runs_read_only;
use tk_redis_tests::harness::{debug_digest, info_section, wait_for_sync, Server};
use tk_redis_tests::raw::{
    command, dbsize, error, error_text, int, outcome, pexpiretime, query, snapshot,
};
use tk_redis_tests::topology::Topology;
use tk_redis_tests::{module_mode, skip_in_functions_mode, Conn};

/// Bound on every wait for an expiry.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);
const HOUR_MS: i64 = 3_600_000;

// ---- keys ---------------------------------------------------------------

/// A session key of hash tag `tag`.
fn skey(tag: &str, id: &str) -> String {
    format!("tk:s:{{{tag}}}:{id}")
}

/// The index of `user`'s sessions under hash tag `tag`.
fn ikey(tag: &str, user: &str) -> String {
    format!("tk:si:{{{tag}}}:{user}")
}

// ---- commands -------------------------------------------------------------

/// The session reply: `[user, data, created, last_active, expires_at, max_expires_at, version]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    user: String,
    data: String,
    created: i64,
    last_active: i64,
    expires_at: i64,
    max_expires_at: i64,
    version: i64,
}

type RawSession = (String, String, i64, i64, i64, i64, i64);

impl From<RawSession> for Session {
    fn from(raw: RawSession) -> Session {
        let (user, data, created, last_active, expires_at, max_expires_at, version) = raw;
        Session {
            user,
            data,
            created,
            last_active,
            expires_at,
            max_expires_at,
            version,
        }
    }
}

impl Session {
    /// What every session reply must satisfy.
    fn check(&self) -> &Self {
        assert!(
            self.expires_at <= self.max_expires_at,
            "expires_at past max_expires_at: {self:?}"
        );
        assert!(self.created <= self.last_active, "{self:?}");
        assert!(self.last_active <= self.expires_at, "{self:?}");
        assert!(self.version >= 1, "{self:?}");
        self
    }
}

async fn create(
    conn: &mut impl ConnectionLike,
    session: &str,
    index: &str,
    user: &str,
    idle: &str,
    data: &str,
    options: &[&str],
) -> Session {
    let mut args = vec!["TK.SESSION.CREATE", session, index, user, idle, data];
    args.extend_from_slice(options);
    let raw: RawSession = query(conn, &args).await;
    let session = Session::from(raw);
    session.check();
    session
}

/// A command replying a session or nil (GET, TOUCH).
async fn maybe_session(conn: &mut impl ConnectionLike, args: &[&str]) -> Option<Session> {
    let raw: Option<RawSession> = query(conn, args).await;
    let session = raw.map(Session::from);
    if let Some(session) = &session {
        session.check();
    }
    session
}

async fn get(conn: &mut impl ConnectionLike, session: &str) -> Option<Session> {
    maybe_session(conn, &["TK.SESSION.GET", session]).await
}

async fn touch(conn: &mut impl ConnectionLike, session: &str, options: &[&str]) -> Option<Session> {
    let mut args = vec!["TK.SESSION.TOUCH", session];
    args.extend_from_slice(options);
    maybe_session(conn, &args).await
}

/// `TK.SESSION.SET`: the new version, or `None` for nil.
async fn set(
    conn: &mut impl ConnectionLike,
    session: &str,
    data: &str,
    if_version: Option<i64>,
) -> Option<i64> {
    let version = if_version.map(|v| v.to_string());
    let mut args = vec!["TK.SESSION.SET", session, data];
    if let Some(version) = &version {
        args.extend(["IFVERSION", version.as_str()]);
    }
    query(conn, &args).await
}

/// `TK.SESSION.LIST`: `(skey, created, last_active, expires_at)` rows.
async fn list(conn: &mut impl ConnectionLike, index: &str) -> Vec<(String, i64, i64, i64)> {
    query(conn, &["TK.SESSION.LIST", index]).await
}

async fn list_keys(conn: &mut impl ConnectionLike, index: &str) -> Vec<String> {
    list(conn, index)
        .await
        .into_iter()
        .map(|(key, ..)| key)
        .collect()
}

async fn exists(conn: &mut impl ConnectionLike, key: &str) -> bool {
    int(conn, &["EXISTS", key]).await == 1
}

async fn zcard(conn: &mut impl ConnectionLike, key: &str) -> i64 {
    int(conn, &["ZCARD", key]).await
}

/// The server's clock in Unix ms.
async fn now_ms(conn: &mut impl ConnectionLike) -> i64 {
    let (secs, micros): (i64, i64) = query(conn, &["TIME"]).await;
    secs * 1000 + micros / 1000
}

/// Waits (bounded) until the server's clock is past `ms`, so the next
/// command sees a strictly later millisecond.
async fn wait_for_clock_past(conn: &mut impl ConnectionLike, ms: i64) {
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    while now_ms(conn).await <= ms {
        assert!(
            Instant::now() < deadline,
            "the server clock did not advance"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls `check` until it holds, for at most [`EXPIRY_DEADLINE`].
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {EXPIRY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The index must outlive every session it lists.
async fn assert_index_covers(conn: &mut impl ConnectionLike, index: &str) {
    let members: Vec<(String, i64)> =
        query(conn, &["ZRANGE", index, "0", "-1", "WITHSCORES"]).await;
    let expiry = pexpiretime(conn, index).await;
    for (member, score) in &members {
        assert!(
            expiry >= *score,
            "index {index} expires at {expiry}, before {member}'s max lifetime {score}"
        );
    }
}

/// The `tk_session_*` counters of one server: on a cluster, pass
/// [`node_conn`] (the redis crate sends `INFO` to every master).
async fn counters(conn: &mut impl ConnectionLike) -> HashMap<String, u64> {
    info_section(conn, "tk")
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with("tk_session_"))
        .map(|(name, value)| {
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("{name}:{value} is not a counter"));
            (name, value)
        })
        .collect()
}

fn counter(counters: &HashMap<String, u64>, name: &str) -> u64 {
    *counters
        .get(name)
        .unwrap_or_else(|| panic!("INFO tk has no {name}: {counters:?}"))
}

async fn repl_offset(conn: &mut impl ConnectionLike) -> i64 {
    info_section(conn, "replication").await["master_repl_offset"]
        .parse()
        .unwrap()
}

/// A plain connection to the server holding `key`: the standalone server, or
/// the cluster master serving its slot. For what is read on one server
/// (`INFO` counters, [`snapshot`]); commands go through
/// [`Topology::connection`].
async fn node_conn(topology: &Topology, key: &str) -> Conn {
    topology.node_for(key).await.conn().await
}

// ---- create, get, touch ---------------------------------------------------

async fn create_replies_the_session_and_stores_a_native_hash(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "a"), ikey("t1", "alice"));
    let before = now_ms(&mut conn).await;
    let created = create(
        &mut conn,
        &s,
        &i,
        "alice",
        "1h",
        "{\"role\":\"admin\"}",
        &["MAXLIFETIME", "2h"],
    )
    .await;
    let after = now_ms(&mut conn).await;
    assert_eq!(created.user, "alice");
    assert_eq!(created.data, "{\"role\":\"admin\"}");
    assert!(
        created.created >= before && created.created <= after,
        "{created:?}"
    );
    assert_eq!(created.last_active, created.created);
    assert_eq!(created.expires_at, created.created + HOUR_MS);
    assert_eq!(created.max_expires_at, created.created + 2 * HOUR_MS);
    assert_eq!(created.version, 1);

    // A native hash with an absolute expiry at expires_at.
    let fields: BTreeMap<String, String> = query(&mut conn, &["HGETALL", &s]).await;
    let expected: BTreeMap<String, String> = [
        ("user", "alice".to_string()),
        ("data", created.data.clone()),
        ("created", created.created.to_string()),
        ("last_active", created.last_active.to_string()),
        ("expires_at", created.expires_at.to_string()),
        ("max_expires_at", created.max_expires_at.to_string()),
        ("version", "1".to_string()),
        ("idle", HOUR_MS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(fields, expected);
    assert_eq!(pexpiretime(&mut conn, &s).await, created.expires_at);
    // The index: a sorted set scored by max_expires_at, outliving it.
    let score: i64 = query(&mut conn, &["ZSCORE", &i, &s]).await;
    assert_eq!(score, created.max_expires_at);
    assert!(pexpiretime(&mut conn, &i).await >= created.max_expires_at);
    let kind: String = query(&mut conn, &["TYPE", &i]).await;
    assert_eq!(kind, "zset");

    // GET returns the same, without side effects.
    let mut node = node_conn(topology, &i).await;
    let state = snapshot(&mut node).await;
    assert_eq!(get(&mut conn, &s).await, Some(created.clone()));
    assert_eq!(snapshot(&mut node).await, state);
    assert_eq!(get(&mut conn, &skey("t1", "none")).await, None);
    assert!(!exists(&mut conn, &skey("t1", "none")).await);

    // Durations: plain milliseconds and every suffix.
    for (id, idle, ms) in [
        ("d1", "1500", 1500),
        ("d2", "250000ms", 250_000),
        ("d3", "2s", 2000),
        ("d4", "3m", 180_000),
        ("d5", "1h", HOUR_MS),
    ] {
        let key = skey("t1", id);
        let session = create(&mut conn, &key, &i, "alice", idle, "x", &[]).await;
        let stored: i64 = query(&mut conn, &["HGET", &key, "idle"]).await;
        assert_eq!(stored, ms, "{idle}");
        assert_eq!(session.expires_at, session.created + ms, "{idle}");
        assert_eq!(
            int(&mut conn, &["TK.SESSION.DESTROY", &key, &i]).await,
            1,
            "{idle}"
        );
    }

    // An existing session is not replaced.
    let state = snapshot(&mut node).await;
    assert_eq!(
        error(
            &mut conn,
            &["TK.SESSION.CREATE", &s, &i, "alice", "1h", "evil"]
        )
        .await,
        "ERR session already exists"
    );
    assert_eq!(snapshot(&mut node).await, state);
    assert_index_covers(&mut conn, &i).await;
}

async fn touch_moves_activity_and_expiry_but_never_past_the_cap(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "a"), ikey("t1", "alice"));
    let created = create(
        &mut conn,
        &s,
        &i,
        "alice",
        "1m",
        "d",
        &["MAXLIFETIME", "1h"],
    )
    .await;
    wait_for_clock_past(&mut conn, created.last_active).await;
    let touched = touch(&mut conn, &s, &[]).await.expect("live session");
    assert!(touched.last_active > created.last_active, "{touched:?}");
    assert_eq!(touched.expires_at, touched.last_active + 60_000);
    assert_eq!(
        (
            &touched.user,
            &touched.data,
            touched.created,
            touched.max_expires_at,
            touched.version
        ),
        (
            &created.user,
            &created.data,
            created.created,
            created.max_expires_at,
            1
        ),
        "touch changes only activity and expiry"
    );
    assert_eq!(pexpiretime(&mut conn, &s).await, touched.expires_at);
    let last_active: i64 = query(&mut conn, &["HGET", &s, "last_active"]).await;
    assert_eq!(last_active, touched.last_active);

    // A longer idle TTL is capped by the absolute lifetime, and remembered.
    let capped = touch(&mut conn, &s, &["IDLE", "2h"]).await.unwrap();
    assert_eq!(capped.expires_at, capped.max_expires_at);
    assert_eq!(pexpiretime(&mut conn, &s).await, capped.max_expires_at);
    let idle: i64 = query(&mut conn, &["HGET", &s, "idle"]).await;
    assert_eq!(idle, 2 * HOUR_MS);
    let again = touch(&mut conn, &s, &[]).await.unwrap();
    assert_eq!(again.expires_at, again.max_expires_at, "stored idle is 2h");
    // A shorter one shortens the expiry.
    let short = touch(&mut conn, &s, &["IDLE", "30s"]).await.unwrap();
    assert_eq!(short.expires_at, short.last_active + 30_000);
    assert_eq!(pexpiretime(&mut conn, &s).await, short.expires_at);
    assert_eq!(get(&mut conn, &s).await, Some(short));

    // Absent: nil, nothing created.
    let ghost = skey("t1", "ghost");
    assert_eq!(touch(&mut conn, &ghost, &[]).await, None);
    assert_eq!(touch(&mut conn, &ghost, &["IDLE", "1h"]).await, None);
    assert!(!exists(&mut conn, &ghost).await);
}

async fn an_idle_session_expires(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "idle"), ikey("t1", "alice"));
    let keep = skey("t1", "keep");
    create(&mut conn, &keep, &i, "alice", "1h", "d", &[]).await;
    let session = create(&mut conn, &s, &i, "alice", "300ms", "d", &[]).await;
    assert_eq!(session.expires_at, session.created + 300);
    eventually("the idle session expires", async || {
        get(&mut conn, &s).await.is_none()
    })
    .await;
    assert!(!exists(&mut conn, &s).await);
    assert_eq!(touch(&mut conn, &s, &[]).await, None);
    assert_eq!(set(&mut conn, &s, "late", None).await, None);
    assert!(!exists(&mut conn, &s).await, "a late SET recreated it");
    assert_eq!(list_keys(&mut conn, &i).await, [keep]);
    if module_mode() {
        let mut node = node_conn(topology, &s).await;
        assert!(counter(&counters(&mut node).await, "tk_session_expired_on_read") >= 1);
    }
}

async fn the_absolute_cap_ends_a_session_however_often_it_is_touched(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "capped"), ikey("t1", "alice"));
    let created = create(
        &mut conn,
        &s,
        &i,
        "alice",
        "300ms",
        "d",
        &["MAXLIFETIME", "400ms"],
    )
    .await;
    assert_eq!(created.max_expires_at, created.created + 400);
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    let mut touches = 0;
    loop {
        let Some(session) = touch(&mut conn, &s, &[]).await else {
            break;
        };
        touches += 1;
        // Every reply: never past the cap, the cap never moves.
        assert!(session.expires_at <= session.max_expires_at, "{session:?}");
        assert_eq!(session.max_expires_at, created.max_expires_at);
        assert!(pexpiretime(&mut conn, &s).await <= created.max_expires_at);
        assert!(
            Instant::now() < deadline,
            "still alive after {touches} touches"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!exists(&mut conn, &s).await);
    assert_eq!(get(&mut conn, &s).await, None);
}

// ---- MINGAP -----------------------------------------------------------------

async fn mingap_skips_the_write(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "a"), ikey("t1", "alice"));
    create(&mut conn, &s, &i, "alice", "1h", "d", &[]).await;
    let mut node = node_conn(topology, &s).await;
    let skipped_before = counters(&mut node)
        .await
        .get("tk_session_touch_skipped")
        .copied();

    let first = touch(&mut conn, &s, &[]).await.unwrap();
    let expiry = pexpiretime(&mut conn, &s).await;
    for _ in 0..5 {
        let skipped = touch(&mut conn, &s, &["MINGAP", "1h"]).await.unwrap();
        assert_eq!(skipped, first, "a skipped touch still returns the session");
    }
    let stored: i64 = query(&mut conn, &["HGET", &s, "last_active"]).await;
    assert_eq!(stored, first.last_active);
    assert_eq!(pexpiretime(&mut conn, &s).await, expiry);
    if let Some(skipped_before) = skipped_before {
        assert_eq!(
            counter(&counters(&mut node).await, "tk_session_touch_skipped"),
            skipped_before + 5
        );
    }

    // Once the gap has passed, MINGAP writes again.
    wait_for_clock_past(&mut conn, first.last_active + 5).await;
    let later = touch(&mut conn, &s, &["MINGAP", "5ms"]).await.unwrap();
    assert!(later.last_active > first.last_active, "{later:?}");
    assert_eq!(pexpiretime(&mut conn, &s).await, later.expires_at);
    assert_eq!(get(&mut conn, &s).await, Some(later));
}

/// Standalone only: it reads one primary's replication offset, with the
/// primary's pings to its replica turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mingap_skipped_touches_are_not_replicated() {
    // No pings from the primary: its replication offset moves only with writes.
    let primary = Server::builder()
        .arg("--repl-ping-replica-period", "3600")
        .start()
        .await;
    let replica = Server::replica_of(&primary).await;
    let mut conn = primary.conn().await;
    let (s, i) = (skey("t1", "a"), ikey("t1", "alice"));
    create(&mut conn, &s, &i, "alice", "1h", "d", &[]).await;
    wait_for_sync(&primary, &replica).await;
    let start = repl_offset(&mut conn).await;

    // Positive control: a plain touch writes and replicates.
    let first = touch(&mut conn, &s, &[]).await.unwrap();
    let after_write = repl_offset(&mut conn).await;
    assert!(
        after_write > start,
        "a touch did not reach the replication stream"
    );
    for _ in 0..5 {
        touch(&mut conn, &s, &["MINGAP", "1h"]).await.unwrap();
    }
    assert_eq!(
        repl_offset(&mut conn).await,
        after_write,
        "a skipped touch reached the replication stream"
    );

    // Once the gap has passed, MINGAP writes and replicates again.
    wait_for_clock_past(&mut conn, first.last_active + 5).await;
    let later = touch(&mut conn, &s, &["MINGAP", "5ms"]).await.unwrap();
    assert!(repl_offset(&mut conn).await > after_write);

    wait_for_sync(&primary, &replica).await;
    let mut replica_conn = replica.conn().await;
    assert_eq!(snapshot(&mut conn).await, snapshot(&mut replica_conn).await);
    assert_eq!(get(&mut replica_conn, &s).await, Some(later));
}

// ---- SET and versions ---------------------------------------------------------

async fn set_bumps_the_version_keeps_the_expiry_and_checks_ifversion(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "a"), ikey("t1", "alice"));
    let created = create(&mut conn, &s, &i, "alice", "1h", "v1", &[]).await;
    let expiry = pexpiretime(&mut conn, &s).await;
    assert_eq!(set(&mut conn, &s, "v2", None).await, Some(2));
    assert_eq!(set(&mut conn, &s, "v3", Some(2)).await, Some(3));
    let mut node = node_conn(topology, &s).await;
    let state = snapshot(&mut node).await;
    let refused = error(
        &mut conn,
        &["TK.SESSION.SET", &s, "stale", "IFVERSION", "2"],
    )
    .await;
    assert!(
        refused.starts_with("ERR version mismatch"),
        "got {refused:?}"
    );
    assert_eq!(snapshot(&mut node).await, state, "a refused SET wrote");
    let session = get(&mut conn, &s).await.unwrap();
    assert_eq!(session.data, "v3");
    assert_eq!(session.version, 3);
    assert_eq!(
        (session.created, session.expires_at, session.max_expires_at),
        (created.created, created.expires_at, created.max_expires_at),
        "SET is not activity"
    );
    assert_eq!(pexpiretime(&mut conn, &s).await, expiry);
    // A touch does not change the version; the next SET continues from it.
    assert_eq!(touch(&mut conn, &s, &[]).await.unwrap().version, 3);
    assert_eq!(set(&mut conn, &s, "v4", Some(3)).await, Some(4));
    // Binary-safe data.
    let blob: Vec<u8> = (0..=255u8).collect();
    let version: i64 = redis::cmd("TK.SESSION.SET")
        .arg(&s)
        .arg(&blob[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 5);
    let raw: (Vec<u8>, Vec<u8>, i64, i64, i64, i64, i64) =
        query(&mut conn, &["TK.SESSION.GET", &s]).await;
    assert_eq!(raw.1, blob);
    // Absent session: nil, never recreated.
    let ghost = skey("t1", "ghost");
    assert_eq!(set(&mut conn, &ghost, "x", None).await, None);
    assert_eq!(set(&mut conn, &ghost, "x", Some(1)).await, None);
    assert!(!exists(&mut conn, &ghost).await);
}

async fn of_two_concurrent_ifversion_updates_exactly_one_wins(topology: &Topology) {
    const ROUNDS: usize = 20;
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "race"), ikey("t1", "alice"));
    create(&mut conn, &s, &i, "alice", "1h", "initial", &[]).await;
    // Two clients of their own.
    let mut left = topology.connection().await;
    let mut right = topology.connection().await;
    for round in 0..ROUNDS {
        let version = get(&mut conn, &s).await.unwrap().version;
        let (a, b) = (format!("left-{round}"), format!("right-{round}"));
        let v = version.to_string();
        let args_a = ["TK.SESSION.SET", s.as_str(), a.as_str(), "IFVERSION", &v];
        let args_b = ["TK.SESSION.SET", s.as_str(), b.as_str(), "IFVERSION", &v];
        let (cmd_a, cmd_b) = (command(&args_a), command(&args_b));
        let (ra, rb) = tokio::join!(
            cmd_a.query_async::<Option<i64>>(&mut left),
            cmd_b.query_async::<Option<i64>>(&mut right),
        );
        let winner = match (&ra, &rb) {
            (Ok(Some(new)), Err(e)) | (Err(e), Ok(Some(new))) => {
                assert_eq!(*new, version + 1, "round {round}");
                assert!(
                    error_text(e).starts_with("ERR version mismatch"),
                    "round {round}: {e}"
                );
                if ra.is_ok() {
                    &a
                } else {
                    &b
                }
            }
            _ => panic!("round {round}: not exactly one winner: {ra:?} / {rb:?}"),
        };
        let session = get(&mut conn, &s).await.unwrap();
        assert_eq!(&session.data, winner, "round {round}");
        assert_eq!(session.version, version + 1, "round {round}");
    }
    if module_mode() {
        let info = counters(&mut node_conn(topology, &s).await).await;
        assert_eq!(counter(&info, "tk_session_updated"), ROUNDS as u64);
        assert_eq!(
            counter(&info, "tk_session_version_conflicts"),
            ROUNDS as u64
        );
    }
}

// ---- DESTROY, ROTATE, REVOKEALL ---------------------------------------------

async fn a_late_set_after_destroy_does_not_resurrect_the_session(topology: &Topology) {
    let mut conn = topology.connection().await;
    let (s, i) = (skey("t1", "a"), ikey("t1", "alice"));
    let session = create(&mut conn, &s, &i, "alice", "1h", "d", &[]).await;
    assert_eq!(int(&mut conn, &["TK.SESSION.DESTROY", &s, &i]).await, 1);
    // A request that read the session before the logout writes late.
    assert_eq!(set(&mut conn, &s, "late", None).await, None);
    assert_eq!(
        set(&mut conn, &s, "late", Some(session.version)).await,
        None
    );
    assert!(!exists(&mut conn, &s).await, "SET recreated the session");
    assert_eq!(touch(&mut conn, &s, &[]).await, None);
    assert_eq!(get(&mut conn, &s).await, None);
    assert!(!exists(&mut conn, &s).await, "TOUCH recreated the session");
    assert!(list(&mut conn, &i).await.is_empty());
    assert_eq!(int(&mut conn, &["TK.SESSION.DESTROY", &s, &i]).await, 0);
    // The index went with its last entry.
    assert_eq!(dbsize(&mut conn).await, 0);
}

async fn destroy_removes_one_session_and_its_index_entry(topology: &Topology) {
    let mut conn = topology.connection().await;
    let i = ikey("t1", "alice");
    let (a, b) = (skey("t1", "a"), skey("t1", "b"));
    create(&mut conn, &a, &i, "alice", "1h", "d", &[]).await;
    create(&mut conn, &b, &i, "alice", "1h", "d", &[]).await;
    assert_eq!(int(&mut conn, &["TK.SESSION.DESTROY", &a, &i]).await, 1);
    assert!(!exists(&mut conn, &a).await);
    assert!(exists(&mut conn, &b).await);
    let members: Vec<String> = query(&mut conn, &["ZRANGE", &i, "0", "-1"]).await;
    assert_eq!(members, std::slice::from_ref(&b));
    assert_eq!(list_keys(&mut conn, &i).await, [b]);
    assert_eq!(int(&mut conn, &["TK.SESSION.DESTROY", &a, &i]).await, 0);
}

async fn rotate_moves_data_and_expiry_to_the_new_key(topology: &Topology) {
    let mut conn = topology.connection().await;
    let i = ikey("t1", "alice");
    let (old, new) = (skey("t1", "old"), skey("t1", "new"));
    create(
        &mut conn,
        &old,
        &i,
        "alice",
        "1h",
        "v1",
        &["MAXLIFETIME", "2h"],
    )
    .await;
    set(&mut conn, &old, "v2", None).await;
    let before = touch(&mut conn, &old, &[]).await.unwrap();
    let fields: BTreeMap<String, String> = query(&mut conn, &["HGETALL", &old]).await;
    let expiry = pexpiretime(&mut conn, &old).await;

    assert_eq!(
        int(&mut conn, &["TK.SESSION.ROTATE", &old, &new, &i]).await,
        1
    );
    assert!(!exists(&mut conn, &old).await);
    assert_eq!(pexpiretime(&mut conn, &new).await, expiry);
    let moved: BTreeMap<String, String> = query(&mut conn, &["HGETALL", &new]).await;
    assert_eq!(moved, fields);
    assert_eq!(get(&mut conn, &new).await, Some(before.clone()));
    assert_eq!(get(&mut conn, &old).await, None);
    // The index lists the new key with the same max lifetime, not the old one.
    let members: Vec<(String, i64)> =
        query(&mut conn, &["ZRANGE", &i, "0", "-1", "WITHSCORES"]).await;
    assert_eq!(members, [(new.clone(), before.max_expires_at)]);
    assert_eq!(list_keys(&mut conn, &i).await, std::slice::from_ref(&new));
    assert_index_covers(&mut conn, &i).await;

    // The old key is gone: nil, nothing created.
    let third = skey("t1", "third");
    let rotated: Option<i64> = query(&mut conn, &["TK.SESSION.ROTATE", &old, &third, &i]).await;
    assert_eq!(rotated, None);
    assert!(!exists(&mut conn, &third).await);
    assert!(!exists(&mut conn, &old).await);
    // The new key is taken: refused, nothing changed.
    create(&mut conn, &third, &i, "alice", "1h", "other", &[]).await;
    let mut node = node_conn(topology, &i).await;
    let state = snapshot(&mut node).await;
    assert_eq!(
        error(&mut conn, &["TK.SESSION.ROTATE", &new, &third, &i]).await,
        "ERR session already exists"
    );
    assert_eq!(snapshot(&mut node).await, state);
}

async fn revokeall_except_keeps_exactly_the_excepted_session(topology: &Topology) {
    let mut conn = topology.connection().await;
    let i = ikey("t1", "alice");
    let keys: Vec<String> = (0..4).map(|n| skey("t1", &format!("a{n}"))).collect();
    for key in &keys {
        create(&mut conn, key, &i, "alice", "1h", "d", &[]).await;
    }
    // Another user, in the same slot and in another one.
    let (bob, bob_index) = (skey("t1", "b"), ikey("t1", "bob"));
    create(&mut conn, &bob, &bob_index, "bob", "1h", "d", &[]).await;
    let (carol, carol_index) = (skey("t2", "c"), ikey("t2", "carol"));
    create(&mut conn, &carol, &carol_index, "carol", "1h", "d", &[]).await;

    let revoked = int(&mut conn, &["TK.SESSION.REVOKEALL", &i, "EXCEPT", &keys[2]]).await;
    assert_eq!(revoked, 3);
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(exists(&mut conn, key).await, n == 2, "{key}");
    }
    assert_eq!(list_keys(&mut conn, &i).await, [keys[2].clone()]);
    assert_eq!(zcard(&mut conn, &i).await, 1);
    assert!(get(&mut conn, &bob).await.is_some());
    assert!(get(&mut conn, &carol).await.is_some());

    assert_eq!(int(&mut conn, &["TK.SESSION.REVOKEALL", &i]).await, 1);
    assert!(!exists(&mut conn, &keys[2]).await);
    assert!(!exists(&mut conn, &i).await, "an empty index is deleted");
    assert_eq!(int(&mut conn, &["TK.SESSION.REVOKEALL", &i]).await, 0);
    assert_eq!(
        list_keys(&mut conn, &bob_index).await,
        [bob],
        "bob's sessions are untouched"
    );
    if module_mode() {
        let mut node = node_conn(topology, &i).await;
        assert_eq!(counter(&counters(&mut node).await, "tk_session_revoked"), 4);
    }
}

// ---- LIST and the index -----------------------------------------------------

async fn list_skips_dead_sessions_and_the_next_create_prunes_the_index(topology: &Topology) {
    let mut conn = topology.connection().await;
    let i = ikey("t1", "alice");
    let short: Vec<String> = (0..3).map(|n| skey("t1", &format!("short{n}"))).collect();
    let long: Vec<String> = (0..2).map(|n| skey("t1", &format!("long{n}"))).collect();
    for key in &long {
        create(&mut conn, key, &i, "alice", "1h", "d", &[]).await;
    }
    for key in &short {
        create(&mut conn, key, &i, "alice", "200ms", "d", &[]).await;
    }
    assert_eq!(list(&mut conn, &i).await.len(), 5);
    assert_index_covers(&mut conn, &i).await;

    // Whatever LIST returns while the short ones die, nothing in it is dead.
    // A session lives through its expiry millisecond (Redis still serves its
    // key then; rules::is_live), and LIST runs at or after `now`.
    eventually("the short sessions drop out of LIST", async || {
        let now = now_ms(&mut conn).await;
        let rows = list(&mut conn, &i).await;
        for (key, created, last_active, expires_at) in &rows {
            assert!(*expires_at >= now, "LIST returned a dead session {key}");
            assert!(created <= last_active && last_active < expires_at, "{key}");
        }
        rows.len() == 2
    })
    .await;
    let listed: BTreeSet<String> = list_keys(&mut conn, &i).await.into_iter().collect();
    assert_eq!(listed, long.iter().cloned().collect());
    // LIST is read-only: the dead entries are still indexed...
    assert_eq!(zcard(&mut conn, &i).await, 5);
    // ...until the next CREATE prunes them.
    let fresh = skey("t1", "fresh");
    create(&mut conn, &fresh, &i, "alice", "1h", "d", &[]).await;
    assert_eq!(zcard(&mut conn, &i).await, 3);
    let members: BTreeSet<String> = query::<Vec<String>>(&mut conn, &["ZRANGE", &i, "0", "-1"])
        .await
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = long.iter().chain([&fresh]).cloned().collect();
    assert_eq!(members, expected);
    assert_index_covers(&mut conn, &i).await;

    // Most recently active first.
    let rows = list(&mut conn, &i).await;
    assert_eq!(rows[0].0, fresh);
    let newest = rows[0].2;
    wait_for_clock_past(&mut conn, newest).await;
    touch(&mut conn, &long[0], &[]).await.unwrap();
    let rows = list(&mut conn, &i).await;
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        [long[0].clone(), fresh, long[1].clone()]
    );
    assert!(
        rows.windows(2).all(|pair| pair[0].2 >= pair[1].2),
        "{rows:?}"
    );
    for (key, created, last_active, expires_at) in &rows {
        let session = get(&mut conn, key).await.unwrap();
        assert_eq!(
            (session.created, session.last_active, session.expires_at),
            (*created, *last_active, *expires_at),
            "{key}"
        );
    }
    // An unknown user's index lists nothing.
    assert!(list(&mut conn, &ikey("t1", "nobody")).await.is_empty());
}

async fn the_index_expires_once_no_session_can_be_alive(topology: &Topology) {
    let mut conn = topology.connection().await;
    let i = ikey("t1", "alice");
    for (id, lifetime) in [("a", "300ms"), ("b", "200ms"), ("c", "400ms")] {
        let key = skey("t1", id);
        let session = create(
            &mut conn,
            &key,
            &i,
            "alice",
            "1h",
            "d",
            &["MAXLIFETIME", lifetime],
        )
        .await;
        assert_eq!(session.expires_at, session.max_expires_at, "{id}");
        assert_index_covers(&mut conn, &i).await;
    }
    eventually("sessions and index expire", async || {
        dbsize(&mut conn).await == 0
    })
    .await;
}

// ---- MAXSESSIONS ------------------------------------------------------------

/// 50 CREATEs for one user, all at once on their own connections, with
/// `MAXSESSIONS 5 <policy>`; returns the session keys and each reply.
async fn fifty_concurrent_creates(
    topology: &Topology,
    policy: &str,
) -> (String, Vec<String>, Vec<Result<Value, String>>) {
    let index = ikey("t1", "alice");
    let keys: Vec<String> = (0..50).map(|n| skey("t1", &format!("s{n:02}"))).collect();
    // Connect first, so that the 50 commands are sent together.
    let mut conns = Vec::new();
    for _ in &keys {
        conns.push(topology.connection().await);
    }
    let mut tasks = Vec::new();
    for (key, mut conn) in keys.iter().zip(conns) {
        let (key, index, policy) = (key.clone(), index.clone(), policy.to_string());
        tasks.push(tokio::spawn(async move {
            command(&[
                "TK.SESSION.CREATE",
                &key,
                &index,
                "alice",
                "1h",
                "d",
                "MAXSESSIONS",
                "5",
                &policy,
            ])
            .query_async::<Value>(&mut conn)
            .await
            .map_err(|e| error_text(&e))
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    (index, keys, replies)
}

async fn live_keys(conn: &mut impl ConnectionLike, keys: &[String]) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    for key in keys {
        if exists(conn, key).await {
            live.insert(key.clone());
        }
    }
    live
}

async fn maxsessions_evict_never_leaves_more_than_the_cap_under_50_concurrent_creates(
    topology: &Topology,
) {
    let (index, keys, replies) = fifty_concurrent_creates(topology, "EVICT").await;
    for (key, reply) in keys.iter().zip(&replies) {
        assert!(reply.is_ok(), "{key}: {reply:?}");
    }
    let mut conn = topology.connection().await;
    let live = live_keys(&mut conn, &keys).await;
    assert_eq!(live.len(), 5, "{live:?}");
    assert_eq!(zcard(&mut conn, &index).await, 5);
    let listed: BTreeSet<String> = list_keys(&mut conn, &index).await.into_iter().collect();
    assert_eq!(listed, live);
    assert_index_covers(&mut conn, &index).await;
    if module_mode() {
        let info = counters(&mut node_conn(topology, &index).await).await;
        assert_eq!(counter(&info, "tk_session_created"), 50);
        assert_eq!(counter(&info, "tk_session_evicted"), 45);
    }
    assert_eq!(dbsize(&mut conn).await, 6, "5 sessions and the index");
}

async fn maxsessions_reject_admits_exactly_the_cap_under_50_concurrent_creates(
    topology: &Topology,
) {
    let (index, keys, replies) = fifty_concurrent_creates(topology, "REJECT").await;
    let mut admitted = BTreeSet::new();
    for (key, reply) in keys.iter().zip(&replies) {
        match reply {
            Ok(_) => {
                admitted.insert(key.clone());
            }
            Err(text) => assert_eq!(text, "ERR session limit reached", "{key}"),
        }
    }
    assert_eq!(admitted.len(), 5, "{admitted:?}");
    let mut conn = topology.connection().await;
    assert_eq!(live_keys(&mut conn, &keys).await, admitted);
    assert_eq!(zcard(&mut conn, &index).await, 5);
    let listed: BTreeSet<String> = list_keys(&mut conn, &index).await.into_iter().collect();
    assert_eq!(listed, admitted);
    if module_mode() {
        let info = counters(&mut node_conn(topology, &index).await).await;
        assert_eq!(counter(&info, "tk_session_created"), 5);
        assert_eq!(counter(&info, "tk_session_rejected"), 45);
        assert_eq!(counter(&info, "tk_session_evicted"), 0);
    }
}

async fn evict_removes_the_least_recently_active_sessions(topology: &Topology) {
    let mut conn = topology.connection().await;
    let i = ikey("t1", "alice");
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|id| skey("t1", id));
    let cap = ["MAXSESSIONS", "3", "EVICT"];
    let mut last = 0;
    for key in [&a, &b, &c] {
        wait_for_clock_past(&mut conn, last).await;
        last = create(&mut conn, key, &i, "alice", "1h", "d", &cap)
            .await
            .last_active;
    }
    // a becomes the most recently active; b is now the oldest.
    wait_for_clock_past(&mut conn, last).await;
    last = touch(&mut conn, &a, &[]).await.unwrap().last_active;
    wait_for_clock_past(&mut conn, last).await;
    create(&mut conn, &d, &i, "alice", "1h", "d", &cap).await;
    assert_eq!(
        live_keys(&mut conn, &[a.clone(), b.clone(), c.clone(), d.clone()]).await,
        [&a, &c, &d].into_iter().cloned().collect()
    );
    // A smaller cap evicts as many as needed: c and a go, d stays.
    create(
        &mut conn,
        &e,
        &i,
        "alice",
        "1h",
        "d",
        &["MAXSESSIONS", "2", "EVICT"],
    )
    .await;
    assert_eq!(
        live_keys(&mut conn, &[a, b, c, d.clone(), e.clone()]).await,
        [d, e].into_iter().collect()
    );
    assert_eq!(zcard(&mut conn, &i).await, 2);
}

// ---- replication and persistence -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reaches_identical_state_after_a_mixed_workload() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    let mut conn = primary.conn().await;
    // Idle TTLs of 1 h: nothing expires while the two sides are compared.
    for user in ["alice", "bob"] {
        let i = ikey("t1", user);
        for n in 0..6 {
            let key = skey("t1", &format!("{user}{n}"));
            create(&mut conn, &key, &i, user, "1h", "d", &[]).await;
        }
    }
    let (ai, bi) = (ikey("t1", "alice"), ikey("t1", "bob"));
    touch(&mut conn, &skey("t1", "alice0"), &[]).await.unwrap();
    touch(&mut conn, &skey("t1", "alice1"), &["IDLE", "2h"])
        .await
        .unwrap();
    touch(&mut conn, &skey("t1", "alice2"), &["MINGAP", "1h"])
        .await
        .unwrap();
    set(&mut conn, &skey("t1", "alice0"), "v2", None).await;
    set(&mut conn, &skey("t1", "alice0"), "v3", Some(2)).await;
    int(
        &mut conn,
        &["TK.SESSION.DESTROY", &skey("t1", "alice3"), &ai],
    )
    .await;
    int(
        &mut conn,
        &[
            "TK.SESSION.ROTATE",
            &skey("t1", "alice4"),
            &skey("t1", "alice4r"),
            &ai,
        ],
    )
    .await;
    int(
        &mut conn,
        &["TK.SESSION.REVOKEALL", &bi, "EXCEPT", &skey("t1", "bob5")],
    )
    .await;
    // Evictions replicate as their effects.
    for n in 0..3 {
        let key = skey("t2", &format!("carol{n}"));
        create(
            &mut conn,
            &key,
            &ikey("t2", "carol"),
            "carol",
            "1h",
            "d",
            &["MAXSESSIONS", "2", "EVICT"],
        )
        .await;
    }
    // Inside MULTI/EXEC...
    let (dave, dave_index) = (skey("t3", "dave"), ikey("t3", "dave"));
    let _: Value = redis::pipe()
        .atomic()
        .cmd("TK.SESSION.CREATE")
        .arg(&[dave.as_str(), &dave_index, "dave", "1h", "d"])
        .cmd("TK.SESSION.TOUCH")
        .arg(&[dave.as_str(), "IDLE", "90m"])
        .cmd("TK.SESSION.SET")
        .arg(&[dave.as_str(), "tx", "IFVERSION", "1"])
        .cmd("TK.SESSION.ROTATE")
        .arg(&[dave.as_str(), &skey("t3", "dave2"), &dave_index])
        .query_async(&mut conn)
        .await
        .unwrap();
    // ...and in scripts (a script cannot call FCALL: in functions mode the
    // same calls go to the library directly).
    let (erin, erin2, erin_index) = (skey("t4", "erin"), skey("t4", "erin2"), ikey("t4", "erin"));
    if module_mode() {
        let _: Value = redis::cmd("EVAL")
            .arg(
                "redis.call('TK.SESSION.CREATE', KEYS[1], KEYS[3], 'erin', '1h', 'script')
                 redis.call('TK.SESSION.TOUCH', KEYS[1])
                 redis.call('TK.SESSION.SET', KEYS[1], 'script2')
                 redis.call('TK.SESSION.CREATE', KEYS[2], KEYS[3], 'erin', '1h', 'x')
                 return redis.call('TK.SESSION.DESTROY', KEYS[2], KEYS[3])",
            )
            .arg(3)
            .arg(&[&erin, &erin2, &erin_index])
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: Value = redis::cmd("EVAL")
            .arg("return redis.call('TK.SESSION.REVOKEALL', KEYS[1], 'EXCEPT', KEYS[2])")
            .arg(2)
            .arg(&[ai.as_str(), &skey("t1", "alice0")])
            .query_async(&mut conn)
            .await
            .unwrap();
    } else {
        let calls: [&[&str]; 6] = [
            &[
                "TK.SESSION.CREATE",
                &erin,
                &erin_index,
                "erin",
                "1h",
                "script",
            ],
            &["TK.SESSION.TOUCH", &erin],
            &["TK.SESSION.SET", &erin, "script2"],
            &["TK.SESSION.CREATE", &erin2, &erin_index, "erin", "1h", "x"],
            &["TK.SESSION.DESTROY", &erin2, &erin_index],
            &["TK.SESSION.REVOKEALL", &ai, "EXCEPT", &skey("t1", "alice0")],
        ];
        for call in calls {
            let _: Value = query(&mut conn, call).await;
        }
    }

    wait_for_sync(&primary, &replica).await;
    let mut replica_conn = replica.conn().await;
    let primary_state = snapshot(&mut conn).await;
    assert_eq!(primary_state, snapshot(&mut replica_conn).await);
    assert_eq!(
        debug_digest(&mut conn).await,
        debug_digest(&mut replica_conn).await
    );
    // Sanity: what was compared is what we expect.
    let expected: BTreeSet<String> = [
        skey("t1", "alice0"),
        ai.clone(),
        skey("t1", "bob5"),
        bi.clone(),
        skey("t2", "carol1"),
        skey("t2", "carol2"),
        ikey("t2", "carol"),
        skey("t3", "dave2"),
        dave_index.clone(),
        skey("t4", "erin"),
        ikey("t4", "erin"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        primary_state.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    // Reads run on the replica with the primary's answers; writes do not.
    for key in [
        skey("t1", "alice0"),
        skey("t3", "dave2"),
        skey("t4", "erin"),
    ] {
        let on_primary = get(&mut conn, &key).await;
        assert!(on_primary.is_some(), "{key}");
        assert_eq!(get(&mut replica_conn, &key).await, on_primary, "{key}");
    }
    assert_eq!(
        get(&mut conn, &skey("t3", "dave2")).await.unwrap().data,
        "tx"
    );
    assert_eq!(
        get(&mut conn, &skey("t4", "erin")).await.unwrap().data,
        "script2"
    );
    for index in [&ai, &bi, &dave_index] {
        assert_eq!(
            list(&mut replica_conn, index).await,
            list(&mut conn, index).await,
            "{index}"
        );
    }
    let refused = error(
        &mut replica_conn,
        &["TK.SESSION.TOUCH", &skey("t1", "alice0")],
    )
    .await;
    assert!(refused.starts_with("READONLY"), "{refused}");
}

#[tokio::test]
async fn aof_restart_keeps_sessions_index_and_expiries() {
    let mut server = Server::builder().aof(true).start().await;
    let mut conn = server.conn().await;
    let i = ikey("t1", "alice");
    for n in 0..4 {
        let key = skey("t1", &format!("a{n}"));
        create(
            &mut conn,
            &key,
            &i,
            "alice",
            "1h",
            &format!("data{n}"),
            &["MAXLIFETIME", "2h"],
        )
        .await;
    }
    touch(&mut conn, &skey("t1", "a0"), &["IDLE", "30m"])
        .await
        .unwrap();
    set(&mut conn, &skey("t1", "a1"), "updated", Some(1)).await;
    int(
        &mut conn,
        &[
            "TK.SESSION.ROTATE",
            &skey("t1", "a2"),
            &skey("t1", "a2r"),
            &i,
        ],
    )
    .await;
    int(&mut conn, &["TK.SESSION.DESTROY", &skey("t1", "a3"), &i]).await;
    let before = snapshot(&mut conn).await;
    let sessions = list(&mut conn, &i).await;
    let a1 = get(&mut conn, &skey("t1", "a1")).await;
    assert_eq!(before.len(), 4, "three sessions and the index: {before:?}");
    drop(conn);
    server.restart().await;
    let mut conn = server.conn().await;
    assert_eq!(snapshot(&mut conn).await, before);
    assert_eq!(list(&mut conn, &i).await, sessions);
    assert_eq!(get(&mut conn, &skey("t1", "a1")).await, a1);
    assert_eq!(a1.unwrap().version, 2);
    assert_index_covers(&mut conn, &i).await;
    // Versions continue after the restart.
    assert_eq!(
        set(&mut conn, &skey("t1", "a1"), "again", Some(2)).await,
        Some(3)
    );
}

// ---- errors, key specs, INFO -------------------------------------------------

#[tokio::test]
async fn every_error_path_replies_err_and_changes_nothing() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let s = skey("t1", "live");
    let i = ikey("t1", "alice");
    let other = skey("t1", "other");
    let fresh = skey("t1", "fresh");
    let string = skey("t1", "string");
    let string_index = ikey("t1", "string");
    let foreign = skey("t1", "foreign");
    let elsewhere = skey("t2", "x");
    let elsewhere_index = ikey("t2", "alice");
    create(&mut conn, &s, &i, "alice", "1h", "d", &[]).await;
    create(&mut conn, &other, &i, "alice", "1h", "d", &[]).await;
    let _: () = query(&mut conn, &["SET", &string, "x"]).await;
    let _: () = query(&mut conn, &["SET", &string_index, "x"]).await;
    let _: () = query(&mut conn, &["HSET", &foreign, "foo", "bar"]).await;
    let bobs = skey("t1", "bobs");
    create(&mut conn, &bobs, &ikey("t1", "bob"), "bob", "1h", "d", &[]).await;
    // The last version each backend counts to: the library's integers are
    // doubles, exact to 2^53 (tk.lua's header).
    let max_version = if module_mode() {
        i64::MAX.to_string()
    } else {
        ((1_i64 << 53) - 1).to_string()
    };
    let huge_version = skey("t1", "huge-version");
    write_session_by_hand(
        &mut conn,
        &huge_version,
        "alice",
        HOUR_MS,
        "9223372036854775808",
    )
    .await;
    let last_version = skey("t1", "last-version");
    write_session_by_hand(&mut conn, &last_version, "alice", HOUR_MS, &max_version).await;
    let before = snapshot(&mut conn).await;
    let errors_before: Option<u64> = info_section(&mut conn, "tk")
        .await
        .get("tk_errors")
        .map(|count| count.parse().unwrap());

    const ARITY: &str = "ERR wrong number of arguments";
    const BAD_INDEX: &str = "ERR a session index must be named tk:si:{<tag>}:<user>";
    const BAD_SESSION: &str =
        "ERR a session key must be tk:s:{<tag>}:<id>, with the tag of its index";
    const SAME_KEY: &str = "ERR syntax error: the same key";
    const UNKNOWN: &str = "ERR syntax error: unknown option";
    let create_args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["TK.SESSION.CREATE", &fresh, &i, "alice", "1h", "d"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let owned = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };
    let cases: Vec<(Vec<String>, &str)> = vec![
        // Arity, every command.
        (owned(&["TK.SESSION.CREATE"]), ARITY),
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "1h"]),
            ARITY,
        ),
        (owned(&["TK.SESSION.TOUCH"]), ARITY),
        (owned(&["TK.SESSION.TOUCH", &s, "IDLE"]), ARITY),
        (owned(&["TK.SESSION.TOUCH", &s, "MINGAP"]), ARITY),
        (owned(&["TK.SESSION.GET"]), ARITY),
        (owned(&["TK.SESSION.GET", &s, &other]), ARITY),
        (owned(&["TK.SESSION.SET"]), ARITY),
        (owned(&["TK.SESSION.SET", &s]), ARITY),
        (owned(&["TK.SESSION.SET", &s, "d", "IFVERSION"]), ARITY),
        (owned(&["TK.SESSION.DESTROY", &s]), ARITY),
        (owned(&["TK.SESSION.DESTROY", &s, &i, &other]), ARITY),
        (owned(&["TK.SESSION.ROTATE", &s, &fresh]), ARITY),
        (owned(&["TK.SESSION.ROTATE", &s, &fresh, &i, &other]), ARITY),
        (owned(&["TK.SESSION.LIST"]), ARITY),
        (owned(&["TK.SESSION.LIST", &i, &i]), ARITY),
        (owned(&["TK.SESSION.REVOKEALL"]), ARITY),
        (owned(&["TK.SESSION.REVOKEALL", &i, "EXCEPT"]), ARITY),
        (create_args(&["MAXLIFETIME"]), ARITY),
        // Durations.
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "0", "d"]),
            "ERR idle_ttl must be between",
        ),
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "-1s", "d"]),
            "ERR idle_ttl must be",
        ),
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "soon", "d"]),
            "ERR idle_ttl must be a duration",
        ),
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "1d", "d"]),
            "ERR idle_ttl must be a duration",
        ),
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "1.5s", "d"]),
            "ERR idle_ttl must be a duration",
        ),
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "alice", "9000h", "d"]),
            "ERR idle_ttl must be between",
        ),
        (
            create_args(&["MAXLIFETIME", "0"]),
            "ERR MAXLIFETIME must be between",
        ),
        (
            create_args(&["MAXLIFETIME", "later"]),
            "ERR MAXLIFETIME must be a duration",
        ),
        (
            owned(&["TK.SESSION.TOUCH", &s, "IDLE", "0"]),
            "ERR IDLE must be between",
        ),
        (
            owned(&["TK.SESSION.TOUCH", &s, "IDLE", "1x"]),
            "ERR IDLE must be a duration",
        ),
        (
            owned(&["TK.SESSION.TOUCH", &s, "MINGAP", "0"]),
            "ERR MINGAP must be between",
        ),
        (
            owned(&["TK.SESSION.TOUCH", &s, "MINGAP", "-5"]),
            "ERR MINGAP must be",
        ),
        // MAXSESSIONS.
        (
            create_args(&["MAXSESSIONS", "0", "EVICT"]),
            "ERR MAXSESSIONS must be between",
        ),
        (
            create_args(&["MAXSESSIONS", "-1", "EVICT"]),
            "ERR MAXSESSIONS must be between",
        ),
        (
            create_args(&["MAXSESSIONS", "five", "EVICT"]),
            "ERR MAXSESSIONS must be an integer",
        ),
        (
            create_args(&["MAXSESSIONS", "5", "DROP"]),
            "ERR the MAXSESSIONS policy must be",
        ),
        (create_args(&["MAXSESSIONS", "5"]), "ERR "),
        // Unknown and repeated options.
        (create_args(&["NOPE"]), UNKNOWN),
        (create_args(&["NOPE", "1"]), UNKNOWN),
        (owned(&["TK.SESSION.TOUCH", &s, "NOPE", "1s"]), UNKNOWN),
        (owned(&["TK.SESSION.TOUCH", &s, "1s"]), UNKNOWN),
        (owned(&["TK.SESSION.SET", &s, "d", "NOPE", "1"]), UNKNOWN),
        (owned(&["TK.SESSION.REVOKEALL", &i, "BUT", &s]), UNKNOWN),
        (
            create_args(&["MAXLIFETIME", "1h", "MAXLIFETIME", "2h"]),
            "ERR syntax error: option MAXLIFETIME given more than once",
        ),
        (
            create_args(&["MAXSESSIONS", "2", "EVICT", "MAXSESSIONS", "3", "REJECT"]),
            "ERR syntax error: option MAXSESSIONS given more than once",
        ),
        (
            owned(&["TK.SESSION.TOUCH", &s, "IDLE", "1h", "IDLE", "2h"]),
            "ERR syntax error: option IDLE given more than once",
        ),
        (
            owned(&["TK.SESSION.TOUCH", &s, "MINGAP", "1s", "MINGAP", "1s"]),
            "ERR syntax error: option MINGAP given more than once",
        ),
        (
            owned(&[
                "TK.SESSION.SET",
                &s,
                "d",
                "IFVERSION",
                "1",
                "IFVERSION",
                "1",
            ]),
            "ERR syntax error",
        ),
        (
            owned(&["TK.SESSION.REVOKEALL", &i, "EXCEPT", &s, "EXCEPT", &other]),
            "ERR syntax error",
        ),
        // IFVERSION.
        (
            owned(&["TK.SESSION.SET", &s, "d", "IFVERSION", "x"]),
            "ERR IFVERSION must be an integer",
        ),
        (
            owned(&["TK.SESSION.SET", &s, "d", "IFVERSION", "1.0"]),
            "ERR IFVERSION must be an integer",
        ),
        (
            owned(&["TK.SESSION.SET", &s, "d", "IFVERSION", "-1"]),
            "ERR IFVERSION must be",
        ),
        // Same key twice.
        (
            owned(&["TK.SESSION.CREATE", &fresh, &fresh, "alice", "1h", "d"]),
            SAME_KEY,
        ),
        (owned(&["TK.SESSION.DESTROY", &s, &s]), SAME_KEY),
        (owned(&["TK.SESSION.ROTATE", &s, &s, &i]), SAME_KEY),
        (owned(&["TK.SESSION.ROTATE", &s, &i, &i]), SAME_KEY),
        (owned(&["TK.SESSION.ROTATE", &s, &fresh, &s]), SAME_KEY),
        (owned(&["TK.SESSION.REVOKEALL", &i, "EXCEPT", &i]), SAME_KEY),
        // Other arguments.
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "", "1h", "d"]),
            "ERR syntax error: user must not be empty",
        ),
        // WRONGTYPE: a string at the session key...
        (
            owned(&["TK.SESSION.CREATE", &string, &i, "alice", "1h", "d"]),
            "WRONGTYPE",
        ),
        (owned(&["TK.SESSION.TOUCH", &string]), "WRONGTYPE"),
        (owned(&["TK.SESSION.GET", &string]), "WRONGTYPE"),
        (owned(&["TK.SESSION.SET", &string, "d"]), "WRONGTYPE"),
        (owned(&["TK.SESSION.DESTROY", &string, &i]), "WRONGTYPE"),
        (
            owned(&["TK.SESSION.ROTATE", &string, &fresh, &i]),
            "WRONGTYPE",
        ),
        (owned(&["TK.SESSION.ROTATE", &s, &string, &i]), "WRONGTYPE"),
        // ...at the index key...
        (
            owned(&[
                "TK.SESSION.CREATE",
                &fresh,
                &string_index,
                "string",
                "1h",
                "d",
            ]),
            "WRONGTYPE",
        ),
        (
            owned(&["TK.SESSION.DESTROY", &s, &string_index]),
            "WRONGTYPE",
        ),
        (
            owned(&["TK.SESSION.ROTATE", &s, &fresh, &string_index]),
            "WRONGTYPE",
        ),
        (owned(&["TK.SESSION.LIST", &string_index]), "WRONGTYPE"),
        (owned(&["TK.SESSION.REVOKEALL", &string_index]), "WRONGTYPE"),
        // ...and a hash that is not a session.
        (owned(&["TK.SESSION.GET", &foreign]), "WRONGTYPE"),
        (owned(&["TK.SESSION.TOUCH", &foreign]), "WRONGTYPE"),
        (owned(&["TK.SESSION.SET", &foreign, "d"]), "WRONGTYPE"),
        (
            owned(&["TK.SESSION.ROTATE", &foreign, &fresh, &i]),
            "WRONGTYPE",
        ),
        // State refusals.
        (
            owned(&["TK.SESSION.CREATE", &s, &i, "alice", "1h", "d"]),
            "ERR session already exists",
        ),
        (
            owned(&["TK.SESSION.ROTATE", &s, &other, &i]),
            "ERR session already exists",
        ),
        (
            owned(&["TK.SESSION.SET", &s, "d", "IFVERSION", "7"]),
            "ERR version mismatch",
        ),
        (
            create_args(&["MAXSESSIONS", "2", "REJECT"]),
            "ERR session limit reached",
        ),
        // Sessions are bound to the user their index names.
        (
            owned(&["TK.SESSION.CREATE", &fresh, &i, "bob", "1h", "d"]),
            "ERR the user must be the one its index names",
        ),
        (
            owned(&["TK.SESSION.ROTATE", &bobs, &fresh, &i]),
            "ERR the session belongs to another user",
        ),
        // Stored numbers tk could not have written, and the last version.
        (owned(&["TK.SESSION.GET", &huge_version]), "WRONGTYPE"),
        (owned(&["TK.SESSION.TOUCH", &huge_version]), "WRONGTYPE"),
        (owned(&["TK.SESSION.SET", &huge_version, "d"]), "WRONGTYPE"),
        (
            owned(&[
                "TK.SESSION.SET",
                &last_version,
                "d",
                "IFVERSION",
                &max_version,
            ]),
            "ERR version limit reached",
        ),
        // Index names outside the layout.
        (owned(&["TK.SESSION.LIST", "sessions:alice"]), BAD_INDEX),
        (owned(&["TK.SESSION.REVOKEALL", "tk:si:{t1}:"]), BAD_INDEX),
        (
            owned(&[
                "TK.SESSION.CREATE",
                &fresh,
                "tk:si:{}:alice",
                "alice",
                "1h",
                "d",
            ]),
            BAD_INDEX,
        ),
        (owned(&["TK.SESSION.DESTROY", &s, "users:alice"]), BAD_INDEX),
        (
            owned(&["TK.SESSION.CREATE", "victim", &i, "alice", "1h", "d"]),
            BAD_SESSION,
        ),
    ];
    let cross_slot: Vec<Vec<String>> = vec![
        owned(&[
            "TK.SESSION.CREATE",
            &fresh,
            &elsewhere_index,
            "alice",
            "1h",
            "d",
        ]),
        owned(&["TK.SESSION.CREATE", &elsewhere, &i, "alice", "1h", "d"]),
        owned(&["TK.SESSION.DESTROY", &s, &elsewhere_index]),
        owned(&["TK.SESSION.ROTATE", &s, &elsewhere, &i]),
        owned(&["TK.SESSION.ROTATE", &s, &fresh, &elsewhere_index]),
        owned(&["TK.SESSION.REVOKEALL", &i, "EXCEPT", &elsewhere]),
    ];

    // Every case runs (a reply instead of an error is recorded, not fatal),
    // so one report lists every deviation.
    let mut failures = Vec::new();
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match outcome(&mut conn, &args).await {
            Err(text) if text.starts_with(expected) => {}
            other => failures.push(format!("{args:?}: got {other:?}, want {expected:?}")),
        }
    }
    for args in &cross_slot {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match outcome(&mut conn, &args).await {
            Err(text) if text.starts_with(BAD_SESSION) => {}
            other => failures.push(format!("{args:?}: got {other:?}, want a hash tag error")),
        }
    }
    // CREATE over a hash that is not a session: refused (as a foreign key or
    // as an existing one), never overwritten.
    let args = ["TK.SESSION.CREATE", &foreign, &i, "alice", "1h", "d"];
    match outcome(&mut conn, &args).await {
        Err(text) if text.starts_with("WRONGTYPE") || text == "ERR session already exists" => {}
        other => failures.push(format!("{args:?}: got {other:?}, want an error")),
    }
    // Last: a wrongly accepted DESTROY would delete the hash.
    let args = ["TK.SESSION.DESTROY", &foreign, &i];
    match outcome(&mut conn, &args).await {
        Err(text) if text.starts_with("WRONGTYPE") => {}
        other => failures.push(format!("{args:?}: got {other:?}, want \"WRONGTYPE\"")),
    }
    let after = snapshot(&mut conn).await;
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\ndata changed: {}",
        failures.len(),
        failures.join("\n"),
        after != before
    );
    assert_eq!(after, before, "an error changed the data");
    let pong: String = query(&mut conn, &["PING"]).await;
    assert_eq!(pong, "PONG");
    if let Some(errors_before) = errors_before {
        let info = info_section(&mut conn, "tk").await;
        assert_eq!(info["tk_panics"], "0");
        // Arity errors may come from Redis itself; the rest are the module's.
        let errors: u64 = info["tk_errors"].parse().unwrap();
        assert!(errors - errors_before >= (cases.len() + cross_slot.len() - 20) as u64);
    }
}

#[tokio::test]
async fn command_getkeys_names_the_declared_keys() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let (old, new, index) = ("tk:s:{t1}:a", "tk:s:{t1}:b", "tk:si:{t1}:u");
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &[
                "TK.SESSION.CREATE",
                old,
                index,
                "u",
                "1h",
                "d",
                "MAXSESSIONS",
                "5",
                "EVICT",
            ],
            &[old, index],
        ),
        (&["TK.SESSION.ROTATE", old, new, index], &[old, new, index]),
        (&["TK.SESSION.DESTROY", old, index], &[old, index]),
    ];
    // Every case runs, so one report lists every deviation.
    let mut failures = Vec::new();
    for (args, expected) in cases {
        let mut getkeys = vec!["COMMAND", "GETKEYS"];
        getkeys.extend_from_slice(args);
        match outcome(&mut conn, &getkeys).await {
            Ok(reply) => {
                let keys: Result<Vec<String>, _> = FromRedisValue::from_redis_value(reply.clone());
                if !keys.is_ok_and(|keys| keys == expected) {
                    failures.push(format!("{getkeys:?}: got {reply:?}, want {expected:?}"));
                }
            }
            Err(text) => failures.push(format!("{getkeys:?}: got {text:?}, want {expected:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn get_and_list_are_flagged_readonly_the_rest_write() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    for (name, readonly) in [
        ("tk.session.get", true),
        ("tk.session.list", true),
        ("tk.session.create", false),
        ("tk.session.touch", false),
        ("tk.session.set", false),
        ("tk.session.destroy", false),
        ("tk.session.rotate", false),
        ("tk.session.revokeall", false),
    ] {
        if !module_mode() {
            // The library's counterpart: `no-writes` functions (FCALL_RO);
            // it has no command docs.
            assert_eq!(runs_read_only(&mut conn, name).await, readonly, "{name}");
            continue;
        }
        // COMMAND INFO: [[name, arity, [flags...], ...]].
        let info: Vec<Option<Vec<Value>>> = query(&mut conn, &["COMMAND", "INFO", name]).await;
        let entry = info
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_else(|| panic!("{name} is not registered"));
        let flags: Vec<String> = FromRedisValue::from_redis_value(entry[2].clone())
            .unwrap_or_else(|e| panic!("{name}: flags {:?}: {e}", entry[2]));
        let has = |flag: &str| flags.iter().any(|f| f == flag);
        assert_eq!(has("readonly"), readonly, "{name}: {flags:?}");
        assert_eq!(has("write"), !readonly, "{name}: {flags:?}");
        let docs: Value = query(&mut conn, &["COMMAND", "DOCS", name]).await;
        let text = format!("{docs:?}");
        assert!(
            text.contains("summary") && text.contains("complexity"),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn info_counts_session_outcomes() {
    if skip_in_functions_mode("INFO tk counters are the module's") {
        return;
    }
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let i = ikey("t1", "alice");
    let [a, b, c, b2, d] = ["a", "b", "c", "b2", "d"].map(|id| skey("t1", id));
    let start = counters(&mut conn).await;
    for name in [
        "tk_session_created",
        "tk_session_touched",
        "tk_session_touch_skipped",
        "tk_session_expired_on_read",
        "tk_session_updated",
        "tk_session_version_conflicts",
        "tk_session_destroyed",
        "tk_session_rotated",
        "tk_session_revoked",
        "tk_session_evicted",
        "tk_session_rejected",
    ] {
        assert_eq!(counter(&start, name), 0, "{name}");
    }
    let one = ["MAXSESSIONS", "1"];
    create(&mut conn, &a, &i, "alice", "1h", "d", &[]).await;
    create(
        &mut conn,
        &b,
        &i,
        "alice",
        "1h",
        "d",
        &[one[0], one[1], "EVICT"],
    )
    .await;
    error(
        &mut conn,
        &[
            "TK.SESSION.CREATE",
            &c,
            &i,
            "alice",
            "1h",
            "d",
            one[0],
            one[1],
            "REJECT",
        ],
    )
    .await;
    touch(&mut conn, &b, &[]).await.unwrap();
    touch(&mut conn, &b, &["MINGAP", "1h"]).await.unwrap();
    assert_eq!(get(&mut conn, &a).await, None);
    get(&mut conn, &b).await.unwrap();
    assert_eq!(set(&mut conn, &b, "v2", Some(1)).await, Some(2));
    error(&mut conn, &["TK.SESSION.SET", &b, "v", "IFVERSION", "1"]).await;
    assert_eq!(int(&mut conn, &["TK.SESSION.ROTATE", &b, &b2, &i]).await, 1);
    create(&mut conn, &d, &i, "alice", "1h", "d", &[]).await;
    assert_eq!(
        int(&mut conn, &["TK.SESSION.REVOKEALL", &i, "EXCEPT", &b2]).await,
        1
    );
    assert_eq!(int(&mut conn, &["TK.SESSION.DESTROY", &b2, &i]).await, 1);
    assert_eq!(int(&mut conn, &["TK.SESSION.DESTROY", &b2, &i]).await, 0);
    let info = counters(&mut conn).await;
    for (name, value) in [
        ("tk_session_created", 3),
        ("tk_session_touched", 1),
        ("tk_session_touch_skipped", 1),
        ("tk_session_expired_on_read", 1),
        ("tk_session_updated", 1),
        ("tk_session_version_conflicts", 1),
        ("tk_session_destroyed", 1),
        ("tk_session_rotated", 1),
        ("tk_session_revoked", 1),
        ("tk_session_evicted", 1),
        ("tk_session_rejected", 1),
    ] {
        assert_eq!(counter(&info, name), value, "{name}: {info:?}");
    }
    assert_eq!(dbsize(&mut conn).await, 0);
}

// ---- the client crate, end to end ----

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Login {
    name: String,
    theme: String,
}

fn login(theme: &str) -> Login {
    Login {
        name: "Alice".into(),
        theme: theme.into(),
    }
}

async fn client_session_lifecycle(topology: &Topology) {
    use tk_redis::{SessionStore, UpdateOutcome};

    let store: SessionStore<Login, _> = SessionStore::new(topology.connection().await);
    let (token, session) = store.create("alice", &login("dark")).await.unwrap();
    assert_eq!(session.user, "alice");
    assert_eq!(session.version, 1);
    let touched = store.touch(&token).await.unwrap().expect("alive");
    assert_eq!(touched.data, login("dark"));
    // Versioned updates: a stale writer is told, not silently overwritten.
    assert!(matches!(
        store
            .update(&token, &login("light"), Some(1))
            .await
            .unwrap(),
        UpdateOutcome::Updated { version: 2 }
    ));
    assert!(matches!(
        store.update(&token, &login("blue"), Some(1)).await.unwrap(),
        UpdateOutcome::VersionMismatch
    ));
    assert_eq!(
        store.get(&token).await.unwrap().unwrap().data,
        login("light")
    );
    // Rotation at login: the old token stops working, data and expiry stay.
    let expiry_before = store.get(&token).await.unwrap().unwrap().expires_at;
    let rotated = store
        .rotate(&token, "alice")
        .await
        .unwrap()
        .expect("rotated");
    assert!(store.get(&token).await.unwrap().is_none());
    let moved = store.get(&rotated).await.unwrap().unwrap();
    assert_eq!(moved.data, login("light"));
    assert_eq!(moved.expires_at, expiry_before);
    // Several devices, listed; log out everywhere but here.
    let (phone, _) = store.create("alice", &login("dark")).await.unwrap();
    let (tablet, _) = store.create("alice", &login("dark")).await.unwrap();
    assert_eq!(store.list("alice").await.unwrap().len(), 3);
    assert_eq!(store.revoke_all("alice", Some(&rotated)).await.unwrap(), 2);
    assert!(store.get(&phone).await.unwrap().is_none());
    assert!(store.get(&tablet).await.unwrap().is_none());
    assert_eq!(store.list("alice").await.unwrap().len(), 1);
    // Logout; a late update does not bring the session back.
    assert!(store.destroy(&rotated, "alice").await.unwrap());
    assert!(matches!(
        store.update(&rotated, &login("late"), None).await.unwrap(),
        UpdateOutcome::Gone
    ));
    assert!(store.list("alice").await.unwrap().is_empty());
}

async fn the_token_never_appears_in_the_keyspace(topology: &Topology) {
    use tk_redis::SessionStore;

    let store: SessionStore<Login, _> = SessionStore::new(topology.connection().await);
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        let (token, _) = store.create(user, &login("dark")).await.unwrap();
        tokens.push(token);
    }
    let rotated = store.rotate(&tokens[0], "alice").await.unwrap().unwrap();
    tokens.push(rotated);
    // Every key name and every stored byte, searched for every token and its
    // secret part (on a cluster, KEYS is asked of every master).
    let mut conn = topology.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    // KEYS saw every node: alice's and bob's keys are in different slots.
    for user in ["alice", "bob"] {
        let index = tk_redis::session::index_key(user);
        assert!(keys.contains(&index), "{index} not in {keys:?}");
    }
    let mut everything = keys.join("\n").into_bytes();
    for key in &keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        everything.extend_from_slice(&dump);
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if kind == "hash" {
            let fields: Vec<Vec<u8>> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            fields
                .iter()
                .for_each(|field| everything.extend_from_slice(field));
        }
    }
    for token in &tokens {
        let text = token.as_str().as_bytes();
        let secret = &text[text.len() - 32..];
        assert!(
            !everything
                .windows(secret.len())
                .any(|window| window == secret),
            "a session token's secret is stored in Redis"
        );
    }
}

tk_redis_tests::topology_tests!(
    create_replies_the_session_and_stores_a_native_hash,
    touch_moves_activity_and_expiry_but_never_past_the_cap,
    an_idle_session_expires,
    the_absolute_cap_ends_a_session_however_often_it_is_touched,
    mingap_skips_the_write,
    set_bumps_the_version_keeps_the_expiry_and_checks_ifversion,
    of_two_concurrent_ifversion_updates_exactly_one_wins,
    a_late_set_after_destroy_does_not_resurrect_the_session,
    destroy_removes_one_session_and_its_index_entry,
    rotate_moves_data_and_expiry_to_the_new_key,
    revokeall_except_keeps_exactly_the_excepted_session,
    list_skips_dead_sessions_and_the_next_create_prunes_the_index,
    the_index_expires_once_no_session_can_be_alive,
    maxsessions_evict_never_leaves_more_than_the_cap_under_50_concurrent_creates,
    maxsessions_reject_admits_exactly_the_cap_under_50_concurrent_creates,
    evict_removes_the_least_recently_active_sessions,
    client_session_lifecycle,
    the_token_never_appears_in_the_keyspace,
);
