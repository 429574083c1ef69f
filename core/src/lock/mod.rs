//! A correct single-instance distributed lock with fencing tokens.
//!
//! Two native string keys per lock name:
//!
//! - the **lock key** holds the owner's token (1 to [`MAX_TOKEN_LEN`] bytes,
//!   chosen at random by the client) and expires at an absolute time
//!   (`PXAT`): when the owner disappears, the lock frees itself;
//! - the **fence key** holds a decimal counter that never expires: every
//!   successful acquire increments it and hands the new value to the owner
//!   as its *fencing token*. Because it outlives the lock key, fencing tokens
//!   keep increasing across expiries, so a protected resource can refuse a
//!   holder whose token is older than one it has already seen.
//!
//! `rules` is the pure decision logic (current holder, fence, token, `now`,
//! TTL in; decision and effects out), `parse` the argument parsing, both free
//! of Redis types so unit tests, proptests and the fuzzers drive them
//! directly. The module's `lock/command.rs` is the thin glue.

pub mod parse;
pub mod rules;

use std::fmt;

/// Longest owner token accepted, in bytes (the client sends 32 hex digits).
pub const MAX_TOKEN_LEN: u64 = 128;

/// Longest TTL one ACQUIRE or EXTEND grants: one day. A holder that needs
/// longer extends before the TTL runs out.
pub const MAX_TTL_MS: u64 = 24 * 3600 * 1000;

/// Largest fencing token: fits a Redis integer reply (and `INCR`).
pub const MAX_FENCE: u64 = i64::MAX as u64;

/// Why a lock command is refused once its keys are read. Renders with its
/// reply prefix (`WRONGTYPE` or `ERR`); nothing is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockError {
    /// The fence key holds a string that is not a fence counter (a canonical
    /// decimal between 0 and [`MAX_FENCE`]), e.g. one set by hand.
    BadFence,
    /// The fence counter is at [`MAX_FENCE`]: no larger token can be issued.
    FenceExhausted,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::BadFence => write!(
                f,
                "WRONGTYPE fence key holds a string that is not a fence counter (a decimal integer from 0 to {MAX_FENCE})"
            ),
            LockError::FenceExhausted => write!(
                f,
                "ERR the fence counter is at its maximum ({MAX_FENCE}); no larger fencing token can be issued"
            ),
        }
    }
}
