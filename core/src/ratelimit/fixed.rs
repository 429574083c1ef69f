//! Fixed window counter.
//!
//! Time is cut into windows of `period` aligned to multiples of `period` since
//! the Unix epoch (`window_start = floor(now_ms / period_ms) * period_ms`), so
//! every key with the same period rolls over at the same instant. Each window
//! admits up to `limit` units; the count starts again from zero in the next
//! window. This is the cheapest algorithm, at the price of allowing up to
//! `2 * limit` units across a window boundary.
//!
//! # State
//!
//! ASCII `"<window_start_ms>:<count>"`, both strict unsigned decimals (the
//! GCRA rule: 1 to 20 digits within `u64`), e.g. `b"1764028800000:42"`. The
//! `:` tells it apart from a GCRA state; anything else is [`CorruptState`].
//! The key expires at the end of its window, when an absent key decides the
//! same.
//!
//! # Clock steps
//!
//! A stored window later than the current one means the clock stepped back:
//! that window (its count and its end) is kept as the current one, so going
//! back in time never frees units. An earlier stored window is over: count 0.

use super::gcra::decode_decimal;
use super::{ceil_ms, CorruptState, Decision, Nanos, Outcome, Quota, Write, NANOS_PER_MS};

/// Decodes a state into `(window_start_ms, count)`.
pub fn decode(state: &[u8]) -> Result<(u64, u64), CorruptState> {
    let colon = state.iter().position(|&b| b == b':').ok_or(CorruptState)?;
    let (start, count) = state.split_at(colon);
    let count = count.get(1..).ok_or(CorruptState)?;
    Ok((decode_decimal(start)?, decode_decimal(count)?))
}

/// Appends the state `"<window_start_ms>:<count>"` to `out` (no allocation).
pub fn encode(window_start_ms: u64, count: u64, out: &mut Vec<u8>) {
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(window_start_ms).as_bytes());
    out.push(b':');
    out.extend_from_slice(buffer.format(count).as_bytes());
}

/// Decides a request of `cost` units at `now` in the current window.
/// `cost == 0` peeks: the decision for the current state, nothing consumed.
pub fn decide(
    state: Option<&[u8]>,
    now: Nanos,
    quota: &Quota,
    cost: u64,
    out: &mut Vec<u8>,
) -> Result<Outcome, CorruptState> {
    let stored = state.map(decode).transpose()?;
    let now_ms = now / NANOS_PER_MS;
    let period_ms = quota.period_ms.max(1);
    let current = now_ms - now_ms % period_ms;
    let (window, count) = match stored {
        Some((start, count)) if start >= current => (start, count),
        _ => (current, 0),
    };
    let end_ms = window.saturating_add(period_ms);
    let until_end_ms = ceil_ms(
        u64::try_from(
            (u128::from(end_ms) * u128::from(NANOS_PER_MS)).saturating_sub(u128::from(now)),
        )
        .unwrap_or(u64::MAX),
    );
    let total = u128::from(count) + u128::from(cost);
    let limit = u128::from(quota.limit);
    let allowed = total <= limit;
    let after = if allowed && cost > 0 {
        total
    } else {
        u128::from(count)
    };
    let decision = Decision {
        allowed,
        limit: quota.limit,
        remaining: u64::try_from(limit.saturating_sub(after)).unwrap_or(u64::MAX),
        retry_after_ms: if allowed { 0 } else { until_end_ms },
        // An empty window is already at full capacity.
        reset_after_ms: if after == 0 { 0 } else { until_end_ms },
    };
    let write = match u64::try_from(total) {
        Ok(new_count) if allowed && cost > 0 => {
            encode(window, new_count, out);
            Write::Set {
                expire_at_ms: end_ms.max(now_ms + 1),
            }
        }
        _ => Write::None,
    };
    Ok(Outcome { decision, write })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{self, MS, T0, T0_MS};
    use super::super::{MAX_COUNT, MAX_SPAN_MS};
    use super::*;
    use proptest::prelude::*;

    fn quota(limit: u64, period_ms: u64) -> Quota {
        Quota {
            limit,
            period_ms,
            burst: limit,
        }
    }

    fn step(state: &Option<Vec<u8>>, now: u64, q: &Quota, cost: u64) -> (Outcome, Option<Vec<u8>>) {
        test_support::step(decide, state, now, q, cost)
    }

    #[test]
    fn counts_within_an_aligned_window() {
        let q = quota(3, 1000);
        let now = T0 + 250 * MS + 7;
        let (o, state) = step(&None, now, &q, 2);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 1);
        assert_eq!(o.decision.reset_after_ms, 750);
        assert_eq!(
            o.write,
            Write::Set {
                expire_at_ms: T0_MS + 1000
            }
        );
        assert_eq!(state.as_deref(), Some(format!("{T0_MS}:2").as_bytes()));
        let (o, state) = step(&state, T0 + 999 * MS, &q, 1);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
        let (o, _) = step(&state, T0 + 999 * MS + 1, &q, 1);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.retry_after_ms, 1);
        assert_eq!(o.decision.reset_after_ms, 1);
        assert_eq!(o.write, Write::None);
        // The next window starts from zero.
        let (o, state) = step(&state, T0 + 1000 * MS, &q, 3);
        assert!(o.decision.allowed);
        assert_eq!(
            state.as_deref(),
            Some(format!("{}:3", T0_MS + 1000).as_bytes())
        );
    }

    #[test]
    fn retry_after_reaches_the_next_window() {
        let q = quota(1, 60_000);
        let (_, state) = step(&None, T0 + 1, &q, 1);
        let now = T0 + 12_345 * MS + 678;
        let (o, _) = step(&state, now, &q, 1);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.retry_after_ms, 47_655);
        assert!(step(&state, now + 47_655 * MS, &q, 1).0.decision.allowed);
        assert!(!step(&state, now + 47_654 * MS, &q, 1).0.decision.allowed);
    }

    #[test]
    fn clock_going_backwards_keeps_the_later_window() {
        let q = quota(2, 1000);
        let (_, state) = step(&None, T0 + 5000 * MS, &q, 2);
        for now in [T0 + 4999 * MS, T0, 0] {
            let (o, _) = step(&state, now, &q, 1);
            assert!(!o.decision.allowed);
            assert_eq!(o.decision.remaining, 0);
            assert_eq!(o.decision.retry_after_ms, ceil_ms(T0 + 6000 * MS - now));
        }
        // A partly used later window is still counted, and keeps its start.
        let (_, state) = step(&None, T0 + 5000 * MS, &q, 1);
        let (o, state) = step(&state, T0 + 3000 * MS, &q, 1);
        assert!(o.decision.allowed);
        assert_eq!(
            o.write,
            Write::Set {
                expire_at_ms: T0_MS + 6000
            }
        );
        assert_eq!(
            state.as_deref(),
            Some(format!("{}:2", T0_MS + 5000).as_bytes())
        );
    }

    #[test]
    fn cost_zero_peeks_without_writing() {
        let q = quota(5, 1000);
        let (o, _) = step(&None, T0 + 100 * MS, &q, 0);
        assert_eq!(
            o,
            Outcome {
                decision: Decision {
                    allowed: true,
                    limit: 5,
                    remaining: 5,
                    retry_after_ms: 0,
                    reset_after_ms: 0
                },
                write: Write::None
            }
        );
        let (_, state) = step(&None, T0, &q, 5);
        let (o, after) = step(&state, T0 + 100 * MS, &q, 0);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
        assert_eq!(o.decision.reset_after_ms, 900);
        assert_eq!(o.write, Write::None);
        assert_eq!(after, state);
    }

    #[test]
    fn lowered_limit_reports_zero_remaining() {
        let state = Some(format!("{T0_MS}:10").into_bytes());
        let (o, _) = step(&state, T0, &quota(4, 1000), 1);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        let (o, _) = step(&None, T0, &quota(MAX_COUNT, MAX_SPAN_MS), MAX_COUNT);
        assert!(o.decision.allowed);
        for q in [quota(0, 0), quota(u64::MAX, u64::MAX), quota(1, u64::MAX)] {
            for now in [0, 1, T0, u64::MAX] {
                for cost in [0, 1, u64::MAX] {
                    for state in [
                        None,
                        Some(b"0:0".to_vec()),
                        Some(format!("{}:{}", u64::MAX, u64::MAX).into_bytes()),
                    ] {
                        let _ = decide(state.as_deref(), now, &q, cost, &mut Vec::new());
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_round_trips() {
        for (start, count) in [(0, 0), (T0_MS, 1), (u64::MAX, u64::MAX)] {
            let mut out = Vec::new();
            encode(start, count, &mut out);
            assert_eq!(out, format!("{start}:{count}").into_bytes());
            assert_eq!(decode(&out), Ok((start, count)));
        }
    }

    #[test]
    fn corrupt_states_are_rejected() {
        for bad in [
            &b""[..],
            b":",
            b"1:",
            b":1",
            b"1764028800000",
            b"1:2:3",
            b"1 :2",
            b"-1:2",
            b"1:+2",
            b"18446744073709551616:1",
            b"\xa1\0\0\0\0\0\0\0\0",
        ] {
            assert_eq!(decode(bad), Err(CorruptState), "{bad:?}");
            assert_eq!(
                decide(Some(bad), T0, &quota(1, 1000), 1, &mut Vec::new()),
                Err(CorruptState)
            );
        }
    }

    fn any_quota() -> impl Strategy<Value = Quota> {
        (
            1u64..=20,
            prop::sample::select(vec![1u64, 7, 10, 1000, 3000, 60_000]),
        )
            .prop_map(|(l, p)| quota(l, p))
    }

    proptest! {
        #[test]
        fn never_more_than_limit_per_aligned_window(
            q in any_quota(),
            steps in prop::collection::vec((0u64..=2_000_000, 0u8..4, any::<u64>()), 1..80),
        ) {
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0 + 123_456;
            let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
            for (gap, scale, pick) in steps {
                now += q.period_ms * MS * gap / 1_000_000 / 10u64.pow(u32::from(scale));
                let cost = pick % (q.limit + 1);
                let (o, next) = step(&state, now, &q, cost);
                let window = now / MS / q.period_ms;
                let used = per_window.entry(window).or_default();
                prop_assert_eq!(o.decision.remaining, q.limit - *used - if o.decision.allowed { cost } else { 0 });
                prop_assert_eq!(o.decision.allowed, *used + cost <= q.limit);
                if o.decision.allowed {
                    *used += cost;
                } else {
                    // Waiting `retry_after` is enough, and not more than needed.
                    let retry = now + o.decision.retry_after_ms * MS;
                    prop_assert!(step(&state, retry, &q, cost).0.decision.allowed);
                    prop_assert!(!step(&state, retry - MS, &q, cost).0.decision.allowed);
                }
                prop_assert!(*used <= q.limit);
                state = next;
            }
        }

        #[test]
        fn later_is_never_stricter_than_earlier(
            q in any_quota(),
            start_offset in -100_000i64..100_000,
            count in 0u64..30,
            a in 0u64..200_000_000_000,
            b in 0u64..200_000_000_000,
            cost in 0u64..=20,
        ) {
            let start = T0_MS.saturating_add_signed(start_offset);
            let state = Some(format!("{start}:{count}").into_bytes());
            let base = T0 - 100_000_000_000;
            let cost = cost.min(q.limit);
            let (early, late) = (base + a.min(b), base + a.max(b));
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
            prior in prop::option::of((T0_MS - 100_000..T0_MS + 1_000_000, 0u64..20)),
            cost in 1u64..=20,
        ) {
            let state = prior.map(|(s, c)| format!("{s}:{c}").into_bytes());
            let cost = cost.min(q.limit);
            let (o, next) = step(&state, now, &q, cost);
            if let Write::Set { expire_at_ms } = o.write {
                prop_assert!(expire_at_ms > now / MS);
                let at = expire_at_ms * MS;
                for c in [0, 1, q.limit] {
                    prop_assert_eq!(step(&next, at, &q, c).0, step(&None, at, &q, c).0);
                }
            }
        }

        #[test]
        fn encoding_round_trips_for_any_state(start in any::<u64>(), count in any::<u64>()) {
            let mut out = Vec::new();
            encode(start, count, &mut out);
            prop_assert_eq!(decode(&out), Ok((start, count)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..32),
            text in "[0-9]{0,22}:?[0-9]{0,22}",
            now in any::<u64>(),
            limit in any::<u64>(),
            period_ms in any::<u64>(),
            cost in any::<u64>(),
        ) {
            let q = quota(limit, period_ms);
            for state in [&bytes[..], text.as_bytes()] {
                let mut out = Vec::new();
                if let Ok(o) = decide(Some(state), now, &q, cost, &mut out) {
                    prop_assert_eq!(o.decision.limit, limit);
                    if let Write::Set { expire_at_ms } = o.write {
                        prop_assert!(decode(&out).is_ok());
                        prop_assert!(expire_at_ms > now / MS);
                    }
                }
            }
        }
    }
}
