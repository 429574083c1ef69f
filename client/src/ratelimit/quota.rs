//! What is allowed: [`Quota`] and [`Algorithm`], checked and written as
//! command arguments.

use crate::args;
use crate::error::{Error, Result};
use redis::Cmd;
use std::fmt;
use std::time::Duration;

/// The rate-limiting algorithm the module applies to a key.
///
/// A key's state belongs to one algorithm: using the same key with another
/// algorithm is refused by the module with a `WRONGTYPE` error
/// ([`Error::Server`]); [`RateLimiter::reset`](crate::RateLimiter::reset) the key first.
///
/// ```
/// use tk_redis::{Algorithm, Quota};
///
/// let logins = Quota::per_hour(10).algorithm(Algorithm::Fixed);
/// assert_eq!(logins.algorithm, Some(Algorithm::Fixed));
/// assert_eq!(Algorithm::Sliding.as_str(), "SLIDING");
/// ```
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
    pub(super) fn write_args(&self, cmd: &mut Cmd, cost: u64) -> Result<()> {
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
