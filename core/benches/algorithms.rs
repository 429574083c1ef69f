//! Criterion micro-benchmarks of the module's pure code: the GCRA decision,
//! the sliding log's trim + append, the fixed window, and argument parsing.
//! No Redis server is needed, so regressions show up in `cargo bench`:
//!
//! ```text
//! cargo bench -p tk-redis-core --bench algorithms
//! ```
//!
//! (Part of `tk-redis-core`: `cargo bench -p tk-redis-core --bench algorithms`.)

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use tk_redis_core::ratelimit::{decide, Algorithm, Quota, Write, NANOS_PER_MS};
use tk_redis_core::{args, ratelimit};

/// 2026-01-01 in ns: a realistic clock.
const NOW: u64 = 1_767_225_600_000 * NANOS_PER_MS;

fn quota() -> Quota {
    Quota {
        limit: 100,
        period_ms: 60_000,
        burst: 100,
    }
}

/// The state (value and expiry) after `n` admitted requests `gap_ms`
/// apart, ending at `NOW`.
fn state_after(algorithm: Algorithm, n: u64, gap_ms: u64) -> (Vec<u8>, Option<u64>) {
    let q = quota();
    let mut state: Option<(Vec<u8>, Option<u64>)> = None;
    let mut out = Vec::new();
    for i in 0..n {
        let now = NOW - (n - 1 - i) * gap_ms * NANOS_PER_MS;
        let stored = state.as_ref().map(|(value, at)| (&value[..], *at));
        let outcome = decide(algorithm, stored, now, &q, 1, &mut out).expect("valid state");
        if let Write::Set { expire_at_ms } = outcome.write {
            state = Some((out.clone(), Some(expire_at_ms)));
        }
    }
    state.unwrap_or_default()
}

fn bench_decisions(c: &mut Criterion) {
    let q = quota();
    let mut group = c.benchmark_group("decide");
    for algorithm in Algorithm::ALL {
        let name = algorithm.name().to_ascii_lowercase();
        // A fresh key (no state).
        group.bench_function(format!("{name}/new_key"), |b| {
            let mut out = Vec::with_capacity(64);
            b.iter(|| black_box(decide(algorithm, None, black_box(NOW), &q, 1, &mut out)))
        });
        // A live key that admits: 10 earlier requests, 600 ms apart.
        let live = state_after(algorithm, 10, 600);
        group.bench_function(format!("{name}/live_admit"), |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                black_box(decide(
                    algorithm,
                    Some((black_box(&live.0), live.1)),
                    black_box(NOW + 600 * NANOS_PER_MS),
                    &q,
                    1,
                    &mut out,
                ))
            })
        });
        // A full key that refuses: 100 requests 20 ms apart.
        let full = state_after(algorithm, 100, 20);
        group.bench_function(format!("{name}/full_refuse"), |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                black_box(decide(
                    algorithm,
                    Some((black_box(&full.0), full.1)),
                    black_box(NOW + NANOS_PER_MS),
                    &q,
                    1,
                    &mut out,
                ))
            })
        });
    }
    group.finish();
}

fn bench_sliding_trim(c: &mut Criterion) {
    // A full log (100 entries 600 ms apart, i.e. the whole 60 s window) one
    // period later: every request trims the oldest entry and appends one.
    let q = quota();
    let (full, _) = state_after(Algorithm::Sliding, 100, 600);
    let mut group = c.benchmark_group("sliding");
    group.bench_function("trim_append_100", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter_batched_ref(
            || full.clone(),
            |state| {
                black_box(ratelimit::sliding::decide(
                    Some(state),
                    NOW + 600 * NANOS_PER_MS,
                    &q,
                    1,
                    &mut out,
                ))
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode_100", |b| {
        b.iter(|| black_box(ratelimit::sliding::decode(black_box(&full))))
    });
    group.finish();
}

fn argv(words: &[&'static str]) -> Vec<&'static [u8]> {
    words.iter().map(|w| w.as_bytes()).collect()
}

fn bench_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let single = argv(&["TK.RATELIMIT", "rl:user:42", "100", "60s"]);
    group.bench_function("ratelimit", |b| {
        b.iter(|| {
            black_box(
                ratelimit::parse::parse_single(black_box(&single[..]), "tk.ratelimit").is_ok(),
            )
        })
    });
    let options = argv(&[
        "TK.RATELIMIT",
        "rl:user:42",
        "100",
        "60s",
        "COST",
        "2",
        "ALGO",
        "SLIDING",
    ]);
    group.bench_function("ratelimit_options", |b| {
        b.iter(|| {
            black_box(
                ratelimit::parse::parse_single(black_box(&options[..]), "tk.ratelimit").is_ok(),
            )
        })
    });
    let all = argv(&[
        "TK.RATELIMIT.ALL",
        "2",
        "rl:{u1}:s",
        "rl:{u1}:h",
        "10",
        "1s",
        "1000",
        "1h",
    ]);
    group.bench_function("ratelimit_all_2", |b| {
        b.iter(|| black_box(ratelimit::parse::parse_all(black_box(&all[..])).is_ok()))
    });
    group.bench_function("duration", |b| {
        b.iter(|| black_box(args::parse_duration_ms(black_box(b"1500ms"))))
    });
    group.finish();
}

criterion_group!(benches, bench_decisions, bench_sliding_trim, bench_parsing);
criterion_main!(benches);
