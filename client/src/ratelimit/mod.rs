//! Rate limiting: [`Quota`], [`Decision`] and the [`RateLimiter`] that runs
//! the module's `TK.RATELIMIT*` commands, with its [`FailurePolicy`] for
//! when Redis is unreachable and its [`RateLimitMetrics`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::Cmd;

use crate::client::{ClientCore, Counter};
use crate::error::{Error, Result};
use crate::reply::Count;
use crate::telemetry;

mod decision;
mod quota;
#[cfg(test)]
mod tests;

pub use decision::*;
pub use quota::*;

/// `TK.RATELIMIT`: consume and decide.
pub(crate) const CMD_CHECK: &str = "TK.RATELIMIT";
/// `TK.RATELIMIT.PEEK`: decide without consuming (read-only).
pub(crate) const CMD_PEEK: &str = "TK.RATELIMIT.PEEK";
/// `TK.RATELIMIT.RESET`: delete limiter state.
pub(crate) const CMD_RESET: &str = "TK.RATELIMIT.RESET";
/// `TK.RATELIMIT.ALL`: several limits, all-or-nothing.
pub(crate) const CMD_ALL: &str = "TK.RATELIMIT.ALL";

/// The default per-call timeout of a [`RateLimiter`]: 3 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The `retry_after` (and `reset_after`) of the refusal made by
/// [`FailurePolicy::FailClosed`] when Redis is unreachable: 1 second, so
/// clients retry soon and are admitted again as soon as Redis is back.
pub const FAIL_CLOSED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a [`RateLimiter`] answers when Redis cannot be asked: the call
/// failed with a transient error ([`Error::Connection`] or
/// [`Error::Timeout`], see [`Error::is_transient`]).
///
/// Applies to [`check`](RateLimiter::check),
/// [`check_all`](RateLimiter::check_all) and [`peek`](RateLimiter::peek)
/// ([`peek_with_cost`](RateLimiter::peek_with_cost)); not to
/// [`reset`](RateLimiter::reset), which always returns its errors.
///
/// Only transient errors are covered. Every other error
/// ([`Error::ModuleNotLoaded`], [`Error::Server`], [`Error::InvalidQuota`],
/// [`Error::InvalidArgument`], [`Error::UnexpectedReply`]) is always
/// returned as an error, whatever the policy: it means a deployment or
/// programming mistake, which must not be hidden behind a fallback.
///
/// A decision made by a fallback has [`Decision::fallback`] set; every
/// fallback is counted in [`RateLimiter::metrics`].
///
/// ```
/// use tk_redis::{FailurePolicy, RateLimiter};
/// # fn demo(conn: tk_redis::redis::aio::ConnectionManager) {
/// // API limits: keep serving when Redis is down (the default).
/// let api = RateLimiter::new(conn.clone());
/// assert_eq!(api.failure_policy(), FailurePolicy::FailOpen);
/// // Login attempts: refuse when the limit cannot be enforced.
/// let logins = RateLimiter::new(conn).with_failure_policy(FailurePolicy::FailClosed);
/// # let _ = logins;
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Admit the request: `Ok` with `allowed = true` and `fallback = true`.
    ///
    /// The default, because a rate limiter must not take the whole
    /// application down when Redis is unreachable: limits are briefly not
    /// enforced instead.
    #[default]
    FailOpen,
    /// Refuse the request: `Ok` with `allowed = false`, `fallback = true`
    /// and `retry_after` = [`FAIL_CLOSED_RETRY_AFTER`]. Callers handle it
    /// like any refusal (e.g. HTTP 429).
    ///
    /// For security-critical limits, such as login or password-reset
    /// attempts, where admitting unlimited requests is worse than refusing
    /// them while Redis is down.
    FailClosed,
    /// Return the transient error unchanged, for callers that want to decide
    /// themselves.
    Error,
}

/// A snapshot of a [`RateLimiter`]'s counters, from
/// [`RateLimiter::metrics`].
///
/// The counters are shared by clones of the limiter (including clones given
/// another policy or timeout) and only ever grow. `reset` calls are not
/// counted. Every counted call ends in exactly one way, so
/// `checks = decisions made by Redis + fallbacks_open + fallbacks_closed + errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct RateLimitMetrics {
    /// Completed calls to `check`, `check_all`, `peek` and `peek_with_cost`,
    /// whatever their outcome.
    pub checks: u64,
    /// Calls answered by [`FailurePolicy::FailOpen`] (admitted without
    /// asking Redis).
    pub fallbacks_open: u64,
    /// Calls answered by [`FailurePolicy::FailClosed`] (refused without
    /// asking Redis).
    pub fallbacks_closed: u64,
    /// Calls that returned an error: non-transient errors under any policy,
    /// and transient ones under [`FailurePolicy::Error`].
    pub errors: u64,
}

/// The live counters behind [`RateLimitMetrics`].
#[derive(Debug, Default)]
struct Counters {
    checks: Counter,
    fallbacks_open: Counter,
    fallbacks_closed: Counter,
    errors: Counter,
}

impl Counters {
    fn snapshot(&self) -> RateLimitMetrics {
        RateLimitMetrics {
            checks: self.checks.get(),
            fallbacks_open: self.fallbacks_open.get(),
            fallbacks_closed: self.fallbacks_closed.get(),
            errors: self.errors.get(),
        }
    }
}

/// Runs the module's rate-limit commands.
///
/// Generic over the connection: by default a
/// [`ConnectionManager`] (reconnects automatically; see
/// [`RateLimiter::connect`]), but any cloneable async connection works,
/// e.g. [`redis::cluster_async::ClusterConnection`] or
/// [`redis::aio::MultiplexedConnection`]. Cloning a `RateLimiter` is cheap
/// and shares the connection.
///
/// Keys are used exactly as given (no prefix is added; see
/// [`keys`](crate::keys)). On Redis Cluster, the keys of one
/// [`check_all`](RateLimiter::check_all) or [`reset`](RateLimiter::reset)
/// call must hash to one slot: use a hash tag, e.g. `{user42}:min` and
/// `{user42}:day`.
///
/// Every call waits at most [`timeout`](RateLimiter::timeout) (default
/// [`DEFAULT_TIMEOUT`], 3 s) and then fails with [`Error::Timeout`].
///
/// When Redis is unreachable (a transient error), `check`, `check_all` and
/// `peek` follow the [`FailurePolicy`], [`FailOpen`](FailurePolicy::FailOpen)
/// by default: they return an admitting decision with
/// [`Decision::fallback`] set instead of the error. Choose another policy
/// with [`RateLimiter::with_failure_policy`]; watch
/// [`RateLimiter::metrics`] to see how often fallbacks happen.
#[derive(Clone)]
pub struct RateLimiter<C = ConnectionManager> {
    core: ClientCore<C>,
    failure_policy: FailurePolicy,
    counters: Arc<Counters>,
}

impl<C> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core
            .debug_struct(f, "RateLimiter")
            .field("failure_policy", &self.failure_policy)
            .finish_non_exhaustive()
    }
}

impl RateLimiter<ConnectionManager> {
    crate::client::connect_constructor!();
}

impl<C> RateLimiter<C> {
    /// Wraps an existing connection, with the default timeout, the default
    /// failure policy ([`FailurePolicy::FailOpen`]) and new counters.
    pub fn new(conn: C) -> Self {
        RateLimiter {
            core: ClientCore::new(conn),
            failure_policy: FailurePolicy::default(),
            counters: Arc::default(),
        }
    }

    crate::client::core_accessors!();
    crate::client::tk_mode_accessors!();

    /// Sets what `check`, `check_all` and `peek` answer when Redis is
    /// unreachable (see [`FailurePolicy`]). The counters stay shared with
    /// the limiter this one was cloned from.
    #[must_use]
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy
    }

    /// A snapshot of the counters (calls, fallbacks, errors), shared by all
    /// clones of this limiter. See [`RateLimitMetrics`].
    pub fn metrics(&self) -> RateLimitMetrics {
        self.counters.snapshot()
    }

    /// Counts a finished call and applies the failure policy to its
    /// result; `fallback(allowed)` makes the stand-in answer.
    fn settle<T>(&self, result: Result<T>, fallback: impl FnOnce(bool) -> T) -> Result<T> {
        let counters = &*self.counters;
        counters.checks.bump();
        match result {
            Ok(value) => Ok(value),
            Err(err) if err.is_transient() => match self.failure_policy {
                FailurePolicy::FailOpen => {
                    counters.fallbacks_open.bump();
                    telemetry::ratelimit_fallback(true);
                    Ok(fallback(true))
                }
                FailurePolicy::FailClosed => {
                    counters.fallbacks_closed.bump();
                    telemetry::ratelimit_fallback(false);
                    Ok(fallback(false))
                }
                FailurePolicy::Error => {
                    counters.errors.bump();
                    telemetry::ratelimit_error();
                    Err(err)
                }
            },
            Err(err) => {
                counters.errors.bump();
                telemetry::ratelimit_error();
                Err(err)
            }
        }
    }
}

impl<C> RateLimiter<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Asks to admit a request of `cost` units under `quota` for `key`
    /// (`TK.RATELIMIT`). If admitted, the cost is consumed.
    ///
    /// When Redis is unreachable the [`FailurePolicy`] decides the answer.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tk_redis::RateLimiter) -> tk_redis::Result<()> {
    /// use tk_redis::Quota;
    /// let decision = limiter.check("rl:upload:42", &Quota::per_hour(1_000), 25).await?;
    /// if !decision.allowed {
    ///     println!("retry in {:?}", decision.retry_after);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, key: &str, quota: &Quota, cost: u64) -> Result<Decision> {
        let result = match check_cmd(CMD_CHECK, key, quota, cost) {
            Ok(cmd) => self.core.query(CMD_CHECK, &cmd).await,
            Err(err) => Err(err),
        };
        self.settle(result, |allowed| Decision::stand_in(allowed, quota.limit))
    }

    /// What [`check`](RateLimiter::check) with cost 1 would decide now,
    /// without consuming anything (`TK.RATELIMIT.PEEK`, read-only).
    pub async fn peek(&self, key: &str, quota: &Quota) -> Result<Decision> {
        self.peek_with_cost(key, quota, 1).await
    }

    /// What [`check`](RateLimiter::check) with `cost` would decide now,
    /// without consuming anything. When Redis is unreachable the
    /// [`FailurePolicy`] decides the answer, as for `check`.
    pub async fn peek_with_cost(&self, key: &str, quota: &Quota, cost: u64) -> Result<Decision> {
        let result = match check_cmd(CMD_PEEK, key, quota, cost) {
            Ok(cmd) => self.core.query(CMD_PEEK, &cmd).await,
            Err(err) => Err(err),
        };
        self.settle(result, |allowed| Decision::stand_in(allowed, quota.limit))
    }

    /// Deletes the limiter state of `keys` (`TK.RATELIMIT.RESET`), so they
    /// start over with a full allowance. Returns how many of the keys existed.
    /// An empty slice returns 0 without contacting the server.
    ///
    /// The [`FailurePolicy`] does not apply: every error, transient or not,
    /// is returned. Resets are not counted in [`RateLimiter::metrics`].
    pub async fn reset<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cmd = reset_cmd(keys);
        let Count(count) = self.core.query(CMD_RESET, &cmd).await?;
        Ok(count)
    }

    /// Checks several limits at once, all-or-nothing
    /// (`TK.RATELIMIT.ALL`): the request, costing `cost` under **every**
    /// limit, is admitted only if every limit admits it, and then consumes
    /// from all of them; if any refuses, none is consumed.
    ///
    /// Keys may be `&str` or `String`. The returned
    /// [`AllDecision::index`] points into `limits`.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tk_redis::RateLimiter) -> tk_redis::Result<()> {
    /// use tk_redis::Quota;
    /// let user = 42;
    /// let limits = [
    ///     (format!("rl:{{u{user}}}:s"), Quota::per_second(10)),
    ///     (format!("rl:{{u{user}}}:h"), Quota::per_hour(1_000)),
    /// ];
    /// let all = limiter.check_all(&limits, 1).await?;
    /// if !all.decision.allowed {
    ///     println!("limit {} refused; retry in {:?}", limits[all.index].0, all.decision.retry_after);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// An empty `limits` fails with [`Error::InvalidArgument`]. When Redis
    /// is unreachable the [`FailurePolicy`] decides the answer, reported as
    /// the first limit's (`index` 0).
    pub async fn check_all<K: AsRef<str>>(
        &self,
        limits: &[(K, Quota)],
        cost: u64,
    ) -> Result<AllDecision> {
        let result = match all_cmd(limits, cost) {
            Ok(cmd) => self
                .core
                .query::<AllDecision>(CMD_ALL, &cmd)
                .await
                .and_then(|all| {
                    if all.index < limits.len() {
                        Ok(all)
                    } else {
                        Err(Error::UnexpectedReply(format!(
                            "{CMD_ALL}: index {} out of range for {} limits",
                            all.index,
                            limits.len()
                        )))
                    }
                }),
            Err(err) => Err(err),
        };
        self.settle(result, |allowed| AllDecision {
            // `all_cmd` refuses an empty `limits`, so there is a first one.
            decision: Decision::stand_in(allowed, limits.first().map_or(0, |(_, q)| q.limit)),
            index: 0,
        })
    }
}

/// `<command> <key> <limit> <period_ms> [options]`.
fn check_cmd(command: &str, key: &str, quota: &Quota, cost: u64) -> Result<Cmd> {
    let mut cmd = redis::cmd(command);
    cmd.arg(key);
    quota.write_args(&mut cmd, cost)?;
    Ok(cmd)
}

/// `TK.RATELIMIT.RESET <key> [<key> ...]`.
fn reset_cmd<K: AsRef<str>>(keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd(CMD_RESET);
    for key in keys {
        cmd.arg(key.as_ref());
    }
    cmd
}

/// `TK.RATELIMIT.ALL <numkeys> <key>... (<limit> <period_ms> [options])...`.
fn all_cmd<K: AsRef<str>>(limits: &[(K, Quota)], cost: u64) -> Result<Cmd> {
    if limits.is_empty() {
        return Err(Error::InvalidArgument(
            "check_all needs at least one limit".into(),
        ));
    }
    let mut cmd = redis::cmd(CMD_ALL);
    cmd.arg(limits.len());
    for (key, _) in limits {
        cmd.arg(key.as_ref());
    }
    for (index, (_, quota)) in limits.iter().enumerate() {
        quota.write_args(&mut cmd, cost).map_err(|err| match err {
            Error::InvalidQuota(message) => {
                Error::InvalidQuota(format!("limit {index}: {message}"))
            }
            other => other,
        })?;
    }
    Ok(cmd)
}
