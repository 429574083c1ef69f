//! Exact sliding log.
//!
//! Every admitted request is logged with its time and cost; a request is
//! admitted iff the units logged within the last `period`, plus its own cost,
//! stay within `limit`. So no half-open window `[t, t + period)` ever holds
//! more than `limit` admitted units, wherever it starts: the strictest and
//! most memory-hungry of the three algorithms (the state grows with the
//! number of requests admitted per period).
//!
//! # Time
//!
//! Timestamps are whole microseconds. A new entry is stamped `ceil(now / 1µs)`
//! and an entry stamped `ts` still counts at `now` iff `floor(now / 1µs) <
//! ts + period`: both roundings make entries live longer, so the guarantee
//! holds to the nanosecond (and both are exact on a µs or ms clock). Entries
//! stamped after `now` (the clock stepped back) count, and a new entry is
//! stamped no earlier than the newest one, so the log stays in order and going
//! back in time never frees units. Waits are computed in ns and rounded up to
//! whole ms, so retrying after `retry_after_ms` is admitted.
//!
//! # State
//!
//! One binary string, at most 8 bytes per entry for cost-1 requests:
//!
//! ```text
//! byte 0      TAG (0xA1: not an ASCII digit, unlike GCRA and FIXED states)
//! bytes 1..9  base: the first entry's timestamp, µs since the epoch, u64 LE
//! then, per entry, oldest first:
//!   LEB128(delta << 1 | has_cost)   delta = µs since the previous entry
//!                                    (the first entry: since base, written 0)
//!   LEB128(cost)                     only if has_cost; then cost >= 2
//! ```
//!
//! Only entries still counted are written back (expired ones are dropped and
//! base moves on); requests with the same timestamp are merged into one
//! entry. Varints are strict (no overlong forms, no bits beyond 64) and the
//! header must be complete; anything else is [`CorruptState`]. The key
//! expires when its newest entry stops counting, when an absent key decides
//! the same.

use super::{ceil_ms, CorruptState, Decision, Nanos, Outcome, Quota, Write, NANOS_PER_MS};

/// First byte of every sliding-log state.
pub const TAG: u8 = 0xA1;

const NANOS_PER_US: u64 = 1_000;
const US_PER_MS: u64 = 1_000;
/// TAG plus the 8-byte base.
pub const HEADER_LEN: usize = 9;
/// Deltas must leave room for the `has_cost` bit.
const MAX_DELTA: u64 = u64::MAX >> 1;

/// One log entry: `cost` units admitted at `ts_us` (µs since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ts_us: u64,
    pub cost: u64,
}

/// Streams the entries of a state without allocating; cloning it saves a
/// position to come back to. After an error it yields nothing more.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
    prev_ts: u64,
}

impl<'a> Entries<'a> {
    /// Checks the header and positions the stream on the first entry.
    pub fn parse(state: &'a [u8]) -> Result<Self, CorruptState> {
        let (&tag, rest) = state.split_first().ok_or(CorruptState)?;
        if tag != TAG {
            return Err(CorruptState);
        }
        let (base, rest) = rest.split_first_chunk::<8>().ok_or(CorruptState)?;
        Ok(Entries {
            rest,
            prev_ts: u64::from_le_bytes(*base),
        })
    }

    fn read(&mut self) -> Result<Entry, CorruptState> {
        let head = read_varint(&mut self.rest)?;
        let cost = if head & 1 == 1 {
            match read_varint(&mut self.rest)? {
                0 | 1 => return Err(CorruptState),
                cost => cost,
            }
        } else {
            1
        };
        let ts_us = self.prev_ts.checked_add(head >> 1).ok_or(CorruptState)?;
        self.prev_ts = ts_us;
        Ok(Entry { ts_us, cost })
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, CorruptState>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = self.read();
        if entry.is_err() {
            self.rest = &[];
        }
        Some(entry)
    }
}

/// Reads one strict unsigned LEB128 value (1 to 10 bytes).
fn read_varint(bytes: &mut &[u8]) -> Result<u64, CorruptState> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(CorruptState)?;
        *bytes = rest;
        // The 10th byte holds only bit 63; a last byte of 0 is overlong.
        if (shift == 63 && byte > 1) || (shift > 0 && byte == 0) {
            return Err(CorruptState);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(CorruptState)
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes entries one by one, the header with the first.
struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    prev_ts: Option<u64>,
}

impl<'a> Encoder<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Encoder { out, prev_ts: None }
    }

    /// Fails (leaving `out` partly written) when `entry` is older than the
    /// previous one, too far from it, or has cost 0.
    fn push(&mut self, entry: Entry) -> Result<(), CorruptState> {
        let delta = match self.prev_ts {
            None => {
                self.out.push(TAG);
                self.out.extend_from_slice(&entry.ts_us.to_le_bytes());
                0
            }
            Some(prev) => entry
                .ts_us
                .checked_sub(prev)
                .filter(|&d| d <= MAX_DELTA)
                .ok_or(CorruptState)?,
        };
        self.prev_ts = Some(entry.ts_us);
        match entry.cost {
            0 => return Err(CorruptState),
            1 => write_varint(delta << 1, self.out),
            cost => {
                write_varint(delta << 1 | 1, self.out);
                write_varint(cost, self.out);
            }
        }
        Ok(())
    }

    fn finish(self) {
        if self.prev_ts.is_none() {
            self.out.push(TAG);
            self.out.extend_from_slice(&0u64.to_le_bytes());
        }
    }
}

/// Appends the state holding `entries` to `out`. Fails when they are not in
/// nondecreasing time order (gaps under 2^63 µs) or a cost is 0.
pub fn encode(entries: &[Entry], out: &mut Vec<u8>) -> Result<(), CorruptState> {
    let mut encoder = Encoder::new(out);
    for &entry in entries {
        encoder.push(entry)?;
    }
    encoder.finish();
    Ok(())
}

/// Decodes a whole state. Allocates: for tests and inspection; [`decide`]
/// streams with [`Entries`] instead.
pub fn decode(state: &[u8]) -> Result<Vec<Entry>, CorruptState> {
    Entries::parse(state)?.collect()
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Decides a request of `cost` units at `now` against the log in `state`.
/// `cost == 0` peeks: the decision for the current state, nothing consumed.
pub fn decide(
    state: Option<&[u8]>,
    now: Nanos,
    quota: &Quota,
    cost: u64,
    out: &mut Vec<u8>,
) -> Result<Outcome, CorruptState> {
    let period_us = u128::from(quota.period_ms) * u128::from(US_PER_MS);
    let now_us = u128::from(now / NANOS_PER_US);
    // When the entry stamped `ts_us` stops counting.
    let expiry_us = |ts_us: u64| u128::from(ts_us) + period_us;
    let wait_ms = |until_us: u128| {
        ceil_ms(saturate(
            (until_us * u128::from(NANOS_PER_US)).saturating_sub(u128::from(now)),
        ))
    };

    // One pass validates the whole log and sums what still counts. Times are
    // nondecreasing, so the counted entries are a suffix, starting at `live`.
    let mut live: Option<Entries> = None;
    let mut newest_ts: Option<u64> = None;
    let mut count = 0u128;
    if let Some(bytes) = state {
        let mut entries = Entries::parse(bytes)?;
        loop {
            let before = entries.clone();
            let Some(entry) = entries.next().transpose()? else {
                break;
            };
            newest_ts = Some(entry.ts_us);
            if now_us < expiry_us(entry.ts_us) {
                live.get_or_insert(before);
                count += u128::from(entry.cost);
            }
        }
    }
    // The newest live entry is the newest entry, if any is live.
    let newest_live = live.as_ref().and(newest_ts);
    let reset_after_ms = newest_live.map_or(0, |ts| wait_ms(expiry_us(ts)));
    let limit = u128::from(quota.limit);
    let remaining = |used: u128| saturate(limit.saturating_sub(used));
    let total = count + u128::from(cost);

    if cost == 0 || total > limit {
        let allowed = cost == 0;
        let retry_after_ms = if allowed {
            0
        } else {
            // The oldest entry whose expiry frees enough units: once it and
            // all older ones stop counting, the request fits.
            let must_free = total - limit;
            let mut freed = 0u128;
            let mut wait_for = newest_live;
            for entry in live.into_iter().flatten() {
                let entry = entry?;
                freed += u128::from(entry.cost);
                if freed >= must_free {
                    wait_for = Some(entry.ts_us);
                    break;
                }
            }
            wait_for.map_or(0, |ts| wait_ms(expiry_us(ts)))
        };
        return Ok(Outcome {
            decision: Decision {
                allowed,
                limit: quota.limit,
                remaining: remaining(count),
                retry_after_ms,
                reset_after_ms,
            },
            write: Write::None,
        });
    }

    // Admitted: rewrite the live entries, then the new one (merged into the
    // newest if it has the same stamp). Never stamp before the newest entry.
    let stamp = now.div_ceil(NANOS_PER_US).max(newest_ts.unwrap_or(0));
    let mut encoder = Encoder::new(out);
    let mut pending: Option<Entry> = None;
    for entry in live.into_iter().flatten() {
        if let Some(previous) = pending.replace(entry?) {
            encoder.push(previous)?;
        }
    }
    let new_entry = Entry { ts_us: stamp, cost };
    match pending {
        Some(last) if last.ts_us == stamp => match last.cost.checked_add(cost) {
            Some(merged) => encoder.push(Entry {
                ts_us: stamp,
                cost: merged,
            })?,
            None => {
                encoder.push(last)?;
                encoder.push(new_entry)?;
            }
        },
        Some(last) => {
            encoder.push(last)?;
            encoder.push(new_entry)?;
        }
        None => encoder.push(new_entry)?,
    }
    let expiry_ms = saturate(expiry_us(stamp).div_ceil(u128::from(US_PER_MS)));
    Ok(Outcome {
        decision: Decision {
            allowed: true,
            limit: quota.limit,
            remaining: remaining(total),
            retry_after_ms: 0,
            reset_after_ms: wait_ms(expiry_us(stamp)),
        },
        write: Write::Set {
            expire_at_ms: expiry_ms.max(now / NANOS_PER_MS + 1),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{self, MS, T0};
    use super::super::{MAX_COUNT, MAX_SPAN_MS};
    use super::*;
    use proptest::prelude::*;

    const T0_US: u64 = T0 / 1000;

    fn quota(limit: u64, period_ms: u64) -> Quota {
        Quota {
            limit,
            period_ms,
            burst: limit,
        }
    }

    fn e(ts_us: u64, cost: u64) -> Entry {
        Entry { ts_us, cost }
    }

    fn step(state: &Option<Vec<u8>>, now: u64, q: &Quota, cost: u64) -> (Outcome, Option<Vec<u8>>) {
        test_support::step(decide, state, now, q, cost)
    }

    fn entries(state: &Option<Vec<u8>>) -> Vec<Entry> {
        decode(state.as_deref().expect("a state")).expect("valid state")
    }

    #[test]
    fn admits_limit_per_sliding_window() {
        let q = quota(3, 1000);
        let mut state = None;
        for (i, t) in [0u64, 100, 200].into_iter().enumerate() {
            let (o, s) = step(&state, T0 + t * MS, &q, 1);
            assert!(o.decision.allowed);
            assert_eq!(o.decision.remaining, 2 - i as u64);
            assert_eq!(o.decision.reset_after_ms, 1000);
            assert_eq!(
                o.write,
                Write::Set {
                    expire_at_ms: T0 / MS + t + 1000
                }
            );
            state = s;
        }
        let (o, _) = step(&state, T0 + 999 * MS, &q, 1);
        assert!(!o.decision.allowed);
        assert_eq!(o.decision.retry_after_ms, 1);
        assert_eq!(o.decision.reset_after_ms, 201);
        // 2 units have to wait for the first two entries.
        let (o, _) = step(&state, T0 + 500 * MS, &q, 2);
        assert_eq!(o.decision.retry_after_ms, 600);
        // At 1000 ms the first entry is out: exactly one unit fits.
        let (o, state) = step(&state, T0 + 1000 * MS, &q, 1);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.remaining, 0);
        assert_eq!(
            entries(&state),
            [
                e(T0_US + 100_000, 1),
                e(T0_US + 200_000, 1),
                e(T0_US + 1_000_000, 1)
            ]
        );
    }

    #[test]
    fn expired_entries_are_dropped_and_same_stamps_merged() {
        let q = quota(10, 1000);
        let (_, state) = step(&None, T0, &q, 2);
        let (_, state) = step(&state, T0 + 400 * MS, &q, 3);
        let (_, state) = step(&state, T0 + 400 * MS, &q, 1);
        assert_eq!(entries(&state), [e(T0_US, 2), e(T0_US + 400_000, 4)]);
        let (_, state) = step(&state, T0 + 1300 * MS, &q, 1);
        assert_eq!(
            entries(&state),
            [e(T0_US + 400_000, 4), e(T0_US + 1_300_000, 1)]
        );
        let bytes = state.as_deref().unwrap();
        assert_eq!(bytes[0], TAG);
        assert_eq!(bytes[1..9], (T0_US + 400_000).to_le_bytes());
    }

    #[test]
    fn compact_state() {
        // 100 cost-1 requests 10 ms apart: 3 bytes each (delta 10_000 µs << 1 < 2^21).
        let q = quota(100, 60_000);
        let mut state = None;
        for i in 0..100 {
            state = step(&state, T0 + i * 10 * MS, &q, 1).1;
        }
        assert_eq!(state.as_ref().unwrap().len(), HEADER_LEN + 1 + 99 * 3);
    }

    #[test]
    fn retry_after_is_exact_on_a_millisecond_clock() {
        let q = quota(2, 1000);
        let (_, state) = step(&None, T0 + 1, &q, 1);
        let (_, state) = step(&state, T0 + 300 * MS + 500, &q, 1);
        let now = T0 + 600 * MS;
        let (o, _) = step(&state, now, &q, 1);
        // The first entry is stamped T0 + 1 µs (rounded up): it counts until
        // T0 + 1000.001 ms, so a millisecond clock waits until T0 + 1001 ms.
        assert_eq!(o.decision.retry_after_ms, 401);
        assert!(step(&state, now + 401 * MS, &q, 1).0.decision.allowed);
        assert!(!step(&state, now + 400 * MS, &q, 1).0.decision.allowed);
        let (o, _) = step(&state, now, &q, 2);
        assert_eq!(o.decision.retry_after_ms, 701);
    }

    #[test]
    fn clock_going_backwards_admits_nothing_extra() {
        let q = quota(2, 1000);
        let (_, state) = step(&None, T0 + 5000 * MS, &q, 2);
        for now in [T0 + 4999 * MS, T0, 0] {
            let (o, _) = step(&state, now, &q, 1);
            assert!(!o.decision.allowed);
            assert_eq!(o.decision.remaining, 0);
            assert_eq!(o.decision.retry_after_ms, ceil_ms(T0 + 6000 * MS - now));
        }
        // A new entry is stamped no earlier than the newest one.
        let (_, state) = step(&None, T0 + 5000 * MS, &q, 1);
        let (o, state) = step(&state, T0, &q, 1);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.reset_after_ms, 6000);
        assert_eq!(entries(&state), [e(T0_US + 5_000_000, 2)]);
    }

    #[test]
    fn cost_zero_peeks_without_writing() {
        let q = quota(5, 1000);
        let (o, _) = step(&None, T0, &q, 0);
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
    fn extreme_quotas_do_not_overflow() {
        let q = quota(MAX_COUNT, MAX_SPAN_MS);
        let (o, state) = step(&None, T0, &q, MAX_COUNT);
        assert!(o.decision.allowed);
        assert_eq!(o.decision.reset_after_ms, MAX_SPAN_MS);
        let (o, _) = step(&state, T0, &q, MAX_COUNT);
        assert_eq!(o.decision.retry_after_ms, MAX_SPAN_MS);
        let mut huge = Vec::new();
        encode(
            &[
                e(0, u64::MAX),
                e(u64::MAX >> 1, u64::MAX),
                e(u64::MAX - 1, u64::MAX),
            ],
            &mut huge,
        )
        .unwrap();
        for q in [quota(0, 0), quota(u64::MAX, u64::MAX), quota(1, u64::MAX)] {
            for now in [0, 1, T0, u64::MAX] {
                for cost in [0, 1, u64::MAX] {
                    for state in [None, Some(&huge)] {
                        let _ = decide(state.map(|s| &s[..]), now, &q, cost, &mut Vec::new());
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_round_trips() {
        let cases: [&[Entry]; 4] = [
            &[],
            &[e(T0_US, 1)],
            &[e(0, 2), e(0, 1), e(127, 1), e(u64::MAX >> 1, MAX_COUNT)],
            &[e(1 << 63, u64::MAX), e(u64::MAX, 1)],
        ];
        for entries in cases {
            let mut out = Vec::new();
            encode(entries, &mut out).unwrap();
            assert_eq!(decode(&out).as_deref(), Ok(entries));
        }
        let mut out = Vec::new();
        assert_eq!(encode(&[e(5, 1), e(4, 1)], &mut out), Err(CorruptState));
        assert_eq!(encode(&[e(5, 0)], &mut Vec::new()), Err(CorruptState));
        assert_eq!(
            encode(&[e(0, 1), e(u64::MAX, 1)], &mut Vec::new()),
            Err(CorruptState)
        );
    }

    #[test]
    fn corrupt_states_are_rejected() {
        let header = |rest: &[u8]| [&[TAG, 0, 0, 0, 0, 0, 0, 0, 0][..], rest].concat();
        for bad in [
            vec![],
            vec![TAG],
            vec![TAG, 0, 0, 0, 0, 0, 0, 0],
            b"1764028800000".to_vec(),
            b"1764028800000:1".to_vec(),
            header(&[0x80]),       // truncated varint
            header(&[0x80, 0x00]), // overlong varint
            header(&[0x01]),       // has_cost without a cost
            header(&[0x01, 0x00]), // cost 0
            header(&[0x01, 0x01]), // explicit cost 1
            header(&[0xff; 10]),   // varint beyond 64 bits
            header(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]),
            [&[TAG][..], &u64::MAX.to_le_bytes(), &[0x02]].concat(), // time overflow
        ] {
            assert_eq!(decode(&bad), Err(CorruptState), "{bad:?}");
            assert_eq!(
                decide(Some(&bad), T0, &quota(1, 1000), 1, &mut Vec::new()),
                Err(CorruptState)
            );
        }
        // The largest varint is fine.
        let max = header(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(decode(&max), Ok(vec![e(u64::MAX >> 1, 1)]));
    }

    fn any_quota() -> impl Strategy<Value = Quota> {
        (
            1u64..=12,
            prop::sample::select(vec![1u64, 3, 10, 1000, 60_000]),
        )
            .prop_map(|(l, p)| quota(l, p))
    }

    /// A gap between requests: up to two periods, scaled down by a random
    /// power of ten so that bursts are common.
    fn gap_ns(period_ms: u64, (scale, fraction): (u8, u32)) -> u64 {
        let gap = u128::from(period_ms * MS) * u128::from(fraction % 2_000_001) / 1_000_000;
        u64::try_from(gap / 10u128.pow(u32::from(scale % 6))).unwrap()
    }

    /// The plain definition over whole-µs times: admitted iff the units
    /// admitted within the last period plus `cost` fit; the retry wait is the
    /// least one after which they fit, rounded up to ms.
    fn reference(log: &[(u64, u64)], now: u64, q: &Quota, cost: u64) -> Decision {
        let period = q.period_ms * MS;
        let counted = |at: u64| -> u64 {
            log.iter()
                .filter(|&&(t, _)| at < t + period)
                .map(|&(_, c)| c)
                .sum()
        };
        let used = counted(now);
        let allowed = used + cost <= q.limit;
        let after = if allowed { used + cost } else { used };
        let mut expiries: Vec<u64> = log
            .iter()
            .map(|&(t, _)| t + period)
            .filter(|&x| x > now)
            .collect();
        if allowed && cost > 0 {
            expiries.push(now + period);
        }
        let retry = expiries
            .iter()
            .copied()
            .filter(|&x| counted(x) + cost <= q.limit)
            .min();
        Decision {
            allowed,
            limit: q.limit,
            remaining: q.limit - after,
            retry_after_ms: if allowed {
                0
            } else {
                ceil_ms(retry.unwrap() - now)
            },
            reset_after_ms: expiries.iter().max().map_or(0, |&x| ceil_ms(x - now)),
        }
    }

    proptest! {
        #[test]
        fn never_more_than_limit_in_any_window(
            q in any_quota(),
            steps in prop::collection::vec((any::<(u8, u32)>(), any::<u64>()), 1..80),
        ) {
            let period = q.period_ms * MS;
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0 + 123;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for (gap, pick) in steps {
                now += gap_ns(q.period_ms, gap);
                let cost = pick % (q.limit + 1);
                let (o, next) = step(&state, now, &q, cost);
                if o.decision.allowed && cost > 0 {
                    admitted.push((now, cost));
                }
                if let Some(s) = &next {
                    let log = decode(s).unwrap();
                    let cost_bytes: usize = log.iter().filter(|x| x.cost > 1).map(|_| 6).sum();
                    prop_assert!(s.len() <= HEADER_LEN + 8 * log.len() + cost_bytes);
                }
                state = next;
            }
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let in_window: u64 = admitted[i..].iter().take_while(|&&(t, _)| t < start + period).map(|&(_, c)| c).sum();
                prop_assert!(in_window <= q.limit, "{} units in [{}, +{})", in_window, start, period);
            }
        }

        #[test]
        fn agrees_with_the_definition_on_a_microsecond_clock(
            q in any_quota(),
            steps in prop::collection::vec((any::<(u8, u32)>(), any::<u64>()), 1..60),
        ) {
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0;
            let mut log: Vec<(u64, u64)> = Vec::new();
            for (gap, pick) in steps {
                now += gap_ns(q.period_ms, gap) / 1000 * 1000;
                let cost = pick % (q.limit + 1);
                let (o, next) = step(&state, now, &q, cost);
                prop_assert_eq!(o.decision, reference(&log, now, &q, cost));
                if o.decision.allowed && cost > 0 {
                    log.push((now, cost));
                }
                state = next;
            }
        }

        #[test]
        fn retry_after_is_honoured(
            q in any_quota(),
            steps in prop::collection::vec((any::<(u8, u32)>(), any::<u64>(), any::<bool>()), 1..40),
        ) {
            // Any clock, including one that steps back now and then.
            let mut state: Option<Vec<u8>> = None;
            let mut now = T0;
            for (gap, pick, back) in steps {
                let gap = gap_ns(q.period_ms, gap);
                now = if back { now - gap } else { now + gap };
                let cost = pick % (q.limit + 1);
                let (o, next) = step(&state, now, &q, cost);
                if !o.decision.allowed {
                    prop_assert!(o.decision.retry_after_ms > 0);
                    let retry = now + o.decision.retry_after_ms * MS;
                    prop_assert!(step(&state, retry, &q, cost).0.decision.allowed);
                    prop_assert!(!step(&state, retry - MS, &q, cost).0.decision.allowed);
                    let reset = now + o.decision.reset_after_ms * MS;
                    prop_assert_eq!(step(&state, reset, &q, 0).0.decision.remaining, q.limit);
                }
                state = next;
            }
        }

        #[test]
        fn later_is_never_stricter_than_earlier(
            q in any_quota(),
            log in prop::collection::vec((0u64..200_000_000, 1u64..5), 0..20),
            a in 0u64..300_000_000_000,
            b in 0u64..300_000_000_000,
            cost in 0u64..=12,
        ) {
            let mut stamps: Vec<Entry> = log.iter().map(|&(t, c)| e(T0_US - 100_000_000 + t, c)).collect();
            stamps.sort_by_key(|x| x.ts_us);
            let mut bytes = Vec::new();
            encode(&stamps, &mut bytes).unwrap();
            let state = Some(bytes);
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
            log in prop::collection::vec((0u64..200_000_000, 1u64..5), 0..20),
            now in T0..T0 + 200_000 * MS,
            cost in 1u64..=12,
        ) {
            let mut stamps: Vec<Entry> = log.iter().map(|&(t, c)| e(T0_US - 50_000_000 + t, c)).collect();
            stamps.sort_by_key(|x| x.ts_us);
            let mut bytes = Vec::new();
            encode(&stamps, &mut bytes).unwrap();
            let state = Some(bytes);
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
        fn encoding_round_trips_for_any_log(
            first in any::<u64>(),
            rest in prop::collection::vec((0u64..=u64::MAX >> 1, 1u64..=u64::MAX), 0..30),
        ) {
            let mut log = vec![e(first, 1)];
            for (delta, cost) in rest {
                match log.last().unwrap().ts_us.checked_add(delta) {
                    Some(ts) => log.push(e(ts, cost)),
                    None => break,
                }
            }
            let mut out = Vec::new();
            encode(&log, &mut out).unwrap();
            prop_assert_eq!(decode(&out), Ok(log));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            tail in prop::collection::vec(any::<u8>(), 0..48),
            tagged in any::<bool>(),
            now in any::<u64>(),
            limit in any::<u64>(),
            period_ms in any::<u64>(),
            cost in any::<u64>(),
        ) {
            let q = quota(limit, period_ms);
            let bytes = if tagged { [&[TAG][..], &tail].concat() } else { tail };
            let mut out = Vec::new();
            if let Ok(o) = decide(Some(&bytes), now, &q, cost, &mut out) {
                prop_assert_eq!(o.decision.limit, limit);
                if let Write::Set { expire_at_ms } = o.write {
                    prop_assert!(decode(&out).is_ok());
                    prop_assert!(expire_at_ms > now / MS);
                }
            }
        }
    }
}
