//! The tk Redis Functions library: the module's commands in Lua, for
//! servers that do not allow `MODULE LOAD` (managed Redis and Valkey).
//!
//! The library (`lua/tk.lua`, loaded with `FUNCTION LOAD REPLACE`) has the
//! module's arguments, replies, errors and stored data: keys written by one
//! are read by the other. Each command is a function named like the command,
//! lower case, dots replaced by underscores (`TK.RATELIMIT.PEEK` is
//! `FCALL tk_ratelimit_peek 1 <key> ...`); its keys go in `KEYS`. See the
//! header of `lua/tk.lua` for the number representation and the few
//! differences.

/// The library's name (`#!lua name=tk`), as `FUNCTION LIST LIBRARYNAME`
/// and `FUNCTION DELETE` take it.
pub const LIBRARY_NAME: &str = "tk";

/// The library's source, for `FUNCTION LOAD REPLACE`.
pub const LIBRARY_SOURCE: &str = include_str!("../lua/tk.lua");

/// The library's version: this crate's. `FCALL tk_version 0` returns it
/// from a loaded library, so a client can tell whether to replace it.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The function implementing a module command: `TK.LOCK.ACQUIRE` →
/// `tk_lock_acquire`.
pub fn function_name(command: &str) -> String {
    command.to_ascii_lowercase().replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_declares_the_library_and_this_crates_version() {
        assert!(LIBRARY_SOURCE.starts_with("#!lua name=tk\n"));
        let declared = format!("local VERSION = '{LIBRARY_VERSION}'");
        assert!(
            LIBRARY_SOURCE.contains(&declared),
            "lua/tk.lua must declare `{declared}` (bump it with the crate version)"
        );
    }

    #[test]
    fn function_names_follow_the_commands() {
        assert_eq!(function_name("TK.RATELIMIT"), "tk_ratelimit");
        assert_eq!(function_name("TK.RATELIMIT.PEEK"), "tk_ratelimit_peek");
        assert_eq!(function_name("TK.LOCK.ACQUIRE"), "tk_lock_acquire");
    }
}
