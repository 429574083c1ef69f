//! The tk module's pure code (`tk-redis-core`: argument parser, rate-limit
//! algorithms, session, cache and lock rules and their argument parsing),
//! re-exported for the fuzz targets.

pub use tk_redis_core::{args, cache, effect, error, keys, lock, ratelimit, session};

/// Splits fuzz input into command arguments at 0x00 bytes (argv[0] is a
/// placeholder command name, as Redis passes it).
pub fn split_args(data: &[u8]) -> Vec<&[u8]> {
    let mut args: Vec<&[u8]> = vec![b"tk.fuzz"];
    if !data.is_empty() {
        args.extend(data.split(|&byte| byte == 0));
    }
    args
}
