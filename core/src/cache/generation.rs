//! Generations: how invalidation is O(1) no matter how many entries a user
//! has, and why a value computed before an invalidation is never stored.
//!
//! Every user has a *generations* hash (`tk:cg:{tag}`): field `u` is the
//! user's generation, field `n:<namespace>` each namespace's generation; an
//! absent field (or key) is generation 0. Every entry records the two
//! generations it was written under (fields `g` and `ng`). An entry is
//! visible only while both still equal the current ones, so:
//!
//! - `INVALIDATEUSER` increments `u`: every entry of the user, in every
//!   namespace, is invisible at once — one `HSET`, whatever the count.
//! - `INVALIDATENS` increments `n:<ns>`: only that namespace's entries.
//! - A read that misses returns the current generations as a token
//!   (`"<u>.<n>"`). `SET ... IFGEN <token>` stores only if the generations
//!   are still those: a value computed from data read before a concurrent
//!   invalidation is refused instead of being cached stale forever.
//!
//! Invisible entries are reclaimed in the background (`reclaim.rs`) and in
//! any case expire with their TTL.
//!
//! # Never going back
//!
//! A generation must never return to a value that stale entries or
//! in-flight computations still carry. The generations key therefore
//! expires only after every entry it governs ([`bookkeeping_expiry`]), and
//! after an invalidation it lives at least [`GENERATION_RETENTION_MS`], so a
//! computation slower than that is the only way to store something stale —
//! and that value still expires with its TTL.

use super::NAMESPACE_FIELD_PREFIX;

/// Field of the user's generation in the generations hash.
pub const USER_FIELD: &[u8] = b"u";

/// How long the generations key outlives an invalidation (24 h): the
/// longest computation whose stale result `IFGEN` is guaranteed to refuse.
pub const GENERATION_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// The generations an entry is written under, or a reader saw on a miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generations {
    pub user: u64,
    pub namespace: u64,
}

/// The largest generation: Redis hash integers (and integer replies) are
/// signed 64-bit.
pub const MAX_GENERATION: u64 = i64::MAX as u64;

/// A stored generation tk could not have written (set by hand): not a
/// decimal in `0..=MAX_GENERATION`. Every command treats it as foreign data
/// (WRONGTYPE), so none half-accepts what another refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptGeneration;

/// Parses one stored generation: absent is 0; otherwise strict ASCII
/// decimal without sign or leading zeros, at most [`MAX_GENERATION`].
pub fn parse_generation(stored: Option<&[u8]>) -> Result<u64, CorruptGeneration> {
    let Some(bytes) = stored else {
        return Ok(0);
    };
    if bytes.is_empty() || bytes.len() > 19 || (bytes.len() > 1 && bytes[0] == b'0') {
        return Err(CorruptGeneration);
    }
    bytes
        .iter()
        .try_fold(0u64, |value, &digit| {
            if !digit.is_ascii_digit() {
                return Err(CorruptGeneration);
            }
            value
                .checked_mul(10)
                .and_then(|value| value.checked_add(u64::from(digit - b'0')))
                .ok_or(CorruptGeneration)
        })
        .and_then(|value| {
            if value <= MAX_GENERATION {
                Ok(value)
            } else {
                Err(CorruptGeneration)
            }
        })
}

/// The generation an invalidation writes after `current`; `None` at
/// [`MAX_GENERATION`] (after 9.2·10^18 invalidations: `ERR`, never a value
/// the other commands would refuse).
pub fn next_generation(current: u64) -> Option<u64> {
    current
        .checked_add(1)
        .filter(|&next| next <= MAX_GENERATION)
}

/// A generations token, `"<user>.<namespace>"`, built on the stack.
pub struct Token {
    bytes: [u8; 41],
    len: usize,
}

impl Token {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Generations {
    /// The token form `"<user>.<namespace>"` (two u64 and a dot: at most 41 bytes).
    pub fn token(&self) -> Token {
        let mut token = Token {
            bytes: [0u8; 41],
            len: 0,
        };
        let mut buffer = itoa::Buffer::new();
        for (index, part) in [self.user, self.namespace].into_iter().enumerate() {
            if index > 0 {
                token.bytes[token.len] = b'.';
                token.len += 1;
            }
            let digits = buffer.format(part).as_bytes();
            token.bytes[token.len..token.len + digits.len()].copy_from_slice(digits);
            token.len += digits.len();
        }
        token
    }

    /// Appends the token form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.token().as_bytes());
    }

    /// Parses a token written by [`Generations::encode`]; strict.
    pub fn parse(token: &[u8]) -> Option<Generations> {
        let dot = token.iter().position(|&byte| byte == b'.')?;
        let (user, namespace) = (&token[..dot], &token[dot + 1..]);
        Some(Generations {
            user: parse_generation(Some(user)).ok()?,
            namespace: parse_generation(Some(namespace)).ok()?,
        })
    }
}

/// Whether an entry written under `entry` is visible under `current`.
pub fn is_visible(entry: Generations, current: Generations) -> bool {
    entry == current
}

/// What `SET` does given the current generations and an optional `IFGEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetDecision {
    /// Store, tagged with these generations.
    Store(Generations),
    /// The value was computed under older (or other) generations.
    RefuseStale,
}

pub fn decide_set(current: Generations, if_generations: Option<Generations>) -> SetDecision {
    match if_generations {
        Some(seen) if seen != current => SetDecision::RefuseStale,
        _ => SetDecision::Store(current),
    }
}

/// The expiry (Unix ms) the index and generations keys need after storing an
/// entry expiring at `entry_expiry_ms`: never earlier than they already
/// expire, so they outlive every entry they govern.
pub fn bookkeeping_expiry(entry_expiry_ms: u64, current_expiry_ms: Option<u64>) -> u64 {
    current_expiry_ms.map_or(entry_expiry_ms, |current| current.max(entry_expiry_ms))
}

/// The expiry (Unix ms) of the generations key after an invalidation at
/// `now_ms`: it must outlive the user's entries (the index expires with the
/// last one) and in-flight computations ([`GENERATION_RETENTION_MS`]).
pub fn invalidation_expiry(
    now_ms: u64,
    index_expiry_ms: Option<u64>,
    current_expiry_ms: Option<u64>,
) -> u64 {
    let retained = now_ms.saturating_add(GENERATION_RETENTION_MS);
    retained
        .max(index_expiry_ms.unwrap_or(0))
        .max(current_expiry_ms.unwrap_or(0))
}

/// Appends the generations-hash field of `namespace` (`n:<namespace>`).
pub fn namespace_field(namespace: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(NAMESPACE_FIELD_PREFIX);
    out.extend_from_slice(namespace);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generations_parse_strictly() {
        assert_eq!(parse_generation(None), Ok(0));
        assert_eq!(parse_generation(Some(b"0")), Ok(0));
        assert_eq!(parse_generation(Some(b"42")), Ok(42));
        assert_eq!(
            parse_generation(Some(b"9223372036854775807")),
            Ok(MAX_GENERATION)
        );
        assert_eq!(next_generation(MAX_GENERATION - 1), Some(MAX_GENERATION));
        assert_eq!(next_generation(MAX_GENERATION), None);
        for bad in [
            &b"9223372036854775808"[..],
            b"18446744073709551615",
            b"",
            b"-1",
            b"+1",
            b"01",
            b"1.0",
            b" 1",
            b"18446744073709551616",
            b"x",
        ] {
            assert_eq!(
                parse_generation(Some(bad)),
                Err(CorruptGeneration),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let generations = Generations {
            user: 3,
            namespace: 17,
        };
        let mut token = Vec::new();
        generations.encode(&mut token);
        assert_eq!(token, b"3.17");
        assert_eq!(Generations::parse(&token), Some(generations));
        for bad in [
            &b""[..],
            b"3",
            b"3.",
            b".1",
            b"3.1.2",
            b"a.b",
            b"03.1",
            b"-1.2",
        ] {
            assert_eq!(Generations::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn set_refuses_values_from_before_an_invalidation() {
        let before = Generations {
            user: 1,
            namespace: 0,
        };
        let after_user = Generations {
            user: 2,
            namespace: 0,
        };
        let after_namespace = Generations {
            user: 1,
            namespace: 1,
        };
        assert_eq!(decide_set(before, None), SetDecision::Store(before));
        assert_eq!(decide_set(before, Some(before)), SetDecision::Store(before));
        assert_eq!(
            decide_set(after_user, Some(before)),
            SetDecision::RefuseStale
        );
        assert_eq!(
            decide_set(after_namespace, Some(before)),
            SetDecision::RefuseStale
        );
        assert!(is_visible(before, before));
        assert!(!is_visible(before, after_user));
        assert!(!is_visible(before, after_namespace));
    }

    #[test]
    fn bookkeeping_outlives_entries() {
        assert_eq!(bookkeeping_expiry(100, None), 100);
        assert_eq!(bookkeeping_expiry(100, Some(50)), 100);
        assert_eq!(bookkeeping_expiry(100, Some(500)), 500);
        let now = 1_000;
        assert_eq!(
            invalidation_expiry(now, None, None),
            now + GENERATION_RETENTION_MS
        );
        let late = now + GENERATION_RETENTION_MS + 5;
        assert_eq!(invalidation_expiry(now, Some(late), None), late);
        assert_eq!(invalidation_expiry(now, None, Some(late + 1)), late + 1);
    }

    #[test]
    fn namespace_fields() {
        let mut field = Vec::new();
        namespace_field(b"search", &mut field);
        assert_eq!(field, b"n:search");
    }

    proptest! {
        #[test]
        fn any_token_round_trips(user in 0..=MAX_GENERATION, namespace in 0..=MAX_GENERATION) {
            let generations = Generations { user, namespace };
            let mut token = Vec::new();
            generations.encode(&mut token);
            prop_assert_eq!(Generations::parse(&token), Some(generations));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..30)) {
            let _ = Generations::parse(&bytes);
            let _ = parse_generation(Some(&bytes));
        }

        /// Whatever happens, a stored value is visible only under the exact
        /// generations it was stored with; any invalidation hides it.
        #[test]
        fn any_invalidation_hides_older_values(
            user in 0u64..1000, namespace in 0u64..1000,
            bump_user in any::<bool>(), bump_namespace in any::<bool>(),
        ) {
            let stored = Generations { user, namespace };
            let current = Generations {
                user: user + u64::from(bump_user),
                namespace: namespace + u64::from(bump_namespace),
            };
            prop_assert_eq!(is_visible(stored, current), !bump_user && !bump_namespace);
            let stale = decide_set(current, Some(stored)) == SetDecision::RefuseStale;
            prop_assert_eq!(stale, bump_user || bump_namespace);
        }
    }
}
