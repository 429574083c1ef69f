//! tk-redis's pure core: everything the module decides, without Redis.
//!
//! No Redis types and no I/O here: the module (`module/`) reads keys, calls
//! these functions with what it read and `now`, and applies the
//! [`effect::Effect`]s they return; the fuzzers and the benches drive them
//! directly; the client shares the key rules and limits.
//!
//! - [`args`]: the one argument grammar and strict decimal parser;
//! - [`keys`]: Cluster slots (CRC16) and the key-name rules;
//! - [`effect`]: the writes a decision returns;
//! - [`error`]: the command errors and their stable prefixes;
//! - one module per command family: [`ratelimit`] (GCRA, sliding window,
//!   fixed window), [`session`], [`cache`], [`lock`]: limits, argument
//!   parsing (`parse`), rules and plans.

pub mod args;
pub mod cache;
pub mod effect;
pub mod error;
pub mod keys;
pub mod lock;
pub mod ratelimit;
pub mod session;
