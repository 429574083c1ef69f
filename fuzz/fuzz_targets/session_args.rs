//! Any argument vector: the TK.SESSION parsers never panic, every rejection
//! is an `ERR` reply, and accepted options are within their bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tk_redis_fuzz::session::parse::{
    parse_create, parse_destroy, parse_revoke_all, parse_rotate, parse_set, parse_single_key,
    parse_touch,
};
use tk_redis_fuzz::session::{MAX_DURATION_MS, MAX_SESSIONS_CAP};
use tk_redis_fuzz::split_args;

fuzz_target!(|data: &[u8]| {
    let args = split_args(data);
    let is_err = |error: tk_redis_fuzz::error::CommandError| {
        assert!(error.to_string().starts_with("ERR "));
    };
    match parse_create(&args[..]) {
        Ok(parsed) => {
            assert!((1..=MAX_DURATION_MS).contains(&parsed.idle_ms));
            assert!((1..=MAX_DURATION_MS).contains(&parsed.max_lifetime_ms));
            if let Some((count, _)) = parsed.cap {
                assert!((1..=MAX_SESSIONS_CAP).contains(&count));
            }
        }
        Err(error) => is_err(error),
    }
    if let Err(error) = parse_touch(&args[..]) {
        is_err(error);
    }
    if let Err(error) = parse_single_key(&args[..], "tk.session.get") {
        is_err(error);
    }
    if let Err(error) = parse_set(&args[..]) {
        is_err(error);
    }
    if let Err(error) = parse_destroy(&args[..]) {
        is_err(error);
    }
    if let Err(error) = parse_rotate(&args[..]) {
        is_err(error);
    }
    if let Err(error) = parse_revoke_all(&args[..]) {
        is_err(error);
    }
});
