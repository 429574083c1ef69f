//! What becomes of errors: [`CacheErrorPolicy`], the counters behind
//! [`CacheMetrics`], and [`GetOrComputeError`].

use crate::client::Counter;
use crate::error::Error;
use std::fmt;

/// What [`Cache::get_or_compute`](super::Cache::get_or_compute) does with a transient error
/// ([`Error::Connection`], [`Error::Timeout`]; see [`Error::is_transient`]).
///
/// Only `get_or_compute` follows the policy: [`Cache::get`](super::Cache::get), [`Cache::set`](super::Cache::set)
/// and the invalidations always return their errors. Non-transient errors
/// ([`Error::ModuleNotLoaded`], [`Error::Server`],
/// [`Error::InvalidArgument`], [`Error::UnexpectedReply`]) are always
/// returned: they mean a deployment or programming mistake, which must not
/// be hidden behind a cache miss.
///
/// ```
/// use tk_redis::{Cache, CacheErrorPolicy};
/// # fn demo(conn: tk_redis::redis::aio::ConnectionManager) {
/// // Fail the request rather than compute the value when Redis is away.
/// let cache = Cache::new(conn).with_error_policy(CacheErrorPolicy::Error);
/// assert_eq!(cache.error_policy(), CacheErrorPolicy::Error);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CacheErrorPolicy {
    /// Treat the error as a miss (the default): when the lookup fails, the
    /// value is computed and returned, and not stored (Redis was just
    /// unreachable; trying would add another timeout to the request); when
    /// only the store fails, the computed value is returned. Each such error
    /// is counted in [`CacheMetrics::errors_as_misses`].
    ///
    /// The default, because an outage of a cache must not take the
    /// application down: requests get slower, not failed.
    #[default]
    Miss,
    /// Return the error ([`GetOrComputeError::Cache`]), even when the value
    /// was already computed and only storing it failed.
    Error,
}

/// A snapshot of a [`Cache`](super::Cache)'s counters, from [`Cache::metrics`](super::Cache::metrics).
///
/// The counters are shared by clones of the cache (including clones given
/// another policy or timeout) and only ever grow. Every `TK.CACHE.GET`
/// reply counts in exactly one of `hits`, `misses` and `undecodable`; every
/// `TK.CACHE.SET` reply in `stores` or `stores_refused`; every error either
/// in `errors_as_misses` (absorbed by [`CacheErrorPolicy::Miss`]) or in
/// `errors` (returned to the caller). Errors of the compute function of
/// [`Cache::get_or_compute`](super::Cache::get_or_compute) are the application's, and not counted.
///
/// ```no_run
/// # fn demo(cache: &tk_redis::Cache) {
/// let metrics = cache.metrics();
/// let lookups = metrics.hits + metrics.misses + metrics.undecodable;
/// if lookups > 0 {
///     println!("hit rate {:.1} %", 100.0 * metrics.hits as f64 / lookups as f64);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Lookups that found a value (which decoded).
    pub hits: u64,
    /// Lookups that found nothing current.
    pub misses: u64,
    /// Lookups that found a value that did not decode as the requested type
    /// (returned as an error by `get`, so also counted in `errors`;
    /// recomputed and overwritten by `get_or_compute`).
    pub undecodable: u64,
    /// Values stored.
    pub stores: u64,
    /// Stores refused because the user or namespace was invalidated after
    /// the miss whose generation they presented (the value was computed
    /// from data older than the invalidation).
    pub stores_refused: u64,
    /// Transient errors that [`CacheErrorPolicy::Miss`] turned into a miss
    /// (failed lookups) or ignored (failed stores).
    pub errors_as_misses: u64,
    /// Errors returned to the caller, by any method.
    pub errors: u64,
}

/// The live counters behind [`CacheMetrics`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: Counter,
    pub(super) misses: Counter,
    pub(super) undecodable: Counter,
    pub(super) stores: Counter,
    pub(super) stores_refused: Counter,
    pub(super) errors_as_misses: Counter,
    pub(super) errors: Counter,
}

impl Counters {
    pub(super) fn snapshot(&self) -> CacheMetrics {
        CacheMetrics {
            hits: self.hits.get(),
            misses: self.misses.get(),
            undecodable: self.undecodable.get(),
            stores: self.stores.get(),
            stores_refused: self.stores_refused.get(),
            errors_as_misses: self.errors_as_misses.get(),
            errors: self.errors.get(),
        }
    }
}

/// The error of [`Cache::get_or_compute`](super::Cache::get_or_compute): the compute function's own
/// error, or the cache's.
///
/// Kept apart so that the caller always knows which failed, and so that the
/// compute function can use any error type. Both variants display as, and
/// have the source of, the error they hold. To merge them into an
/// application error type that converts from [`Error`], use
/// [`flatten`](GetOrComputeError::flatten):
///
/// ```no_run
/// # use std::time::Duration;
/// # use tk_redis::cache::{Cache, GetOrComputeError, RequestIdentity, NO_QUERY};
/// # #[derive(Debug)] struct AppError;
/// # impl From<tk_redis::Error> for AppError { fn from(_: tk_redis::Error) -> Self { AppError } }
/// # async fn load() -> Result<u32, AppError> { Ok(1) }
/// # async fn demo(cache: Cache) -> Result<u32, AppError> {
/// let identity = RequestIdentity::public("GET", "/stats", NO_QUERY);
/// let stats = cache
///     .get_or_compute("public", "stats", &identity, Duration::from_secs(30), load)
///     .await
///     .map_err(GetOrComputeError::flatten)?;
/// # Ok(stats) }
/// ```
///
/// With `anyhow` or `Box<dyn Error>`, `?` works directly when `E` is a
/// standard error.
#[derive(Debug)]
pub enum GetOrComputeError<E> {
    /// The compute function failed; nothing was stored.
    Compute(E),
    /// The cache failed: always for non-transient errors, and for transient
    /// ones under [`CacheErrorPolicy::Error`].
    Cache(Error),
}

impl<E> GetOrComputeError<E> {
    /// The compute function's error as is, the cache's converted into `E`.
    pub fn flatten(self) -> E
    where
        E: From<Error>,
    {
        match self {
            GetOrComputeError::Compute(err) => err,
            GetOrComputeError::Cache(err) => E::from(err),
        }
    }

    /// The cache's error, if it is one.
    pub fn cache_error(&self) -> Option<&Error> {
        match self {
            GetOrComputeError::Compute(_) => None,
            GetOrComputeError::Cache(err) => Some(err),
        }
    }
}

impl<E: fmt::Display> fmt::Display for GetOrComputeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetOrComputeError::Compute(err) => err.fmt(f),
            GetOrComputeError::Cache(err) => err.fmt(f),
        }
    }
}

impl<E: std::error::Error> std::error::Error for GetOrComputeError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetOrComputeError::Compute(err) => err.source(),
            GetOrComputeError::Cache(err) => std::error::Error::source(err),
        }
    }
}
