//! Async Rust client for the **tk** Redis module.
//!
//! The tk module runs rate limiting (and, in later releases, sessions,
//! caching and locks) atomically inside Redis. This crate is the typed,
//! application-facing side: it builds the module's `TK.*` commands, parses
//! their replies strictly and maps failures to a typed [`Error`].
//!
//! It is built on the [`redis`] crate and works with any of its async
//! connections: [`RateLimiter::connect`] uses a self-reconnecting
//! [`redis::aio::ConnectionManager`], and [`RateLimiter::new`] accepts any
//! cloneable connection, including [`redis::cluster_async::ClusterConnection`].
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
//! Redis Cluster, keys used together in one call need a common hash tag.
//!
//! # Errors
//!
//! Every call returns [`Result`]. The variants tell apart what to do:
//!
//! - [`Error::ModuleNotLoaded`]: the server does not know `TK.*` commands.
//!   Load the module: start `redis-server --loadmodule /path/to/libtk_redis.so`
//!   or run `MODULE LOAD /path/to/libtk_redis.so`. The error's message says so.
//! - [`Error::Server`]: the command was refused, with the reply's code
//!   (`ERR` for invalid arguments, `WRONGTYPE` when the key holds another
//!   type or another algorithm's state) and message.
//! - [`Error::Connection`] / [`Error::Timeout`]: transient
//!   ([`Error::is_transient`]); decide whether to fail open or closed.
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
//! match limiter.check("rl:login:10.0.0.1", &Quota::per_minute(5), 1).await {
//!     Ok(decision) => println!("allowed: {}", decision.allowed),
//!     Err(err @ Error::ModuleNotLoaded { .. }) => panic!("deployment problem: {err}"),
//!     Err(err) if err.is_transient() => println!("redis unavailable, failing open: {err}"),
//!     Err(err) => println!("refused: {err}"),
//! }
//! # }
//! ```

#![warn(missing_docs)]

mod error;
mod exec;
pub mod keys;
mod ratelimit;
mod reply;

pub use error::{Error, Result};
pub use ratelimit::{Algorithm, AllDecision, Decision, Quota, RateLimiter, DEFAULT_TIMEOUT};

/// The [`redis`] crate this client is built on, re-exported so that
/// applications can build connections with the exact same version.
pub use redis;
