//! TK.SESSION: atomic login sessions with a per-user index that cleans
//! itself.
//!
//! `rules.rs` holds the expiry, touch, cap and version rules, `plan.rs`
//! what each write command writes (both with `now` as a parameter) and
//! `parse.rs` the argument parsing; the commands are in the module
//! (`module/src/session/command.rs`).
//!
//! Keys (derived by the client; one hash tag per user):
//!
//! | key | type | content | expires |
//! |---|---|---|---|
//! | `tk:s:{tag}:<sha256 of the token>` | hash | `user`, `data`, `created`, `last_active`, `expires_at`, `max_expires_at`, `version`, `idle` | at `expires_at` = min(last activity + idle, max lifetime) |
//! | `tk:si:{tag}:<user>` | sorted set | member = session key, score = its `max_expires_at` | when the last session's max lifetime ends |
//!
//! The index never outlives the sessions it could list, and its entries are
//! dropped once their session can no longer be alive (its max lifetime has
//! passed, or it is gone); so it stays as small as the user's possibly-live
//! sessions, whatever the login history.

pub mod parse;
pub mod plan;
pub mod rules;

/// Default absolute lifetime of a session (30 days) when CREATE has no
/// MAXLIFETIME.
pub const DEFAULT_MAX_LIFETIME_MS: u64 = 30 * 24 * 3600 * 1000;
/// Longest idle TTL or lifetime accepted (1 year).
pub const MAX_DURATION_MS: u64 = 365 * 24 * 3600 * 1000;
/// Largest MAXSESSIONS.
pub const MAX_SESSIONS_CAP: u64 = 10_000;

use std::ffi::CStr;

/// Session hash fields, in the order of the session reply.
pub const USER_FIELD: &CStr = c"user";
pub const DATA_FIELD: &CStr = c"data";
pub const CREATED_FIELD: &CStr = c"created";
pub const LAST_ACTIVE_FIELD: &CStr = c"last_active";
pub const EXPIRES_AT_FIELD: &CStr = c"expires_at";
pub const MAX_EXPIRES_AT_FIELD: &CStr = c"max_expires_at";
pub const VERSION_FIELD: &CStr = c"version";
pub const IDLE_FIELD: &CStr = c"idle";

/// Every field, in that order (what a session read fetches).
pub const FIELD_NAMES: [&CStr; 8] = [
    USER_FIELD,
    DATA_FIELD,
    CREATED_FIELD,
    LAST_ACTIVE_FIELD,
    EXPIRES_AT_FIELD,
    MAX_EXPIRES_AT_FIELD,
    VERSION_FIELD,
    IDLE_FIELD,
];
