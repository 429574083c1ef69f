//! The names of the environment variables read by
//! [`Config::from_env`](super::Config::from_env).
//!
//! They also name the setting in
//! [`ConfigError::Invalid`](super::ConfigError::Invalid) when the value
//! came from the builder.
//!
//! ```
//! use tk_redis::config::{vars, Config, ConfigError};
//!
//! let err = Config::from_lookup(|name| (name == vars::DB).then(|| "x".to_owned())).unwrap_err();
//! assert!(matches!(err, ConfigError::Invalid { variable: vars::DB, .. }));
//! assert!(vars::ALL.contains(&"REDIS_SENTINEL_MASTER"));
//! ```

/// `host:port` of the main instance ([example](self)).
pub const ADDR: &str = "REDIS_ADDR";
/// ACL user name (optional) ([example](self)).
pub const USERNAME: &str = "REDIS_USERNAME";
/// `AUTH` password (optional) ([example](self)).
pub const PASSWORD: &str = "REDIS_PASSWORD";
/// Database number ([example](self)).
pub const DB: &str = "REDIS_DB";
/// Maximum concurrent requests per connection ([example](self)).
pub const POOL_SIZE: &str = "REDIS_POOL_SIZE";
/// Connection timeout ([example](self)).
pub const DIAL_TIMEOUT: &str = "REDIS_DIAL_TIMEOUT";
/// Response timeout ([example](self)).
pub const READ_TIMEOUT: &str = "REDIS_READ_TIMEOUT";
/// Write timeout (validated, not applied separately) ([example](self)).
pub const WRITE_TIMEOUT: &str = "REDIS_WRITE_TIMEOUT";
/// Feature flag for sessions ([example](self)).
pub const SESSIONS_ENABLED: &str = "REDIS_SESSIONS_ENABLED";
/// Feature flag for the cache ([example](self)).
pub const CACHE_ENABLED: &str = "REDIS_CACHE_ENABLED";
/// Feature flag for rate limiting ([example](self)).
pub const RATELIMIT_ENABLED: &str = "REDIS_RATELIMIT_ENABLED";
/// Which tk backend the client types use: `auto`, `module` or `functions` ([example](self)).
pub const TK_MODE: &str = "REDIS_TK_MODE";
/// `host:port` of the cache's own instance (optional) ([example](self)).
pub const CACHE_ADDR: &str = "REDIS_CACHE_ADDR";
/// Comma-separated `host:port` seed nodes of a Redis Cluster (optional) ([example](self)).
pub const CLUSTER_NODES: &str = "REDIS_CLUSTER_NODES";
/// Comma-separated `host:port` of Sentinels (optional) ([example](self)).
pub const SENTINEL_ADDRS: &str = "REDIS_SENTINEL_ADDRS";
/// The primary's name in Sentinel (required with [`SENTINEL_ADDRS`]) ([example](self)).
pub const SENTINEL_MASTER: &str = "REDIS_SENTINEL_MASTER";
/// `AUTH` password of the Sentinels themselves (optional) ([example](self)).
pub const SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";

/// Every variable, in the order above ([example](self)).
pub const ALL: [&str; 17] = [
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
    TK_MODE,
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
