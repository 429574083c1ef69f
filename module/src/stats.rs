//! Counters reported in the `INFO tk` section.
//!
//! Commands run on Redis's main thread, and so does INFO, but relaxed atomics
//! cost the same as plain adds and keep this sound if that ever changes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ratelimit::Algorithm;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Calls, admissions and refusals of one algorithm (TK.RATELIMIT and each
/// limit inside TK.RATELIMIT.ALL; PEEK is counted separately).
pub struct AlgorithmStats {
    pub calls: Counter,
    pub allowed: Counter,
    pub denied: Counter,
}

impl AlgorithmStats {
    const fn new() -> Self {
        AlgorithmStats {
            calls: Counter::new(),
            allowed: Counter::new(),
            denied: Counter::new(),
        }
    }

    pub fn record(&self, allowed: bool) {
        self.calls.incr();
        if allowed {
            self.allowed.incr();
        } else {
            self.denied.incr();
        }
    }
}

pub struct RateLimitStats {
    pub by_algorithm: [AlgorithmStats; 3],
    pub peek_calls: Counter,
    pub all_calls: Counter,
    pub all_allowed: Counter,
    pub all_denied: Counter,
    pub reset_calls: Counter,
    pub reset_keys_removed: Counter,
}

impl RateLimitStats {
    pub fn algorithm(&self, algorithm: Algorithm) -> &AlgorithmStats {
        &self.by_algorithm[algorithm.index()]
    }
}

pub static RATELIMIT: RateLimitStats = RateLimitStats {
    by_algorithm: [
        AlgorithmStats::new(),
        AlgorithmStats::new(),
        AlgorithmStats::new(),
    ],
    peek_calls: Counter::new(),
    all_calls: Counter::new(),
    all_allowed: Counter::new(),
    all_denied: Counter::new(),
    reset_calls: Counter::new(),
    reset_keys_removed: Counter::new(),
};

/// Outcomes of the lock commands (TK.LOCK.*).
pub struct LockStats {
    /// ACQUIRE granted (a new fencing token issued).
    pub acquired: Counter,
    /// ACQUIRE refused because another token holds the lock.
    pub busy: Counter,
    /// RELEASE that deleted the lock.
    pub released: Counter,
    /// RELEASE refused: not held, or held by another token.
    pub release_refused: Counter,
    /// EXTEND that moved the expiry.
    pub extended: Counter,
    /// EXTEND refused: not held, or held by another token.
    pub extend_refused: Counter,
}

pub static LOCK: LockStats = LockStats {
    acquired: Counter::new(),
    busy: Counter::new(),
    released: Counter::new(),
    release_refused: Counter::new(),
    extended: Counter::new(),
    extend_refused: Counter::new(),
};

/// TK.CACHE.* outcomes and the background reclaimer's progress.
pub struct CacheStats {
    /// GET that found a visible entry.
    pub hits: Counter,
    /// GET that found nothing visible (absent, expired or invalidated).
    pub misses: Counter,
    /// SET that stored.
    pub sets: Counter,
    /// SET refused because IFGEN was older than the current generations.
    pub sets_refused: Counter,
    /// INVALIDATEUSER and INVALIDATENS calls.
    pub invalidations: Counter,
    /// Invisible entries deleted by the reclaimer.
    pub entries_reclaimed: Counter,
    /// Index members the reclaimer refused to touch (a name outside the
    /// index's `tk:c:{tag}:` prefix, a key the invalidating ACL user may not
    /// read and delete, another type): unlisted only.
    pub foreign_members: Counter,
    /// Reclaim jobs stopped before the end of their index (an error, or the
    /// invalidating ACL user was deleted); their entries expire with their TTL.
    pub reclaim_stopped: Counter,
}

pub static CACHE: CacheStats = CacheStats {
    hits: Counter::new(),
    misses: Counter::new(),
    sets: Counter::new(),
    sets_refused: Counter::new(),
    invalidations: Counter::new(),
    entries_reclaimed: Counter::new(),
    foreign_members: Counter::new(),
    reclaim_stopped: Counter::new(),
};

/// TK.SESSION.* outcomes.
pub struct SessionStats {
    pub created: Counter,
    /// TOUCH that wrote (last activity and expiry moved).
    pub touched: Counter,
    /// TOUCH skipped by MINGAP (nothing written or replicated).
    pub touch_skipped: Counter,
    /// GET, TOUCH, SET or ROTATE that found no session (expired, destroyed
    /// or unknown).
    pub expired_on_read: Counter,
    pub updated: Counter,
    /// SET refused by IFVERSION.
    pub version_conflicts: Counter,
    pub destroyed: Counter,
    pub rotated: Counter,
    /// Sessions deleted by REVOKEALL.
    pub revoked: Counter,
    /// Sessions deleted by CREATE's MAXSESSIONS EVICT.
    pub evicted: Counter,
    /// CREATE refused by MAXSESSIONS REJECT.
    pub rejected: Counter,
    /// Index members CREATE, LIST or REVOKEALL refused to touch (a name
    /// outside the index's `tk:s:{tag}:` prefix, a key the caller's ACL user
    /// may not access, another type, another user's session): unlisted by
    /// the write commands, skipped by LIST.
    pub foreign_members: Counter,
}

pub static SESSION: SessionStats = SessionStats {
    created: Counter::new(),
    touched: Counter::new(),
    touch_skipped: Counter::new(),
    expired_on_read: Counter::new(),
    updated: Counter::new(),
    version_conflicts: Counter::new(),
    destroyed: Counter::new(),
    rotated: Counter::new(),
    revoked: Counter::new(),
    evicted: Counter::new(),
    rejected: Counter::new(),
    foreign_members: Counter::new(),
};

/// Error replies sent, and panics caught by the guard (each one a bug).
pub static ERRORS: Counter = Counter::new();
pub static PANICS: Counter = Counter::new();
