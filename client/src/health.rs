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
//! | `Ok` | PING and INFO answered within the timeout, the module is loaded, latency under the threshold, no caught module panics | 200 |
//! | `Degraded` | Redis answers, but: the tk module is not loaded, the round trip took longer than [`HealthOptions::degraded_latency`], or the module has caught a panic (`tk_panics > 0`, a bug) | 503 |
//! | `Down` | no answer within [`HealthOptions::timeout`], or the connection failed | 503 |
//!
//! The app this replaces answered 200 even when degraded, so load balancers
//! kept sending traffic to instances that could not rate-limit or keep
//! sessions. Here only `Ok` is 200; [`Health::problems`] says why otherwise.
//! An orchestrator's *liveness* probe should not use this (a Redis outage
//! is not fixed by restarting the app); its *readiness* probe should.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;

/// Overall state.
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

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// The overall verdict.
    pub status: Status,
    /// Round trip of one `PING`; `None` when Redis did not answer.
    pub latency: Option<Duration>,
    /// The tk module's version as `MODULE LIST` reports it
    /// (major·10000 + minor·100 + patch); `None` when not loaded.
    pub module_version: Option<u64>,
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
            server_version: None,
            tk_counters: BTreeMap::new(),
            cache_hit_rate: None,
            keyspace_hit_rate: None,
            problems: vec![problem],
        }
    }
}

/// Settings of [`check`].
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
pub async fn check<C>(conn: &C, options: &HealthOptions) -> Health
where
    C: ConnectionLike + Clone + Send,
{
    let mut conn = conn.clone();
    match tokio::time::timeout(options.timeout, probe(&mut conn)).await {
        Err(_) => Health::down(format!("no answer from Redis within {:?}", options.timeout)),
        Ok(Err(error)) => Health::down(format!("Redis unreachable: {error}")),
        Ok(Ok((latency, info))) => assess(latency, &info, options),
    }
}

async fn probe<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<(Duration, String)> {
    let started = Instant::now();
    let _: String = redis::cmd("PING").query_async(conn).await?;
    let latency = started.elapsed();
    // One INFO call for all sections: `tk` is empty when the module is absent.
    let info: String = redis::cmd("INFO")
        .arg(&["server", "stats", "tk"])
        .query_async(conn)
        .await?;
    Ok((latency, info))
}

/// Builds the report from a PING latency and the text of
/// `INFO server stats tk` (pure, so it is unit-tested without a server).
pub fn assess(latency: Duration, info: &str, options: &HealthOptions) -> Health {
    let fields: BTreeMap<&str, &str> = info
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .collect();
    let number = |name: &str| fields.get(name).and_then(|value| value.parse::<u64>().ok());
    let tk_counters: BTreeMap<String, u64> = fields
        .iter()
        .filter_map(|(name, value)| {
            let counter = name.strip_prefix("tk_")?;
            Some((counter.to_owned(), value.parse().ok()?))
        })
        .collect();
    let module_version = tk_counters.get("version").copied();
    let rate = |hits: Option<u64>, misses: Option<u64>| {
        let (hits, misses) = (hits?, misses?);
        let total = hits + misses;
        (total > 0).then(|| hits as f64 / total as f64)
    };

    let mut problems = Vec::new();
    if options.require_module && module_version.is_none() {
        problems.push(
            "the tk module is not loaded (start redis-server with --loadmodule /path/to/libtk_redis.so)"
                .to_owned(),
        );
    }
    if latency > options.degraded_latency {
        problems.push(format!(
            "PING took {latency:?}, above the {:?} threshold",
            options.degraded_latency
        ));
    }
    if let Some(panics) = tk_counters.get("panics").filter(|&&count| count > 0) {
        problems.push(format!(
            "the tk module caught {panics} panic(s): a bug, see the Redis log"
        ));
    }
    Health {
        status: if problems.is_empty() {
            Status::Ok
        } else {
            Status::Degraded
        },
        latency: Some(latency),
        module_version,
        server_version: fields.get("redis_version").map(|v| (*v).to_owned()),
        cache_hit_rate: rate(
            tk_counters.get("cache_hits").copied(),
            tk_counters.get("cache_misses").copied(),
        ),
        keyspace_hit_rate: rate(number("keyspace_hits"), number("keyspace_misses")),
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

    #[test]
    fn down_reports_http_503() {
        let health = Health::down("no answer".into());
        assert_eq!(health.status, Status::Down);
        assert_eq!(health.http_status(), 503);
        assert_eq!(health.latency, None);
    }
}
