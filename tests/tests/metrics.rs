//! What operators scrape: the client's counters through the `metrics`
//! facade, and the `INFO tk` fields through redis_exporter's script
//! (docker/prometheus/tk-info.lua), both against real servers.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tk_redis::cache::{RequestIdentity, NO_QUERY};
use tk_redis::config::Config;
use tk_redis::telemetry;
use tk_redis::{Cache, FailurePolicy, Lookup, Quota, RateLimiter, SessionStore, UpdateOutcome};
use tk_redis_tests::harness::{workspace_dir, Server};

/// Per-call timeout, and the connection's timeouts, once the server is gone.
const TIMEOUT: Duration = Duration::from_millis(300);

/// Every counter the recorder saw: `name{label=value,...}` → value.
fn counters(recorder: &DebuggingRecorder) -> BTreeMap<String, u64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let DebugValue::Counter(count) = value else {
                return None;
            };
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            Some((format!("{}{{{}}}", key.name(), labels.join(",")), count))
        })
        .collect()
}

#[test]
fn client_counters_reach_the_installed_recorder() {
    let recorder = DebuggingRecorder::new();
    // A recorder local to this thread, and a runtime on this thread only,
    // so that other tests running in parallel cannot add to the counts.
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(exercise());
    });
    let counters = counters(&recorder);
    let expected: BTreeMap<String, u64> = [
        ("tk_client_cache_hits_total{}", 1),
        ("tk_client_cache_misses_total{}", 1),
        ("tk_client_cache_errors_total{outcome=miss}", 1),
        ("tk_client_cache_errors_total{outcome=returned}", 1),
        ("tk_client_session_version_conflicts_total{}", 1),
        ("tk_client_ratelimit_fallbacks_total{policy=open}", 1),
        ("tk_client_ratelimit_fallbacks_total{policy=closed}", 1),
        ("tk_client_ratelimit_errors_total{}", 1),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    assert_eq!(counters, expected);
}

async fn exercise() {
    let server = Server::start().await;
    let config = Config::builder()
        .addr(server.addr())
        .dial_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .build()
        .unwrap();
    let manager = config.connect().await.unwrap();

    // Served by Redis: a miss, then a hit; a session update that lost.
    let cache = Cache::new(manager.clone()).with_timeout(TIMEOUT);
    let identity = RequestIdentity::for_user("alice", "GET", "/feed", NO_QUERY);
    let miss = cache
        .get::<String>("alice", "http", &identity)
        .await
        .unwrap();
    let Lookup::Miss(generation) = miss else {
        panic!("{miss:?}");
    };
    let stored = cache
        .set(
            "alice",
            "http",
            &identity,
            "feed",
            Duration::from_secs(3600),
            Some(&generation),
        )
        .await
        .unwrap();
    assert!(stored);
    let hit = cache
        .get::<String>("alice", "http", &identity)
        .await
        .unwrap();
    assert_eq!(hit, Lookup::Hit("feed".to_owned()));
    let sessions: SessionStore<String, _> = SessionStore::new(manager.clone());
    let (token, _) = sessions.create("alice", &"light".to_owned()).await.unwrap();
    let updated = sessions
        .update(&token, &"dark".to_owned(), Some(1))
        .await
        .unwrap();
    assert!(matches!(updated, UpdateOutcome::Updated { version: 2 }));
    let stale = sessions
        .update(&token, &"blue".to_owned(), Some(1))
        .await
        .unwrap();
    assert!(matches!(stale, UpdateOutcome::VersionMismatch));
    // A decision by Redis is not a fallback.
    let open = RateLimiter::new(manager.clone()).with_timeout(TIMEOUT);
    let quota = Quota::per_hour(10);
    assert!(!open.check("m:1", &quota, 1).await.unwrap().fallback);

    drop(server); // kills it: every call below fails with a transient error

    assert!(open.check("m:1", &quota, 1).await.unwrap().fallback);
    let closed = RateLimiter::new(manager.clone())
        .with_timeout(TIMEOUT)
        .with_failure_policy(FailurePolicy::FailClosed);
    assert!(closed.check("m:1", &quota, 1).await.unwrap().fallback);
    let error = RateLimiter::new(manager.clone())
        .with_timeout(TIMEOUT)
        .with_failure_policy(FailurePolicy::Error);
    assert!(error.check("m:1", &quota, 1).await.is_err());
    // get_or_compute absorbs the error as a miss (CacheErrorPolicy::Miss,
    // the default); get returns it.
    let computed: String = cache
        .get_or_compute(
            "alice",
            "http",
            &identity,
            Duration::from_secs(60),
            || async { Ok::<_, std::convert::Infallible>("computed".to_owned()) },
        )
        .await
        .unwrap();
    assert_eq!(computed, "computed");
    assert!(cache
        .get::<String>("alice", "http", &identity)
        .await
        .is_err());
}

#[test]
fn describing_the_counters_counts_nothing() {
    let recorder = DebuggingRecorder::new();
    // Describing is optional and must not create or move any counter.
    metrics::with_local_recorder(&recorder, telemetry::describe);
    assert!(counters(&recorder).is_empty());
}

/// The script redis_exporter runs with `-script` on every scrape.
fn exporter_script() -> String {
    let path = workspace_dir().join("docker/prometheus/tk-info.lua");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

async fn run_script(server: &Server) -> BTreeMap<String, u64> {
    let mut conn = server.conn().await;
    // Alternating names and values, as the exporter expects.
    let flat: Vec<String> = redis::cmd("EVAL")
        .arg(exporter_script())
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(flat.len() % 2, 0, "{flat:?}");
    flat.chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn exporter_script_reports_info_tk_and_whether_the_module_is_loaded() {
    if tk_redis_tests::skip_in_functions_mode("INFO tk and MODULE LIST are the module's") {
        return;
    }
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let _: Vec<i64> = redis::cmd("TK.RATELIMIT")
        .arg("rl:script")
        .arg(3)
        .arg("1m")
        .query_async(&mut conn)
        .await
        .unwrap();
    let values = run_script(&server).await;
    assert_eq!(values.get("tk_module_loaded"), Some(&1), "{values:?}");
    assert_eq!(
        values.get("tk_ratelimit_gcra_calls"),
        Some(&1),
        "{values:?}"
    );
    // Every INFO tk field comes through, and nothing else but the flag.
    let info = server.info("tk").await;
    let mut expected: BTreeMap<String, u64> = info
        .iter()
        .filter(|(name, _)| name.starts_with("tk_"))
        .map(|(name, value)| (name.clone(), value.parse().unwrap()))
        .collect();
    assert!(expected.len() > 10, "{info:?}");
    expected.insert("tk_module_loaded".to_owned(), 1);
    assert_eq!(values, expected);

    let bare = Server::builder().without_module().start().await;
    let values = run_script(&bare).await;
    assert_eq!(values, BTreeMap::from([("tk_module_loaded".to_owned(), 0)]));
}
