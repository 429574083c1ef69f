//! What the module answers: [`Decision`] and [`AllDecision`].

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::*;
use crate::reply::{int_array, non_negative};

/// Length of a `TK.RATELIMIT` / `TK.RATELIMIT.PEEK` reply.
const DECISION_LEN: usize = 5;
/// Length of a `TK.RATELIMIT.ALL` reply.
const ALL_DECISION_LEN: usize = DECISION_LEN + 1;

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
    pub(super) fn stand_in(allowed: bool, limit: u64) -> Decision {
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

pub(super) fn ceil_secs(duration: Duration) -> u64 {
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

/// The first five integers of a decision reply.
fn decision_from(ints: &[i64]) -> Result<Decision, ParsingError> {
    let allowed = match ints[0] {
        0 => false,
        1 => true,
        other => return Err(format!("allowed must be 0 or 1, got {other}").into()),
    };
    Ok(Decision {
        allowed,
        limit: non_negative(ints[1], "limit")?,
        remaining: non_negative(ints[2], "remaining")?,
        retry_after: Duration::from_millis(non_negative(ints[3], "retry_after_ms")?),
        reset_after: Duration::from_millis(non_negative(ints[4], "reset_after_ms")?),
        // Parsed from the module's reply: Redis made this decision.
        fallback: false,
    })
}

/// Parses `[allowed, limit, remaining, retry_after_ms, reset_after_ms]`.
impl FromRedisValue for Decision {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        decision_from(&int_array::<DECISION_LEN>(value)?)
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

/// Parses the five decision integers followed by the 0-based index of the
/// reported limit. Whether the index is in range of the limits sent is
/// checked by [`RateLimiter::check_all`](crate::RateLimiter::check_all),
/// which knows how many there were.
impl FromRedisValue for AllDecision {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        let ints = int_array::<ALL_DECISION_LEN>(value)?;
        let decision = decision_from(&ints[..DECISION_LEN])?;
        let index = non_negative(ints[DECISION_LEN], "index")?;
        let index = usize::try_from(index).map_err(|_| format!("index {index} out of range"))?;
        Ok(AllDecision { decision, index })
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ints(values: &[i64]) -> Value {
        Value::Array(values.iter().copied().map(Value::Int).collect())
    }

    fn parse<T: FromRedisValue>(value: Value) -> Result<T, String> {
        redis::from_redis_value::<T>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn allowed_decision() {
        let d: Decision = parse(ints(&[1, 100, 99, 0, 600])).unwrap();
        assert_eq!(
            d,
            Decision {
                allowed: true,
                limit: 100,
                remaining: 99,
                retry_after: Duration::ZERO,
                reset_after: Duration::from_millis(600),
                fallback: false,
            }
        );
    }

    #[test]
    fn refused_decision() {
        let d: Decision = parse(ints(&[0, 10, 0, 1_500, 60_000])).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_millis(1_500));
        assert_eq!(d.reset_after, Duration::from_secs(60));
    }

    #[test]
    fn by_reference_too() {
        let value = ints(&[1, 5, 4, 0, 200]);
        let d = redis::from_redis_value_ref::<Decision>(&value).unwrap();
        assert_eq!(d.limit, 5);
    }

    #[test]
    fn attributes_are_transparent() {
        let value = Value::Attribute {
            data: Box::new(ints(&[1, 5, 4, 0, 200])),
            attributes: vec![],
        };
        assert!(parse::<Decision>(value).is_ok());
    }

    #[test]
    fn wrong_length_is_rejected() {
        for len in [0usize, 1, 4, 6, 7] {
            let values = vec![1i64; len];
            let err = parse::<Decision>(ints(&values)).unwrap_err();
            assert!(err.contains("expected an array of 5 integers"), "{err}");
        }
        assert!(parse::<AllDecision>(ints(&[1, 1, 1, 0, 1])).is_err());
        assert!(parse::<AllDecision>(ints(&[1, 1, 1, 0, 1, 0, 0])).is_err());
    }

    #[test]
    fn non_arrays_are_rejected() {
        for value in [
            Value::Nil,
            Value::Int(1),
            Value::Okay,
            Value::BulkString(b"1".to_vec()),
            Value::Set(vec![Value::Int(1); 5]),
        ] {
            assert!(parse::<Decision>(value).is_err());
        }
    }

    #[test]
    fn non_integers_are_rejected() {
        let mut items: Vec<Value> = [1, 10, 9, 0, 100].into_iter().map(Value::Int).collect();
        items[2] = Value::BulkString(b"9".to_vec());
        let err = parse::<Decision>(Value::Array(items.clone())).unwrap_err();
        assert!(err.contains("element 2"), "{err}");
        items[2] = Value::SimpleString("9".into());
        assert!(parse::<Decision>(Value::Array(items.clone())).is_err());
        items[2] = Value::Double(9.0);
        assert!(parse::<Decision>(Value::Array(items.clone())).is_err());
        items[2] = Value::Nil;
        assert!(parse::<Decision>(Value::Array(items)).is_err());
    }

    #[test]
    fn allowed_must_be_zero_or_one() {
        for allowed in [2, -1, i64::MAX] {
            let err = parse::<Decision>(ints(&[allowed, 10, 9, 0, 100])).unwrap_err();
            assert!(err.contains("allowed must be 0 or 1"), "{err}");
        }
    }

    #[test]
    fn negatives_are_rejected() {
        for position in 1..5 {
            let mut values = [1i64, 10, 9, 0, 100];
            values[position] = -1;
            assert!(parse::<Decision>(ints(&values)).is_err(), "{position}");
        }
        assert!(parse::<AllDecision>(ints(&[1, 10, 9, 0, 100, -1])).is_err());
    }

    #[test]
    fn all_decision() {
        let all: AllDecision = parse(ints(&[0, 1000, 0, 30_000, 86_400_000, 2])).unwrap();
        assert_eq!(all.index, 2);
        assert!(!all.decision.allowed);
        assert_eq!(all.decision.limit, 1000);
        assert_eq!(all.decision.retry_after, Duration::from_secs(30));
    }

    proptest! {
        #[test]
        fn well_formed_replies_round_trip(
            allowed in any::<bool>(),
            limit in 0..=i64::MAX,
            remaining in 0..=i64::MAX,
            retry in 0..=i64::MAX,
            reset in 0..=i64::MAX,
            index in 0..=i64::from(u32::MAX),
        ) {
            let head = [i64::from(allowed), limit, remaining, retry, reset];
            let d: Decision = parse(ints(&head)).unwrap();
            prop_assert_eq!(d.allowed, allowed);
            prop_assert_eq!(d.limit, limit as u64);
            prop_assert_eq!(d.remaining, remaining as u64);
            prop_assert_eq!(d.retry_after, Duration::from_millis(retry as u64));
            prop_assert_eq!(d.reset_after, Duration::from_millis(reset as u64));
            prop_assert!(!d.fallback);

            let mut with_index = head.to_vec();
            with_index.push(index);
            let all: AllDecision = parse(ints(&with_index)).unwrap();
            prop_assert_eq!(all.decision, d);
            prop_assert_eq!(all.index as i64, index);
        }

        #[test]
        fn arbitrary_integer_arrays_never_panic(values in proptest::collection::vec(any::<i64>(), 0..8)) {
            let _ = parse::<Decision>(ints(&values));
            let _ = parse::<AllDecision>(ints(&values));
        }
    }
}
