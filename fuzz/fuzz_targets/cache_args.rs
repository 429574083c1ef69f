//! Any argument vector: the TK.CACHE parsers never panic, every rejection is
//! an `ERR` reply, and accepted namespaces and tokens are well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tk_redis_fuzz::cache::generation::Generations;
use tk_redis_fuzz::cache::parse::{
    parse_get, parse_invalidate_namespace, parse_invalidate_user, parse_set, validate_namespace,
};
use tk_redis_fuzz::split_args;

fuzz_target!(|data: &[u8]| {
    let args = split_args(data);
    match parse_get(&args[..]) {
        Ok(parsed) => assert!(validate_namespace(parsed.namespace).is_ok()),
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
    match parse_set(&args[..]) {
        Ok(parsed) => {
            assert!(validate_namespace(parsed.namespace).is_ok());
            if let Some(generations) = parsed.if_generations {
                let token = generations.token();
                assert_eq!(Generations::parse(token.as_bytes()), Some(generations));
            }
        }
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
    for result in [
        parse_invalidate_user(&args[..]),
        parse_invalidate_namespace(&args[..]),
    ] {
        if let Err(error) = result {
            assert!(error.to_string().starts_with("ERR "));
        }
    }
    let _ = Generations::parse(data);
});
