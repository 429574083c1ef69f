//! Per-user response caching with instant invalidation: a [`Cache`] on the
//! module's `TK.CACHE.*` commands, keyed by a [`RequestIdentity`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tk_redis::cache::{Cache, GetOrComputeError, RequestIdentity};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Dashboard { unread: u32 }
//!
//! #[derive(Debug)]
//! enum AppError { Db(String), Cache(tk_redis::Error) }
//!
//! impl From<tk_redis::Error> for AppError {
//!     fn from(err: tk_redis::Error) -> Self { AppError::Cache(err) }
//! }
//!
//! async fn load_dashboard(user: &str) -> Result<Dashboard, AppError> {
//!     // ... the database queries ...
//! # let _ = user; Err(AppError::Db("unreachable".into()))
//! }
//!
//! async fn get_dashboard(cache: &Cache, user: &str, page: &str) -> Result<Dashboard, AppError> {
//!     // The user is part of the identity: this response is private.
//!     let identity = RequestIdentity::for_user(user, "GET", "/api/dashboard", [("page", page)]);
//!     cache
//!         .get_or_compute(user, "dashboard", &identity, Duration::from_secs(60), || {
//!             load_dashboard(user)
//!         })
//!         .await
//!         // Compute errors come back as they are, cache errors through `From`.
//!         .map_err(GetOrComputeError::flatten)
//! }
//!
//! async fn mark_all_read(cache: &Cache, user: &str) -> Result<(), AppError> {
//!     // ... write to the database, then:
//!     cache.invalidate_namespace(user, "dashboard").await?;
//!     Ok(())
//! }
//! ```
//!
//! # The user is part of every key
//!
//! A cache that ignores who asked serves one user's private page to
//! another: the first user's dashboard, cached under `GET /api/dashboard`,
//! would be the answer to everyone requesting `GET /api/dashboard`. So the
//! user appears twice:
//!
//! - every call takes the `user` it caches for, which selects the user's
//!   keys ([`entry_key`], [`generations_key`], [`index_key`]) and their
//!   invalidation generation;
//! - the [`RequestIdentity`] of an authenticated response is built with
//!   [`RequestIdentity::for_user`], which hashes the user id into the
//!   identity itself, and the cache refuses
//!   ([`Error::InvalidArgument`]) to use it for any other user.
//!
//! [`RequestIdentity::public`] is for responses that are byte-for-byte the
//! same for every user (a public catalogue page), and only for them. Public
//! identities still live under the `user` given to the call: to share one
//! entry between all users, pass one fixed scope name as `user`, e.g.
//! `"public"` (then `invalidate_user("public")` drops them all).
//!
//! An empty user id is refused ([`Error::InvalidArgument`]): it is almost
//! always an id that failed to load, and caching under it would share
//! entries between everyone whose id is missing.
//!
//! # Keys and Redis Cluster
//!
//! All keys of one user share one hash tag, [`user_tag`] (the first 16 hex
//! digits of the SHA-256 of the user id), so they live in one Cluster slot
//! and every command touches a single slot:
//!
//! | key | format |
//! |---|---|
//! | generations | `tk:cg:{<tag>}` |
//! | index | `tk:ci:{<tag>}` |
//! | entry | `tk:c:{<tag>}:<namespace>:<64 hex digits of the identity's SHA-256>` |
//!
//! A namespace groups entries to invalidate together (e.g. `dashboard`,
//! `search`): 1 to [`MAX_NAMESPACE_LEN`] bytes of `A-Z`, `a-z`, `0-9`, `_`,
//! `.` and `-`.
//!
//! # Invalidation without races
//!
//! The module keeps, per user, a user generation and one generation per
//! namespace. [`Cache::invalidate_user`] bumps the user's generation (every
//! namespace becomes invisible at once) and
//! [`Cache::invalidate_namespace`] one namespace's. An entry is only visible
//! while the generations it was stored under are current.
//!
//! A miss ([`Lookup::Miss`]) carries the [`Generation`] current at the time
//! of the lookup. [`Cache::get_or_compute`] stores the value it computed
//! with `IFGEN <that generation>`, and the module refuses the store if an
//! invalidation happened in between: a value computed from data read before
//! an invalidation is never cached after it.
//!
//! # When Redis is unavailable
//!
//! The [`CacheErrorPolicy`] of [`Cache::get_or_compute`] is
//! [`Miss`](CacheErrorPolicy::Miss) by default: a transient error
//! ([`Error::is_transient`]) is treated as a miss, the value is computed and
//! returned. All other errors ([`Error::ModuleNotLoaded`],
//! [`Error::Server`], [`Error::InvalidArgument`],
//! [`Error::UnexpectedReply`]) are returned whatever the policy, and
//! [`Cache::get`], [`Cache::set`] and the invalidations always return
//! their errors. Nothing is swallowed silently: every error absorbed by the
//! policy is counted in [`CacheMetrics::errors_as_misses`], every error
//! returned in [`CacheMetrics::errors`].
//!
//! Every command waits at most [`Cache::timeout`] (3 s by default). For a
//! cache, a shorter timeout is usually better (e.g. 200 ms with
//! [`Cache::with_timeout`]): under the `Miss` policy an unreachable Redis
//! then costs each request that much before the value is computed.
//!
//! # Connections
//!
//! Use the cache's own instance when there is one
//! ([`Config::connect_cache`](crate::Config::connect_cache), from
//! `REDIS_CACHE_ADDR`): a cache instance usually runs with
//! `maxmemory-policy allkeys-lru`, which must not hold sessions or rate
//! limits.
//!
//! # Values
//!
//! Values are stored as JSON (`serde_json`). A cached value that no longer
//! decodes as the requested type (e.g. written by an older version of the
//! application) is reported by [`Cache::get`] as
//! [`Error::UnexpectedReply`] and recomputed by [`Cache::get_or_compute`];
//! both count it in [`CacheMetrics::undecodable`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::args;
use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::reply::{undecodable, Count, Flag};
use crate::telemetry;

mod identity;
mod keys;
mod lookup;
mod policy;
#[cfg(test)]
mod tests;
mod warm;

pub use identity::*;
pub use keys::*;
pub use lookup::*;
pub use policy::*;
pub use warm::WarmReport;

/// `TK.CACHE.GET <entry_key> <gen_key> <namespace>` (read-only).
pub(crate) const CMD_GET: &str = "TK.CACHE.GET";
/// `TK.CACHE.SET <entry_key> <gen_key> <index_key> <namespace> <ttl_ms> <value> [IFGEN <token>]`.
pub(crate) const CMD_SET: &str = "TK.CACHE.SET";
/// `TK.CACHE.INVALIDATEUSER <gen_key> <index_key>`.
pub(crate) const CMD_INVALIDATE_USER: &str = "TK.CACHE.INVALIDATEUSER";
/// `TK.CACHE.INVALIDATENS <gen_key> <index_key> <namespace>`.
pub(crate) const CMD_INVALIDATE_NAMESPACE: &str = "TK.CACHE.INVALIDATENS";

/// The prefix of a user's generations key ([`generations_key`]).
pub const GENERATIONS_PREFIX: &str = tk_redis_core::keys::CACHE_GENERATIONS_PREFIX;
/// The prefix of a user's index key ([`index_key`]).
pub const INDEX_PREFIX: &str = tk_redis_core::keys::CACHE_INDEX_PREFIX;
/// The prefix of entry keys ([`entry_key`]).
pub const ENTRY_PREFIX: &str = tk_redis_core::keys::CACHE_ENTRY_PREFIX;

/// The longest TTL the module accepts for an entry: 7 days.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tk_redis::cache::MAX_TTL, Duration::from_secs(7 * 24 * 3600));
/// ```
pub const MAX_TTL: Duration = Duration::from_millis(tk_redis_core::cache::MAX_TTL_MS);

/// The longest namespace, in bytes.
///
/// ```
/// use tk_redis::cache::{entry_key, RequestIdentity, MAX_NAMESPACE_LEN, NO_QUERY};
/// let identity = RequestIdentity::public("GET", "/", NO_QUERY);
/// assert!(entry_key("u", &"n".repeat(MAX_NAMESPACE_LEN), &identity).is_ok());
/// assert!(entry_key("u", &"n".repeat(MAX_NAMESPACE_LEN + 1), &identity).is_err());
/// ```
pub const MAX_NAMESPACE_LEN: usize = tk_redis_core::cache::MAX_NAMESPACE_LEN;

/// An empty query string, for [`RequestIdentity::for_user`] and
/// [`RequestIdentity::public`]:
///
/// ```
/// use tk_redis::cache::{RequestIdentity, NO_QUERY};
/// let identity = RequestIdentity::public("GET", "/api/catalogue", NO_QUERY);
/// # let _ = identity;
/// ```
pub const NO_QUERY: [(&str, &str); 0] = [];

// ---- the cache ----------------------------------------------------------------

/// Caches JSON values per user, on the module's `TK.CACHE.*` commands.
/// Cloning is cheap and shares the connection and the counters.
///
/// Generic over the connection like [`RateLimiter`](crate::RateLimiter): by
/// default a [`ConnectionManager`] ([`Cache::connect`]), or any cloneable
/// async connection ([`Cache::new`]), cluster connections included (the
/// keys of one call share a hash slot). Every command waits at most
/// [`timeout`](Cache::timeout) (default
/// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT), 3 s) and then fails with
/// [`Error::Timeout`].
///
/// See the [module docs](self) for keys, invalidation and error handling.
#[derive(Clone)]
pub struct Cache<C = ConnectionManager> {
    core: ClientCore<C>,
    error_policy: CacheErrorPolicy,
    counters: Arc<Counters>,
}

impl<C> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core
            .debug_struct(f, "Cache")
            .field("error_policy", &self.error_policy)
            .finish_non_exhaustive()
    }
}

impl Cache<ConnectionManager> {
    crate::client::connect_constructor!();
}

impl<C> Cache<C> {
    /// Wraps an existing connection, with the default timeout, the default
    /// error policy ([`CacheErrorPolicy::Miss`]) and new counters.
    pub fn new(conn: C) -> Self {
        Cache {
            core: ClientCore::new(conn),
            error_policy: CacheErrorPolicy::default(),
            counters: Arc::default(),
        }
    }

    crate::client::core_accessors!();
    crate::client::tk_mode_accessors!();

    /// Sets what [`get_or_compute`](Cache::get_or_compute) does with
    /// transient errors (see [`CacheErrorPolicy`]). The counters stay shared
    /// with the cache this one was cloned from.
    #[must_use]
    pub fn with_error_policy(mut self, policy: CacheErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// The error policy.
    pub fn error_policy(&self) -> CacheErrorPolicy {
        self.error_policy
    }

    /// A snapshot of the counters, shared by all clones of this cache. See
    /// [`CacheMetrics`].
    pub fn metrics(&self) -> CacheMetrics {
        self.counters.snapshot()
    }

    /// Counts an error returned to the caller.
    fn fail(&self, err: Error) -> Error {
        self.counters.errors.bump();
        telemetry::cache_error(false);
        err
    }

    /// Counts the error, if any, of a result returned to the caller.
    fn count<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|err| self.fail(err))
    }

    /// Applies the error policy of `get_or_compute` to `err`: `Ok` when it
    /// is absorbed as a miss, the error to return otherwise. Counted either
    /// way.
    fn absorb<E>(&self, err: Error) -> Result<(), GetOrComputeError<E>> {
        if err.is_transient() && self.error_policy == CacheErrorPolicy::Miss {
            self.counters.errors_as_misses.bump();
            telemetry::cache_error(true);
            Ok(())
        } else {
            Err(GetOrComputeError::Cache(self.fail(err)))
        }
    }

    /// Decodes a lookup's reply, counting it.
    fn classify<T: DeserializeOwned>(&self, reply: GetReply) -> Found<T> {
        let counters = &*self.counters;
        match reply {
            GetReply::Hit(json) => match serde_json::from_slice(&json) {
                Ok(value) => {
                    counters.hits.bump();
                    telemetry::cache_hit();
                    Found::Hit(value)
                }
                Err(err) => {
                    counters.undecodable.bump();
                    Found::Undecodable(err)
                }
            },
            GetReply::Miss(generation) => {
                counters.misses.bump();
                telemetry::cache_miss();
                Found::Miss(generation)
            }
        }
    }
}

/// A lookup's reply, decoded.
enum Found<T> {
    Hit(T),
    Undecodable(serde_json::Error),
    Miss(Generation),
}

/// How `get_or_compute` stores what it computed.
enum Store {
    /// Only if the generations are still those of the miss.
    IfGeneration(Generation),
    /// Under the current generations (replacing an undecodable value: a hit
    /// carries no generation to condition on).
    Unconditionally,
    /// Not at all (the lookup failed).
    Skip,
}

impl<C> Cache<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Looks up `user`'s entry for `identity` in `namespace`
    /// (`TK.CACHE.GET`, read-only).
    ///
    /// A miss carries the current [`Generation`]: pass it to
    /// [`set`](Cache::set) with the value computed now. A cached value that
    /// does not decode as `T` fails with [`Error::UnexpectedReply`] (and is
    /// counted in [`CacheMetrics::undecodable`]).
    ///
    /// Fails with [`Error::InvalidArgument`], before sending anything, for
    /// an empty user, an invalid namespace or an identity built for another
    /// user. The [`CacheErrorPolicy`] does not apply: every error is
    /// returned.
    pub async fn get<T: DeserializeOwned>(
        &self,
        user: &str,
        namespace: &str,
        identity: &RequestIdentity,
    ) -> Result<Lookup<T>> {
        let result = async {
            let keys = Keys::new(user, namespace, identity)?;
            let reply = self.lookup(&keys, namespace).await?;
            match self.classify(reply) {
                Found::Hit(value) => Ok(Lookup::Hit(value)),
                Found::Miss(generation) => Ok(Lookup::Miss(generation)),
                Found::Undecodable(err) => Err(undecodable(CMD_GET, VALUE, &err)),
            }
        }
        .await;
        self.count(result)
    }

    /// Stores `value` as JSON for `ttl` as `user`'s entry for `identity` in
    /// `namespace` (`TK.CACHE.SET`). Returns `false` when the store was
    /// refused as stale: `if_generation` is older than the current
    /// generations, i.e. the user or the namespace was invalidated after the
    /// miss that returned it, so the value may be computed from outdated
    /// data.
    ///
    /// Without `if_generation` the value is stored under the current
    /// generations, whatever happened before: only do that for a value
    /// known to be current.
    ///
    /// `ttl` is sent in whole milliseconds, rounded up, and must be between
    /// 1 ms and [`MAX_TTL`]. Invalid arguments (see [`get`](Cache::get)), and
    /// a value that cannot be serialized as JSON, fail with
    /// [`Error::InvalidArgument`] before anything is sent. The
    /// [`CacheErrorPolicy`] does not apply: every error is returned.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        user: &str,
        namespace: &str,
        identity: &RequestIdentity,
        value: &T,
        ttl: Duration,
        if_generation: Option<&Generation>,
    ) -> Result<bool> {
        let result = async {
            let keys = Keys::new(user, namespace, identity)?;
            let ttl_ms = ttl_ms(ttl)?;
            let json = to_json(value)?;
            self.store(&keys, namespace, ttl_ms, json, if_generation)
                .await
        }
        .await;
        self.count(result)
    }

    /// Returns the cached value of `user`'s entry for `identity` in
    /// `namespace`, or computes it with `compute`, caches it for `ttl` and
    /// returns it.
    ///
    /// On a miss, the value is stored with the generation of the miss
    /// (`IFGEN`): if `user` or `namespace` is invalidated while `compute`
    /// runs, the store is refused ([`CacheMetrics::stores_refused`]) and the
    /// computed value is still returned. A cached value that does not decode
    /// as `T` is treated as a miss: recomputed and overwritten
    /// ([`CacheMetrics::undecodable`]). That overwrite is unconditional, as
    /// a hit carries no generation: an invalidation landing while that one
    /// value is recomputed is missed for it until its `ttl` runs out.
    ///
    /// Transient errors follow the [`CacheErrorPolicy`] (by default they
    /// count as a miss); other errors are returned as
    /// [`GetOrComputeError::Cache`], even when the value was computed and
    /// only storing it failed. Arguments are checked first, as for
    /// [`set`](Cache::set), so an invalid call never runs `compute`. An
    /// error of `compute` is returned as [`GetOrComputeError::Compute`] and
    /// nothing is stored.
    ///
    /// The call takes up to one timeout for the lookup, plus `compute`, plus
    /// one timeout for the store.
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        user: &str,
        namespace: &str,
        identity: &RequestIdentity,
        ttl: Duration,
        compute: F,
    ) -> Result<T, GetOrComputeError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (keys, ttl_ms) =
            match Keys::new(user, namespace, identity).and_then(|keys| Ok((keys, ttl_ms(ttl)?))) {
                Ok(prepared) => prepared,
                Err(err) => return Err(GetOrComputeError::Cache(self.fail(err))),
            };
        let store = match self.lookup(&keys, namespace).await {
            Ok(reply) => match self.classify(reply) {
                Found::Hit(value) => return Ok(value),
                Found::Miss(generation) => Store::IfGeneration(generation),
                Found::Undecodable(_) => Store::Unconditionally,
            },
            Err(err) => {
                self.absorb(err)?;
                Store::Skip
            }
        };
        let value = compute().await.map_err(GetOrComputeError::Compute)?;
        let if_generation = match store {
            Store::IfGeneration(generation) => Some(generation),
            Store::Unconditionally => None,
            Store::Skip => return Ok(value),
        };
        let stored = match to_json(&value) {
            Ok(json) => {
                self.store(&keys, namespace, ttl_ms, json, if_generation.as_ref())
                    .await
            }
            Err(err) => Err(err),
        };
        match stored {
            Ok(_) => Ok(value),
            Err(err) => self.absorb(err).map(|()| value),
        }
    }

    /// Invalidates all of `user`'s entries, in every namespace, at once
    /// (`TK.CACHE.INVALIDATEUSER`). Returns the user's new generation.
    ///
    /// Every error is returned (the [`CacheErrorPolicy`] does not apply).
    /// After a transient error the invalidation may or may not have
    /// happened: retry it, or stale entries may be served until they
    /// expire.
    pub async fn invalidate_user(&self, user: &str) -> Result<u64> {
        let result = async {
            let (generations, index) = Keys::of_user(user)?;
            let mut cmd = redis::cmd(CMD_INVALIDATE_USER);
            cmd.arg(generations).arg(index);
            let Count(generation) = self.core.query(CMD_INVALIDATE_USER, &cmd).await?;
            Ok(generation)
        }
        .await;
        self.count(result)
    }

    /// Invalidates `user`'s entries in `namespace` only
    /// (`TK.CACHE.INVALIDATENS`). Returns the namespace's new generation.
    ///
    /// Errors as for [`invalidate_user`](Cache::invalidate_user); an invalid
    /// namespace fails with [`Error::InvalidArgument`] before sending.
    pub async fn invalidate_namespace(&self, user: &str, namespace: &str) -> Result<u64> {
        let result = async {
            let (generations, index) = Keys::of_user(user)?;
            check_namespace(namespace)?;
            let mut cmd = redis::cmd(CMD_INVALIDATE_NAMESPACE);
            cmd.arg(generations).arg(index).arg(namespace);
            let Count(generation) = self.core.query(CMD_INVALIDATE_NAMESPACE, &cmd).await?;
            Ok(generation)
        }
        .await;
        self.count(result)
    }

    /// `TK.CACHE.GET <entry_key> <gen_key> <namespace>`.
    async fn lookup(&self, keys: &Keys, namespace: &str) -> Result<GetReply> {
        let mut cmd = redis::cmd(CMD_GET);
        cmd.arg(&keys.entry).arg(&keys.generations).arg(namespace);
        self.core.query(CMD_GET, &cmd).await
    }

    /// `TK.CACHE.SET <entry_key> <gen_key> <index_key> <namespace> <ttl_ms>
    /// <value> [IFGEN <token>]`, counting the outcome.
    async fn store(
        &self,
        keys: &Keys,
        namespace: &str,
        ttl_ms: u64,
        json: Vec<u8>,
        if_generation: Option<&Generation>,
    ) -> Result<bool> {
        let mut cmd = redis::cmd(CMD_SET);
        cmd.arg(&keys.entry)
            .arg(&keys.generations)
            .arg(&keys.index)
            .arg(namespace)
            .arg(ttl_ms)
            .arg(json);
        if let Some(generation) = if_generation {
            cmd.arg("IFGEN").arg(generation.to_string());
        }
        let Flag(stored) = self.core.query(CMD_SET, &cmd).await?;
        if stored {
            self.counters.stores.bump();
        } else {
            self.counters.stores_refused.bump();
        }
        Ok(stored)
    }
}

/// What a cached value is called in errors.
const VALUE: &str = "the cached value";

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    args::to_json(value, "the value to cache")
}
