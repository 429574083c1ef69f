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

use super::parse::CapPolicy;

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

impl Times {
    /// Whether a session with these times is still alive at `now`. Redis
    /// keeps a key through its expiry millisecond (it is expired only once
    /// `now > PEXPIRETIME`), and `expires_at` is the key's `PEXPIRETIME`, so
    /// LIST agrees with GET/TOUCH, which see the key. A session whose
    /// `expires_at` or `max_expires_at` has passed is dead, whatever its
    /// key's TTL says (a TTL removed or changed by hand).
    pub fn is_live(&self, now: u64) -> bool {
        now <= self.expires_at && now <= self.max_expires_at
    }

    /// Whether tk could have written these times: every number fits a
    /// Redis integer reply, versions start at 1, activity never precedes
    /// creation and expiry never passes the absolute cap. Anything else was
    /// written by hand and is foreign data (WRONGTYPE) at every command.
    pub fn is_plausible(&self) -> bool {
        let fits = [
            self.created,
            self.last_active,
            self.expires_at,
            self.max_expires_at,
            self.version,
            self.idle_ms,
        ]
        .iter()
        .all(|&value| value <= MAX_STORED);
        fits && self.version >= 1
            && self.created <= self.last_active
            && self.expires_at <= self.max_expires_at
    }
}

/// The largest number a session stores: Redis's integer replies are signed
/// 64-bit.
pub const MAX_STORED: u64 = i64::MAX as u64;

/// The version after `current`, `None` once it would leave the stored range
/// (after 9.2·10^18 updates: `ERR`, never a version no command can read).
pub fn next_version(current: u64) -> Option<u64> {
    current.checked_add(1).filter(|&next| next <= MAX_STORED)
}

/// What a session key listed in an index turned out to be, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// Not ours to touch: a name this index may not list, a key the caller
    /// may not access, another type or shape, another user's session.
    /// Unlisted by write commands, skipped by LIST; never read or deleted.
    Foreign,
    /// No such key any more.
    Gone,
    /// This user's session, whose time is up: deleted and unlisted.
    Dead,
    /// This user's live session.
    Live(Times),
}

/// Classifies a readable session of `session_user` listed in the index of
/// `index_user`, at `now`.
pub fn listed(index_user: &[u8], session_user: &[u8], times: Times, now: u64) -> Listed {
    if index_user != session_user {
        Listed::Foreign
    } else if times.is_live(now) {
        Listed::Live(times)
    } else {
        Listed::Dead
    }
}

/// What a write command does to one index member it does not keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    Keep,
    /// ZREM from the index only.
    Unlist,
    /// UNLINK the session and ZREM it from the index.
    DeleteAndUnlist,
}

impl Listed {
    /// Pruning: dead entries go, live sessions stay.
    pub fn prune(&self) -> Cleanup {
        match self {
            Listed::Foreign | Listed::Gone => Cleanup::Unlist,
            Listed::Dead => Cleanup::DeleteAndUnlist,
            Listed::Live(_) => Cleanup::Keep,
        }
    }

    /// REVOKEALL: every session of the user goes; foreign entries are only
    /// unlisted.
    pub fn revoke(&self) -> Cleanup {
        match self {
            Listed::Live(_) => Cleanup::DeleteAndUnlist,
            other => other.prune(),
        }
    }
}

/// CREATE's refusal under `MAXSESSIONS n REJECT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitReached;

/// What CREATE does to the user's index before adding the new session:
/// each member's cleanup (pruning plus evictions), or the refusal, decided
/// before anything is written so a refusal changes nothing.
pub fn plan_create<K: Ord>(
    members: &[(K, Listed)],
    cap: Option<(u64, CapPolicy)>,
) -> Result<Vec<Cleanup>, LimitReached> {
    let mut plan: Vec<Cleanup> = members.iter().map(|(_, listed)| listed.prune()).collect();
    let Some((cap, policy)) = cap else {
        return Ok(plan);
    };
    let mut live: Vec<(&K, u64, usize)> = members
        .iter()
        .enumerate()
        .filter_map(|(position, (key, listed))| match listed {
            Listed::Live(times) => Some((key, times.last_active, position)),
            _ => None,
        })
        .collect();
    let excess = evictions_needed(live.len(), cap);
    if excess == 0 {
        return Ok(plan);
    }
    if policy == CapPolicy::Reject {
        return Err(LimitReached);
    }
    live.sort_by(|(key_a, active_a, _), (key_b, active_b, _)| {
        active_a.cmp(active_b).then_with(|| key_a.cmp(key_b))
    });
    for (_, _, position) in live.into_iter().take(excess) {
        plan[position] = Cleanup::DeleteAndUnlist;
    }
    Ok(plan)
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_lives_through_its_expiry_millisecond() {
        let session = create(0, 1_000, 2_000);
        assert!(session.is_live(999));
        assert!(session.is_live(1_000), "Redis still serves the key");
        assert!(!session.is_live(1_001));
        let past_cap = Times {
            expires_at: 5_000,
            ..session
        };
        assert!(
            !past_cap.is_live(2_001),
            "max_expires_at ends it whatever the TTL"
        );
    }

    #[test]
    fn only_what_tk_could_write_is_plausible() {
        let session = create(1_000, HOUR, 2 * HOUR);
        assert!(session.is_plausible());
        for bad in [
            Times {
                version: 0,
                ..session
            },
            Times {
                version: MAX_STORED + 1,
                ..session
            },
            Times {
                created: session.last_active + 1,
                ..session
            },
            Times {
                expires_at: session.max_expires_at + 1,
                ..session
            },
            Times {
                max_expires_at: u64::MAX,
                ..session
            },
        ] {
            assert!(!bad.is_plausible(), "{bad:?}");
        }
        assert_eq!(next_version(1), Some(2));
        assert_eq!(next_version(MAX_STORED - 1), Some(MAX_STORED));
        assert_eq!(next_version(MAX_STORED), None);
    }

    fn live(last_active: u64) -> Listed {
        Listed::Live(Times {
            last_active,
            ..create(0, HOUR, HOUR)
        })
    }

    #[test]
    fn create_prunes_and_evicts_by_plan() {
        let members = [
            ("a", Listed::Foreign),
            ("b", live(10)),
            ("c", Listed::Dead),
            ("d", live(5)),
            ("e", Listed::Gone),
            ("f", live(10)),
        ];
        assert_eq!(
            plan_create(&members, None).unwrap(),
            [
                Cleanup::Unlist,
                Cleanup::Keep,
                Cleanup::DeleteAndUnlist,
                Cleanup::Keep,
                Cleanup::Unlist,
                Cleanup::Keep
            ]
        );
        // Three live, cap 2: two go, least recently active first, ties by key.
        let plan = plan_create(&members, Some((2, CapPolicy::Evict))).unwrap();
        assert_eq!(
            [plan[1], plan[3], plan[5]],
            [
                Cleanup::DeleteAndUnlist,
                Cleanup::DeleteAndUnlist,
                Cleanup::Keep
            ]
        );
        assert_eq!(
            plan_create(&members, Some((2, CapPolicy::Reject))),
            Err(LimitReached)
        );
        assert!(plan_create(&members, Some((4, CapPolicy::Reject))).is_ok());
        // Foreign entries are never deleted, whatever the command.
        assert_eq!(Listed::Foreign.revoke(), Cleanup::Unlist);
        assert_eq!(live(1).revoke(), Cleanup::DeleteAndUnlist);
    }

    #[test]
    fn another_users_session_is_foreign() {
        let times = create(0, HOUR, HOUR);
        assert_eq!(listed(b"alice", b"bob", times, 1), Listed::Foreign);
        assert_eq!(listed(b"alice", b"alice", times, 1), Listed::Live(times));
        assert_eq!(listed(b"alice", b"alice", times, HOUR + 1), Listed::Dead);
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

        /// Whatever the index holds, CREATE's plan never deletes a foreign
        /// or gone entry, keeps the live ones under the cap, and a refusal
        /// comes only when the cap is reached.
        #[test]
        fn create_plan_never_touches_foreign_entries(
            kinds in proptest::collection::vec(0u8..4, 0..40),
            cap in proptest::option::of((1u64..10, any::<bool>())),
        ) {
            let members: Vec<(usize, Listed)> = kinds.iter().enumerate().map(|(key, kind)| {
                (key, match kind { 0 => Listed::Foreign, 1 => Listed::Gone, 2 => Listed::Dead, _ => live(key as u64 % 7) })
            }).collect();
            let cap = cap.map(|(n, evict)| (n, if evict { CapPolicy::Evict } else { CapPolicy::Reject }));
            let live_count = members.iter().filter(|(_, l)| matches!(l, Listed::Live(_))).count();
            match plan_create(&members, cap) {
                Err(LimitReached) => {
                    let (n, policy) = cap.unwrap();
                    prop_assert_eq!(policy, CapPolicy::Reject);
                    prop_assert!(live_count as u64 + 1 > n);
                }
                Ok(plan) => {
                    prop_assert_eq!(plan.len(), members.len());
                    for ((_, listed), cleanup) in members.iter().zip(&plan) {
                        if matches!(listed, Listed::Foreign | Listed::Gone) {
                            prop_assert_eq!(*cleanup, Cleanup::Unlist);
                        }
                    }
                    let kept = plan.iter().filter(|c| **c == Cleanup::Keep).count();
                    if let Some((n, _)) = cap {
                        prop_assert!((kept as u64) < n, "the new session must fit");
                    }
                }
            }
        }
    }
}
