//! TK.CACHE.*: the rules and plans are in `tk_redis_core::cache`; this is
//! their command layer and the background reclaimer.

pub use tk_redis_core::cache::*;

pub mod command;
pub mod reclaim;

/// An entry's fields as GET reads them, kept as Redis strings.
pub static ENTRY_FIELDS: crate::keyapi::FieldNames<4> =
    crate::keyapi::FieldNames::new(ENTRY_FIELD_NAMES);
/// The generations hash's user field, kept as a Redis string.
pub static GENERATION_FIELDS: crate::keyapi::FieldNames<1> =
    crate::keyapi::FieldNames::new(GENERATION_FIELD_NAMES);
