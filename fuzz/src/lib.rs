//! The tk module's pure code (argument parser, rate-limit algorithms, lock
//! rules and their argument parsing), compiled without Redis so libFuzzer
//! can drive it.
//! The command layer is left out by `#[cfg(not(fuzzing))]` in the module.
#![allow(dead_code)]

#[path = "../../module/src/args.rs"]
pub mod args;
#[path = "../../module/src/cache/mod.rs"]
pub mod cache;
#[path = "../../module/src/effect.rs"]
pub mod effect;
#[path = "../../module/src/error.rs"]
pub mod error;
#[path = "../../module/src/keys.rs"]
pub mod keys;
#[path = "../../module/src/lock/mod.rs"]
pub mod lock;
#[path = "../../module/src/ratelimit/mod.rs"]
pub mod ratelimit;
#[path = "../../module/src/session/mod.rs"]
pub mod session;

/// Splits fuzz input into command arguments at 0x00 bytes (argv[0] is a
/// placeholder command name, as Redis passes it).
pub fn split_args(data: &[u8]) -> Vec<&[u8]> {
    let mut args: Vec<&[u8]> = vec![b"tk.fuzz"];
    if !data.is_empty() {
        args.extend(data.split(|&byte| byte == 0));
    }
    args
}
