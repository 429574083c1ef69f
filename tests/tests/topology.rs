//! Redis Cluster and Sentinel, for real: key layout, CROSSSLOT, resharding
//! under load, failover under load with `WAIT 1` durability, and a
//! promoted replica continuing with exactly the master's state.
//!
//! The rate-limit, session and cache suites also run on a cluster (their
//! `cluster::` tests); this file covers what only multi-node topologies have.
//! Every topology runs as local processes, so everything here skips under
//! the docker backend. How long clients saw errors during a failover is
//! printed and written to `target/test-reports/` (see [`report`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::Value;
use serde_json::json;
use tk_redis::cache::{entry_key, generations_key, index_key as cache_index_key, NO_QUERY};
use tk_redis::session::{index_key, session_key};
use tk_redis::{
    Cache, Config, Connection, FailurePolicy, Quota, RateLimiter, RequestIdentity, SessionStore,
    SessionToken,
};
use tk_redis_tests::harness::{
    commands_processed, debug_digest_value, skip_under_docker, try_info_section, wait_for_sync,
    workspace_dir,
};
use tk_redis_tests::topology::{key_slot, Cluster, SentinelGroup, SENTINEL_MASTER_NAME};
use tk_redis_tests::{module_mode, skip_in_functions_mode, Conn, Flavor};

const SKIP: &str = "cluster and sentinel topologies run local redis-server processes";
/// Per-call timeout of the workload's clients: a call to a dead master fails
/// after this long instead of hanging.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// `WAIT 1 <ms>` after each acknowledged write. While no replica is online
/// (a revived node still syncing) WAIT blocks this long, so it must stay
/// well under [`CALL_TIMEOUT`]: otherwise the client's own response timeout
/// fires first and the test counts a healthy master as an outage.
const WAIT_TIMEOUT_MS: u64 = 100;
/// A limit no workload reaches: every check is admitted, so the sliding
/// log's length counts exactly the admitted checks still stored.
const HUGE_LIMIT: &str = "1000000000";

type Data = serde_json::Value;

fn cluster_config(cluster: &Cluster) -> Config {
    Config::builder()
        .cluster_nodes(cluster.seed_addrs())
        .read_timeout(CALL_TIMEOUT)
        .build()
        .expect("cluster config")
}

fn sentinel_config(group: &SentinelGroup) -> Config {
    Config::builder()
        .sentinel(group.sentinel_addrs(), SENTINEL_MASTER_NAME)
        .read_timeout(CALL_TIMEOUT)
        .build()
        .expect("sentinel config")
}

/// A client connection; in functions mode its raw `TK.*` commands go out
/// as `FCALL`s (tests/src/mode.rs).
async fn connect(config: &Config) -> Conn<Connection> {
    let conn = config
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect with {config:?}: {e}"));
    Conn::new(conn, !module_mode())
}

/// The error a raw command got, as `"<CODE> <message>"`.
async fn error_of(conn: &mut impl ConnectionLike, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    match cmd.query_async::<Value>(conn).await {
        Ok(value) => panic!("{args:?} should fail, replied {value:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

/// A well-formed session token of `user` (what `SessionStore::create` hands out).
fn token_for(user: &str) -> SessionToken {
    format!("{}.{:032x}", tk_redis::cache::user_tag(user), 7)
        .parse()
        .expect("token")
}

/// Writes `text` to `target/test-reports/<name>.txt` and prints it, so the
/// numbers reach the test log and `scripts/test`'s summary.
fn report(name: &str, text: &str) {
    let dir = workspace_dir().join("target").join("test-reports");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), text);
    eprintln!("--- report {name} ---\n{text}");
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_cluster_has_three_masters_with_a_replica_each_and_the_module_everywhere() {
    if skip_under_docker(SKIP) || skip_in_functions_mode("MODULE LIST is the module's") {
        return;
    }
    let cluster = Cluster::start().await;
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3);
    for master in masters {
        assert_eq!(cluster.replicas_of(master).await.len(), 1);
    }
    for index in 0..cluster.nodes().len() {
        let mut conn = cluster.node_conn(index).await;
        let modules: Vec<Vec<Value>> = redis::cmd("MODULE")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        // Redis 8 loads built-in modules (`vectorset`, no path) beside ours;
        // other servers load only ours.
        let flavor = Flavor::of(&mut conn).await;
        let field = |module: &[Value], name: &str| -> String {
            module
                .chunks(2)
                .find(|pair| matches!(&pair[0], Value::BulkString(k) if k == name.as_bytes()))
                .and_then(|pair| match &pair[1] {
                    Value::BulkString(v) => Some(String::from_utf8_lossy(v).into_owned()),
                    Value::SimpleString(v) => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let (ours, others): (Vec<_>, Vec<_>) =
            modules.iter().partition(|m| field(m, "name") == "tk");
        assert_eq!(ours.len(), 1, "node {index}: {modules:?}");
        assert!(
            !field(ours[0], "path").is_empty(),
            "node {index}: {modules:?}"
        );
        if flavor.ships_builtin_modules() {
            assert!(
                others.iter().all(|m| field(m, "path").is_empty()),
                "node {index} ({flavor:?}): only built-in modules beside tk: {modules:?}"
            );
        } else {
            assert!(others.is_empty(), "node {index} ({flavor:?}): {modules:?}");
        }
    }
}

#[tokio::test]
async fn the_sentinel_group_watches_a_master_and_its_replica() {
    if skip_under_docker(SKIP) {
        return;
    }
    let group = SentinelGroup::start().await;
    assert_eq!(group.master().await, 0);
    // The client finds the master through the Sentinels.
    let conn = connect(&sentinel_config(&group)).await;
    let limiter = RateLimiter::new(conn);
    let decision = limiter
        .check("rl:sentinel", &Quota::per_minute(5), 1)
        .await
        .unwrap();
    assert!(decision.allowed && !decision.fallback);
    let mut master = group.data_node(0).conn().await;
    let stored: bool = redis::cmd("EXISTS")
        .arg("rl:sentinel")
        .query_async(&mut master)
        .await
        .unwrap();
    assert!(stored, "the write went to the master Sentinel names");
}

// ---------------------------------------------------------------------------
// Key layout
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_users_session_index_and_cache_keys_share_one_slot() {
    if skip_under_docker(SKIP) {
        return;
    }
    // The rule, for many users.
    for n in 0..500 {
        let user = format!("user-{n}");
        let token = token_for(&user);
        let identity = RequestIdentity::for_user(&user, "GET", "/feed", NO_QUERY);
        let keys = [
            session_key(&token),
            index_key(&user),
            generations_key(&user),
            cache_index_key(&user),
            entry_key(&user, "feed", &identity).unwrap(),
        ];
        let slot = key_slot(keys[0].as_bytes());
        for key in &keys {
            assert_eq!(key_slot(key.as_bytes()), slot, "{user}: {key}");
        }
    }

    // On a real cluster: everything one user's requests write lands on the
    // one master serving that slot, and the server agrees on the slot.
    let cluster = Cluster::start().await;
    let conn = connect(&cluster_config(&cluster)).await;
    let sessions: SessionStore<Data, Conn<Connection>> = SessionStore::new(conn.clone());
    let cache = Cache::new(conn.clone());
    let user = "alice";
    let (token, _) = sessions.create(user, &json!({"n": 1})).await.unwrap();
    let identity = RequestIdentity::for_user(user, "GET", "/feed", NO_QUERY);
    let tk_redis::Lookup::Miss(generation) =
        cache.get::<Data>(user, "feed", &identity).await.unwrap()
    else {
        panic!("an empty cache hit");
    };
    let stored = cache
        .set(
            user,
            "feed",
            &identity,
            &json!([]),
            Duration::from_secs(60),
            Some(&generation),
        )
        .await
        .unwrap();
    assert!(stored);
    let keys = [
        session_key(&token),
        index_key(user),
        generations_key(user),
        cache_index_key(user),
        entry_key(user, "feed", &identity).unwrap(),
    ];
    let owner = cluster.master_of_key(&keys[0]).await;
    let mut node = cluster.node_conn(owner).await;
    for key in &keys {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut node)
            .await
            .unwrap();
        assert_eq!(slot, key_slot(keys[0].as_bytes()), "{key}");
        // The generations key only exists after an invalidation.
        let mut routed = conn.clone();
        let anywhere: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut routed)
            .await
            .unwrap();
        let here: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut node)
            .await
            .unwrap();
        assert_eq!(here, anywhere, "{key} is not on the master of its slot");
        assert!(here || key == &keys[2], "{key} was not written");
    }
}

#[tokio::test]
async fn a_tk_call_whose_keys_span_slots_gets_crossslot_and_writes_nothing() {
    if skip_under_docker(SKIP) {
        return;
    }
    let cluster = Cluster::start().await;
    // Keys of two users: different tags, different slots.
    let (a, b) = ("tk:rl:{alice}:x", "tk:rl:{bob}:x");
    assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
    let alice = token_for("alice");
    let (a_session, b_index) = (session_key(&alice), index_key("bob"));
    let cross_slot_calls: [&[&str]; 6] = [
        &["TK.RATELIMIT.ALL", "2", a, b, "5", "1m", "5", "1h"],
        &["TK.RATELIMIT.RESET", a, b],
        &["TK.SESSION.CREATE", &a_session, &b_index, "bob", "1h", "{}"],
        &["TK.SESSION.DESTROY", &a_session, &b_index],
        &[
            "TK.CACHE.SET",
            "tk:c:{alice}:feed:00",
            "tk:cg:{bob}",
            "tk:ci:{bob}",
            "feed",
            "60s",
            "v",
        ],
        &["TK.LOCK.ACQUIRE", "lock:{alice}", "fence:{bob}", "t", "10s"],
    ];
    // Straight to a node (no redirections) and through the client's
    // cluster connection: Redis refuses before the module runs.
    let mut client_conn = connect(&cluster_config(&cluster)).await;
    for args in cross_slot_calls {
        for index in cluster.masters().await {
            let mut node = cluster.node_conn(index).await;
            let error = error_of(&mut node, args).await;
            assert!(
                error.starts_with("CROSSSLOT"),
                "{args:?} on node {index}: {error}"
            );
        }
        let error = error_of(&mut client_conn, args).await;
        assert!(
            error.starts_with("CROSSSLOT"),
            "{args:?} via the client: {error}"
        );
    }
    let keys: i64 = redis::cmd("DBSIZE")
        .query_async(&mut client_conn)
        .await
        .unwrap();
    assert_eq!(keys, 0, "a refused call wrote something");

    // The same calls with one hash tag work.
    let ok: Vec<i64> = redis::cmd("TK.RATELIMIT.ALL")
        .arg(&[
            "2",
            "tk:rl:{alice}:x",
            "tk:rl:{alice}:y",
            "5",
            "1m",
            "5",
            "1h",
        ])
        .query_async(&mut client_conn)
        .await
        .unwrap();
    assert_eq!(ok[0], 1);
}

// ---------------------------------------------------------------------------
// Resharding
// ---------------------------------------------------------------------------

/// What a workload loop saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<Instant>,
    last_error: Option<Instant>,
    /// Calls that succeeded since the last error.
    ok_since_error: u64,
    /// The first few error messages.
    samples: Vec<String>,
    /// The last few error messages.
    last_samples: std::collections::VecDeque<String>,
}

impl Tally {
    fn ok(&mut self) {
        self.ok += 1;
        self.ok_since_error += 1;
    }

    fn error(&mut self, what: String) {
        let now = Instant::now();
        self.errors += 1;
        self.first_error.get_or_insert(now);
        self.last_error = Some(now);
        self.ok_since_error = 0;
        if self.samples.len() < 5 {
            self.samples.push(what.clone());
        }
        if self.last_samples.len() == 5 {
            self.last_samples.pop_front();
        }
        self.last_samples.push_back(what);
    }

    fn error_window(&self) -> Duration {
        match (self.first_error, self.last_error) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_users_slot_under_load_keeps_state_and_the_client_follows() {
    if skip_under_docker(SKIP) {
        return;
    }
    let cluster = Cluster::start().await;
    // Default timeouts: no node dies here, so every call must succeed,
    // however loaded the machine.
    let config = Config::builder()
        .cluster_nodes(cluster.seed_addrs())
        .build()
        .expect("cluster config");
    let conn = connect(&config).await;
    let sessions: SessionStore<Data, Conn<Connection>> = SessionStore::new(conn.clone());
    let limiter = RateLimiter::new(conn.clone()).with_failure_policy(FailurePolicy::Error);
    let user = "carol";
    let (token, _) = sessions.create(user, &json!({"n": 0})).await.unwrap();
    let skey = session_key(&token);
    let slot = key_slot(skey.as_bytes());
    // The user's rate limit shares the user's tag, so it moves with the slot.
    let tag = tk_redis::cache::user_tag(user);
    let rl_key = format!("tk:rl:{{{tag}}}:api");
    assert_eq!(key_slot(rl_key.as_bytes()), slot);
    let quota = Quota::per_hour(1_000_000_000).algorithm(tk_redis::Algorithm::Sliding);

    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        let (sessions, limiter, token, rl_key) = (
            sessions.clone(),
            limiter.clone(),
            token.clone(),
            rl_key.clone(),
        );
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut admitted = 0u64;
            let mut last_version = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match sessions.touch(&token).await {
                    Ok(Some(_)) => tally.ok(),
                    Ok(None) => panic!("the session vanished during resharding"),
                    Err(e) => tally.error(format!("touch: {e}")),
                }
                match sessions.update(&token, &json!({ "n": n }), None).await {
                    Ok(tk_redis::UpdateOutcome::Updated { version }) => {
                        last_version = version;
                        tally.ok();
                    }
                    Ok(other) => panic!("update during resharding: {other:?}"),
                    Err(e) => tally.error(format!("update: {e}")),
                }
                match limiter.check(&rl_key, &quota, 1).await {
                    Ok(decision) if decision.allowed => {
                        admitted += 1;
                        tally.ok();
                    }
                    Ok(decision) => panic!("refused under a huge limit: {decision:?}"),
                    Err(e) => tally.error(format!("ratelimit: {e}")),
                }
            }
            (tally, admitted, last_version)
        })
    };

    // Let the workload run, move the slot, let it run again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = cluster.master_of_slot(slot).await;
    let to = cluster.other_master(from).await;
    let moved = cluster.migrate_slot(slot, to).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (tally, admitted, last_version) = worker.await.unwrap();

    assert!(
        moved >= 3,
        "the session, its index and the rate limit moved ({moved} keys)"
    );
    assert_eq!(cluster.master_of_slot(slot).await, to);
    assert_eq!(
        tally.errors, 0,
        "the client follows MOVED/ASK by itself: {tally:?}"
    );
    assert!(tally.ok > 30, "the workload ran throughout: {tally:?}");
    // State is intact, on the new master.
    let mut target = cluster.node_conn(to).await;
    let session: Option<Vec<Value>> = redis::cmd("TK.SESSION.GET")
        .arg(&skey)
        .query_async(&mut target)
        .await
        .unwrap();
    let session = session.expect("the session is on the new master");
    assert_eq!(session[6], Value::Int(last_version as i64));
    let peek: Vec<i64> = redis::cmd("TK.RATELIMIT.PEEK")
        .arg(&[
            rl_key.as_str(),
            HUGE_LIMIT,
            "1h",
            "ALGO",
            "SLIDING",
            "COST",
            "0",
        ])
        .query_async(&mut target)
        .await
        .unwrap();
    let counted = HUGE_LIMIT.parse::<i64>().unwrap() - peek[2];
    assert_eq!(
        counted, admitted as i64,
        "every admitted check is counted once"
    );
    let listed = sessions.list(user).await.unwrap();
    assert_eq!(listed.len(), 1);
    // And the client keeps working against the new owner.
    assert!(sessions.touch(&token).await.unwrap().is_some());
}

// ---------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------

/// The failover workload's durable record: what `WAIT 1` acknowledged.
#[derive(Debug, Default)]
struct Durable {
    /// Admitted sliding-log checks acknowledged by a replica.
    acked_admits: u64,
    /// Every check sent (admitted or not, acknowledged or not): an upper bound.
    sent_admits: u64,
    /// The highest `n` written to the session and acknowledged.
    acked_n: u64,
}

/// Sends `cmd` followed by `WAIT 1 <ms>` in one pipeline (same connection,
/// in order, so `WAIT` covers exactly this write) and returns the command's
/// reply if a replica acknowledged it.
async fn write_and_wait(
    conn: &mut Conn<Connection>,
    cmd: redis::Cmd,
) -> Result<Option<Value>, String> {
    let mut pipe = redis::pipe();
    pipe.add_command(cmd)
        .cmd("WAIT")
        .arg(1)
        .arg(WAIT_TIMEOUT_MS);
    let replies: Vec<Value> = tokio::time::timeout(Duration::from_secs(2), pipe.query_async(conn))
        .await
        .map_err(|_| "no reply within the test's 2 s guard".to_string())?
        .map_err(|e| e.to_string())?;
    match replies.as_slice() {
        [reply, Value::Int(acked)] if *acked >= 1 => Ok(Some(reply.clone())),
        [_, Value::Int(_)] => Ok(None),
        other => Err(format!("unexpected pipeline reply {other:?}")),
    }
}

struct Workload {
    stop: Arc<AtomicBool>,
    tally: Arc<std::sync::Mutex<Tally>>,
    handle: tokio::task::JoinHandle<Durable>,
}

/// Rate-limit checks and session touches through the typed client, plus
/// `WAIT 1`-acknowledged writes of a sliding log and the session's data,
/// until stopped.
fn start_workload(conn: Conn<Connection>, token: SessionToken, rl_key: String) -> Workload {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let shared = Arc::clone(&tally);
    let handle = tokio::spawn(async move {
        let record = |outcome: Result<(), String>| {
            let mut tally = shared.lock().expect("tally");
            match outcome {
                Ok(()) => tally.ok(),
                Err(what) => tally.error(what),
            }
        };
        let sessions: SessionStore<Data, Conn<Connection>> =
            SessionStore::new(conn.clone()).with_timeout(CALL_TIMEOUT);
        let limiter = RateLimiter::new(conn.clone())
            .with_failure_policy(FailurePolicy::Error)
            .with_timeout(CALL_TIMEOUT);
        let quota = Quota::per_minute(1_000_000);
        let skey = session_key(&token);
        let acked_key = format!("{rl_key}:acked");
        let mut raw = conn;
        let mut durable = Durable::default();
        let mut n = 0u64;
        while !flag.load(Ordering::Relaxed) {
            n += 1;
            match limiter.check(&rl_key, &quota, 1).await {
                Ok(_) => record(Ok(())),
                Err(e) => record(Err(format!("check: {e}"))),
            }
            match sessions.touch(&token).await {
                Ok(Some(_)) => record(Ok(())),
                Ok(None) => panic!("the session vanished"),
                Err(e) => record(Err(format!("touch: {e}"))),
            }
            let mut check = redis::cmd("TK.RATELIMIT");
            check.arg(&[acked_key.as_str(), HUGE_LIMIT, "1h", "ALGO", "SLIDING"]);
            durable.sent_admits += 1;
            match write_and_wait(&mut raw, check).await {
                Ok(Some(Value::Array(reply))) if reply.first() == Some(&Value::Int(1)) => {
                    durable.acked_admits += 1;
                    record(Ok(()));
                }
                Ok(Some(other)) => panic!("unexpected check reply {other:?}"),
                Ok(None) => record(Ok(())),
                Err(e) => record(Err(format!("acked check: {e}"))),
            }
            let mut set = redis::cmd("TK.SESSION.SET");
            set.arg(&skey).arg(json!({ "n": n }).to_string());
            match write_and_wait(&mut raw, set).await {
                Ok(Some(Value::Int(_))) => {
                    durable.acked_n = n;
                    record(Ok(()));
                }
                Ok(Some(other)) => panic!("unexpected SET reply {other:?}"),
                Ok(None) => record(Ok(())),
                Err(e) => record(Err(format!("acked set: {e}"))),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        durable
    });
    Workload {
        stop,
        tally,
        handle,
    }
}

impl Workload {
    /// Waits until the last `calls` calls all succeeded (the client has
    /// recovered by itself), at most 60 s.
    async fn wait_for_recovery(&self, calls: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let tally = self.tally.lock().expect("tally");
                if tally.ok_since_error >= calls {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the client did not recover within 60 s: {tally:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> (Tally, Durable) {
        self.stop.store(true, Ordering::Relaxed);
        let durable = self.handle.await.expect("workload task");
        let tally = std::mem::take(&mut *self.tally.lock().expect("tally"));
        (tally, durable)
    }
}

/// Checks on the new master that every acknowledged write is there.
async fn assert_durable(
    master: &mut impl ConnectionLike,
    durable: &Durable,
    skey: &str,
    rl_key: &str,
) {
    let acked_key = format!("{rl_key}:acked");
    let peek: Vec<i64> = redis::cmd("TK.RATELIMIT.PEEK")
        .arg(&[
            acked_key.as_str(),
            HUGE_LIMIT,
            "1h",
            "ALGO",
            "SLIDING",
            "COST",
            "0",
        ])
        .query_async(master)
        .await
        .unwrap();
    let counted = (HUGE_LIMIT.parse::<i64>().unwrap() - peek[2]) as u64;
    assert!(
        counted >= durable.acked_admits && counted <= durable.sent_admits,
        "the new master counts {counted} checks; {durable:?}"
    );
    let session: Option<Vec<Value>> = redis::cmd("TK.SESSION.GET")
        .arg(skey)
        .query_async(master)
        .await
        .unwrap();
    let session = session.expect("the session survived the failover");
    let Value::BulkString(data) = &session[1] else {
        panic!("session data {session:?}");
    };
    let n = serde_json::from_slice::<Data>(data).unwrap()["n"]
        .as_u64()
        .unwrap_or(0);
    assert!(n >= durable.acked_n, "session data n={n}; {durable:?}");
}

/// Writes a failover test's report: `heading` (topology, promotion), then
/// what the client saw and what survived.
fn report_failover(name: &str, heading: &str, tally: &Tally, durable: &Durable) {
    report(
        name,
        &format!(
            "{heading}\
             - the client saw errors for {window:.1?} ({errors} failed calls, {ok} ok)\n\
             - acknowledged by WAIT 1 and present on the new master: {admits} checks, \
             session data up to n={n}\n\
             - first errors: {samples:?}\n\
             - last errors: {last:?}\n",
            window = tally.error_window(),
            errors = tally.errors,
            ok = tally.ok,
            admits = durable.acked_admits,
            n = durable.acked_n,
            samples = tally.samples,
            last = tally.last_samples,
        ),
    );
}

/// Commands the group's Sentinels have processed so far, all together.
async fn sentinel_commands(group: &SentinelGroup) -> u64 {
    let mut total = 0;
    for sentinel in group.sentinels() {
        total += commands_processed(&mut sentinel.conn().await).await;
    }
    total
}

async fn wait_for_progress(workload: &Workload, what: &str) {
    // The workload reports nothing while running; a short fixed time of
    // traffic is enough, and nothing is asserted on its length.
    let _ = (workload, what);
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_keeps_every_acknowledged_write_and_the_client_recovers() {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster_config(&cluster)).await;
    let sessions: SessionStore<Data, Conn<Connection>> = SessionStore::new(conn.clone());
    let user = "dave";
    let (token, _) = sessions.create(user, &json!({"n": 0})).await.unwrap();
    let skey = session_key(&token);
    let slot = key_slot(skey.as_bytes());
    let rl_key = format!("tk:rl:{{{}}}:api", tk_redis::cache::user_tag(user));
    // The workload's session must be on the replica before the crash: it
    // was created without WAIT, and a replica that has just finished its
    // first sync may not stream yet (Valkey 8.1 waits for the replica's
    // first REPLCONF ACK, up to a second): killed then, the master took
    // the session with it and the workload saw it vanish.
    let old_master = cluster.master_of_slot(slot).await;
    let replica = cluster.replicas_of(old_master).await[0];
    wait_for_sync(cluster.node(old_master), cluster.node(replica)).await;

    let workload = start_workload(conn.clone(), token.clone(), rl_key.clone());
    wait_for_progress(&workload, "before the crash").await;
    let killed_at = Instant::now();
    cluster.kill(old_master);
    let new_master = cluster.wait_for_failover(old_master, slot).await;
    let promoted_after = killed_at.elapsed();
    // The old master rejoins as a replica, so WAIT 1 can be acknowledged again.
    cluster.revive(old_master).await;
    cluster.wait_healthy(3, 3).await;
    // The client recovers by itself: 100 calls in a row succeed again.
    workload.wait_for_recovery(100).await;
    let (tally, durable) = workload.finish().await;

    assert_ne!(new_master, old_master);
    assert!(
        durable.acked_admits > 0 && durable.acked_n > 0,
        "{durable:?}"
    );
    let mut master = cluster.node_conn(new_master).await;
    assert_durable(&mut master, &durable, &skey, &rl_key).await;
    report_failover(
        "cluster_failover",
        &format!(
            "Cluster failover (SIGKILL of the master of slot {slot}, cluster-node-timeout \
             {timeout} ms):\n\
             - replica promoted and cluster ok after {promoted_after:.1?}\n",
            timeout = tk_redis_tests::topology::CLUSTER_NODE_TIMEOUT_MS,
        ),
        &tally,
        &durable,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_every_acknowledged_write_and_the_client_recovers() {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut group = SentinelGroup::start().await;
    let conn = connect(&sentinel_config(&group)).await;
    let sessions: SessionStore<Data, Conn<Connection>> = SessionStore::new(conn.clone());
    let user = "erin";
    let (token, _) = sessions.create(user, &json!({"n": 0})).await.unwrap();
    let skey = session_key(&token);
    let rl_key = format!("tk:rl:{{{}}}:api", tk_redis::cache::user_tag(user));
    // As in the cluster test: the session is on the replica before the crash.
    wait_for_sync(group.data_node(0), group.data_node(1)).await;

    let workload = start_workload(conn.clone(), token.clone(), rl_key.clone());
    wait_for_progress(&workload, "before the crash").await;
    let old_master = group.master().await;
    let sentinel_commands_before = sentinel_commands(&group).await;
    let killed_at = Instant::now();
    group.kill(old_master);
    let new_master = group.wait_for_failover(old_master).await;
    let promoted_after = killed_at.elapsed();
    group.revive(old_master).await;
    wait_for_progress(&workload, "after the failover").await;
    // Sentinel reconfigures the revived node as a replica within a few
    // seconds; keep going until the workload's writes are acknowledged again.
    // (Sentinel disconnects the node's clients when it reconfigures it, so
    // each poll takes a fresh connection.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let linked = match group.data_node(old_master).try_conn().await {
            Ok(mut revived) => try_info_section(&mut revived, "replication")
                .await
                .is_ok_and(|info| info.get("master_link_status").map(String::as_str) == Some("up")),
            // Dropped while Sentinel reconfigures the node: poll again.
            Err(_) => false,
        };
        if linked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old master did not rejoin as a replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client recovers by itself: 100 calls in a row succeed again.
    workload.wait_for_recovery(100).await;
    let (tally, durable) = workload.finish().await;

    assert_ne!(new_master, old_master);
    assert!(
        durable.acked_admits > 0 && durable.acked_n > 0,
        "{durable:?}"
    );
    let mut master = group.data_node(new_master).conn().await;
    assert_durable(&mut master, &durable, &skey, &rl_key).await;
    let sentinel_commands = sentinel_commands(&group).await - sentinel_commands_before;
    report_failover(
        "sentinel_failover",
        &format!(
            "Sentinel failover (SIGKILL of the master, down-after-milliseconds {down} ms):\n\
             - Sentinels named the replica after {promoted_after:.1?}\n\
             - the 3 Sentinels processed {sentinel_commands} commands meanwhile (the \
             client's lookups, at most one per {interval:?} after a failed one, and \
             their own traffic)\n",
            down = tk_redis_tests::topology::SENTINEL_DOWN_AFTER_MS,
            interval = tk_redis::connection::SENTINEL_RETRY_INTERVAL,
        ),
        &tally,
        &durable,
    );
}

// ---------------------------------------------------------------------------
// Effect replication across a promotion
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_continues_with_exactly_the_masters_state() {
    if skip_under_docker(SKIP) {
        return;
    }
    let mut cluster = Cluster::start().await;
    let mut conn = connect(&cluster_config(&cluster)).await;
    let user = "frank";
    let sessions: SessionStore<Data, Conn<Connection>> = SessionStore::new(conn.clone());
    let (token, _) = sessions.create(user, &json!({"n": 1})).await.unwrap();
    let tag = tk_redis::cache::user_tag(user);
    let gcra = format!("tk:rl:{{{tag}}}:gcra");
    let sliding = format!("tk:rl:{{{tag}}}:sliding");
    let fixed = format!("tk:rl:{{{tag}}}:fixed");
    for (key, algo) in [(&gcra, "GCRA"), (&sliding, "SLIDING"), (&fixed, "FIXED")] {
        for _ in 0..3 {
            let _: Vec<i64> = redis::cmd("TK.RATELIMIT")
                .arg(&[key.as_str(), "10", "1h", "ALGO", algo])
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    sessions.touch(&token).await.unwrap();
    let keys = [
        gcra.clone(),
        sliding.clone(),
        fixed.clone(),
        session_key(&token),
        index_key(user),
    ];
    let slot = key_slot(keys[0].as_bytes());
    let master = cluster.master_of_slot(slot).await;
    let replica = cluster.replicas_of(master).await[0];
    // Every write has reached the replica (its offset caught up).
    wait_for_sync(cluster.node(master), cluster.node(replica)).await;
    let master_conn = cluster.node_conn(master).await;
    let state = |mut node: tk_redis_tests::Conn| {
        let keys = keys.clone();
        async move {
            let mut out = Vec::new();
            for key in &keys {
                let expiry: i64 = redis::cmd("PEXPIRETIME")
                    .arg(key)
                    .query_async(&mut node)
                    .await
                    .unwrap();
                out.push((
                    key.clone(),
                    debug_digest_value(&mut node, key).await,
                    expiry,
                ));
            }
            out
        }
    };
    let before = state(master_conn).await;
    let mut replica_conn = cluster.node_conn(replica).await;
    let () = redis::cmd("READONLY")
        .query_async(&mut replica_conn)
        .await
        .unwrap();
    let on_replica = state(replica_conn).await;
    assert_eq!(
        before, on_replica,
        "the replica holds the master's exact state"
    );
    for (key, _, expiry) in &before {
        assert!(*expiry > 0, "{key} has an absolute expiry");
    }

    cluster.kill(master);
    let promoted = cluster.wait_for_failover(master, slot).await;
    assert_eq!(promoted, replica);
    let after = state(cluster.node_conn(promoted).await).await;
    assert_eq!(
        after, before,
        "the promoted replica has exactly the master's state"
    );

    // It continues from that state: the next check of each algorithm
    // consumes from the same counters (3 of 10 used, 6 left after this one).
    // (A fresh client: the idle one's first call would fail on its broken
    // connection to the dead master, by design, since it is not resent.)
    let mut conn = connect(&cluster_config(&cluster)).await;
    let sessions: SessionStore<Data, Conn<Connection>> = SessionStore::new(conn.clone());
    for (key, algo) in [(&gcra, "GCRA"), (&sliding, "SLIDING"), (&fixed, "FIXED")] {
        let reply: Vec<i64> = redis::cmd("TK.RATELIMIT")
            .arg(&[key.as_str(), "10", "1h", "ALGO", algo])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(&reply[..3], &[1, 10, 6], "{algo} after the promotion");
    }
    let session = sessions.touch(&token).await.unwrap().expect("session");
    assert_eq!(session.data, json!({"n": 1}));
}
