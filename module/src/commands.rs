//! The command table: every command the module adds, with its flags, key
//! spec (the legacy key positions are derived from it) and what `COMMAND
//! DOCS` shows; docs/COMMANDS.md has the long form.

use crate::cache::command as cache;
use crate::command_entry;
use crate::glue::{Argv, Ctx};
use crate::lock::command as lock;
use crate::ratelimit::command as ratelimit;
use crate::registry::{
    ArgDoc, ArgKind, CommandResult, CommandSpec, Keys, KEY_DELETE, KEY_READ, KEY_READ_DELETE,
    KEY_UPDATE,
};
use crate::session::command as session;

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

/// Every command, family by family.
pub fn all() -> Vec<CommandSpec> {
    [
        ratelimit_commands().as_slice(),
        &lock_commands(),
        &session_commands(),
        &cache_commands(),
    ]
    .concat()
}

fn ratelimit_commands() -> [CommandSpec; 4] {
    [
        // Not `fast`: SLIDING is O(N) in the requests of one window.
        CommandSpec::new(c"TK.RATELIMIT", command_entry!(ratelimit::ratelimit), c"write deny-oom", -4)
            .keys(Keys::Range { last: 0 }, KEY_UPDATE)
            .docs(
                c"Admits or refuses a request against a rate limit (GCRA, sliding log or fixed window) and consumes its cost atomically.",
                c"O(1) for GCRA and FIXED; O(N) for SLIDING, N = requests in the window.",
                LIMIT_ARGS,
            ),
        CommandSpec::new(c"TK.RATELIMIT.PEEK", command_entry!(ratelimit::peek), c"readonly", -4)
            .keys(Keys::Range { last: 0 }, KEY_READ)
            .docs(
                c"Computes the reply TK.RATELIMIT would give, without consuming or writing anything.",
                c"O(1) for GCRA and FIXED; O(N) for SLIDING, N = requests in the window.",
                LIMIT_ARGS,
            ),
        // getkeys-api: Redis 7.0's cluster routing reads no keynum spec.
        CommandSpec::new(c"TK.RATELIMIT.ALL", command_entry!(ratelimit::all, numkeys), c"write deny-oom getkeys-api", -5)
            .keys(Keys::NumKeys, KEY_UPDATE)
            .docs(
                c"Checks several rate limits at once and consumes from all of them only if every one allows.",
                c"O(K) for K limits (up to 16), plus O(N) per SLIDING limit.",
                ALL_ARGS,
            ),
        CommandSpec::new(c"TK.RATELIMIT.RESET", command_entry!(ratelimit::reset), c"write", -2)
            .keys(Keys::Range { last: -1 }, KEY_DELETE)
            .docs(
                c"Deletes rate-limit keys; replies with how many existed.",
                c"O(K) for K keys.",
                RESET_ARGS,
            ),
    ]
}

fn lock_commands() -> [CommandSpec; 3] {
    [
        CommandSpec::new(c"TK.LOCK.ACQUIRE", command_entry!(lock::acquire), c"write deny-oom fast", 5)
            .keys(Keys::Range { last: 1 }, KEY_UPDATE)
            .docs(
                c"Acquires a lock for a random owner token with a TTL, and issues a fencing token that increases with every successful acquire.",
                c"O(1)",
                LOCK_ACQUIRE_ARGS,
            ),
        CommandSpec::new(c"TK.LOCK.RELEASE", command_entry!(lock::release), c"write fast", 3)
            .keys(Keys::Range { last: 0 }, KEY_READ_DELETE)
            .docs(
                c"Releases a lock, only if it is held by the given owner token.",
                c"O(1)",
                LOCK_RELEASE_ARGS,
            ),
        CommandSpec::new(c"TK.LOCK.EXTEND", command_entry!(lock::extend), c"write deny-oom fast", 4)
            .keys(Keys::Range { last: 0 }, KEY_UPDATE)
            .docs(
                c"Sets a held lock's expiry to now + ttl, only if it is held by the given owner token.",
                c"O(1)",
                LOCK_EXTEND_ARGS,
            ),
    ]
}

fn session_commands() -> [CommandSpec; 8] {
    [
        CommandSpec::new(c"TK.SESSION.CREATE", command_entry!(session::create), c"write deny-oom", -6)
            .keys(Keys::Range { last: 1 }, KEY_UPDATE)
            .docs(
                c"Creates a session and adds it to the user's index, pruning dead entries and enforcing MAXSESSIONS atomically.",
                c"O(N), N = the user's possibly-live sessions",
                SESSION_CREATE_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.TOUCH", command_entry!(session::touch), c"write deny-oom fast", -2)
            .keys(Keys::Range { last: 0 }, KEY_UPDATE)
            .docs(
                c"Records activity (last_active = now, expiry = min(now + idle, max lifetime)) and returns the session.",
                c"O(1)",
                SESSION_TOUCH_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.GET", command_entry!(session::get), c"readonly fast", 2)
            .keys(Keys::Range { last: 0 }, KEY_READ)
            .docs(
                c"Returns the session, without side effects.",
                c"O(1)",
                SESSION_KEY_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.SET", command_entry!(session::set), c"write deny-oom fast", -3)
            .keys(Keys::Range { last: 0 }, KEY_UPDATE)
            .docs(
                c"Replaces the session's data keeping its expiry and increments its version; IFVERSION refuses a stale update.",
                c"O(1)",
                SESSION_SET_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.DESTROY", command_entry!(session::destroy), c"write fast", 3)
            .keys(Keys::Range { last: 1 }, KEY_READ_DELETE)
            .docs(
                c"Deletes a session and its index entry.",
                c"O(log N)",
                SESSION_DESTROY_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.ROTATE", command_entry!(session::rotate), c"write fast", 4)
            .keys(Keys::Range { last: 2 }, KEY_UPDATE)
            .docs(
                c"Moves a session to a new key (a new token at login), keeping its data and expiry.",
                c"O(log N)",
                SESSION_ROTATE_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.LIST", command_entry!(session::list), c"readonly", 2)
            .keys(Keys::Range { last: 0 }, KEY_READ)
            .docs(
                c"Lists the user's live sessions (key, created, last_active, expires_at), most recent first.",
                c"O(N), N = the user's possibly-live sessions",
                SESSION_INDEX_ARGS,
            ),
        CommandSpec::new(c"TK.SESSION.REVOKEALL", command_entry!(session::revoke_all), c"write", -2)
            .keys(Keys::Range { last: 0 }, KEY_READ_DELETE)
            .docs(
                c"Deletes all of the user's sessions, except optionally one; returns how many were deleted.",
                c"O(N), N = the user's possibly-live sessions",
                SESSION_REVOKEALL_ARGS,
            ),
    ]
}

fn cache_commands() -> [CommandSpec; 4] {
    [
        CommandSpec::new(c"TK.CACHE.GET", command_entry!(cache::get), c"readonly fast", 4)
            .keys(Keys::Range { last: 1 }, KEY_READ)
            .docs(
                c"Returns a cached value if it is still visible (not invalidated), else the current generation token for TK.CACHE.SET IFGEN.",
                c"O(1)",
                CACHE_GET_ARGS,
            ),
        CommandSpec::new(c"TK.CACHE.SET", command_entry!(cache::set), c"write deny-oom", -7)
            .keys(Keys::Range { last: 2 }, KEY_UPDATE)
            .docs(
                c"Stores a value with a TTL under the user's current generations; with IFGEN, refuses a value computed before a newer invalidation.",
                c"O(log N + M): N entries of the user, M expired index members dropped.",
                CACHE_SET_ARGS,
            ),
        CommandSpec::new(c"TK.CACHE.INVALIDATEUSER", command_entry!(cache::invalidate_user), c"write fast", 3)
            .keys(Keys::Range { last: 1 }, KEY_UPDATE)
            .docs(
                c"Makes every cached entry of a user invisible at once; memory is reclaimed in the background.",
                c"O(1), whatever the number of entries.",
                CACHE_INVALIDATE_USER_ARGS,
            ),
        CommandSpec::new(c"TK.CACHE.INVALIDATENS", command_entry!(cache::invalidate_namespace), c"write fast", 4)
            .keys(Keys::Range { last: 1 }, KEY_UPDATE)
            .docs(
                c"Makes a user's cached entries of one namespace invisible at once; memory is reclaimed in the background.",
                c"O(1), whatever the number of entries.",
                CACHE_INVALIDATE_NAMESPACE_ARGS,
            ),
    ]
}

/// `TK.DEBUG.PANIC`: panics on purpose, to prove the guard turns a panic
/// into an error reply. Registered only when the module is loaded with the
/// argument `DEBUG-COMMANDS` (the test harness does; production should not).
fn debug_panic(_ctx: Ctx, _argv: &Argv) -> CommandResult {
    panic!("TK.DEBUG.PANIC called");
}

/// The test-only commands.
pub fn debug() -> [CommandSpec; 1] {
    [CommandSpec::new(
        c"TK.DEBUG.PANIC",
        command_entry!(debug_panic),
        c"readonly",
        1,
    )
    .docs(
        c"Test only: panics inside the module to exercise the panic guard.",
        c"O(1)",
        &[],
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_documented_and_its_keys_fit_its_arity() {
        let commands = all();
        assert_eq!(commands.len(), 19);
        for spec in commands.iter().chain(&debug()) {
            let name = spec.name.to_string_lossy();
            assert!(!spec.summary.is_empty(), "{name} has no summary");
            assert!(!spec.complexity.is_empty(), "{name} has no complexity");
            let (first, last, step) = spec.legacy_key_range();
            let least_args = spec.arity.abs();
            if spec.key_spec.is_some() && first > 0 {
                assert_eq!(step, 1, "{name}");
                assert!(
                    last == -1 || last < least_args,
                    "{name}: key {last} beyond arity"
                );
            }
        }
    }
}
