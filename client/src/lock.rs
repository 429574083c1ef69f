//! Distributed locks with fencing tokens: [`Lock`] acquires, [`LockGuard`]
//! extends and releases, on the module's `TK.LOCK.*` commands.
//!
//! ```no_run
//! use std::time::Duration;
//! use tk_redis::lock::Lock;
//!
//! # async fn demo() -> tk_redis::Result<()> {
//! let locks = Lock::connect("redis://127.0.0.1:6379/").await?;
//! // Wait up to 5 s for the lock; hold it for at most 30 s unless extended.
//! match locks.acquire("invoices:2025-11", Duration::from_secs(30), Duration::from_secs(5)).await? {
//!     Some(mut guard) => {
//!         // Send the fencing token with every write to the protected
//!         // resource, which refuses tokens older than the newest it has seen.
//!         println!("holding with fence {}", guard.fence());
//!         if !guard.extend(Duration::from_secs(30)).await? {
//!             println!("lost the lock (it expired): stop writing");
//!         }
//!         guard.release().await?;
//!     }
//!     None => println!("someone else holds it"),
//! }
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! Each acquire draws a random 128-bit owner token (from the OS random
//! source). The lock name maps to two keys in one hash slot
//! ([`lock_key`], [`fence_key`]): the lock key holds the token and expires
//! after the TTL; the fence key holds a counter, incremented by every
//! successful acquire, whose new value is the guard's [`fence`](LockGuard::fence).
//! Release and extend only act when the token still matches, atomically, in
//! one command each.
//!
//! # Limits
//!
//! - **Single instance.** The lock is as correct as one Redis server: it is
//!   not Redlock and does not span independent masters. With Redis Cluster
//!   each lock lives on the one shard owning its slot.
//! - **Failover.** Replication is asynchronous: if the primary fails after
//!   granting a lock but before a replica received it, the promoted replica
//!   does not know the lock and grants it again — two holders at once, and
//!   the new fence may repeat one already issued. Fencing tokens are what
//!   protects the resource: it must refuse any token lower than one it has
//!   seen (and, to survive this case, refuse equal tokens from another
//!   writer). `WAIT 1 <ms>` after acquiring narrows the window; it does not
//!   close it.
//! - **Time.** The TTL runs on the server's clock; a clock jump on the
//!   server shortens or lengthens it. [`LockGuard::expires_at`] is a local,
//!   conservative estimate (measured from before the command was sent), not
//!   a guarantee: a paused process (GC, swap) can outlive its lock, which is
//!   again what the fence is for.
//! - **No release on drop.** Dropping a guard does not release the lock (an
//!   async call cannot run in `Drop`); an unreleased lock expires after its
//!   TTL. Call [`LockGuard::release`].
//! - **One small key per name persists.** The fence key never expires, so
//!   that fencing tokens keep increasing across expiries. Deleting it (or
//!   letting an `allkeys-*` maxmemory policy evict it) restarts the tokens
//!   at 1.

use std::fmt;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{FromRedisValue, ParsingError, Value};

use crate::args;
use crate::backoff;
use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::reply::{int_array, Flag};

/// `TK.LOCK.ACQUIRE <lock_key> <fence_key> <token> <ttl_ms>`.
pub(crate) const CMD_ACQUIRE: &str = "TK.LOCK.ACQUIRE";
/// `TK.LOCK.RELEASE <lock_key> <token>`.
pub(crate) const CMD_RELEASE: &str = "TK.LOCK.RELEASE";
/// `TK.LOCK.EXTEND <lock_key> <token> <ttl_ms>`.
pub(crate) const CMD_EXTEND: &str = "TK.LOCK.EXTEND";

/// The prefix of the keys derived from a lock name (see [`lock_key`]).
pub const KEY_PREFIX: &str = "tk:lock:";

/// The longest TTL the module grants in one acquire or extend: one day.
///
/// ```no_run
/// # async fn demo(locks: tk_redis::Lock) {
/// use std::time::Duration;
/// use tk_redis::lock::MAX_TTL;
///
/// // Longer than a day: refused before anything is sent.
/// let err = locks.try_acquire("nightly", MAX_TTL + Duration::from_secs(1)).await.unwrap_err();
/// assert!(matches!(err, tk_redis::Error::InvalidArgument(_)));
/// # }
/// ```
pub const MAX_TTL: Duration = Duration::from_millis(tk_redis_core::lock::MAX_TTL_MS);

/// First pause between two attempts of [`Lock::acquire`]; it doubles up to
/// [`MAX_BACKOFF`], with random jitter.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between two attempts of [`Lock::acquire`].
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The lock key of `name`: `tk:lock:{<name>}` (the name is the hash tag).
///
/// ```
/// assert_eq!(tk_redis::lock::lock_key("jobs"), "tk:lock:{jobs}");
/// ```
pub fn lock_key(name: &str) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + name.len() + 2);
    key.push_str(KEY_PREFIX);
    key.push('{');
    key.push_str(name);
    key.push('}');
    key
}

/// The fence key of `name`: `tk:lock:{<name>}:fence`, in the same hash slot
/// as [`lock_key`].
///
/// ```
/// assert_eq!(tk_redis::lock::fence_key("jobs"), "tk:lock:{jobs}:fence");
/// ```
pub fn fence_key(name: &str) -> String {
    let mut key = lock_key(name);
    key.push_str(":fence");
    key
}

/// Refuses names whose keys would not share a hash slot: the empty name
/// and names starting with `}` (both leave an empty hash tag).
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('}') {
        return Err(Error::InvalidArgument(format!(
            "lock name {name:?} must not be empty or start with '}}'"
        )));
    }
    Ok(())
}

/// The TTL in whole milliseconds, rounded up, within 1 ms ..= [`MAX_TTL`].
fn ttl_ms(ttl: Duration) -> Result<u64> {
    args::bounded_ms("lock ttl", ttl, MAX_TTL)
}

/// A new owner token: 128 random bits from the OS, as 32 lowercase hex digits.
fn new_token() -> Result<String> {
    args::random_hex::<16>("a lock token")
}

/// Acquires locks by name. Cloning is cheap and shares the connection.
///
/// Generic over the connection like [`RateLimiter`](crate::RateLimiter): by
/// default a [`ConnectionManager`] ([`Lock::connect`]), or any cloneable
/// async connection ([`Lock::new`]), cluster connections included (a lock's
/// two keys share a hash slot). Every call waits at most
/// [`timeout`](Lock::timeout) (default [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT),
/// 3 s) and then fails with [`Error::Timeout`]; guards inherit it.
///
/// See the [module docs](self) for the guarantees and their limits.
#[derive(Clone)]
pub struct Lock<C = ConnectionManager> {
    core: ClientCore<C>,
}

impl<C> fmt::Debug for Lock<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.debug_struct(f, "Lock").finish_non_exhaustive()
    }
}

impl Lock<ConnectionManager> {
    crate::client::connect_constructor!();
}

impl<C> Lock<C> {
    /// Wraps an existing connection, with the default timeout.
    pub fn new(conn: C) -> Self {
        Lock {
            core: ClientCore::new(conn),
        }
    }

    crate::client::core_accessors!();
    crate::client::tk_mode_accessors!();
}

/// One ACQUIRE's answer.
enum Attempt<C> {
    Acquired(LockGuard<C>),
    /// Held by another token; `remaining` is how long until that holder's
    /// lock expires (`None`: it has no expiry).
    Busy {
        remaining: Option<Duration>,
    },
}

impl<C> Lock<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Tries once to acquire the lock `name` for `ttl` (`TK.LOCK.ACQUIRE`).
    /// `Ok(None)` when another owner holds it.
    ///
    /// `ttl` is sent in whole milliseconds, rounded up, and must be between
    /// 1 ms and [`MAX_TTL`]; `name` must not be empty or start with `}`
    /// ([`Error::InvalidArgument`], nothing sent). If the call fails with a
    /// transient error the command may still have run: the lock then stays
    /// held by a token nobody knows until `ttl` passes. [`Lock::acquire`]
    /// retries such errors with the same token, which recovers the lock.
    pub async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<LockGuard<C>>> {
        let request = Request::new(name, ttl)?;
        match self.attempt(&request).await? {
            Attempt::Acquired(guard) => Ok(Some(guard)),
            Attempt::Busy { .. } => Ok(None),
        }
    }

    /// Acquires the lock `name` for `ttl`, waiting up to `wait` while another
    /// owner holds it. `Ok(None)` when it is still held when `wait` runs out.
    ///
    /// Retries with exponential backoff (10 ms doubling up to 200 ms, with
    /// random jitter, never sleeping past the holder's expiry or the
    /// deadline), and makes a last attempt at the deadline. Transient errors
    /// (connection, timeout) are retried too, with the same owner token, so
    /// an acquire whose reply was lost is recovered rather than left to
    /// expire; the last one is returned if the deadline passes. A `wait` of
    /// zero makes one attempt, like [`try_acquire`](Lock::try_acquire).
    pub async fn acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<LockGuard<C>>> {
        let request = Request::new(name, ttl)?;
        let deadline = Instant::now() + wait;
        let mut pauses = backoff::doubling_with_jitter(MIN_BACKOFF, MAX_BACKOFF);
        loop {
            let attempt = self.attempt(&request).await;
            let now = Instant::now();
            let backoff = pauses.next().unwrap_or(MAX_BACKOFF);
            let pause = match attempt {
                Ok(Attempt::Acquired(guard)) => return Ok(Some(guard)),
                Ok(Attempt::Busy { .. }) if now >= deadline => return Ok(None),
                Ok(Attempt::Busy { remaining }) => {
                    // Wake up no later than just after the holder's expiry.
                    let until_free = remaining.map_or(Duration::MAX, |left| {
                        left.saturating_add(Duration::from_millis(1))
                    });
                    backoff.min(until_free)
                }
                Err(err) if err.is_transient() && now < deadline => backoff,
                Err(err) => return Err(err),
            };
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
        }
    }

    async fn attempt(&self, request: &Request) -> Result<Attempt<C>> {
        let mut cmd = redis::cmd(CMD_ACQUIRE);
        cmd.arg(&request.lock_key)
            .arg(&request.fence_key)
            .arg(&request.token)
            .arg(request.ttl_ms);
        let sent = Instant::now();
        let reply: AcquireReply = self.core.query(CMD_ACQUIRE, &cmd).await?;
        Ok(match reply {
            AcquireReply::Acquired { fence, ttl_ms } => Attempt::Acquired(LockGuard {
                core: self.core.clone(),
                name: request.name.clone(),
                lock_key: request.lock_key.clone(),
                token: request.token.clone(),
                fence,
                expires_at: sent + Duration::from_millis(ttl_ms.min(request.ttl_ms)),
            }),
            AcquireReply::Busy { remaining_ms } => Attempt::Busy {
                remaining: remaining_ms.map(Duration::from_millis),
            },
        })
    }
}

/// A validated acquire request with its owner token (kept across retries).
struct Request {
    name: String,
    lock_key: String,
    fence_key: String,
    token: String,
    ttl_ms: u64,
}

impl Request {
    fn new(name: &str, ttl: Duration) -> Result<Request> {
        check_name(name)?;
        let ttl_ms = ttl_ms(ttl)?;
        Ok(Request {
            name: name.to_owned(),
            lock_key: lock_key(name),
            fence_key: fence_key(name),
            token: new_token()?,
            ttl_ms,
        })
    }
}

/// A held lock: its name, owner token and fencing token. See the
/// [module docs](self) for an example.
///
/// Not released on drop: call [`release`](LockGuard::release), or the lock
/// expires after its TTL. Calls use the [`Lock`]'s connection and timeout.
pub struct LockGuard<C = ConnectionManager> {
    core: ClientCore<C>,
    name: String,
    lock_key: String,
    token: String,
    fence: u64,
    expires_at: Instant,
}

impl<C> fmt::Debug for LockGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The owner token is left out: it is what lets anyone release the lock.
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("fence", &self.fence)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl<C> LockGuard<C> {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owner token (32 hex digits), which release and extend present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The fencing token: larger than that of every earlier acquire of this
    /// name. Send it with each write to the protected resource, which should
    /// refuse a token lower than the highest it has accepted.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// When the lock expires at the latest, by the local clock: measured from
    /// before the acquire (or last extend) was sent, so the server's expiry
    /// is no earlier than this unless the clocks drift or the server's jumps.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether [`expires_at`](LockGuard::expires_at) has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }
}

impl<C> LockGuard<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Sets the lock to expire `ttl` from now (`TK.LOCK.EXTEND`), if this
    /// guard's token still holds it. `Ok(false)` when it does not (the lock
    /// expired, and maybe someone else acquired it): stop using the resource.
    /// The new expiry replaces the old one even if it is sooner. The fence
    /// does not change.
    pub async fn extend(&mut self, ttl: Duration) -> Result<bool> {
        let ttl_ms = ttl_ms(ttl)?;
        let mut cmd = redis::cmd(CMD_EXTEND);
        cmd.arg(&self.lock_key).arg(&self.token).arg(ttl_ms);
        let sent = Instant::now();
        let Flag(extended) = self.core.query(CMD_EXTEND, &cmd).await?;
        if extended {
            self.expires_at = sent + Duration::from_millis(ttl_ms);
        }
        Ok(extended)
    }

    /// Releases the lock (`TK.LOCK.RELEASE`) if this guard's token still
    /// holds it. `Ok(false)` when it does not (it expired, or was already
    /// released). After a transient error, retrying is safe: the token only
    /// ever matches this guard's own lock.
    pub async fn release(&self) -> Result<bool> {
        let mut cmd = redis::cmd(CMD_RELEASE);
        cmd.arg(&self.lock_key).arg(&self.token);
        let Flag(released) = self.core.query(CMD_RELEASE, &cmd).await?;
        Ok(released)
    }
}

// ---- replies ---------------------------------------------------------------

/// `TK.LOCK.ACQUIRE`'s reply: `[1, fence, ttl_ms]` or `[0, 0, remaining_ms]`
/// (`remaining_ms` -1 when the holder has no expiry).
#[derive(Debug, PartialEq, Eq)]
enum AcquireReply {
    Acquired { fence: u64, ttl_ms: u64 },
    Busy { remaining_ms: Option<u64> },
}

impl FromRedisValue for AcquireReply {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        let ints = int_array::<3>(value)?;
        match ints {
            [1, fence, ttl_ms] if fence >= 1 && ttl_ms >= 1 => Ok(AcquireReply::Acquired {
                fence: fence as u64,
                ttl_ms: ttl_ms as u64,
            }),
            [0, 0, -1] => Ok(AcquireReply::Busy { remaining_ms: None }),
            [0, 0, remaining] if remaining >= 0 => Ok(AcquireReply::Busy {
                remaining_ms: Some(remaining as u64),
            }),
            other => Err(format!("unexpected values {other:?}").into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use redis::{RedisResult, Value};

    fn reset() -> RedisResult<Value> {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
    }

    fn invalid_argument<T: fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidArgument(message)) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    // ---- keys, names, tokens, ttls -------------------------------------

    #[test]
    fn keys_share_the_name_as_hash_tag() {
        assert_eq!(lock_key("a"), "tk:lock:{a}");
        assert_eq!(fence_key("a"), "tk:lock:{a}:fence");
        assert_eq!(lock_key("{x}:y"), "tk:lock:{{x}:y}");
    }

    #[test]
    fn names_that_break_the_hash_tag_are_refused() {
        assert!(check_name("jobs").is_ok());
        assert!(check_name("a}b").is_ok());
        assert!(invalid_argument(check_name("")).contains("must not be empty"));
        assert!(invalid_argument(check_name("}x")).contains("'}'"));
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn ttls_are_whole_ms_rounded_up() {
        assert_eq!(ttl_ms(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1_001)).unwrap(), 2);
        assert_eq!(ttl_ms(MAX_TTL).unwrap(), 86_400_000);
        assert!(invalid_argument(ttl_ms(Duration::ZERO)).contains("between 1 ms"));
        assert!(invalid_argument(ttl_ms(Duration::from_micros(999))).contains("ttl"));
        assert!(invalid_argument(ttl_ms(MAX_TTL + Duration::from_nanos(1))).contains("ttl"));
    }

    // ---- replies -----------------------------------------------------------

    fn parse<T: FromRedisValue>(value: Value) -> Result<T, String> {
        redis::from_redis_value::<T>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn acquire_replies() {
        assert_eq!(
            parse::<AcquireReply>(ints(&[1, 7, 500])).unwrap(),
            AcquireReply::Acquired {
                fence: 7,
                ttl_ms: 500
            }
        );
        assert_eq!(
            parse::<AcquireReply>(ints(&[0, 0, 120])).unwrap(),
            AcquireReply::Busy {
                remaining_ms: Some(120)
            }
        );
        assert_eq!(
            parse::<AcquireReply>(ints(&[0, 0, -1])).unwrap(),
            AcquireReply::Busy { remaining_ms: None }
        );
        for bad in [
            ints(&[1, 0, 500]),
            ints(&[1, 7, 0]),
            ints(&[1, -7, 500]),
            ints(&[0, 3, 10]),
            ints(&[0, 0, -2]),
            ints(&[2, 1, 1]),
            ints(&[1, 1]),
            ints(&[1, 1, 1, 1]),
            Value::Int(1),
            Value::Nil,
            Value::Array(vec![
                Value::Int(1),
                Value::BulkString(b"1".to_vec()),
                Value::Int(1),
            ]),
        ] {
            assert!(parse::<AcquireReply>(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flag_replies() {
        assert!(parse::<Flag>(Value::Int(1)).unwrap().0);
        assert!(!parse::<Flag>(Value::Int(0)).unwrap().0);
        assert!(parse::<Flag>(Value::Int(2)).is_err());
        assert!(parse::<Flag>(Value::Okay).is_err());
    }

    // ---- calls through a fake connection ----------------------------------

    #[tokio::test]
    async fn try_acquire_sends_both_keys_and_builds_a_guard() {
        let fake = Fake::replying(ints(&[1, 42, 1_500]));
        let lock = Lock::new(fake.clone());
        let before = Instant::now();
        let guard = lock
            .try_acquire("jobs", Duration::from_micros(1_499_001))
            .await
            .unwrap()
            .expect("acquired");
        assert_eq!(guard.fence(), 42);
        assert_eq!(guard.name(), "jobs");
        assert!(guard.expires_at() >= before + Duration::from_millis(1_500));
        assert!(guard.expires_at() <= Instant::now() + Duration::from_millis(1_500));
        assert!(!guard.is_expired());
        let sent = fake.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0][..3],
            ["TK.LOCK.ACQUIRE", "tk:lock:{jobs}", "tk:lock:{jobs}:fence"]
        );
        assert_eq!(sent[0][3], guard.token());
        assert_eq!(sent[0][4], "1500");
        assert!(!format!("{guard:?}").contains(guard.token()));
    }

    #[tokio::test]
    async fn try_acquire_busy_is_none() {
        let fake = Fake::replying(ints(&[0, 0, 300]));
        let lock = Lock::new(fake.clone());
        assert!(lock
            .try_acquire("jobs", Duration::from_secs(1))
            .await
            .unwrap()
            .is_none());
        assert_eq!(fake.sent().len(), 1);
    }

    #[tokio::test]
    async fn invalid_arguments_send_nothing() {
        let fake = Fake::replying(ints(&[1, 1, 1]));
        let lock = Lock::new(fake.clone());
        assert!(lock.try_acquire("", Duration::from_secs(1)).await.is_err());
        assert!(lock.try_acquire("x", Duration::ZERO).await.is_err());
        assert!(lock
            .acquire("x", MAX_TTL * 2, Duration::from_secs(1))
            .await
            .is_err());
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn acquire_retries_while_busy_with_the_same_token() {
        let fake = Fake::sequence(vec![
            Ok(ints(&[0, 0, 5])),
            Ok(ints(&[0, 0, 1])),
            Ok(ints(&[1, 9, 1_000])),
        ]);
        let lock = Lock::new(fake.clone());
        let guard = lock
            .acquire("jobs", Duration::from_secs(1), Duration::from_secs(10))
            .await
            .unwrap()
            .expect("acquired on the third attempt");
        assert_eq!(guard.fence(), 9);
        let sent = fake.sent();
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|call| call[3] == guard.token()));
    }

    #[tokio::test]
    async fn acquire_gives_up_at_the_deadline() {
        let fake = Fake::replying(ints(&[0, 0, 60_000]));
        let lock = Lock::new(fake.clone());
        let started = Instant::now();
        let result = lock
            .acquire("jobs", Duration::from_secs(1), Duration::from_millis(50))
            .await
            .unwrap();
        assert!(result.is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        // Several attempts, the last one at the deadline.
        assert!(fake.sent().len() >= 2, "{:?}", fake.sent());
        // Zero wait: exactly one attempt.
        let once = Fake::replying(ints(&[0, 0, 60_000]));
        let lock = Lock::new(once.clone());
        assert!(lock
            .acquire("jobs", Duration::from_secs(1), Duration::ZERO)
            .await
            .unwrap()
            .is_none());
        assert_eq!(once.sent().len(), 1);
    }

    #[tokio::test]
    async fn acquire_retries_transient_errors_with_the_same_token() {
        let fake = Fake::sequence(vec![reset(), Ok(ints(&[1, 3, 1_000]))]);
        let lock = Lock::new(fake.clone());
        let guard = lock
            .acquire("jobs", Duration::from_secs(1), Duration::from_secs(10))
            .await
            .unwrap()
            .expect("acquired after the error");
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0][3], sent[1][3]);
        assert_eq!(sent[1][3], guard.token());
        // Past the deadline, the error is returned.
        let failing = Lock::new(Fake::sequence(vec![reset()]));
        let err = failing
            .acquire("jobs", Duration::from_secs(1), Duration::from_millis(30))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    #[tokio::test]
    async fn server_errors_are_not_retried() {
        let fake = Fake::replying(error_reply("WRONGTYPE Operation against a key"));
        let lock = Lock::new(fake.clone());
        let err = lock
            .acquire("jobs", Duration::from_secs(1), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Server { code, .. } if code == "WRONGTYPE"),
            "{err:?}"
        );
        assert_eq!(fake.sent().len(), 1);
        let missing = Lock::new(Fake::replying(error_reply(
            "ERR unknown command 'TK.LOCK.ACQUIRE', with args beginning with: ",
        )));
        let err = missing
            .try_acquire("jobs", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.is_module_not_loaded(), "{err:?}");
    }

    #[tokio::test]
    async fn guard_extends_and_releases_with_its_token() {
        let fake = Fake::new(|sent| {
            Some(Ok(match sent[0].as_str() {
                CMD_ACQUIRE => ints(&[1, 5, 100]),
                CMD_EXTEND => Value::Int(1),
                CMD_RELEASE => Value::Int(0),
                other => panic!("unexpected {other}"),
            }))
        });
        let lock = Lock::new(fake.clone()).with_timeout(Duration::from_secs(1));
        let mut guard = lock
            .try_acquire("jobs", Duration::from_millis(100))
            .await
            .unwrap()
            .unwrap();
        let before = guard.expires_at();
        assert!(guard.extend(Duration::from_secs(60)).await.unwrap());
        assert!(guard.expires_at() > before);
        assert!(!guard.release().await.unwrap());
        assert!(guard.extend(Duration::ZERO).await.is_err());
        let sent = fake.sent();
        assert_eq!(sent.len(), 3);
        let token = guard.token().to_owned();
        assert_eq!(
            sent[1],
            ["TK.LOCK.EXTEND", "tk:lock:{jobs}", &token, "60000"]
        );
        assert_eq!(sent[2], ["TK.LOCK.RELEASE", "tk:lock:{jobs}", &token]);
    }

    #[tokio::test]
    async fn calls_time_out() {
        let lock = Lock::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
        assert_eq!(lock.timeout(), Duration::from_millis(20));
        let err = lock
            .try_acquire("jobs", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
    }

    #[test]
    fn defaults() {
        let lock = Lock::new(Fake::replying(Value::Nil));
        assert_eq!(lock.timeout(), crate::DEFAULT_TIMEOUT);
        assert!(format!("{lock:?}").contains("3s"));
    }

    // ---- compile-time checks -----------------------------------------

    fn assert_send<T: Send>(_: &T) {}

    /// The futures are `Send` (usable from `tokio::spawn`) for the default,
    /// cluster and multiplexed connections.
    #[allow(dead_code)]
    fn futures_are_send(
        single: &Lock,
        cluster: &Lock<redis::cluster_async::ClusterConnection>,
        multiplexed: &Lock<redis::aio::MultiplexedConnection>,
        guard: &mut LockGuard,
    ) {
        let ttl = Duration::from_secs(1);
        assert_send(&single.try_acquire("k", ttl));
        assert_send(&single.acquire("k", ttl, ttl));
        assert_send(&cluster.acquire("k", ttl, ttl));
        assert_send(&multiplexed.acquire("k", ttl, ttl));
        assert_send(&guard.release());
        assert_send(&guard.extend(ttl));
    }
}
