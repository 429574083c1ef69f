//! Rate limiting: [`Quota`], [`Decision`] and the [`RateLimiter`] that runs
//! the module's `TK.RATELIMIT*` commands, with its [`FailurePolicy`] for
//! when Redis is unreachable and its [`RateLimitMetrics`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::Cmd;

use crate::args;
use crate::client::{ClientCore, Counter};
use crate::error::{Error, Result};
use crate::reply::Count;
use crate::telemetry;

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

/// The rate-limiting algorithm the module applies to a key.
///
/// A key's state belongs to one algorithm: using the same key with another
/// algorithm is refused by the module with a `WRONGTYPE` error
/// ([`Error::Server`]); [`RateLimiter::reset`] the key first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Generic cell rate algorithm: a smooth leaky bucket allowing bursts of
    /// up to [`Quota::burst`] requests. The module's default.
    Gcra,
    /// Sliding window: at most `limit` requests in a window of `period`
    /// ending now.
    Sliding,
    /// Fixed window: at most `limit` requests per window of `period`,
    /// windows starting at multiples of `period`.
    Fixed,
}

impl Algorithm {
    /// The name sent after `ALGO`: `GCRA`, `SLIDING` or `FIXED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Gcra => "GCRA",
            Algorithm::Sliding => "SLIDING",
            Algorithm::Fixed => "FIXED",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much is allowed: `limit` requests (or cost units) per `period`.
///
/// Constructors and builder methods never fail, so a quota can be written
/// inline and kept in a `const`:
///
/// ```
/// use std::time::Duration;
/// use tk_redis::{Algorithm, Quota};
///
/// const API: Quota = Quota::per_minute(100).burst(20);
/// let logins = Quota::per_hour(10).algorithm(Algorithm::Fixed);
/// let custom = Quota::new(5, Duration::from_millis(250));
/// assert_eq!(API.limit, 100);
/// assert_eq!(API.burst, Some(20));
/// # let _ = (logins, custom);
/// ```
///
/// The quota is checked when it is used; an invalid one fails the call with
/// [`Error::InvalidQuota`] before anything is sent (see
/// [`Quota::validate`]). The rules:
///
/// - `limit` >= 1;
/// - `period` >= 1 ms; it is sent in whole milliseconds, and a fractional
///   millisecond is **rounded up** (1.2 ms is sent as 2 ms);
/// - `burst`, when set, >= 1, and only with GCRA (the default algorithm).
///   When no burst is set the module uses `burst = limit`.
///
/// The module may reject values outside its own ranges (e.g. a huge limit or
/// period); that is reported as [`Error::Server`] with code `ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Quota {
    /// Requests (cost units) allowed per `period`.
    pub limit: u64,
    /// The period over which `limit` applies.
    pub period: Duration,
    /// GCRA burst size; `None` lets the module use `limit`.
    pub burst: Option<u64>,
    /// The algorithm; `None` lets the module use its default (GCRA) and
    /// sends no `ALGO` option.
    pub algorithm: Option<Algorithm>,
}

impl Quota {
    /// `limit` per `period`.
    pub const fn new(limit: u64, period: Duration) -> Quota {
        Quota {
            limit,
            period,
            burst: None,
            algorithm: None,
        }
    }

    /// `limit` per second.
    pub const fn per_second(limit: u64) -> Quota {
        Quota::new(limit, Duration::from_secs(1))
    }

    /// `limit` per minute.
    pub const fn per_minute(limit: u64) -> Quota {
        Quota::new(limit, Duration::from_secs(60))
    }

    /// `limit` per hour.
    pub const fn per_hour(limit: u64) -> Quota {
        Quota::new(limit, Duration::from_secs(3_600))
    }

    /// Sets the GCRA burst size: how many requests may arrive at once
    /// (the module's default is `limit`). Only valid with GCRA.
    #[must_use]
    pub const fn burst(mut self, burst: u64) -> Quota {
        self.burst = Some(burst);
        self
    }

    /// Sets the algorithm (the module's default is [`Algorithm::Gcra`]).
    #[must_use]
    pub const fn algorithm(mut self, algorithm: Algorithm) -> Quota {
        self.algorithm = Some(algorithm);
        self
    }

    /// Checks the quota against the rules in the [type docs](Quota).
    pub fn validate(&self) -> Result<()> {
        self.period_ms().map(drop)
    }

    /// The period in whole milliseconds (rounded up), after validating the
    /// whole quota.
    pub(crate) fn period_ms(&self) -> Result<u64> {
        if self.limit == 0 {
            return Err(Error::InvalidQuota("limit must be at least 1".into()));
        }
        if self.period < Duration::from_millis(1) {
            return Err(Error::InvalidQuota(format!(
                "period must be at least 1 ms, got {:?}",
                self.period
            )));
        }
        match self.burst {
            Some(0) => return Err(Error::InvalidQuota("burst must be at least 1".into())),
            Some(_) => {
                if let Some(algorithm @ (Algorithm::Sliding | Algorithm::Fixed)) = self.algorithm {
                    return Err(Error::InvalidQuota(format!(
                        "burst is only supported by the GCRA algorithm, not {algorithm}"
                    )));
                }
            }
            None => {}
        }
        u64::try_from(args::ceil_ms(self.period))
            .map_err(|_| Error::InvalidQuota(format!("period is too long: {:?}", self.period)))
    }

    /// Appends `<limit> <period_ms> [BURST <n>] [COST <n>] [ALGO <name>]`.
    /// `COST` is left out when it is 1 (the module's default).
    fn write_args(&self, cmd: &mut Cmd, cost: u64) -> Result<()> {
        let period_ms = self.period_ms()?;
        cmd.arg(self.limit).arg(period_ms);
        if let Some(burst) = self.burst {
            cmd.arg("BURST").arg(burst);
        }
        if cost != 1 {
            cmd.arg("COST").arg(cost);
        }
        if let Some(algorithm) = self.algorithm {
            cmd.arg("ALGO").arg(algorithm.as_str());
        }
        Ok(())
    }
}

/// The module's answer for one limit, or a [`FailurePolicy`]'s stand-in
/// for it when Redis was unreachable (then [`Decision::fallback`] is true).
///
/// On refusal, `retry_after` says when a request of the same cost could be
/// admitted; use [`Decision::retry_after_secs`] for an HTTP `Retry-After`
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Whether the request was (or, for peek, would be) admitted.
    pub allowed: bool,
    /// The limit the decision was made against, as reported by the module.
    pub limit: u64,
    /// How many more cost units would be admitted right now.
    pub remaining: u64,
    /// How long until the request could be admitted; zero when allowed.
    pub retry_after: Duration,
    /// How long until the allowance is fully restored.
    pub reset_after: Duration,
    /// `true` when Redis was not asked: the decision was made by the
    /// limiter's [`FailurePolicy`] because of a transient error. Always
    /// `false` for a decision parsed from the module's reply.
    ///
    /// A fallback decision carries no real counts: `limit` is the quota's
    /// limit (for `check_all`, the first one's), `remaining` is 0, and
    /// `retry_after` and `reset_after` are zero when admitted
    /// ([`FailurePolicy::FailOpen`]) and [`FAIL_CLOSED_RETRY_AFTER`] when
    /// refused ([`FailurePolicy::FailClosed`]). Leave rate-limit headers
    /// other than `Retry-After` out for such decisions.
    pub fallback: bool,
}

impl Decision {
    /// `retry_after` in whole seconds, rounded up: the value for an HTTP
    /// `Retry-After` header (0 when allowed).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }

    /// `reset_after` in whole seconds, rounded up (e.g. for a
    /// `RateLimit-Reset` header).
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// The stand-in decision of a fallback (see [`Decision::fallback`]).
    fn stand_in(allowed: bool, limit: u64) -> Decision {
        let wait = if allowed {
            Duration::ZERO
        } else {
            FAIL_CLOSED_RETRY_AFTER
        };
        Decision {
            allowed,
            limit,
            remaining: 0,
            retry_after: wait,
            reset_after: wait,
            fallback: true,
        }
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The answer to [`RateLimiter::check_all`]: one reported decision and which
/// limit it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllDecision {
    /// The reported limit's decision. `decision.allowed` is the overall
    /// outcome. When refused, this is the refusing limit with the longest
    /// `retry_after`; when allowed, the limit with the fewest `remaining`.
    /// For a fallback decision ([`Decision::fallback`]), the first limit.
    pub decision: Decision,
    /// Position of the reported limit in the slice given to `check_all`.
    pub index: usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use redis::Value;
    use std::sync::{Arc, Mutex};

    fn invalid_quota(result: Result<impl fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidQuota(message)) => message,
            other => panic!("expected InvalidQuota, got {other:?}"),
        }
    }

    // ---- quotas -------------------------------------------------------

    #[test]
    fn quota_constructors() {
        assert_eq!(Quota::per_second(5).period, Duration::from_secs(1));
        assert_eq!(Quota::per_minute(5).period, Duration::from_secs(60));
        assert_eq!(Quota::per_hour(5).period, Duration::from_secs(3600));
        let quota = Quota::new(7, Duration::from_millis(250));
        assert_eq!((quota.limit, quota.period), (7, Duration::from_millis(250)));
        assert_eq!((quota.burst, quota.algorithm), (None, None));
    }

    #[test]
    fn quota_builders_chain_and_are_const() {
        const Q: Quota = Quota::per_minute(100).burst(20);
        assert_eq!(Q.limit, 100);
        assert_eq!(Q.burst, Some(20));
        let quota = Quota::per_second(1).algorithm(Algorithm::Sliding);
        assert_eq!(quota.algorithm, Some(Algorithm::Sliding));
        assert!(Q.validate().is_ok());
        assert!(quota.validate().is_ok());
        assert!(Quota::per_second(1)
            .burst(3)
            .algorithm(Algorithm::Gcra)
            .validate()
            .is_ok());
    }

    #[test]
    fn quota_validation() {
        assert!(invalid_quota(Quota::per_second(0).validate()).contains("limit"));
        assert!(invalid_quota(Quota::new(1, Duration::ZERO).validate()).contains("period"));
        assert!(
            invalid_quota(Quota::new(1, Duration::from_micros(999)).validate()).contains("1 ms")
        );
        assert!(invalid_quota(Quota::per_second(1).burst(0).validate()).contains("burst"));
        for algorithm in [Algorithm::Sliding, Algorithm::Fixed] {
            let message = invalid_quota(
                Quota::per_second(5)
                    .burst(2)
                    .algorithm(algorithm)
                    .validate(),
            );
            assert!(message.contains("GCRA"), "{message}");
        }
        assert!(invalid_quota(Quota::new(1, Duration::MAX).validate()).contains("too long"));
        assert!(Quota::new(u64::MAX, Duration::from_millis(1))
            .validate()
            .is_ok());
    }

    #[test]
    fn period_is_rounded_up_to_whole_ms() {
        let ms = |period| Quota::new(1, period).period_ms().unwrap();
        assert_eq!(ms(Duration::from_millis(1)), 1);
        assert_eq!(ms(Duration::from_micros(1_001)), 2);
        assert_eq!(ms(Duration::from_nanos(1_999_999)), 2);
        assert_eq!(ms(Duration::from_secs(60)), 60_000);
        assert_eq!(ms(Duration::new(1, 1)), 1_001);
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::Gcra.to_string(), "GCRA");
        assert_eq!(Algorithm::Sliding.as_str(), "SLIDING");
        assert_eq!(Algorithm::Fixed.as_str(), "FIXED");
    }

    #[test]
    fn decision_seconds_round_up() {
        let decision = Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            retry_after: Duration::from_millis(1_001),
            reset_after: Duration::from_millis(2_000),
            fallback: false,
        };
        assert_eq!(decision.retry_after_secs(), 2);
        assert_eq!(decision.reset_after_secs(), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
    }

    // ---- command arguments -------------------------------------------

    #[test]
    fn check_args_minimal() {
        let cmd = check_cmd(CMD_CHECK, "rl:k", &Quota::per_minute(100), 1).unwrap();
        assert_eq!(args(&cmd), ["TK.RATELIMIT", "rl:k", "100", "60000"]);
    }

    #[test]
    fn check_args_with_every_option() {
        let quota = Quota::per_second(10).burst(20).algorithm(Algorithm::Gcra);
        let cmd = check_cmd(CMD_CHECK, "k", &quota, 3).unwrap();
        assert_eq!(
            args(&cmd),
            [
                "TK.RATELIMIT",
                "k",
                "10",
                "1000",
                "BURST",
                "20",
                "COST",
                "3",
                "ALGO",
                "GCRA"
            ]
        );
        let quota = Quota::new(5, Duration::from_micros(2_500)).algorithm(Algorithm::Fixed);
        let cmd = check_cmd(CMD_CHECK, "k", &quota, 0).unwrap();
        assert_eq!(
            args(&cmd),
            ["TK.RATELIMIT", "k", "5", "3", "COST", "0", "ALGO", "FIXED"]
        );
    }

    #[test]
    fn key_is_sent_as_is() {
        let cmd = check_cmd(CMD_CHECK, "{u1} spaced:ключ", &Quota::per_second(1), 1).unwrap();
        assert_eq!(args(&cmd)[1], "{u1} spaced:ключ");
    }

    #[test]
    fn peek_args() {
        let quota = Quota::per_hour(1000).algorithm(Algorithm::Sliding);
        let cmd = check_cmd(CMD_PEEK, "k", &quota, 1).unwrap();
        assert_eq!(
            args(&cmd),
            [
                "TK.RATELIMIT.PEEK",
                "k",
                "1000",
                "3600000",
                "ALGO",
                "SLIDING"
            ]
        );
    }

    #[test]
    fn invalid_quota_builds_no_command() {
        assert!(check_cmd(CMD_CHECK, "k", &Quota::per_second(0), 1).is_err());
    }

    #[test]
    fn reset_args() {
        assert_eq!(args(&reset_cmd(&["a"])), ["TK.RATELIMIT.RESET", "a"]);
        let owned = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(args(&reset_cmd(&owned)), ["TK.RATELIMIT.RESET", "a", "b"]);
    }

    #[test]
    fn all_args() {
        let limits = [
            ("k1", Quota::per_second(10).burst(5)),
            ("k2", Quota::per_hour(100).algorithm(Algorithm::Fixed)),
        ];
        assert_eq!(
            args(&all_cmd(&limits, 1).unwrap()),
            [
                "TK.RATELIMIT.ALL",
                "2",
                "k1",
                "k2",
                "10",
                "1000",
                "BURST",
                "5",
                "100",
                "3600000",
                "ALGO",
                "FIXED"
            ]
        );
        assert_eq!(
            args(&all_cmd(&limits[..1], 2).unwrap()),
            [
                "TK.RATELIMIT.ALL",
                "1",
                "k1",
                "10",
                "1000",
                "BURST",
                "5",
                "COST",
                "2"
            ]
        );
    }

    #[test]
    fn all_args_validation() {
        let none: [(&str, Quota); 0] = [];
        assert!(matches!(all_cmd(&none, 1), Err(Error::InvalidArgument(_))));
        let limits = [("a", Quota::per_second(1)), ("b", Quota::per_second(0))];
        assert!(invalid_quota(all_cmd(&limits, 1)).starts_with("limit 1: "));
    }

    #[tokio::test]
    async fn check_sends_and_parses() {
        let fake = Fake::replying(ints(&[0, 10, 0, 1_500, 6_000]));
        let limiter = RateLimiter::new(fake.clone());
        let decision = limiter.check("k", &Quota::per_minute(10), 2).await.unwrap();
        assert!(!decision.allowed);
        assert!(!decision.fallback);
        assert_eq!(decision.retry_after_secs(), 2);
        assert_eq!(
            fake.sent(),
            [["TK.RATELIMIT", "k", "10", "60000", "COST", "2"]]
        );
    }

    #[tokio::test]
    async fn peek_sends_peek() {
        let fake = Fake::replying(ints(&[1, 10, 10, 0, 0]));
        let limiter = RateLimiter::new(fake.clone());
        let decision = limiter.peek("k", &Quota::per_minute(10)).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(fake.sent()[0][0], "TK.RATELIMIT.PEEK");
    }

    #[tokio::test]
    async fn invalid_quota_sends_nothing() {
        let fake = Fake::replying(ints(&[1, 1, 0, 0, 1]));
        let limiter = RateLimiter::new(fake.clone());
        let err = limiter
            .check("k", &Quota::per_second(0), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidQuota(_)));
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn reset_counts() {
        let fake = Fake::replying(Value::Int(2));
        let limiter = RateLimiter::new(fake.clone());
        assert_eq!(limiter.reset(&["a", "b", "c"]).await.unwrap(), 2);
        let none: [&str; 0] = [];
        assert_eq!(limiter.reset(&none).await.unwrap(), 0);
        assert_eq!(fake.sent().len(), 1);
    }

    #[tokio::test]
    async fn check_all_checks_index_range() {
        let limits = [("a", Quota::per_second(1)), ("b", Quota::per_hour(5))];
        let ok = RateLimiter::new(Fake::replying(ints(&[0, 5, 0, 10, 20, 1])));
        let all = ok.check_all(&limits, 1).await.unwrap();
        assert_eq!(all.index, 1);
        let bad = RateLimiter::new(Fake::replying(ints(&[0, 5, 0, 10, 20, 2])));
        let err = bad.check_all(&limits, 1).await.unwrap_err();
        assert!(
            matches!(err, Error::UnexpectedReply(ref m) if m.contains("index 2")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn error_replies_as_values_or_errors() {
        let line = "ERR unknown command 'TK.RATELIMIT', with args beginning with: 'k' ";
        // As an `Ok(ServerError)` value...
        let limiter = RateLimiter::new(Fake::replying(error_reply(line)));
        let err = limiter
            .check("k", &Quota::per_second(1), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ModuleNotLoaded {
                    command: "TK.RATELIMIT"
                }
            ),
            "{err:?}"
        );
        // ...or as an `Err`.
        let limiter = RateLimiter::new(Fake::new(move |_| {
            Some(error_reply("WRONGTYPE Operation against a key").extract_error())
        }));
        let err = limiter.peek("k", &Quota::per_second(1)).await.unwrap_err();
        assert!(
            matches!(err, Error::Server { ref code, .. } if code == "WRONGTYPE"),
            "{err:?}"
        );
        // The command name reported is the one sent.
        let limiter = RateLimiter::new(Fake::replying(error_reply(
            "ERR unknown command 'TK.RATELIMIT.ALL'",
        )));
        let err = limiter
            .check_all(&[("a", Quota::per_second(1))], 1)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ModuleNotLoaded {
                    command: "TK.RATELIMIT.ALL"
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn malformed_replies() {
        let limiter = RateLimiter::new(Fake::replying(ints(&[2, 1, 1, 0, 0])));
        let err = limiter
            .check("k", &Quota::per_second(1), 1)
            .await
            .unwrap_err();
        match err {
            Error::UnexpectedReply(message) => {
                assert_eq!(message, "TK.RATELIMIT: allowed must be 0 or 1, got 2");
            }
            other => panic!("{other:?}"),
        }
        let limiter = RateLimiter::new(Fake::replying(Value::Okay));
        assert!(matches!(
            limiter.reset(&["k"]).await,
            Err(Error::UnexpectedReply(_))
        ));
    }

    #[tokio::test]
    async fn io_errors_are_connection_errors() {
        let limiter = RateLimiter::new(Fake::new(|_| {
            Some(Err(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )
            .into()))
        }))
        .with_failure_policy(FailurePolicy::Error);
        let err = limiter
            .check("k", &Quota::per_second(1), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connection(_)), "{err:?}");
    }

    #[tokio::test]
    async fn calls_time_out() {
        let limiter = RateLimiter::new(Fake::new(|_| None))
            .with_timeout(Duration::from_millis(20))
            .with_failure_policy(FailurePolicy::Error);
        assert_eq!(limiter.timeout(), Duration::from_millis(20));
        let err = limiter
            .check("k", &Quota::per_second(1), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert!(err.is_transient());
    }

    #[test]
    fn defaults() {
        let limiter = RateLimiter::new(Fake::replying(Value::Nil));
        assert_eq!(limiter.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(3));
        assert_eq!(limiter.failure_policy(), FailurePolicy::FailOpen);
        assert_eq!(FailurePolicy::default(), FailurePolicy::FailOpen);
        assert_eq!(limiter.metrics(), RateLimitMetrics::default());
        let debug = format!("{limiter:?}");
        assert!(debug.contains("3s"), "{debug}");
        assert!(debug.contains("FailOpen"), "{debug}");
    }

    // ---- failure policy ----------------------------------------------

    const POLICIES: [FailurePolicy; 3] = [
        FailurePolicy::FailOpen,
        FailurePolicy::FailClosed,
        FailurePolicy::Error,
    ];

    fn connection_reset() -> Fake {
        Fake::new(|_| {
            Some(Err(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )
            .into()))
        })
    }

    fn metrics(checks: u64, open: u64, closed: u64, errors: u64) -> RateLimitMetrics {
        RateLimitMetrics {
            checks,
            fallbacks_open: open,
            fallbacks_closed: closed,
            errors,
        }
    }

    #[tokio::test]
    async fn fail_open_admits_on_connection_errors() {
        let limiter = RateLimiter::new(connection_reset());
        let quota = Quota::per_minute(10);
        let decision = limiter.check("k", &quota, 3).await.unwrap();
        assert_eq!(
            decision,
            Decision {
                allowed: true,
                limit: 10,
                remaining: 0,
                retry_after: Duration::ZERO,
                reset_after: Duration::ZERO,
                fallback: true,
            }
        );
        assert_eq!(decision.retry_after_secs(), 0);
        assert_eq!(limiter.metrics(), metrics(1, 1, 0, 0));
    }

    #[tokio::test]
    async fn fail_open_admits_on_timeouts() {
        let limiter = RateLimiter::new(Fake::new(|_| None))
            .with_timeout(Duration::from_millis(20))
            .with_failure_policy(FailurePolicy::FailOpen);
        let decision = limiter.peek("k", &Quota::per_second(5)).await.unwrap();
        assert!(decision.allowed && decision.fallback);
        assert_eq!(decision.limit, 5);
        assert_eq!(limiter.metrics(), metrics(1, 1, 0, 0));
    }

    #[tokio::test]
    async fn fail_closed_refuses_with_a_short_retry_after() {
        let limiter =
            RateLimiter::new(connection_reset()).with_failure_policy(FailurePolicy::FailClosed);
        assert_eq!(limiter.failure_policy(), FailurePolicy::FailClosed);
        let decision = limiter.check("k", &Quota::per_hour(7), 1).await.unwrap();
        assert_eq!(
            decision,
            Decision {
                allowed: false,
                limit: 7,
                remaining: 0,
                retry_after: FAIL_CLOSED_RETRY_AFTER,
                reset_after: FAIL_CLOSED_RETRY_AFTER,
                fallback: true,
            }
        );
        assert_eq!(decision.retry_after_secs(), 1);
        // Timeouts too.
        let limiter = RateLimiter::new(Fake::new(|_| None))
            .with_timeout(Duration::from_millis(20))
            .with_failure_policy(FailurePolicy::FailClosed);
        let decision = limiter.peek("k", &Quota::per_hour(7)).await.unwrap();
        assert!(!decision.allowed && decision.fallback);
        assert_eq!(limiter.metrics(), metrics(1, 0, 1, 0));
    }

    #[tokio::test]
    async fn error_policy_returns_transient_errors_unchanged() {
        let limiter =
            RateLimiter::new(connection_reset()).with_failure_policy(FailurePolicy::Error);
        let err = limiter
            .check("k", &Quota::per_second(1), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connection(_)), "{err:?}");
        let limiter = RateLimiter::new(Fake::new(|_| None))
            .with_timeout(Duration::from_millis(20))
            .with_failure_policy(FailurePolicy::Error);
        let err = limiter
            .check_all(&[("a", Quota::per_second(1))], 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert_eq!(limiter.metrics(), metrics(1, 0, 0, 1));
    }

    #[tokio::test]
    async fn check_all_fallbacks_report_the_first_limit() {
        let limits = [("a", Quota::per_second(3)), ("b", Quota::per_hour(100))];
        let open = RateLimiter::new(connection_reset());
        let all = open.check_all(&limits, 2).await.unwrap();
        assert_eq!(all.index, 0);
        assert!(all.decision.allowed && all.decision.fallback);
        assert_eq!(all.decision.limit, 3);
        let closed = open.clone().with_failure_policy(FailurePolicy::FailClosed);
        let all = closed.check_all(&limits, 2).await.unwrap();
        assert_eq!(all.index, 0);
        assert!(!all.decision.allowed && all.decision.fallback);
        assert_eq!(all.decision.retry_after, FAIL_CLOSED_RETRY_AFTER);
        // Clones share the counters.
        assert_eq!(open.metrics(), metrics(2, 1, 1, 0));
        assert_eq!(closed.metrics(), open.metrics());
    }

    #[tokio::test]
    async fn non_transient_errors_are_never_hidden() {
        let quota = Quota::per_second(1);
        for policy in POLICIES {
            // Module not loaded.
            let limiter = RateLimiter::new(Fake::replying(error_reply(
                "ERR unknown command 'TK.RATELIMIT'",
            )))
            .with_failure_policy(policy);
            let err = limiter.check("k", &quota, 1).await.unwrap_err();
            assert!(err.is_module_not_loaded(), "{policy:?}: {err:?}");
            // A server refusal (WRONGTYPE), for peek and check_all too.
            let limiter = RateLimiter::new(Fake::replying(error_reply(
                "WRONGTYPE Operation against a key",
            )))
            .with_failure_policy(policy);
            assert!(matches!(
                limiter.peek("k", &quota).await,
                Err(Error::Server { .. })
            ));
            assert!(matches!(
                limiter.check_all(&[("k", quota)], 1).await,
                Err(Error::Server { .. })
            ));
            // Rejected before sending: nothing sent, still an error.
            let fake = connection_reset();
            let limiter = RateLimiter::new(fake.clone()).with_failure_policy(policy);
            assert!(matches!(
                limiter.check("k", &Quota::per_second(0), 1).await,
                Err(Error::InvalidQuota(_))
            ));
            let none: [(&str, Quota); 0] = [];
            assert!(matches!(
                limiter.check_all(&none, 1).await,
                Err(Error::InvalidArgument(_))
            ));
            assert!(fake.sent().is_empty());
            // A malformed reply, and an out-of-range index.
            let limiter = RateLimiter::new(Fake::replying(Value::Okay)).with_failure_policy(policy);
            assert!(matches!(
                limiter.check("k", &quota, 1).await,
                Err(Error::UnexpectedReply(_))
            ));
            let limiter = RateLimiter::new(Fake::replying(ints(&[1, 1, 0, 0, 0, 5])))
                .with_failure_policy(policy);
            assert!(matches!(
                limiter.check_all(&[("k", quota)], 1).await,
                Err(Error::UnexpectedReply(_))
            ));
            assert_eq!(limiter.metrics(), metrics(1, 0, 0, 1), "{policy:?}");
        }
    }

    #[tokio::test]
    async fn reset_ignores_the_policy_and_is_not_counted() {
        for policy in POLICIES {
            let limiter = RateLimiter::new(connection_reset()).with_failure_policy(policy);
            let err = limiter.reset(&["k"]).await.unwrap_err();
            assert!(matches!(err, Error::Connection(_)), "{policy:?}: {err:?}");
            assert_eq!(limiter.metrics(), RateLimitMetrics::default());
        }
    }

    #[tokio::test]
    async fn metrics_count_every_outcome() {
        // Replies in turn: a decision, a connection error, a server error.
        let calls = Arc::new(Mutex::new(0u32));
        let fake = Fake::new(move |_| {
            let mut n = calls.lock().unwrap();
            *n += 1;
            Some(match *n % 3 {
                1 => Ok(ints(&[1, 10, 9, 0, 100])),
                2 => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into()),
                _ => Ok(error_reply("ERR bad")),
            })
        });
        let open = RateLimiter::new(fake);
        let closed = open.clone().with_failure_policy(FailurePolicy::FailClosed);
        let quota = Quota::per_minute(10);
        let first = open.check("k", &quota, 1).await.unwrap();
        assert!(first.allowed && !first.fallback);
        assert!(open.check("k", &quota, 1).await.unwrap().fallback);
        assert!(open.check("k", &quota, 1).await.is_err());
        assert!(!closed.peek("k", &quota).await.unwrap().fallback);
        assert!(!closed.peek("k", &quota).await.unwrap().allowed);
        assert!(closed.peek("k", &quota).await.is_err());
        let m = open.metrics();
        assert_eq!(m, metrics(6, 1, 1, 2));
        assert_eq!(
            m.checks - m.fallbacks_open - m.fallbacks_closed - m.errors,
            2,
            "decisions made by redis"
        );
        // A new limiter on the same connection has its own counters.
        let other = RateLimiter::new(open.connection().clone());
        assert_eq!(other.metrics(), RateLimitMetrics::default());
    }

    // ---- compile-time checks -----------------------------------------

    fn assert_send<T: Send>(_: &T) {}

    /// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
    /// for the default and the cluster connection.
    #[allow(dead_code)]
    fn futures_are_send(
        single: &RateLimiter,
        cluster: &RateLimiter<redis::cluster_async::ClusterConnection>,
        multiplexed: &RateLimiter<redis::aio::MultiplexedConnection>,
        quota: &Quota,
    ) {
        assert_send(&single.check("k", quota, 1));
        assert_send(&single.peek("k", quota));
        assert_send(&single.reset(&["k"]));
        assert_send(&single.check_all(&[("k", *quota)], 1));
        assert_send(&cluster.check("k", quota, 1));
        assert_send(&cluster.check_all(&[("k", *quota)], 1));
        assert_send(&multiplexed.check("k", quota, 1));
        assert_send(&multiplexed.peek("k", quota));
    }
}
