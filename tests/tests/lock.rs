//! TK.LOCK.* and the `tk_redis::lock` client against a real redis-server
//! with the freshly built module.
//!
//! No assertion depends on how fast the machine is: TTLs that must not run
//! out during a test are long, and the tests that wait for an expiry poll
//! with a bounded deadline instead of sleeping a fixed time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;
use tk_redis::lock::{fence_key, lock_key, Lock};
use tk_redis_tests::functions::assert_read_only_functions;
use tk_redis_tests::harness::{debug_digest, info_section, wait_for_sync, Server};
use tk_redis_tests::raw::{
    assert_refused_changing_nothing, int, ints, pexpiretime, query, snapshot,
};
use tk_redis_tests::Flavor;
use tk_redis_tests::{module_mode, skip_in_functions_mode, Conn};

/// Bound on every wait for an expiry.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);

async fn get(conn: &mut Conn, key: &str) -> Option<String> {
    query(conn, &["GET", key]).await
}

/// The server's clock (`TIME`) in microseconds.
async fn now_us(conn: &mut Conn) -> i64 {
    let (secs, micros): (i64, i64) = query(conn, &["TIME"]).await;
    secs * 1_000_000 + micros
}

/// The exact range of the remaining time (ms) the module reports for a
/// lock expiring at `expiry_ms`, asked by a command that ran between
/// `TIME` readings `before_us` and `after_us`: rounded up to a whole
/// millisecond, at least 1 (see [`expiry_range`] for the clocks).
fn remaining_range(
    flavor: Flavor,
    expiry_ms: i64,
    before_us: i64,
    after_us: i64,
) -> std::ops::RangeInclusive<i64> {
    let left = |now_us: i64| {
        let now_us = if microsecond_clock(flavor) {
            now_us
        } else {
            now_us.div_euclid(1000) * 1000
        };
        (expiry_ms * 1000 - now_us + 999).div_euclid(1000).max(1)
    };
    left(after_us)..=left(before_us)
}

/// Whether the clock tk reads has microseconds: the module's from 7.2
/// (`RedisModule_CachedMicroseconds`), and the library's (`TIME`) on every
/// server.
fn microsecond_clock(flavor: Flavor) -> bool {
    flavor.has_72_module_api() || !module_mode()
}

/// The exact range of expiries of a lock taken for `ttl_ms` by a command
/// that ran between `TIME` readings `before_us` and `after_us` on a server
/// of `flavor`. The module reads the server's clock once per command and
/// rounds it **up** to a millisecond, so that a lock never expires earlier
/// than asked: from 7.2 that clock has microseconds
/// (`RedisModule_CachedMicroseconds`); 7.0 only offers whole milliseconds
/// (`RedisModule_Milliseconds`, the truncated wall clock, which Redis's own
/// expiry check compares against too).
fn expiry_range(
    flavor: Flavor,
    before_us: i64,
    after_us: i64,
    ttl_ms: i64,
) -> std::ops::RangeInclusive<i64> {
    let to_ms = |us: i64| {
        if microsecond_clock(flavor) {
            (us + 999).div_euclid(1000)
        } else {
            us.div_euclid(1000)
        }
    };
    to_ms(before_us) + ttl_ms..=to_ms(after_us) + ttl_ms
}

// ---- the commands --------------------------------------------------------

#[tokio::test]
async fn acquire_release_and_reacquire_replies() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let acquire = ["TK.LOCK.ACQUIRE", "l", "{l}f", "owner-a", "1h"];
    let before = now_us(&mut conn).await;
    assert_eq!(ints(&mut conn, &acquire).await, [1, 1, 3_600_000]);
    let after = now_us(&mut conn).await;
    // Native strings: the token with an absolute expiry, and a counter that
    // never expires.
    assert_eq!(get(&mut conn, "l").await.as_deref(), Some("owner-a"));
    assert_eq!(get(&mut conn, "{l}f").await.as_deref(), Some("1"));
    let expiry = pexpiretime(&mut conn, "l").await;
    let expected = expiry_range(Flavor::of(&mut conn).await, before, after, 3_600_000);
    assert!(expected.contains(&expiry), "{expiry} not in {expected:?}");
    assert_eq!(pexpiretime(&mut conn, "{l}f").await, -1);

    // Another token is refused with the holder's remaining time.
    let before = now_us(&mut conn).await;
    let busy = ints(
        &mut conn,
        &["TK.LOCK.ACQUIRE", "l", "{l}f", "owner-b", "5s"],
    )
    .await;
    let after = now_us(&mut conn).await;
    assert_eq!(&busy[..2], &[0, 0]);
    let expected = remaining_range(Flavor::of(&mut conn).await, expiry, before, after);
    assert!(
        expected.contains(&busy[2]),
        "{busy:?}, expected {expected:?}"
    );
    assert_eq!(get(&mut conn, "{l}f").await.as_deref(), Some("1"));

    // The holder's token re-acquires: new fence, TTL replaced.
    assert_eq!(
        ints(
            &mut conn,
            &["TK.LOCK.ACQUIRE", "l", "{l}f", "owner-a", "2h"]
        )
        .await,
        [1, 2, 7_200_000]
    );
    assert!(pexpiretime(&mut conn, "l").await > expiry);

    assert_eq!(
        int(&mut conn, &["TK.LOCK.RELEASE", "l", "owner-a"]).await,
        1
    );
    assert_eq!(get(&mut conn, "l").await, None);
    assert_eq!(
        int(&mut conn, &["TK.LOCK.RELEASE", "l", "owner-a"]).await,
        0
    );
    // The fence key stays, so the next holder gets a larger token.
    assert_eq!(get(&mut conn, "{l}f").await.as_deref(), Some("2"));
    assert_eq!(
        ints(
            &mut conn,
            &["TK.LOCK.ACQUIRE", "l", "{l}f", "owner-b", "1s"]
        )
        .await,
        [1, 3, 1_000]
    );
}

#[tokio::test]
async fn release_and_extend_with_a_wrong_token_are_refused() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "right", "1h"]).await;
    let expiry = pexpiretime(&mut conn, "l").await;
    for wrong in ["wrong", "righ", "right!", "RIGHT"] {
        assert_eq!(int(&mut conn, &["TK.LOCK.RELEASE", "l", wrong]).await, 0);
        assert_eq!(
            int(&mut conn, &["TK.LOCK.EXTEND", "l", wrong, "2h"]).await,
            0
        );
    }
    // Still held by the right token, expiry untouched.
    assert_eq!(get(&mut conn, "l").await.as_deref(), Some("right"));
    assert_eq!(pexpiretime(&mut conn, "l").await, expiry);
    assert_eq!(
        &ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "wrong", "1s"]).await[..2],
        &[0, 0]
    );
    // Absent locks: refused, nothing created.
    assert_eq!(int(&mut conn, &["TK.LOCK.RELEASE", "none", "t"]).await, 0);
    assert_eq!(
        int(&mut conn, &["TK.LOCK.EXTEND", "none", "t", "1s"]).await,
        0
    );
    assert_eq!(int(&mut conn, &["EXISTS", "none"]).await, 0);

    // Through the client.
    let locks = Lock::new(server.conn().await);
    let guard = locks
        .try_acquire("job", Duration::from_secs(3600))
        .await
        .unwrap()
        .expect("free lock");
    let key = lock_key("job");
    assert_eq!(
        int(&mut conn, &["TK.LOCK.RELEASE", &key, "not-the-token"]).await,
        0
    );
    assert_eq!(get(&mut conn, &key).await.as_deref(), Some(guard.token()));
    assert!(locks
        .try_acquire("job", Duration::from_secs(1))
        .await
        .unwrap()
        .is_none());
    assert!(guard.release().await.unwrap());
    assert!(!guard.release().await.unwrap(), "released twice");
}

#[tokio::test]
async fn extend_moves_the_expiry_only_for_the_holder() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "t", "10s"]).await;
    let first = pexpiretime(&mut conn, "l").await;
    let before = now_us(&mut conn).await;
    assert_eq!(int(&mut conn, &["TK.LOCK.EXTEND", "l", "t", "1h"]).await, 1);
    let after = now_us(&mut conn).await;
    let extended = pexpiretime(&mut conn, "l").await;
    assert!(extended > first);
    let expected = expiry_range(Flavor::of(&mut conn).await, before, after, 3_600_000);
    assert!(
        expected.contains(&extended),
        "{extended} not in {expected:?}"
    );
    // The fence does not change.
    assert_eq!(get(&mut conn, "f").await.as_deref(), Some("1"));
    // A shorter TTL replaces a longer one.
    assert_eq!(int(&mut conn, &["TK.LOCK.EXTEND", "l", "t", "1m"]).await, 1);
    assert!(pexpiretime(&mut conn, "l").await < extended);

    // Through the client.
    let locks = Lock::new(server.conn().await);
    let mut guard = locks
        .try_acquire("job", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    let key = lock_key("job");
    let short = pexpiretime(&mut conn, &key).await;
    let local = guard.expires_at();
    assert!(guard.extend(Duration::from_secs(3600)).await.unwrap());
    assert!(pexpiretime(&mut conn, &key).await >= short + 3_500_000);
    assert!(guard.expires_at() > local);
    assert_eq!(
        int(&mut conn, &["TK.LOCK.EXTEND", &key, "other", "1s"]).await,
        0
    );
    guard.release().await.unwrap();
    assert!(!guard.extend(Duration::from_secs(1)).await.unwrap());
    assert_eq!(int(&mut conn, &["EXISTS", &key]).await, 0);
}

#[tokio::test]
async fn an_expired_lock_is_acquired_by_another_token() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let locks = Lock::new(server.conn().await);
    let mut first = locks
        .try_acquire("exp", Duration::from_millis(200))
        .await
        .unwrap()
        .expect("free lock");
    // Bounded polling, no timing assertion: another owner gets it once the
    // TTL has run out.
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    let second = loop {
        if let Some(guard) = locks
            .try_acquire("exp", Duration::from_secs(3600))
            .await
            .unwrap()
        {
            break guard;
        }
        assert!(Instant::now() < deadline, "the lock never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(second.fence() > first.fence());
    assert_ne!(second.token(), first.token());
    // The first owner can neither extend nor release the new owner's lock.
    assert!(!first.extend(Duration::from_secs(10)).await.unwrap());
    assert!(!first.release().await.unwrap());
    assert_eq!(
        get(&mut conn, &lock_key("exp")).await.as_deref(),
        Some(second.token())
    );
    // `acquire` with a wait also gets an expiring lock without a release.
    let waited = Lock::new(server.conn().await)
        .acquire("exp2", Duration::from_millis(100), Duration::ZERO)
        .await
        .unwrap()
        .expect("free lock");
    let next = locks
        .acquire("exp2", Duration::from_secs(10), EXPIRY_DEADLINE)
        .await
        .unwrap()
        .expect("acquired after the holder's expiry");
    assert!(next.fence() > waited.fence());
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_releases_expiries_and_names() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let locks = Lock::new(server.conn().await);
    let mut fences = Vec::new();
    for round in 0..12 {
        let ttl = if round % 3 == 0 {
            Duration::from_millis(30)
        } else {
            Duration::from_secs(60)
        };
        let guard = locks
            .acquire("fenced", ttl, EXPIRY_DEADLINE)
            .await
            .unwrap()
            .expect("acquired within the deadline");
        fences.push(guard.fence());
        match round % 3 {
            // Left to expire: the next round waits for it.
            0 => {}
            1 => assert!(guard.release().await.unwrap()),
            // Re-acquired with the same token: a new, larger fence.
            _ => {
                let again = ints(
                    &mut conn,
                    &[
                        "TK.LOCK.ACQUIRE",
                        &lock_key("fenced"),
                        &fence_key("fenced"),
                        guard.token(),
                        "60s",
                    ],
                )
                .await;
                assert_eq!(again[0], 1);
                fences.push(u64::try_from(again[1]).unwrap());
                assert!(guard.release().await.unwrap());
            }
        }
    }
    assert!(
        fences.windows(2).all(|pair| pair[0] < pair[1]),
        "fences not strictly increasing: {fences:?}"
    );
    assert_eq!(fences[0], 1);
    // The fence key survives the lock's expiry and never expires.
    assert_eq!(pexpiretime(&mut conn, &fence_key("fenced")).await, -1);
    // Another name has its own counter.
    let other = locks
        .try_acquire("other", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.fence(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_exclusion_under_20_concurrent_tasks() {
    const TASKS: usize = 20;
    const ROUNDS: usize = 5;
    let server = Server::start().await;
    // A critical section that detects overlap three ways: an occupancy flag,
    // a read-modify-write counter with an await in the middle (a lost update
    // shows as a short count), and the recorded (enter, exit) intervals.
    let occupied = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let intervals = Arc::new(Mutex::new(Vec::<(Instant, Instant, u64)>::new()));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        // One connection per task: 20 real clients racing.
        let locks = Lock::new(server.conn().await);
        let (occupied, counter, intervals) = (occupied.clone(), counter.clone(), intervals.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let guard = locks
                    .acquire("mutex", Duration::from_secs(60), Duration::from_secs(120))
                    .await
                    .unwrap_or_else(|e| panic!("task {task} round {round}: {e}"))
                    .unwrap_or_else(|| panic!("task {task} round {round}: not acquired"));
                let enter = Instant::now();
                assert!(
                    !occupied.swap(true, Ordering::SeqCst),
                    "task {task}: two holders at once"
                );
                let seen = counter.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                counter.store(seen + 1, Ordering::SeqCst);
                occupied.store(false, Ordering::SeqCst);
                let exit = Instant::now();
                intervals.lock().unwrap().push((enter, exit, guard.fence()));
                assert!(guard.release().await.unwrap(), "task {task}: lost the lock");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        counter.load(Ordering::SeqCst),
        (TASKS * ROUNDS) as u64,
        "lost updates"
    );
    let mut intervals = intervals.lock().unwrap().clone();
    intervals.sort_by_key(|&(enter, _, _)| enter);
    assert_eq!(intervals.len(), TASKS * ROUNDS);
    for pair in intervals.windows(2) {
        let ((_, exit, fence), (enter, _, next_fence)) = (pair[0], pair[1]);
        assert!(exit <= enter, "critical sections overlap");
        assert!(
            fence < next_fence,
            "fences out of order: {fence} then {next_fence}"
        );
    }
    assert_eq!(intervals.last().unwrap().2, (TASKS * ROUNDS) as u64);
}

// ---- replication and persistence ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_has_the_same_locks_fences_and_expiries() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "{a}l", "{a}f", "ta", "1h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "{a}l", "{a}f", "ta", "2h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "{b}l", "{b}f", "tb", "1h"]).await;
    int(&mut conn, &["TK.LOCK.EXTEND", "{b}l", "tb", "3h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "{c}l", "{c}f", "tc", "1h"]).await;
    int(&mut conn, &["TK.LOCK.RELEASE", "{c}l", "tc"]).await;
    // Inside MULTI/EXEC and scripts the effects replicate, not the command.
    let (_, _): (Vec<i64>, i64) = redis::pipe()
        .atomic()
        .cmd("TK.LOCK.ACQUIRE")
        .arg(&["{d}l", "{d}f", "td", "1h"])
        .cmd("TK.LOCK.EXTEND")
        .arg(&["{d}l", "td", "90m"])
        .query_async(&mut conn)
        .await
        .unwrap();
    if module_mode() {
        let _: Vec<i64> = redis::cmd("EVAL")
            .arg("return redis.call('TK.LOCK.ACQUIRE', KEYS[1], KEYS[2], 'te', '1h')")
            .arg(2)
            .arg("{e}l")
            .arg("{e}f")
            .query_async(&mut conn)
            .await
            .unwrap();
    } else {
        // A script cannot call FCALL: the library is called directly.
        ints(&mut conn, &["TK.LOCK.ACQUIRE", "{e}l", "{e}f", "te", "1h"]).await;
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
    assert_eq!(get(&mut conn, "{a}f").await.as_deref(), Some("2"));
    assert_eq!(primary_state["{a}f"].1, -1);
    assert_eq!(get(&mut conn, "{c}f").await.as_deref(), Some("1"));
    assert!(!primary_state.contains_key("{c}l"));
    for key in ["{a}l", "{b}l", "{d}l", "{e}l"] {
        assert!(primary_state[key].1 > 0, "{key} has an absolute expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_replicate_nothing() {
    let primary = Server::builder()
        .arg("--repl-ping-replica-period", "3600")
        .start()
        .await;
    let replica = Server::replica_of(&primary).await;
    wait_for_sync(&primary, &replica).await;
    let mut conn = primary.conn().await;
    let offset = |info: HashMap<String, String>| info["master_repl_offset"].parse::<i64>().unwrap();
    let start = offset(info_section(&mut conn, "replication").await);
    // Positive control: a granted acquire is propagated.
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "holder", "1h"]).await;
    let before = offset(info_section(&mut conn, "replication").await);
    assert!(
        before > start,
        "a granted acquire did not reach the replication stream"
    );
    for _ in 0..5 {
        assert_eq!(
            ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "other", "1h"]).await[0],
            0
        );
        assert_eq!(int(&mut conn, &["TK.LOCK.RELEASE", "l", "other"]).await, 0);
        assert_eq!(
            int(&mut conn, &["TK.LOCK.EXTEND", "l", "other", "1h"]).await,
            0
        );
        assert_eq!(int(&mut conn, &["TK.LOCK.RELEASE", "absent", "x"]).await, 0);
    }
    let after = offset(info_section(&mut conn, "replication").await);
    assert_eq!(before, after, "a refusal reached the replication stream");
    drop(replica);
}

#[tokio::test]
async fn aof_restart_keeps_the_lock_and_the_fence() {
    let mut server = Server::builder().aof(true).start().await;
    let mut conn = server.conn().await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "holder", "1h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "holder", "1h"]).await;
    int(&mut conn, &["TK.LOCK.EXTEND", "l", "holder", "2h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "gone", "gone:f", "t", "1h"]).await;
    int(&mut conn, &["TK.LOCK.RELEASE", "gone", "t"]).await;
    let before = snapshot(&mut conn).await;
    drop(conn);
    server.restart().await;
    let mut conn = server.conn().await;
    assert_eq!(snapshot(&mut conn).await, before);
    assert_eq!(
        &ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "other", "1s"]).await[..2],
        &[0, 0],
        "still held after the restart"
    );
    assert_eq!(int(&mut conn, &["TK.LOCK.RELEASE", "l", "holder"]).await, 1);
    assert_eq!(
        ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "other", "1s"]).await,
        [1, 3, 1_000],
        "the fence continues after the restart"
    );
}

// ---- errors, key specs, INFO ----------------------------------------------

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
        .arg(&["text", "not a counter"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["max", "9223372036854775807"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["padded", "007"])
        .query_async(&mut conn)
        .await
        .unwrap();
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "held", "held:f", "t", "1h"]).await;

    let long = vec![b't'; 129];
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"t"],
            "ERR wrong number of arguments",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"t", b"1s", b"NX"],
            "ERR wrong number of arguments",
        ),
        (&[b"TK.LOCK.RELEASE", b"l"], "ERR wrong number of arguments"),
        (
            &[b"TK.LOCK.EXTEND", b"l", b"t"],
            "ERR wrong number of arguments",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"t", b"0"],
            "ERR ttl must be between 1 and 86400000",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"t", b"-1s"],
            "ERR ttl must be between",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"t", b"25h"],
            "ERR ttl must be between",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"t", b"1d"],
            "ERR ttl must be a duration",
        ),
        (
            &[b"TK.LOCK.EXTEND", b"held", b"t", b"soon"],
            "ERR ttl must be a duration",
        ),
        (
            &[b"TK.LOCK.EXTEND", b"held", b"t", b"0ms"],
            "ERR ttl must be between",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", &long, b"1s"],
            "ERR token length must be between 1 and 128",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"f", b"", b"1s"],
            "ERR token length must be between 1 and 128",
        ),
        (&[b"TK.LOCK.RELEASE", b"held", &long], "ERR token length"),
        (
            &[b"TK.LOCK.EXTEND", b"held", b"", b"1s"],
            "ERR token length",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"l", b"t", b"1s"],
            "ERR syntax error: the lock key and the fence key must be different",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"hash", b"f", b"t", b"1s"],
            "WRONGTYPE Operation against a key",
        ),
        (
            &[b"TK.LOCK.RELEASE", b"hash", b"t"],
            "WRONGTYPE Operation against a key",
        ),
        (
            &[b"TK.LOCK.EXTEND", b"hash", b"t", b"1s"],
            "WRONGTYPE Operation against a key",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"hash", b"t", b"1s"],
            "WRONGTYPE Operation against a key",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"text", b"t", b"1s"],
            "WRONGTYPE fence key holds a string that is not a fence counter",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"padded", b"t", b"1s"],
            "WRONGTYPE fence key",
        ),
        // Reported even while the lock is busy.
        (
            &[b"TK.LOCK.ACQUIRE", b"held", b"text", b"x", b"1s"],
            "WRONGTYPE fence key",
        ),
        (
            &[b"TK.LOCK.ACQUIRE", b"l", b"max", b"t", b"1s"],
            "ERR the fence counter is at its maximum",
        ),
    ];
    let count = assert_refused_changing_nothing(&mut conn, cases).await;
    if module_mode() {
        let info = info_section(&mut conn, "tk").await;
        // Arity errors come from Redis itself; the rest are the module's.
        assert!(info["tk_errors"].parse::<u64>().unwrap() >= count as u64 - 4);
    }
}

#[tokio::test]
async fn key_specs_flags_and_docs() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let keys: Vec<String> = query(
        &mut conn,
        &[
            "COMMAND",
            "GETKEYS",
            "TK.LOCK.ACQUIRE",
            "tk:lock:{n}",
            "tk:lock:{n}:fence",
            "t",
            "1s",
        ],
    )
    .await;
    assert_eq!(keys, ["tk:lock:{n}", "tk:lock:{n}:fence"]);
    let keys: Vec<String> = query(
        &mut conn,
        &["COMMAND", "GETKEYS", "TK.LOCK.RELEASE", "k", "t"],
    )
    .await;
    assert_eq!(keys, ["k"]);
    let keys: Vec<String> = query(
        &mut conn,
        &["COMMAND", "GETKEYS", "TK.LOCK.EXTEND", "k", "t", "1s"],
    )
    .await;
    assert_eq!(keys, ["k"]);
    if !module_mode() {
        // The library's counterpart of the flags: no `no-writes` function.
        assert_read_only_functions(
            &mut conn,
            &[
                ("tk.lock.acquire", false),
                ("tk.lock.extend", false),
                ("tk.lock.release", false),
            ],
        )
        .await;
        return;
    }
    for (name, flags) in [
        ("tk.lock.acquire", &["write", "denyoom", "fast"][..]),
        ("tk.lock.extend", &["write", "denyoom", "fast"][..]),
        ("tk.lock.release", &["write", "fast"][..]),
    ] {
        let info: Value = query(&mut conn, &["COMMAND", "INFO", name]).await;
        let text = format!("{info:?}");
        for flag in flags {
            assert!(text.contains(flag), "{name}: {flag} missing in {text}");
        }
        let docs: Value = query(&mut conn, &["COMMAND", "DOCS", name]).await;
        let text = format!("{docs:?}");
        assert!(
            text.contains("summary") && text.contains("complexity"),
            "{name}: {text}"
        );
    }
    let info: Value = query(&mut conn, &["COMMAND", "INFO", "tk.lock.release"]).await;
    assert!(!format!("{info:?}").contains("denyoom"));
}

#[tokio::test]
async fn info_counts_lock_outcomes() {
    if skip_in_functions_mode("INFO tk counters are the module's") {
        return;
    }
    let server = Server::start().await;
    let mut conn = server.conn().await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "a", "1h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "b", "1h"]).await;
    ints(&mut conn, &["TK.LOCK.ACQUIRE", "l", "f", "b", "1h"]).await;
    int(&mut conn, &["TK.LOCK.EXTEND", "l", "a", "1h"]).await;
    int(&mut conn, &["TK.LOCK.EXTEND", "l", "b", "1h"]).await;
    int(&mut conn, &["TK.LOCK.RELEASE", "l", "b"]).await;
    int(&mut conn, &["TK.LOCK.RELEASE", "l", "a"]).await;
    int(&mut conn, &["TK.LOCK.RELEASE", "l", "a"]).await;
    let info = info_section(&mut conn, "tk").await;
    let field = |name: &str| info.get(name).cloned().unwrap_or_default();
    assert_eq!(field("tk_lock_acquired"), "1");
    assert_eq!(field("tk_lock_busy"), "2");
    assert_eq!(field("tk_lock_extended"), "1");
    assert_eq!(field("tk_lock_extend_refused"), "1");
    assert_eq!(field("tk_lock_released"), "1");
    assert_eq!(field("tk_lock_release_refused"), "2");
}

#[tokio::test]
async fn client_reports_typed_errors() {
    let server = Server::start().await;
    let locks = Lock::connect(server.url()).await.unwrap();
    let mut conn = server.conn().await;
    let _: () = redis::cmd("HSET")
        .arg(&[lock_key("h").as_str(), "f", "v"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let error = locks
        .acquire("h", Duration::from_secs(1), Duration::from_secs(5))
        .await
        .unwrap_err();
    match &error {
        tk_redis::Error::Server { code, .. } => assert_eq!(code, "WRONGTYPE"),
        other => panic!("expected a WRONGTYPE server error, got {other:?}"),
    }
    assert!(matches!(
        locks.try_acquire("", Duration::from_secs(1)).await,
        Err(tk_redis::Error::InvalidArgument(_))
    ));

    let plain = Server::builder().without_module().start().await;
    // REDIS_TK_MODE=module: auto would load the Functions library instead.
    let locks = Lock::connect(plain.url())
        .await
        .unwrap()
        .with_tk_mode(tk_redis::TkMode::Module);
    let error = locks
        .try_acquire("x", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(error.is_module_not_loaded(), "{error:?}");
}
