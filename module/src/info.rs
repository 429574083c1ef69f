//! The `INFO tk` section: the module's counters (docs/OPERATIONS.md).

use std::ffi::{c_int, CStr};

use redis_module::raw;

use crate::cache::reclaim;
use crate::ratelimit::Algorithm;
use crate::stats;

fn add_field(ctx: *mut raw::RedisModuleInfoCtx, name: &CStr, value: u64) {
    // SAFETY: live info context, NUL-terminated name.
    unsafe {
        if let Some(add) = raw::RedisModule_InfoAddFieldULongLong {
            add(ctx, name.as_ptr(), value);
        }
    }
}

/// `INFO tk` (also part of `INFO modules` / `INFO everything`).
pub(crate) extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    // SAFETY: live info context; a NULL name is the module's default section "tk".
    unsafe {
        match raw::RedisModule_InfoAddSection {
            Some(add_section) => {
                add_section(ctx, std::ptr::null());
            }
            None => return,
        }
    }
    add_field(ctx, c"version", crate::MODULE_VERSION as u64);
    let ratelimit = &stats::RATELIMIT;
    for algorithm in Algorithm::ALL {
        let counters = ratelimit.algorithm(algorithm);
        let (calls, allowed, denied) = match algorithm {
            Algorithm::Gcra => (
                c"ratelimit_gcra_calls",
                c"ratelimit_gcra_allowed",
                c"ratelimit_gcra_denied",
            ),
            Algorithm::Sliding => (
                c"ratelimit_sliding_calls",
                c"ratelimit_sliding_allowed",
                c"ratelimit_sliding_denied",
            ),
            Algorithm::Fixed => (
                c"ratelimit_fixed_calls",
                c"ratelimit_fixed_allowed",
                c"ratelimit_fixed_denied",
            ),
        };
        add_field(ctx, calls, counters.calls.get());
        add_field(ctx, allowed, counters.allowed.get());
        add_field(ctx, denied, counters.denied.get());
    }
    add_field(ctx, c"ratelimit_peek_calls", ratelimit.peek_calls.get());
    add_field(ctx, c"ratelimit_all_calls", ratelimit.all_calls.get());
    add_field(ctx, c"ratelimit_all_allowed", ratelimit.all_allowed.get());
    add_field(ctx, c"ratelimit_all_denied", ratelimit.all_denied.get());
    add_field(ctx, c"ratelimit_reset_calls", ratelimit.reset_calls.get());
    add_field(
        ctx,
        c"ratelimit_reset_keys_removed",
        ratelimit.reset_keys_removed.get(),
    );
    let lock = &stats::LOCK;
    add_field(ctx, c"lock_acquired", lock.acquired.get());
    add_field(ctx, c"lock_busy", lock.busy.get());
    add_field(ctx, c"lock_released", lock.released.get());
    add_field(ctx, c"lock_release_refused", lock.release_refused.get());
    add_field(ctx, c"lock_extended", lock.extended.get());
    add_field(ctx, c"lock_extend_refused", lock.extend_refused.get());
    let session = &stats::SESSION;
    add_field(ctx, c"session_created", session.created.get());
    add_field(ctx, c"session_touched", session.touched.get());
    add_field(ctx, c"session_touch_skipped", session.touch_skipped.get());
    add_field(
        ctx,
        c"session_expired_on_read",
        session.expired_on_read.get(),
    );
    add_field(ctx, c"session_updated", session.updated.get());
    add_field(
        ctx,
        c"session_version_conflicts",
        session.version_conflicts.get(),
    );
    add_field(ctx, c"session_destroyed", session.destroyed.get());
    add_field(ctx, c"session_rotated", session.rotated.get());
    add_field(ctx, c"session_revoked", session.revoked.get());
    add_field(ctx, c"session_evicted", session.evicted.get());
    add_field(ctx, c"session_rejected", session.rejected.get());
    add_field(
        ctx,
        c"session_foreign_members",
        session.foreign_members.get(),
    );
    let cache = &stats::CACHE;
    add_field(ctx, c"cache_hits", cache.hits.get());
    add_field(ctx, c"cache_misses", cache.misses.get());
    add_field(ctx, c"cache_sets", cache.sets.get());
    add_field(ctx, c"cache_sets_refused", cache.sets_refused.get());
    add_field(ctx, c"cache_invalidations", cache.invalidations.get());
    add_field(
        ctx,
        c"cache_entries_reclaimed",
        cache.entries_reclaimed.get(),
    );
    add_field(ctx, c"cache_reclaim_pending", reclaim::pending());
    add_field(ctx, c"cache_reclaim_stopped", cache.reclaim_stopped.get());
    add_field(ctx, c"cache_foreign_members", cache.foreign_members.get());
    add_field(ctx, c"errors", stats::ERRORS.get());
    add_field(ctx, c"panics", stats::PANICS.get());
}
