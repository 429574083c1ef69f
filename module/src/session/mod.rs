//! TK.SESSION.*: the rules and plans are in `tk_redis_core::session`; this
//! is their command layer.

pub use tk_redis_core::session::*;

pub mod command;

/// Every field, in the order of the session reply, kept as Redis strings
/// (what a session read fetches).
pub static FIELDS: crate::keyapi::FieldNames<8> = crate::keyapi::FieldNames::new(FIELD_NAMES);
