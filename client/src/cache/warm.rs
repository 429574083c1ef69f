//! Cache warming: [`Cache::warm`] stores many of a user's entries ahead of
//! the requests, with the same generation checks as a request's own store.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionLike;
use serde::Serialize;

use super::{check_namespace, check_user, to_json, ttl_ms, Cache, Found, Keys, RequestIdentity};
use crate::error::{Error, Result};

/// What [`Cache::warm`] did, entry by entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmReport {
    /// Entries already visible: left alone, not computed.
    pub present: u64,
    /// Entries computed and stored.
    pub stored: u64,
    /// Entries computed but refused by `IFGEN`: the user or the namespace
    /// was invalidated after the lookup, so the value may be stale.
    pub refused: u64,
    /// Entries whose compute function failed (nothing stored).
    pub compute_failed: u64,
    /// Entries the cache failed on (lookup or store error, or a visible
    /// entry that is not JSON); each error is also counted in
    /// [`CacheMetrics::errors`](super::CacheMetrics::errors).
    pub cache_failed: u64,
}

/// The outcome of one entry of [`Cache::warm`].
enum Warmed {
    Present,
    Stored,
    Refused,
    ComputeFailed,
    CacheFailed,
}

impl<C> Cache<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Precomputes and stores `user`'s entries for `identities` in
    /// `namespace` (cache warming, e.g. after a deploy or for the pages most
    /// users open first), running at most `concurrency` entries at a time.
    ///
    /// Each entry goes through the same steps as
    /// [`get_or_compute`](Cache::get_or_compute): a lookup; an entry already
    /// visible is left alone and `compute` is not called for it; otherwise
    /// `compute(identity)` runs and its value is stored with `ttl` **under
    /// the generation the lookup saw** (`IFGEN`). So warming never
    /// resurrects invalidated data: when the user or the namespace is
    /// invalidated while a value is being computed, that value is refused
    /// ([`WarmReport::refused`]), exactly as for a request's own store.
    ///
    /// Failures do not stop the other entries: each is counted in the
    /// report. Lookups count as cache hits and misses (client and module
    /// counters alike), so warming a cold cache shows as misses.
    ///
    /// Fails before sending anything with [`Error::InvalidArgument`] for a
    /// `concurrency` of 0, an empty user, an invalid namespace or `ttl`.
    ///
    /// ```no_run
    /// # async fn f(cache: tk_redis::Cache) -> tk_redis::Result<()> {
    /// use std::time::Duration;
    /// use tk_redis::cache::{RequestIdentity, NO_QUERY};
    ///
    /// let pages = ["/feed", "/inbox"].map(|path| RequestIdentity::for_user("42", "GET", path, NO_QUERY));
    /// let report = cache
    ///     .warm("42", "http", pages, Duration::from_secs(300), 4, |identity| async move {
    ///         Ok::<_, std::io::Error>(format!("rendered {identity:?}"))
    ///     })
    ///     .await?;
    /// println!("{} stored, {} already cached", report.stored, report.present);
    /// # Ok(()) }
    /// ```
    pub async fn warm<T, E, I, F, Fut>(
        &self,
        user: &str,
        namespace: &str,
        identities: I,
        ttl: Duration,
        concurrency: usize,
        compute: F,
    ) -> Result<WarmReport>
    where
        T: Serialize,
        I: IntoIterator<Item = RequestIdentity>,
        F: Fn(RequestIdentity) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        use futures_util::stream::{self, StreamExt};

        if concurrency == 0 {
            return Err(Error::InvalidArgument(
                "cache warming needs a concurrency of at least 1".to_owned(),
            ));
        }
        check_user(user)?;
        check_namespace(namespace)?;
        let ttl_ms = ttl_ms(ttl)?;
        let compute = &compute;
        let outcomes: Vec<Warmed> = stream::iter(identities)
            .map(|identity| self.warm_one(user, namespace, identity, ttl_ms, compute))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut report = WarmReport::default();
        for outcome in outcomes {
            match outcome {
                Warmed::Present => report.present += 1,
                Warmed::Stored => report.stored += 1,
                Warmed::Refused => report.refused += 1,
                Warmed::ComputeFailed => report.compute_failed += 1,
                Warmed::CacheFailed => report.cache_failed += 1,
            }
        }
        Ok(report)
    }

    /// One entry of [`warm`](Cache::warm).
    async fn warm_one<T, E, F, Fut>(
        &self,
        user: &str,
        namespace: &str,
        identity: RequestIdentity,
        ttl_ms: u64,
        compute: &F,
    ) -> Warmed
    where
        T: Serialize,
        F: Fn(RequestIdentity) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let keys = match Keys::new(user, namespace, &identity) {
            Ok(keys) => keys,
            Err(err) => {
                self.fail(err);
                return Warmed::CacheFailed;
            }
        };
        let generation = match self.lookup(&keys, namespace).await {
            // Any JSON counts as present: the value's type is the reader's
            // business, and overwriting it would race with invalidations.
            Ok(reply) => match self.classify::<serde::de::IgnoredAny>(reply) {
                Found::Hit(_) => return Warmed::Present,
                Found::Undecodable(_) => return Warmed::CacheFailed,
                Found::Miss(generation) => generation,
            },
            Err(err) => {
                self.fail(err);
                return Warmed::CacheFailed;
            }
        };
        let Ok(value) = compute(identity).await else {
            return Warmed::ComputeFailed;
        };
        let stored = match to_json(&value) {
            Ok(json) => {
                self.store(&keys, namespace, ttl_ms, json, Some(&generation))
                    .await
            }
            Err(err) => Err(err),
        };
        match stored {
            Ok(true) => Warmed::Stored,
            Ok(false) => Warmed::Refused,
            Err(err) => {
                self.fail(err);
                Warmed::CacheFailed
            }
        }
    }
}
