//! Rate limiting: three pure algorithms (the commands are in the module,
//! `module/src/ratelimit/command.rs`).
//!
//! The algorithms (`gcra`, `sliding`, `fixed`) know nothing about Redis. Each
//! takes the key's current state (raw bytes, `None` when the key is absent),
//! the time `now`, a validated [`Quota`] and a cost, and returns a
//! [`Decision`] plus the [`Write`] that would persist it. The module's
//! command layer decides whether to apply the write (never for PEEK, and for
//! ALL only when every limit allows).

pub mod fixed;
pub mod gcra;
pub mod parse;
pub mod sliding;
#[cfg(test)]
mod test_support;

use crate::effect::{Effect, Target, Value};
use std::fmt;

/// Nanoseconds since the Unix epoch. All algorithms share this unit so that
/// sub-millisecond emission intervals are exact enough; the clock that feeds
/// it may be coarser (Redis 7.0 gives milliseconds).
pub type Nanos = u64;

pub const NANOS_PER_MS: u64 = 1_000_000;

/// Longest span (in ms) any state may cover: `period`, and for GCRA the burst
/// window `period * burst / limit`. Keeps every timestamp far inside `u64`
/// nanoseconds and every expiry inside what `PXAT` accepts.
pub const MAX_SPAN_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Largest `limit`, `BURST` or `COST` accepted.
pub const MAX_COUNT: u64 = 1 << 40;

/// Which algorithm a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    Gcra,
    Sliding,
    Fixed,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Gcra, Algorithm::Sliding, Algorithm::Fixed];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::Sliding => "sliding",
            Algorithm::Fixed => "fixed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A validated quota: `limit` units per `period_ms`, up to `burst` at once
/// (GCRA only; the window algorithms ignore it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub period_ms: u64,
    pub burst: u64,
}

/// Why a quota/cost combination is refused before any state is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// The cost is larger than the most that could ever be admitted at once
    /// (BURST for GCRA, limit for SLIDING and FIXED): it would be refused forever.
    CostNeverFits { cost: u64, capacity: u64 },
    /// `period * burst / limit` is longer than [`MAX_SPAN_MS`].
    SpanTooLong,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::CostNeverFits { cost, capacity } => write!(
                f,
                "COST {cost} exceeds the capacity {capacity} of this limit and could never be admitted"
            ),
            QuotaError::SpanTooLong => write!(
                f,
                "period * BURST / limit must not exceed {MAX_SPAN_MS} ms (10 years)"
            ),
        }
    }
}

impl Quota {
    /// The number of units that can be admitted at once.
    pub fn capacity(&self, algorithm: Algorithm) -> u64 {
        match algorithm {
            Algorithm::Gcra => self.burst,
            Algorithm::Sliding | Algorithm::Fixed => self.limit,
        }
    }

    /// Checks what the argument parser cannot check field by field.
    /// Callers guarantee `1 <= limit, burst <= MAX_COUNT`, `1 <= period_ms <= MAX_SPAN_MS`,
    /// `cost <= MAX_COUNT`.
    pub fn validate(&self, algorithm: Algorithm, cost: u64) -> Result<(), QuotaError> {
        let capacity = self.capacity(algorithm);
        if cost > capacity {
            return Err(QuotaError::CostNeverFits { cost, capacity });
        }
        if algorithm == Algorithm::Gcra {
            let span = u128::from(self.period_ms) * u128::from(self.burst) / u128::from(self.limit);
            if span > u128::from(MAX_SPAN_MS) {
                return Err(QuotaError::SpanTooLong);
            }
        }
        Ok(())
    }
}

/// The reply of TK.RATELIMIT and TK.RATELIMIT.PEEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The `limit` argument, echoed.
    pub limit: u64,
    /// Units that could still be admitted right after this call.
    pub remaining: u64,
    /// 0 when allowed; otherwise the wait after which the same request is
    /// admitted (if nothing else consumes units meanwhile). Rounded up.
    pub retry_after_ms: u64,
    /// Time until the limit is back to its full capacity. Rounded up.
    pub reset_after_ms: u64,
}

/// What persisting a decision takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing changes (refused, cost 0, or nothing to store).
    None,
    /// Store the bytes left in the output buffer, expiring at this absolute
    /// Unix time in milliseconds.
    Set { expire_at_ms: u64 },
}

/// A decision and the write that would make it happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub write: Write,
}

impl Outcome {
    /// The write that makes the decision happen on the limit's key (argv
    /// position `key`), `state` being the new value [`decide`] left in its
    /// output buffer.
    pub fn effect<'a>(&self, key: usize, state: &'a [u8]) -> Option<Effect<'a>> {
        match self.write {
            Write::None => None,
            Write::Set { expire_at_ms } => Some(Effect::SetString {
                key: Target::Arg(key),
                value: Value::Bytes(state),
                expire_at_ms: Some(expire_at_ms),
            }),
        }
    }
}

/// The stored value is not a state this algorithm wrote (another algorithm's
/// state, or a value set by hand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptState;

/// Rounds a nanosecond duration up to whole milliseconds, so that waiting the
/// reported time is always enough.
pub fn ceil_ms(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_MS)
}

/// Runs the chosen algorithm on a key's value and expiry (`None` when the
/// key is absent). On success, when `write` is [`Write::Set`], `out` holds
/// the new value (it is cleared first).
pub fn decide(
    algorithm: Algorithm,
    state: Option<(&[u8], Option<u64>)>,
    now: Nanos,
    quota: &Quota,
    cost: u64,
    out: &mut Vec<u8>,
) -> Result<Outcome, CorruptState> {
    out.clear();
    // Only GCRA keeps part of its state in the key's expiry.
    let value = state.map(|(value, _)| value);
    match algorithm {
        Algorithm::Gcra => gcra::decide_stored(state, now, quota, cost, out),
        Algorithm::Sliding => sliding::decide(value, now, quota, cost, out),
        Algorithm::Fixed => fixed::decide(value, now, quota, cost, out),
    }
}
