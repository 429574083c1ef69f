//! Strict, typed parsing of replies via [`FromRedisValue`], and the
//! helpers every feature's reply types share.
//!
//! The module's replies are small fixed-shape arrays; anything else (wrong
//! length, a string where an integer belongs, a negative count, `allowed`
//! other than 0 or 1) is a parse error rather than a guess, so a
//! client/module version mismatch surfaces as
//! [`Error::UnexpectedReply`] instead of as a wrong decision.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::ratelimit::{AllDecision, Decision};

/// Length of a `TK.RATELIMIT` / `TK.RATELIMIT.PEEK` reply.
const DECISION_LEN: usize = 5;
/// Length of a `TK.RATELIMIT.ALL` reply.
const ALL_DECISION_LEN: usize = DECISION_LEN + 1;

/// Looks through RESP3 attributes, which carry no reply data.
pub(crate) fn unwrap_attribute(value: &Value) -> &Value {
    match value {
        Value::Attribute { data, .. } => data,
        other => other,
    }
}

/// [`unwrap_attribute`], taking the value.
pub(crate) fn into_unwrapped(value: Value) -> Value {
    match value {
        Value::Attribute { data, .. } => *data,
        other => other,
    }
}

/// Exactly `N` elements in an array.
pub(crate) fn elements<const N: usize>(value: Value) -> Result<[Value; N], ParsingError> {
    let items = match into_unwrapped(value) {
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "expected an array of {N} elements, got {}",
                type_name(&other)
            )
            .into())
        }
    };
    items.try_into().map_err(|items: Vec<Value>| {
        format!(
            "expected an array of {N} elements, got {} elements",
            items.len()
        )
        .into()
    })
}

/// A bulk string element (its content is never put in an error).
pub(crate) fn bulk(value: Value, index: usize, what: &str) -> Result<Vec<u8>, ParsingError> {
    match into_unwrapped(value) {
        Value::BulkString(bytes) => Ok(bytes),
        other => Err(format!(
            "element {index} ({what}) should be a bulk string, got {}",
            type_name(&other)
        )
        .into()),
    }
}

/// A UTF-8 bulk string element.
pub(crate) fn text(value: Value, index: usize, what: &str) -> Result<String, ParsingError> {
    String::from_utf8(bulk(value, index, what)?)
        .map_err(|_| format!("element {index} ({what}) is not UTF-8").into())
}

/// A non-negative integer element.
pub(crate) fn integer(value: &Value, index: usize, what: &str) -> Result<u64, ParsingError> {
    match unwrap_attribute(value) {
        Value::Int(n) => u64::try_from(*n)
            .map_err(|_| format!("element {index} ({what}) is negative ({n})").into()),
        other => Err(format!(
            "element {index} ({what}) should be an integer, got {}",
            type_name(other)
        )
        .into()),
    }
}

/// A parsing error's text without the redis crate's prefix.
pub(crate) fn detail(err: &ParsingError) -> String {
    let text = err.to_string();
    match text.strip_prefix("Incompatible type - ") {
        Some(detail) => detail.to_owned(),
        None => text,
    }
}

/// At most `max` characters of `text`, for error messages that must not
/// echo a large payload.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Decodes JSON read by `command`; `what` names the value in the error
/// (e.g. "the session data").
pub(crate) fn from_json<T: DeserializeOwned>(
    json: &[u8],
    command: &str,
    what: &str,
) -> Result<T, Error> {
    serde_json::from_slice(json).map_err(|err| undecodable(command, what, &err))
}

/// The error for JSON that does not decode as the requested type: where and
/// what kind of problem, but none of the data (serde's messages may quote
/// it, and it may be personal).
pub(crate) fn undecodable(command: &str, what: &str, err: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let kind = match err.classify() {
        Category::Syntax => "invalid JSON",
        Category::Eof => "truncated JSON",
        Category::Data => "JSON of another shape",
        Category::Io => "an I/O error",
    };
    Error::UnexpectedReply(format!(
        "{command}: {what} does not decode as the requested type \
         ({kind} at line {}, column {})",
        err.line(),
        err.column()
    ))
}

/// A short name for a value's type, for error messages that must not echo
/// a possibly large payload.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "OK",
        Value::Map(_) => "map",
        Value::Attribute { .. } => "attribute",
        Value::Set(_) => "set",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        Value::VerbatimString { .. } => "verbatim string",
        Value::BigNumber(_) => "big number",
        Value::Push { .. } => "push",
        Value::ServerError(_) => "error",
        _ => "unknown value",
    }
}

/// Exactly `N` integers in an array.
pub(crate) fn int_array<const N: usize>(value: &Value) -> Result<[i64; N], ParsingError> {
    let items = match unwrap_attribute(value) {
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "expected an array of {N} integers, got {}",
                type_name(other)
            )
            .into())
        }
    };
    if items.len() != N {
        return Err(format!(
            "expected an array of {N} integers, got {} elements",
            items.len()
        )
        .into());
    }
    let mut out = [0i64; N];
    for (index, (slot, item)) in out.iter_mut().zip(items).enumerate() {
        *slot = match unwrap_attribute(item) {
            Value::Int(n) => *n,
            other => {
                return Err(format!(
                    "element {index} should be an integer, got {}",
                    type_name(other)
                )
                .into())
            }
        };
    }
    Ok(out)
}

fn non_negative(value: i64, what: &str) -> Result<u64, ParsingError> {
    u64::try_from(value).map_err(|_| format!("{what} is negative ({value})").into())
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

/// A non-negative integer reply (e.g. the count from `TK.RATELIMIT.RESET`).
pub(crate) struct Count(pub(crate) u64);

impl FromRedisValue for Count {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        match unwrap_attribute(value) {
            Value::Int(n) => Ok(Count(non_negative(*n, "count")?)),
            other => Err(format!("expected an integer, got {}", type_name(other)).into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

/// A `1`/`0` integer reply (stored/refused, deleted/none, released/not held).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Flag(pub(crate) bool);

impl FromRedisValue for Flag {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        match unwrap_attribute(value) {
            Value::Int(0) => Ok(Flag(false)),
            Value::Int(1) => Ok(Flag(true)),
            Value::Int(other) => Err(format!("expected 0 or 1, got {other}").into()),
            other => Err(format!("expected the integer 0 or 1, got {}", type_name(other)).into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flags_are_strictly_zero_or_one() {
        assert_eq!(parse::<Flag>(Value::Int(1)).unwrap(), Flag(true));
        assert_eq!(parse::<Flag>(Value::Int(0)).unwrap(), Flag(false));
        assert!(parse::<Flag>(Value::Int(2)).is_err());
        assert!(parse::<Flag>(Value::Nil).is_err());
        assert!(parse::<Flag>(Value::Okay).is_err());
    }

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

    #[test]
    fn count() {
        assert_eq!(parse::<Count>(Value::Int(3)).unwrap().0, 3);
        assert!(parse::<Count>(Value::Int(-1)).is_err());
        assert!(parse::<Count>(Value::Okay).is_err());
        assert!(parse::<Count>(ints(&[1])).is_err());
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
