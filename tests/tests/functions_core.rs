//! The Functions library against the pure core (`tk-redis-core`, the code
//! the module runs), with time passing: random sequences of rate-limit
//! calls with periods of a fraction of a second and random sleeps between
//! them, so windows roll over, TATs fall behind the clock and keys expire.
//!
//! Each call is bracketed by the server's `TIME` in one pipeline:
//! `GET, PEXPIRETIME, TIME, FCALL, GET, PEXPIRETIME, TIME`. The library
//! reads the clock once, in whole microseconds, somewhere in that bracket;
//! the core is asked at every microsecond of it, and the library's reply
//! and the state it left must be the core's at one of them. So the
//! comparison is exact, and a slow call on a loaded machine only widens the
//! bracket: nothing here depends on timing. (A state whose expiry falls
//! inside the bracket may or may not be gone when read: both sides count
//! it as gone.)

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::{RedisResult, Value};
use tk_redis_core::ratelimit::{decide, Algorithm, Quota, Write};
use tk_redis_tests::functions::functions_server;
use tk_redis_tests::raw::query;
use tk_redis_tests::Conn;

/// A key's value and absolute expiry (ms; `None` without one).
type State = Option<(Vec<u8>, Option<u64>)>;

/// What one bracketed call showed.
struct Observed {
    before: State,
    /// The bracket, in µs of the server's clock.
    from_us: u64,
    to_us: u64,
    reply: Result<Vec<i64>, String>,
    after: State,
}

fn state(value: &RedisResult<Value>, expiry: &RedisResult<Value>) -> State {
    let value: Option<Vec<u8>> = redis::from_redis_value(value.clone().unwrap()).unwrap();
    let expiry: i64 = redis::from_redis_value(expiry.clone().unwrap()).unwrap();
    value.map(|value| (value, u64::try_from(expiry).ok()))
}

fn time_us(reply: &RedisResult<Value>) -> u64 {
    let (seconds, micros): (u64, u64) = redis::from_redis_value(reply.clone().unwrap()).unwrap();
    seconds * 1_000_000 + micros
}

/// Sends `fcall` on `key` bracketed as described above.
async fn bracketed(conn: &mut Conn, key: &str, fcall: redis::Cmd) -> Observed {
    let mut pipe = redis::pipe();
    pipe.cmd("GET")
        .arg(key)
        .cmd("PEXPIRETIME")
        .arg(key)
        .cmd("TIME");
    pipe.add_command(fcall);
    pipe.cmd("GET")
        .arg(key)
        .cmd("PEXPIRETIME")
        .arg(key)
        .cmd("TIME");
    let replies: Vec<RedisResult<Value>> = pipe
        .ignore_errors()
        .query_async(&mut conn.plain())
        .await
        .expect("the pipeline's replies");
    let reply = match &replies[3] {
        Ok(value) => Ok(redis::from_redis_value(value.clone()).unwrap()),
        Err(e) => Err(tk_redis_tests::raw::error_text(e)),
    };
    Observed {
        before: state(&replies[0], &replies[1]),
        from_us: time_us(&replies[2]),
        reply,
        after: state(&replies[4], &replies[5]),
        to_us: time_us(&replies[6]),
    }
}

/// `state`, or `None` when it expires by `to_us` (see the header).
fn live(state: State, to_us: u64) -> State {
    state.filter(|(_, expiry)| expiry.is_none_or(|ms| ms > to_us / 1000 + 1))
}

/// The core's reply and resulting state for a call at `now_us`.
fn core_at(
    algorithm: Algorithm,
    quota: &Quota,
    cost: u64,
    peek: bool,
    before: &State,
    now_us: u64,
) -> (Result<Vec<i64>, String>, State) {
    let mut out = Vec::new();
    let stored = before
        .as_ref()
        .map(|(value, expiry)| (value.as_slice(), *expiry));
    let Ok(outcome) = decide(algorithm, stored, now_us * 1000, quota, cost, &mut out) else {
        return (Err("WRONGTYPE".into()), before.clone());
    };
    let d = outcome.decision;
    let reply = [
        i64::from(d.allowed),
        d.limit as i64,
        d.remaining as i64,
        d.retry_after_ms as i64,
        d.reset_after_ms as i64,
    ]
    .to_vec();
    let after = match outcome.write {
        Write::Set { expire_at_ms } if !peek => Some((out, Some(expire_at_ms))),
        _ => before.clone(),
    };
    (Ok(reply), after)
}

/// One random call: an algorithm with a short period, a cost, PEEK or not.
fn random_call(rng: &mut StdRng) -> (Algorithm, Quota, u64, bool) {
    let algorithm = [Algorithm::Gcra, Algorithm::Sliding, Algorithm::Fixed][rng.random_range(0..3)];
    let limit = rng.random_range(1..=6);
    let period_ms = [50, 120, 250, 400][rng.random_range(0..4)];
    let burst = if algorithm == Algorithm::Gcra {
        rng.random_range(1..=8)
    } else {
        limit
    };
    let quota = Quota {
        limit,
        period_ms,
        burst,
    };
    let capacity = quota.capacity(algorithm);
    let cost = rng.random_range(0..=capacity);
    (algorithm, quota, cost, rng.random_bool(0.2))
}

fn fcall(key: &str, algorithm: Algorithm, quota: &Quota, cost: u64, peek: bool) -> redis::Cmd {
    let mut cmd = redis::cmd(if peek { "FCALL_RO" } else { "FCALL" });
    cmd.arg(if peek {
        "tk_ratelimit_peek"
    } else {
        "tk_ratelimit"
    })
    .arg(1)
    .arg(key)
    .arg(quota.limit)
    .arg(format!("{}ms", quota.period_ms))
    .arg("COST")
    .arg(cost)
    .arg("ALGO")
    .arg(algorithm.name());
    if algorithm == Algorithm::Gcra {
        cmd.arg("BURST").arg(quota.burst);
    }
    cmd
}

#[tokio::test]
async fn the_library_decides_as_the_core_at_an_instant_of_each_call() {
    let server = functions_server().await;
    let mut conn = server.conn().await;
    let mut checked = 0;
    let (mut admitted, mut refused) = (0, 0);
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let _: () = query(&mut conn, &["FLUSHALL"]).await;
        for step in 0..120 {
            // Each algorithm keeps its own keys (another's state is WRONGTYPE).
            let (algorithm, quota, cost, peek) = random_call(&mut rng);
            let key = format!("rl:{}:{}", algorithm.name(), rng.random_range(0..3));
            let observed =
                bracketed(&mut conn, &key, fcall(&key, algorithm, &quota, cost, peek)).await;
            let to_us = observed.to_us;
            let core = |now_us| core_at(algorithm, &quota, cost, peek, &observed.before, now_us);
            let library = (observed.reply.clone(), live(observed.after.clone(), to_us));
            let matched = (observed.from_us..=to_us).any(|now_us| {
                let (reply, after) = core(now_us);
                (reply, live(after, to_us)) == library
            });
            assert!(
                matched,
                "seed {seed}, step {step}: {key} {algorithm:?} {quota:?} cost {cost} peek {peek}\n\
                 before {:?}\nlibrary {:?} leaving {:?}\ncore at the bracket's ends: {:?} / {:?}",
                observed.before,
                observed.reply,
                observed.after,
                core(observed.from_us),
                core(to_us),
            );
            match observed.reply.as_deref() {
                Ok([1, ..]) => admitted += 1,
                Ok(_) => refused += 1,
                Err(_) => {}
            }
            checked += 1;
            if rng.random_bool(0.3) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(1..=150))).await;
            }
        }
    }
    // The sequences exercised both outcomes.
    assert!(
        admitted > 50 && refused > 50,
        "{checked} calls: {admitted} admitted, {refused} refused"
    );
}
