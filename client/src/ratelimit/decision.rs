//! What the module answers: [`Decision`] and [`AllDecision`].

use super::*;
use std::time::Duration;

/// The module's answer for one limit, or a [`FailurePolicy`]'s stand-in
/// for it when Redis was unreachable (then [`Decision::fallback`] is true).
///
/// On refusal, `retry_after` says when a request of the same cost could be
/// admitted; use [`Decision::retry_after_secs`] for an HTTP `Retry-After`
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Whether the request was (or, for peek, would be) admitted.
    pub allowed: bool,
    /// The limit the decision was made against, as reported by the module.
    pub limit: u64,
    /// How many more cost units would be admitted right now.
    pub remaining: u64,
    /// How long until the request could be admitted; zero when allowed.
    pub retry_after: Duration,
    /// How long until the allowance is fully restored.
    pub reset_after: Duration,
    /// `true` when Redis was not asked: the decision was made by the
    /// limiter's [`FailurePolicy`] because of a transient error. Always
    /// `false` for a decision parsed from the module's reply.
    ///
    /// A fallback decision carries no real counts: `limit` is the quota's
    /// limit (for `check_all`, the first one's), `remaining` is 0, and
    /// `retry_after` and `reset_after` are zero when admitted
    /// ([`FailurePolicy::FailOpen`]) and [`FAIL_CLOSED_RETRY_AFTER`] when
    /// refused ([`FailurePolicy::FailClosed`]). Leave rate-limit headers
    /// other than `Retry-After` out for such decisions.
    pub fallback: bool,
}

impl Decision {
    /// `retry_after` in whole seconds, rounded up: the value for an HTTP
    /// `Retry-After` header (0 when allowed).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }

    /// `reset_after` in whole seconds, rounded up (e.g. for a
    /// `RateLimit-Reset` header).
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// The stand-in decision of a fallback (see [`Decision::fallback`]).
    pub(super) fn stand_in(allowed: bool, limit: u64) -> Decision {
        let wait = if allowed {
            Duration::ZERO
        } else {
            FAIL_CLOSED_RETRY_AFTER
        };
        Decision {
            allowed,
            limit,
            remaining: 0,
            retry_after: wait,
            reset_after: wait,
            fallback: true,
        }
    }
}

pub(super) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The answer to [`RateLimiter::check_all`]: one reported decision and which
/// limit it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllDecision {
    /// The reported limit's decision. `decision.allowed` is the overall
    /// outcome. When refused, this is the refusing limit with the longest
    /// `retry_after`; when allowed, the limit with the fewest `remaining`.
    /// For a fallback decision ([`Decision::fallback`]), the first limit.
    pub decision: Decision,
    /// Position of the reported limit in the slice given to `check_all`.
    pub index: usize,
}
