//! What the client sends, checked and encoded the same way by every
//! feature: durations as whole milliseconds, random tokens, JSON values.

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// `duration` in whole milliseconds, rounded up (1.2 ms is sent as 2 ms).
pub(crate) fn ceil_ms(duration: Duration) -> u128 {
    duration.as_nanos().div_ceil(1_000_000)
}

/// `duration` in whole milliseconds, rounded up, after checking that it is
/// within 1 ms ..= `max`; `what` names it in the error, e.g. "lock ttl".
pub(crate) fn bounded_ms(what: &str, duration: Duration, max: Duration) -> Result<u64> {
    if duration < Duration::from_millis(1) || duration > max {
        return Err(Error::InvalidArgument(format!(
            "{what} must be between 1 ms and {max:?}, got {duration:?}"
        )));
    }
    // At most `max`, which the callers keep far below u64::MAX ms.
    Ok(u64::try_from(ceil_ms(duration)).unwrap_or(u64::MAX))
}

/// `N` random bytes from the OS, as `2 * N` lowercase hex digits; `what`
/// names the token in the error (e.g. "a lock token").
pub(crate) fn random_hex<const N: usize>(what: &str) -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| {
        // The OS random source failing is an environment problem, reported
        // as a (transient) I/O error: nothing was sent.
        Error::Connection(redis::RedisError::from(std::io::Error::other(format!(
            "no OS randomness for {what}: {err}"
        ))))
    })?;
    Ok(hex::encode(bytes))
}

/// `value` as JSON; `what` names it in the error, e.g. "the session data".
/// A value that cannot be serialized (a map with non-string keys...) is
/// the caller's mistake: [`Error::InvalidArgument`], nothing sent.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|err| Error::InvalidArgument(format!("cannot serialize {what} as JSON: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_up_within_bounds() {
        let max = Duration::from_secs(60);
        assert_eq!(bounded_ms("x", Duration::from_millis(1), max).unwrap(), 1);
        assert_eq!(
            bounded_ms("x", Duration::from_micros(1_200), max).unwrap(),
            2
        );
        assert_eq!(bounded_ms("x", max, max).unwrap(), 60_000);
        for bad in [
            Duration::ZERO,
            Duration::from_micros(999),
            max + Duration::from_nanos(1),
        ] {
            let err = bounded_ms("lock ttl", bad, max).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument(m) if m.starts_with("lock ttl must be between 1 ms and 60s")),
                "{err:?}"
            );
        }
        assert_eq!(ceil_ms(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn random_tokens_are_lowercase_hex() {
        let token = random_hex::<16>("a token").unwrap();
        assert_eq!(token.len(), 32);
        assert!(token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_ne!(token, random_hex::<16>("a token").unwrap());
    }

    #[test]
    fn unserializable_values_are_invalid_arguments() {
        let bad = std::collections::HashMap::from([((1, 2), "tuple keys")]);
        let err = to_json(&bad, "the value").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.starts_with("cannot serialize the value as JSON")),
            "{err:?}"
        );
        assert_eq!(to_json("a", "the value").unwrap(), br#""a""#);
    }
}
