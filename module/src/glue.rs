//! The thin, unsafe edge between Redis's C API and the commands.
//!
//! Everything that touches a raw pointer lives here, in `keyapi.rs` (open
//! keys) and in `effects.rs` (writes), behind small safe types: [`Ctx`] for
//! the call's context, [`Argv`] for its arguments (zero-copy), the reply
//! helpers, and [`Caller`] for ACL checks. Commands never see a raw pointer.

use std::ffi::{c_int, c_long, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

use redis_module::raw;

use crate::args::ArgSource;
use crate::error::CommandError;
use crate::keyapi::{OpenKey, OwnedString};

/// The context of one command call.
#[derive(Clone, Copy)]
pub struct Ctx(NonNull<raw::RedisModuleCtx>);

impl Ctx {
    /// # Safety
    /// `ctx` must be the live context Redis passed to the current callback.
    pub unsafe fn from_raw(ctx: *mut raw::RedisModuleCtx) -> Option<Ctx> {
        NonNull::new(ctx).map(Ctx)
    }

    pub fn as_ptr(self) -> *mut raw::RedisModuleCtx {
        self.0.as_ptr()
    }

    /// Redis's time for this command, in nanoseconds since the Unix epoch,
    /// read once per call by the caller.
    ///
    /// Redis 7.2+ offers a per-command cached clock in microseconds; Redis 7.0
    /// only has the millisecond wall clock. Either way the value is taken once
    /// and used for the whole call, and effects are replicated with absolute
    /// times, so replicas never consult their own clock.
    pub fn now_nanos(self) -> u64 {
        // SAFETY: function pointers filled in by RedisModule_Init; absent ones are None.
        unsafe {
            if let Some(cached_micros) = raw::RedisModule_CachedMicroseconds {
                return u64::try_from(cached_micros())
                    .unwrap_or(0)
                    .saturating_mul(1_000);
            }
            match raw::RedisModule_Milliseconds {
                Some(millis) => u64::try_from(millis())
                    .unwrap_or(0)
                    .saturating_mul(1_000_000),
                None => 0,
            }
        }
    }

    pub fn reply_integer(self, value: i64) {
        // SAFETY: live context; API present since Redis 4.
        unsafe {
            if let Some(reply) = raw::RedisModule_ReplyWithLongLong {
                reply(self.as_ptr(), value);
            }
        }
    }

    pub fn reply_u64(self, value: u64) {
        self.reply_integer(i64::try_from(value).unwrap_or(i64::MAX));
    }

    pub fn reply_array(self, len: usize) {
        // SAFETY: live context; the caller follows with exactly `len` replies.
        unsafe {
            if let Some(reply) = raw::RedisModule_ReplyWithArray {
                reply(self.as_ptr(), len as c_long);
            }
        }
    }

    /// Replies with an error. The message must start with the error code
    /// (`ERR`, `WRONGTYPE`, ...).
    pub fn reply_error(self, error: &CommandError) {
        self.reply_error_text(&error.to_string());
    }

    pub fn reply_error_text(self, message: &str) {
        let message = CString::new(message.replace('\0', "?")).unwrap_or_default();
        // SAFETY: live context and a NUL-terminated message.
        unsafe {
            if let Some(reply) = raw::RedisModule_ReplyWithError {
                reply(self.as_ptr(), message.as_ptr());
            }
        }
    }

    /// Writes a line to the Redis log at `level` ("warning", "notice", ...).
    pub fn log(self, level: &CStr, message: &str) {
        let message = CString::new(message.replace('\0', "?")).unwrap_or_default();
        // SAFETY: live context; format "%s" with one NUL-terminated argument.
        unsafe {
            if let Some(log) = raw::RedisModule_Log {
                log(
                    self.as_ptr(),
                    level.as_ptr(),
                    c"%s".as_ptr(),
                    message.as_ptr(),
                );
            }
        }
    }
}

/// A string argument of the current call (a key name, a value), valid for
/// the call's duration.
#[derive(Clone, Copy)]
pub struct ArgString<'a> {
    string: NonNull<raw::RedisModuleString>,
    _call: PhantomData<&'a ()>,
}

impl<'a> ArgString<'a> {
    /// A live string, valid for `'a`.
    pub(crate) fn from_ptr(string: NonNull<raw::RedisModuleString>) -> ArgString<'a> {
        ArgString {
            string,
            _call: PhantomData,
        }
    }

    pub fn as_ptr(self) -> *mut raw::RedisModuleString {
        self.string.as_ptr()
    }

    /// The argument's bytes, borrowed for the call.
    pub fn bytes(self) -> &'a [u8] {
        string_bytes(self.string.as_ptr())
    }
}

/// A command's `argv`, read without copying.
pub struct Argv<'a> {
    strings: &'a [*mut raw::RedisModuleString],
}

impl<'a> Argv<'a> {
    /// # Safety
    /// `argv` must point to `argc` live strings for the duration of the call.
    pub unsafe fn from_raw(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Argv<'a> {
        let count = usize::try_from(argc).unwrap_or(0);
        let strings = if argv.is_null() || count == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(argv, count)
        };
        Argv { strings }
    }

    /// The argument at `index`, for handing a key or value back to Redis.
    /// `None` only if out of range, which parsing has already excluded.
    pub fn string(&self, index: usize) -> Result<ArgString<'a>, CommandError> {
        self.strings
            .get(index)
            .and_then(|&string| NonNull::new(string))
            .map(|string| ArgString {
                string,
                _call: PhantomData,
            })
            .ok_or(CommandError::Internal("argument index out of range"))
    }

    /// `count` arguments starting at `index`, as Redis's own array.
    pub fn strings(
        &self,
        index: usize,
        count: usize,
    ) -> Result<&'a [*mut raw::RedisModuleString], CommandError> {
        self.strings
            .get(index..index.saturating_add(count))
            .ok_or(CommandError::Internal("argument range out of range"))
    }
}

impl ArgSource for Argv<'_> {
    fn count(&self) -> usize {
        self.strings.len()
    }

    fn bytes(&self, index: usize) -> &[u8] {
        self.strings
            .get(index)
            .map_or(&[][..], |&string| string_bytes(string))
    }
}

/// The bytes of one of argv's strings, borrowed.
pub(crate) fn string_bytes<'a>(string: *mut raw::RedisModuleString) -> &'a [u8] {
    if string.is_null() {
        return &[];
    }
    let mut len: usize = 0;
    // SAFETY: a live string from argv; Redis returns a pointer valid while it lives.
    unsafe {
        let Some(ptr_len) = raw::RedisModule_StringPtrLen else {
            return &[];
        };
        let data = ptr_len(string, &mut len);
        if data.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(data.cast::<u8>(), len)
    }
}

/// What a key holds, as far as the commands care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Absent,
    String,
    Hash,
    SortedSet,
    Other,
}

/// What [`Ctx::expect_kind_expiring`] found.
#[derive(Clone, Copy, Debug)]
pub struct Existing {
    pub exists: bool,
    /// Its absolute expiry (Unix ms); `None` when absent or persistent.
    pub expire_at_ms: Option<u64>,
}

impl Ctx {
    /// The type of `name` (opened for reading and closed again).
    pub fn key_kind(self, name: ArgString) -> Result<KeyKind, CommandError> {
        Ok(OpenKey::open(self, name, false)?.map_or(KeyKind::Absent, |key| key.kind()))
    }

    /// Errors with WRONGTYPE unless `name` is absent or of `expected` kind.
    /// Returns whether it exists.
    pub fn expect_kind(self, name: ArgString, expected: KeyKind) -> Result<bool, CommandError> {
        Ok(self.open_expecting(name, expected)?.is_some())
    }

    /// [`Ctx::expect_kind`], also reading the key's absolute expiry through
    /// the same handle (for the commands that keep a bookkeeping key alive).
    pub fn expect_kind_expiring(
        self,
        name: ArgString,
        expected: KeyKind,
    ) -> Result<Existing, CommandError> {
        let key = self.open_expecting(name, expected)?;
        Ok(Existing {
            exists: key.is_some(),
            expire_at_ms: key.and_then(|key| key.expire_at_ms()),
        })
    }

    /// `name` opened for reading when it exists and is of `expected` kind;
    /// `None` when absent; WRONGTYPE otherwise.
    fn open_expecting(
        self,
        name: ArgString,
        expected: KeyKind,
    ) -> Result<Option<OpenKey>, CommandError> {
        let Some(key) = OpenKey::open(self, name, false)? else {
            return Ok(None);
        };
        match key.kind() {
            KeyKind::Absent => Ok(None),
            kind if kind == expected => Ok(Some(key)),
            _ => Err(CommandError::WrongType),
        }
    }

    /// Redis's context flags (master, replica, loading, ...).
    pub fn flags(self) -> u32 {
        // SAFETY: live context.
        unsafe { raw::RedisModule_GetContextFlags.map_or(0, |flags| flags(self.as_ptr()) as u32) }
    }

    /// Whether this server is a primary that is not loading data: the only
    /// place where background work may write (its effects replicate).
    pub fn is_writable_primary(self) -> bool {
        let flags = self.flags();
        flags & raw::REDISMODULE_CTX_FLAGS_MASTER != 0
            && flags & raw::REDISMODULE_CTX_FLAGS_LOADING == 0
    }

    /// The database the call runs in.
    pub fn selected_db(self) -> i32 {
        // SAFETY: live context.
        unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |get| get(self.as_ptr())) }
    }

    /// Switches the context to database `db`.
    pub fn select_db(self, db: i32) {
        // SAFETY: live context.
        unsafe {
            if let Some(select) = raw::RedisModule_SelectDb {
                select(self.as_ptr(), db);
            }
        }
    }

    /// Replies with a bulk string.
    pub fn reply_bytes(self, bytes: &[u8]) {
        // SAFETY: live context; Redis copies the buffer.
        unsafe {
            if let Some(reply) = raw::RedisModule_ReplyWithStringBuffer {
                reply(self.as_ptr(), bytes.as_ptr().cast(), bytes.len());
            }
        }
    }
}

/// What a command does to a key it reads from inside an index (a key that
/// is not an argument, so Redis did not check the caller's ACL for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadAndDelete,
}

/// The ACL user a command (or the background job it queued) acts for.
///
/// Redis checks ACL key patterns only on a command's declared keys; keys
/// named inside an index are checked here, one by one, against the same
/// user. No user (a call Redis itself runs without a client user, which
/// ACLs do not restrict) means unrestricted.
pub struct Caller(Option<NonNull<raw::RedisModuleUser>>);

impl Caller {
    /// The user of the client running the current command.
    pub fn current(ctx: Ctx) -> Result<Caller, CommandError> {
        match current_user_name(ctx) {
            None => Ok(Caller(None)),
            Some(name) => Caller::named(ctx, &name).ok_or(CommandError::Internal(
                "the calling ACL user does not exist",
            )),
        }
    }

    /// The ACL user called `name`; `None` if there is no such user (any
    /// more). An empty name is the unrestricted caller.
    pub fn named(ctx: Ctx, name: &[u8]) -> Option<Caller> {
        if name.is_empty() {
            return Some(Caller(None));
        }
        let string = OwnedString::new(ctx, name)?;
        // SAFETY: a live string; the user handle is freed on drop.
        let user = unsafe { raw::RedisModule_GetModuleUserFromUserName?(string.0) };
        NonNull::new(user).map(|user| Caller(Some(user)))
    }

    /// Whether the user may do `access` to `key` with plain commands.
    pub fn may(&self, ctx: Ctx, key: &[u8], access: Access) -> bool {
        let Some(user) = self.0 else {
            return true;
        };
        let flags = match access {
            Access::Read => raw::REDISMODULE_CMD_KEY_ACCESS,
            Access::ReadAndDelete => {
                raw::REDISMODULE_CMD_KEY_ACCESS | raw::REDISMODULE_CMD_KEY_DELETE
            }
        };
        let Some(string) = OwnedString::new(ctx, key) else {
            return false;
        };
        // SAFETY: a live user and string. Without the API, nothing is allowed.
        unsafe {
            raw::RedisModule_ACLCheckKeyPermissions.is_some_and(|check| {
                check(user.as_ptr(), string.0, flags as c_int) == raw::REDISMODULE_OK as c_int
            })
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        if let Some(user) = self.0 {
            // SAFETY: from GetModuleUserFromUserName, freed once; this frees
            // only the handle, never the ACL user itself.
            unsafe {
                if let Some(free) = raw::RedisModule_FreeModuleUser {
                    free(user.as_ptr());
                }
            }
        }
    }
}

/// The name of the current command's ACL user; `None` when no user runs it.
pub fn current_user_name(ctx: Ctx) -> Option<Vec<u8>> {
    // SAFETY: live context; the returned string is ours to free.
    let name = unsafe { raw::RedisModule_GetCurrentUserName?(ctx.as_ptr()) };
    let name = NonNull::new(name)?;
    let owned = OwnedString::from_raw(ctx, name.as_ptr())?;
    Some(owned.bytes().to_vec())
}
