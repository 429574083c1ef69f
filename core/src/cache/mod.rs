//! TK.CACHE: a per-user response cache whose invalidation never scans.
//!
//! `generation.rs` holds the rules, `plan.rs` what each write command
//! writes and `parse.rs` the argument parsing; the commands and the
//! background timer that frees invisible entries in bounded batches are in
//! the module (`module/src/cache/command.rs`, `reclaim.rs`).
//!
//! Keys (derived by the client; one hash tag per user, so one Cluster slot):
//!
//! | key | type | content | expires |
//! |---|---|---|---|
//! | `tk:c:{tag}:<ns>:<sha256>` | hash | `v` value, `g` user and `ng` namespace generation it was written under, `ns` namespace | its TTL |
//! | `tk:cg:{tag}` | hash | `u` user generation, `n:<ns>` namespace generations | after the last entry, and ≥ 24 h after an invalidation |
//! | `tk:ci:{tag}` | sorted set | member = entry key, score = its expiry (ms) | with the last entry |

pub mod generation;
pub mod parse;
pub mod plan;

/// Prefix of a namespace's field in the generations hash.
pub const NAMESPACE_FIELD_PREFIX: &[u8] = b"n:";

/// Longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Longest entry TTL: 7 days.
pub const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Entry hash fields.
pub const VALUE_FIELD: &[u8] = b"v";
pub const ENTRY_USER_GENERATION_FIELD: &[u8] = b"g";
pub const ENTRY_NAMESPACE_GENERATION_FIELD: &[u8] = b"ng";
pub const ENTRY_NAMESPACE_FIELD: &[u8] = b"ns";

/// An entry's fields as GET reads them: value, user and namespace
/// generations written under, namespace.
pub const ENTRY_FIELD_NAMES: [&std::ffi::CStr; 4] = [c"v", c"g", c"ng", c"ns"];
/// The user generation's field in the generations hash.
pub const GENERATION_FIELD_NAMES: [&std::ffi::CStr; 1] = [c"u"];
