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
//! replaced by this crate's version) when missing or older. The client
//! types call it on their first call (see [`TkMode`]) and then send each
//! command through [`to_fcall`] when the library is the one.

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionLike;
use redis::{Arg, Cmd, Value};

use crate::client::send;
use crate::error::{Error, Result};
use crate::DEFAULT_TIMEOUT;

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

/// Which backend the client types use (`REDIS_TK_MODE`, see
/// [`Config::tk_mode`](crate::Config::tk_mode) and each client type's
/// `with_tk_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TkMode {
    /// The module when the server has it, else the Functions library,
    /// loaded when missing or older ([`ensure_backend`], on first use).
    #[default]
    Auto,
    /// Always the `TK.*` commands: a server without the module answers
    /// [`Error::ModuleNotLoaded`]. The library is never loaded.
    Module,
    /// Always the Functions library (`FCALL`), loaded when missing or
    /// older, even when the module is loaded.
    Functions,
}

impl TkMode {
    /// `"auto"`, `"module"` or `"functions"`, as `REDIS_TK_MODE` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TkMode::Auto => "auto",
            TkMode::Module => "module",
            TkMode::Functions => "functions",
        }
    }
}

impl fmt::Display for TkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `auto`, `module` or `functions`, in any case.
impl FromStr for TkMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        [TkMode::Auto, TkMode::Module, TkMode::Functions]
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| "expected auto, module or functions".to_owned())
    }
}

/// Where a module command's keys are, for its `FCALL` (see [`to_fcall`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keys {
    /// The first `n` arguments.
    Fixed(usize),
    /// `numkeys key [key ...] ...` (`TK.RATELIMIT.ALL`).
    Counted,
    /// Every argument (`TK.RATELIMIT.RESET`).
    All,
}

/// Every module command and where its keys are.
const COMMANDS: &[(&str, Keys)] = &[
    ("TK.RATELIMIT", Keys::Fixed(1)),
    ("TK.RATELIMIT.PEEK", Keys::Fixed(1)),
    ("TK.RATELIMIT.ALL", Keys::Counted),
    ("TK.RATELIMIT.RESET", Keys::All),
    ("TK.LOCK.ACQUIRE", Keys::Fixed(2)),
    ("TK.LOCK.RELEASE", Keys::Fixed(1)),
    ("TK.LOCK.EXTEND", Keys::Fixed(1)),
    ("TK.SESSION.CREATE", Keys::Fixed(2)),
    ("TK.SESSION.TOUCH", Keys::Fixed(1)),
    ("TK.SESSION.GET", Keys::Fixed(1)),
    ("TK.SESSION.SET", Keys::Fixed(1)),
    ("TK.SESSION.DESTROY", Keys::Fixed(2)),
    ("TK.SESSION.ROTATE", Keys::Fixed(3)),
    ("TK.SESSION.LIST", Keys::Fixed(1)),
    ("TK.SESSION.REVOKEALL", Keys::Fixed(1)),
    ("TK.CACHE.GET", Keys::Fixed(2)),
    ("TK.CACHE.SET", Keys::Fixed(3)),
    ("TK.CACHE.INVALIDATEUSER", Keys::Fixed(2)),
    ("TK.CACHE.INVALIDATENS", Keys::Fixed(2)),
];

/// Whether `command` is one of the module's (`TK.*`) commands, which the
/// library serves too.
pub(crate) fn is_module_command(command: &str) -> bool {
    COMMANDS
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(command))
}

/// The library call equivalent to the module command `cmd`: `TK.X.Y k1 k2
/// a b` → `FCALL tk_x_y 2 k1 k2 a b`, with the command's keys (from the
/// table of every command) in `KEYS`.
///
/// Errors: [`Error::InvalidArgument`] for a command that is not a module
/// command, or a `TK.RATELIMIT.ALL` whose `numkeys` is not a number.
pub fn to_fcall(cmd: &Cmd) -> Result<Cmd> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        Arg::Simple(bytes) => bytes,
        // Cursors belong to SCAN-like commands, never to a tk one.
        _ => b"0".as_slice(),
    });
    let name = args.next().unwrap_or_default();
    let name = std::str::from_utf8(name).unwrap_or_default();
    let keys = COMMANDS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, keys)| *keys)
        .ok_or_else(|| Error::InvalidArgument(format!("{name:?} is not a tk command")))?;
    let rest: Vec<&[u8]> = args.collect();
    let mut fcall = redis::cmd("FCALL");
    fcall.arg(function_name(name));
    match keys {
        Keys::Fixed(count) => {
            fcall.arg(count.min(rest.len())).arg(&rest);
        }
        Keys::All => {
            fcall.arg(rest.len()).arg(&rest);
        }
        Keys::Counted => {
            // The command's numkeys is FCALL's: the arguments stay as they are.
            let numkeys = rest.first().copied().unwrap_or_default();
            if std::str::from_utf8(numkeys)
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .is_none()
            {
                return Err(Error::InvalidArgument(format!(
                    "{name}: numkeys {:?} is not a number",
                    String::from_utf8_lossy(numkeys)
                )));
            }
            fcall.arg(&rest);
        }
    }
    Ok(fcall)
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
/// When `COMMAND` is denied and the library cannot be used either (a user
/// allowed only the module's commands, `+@tk`), the answer is the module:
/// its commands then say whether it is loaded.
///
/// Both serve the same commands with the same stored data, so a wrong
/// guess (say, `COMMAND` denied by an ACL while the module is loaded) costs
/// speed, not correctness. Call it again after connecting to another
/// server (a failover, a reconnect): the answer is per server.
///
/// Errors: [`Error::NoBackend`] with the server's code when neither can be
/// used, its message saying what to grant or install (an ACL refusing
/// `FUNCTION LOAD` or `FCALL`, a server without Functions); the transient
/// errors of any call.
pub async fn ensure_backend<C>(conn: &C) -> Result<Backend>
where
    C: ConnectionLike + Clone + Send,
{
    let module = module_loaded(conn).await?;
    if module == Some(true) {
        return Ok(Backend::Module);
    }
    match ensure_library(conn).await {
        Ok(_) => Ok(Backend::Library),
        // A user confined to the tk commands (`+@tk`) may use neither
        // COMMAND nor the library: the module's commands will tell.
        Err(Error::NoBackend { .. }) if module.is_none() => Ok(Backend::Module),
        Err(err) => Err(err),
    }
}

/// Makes the library usable on the server behind `conn`, whether or not
/// the module is loaded: loads it with `FUNCTION LOAD REPLACE` when it is
/// missing or older than [`LIBRARY_VERSION`], and returns the version
/// loaded. On a Redis Cluster `FUNCTION LOAD` goes to every primary (the
/// redis crate routes it so), but the version is read from one node.
///
/// Errors: as [`ensure_backend`].
pub async fn ensure_library<C>(conn: &C) -> Result<String>
where
    C: ConnectionLike + Clone + Send,
{
    match loaded_library_version(conn).await? {
        Some(version) if !is_older(&version, LIBRARY_VERSION) => Ok(version),
        _ => {
            load_library(conn).await?;
            Ok(LIBRARY_VERSION.to_owned())
        }
    }
}

/// Whether the module's commands are known: `Some(true)`/`Some(false)`, or
/// `None` when the server does not say (`COMMAND` denied by an ACL).
pub async fn module_loaded<C>(conn: &C) -> Result<Option<bool>>
where
    C: ConnectionLike + Clone + Send,
{
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("INFO").arg("TK.RATELIMIT");
    match send::<_, Vec<Value>>(conn, DEFAULT_TIMEOUT, "COMMAND", &cmd).await {
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
    match send::<_, String>(conn, DEFAULT_TIMEOUT, "FCALL_RO", &cmd).await {
        Ok(version) => Ok(Some(version)),
        Err(Error::Server { code, message }) => {
            if is_function_not_found(&code, &message) {
                Ok(None)
            } else if code == "ERR" && contains_ignore_case(&message, "unknown command") {
                Err(Error::NoBackend {
                    code,
                    message: format!(
                        "{message} (the tk module is not loaded and this server has no Redis \
                         Functions, which need Redis 7.0+ or Valkey 7.2+: load the module)"
                    ),
                })
            } else if code == "NOPERM" {
                Err(Error::NoBackend {
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
    match send::<_, String>(conn, DEFAULT_TIMEOUT, "FUNCTION", &cmd).await {
        Ok(_) => Ok(()),
        Err(Error::Server { code, message }) if code == "NOPERM" => Err(Error::NoBackend {
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

/// Whether a server error says the library's function is not there.
pub(crate) fn is_function_not_found(code: &str, message: &str) -> bool {
    code == "ERR" && contains_ignore_case(message, "function not found")
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

    /// The arguments of `cmd`, as text.
    fn words(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => panic!("cursor"),
            })
            .collect()
    }

    fn command(words: &[&str]) -> Cmd {
        let mut cmd = redis::cmd(words[0]);
        cmd.arg(&words[1..]);
        cmd
    }

    #[test]
    fn every_module_command_becomes_its_fcall() {
        for (module, fcall) in [
            ("TK.RATELIMIT k 10 1s", "FCALL tk_ratelimit 1 k 10 1s"),
            (
                "TK.RATELIMIT.PEEK k 10 1s BURST 3",
                "FCALL tk_ratelimit_peek 1 k 10 1s BURST 3",
            ),
            (
                "TK.RATELIMIT.ALL 2 a b 10 1s 5 1m",
                "FCALL tk_ratelimit_all 2 a b 10 1s 5 1m",
            ),
            (
                "TK.RATELIMIT.RESET a b c",
                "FCALL tk_ratelimit_reset 3 a b c",
            ),
            ("TK.RATELIMIT.RESET a", "FCALL tk_ratelimit_reset 1 a"),
            (
                "TK.LOCK.ACQUIRE l f tok 30000",
                "FCALL tk_lock_acquire 2 l f tok 30000",
            ),
            ("TK.LOCK.RELEASE l tok", "FCALL tk_lock_release 1 l tok"),
            (
                "TK.LOCK.EXTEND l tok 30000",
                "FCALL tk_lock_extend 1 l tok 30000",
            ),
            (
                "TK.SESSION.CREATE s i u 1h d",
                "FCALL tk_session_create 2 s i u 1h d",
            ),
            (
                "TK.SESSION.TOUCH s IDLE 5m",
                "FCALL tk_session_touch 1 s IDLE 5m",
            ),
            ("TK.SESSION.GET s", "FCALL tk_session_get 1 s"),
            (
                "TK.SESSION.SET s d IFVERSION 3",
                "FCALL tk_session_set 1 s d IFVERSION 3",
            ),
            ("TK.SESSION.DESTROY s i", "FCALL tk_session_destroy 2 s i"),
            ("TK.SESSION.ROTATE o n i", "FCALL tk_session_rotate 3 o n i"),
            ("TK.SESSION.LIST i", "FCALL tk_session_list 1 i"),
            (
                "TK.SESSION.REVOKEALL i EXCEPT s",
                "FCALL tk_session_revokeall 1 i EXCEPT s",
            ),
            ("TK.CACHE.GET e g ns", "FCALL tk_cache_get 2 e g ns"),
            (
                "TK.CACHE.SET e g i ns 5m v",
                "FCALL tk_cache_set 3 e g i ns 5m v",
            ),
            (
                "TK.CACHE.INVALIDATEUSER g i",
                "FCALL tk_cache_invalidateuser 2 g i",
            ),
            (
                "TK.CACHE.INVALIDATENS g i ns",
                "FCALL tk_cache_invalidatens 2 g i ns",
            ),
        ] {
            let module: Vec<&str> = module.split(' ').collect();
            let translated = to_fcall(&command(&module)).unwrap();
            assert_eq!(words(&translated).join(" "), fcall, "{module:?}");
        }
        // Every command of the table was checked above.
        assert_eq!(COMMANDS.len(), 19);
        for (name, _) in COMMANDS {
            assert!(is_module_command(name));
            assert!(
                LIBRARY_SOURCE.contains(&format!("'{}'", function_name(name))),
                "{name}"
            );
        }
    }

    #[test]
    fn binary_arguments_are_kept_and_others_refused() {
        let mut cmd = redis::cmd("TK.SESSION.SET");
        cmd.arg(b"s\xff\x00".as_slice()).arg(b"\x00\x01".as_slice());
        let fcall = to_fcall(&cmd).unwrap();
        let args: Vec<Vec<u8>> = fcall
            .args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => bytes.to_vec(),
                _ => panic!("cursor"),
            })
            .collect();
        assert_eq!(args[3], b"s\xff\x00");
        assert_eq!(args[4], b"\x00\x01");
        assert!(matches!(
            to_fcall(&redis::cmd("GET")),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            to_fcall(&command(&["TK.RATELIMIT.ALL", "x", "a"])),
            Err(Error::InvalidArgument(_))
        ));
        assert!(!is_module_command("ZADD"));
        assert!(is_module_command("tk.ratelimit"));
    }

    #[test]
    fn modes_parse_in_any_case() {
        for (text, mode) in [
            ("auto", TkMode::Auto),
            ("MODULE", TkMode::Module),
            ("Functions", TkMode::Functions),
        ] {
            assert_eq!(text.parse::<TkMode>(), Ok(mode));
            assert!(mode.to_string().eq_ignore_ascii_case(text));
        }
        assert!("lua".parse::<TkMode>().is_err());
        assert_eq!(TkMode::default(), TkMode::Auto);
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
