//! Any argument vector: the rate-limit parsers never panic, and every
//! rejection is an `ERR` reply; an accepted limit is always valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tk_redis_fuzz::ratelimit::parse::{parse_all, parse_single, MAX_ALL_KEYS};
use tk_redis_fuzz::split_args;

fuzz_target!(|data: &[u8]| {
    let args = split_args(data);
    match parse_single(&args[..], "tk.ratelimit") {
        Ok((key, spec)) => {
            assert_eq!(key, 1);
            assert!(spec.quota.validate(spec.algorithm, spec.cost).is_ok());
        }
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
    match parse_all(&args[..]) {
        Ok(parsed) => {
            assert!((1..=MAX_ALL_KEYS).contains(&parsed.count));
            assert!(parsed.specs[..parsed.count].iter().all(Option::is_some));
        }
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
});
