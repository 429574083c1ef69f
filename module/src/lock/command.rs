//! TK.LOCK.ACQUIRE, TK.LOCK.RELEASE, TK.LOCK.EXTEND.
//!
//! Each handler: parse (`spec.rs`, on the shared parser) → read `now` once →
//! open keys → decide (`rules.rs`) → write and replicate the effects
//! through the same open keys (`effects.rs`, absolute times) → reply.
//! Refusals write nothing.

use crate::effects;
use crate::glue::{Argv, Ctx};
use crate::keyapi::StringKey;
use crate::registry::CommandResult;
use crate::stats;

use super::rules::{self, Acquire, Extend, Holder, Release};
use super::spec::{parse_acquire, parse_extend, parse_release};

/// `TK.LOCK.ACQUIRE <lock_key> <fence_key> <token> <ttl>`
///
/// Reply `[1, fence, ttl_ms]` when granted, `[0, 0, remaining_ms]` (-1 for a
/// holder without expiry) when another token holds the lock.
pub fn acquire(ctx: Ctx, argv: &Argv) -> CommandResult {
    let args = parse_acquire(argv)?;
    let now = ctx.now_nanos();
    let (lock_name, fence_name) = (argv.string(args.lock_key)?, argv.string(args.fence_key)?);
    let lock = StringKey::open_for_write(ctx, lock_name)?;
    let fence_key = StringKey::open_for_write(ctx, fence_name)?;
    let holder = lock.current().map(|token| Holder {
        token,
        expire_at_ms: lock.expire_at_ms(),
    });
    let outcome = rules::acquire(holder, fence_key.current(), args.token, now, args.ttl_ms)?;
    // Reply only after every fallible step.
    match outcome {
        Acquire::Acquired {
            fence,
            expire_at_ms,
        } => {
            // Fence first: should the second write ever fail, the only
            // trace is a skipped fencing token, never a lock without one.
            let mut digits = itoa::Buffer::new();
            let fence_text = digits.format(fence).as_bytes();
            effects::store_string(ctx, &fence_key, fence_name, fence_text, None)?;
            effects::store_string(ctx, &lock, lock_name, args.token, Some(expire_at_ms))?;
            stats::LOCK.acquired.incr();
            ctx.reply_array(3);
            ctx.reply_integer(1);
            ctx.reply_u64(fence);
            ctx.reply_u64(args.ttl_ms);
        }
        Acquire::Busy { remaining_ms } => {
            stats::LOCK.busy.incr();
            ctx.reply_array(3);
            ctx.reply_integer(0);
            ctx.reply_integer(0);
            match remaining_ms {
                Some(remaining) => ctx.reply_u64(remaining),
                None => ctx.reply_integer(-1),
            }
        }
    }
    Ok(())
}

/// `TK.LOCK.RELEASE <lock_key> <token>`: 1 if released, 0 if not held by
/// this token.
pub fn release(ctx: Ctx, argv: &Argv) -> CommandResult {
    let args = parse_release(argv)?;
    let name = argv.string(args.lock_key)?;
    let lock = StringKey::open_for_write(ctx, name)?;
    match rules::release(lock.current(), args.token) {
        Release::Released => {
            effects::unlink_key(ctx, &lock, name)?;
            stats::LOCK.released.incr();
            ctx.reply_integer(1);
        }
        Release::NotHeld => {
            stats::LOCK.release_refused.incr();
            ctx.reply_integer(0);
        }
    }
    Ok(())
}

/// `TK.LOCK.EXTEND <lock_key> <token> <ttl>`: 1 if the lock now expires at
/// now + ttl, 0 if not held by this token.
pub fn extend(ctx: Ctx, argv: &Argv) -> CommandResult {
    let args = parse_extend(argv)?;
    let now = ctx.now_nanos();
    let name = argv.string(args.lock_key)?;
    let lock = StringKey::open_for_write(ctx, name)?;
    match rules::extend(lock.current(), args.token, now, args.ttl_ms) {
        Extend::Extended { expire_at_ms } => {
            effects::expire_key_at(ctx, &lock, name, expire_at_ms)?;
            stats::LOCK.extended.incr();
            ctx.reply_integer(1);
        }
        Extend::NotHeld => {
            stats::LOCK.extend_refused.incr();
            ctx.reply_integer(0);
        }
    }
    Ok(())
}
