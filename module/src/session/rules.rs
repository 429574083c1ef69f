//! The session rules, as plain functions of `now` (Unix ms).
//!
//! - A session lives until `expires_at = min(last activity + idle,
//!   max_expires_at)`: idle sessions end, and no activity extends a session
//!   past its absolute lifetime.
//! - TOUCH moves `last_active` to now and recomputes `expires_at`; with
//!   MINGAP it skips the write when the last activity is recent enough
//!   (fewer writes and less replication for chatty clients).
//! - A cap on sessions per user evicts the least recently active ones (or
//!   refuses the new one).
//! - Writes with IFVERSION succeed only on the expected version.

/// The numeric fields of a stored session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times {
    pub created: u64,
    pub last_active: u64,
    pub expires_at: u64,
    pub max_expires_at: u64,
    pub version: u64,
    pub idle_ms: u64,
}

/// When a session active at `now` expires.
pub fn expires_at(now: u64, idle_ms: u64, max_expires_at: u64) -> u64 {
    now.saturating_add(idle_ms).min(max_expires_at)
}

/// The times of a session created at `now`.
pub fn create(now: u64, idle_ms: u64, max_lifetime_ms: u64) -> Times {
    let max_expires_at = now.saturating_add(max_lifetime_ms);
    Times {
        created: now,
        last_active: now,
        expires_at: expires_at(now, idle_ms, max_expires_at),
        max_expires_at,
        version: 1,
        idle_ms,
    }
}

/// What TOUCH does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Store these times (and expire the key at `expires_at`).
    Write(Times),
    /// Nothing to write: the last activity is within MINGAP.
    Skip,
}

/// TOUCH at `now`, with an optional new idle TTL and minimum gap. A clock
/// that stepped back never moves `last_active` backwards.
pub fn touch(now: u64, stored: Times, idle_ms: Option<u64>, min_gap_ms: Option<u64>) -> Touch {
    if let Some(gap) = min_gap_ms {
        if now.saturating_sub(stored.last_active) < gap
            && idle_ms.is_none_or(|idle| idle == stored.idle_ms)
        {
            return Touch::Skip;
        }
    }
    let idle_ms = idle_ms.unwrap_or(stored.idle_ms);
    let last_active = now.max(stored.last_active);
    Touch::Write(Times {
        last_active,
        expires_at: expires_at(last_active, idle_ms, stored.max_expires_at),
        idle_ms,
        ..stored
    })
}

/// Whether a session whose `expires_at` is stored is still alive at `now`.
/// Redis keeps a key through its expiry millisecond (it is expired only once
/// `now > PEXPIRETIME`), and `expires_at` is the key's `PEXPIRETIME`, so
/// LIST agrees with GET/TOUCH, which see the key. 0 means no expiry.
pub fn is_live(expires_at: u64, now: u64) -> bool {
    expires_at == 0 || expires_at >= now
}

/// Whether a write with `expected` may proceed on `current`.
pub fn version_matches(current: u64, expected: Option<u64>) -> bool {
    expected.is_none_or(|expected| expected == current)
}

/// How many of `live` sessions must go so that one more fits under `cap`
/// (0 when it already fits).
pub fn evictions_needed(live: usize, cap: u64) -> usize {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    (live + 1).saturating_sub(cap)
}

/// Orders sessions for eviction: least recently active first (ties by key,
/// so the choice is deterministic, and so the same on every replica).
pub fn eviction_order<K: Ord>(sessions: &mut [(K, u64)]) {
    sessions.sort_by(|(key_a, active_a), (key_b, active_b)| {
        active_a.cmp(active_b).then_with(|| key_a.cmp(key_b))
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_lives_through_its_expiry_millisecond() {
        assert!(super::is_live(1_000, 999));
        assert!(super::is_live(1_000, 1_000), "Redis still serves the key");
        assert!(!super::is_live(1_000, 1_001));
        assert!(super::is_live(0, u64::MAX), "no expiry");
    }

    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn idle_and_absolute_limits() {
        let session = create(1_000, HOUR, 2 * HOUR);
        assert_eq!(session.expires_at, 1_000 + HOUR);
        assert_eq!(session.max_expires_at, 1_000 + 2 * HOUR);
        // Activity extends the idle window, never past the absolute lifetime.
        let Touch::Write(later) = touch(1_000 + 90 * 60_000, session, None, None) else {
            panic!("touch writes");
        };
        assert_eq!(later.expires_at, session.max_expires_at);
        assert_eq!(later.last_active, 1_000 + 90 * 60_000);
        assert_eq!(later.version, session.version, "touch is not an update");
    }

    #[test]
    fn min_gap_skips_recent_touches() {
        let session = create(0, HOUR, 10 * HOUR);
        assert_eq!(touch(30_000, session, None, Some(60_000)), Touch::Skip);
        assert!(matches!(
            touch(60_000, session, None, Some(60_000)),
            Touch::Write(_)
        ));
        // A new idle TTL is always written.
        assert!(matches!(
            touch(30_000, session, Some(2 * HOUR), Some(60_000)),
            Touch::Write(_)
        ));
    }

    #[test]
    fn clock_going_back_never_rewinds_activity() {
        let session = create(10_000, HOUR, 10 * HOUR);
        let Touch::Write(after) = touch(5_000, session, None, None) else {
            panic!("touch writes");
        };
        assert_eq!(after.last_active, 10_000);
        assert_eq!(after.expires_at, 10_000 + HOUR);
    }

    #[test]
    fn versions_and_caps() {
        assert!(version_matches(3, None));
        assert!(version_matches(3, Some(3)));
        assert!(!version_matches(3, Some(2)));
        assert_eq!(evictions_needed(4, 5), 0);
        assert_eq!(evictions_needed(5, 5), 1);
        assert_eq!(evictions_needed(9, 5), 5);
        let mut sessions = vec![("c", 30), ("a", 10), ("b", 10), ("d", 5)];
        eviction_order(&mut sessions);
        assert_eq!(sessions, [("d", 5), ("a", 10), ("b", 10), ("c", 30)]);
    }

    proptest! {
        /// Whatever the sequence of touches, a session never expires after
        /// its absolute lifetime, and never before now + idle otherwise.
        #[test]
        fn expiry_stays_within_bounds(
            idle in 1u64..10 * HOUR, lifetime in 1u64..100 * HOUR,
            steps in proptest::collection::vec((0u64..3 * HOUR, proptest::option::of(0u64..HOUR)), 0..30),
        ) {
            let mut now = 1_000_000u64;
            let mut session = create(now, idle, lifetime);
            prop_assert!(session.expires_at <= session.max_expires_at);
            for (advance, min_gap) in steps {
                now += advance;
                if now >= session.expires_at {
                    break; // dead: Redis has deleted the key
                }
                if let Touch::Write(next) = touch(now, session, None, min_gap) {
                    prop_assert!(next.expires_at <= next.max_expires_at);
                    prop_assert_eq!(next.expires_at, (now + idle).min(next.max_expires_at));
                    prop_assert!(next.last_active >= session.last_active);
                    session = next;
                }
            }
        }

        #[test]
        fn cap_is_never_exceeded(live in 0usize..50, cap in 1u64..20) {
            let after = live - evictions_needed(live, cap).min(live) + 1;
            prop_assert!(after as u64 <= cap);
        }
    }
}
