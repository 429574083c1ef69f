//! Health and metrics: one call that says whether Redis (and the tk module)
//! can serve the app, for a `/health` endpoint and for dashboards.
//!
//! ```no_run
//! # async fn example(conn: redis::aio::ConnectionManager) {
//! use tk_redis::health::{check, HealthOptions};
//!
//! let health = check(&conn, &HealthOptions::default()).await;
//! // In a web handler: respond with health.http_status() and the report.
//! println!("{} {:?}", health.http_status(), health.status);
//! # }
//! ```
//!
//! # Status and HTTP mapping
//!
//! | status | when | [`Health::http_status`] |
//! |---|---|---|
//! | `Ok` | PING and INFO answered within the timeout, the module (or the Functions library: [`Health::backend`]) is loaded, latency under the threshold, no caught module panics | 200 |
//! | `Degraded` | Redis answers, but: neither the tk module nor the tk Functions library is loaded, the round trip took longer than [`HealthOptions::degraded_latency`], or the module has caught a panic (`tk_panics > 0`, a bug) | 503 |
//! | `Down` | no answer within [`HealthOptions::timeout`], or the connection failed | 503 |
//!
//! The app this replaces answered 200 even when degraded, so load balancers
//! kept sending traffic to instances that could not rate-limit or keep
//! sessions. Here only `Ok` is 200; [`Health::problems`] says why otherwise.
//! An orchestrator's *liveness* probe should not use this (a Redis outage
//! is not fixed by restarting the app); its *readiness* probe should.
//!
//! # Clusters
//!
//! [`check`] works on every [`Connection`](crate::Connection) topology. A
//! standalone or Sentinel connection asks one server (for Sentinel, the
//! current primary). A cluster connection sends PING and INFO to every
//! primary, and the report combines them:
//!
//! | field | on a cluster |
//! |---|---|
//! | [`Health::latency`] | the PING round trip to all primaries (the slowest one) |
//! | [`Health::tk_counters`], hit rates | summed over the primaries |
//! | [`Health::module_version`] | the oldest version among the primaries; `None` if any lacks the module |
//! | [`Health::server_version`] | the primaries' versions, joined by `, ` when they differ |
//! | [`Health::problems`] | each prefixed by the primary's address, e.g. `10.0.0.1:7000: the tk module is not loaded ...` |
//!
//! A primary that answers INFO with an error makes the status `Degraded`
//! (all of them: `Down`); a primary that does not answer PING makes it
//! `Down`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::InfoDict;

use crate::functions::{self, Backend};

/// Overall state.
///
/// ```
/// use std::time::Duration;
/// use tk_redis::health::{assess, HealthOptions, Status};
///
/// let info = "redis_version:7.0.15\r\ntk_version:200\r\n";
/// let health = assess(Duration::from_millis(2), info, &HealthOptions::default());
/// assert_eq!(health.status, Status::Ok);
/// assert_eq!(health.status.as_str(), "ok");
/// assert_eq!(health.http_status(), 200);
/// assert_eq!(health.module_version, Some(200));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything works.
    Ok,
    /// Redis answers, but something is wrong (see [`Health::problems`]).
    Degraded,
    /// Redis does not answer.
    Down,
}

impl Status {
    /// `"ok"`, `"degraded"` or `"down"`, e.g. for a JSON health report.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// What [`check`] found; see [`Status`] for an example.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// The overall verdict.
    pub status: Status,
    /// Round trip of one `PING`; `None` when Redis did not answer.
    pub latency: Option<Duration>,
    /// The tk module's version as `MODULE LIST` reports it
    /// (major·10000 + minor·100 + patch); `None` when not loaded.
    pub module_version: Option<u64>,
    /// What serves the tk commands: the module when every node has it,
    /// else the tk Functions library when it is loaded (see
    /// [`crate::functions`]); `None` when neither is there yet (a client in
    /// [`TkMode::Auto`](crate::TkMode::Auto) loads the library on its first
    /// call).
    pub backend: Option<Backend>,
    /// The loaded Functions library's version (`FCALL_RO tk_version 0`),
    /// asked only when the module is not loaded; on a cluster, from one
    /// node.
    pub library_version: Option<String>,
    /// `redis_version` from `INFO server`.
    pub server_version: Option<String>,
    /// Every numeric field of `INFO tk`, without the `tk_` prefix
    /// (e.g. `ratelimit_gcra_allowed`).
    pub tk_counters: BTreeMap<String, u64>,
    /// Hits / (hits + misses) of the tk cache (`INFO tk`), when the module
    /// reports cache counters and has served at least one lookup.
    pub cache_hit_rate: Option<f64>,
    /// Hits / (hits + misses) of all key lookups (`keyspace_hits`,
    /// `keyspace_misses` in `INFO stats`), when there were any.
    pub keyspace_hit_rate: Option<f64>,
    /// Why the status is not `Ok`, in words.
    pub problems: Vec<String>,
}

impl Health {
    /// 200 for `Ok`, 503 otherwise (see the module docs).
    pub fn http_status(&self) -> u16 {
        match self.status {
            Status::Ok => 200,
            Status::Degraded | Status::Down => 503,
        }
    }

    fn down(problem: String) -> Health {
        Health {
            status: Status::Down,
            latency: None,
            module_version: None,
            backend: None,
            library_version: None,
            server_version: None,
            tk_counters: BTreeMap::new(),
            cache_hit_rate: None,
            keyspace_hit_rate: None,
            problems: vec![problem],
        }
    }
}

/// Settings of [`check`]; see the [module docs](self) for an example.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// The whole check (PING + INFO) must finish within this, else `Down`.
    pub timeout: Duration,
    /// A PING slower than this makes the status `Degraded`.
    pub degraded_latency: Duration,
    /// Whether a missing tk module is a problem (`Degraded`); turn off for
    /// an instance that only serves plain-Redis features (e.g. leaderboards).
    pub require_module: bool,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            timeout: Duration::from_secs(1),
            degraded_latency: Duration::from_millis(250),
            require_module: true,
        }
    }
}

/// Checks Redis through `conn`. Never fails: an unreachable server is a
/// `Down` report, not an error.
///
/// Works with every [`Connection`](crate::Connection) topology. On a Redis
/// Cluster, PING and INFO go to every primary: the latency is the slowest
/// primary's, and the report combines their INFO (see
/// [Clusters](self#clusters)).
pub async fn check<C>(conn: &C, options: &HealthOptions) -> Health
where
    C: ConnectionLike + Clone + Send,
{
    let mut conn = conn.clone();
    match tokio::time::timeout(options.timeout, probe(&mut conn)).await {
        Err(_) => Health::down(format!("no answer from Redis within {:?}", options.timeout)),
        Ok(Err(error)) => Health::down(format!("Redis unreachable: {error}")),
        Ok(Ok((latency, info))) => {
            let mut health = report(latency, &info_replies(info), options);
            if health.module_version.is_none() && health.status != Status::Down {
                let library = functions::loaded_library_version(&conn);
                if let Ok(Ok(Some(version))) = tokio::time::timeout(options.timeout, library).await
                {
                    // The library serves the commands: no module is fine.
                    health.backend = Some(Backend::Library);
                    health.library_version = Some(version);
                    health
                        .problems
                        .retain(|problem| !problem.contains(MODULE_MISSING));
                    if health.problems.is_empty() {
                        health.status = Status::Ok;
                    }
                }
            }
            health
        }
    }
}

/// The problem reported for a node without the module (and, once
/// [`check`] has looked, without the library).
const MODULE_MISSING: &str = "the tk module is not loaded";

async fn probe<C: ConnectionLike + Send>(
    conn: &mut C,
) -> redis::RedisResult<(Duration, redis::Value)> {
    let started = Instant::now();
    let _: String = redis::cmd("PING").query_async(conn).await?;
    let latency = started.elapsed();
    // One INFO call for all sections: `tk` is empty when the module is absent.
    // Not `query_async`: a cluster's per-node errors must not fail the whole
    // reply.
    let info = conn
        .req_packed_command(redis::cmd("INFO").arg(&["server", "stats", "tk"]))
        .await?;
    match info {
        redis::Value::ServerError(error) => Err(error.into()),
        info => Ok((latency, info)),
    }
}

/// One node's answer to INFO: its address (`None` for the only node of a
/// standalone or Sentinel connection) and its fields, or why there are none.
type NodeInfo = (Option<String>, Result<InfoDict, String>);

/// Splits an INFO reply into the nodes' answers: one text, or (from a
/// cluster connection) a map from each primary's address to its text or
/// error, sorted by address.
fn info_replies(reply: redis::Value) -> Vec<NodeInfo> {
    use redis::{FromRedisValue, Value};
    let text = |value: Value| match value {
        Value::ServerError(error) => Err(error.to_string()),
        other => InfoDict::from_redis_value(other)
            .map_err(|error| format!("unexpected reply to INFO: {error}")),
    };
    match reply {
        Value::Map(nodes) => {
            let mut nodes: Vec<NodeInfo> = nodes
                .into_iter()
                .map(|(node, info)| {
                    let node = String::from_redis_value(node)
                        .unwrap_or_else(|_| "<unnamed node>".to_owned());
                    (Some(node), text(info))
                })
                .collect();
            nodes.sort_by(|a, b| a.0.cmp(&b.0));
            nodes
        }
        single => vec![(None, text(single))],
    }
}

/// Builds the report from a PING latency and the text of
/// `INFO server stats tk` (pure, so it is unit-tested without a server);
/// see [`Status`] for an example.
pub fn assess(latency: Duration, info: &str, options: &HealthOptions) -> Health {
    report(latency, &[(None, Ok(InfoDict::new(info)))], options)
}

/// Builds the report from a PING latency and every node's INFO; see
/// [Clusters](self#clusters) for how several nodes are combined.
fn report(latency: Duration, nodes: &[NodeInfo], options: &HealthOptions) -> Health {
    let mut problems = Vec::new();
    // "the tk module is not loaded" for the only node, "10.0.0.1:7000: the
    // tk module is not loaded" for one of several.
    let on = |node: &Option<String>, problem: String| match node {
        Some(node) if nodes.len() > 1 => format!("{node}: {problem}"),
        _ => problem,
    };
    let mut answered = 0;
    let mut tk_counters: BTreeMap<String, u64> = BTreeMap::new();
    let mut module_versions = Vec::new();
    let mut server_versions: Vec<String> = Vec::new();
    let (mut keyspace_hits, mut keyspace_misses) = (None::<u64>, None::<u64>);
    for (node, info) in nodes {
        let info = match info {
            Ok(info) => info,
            Err(error) => {
                problems.push(on(node, format!("INFO failed: {error}")));
                continue;
            }
        };
        answered += 1;
        let number = |name: &str| info.get::<u64>(name);
        let counters: BTreeMap<&str, u64> = info
            .keys()
            .filter_map(|name| Some((name.strip_prefix("tk_")?, number(name)?)))
            .collect();
        for (&name, &value) in &counters {
            if name != "version" {
                let total = tk_counters.entry(name.to_owned()).or_default();
                *total = total.saturating_add(value);
            }
        }
        match counters.get("version") {
            Some(&version) => module_versions.push(version),
            None if options.require_module => problems.push(on(
                node,
                format!(
                    "{MODULE_MISSING} (start redis-server with --loadmodule \
                     /path/to/libtk_redis.so), nor the tk Functions library (a client in auto \
                     mode loads it on its first call)"
                ),
            )),
            None => {}
        }
        if let Some(panics) = counters.get("panics").filter(|&&count| count > 0) {
            problems.push(on(
                node,
                format!("the tk module caught {panics} panic(s): a bug, see the Redis log"),
            ));
        }
        if let Some(version) = info.get::<String>("redis_version") {
            if !server_versions.contains(&version) {
                server_versions.push(version);
            }
        }
        let add = |total: &mut Option<u64>, value: Option<u64>| {
            if let Some(value) = value {
                *total = Some(total.unwrap_or(0).saturating_add(value));
            }
        };
        add(&mut keyspace_hits, number("keyspace_hits"));
        add(&mut keyspace_misses, number("keyspace_misses"));
    }
    if answered == 0 {
        let mut health = Health::down(problems.join("; "));
        health.latency = Some(latency);
        return health;
    }
    if latency > options.degraded_latency {
        problems.push(format!(
            "PING took {latency:?}, above the {:?} threshold",
            options.degraded_latency
        ));
    }
    // The version every answering node runs; the oldest when they differ
    // (e.g. during a rolling upgrade); none unless all have the module.
    let module_version = (module_versions.len() == answered)
        .then(|| module_versions.iter().copied().min())
        .flatten();
    if let Some(version) = module_version {
        tk_counters.insert("version".to_owned(), version);
    }
    let rate = |hits: Option<u64>, misses: Option<u64>| {
        let (hits, misses) = (hits?, misses?);
        let total = hits.saturating_add(misses);
        (total > 0).then(|| hits as f64 / total as f64)
    };
    Health {
        status: if problems.is_empty() {
            Status::Ok
        } else {
            Status::Degraded
        },
        latency: Some(latency),
        backend: module_version.map(|_| Backend::Module),
        library_version: None,
        module_version,
        server_version: (!server_versions.is_empty()).then(|| server_versions.join(", ")),
        cache_hit_rate: rate(
            tk_counters.get("cache_hits").copied(),
            tk_counters.get("cache_misses").copied(),
        ),
        keyspace_hit_rate: rate(keyspace_hits, keyspace_misses),
        tk_counters,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Stats\r\nkeyspace_hits:30\r\nkeyspace_misses:10\r\n\r\n# tk\r\ntk_version:100\r\ntk_ratelimit_gcra_calls:7\r\ntk_panics:0\r\n";

    fn fast() -> Duration {
        Duration::from_millis(1)
    }

    #[test]
    fn healthy_server_is_ok() {
        let health = assess(fast(), INFO, &HealthOptions::default());
        assert_eq!(health.status, Status::Ok, "{:?}", health.problems);
        assert_eq!(health.http_status(), 200);
        assert_eq!(health.module_version, Some(100));
        assert_eq!(health.server_version.as_deref(), Some("7.0.15"));
        assert_eq!(health.tk_counters.get("ratelimit_gcra_calls"), Some(&7));
        assert_eq!(health.keyspace_hit_rate, Some(0.75));
        assert_eq!(health.cache_hit_rate, None);
    }

    #[test]
    fn missing_module_is_degraded_unless_not_required() {
        let info = "# Server\r\nredis_version:7.0.15\r\n# Stats\r\nkeyspace_hits:0\r\nkeyspace_misses:0\r\n";
        let health = assess(fast(), info, &HealthOptions::default());
        assert_eq!(health.status, Status::Degraded);
        assert_eq!(health.http_status(), 503);
        assert!(health.problems[0].contains("--loadmodule"));
        assert_eq!(health.keyspace_hit_rate, None, "no lookups yet");
        let relaxed = HealthOptions {
            require_module: false,
            ..HealthOptions::default()
        };
        assert_eq!(assess(fast(), info, &relaxed).status, Status::Ok);
    }

    #[test]
    fn slow_or_panicking_is_degraded() {
        let slow = assess(Duration::from_secs(1), INFO, &HealthOptions::default());
        assert_eq!(slow.status, Status::Degraded);
        assert!(slow.problems[0].contains("PING took"));
        let panicked = INFO.replace("tk_panics:0", "tk_panics:2");
        let health = assess(fast(), &panicked, &HealthOptions::default());
        assert_eq!(health.status, Status::Degraded);
        assert!(health.problems[0].contains("2 panic"));
    }

    #[test]
    fn cache_hit_rate_comes_from_tk_counters() {
        let info = format!("{INFO}tk_cache_hits:9\r\ntk_cache_misses:1\r\n");
        let health = assess(fast(), &info, &HealthOptions::default());
        assert_eq!(health.cache_hit_rate, Some(0.9));
    }

    // ---- several nodes (a cluster connection's INFO) ------------------

    fn node_info(version: &str, tk: &str) -> String {
        format!(
            "# Server\r\nredis_version:{version}\r\n# Stats\r\nkeyspace_hits:30\r\n\
             keyspace_misses:10\r\n# tk\r\n{tk}"
        )
    }

    /// The map a cluster connection returns for INFO: address -> reply.
    fn cluster_reply(nodes: &[(&str, redis::Value)]) -> redis::Value {
        redis::Value::Map(
            nodes
                .iter()
                .map(|(node, reply)| {
                    (
                        redis::Value::BulkString(node.as_bytes().to_vec()),
                        reply.clone(),
                    )
                })
                .collect(),
        )
    }

    fn bulk(text: &str) -> redis::Value {
        redis::Value::BulkString(text.as_bytes().to_vec())
    }

    fn cluster_health(nodes: &[(&str, redis::Value)]) -> Health {
        report(
            fast(),
            &info_replies(cluster_reply(nodes)),
            &HealthOptions::default(),
        )
    }

    #[test]
    fn one_node_replies_as_before() {
        for reply in [
            bulk(INFO),
            redis::Value::VerbatimString {
                format: redis::VerbatimFormat::Text,
                text: INFO.to_owned(),
            },
        ] {
            let nodes = info_replies(reply);
            assert!(
                matches!(&nodes[..], [(None, Ok(info))] if info.get::<u64>("tk_version") == Some(100)),
                "{nodes:?}"
            );
            let health = report(fast(), &nodes, &HealthOptions::default());
            assert_eq!(health, assess(fast(), INFO, &HealthOptions::default()));
        }
        let odd = info_replies(redis::Value::Nil);
        assert!(
            matches!(&odd[..], [(None, Err(why))] if why.contains("unexpected reply")),
            "{odd:?}"
        );
    }

    #[test]
    fn healthy_cluster_combines_its_primaries() {
        let a = node_info("7.2.4", "tk_version:100\r\ntk_ratelimit_gcra_calls:7\r\ntk_cache_hits:9\r\ntk_cache_misses:0\r\ntk_panics:0\r\n");
        let b = node_info("7.2.4", "tk_version:100\r\ntk_ratelimit_gcra_calls:5\r\ntk_cache_hits:0\r\ntk_cache_misses:1\r\ntk_panics:0\r\n");
        let health = cluster_health(&[("10.0.0.2:7001", bulk(&b)), ("10.0.0.1:7000", bulk(&a))]);
        assert_eq!(health.status, Status::Ok, "{:?}", health.problems);
        assert_eq!(health.module_version, Some(100));
        assert_eq!(health.tk_counters.get("version"), Some(&100));
        assert_eq!(health.tk_counters.get("ratelimit_gcra_calls"), Some(&12));
        assert_eq!(health.cache_hit_rate, Some(0.9));
        assert_eq!(health.keyspace_hit_rate, Some(0.75));
        assert_eq!(health.server_version.as_deref(), Some("7.2.4"));
    }

    #[test]
    fn cluster_problems_name_the_primary() {
        let with_module = node_info("7.2.4", "tk_version:100\r\ntk_panics:1\r\n");
        let without = node_info("7.4.0", "");
        let health = cluster_health(&[
            ("10.0.0.1:7000", bulk(&with_module)),
            ("10.0.0.2:7001", bulk(&without)),
        ]);
        assert_eq!(health.status, Status::Degraded);
        assert_eq!(health.module_version, None);
        assert_eq!(health.tk_counters.get("version"), None);
        assert_eq!(health.server_version.as_deref(), Some("7.2.4, 7.4.0"));
        assert_eq!(health.problems.len(), 2, "{:?}", health.problems);
        assert!(health.problems[0].starts_with("10.0.0.1:7000: the tk module caught 1 panic"));
        assert!(health.problems[1].starts_with("10.0.0.2:7001: the tk module is not loaded"));

        // Different module versions (rolling upgrade): the oldest.
        let newer = node_info("7.2.4", "tk_version:200\r\n");
        let older = node_info("7.2.4", "tk_version:100\r\n");
        let health = cluster_health(&[("a:1", bulk(&newer)), ("b:2", bulk(&older))]);
        assert_eq!(health.status, Status::Ok);
        assert_eq!(health.module_version, Some(100));
    }

    #[test]
    fn cluster_nodes_that_fail_info() {
        let good = node_info("7.2.4", "tk_version:100\r\n");
        let loading =
            crate::test_support::error_reply("LOADING Redis is loading the dataset in memory");
        let health = cluster_health(&[("a:1", bulk(&good)), ("b:2", loading.clone())]);
        assert_eq!(health.status, Status::Degraded);
        assert_eq!(health.module_version, Some(100));
        assert_eq!(health.problems.len(), 1);
        assert!(
            health.problems[0].starts_with("b:2: INFO failed: "),
            "{:?}",
            health.problems
        );
        assert!(
            health.problems[0].contains("loading"),
            "{:?}",
            health.problems
        );

        let health = cluster_health(&[("a:1", loading.clone()), ("b:2", loading)]);
        assert_eq!(health.status, Status::Down);
        assert_eq!(health.http_status(), 503);
        assert!(
            health.problems[0].contains("a:1: INFO failed"),
            "{:?}",
            health.problems
        );
        assert!(
            health.problems[0].contains("b:2: INFO failed"),
            "{:?}",
            health.problems
        );
    }

    #[test]
    fn slow_cluster_is_reported_once() {
        let info = node_info("7.2.4", "tk_version:100\r\n");
        let nodes = info_replies(cluster_reply(&[("a:1", bulk(&info)), ("b:2", bulk(&info))]));
        let health = report(Duration::from_secs(1), &nodes, &HealthOptions::default());
        assert_eq!(health.status, Status::Degraded);
        assert_eq!(health.problems.len(), 1, "{:?}", health.problems);
        assert!(health.problems[0].starts_with("PING took"));
    }

    #[tokio::test]
    async fn check_through_a_cluster_shaped_connection() {
        use crate::test_support::Fake;
        let info = node_info("7.2.4", "tk_version:100\r\n");
        let reply = cluster_reply(&[("a:1", bulk(&info)), ("b:2", bulk(&info))]);
        let fake = Fake::new(move |sent| {
            Some(Ok(match sent[0].as_str() {
                "PING" => redis::Value::SimpleString("PONG".into()),
                _ => reply.clone(),
            }))
        });
        let health = check(&fake, &HealthOptions::default()).await;
        assert_eq!(health.status, Status::Ok, "{:?}", health.problems);
        assert_eq!(health.module_version, Some(100));
        let refused = Fake::new(|sent| {
            Some(Ok(match sent[0].as_str() {
                "PING" => redis::Value::SimpleString("PONG".into()),
                _ => crate::test_support::error_reply("NOPERM this user has no permissions"),
            }))
        });
        let health = check(&refused, &HealthOptions::default()).await;
        assert_eq!(health.status, Status::Down);
        assert!(
            health.problems[0].starts_with("Redis unreachable"),
            "{:?}",
            health.problems
        );
    }

    #[test]
    fn down_reports_http_503() {
        let health = Health::down("no answer".into());
        assert_eq!(health.status, Status::Down);
        assert_eq!(health.http_status(), 503);
        assert_eq!(health.latency, None);
    }
}
