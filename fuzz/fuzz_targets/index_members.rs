//! Any index name and any listed member: a member the naming rule accepts
//! always carries its index's prefix and hash tag, so it hashes to the
//! index's slot. Whatever an attacker writes into an index, the commands
//! that read it back never leave that prefix and slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tk_redis_fuzz::keys::{slot, CacheKeys, SessionIndex, CACHE_ENTRY_PREFIX, SESSION_PREFIX};
use tk_redis_fuzz::split_args;

fuzz_target!(|data: &[u8]| {
    let args = split_args(data);
    let (Some(index), Some(member)) = (args.get(1), args.get(2)) else {
        return;
    };
    if let Ok(sessions) = SessionIndex::parse(index) {
        assert!(!sessions.user().is_empty());
        if sessions.lists(member) {
            assert!(member.starts_with(SESSION_PREFIX.as_bytes()));
            assert_eq!(slot(member), slot(index));
        }
    }
    if let Ok(cache) = CacheKeys::of_index(index) {
        if cache.lists(member) {
            assert!(member.starts_with(CACHE_ENTRY_PREFIX.as_bytes()));
            assert_eq!(slot(member), slot(index));
        }
        if cache.check_generations(member).is_ok() {
            assert_eq!(slot(member), slot(index));
        }
    }
});
