//! Command registration and the per-call guard.
//!
//! Each command is described once, as data ([`CommandSpec`]): name, flags,
//! key specs and docs. Registration uses only APIs present in Redis 7.0
//! (`CreateCommand` + `SetCommandInfo`), so `COMMAND INFO`, `COMMAND DOCS`,
//! `COMMAND GETKEYS` and Cluster routing all see the real key positions,
//! including the `numkeys` form of TK.RATELIMIT.ALL.
//!
//! Where the server has module ACL categories (7.2+), every command also
//! joins the `tk` category ([`add_acl_category`]), detected at load time.
//!
//! Every call goes through [`dispatch`], which turns a handler's error into a
//! reply and catches any panic (a panic crossing into C would abort Redis):
//! the caller gets an `ERR internal error`, the log gets a warning.

use std::ffi::{c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use redis_module::raw;

use crate::args::ArgSource;
use crate::error::CommandError;
use crate::glue::{Argv, Ctx};
use crate::stats;

/// What a command handler returns: `Ok` once it has replied.
pub type CommandResult = Result<(), CommandError>;
pub type Handler = fn(Ctx, &Argv) -> CommandResult;
pub type Entry =
    extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// Wraps a handler in an `extern "C"` entry point that goes through [`dispatch`].
#[macro_export]
macro_rules! command_entry {
    // A `getkeys-api` command whose argv[1] counts the keys that follow.
    ($handler:path, numkeys) => {{
        extern "C" fn entry(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::ffi::c_int,
        ) -> std::ffi::c_int {
            // SAFETY: the arguments come straight from Redis.
            unsafe {
                if $crate::registry::answer_numkeys_positions(ctx, argv, argc) {
                    return redis_module::raw::Status::Ok as std::ffi::c_int;
                }
                $crate::registry::dispatch(ctx, argv, argc, $handler)
            }
        }
        entry as $crate::registry::Entry
    }};
    ($handler:path) => {{
        extern "C" fn entry(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::ffi::c_int,
        ) -> std::ffi::c_int {
            // SAFETY: the arguments come straight from Redis.
            unsafe { $crate::registry::dispatch(ctx, argv, argc, $handler) }
        }
        entry as $crate::registry::Entry
    }};
}

/// Answers Redis's "where are the keys" question for a `getkeys-api`
/// command whose `argv[1]` is the number of keys that follow; returns
/// `false` for a normal call.
///
/// Why: Redis 7.0 routes a cluster call by `getKeysFromCommand`, which for a
/// module command reads only the legacy first/last/step triple or this
/// callback, never a key spec (`COMMAND GETKEYS` does read the spec). A
/// keynum-only spec therefore left `TK.RATELIMIT.ALL` unrouted: no `MOVED`,
/// no `CROSSSLOT`, the module ran on whichever node got it.
///
/// A malformed count reports no keys: the command itself then replies the
/// argument error. Never panics, allocates nothing.
///
/// # Safety
/// The arguments must be those Redis passed to the command callback.
pub unsafe fn answer_numkeys_positions(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> bool {
    let (Some(is_request), Some(key_at)) = (
        raw::RedisModule_IsKeysPositionRequest,
        raw::RedisModule_KeyAtPos,
    ) else {
        return false;
    };
    if ctx.is_null() || is_request(ctx) == 0 {
        return false;
    }
    let args = Argv::from_raw(argv, argc);
    for position in numkeys_positions(&args) {
        // Positions are below argc, which is a c_int.
        key_at(ctx, position as c_int);
    }
    true
}

/// Positions of the keys of `<cmd> <numkeys> <key>...`: empty when the
/// count is not an integer in `1..=argc-2`.
fn numkeys_positions(args: &(impl ArgSource + ?Sized)) -> std::ops::Range<usize> {
    let available = args.count().saturating_sub(2);
    let count = crate::args::parse_integer(args.bytes(1))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n >= 1 && n <= available)
        .unwrap_or(0);
    2..2 + count
}

/// Replaces the default panic hook (of this module's copy of std only) with
/// one that prints the message and location to stderr, as the default does,
/// but **never a backtrace**, whatever `RUST_BACKTRACE` says. Runs at load.
///
/// Why: symbolizing a backtrace calls `realpath`, whose buffer glibc
/// allocates with whatever `malloc` the server's global scope has (the
/// jemalloc of Debian's packages), while a module loaded with
/// `RTLD_DEEPBIND` (Valkey does) frees it with glibc's own `free`: Valkey
/// 8.1 aborted with `free(): invalid pointer` on a caught panic as soon as
/// `RUST_BACKTRACE` was set. The guard in [`dispatch`] logs the message to
/// the server's log anyway.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("tk: {info}");
    }));
}

/// Runs a handler with the panic guard. Always returns OK to Redis: errors
/// are replies, not module failures.
///
/// # Safety
/// The arguments must be those Redis passed to the command callback.
pub unsafe fn dispatch(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: Handler,
) -> c_int {
    // SAFETY: Redis passes a live context and argv for the call's duration.
    let Some(context) = Ctx::from_raw(ctx) else {
        return raw::Status::Err as c_int;
    };
    let args = Argv::from_raw(argv, argc);
    match catch_unwind(AssertUnwindSafe(|| handler(context, &args))) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            stats::ERRORS.incr();
            context.reply_error(&error);
        }
        Err(payload) => {
            stats::PANICS.incr();
            stats::ERRORS.incr();
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            context.log(
                c"warning",
                &format!(
                    "tk: a command panicked and was aborted; please report this bug: {message}"
                ),
            );
            // The handler may have started a reply; Redis tolerates an extra
            // error reply far better than a dead server. Handlers reply only
            // after all fallible work, so this path sees no partial reply.
            context
                .reply_error_text("ERR internal error in the tk module (a bug: see the Redis log)");
        }
    }
    raw::Status::Ok as c_int
}

/// How a command finds its keys (one key spec).
#[derive(Clone, Copy)]
pub enum Keys {
    /// Keys from argv[1] to the last argument (`lastkey` relative to the
    /// start: 0 = just argv[1], 1 = argv[1] and argv[2], -1 = all remaining).
    Range { last: i32 },
    /// `argv[1]` is the number of keys, which follow it.
    NumKeys,
}

#[derive(Clone, Copy)]
pub struct KeySpec {
    pub keys: Keys,
    /// REDISMODULE_CMD_KEY_* flags.
    pub flags: u64,
}

pub const KEY_READ: u64 = (raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS) as u64;
pub const KEY_UPDATE: u64 = (raw::REDISMODULE_CMD_KEY_RW
    | raw::REDISMODULE_CMD_KEY_ACCESS
    | raw::REDISMODULE_CMD_KEY_UPDATE) as u64;
pub const KEY_DELETE: u64 = (raw::REDISMODULE_CMD_KEY_RM | raw::REDISMODULE_CMD_KEY_DELETE) as u64;
/// Reads the value and may delete the key (like `GETDEL`).
pub const KEY_READ_DELETE: u64 = (raw::REDISMODULE_CMD_KEY_RW
    | raw::REDISMODULE_CMD_KEY_ACCESS
    | raw::REDISMODULE_CMD_KEY_DELETE) as u64;

/// One argument in `COMMAND DOCS`.
#[derive(Clone, Copy)]
pub struct ArgDoc {
    pub name: &'static CStr,
    pub kind: ArgKind,
    pub token: Option<&'static CStr>,
    pub optional: bool,
    pub multiple: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    Key,
    Integer,
    String,
}

impl ArgDoc {
    pub const fn key(name: &'static CStr, multiple: bool) -> ArgDoc {
        ArgDoc {
            name,
            kind: ArgKind::Key,
            token: None,
            optional: false,
            multiple,
        }
    }
    pub const fn required(name: &'static CStr, kind: ArgKind) -> ArgDoc {
        ArgDoc {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
        }
    }
    pub const fn option(name: &'static CStr, token: &'static CStr, kind: ArgKind) -> ArgDoc {
        ArgDoc {
            name,
            kind,
            token: Some(token),
            optional: true,
            multiple: false,
        }
    }
    pub const fn repeated(name: &'static CStr, kind: ArgKind) -> ArgDoc {
        ArgDoc {
            name,
            kind,
            token: None,
            optional: false,
            multiple: true,
        }
    }
}

/// Everything Redis is told about one command.
#[derive(Clone, Copy)]
pub struct CommandSpec {
    pub name: &'static CStr,
    pub entry: Entry,
    pub flags: &'static CStr,
    pub arity: i32,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub since: &'static CStr,
    /// None for a command without keys.
    pub key_spec: Option<KeySpec>,
    pub args: &'static [ArgDoc],
}

impl CommandSpec {
    /// A command without keys or docs yet: add them with [`Self::keys`]
    /// and [`Self::docs`]. `arity` is Redis's (negative: at least).
    pub const fn new(name: &'static CStr, entry: Entry, flags: &'static CStr, arity: i32) -> Self {
        CommandSpec {
            name,
            entry,
            flags,
            arity,
            summary: c"",
            complexity: c"",
            since: c"0.1.0",
            key_spec: None,
            args: &[],
        }
    }

    /// Its keys (one key spec: the legacy key positions are derived from it).
    pub const fn keys(mut self, keys: Keys, flags: u64) -> Self {
        self.key_spec = Some(KeySpec { keys, flags });
        self
    }

    /// What `COMMAND DOCS` shows.
    pub const fn docs(
        mut self,
        summary: &'static CStr,
        complexity: &'static CStr,
        args: &'static [ArgDoc],
    ) -> Self {
        self.summary = summary;
        self.complexity = complexity;
        self.args = args;
        self
    }

    /// The legacy first/last/step key positions, from the key spec: (0, 0,
    /// 0) for movable keys (NumKeys, found through getkeys-api) or none.
    pub fn legacy_key_range(&self) -> (i32, i32, i32) {
        match self.key_spec.map(|spec| spec.keys) {
            Some(Keys::Range { last }) if last < 0 => (1, last, 1),
            Some(Keys::Range { last }) => (1, 1 + last, 1),
            Some(Keys::NumKeys) | None => (0, 0, 0),
        }
    }
}

static COMMAND_INFO_VERSION: raw::RedisModuleCommandInfoVersion =
    raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };

fn raw_key_specs(spec: Option<&KeySpec>) -> [raw::RedisModuleCommandKeySpec; 2] {
    // SAFETY: the C struct is plain data for which all-zero is the valid
    // "absent" value (it also terminates the array).
    let mut specs: [raw::RedisModuleCommandKeySpec; 2] = unsafe { std::mem::zeroed() };
    let Some(spec) = spec else {
        return specs;
    };
    let first = &mut specs[0];
    first.flags = spec.flags;
    first.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    first.bs.index.pos = 1;
    match spec.keys {
        Keys::Range { last } => {
            first.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
            first.fk.range.lastkey = last;
            first.fk.range.keystep = 1;
            first.fk.range.limit = 0;
        }
        Keys::NumKeys => {
            first.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_KEYNUM;
            first.fk.keynum.keynumidx = 0;
            first.fk.keynum.firstkey = 1;
            first.fk.keynum.keystep = 1;
        }
    }
    specs
}

fn raw_args(docs: &[ArgDoc]) -> Vec<raw::RedisModuleCommandArg> {
    let mut args: Vec<raw::RedisModuleCommandArg> = docs
        .iter()
        .map(|doc| {
            // SAFETY: plain C data; zero is "absent" for every field.
            let mut arg: raw::RedisModuleCommandArg = unsafe { std::mem::zeroed() };
            arg.name = doc.name.as_ptr();
            arg.type_ = match doc.kind {
                ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                ArgKind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
            };
            arg.key_spec_index = if doc.kind == ArgKind::Key { 0 } else { -1 };
            arg.token = doc.token.map_or(ptr::null(), CStr::as_ptr);
            let mut flags = 0;
            if doc.optional {
                flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
            }
            if doc.multiple {
                flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
            }
            arg.flags = flags as c_int;
            arg
        })
        .collect();
    // SAFETY: the zeroed terminator.
    args.push(unsafe { std::mem::zeroed() });
    args
}

/// The ACL category every command joins where the server has module ACL
/// categories (Redis 7.2+, Valkey): `ACL SETUSER app +@tk` grants them all.
pub const ACL_CATEGORY: &CStr = c"tk";

/// Adds [`ACL_CATEGORY`] to the server's categories when it can (Redis
/// 7.2+ and Valkey have `RedisModule_AddACLCategory`); returns whether the
/// commands should join it. Runs at load time only, before [`register`].
///
/// Never fails the load: on Redis 7.0, or when the name is taken (another
/// module added a `tk` category), the commands are in no category at all
/// (only `+@all` or their names grant them) and the log says so.
pub fn add_acl_category(context: &redis_module::Context) -> bool {
    // SAFETY: load-time context, NUL-terminated static name.
    let added = unsafe {
        match raw::RedisModule_AddACLCategory {
            Some(add) => add(context.ctx, ACL_CATEGORY.as_ptr()) == raw::Status::Ok as c_int,
            None => {
                context.log_notice(
                    "tk: this server has no module ACL categories (they came with Redis 7.2): \
                     there is no @tk; grant the commands by name (+tk.ratelimit ...) or +@all",
                );
                return false;
            }
        }
    };
    if !added {
        context.log_warning(
            "tk: could not add the ACL category `tk` (is the name taken?); the commands \
             are in no ACL category: grant them by name (+tk.ratelimit ...) or +@all",
        );
    }
    added
}

/// The ACL categories of a command with `flags`: [`ACL_CATEGORY`], plus
/// the built-in ones Redis gives its own commands with such flags (a module
/// command gets none by itself), so that `+@write` or `-@slow` covers the
/// module's commands too.
pub fn acl_categories(flags: &CStr) -> std::ffi::CString {
    let flags = flags.to_string_lossy();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    let mut categories = vec![ACL_CATEGORY.to_string_lossy().into_owned()];
    if has("write") {
        categories.push("write".into());
    }
    if has("readonly") {
        categories.push("read".into());
    }
    categories.push(if has("fast") { "fast" } else { "slow" }.into());
    std::ffi::CString::new(categories.join(" ")).expect("no NUL in category names")
}

/// Registers one command with Redis (joining [`ACL_CATEGORY`] when
/// `acl_category`, see [`add_acl_category`]). Runs at load time only.
pub fn register(
    context: &redis_module::Context,
    spec: &CommandSpec,
    acl_category: bool,
) -> Result<(), String> {
    let ctx = context.ctx;
    let name = spec.name.to_string_lossy();
    // SAFETY: load-time context; strings are NUL-terminated statics, and Redis
    // copies the command info it is given.
    unsafe {
        let (Some(create), Some(get_command)) =
            (raw::RedisModule_CreateCommand, raw::RedisModule_GetCommand)
        else {
            return Err("command API unavailable".into());
        };
        let (first_key, last_key, key_step) = spec.legacy_key_range();
        if create(
            ctx,
            spec.name.as_ptr(),
            Some(spec.entry),
            spec.flags.as_ptr(),
            first_key,
            last_key,
            key_step,
        ) != raw::Status::Ok as c_int
        {
            return Err(format!("could not create command {name}"));
        }
        let command = get_command(ctx, spec.name.as_ptr());
        if command.is_null() {
            return Err(format!("could not find command {name} after creating it"));
        }
        if acl_category {
            if let Some(set_categories) = raw::RedisModule_SetCommandACLCategories {
                let categories = acl_categories(spec.flags);
                if set_categories(command, categories.as_ptr()) != raw::Status::Ok as c_int {
                    return Err(format!(
                        "could not put command {name} in ACL categories {categories:?}"
                    ));
                }
            }
        }
        // SetCommandInfo appeared in Redis 7.0; without it the legacy key
        // positions still route every command except ALL's movable keys.
        let Some(set_info) = raw::RedisModule_SetCommandInfo else {
            context.log_warning("tk: this Redis has no RedisModule_SetCommandInfo; key specs and docs are not registered");
            return Ok(());
        };
        let mut key_specs = raw_key_specs(spec.key_spec.as_ref());
        let mut args = raw_args(spec.args);
        let info = raw::RedisModuleCommandInfo {
            version: &COMMAND_INFO_VERSION,
            summary: spec.summary.as_ptr(),
            complexity: spec.complexity.as_ptr(),
            since: spec.since.as_ptr(),
            history: ptr::null_mut(),
            tips: ptr::null(),
            arity: spec.arity,
            key_specs: key_specs.as_mut_ptr(),
            args: args.as_mut_ptr(),
        };
        if set_info(command, &info) != raw::Status::Ok as c_int {
            return Err(format!("could not set the command info of {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{acl_categories, numkeys_positions};

    #[test]
    fn acl_categories_follow_the_flags() {
        assert_eq!(
            acl_categories(c"write deny-oom fast").to_str(),
            Ok("tk write fast")
        );
        assert_eq!(acl_categories(c"readonly").to_str(), Ok("tk read slow"));
        assert_eq!(
            acl_categories(c"write deny-oom").to_str(),
            Ok("tk write slow")
        );
    }

    #[test]
    fn numkeys_positions_cover_exactly_the_counted_keys() {
        let all: [&[u8]; 8] = [
            b"TK.RATELIMIT.ALL",
            b"2",
            b"a",
            b"b",
            b"5",
            b"1m",
            b"5",
            b"1h",
        ];
        assert_eq!(numkeys_positions(&all[..]), 2..4);
        let one: [&[u8]; 5] = [b"TK.RATELIMIT.ALL", b"1", b"a", b"5", b"1m"];
        assert_eq!(numkeys_positions(&one[..]), 2..3);
        // Malformed counts report no keys; the command replies the error.
        for count in [&b"0"[..], b"-1", b"x", b"", b"99", b"3"] {
            let args: [&[u8]; 4] = [b"TK.RATELIMIT.ALL", count, b"a", b"b"];
            assert_eq!(numkeys_positions(&args[..]), 2..2, "{count:?}");
        }
        let short: [&[u8]; 1] = [b"TK.RATELIMIT.ALL"];
        assert_eq!(numkeys_positions(&short[..]), 2..2);
    }
}
