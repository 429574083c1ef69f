//! The Generic Cell Rate Algorithm (GCRA), the default algorithm.
//!
//! GCRA is a token bucket that stores one number instead of two. Requests
//! ("cells") are spaced by the *emission interval* `T = period / limit`; a
//! burst of up to `BURST` units may arrive ahead of that schedule, which is
//! the *burst tolerance* `tau = T * BURST`. The only state is the *theoretical
//! arrival time* `TAT`: the instant at which the limit would be back to its
//! full capacity if nothing else arrived.
//!
//! For a request of `cost` units at time `now`:
//!
//! ```text
//! tat      = max(stored TAT (or now when the key is absent), now)
//! new_tat  = tat + cost * T
//! allow_at = new_tat - tau
//! admitted iff now >= allow_at; then TAT := new_tat
//! ```
//!
//! A refused request leaves the state untouched, so the caller is told to
//! come back after `allow_at - now`, and the limit is full again after
//! `tat - now`. The units still admissible right now are
//! `floor((now + tau - tat) / T)`.
//!
//! # Units and rounding
//!
//! Everything is computed in nanoseconds, so that sub-millisecond emission
//! intervals (e.g. 1000 per 1 ms, or 3 per 10 ms) do not collapse to zero or
//! drift. `T` is rounded *up* to a whole nanosecond: a rounded interval is
//! never shorter than the exact one, so the limiter is never more permissive
//! than the quota (at worst it is slower by under 1 ns per unit). When
//! `period` in ns is divisible by `limit` the algorithm is exact. Every
//! duration reported to the client is rounded up to whole milliseconds, so
//! waiting the reported time is always enough. Intermediate values are
//! `u128` with saturating operations, so no input can overflow or panic.
//!
//! # State
//!
//! `TAT` is stored split in two ([`stored_form`]): the key **expires at
//! `TAT` rounded up to a millisecond** (from then on an absent key decides
//! exactly the same), and its **value is the nanoseconds of `TAT` within that
//! last millisecond**, as exactly 6 ASCII digits (`"000000"` to `"999999"`).
//! `TAT = (PEXPIRETIME - 1) ms + value ns`, or `PEXPIRETIME ms` when the
//! value is `"000000"`. The split keeps the value 6 bytes long: Redis stores
//! it in the smallest string a module can write (a string written through
//! the key API is never int-encoded), and every request overwrites it in
//! place; it also keeps every number within a double's exact range, for
//! readers without 64-bit integers (Lua).
//!
//! Keys written by earlier versions hold the whole `TAT` in nanoseconds as
//! 7 to 20 ASCII digits (`b"1764038400123456789"`); they are read as such
//! and rewritten in the split form by their next admitted request. Both
//! forms are distinct from the other algorithms' states (FIXED has a `:`,
//! SLIDING starts with a non-digit tag byte). Parsing is strict.
//!
//! # As a token bucket
//!
//! A token bucket of capacity `C` refilled with `R` tokens per `P` is
//! `Quota { limit: R, period_ms: P, burst: C }`: the tokens available at `now`
//! are `min(C, (now + tau - TAT) / T)`, taking `cost` tokens moves `TAT` by
//! `cost * T`, and refilling is the passing of time. With `burst == limit` a
//! fresh key admits exactly `limit` units at once.

use super::{ceil_ms, CorruptState, Decision, Nanos, Outcome, Quota, Write, NANOS_PER_MS};

/// `u64::MAX` has 20 decimal digits.
const MAX_DIGITS: usize = 20;

/// The emission interval `T` in ns: `period / limit`, rounded up so that it
/// is never more permissive than the exact quotient, and at least 1.
pub fn emission_interval(quota: &Quota) -> u128 {
    let period_ns = u128::from(quota.period_ms).saturating_mul(u128::from(NANOS_PER_MS));
    period_ns.div_ceil(u128::from(quota.limit.max(1))).max(1)
}

/// Parses a strict unsigned decimal: 1 to 20 ASCII digits, no sign, no
/// spaces, value within `u64`. Shared with the FIXED state format.
pub fn decode_decimal(bytes: &[u8]) -> Result<u64, CorruptState> {
    if bytes.is_empty() || bytes.len() > MAX_DIGITS {
        return Err(CorruptState);
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(CorruptState);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(CorruptState)
    })
}

/// Decodes a stored TAT (ns since the Unix epoch).
pub fn decode_tat(state: &[u8]) -> Result<u64, CorruptState> {
    decode_decimal(state)
}

/// Appends the state for `tat` to `out` (ASCII decimal, no allocation).
pub fn encode_tat(tat: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(tat).as_bytes());
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Digits of the stored value: the nanoseconds within a millisecond.
pub const STORED_DIGITS: usize = 6;

/// The stored form of `tat`: the key's expiry (Unix ms, `TAT` rounded up)
/// and the value (`TAT`'s nanoseconds within that last millisecond, 6
/// digits). See the module docs.
pub fn stored_form(tat: u64) -> (u64, [u8; STORED_DIGITS]) {
    let mut rest = tat % NANOS_PER_MS;
    let mut digits = [b'0'; STORED_DIGITS];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    (ceil_ms(tat), digits)
}

/// The `TAT` of a stored key: the split form (6 digits, with the key's
/// expiry) or an earlier version's whole `TAT` (7 to 20 digits).
pub fn from_stored(value: &[u8], expire_at_ms: Option<u64>) -> Result<u64, CorruptState> {
    if value.len() != STORED_DIGITS {
        return match value.len() {
            7..=MAX_DIGITS => decode_decimal(value),
            _ => Err(CorruptState),
        };
    }
    let rest = decode_decimal(value)?;
    // The split form always has an expiry; without one the key was changed
    // by hand (PERSIST), and its TAT is unknown.
    let expire_at_ms = expire_at_ms.ok_or(CorruptState)?;
    let last_ms = if rest == 0 {
        expire_at_ms
    } else {
        expire_at_ms.checked_sub(1).ok_or(CorruptState)?
    };
    last_ms
        .checked_mul(NANOS_PER_MS)
        .and_then(|ms| ms.checked_add(rest))
        .ok_or(CorruptState)
}

/// [`decide`] on a key in the stored form (`value` and the key's expiry),
/// writing the new state in the stored form: what the command runs.
pub fn decide_stored(
    state: Option<(&[u8], Option<u64>)>,
    now: Nanos,
    quota: &Quota,
    cost: u64,
    out: &mut Vec<u8>,
) -> Result<Outcome, CorruptState> {
    let stored = state
        .map(|(value, expire_at_ms)| from_stored(value, expire_at_ms))
        .transpose()?;
    let (decision, new_tat) = decide_tat(stored, now, quota, cost);
    let write = match new_tat {
        None => Write::None,
        Some(tat) => {
            let (expire_at_ms, digits) = stored_form(tat);
            out.extend_from_slice(&digits);
            Write::Set { expire_at_ms }
        }
    };
    Ok(Outcome { decision, write })
}

/// Decides a request of `cost` units at `now` against a stored TAT in the
/// whole-nanoseconds form, writing the new state in that form. The
/// algorithm itself; the tests drive it directly.
/// `cost == 0` peeks: the decision for the current state, nothing consumed.
pub fn decide(
    state: Option<&[u8]>,
    now: Nanos,
    quota: &Quota,
    cost: u64,
    out: &mut Vec<u8>,
) -> Result<Outcome, CorruptState> {
    let stored = state.map(decode_tat).transpose()?;
    let (decision, new_tat) = decide_tat(stored, now, quota, cost);
    let write = match new_tat {
        None => Write::None,
        Some(tat) => {
            encode_tat(tat, out);
            Write::Set {
                expire_at_ms: ceil_ms(tat),
            }
        }
    };
    Ok(Outcome { decision, write })
}

/// The decision, and the new TAT when the request is admitted.
fn decide_tat(
    stored: Option<u64>,
    now: Nanos,
    quota: &Quota,
    cost: u64,
) -> (Decision, Option<u64>) {
    let now_ns = u128::from(now);
    let t = emission_interval(quota);
    let burst = u128::from(quota.burst);
    let tau = t.saturating_mul(burst);
    // A TAT in the past means the limit is full: the bucket does not fill
    // beyond its capacity. A TAT ahead of a clock that stepped back is kept,
    // so going back in time never frees units.
    let tat = stored.map_or(now_ns, |s| u128::from(s).max(now_ns));
    let new_tat = tat.saturating_add(t.saturating_mul(u128::from(cost)));
    let allow_at = new_tat.saturating_sub(tau);
    // Units admissible at `now` when the TAT is `tat`.
    let units_left =
        |tat: u128| saturate((now_ns.saturating_add(tau).saturating_sub(tat) / t).min(burst));
    let wait_ms = |until: u128| ceil_ms(saturate(until.saturating_sub(now_ns)));

    if cost == 0 || now_ns < allow_at {
        let allowed = cost == 0;
        let decision = Decision {
            allowed,
            limit: quota.limit,
            remaining: units_left(tat),
            retry_after_ms: if allowed { 0 } else { wait_ms(allow_at) },
            reset_after_ms: wait_ms(tat),
        };
        return (decision, None);
    }

    // new_tat > now (cost and T are at least 1), so the key expires after
    // now: ceil_ms(new_tat) > now in ms.
    let decision = Decision {
        allowed: true,
        limit: quota.limit,
        remaining: units_left(new_tat),
        retry_after_ms: 0,
        reset_after_ms: wait_ms(new_tat),
    };
    (decision, Some(saturate(new_tat)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{self, MS, T0};
    use super::super::{MAX_COUNT, MAX_SPAN_MS};
    use super::*;
    use proptest::prelude::*;

    fn quota(limit: u64, period_ms: u64, burst: u64) -> Quota {
        Quota {
            limit,
            period_ms,
            burst,
        }
    }

    fn step(state: &Option<Vec<u8>>, now: u64, q: &Quota, cost: u64) -> (Outcome, Option<Vec<u8>>) {
        test_support::step(decide, state, now, q, cost)
    }

    #[test]
    fn fresh_key_admits_exactly_burst_at_once() {
        let q = quota(10, 1000, 10);
        let mut state = None;
        for i in 0..10 {
            let (o, s) = step(&state, T0, &q, 1);
            assert!(o.decision.allowed, "unit {i}");
            assert_eq!(o.decision.remaining, 9 - i);
            assert_eq!(o.decision.limit, 10);
            state = s;
        }
        let (o, _) = step(&state, T0, &q, 1);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
        assert_eq!(o.decision.retry_after_ms, 100);
        assert_eq!(o.decision.reset_after_ms, 1000);
        assert_eq!(o.write, Write::None);
    }

    #[test]
    fn fresh_key_admits_whole_burst_in_one_request() {
        let q = quota(5, 1000, 5);
        let (o, state) = step(&None, T0, &q, 5);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
        assert_eq!(o.decision.reset_after_ms, 1000);
        assert_eq!(
            o.write,
            Write::Set {
                expire_at_ms: T0 / MS + 1000
            }
        );
        assert_eq!(
            state.as_deref(),
            Some(format!("{}", T0 + 1000 * MS).as_bytes())
        );
    }

    #[test]
    fn burst_larger_than_limit_is_a_token_bucket() {
        // Capacity 20, refilled at 10 per second.
        let q = quota(10, 1000, 20);
        let (o, state) = step(&None, T0, &q, 20);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.reset_after_ms, 2000);
        let (o, _) = step(&state, T0 + 500 * MS, &q, 6);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.remaining, 5);
        assert_eq!(o.decision.retry_after_ms, 100);
        let (o, _) = step(&state, T0 + 600 * MS, &q, 6);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
    }

    #[test]
    fn retry_after_is_exact_on_a_millisecond_clock() {
        // T = 1000/3 ms = 333_333_334 ns (rounded up): waits are not whole ms.
        let q = quota(3, 1000, 1);
        let (_, state) = step(&None, T0, &q, 1);
        let (o, _) = step(&state, T0, &q, 1);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.retry_after_ms, 334);
        let retry = T0 + o.decision.retry_after_ms * MS;
        assert!(step(&state, retry, &q, 1).0.decision.allowed);
        assert!(!step(&state, retry - MS, &q, 1).0.decision.allowed);
    }

    #[test]
    fn sub_millisecond_interval_is_not_lost() {
        // 1000 per ms: T = 1 µs. A ms-granular interval would be 0 or 1 ms.
        let q = quota(1_000_000, 1000, 1000);
        let (o, state) = step(&None, T0, &q, 1000);
        assert!(o.decision.allowed);
        let (o, _) = step(&state, T0 + 500_000, &q, 500);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
        let (o, _) = step(&state, T0 + 499_999, &q, 500);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.retry_after_ms, 1);
    }

    #[test]
    fn clock_going_backwards_admits_nothing_extra() {
        let q = quota(10, 1000, 10);
        let (_, state) = step(&None, T0, &q, 10);
        // Earlier than the state's own writes: still full, still refused.
        for back in [1, 1000, 10_000 * MS, T0] {
            let (o, _) = step(&state, T0 - back, &q, 1);
            assert!(!o.decision.allowed);
            assert_eq!(o.decision.remaining, 0);
        }
        let (o, _) = step(&state, T0 - 5000 * MS, &q, 1);
        assert_eq!(o.decision.retry_after_ms, 5100);
        assert_eq!(o.decision.reset_after_ms, 6000);
        // And at time 0 with a TAT in the future: no underflow.
        let (o, _) = step(&state, 0, &q, 0);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
    }

    #[test]
    fn cost_zero_peeks_without_writing() {
        let q = quota(10, 1000, 10);
        let (o, _) = step(&None, T0, &q, 0);
        assert_eq!(
            o,
            Outcome {
                decision: Decision {
                    allowed: true,
                    limit: 10,
                    remaining: 10,
                    retry_after_ms: 0,
                    reset_after_ms: 0
                },
                write: Write::None
            }
        );
        let (_, state) = step(&None, T0, &q, 10);
        let (o, after) = step(&state, T0 + 250 * MS, &q, 0);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 2);
        assert_eq!(o.decision.reset_after_ms, 750);
        assert_eq!(o.write, Write::None);
        assert_eq!(after, state);
    }

    #[test]
    fn cost_moves_the_tat_by_cost_intervals() {
        let q = quota(10, 1000, 10);
        let (_, state) = step(&None, T0, &q, 3);
        assert_eq!(decode_tat(state.as_deref().unwrap()), Ok(T0 + 300 * MS));
        let (o, state) = step(&state, T0, &q, 7);
        assert!(o.decision.allowed);
        assert_eq!(decode_tat(state.as_deref().unwrap()), Ok(T0 + 1000 * MS));
        // A refused big request does not consume anything.
        let (o, _) = step(&state, T0 + 200 * MS, &q, 3);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.remaining, 2);
        assert_eq!(o.decision.retry_after_ms, 100);
        let (o, _) = step(&state, T0 + 200 * MS, &q, 2);
        assert!(o.decision.allowed);
    }

    #[test]
    fn expiry_is_never_in_the_past() {
        let q = quota(1_000_000, 1, 1);
        // T = 1 ns: new TAT is within the current millisecond.
        let (o, _) = step(&None, T0 + 5, &q, 1);
        assert_eq!(
            o.write,
            Write::Set {
                expire_at_ms: T0 / MS + 1
            }
        );
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        let q = quota(1, MAX_SPAN_MS, 1);
        let (o, state) = step(&None, T0, &q, 1);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.reset_after_ms, MAX_SPAN_MS);
        let (o, _) = step(&state, T0, &q, 1);
        assert_eq!(o.decision.retry_after_ms, MAX_SPAN_MS);
        let q = quota(MAX_COUNT, 1, MAX_COUNT);
        let (o, _) = step(&None, T0, &q, MAX_COUNT);
        assert!(o.decision.allowed);
        // Unvalidated nonsense still does not panic.
        for q in [
            quota(0, 0, 0),
            quota(u64::MAX, u64::MAX, u64::MAX),
            quota(1, u64::MAX, u64::MAX),
        ] {
            for now in [0, 1, T0, u64::MAX] {
                for cost in [0, 1, u64::MAX] {
                    for state in [
                        None,
                        Some(b"0".to_vec()),
                        Some(u64::MAX.to_string().into_bytes()),
                    ] {
                        let _ = decide(state.as_deref(), now, &q, cost, &mut Vec::new());
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_round_trips() {
        for tat in [0, 1, 9, 10, T0, u64::MAX] {
            let mut out = Vec::new();
            encode_tat(tat, &mut out);
            assert_eq!(out, tat.to_string().into_bytes());
            assert_eq!(decode_tat(&out), Ok(tat));
        }
    }

    #[test]
    fn corrupt_states_are_rejected() {
        let q = quota(10, 1000, 10);
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"12a",
            b"1.5",
            b"18446744073709551616",
            b"000000000000000000001",
            b"1764028800000:3",
            b"\xa1\0\0\0\0\0\0\0\0",
        ] {
            assert_eq!(decode_tat(bad), Err(CorruptState), "{bad:?}");
            assert_eq!(
                decide(Some(bad), T0, &q, 1, &mut Vec::new()),
                Err(CorruptState)
            );
        }
        assert_eq!(decode_tat(b"00000000000000000001"), Ok(1));
    }

    /// A plainly written exact token bucket: tokens are kept multiplied by
    /// `period_ns` (so refilling `limit` tokens per `period_ns` adds `limit`
    /// per ns) and every wait is an exact rational rounded up once.
    struct Bucket {
        limit: u128,
        period_ns: u128,
        full: u128,
        /// tokens * period_ns at `at`
        scaled: u128,
        at: u128,
    }

    impl Bucket {
        fn new(q: &Quota) -> Self {
            let period_ns = u128::from(q.period_ms) * u128::from(MS);
            let full = u128::from(q.burst) * period_ns;
            Bucket {
                limit: u128::from(q.limit),
                period_ns,
                full,
                scaled: full,
                at: 0,
            }
        }

        fn wait_ms(&self, scaled_deficit: u128) -> u64 {
            let ns = scaled_deficit.div_ceil(self.limit);
            u64::try_from(ns.div_ceil(u128::from(MS))).unwrap()
        }

        fn decide(&mut self, now: u64, limit: u64, cost: u64) -> Outcome {
            let now = u128::from(now);
            let scaled = self.full.min(self.scaled + (now - self.at) * self.limit);
            let need = u128::from(cost) * self.period_ns;
            if scaled < need {
                return Outcome {
                    decision: Decision {
                        allowed: false,
                        limit,
                        remaining: u64::try_from(scaled / self.period_ns).unwrap(),
                        retry_after_ms: self.wait_ms(need - scaled),
                        reset_after_ms: self.wait_ms(self.full - scaled),
                    },
                    write: Write::None,
                };
            }
            let left = scaled - need;
            let reset_after_ms = self.wait_ms(self.full - left);
            let write = if cost == 0 {
                Write::None
            } else {
                self.scaled = left;
                self.at = now;
                let now_ms = u64::try_from(now / u128::from(MS)).unwrap();
                Write::Set {
                    expire_at_ms: (now_ms + reset_after_ms).max(now_ms + 1),
                }
            };
            Outcome {
                decision: Decision {
                    allowed: true,
                    limit,
                    remaining: u64::try_from(left / self.period_ns).unwrap(),
                    retry_after_ms: 0,
                    reset_after_ms,
                },
                write,
            }
        }
    }

    /// Quotas whose period in ns is divisible by the limit.
    fn exact_quota() -> impl Strategy<Value = Quota> {
        (1u64..=20, 1u64..=500, 0u32..=6, 0u32..=6, 1u64..=300).prop_map(
            |(k, m, a, b, burst_pct)| {
                let limit = k * 2u64.pow(a) * 5u64.pow(b);
                let burst = (limit * burst_pct / 100).max(1);
                quota(limit, k * m, burst)
            },
        )
    }

    /// Any quota the caller would accept (the span check included).
    /// Includes limits far above the period in ms, where `T` is a few ns and
    /// its rounding matters most.
    fn any_quota() -> impl Strategy<Value = Quota> {
        (
            prop_oneof![1u64..=5000, 1u64..=5_000_000],
            1u64..=5000,
            1u64..=5000,
        )
            .prop_map(|(limit, period_ms, burst)| quota(limit, period_ms, burst))
            .prop_filter("span", |q| q.period_ms * q.burst / q.limit <= MAX_SPAN_MS)
    }

    /// A gap between requests: a random fraction of up to two periods,
    /// scaled down by a random power of ten so that bursts are common.
    fn gap_ns(period_ms: u64, (scale, fraction): (u8, u32)) -> u64 {
        let gap = u128::from(period_ms * MS) * u128::from(fraction % 2_000_001) / 1_000_000;
        u64::try_from(gap / 10u128.pow(u32::from(scale % 8))).unwrap()
    }

    /// A cost in 0..=burst, biased towards small values.
    fn cost_for(burst: u64, pick: (u8, u64)) -> u64 {
        match pick.0 % 4 {
            0 => 0,
            1 | 2 => 1.min(burst),
            _ => pick.1 % (burst + 1),
        }
    }

    #[test]
    fn the_stored_form_splits_the_tat_at_the_millisecond() {
        assert_eq!(stored_form(T0 + 1), (T0 / MS + 1, *b"000001"));
        assert_eq!(stored_form(T0 + 999_999), (T0 / MS + 1, *b"999999"));
        assert_eq!(stored_form(T0), (T0 / MS, *b"000000"));
        for tat in [T0, T0 + 1, T0 + 999_999, T0 + 1_000_000, 1, 999_999] {
            let (expire_at_ms, digits) = stored_form(tat);
            assert_eq!(from_stored(&digits, Some(expire_at_ms)), Ok(tat));
        }
        // Earlier versions' whole TAT, and what no version wrote.
        assert_eq!(from_stored(b"1764028800000000001", None), Ok(T0 + 1));
        assert_eq!(from_stored(b"000001", None), Err(CorruptState), "no expiry");
        assert_eq!(from_stored(b"000001", Some(0)), Err(CorruptState));
        for bad in [
            &b""[..],
            b"12345",
            b"00000a",
            b"-00001",
            b"123456789012345678901",
        ] {
            assert_eq!(
                from_stored(bad, Some(T0 / MS)),
                Err(CorruptState),
                "{bad:?}"
            );
        }
    }

    proptest! {
        /// The stored form decides exactly as the whole-TAT form, request
        /// after request, and the key's expiry is always in the future.
        #[test]
        fn the_stored_form_decides_like_the_whole_tat(
            limit in 1u64..1000, period_ms in 1u64..100_000, burst in 1u64..1000,
            steps in proptest::collection::vec((0u64..50 * MS, 0u64..4), 1..60),
        ) {
            let q = quota(limit, period_ms, burst);
            let mut whole: Option<Vec<u8>> = None;
            // The stored form: value and the key's expiry.
            let mut split: Option<(Vec<u8>, u64)> = None;
            let mut now = T0 + 123_457;
            for (advance, cost) in steps {
                now += advance;
                let cost = cost.min(burst);
                let (mut out_whole, mut out_split) = (Vec::new(), Vec::new());
                let a = decide(whole.as_deref(), now, &q, cost, &mut out_whole).unwrap();
                let stored = split.as_ref().map(|(value, at)| (&value[..], Some(*at)));
                let b = decide_stored(stored, now, &q, cost, &mut out_split).unwrap();
                prop_assert_eq!(a, b);
                if let Write::Set { expire_at_ms } = b.write {
                    prop_assert!(expire_at_ms > now / MS);
                    prop_assert_eq!(out_split.len(), STORED_DIGITS);
                    whole = Some(out_whole);
                    split = Some((out_split, expire_at_ms));
                }
                // Redis drops the key once its expiry has passed.
                if split.as_ref().is_some_and(|(_, at)| *at < now / MS) {
                    split = None;
                    whole = None;
                }
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_exact_token_bucket(
            q in exact_quota(),
            steps in prop::collection::vec((any::<(u8, u32)>(), any::<(u8, u64)>()), 1..60),
        ) {
            let mut bucket = Bucket::new(&q);
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0;
            for (gap, pick) in steps {
                now += gap_ns(q.period_ms, gap) / MS * MS;
                let cost = cost_for(q.burst, pick);
                let (got, next) = step(&state, now, &q, cost);
                let want = bucket.decide(now, q.limit, cost);
                prop_assert_eq!(got, want);
                state = next;
            }
        }

        #[test]
        fn never_more_than_burst_plus_rate_in_any_window(
            q in any_quota(),
            steps in prop::collection::vec((any::<(u8, u32)>(), any::<(u8, u64)>()), 1..80),
        ) {
            let period_ns = u128::from(q.period_ms) * u128::from(MS);
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for (gap, pick) in steps {
                now += gap_ns(q.period_ms, gap);
                let cost = cost_for(q.burst, pick);
                let (o, next) = step(&state, now, &q, cost);
                if o.decision.allowed && cost > 0 {
                    admitted.push((now, cost));
                }
                state = next;
            }
            // Over [start, t] the exact rate allows `burst + (t - start) * limit
            // / period` units; rounding `T` up may only admit fewer. This is
            // tighter than `burst + ceil(w * limit / period)` for any window of
            // length `w` holding both ends.
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let mut sum = 0u128;
                for &(t, cost) in &admitted[i..] {
                    sum += u128::from(cost);
                    let bound = u128::from(q.burst) + u128::from(t - start) * u128::from(q.limit) / period_ns;
                    prop_assert!(sum <= bound, "{} units in [{}, {}]", sum, start, t);
                }
            }
        }

        #[test]
        fn rounding_never_admits_more_than_the_exact_rate(
            period_ms in 1u64..=3,
            divisor in 1u64..=16_000,
            burst in 1u64..=8,
            gaps in prop::collection::vec(1u64..=3, 100..400),
        ) {
            // T of a few ns, where rounding it is a large fraction of it; a
            // client hammering every few ns sees the long-run rate.
            let period_ns = period_ms * MS;
            let q = quota(period_ns * 1000 / divisor, period_ms, burst);
            let t = emission_interval(&q);
            prop_assert!(t * u128::from(q.limit) >= u128::from(period_ns));
            prop_assert!((t - 1) * u128::from(q.limit) < u128::from(period_ns));
            let mut state: Option<Vec<u8>> = None;
            let start = T0;
            let mut now = start;
            let mut admitted = 0u128;
            for gap in gaps {
                now += gap;
                let (o, next) = step(&state, now, &q, 1);
                admitted += u128::from(o.decision.allowed);
                state = next;
            }
            let exact = u128::from(burst) + u128::from(now - start) * u128::from(q.limit) / u128::from(period_ns);
            prop_assert!(admitted <= exact, "{} admitted, exact rate allows {}", admitted, exact);
        }

        #[test]
        fn retry_after_is_honoured(
            q in any_quota(),
            steps in prop::collection::vec((any::<(u8, u32)>(), any::<(u8, u64)>()), 1..40),
            whole_ms in any::<bool>(),
        ) {
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0;
            for (gap, pick) in steps {
                let gap = gap_ns(q.period_ms, gap);
                now += if whole_ms { gap / MS * MS } else { gap };
                let cost = cost_for(q.burst, pick);
                let (o, next) = step(&state, now, &q, cost);
                if !o.decision.allowed {
                    let retry = now + o.decision.retry_after_ms * MS;
                    prop_assert!(step(&state, retry, &q, cost).0.decision.allowed);
                    // ... and not longer than needed.
                    prop_assert!(o.decision.retry_after_ms > 0);
                    prop_assert!(!step(&state, retry - MS, &q, cost).0.decision.allowed);
                    // Waiting `reset_after` brings the limit back to full.
                    let reset = now + o.decision.reset_after_ms * MS;
                    prop_assert_eq!(step(&state, reset, &q, 0).0.decision.remaining, q.burst);
                }
                state = next;
            }
        }

        #[test]
        fn later_is_never_stricter_than_earlier(
            q in any_quota(),
            tat_offset in -10_000_000_000_000i64..10_000_000_000_000,
            a in 0u64..20_000_000_000_000,
            b in 0u64..20_000_000_000_000,
            pick in any::<(u8, u64)>(),
        ) {
            // Deciding at an earlier clock (one that stepped back) must never
            // admit what a later clock refuses.
            let tat = T0.saturating_add_signed(tat_offset);
            let state = Some(tat.to_string().into_bytes());
            let (early, late) = (T0 - 10_000_000_000_000 + a.min(b), T0 - 10_000_000_000_000 + a.max(b));
            let cost = cost_for(q.burst, pick);
            let e = step(&state, early, &q, cost).0.decision;
            let l = step(&state, late, &q, cost).0.decision;
            prop_assert!(!e.allowed || l.allowed);
            let peek_early = step(&state, early, &q, 0).0.decision;
            let peek_late = step(&state, late, &q, 0).0.decision;
            prop_assert!(peek_early.remaining <= peek_late.remaining);
        }

        #[test]
        fn expiry_frees_nothing_early(
            q in any_quota(),
            now in T0..T0 + 1_000_000 * MS,
            pick in any::<(u8, u64)>(),
            prior in prop::option::of(T0..T0 + 2_000_000 * MS),
        ) {
            let state = prior.map(|t| t.to_string().into_bytes());
            let cost = cost_for(q.burst, pick).max(1);
            let (o, next) = step(&state, now, &q, cost);
            if let Write::Set { expire_at_ms } = o.write {
                prop_assert!(expire_at_ms > now / MS);
                // At expiry the stored state decides like an absent key.
                let at = expire_at_ms * MS;
                for c in [0, 1.min(q.burst), q.burst] {
                    prop_assert_eq!(step(&next, at, &q, c).0, step(&None, at, &q, c).0);
                }
            }
        }

        #[test]
        fn encoding_round_trips_for_any_tat(tat in any::<u64>()) {
            let mut out = Vec::new();
            encode_tat(tat, &mut out);
            prop_assert_eq!(decode_tat(&out), Ok(tat));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..32),
            digits in "[0-9]{1,22}",
            now in any::<u64>(),
            limit in any::<u64>(),
            period_ms in any::<u64>(),
            burst in any::<u64>(),
            cost in any::<u64>(),
        ) {
            let q = quota(limit, period_ms, burst);
            for state in [&bytes[..], digits.as_bytes()] {
                let mut out = Vec::new();
                if let Ok(o) = decide(Some(state), now, &q, cost, &mut out) {
                    prop_assert_eq!(o.decision.limit, limit);
                    if let Write::Set { expire_at_ms } = o.write {
                        prop_assert!(decode_tat(&out).is_ok());
                        prop_assert!(expire_at_ms > now / MS);
                    }
                }
            }
        }
    }
}
