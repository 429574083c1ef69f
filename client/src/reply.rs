//! The helpers every feature's reply types share, for strict, typed
//! parsing via [`FromRedisValue`], and the small replies several commands
//! give ([`Count`], [`Flag`]).
//!
//! The module's replies are small fixed-shape arrays; anything else (wrong
//! length, a string where an integer belongs, a negative count, a flag
//! other than 0 or 1) is a parse error rather than a guess, so a
//! client/module version mismatch surfaces as
//! [`Error::UnexpectedReply`] instead of as a wrong answer.
use redis::{FromRedisValue, ParsingError, Value};
use serde::de::DeserializeOwned;

use crate::error::Error;

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

/// `value` as a `u64`, or an error naming it (`what`) when negative.
pub(crate) fn non_negative(value: i64, what: &str) -> Result<u64, ParsingError> {
    u64::try_from(value).map_err(|_| format!("{what} is negative ({value})").into())
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
    fn count() {
        assert_eq!(parse::<Count>(Value::Int(3)).unwrap().0, 3);
        assert!(parse::<Count>(Value::Int(-1)).is_err());
        assert!(parse::<Count>(Value::Okay).is_err());
        assert!(parse::<Count>(ints(&[1])).is_err());
    }
}
