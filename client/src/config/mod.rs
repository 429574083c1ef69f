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
//! | `REDIS_TK_MODE` | which tk backend the client types use: `auto` (the module when the server has it, else the Functions library, loaded by the client), `module` (only the module), `functions` (only the library); see [`Config::tk_mode`] | `auto` |
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
//! - Durations use the syntax of the [`humantime`] crate: a sequence of
//!   decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`,
//!   `h`, or a longer spelling such as `sec`, `min`, `hours`, `days`),
//!   optionally separated by spaces, e.g. `5s`, `500ms`, `1.5s`, `1m30s`,
//!   `2h`. A bare integer means seconds (`5` is `5s`), a leading `+` is
//!   allowed and negative values are rejected. Every form of Go's
//!   `time.ParseDuration` that the application used still works (see the
//!   client's CHANGELOG for the rare ones that do not).
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
//! connects to; it returns a [`Connection`](crate::Connection) of the matching variant (see
//! [`crate::connection`] for what each does during a failover):
//!
//! | topology | set | [`Config::connect`] returns |
//! |---|---|---|
//! | [`Topology::Standalone`] | neither of the below (`REDIS_ADDR` is used) | [`Connection::Standalone`](crate::Connection::Standalone), a [`ConnectionManager`](redis::aio::ConnectionManager) |
//! | [`Topology::Cluster`] | `REDIS_CLUSTER_NODES` | [`Connection::Cluster`](crate::Connection::Cluster), a cluster connection that discovers the other nodes from these seeds |
//! | [`Topology::Sentinel`] | `REDIS_SENTINEL_ADDRS` and `REDIS_SENTINEL_MASTER` | [`Connection::Sentinel`](crate::Connection::Sentinel), a connection to the primary that Sentinel names |
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
//! [`ConnectionManager`](redis::aio::ConnectionManager): a single multiplexed connection that pipelines
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
//! [`Error::InvalidArgument`](crate::Error::InvalidArgument) instead of silently connecting in plain text.
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
//!         .with_timeout(config.read_timeout())
//!         .with_tk_mode(config.tk_mode());
//!     # let _ = limiter;
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::connection::Topology;
use crate::functions::TkMode;

mod addr;
mod builder;
mod connect;
mod env;
mod subscribe;
#[cfg(test)]
mod tests;
mod url;
pub mod vars;

pub use addr::Addr;
pub use builder::ConfigBuilder;

/// Default `REDIS_ADDR`. The compose file sets `redis:6379` (see [`Config::default`](Config#example)).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6379";
/// The port used when a URL has none (see [`Config::default`](Config#example)).
pub const DEFAULT_PORT: u16 = 6379;
/// Default `REDIS_DB` (see [`Config::default`](Config#example)).
pub const DEFAULT_DB: u32 = 0;
/// Default `REDIS_POOL_SIZE` (see [`Config::default`](Config#example)).
pub const DEFAULT_POOL_SIZE: usize = 20;
/// Default `REDIS_DIAL_TIMEOUT`: 5 seconds (see [`Config::default`](Config#example)).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `REDIS_READ_TIMEOUT`: 3 seconds (see [`Config::default`](Config#example)).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `REDIS_WRITE_TIMEOUT`: 3 seconds (see [`Config::default`](Config#example)).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Shown instead of a password in error messages.
const REDACTED: &str = "<redacted>";

/// A setting that cannot be used.
///
/// ```
/// use tk_redis::config::{Config, ConfigError};
///
/// let err = Config::from_lookup(|name| match name {
///     "REDIS_CLUSTER_NODES" => Some("redis-1:7000".to_owned()),
///     "REDIS_DB" => Some("3".to_owned()),
///     _ => None,
/// })
/// .unwrap_err();
/// assert!(matches!(err, ConfigError::Conflict { first: "REDIS_CLUSTER_NODES", second: "REDIS_DB", .. }));
/// ```
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

/// A password: `Debug` shows it as `[REDACTED]` ([`secrecy`]), and it is
/// compared by value, so that whole configurations can be compared.
#[derive(Clone)]
struct Password(SecretString);

impl Password {
    /// `None` for the empty string, which means no password.
    fn new(text: String) -> Option<Password> {
        (!text.is_empty()).then(|| Password(text.into()))
    }

    fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Password) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Password {}

/// The settings of a cluster or Sentinel deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct TopologySettings {
    cluster_nodes: Vec<Addr>,
    sentinel_addrs: Vec<Addr>,
    sentinel_master: Option<String>,
}

/// The settings given as values rather than as text to parse; a
/// [`ConfigBuilder`] keeps them as they are set until it checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    tls: bool,
    username: Option<String>,
    password: Option<Password>,
    db: u32,
    pool_size: usize,
    dial_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    sessions_enabled: bool,
    cache_enabled: bool,
    ratelimit_enabled: bool,
    tk_mode: TkMode,
    sentinel_password: Option<Password>,
}

/// The documented defaults.
impl Default for Settings {
    fn default() -> Self {
        Settings {
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
            tk_mode: TkMode::Auto,
            sentinel_password: None,
        }
    }
}

impl TopologySettings {
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

/// Connection settings and feature flags; see the [module docs](self).
///
/// Every `Config` is valid: it comes from [`Config::from_env`],
/// [`Config::from_url`] or [`ConfigBuilder::build`], which all validate.
/// `Debug` output never shows the passwords.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tk_redis::config::{Config, DEFAULT_POOL_SIZE, DEFAULT_READ_TIMEOUT};
/// use tk_redis::Topology;
///
/// let config = Config::default();
/// assert_eq!(config.addr().host(), "127.0.0.1");
/// assert_eq!(config.addr().port(), 6379);
/// assert_eq!(config.pool_size(), DEFAULT_POOL_SIZE);
/// assert_eq!(config.read_timeout(), DEFAULT_READ_TIMEOUT);
/// assert_eq!(config.topology(), Topology::Standalone);
/// assert!(config.sessions_enabled() && config.cache_enabled() && config.ratelimit_enabled());
///
/// let tuned = config.to_builder().read_timeout(Duration::from_millis(200)).build()?;
/// assert_eq!(tuned.read_timeout(), Duration::from_millis(200));
/// # Ok::<(), tk_redis::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    addr: Addr,
    cache_addr: Option<Addr>,
    topology: TopologySettings,
    settings: Settings,
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
            cache_addr: None,
            topology: TopologySettings::default(),
            settings: Settings::default(),
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

impl Config {
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
        self.settings
            .sentinel_password
            .as_ref()
            .map(Password::expose)
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
        self.settings.tls
    }
    /// The ACL user name (`REDIS_USERNAME`), if any; `None` logs in as the
    /// `default` user.
    pub fn username(&self) -> Option<&str> {
        self.settings.username.as_deref()
    }
    /// The password (`REDIS_PASSWORD`), if any.
    pub fn password(&self) -> Option<&str> {
        self.settings.password.as_ref().map(Password::expose)
    }
    /// The database number (`REDIS_DB`).
    pub fn db(&self) -> u32 {
        self.settings.db
    }
    /// The maximum number of concurrent requests per connection
    /// (`REDIS_POOL_SIZE`, >= 1); see the [module docs](self#how-the-settings-map-to-the-redis-crate).
    pub fn pool_size(&self) -> usize {
        self.settings.pool_size
    }
    /// The connection timeout (`REDIS_DIAL_TIMEOUT`, > 0).
    pub fn dial_timeout(&self) -> Duration {
        self.settings.dial_timeout
    }
    /// The per-request response timeout (`REDIS_READ_TIMEOUT`, > 0).
    pub fn read_timeout(&self) -> Duration {
        self.settings.read_timeout
    }
    /// The write timeout (`REDIS_WRITE_TIMEOUT`, > 0). Not applied
    /// separately: see the [module docs](self#how-the-settings-map-to-the-redis-crate).
    pub fn write_timeout(&self) -> Duration {
        self.settings.write_timeout
    }
    /// Whether sessions are enabled (`REDIS_SESSIONS_ENABLED`).
    pub fn sessions_enabled(&self) -> bool {
        self.settings.sessions_enabled
    }
    /// Whether the cache is enabled (`REDIS_CACHE_ENABLED`).
    pub fn cache_enabled(&self) -> bool {
        self.settings.cache_enabled
    }
    /// Whether rate limiting is enabled (`REDIS_RATELIMIT_ENABLED`).
    pub fn ratelimit_enabled(&self) -> bool {
        self.settings.ratelimit_enabled
    }
    /// Which tk backend the client types use (`REDIS_TK_MODE`: `auto`,
    /// `module` or `functions`, in any case; default `auto`). Pass it to
    /// each client type, as the timeout:
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use tk_redis::{Config, RateLimiter};
    ///
    /// let config = Config::from_env()?;
    /// let limiter = RateLimiter::new(config.connect().await?)
    ///     .with_timeout(config.read_timeout())
    ///     .with_tk_mode(config.tk_mode());
    /// # let _ = limiter;
    /// # Ok(()) }
    /// ```
    ///
    /// - [`TkMode::Auto`]: on its first call, a client asks the server
    ///   whether the tk module is loaded; if not, it loads the tk Functions
    ///   library ([`crate::functions`]) when missing or older, and sends
    ///   `FCALL`s from then on. An app pointed at a managed Redis without
    ///   the module works unchanged.
    /// - [`TkMode::Module`]: always the `TK.*` commands; a server without
    ///   the module answers [`Error::ModuleNotLoaded`](crate::Error::ModuleNotLoaded).
    /// - [`TkMode::Functions`]: always the library, even when the module
    ///   is loaded.
    ///
    /// When the library is needed but cannot be used (ACL, Redis before
    /// 7.0), calls fail with [`Error::NoBackend`](crate::Error::NoBackend),
    /// which says what to grant.
    pub fn tk_mode(&self) -> TkMode {
        self.settings.tk_mode
    }
}
