//! Writes that replicate as their effects.
//!
//! Commands whose result depends on time must not be replicated verbatim:
//! a replica or an AOF replay would recompute them at another time. Instead
//! every write goes through here as a plain Redis command with absolute
//! times (`SET key value PXAT <ms>`, `PEXPIREAT key <ms>`, `UNLINK key...`),
//! executed through `RedisModule_Call` with the `!` flag (see `call.rs`) so
//! Redis itself propagates exactly that command to replicas and the AOF
//! (wrapped in MULTI/EXEC with the command's other effects). Redis only
//! propagates a call that changed something, so a no-op writes nothing
//! downstream.
//!
//! Why not the key API: in Redis 7.0 a module can only set a *relative*
//! expiry on a key, which the server turns into an absolute one with its own
//! clock read a moment later, so the primary's and the replica's expiry could
//! differ by a millisecond. `SET ... PXAT` gives both the same absolute time.

use std::ffi::{c_char, c_longlong};

use redis_module::raw;

use crate::call::{call_argv, Call, Key, Replicate, Reply};
use crate::error::CommandError;
use crate::glue::{ArgString, Argv, Ctx};

/// `SET <key> <value>`, plus `PXAT <expire_at_ms>` when given.
///
/// The value goes through the `b` format rather than [`Call`]: Redis
/// int-encodes a stored value only when it owns the object alone, and a
/// string passed with `v` stays shared with the module during the call. A
/// GCRA state or a fence counter is a number, so this keeps it at 8 bytes
/// instead of a string (measured: 125 vs 157 bytes per GCRA key).
fn set_value(
    ctx: Ctx,
    key: ArgString,
    value: &[u8],
    expire_at_ms: Option<u64>,
) -> Result<(), CommandError> {
    // SAFETY: the formats are "!Esb" (module string, buffer and length) and
    // "!Esbcl" (then a C string and a long long), matched by the arguments.
    let reply = unsafe {
        let Some(call) = raw::RedisModule_Call else {
            return Err(CommandError::Internal("RedisModule_Call unavailable"));
        };
        let value_ptr = value.as_ptr().cast::<c_char>();
        match expire_at_ms {
            Some(at) => call(
                ctx.as_ptr(),
                c"SET".as_ptr(),
                c"!Esbcl".as_ptr(),
                key.as_ptr(),
                value_ptr,
                value.len(),
                c"PXAT".as_ptr(),
                c_longlong::try_from(at).unwrap_or(c_longlong::MAX),
            ),
            None => call(
                ctx.as_ptr(),
                c"SET".as_ptr(),
                c"!Esb".as_ptr(),
                key.as_ptr(),
                value_ptr,
                value.len(),
            ),
        }
    };
    Reply::from_raw(reply)?.get().check("SET failed")?;
    Ok(())
}

/// `SET <key> <value> PXAT <expire_at_ms>`.
pub fn set_with_expiry(
    ctx: Ctx,
    key: ArgString,
    value: &[u8],
    expire_at_ms: u64,
) -> Result<(), CommandError> {
    set_value(ctx, key, value, Some(expire_at_ms))
}

/// `SET <key> <value>` (no expiry: any previous one is removed).
pub fn set(ctx: Ctx, key: ArgString, value: &[u8]) -> Result<(), CommandError> {
    set_value(ctx, key, value, None)
}

/// `PEXPIREAT <key> <expire_at_ms>` (Redis turns a time already past into a
/// deletion). Returns whether the key existed.
pub fn expire_at<'a>(
    ctx: Ctx,
    key: impl Into<Key<'a>>,
    expire_at_ms: u64,
) -> Result<bool, CommandError> {
    let reply = Call::new(c"PEXPIREAT")
        .key(key)
        .uint(expire_at_ms)
        .run(ctx, Replicate::Yes)?;
    Ok(reply.get().check("PEXPIREAT failed")?.integer() == Some(1))
}

/// `PEXPIRETIME <key>` (a read, for the writes above): `Some(ms)` for a key
/// with an expiry, `None` for a missing or persistent key.
pub fn expire_time<'a>(ctx: Ctx, key: impl Into<Key<'a>>) -> Result<Option<u64>, CommandError> {
    let reply = Call::new(c"PEXPIRETIME").key(key).run(ctx, Replicate::No)?;
    let value = reply.get().check("PEXPIRETIME failed")?.integer();
    Ok(value.and_then(|ms| u64::try_from(ms).ok()))
}

/// `UNLINK <key>`. Returns whether it existed.
pub fn delete<'a>(ctx: Ctx, key: impl Into<Key<'a>>) -> Result<bool, CommandError> {
    let reply = Call::new(c"UNLINK").key(key).run(ctx, Replicate::Yes)?;
    Ok(reply.get().check("UNLINK failed")?.integer().unwrap_or(0) > 0)
}

/// `UNLINK` of `count` keys of argv starting at `first`, as one command.
/// Returns how many existed.
pub fn unlink(ctx: Ctx, argv: &Argv, first: usize, count: usize) -> Result<u64, CommandError> {
    let keys = argv.strings(first, count)?;
    if keys.is_empty() {
        return Ok(0);
    }
    let reply = call_argv(ctx, c"UNLINK", keys, Replicate::Yes)?;
    let removed = reply.get().check("UNLINK failed")?.integer().unwrap_or(0);
    Ok(u64::try_from(removed).unwrap_or(0))
}

/// `ZREM <sorted_set> <member>`.
pub fn remove_member<'a>(
    ctx: Ctx,
    sorted_set: impl Into<Key<'a>>,
    member: &[u8],
) -> Result<(), CommandError> {
    Call::new(c"ZREM")
        .key(sorted_set)
        .bytes(member)
        .run(ctx, Replicate::Yes)?
        .get()
        .check("ZREM failed")?;
    Ok(())
}

/// `ZREMRANGEBYSCORE <sorted_set> -inf (<below>`: drops the members scored
/// strictly below `below` (index entries whose time has passed).
pub fn remove_scores_below<'a>(
    ctx: Ctx,
    sorted_set: impl Into<Key<'a>>,
    below: u64,
) -> Result<(), CommandError> {
    let mut bound = [0u8; 21];
    bound[0] = b'(';
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(below).as_bytes();
    bound[1..1 + digits.len()].copy_from_slice(digits);
    Call::new(c"ZREMRANGEBYSCORE")
        .key(sorted_set)
        .bytes(b"-inf")
        .bytes(&bound[..1 + digits.len()])
        .run(ctx, Replicate::Yes)?
        .get()
        .check("ZREMRANGEBYSCORE failed")?;
    Ok(())
}
