//! TK.RATELIMIT*: the algorithms are in `tk_redis_core::ratelimit`; this is
//! their command layer.

pub use tk_redis_core::ratelimit::*;

pub mod command;
