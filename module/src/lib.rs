//! tk-redis: atomic rate limiting, sessions, caching and distributed locks
//! inside Redis.
//!
//! Layout (docs/ARCHITECTURE.md): the pure rules live in `tk_redis_core`
//! (re-exported here: `args`, `keys`, `effect`, `error` and each family's
//! rules); `effects` is the one place that performs and replicates the
//! effects they return; `keyapi` reads keys, `glue` wraps the
//! context, replies and ACL checks, `call` runs the few nested commands the
//! key API has no counterpart for; `registry` registers commands and guards
//! every call against panics; each command family (`ratelimit`, `session`,
//! `cache`, `lock`) here is the thin command layer over its core rules.

pub use tk_redis_core::{args, effect, error, keys};

pub mod cache;
pub mod call;
pub mod commands;
pub mod effects;
pub mod glue;
pub mod keyapi;
pub mod lock;
pub mod ratelimit;
pub mod registry;
pub mod session;
pub mod stats;

// The module proper exists only in the cdylib: unit tests link this crate
// without a Redis (or its allocator).
#[cfg(not(test))]
mod info;
#[cfg(not(test))]
mod load;

/// The module's version as Redis reports it in `MODULE LIST`
/// (major * 10000 + minor * 100 + patch).
pub const MODULE_VERSION: i32 = {
    const fn parse(text: &str) -> i32 {
        let bytes = text.as_bytes();
        let mut value = 0;
        let mut index = 0;
        while index < bytes.len() {
            value = value * 10 + (bytes[index] - b'0') as i32;
            index += 1;
        }
        value
    }
    parse(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + parse(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + parse(env!("CARGO_PKG_VERSION_PATCH"))
};
