//! The lock's decisions, as pure functions of what the keys hold and `now`.
//!
//! ```text
//! ACQUIRE(token, ttl): lock absent or held by `token`
//!                        -> fence := fence + 1; lock := token, expiring at now + ttl
//!                      held by another token -> refused, nothing changes
//! RELEASE(token):      held by `token` -> delete the lock key; else nothing
//! EXTEND(token, ttl):  held by `token` -> lock expires at now + ttl; else nothing
//! ```
//!
//! An acquire with the token that already holds the lock succeeds: it
//! refreshes the TTL and issues a **new** fencing token. So the fence
//! increases with *every* successful acquire, without exception, and an
//! acquire whose reply was lost (timeout, dropped connection) can be retried
//! with the same token: the retry gets the lock back with a fence larger than
//! any issued before, rather than waiting for its own lock to expire. Only
//! the owner knows its token, so no one else can take over a held lock.
//!
//! The stored lock value is compared byte for byte; any string is a possible
//! holder (one set by hand simply matches no token of 1 to 128 bytes it does
//! not equal). The fence value is parsed strictly: a canonical decimal from 0
//! to [`MAX_FENCE`], the form Redis's own `INCR`/`GET` use; anything else is
//! [`LockError::BadFence`]. An absent fence key counts as 0.
//!
//! Times: `now` is nanoseconds since the Unix epoch; expiries are absolute
//! Unix milliseconds, rounded so that a lock never expires before
//! `now + ttl`.

use super::{LockError, MAX_FENCE};
use crate::effect::{Effect, Target, Value};

/// Nanoseconds since the Unix epoch.
pub type Nanos = u64;

pub const NANOS_PER_MS: u64 = 1_000_000;

/// `MAX_FENCE` has 19 decimal digits.
const MAX_FENCE_DIGITS: usize = 19;

/// What the lock key holds: the owner's token and its absolute expiry in
/// Unix ms (`None` if the key has no expiry, which only a hand-made key has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub token: &'a [u8],
    pub expire_at_ms: Option<u64>,
}

/// The outcome of an ACQUIRE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// Granted: store `fence` in the fence key (no expiry) and the token in
    /// the lock key, expiring at `expire_at_ms`.
    Acquired { fence: u64, expire_at_ms: u64 },
    /// Held by another token; nothing changes. `remaining_ms` is how long
    /// until that holder's lock expires (at least 1), `None` if it has no
    /// expiry.
    Busy { remaining_ms: Option<u64> },
}

/// The outcome of a RELEASE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Held by this token: delete the lock key (the fence key stays).
    Released,
    /// Absent or held by another token; nothing changes.
    NotHeld,
}

/// The outcome of an EXTEND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// Held by this token: the lock key now expires at `expire_at_ms`.
    Extended { expire_at_ms: u64 },
    /// Absent or held by another token; nothing changes.
    NotHeld,
}

impl Acquire {
    /// The writes of a granted acquire: the fence first (should the second
    /// write ever fail, the only trace is a skipped fencing token, never a
    /// lock without one), then the token with its expiry.
    pub fn effects<'a>(
        &self,
        lock: Target<'a>,
        fence_key: Target<'a>,
        token: &'a [u8],
    ) -> Option<[Effect<'a>; 2]> {
        let Acquire::Acquired {
            fence,
            expire_at_ms,
        } = *self
        else {
            return None;
        };
        Some([
            Effect::SetString {
                key: fence_key,
                value: Value::Number(fence),
                expire_at_ms: None,
            },
            Effect::SetString {
                key: lock,
                value: Value::Bytes(token),
                expire_at_ms: Some(expire_at_ms),
            },
        ])
    }
}

impl Release {
    /// The write of a release: the lock key goes.
    pub fn effect(self, lock: Target<'_>) -> Option<Effect<'_>> {
        (self == Release::Released).then_some(Effect::Unlink { key: lock })
    }
}

impl Extend {
    /// The write of an extend: the lock key's new expiry.
    pub fn effect(self, lock: Target<'_>) -> Option<Effect<'_>> {
        match self {
            Extend::Extended { expire_at_ms } => Some(Effect::ExpireAt {
                key: lock,
                at_ms: expire_at_ms,
            }),
            Extend::NotHeld => None,
        }
    }
}

/// Parses a stored fence counter: `0`, or 1 to 19 digits without a leading
/// zero whose value is at most [`MAX_FENCE`].
pub fn decode_fence(bytes: &[u8]) -> Result<u64, LockError> {
    let canonical = match bytes {
        [] => false,
        [b'0'] => true,
        [b'0', ..] => false,
        _ => bytes.len() <= MAX_FENCE_DIGITS,
    };
    if !canonical {
        return Err(LockError::BadFence);
    }
    let value = bytes.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    });
    value
        .filter(|&value| value <= MAX_FENCE)
        .ok_or(LockError::BadFence)
}

/// The absolute expiry (Unix ms) of a lock taken at `now` for `ttl_ms`:
/// `now` rounded **up** to a millisecond, plus the TTL, so the lock never
/// expires before `now + ttl`.
pub fn expiry_ms(now: Nanos, ttl_ms: u64) -> u64 {
    now.div_ceil(NANOS_PER_MS).saturating_add(ttl_ms)
}

/// How long until a lock expiring at `expire_at_ms` expires, in whole ms
/// rounded up, and at least 1 (the key still exists, so it is still held).
pub fn remaining_ms(expire_at_ms: u64, now: Nanos) -> u64 {
    let expire_at_ns = u128::from(expire_at_ms) * u128::from(NANOS_PER_MS);
    let left = expire_at_ns.saturating_sub(u128::from(now));
    let left_ms = left.div_ceil(u128::from(NANOS_PER_MS));
    u64::try_from(left_ms).unwrap_or(u64::MAX).max(1)
}

/// ACQUIRE with `token` for `ttl_ms` at `now`, given the lock's current
/// holder and the fence key's value. The fence is validated whatever the
/// outcome, so a bad fence key is reported even while the lock is busy.
pub fn acquire(
    holder: Option<Holder<'_>>,
    fence: Option<&[u8]>,
    token: &[u8],
    now: Nanos,
    ttl_ms: u64,
) -> Result<Acquire, LockError> {
    let current = fence.map(decode_fence).transpose()?.unwrap_or(0);
    if let Some(holder) = holder {
        if holder.token != token {
            return Ok(Acquire::Busy {
                remaining_ms: holder.expire_at_ms.map(|at| remaining_ms(at, now)),
            });
        }
    }
    let fence = current
        .checked_add(1)
        .filter(|&next| next <= MAX_FENCE)
        .ok_or(LockError::FenceExhausted)?;
    Ok(Acquire::Acquired {
        fence,
        expire_at_ms: expiry_ms(now, ttl_ms),
    })
}

/// RELEASE with `token`, given the lock key's value.
pub fn release(holder: Option<&[u8]>, token: &[u8]) -> Release {
    if holder == Some(token) {
        Release::Released
    } else {
        Release::NotHeld
    }
}

/// EXTEND with `token` to `now + ttl_ms`, given the lock key's value. The
/// new expiry replaces the old one, even if it is sooner.
pub fn extend(holder: Option<&[u8]>, token: &[u8], now: Nanos, ttl_ms: u64) -> Extend {
    if holder == Some(token) {
        Extend::Extended {
            expire_at_ms: expiry_ms(now, ttl_ms),
        }
    } else {
        Extend::NotHeld
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_TTL_MS;
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = NANOS_PER_MS;
    /// 2025-11-25T00:00:00Z, in ns.
    const T0: u64 = 1_764_028_800_000 * MS;

    fn held(token: &[u8], expire_at_ms: u64) -> Option<Holder<'_>> {
        Some(Holder {
            token,
            expire_at_ms: Some(expire_at_ms),
        })
    }

    #[test]
    fn free_lock_is_acquired_with_the_next_fence() {
        assert_eq!(
            acquire(None, None, b"a", T0, 1_000),
            Ok(Acquire::Acquired {
                fence: 1,
                expire_at_ms: T0 / MS + 1_000
            })
        );
        assert_eq!(
            acquire(None, Some(b"41"), b"a", T0, 5),
            Ok(Acquire::Acquired {
                fence: 42,
                expire_at_ms: T0 / MS + 5
            })
        );
    }

    #[test]
    fn held_lock_is_busy_with_the_holders_remaining_time() {
        let holder = held(b"a", T0 / MS + 700);
        assert_eq!(
            acquire(holder, Some(b"3"), b"b", T0, 1_000),
            Ok(Acquire::Busy {
                remaining_ms: Some(700)
            })
        );
        // Sub-millisecond clocks round the wait up.
        assert_eq!(
            acquire(holder, None, b"b", T0 + 1, 1_000),
            Ok(Acquire::Busy {
                remaining_ms: Some(700)
            })
        );
        // A key that is still there is still held, however late the clock.
        assert_eq!(
            acquire(holder, None, b"b", T0 + 800 * MS, 1_000),
            Ok(Acquire::Busy {
                remaining_ms: Some(1)
            })
        );
        let forever = Some(Holder {
            token: b"a",
            expire_at_ms: None,
        });
        assert_eq!(
            acquire(forever, None, b"b", T0, 1_000),
            Ok(Acquire::Busy { remaining_ms: None })
        );
    }

    #[test]
    fn same_token_reacquires_with_a_new_fence() {
        assert_eq!(
            acquire(held(b"a", T0 / MS + 10), Some(b"7"), b"a", T0, 1_000),
            Ok(Acquire::Acquired {
                fence: 8,
                expire_at_ms: T0 / MS + 1_000
            })
        );
    }

    #[test]
    fn expiry_is_rounded_up_never_early() {
        assert_eq!(expiry_ms(T0, 1), T0 / MS + 1);
        assert_eq!(expiry_ms(T0 + 1, 1), T0 / MS + 2);
        assert_eq!(expiry_ms(T0 + MS - 1, 10), T0 / MS + 11);
        assert_eq!(expiry_ms(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(remaining_ms(0, u64::MAX), 1);
        assert_eq!(remaining_ms(u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn fences_are_parsed_strictly() {
        assert_eq!(decode_fence(b"0"), Ok(0));
        assert_eq!(decode_fence(b"1"), Ok(1));
        assert_eq!(decode_fence(b"9223372036854775807"), Ok(MAX_FENCE));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"01",
            b"00",
            b" 1",
            b"1 ",
            b"1.0",
            b"0x1",
            b"9223372036854775808",
            b"18446744073709551615",
            b"18446744073709551616",
            b"99999999999999999999",
            b"a",
            b"\xff",
        ] {
            assert_eq!(decode_fence(bad), Err(LockError::BadFence), "{bad:?}");
        }
    }

    #[test]
    fn bad_fence_is_reported_whatever_the_lock_state() {
        assert_eq!(
            acquire(None, Some(b"x"), b"a", T0, 1),
            Err(LockError::BadFence)
        );
        assert_eq!(
            acquire(held(b"b", T0 / MS + 5), Some(b"x"), b"a", T0, 1),
            Err(LockError::BadFence)
        );
    }

    #[test]
    fn exhausted_fence_refuses_to_issue() {
        assert_eq!(
            acquire(None, Some(b"9223372036854775807"), b"a", T0, 1),
            Err(LockError::FenceExhausted)
        );
        assert_eq!(
            acquire(None, Some(b"9223372036854775806"), b"a", T0, 1),
            Ok(Acquire::Acquired {
                fence: MAX_FENCE,
                expire_at_ms: T0 / MS + 1
            })
        );
    }

    #[test]
    fn release_and_extend_need_the_holders_token() {
        assert_eq!(release(Some(b"a"), b"a"), Release::Released);
        assert_eq!(release(Some(b"a"), b"b"), Release::NotHeld);
        assert_eq!(release(Some(b"ab"), b"a"), Release::NotHeld);
        assert_eq!(release(None, b"a"), Release::NotHeld);
        assert_eq!(
            extend(Some(b"a"), b"a", T0, 300),
            Extend::Extended {
                expire_at_ms: T0 / MS + 300
            }
        );
        assert_eq!(extend(Some(b"a"), b"A", T0, 300), Extend::NotHeld);
        assert_eq!(extend(None, b"a", T0, 300), Extend::NotHeld);
    }

    // ---- model-based properties ------------------------------------------

    /// The two keys as Redis would hold them: the lock (token, expiry in ms)
    /// disappears once its expiry has passed, the fence never does.
    #[derive(Default)]
    struct Store {
        lock: Option<(Vec<u8>, u64)>,
        fence: Option<Vec<u8>>,
    }

    impl Store {
        /// Redis expires a key once the clock is past its expiry.
        fn expire(&mut self, now: Nanos) {
            if let Some((_, at)) = &self.lock {
                if now / MS > *at {
                    self.lock = None;
                }
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Acquire { who: usize, ttl_ms: u64 },
        Release { who: usize },
        Extend { who: usize, ttl_ms: u64 },
        Wait { ns: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..3, 1u64..2_000).prop_map(|(who, ttl_ms)| Op::Acquire { who, ttl_ms }),
            (0usize..3).prop_map(|who| Op::Release { who }),
            (0usize..3, 1u64..2_000).prop_map(|(who, ttl_ms)| Op::Extend { who, ttl_ms }),
            (0u64..3_000 * MS).prop_map(|ns| Op::Wait { ns }),
        ]
    }

    const TOKENS: [&[u8]; 3] = [b"token-a", b"token-b", b"token-a2"];

    proptest! {
        /// Over any sequence of operations by three owners: fences strictly
        /// increase across successful acquires (expiries included); an acquire
        /// succeeds only when the lock is free or already this owner's; only
        /// the holder's token releases or extends; and nothing is written
        /// when nothing is granted.
        #[test]
        fn lock_model_holds(
            start_fence in prop_oneof![Just(None), (0u64..1_000_000).prop_map(Some)],
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut store = Store {
                lock: None,
                fence: start_fence.map(|f| f.to_string().into_bytes()),
            };
            let mut now = T0;
            let mut last_fence = start_fence.unwrap_or(0);
            for op in ops {
                store.expire(now);
                let holder_token = store.lock.as_ref().map(|(token, _)| token.clone());
                match op {
                    Op::Wait { ns } => now += ns,
                    Op::Acquire { who, ttl_ms } => {
                        let token = TOKENS[who];
                        let holder = store.lock.as_ref().map(|(t, at)| Holder {
                            token: t,
                            expire_at_ms: Some(*at),
                        });
                        match acquire(holder, store.fence.as_deref(), token, now, ttl_ms).unwrap() {
                            Acquire::Acquired { fence, expire_at_ms } => {
                                prop_assert!(holder_token.is_none() || holder_token.as_deref() == Some(token));
                                prop_assert!(fence > last_fence);
                                prop_assert_eq!(fence, last_fence + 1);
                                prop_assert!(u128::from(expire_at_ms) * u128::from(MS) >= u128::from(now) + u128::from(ttl_ms) * u128::from(MS));
                                last_fence = fence;
                                store.fence = Some(fence.to_string().into_bytes());
                                store.lock = Some((token.to_vec(), expire_at_ms));
                            }
                            Acquire::Busy { remaining_ms } => {
                                let held = holder_token.expect("busy only when held");
                                prop_assert_ne!(held.as_slice(), token);
                                let (_, at) = store.lock.as_ref().unwrap();
                                let remaining = remaining_ms.unwrap();
                                prop_assert!(remaining >= 1);
                                // Like PTTL: waiting `remaining` reaches the expiry.
                                prop_assert!((now + remaining * MS) / MS >= *at);
                            }
                        }
                    }
                    Op::Release { who } => {
                        let token = TOKENS[who];
                        match release(holder_token.as_deref(), token) {
                            Release::Released => {
                                prop_assert_eq!(holder_token.as_deref(), Some(token));
                                store.lock = None;
                            }
                            Release::NotHeld => prop_assert_ne!(holder_token.as_deref(), Some(token)),
                        }
                    }
                    Op::Extend { who, ttl_ms } => {
                        let token = TOKENS[who];
                        match extend(holder_token.as_deref(), token, now, ttl_ms) {
                            Extend::Extended { expire_at_ms } => {
                                prop_assert_eq!(holder_token.as_deref(), Some(token));
                                prop_assert_eq!(expire_at_ms, expiry_ms(now, ttl_ms));
                                if let Some((_, at)) = store.lock.as_mut() {
                                    *at = expire_at_ms;
                                }
                            }
                            Extend::NotHeld => prop_assert_ne!(holder_token.as_deref(), Some(token)),
                        }
                    }
                }
            }
        }

        #[test]
        fn fence_encoding_round_trips(fence in 0..=MAX_FENCE) {
            prop_assert_eq!(decode_fence(fence.to_string().as_bytes()), Ok(fence));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            stored in proptest::collection::vec(any::<u8>(), 0..24),
            fence in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
            expire_at_ms in proptest::option::of(any::<u64>()),
            now in any::<u64>(),
            ttl_ms in 1..=MAX_TTL_MS,
        ) {
            let holder = Holder { token: &stored, expire_at_ms };
            let _ = acquire(Some(holder), fence.as_deref(), b"t", now, ttl_ms);
            let _ = acquire(None, fence.as_deref(), &stored, now, ttl_ms);
            let _ = release(Some(&stored), b"t");
            let _ = extend(Some(&stored), &stored, now, ttl_ms);
            if let Ok(value) = decode_fence(&stored) {
                prop_assert_eq!(value.to_string().into_bytes(), stored);
            }
        }
    }
}
