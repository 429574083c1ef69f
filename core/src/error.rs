//! Errors a command can reply with.
//!
//! Every reply error starts with one of two stable prefixes:
//! - `ERR` — the arguments are wrong (arity, numbers, options, a COST that
//!   can never fit). Nothing was read or written.
//! - `WRONGTYPE` — a key holds something this command does not own: another
//!   Redis type, or a string that is not this algorithm's state (or, for
//!   the lock, a fence key that is not a counter). Nothing was written.
//!
//! The text after the prefix is for humans and may be improved; clients match
//! on the prefix.

use std::fmt;

use crate::args::ArgError;
use crate::keys::BadKeyName;
use crate::lock::LockError;
use crate::ratelimit::QuotaError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Args(ArgError),
    Quota(QuotaError),
    /// A lock's keys hold something the lock commands cannot use; renders
    /// with its own prefix (`WRONGTYPE` or `ERR`).
    Lock(LockError),
    /// The key holds another Redis type.
    WrongType,
    /// The key is a string, but not one this command wrote (for example a
    /// GCRA key used with ALGO SLIDING, or a value set by hand).
    ForeignValue {
        expected: &'static str,
    },
    /// A key of the right Redis type holds data tk did not write (e.g. a
    /// cache generations hash edited by hand). Renders as `WRONGTYPE <what>`.
    Foreign(&'static str),
    /// The arguments are fine but the state refuses the operation (e.g.
    /// `session already exists`). Renders as `ERR <what>`.
    Refused(&'static str),
    /// A nested Redis call failed; should not happen.
    Internal(&'static str),
}

impl From<ArgError> for CommandError {
    fn from(error: ArgError) -> Self {
        CommandError::Args(error)
    }
}

impl From<QuotaError> for CommandError {
    fn from(error: QuotaError) -> Self {
        CommandError::Quota(error)
    }
}

impl From<BadKeyName> for CommandError {
    fn from(error: BadKeyName) -> Self {
        CommandError::Refused(error.0)
    }
}

impl From<LockError> for CommandError {
    fn from(error: LockError) -> Self {
        CommandError::Lock(error)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Args(error) => error.fmt(f),
            CommandError::Quota(error) => write!(f, "ERR {error}"),
            CommandError::Lock(error) => error.fmt(f),
            CommandError::WrongType => {
                f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            CommandError::ForeignValue { expected } => write!(
                f,
                "WRONGTYPE key holds a string that is not {expected} state (another algorithm's, or set by hand); TK.RATELIMIT.RESET it first"
            ),
            CommandError::Foreign(what) => write!(f, "WRONGTYPE {what}"),
            CommandError::Refused(what) => write!(f, "ERR {what}"),
            CommandError::Internal(what) => write!(f, "ERR internal error: {what}"),
        }
    }
}
