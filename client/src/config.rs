//! Connection settings: a [`Config`] read from the environment
//! ([`Config::from_env`]), a URL ([`Config::from_url`]) or a builder
//! ([`Config::builder`]), and the connections made from it
//! ([`Config::connect`], [`Config::connect_cache`]) to a standalone Redis,
//! a Redis Cluster or a Sentinel-managed primary.
//!
//! # Environment variables
//!
//! The variables (and defaults) are the ones the application already uses:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `REDIS_ADDR` | `host:port` of the main instance (sessions, rate limits) | `127.0.0.1:6379` (the compose file sets `redis:6379`) |
//! | `REDIS_USERNAME` | ACL user name (`AUTH <user> <password>`), e.g. a user confined by key patterns | none: the `default` user |
//! | `REDIS_PASSWORD` | `AUTH` password, taken verbatim | none |
//! | `REDIS_DB` | database number | `0` |
//! | `REDIS_POOL_SIZE` | maximum concurrent requests per connection, >= 1 | `20` |
//! | `REDIS_DIAL_TIMEOUT` | connection timeout, > 0 | `5s` |
//! | `REDIS_READ_TIMEOUT` | response timeout, > 0 | `3s` |
//! | `REDIS_WRITE_TIMEOUT` | write timeout, > 0 (see below) | `3s` |
//! | `REDIS_SESSIONS_ENABLED` | feature flag | `true` |
//! | `REDIS_CACHE_ENABLED` | feature flag | `true` |
//! | `REDIS_RATELIMIT_ENABLED` | feature flag | `true` |
//! | `REDIS_CACHE_ADDR` | `host:port` of the cache's own (standalone) instance | unset: the cache shares the main connection's topology |
//! | `REDIS_CLUSTER_NODES` | comma-separated `host:port` seed nodes of a Redis Cluster: selects [cluster mode](#topologies) | unset |
//! | `REDIS_SENTINEL_ADDRS` | comma-separated `host:port` of Sentinels: selects [Sentinel mode](#topologies) | unset |
//! | `REDIS_SENTINEL_MASTER` | the primary's name in Sentinel (`sentinel monitor <name> ...`); required with `REDIS_SENTINEL_ADDRS` | unset |
//! | `REDIS_SENTINEL_PASSWORD` | `AUTH` password of the Sentinels themselves (not of Redis), taken verbatim | none |
//!
//! Value syntax:
//!
//! - A variable that is unset or empty uses its default. Surrounding
//!   whitespace is ignored, so a value of only whitespace also counts as
//!   unset; except `REDIS_PASSWORD` and `REDIS_SENTINEL_PASSWORD`, which
//!   are taken verbatim (only the empty string counts as unset).
//! - Addresses are `host:port`; the port is required and an IPv6 address is
//!   written in brackets (`[::1]:6379`). Lists of addresses are separated
//!   by commas, with optional spaces around them (`redis-1:7000,
//!   redis-2:7001`); an empty item (`a:1,,b:2`, a trailing comma) is an
//!   error.
//! - Durations use Go's `time.ParseDuration` syntax, as the application did:
//!   a sequence of decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`,
//!   `s`, `m`, `h`), e.g. `5s`, `500ms`, `1.5s`, `1m30s`, `2h`. A bare integer
//!   means seconds (`5` is `5s`). Negative values are rejected.
//! - Booleans accept `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any
//!   case.
//!
//! A malformed value is an error naming the variable and the value
//! ([`ConfigError::Invalid`]), never a silent fallback to the default.
//! Settings that do not fit together are errors too
//! ([`ConfigError::Conflict`], [`ConfigError::Missing`]; see
//! [Topologies](#topologies)).
//!
//! # Topologies
//!
//! [`Config::topology`] says which kind of deployment [`Config::connect`]
//! connects to; it returns a [`Connection`] of the matching variant (see
//! [`crate::connection`] for what each does during a failover):
//!
//! | topology | set | [`Config::connect`] returns |
//! |---|---|---|
//! | [`Topology::Standalone`] | neither of the below (`REDIS_ADDR` is used) | [`Connection::Standalone`], a [`ConnectionManager`] |
//! | [`Topology::Cluster`] | `REDIS_CLUSTER_NODES` | [`Connection::Cluster`], a cluster connection that discovers the other nodes from these seeds |
//! | [`Topology::Sentinel`] | `REDIS_SENTINEL_ADDRS` and `REDIS_SENTINEL_MASTER` | [`Connection::Sentinel`], a connection to the primary that Sentinel names |
//!
//! - With a cluster or Sentinel, `REDIS_ADDR` is ignored (it is still
//!   validated when set). `REDIS_PASSWORD`, the timeouts and
//!   `REDIS_POOL_SIZE` apply to every Redis node; `REDIS_DB` applies to
//!   the Sentinel-managed primary.
//! - `REDIS_CLUSTER_NODES` and `REDIS_SENTINEL_ADDRS` together are an error
//!   ([`ConfigError::Conflict`]), as is `REDIS_CLUSTER_NODES` with a
//!   `REDIS_DB` other than 0 (a cluster has only database 0).
//! - `REDIS_SENTINEL_ADDRS` without `REDIS_SENTINEL_MASTER`, and
//!   `REDIS_SENTINEL_MASTER` or `REDIS_SENTINEL_PASSWORD` without
//!   `REDIS_SENTINEL_ADDRS`, are errors ([`ConfigError::Missing`]).
//! - `REDIS_CACHE_ADDR`, when set, is always one standalone instance;
//!   when unset, [`Config::connect_cache`] connects to the main topology.
//!
//! # Why a separate cache instance
//!
//! The cache is meant to run on a Redis configured with
//! `maxmemory-policy allkeys-lru`, which evicts *any* key under memory
//! pressure. Sessions and rate-limit state must not live there: evicting
//! them would log users out and reset their limits. `REDIS_CACHE_ADDR`
//! points the cache ([`Config::connect_cache`]) at its own instance; when it
//! is unset the cache shares the main instance (`REDIS_ADDR`, or the
//! cluster or Sentinel primary), which is only safe if that instance does
//! not evict (`noeviction` or a `volatile-*` policy).
//!
//! # How the settings map to the redis crate
//!
//! On a standalone server, [`Config::connect`] returns one
//! [`ConnectionManager`]: a single multiplexed connection that pipelines
//! concurrent requests and reconnects on its own, rather than a pool of
//! connections. A cluster connection keeps one such connection per node,
//! and a Sentinel connection one to the current primary. Accordingly:
//!
//! - `REDIS_DIAL_TIMEOUT` bounds each connection attempt (the manager's
//!   `connection_timeout`; for a cluster, per node). Finding the primary
//!   through Sentinel (asking the Sentinels, checking the primary's role,
//!   connecting) is bounded by `REDIS_DIAL_TIMEOUT` + `REDIS_READ_TIMEOUT`.
//! - `REDIS_READ_TIMEOUT` bounds each request (the manager's
//!   `response_timeout`; for a cluster, each attempt on a node), measured
//!   from the moment the request is queued on the connection until its
//!   reply arrives.
//! - `REDIS_WRITE_TIMEOUT` is validated and exposed
//!   ([`Config::write_timeout`]) but **not applied separately**: the redis
//!   crate has no write deadline. Writing a request happens inside the
//!   response timeout above, so in practice the write is bounded by
//!   `REDIS_READ_TIMEOUT` (go-redis would allow up to write + read timeout).
//! - `REDIS_POOL_SIZE` does not open connections. It becomes the
//!   connection's concurrency limit (for a cluster, each node's
//!   connection's): at most that many requests are in
//!   flight at once and further ones wait for a free slot, which is the
//!   bound a go-redis pool of that size put on concurrent commands. That
//!   wait happens *before* the response timeout starts; use a caller-side
//!   timeout (e.g. [`RateLimiter::with_timeout`](crate::RateLimiter::with_timeout))
//!   to bound it.
//!
//! A [`RateLimiter`](crate::RateLimiter) additionally applies its own
//! per-call timeout (3 s by default) around each call.
//!
//! # TLS
//!
//! `rediss://` URLs are parsed and the TLS flag is recorded
//! ([`Config::tls`]); it applies to every connection, including those to
//! cluster nodes, Sentinels and the primary they name. This build does not
//! enable the redis crate's TLS support (a `tls` feature of this crate is
//! planned): connecting with TLS requested then fails with
//! [`Error::InvalidArgument`] instead of silently connecting in plain text.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tk_redis::config::Config;
//! use tk_redis::RateLimiter;
//!
//! let config = Config::from_env()?;
//! if config.ratelimit_enabled() {
//!     let limiter = RateLimiter::new(config.connect().await?)
//!         .with_timeout(config.read_timeout());
//!     # let _ = limiter;
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    TlsMode,
};
use serde::de::DeserializeOwned;

use crate::connection::{Connection, SentinelConnection, SentinelSettings, Topology};
use crate::error::Error;
use crate::pubsub::{self, Channel, Source, SubscribeOptions, Subscription};

/// The names of the environment variables read by [`Config::from_env`].
///
/// They also name the setting in [`ConfigError::Invalid`] when the value
/// came from the builder.
pub mod vars {
    /// `host:port` of the main instance.
    pub const ADDR: &str = "REDIS_ADDR";
    /// ACL user name (optional).
    pub const USERNAME: &str = "REDIS_USERNAME";
    /// `AUTH` password (optional).
    pub const PASSWORD: &str = "REDIS_PASSWORD";
    /// Database number.
    pub const DB: &str = "REDIS_DB";
    /// Maximum concurrent requests per connection.
    pub const POOL_SIZE: &str = "REDIS_POOL_SIZE";
    /// Connection timeout.
    pub const DIAL_TIMEOUT: &str = "REDIS_DIAL_TIMEOUT";
    /// Response timeout.
    pub const READ_TIMEOUT: &str = "REDIS_READ_TIMEOUT";
    /// Write timeout (validated, not applied separately).
    pub const WRITE_TIMEOUT: &str = "REDIS_WRITE_TIMEOUT";
    /// Feature flag for sessions.
    pub const SESSIONS_ENABLED: &str = "REDIS_SESSIONS_ENABLED";
    /// Feature flag for the cache.
    pub const CACHE_ENABLED: &str = "REDIS_CACHE_ENABLED";
    /// Feature flag for rate limiting.
    pub const RATELIMIT_ENABLED: &str = "REDIS_RATELIMIT_ENABLED";
    /// `host:port` of the cache's own instance (optional).
    pub const CACHE_ADDR: &str = "REDIS_CACHE_ADDR";
    /// Comma-separated `host:port` seed nodes of a Redis Cluster (optional).
    pub const CLUSTER_NODES: &str = "REDIS_CLUSTER_NODES";
    /// Comma-separated `host:port` of Sentinels (optional).
    pub const SENTINEL_ADDRS: &str = "REDIS_SENTINEL_ADDRS";
    /// The primary's name in Sentinel (required with [`SENTINEL_ADDRS`]).
    pub const SENTINEL_MASTER: &str = "REDIS_SENTINEL_MASTER";
    /// `AUTH` password of the Sentinels themselves (optional).
    pub const SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";

    /// Every variable, in the order above.
    pub const ALL: [&str; 16] = [
        ADDR,
        USERNAME,
        PASSWORD,
        DB,
        POOL_SIZE,
        DIAL_TIMEOUT,
        READ_TIMEOUT,
        WRITE_TIMEOUT,
        SESSIONS_ENABLED,
        CACHE_ENABLED,
        RATELIMIT_ENABLED,
        CACHE_ADDR,
        CLUSTER_NODES,
        SENTINEL_ADDRS,
        SENTINEL_MASTER,
        SENTINEL_PASSWORD,
    ];

    /// Whether `variable` holds a password (never shown, taken verbatim).
    pub(crate) fn is_secret(variable: &str) -> bool {
        variable == PASSWORD || variable == SENTINEL_PASSWORD
    }
}

/// Default `REDIS_ADDR`. The compose file sets `redis:6379`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6379";
/// The port used when a URL has none.
pub const DEFAULT_PORT: u16 = 6379;
/// Default `REDIS_DB`.
pub const DEFAULT_DB: u32 = 0;
/// Default `REDIS_POOL_SIZE`.
pub const DEFAULT_POOL_SIZE: usize = 20;
/// Default `REDIS_DIAL_TIMEOUT`: 5 seconds.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `REDIS_READ_TIMEOUT`: 3 seconds.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `REDIS_WRITE_TIMEOUT`: 3 seconds.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Shown instead of a password in messages and `Debug` output.
const REDACTED: &str = "<redacted>";

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has an unusable value, e.g. `REDIS_DB=abc` or a pool size
    /// of 0 given to the builder.
    #[error("invalid {variable}={value:?}: {reason}")]
    Invalid {
        /// The setting, named by its environment variable (see [`vars`]),
        /// whether the value came from the environment or the builder.
        variable: &'static str,
        /// The offending value as given (a password is never shown).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// A URL given to [`Config::from_url`] could not be used.
    #[error("invalid redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password replaced by `<redacted>`.
        url: String,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// Two settings cannot be used together, e.g. `REDIS_CLUSTER_NODES` and
    /// `REDIS_SENTINEL_ADDRS`, or `REDIS_CLUSTER_NODES` and `REDIS_DB=3`.
    #[error("{first} and {second} cannot be used together: {reason}")]
    Conflict {
        /// One setting, named by its environment variable.
        first: &'static str,
        /// The other one.
        second: &'static str,
        /// Why, and what to do.
        reason: String,
    },

    /// A setting is needed by another one but is not set, e.g.
    /// `REDIS_SENTINEL_MASTER` when `REDIS_SENTINEL_ADDRS` is set.
    #[error("{variable} must be set when {required_by} is set")]
    Missing {
        /// The setting that is missing, named by its environment variable.
        variable: &'static str,
        /// The setting that needs it.
        required_by: &'static str,
    },
}

impl ConfigError {
    fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            variable,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A server address: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    /// Host name or IP address; an IPv6 address without brackets.
    host: String,
    port: u16,
}

impl Addr {
    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Parses `host:port` (`[v6]:port`); `default_port` is used when the
    /// port is left out, and when it is `None` the port is required.
    fn parse(text: &str, default_port: Option<u16>) -> Result<Addr, String> {
        if text.contains("://") {
            return Err("expected host:port, not a URL (use Config::from_url for URLs)".into());
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let end = rest.find(']').ok_or("missing ']' after the IPv6 address")?;
            let (host, after) = (&rest[..end], &rest[end + 1..]);
            host.parse::<Ipv6Addr>()
                .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected {after:?} after ']'")),
            };
            (host, port)
        } else {
            let (host, port) = match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            if host.contains(':') {
                return Err("an IPv6 address must be in brackets, e.g. [::1]:6379".into());
            }
            if let Some(bad) = host
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            {
                return Err(format!("invalid character {bad:?} in host {host:?}"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err("missing host (expected host:port, e.g. redis:6379)".into());
        }
        let port = match (port, default_port) {
            (Some(port), _) => parse_port(port)?,
            (None, Some(default)) => default,
            (None, None) => {
                return Err("missing port (expected host:port, e.g. redis:6379)".into());
            }
        };
        Ok(Addr {
            host: host.to_owned(),
            port,
        })
    }
}

/// `host:port`, with an IPv6 host in brackets.
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port after ':'".into());
    }
    match parse_digits::<u16>(text) {
        Some(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "port must be a number from 1 to 65535, got {text:?}"
        )),
    }
}

/// A comma-separated list of `host:port` (e.g. `REDIS_CLUSTER_NODES`); the
/// error names `variable` and shows the whole `text`.
fn parse_addr_list(variable: &'static str, text: &str) -> Result<Vec<Addr>, ConfigError> {
    text.split(',')
        .enumerate()
        .map(|(index, item)| {
            let item = item.trim();
            let number = index + 1;
            if item.is_empty() {
                return Err(ConfigError::invalid(
                    variable,
                    text,
                    format!("item {number} is empty (expected host:port,host:port,...)"),
                ));
            }
            Addr::parse(item, None).map_err(|reason| {
                ConfigError::invalid(variable, text, format!("item {number} {item:?}: {reason}"))
            })
        })
        .collect()
}

/// A Sentinel primary name: no whitespace or control characters.
fn parse_master_name(text: &str) -> Result<String, ConfigError> {
    if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            vars::SENTINEL_MASTER,
            text,
            format!(
                "invalid character {bad:?} (expected the name given to `sentinel monitor`, e.g. \
                 mymaster)"
            ),
        ));
    }
    Ok(text.to_owned())
}

/// `addrs` as the comma-separated text of their variable.
fn join_addrs(addrs: &[Addr]) -> String {
    addrs
        .iter()
        .map(Addr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The settings of a cluster or Sentinel deployment. (No `Debug`: it holds
/// a password; [`Config`]'s `Debug` redacts it.)
#[derive(Clone, PartialEq, Eq, Default)]
struct TopologySettings {
    cluster_nodes: Vec<Addr>,
    sentinel_addrs: Vec<Addr>,
    sentinel_master: Option<String>,
    sentinel_password: Option<String>,
}

impl TopologySettings {
    /// Checks the combinations described in the
    /// [module docs](self#topologies).
    fn check(&self, db: u32) -> Result<(), ConfigError> {
        let cluster = !self.cluster_nodes.is_empty();
        let sentinel = !self.sentinel_addrs.is_empty();
        if cluster && sentinel {
            return Err(ConfigError::Conflict {
                first: vars::CLUSTER_NODES,
                second: vars::SENTINEL_ADDRS,
                reason: "choose one topology: REDIS_CLUSTER_NODES for a Redis Cluster, or \
                         REDIS_SENTINEL_ADDRS (with REDIS_SENTINEL_MASTER) for a primary \
                         managed by Sentinel"
                    .into(),
            });
        }
        if cluster && db != 0 {
            return Err(ConfigError::Conflict {
                first: vars::CLUSTER_NODES,
                second: vars::DB,
                reason: format!(
                    "a Redis Cluster has only database 0, got REDIS_DB={db} (unset REDIS_DB or \
                     set it to 0)"
                ),
            });
        }
        if sentinel && self.sentinel_master.is_none() {
            return Err(ConfigError::Missing {
                variable: vars::SENTINEL_MASTER,
                required_by: vars::SENTINEL_ADDRS,
            });
        }
        if !sentinel {
            for (variable, set) in [
                (vars::SENTINEL_MASTER, self.sentinel_master.is_some()),
                (vars::SENTINEL_PASSWORD, self.sentinel_password.is_some()),
            ] {
                if set {
                    return Err(ConfigError::Missing {
                        variable: vars::SENTINEL_ADDRS,
                        required_by: variable,
                    });
                }
            }
        }
        Ok(())
    }

    fn topology(&self) -> Topology {
        if !self.cluster_nodes.is_empty() {
            Topology::Cluster
        } else if !self.sentinel_addrs.is_empty() {
            Topology::Sentinel
        } else {
            Topology::Standalone
        }
    }
}

/// An unsigned integer written with ASCII digits only (no sign, no spaces).
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Connection settings and feature flags; see the [module docs](self).
///
/// Every `Config` is valid: it comes from [`Config::from_env`],
/// [`Config::from_url`] or [`ConfigBuilder::build`], which all validate.
/// `Debug` output never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    addr: Addr,
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    db: u32,
    pool_size: usize,
    dial_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    sessions_enabled: bool,
    cache_enabled: bool,
    ratelimit_enabled: bool,
    cache_addr: Option<Addr>,
    topology: TopologySettings,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addr", &format_args!("{}", self.addr))
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("db", &self.db)
            .field("pool_size", &self.pool_size)
            .field("dial_timeout", &self.dial_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("sessions_enabled", &self.sessions_enabled)
            .field("cache_enabled", &self.cache_enabled)
            .field("ratelimit_enabled", &self.ratelimit_enabled)
            .field(
                "cache_addr",
                &self.cache_addr.as_ref().map(|a| a.to_string()),
            )
            .field("topology", &self.topology())
            .field("cluster_nodes", &join_addrs(&self.topology.cluster_nodes))
            .field("sentinel_addrs", &join_addrs(&self.topology.sentinel_addrs))
            .field("sentinel_master", &self.topology.sentinel_master)
            .field(
                "sentinel_password",
                &self.topology.sentinel_password.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

/// The documented defaults (what [`Config::from_env`] returns with no
/// variable set).
impl Default for Config {
    fn default() -> Self {
        Config {
            addr: Addr {
                host: "127.0.0.1".to_owned(),
                port: DEFAULT_PORT,
            },
            tls: false,
            username: None,
            password: None,
            db: DEFAULT_DB,
            pool_size: DEFAULT_POOL_SIZE,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            sessions_enabled: true,
            cache_enabled: true,
            ratelimit_enabled: true,
            cache_addr: None,
            topology: TopologySettings::default(),
        }
    }
}

impl Config {
    /// Reads the [environment variables](self#environment-variables) of the
    /// process. See [`Config::from_lookup`] for the rules.
    ///
    /// A value that is not valid UTF-8 is an error too.
    pub fn from_env() -> Result<Config, ConfigError> {
        for variable in vars::ALL {
            if let Some(value) = std::env::var_os(variable) {
                if value.to_str().is_none() {
                    let shown = if vars::is_secret(variable) {
                        REDACTED.to_owned()
                    } else {
                        value.to_string_lossy().into_owned()
                    };
                    return Err(ConfigError::Invalid {
                        variable,
                        value: shown,
                        reason: "not valid UTF-8".into(),
                    });
                }
            }
        }
        Config::from_lookup(|variable| std::env::var(variable).ok())
    }

    /// Reads the settings through `lookup`, which returns a variable's value
    /// (`None` when unset), e.g. from a map in tests:
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// use tk_redis::config::Config;
    ///
    /// let env = HashMap::from([
    ///     ("REDIS_ADDR", "redis:6379"),
    ///     ("REDIS_READ_TIMEOUT", "500ms"),
    ///     ("REDIS_CACHE_ENABLED", "off"),
    /// ]);
    /// let config = Config::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.addr().to_string(), "redis:6379");
    /// assert_eq!(config.read_timeout(), Duration::from_millis(500));
    /// assert!(!config.cache_enabled());
    /// assert_eq!(config.pool_size(), 20);
    /// ```
    ///
    /// Empty (or whitespace-only) values count as unset (the passwords
    /// excepted: only an empty one does); everything else
    /// must parse, or the result is [`ConfigError::Invalid`] naming the
    /// variable and the value. The syntax is in the
    /// [module docs](self#environment-variables); the combinations of the
    /// topology variables are checked as described [there](self#topologies)
    /// ([`ConfigError::Conflict`], [`ConfigError::Missing`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // Values other than the passwords are trimmed; blank means unset.
        let get = |variable: &str| {
            lookup(variable)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let mut config = Config::default();
        if let Some(value) = get(vars::ADDR) {
            config.addr = Addr::parse(&value, None)
                .map_err(|reason| ConfigError::invalid(vars::ADDR, &value, reason))?;
        }
        config.username = get(vars::USERNAME);
        config.password = lookup(vars::PASSWORD).filter(|password| !password.is_empty());
        if let Some(value) = get(vars::DB) {
            config.db = parse_digits(&value).ok_or_else(|| {
                ConfigError::invalid(
                    vars::DB,
                    &value,
                    format!("expected a database number from 0 to {}", u32::MAX),
                )
            })?;
        }
        if let Some(value) = get(vars::POOL_SIZE) {
            config.pool_size = match parse_digits::<usize>(&value) {
                Some(size) if size >= 1 => size,
                _ => {
                    return Err(ConfigError::invalid(
                        vars::POOL_SIZE,
                        &value,
                        "expected a whole number of at least 1",
                    ))
                }
            };
        }
        for (variable, slot) in [
            (vars::DIAL_TIMEOUT, &mut config.dial_timeout),
            (vars::READ_TIMEOUT, &mut config.read_timeout),
            (vars::WRITE_TIMEOUT, &mut config.write_timeout),
        ] {
            if let Some(value) = get(variable) {
                *slot = parse_timeout(&value)
                    .map_err(|reason| ConfigError::invalid(variable, &value, reason))?;
            }
        }
        for (variable, slot) in [
            (vars::SESSIONS_ENABLED, &mut config.sessions_enabled),
            (vars::CACHE_ENABLED, &mut config.cache_enabled),
            (vars::RATELIMIT_ENABLED, &mut config.ratelimit_enabled),
        ] {
            if let Some(value) = get(variable) {
                *slot = parse_bool(&value).ok_or_else(|| {
                    ConfigError::invalid(
                        variable,
                        &value,
                        "expected true/false, 1/0, yes/no or on/off",
                    )
                })?;
            }
        }
        if let Some(value) = get(vars::CACHE_ADDR) {
            config.cache_addr = Some(
                Addr::parse(&value, None)
                    .map_err(|reason| ConfigError::invalid(vars::CACHE_ADDR, &value, reason))?,
            );
        }
        if let Some(value) = get(vars::CLUSTER_NODES) {
            config.topology.cluster_nodes = parse_addr_list(vars::CLUSTER_NODES, &value)?;
        }
        if let Some(value) = get(vars::SENTINEL_ADDRS) {
            config.topology.sentinel_addrs = parse_addr_list(vars::SENTINEL_ADDRS, &value)?;
        }
        if let Some(value) = get(vars::SENTINEL_MASTER) {
            config.topology.sentinel_master = Some(parse_master_name(&value)?);
        }
        config.topology.sentinel_password =
            lookup(vars::SENTINEL_PASSWORD).filter(|password| !password.is_empty());
        config.topology.check(config.db)?;
        Ok(config)
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://...` to request TLS (see the [module docs](self#tls)).
    ///
    /// ```
    /// use tk_redis::config::Config;
    ///
    /// let config = Config::from_url("redis://:s3cret@redis:6380/2").unwrap();
    /// assert_eq!(config.addr().to_string(), "redis:6380");
    /// assert_eq!(config.password(), Some("s3cret"));
    /// assert_eq!(config.db(), 2);
    /// assert!(!config.tls());
    /// assert!(Config::from_url("rediss://cache.example.com").unwrap().tls());
    /// ```
    ///
    /// The port defaults to 6379 and the database to 0; the password may be
    /// percent-encoded. A user name other than `default` (which is what a
    /// password-only `AUTH` logs in as) is an ACL user, as with
    /// `REDIS_USERNAME`; query strings (`?...`) and
    /// fragments (`#...`) are rejected rather than ignored. Every other
    /// setting has its default; change them with [`Config::to_builder`].
    pub fn from_url(url: &str) -> Result<Config, ConfigError> {
        parse_url(url).map_err(|reason| ConfigError::InvalidUrl {
            url: redact_url(url),
            reason,
        })
    }

    /// A builder starting from the defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tk_redis::config::Config;
    ///
    /// let config = Config::builder()
    ///     .addr("redis:6379")
    ///     .cache_addr("redis-cache:6379")
    ///     .read_timeout(Duration::from_millis(500))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.effective_cache_addr().to_string(), "redis-cache:6379");
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::from_config(&Config::default())
    }

    /// A builder starting from this configuration, e.g. to override a few
    /// settings read from the environment.
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder::from_config(self)
    }

    /// Which kind of deployment [`Config::connect`] connects to (see
    /// [Topologies](self#topologies)).
    ///
    /// ```
    /// use tk_redis::{Config, Topology};
    ///
    /// assert_eq!(Config::default().topology(), Topology::Standalone);
    /// let cluster = Config::builder()
    ///     .cluster_nodes(["redis-1:7000", "redis-2:7001"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cluster.topology(), Topology::Cluster);
    /// let sentinel = Config::builder()
    ///     .sentinel_addrs(["sentinel-1:26379"])
    ///     .sentinel_master("tk-state")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(sentinel.topology(), Topology::Sentinel);
    /// ```
    pub fn topology(&self) -> Topology {
        self.topology.topology()
    }

    /// The main instance's address (`REDIS_ADDR`). Used only by the
    /// [standalone topology](self#topologies).
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// The seed nodes of the cluster (`REDIS_CLUSTER_NODES`); empty unless
    /// the topology is [`Topology::Cluster`].
    pub fn cluster_nodes(&self) -> &[Addr] {
        &self.topology.cluster_nodes
    }

    /// The Sentinels' addresses (`REDIS_SENTINEL_ADDRS`); empty unless the
    /// topology is [`Topology::Sentinel`].
    pub fn sentinel_addrs(&self) -> &[Addr] {
        &self.topology.sentinel_addrs
    }

    /// The primary's name in Sentinel (`REDIS_SENTINEL_MASTER`); set
    /// exactly when the topology is [`Topology::Sentinel`].
    pub fn sentinel_master(&self) -> Option<&str> {
        self.topology.sentinel_master.as_deref()
    }

    /// The Sentinels' own password (`REDIS_SENTINEL_PASSWORD`), if any.
    pub fn sentinel_password(&self) -> Option<&str> {
        self.topology.sentinel_password.as_deref()
    }

    /// The cache's own address, when set (`REDIS_CACHE_ADDR`).
    pub fn cache_addr(&self) -> Option<&Addr> {
        self.cache_addr.as_ref()
    }

    /// The standalone address the cache connects to: [`Config::cache_addr`]
    /// when set, else [`Config::addr`]. With a cluster or Sentinel and no
    /// `REDIS_CACHE_ADDR`, [`Config::connect_cache`] uses the main topology
    /// instead of this address.
    pub fn effective_cache_addr(&self) -> &Addr {
        self.cache_addr.as_ref().unwrap_or(&self.addr)
    }

    /// Whether TLS was requested (a `rediss://` URL or
    /// [`ConfigBuilder::tls`]). See the [module docs](self#tls).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The ACL user name (`REDIS_USERNAME`), if any; `None` logs in as the
    /// `default` user.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password (`REDIS_PASSWORD`), if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The database number (`REDIS_DB`).
    pub fn db(&self) -> u32 {
        self.db
    }

    /// The maximum number of concurrent requests per connection
    /// (`REDIS_POOL_SIZE`, >= 1); see the [module docs](self#how-the-settings-map-to-the-redis-crate).
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The connection timeout (`REDIS_DIAL_TIMEOUT`, > 0).
    pub fn dial_timeout(&self) -> Duration {
        self.dial_timeout
    }

    /// The per-request response timeout (`REDIS_READ_TIMEOUT`, > 0).
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The write timeout (`REDIS_WRITE_TIMEOUT`, > 0). Not applied
    /// separately: see the [module docs](self#how-the-settings-map-to-the-redis-crate).
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// Whether sessions are enabled (`REDIS_SESSIONS_ENABLED`).
    pub fn sessions_enabled(&self) -> bool {
        self.sessions_enabled
    }

    /// Whether the cache is enabled (`REDIS_CACHE_ENABLED`).
    pub fn cache_enabled(&self) -> bool {
        self.cache_enabled
    }

    /// Whether rate limiting is enabled (`REDIS_RATELIMIT_ENABLED`).
    pub fn ratelimit_enabled(&self) -> bool {
        self.ratelimit_enabled
    }

    /// The redis crate's connection info for the main standalone instance
    /// (address, TLS flag, password, database).
    pub fn connection_info(&self) -> ConnectionInfo {
        self.connection_info_for(&self.addr)
    }

    /// The connection info for the cache: [`Config::effective_cache_addr`]
    /// with the same TLS flag, password and database as the main instance.
    pub fn cache_connection_info(&self) -> ConnectionInfo {
        self.connection_info_for(self.effective_cache_addr())
    }

    fn connection_info_for(&self, addr: &Addr) -> ConnectionInfo {
        self.info(addr, self.redis_settings())
    }

    /// Database, user and password of every Redis connection.
    fn redis_settings(&self) -> RedisConnectionInfo {
        let mut settings = RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        settings
    }

    /// The connection info of a Sentinel (its own password, database 0).
    fn sentinel_connection_info(&self, addr: &Addr) -> ConnectionInfo {
        let mut settings = RedisConnectionInfo::default();
        if let Some(password) = &self.topology.sentinel_password {
            settings = settings.set_password(password);
        }
        self.info(addr, settings)
    }

    fn info(&self, addr: &Addr, settings: RedisConnectionInfo) -> ConnectionInfo {
        let host = addr.host.clone();
        let conn_addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port: addr.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, addr.port)
        };
        conn_addr
            .into_connection_info()
            .expect("a ConnectionAddr always converts to a ConnectionInfo")
            .set_redis_settings(settings)
    }

    /// The main standalone instance as a URL,
    /// `redis://[:password@]host:port/db` (`rediss://` with TLS), accepted
    /// back by [`Config::from_url`]. Cluster and Sentinel settings have no
    /// URL form.
    ///
    /// **Contains the password** (percent-encoded); do not log it.
    pub fn redis_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self
            .username
            .as_deref()
            .map(percent_encode)
            .unwrap_or_default();
        let auth = match (&self.password, user.is_empty()) {
            (Some(password), _) => format!("{user}:{}@", percent_encode(password)),
            (None, false) => format!("{user}@"),
            (None, true) => String::new(),
        };
        format!("{scheme}://{auth}{}/{}", self.addr, self.db)
    }

    /// The settings of the [`ConnectionManager`]s made by
    /// [`Config::connect`] and [`Config::connect_cache`] for a standalone
    /// instance: connection timeout `dial_timeout`, response timeout
    /// `read_timeout`, concurrency limit `pool_size`; reconnection backoff
    /// as in the redis crate.
    pub fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.dial_timeout))
            .set_response_timeout(Some(self.read_timeout))
            .set_concurrency_limit(self.pool_size)
    }

    /// The settings of the connections to cluster nodes and to the
    /// Sentinel-managed primary: the same timeouts and concurrency limit as
    /// [`Config::manager_config`].
    fn async_connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.dial_timeout))
            .set_response_timeout(Some(self.read_timeout))
            .set_concurrency_limit(self.pool_size)
    }

    /// The cluster client's settings: seed nodes, password, per-node
    /// timeouts and concurrency limit, and **no retries** by the redis
    /// crate, which would also resend commands after a connection error;
    /// [`Connection::Cluster`] sends again only refused commands (see
    /// [`crate::connection`]).
    fn cluster_builder(&self) -> ClusterClientBuilder {
        let nodes = self
            .topology
            .cluster_nodes
            .iter()
            .map(|addr| self.connection_info_for(addr));
        ClusterClientBuilder::new(nodes)
            .connection_timeout(self.dial_timeout)
            .response_timeout(self.read_timeout)
            .connection_concurrency_limit(self.pool_size)
            .retries(0)
    }

    /// Connects to the main topology (sessions, rate limits; see
    /// [Topologies](self#topologies)):
    ///
    /// - standalone: a [`ConnectionManager`] with
    ///   [`Config::manager_config`], which reconnects on its own later (the
    ///   first connection is retried a few times with backoff first);
    /// - cluster: a cluster connection, once the seed nodes have told it
    ///   the slot map and it has connected to the primaries;
    /// - Sentinel: a connection to the primary, once Sentinel has named it.
    ///
    /// Fails with [`Error::Connection`] or [`Error::Timeout`] when the
    /// servers cannot be reached (or no Sentinel knows a healthy primary of
    /// that name), and with [`Error::InvalidArgument`] when TLS is
    /// requested but not supported by this build.
    pub async fn connect(&self) -> Result<Connection, Error> {
        match self.topology() {
            Topology::Standalone => self
                .connect_to(self.connection_info())
                .await
                .map(Connection::Standalone),
            Topology::Cluster => self.connect_cluster().await.map(Connection::Cluster),
            Topology::Sentinel => self.connect_sentinel().await.map(Connection::Sentinel),
        }
    }

    /// Connects to the cache's instance: the standalone
    /// [`Config::cache_addr`] when set, else the main topology, like
    /// [`Config::connect`] (with a connection of its own).
    pub async fn connect_cache(&self) -> Result<Connection, Error> {
        match &self.cache_addr {
            Some(addr) => self
                .connect_to(self.connection_info_for(addr))
                .await
                .map(Connection::Standalone),
            None => self.connect().await,
        }
    }

    async fn connect_to(&self, info: ConnectionInfo) -> Result<ConnectionManager, Error> {
        let client = self.client_for(info)?;
        ConnectionManager::new_with_config(client, self.manager_config())
            .await
            .map_err(|err| Error::from_redis(err, CONNECT))
    }

    async fn connect_cluster(&self) -> Result<ClusterConnection, Error> {
        if let Some(addr) = self.topology.cluster_nodes.first() {
            require_supported(&self.connection_info_for(addr))?;
        }
        let client = self
            .cluster_builder()
            .build()
            .map_err(|err| Error::from_redis(err, CONNECT))?;
        client
            .get_async_connection()
            .await
            .map_err(|err| Error::from_redis(err, CONNECT))
    }

    /// The primary's name as Sentinel knows it.
    fn master_name(&self) -> String {
        self.topology
            .sentinel_master
            .clone()
            .expect("a valid Config in Sentinel mode has a primary name")
    }

    /// The sentinels' connection info.
    fn sentinel_infos(&self) -> Result<Vec<ConnectionInfo>, Error> {
        let sentinels: Vec<ConnectionInfo> = self
            .topology
            .sentinel_addrs
            .iter()
            .map(|addr| self.sentinel_connection_info(addr))
            .collect();
        for info in &sentinels {
            require_supported(info)?;
        }
        Ok(sentinels)
    }

    /// A client that asks `sentinels` for the primary and connects to it
    /// with this config's password, database and TLS flag.
    fn sentinel_client(&self, sentinels: Vec<ConnectionInfo>) -> Result<SentinelClient, Error> {
        let mut primary =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(self.redis_settings());
        if self.tls {
            primary = primary.set_tls_mode(TlsMode::Secure);
        }
        SentinelClient::build(
            sentinels,
            self.master_name(),
            Some(primary),
            SentinelServerType::Master,
        )
        .map_err(|err| Error::from_redis(err, CONNECT))
    }

    async fn connect_sentinel(&self) -> Result<SentinelConnection, Error> {
        let master_name = self.master_name();
        let sentinels = self.sentinel_infos()?;
        let client = self.sentinel_client(sentinels.clone())?;
        let conn = SentinelConnection::new(
            client,
            self.topology
                .sentinel_addrs
                .iter()
                .map(Addr::to_string)
                .collect(),
            SentinelSettings {
                master_name,
                db: i64::from(self.db),
                connection_config: self.async_connection_config(),
                resolve_timeout: self.dial_timeout.saturating_add(self.read_timeout),
                response_timeout: self.read_timeout,
                watch: sentinels,
            },
        );
        conn.resolve_master().await?;
        Ok(conn)
    }

    /// Subscribes to `channels` on the main topology with the default
    /// [`SubscribeOptions`]; see [`Config::subscribe_with`].
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        channels: Vec<Channel>,
    ) -> Result<Subscription<T>, Error> {
        self.subscribe_with(channels, SubscribeOptions::default())
            .await
    }

    /// Like [`pubsub::subscribe_with`], on the main topology (not the
    /// cache's instance), and following it when a server goes away:
    ///
    /// - standalone: the instance at [`Config::addr`], reconnecting to it;
    /// - cluster: a seed node ([`Config::cluster_nodes`]); classic pub/sub
    ///   is cluster-wide, so any node will do. A reconnection tries the
    ///   node that worked last, then the next seed node on each failure,
    ///   so a node that is gone for good is left behind;
    /// - Sentinel: the primary that the Sentinels name at each
    ///   (re)connection, so a subscription moves to the new primary after
    ///   a failover.
    ///
    /// Fails like [`pubsub::subscribe_with`] when the first attempt does,
    /// and with [`Error::InvalidArgument`] when TLS is requested but not
    /// supported by this build.
    pub async fn subscribe_with<T: DeserializeOwned>(
        &self,
        channels: Vec<Channel>,
        options: SubscribeOptions,
    ) -> Result<Subscription<T>, Error> {
        let source = match self.topology() {
            Topology::Standalone => Source::from(self.client_for(self.connection_info())?),
            Topology::Cluster => Source::Servers {
                clients: self
                    .topology
                    .cluster_nodes
                    .iter()
                    .map(|addr| self.client_for(self.connection_info_for(addr)))
                    .collect::<Result<_, _>>()?,
                current: 0,
            },
            Topology::Sentinel => Source::Sentinel(self.sentinel_client(self.sentinel_infos()?)?),
        };
        pubsub::subscribe_from(source, channels, options).await
    }

    fn client_for(&self, info: ConnectionInfo) -> Result<redis::Client, Error> {
        require_supported(&info)?;
        redis::Client::open(info).map_err(|err| Error::from_redis(err, CONNECT))
    }
}

/// The command name given to [`Error::from_redis`] while connecting: not a
/// TK command, so no error here can mean "module not loaded".
const CONNECT: &str = "";

/// Refuses an address that needs TLS when this build has no TLS support.
fn require_supported(info: &ConnectionInfo) -> Result<(), Error> {
    if info.addr().is_supported() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "TLS (rediss://) was requested for {}, but this build of tk-redis has no TLS \
         support (the redis crate's TLS features are not enabled); refusing to connect \
         without TLS",
        info.addr()
    )))
}

/// Builds a [`Config`] from code; obtained from [`Config::builder`] or
/// [`Config::to_builder`]. Setters take values as given and
/// [`build`](ConfigBuilder::build) validates them all.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigBuilder {
    addr: String,
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    db: u32,
    pool_size: usize,
    dial_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    sessions_enabled: bool,
    cache_enabled: bool,
    ratelimit_enabled: bool,
    cache_addr: Option<String>,
    cluster_nodes: Vec<String>,
    sentinel_addrs: Vec<String>,
    sentinel_master: Option<String>,
    sentinel_password: Option<String>,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("db", &self.db)
            .field("pool_size", &self.pool_size)
            .field("dial_timeout", &self.dial_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("sessions_enabled", &self.sessions_enabled)
            .field("cache_enabled", &self.cache_enabled)
            .field("ratelimit_enabled", &self.ratelimit_enabled)
            .field("cache_addr", &self.cache_addr)
            .field("cluster_nodes", &self.cluster_nodes)
            .field("sentinel_addrs", &self.sentinel_addrs)
            .field("sentinel_master", &self.sentinel_master)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl ConfigBuilder {
    fn from_config(config: &Config) -> ConfigBuilder {
        ConfigBuilder {
            addr: config.addr.to_string(),
            tls: config.tls,
            username: config.username.clone(),
            password: config.password.clone(),
            db: config.db,
            pool_size: config.pool_size,
            dial_timeout: config.dial_timeout,
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            sessions_enabled: config.sessions_enabled,
            cache_enabled: config.cache_enabled,
            ratelimit_enabled: config.ratelimit_enabled,
            cache_addr: config.cache_addr.as_ref().map(Addr::to_string),
            cluster_nodes: addr_strings(&config.topology.cluster_nodes),
            sentinel_addrs: addr_strings(&config.topology.sentinel_addrs),
            sentinel_master: config.topology.sentinel_master.clone(),
            sentinel_password: config.topology.sentinel_password.clone(),
        }
    }

    /// The main instance's `host:port` (`[v6]:port` for IPv6).
    #[must_use]
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// The cache's own `host:port`; an empty string unsets it (the cache
    /// then uses [`addr`](ConfigBuilder::addr)).
    #[must_use]
    pub fn cache_addr(mut self, addr: impl Into<String>) -> Self {
        let addr = addr.into();
        self.cache_addr = (!addr.is_empty()).then_some(addr);
        self
    }

    /// The `host:port` seed nodes of a Redis Cluster, which selects the
    /// [cluster topology](self#topologies); an empty list unsets them. An
    /// item may itself be a comma-separated list, as in
    /// `REDIS_CLUSTER_NODES`.
    #[must_use]
    pub fn cluster_nodes<I>(mut self, nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// The `host:port` of the Sentinels, which selects the
    /// [Sentinel topology](self#topologies) (with
    /// [`sentinel_master`](ConfigBuilder::sentinel_master)); an empty list
    /// unsets them. An item may itself be a comma-separated list, as in
    /// `REDIS_SENTINEL_ADDRS`.
    #[must_use]
    pub fn sentinel_addrs<I>(mut self, addrs: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.sentinel_addrs = addrs.into_iter().map(Into::into).collect();
        self
    }

    /// The Sentinels and the primary's name together:
    /// [`sentinel_addrs`](ConfigBuilder::sentinel_addrs) and
    /// [`sentinel_master`](ConfigBuilder::sentinel_master).
    ///
    /// ```
    /// use tk_redis::{Config, Topology};
    ///
    /// let config = Config::builder()
    ///     .sentinel(["sentinel-1:26379", "sentinel-2:26379"], "tk-state")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.topology(), Topology::Sentinel);
    /// assert_eq!(config.sentinel_master(), Some("tk-state"));
    /// ```
    #[must_use]
    pub fn sentinel<I>(self, addrs: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.sentinel_addrs(addrs).sentinel_master(master_name)
    }

    /// The primary's name in Sentinel; an empty string unsets it.
    #[must_use]
    pub fn sentinel_master(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.sentinel_master = (!name.is_empty()).then_some(name);
        self
    }

    /// The Sentinels' own `AUTH` password; an empty string means none.
    #[must_use]
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        let password = password.into();
        self.sentinel_password = (!password.is_empty()).then_some(password);
        self
    }

    /// Requests TLS; see the [module docs](self#tls).
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The ACL user name; an empty string means none (the `default` user).
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        let username = username.into();
        self.username = (!username.is_empty()).then_some(username);
        self
    }

    /// The password; an empty string means none.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        let password = password.into();
        self.password = (!password.is_empty()).then_some(password);
        self
    }

    /// The database number.
    #[must_use]
    pub fn db(mut self, db: u32) -> Self {
        self.db = db;
        self
    }

    /// The maximum number of concurrent requests per connection (>= 1).
    #[must_use]
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// The connection timeout (> 0).
    #[must_use]
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// The per-request response timeout (> 0).
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The write timeout (> 0; validated, not applied separately).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Enables or disables sessions.
    #[must_use]
    pub fn sessions_enabled(mut self, enabled: bool) -> Self {
        self.sessions_enabled = enabled;
        self
    }

    /// Enables or disables the cache.
    #[must_use]
    pub fn cache_enabled(mut self, enabled: bool) -> Self {
        self.cache_enabled = enabled;
        self
    }

    /// Enables or disables rate limiting.
    #[must_use]
    pub fn ratelimit_enabled(mut self, enabled: bool) -> Self {
        self.ratelimit_enabled = enabled;
        self
    }

    /// Validates the settings: addresses are `host:port`, the pool size is
    /// at least 1, every timeout is greater than zero, and the topology
    /// settings fit together (see [Topologies](self#topologies)). Errors
    /// are named after the settings' environment variables.
    pub fn build(self) -> Result<Config, ConfigError> {
        let addr = Addr::parse(&self.addr, None)
            .map_err(|reason| ConfigError::invalid(vars::ADDR, &self.addr, reason))?;
        let cache_addr = match &self.cache_addr {
            Some(text) => Some(
                Addr::parse(text, None)
                    .map_err(|reason| ConfigError::invalid(vars::CACHE_ADDR, text, reason))?,
            ),
            None => None,
        };
        let list = |variable: &'static str, items: &[String]| {
            let text = items.join(",");
            if text.trim().is_empty() {
                Ok(Vec::new())
            } else {
                parse_addr_list(variable, &text)
            }
        };
        let topology = TopologySettings {
            cluster_nodes: list(vars::CLUSTER_NODES, &self.cluster_nodes)?,
            sentinel_addrs: list(vars::SENTINEL_ADDRS, &self.sentinel_addrs)?,
            sentinel_master: self
                .sentinel_master
                .as_deref()
                .map(parse_master_name)
                .transpose()?,
            sentinel_password: self.sentinel_password,
        };
        topology.check(self.db)?;
        if self.pool_size == 0 {
            return Err(ConfigError::invalid(
                vars::POOL_SIZE,
                "0",
                "must be at least 1",
            ));
        }
        for (variable, timeout) in [
            (vars::DIAL_TIMEOUT, self.dial_timeout),
            (vars::READ_TIMEOUT, self.read_timeout),
            (vars::WRITE_TIMEOUT, self.write_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::invalid(
                    variable,
                    &format!("{timeout:?}"),
                    "must be greater than zero",
                ));
            }
        }
        Ok(Config {
            addr,
            tls: self.tls,
            username: self.username,
            password: self.password,
            db: self.db,
            pool_size: self.pool_size,
            dial_timeout: self.dial_timeout,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            sessions_enabled: self.sessions_enabled,
            cache_enabled: self.cache_enabled,
            ratelimit_enabled: self.ratelimit_enabled,
            cache_addr,
            topology,
        })
    }
}

fn addr_strings(addrs: &[Addr]) -> Vec<String> {
    addrs.iter().map(Addr::to_string).collect()
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if TRUE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Some(true)
    } else if FALSE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Some(false)
    } else {
        None
    }
}

/// A duration that must be greater than zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

const NANOS_PER_SEC: u128 = 1_000_000_000;
const UNITS_HELP: &str = "use ns, us, ms, s, m or h, e.g. 500ms, 5s or 1m30s";

/// Go's `time.ParseDuration` syntax without negative values, plus a bare
/// integer meaning seconds. See the [module docs](self#environment-variables).
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Some(secs) = parse_digits::<u64>(text) {
        return Ok(Duration::from_secs(secs));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("duration is too large".into());
    }
    if text.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    // Go accepts a unitless "0" (after an optional sign).
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(format!("expected a number with a unit ({UNITS_HELP})"));
    }
    let too_large = || "duration is too large".to_owned();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(frac_len)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(format!("expected a number at {rest:?} ({UNITS_HELP})"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "" => {
                return Err(format!(
                    "missing unit after {:?} ({UNITS_HELP}; only a whole number alone means \
                     seconds)",
                    &rest[..rest.len() - after.len()]
                ))
            }
            other => return Err(format!("unknown unit {other:?} ({UNITS_HELP})")),
        };
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| too_large())?
        };
        let mut part = int.checked_mul(unit_nanos).ok_or_else(too_large)?;
        // Digits beyond the 18th cannot matter (even for hours they are
        // worth less than a nanosecond).
        let frac_digits = &frac_digits[..frac_digits.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| too_large())?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            part += frac * unit_nanos / scale;
        }
        total = total.checked_add(part).ok_or_else(too_large)?;
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// The parts of a `redis://` URL; the error is the reason.
fn parse_url(url: &str) -> Result<Config, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected redis://[:password@]host[:port][/db] or rediss://...")?;
    let tls = if scheme.eq_ignore_ascii_case("redis") {
        false
    } else if scheme.eq_ignore_ascii_case("rediss") {
        true
    } else {
        return Err(format!(
            "unsupported scheme {scheme:?} (expected redis or rediss)"
        ));
    };
    // The user info ends at the last '@' (a host or path has none), so a
    // password may even contain unencoded '/', '?' or '#'.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    if rest.contains('?') {
        return Err("query parameters (?...) are not supported".into());
    }
    if rest.contains('#') {
        return Err("fragments (#...) are not supported".into());
    }
    let (host_port, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let user = percent_decode(user).map_err(|why| format!("user name: {why}"))?;
            // `default` is what a password-only AUTH logs in as.
            let username = (!(user.is_empty() || user == "default")).then_some(user);
            let password = match password {
                Some(password) => {
                    Some(percent_decode(password).map_err(|why| format!("password: {why}"))?)
                }
                None => None,
            };
            (username, password.filter(|password| !password.is_empty()))
        }
    };
    let addr = Addr::parse(host_port, Some(DEFAULT_PORT))?;
    let db = match path {
        "" | "/" => DEFAULT_DB,
        path => {
            let digits = &path[1..];
            parse_digits::<u32>(digits).ok_or_else(|| {
                format!(
                    "the path must be a database number from 0 to {}, got {digits:?}",
                    u32::MAX
                )
            })?
        }
    };
    Ok(Config {
        addr,
        tls,
        username,
        password,
        db,
        ..Config::default()
    })
}

/// `url` with the password of its user info (everything up to the last
/// `@`) replaced by `<redacted>`; a user info without `:` other than
/// `default` is redacted whole, in case it is a password.
fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else {
        return url.to_owned();
    };
    let userinfo = &url[start..at];
    let kept = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None if userinfo.is_empty() || userinfo == "default" => userinfo.to_owned(),
        None => REDACTED.to_owned(),
    };
    format!("{}{kept}{}", &url[..start], &url[at..])
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("invalid %-escape (expected % followed by two hex digits)")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not valid UTF-8 once %-decoded".to_owned())
}

/// Encodes every byte but the URL-unreserved ones as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn lookup(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| env.get(name).cloned())
    }

    /// The error for one bad variable; checks that it names the variable
    /// and the value, and returns the reason.
    fn invalid(variable: &str, value: &str) -> String {
        let err = lookup(&[(variable, value)]).expect_err(value);
        let message = err.to_string();
        match err {
            ConfigError::Invalid {
                variable: named,
                value: shown,
                reason,
            } => {
                assert_eq!(named, variable);
                assert_eq!(shown, value.trim());
                assert!(message.contains(variable), "{message}");
                assert!(
                    message.contains(&format!("{:?}", value.trim())),
                    "{message}"
                );
                reason
            }
            other => panic!("{other:?}"),
        }
    }

    fn url_error(url: &str) -> String {
        match Config::from_url(url) {
            Err(ConfigError::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        }
    }

    // ---- defaults ----------------------------------------------------

    #[test]
    fn defaults() {
        let config = lookup(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.addr().to_string(), DEFAULT_ADDR);
        assert_eq!(config.addr().host(), "127.0.0.1");
        assert_eq!(config.addr().port(), 6379);
        assert_eq!(config.password(), None);
        assert_eq!(config.db(), 0);
        assert_eq!(config.pool_size(), 20);
        assert_eq!(config.dial_timeout(), secs(5));
        assert_eq!(config.read_timeout(), secs(3));
        assert_eq!(config.write_timeout(), secs(3));
        assert!(config.sessions_enabled());
        assert!(config.cache_enabled());
        assert!(config.ratelimit_enabled());
        assert_eq!(config.cache_addr(), None);
        assert_eq!(config.effective_cache_addr(), config.addr());
        assert!(!config.tls());
        assert_eq!(config.topology(), Topology::Standalone);
        assert!(config.cluster_nodes().is_empty());
        assert!(config.sentinel_addrs().is_empty());
        assert_eq!(config.sentinel_master(), None);
        assert_eq!(config.sentinel_password(), None);
        assert_eq!(Config::builder().build().unwrap(), config);
    }

    #[test]
    fn empty_and_blank_values_count_as_unset() {
        let blank: Vec<(&str, &str)> = vars::ALL.iter().map(|v| (*v, "")).collect();
        assert_eq!(lookup(&blank).unwrap(), Config::default());
        let spaces: Vec<(&str, &str)> = vars::ALL
            .iter()
            .filter(|v| !vars::is_secret(v))
            .map(|v| (*v, "  \t"))
            .collect();
        assert_eq!(lookup(&spaces).unwrap(), Config::default());
    }

    #[test]
    fn every_variable_set() {
        let config = lookup(&[
            ("REDIS_ADDR", "redis:6379"),
            ("REDIS_PASSWORD", "pa ss:@/"),
            ("REDIS_DB", "3"),
            ("REDIS_POOL_SIZE", "50"),
            ("REDIS_DIAL_TIMEOUT", "1m30s"),
            ("REDIS_READ_TIMEOUT", "500ms"),
            ("REDIS_WRITE_TIMEOUT", "2"),
            ("REDIS_SESSIONS_ENABLED", "false"),
            ("REDIS_CACHE_ENABLED", "OFF"),
            ("REDIS_RATELIMIT_ENABLED", "No"),
            ("REDIS_CACHE_ADDR", "redis-cache:6380"),
        ])
        .unwrap();
        assert_eq!(config.addr().to_string(), "redis:6379");
        assert_eq!(config.password(), Some("pa ss:@/"));
        assert_eq!(config.db(), 3);
        assert_eq!(config.pool_size(), 50);
        assert_eq!(config.dial_timeout(), secs(90));
        assert_eq!(config.read_timeout(), ms(500));
        assert_eq!(config.write_timeout(), secs(2));
        assert!(!config.sessions_enabled());
        assert!(!config.cache_enabled());
        assert!(!config.ratelimit_enabled());
        assert_eq!(
            config.cache_addr().map(Addr::to_string).as_deref(),
            Some("redis-cache:6380")
        );
        assert_eq!(config.effective_cache_addr().port(), 6380);
    }

    #[test]
    fn values_are_trimmed_but_the_password_is_verbatim() {
        let config = lookup(&[
            ("REDIS_ADDR", " redis:6379\n"),
            ("REDIS_DB", " 2 "),
            ("REDIS_PASSWORD", " secret \n"),
            ("REDIS_CACHE_ENABLED", "\tfalse "),
        ])
        .unwrap();
        assert_eq!(config.addr().host(), "redis");
        assert_eq!(config.db(), 2);
        assert_eq!(config.password(), Some(" secret \n"));
        assert!(!config.cache_enabled());
        // A whitespace-only password is a password.
        assert_eq!(
            lookup(&[("REDIS_PASSWORD", " ")]).unwrap().password(),
            Some(" ")
        );
    }

    // ---- addresses -----------------------------------------------------

    /// Every variable holding addresses: one, or a list of them.
    const ADDRESS_VARIABLES: [&str; 4] = [
        vars::ADDR,
        vars::CACHE_ADDR,
        vars::CLUSTER_NODES,
        vars::SENTINEL_ADDRS,
    ];

    #[test]
    fn address_lists() {
        for (text, expected) in [
            ("a:1", &["a:1"][..]),
            ("a:1,b:2", &["a:1", "b:2"]),
            (" a:1 , b:2 ,c:3 ", &["a:1", "b:2", "c:3"]),
            ("[::1]:7000,10.0.0.1:7001", &["[::1]:7000", "10.0.0.1:7001"]),
            ("a:1,a:1", &["a:1", "a:1"]),
        ] {
            let cluster = lookup(&[(vars::CLUSTER_NODES, text)]).unwrap();
            assert_eq!(addr_strings(cluster.cluster_nodes()), expected, "{text}");
            let sentinel = lookup(&[
                (vars::SENTINEL_ADDRS, text),
                (vars::SENTINEL_MASTER, "mymaster"),
            ])
            .unwrap();
            assert_eq!(addr_strings(sentinel.sentinel_addrs()), expected, "{text}");
        }
        for (text, expected) in [
            ("a:1,", "item 2 is empty"),
            (",a:1", "item 1 is empty"),
            ("a:1,,b:2", "item 2 is empty"),
            ("a:1, ,b:2", "item 2 is empty"),
            (",", "item 1 is empty"),
            ("a:1,b", "item 2 \"b\": missing port"),
            ("a:1;b:2", "item 1 \"a:1;b:2\": "),
            ("a:1 b:2", "item 1 \"a:1 b:2\": "),
            ("a:1,b:x", "item 2 \"b:x\": port must be a number"),
            (
                "a:1,redis://b:2",
                "item 2 \"redis://b:2\": expected host:port, not a URL",
            ),
        ] {
            for variable in [vars::CLUSTER_NODES, vars::SENTINEL_ADDRS] {
                let reason = invalid(variable, text);
                assert!(reason.contains(expected), "{variable}={text}: {reason}");
            }
        }
    }

    // ---- topologies ------------------------------------------------------

    #[test]
    fn topology_of_each_combination() {
        // (environment, the topology or the error's message)
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<Topology, &'a str>);
        let cases: &[Case] = &[
            (&[], Ok(Topology::Standalone)),
            (&[("REDIS_ADDR", "redis:6379")], Ok(Topology::Standalone)),
            (
                &[("REDIS_CLUSTER_NODES", "n1:7000,n2:7001")],
                Ok(Topology::Cluster),
            ),
            (
                // REDIS_ADDR is ignored, REDIS_DB=0 is fine.
                &[
                    ("REDIS_CLUSTER_NODES", "n1:7000"),
                    ("REDIS_ADDR", "redis:6379"),
                    ("REDIS_DB", "0"),
                ],
                Ok(Topology::Cluster),
            ),
            (
                &[
                    ("REDIS_CLUSTER_NODES", "n1:7000"),
                    ("REDIS_CACHE_ADDR", "cache:6379"),
                ],
                Ok(Topology::Cluster),
            ),
            (
                &[
                    ("REDIS_SENTINEL_ADDRS", "s1:26379,s2:26379"),
                    ("REDIS_SENTINEL_MASTER", "tk-state"),
                ],
                Ok(Topology::Sentinel),
            ),
            (
                &[
                    ("REDIS_SENTINEL_ADDRS", "s1:26379"),
                    ("REDIS_SENTINEL_MASTER", "tk-state"),
                    ("REDIS_SENTINEL_PASSWORD", "s3cret"),
                    ("REDIS_DB", "2"),
                    ("REDIS_ADDR", "ignored:6379"),
                ],
                Ok(Topology::Sentinel),
            ),
            (
                &[
                    ("REDIS_CLUSTER_NODES", "n1:7000"),
                    ("REDIS_SENTINEL_ADDRS", "s1:26379"),
                    ("REDIS_SENTINEL_MASTER", "tk-state"),
                ],
                Err(
                    "REDIS_CLUSTER_NODES and REDIS_SENTINEL_ADDRS cannot be used together: \
                     choose one topology",
                ),
            ),
            (
                &[("REDIS_CLUSTER_NODES", "n1:7000"), ("REDIS_DB", "3")],
                Err(
                    "REDIS_CLUSTER_NODES and REDIS_DB cannot be used together: a Redis Cluster \
                     has only database 0, got REDIS_DB=3",
                ),
            ),
            (
                &[("REDIS_SENTINEL_ADDRS", "s1:26379")],
                Err("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set"),
            ),
            (
                &[
                    ("REDIS_SENTINEL_ADDRS", "s1:26379"),
                    ("REDIS_SENTINEL_MASTER", "  "),
                ],
                Err("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set"),
            ),
            (
                &[("REDIS_SENTINEL_MASTER", "tk-state")],
                Err("REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_MASTER is set"),
            ),
            (
                &[("REDIS_SENTINEL_PASSWORD", "s3cret")],
                Err("REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_PASSWORD is set"),
            ),
            (
                &[
                    ("REDIS_CLUSTER_NODES", "n1:7000"),
                    ("REDIS_SENTINEL_MASTER", "tk-state"),
                ],
                Err("REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_MASTER is set"),
            ),
            (
                // Unset (blank) lists select nothing.
                &[("REDIS_CLUSTER_NODES", " "), ("REDIS_SENTINEL_ADDRS", "")],
                Ok(Topology::Standalone),
            ),
        ];
        for (env, expected) in cases {
            let built = lookup(env);
            match (built, expected) {
                (Ok(config), Ok(topology)) => {
                    assert_eq!(config.topology(), *topology, "{env:?}");
                    // The builder agrees.
                    assert_eq!(config.to_builder().build().unwrap(), config, "{env:?}");
                }
                (Err(err), Err(message)) => {
                    assert!(err.to_string().starts_with(message), "{env:?}: {err}");
                }
                (got, _) => panic!("{env:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn topology_errors_are_typed() {
        let conflict = lookup(&[
            ("REDIS_CLUSTER_NODES", "n:1"),
            ("REDIS_SENTINEL_ADDRS", "s:1"),
        ]);
        assert!(matches!(
            conflict,
            Err(ConfigError::Conflict {
                first: "REDIS_CLUSTER_NODES",
                second: "REDIS_SENTINEL_ADDRS",
                ..
            })
        ));
        let db = lookup(&[("REDIS_CLUSTER_NODES", "n:1"), ("REDIS_DB", "1")]);
        assert!(matches!(
            db,
            Err(ConfigError::Conflict {
                first: "REDIS_CLUSTER_NODES",
                second: "REDIS_DB",
                ..
            })
        ));
        let missing = lookup(&[("REDIS_SENTINEL_ADDRS", "s:1")]);
        assert_eq!(
            missing,
            Err(ConfigError::Missing {
                variable: "REDIS_SENTINEL_MASTER",
                required_by: "REDIS_SENTINEL_ADDRS",
            })
        );
        // A malformed value is reported before any combination.
        let malformed = lookup(&[
            ("REDIS_CLUSTER_NODES", "n"),
            ("REDIS_SENTINEL_ADDRS", "s:1"),
        ]);
        assert!(matches!(
            malformed,
            Err(ConfigError::Invalid {
                variable: "REDIS_CLUSTER_NODES",
                ..
            })
        ));
    }

    #[test]
    fn sentinel_settings() {
        let config = lookup(&[
            ("REDIS_SENTINEL_ADDRS", "sentinel-1:26379, sentinel-2:26380"),
            ("REDIS_SENTINEL_MASTER", " tk-state\n"),
            ("REDIS_SENTINEL_PASSWORD", " s3 cret "),
            ("REDIS_PASSWORD", "redis-pw"),
        ])
        .unwrap();
        assert_eq!(config.sentinel_master(), Some("tk-state"));
        // Taken verbatim, like REDIS_PASSWORD.
        assert_eq!(config.sentinel_password(), Some(" s3 cret "));
        assert_eq!(config.password(), Some("redis-pw"));
        assert_eq!(config.sentinel_addrs()[1].port(), 26380);
        let sentinel = config.sentinel_connection_info(&config.sentinel_addrs()[0]);
        assert_eq!(
            sentinel.addr(),
            &ConnectionAddr::Tcp("sentinel-1".into(), 26379)
        );
        assert_eq!(sentinel.redis_settings().password(), Some(" s3 cret "));
        assert_eq!(sentinel.redis_settings().db(), 0);
        for bad in ["tk state", "tk\tstate", "tk\u{7}"] {
            let err = lookup(&[
                ("REDIS_SENTINEL_ADDRS", "s:1"),
                ("REDIS_SENTINEL_MASTER", bad),
            ])
            .unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { variable: "REDIS_SENTINEL_MASTER", ref reason, .. } if reason.contains("invalid character")),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn builder_topologies() {
        let cluster = Config::builder()
            .cluster_nodes(["n1:7000", "n2:7001,n3:7002"])
            .password("pw")
            .build()
            .unwrap();
        assert_eq!(cluster.topology(), Topology::Cluster);
        assert_eq!(
            addr_strings(cluster.cluster_nodes()),
            ["n1:7000", "n2:7001", "n3:7002"]
        );
        assert_eq!(cluster.to_builder().build().unwrap(), cluster);
        // An empty list unsets.
        let unset = cluster
            .to_builder()
            .cluster_nodes(Vec::<String>::new())
            .build()
            .unwrap();
        assert_eq!(unset.topology(), Topology::Standalone);

        let sentinel = Config::builder()
            .sentinel_addrs(vec!["s1:26379".to_owned()])
            .sentinel_master("tk-state")
            .sentinel_password("spw")
            .db(4)
            .build()
            .unwrap();
        assert_eq!(sentinel.topology(), Topology::Sentinel);
        assert_eq!(sentinel.sentinel_master(), Some("tk-state"));
        assert_eq!(sentinel.sentinel_password(), Some("spw"));
        assert_eq!(sentinel.to_builder().build().unwrap(), sentinel);
        let unset = sentinel
            .to_builder()
            .sentinel_addrs([""])
            .sentinel_master("")
            .sentinel_password("")
            .build()
            .unwrap();
        assert_eq!(unset.topology(), Topology::Standalone);
        assert_eq!(unset.sentinel_password(), None);

        // The builder's errors name the variables, like the environment's.
        for (builder, expected) in [
            (
                Config::builder().cluster_nodes(["n1:7000", ""]),
                "invalid REDIS_CLUSTER_NODES=\"n1:7000,\": item 2 is empty",
            ),
            (
                Config::builder()
                    .sentinel_addrs(["s1"])
                    .sentinel_master("m"),
                "invalid REDIS_SENTINEL_ADDRS=\"s1\": item 1 \"s1\": missing port",
            ),
            (
                Config::builder()
                    .sentinel_addrs(["s1:1"])
                    .sentinel_master("a b"),
                "invalid REDIS_SENTINEL_MASTER=\"a b\": invalid character ' '",
            ),
            (
                Config::builder()
                    .cluster_nodes(["n:1"])
                    .sentinel_addrs(["s:1"]),
                "REDIS_CLUSTER_NODES and REDIS_SENTINEL_ADDRS cannot be used together",
            ),
            (
                Config::builder().cluster_nodes(["n:1"]).db(1),
                "REDIS_CLUSTER_NODES and REDIS_DB cannot be used together",
            ),
            (
                Config::builder().sentinel_addrs(["s:1"]),
                "REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set",
            ),
            (
                Config::builder().sentinel_master("m"),
                "REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_MASTER is set",
            ),
            (
                Config::builder().sentinel_password("p"),
                "REDIS_SENTINEL_ADDRS must be set when REDIS_SENTINEL_PASSWORD is set",
            ),
        ] {
            let err = builder.build().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn cluster_client_settings() {
        let config = Config::builder()
            .cluster_nodes(["n1:7000", "n2:7001"])
            .password("pw")
            .dial_timeout(ms(700))
            .read_timeout(ms(800))
            .pool_size(7)
            .build()
            .unwrap();
        // No getters on the builder: look at its Debug output.
        let debug = format!("{:?}", config.cluster_builder());
        for expected in [
            "number_of_retries: 0",
            "connection_timeout: Some(700ms)",
            "response_timeout: Some(800ms)",
            "connection_concurrency_limit: Some(7)",
            "\"n1\", 7000",
            "\"n2\", 7001",
        ] {
            assert!(debug.contains(expected), "{expected}: {debug}");
        }
        assert!(!debug.contains("\"pw\""), "{debug}");
        let info = config.connection_info_for(&config.cluster_nodes()[0]);
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().db(), 0);
    }

    #[test]
    fn good_addresses() {
        for (text, host, port) in [
            ("redis:6379", "redis", 6379),
            ("127.0.0.1:1", "127.0.0.1", 1),
            ("my_redis-1.internal:65535", "my_redis-1.internal", 65535),
            ("[::1]:6380", "::1", 6380),
            ("[fe80::1]:7000", "fe80::1", 7000),
        ] {
            for variable in ADDRESS_VARIABLES {
                let mut env = vec![(variable, text)];
                if variable == vars::SENTINEL_ADDRS {
                    env.push((vars::SENTINEL_MASTER, "mymaster"));
                }
                let config = lookup(&env).unwrap();
                let addr = match variable {
                    vars::ADDR => config.addr(),
                    vars::CACHE_ADDR => config.cache_addr().unwrap(),
                    vars::CLUSTER_NODES => &config.cluster_nodes()[0],
                    _ => &config.sentinel_addrs()[0],
                };
                assert_eq!((addr.host(), addr.port()), (host, port), "{text}");
                assert_eq!(addr.to_string(), text);
            }
        }
    }

    #[test]
    fn bad_addresses() {
        for (text, expected) in [
            ("redis", "missing port"),
            ("redis:", "missing port"),
            (":6379", "missing host"),
            ("redis:0", "1 to 65535"),
            ("redis:65536", "1 to 65535"),
            ("redis:-1", "1 to 65535"),
            ("redis:+1", "1 to 65535"),
            ("redis:http", "1 to 65535"),
            ("::1:6379", "brackets"),
            ("[::1]", "missing port"),
            ("[::1", "missing ']'"),
            ("[nope]:6379", "not an IPv6 address"),
            ("[::1]x:6379", "after ']'"),
            ("re dis:6379", "invalid character"),
            ("user@redis:6379", "invalid character"),
            ("redis://redis:6379", "not a URL"),
        ] {
            for variable in ADDRESS_VARIABLES {
                let reason = invalid(variable, text);
                assert!(reason.contains(expected), "{variable}={text}: {reason}");
            }
        }
    }

    // ---- numbers and flags --------------------------------------------

    #[test]
    fn db_values() {
        assert_eq!(lookup(&[("REDIS_DB", "0")]).unwrap().db(), 0);
        assert_eq!(lookup(&[("REDIS_DB", "15")]).unwrap().db(), 15);
        assert_eq!(
            lookup(&[("REDIS_DB", "4294967295")]).unwrap().db(),
            u32::MAX
        );
        for bad in ["-1", "+1", "1.0", "one", "4294967296", "1 2", "0x1"] {
            let reason = invalid(vars::DB, bad);
            assert!(reason.contains("database number"), "{bad}: {reason}");
        }
    }

    #[test]
    fn pool_size_values() {
        assert_eq!(lookup(&[("REDIS_POOL_SIZE", "1")]).unwrap().pool_size(), 1);
        assert_eq!(
            lookup(&[("REDIS_POOL_SIZE", "1000")]).unwrap().pool_size(),
            1000
        );
        for bad in ["0", "-5", "ten", "2.5", "99999999999999999999999"] {
            let reason = invalid(vars::POOL_SIZE, bad);
            assert!(reason.contains("at least 1"), "{bad}: {reason}");
        }
    }

    #[test]
    fn boolean_values() {
        for variable in [
            vars::SESSIONS_ENABLED,
            vars::CACHE_ENABLED,
            vars::RATELIMIT_ENABLED,
        ] {
            let flag = |value: &str| {
                let config = lookup(&[(variable, value)]).unwrap();
                match variable {
                    vars::SESSIONS_ENABLED => config.sessions_enabled(),
                    vars::CACHE_ENABLED => config.cache_enabled(),
                    _ => config.ratelimit_enabled(),
                }
            };
            for yes in ["true", "TRUE", "True", "1", "yes", "YES", "on", "On"] {
                assert!(flag(yes), "{variable}={yes}");
            }
            for no in ["false", "FALSE", "0", "no", "No", "off", "OFF"] {
                assert!(!flag(no), "{variable}={no}");
            }
            for bad in ["2", "y", "n", "enabled", "t", "truee", "-1"] {
                let reason = invalid(variable, bad);
                assert!(reason.contains("true/false"), "{bad}: {reason}");
            }
        }
    }

    // ---- durations -----------------------------------------------------

    #[test]
    fn good_durations() {
        for (text, expected) in [
            ("5s", secs(5)),
            ("500ms", ms(500)),
            ("1m", secs(60)),
            ("2h", secs(7_200)),
            ("1m30s", secs(90)),
            ("1h1m1s", secs(3_661)),
            ("30s1m", secs(90)),
            ("1.5s", ms(1_500)),
            ("0.5s", ms(500)),
            (".5s", ms(500)),
            ("1.s", secs(1)),
            ("1.5h", secs(5_400)),
            ("0.001s", ms(1)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("100μs", Duration::from_micros(100)),
            ("250ns", Duration::from_nanos(250)),
            ("1s500ms", ms(1_500)),
            ("+5s", secs(5)),
            ("5", secs(5)),
            ("300", secs(300)),
            (
                "0.3333333333333333333333s",
                Duration::from_nanos(333_333_333),
            ),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for (text, expected) in [
            ("", "empty"),
            ("-5s", "negative"),
            ("-1", "negative"),
            ("5x", "unknown unit \"x\""),
            ("5 s", "unknown unit \" s\""),
            ("5sec", "unknown unit \"sec\""),
            ("5S", "unknown unit \"S\""),
            ("1.5", "missing unit"),
            ("1m30", "missing unit"),
            ("s", "expected a number"),
            (".s", "expected a number"),
            ("+", "expected a number"),
            ("1..5s", "missing unit"),
            ("99999999999999999999999", "too large"),
            ("9999999999999999999999999h", "too large"),
            ("99999999999999999999999999999999999999999s", "too large"),
        ] {
            let reason = parse_duration(text).expect_err(text);
            assert!(reason.contains(expected), "{text}: {reason}");
        }
    }

    #[test]
    fn timeout_variables() {
        for variable in [vars::DIAL_TIMEOUT, vars::READ_TIMEOUT, vars::WRITE_TIMEOUT] {
            let config = lookup(&[(variable, "250ms")]).unwrap();
            let got = match variable {
                vars::DIAL_TIMEOUT => config.dial_timeout(),
                vars::READ_TIMEOUT => config.read_timeout(),
                _ => config.write_timeout(),
            };
            assert_eq!(got, ms(250), "{variable}");
            for (bad, expected) in [
                ("0", "greater than zero"),
                ("0s", "greater than zero"),
                ("0.0000000001s", "greater than zero"),
                ("-3s", "negative"),
                ("3x", "unknown unit"),
                ("three", "expected a number"),
            ] {
                let reason = invalid(variable, bad);
                assert!(reason.contains(expected), "{variable}={bad}: {reason}");
            }
        }
    }

    // ---- error messages ------------------------------------------------

    #[test]
    fn error_message_names_variable_and_value() {
        let err = lookup(&[("REDIS_READ_TIMEOUT", "3 seconds")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid REDIS_READ_TIMEOUT=\"3 seconds\": unknown unit \" seconds\" \
             (use ns, us, ms, s, m or h, e.g. 500ms, 5s or 1m30s)"
        );
        let err = lookup(&[("REDIS_POOL_SIZE", "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid REDIS_POOL_SIZE=\"0\": expected a whole number of at least 1"
        );
    }

    #[test]
    fn first_bad_variable_is_reported_and_nothing_is_defaulted() {
        // A bad value never falls back to the default silently.
        let err = lookup(&[("REDIS_DB", "x"), ("REDIS_ADDR", "redis:6379")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                variable: "REDIS_DB",
                ..
            }
        ));
    }

    // ---- URLs ------------------------------------------------------------

    #[test]
    fn good_urls() {
        let config = Config::from_url("redis://127.0.0.1:6379").unwrap();
        assert_eq!(config, Config::default());
        let config = Config::from_url("redis://redis").unwrap();
        assert_eq!(config.addr().to_string(), "redis:6379");
        let config = Config::from_url("redis://:p%40ss%3Aw%2Fd@redis:6380/5").unwrap();
        assert_eq!(config.addr().to_string(), "redis:6380");
        assert_eq!(config.password(), Some("p@ss:w/d"));
        assert_eq!(config.db(), 5);
        let config = Config::from_url("redis://default:secret@redis:6379/").unwrap();
        assert_eq!((config.password(), config.db()), (Some("secret"), 0));
        let config = Config::from_url("redis://:@redis:6379").unwrap();
        assert_eq!(config.password(), None);
        let config = Config::from_url("REDISS://[::1]:7000/1").unwrap();
        assert!(config.tls());
        assert_eq!(config.addr().host(), "::1");
        assert_eq!(config.db(), 1);
        // Unencoded '@', '/', '?' or '#' in the password: the last '@' ends it.
        let config = Config::from_url("redis://:a@b/c?d#e@redis:6379/2").unwrap();
        assert_eq!(config.password(), Some("a@b/c?d#e"));
        assert_eq!(config.db(), 2);
        // An ACL user, with or without a password.
        let config = Config::from_url("redis://app%3A1:secret@redis:6379").unwrap();
        assert_eq!(
            (config.username(), config.password()),
            (Some("app:1"), Some("secret"))
        );
        let config = Config::from_url("redis://app@redis:6379").unwrap();
        assert_eq!((config.username(), config.password()), (Some("app"), None));
        assert_eq!(
            Config::from_url("redis://default:x@redis")
                .unwrap()
                .username(),
            None
        );
    }

    #[test]
    fn acl_user_from_env_and_in_every_connection() {
        let config = lookup(&[("REDIS_USERNAME", " app "), ("REDIS_PASSWORD", "pw")]).unwrap();
        assert_eq!(config.username(), Some("app"));
        let settings = config.connection_info().redis_settings().clone();
        assert_eq!(
            (settings.username(), settings.password()),
            (Some("app"), Some("pw"))
        );
        assert_eq!(lookup(&[("REDIS_USERNAME", " ")]).unwrap().username(), None);
        assert!(
            format!("{config:?}").contains("app"),
            "a user name is not a secret"
        );
    }

    #[test]
    fn bad_urls() {
        for (url, expected) in [
            ("redis:6379", "expected redis://"),
            ("", "expected redis://"),
            ("http://redis:6379", "unsupported scheme"),
            ("unix:///tmp/redis.sock", "unsupported scheme"),
            ("redis://", "missing host"),
            ("redis://:6379", "missing host"),
            ("redis://redis:0", "1 to 65535"),
            ("redis://redis:port", "1 to 65535"),
            ("redis://redis:6379/x", "database number"),
            ("redis://redis:6379/-1", "database number"),
            ("redis://redis:6379/0/1", "database number"),
            ("redis://redis:6379/?protocol=resp3", "query"),
            ("rediss://redis:6379/#insecure", "fragment"),
            ("redis://:%zz@redis:6379", "password: invalid %-escape"),
            ("redis://:%ff@redis:6379", "password: not valid UTF-8"),
            ("redis://::1:6379", "brackets"),
        ] {
            let reason = url_error(url);
            assert!(reason.contains(expected), "{url}: {reason}");
        }
    }

    #[test]
    fn url_errors_never_show_the_password() {
        let err = Config::from_url("redis://:hunter2@redis:6379/x").unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.contains("redis://:<redacted>@redis:6379/x"),
            "{message}"
        );
        assert_eq!(redact_url("redis://redis:6379"), "redis://redis:6379");
        assert_eq!(redact_url("redis://user@redis"), "redis://<redacted>@redis");
        assert_eq!(redact_url("redis://default@redis"), "redis://default@redis");
        assert_eq!(
            redact_url("redis://alice:pa/ss?#@redis/0"),
            "redis://alice:<redacted>@redis/0"
        );
        assert_eq!(redact_url("nonsense"), "nonsense");
        assert_eq!(
            redact_url("redis://:a@b@h/0?x#y"),
            "redis://:<redacted>@h/0?x#y"
        );
    }

    #[test]
    fn redis_url_round_trips() {
        for config in [
            Config::default(),
            Config::builder()
                .addr("[::1]:7000")
                .password("p@ss wörd:/%")
                .db(9)
                .tls(true)
                .build()
                .unwrap(),
            Config::builder()
                .username("app:1")
                .password("pw")
                .build()
                .unwrap(),
            Config::builder().username("app").build().unwrap(),
        ] {
            let url = config.redis_url();
            let back = Config::from_url(&url).unwrap();
            assert_eq!(back, config, "{url}");
        }
        assert_eq!(Config::default().redis_url(), "redis://127.0.0.1:6379/0");
        let config = Config::builder().password("a b").tls(true).build().unwrap();
        assert_eq!(config.redis_url(), "rediss://:a%20b@127.0.0.1:6379/0");
    }

    // ---- builder ---------------------------------------------------------

    #[test]
    fn builder_sets_every_field() {
        let config = Config::builder()
            .addr("redis:6379")
            .cache_addr("cache:6380")
            .tls(true)
            .password("pw")
            .db(1)
            .pool_size(5)
            .dial_timeout(secs(1))
            .read_timeout(ms(200))
            .write_timeout(ms(300))
            .sessions_enabled(false)
            .cache_enabled(false)
            .ratelimit_enabled(false)
            .build()
            .unwrap();
        assert_eq!(config.addr().to_string(), "redis:6379");
        assert_eq!(config.cache_addr().unwrap().to_string(), "cache:6380");
        assert!(config.tls());
        assert_eq!(config.password(), Some("pw"));
        assert_eq!(config.db(), 1);
        assert_eq!(config.pool_size(), 5);
        assert_eq!(config.dial_timeout(), secs(1));
        assert_eq!(config.read_timeout(), ms(200));
        assert_eq!(config.write_timeout(), ms(300));
        assert!(!config.sessions_enabled());
        assert!(!config.cache_enabled());
        assert!(!config.ratelimit_enabled());
        // And back.
        assert_eq!(config.to_builder().build().unwrap(), config);
        let unset = config
            .to_builder()
            .cache_addr("")
            .password("")
            .build()
            .unwrap();
        assert_eq!(unset.cache_addr(), None);
        assert_eq!(unset.password(), None);
    }

    #[test]
    fn builder_validation() {
        let err = Config::builder().pool_size(0).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid REDIS_POOL_SIZE=\"0\": must be at least 1"
        );
        for (variable, builder) in [
            (
                vars::DIAL_TIMEOUT,
                Config::builder().dial_timeout(Duration::ZERO),
            ),
            (
                vars::READ_TIMEOUT,
                Config::builder().read_timeout(Duration::ZERO),
            ),
            (
                vars::WRITE_TIMEOUT,
                Config::builder().write_timeout(Duration::ZERO),
            ),
        ] {
            match builder.build().unwrap_err() {
                ConfigError::Invalid {
                    variable: named,
                    value,
                    reason,
                } => {
                    assert_eq!(named, variable);
                    assert_eq!(value, "0ns");
                    assert!(reason.contains("greater than zero"));
                }
                other => panic!("{other:?}"),
            }
        }
        let err = Config::builder().addr("redis").build().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid REDIS_ADDR=\"redis\": missing port"),
            "{err}"
        );
        let err = Config::builder().cache_addr("cache:x").build().unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { variable: "REDIS_CACHE_ADDR", ref value, .. } if value == "cache:x"),
            "{err:?}"
        );
        assert!(Config::builder()
            .pool_size(1)
            .dial_timeout(Duration::from_nanos(1))
            .build()
            .is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let config = Config::builder().password("hunter2").build().unwrap();
        let debug = format!("{config:?} {:?}", config.to_builder());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("127.0.0.1:6379"), "{debug}");
        let sentinel = Config::builder()
            .sentinel_addrs(["s1:26379", "s2:26379"])
            .sentinel_master("tk-state")
            .sentinel_password("swordfish")
            .build()
            .unwrap();
        let debug = format!("{sentinel:?} {:?}", sentinel.to_builder());
        assert!(!debug.contains("swordfish"), "{debug}");
        assert!(
            debug.contains("sentinel_password: Some(\"<redacted>\")"),
            "{debug}"
        );
        assert!(debug.contains("s1:26379,s2:26379"), "{debug}");
        assert!(debug.contains("topology: Sentinel"), "{debug}");
        assert!(vars::is_secret(vars::SENTINEL_PASSWORD));
        assert!(vars::is_secret(vars::PASSWORD));
        assert!(!vars::is_secret(vars::SENTINEL_MASTER));
    }

    // ---- connection settings ---------------------------------------------

    #[test]
    fn connection_info() {
        let config = Config::builder()
            .addr("redis:6380")
            .cache_addr("[::1]:7000")
            .password("pw")
            .db(4)
            .build()
            .unwrap();
        let info = config.connection_info();
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("redis".into(), 6380));
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().db(), 4);
        assert_eq!(info.redis_settings().username(), None);
        let cache = config.cache_connection_info();
        assert_eq!(cache.addr(), &ConnectionAddr::Tcp("::1".into(), 7000));
        assert_eq!(cache.redis_settings().password(), Some("pw"));
        assert_eq!(cache.redis_settings().db(), 4);
        // Without REDIS_CACHE_ADDR the cache uses the main address.
        let shared = Config::default().cache_connection_info();
        assert_eq!(
            shared.addr(),
            &ConnectionAddr::Tcp("127.0.0.1".into(), 6379)
        );
        assert_eq!(shared.redis_settings().password(), None);
    }

    #[test]
    fn tls_is_recorded_in_the_connection_info() {
        let config = Config::from_url("rediss://redis:6379").unwrap();
        assert!(matches!(
            config.connection_info().addr(),
            ConnectionAddr::TcpTls { host, port: 6379, insecure: false, .. } if host == "redis"
        ));
        assert!(matches!(
            config.cache_connection_info().addr(),
            ConnectionAddr::TcpTls { .. }
        ));
    }

    #[test]
    fn manager_config_applies_timeouts_and_pool_size() {
        let config = Config::builder()
            .dial_timeout(ms(700))
            .read_timeout(ms(800))
            .pool_size(7)
            .build()
            .unwrap();
        let manager = config.manager_config();
        assert_eq!(manager.connection_timeout(), Some(ms(700)));
        assert_eq!(manager.response_timeout(), Some(ms(800)));
        // No getter for the concurrency limit: look at the Debug output.
        let debug = format!("{manager:?}");
        assert!(debug.contains("concurrency_limit: Some(7)"), "{debug}");
    }

    #[tokio::test]
    async fn connecting_with_tls_fails_clearly_without_tls_support() {
        let config = Config::from_url("rediss://:pw@127.0.0.1:1/0").unwrap();
        if config.connection_info().addr().is_supported() {
            // Some other crate enabled the redis crate's TLS support.
            return;
        }
        let cluster = config
            .to_builder()
            .cluster_nodes(["127.0.0.1:1"])
            .build()
            .unwrap();
        let sentinel = config
            .to_builder()
            .sentinel_addrs(["127.0.0.1:1"])
            .sentinel_master("m")
            .build()
            .unwrap();
        for result in [
            config.connect().await,
            config.connect_cache().await,
            cluster.connect().await,
            sentinel.connect().await,
        ] {
            match result {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains("TLS"), "{message}");
                    assert!(message.contains("127.0.0.1:1"), "{message}");
                    assert!(!message.contains("pw"), "{message}");
                }
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("connected without TLS"),
            }
        }
    }

    /// A local port with (very likely) nothing listening.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn unreachable_cluster_or_sentinels_fail_transiently() {
        let node = format!("127.0.0.1:{}", closed_port());
        let quick = Config::builder()
            .dial_timeout(ms(500))
            .read_timeout(ms(500))
            .build()
            .unwrap();
        let cluster = quick
            .to_builder()
            .cluster_nodes([node.as_str()])
            .build()
            .unwrap();
        let sentinel = quick
            .to_builder()
            .sentinel_addrs([node.as_str()])
            .sentinel_master("mymaster")
            .build()
            .unwrap();
        for config in [cluster, sentinel] {
            match config.connect().await {
                Err(err) => assert!(err.is_transient(), "{:?}: {err:?}", config.topology()),
                Ok(conn) => panic!("connected: {conn:?}"),
            }
        }
    }

    #[test]
    fn new_error_messages() {
        assert_eq!(
            ConfigError::Missing {
                variable: vars::SENTINEL_MASTER,
                required_by: vars::SENTINEL_ADDRS
            }
            .to_string(),
            "REDIS_SENTINEL_MASTER must be set when REDIS_SENTINEL_ADDRS is set"
        );
        assert_eq!(
            ConfigError::Conflict {
                first: vars::CLUSTER_NODES,
                second: vars::DB,
                reason: "why".into()
            }
            .to_string(),
            "REDIS_CLUSTER_NODES and REDIS_DB cannot be used together: why"
        );
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a b@:/%"), "a%20b%40%3A%2F%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_decode("%C3%A9%20x").unwrap(), "é x");
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%g0").is_err());
    }
}
