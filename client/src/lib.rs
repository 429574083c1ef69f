//! Async Rust client for the **tk** Redis module, and for everything else
//! the app keeps in Redis.
//!
//! The tk module runs rate limiting, sessions, locks and caching
//! atomically inside Redis. This crate is the typed,
//! application-facing side: it builds the module's `TK.*` commands, parses
//! their replies strictly and maps failures to a typed [`Error`]. It also
//! covers the app's plain-Redis needs:
//!
//! | need | type | Redis side |
//! |---|---|---|
//! | settings from `REDIS_*` variables, a builder or a URL | [`Config`] | — |
//! | one connection type for standalone, Cluster and Sentinel deployments | [`Connection`], [`Topology`] | — |
//! | rate limiting, with an explicit policy when Redis is down | [`RateLimiter`], [`FailurePolicy`] | `TK.RATELIMIT*` |
//! | a single-instance lock with fencing tokens | [`Lock`], [`LockGuard`] | `TK.LOCK.*` |
//! | per-user response cache with instant invalidation | [`Cache`], [`RequestIdentity`] | `TK.CACHE.*` |
//! | login sessions: touch, versioned updates, rotation, per-user caps, log out everywhere | [`SessionStore`], [`SessionToken`] | `TK.SESSION.*` |
//! | challenge leaderboards | [`Leaderboard`] | a sorted set |
//! | typed pub/sub that survives reconnects and failovers | [`Publisher`], [`Config::subscribe`], [`pubsub::subscribe`] | channels |
//! | `/health` with 200/503 mapping and counters | [`health::check`] | PING + INFO |
//! | tower/axum middleware: rate limiting with `RateLimit` headers, sessions behind a cookie, per-user response caching (feature `axum`) | `tk_redis::http`: `RateLimitLayer`, `SessionLayer`, `CurrentSession`, `CacheLayer` | all of the above |
//!
//! It is built on the [`redis`] crate and works with any of its async
//! connections: the `new` constructors accept any cloneable connection.
//! [`Config::connect`] returns a [`Connection`], which talks to a
//! standalone Redis (a self-reconnecting
//! [`redis::aio::ConnectionManager`]), a Redis Cluster or a
//! Sentinel-managed primary, chosen by `REDIS_CLUSTER_NODES` /
//! `REDIS_SENTINEL_ADDRS` (see [`connection`] for what happens during a
//! failover: nothing is ever sent twice, since `TK.*` commands are not
//! idempotent). [`RateLimiter::connect`] takes a URL and uses a
//! `ConnectionManager`. Every call has a timeout (3 s by default,
//! [`DEFAULT_TIMEOUT`]).
//!
//! # Rate limiting
//!
//! ```no_run
//! use tk_redis::{Error, Quota, RateLimiter};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let limiter = RateLimiter::connect("redis://127.0.0.1:6379/").await?;
//!
//!     // 100 requests per minute, at most 20 at once.
//!     let quota = Quota::per_minute(100).burst(20);
//!
//!     // The key is used as-is: namespace it yourself (see `tk_redis::keys`).
//!     let decision = limiter.check("rl:api:user:42", &quota, 1).await?;
//!     if decision.allowed {
//!         println!("200 OK ({} left)", decision.remaining);
//!     } else {
//!         // HTTP 429 with the whole number of seconds to wait, rounded up.
//!         let retry_after: u64 = decision.retry_after_secs();
//!         println!("429 Too Many Requests\r\nRetry-After: {retry_after}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Several limits can be checked together, all-or-nothing, with
//! [`RateLimiter::check_all`]; [`RateLimiter::peek`] asks without consuming
//! and [`RateLimiter::reset`] forgets a key's state.
//!
//! # Keys
//!
//! Keys are sent exactly as given; nothing is prefixed automatically. The
//! [`keys`] module has helpers for a consistent namespace (`tk:rl:...`). On
//! Redis Cluster, keys used together in one call need a common hash tag;
//! [`Connection`] routes every `TK.*` command to the primary of its first
//! key's slot.
//!
//! # Errors
//!
//! Every call returns [`Result`]. The variants tell apart what to do:
//!
//! - [`Error::ModuleNotLoaded`]: the server does not know `TK.*` commands.
//!   Load the module: start `redis-server --loadmodule /path/to/libtk_redis.so`
//!   or run `MODULE LOAD /path/to/libtk_redis.so`. The error's message says so.
//!   Only in [`TkMode::Module`]: by default ([`TkMode::Auto`]) a server
//!   without the module is served by the tk Functions library, which the
//!   client loads itself ([`functions`]).
//! - [`Error::NoBackend`]: neither the module nor the Functions library can
//!   be used (an ACL refusing `FCALL` or `FUNCTION LOAD`, a server without
//!   Functions); the message says what to grant.
//! - [`Error::Server`]: the command was refused, with the reply's code
//!   (`ERR` for invalid arguments, `WRONGTYPE` when the key holds another
//!   type or another algorithm's state) and message.
//! - [`Error::Connection`] / [`Error::Timeout`]: transient
//!   ([`Error::is_transient`]). The rate limiter turns these into a decision
//!   by its [`FailurePolicy`] (fail open by default, counted in
//!   [`RateLimiter::metrics`]); every other feature returns them.
//!   Every call has a timeout, 3 s by default ([`RateLimiter::with_timeout`]).
//! - [`Error::InvalidQuota`] / [`Error::InvalidArgument`]: rejected before
//!   sending.
//! - [`Error::UnexpectedReply`]: the reply's shape was not the documented
//!   one (client and module versions disagree).
//!
//! ```no_run
//! # async fn demo(limiter: tk_redis::RateLimiter) {
//! use tk_redis::{Error, Quota};
//!
//! // Login attempts must not become unlimited while Redis is away.
//! let limiter = limiter.with_failure_policy(tk_redis::FailurePolicy::FailClosed);
//! match limiter.check("rl:login:10.0.0.1", &Quota::per_minute(5), 1).await {
//!     Ok(decision) if decision.fallback => println!("redis unavailable: refused by policy"),
//!     Ok(decision) => println!("allowed: {}", decision.allowed),
//!     Err(err @ Error::ModuleNotLoaded { .. }) => panic!("deployment problem: {err}"),
//!     Err(err) => println!("refused: {err}"),
//! }
//! # }
//! ```

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod backoff;
pub mod cache;
mod client;
pub mod config;
pub mod connection;
mod error;
pub mod functions;
pub mod health;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod http;
pub mod keys;
pub mod leaderboard;
pub mod lock;
pub mod pubsub;
mod ratelimit;
mod reply;
pub mod session;
pub mod telemetry;
#[cfg(test)]
mod test_support;

pub use cache::{
    Cache, CacheErrorPolicy, CacheMetrics, Generation, GetOrComputeError, Lookup, RequestIdentity,
    WarmReport,
};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use connection::{Connection, SentinelConnection, Topology};
pub use error::{Error, Result};
pub use functions::{Backend, TkMode};
pub use health::{Health, HealthOptions, Status as HealthStatus};
pub use leaderboard::{leaderboard_key, Entry as LeaderboardEntry, Leaderboard};
pub use lock::{Lock, LockGuard};
pub use pubsub::{Channel, Event, Publisher, Subscription};
pub use ratelimit::{
    Algorithm, AllDecision, Decision, FailurePolicy, Quota, RateLimitMetrics, RateLimiter,
    DEFAULT_TIMEOUT, FAIL_CLOSED_RETRY_AFTER,
};
pub use session::{
    is_session_limit, CapPolicy, Session, SessionInfo, SessionOptions, SessionStore, SessionToken,
    TouchOptions, UpdateOutcome,
};

/// The [`redis`] crate this client is built on, re-exported so that
/// applications can build connections with the exact same version.
pub use redis;
