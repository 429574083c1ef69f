//! `tk_redis::Connection` against real topologies (no fake servers): what a
//! Sentinel connection does when its primary fails over (planned or not),
//! crashes or hangs,
//! how it shares the lookup of a new primary between concurrent calls, and
//! how a cluster connection routes `TK.*` commands, follows `MOVED`/`ASK`,
//! sends again the refusals that ran nothing (`TRYAGAIN`, `CLUSTERDOWN`,
//! `NOREPLICAS`) and never sends again a command whose connection dropped;
//! and how `Config::subscribe` moves a subscription to another cluster node
//! or to Sentinel's new primary.
//!
//! "Ran exactly once" and "ran not at all" are read from the servers, never
//! from timing:
//!
//! * a sliding-log rate limit under a limit no test reaches ([`HUGE`]): its
//!   remaining count says exactly how many checks were admitted;
//! * `INFO commandstats`: `calls` counts runs, `rejected_calls` refusals
//!   before running (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`
//!   all count there in Redis 7.0);
//! * Sentinel lookups: Redis 7.0's Sentinel has no `commandstats` (nor
//!   `MONITOR` or `SLOWLOG`), so the lookup tests run a lone Sentinel and
//!   read its `total_commands_processed`: no other Sentinel talks to it, and
//!   one lookup by the client is one `SENTINEL MASTERS`.
//!
//! Every topology runs as local processes, so everything here skips under
//! the docker backend.

use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use tk_redis::health::{self, HealthOptions, Status};
use tk_redis::pubsub::{Channel, Event, Publisher, SubscribeOptions, Subscription};
use tk_redis::{
    Algorithm, Config, Connection, Error, FailurePolicy, Quota, RateLimiter, SentinelConnection,
    Topology,
};
use tk_redis_tests::harness::{
    commands_processed, skip_under_docker, wait_for_sync, wait_until, CommandStats, Server,
};
use tk_redis_tests::topology::{key_slot, Cluster, SentinelGroup, SENTINEL_MASTER_NAME};
use tk_redis_tests::Conn;

const SKIP: &str = "cluster and sentinel topologies run local redis-server processes";

/// A limit no test reaches: every check is admitted, and `HUGE - remaining`
/// is the number of admitted checks.
const HUGE: u64 = 1_000_000;

/// How long the waits for servers, Sentinels and the client may take.
const WAIT: Duration = Duration::from_secs(30);

/// The sliding-log quota of every counted check.
fn huge() -> Quota {
    Quota::per_hour(HUGE).algorithm(Algorithm::Sliding)
}

/// A rate limiter on `conn` that returns transient errors (instead of
/// failing open) and waits at most `timeout` per call.
///
/// In module mode: these tests count the checks that reach a server, and
/// a fresh limiter in auto mode would first ask the server for its backend
/// (`COMMAND INFO`), the call that a paused server then leaves hanging.
fn limiter(conn: &Connection, timeout: Duration) -> RateLimiter<Connection> {
    RateLimiter::new(conn.clone())
        .with_failure_policy(FailurePolicy::Error)
        .with_timeout(timeout)
        .with_tk_mode(tk_redis::TkMode::Module)
}

/// How many checks of `key` (under [`huge`]) the node has admitted,
/// read without consuming (`TK.RATELIMIT.PEEK … COST 0`).
async fn admitted(node: &Server, key: &str) -> u64 {
    let reply: Vec<i64> = redis::cmd("TK.RATELIMIT.PEEK")
        .arg(key)
        .arg(HUGE)
        .arg("1h")
        .arg(&["ALGO", "SLIDING", "COST", "0"])
        .query_async(&mut node.conn().await)
        .await
        .unwrap_or_else(|e| panic!("PEEK {key} on {}: {e}", node.addr()));
    HUGE - reply[2] as u64
}

async fn connect(config: Config) -> Connection {
    config
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect with {config:?}: {e}"))
}

/// Polls `check` until it returns `Some`, at most [`WAIT`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until(what, WAIT, || {
        let checked = check();
        async move { checked.await.ok_or_else(|| "not yet".to_owned()) }
    })
    .await
}

/// Checks `key` under [`huge`] until a call succeeds (at most [`WAIT`]),
/// every failure being transient; returns how many calls that took.
async fn check_until_admitted(limiter: &RateLimiter<Connection>, key: &str) -> u64 {
    let mut attempts = 0u64;
    wait_for("a check succeeds", || {
        attempts += 1;
        async move {
            match limiter.check(key, &huge(), 1).await {
                Ok(decision) => Some(decision),
                Err(err) => {
                    assert!(err.is_transient(), "{err:?}");
                    None
                }
            }
        }
    })
    .await;
    attempts
}

/// The error code `node` answers the command `args` with, sent straight to
/// it (no redirection followed).
async fn refusal_of(node: &Server, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    match cmd
        .query_async::<redis::Value>(&mut node.conn().await)
        .await
    {
        Ok(reply) => panic!("{args:?} on {}: replied {reply:?}", node.addr()),
        Err(err) => err.code().unwrap_or("?").to_owned(),
    }
}

/// The change of a command's counts between two readings.
fn delta(before: CommandStats, after: CommandStats) -> (u64, u64) {
    (
        after.calls - before.calls,
        after.rejected_calls - before.rejected_calls,
    )
}

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

fn sentinel_config(group: &SentinelGroup, read_timeout: Duration) -> Config {
    Config::builder()
        .sentinel(group.sentinel_addrs(), SENTINEL_MASTER_NAME)
        .read_timeout(read_timeout)
        .build()
        .expect("sentinel config")
}

fn sentinel_of(conn: &Connection) -> SentinelConnection {
    match conn {
        Connection::Sentinel(inner) => inner.clone(),
        other => panic!("not a Sentinel connection: {other:?}"),
    }
}

/// Counts the commands a lone Sentinel processes for its clients (see the
/// module docs): with the client's Sentinel connection cached, one lookup
/// of the primary is exactly one command.
struct SentinelLookups {
    conn: Conn,
    seen: u64,
}

impl SentinelLookups {
    async fn new(group: &SentinelGroup) -> SentinelLookups {
        assert_eq!(
            group.sentinels().len(),
            1,
            "only a lone Sentinel counts exactly"
        );
        let mut conn = group.sentinels()[0].conn().await;
        let seen = commands_processed(&mut conn).await;
        SentinelLookups { conn, seen }
    }

    /// Commands processed since the last reading, less the reading itself
    /// (an INFO is counted once it has run).
    async fn since_last(&mut self) -> u64 {
        let now = commands_processed(&mut self.conn).await;
        let others = now - self.seen - 1;
        self.seen = now;
        others
    }
}

/// Closes, on the server side, every client connection whose last command
/// was `command` (the client under test's, not the harness's or a
/// Sentinel's); returns how many.
async fn kill_connections_that_ran(server: &Server, command: &str) -> usize {
    let mut admin = server.conn().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    let ids: Vec<String> = list
        .lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field.eq_ignore_ascii_case(&format!("cmd={command}")))
        })
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect();
    for id in &ids {
        let _: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "ID", id])
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
    }
    ids.len()
}

/// `SENTINEL FAILOVER` on Sentinel 0 (retried while it has no suitable
/// replica yet), then waits until that Sentinel names data node `to` and
/// `to` reports `role:master`.
async fn sentinel_failover(group: &SentinelGroup, to: usize) {
    let sentinel = &group.sentinels()[0];
    let conn = sentinel.conn().await;
    wait_for("SENTINEL FAILOVER accepted", || {
        let mut conn = conn.clone();
        async move {
            let reply: redis::RedisResult<()> = redis::cmd("SENTINEL")
                .arg(&["FAILOVER", SENTINEL_MASTER_NAME])
                .query_async(&mut conn)
                .await;
            reply.ok()
        }
    })
    .await;
    let port = group.data_node(to).port();
    wait_for("Sentinel 0 names the promoted node", || {
        let mut conn = conn.clone();
        async move {
            let (_host, named): (String, u16) = redis::cmd("SENTINEL")
                .arg(&["GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER_NAME])
                .query_async(&mut conn)
                .await
                .ok()?;
            (named == port).then_some(())
        }
    })
    .await;
    let node = group.data_node(to);
    wait_for("the promoted node is master", || async move {
        (node
            .info("replication")
            .await
            .get("role")
            .map(String::as_str)
            == Some("master"))
        .then_some(())
    })
    .await;
}

/// `REPLICAOF <primary>` on `node`: what Sentinel does to a demoted
/// primary, without Sentinel's `CLIENT KILL TYPE normal`, so that clients
/// still connected to it get `READONLY` for writes.
async fn demote(node: &Server, primary: &Server) {
    let () = redis::cmd("REPLICAOF")
        .arg(primary.host())
        .arg(primary.port())
        .query_async(&mut node.conn().await)
        .await
        .expect("REPLICAOF");
}

/// Makes every Sentinel refuse pub/sub channels to the default user, so a
/// client's `+switch-master` watch cannot subscribe (it keeps trying);
/// lookups (`SENTINEL` commands) still work.
async fn deny_sentinel_pubsub(group: &SentinelGroup) {
    for node in group.sentinels() {
        let () = redis::cmd("ACL")
            .arg(&["SETUSER", "default", "resetchannels"])
            .query_async(&mut node.conn().await)
            .await
            .expect("ACL SETUSER on a Sentinel");
    }
}

/// Behaviours 1 and 2: the call that meets a demoted (`READONLY`) or
/// crashed primary fails with a transient error and runs nowhere, the
/// connection forgets the primary, and the next call asks Sentinel and
/// runs on the new primary, once. The Sentinels refuse the client's
/// `+switch-master` watch here, so that only these errors move it (with
/// the watch, a planned failover moves it first: see the next test).
#[tokio::test]
async fn sentinel_a_call_to_a_demoted_or_crashed_primary_fails_unexecuted_and_the_next_asks_sentinel(
) {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut group = SentinelGroup::start().await;
    deny_sentinel_pubsub(&group).await;
    let conn = connect(sentinel_config(&group, Duration::from_secs(5))).await;
    assert_eq!(conn.topology(), Topology::Sentinel);
    let sentinel = sentinel_of(&conn);
    let limiter = limiter(&conn, Duration::from_secs(5));
    let key = "rl:sentinel:failover";
    let (a, b) = (group.data_node(0).addr(), group.data_node(1).addr());
    assert_eq!(sentinel.master_addr().as_ref(), Some(&a));
    assert_eq!(sentinel.sentinels(), group.sentinel_addrs());
    assert_eq!(sentinel.master_name(), SENTINEL_MASTER_NAME);
    assert!(format!("{conn:?}").contains(&a), "{conn:?}");
    for _ in 0..2 {
        assert!(limiter.check(key, &huge(), 1).await.unwrap().allowed);
    }
    wait_for_sync(group.data_node(0), group.data_node(1)).await;

    // 1. A graceful failover: Sentinel promotes B. It demotes A only some
    // 8 to 11 s later (and kills A's clients then); demote A now, without
    // killing them, so that the client's connection to A meets READONLY.
    sentinel_failover(&group, 1).await;
    demote(group.data_node(0), group.data_node(1)).await;
    assert_eq!(group.wait_for_failover(0).await, 1);
    // A replica still loading the primary's data would answer LOADING.
    wait_for_sync(group.data_node(1), group.data_node(0)).await;
    let on_a = group.data_node(0).command_stats("tk.ratelimit").await;
    let err = limiter.check(key, &huge(), 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(&err, Error::Connection(inner) if inner.code() == Some("READONLY")),
        "{err:?}"
    );
    assert_eq!(sentinel.master_addr(), None, "READONLY forgets the primary");
    // A refused it without running it.
    let (ran, refused) = delta(on_a, group.data_node(0).command_stats("tk.ratelimit").await);
    assert_eq!((ran, refused), (0, 1), "on the demoted primary");
    // The next call asks Sentinel and runs on B: 2 checks before the
    // failover (replicated to B) + this one; the refused one ran nowhere.
    let decision = limiter.check(key, &huge(), 1).await.unwrap();
    assert_eq!(sentinel.master_addr().as_ref(), Some(&b));
    assert_eq!(HUGE - decision.remaining, 3, "{decision:?}");
    assert_eq!(admitted(group.data_node(1), key).await, 3);

    // 2. B crashes (SIGKILL); Sentinel promotes A again.
    wait_for_sync(group.data_node(1), group.data_node(0)).await;
    group.kill(1);
    assert_eq!(group.wait_for_failover(1).await, 0);
    let err = limiter.check(key, &huge(), 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        sentinel.master_addr(),
        None,
        "a dropped connection forgets the primary"
    );
    let decision = limiter.check(key, &huge(), 1).await.unwrap();
    assert_eq!(sentinel.master_addr().as_ref(), Some(&a));
    assert_eq!(HUGE - decision.remaining, 4, "{decision:?}");
}

/// Resumes the paused primary of `group` and waits until Sentinel no longer
/// flags it down (it hung past down-after-milliseconds, and Sentinel names
/// no primary it flags); then the next check on `conn`, which had forgotten
/// the primary, succeeds on it after exactly one lookup.
async fn resume_then_one_lookup(
    group: &SentinelGroup,
    conn: &Connection,
    lookups: &mut SentinelLookups,
    key: &str,
) {
    let master = group.data_node(0);
    master.resume();
    group.wait_master_flagged_down(false).await;
    lookups.since_last().await;
    let decision = limiter(conn, WAIT).check(key, &huge(), 1).await.unwrap();
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(sentinel_of(conn).master_addr(), Some(master.addr()));
    assert_eq!(
        lookups.since_last().await,
        1,
        "the next call asked Sentinel"
    );
}

/// Behaviour 3: a caller that gives up long before the response timeout
/// says nothing about the primary, so the connection keeps it; a call that
/// waited about the response timeout (the caller's timeout or the
/// connection's own) makes it ask Sentinel again, and once the primary runs
/// again the next call succeeds.
#[tokio::test]
async fn sentinel_a_hung_primary_is_forgotten_after_the_response_timeout_not_after_a_shorter_caller_timeout(
) {
    if skip_under_docker(SKIP) {
        return;
    }
    // No replica: however long the primary hangs, it stays the primary.
    let group = SentinelGroup::start_with(0, 1).await;
    let read_timeout = Duration::from_secs(1);
    let conn = connect(sentinel_config(&group, read_timeout)).await;
    let sentinel = sentinel_of(&conn);
    let master = group.data_node(0);
    let key = "rl:sentinel:hung";
    let mut lookups = SentinelLookups::new(&group).await;
    let mut ok_calls = 0;
    assert!(
        limiter(&conn, WAIT)
            .check(key, &huge(), 1)
            .await
            .unwrap()
            .allowed
    );
    ok_calls += 1;
    assert_eq!(lookups.since_last().await, 0, "connected already");

    master.pause();
    // The caller gives up after a tenth of the response timeout.
    let err = limiter(&conn, read_timeout / 10)
        .check(key, &huge(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert_eq!(sentinel.master_addr(), Some(master.addr()), "kept");
    // The caller gives up after about the response timeout, a moment
    // before the connection's own timeout would fire: the connection counts
    // an abandoned call that waited that long as timed out too.
    let err = limiter(&conn, read_timeout - Duration::from_millis(2))
        .check(key, &huge(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert_eq!(sentinel.master_addr(), None, "forgotten");
    assert_eq!(lookups.since_last().await, 0, "nothing asked yet");
    resume_then_one_lookup(&group, &conn, &mut lookups, key).await;
    ok_calls += 1;

    // The caller waits longer than the response timeout: the connection's
    // own timeout fires, with the same effect.
    master.pause();
    let err = limiter(&conn, 3 * read_timeout)
        .check(key, &huge(), 1)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(sentinel.master_addr(), None, "forgotten");
    resume_then_one_lookup(&group, &conn, &mut lookups, key).await;
    ok_calls += 1;

    // Nothing was sent twice: the 3 timed-out checks reached the paused
    // primary once each (and ran when it resumed), the others ran once.
    assert_eq!(admitted(master, key).await, ok_calls + 3);
}

/// Behaviours 4 and 5: once the primary is lost, concurrent calls wait for
/// one lookup and share its connection, or its error when Sentinel knows no
/// healthy primary; a later call looks up again.
#[tokio::test]
async fn sentinel_concurrent_calls_share_one_lookup_and_a_failed_lookup_is_shared_then_retried() {
    if skip_under_docker(SKIP) {
        return;
    }
    // No replica: a primary Sentinel flags down cannot be replaced, so
    // Sentinel knows no healthy primary until it answers again.
    let group = SentinelGroup::start_with(0, 1).await;
    let read_timeout = Duration::from_secs(1);
    let conn = connect(sentinel_config(&group, read_timeout)).await;
    let sentinel = sentinel_of(&conn);
    let limiter = limiter(&conn, WAIT);
    let master = group.data_node(0);
    let key = "rl:sentinel:shared";
    let mut lookups = SentinelLookups::new(&group).await;
    let mut ok_calls = 0;
    assert!(limiter.check(key, &huge(), 1).await.unwrap().allowed);
    ok_calls += 1;

    // 4. The primary's connection drops: the call that meets it fails, the
    // 20 concurrent calls after it share one lookup (and one connection).
    assert_eq!(kill_connections_that_ran(master, "tk.ratelimit").await, 1);
    let err = limiter.check(key, &huge(), 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(sentinel.master_addr(), None);
    lookups.since_last().await;
    let quota = huge();
    let calls = (0..20).map(|_| limiter.check(key, &quota, 1));
    for result in join_all(calls).await {
        assert!(result.unwrap().allowed);
        ok_calls += 1;
    }
    assert_eq!(lookups.since_last().await, 1, "one lookup for 20 calls");
    assert_eq!(sentinel.master_addr(), Some(master.addr()));
    assert_eq!(
        admitted(master, key).await,
        ok_calls,
        "the failed call never ran"
    );

    // 5. The primary hangs; the call waiting on it times out (the request
    // reached it: it runs once the primary resumes).
    master.pause();
    let err = limiter.check(key, &huge(), 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(sentinel.master_addr(), None);
    group.wait_master_flagged_down(true).await;
    // Sentinel flags it down and has no replica to promote: 5 concurrent
    // calls get the transient error of one shared lookup.
    lookups.since_last().await;
    let calls = (0..5).map(|_| limiter.check(key, &quota, 1));
    for result in join_all(calls).await {
        let err = result.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }
    assert_eq!(lookups.since_last().await, 1, "one lookup for 5 calls");
    assert_eq!(sentinel.master_addr(), None);
    // Once the primary answers again Sentinel clears the flags and a later
    // call finds it. (Failed lookups may be spaced out: calls in between
    // get the last error without asking.)
    master.resume();
    let attempts = check_until_admitted(&limiter, key).await;
    ok_calls += 1;
    let asked = lookups.since_last().await;
    assert!(
        (1..=attempts).contains(&asked),
        "{asked} lookups for {attempts} calls"
    );
    assert_eq!(sentinel.master_addr(), Some(master.addr()));
    // The calls that failed without a primary ran nowhere; the timed-out
    // one ran once when the primary resumed.
    assert_eq!(admitted(master, key).await, ok_calls + 1);
}

/// After a *planned* failover (`SENTINEL FAILOVER`) the old primary keeps
/// accepting writes until Sentinel demotes it, some 8 to 11 s later, and
/// whatever it accepted meanwhile is lost. The connection watches
/// `+switch-master` on the Sentinels, so it moves to the new primary
/// without waiting for an error. Here Sentinel cannot demote the old
/// primary at all, so only the watch can move the client.
#[tokio::test]
async fn sentinel_a_planned_failover_moves_the_connection_while_the_old_primary_still_accepts_writes(
) {
    if skip_under_docker(SKIP) {
        return;
    }
    let group = SentinelGroup::start().await;
    let conn = connect(sentinel_config(&group, Duration::from_secs(5))).await;
    let sentinel = sentinel_of(&conn);
    let limiter = limiter(&conn, Duration::from_secs(5));
    let key = "rl:sentinel:planned";
    let (a, b) = (group.data_node(0), group.data_node(1));
    assert!(limiter.check(key, &huge(), 1).await.unwrap().allowed);
    assert_eq!(sentinel.master_addr(), Some(a.addr()));
    wait_for_sync(a, b).await;
    // Sentinel demotes with MULTI, SLAVEOF, …, CLIENT KILL, EXEC: refusing
    // SLAVEOF aborts all of it, so A stays a writable primary and keeps its
    // clients, the split brain of the first seconds after a planned
    // failover, for good.
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-slaveof", "-replicaof"])
        .query_async(&mut a.conn().await)
        .await
        .expect("ACL SETUSER");

    sentinel_failover(&group, 1).await;
    wait_for("the connection leaves A on +switch-master", || async {
        (sentinel.master_addr() != Some(a.addr())).then_some(())
    })
    .await;
    let on_a = a.command_stats("tk.ratelimit").await;
    let decision = limiter.check(key, &huge(), 1).await.unwrap();
    assert_eq!(sentinel.master_addr(), Some(b.addr()));
    assert_eq!(
        HUGE - decision.remaining,
        2,
        "ran on B, on the replicated state"
    );
    assert_eq!(
        delta(on_a, a.command_stats("tk.ratelimit").await),
        (0, 0),
        "nothing more reached A"
    );
    assert_eq!(
        a.info("replication").await["role"],
        "master",
        "A still takes writes: only the watch moved the client"
    );
}

/// `CLIENT LIST TYPE pubsub` on `server`: how many connections are
/// subscribed (on a Sentinel, only clients' watches: Sentinels subscribe on
/// the data nodes, not on each other).
async fn pubsub_clients(server: &Server) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg(&["LIST", "TYPE", "pubsub"])
        .query_async(&mut server.conn().await)
        .await
        .expect("CLIENT LIST");
    list.lines().filter(|line| !line.trim().is_empty()).count()
}

/// The watch holds one subscribed connection per Sentinel while any clone
/// of the connection lives, and closes them all when the last is dropped.
#[tokio::test]
async fn sentinel_watches_every_sentinel_until_the_last_clone_is_dropped() {
    if skip_under_docker(SKIP) {
        return;
    }
    let group = SentinelGroup::start().await;
    let conn = connect(sentinel_config(&group, Duration::from_secs(5))).await;
    let clone = conn.clone();
    for node in group.sentinels() {
        wait_for("one watch on each Sentinel", || async {
            (pubsub_clients(node).await == 1).then_some(())
        })
        .await;
    }
    drop(conn);
    assert!(
        limiter(&clone, WAIT)
            .check("rl:sentinel:watch", &huge(), 1)
            .await
            .unwrap()
            .allowed
    );
    for node in group.sentinels() {
        assert_eq!(pubsub_clients(node).await, 1, "a clone still watches");
    }
    drop(clone);
    for node in group.sentinels() {
        wait_for("the watches closed", || async {
            (pubsub_clients(node).await == 0).then_some(())
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

fn cluster_config(cluster: &Cluster) -> Config {
    Config::builder()
        .cluster_nodes(cluster.seed_addrs())
        .build()
        .expect("cluster config")
}

/// A key (made from `prefix` and a counter) whose slot is served by a
/// master `accept`s.
async fn key_where(cluster: &Cluster, prefix: &str, accept: impl Fn(usize) -> bool) -> String {
    for n in 0..1000 {
        let key = format!("{prefix}{{t{n}}}");
        if accept(cluster.master_of_key(&key).await) {
            return key;
        }
    }
    panic!("no key for {prefix} on the wanted master");
}

/// Behaviours 6 and 10: `TK.RATELIMIT.ALL numkeys key …` goes straight to
/// the master of its first key (not of `numkeys`), other `TK.*` commands to
/// the master of their first argument; `health::check` asks every primary
/// and sums their `INFO tk` counters.
#[tokio::test]
async fn cluster_routes_ratelimit_all_by_its_first_key_and_health_sums_every_primary() {
    if skip_under_docker(SKIP) {
        return;
    }
    let cluster = Cluster::start_with(3, 0).await;
    let conn = connect(cluster_config(&cluster)).await;
    assert_eq!(conn.topology(), Topology::Cluster);
    let limiter = limiter(&conn, WAIT);
    let masters = cluster.masters().await;
    // The owner of the slot of "1", the numkeys argument: routing by argv[1]
    // would send the call there, and it would answer MOVED (rejected_calls).
    let numkeys_owner = cluster.master_of_slot(key_slot(b"1")).await;
    let key = key_where(&cluster, "rl:", |m| m != numkeys_owner).await;
    let owner = cluster.master_of_key(&key).await;
    let all_args = ["TK.RATELIMIT.ALL", "1", key.as_str(), "10", "1h"];
    assert_eq!(
        refusal_of(cluster.node(numkeys_owner), &all_args).await,
        "MOVED",
        "the owner of the slot of \"1\" does not serve {key}"
    );
    let stats = |command: &'static str| {
        let cluster = &cluster;
        let masters = masters.clone();
        async move {
            let mut all = Vec::new();
            for m in masters {
                all.push((m, cluster.node(m).command_stats(command).await));
            }
            all
        }
    };

    let before = stats("tk.ratelimit.all").await;
    let all = limiter
        .check_all(&[(key.as_str(), huge())], 1)
        .await
        .unwrap();
    assert!(all.decision.allowed);
    for ((m, before), (_, after)) in before.into_iter().zip(stats("tk.ratelimit.all").await) {
        let expected = if m == owner { (1, 0) } else { (0, 0) };
        assert_eq!(
            delta(before, after),
            expected,
            "TK.RATELIMIT.ALL on master {m}"
        );
    }
    // TK.RATELIMIT key …: by argv[1], the key.
    let before = stats("tk.ratelimit").await;
    assert!(limiter.check(&key, &huge(), 1).await.unwrap().allowed);
    for ((m, before), (_, after)) in before.into_iter().zip(stats("tk.ratelimit").await) {
        let expected = if m == owner { (1, 0) } else { (0, 0) };
        assert_eq!(delta(before, after), expected, "TK.RATELIMIT on master {m}");
    }
    assert_eq!(admitted(cluster.node(owner), &key).await, 2);

    // Health: every primary gets different GCRA traffic (1, 2 and 3
    // checks), so only the sum of all three gives 6.
    for (i, &m) in masters.iter().enumerate() {
        let key = key_where(&cluster, "health:", |owner| owner == m).await;
        for _ in 0..=i {
            limiter
                .check(&key, &Quota::per_minute(100), 1)
                .await
                .unwrap();
        }
    }
    // Generous latency thresholds: a loaded test machine must not make a
    // healthy cluster look degraded.
    let options = HealthOptions {
        timeout: WAIT,
        degraded_latency: WAIT,
        ..HealthOptions::default()
    };
    let info_before = stats("info").await;
    let report = health::check(&conn, &options).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.problems);
    for ((m, before), (_, after)) in info_before.into_iter().zip(stats("info").await) {
        // Less the INFO commandstats that read `before`.
        assert_eq!(after.calls - before.calls - 1, 1, "INFO sent to master {m}");
    }
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    let mut versions = Vec::new();
    for &m in &masters {
        for (field, value) in cluster.node(m).info("tk").await {
            let (Some(name), Ok(value)) = (field.strip_prefix("tk_"), value.parse::<u64>()) else {
                continue;
            };
            if name == "version" {
                versions.push(value);
            } else {
                *expected.entry(name.to_owned()).or_default() += value;
            }
        }
    }
    assert_eq!(versions.len(), 3, "the module on every primary");
    assert_eq!(report.module_version, versions.iter().copied().min());
    expected.insert("version".to_owned(), report.module_version.unwrap());
    assert_eq!(report.tk_counters, expected, "summed over the primaries");
    assert_eq!(report.tk_counters["ratelimit_gcra_calls"], 1 + 2 + 3);
    assert_eq!(report.tk_counters["ratelimit_all_calls"], 1);
}

/// Behaviour 9: during a migration the old owner answers `ASK` for a key
/// that has moved, and the client sends it to the new owner after `ASKING`;
/// after the migration the old owner answers `MOVED` and the client sends
/// the command straight to the node it names. Each check runs once, on the
/// moved state.
#[tokio::test]
async fn cluster_follows_ask_during_a_migration_and_moved_after_it() {
    if skip_under_docker(SKIP) {
        return;
    }
    let cluster = Cluster::start_with(3, 0).await;
    let conn = connect(cluster_config(&cluster)).await;
    let limiter = limiter(&conn, WAIT);
    let key = "rl:{ask}:k";
    let slot = key_slot(key.as_bytes());
    // Also loads the client's slot map: the slot is on `from`.
    assert!(limiter.check(key, &huge(), 1).await.unwrap().allowed);
    let from = cluster.master_of_slot(slot).await;
    let to = cluster.other_master(from).await;

    // ASK: the slot is migrating and the key is already on `to`.
    assert_eq!(cluster.begin_slot_migration(slot, to).await, from);
    cluster.migrate_keys(from, to, &[key]).await;
    let check_args = ["TK.RATELIMIT", key, "10", "1h"];
    assert_eq!(refusal_of(cluster.node(from), &check_args).await, "ASK");
    let (from_before, to_before) = (
        cluster.node(from).command_stats("tk.ratelimit").await,
        cluster.node(to).command_stats("tk.ratelimit").await,
    );
    let asking_before = cluster.node(to).command_stats("asking").await.calls;
    let decision = limiter.check(key, &huge(), 1).await.unwrap();
    assert_eq!(HUGE - decision.remaining, 2, "ran on the moved state");
    assert_eq!(
        delta(
            from_before,
            cluster.node(from).command_stats("tk.ratelimit").await
        ),
        (0, 1),
        "refused with ASK on the old owner"
    );
    assert_eq!(
        delta(
            to_before,
            cluster.node(to).command_stats("tk.ratelimit").await
        ),
        (1, 0),
        "ran on the new owner"
    );
    assert_eq!(
        cluster.node(to).command_stats("asking").await.calls,
        asking_before + 1,
        "after ASKING"
    );

    // MOVED: the migration is over; the client's map still names `from`.
    cluster.finish_slot_migration(slot, from, to).await;
    assert_eq!(refusal_of(cluster.node(from), &check_args).await, "MOVED");
    let (from_before, to_before) = (
        cluster.node(from).command_stats("tk.ratelimit").await,
        cluster.node(to).command_stats("tk.ratelimit").await,
    );
    let decision = limiter.check(key, &huge(), 1).await.unwrap();
    assert_eq!(HUGE - decision.remaining, 3);
    let (ran, refused) = delta(
        from_before,
        cluster.node(from).command_stats("tk.ratelimit").await,
    );
    assert_eq!(ran, 0, "nothing ran on the old owner");
    // Followed at once to the node MOVED named, not resent by a slot map
    // that may still be stale.
    assert_eq!(refused, 1, "the old owner answered MOVED once");
    assert_eq!(
        delta(
            to_before,
            cluster.node(to).command_stats("tk.ratelimit").await
        ),
        (1, 0),
        "ran once on the new owner"
    );
    assert_eq!(admitted(cluster.node(to), key).await, 3);
    // (A key lookup on `from` would answer MOVED: count the slot's keys.)
    let left_on_from: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query_async(&mut cluster.node_conn(from).await)
        .await
        .unwrap();
    assert_eq!(left_on_from, 0);
}

/// Behaviour 7: `TRYAGAIN` (a multi-key call while its keys are split by a
/// migration), `CLUSTERDOWN` (the owner stopped serving the slot) and
/// `NOREPLICAS` (too few replicas in sync) ran nothing, so the client sends
/// the call again, with backoff, until it runs: once.
#[tokio::test]
async fn cluster_sends_tryagain_clusterdown_and_noreplicas_refusals_again_until_the_call_runs_once()
{
    if skip_under_docker(SKIP) {
        return;
    }
    let cluster = Cluster::start_with(3, 0).await;
    let conn = connect(cluster_config(&cluster)).await;
    // The client sends refusals again for about 4.8 s; the default 3 s
    // per-call timeout would end the call first.
    let limiter = limiter(&conn, WAIT);

    // TRYAGAIN: two keys of one slot, one of them migrated.
    let (a, b) = ("rl:{split}:a", "rl:{split}:b");
    let slot = key_slot(a.as_bytes());
    let limits = [(a, huge()), (b, huge())];
    assert!(
        limiter
            .check_all(&limits, 1)
            .await
            .unwrap()
            .decision
            .allowed
    );
    let from = cluster.master_of_slot(slot).await;
    let to = cluster.other_master(from).await;
    assert_eq!(cluster.begin_slot_migration(slot, to).await, from);
    cluster.migrate_keys(from, to, &[a]).await;
    let all_args = ["TK.RATELIMIT.ALL", "2", a, b, "10", "1h", "10", "1h"];
    assert_eq!(refusal_of(cluster.node(from), &all_args).await, "TRYAGAIN");
    let before = cluster.node(from).command_stats("tk.ratelimit.all").await;
    let call = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.check_all(&limits, 1).await }
    });
    wait_for("the old owner answered TRYAGAIN", || async {
        let now = cluster.node(from).command_stats("tk.ratelimit.all").await;
        (now.rejected_calls > before.rejected_calls).then_some(())
    })
    .await;
    // Finish the migration while the client keeps sending the call again.
    cluster.migrate_keys(from, to, &[b]).await;
    cluster.finish_slot_migration(slot, from, to).await;
    let all = call.await.unwrap().unwrap();
    assert!(all.decision.allowed);
    let (ran, _) = delta(
        before,
        cluster.node(from).command_stats("tk.ratelimit.all").await,
    );
    assert_eq!(ran, 0, "nothing ran on the old owner");
    assert_eq!(
        cluster
            .node(to)
            .command_stats("tk.ratelimit.all")
            .await
            .calls,
        1
    );
    assert_eq!(admitted(cluster.node(to), a).await, 2, "ran once");
    assert_eq!(admitted(cluster.node(to), b).await, 2, "ran once");

    // CLUSTERDOWN: the owner of a slot stops serving it; with
    // cluster-require-full-coverage (the default) it refuses every call.
    let key = "rl:{down}:k";
    let slot = key_slot(key.as_bytes());
    assert!(limiter.check(key, &huge(), 1).await.unwrap().allowed);
    let owner = cluster.master_of_slot(slot).await;
    let admin = cluster.node_conn(owner).await;
    cluster_slots(&admin, "DELSLOTS", slot).await;
    let lift = cluster_slots(&admin, "ADDSLOTS", slot);
    check_runs_once_after_refusals(&cluster, owner, &limiter, key, "CLUSTERDOWN", lift).await;
    assert_eq!(admitted(cluster.node(owner), key).await, 2);

    // NOREPLICAS: the owner requires a replica in sync (it has none) and
    // refuses writes until that requirement is dropped.
    set_min_replicas_to_write(&admin, "1").await;
    let lift = set_min_replicas_to_write(&admin, "0");
    check_runs_once_after_refusals(&cluster, owner, &limiter, key, "NOREPLICAS", lift).await;
    assert_eq!(admitted(cluster.node(owner), key).await, 3);
}

/// With master `owner` refusing checks of `key` with `code` (shown by
/// sending one straight to it): a check through `limiter` is refused and
/// sent again; `lift` ends the refusal after the first one, and then the
/// check runs exactly once.
async fn check_runs_once_after_refusals(
    cluster: &Cluster,
    owner: usize,
    limiter: &RateLimiter<Connection>,
    key: &'static str,
    code: &str,
    lift: impl Future<Output = ()>,
) {
    let node = cluster.node(owner);
    assert_eq!(
        refusal_of(node, &["TK.RATELIMIT", key, "10", "1h"]).await,
        code
    );
    let before = node.command_stats("tk.ratelimit").await;
    let call = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.check(key, &huge(), 1).await }
    });
    wait_for(&format!("the owner answered {code}"), || async {
        let now = node.command_stats("tk.ratelimit").await;
        (now.rejected_calls > before.rejected_calls).then_some(())
    })
    .await;
    lift.await;
    assert!(call.await.unwrap().unwrap().allowed);
    let (ran, refused) = delta(before, node.command_stats("tk.ratelimit").await);
    assert_eq!(ran, 1, "ran once, after {refused} refusals");
}

/// `CLUSTER <DELSLOTS|ADDSLOTS> <slot>` on the node behind `admin`.
async fn cluster_slots(admin: &Conn, subcommand: &str, slot: u16) {
    let () = redis::cmd("CLUSTER")
        .arg(subcommand)
        .arg(slot)
        .query_async(&mut admin.clone())
        .await
        .unwrap_or_else(|e| panic!("CLUSTER {subcommand} {slot}: {e}"));
}

/// `CONFIG SET min-replicas-to-write <count>` on the node behind `admin`.
async fn set_min_replicas_to_write(admin: &Conn, count: &str) {
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "min-replicas-to-write", count])
        .query_async(&mut admin.clone())
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET min-replicas-to-write {count}: {e}"));
}

/// Behaviour 8: a call whose connection drops before the reply (the master
/// hangs, then crashes with the command unanswered) fails with a transient
/// error and is not sent again: after the replica's promotion the key
/// shows it never ran.
#[tokio::test]
async fn cluster_never_resends_a_call_whose_connection_dropped() {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut cluster = Cluster::start().await;
    let config = Config::builder()
        .cluster_nodes(cluster.seed_addrs())
        .read_timeout(WAIT)
        .build()
        .expect("cluster config");
    let conn = connect(config).await;
    let limiter = limiter(&conn, WAIT);
    let key = "rl:{dropped}:k";
    let slot = key_slot(key.as_bytes());
    assert!(limiter.check(key, &huge(), 1).await.unwrap().allowed);
    let master = cluster.master_of_slot(slot).await;
    let replica = cluster.replicas_of(master).await[0];
    wait_for_sync(cluster.node(master), cluster.node(replica)).await;

    cluster.node(master).pause();
    let call = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.check(key, &huge(), 1).await }
    });
    // Give the client time to write the command; the paused master cannot
    // answer it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "{:?}", call.await);
    cluster.kill(master);
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    let promoted = cluster.wait_for_failover(master, slot).await;
    assert_eq!(promoted, replica);
    assert_eq!(
        admitted(cluster.node(promoted), key).await,
        1,
        "not sent again"
    );
    // The client finds the new master by itself; failed attempts ran nowhere.
    check_until_admitted(&limiter, key).await;
    assert_eq!(admitted(cluster.node(promoted), key).await, 2);
}

// ---------------------------------------------------------------------------
// Pub/sub through `Config::subscribe`
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Chat {
    text: String,
}

fn chat(text: &str) -> Chat {
    Chat {
        text: text.to_owned(),
    }
}

/// The next item of `sub`, failing the test after [`WAIT`].
async fn next_event(sub: &mut Subscription<Chat>) -> Event<Chat> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no event within WAIT")
        .expect("the subscription ended")
        .expect("an undecodable message")
}

/// Publishes `text` in conversation `c` through `node` and expects `sub`,
/// whose subscription is confirmed, to receive it.
async fn expect_delivery(node: &Server, sub: &mut Subscription<Chat>, text: &str) {
    Publisher::new(node.conn().await)
        .publish_message("c", &chat(text))
        .await
        .expect("PUBLISH");
    match next_event(sub).await {
        Event::Message { payload, .. } => assert_eq!(payload, chat(text)),
        other => panic!("expected the message {text:?}, got {other:?}"),
    }
}

/// `PUBSUB NUMSUB` of conversation `c` on `server`: how many connections
/// subscribe to it there (Sentinels' own subscriptions are not counted).
async fn subscribers(server: &Server) -> i64 {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg(&["NUMSUB", "tk:messages:c"])
        .query_async(&mut server.conn().await)
        .await
        .expect("PUBSUB NUMSUB");
    counts[0].1
}

/// On a cluster the subscription uses the first seed node; when that node
/// dies it moves on to the next one (classic pub/sub is cluster-wide, so
/// any node will do) and messages published on any node reach it again.
#[tokio::test]
async fn cluster_subscription_moves_to_the_next_seed_node_when_its_node_dies() {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut cluster = Cluster::start_with(3, 0).await;
    let options = SubscribeOptions::default().timeout(Duration::from_secs(1));
    let mut sub: Subscription<Chat> = cluster_config(&cluster)
        .subscribe_with(vec![Channel::messages("c")], options)
        .await
        .unwrap();
    assert_eq!(subscribers(cluster.node(0)).await, 1);
    // Published on another node: the cluster bus carries it over.
    expect_delivery(cluster.node(2), &mut sub, "before").await;

    cluster.kill(0);
    match next_event(&mut sub).await {
        Event::Reconnected { .. } => {}
        other => panic!("expected Reconnected, got {other:?}"),
    }
    assert_eq!(subscribers(cluster.node(1)).await, 1);
    expect_delivery(cluster.node(2), &mut sub, "after").await;
}

/// With Sentinel the subscription is on the primary Sentinel names, and
/// after that primary dies and a replica is promoted it subscribes on the
/// new primary, asking Sentinel again.
#[tokio::test]
async fn sentinel_subscription_follows_the_failover_to_the_new_primary() {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut group = SentinelGroup::start().await;
    let primary = group.master().await;
    let options = SubscribeOptions::default().timeout(Duration::from_secs(1));
    let mut sub: Subscription<Chat> = sentinel_config(&group, Duration::from_secs(1))
        .subscribe_with(vec![Channel::messages("c")], options)
        .await
        .unwrap();
    assert_eq!(subscribers(group.data_node(primary)).await, 1);
    expect_delivery(group.data_node(primary), &mut sub, "before").await;

    group.kill(primary);
    let promoted = group.wait_for_failover(primary).await;
    match next_event(&mut sub).await {
        Event::Reconnected { .. } => {}
        other => panic!("expected Reconnected, got {other:?}"),
    }
    assert_eq!(subscribers(group.data_node(promoted)).await, 1);
    expect_delivery(group.data_node(promoted), &mut sub, "after").await;
}
