//! Writes that replicate as their effects.
//!
//! Commands whose result depends on time must not be replicated verbatim:
//! a replica or an AOF replay would recompute them at another time. Instead
//! every write goes through here as a plain Redis command with absolute
//! times (`SET key value PXAT <ms>`, `PEXPIREAT key <ms>`, `UNLINK key...`),
//! executed through `RedisModule_Call` with the `!` flag so Redis itself
//! propagates exactly that command to replicas and the AOF (wrapped in
//! MULTI/EXEC with the command's other effects). Redis only propagates a call that changed
//! something, so a no-op writes nothing downstream.
//!
//! Why not the key API: in Redis 7.0 a module can only set a *relative*
//! expiry on a key, which the server turns into an absolute one with its own
//! clock read a moment later, so the primary's and the replica's expiry could
//! differ by a millisecond. `SET ... PXAT` gives both the same absolute time.

use std::ffi::{c_char, c_int, c_longlong};

use redis_module::raw;

use crate::error::CommandError;
use crate::glue::{ArgString, Argv, Ctx};

/// Owns a call reply and frees it.
struct CallReply(*mut raw::RedisModuleCallReply);

impl CallReply {
    /// The integer in the reply, or an error for an error reply (or none).
    fn integer(&self, what: &'static str) -> Result<i64, CommandError> {
        // SAFETY: a live reply owned by self.
        unsafe {
            let (Some(reply_type), Some(integer)) = (
                raw::RedisModule_CallReplyType,
                raw::RedisModule_CallReplyInteger,
            ) else {
                return Err(CommandError::Internal(what));
            };
            if self.0.is_null() || reply_type(self.0) != raw::REDISMODULE_REPLY_INTEGER as c_int {
                return Err(CommandError::Internal(what));
            }
            Ok(integer(self.0))
        }
    }

    /// Ok unless the reply is missing or an error.
    fn ok(&self, what: &'static str) -> Result<(), CommandError> {
        // SAFETY: a live reply owned by self.
        unsafe {
            let Some(reply_type) = raw::RedisModule_CallReplyType else {
                return Err(CommandError::Internal(what));
            };
            if self.0.is_null() || reply_type(self.0) == raw::REDISMODULE_REPLY_ERROR as c_int {
                return Err(CommandError::Internal(what));
            }
            Ok(())
        }
    }
}

impl Drop for CallReply {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: returned by RedisModule_Call, freed once.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeCallReply {
                free(self.0);
            }
        }
    }
}

/// `SET <key> <value> PXAT <expire_at_ms>`, executed and replicated as is.
pub fn set_with_expiry(
    ctx: Ctx,
    key: ArgString,
    value: &[u8],
    expire_at_ms: u64,
) -> Result<(), CommandError> {
    let expire_at = c_longlong::try_from(expire_at_ms).unwrap_or(c_longlong::MAX);
    // SAFETY: format "!Esbcl" = replicate, errors as replies, then a module
    // string, a buffer with its length, a C string and a long long.
    let reply = unsafe {
        let Some(call) = raw::RedisModule_Call else {
            return Err(CommandError::Internal("RedisModule_Call unavailable"));
        };
        call(
            ctx.as_ptr(),
            c"SET".as_ptr(),
            c"!Esbcl".as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast::<c_char>(),
            value.len(),
            c"PXAT".as_ptr(),
            expire_at,
        )
    };
    CallReply(reply).ok("SET failed")
}

/// `SET <key> <value>` (no expiry: any previous one is removed), executed and
/// replicated as is.
pub fn set(ctx: Ctx, key: ArgString, value: &[u8]) -> Result<(), CommandError> {
    // SAFETY: format "!Esb" = replicate, errors as replies, then a module
    // string and a buffer with its length.
    let reply = unsafe {
        let Some(call) = raw::RedisModule_Call else {
            return Err(CommandError::Internal("RedisModule_Call unavailable"));
        };
        call(
            ctx.as_ptr(),
            c"SET".as_ptr(),
            c"!Esb".as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast::<c_char>(),
            value.len(),
        )
    };
    CallReply(reply).ok("SET failed")
}

/// `PEXPIREAT <key> <expire_at_ms>`, executed and replicated as is (Redis
/// turns a time already past into a deletion). Returns whether the key
/// existed.
pub fn expire_at(ctx: Ctx, key: ArgString, expire_at_ms: u64) -> Result<bool, CommandError> {
    let expire_at = c_longlong::try_from(expire_at_ms).unwrap_or(c_longlong::MAX);
    // SAFETY: format "!Esl" = replicate, errors as replies, then a module
    // string and a long long.
    let reply = unsafe {
        let Some(call) = raw::RedisModule_Call else {
            return Err(CommandError::Internal("RedisModule_Call unavailable"));
        };
        call(
            ctx.as_ptr(),
            c"PEXPIREAT".as_ptr(),
            c"!Esl".as_ptr(),
            key.as_ptr(),
            expire_at,
        )
    };
    Ok(CallReply(reply).integer("PEXPIREAT failed")? == 1)
}

/// `UNLINK <keys...>`, executed and replicated as is (only when a key
/// existed). Returns how many keys existed.
pub fn unlink(ctx: Ctx, argv: &Argv, first: usize, count: usize) -> Result<u64, CommandError> {
    let keys = argv.strings(first, count)?;
    if keys.is_empty() {
        return Ok(0);
    }
    // SAFETY: format "!Ev" = replicate, errors as replies, then an array of
    // module strings and its length.
    let reply = unsafe {
        let Some(call) = raw::RedisModule_Call else {
            return Err(CommandError::Internal("RedisModule_Call unavailable"));
        };
        call(
            ctx.as_ptr(),
            c"UNLINK".as_ptr(),
            c"!Ev".as_ptr(),
            keys.as_ptr(),
            keys.len(),
        )
    };
    let removed = CallReply(reply).integer("UNLINK failed")?;
    Ok(u64::try_from(removed).unwrap_or(0))
}
