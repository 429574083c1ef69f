//! The module's entry point: command table, load-time registration and the
//! `INFO tk` section.

use std::ffi::{c_int, CStr};

use redis_module::{raw, Context, RedisString, Status};

use crate::cache::command as cache;
use crate::cache::reclaim;
use crate::command_entry;
use crate::glue::{Argv, Ctx};
use crate::lock::command as lock;
use crate::ratelimit::{command as ratelimit, Algorithm};
use crate::registry::{
    self, ArgDoc, ArgKind, CommandResult, CommandSpec, KeySpec, Keys, KEY_DELETE, KEY_READ,
    KEY_READ_DELETE, KEY_UPDATE,
};
use crate::session::command as session;
use crate::stats;

const LIMIT_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"key", false),
    ArgDoc::required(c"limit", ArgKind::Integer),
    ArgDoc::required(c"period", ArgKind::String),
    ArgDoc::option(c"burst", c"BURST", ArgKind::Integer),
    ArgDoc::option(c"cost", c"COST", ArgKind::Integer),
    ArgDoc::option(c"algorithm", c"ALGO", ArgKind::String),
];

const ALL_ARGS: &[ArgDoc] = &[
    ArgDoc::required(c"numkeys", ArgKind::Integer),
    ArgDoc::key(c"key", true),
    ArgDoc::repeated(c"limit period [BURST n] [COST n] [ALGO a]", ArgKind::String),
];

const RESET_ARGS: &[ArgDoc] = &[ArgDoc::key(c"key", true)];

const LOCK_ACQUIRE_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"lock_key", false),
    ArgDoc::key(c"fence_key", false),
    ArgDoc::required(c"token", ArgKind::String),
    ArgDoc::required(c"ttl", ArgKind::String),
];

const LOCK_RELEASE_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"lock_key", false),
    ArgDoc::required(c"token", ArgKind::String),
];

const LOCK_EXTEND_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"lock_key", false),
    ArgDoc::required(c"token", ArgKind::String),
    ArgDoc::required(c"ttl", ArgKind::String),
];

/// Every command the module adds. The docs here are what `COMMAND DOCS`
/// shows; docs/COMMANDS.md has the long form.
const CACHE_GET_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"entry_key", false),
    ArgDoc::key(c"generations_key", false),
    ArgDoc::required(c"namespace", ArgKind::String),
];

const CACHE_SET_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"entry_key", false),
    ArgDoc::key(c"generations_key", false),
    ArgDoc::key(c"index_key", false),
    ArgDoc::required(c"namespace", ArgKind::String),
    ArgDoc::required(c"ttl", ArgKind::String),
    ArgDoc::required(c"value", ArgKind::String),
    ArgDoc::option(c"token", c"IFGEN", ArgKind::String),
];

const CACHE_INVALIDATE_USER_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"generations_key", false),
    ArgDoc::key(c"index_key", false),
];

const CACHE_INVALIDATE_NAMESPACE_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"generations_key", false),
    ArgDoc::key(c"index_key", false),
    ArgDoc::required(c"namespace", ArgKind::String),
];

const SESSION_CREATE_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"session_key", false),
    ArgDoc::key(c"index_key", false),
    ArgDoc::required(c"user", ArgKind::String),
    ArgDoc::required(c"idle_ttl", ArgKind::String),
    ArgDoc::required(c"data", ArgKind::String),
    ArgDoc::option(c"lifetime", c"MAXLIFETIME", ArgKind::String),
    ArgDoc::option(c"count EVICT|REJECT", c"MAXSESSIONS", ArgKind::String),
];
const SESSION_TOUCH_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"session_key", false),
    ArgDoc::option(c"idle_ttl", c"IDLE", ArgKind::String),
    ArgDoc::option(c"gap", c"MINGAP", ArgKind::String),
];
const SESSION_KEY_ARGS: &[ArgDoc] = &[ArgDoc::key(c"session_key", false)];
const SESSION_SET_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"session_key", false),
    ArgDoc::required(c"data", ArgKind::String),
    ArgDoc::option(c"version", c"IFVERSION", ArgKind::Integer),
];
const SESSION_DESTROY_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"session_key", false),
    ArgDoc::key(c"index_key", false),
];
const SESSION_ROTATE_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"old_session_key", false),
    ArgDoc::key(c"new_session_key", false),
    ArgDoc::key(c"index_key", false),
];
const SESSION_INDEX_ARGS: &[ArgDoc] = &[ArgDoc::key(c"index_key", false)];
const SESSION_REVOKEALL_ARGS: &[ArgDoc] = &[
    ArgDoc::key(c"index_key", false),
    ArgDoc::option(c"session_key", c"EXCEPT", ArgKind::String),
];

/// One TK.SESSION command's table entry.
#[allow(clippy::too_many_arguments)]
const fn session_command(
    name: &'static CStr,
    entry: registry::Entry,
    flags: &'static CStr,
    last_key: i32,
    arity: i32,
    summary: &'static CStr,
    complexity: &'static CStr,
    key_flags: u64,
    args: &'static [ArgDoc],
) -> CommandSpec {
    CommandSpec {
        name,
        entry,
        flags,
        first_key: 1,
        last_key: 1 + last_key,
        key_step: 1,
        arity,
        summary,
        complexity,
        since: c"0.1.0",
        key_spec: Some(KeySpec {
            keys: Keys::Range { last: last_key },
            flags: key_flags,
        }),
        args,
    }
}

fn session_commands() -> [CommandSpec; 8] {
    [
        session_command(c"TK.SESSION.CREATE", command_entry!(session::create), c"write deny-oom", 1, -6,
            c"Creates a session and adds it to the user's index, pruning dead entries and enforcing MAXSESSIONS atomically.",
            c"O(N), N = the user's possibly-live sessions", KEY_UPDATE, SESSION_CREATE_ARGS),
        session_command(c"TK.SESSION.TOUCH", command_entry!(session::touch), c"write deny-oom fast", 0, -2,
            c"Records activity (last_active = now, expiry = min(now + idle, max lifetime)) and returns the session.",
            c"O(1)", KEY_UPDATE, SESSION_TOUCH_ARGS),
        session_command(c"TK.SESSION.GET", command_entry!(session::get), c"readonly fast", 0, 2,
            c"Returns the session, without side effects.", c"O(1)", KEY_READ, SESSION_KEY_ARGS),
        session_command(c"TK.SESSION.SET", command_entry!(session::set), c"write deny-oom fast", 0, -3,
            c"Replaces the session's data keeping its expiry and increments its version; IFVERSION refuses a stale update.",
            c"O(1)", KEY_UPDATE, SESSION_SET_ARGS),
        session_command(c"TK.SESSION.DESTROY", command_entry!(session::destroy), c"write fast", 1, 3,
            c"Deletes a session and its index entry.", c"O(log N)", KEY_READ_DELETE, SESSION_DESTROY_ARGS),
        session_command(c"TK.SESSION.ROTATE", command_entry!(session::rotate), c"write fast", 2, 4,
            c"Moves a session to a new key (a new token at login), keeping its data and expiry.",
            c"O(log N)", KEY_UPDATE, SESSION_ROTATE_ARGS),
        session_command(c"TK.SESSION.LIST", command_entry!(session::list), c"readonly", 0, 2,
            c"Lists the user's live sessions (key, created, last_active, expires_at), most recent first.",
            c"O(N), N = the user's possibly-live sessions", KEY_READ, SESSION_INDEX_ARGS),
        session_command(c"TK.SESSION.REVOKEALL", command_entry!(session::revoke_all), c"write", 0, -2,
            c"Deletes all of the user's sessions, except optionally one; returns how many were deleted.",
            c"O(N), N = the user's possibly-live sessions", KEY_READ_DELETE, SESSION_REVOKEALL_ARGS),
    ]
}

pub fn commands() -> [CommandSpec; 11] {
    [
        CommandSpec {
            name: c"TK.RATELIMIT",
            entry: command_entry!(ratelimit::ratelimit),
            // Not `fast`: SLIDING is O(N) in the requests of one window.
            flags: c"write deny-oom",
            first_key: 1,
            last_key: 1,
            key_step: 1,
            arity: -4,
            summary: c"Admits or refuses a request against a rate limit (GCRA, sliding log or fixed window) and consumes its cost atomically.",
            complexity: c"O(1) for GCRA and FIXED; O(N) for SLIDING, N = requests in the window.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 0 },
                flags: KEY_UPDATE,
            }),
            args: LIMIT_ARGS,
        },
        CommandSpec {
            name: c"TK.RATELIMIT.PEEK",
            entry: command_entry!(ratelimit::peek),
            flags: c"readonly",
            first_key: 1,
            last_key: 1,
            key_step: 1,
            arity: -4,
            summary: c"Computes the reply TK.RATELIMIT would give, without consuming or writing anything.",
            complexity: c"O(1) for GCRA and FIXED; O(N) for SLIDING, N = requests in the window.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 0 },
                flags: KEY_READ,
            }),
            args: LIMIT_ARGS,
        },
        CommandSpec {
            name: c"TK.RATELIMIT.ALL",
            entry: command_entry!(ratelimit::all, numkeys),
            // getkeys-api: Redis 7.0's cluster routing reads no keynum spec.
            flags: c"write deny-oom getkeys-api",
            first_key: 0,
            last_key: 0,
            key_step: 0,
            arity: -5,
            summary: c"Checks several rate limits at once and consumes from all of them only if every one allows.",
            complexity: c"O(K) for K limits (up to 16), plus O(N) per SLIDING limit.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::NumKeys,
                flags: KEY_UPDATE,
            }),
            args: ALL_ARGS,
        },
        CommandSpec {
            name: c"TK.RATELIMIT.RESET",
            entry: command_entry!(ratelimit::reset),
            flags: c"write",
            first_key: 1,
            last_key: -1,
            key_step: 1,
            arity: -2,
            summary: c"Deletes rate-limit keys; replies with how many existed.",
            complexity: c"O(K) for K keys.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: -1 },
                flags: KEY_DELETE,
            }),
            args: RESET_ARGS,
        },
        CommandSpec {
            name: c"TK.LOCK.ACQUIRE",
            entry: command_entry!(lock::acquire),
            flags: c"write deny-oom fast",
            first_key: 1,
            last_key: 2,
            key_step: 1,
            arity: 5,
            summary: c"Acquires a lock for a random owner token with a TTL, and issues a fencing token that increases with every successful acquire.",
            complexity: c"O(1)",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 1 },
                flags: KEY_UPDATE,
            }),
            args: LOCK_ACQUIRE_ARGS,
        },
        CommandSpec {
            name: c"TK.LOCK.RELEASE",
            entry: command_entry!(lock::release),
            flags: c"write fast",
            first_key: 1,
            last_key: 1,
            key_step: 1,
            arity: 3,
            summary: c"Releases a lock, only if it is held by the given owner token.",
            complexity: c"O(1)",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 0 },
                flags: KEY_READ_DELETE,
            }),
            args: LOCK_RELEASE_ARGS,
        },
        CommandSpec {
            name: c"TK.LOCK.EXTEND",
            entry: command_entry!(lock::extend),
            flags: c"write deny-oom fast",
            first_key: 1,
            last_key: 1,
            key_step: 1,
            arity: 4,
            summary: c"Sets a held lock's expiry to now + ttl, only if it is held by the given owner token.",
            complexity: c"O(1)",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 0 },
                flags: KEY_UPDATE,
            }),
            args: LOCK_EXTEND_ARGS,
        },
        CommandSpec {
            name: c"TK.CACHE.GET",
            entry: command_entry!(cache::get),
            flags: c"readonly fast",
            first_key: 1,
            last_key: 2,
            key_step: 1,
            arity: 4,
            summary: c"Returns a cached value if it is still visible (not invalidated), else the current generation token for TK.CACHE.SET IFGEN.",
            complexity: c"O(1)",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 1 },
                flags: KEY_READ,
            }),
            args: CACHE_GET_ARGS,
        },
        CommandSpec {
            name: c"TK.CACHE.SET",
            entry: command_entry!(cache::set),
            flags: c"write deny-oom",
            first_key: 1,
            last_key: 3,
            key_step: 1,
            arity: -7,
            summary: c"Stores a value with a TTL under the user's current generations; with IFGEN, refuses a value computed before a newer invalidation.",
            complexity: c"O(log N + M): N entries of the user, M expired index members dropped.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 2 },
                flags: KEY_UPDATE,
            }),
            args: CACHE_SET_ARGS,
        },
        CommandSpec {
            name: c"TK.CACHE.INVALIDATEUSER",
            entry: command_entry!(cache::invalidate_user),
            flags: c"write fast",
            first_key: 1,
            last_key: 2,
            key_step: 1,
            arity: 3,
            summary: c"Makes every cached entry of a user invisible at once; memory is reclaimed in the background.",
            complexity: c"O(1), whatever the number of entries.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 1 },
                flags: KEY_UPDATE,
            }),
            args: CACHE_INVALIDATE_USER_ARGS,
        },
        CommandSpec {
            name: c"TK.CACHE.INVALIDATENS",
            entry: command_entry!(cache::invalidate_namespace),
            flags: c"write fast",
            first_key: 1,
            last_key: 2,
            key_step: 1,
            arity: 4,
            summary: c"Makes a user's cached entries of one namespace invisible at once; memory is reclaimed in the background.",
            complexity: c"O(1), whatever the number of entries.",
            since: c"0.1.0",
            key_spec: Some(KeySpec {
                keys: Keys::Range { last: 1 },
                flags: KEY_UPDATE,
            }),
            args: CACHE_INVALIDATE_NAMESPACE_ARGS,
        },
    ]
}

/// `TK.DEBUG.PANIC`: panics on purpose, to prove the guard turns a panic
/// into an error reply. Registered only when the module is loaded with the
/// argument `DEBUG-COMMANDS` (the test harness does; production should not).
fn debug_panic(_ctx: Ctx, _argv: &Argv) -> CommandResult {
    panic!("TK.DEBUG.PANIC called");
}

fn debug_commands() -> [CommandSpec; 1] {
    [CommandSpec {
        name: c"TK.DEBUG.PANIC",
        entry: command_entry!(debug_panic),
        flags: c"readonly",
        first_key: 0,
        last_key: 0,
        key_step: 0,
        arity: 1,
        summary: c"Test only: panics inside the module to exercise the panic guard.",
        complexity: c"O(1)",
        since: c"0.1.0",
        key_spec: None,
        args: &[],
    }]
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    registry::install_panic_hook();
    let debug = args
        .iter()
        .any(|arg| arg.as_slice().eq_ignore_ascii_case(b"DEBUG-COMMANDS"));
    let extra: &[CommandSpec] = if debug { &debug_commands() } else { &[] };
    let acl_category = registry::add_acl_category(ctx);
    for spec in commands().iter().chain(&session_commands()).chain(extra) {
        if let Err(error) = registry::register(ctx, spec, acl_category) {
            ctx.log_warning(&format!("tk: {error}"));
            return Status::Err;
        }
    }
    // Replaces the generic info callback the macro installs with our section.
    // SAFETY: load-time context.
    unsafe {
        if let Some(register_info) = raw::RedisModule_RegisterInfoFunc {
            register_info(ctx.ctx, Some(info));
        }
    }
    Status::Ok
}

fn add_field(ctx: *mut raw::RedisModuleInfoCtx, name: &CStr, value: u64) {
    // SAFETY: live info context, NUL-terminated name.
    unsafe {
        if let Some(add) = raw::RedisModule_InfoAddFieldULongLong {
            add(ctx, name.as_ptr(), value);
        }
    }
}

/// `INFO tk` (also part of `INFO modules` / `INFO everything`).
extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
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

redis_module::redis_module! {
    name: "tk",
    version: crate::MODULE_VERSION,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    commands: [],
}
