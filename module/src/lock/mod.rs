//! TK.LOCK.*: the rules are in `tk_redis_core::lock`; this is their
//! command layer.

pub use tk_redis_core::lock::*;

pub mod command;
