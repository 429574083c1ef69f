//! Any argument vector and any stored bytes: the lock parsers and rules
//! never panic, every rejection has its documented prefix, and a granted
//! acquire always issues a larger fence with an expiry after `now + ttl`.
//!
//! Input: `[selector u64][now u64][stored lock value] 0xFF 0xFF [stored fence] 0xFF 0xFF [argv split at 0x00]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tk_redis_fuzz::lock::parse::{parse_acquire, parse_extend, parse_release};
use tk_redis_fuzz::lock::rules::{self, Acquire, Extend, Holder, Release, NANOS_PER_MS};
use tk_redis_fuzz::lock::{MAX_FENCE, MAX_TOKEN_LEN, MAX_TTL_MS};
use tk_redis_fuzz::split_args;

fn take_u64(data: &mut &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let len = data.len().min(8);
    bytes[..len].copy_from_slice(&data[..len]);
    *data = &data[len..];
    u64::from_le_bytes(bytes)
}

/// Splits off the bytes before the next `0xFF 0xFF` (or all of them).
fn take_field<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    match data.windows(2).position(|pair| pair == [0xFF, 0xFF]) {
        Some(at) => {
            let field = &data[..at];
            *data = &data[at + 2..];
            field
        }
        None => std::mem::take(data),
    }
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let selector = take_u64(&mut data);
    // Realistic clocks: up to year ~2116 in ns.
    let now = take_u64(&mut data) % (1 << 62);
    let stored = take_field(&mut data);
    let fence = take_field(&mut data);
    let args = split_args(data);

    let holder = (selector & 1 == 1).then_some(Holder {
        token: stored,
        expire_at_ms: (selector & 2 == 2).then_some(selector >> 8),
    });
    let fence = (selector & 4 == 4).then_some(fence);

    match parse_acquire(&args[..]) {
        Ok(parsed) => {
            assert!((1..=MAX_TOKEN_LEN as usize).contains(&parsed.token.len()));
            assert!((1..=MAX_TTL_MS).contains(&parsed.ttl_ms));
            assert_ne!(args[parsed.lock_key], args[parsed.fence_key]);
            match rules::acquire(holder, fence, parsed.token, now, parsed.ttl_ms) {
                Ok(Acquire::Acquired {
                    fence: issued,
                    expire_at_ms,
                }) => {
                    let previous = fence.map_or(0, |f| rules::decode_fence(f).unwrap());
                    assert_eq!(issued, previous + 1);
                    assert!(issued <= MAX_FENCE);
                    assert!(holder.is_none_or(|h| h.token == parsed.token));
                    assert!(
                        u128::from(expire_at_ms) * u128::from(NANOS_PER_MS)
                            >= u128::from(now)
                                + u128::from(parsed.ttl_ms) * u128::from(NANOS_PER_MS)
                    );
                }
                Ok(Acquire::Busy { remaining_ms }) => {
                    let holder = holder.expect("busy only when held");
                    assert_ne!(holder.token, parsed.token);
                    assert_eq!(remaining_ms.is_some(), holder.expire_at_ms.is_some());
                    assert!(remaining_ms.is_none_or(|ms| ms >= 1));
                }
                Err(error) => {
                    let text = error.to_string();
                    assert!(text.starts_with("WRONGTYPE ") || text.starts_with("ERR "));
                }
            }
        }
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
    let value = holder.map(|h| h.token);
    match parse_release(&args[..]) {
        Ok(parsed) => {
            let released = rules::release(value, parsed.token) == Release::Released;
            assert_eq!(released, value == Some(parsed.token));
        }
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
    match parse_extend(&args[..]) {
        Ok(parsed) => match rules::extend(value, parsed.token, now, parsed.ttl_ms) {
            Extend::Extended { expire_at_ms } => {
                assert_eq!(value, Some(parsed.token));
                assert!(expire_at_ms > now / NANOS_PER_MS);
            }
            Extend::NotHeld => assert_ne!(value, Some(parsed.token)),
        },
        Err(error) => assert!(error.to_string().starts_with("ERR ")),
    }
});
