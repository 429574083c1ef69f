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
//!
//! [`ensure_backend`] decides, for one server, which of the two serves the
//! commands: the module when it is loaded, else the library, loaded (or
//! replaced by this crate's version) when missing or older.

use redis::aio::ConnectionLike;
use redis::Value;

use crate::client::ClientCore;
use crate::error::{Error, Result};

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

/// What serves the tk commands on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The tk module: `TK.*` commands.
    Module,
    /// The tk Functions library: `FCALL tk_*`.
    Library,
}

/// Decides which backend serves the tk commands on the server behind
/// `conn`, and makes the library usable when it is the one:
///
/// 1. the module, when `COMMAND INFO TK.RATELIMIT` knows the command;
/// 2. otherwise the library: `FCALL_RO tk_version 0` reads the loaded
///    library's version; the library is loaded with `FUNCTION LOAD REPLACE`
///    when it is missing or older than [`LIBRARY_VERSION`] (a newer one,
///    loaded by a newer client, is kept: it serves older clients too).
///
/// Both serve the same commands with the same stored data, so a wrong
/// guess (say, `COMMAND` denied by an ACL while the module is loaded) costs
/// speed, not correctness. Call it again after connecting to another
/// server (a failover, a reconnect): the answer is per server.
///
/// Errors: [`Error::Server`] with the server's code when neither can be
/// used, its message saying what to grant or install (an ACL refusing
/// `FUNCTION LOAD` or `FCALL`, a server without Functions); the transient
/// errors of any call.
pub async fn ensure_backend<C>(conn: &C) -> Result<Backend>
where
    C: ConnectionLike + Clone + Send,
{
    if module_loaded(conn).await? == Some(true) {
        return Ok(Backend::Module);
    }
    match loaded_library_version(conn).await? {
        Some(version) if !is_older(&version, LIBRARY_VERSION) => {}
        _ => load_library(conn).await?,
    }
    Ok(Backend::Library)
}

/// Whether the module's commands are known: `Some(true)`/`Some(false)`, or
/// `None` when the server does not say (`COMMAND` denied by an ACL).
pub async fn module_loaded<C>(conn: &C) -> Result<Option<bool>>
where
    C: ConnectionLike + Clone + Send,
{
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("INFO").arg("TK.RATELIMIT");
    match ClientCore::new(conn.clone())
        .query::<Vec<Value>>("COMMAND", &cmd)
        .await
    {
        Ok(entries) => Ok(Some(
            entries.first().is_some_and(|entry| *entry != Value::Nil),
        )),
        Err(Error::Server { code, .. }) if code == "NOPERM" => Ok(None),
        Err(err) => Err(err),
    }
}

/// The version the loaded library reports (`FCALL_RO tk_version 0`), or
/// `None` when no tk library is loaded.
pub async fn loaded_library_version<C>(conn: &C) -> Result<Option<String>>
where
    C: ConnectionLike + Clone + Send,
{
    let mut cmd = redis::cmd("FCALL_RO");
    cmd.arg("tk_version").arg(0);
    match ClientCore::new(conn.clone())
        .query::<String>("FCALL_RO", &cmd)
        .await
    {
        Ok(version) => Ok(Some(version)),
        Err(Error::Server { code, message }) => {
            if code == "ERR" && contains_ignore_case(&message, "function not found") {
                Ok(None)
            } else if code == "ERR" && contains_ignore_case(&message, "unknown command") {
                Err(Error::Server {
                    code,
                    message: format!(
                        "{message} (the tk module is not loaded and this server has no Redis \
                         Functions, which need Redis 7.0+ or Valkey 7.2+: load the module)"
                    ),
                })
            } else if code == "NOPERM" {
                Err(Error::Server {
                    code,
                    message: format!(
                        "{message} (the tk module is not loaded and this user may not call the \
                         tk Functions library: grant it `+fcall +fcall_ro`, or load the module)"
                    ),
                })
            } else {
                Err(Error::Server { code, message })
            }
        }
        Err(err) => Err(err),
    }
}

/// `FUNCTION LOAD REPLACE` of [`LIBRARY_SOURCE`].
pub async fn load_library<C>(conn: &C) -> Result<()>
where
    C: ConnectionLike + Clone + Send,
{
    let mut cmd = redis::cmd("FUNCTION");
    cmd.arg("LOAD").arg("REPLACE").arg(LIBRARY_SOURCE);
    match ClientCore::new(conn.clone())
        .query::<String>("FUNCTION", &cmd)
        .await
    {
        Ok(_) => Ok(()),
        Err(Error::Server { code, message }) if code == "NOPERM" => Err(Error::Server {
            code,
            message: format!(
                "{message} (the tk module is not loaded and the tk Functions library \
                 {LIBRARY_VERSION} is missing or older, but this user may not load it: grant it \
                 `+function|load`, have an administrator run FUNCTION LOAD REPLACE with \
                 tk_redis::functions::LIBRARY_SOURCE, or load the module)"
            ),
        }),
        Err(err) => Err(err),
    }
}

/// Whether version `loaded` is older than `ours` (`major.minor.patch`,
/// anything after a `-` or `+` ignored). A version that does not parse is
/// older: it is replaced.
fn is_older(loaded: &str, ours: &str) -> bool {
    fn parse(version: &str) -> Option<[u64; 3]> {
        let core = version.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
        let parsed = [parts.next()??, parts.next()??, parts.next()??];
        parts.next().is_none().then_some(parsed)
    }
    match (parse(loaded), parse(ours)) {
        (Some(loaded), Some(ours)) => loaded < ours,
        _ => true,
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.to_ascii_lowercase().contains(needle)
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

    #[test]
    fn versions_compare_by_major_minor_patch() {
        assert!(is_older("0.1.9", "0.2.0"));
        assert!(is_older("0.2.0", "0.10.0"));
        assert!(!is_older("0.2.0", "0.2.0"));
        assert!(!is_older("0.2.0-dev", "0.2.0"));
        assert!(!is_older("1.0.0", "0.2.0"));
        for unparsable in ["", "1.2", "1.2.3.4", "x.y.z", "-1.0.0"] {
            assert!(is_older(unparsable, "0.2.0"), "{unparsable:?}");
        }
    }
}
