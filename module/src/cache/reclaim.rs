//! Frees the memory of invisible cache entries in the background.
//!
//! An invalidation only bumps a generation (O(1)); the entries it hides stay
//! in memory until their TTL unless reclaimed. Each invalidation on a
//! primary queues the user's index (`tk:ci:{tag}`); a module timer then
//! walks it with `ZSCAN`, at most [`BATCH`] entries per tick, and deletes
//! every entry whose generations are no longer current (`UNLINK` of the
//! entry and `ZREM` from the index, replicated like any write), plus index
//! members whose entry is already gone. Ticks are [`INTERVAL_MS`] apart, so
//! other clients are served between batches however large the user's cache.
//!
//! Only a primary reclaims (replicas receive its deletions); only keys named
//! by an invalidation are touched (no keyspace scan). The index's members
//! are untrusted (anyone who may write the index may list any name), so a
//! member is read or deleted only if its name is `tk:c:{tag}:…` with the
//! index's tag (so the same slot), and the ACL user who invalidated, recorded
//! with the job, may read and delete it. Other members are unlisted and
//! counted (`cache_foreign_members`), never touched. A job whose user was
//! deleted meanwhile stops (`cache_reclaim_stopped`).
//!
//! The queue lives in memory: after a restart or failover, entries still
//! pending simply expire with their TTL (at most 7 days, usually minutes).

use std::collections::VecDeque;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use redis_module::raw;

use crate::call::{Call, Replicate};
use crate::effects::{self, Keys};
use crate::error::CommandError;
use crate::glue::{Access, ArgString, Caller, Ctx};
use crate::keyapi::{HashKey, OwnedString};
use crate::keys::CacheKeys;
use crate::stats;

use super::command::{current_generations, entry_generations};
use super::generation::Generations;
use super::plan::{self, Reclaim};
use super::ENTRY_FIELDS;

/// Most index members examined per tick.
pub const BATCH: usize = 64;
/// Pause between ticks, in ms.
pub const INTERVAL_MS: i64 = 1;

struct Job {
    db: i32,
    /// The ACL user who invalidated (empty: unrestricted); the job may
    /// touch only what that user could.
    user: Vec<u8>,
    generations: Vec<u8>,
    index: Vec<u8>,
    /// ZSCAN cursor ("0" to start).
    cursor: Vec<u8>,
}

struct Queue {
    jobs: VecDeque<Job>,
    timer_armed: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    jobs: VecDeque::new(),
    timer_armed: false,
});

fn queue() -> MutexGuard<'static, Queue> {
    // A panic while holding the lock is caught by the guards; the queue is
    // still consistent (jobs are whole), so poisoning is ignored.
    QUEUE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Users (indexes) waiting to be swept.
pub fn pending() -> u64 {
    queue().jobs.len() as u64
}

/// Queues the index of a user who was just invalidated (primary only), on
/// behalf of the ACL user `caller` (`None`: unrestricted). A user already
/// queued starts over, so entries the sweep had passed are checked against
/// the new generation too, with the rights of the latest invalidator.
pub fn enqueue(ctx: Ctx, generations: ArgString, index: ArgString, caller: Option<Vec<u8>>) {
    if !ctx.is_writable_primary() {
        return;
    }
    let db = ctx.selected_db();
    let mut queue = queue();
    match queue
        .jobs
        .iter_mut()
        .find(|job| job.db == db && job.index == index.bytes())
    {
        Some(job) => {
            job.cursor = b"0".to_vec();
            job.user = caller.unwrap_or_default();
        }
        None => queue.jobs.push_back(Job {
            db,
            user: caller.unwrap_or_default(),
            generations: generations.bytes().to_vec(),
            index: index.bytes().to_vec(),
            cursor: b"0".to_vec(),
        }),
    }
    arm(ctx, &mut queue);
}

fn arm(ctx: Ctx, queue: &mut Queue) {
    if queue.timer_armed || queue.jobs.is_empty() {
        return;
    }
    // SAFETY: live context; the callback takes no data.
    unsafe {
        if let Some(create_timer) = raw::RedisModule_CreateTimer {
            create_timer(ctx.as_ptr(), INTERVAL_MS, Some(tick), std::ptr::null_mut());
            queue.timer_armed = true;
        }
    }
}

extern "C" fn tick(ctx: *mut raw::RedisModuleCtx, _data: *mut c_void) {
    // SAFETY: Redis passes the timer's live context.
    let Some(ctx) = (unsafe { Ctx::from_raw(ctx) }) else {
        return;
    };
    // A panic must not cross into Redis: drop the queue and log instead.
    if catch_unwind(AssertUnwindSafe(|| run_tick(ctx))).is_err() {
        stats::PANICS.incr();
        let mut queue = queue();
        queue.jobs.clear();
        queue.timer_armed = false;
        ctx.log(
            c"warning",
            "tk: the cache reclaimer panicked and dropped its queue (entries expire with their TTL); please report this bug",
        );
    }
}

fn run_tick(ctx: Ctx) {
    let mut queue = queue();
    queue.timer_armed = false;
    if !ctx.is_writable_primary() {
        // Demoted to replica: the new primary's deletions will arrive.
        queue.jobs.clear();
        return;
    }
    let Some(mut job) = queue.jobs.pop_front() else {
        return;
    };
    ctx.select_db(job.db);
    match sweep(ctx, &mut job) {
        Ok(true) => {}
        Ok(false) => queue.jobs.push_back(job),
        Err(error) => stopped(ctx, &error),
    }
    arm(ctx, &mut queue);
}

/// Least time between two "reclaim stopped" log lines, in ms: stops are
/// counted in `INFO tk`, the log only says that they happen.
const STOPPED_LOG_INTERVAL_MS: u64 = 60_000;

fn stopped(ctx: Ctx, error: &CommandError) {
    static LAST_LOGGED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    stats::CACHE.reclaim_stopped.incr();
    let now_ms = ctx.now_nanos() / 1_000_000;
    let last = LAST_LOGGED_MS.load(std::sync::atomic::Ordering::Relaxed);
    if last == 0 || now_ms.saturating_sub(last) >= STOPPED_LOG_INTERVAL_MS {
        LAST_LOGGED_MS.store(now_ms.max(1), std::sync::atomic::Ordering::Relaxed);
        ctx.log(
            c"warning",
            &format!(
                "tk: cache reclaim of one index stopped ({error}); its entries expire with their TTL. \
                 Further stops within a minute are only counted (INFO tk: cache_reclaim_stopped)"
            ),
        );
    }
}

/// One batch of one job. Returns whether the job is finished.
fn sweep(ctx: Ctx, job: &mut Job) -> Result<bool, CommandError> {
    let Ok(keys) = CacheKeys::of_index(&job.index) else {
        // INVALIDATE* checks the name before queueing; nothing to sweep.
        return Ok(true);
    };
    let caller = Caller::named(ctx, &job.user).ok_or(CommandError::Refused(
        "the invalidating ACL user no longer exists",
    ))?;
    let scan = Call::new(c"ZSCAN")
        .bytes(&job.index)
        .bytes(&job.cursor)
        .bytes(b"COUNT")
        .uint(BATCH as u64)
        .run(ctx, Replicate::No)?;
    let scan = scan.get();
    if scan.is_error() {
        // The index was replaced by another type: nothing of ours to sweep.
        return Ok(true);
    }
    let next_cursor = scan
        .element(0)
        .and_then(|cursor| cursor.bytes())
        .unwrap_or(b"0");
    let Some(members) = scan.element(1) else {
        return Ok(true);
    };
    // Generations looked up once per namespace per batch.
    let mut known: Vec<(Vec<u8>, Generations)> = Vec::new();
    for position in (0..members.len()).step_by(2) {
        let Some(member) = members.element(position).and_then(|member| member.bytes()) else {
            continue;
        };
        let verdict = if !keys.lists(member) || !caller.may(ctx, member, Access::ReadAndDelete) {
            stats::CACHE.foreign_members.incr();
            Reclaim::Unlist
        } else {
            let name = OwnedString::new(ctx, member)
                .ok_or(CommandError::Internal("CreateString failed"))?;
            match HashKey::open(ctx, name.as_arg(), false) {
                // Replaced by a key of another type: not ours, only unlisted.
                Err(CommandError::WrongType) => {
                    stats::CACHE.foreign_members.incr();
                    Reclaim::Unlist
                }
                Err(other) => return Err(other),
                Ok(None) => Reclaim::Unlist,
                Ok(Some(entry)) => {
                    // Fields 1 to 3 of ENTRY_FIELDS: the generations and
                    // the namespace (the value is not needed).
                    let [user, namespace_generation, namespace] =
                        [1, 2, 3].map(|index| entry.get_named(ctx, ENTRY_FIELDS.get(index)));
                    let current = match bytes(&namespace) {
                        Some(namespace) => Some(generations_of(ctx, job, &mut known, namespace)?),
                        None => None,
                    };
                    let exists =
                        user.is_some() || namespace_generation.is_some() || namespace.is_some();
                    let stored = entry_generations(bytes(&user), bytes(&namespace_generation));
                    plan::reclaim(exists, stored, current)
                }
            }
        };
        if verdict == Reclaim::Delete {
            stats::CACHE.entries_reclaimed.incr();
        }
        effects::apply(
            ctx,
            &Keys::named(),
            verdict.effects(&job.index, member).as_slice(),
        )?;
    }
    if next_cursor == b"0" {
        return Ok(true);
    }
    job.cursor = next_cursor.to_vec();
    Ok(false)
}

fn bytes(field: &Option<OwnedString>) -> Option<&[u8]> {
    field.as_ref().map(OwnedString::bytes)
}

fn generations_of(
    ctx: Ctx,
    job: &Job,
    known: &mut Vec<(Vec<u8>, Generations)>,
    namespace: &[u8],
) -> Result<Generations, CommandError> {
    if let Some((_, generations)) = known.iter().find(|(name, _)| name == namespace) {
        return Ok(*generations);
    }
    let name = OwnedString::new(ctx, &job.generations)
        .ok_or(CommandError::Internal("CreateString failed"))?;
    let generations = current_generations(ctx, name.as_arg(), namespace)?;
    known.push((namespace.to_vec(), generations));
    Ok(generations)
}
