//! Calling Redis commands from inside a command (or a timer) with the
//! arguments as a slice, instead of one hand-written variadic call per
//! command shape.
//!
//! `Call::new(c"HSET").key(k).bytes(b"v").int(3).run(ctx, Replicate::Yes)`
//! runs `HSET` through `RedisModule_Call`. With [`Replicate::Yes`] Redis
//! propagates exactly that command to replicas and the AOF, and only when
//! it changed something (see `effects.rs` for why effects replicate this
//! way). Arguments live in a fixed-size array: no heap allocation on our
//! side for up to [`MAX_ARGS`] arguments.

use std::ffi::{c_char, c_int, c_longlong, CStr};
use std::ptr;

use redis_module::raw;

use crate::error::CommandError;
use crate::glue::{ArgString, Ctx};

/// The most arguments one call can carry.
pub const MAX_ARGS: usize = 20;

/// Whether the call's effect is propagated to replicas and the AOF.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Replicate {
    Yes,
    No,
}

/// A key for a nested call: a string from argv (passed on as is) or a name
/// read from elsewhere (an index member, a queued job).
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Arg(ArgString<'a>),
    Name(&'a [u8]),
}

impl<'a> From<ArgString<'a>> for Key<'a> {
    fn from(key: ArgString<'a>) -> Self {
        Key::Arg(key)
    }
}

impl<'a> From<&'a [u8]> for Key<'a> {
    fn from(name: &'a [u8]) -> Self {
        Key::Name(name)
    }
}

impl<'a> From<&'a Vec<u8>> for Key<'a> {
    fn from(name: &'a Vec<u8>) -> Self {
        Key::Name(name)
    }
}

#[derive(Clone, Copy)]
enum Arg<'a> {
    /// A string Redis gave us (a key or value from argv): passed as is.
    Existing(*mut raw::RedisModuleString),
    Bytes(&'a [u8]),
    Int(i64),
}

/// A command to run, with up to [`MAX_ARGS`] arguments.
pub struct Call<'a> {
    name: &'static CStr,
    args: [Arg<'a>; MAX_ARGS],
    len: usize,
}

impl<'a> Call<'a> {
    pub fn new(name: &'static CStr) -> Self {
        Call {
            name,
            args: [Arg::Int(0); MAX_ARGS],
            len: 0,
        }
    }

    fn push(mut self, arg: Arg<'a>) -> Self {
        // Callers pass a fixed, small number of arguments; an overflow is a
        // bug caught by tests, and is reported, never written out of bounds.
        if let Some(slot) = self.args.get_mut(self.len) {
            *slot = arg;
        }
        self.len += 1;
        self
    }

    pub fn key(self, key: impl Into<Key<'a>>) -> Self {
        match key.into() {
            Key::Arg(key) => self.push(Arg::Existing(key.as_ptr())),
            Key::Name(name) => self.push(Arg::Bytes(name)),
        }
    }

    pub fn string(self, string: *mut raw::RedisModuleString) -> Self {
        self.push(Arg::Existing(string))
    }

    pub fn bytes(self, bytes: &'a [u8]) -> Self {
        self.push(Arg::Bytes(bytes))
    }

    pub fn int(self, value: i64) -> Self {
        self.push(Arg::Int(value))
    }

    pub fn uint(self, value: u64) -> Self {
        self.int(i64::try_from(value).unwrap_or(i64::MAX))
    }

    /// Runs the command. An error reply (e.g. WRONGTYPE) comes back as an
    /// error reply in the returned [`Reply`], for the caller to interpret.
    pub fn run(self, ctx: Ctx, replicate: Replicate) -> Result<Reply, CommandError> {
        if self.len > MAX_ARGS {
            return Err(CommandError::Internal(
                "too many arguments for a nested call",
            ));
        }
        let mut strings: [*mut raw::RedisModuleString; MAX_ARGS] = [ptr::null_mut(); MAX_ARGS];
        let mut created = [false; MAX_ARGS];
        // SAFETY: live context; strings we create are freed below, the
        // others belong to Redis and outlive the call.
        unsafe {
            let (Some(create), Some(create_ll), Some(free)) = (
                raw::RedisModule_CreateString,
                raw::RedisModule_CreateStringFromLongLong,
                raw::RedisModule_FreeString,
            ) else {
                return Err(CommandError::Internal("RedisModule_Call unavailable"));
            };
            for (index, arg) in self.args[..self.len].iter().enumerate() {
                strings[index] = match *arg {
                    Arg::Existing(string) => string,
                    Arg::Bytes(bytes) => {
                        created[index] = true;
                        create(ctx.as_ptr(), bytes.as_ptr().cast::<c_char>(), bytes.len())
                    }
                    Arg::Int(value) => {
                        created[index] = true;
                        create_ll(ctx.as_ptr(), value as c_longlong)
                    }
                };
            }
            let reply = call_argv(ctx, self.name, &strings[..self.len], replicate);
            for (index, string) in strings[..self.len].iter().enumerate() {
                if created[index] && !string.is_null() {
                    free(ctx.as_ptr(), *string);
                }
            }
            reply
        }
    }
}

/// The one place that calls `RedisModule_Call`: `name` with `strings` as its
/// arguments (format `v`, so any number of them, e.g. every key of a
/// variadic command).
pub fn call_argv(
    ctx: Ctx,
    name: &CStr,
    strings: &[*mut raw::RedisModuleString],
    replicate: Replicate,
) -> Result<Reply, CommandError> {
    let format = match replicate {
        Replicate::Yes => c"!Ev",
        Replicate::No => c"Ev",
    };
    // SAFETY: live context; "v" takes an array of live strings and its
    // length, and only reads it (the C signature is not const).
    let reply = unsafe {
        let Some(call) = raw::RedisModule_Call else {
            return Err(CommandError::Internal("RedisModule_Call unavailable"));
        };
        call(
            ctx.as_ptr(),
            name.as_ptr(),
            format.as_ptr(),
            strings.as_ptr().cast_mut(),
            strings.len(),
        )
    };
    Reply::from_raw(reply)
}

/// An owned call reply, freed on drop.
pub struct Reply(*mut raw::RedisModuleCallReply);

impl Drop for Reply {
    fn drop(&mut self) {
        // SAFETY: returned by RedisModule_Call, freed once. Elements borrowed
        // through `ReplyRef` cannot outlive it.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeCallReply {
                free(self.0);
            }
        }
    }
}

impl Reply {
    /// Takes ownership of what `RedisModule_Call` returned (null = failure).
    pub fn from_raw(reply: *mut raw::RedisModuleCallReply) -> Result<Reply, CommandError> {
        if reply.is_null() {
            return Err(CommandError::Internal("a nested Redis call failed"));
        }
        Ok(Reply(reply))
    }

    pub fn get(&self) -> ReplyRef<'_> {
        ReplyRef {
            reply: self.0,
            _owner: std::marker::PhantomData,
        }
    }
}

/// A view of a reply or one of its elements, valid while the owning
/// [`Reply`] lives.
#[derive(Clone, Copy)]
pub struct ReplyRef<'a> {
    reply: *mut raw::RedisModuleCallReply,
    _owner: std::marker::PhantomData<&'a Reply>,
}

impl<'a> ReplyRef<'a> {
    fn kind(self) -> c_int {
        // SAFETY: a live reply.
        unsafe {
            match raw::RedisModule_CallReplyType {
                Some(kind) if !self.reply.is_null() => kind(self.reply),
                _ => raw::REDISMODULE_REPLY_UNKNOWN as c_int,
            }
        }
    }

    pub fn is_error(self) -> bool {
        self.kind() == raw::REDISMODULE_REPLY_ERROR as c_int
    }

    pub fn is_null(self) -> bool {
        self.kind() == raw::REDISMODULE_REPLY_NULL as c_int
    }

    /// The error reply's text (e.g. `WRONGTYPE ...`), if this is one.
    pub fn error_text(self) -> Option<&'a [u8]> {
        if self.is_error() {
            self.raw_bytes()
        } else {
            None
        }
    }

    /// Fails with the matching [`CommandError`] when this is an error reply:
    /// `WRONGTYPE` for a key of another type, `Internal` otherwise.
    pub fn check(self, what: &'static str) -> Result<ReplyRef<'a>, CommandError> {
        match self.error_text() {
            Some(text) if text.starts_with(b"WRONGTYPE") => Err(CommandError::WrongType),
            Some(_) => Err(CommandError::Internal(what)),
            None => Ok(self),
        }
    }

    pub fn integer(self) -> Option<i64> {
        if self.kind() != raw::REDISMODULE_REPLY_INTEGER as c_int {
            return None;
        }
        // SAFETY: an integer reply.
        unsafe { raw::RedisModule_CallReplyInteger.map(|integer| integer(self.reply)) }
    }

    fn raw_bytes(self) -> Option<&'a [u8]> {
        let mut len: usize = 0;
        // SAFETY: a live reply; the pointer stays valid while it lives.
        unsafe {
            let string_ptr = raw::RedisModule_CallReplyStringPtr?;
            let data = string_ptr(self.reply, &mut len);
            if data.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts(data.cast::<u8>(), len))
        }
    }

    /// The bytes of a string reply (`None` for nil or other types).
    pub fn bytes(self) -> Option<&'a [u8]> {
        if self.kind() != raw::REDISMODULE_REPLY_STRING as c_int {
            return None;
        }
        self.raw_bytes()
    }

    /// Number of elements of an array reply (0 for other types).
    pub fn len(self) -> usize {
        if self.kind() != raw::REDISMODULE_REPLY_ARRAY as c_int {
            return 0;
        }
        // SAFETY: an array reply.
        unsafe { raw::RedisModule_CallReplyLength.map_or(0, |length| length(self.reply)) }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Element `index` of an array reply.
    pub fn element(self, index: usize) -> Option<ReplyRef<'a>> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: index checked against the array's length.
        let element = unsafe { raw::RedisModule_CallReplyArrayElement?(self.reply, index) };
        (!element.is_null()).then_some(ReplyRef {
            reply: element,
            _owner: std::marker::PhantomData,
        })
    }
}
