//! TK.LOCK.ACQUIRE, TK.LOCK.RELEASE, TK.LOCK.EXTEND.
//!
//! Each handler: parse (`parse.rs`, on the shared parser) → read `now` once →
//! open keys → decide (`rules.rs`: the decision and its effects) → apply
//! the effects through the same open keys (`effects.rs`) → reply.
//! Refusals write nothing.

use crate::effect::Target;
use crate::effects::{self, Keys};
use crate::glue::{Argv, Ctx};
use crate::keyapi::StringKey;
use crate::registry::CommandResult;
use crate::stats;

use super::parse::{parse_acquire, parse_extend, parse_release};
use super::rules::{self, Acquire, Extend, Holder, Release};

/// `TK.LOCK.ACQUIRE <lock_key> <fence_key> <token> <ttl>`
///
/// Reply `[1, fence, ttl_ms]` when granted, `[0, 0, remaining_ms]` (-1 for a
/// holder without expiry) when another token holds the lock.
pub fn acquire(ctx: Ctx, argv: &Argv) -> CommandResult {
    let args = parse_acquire(argv)?;
    let now = ctx.now_nanos();
    let lock = StringKey::open_for_write(ctx, argv.string(args.lock_key)?)?;
    let fence_key = StringKey::open_for_write(ctx, argv.string(args.fence_key)?)?;
    let holder = lock.current().map(|token| Holder {
        token,
        expire_at_ms: lock.expire_at_ms(),
    });
    let outcome = rules::acquire(holder, fence_key.current(), args.token, now, args.ttl_ms)?;
    let writes = outcome.effects(
        Target::Arg(args.lock_key),
        Target::Arg(args.fence_key),
        args.token,
    );
    if let Some(writes) = writes {
        let open = [
            (args.lock_key, &lock as _),
            (args.fence_key, &fence_key as _),
        ];
        effects::apply(ctx, &Keys::with_open(argv, &open), &writes)?;
    }
    // Reply only after every fallible step.
    match outcome {
        Acquire::Acquired { fence, .. } => {
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
    let lock = StringKey::open_for_write(ctx, argv.string(args.lock_key)?)?;
    let outcome = rules::release(lock.current(), args.token);
    if let Some(write) = outcome.effect(Target::Arg(args.lock_key)) {
        effects::apply(
            ctx,
            &Keys::with_open(argv, &[(args.lock_key, &lock)]),
            &[write],
        )?;
    }
    match outcome {
        Release::Released => stats::LOCK.released.incr(),
        Release::NotHeld => stats::LOCK.release_refused.incr(),
    }
    ctx.reply_integer(i64::from(outcome == Release::Released));
    Ok(())
}

/// `TK.LOCK.EXTEND <lock_key> <token> <ttl>`: 1 if the lock now expires at
/// now + ttl, 0 if not held by this token.
pub fn extend(ctx: Ctx, argv: &Argv) -> CommandResult {
    let args = parse_extend(argv)?;
    let now = ctx.now_nanos();
    let lock = StringKey::open_for_write(ctx, argv.string(args.lock_key)?)?;
    let outcome = rules::extend(lock.current(), args.token, now, args.ttl_ms);
    if let Some(write) = outcome.effect(Target::Arg(args.lock_key)) {
        effects::apply(
            ctx,
            &Keys::with_open(argv, &[(args.lock_key, &lock)]),
            &[write],
        )?;
    }
    let extended = matches!(outcome, Extend::Extended { .. });
    if extended {
        stats::LOCK.extended.incr();
    } else {
        stats::LOCK.extend_refused.incr();
    }
    ctx.reply_integer(i64::from(extended));
    Ok(())
}
