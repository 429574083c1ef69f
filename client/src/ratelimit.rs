//! Rate limiting: [`Quota`], [`Decision`] and the [`RateLimiter`] that runs
//! the module's `TK.RATELIMIT*` commands.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, IntoConnectionInfo};

use crate::error::{Error, Result};
use crate::exec;
use crate::reply::Count;

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
        let ms = self.period.as_nanos().div_ceil(1_000_000);
        u64::try_from(ms)
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

/// The module's answer for one limit.
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
#[derive(Clone)]
pub struct RateLimiter<C = ConnectionManager> {
    conn: C,
    timeout: Duration,
}

impl<C> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RateLimiter<ConnectionManager> {
    /// Connects to a single Redis server, e.g. `"redis://127.0.0.1:6379/"`,
    /// through a [`ConnectionManager`] that reconnects on its own.
    ///
    /// The manager uses redis-rs's defaults (connection attempts time out
    /// after the limiter's default timeout, and the initial connection is
    /// retried a few times with backoff) except that it has no response
    /// timeout of its own: the limiter's per-call timeout applies. To tune
    /// it, build the manager yourself and use [`RateLimiter::new`].
    ///
    /// This does not check that the tk module is loaded; the first call
    /// reports [`Error::ModuleNotLoaded`] if it is not.
    pub async fn connect<T: IntoConnectionInfo>(info: T) -> Result<Self> {
        // Not a TK command: no error here can mean "module not loaded".
        const CONNECT: &str = "";
        let client = redis::Client::open(info).map_err(|err| Error::from_redis(err, CONNECT))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT))
            .set_response_timeout(None);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|err| Error::from_redis(err, CONNECT))?;
        Ok(RateLimiter::new(manager))
    }
}

impl<C> RateLimiter<C> {
    /// Wraps an existing connection, with the default timeout.
    pub fn new(conn: C) -> Self {
        RateLimiter {
            conn,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The underlying connection.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// Returns the underlying connection.
    pub fn into_connection(self) -> C {
        self.conn
    }
}

impl<C> RateLimiter<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Asks to admit a request of `cost` units under `quota` for `key`
    /// (`TK.RATELIMIT`). If admitted, the cost is consumed.
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
        let cmd = check_cmd(CMD_CHECK, key, quota, cost)?;
        exec::query(&self.conn, self.timeout, CMD_CHECK, &cmd).await
    }

    /// What [`check`](RateLimiter::check) with cost 1 would decide now,
    /// without consuming anything (`TK.RATELIMIT.PEEK`, read-only).
    pub async fn peek(&self, key: &str, quota: &Quota) -> Result<Decision> {
        self.peek_with_cost(key, quota, 1).await
    }

    /// What [`check`](RateLimiter::check) with `cost` would decide now,
    /// without consuming anything.
    pub async fn peek_with_cost(&self, key: &str, quota: &Quota, cost: u64) -> Result<Decision> {
        let cmd = check_cmd(CMD_PEEK, key, quota, cost)?;
        exec::query(&self.conn, self.timeout, CMD_PEEK, &cmd).await
    }

    /// Deletes the limiter state of `keys` (`TK.RATELIMIT.RESET`), so they
    /// start over with a full allowance. Returns how many of the keys existed.
    /// An empty slice returns 0 without contacting the server.
    pub async fn reset<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cmd = reset_cmd(keys);
        let Count(count) = exec::query(&self.conn, self.timeout, CMD_RESET, &cmd).await?;
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
    /// An empty `limits` fails with [`Error::InvalidArgument`].
    pub async fn check_all<K: AsRef<str>>(
        &self,
        limits: &[(K, Quota)],
        cost: u64,
    ) -> Result<AllDecision> {
        let cmd = all_cmd(limits, cost)?;
        let all: AllDecision = exec::query(&self.conn, self.timeout, CMD_ALL, &cmd).await?;
        if all.index >= limits.len() {
            return Err(Error::UnexpectedReply(format!(
                "{CMD_ALL}: index {} out of range for {} limits",
                all.index,
                limits.len()
            )));
        }
        Ok(all)
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
    use redis::{Arg, RedisFuture, RedisResult, Value};
    use std::sync::{Arc, Mutex};

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                _ => "<not a plain argument>".to_owned(),
            })
            .collect()
    }

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

    // ---- calls through a fake connection ----------------------------

    type Responder = dyn Fn(&[String]) -> Option<RedisResult<Value>> + Send + Sync;

    /// Answers from a closure (`None` = never answers) and records what
    /// was sent.
    #[derive(Clone)]
    struct Fake {
        respond: Arc<Responder>,
        sent: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl Fake {
        fn new(
            respond: impl Fn(&[String]) -> Option<RedisResult<Value>> + Send + Sync + 'static,
        ) -> Self {
            Fake {
                respond: Arc::new(respond),
                sent: Arc::default(),
            }
        }

        fn replying(value: Value) -> Self {
            Fake::new(move |_| Some(Ok(value.clone())))
        }

        fn sent(&self) -> Vec<Vec<String>> {
            self.sent.lock().unwrap().clone()
        }
    }

    impl ConnectionLike for Fake {
        fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            let sent = args(cmd);
            let reply = (self.respond)(&sent);
            self.sent.lock().unwrap().push(sent);
            Box::pin(async move {
                match reply {
                    Some(reply) => reply,
                    None => std::future::pending().await,
                }
            })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _: &'a redis::Pipeline,
            _: usize,
            _: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            unimplemented!("no pipelines here")
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    fn ints(values: &[i64]) -> Value {
        Value::Array(values.iter().copied().map(Value::Int).collect())
    }

    fn error_reply(line: &str) -> Value {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn check_sends_and_parses() {
        let fake = Fake::replying(ints(&[0, 10, 0, 1_500, 6_000]));
        let limiter = RateLimiter::new(fake.clone());
        let decision = limiter.check("k", &Quota::per_minute(10), 2).await.unwrap();
        assert!(!decision.allowed);
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
        }));
        let err = limiter
            .check("k", &Quota::per_second(1), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connection(_)), "{err:?}");
    }

    #[tokio::test]
    async fn calls_time_out() {
        let limiter = RateLimiter::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
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
        assert!(format!("{limiter:?}").contains("3s"));
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
    }
}
