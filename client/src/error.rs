//! The crate's error type and the mapping from [`redis::RedisError`].

use redis::{ErrorKind, RedisError};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a call into the tk module can fail with.
///
/// The variants separate what the caller can act on:
///
/// - [`Error::ModuleNotLoaded`]: deployment problem; the server answered
///   but does not know the `TK.*` commands.
/// - [`Error::NoBackend`]: deployment problem; the module is not loaded
///   and the Functions library cannot be used (ACL, old server).
/// - [`Error::Server`]: the module (or Redis) refused the command, e.g.
///   `ERR` for bad arguments or `WRONGTYPE` when the key holds something
///   else. Retrying the same call will fail the same way.
/// - [`Error::Connection`] and [`Error::Timeout`]: the server could not be
///   reached, did not answer in time, or is in the middle of a failover
///   (see [`Error::Connection`]). These are the transient ones; a rate
///   limiter usually decides here whether to fail open or closed. Note that a
///   timed-out call may still have been executed by the server.
/// - [`Error::InvalidQuota`] and [`Error::InvalidArgument`]: rejected on the
///   client before anything was sent.
/// - [`Error::UnexpectedReply`]: the server's reply did not have the
///   documented shape (usually a client/module version mismatch).
///
/// ```no_run
/// # async fn demo(locks: tk_redis::Lock) {
/// use std::time::Duration;
/// use tk_redis::Error;
///
/// match locks.try_acquire("reports", Duration::from_secs(30)).await {
///     Ok(Some(guard)) => println!("fence {}", guard.fence()),
///     Ok(None) => println!("busy"),
///     Err(err) if err.is_transient() => println!("Redis unreachable, try later: {err}"),
///     Err(err @ Error::ModuleNotLoaded { .. }) => panic!("deployment problem: {err}"),
///     Err(err) => println!("refused: {err}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server does not know the command: the tk module is not loaded
    /// (or is too old to have this command).
    #[error(
        "the tk Redis module is not loaded on this server (command {command} unknown): \
         start redis-server with `--loadmodule /path/to/libtk_redis.so` \
         or run `MODULE LOAD /path/to/libtk_redis.so`"
    )]
    ModuleNotLoaded {
        /// The command the server did not recognise, e.g. `TK.RATELIMIT`.
        command: &'static str,
    },

    /// Neither backend can serve the tk commands on this server: the
    /// module is not loaded (or [`TkMode::Functions`](crate::TkMode::Functions)
    /// was asked for) and the tk Functions library cannot be used, because
    /// the server has no Redis Functions (Redis before 7.0, Valkey before
    /// 7.2), or the ACL user may not call the library (grant
    /// `+fcall +fcall_ro`), or may not load it while it is missing or older
    /// than this crate's (grant `+function|load`, or have an administrator
    /// load [`LIBRARY_SOURCE`](crate::functions::LIBRARY_SOURCE)). The
    /// message says which, and what to grant or install.
    #[error("no usable tk backend: {code} {message}")]
    NoBackend {
        /// The refusing reply's code, e.g. `NOPERM` or `ERR`.
        code: String,
        /// The server's message, followed by what to grant or install.
        message: String,
    },

    /// An error reply from the server, e.g. `ERR limit must be between ...`
    /// or `WRONGTYPE Operation against a key holding the wrong kind of value`.
    #[error("server error: {code}{sep}{message}", sep = if message.is_empty() { "" } else { " " })]
    Server {
        /// The error code: the reply's first word, e.g. `ERR` or `WRONGTYPE`.
        code: String,
        /// The rest of the error reply (may be empty).
        message: String,
    },

    /// The connection failed: I/O error, refused or dropped connection,
    /// authentication failure, invalid URL, cluster without a reachable node,
    /// no primary known to Sentinel...
    ///
    /// Also the replies a server sends instead of executing a command while
    /// a failover or a restart is in progress, which the redis crate reports
    /// as server errors: `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, `LOADING`,
    /// `READONLY` (a write reached a primary that was demoted to replica)
    /// and `NOREPLICAS` (a primary with `min-replicas-to-write` has too few
    /// replicas in sync, e.g. right after a failover). The error keeps the
    /// reply's code ([`RedisError::code`]).
    #[error("redis connection error: {0}")]
    Connection(#[source] RedisError),

    /// No reply within the limiter's timeout (see
    /// [`RateLimiter::with_timeout`](crate::RateLimiter::with_timeout)), or
    /// the redis client's own I/O timeout fired. The command may or may not
    /// have been executed by the server.
    #[error("timed out waiting for the redis server")]
    Timeout,

    /// The quota cannot be sent (zero limit, zero burst, period shorter than
    /// one millisecond, BURST with a non-GCRA algorithm...).
    #[error("invalid quota: {0}")]
    InvalidQuota(String),

    /// Another argument was rejected before sending (e.g. an empty list of
    /// limits).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The reply did not have the shape documented for the command.
    #[error("unexpected reply from the tk module: {0}")]
    UnexpectedReply(String),
}

impl Error {
    /// Whether this is [`Error::ModuleNotLoaded`].
    pub fn is_module_not_loaded(&self) -> bool {
        matches!(self, Error::ModuleNotLoaded { .. })
    }

    /// Whether the failure is transient (connection problem or timeout), so
    /// that retrying later, or failing open, is reasonable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Connection(_) | Error::Timeout)
    }

    /// Maps an error raised while connecting or looking for a server: no
    /// command was sent, so none of it can mean "module not loaded".
    pub(crate) fn connecting(err: RedisError) -> Error {
        Error::from_redis(err, "")
    }

    /// Maps an error returned by the redis client for `command` (a `TK.*`
    /// command name as sent).
    pub(crate) fn from_redis(err: RedisError, command: &'static str) -> Error {
        // Anything the server sent as an error reply carries a code
        // (`ErrorKind::Server(_)` for the codes redis-rs knows, such as ERR,
        // and `ErrorKind::Extension` for the others, such as WRONGTYPE).
        if matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
            if let Some(code) = err.code() {
                if is_unavailable_code(code) {
                    return Error::Connection(err);
                }
                let message = err.detail().unwrap_or_default();
                if is_unknown_command(command, message) {
                    return Error::ModuleNotLoaded { command };
                }
                return Error::Server {
                    code: code.to_owned(),
                    message: message.to_owned(),
                };
            }
        }
        if err.is_timeout() {
            return Error::Timeout;
        }
        Error::Connection(err)
    }
}

/// Error codes of a server that cannot serve the command *now* (failover,
/// restart, resharding, replicas lagging): transient, like a lost
/// connection. Redis sends them before running the command, so it was not
/// executed.
pub(crate) fn is_unavailable_code(code: &str) -> bool {
    matches!(
        code,
        "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "LOADING" | "READONLY" | "NOREPLICAS"
    )
}

/// Whether an error reply's text (after the code) says the command is
/// unknown. Redis wording varies between versions ("unknown command
/// 'X', with args beginning with: ", "unknown command `X`, ..."), so only
/// the phrase is matched, case-insensitively, and only for our `TK.`
/// commands.
fn is_unknown_command(command: &str, message: &str) -> bool {
    let ours = command
        .get(..3)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("TK."));
    ours && contains_ignore_ascii_case(message, "unknown command")
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Builds the error redis-rs produces for a RESP error line such as
    /// `-ERR unknown command ...`.
    fn server_error(line: &str) -> RedisError {
        let raw = format!("-{line}\r\n");
        redis::parse_redis_value(raw.as_bytes())
            .expect("valid RESP")
            .extract_error()
            .expect_err("an error reply")
    }

    #[test]
    fn unknown_command_means_module_not_loaded() {
        for line in [
            "ERR unknown command 'TK.RATELIMIT', with args beginning with: 'k' '10' '1000' ",
            "ERR unknown command `TK.RATELIMIT`, with args beginning with: `k`, ",
            "ERR Unknown Command 'tk.ratelimit'",
            "ERR unknown command 'TK.RATELIMIT'",
        ] {
            let err = Error::from_redis(server_error(line), "TK.RATELIMIT");
            assert!(
                matches!(
                    err,
                    Error::ModuleNotLoaded {
                        command: "TK.RATELIMIT"
                    }
                ),
                "{line}: {err:?}"
            );
            assert!(err.is_module_not_loaded());
        }
    }

    #[test]
    fn module_not_loaded_message_says_how_to_load_it() {
        let err = Error::ModuleNotLoaded {
            command: "TK.RATELIMIT",
        };
        assert_eq!(
            err.to_string(),
            "the tk Redis module is not loaded on this server (command TK.RATELIMIT unknown): \
             start redis-server with `--loadmodule /path/to/libtk_redis.so` \
             or run `MODULE LOAD /path/to/libtk_redis.so`"
        );
    }

    #[test]
    fn unknown_command_for_other_commands_is_a_server_error() {
        let err = Error::from_redis(server_error("ERR unknown command 'GETX'"), "GETX");
        match err {
            Error::Server { code, message } => {
                assert_eq!(code, "ERR");
                assert_eq!(message, "unknown command 'GETX'");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn err_reply_keeps_code_and_message() {
        let err = Error::from_redis(
            server_error("ERR limit must be between 1 and 1000000"),
            "TK.RATELIMIT",
        );
        match &err {
            Error::Server { code, message } => {
                assert_eq!(code, "ERR");
                assert_eq!(message, "limit must be between 1 and 1000000");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "server error: ERR limit must be between 1 and 1000000"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn wrongtype_reply_keeps_its_code() {
        let err = Error::from_redis(
            server_error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            "TK.RATELIMIT",
        );
        match err {
            Error::Server { code, message } => {
                assert_eq!(code, "WRONGTYPE");
                assert_eq!(
                    message,
                    "Operation against a key holding the wrong kind of value"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn extension_error_built_directly() {
        let raw = redis::make_extension_error("WRONGTYPE".to_owned(), None);
        let err = Error::from_redis(raw, "TK.RATELIMIT.PEEK");
        match &err {
            Error::Server { code, message } => {
                assert_eq!(code, "WRONGTYPE");
                assert_eq!(message, "");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.to_string(), "server error: WRONGTYPE");
    }

    #[test]
    fn unknown_command_detection_needs_an_error_reply() {
        // The phrase inside a client-side error is not a server reply.
        let raw = RedisError::from((
            ErrorKind::Client,
            "client error",
            "unknown command".to_owned(),
        ));
        assert!(matches!(
            Error::from_redis(raw, "TK.RATELIMIT"),
            Error::Connection(_)
        ));
    }

    #[test]
    fn io_errors_are_connection_errors() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::ConnectionReset,
        ] {
            let err = Error::from_redis(RedisError::from(io::Error::from(kind)), "TK.RATELIMIT");
            assert!(matches!(err, Error::Connection(_)), "{kind:?}: {err:?}");
            assert!(err.is_transient());
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    #[test]
    fn io_timeouts_are_timeouts() {
        let raw = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(matches!(
            Error::from_redis(raw, "TK.RATELIMIT"),
            Error::Timeout
        ));
    }

    #[test]
    fn auth_failures_are_connection_errors() {
        let raw = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert!(matches!(
            Error::from_redis(raw, "TK.RATELIMIT"),
            Error::Connection(_)
        ));
    }

    #[test]
    fn failover_replies_are_transient() {
        for line in [
            "CLUSTERDOWN The cluster is down",
            "CLUSTERDOWN Hash slot not served",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "NOREPLICAS Not enough good replicas to write.",
        ] {
            let err = Error::from_redis(server_error(line), "TK.RATELIMIT");
            match &err {
                Error::Connection(inner) => {
                    assert_eq!(inner.code(), line.split(' ').next(), "{line}");
                }
                other => panic!("{line}: {other:?}"),
            }
            assert!(err.is_transient(), "{line}");
        }
        // Redirections and cross-slot requests are not: the cluster
        // connection follows redirections itself, so one that reaches the
        // caller almost always means a standalone connection to a cluster
        // node (and CROSSSLOT, keys without a common hash tag).
        for line in [
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "CROSSSLOT Keys in request don't hash to the same slot",
        ] {
            let err = Error::from_redis(server_error(line), "TK.RATELIMIT.ALL");
            assert!(matches!(err, Error::Server { .. }), "{line}: {err:?}");
            assert!(!err.is_transient(), "{line}");
        }
    }

    #[test]
    fn cluster_and_sentinel_client_errors_are_transient() {
        for kind in [
            ErrorKind::ClusterConnectionNotFound,
            ErrorKind::MasterNameNotFoundBySentinel,
        ] {
            let err = Error::from_redis(RedisError::from((kind, "gone")), "TK.RATELIMIT");
            assert!(matches!(err, Error::Connection(_)), "{kind:?}: {err:?}");
            assert!(err.is_transient());
        }
    }

    #[test]
    fn substring_search() {
        assert!(contains_ignore_ascii_case(
            "xx UNKNOWN command",
            "unknown command"
        ));
        assert!(!contains_ignore_ascii_case("unknown", "unknown command"));
        assert!(contains_ignore_ascii_case("", ""));
        assert!(!is_unknown_command("T", "unknown command"));
        assert!(is_unknown_command("tk.ratelimit.all", "unknown command"));
    }
}
