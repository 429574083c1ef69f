//! The key-API writers behind `effects::apply`: each writes through an
//! open key, fires the keyspace events the plain command would, and
//! replicates that plain command with `RedisModule_Replicate`.

use std::ffi::{c_char, c_int, c_longlong, CStr};

use redis_module::raw;

use crate::effect::{Value, MAX_HASH_FIELDS};
use crate::error::CommandError;
use crate::glue::{ArgString, Ctx};
use crate::keyapi::{Opened, OwnedString, Retained};

const OK: c_int = raw::REDISMODULE_OK as c_int;

/// The field names the families write, kept as Redis strings (so a write
/// does not create them each time).
fn known_field(name: &[u8]) -> Option<Retained> {
    crate::session::FIELDS
        .find(name)
        .or_else(|| crate::cache::ENTRY_FIELDS.find(name))
        .or_else(|| crate::cache::GENERATION_FIELDS.find(name))
}

/// The length of the string in `key`, `None` when the key is empty.
fn string_len(key: &dyn Opened) -> Option<usize> {
    // SAFETY: an open key.
    unsafe {
        let (Some(key_type), Some(length)) =
            (raw::RedisModule_KeyType, raw::RedisModule_ValueLength)
        else {
            return None;
        };
        if key_type(key.raw_key()) as isize == raw::REDISMODULE_KEYTYPE_EMPTY {
            return None;
        }
        Some(length(key.raw_key()))
    }
}

fn is_empty(key: &dyn Opened) -> bool {
    // SAFETY: an open key.
    unsafe {
        raw::RedisModule_KeyType.is_none_or(|key_type| {
            key_type(key.raw_key()) as isize == raw::REDISMODULE_KEYTYPE_EMPTY
        })
    }
}

/// Stores `value` at `key` (open for writing, named `name`), with SET's meaning: the value is replaced and so is any expiry,
/// by `expire_at_ms` when given. Written through the key API and replicated
/// as `SET name value [PXAT expire_at_ms]`, so the replica's expiry is the
/// same absolute millisecond; fires the keyspace events SET would (`set`,
/// and `expire` with an expiry).
///
/// A value of the stored length is overwritten in place (no allocation: a
/// rate-limit state keeps its length from one request to the next); a new
/// key gets a string of exactly the value's size; another length replaces
/// the string with one of that size.
pub fn store_string(
    ctx: Ctx,
    key: &dyn Opened,
    name: ArgString,
    value: &[u8],
    expire_at_ms: Option<u64>,
) -> Result<(), CommandError> {
    let handle = key.raw_key();
    let current_len = string_len(key);
    // SAFETY: a key open for writing. StringTruncate on a missing key
    // creates a zeroed string of exactly `value.len()` bytes; DMA in write
    // mode then returns a buffer of the value's current length, checked to
    // be `value.len()` before copying. A created string is copied into the
    // key by StringSet and freed right after.
    unsafe {
        let (
            Some(dma),
            Some(truncate),
            Some(create),
            Some(set),
            Some(free),
            Some(set_expire),
            Some(set_abs_expire),
        ) = (
            raw::RedisModule_StringDMA,
            raw::RedisModule_StringTruncate,
            raw::RedisModule_CreateString,
            raw::RedisModule_StringSet,
            raw::RedisModule_FreeString,
            raw::RedisModule_SetExpire,
            raw::RedisModule_SetAbsExpire,
        )
        else {
            return Err(CommandError::Internal("key API unavailable"));
        };
        // A new key, or one of the same length: written in place, as a
        // plain string of exactly the value's size (for a 6-byte GCRA
        // state, 8 bytes of string on 16 of object: less than Redis's own
        // SET makes of it).
        let in_place = match current_len {
            None => value.is_empty() || truncate(handle, value.len()) == OK,
            Some(len) => len == value.len(),
        };
        let mut stored = false;
        if in_place && !value.is_empty() {
            let mut len = 0usize;
            let buffer = dma(handle, &mut len, raw::REDISMODULE_WRITE as c_int);
            if !buffer.is_null() && len == value.len() {
                std::ptr::copy_nonoverlapping(value.as_ptr(), buffer.cast::<u8>(), len);
                stored = true;
            }
        }
        if !stored {
            let string = create(ctx.as_ptr(), value.as_ptr().cast::<c_char>(), value.len());
            let status = set(handle, string);
            free(ctx.as_ptr(), string);
            if status != OK {
                return Err(CommandError::Internal("StringSet failed"));
            }
        }
        let status = match expire_at_ms {
            Some(at) => set_abs_expire(handle, c_longlong::try_from(at).unwrap_or(c_longlong::MAX)),
            None => set_expire(handle, c_longlong::from(raw::REDISMODULE_NO_EXPIRE)),
        };
        if status != OK {
            return Err(CommandError::Internal("setting the expiry failed"));
        }
    }
    notify(ctx, raw::REDISMODULE_NOTIFY_STRING, c"set", name);
    if expire_at_ms.is_some() {
        notify(ctx, raw::REDISMODULE_NOTIFY_GENERIC, c"expire", name);
    }
    replicate_set(ctx, name, value, expire_at_ms)
}

/// Fires a keyspace event, as the plain command would.
fn notify(ctx: Ctx, class: c_int, event: &CStr, name: ArgString) {
    // SAFETY: live context, static event name, live key name.
    unsafe {
        if let Some(notify) = raw::RedisModule_NotifyKeyspaceEvent {
            notify(ctx.as_ptr(), class, event.as_ptr(), name.as_ptr());
        }
    }
}

/// Propagates `SET name value [PXAT at]` to replicas and the AOF (in the
/// command's MULTI/EXEC, with its other effects).
fn replicate_set(
    ctx: Ctx,
    name: ArgString,
    value: &[u8],
    expire_at_ms: Option<u64>,
) -> Result<(), CommandError> {
    // SAFETY: formats "sb" / "sbcl" (module string, buffer and length, C
    // string, long long), matched by the arguments; Redis copies them.
    let status = unsafe {
        let Some(replicate) = raw::RedisModule_Replicate else {
            return Err(CommandError::Internal("RedisModule_Replicate unavailable"));
        };
        let value_ptr = value.as_ptr().cast::<c_char>();
        match expire_at_ms {
            Some(at) => replicate(
                ctx.as_ptr(),
                c"SET".as_ptr(),
                c"sbcl".as_ptr(),
                name.as_ptr(),
                value_ptr,
                value.len(),
                c"PXAT".as_ptr(),
                c_longlong::try_from(at).unwrap_or(c_longlong::MAX),
            ),
            None => replicate(
                ctx.as_ptr(),
                c"SET".as_ptr(),
                c"sb".as_ptr(),
                name.as_ptr(),
                value_ptr,
                value.len(),
            ),
        }
    };
    replicated(Some(status))
}

/// Moves the expiry of the open key `key` (named `name`) to `expire_at_ms`
/// through the key API, replicated as `PEXPIREAT name expire_at_ms`. A
/// missing key stays missing (as PEXPIREAT leaves it).
pub fn expire_at(
    ctx: Ctx,
    key: &dyn Opened,
    name: ArgString,
    expire_at_ms: u64,
) -> Result<(), CommandError> {
    if is_empty(key) {
        return Ok(());
    }
    let at = c_longlong::try_from(expire_at_ms).unwrap_or(c_longlong::MAX);
    // SAFETY: a key open for writing.
    let status = unsafe {
        let Some(set_abs_expire) = raw::RedisModule_SetAbsExpire else {
            return Err(CommandError::Internal("key API unavailable"));
        };
        set_abs_expire(key.raw_key(), at)
    };
    if status != OK {
        return Err(CommandError::Internal("setting the expiry failed"));
    }
    notify(ctx, raw::REDISMODULE_NOTIFY_GENERIC, c"expire", name);
    // SAFETY: format "sl" (module string, long long), matched.
    replicated(unsafe {
        raw::RedisModule_Replicate.map(|replicate| {
            replicate(
                ctx.as_ptr(),
                c"PEXPIREAT".as_ptr(),
                c"sl".as_ptr(),
                name.as_ptr(),
                at,
            )
        })
    })
}

/// Deletes the open key `key` (named `name`) through the key API,
/// replicated as `UNLINK name`.
pub fn unlink(ctx: Ctx, key: &dyn Opened, name: ArgString) -> Result<(), CommandError> {
    // UNLINK of a missing key changes nothing and is not replicated.
    if is_empty(key) {
        return Ok(());
    }
    // SAFETY: a key open for writing.
    let status = unsafe {
        let Some(unlink) = raw::RedisModule_UnlinkKey else {
            return Err(CommandError::Internal("key API unavailable"));
        };
        unlink(key.raw_key())
    };
    if status != OK {
        return Err(CommandError::Internal("UnlinkKey failed"));
    }
    notify(ctx, raw::REDISMODULE_NOTIFY_GENERIC, c"del", name);
    // SAFETY: format "s" (module string), matched.
    replicated(unsafe {
        raw::RedisModule_Replicate.map(|replicate| {
            replicate(
                ctx.as_ptr(),
                c"UNLINK".as_ptr(),
                c"s".as_ptr(),
                name.as_ptr(),
            )
        })
    })
}

fn replicated(status: Option<c_int>) -> Result<(), CommandError> {
    match status {
        Some(status) if status == OK => Ok(()),
        _ => Err(CommandError::Internal("replicating an effect failed")),
    }
}

/// Sets `fields` of the hash `key` (created if absent), then its expiry
/// when `expire_at_ms` is given (a hash's expiry is otherwise kept, as HSET
/// keeps it). Replicated as `HSET name field value ...` and `PEXPIREAT name
/// expire_at_ms`; fires `hset` (and `expire`) as those commands would.
/// Known field names ([`known_field`]) are reused, not created.
pub fn hash_set(
    ctx: Ctx,
    key: &dyn Opened,
    name: ArgString,
    fields: &[(&[u8], Value)],
    expire_at_ms: Option<u64>,
) -> Result<(), CommandError> {
    if fields.is_empty() || fields.len() > MAX_HASH_FIELDS {
        return Err(CommandError::Internal("hash_set takes 1 to 8 fields"));
    }
    // Strings created here live until the replication below.
    let mut created: [Option<OwnedString>; 2 * MAX_HASH_FIELDS] = Default::default();
    let mut argv = [std::ptr::null_mut::<raw::RedisModuleString>(); 1 + 2 * MAX_HASH_FIELDS];
    argv[0] = name.as_ptr();
    let mut digits = itoa::Buffer::new();
    for (index, (field, value)) in fields.iter().enumerate() {
        let field = match known_field(field) {
            Some(known) => known.as_ptr(),
            None => {
                let string = OwnedString::new(ctx, field)
                    .ok_or(CommandError::Internal("CreateString failed"))?;
                created[2 * index].insert(string).0
            }
        };
        let bytes = match value {
            Value::Bytes(bytes) => *bytes,
            Value::Number(number) => digits.format(*number).as_bytes(),
        };
        let value = created[2 * index + 1]
            .insert(
                OwnedString::new(ctx, bytes)
                    .ok_or(CommandError::Internal("CreateString failed"))?,
            )
            .0;
        // SAFETY: a key open for writing; a live field name and value
        // (Redis copies both), then the NULL terminator. (The count it
        // returns is of updated fields, 0 on a new hash: not an error.)
        unsafe {
            let Some(set) = raw::RedisModule_HashSet else {
                return Err(CommandError::Internal("key API unavailable"));
            };
            set(
                key.raw_key(),
                raw::REDISMODULE_HASH_NONE as c_int,
                field,
                value,
                std::ptr::null::<raw::RedisModuleString>(),
            );
        }
        argv[1 + 2 * index] = field;
        argv[2 + 2 * index] = value;
    }
    notify(ctx, raw::REDISMODULE_NOTIFY_HASH, c"hset", name);
    let argc = 1 + 2 * fields.len();
    // SAFETY: format "v" takes an array of live strings and its length.
    replicated(unsafe {
        raw::RedisModule_Replicate.map(|replicate| {
            replicate(
                ctx.as_ptr(),
                c"HSET".as_ptr(),
                c"v".as_ptr(),
                argv.as_mut_ptr(),
                argc,
            )
        })
    })?;
    match expire_at_ms {
        Some(at) => expire_at(ctx, key, name, at),
        None => Ok(()),
    }
}

/// `ZADD name score member` through the key API: replicated and notified
/// only when the member was added or its score changed (as ZADD would).
pub fn zset_add(
    ctx: Ctx,
    key: &dyn Opened,
    name: ArgString,
    score: u64,
    member: &[u8],
) -> Result<(), CommandError> {
    let member =
        OwnedString::new(ctx, member).ok_or(CommandError::Internal("CreateString failed"))?;
    let mut flags: c_int = 0;
    // SAFETY: a key open for writing, a live member string. Scores are
    // millisecond times, exact in a double.
    let status = unsafe {
        let Some(add) = raw::RedisModule_ZsetAdd else {
            return Err(CommandError::Internal("key API unavailable"));
        };
        add(key.raw_key(), score as f64, member.0, &mut flags)
    };
    if status != OK {
        return Err(CommandError::Internal("ZsetAdd failed"));
    }
    let changed = (raw::REDISMODULE_ZADD_ADDED | raw::REDISMODULE_ZADD_UPDATED) as c_int;
    if flags & changed == 0 {
        return Ok(());
    }
    notify(ctx, raw::REDISMODULE_NOTIFY_ZSET, c"zadd", name);
    // SAFETY: format "sls" (string, long long, string), matched.
    replicated(unsafe {
        raw::RedisModule_Replicate.map(|replicate| {
            replicate(
                ctx.as_ptr(),
                c"ZADD".as_ptr(),
                c"sls".as_ptr(),
                name.as_ptr(),
                c_longlong::try_from(score).unwrap_or(c_longlong::MAX),
                member.0,
            )
        })
    })
}

/// `ZREM name member` through the key API: replicated and notified only
/// when the member was there; an emptied sorted set is deleted (and `del`
/// fired), as ZREM does.
pub fn zset_remove(
    ctx: Ctx,
    key: &dyn Opened,
    name: ArgString,
    member: &[u8],
) -> Result<(), CommandError> {
    if is_empty(key) {
        return Ok(());
    }
    let member =
        OwnedString::new(ctx, member).ok_or(CommandError::Internal("CreateString failed"))?;
    let mut deleted: c_int = 0;
    // SAFETY: a key open for writing, a live member string.
    let status = unsafe {
        let Some(remove) = raw::RedisModule_ZsetRem else {
            return Err(CommandError::Internal("key API unavailable"));
        };
        remove(key.raw_key(), member.0, &mut deleted)
    };
    if status != OK {
        return Err(CommandError::Internal("ZsetRem failed"));
    }
    if deleted == 0 {
        return Ok(());
    }
    notify(ctx, raw::REDISMODULE_NOTIFY_ZSET, c"zrem", name);
    if is_empty(key) {
        notify(ctx, raw::REDISMODULE_NOTIFY_GENERIC, c"del", name);
    }
    // SAFETY: format "ss" (two strings), matched.
    replicated(unsafe {
        raw::RedisModule_Replicate.map(|replicate| {
            replicate(
                ctx.as_ptr(),
                c"ZREM".as_ptr(),
                c"ss".as_ptr(),
                name.as_ptr(),
                member.0,
            )
        })
    })
}
