//! Any stored bytes, any valid quota, any time: deciding never panics and
//! its answer stays within the quota's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tk_redis_fuzz::ratelimit::{
    decide, Algorithm, Quota, Write, MAX_COUNT, MAX_SPAN_MS, NANOS_PER_MS,
};

fn take_u64(data: &mut &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let len = data.len().min(8);
    bytes[..len].copy_from_slice(&data[..len]);
    *data = &data[len..];
    u64::from_le_bytes(bytes)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let selector = take_u64(&mut data);
    let algorithm = Algorithm::ALL[(selector % 3) as usize];
    let limit = 1 + take_u64(&mut data) % MAX_COUNT;
    let period_ms = 1 + take_u64(&mut data) % MAX_SPAN_MS;
    let burst = 1 + take_u64(&mut data) % MAX_COUNT;
    let quota = Quota {
        limit,
        period_ms,
        burst: if algorithm == Algorithm::Gcra {
            burst
        } else {
            limit
        },
    };
    let cost = take_u64(&mut data) % (quota.capacity(algorithm) + 1);
    if quota.validate(algorithm, cost).is_err() {
        return;
    }
    // Realistic clocks: up to year ~2116 in ns.
    let now = take_u64(&mut data) % (1 << 62);
    let expire_at_ms = (selector & 8 != 0).then(|| take_u64(&mut data) % (1 << 44));
    let state = if selector & 4 == 0 {
        None
    } else {
        Some((data, expire_at_ms))
    };
    let mut out = Vec::new();
    if let Ok(outcome) = decide(algorithm, state, now, &quota, cost, &mut out) {
        let decision = outcome.decision;
        assert_eq!(decision.limit, limit);
        assert!(decision.remaining <= quota.capacity(algorithm));
        assert!(decision.allowed || decision.retry_after_ms > 0);
        if let Write::Set { expire_at_ms } = outcome.write {
            assert!(decision.allowed && cost > 0);
            assert!(expire_at_ms > now / NANOS_PER_MS);
            assert!(!out.is_empty());
        }
    }
});
