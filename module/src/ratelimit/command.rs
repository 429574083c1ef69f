//! TK.RATELIMIT, TK.RATELIMIT.PEEK, TK.RATELIMIT.ALL, TK.RATELIMIT.RESET.
//!
//! Each handler: parse (`parse.rs`, on the shared parser) → read `now` once →
//! open keys → decide (pure algorithms) → write and replicate effects →
//! reply. Replies are built directly on the connection, without
//! intermediate values; new states are built in reused buffers.

use std::cell::RefCell;

use crate::effect::{Effect, Target};
use crate::effects::{self, Keys};
use crate::error::CommandError;
use crate::glue::{Argv, Ctx};
use crate::keyapi::StringKey;
use crate::registry::CommandResult;
use crate::stats;

use super::parse::{parse_all, parse_reset, parse_single, reported_limit, LimitSpec, MAX_ALL_KEYS};
use super::{decide, Algorithm, Decision, Outcome, Write};

thread_local! {
    /// New states are built here and reused across calls (one per limit of
    /// ALL), so the hot path does not allocate once warm.
    static STATE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers above this size are released after the call rather than kept.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

fn with_buffers<T>(count: usize, body: impl FnOnce(&mut [Vec<u8>]) -> T) -> T {
    STATE_BUFFERS.with_borrow_mut(|buffers| {
        if buffers.len() < count {
            buffers.resize_with(count, Vec::new);
        }
        let result = body(&mut buffers[..count]);
        for buffer in buffers.iter_mut() {
            if buffer.capacity() > KEEP_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
        result
    })
}

/// Opens the key (for writing unless `peek`): the one handle serves the
/// read and the write.
fn open(ctx: Ctx, argv: &Argv, key: usize, peek: bool) -> Result<Option<StringKey>, CommandError> {
    let name = argv.string(key)?;
    if peek {
        StringKey::open(ctx, name)
    } else {
        StringKey::open_for_write(ctx, name).map(Some)
    }
}

/// Decides on the key's state, without writing.
fn evaluate(
    key: Option<&StringKey>,
    spec: &LimitSpec,
    now: u64,
    out: &mut Vec<u8>,
) -> Result<Outcome, CommandError> {
    let state = key.and_then(|key| Some((key.current()?, key.expire_at_ms())));
    decide(spec.algorithm, state, now, &spec.quota, spec.cost, out).map_err(|_| {
        CommandError::ForeignValue {
            expected: match spec.algorithm {
                Algorithm::Gcra => "a GCRA",
                Algorithm::Sliding => "a SLIDING",
                Algorithm::Fixed => "a FIXED",
            },
        }
    })
}

/// Performs the outcome's write on the open key at argv position `index`.
fn apply(
    ctx: Ctx,
    argv: &Argv,
    index: usize,
    key: Option<&StringKey>,
    outcome: &Outcome,
    state: &[u8],
) -> CommandResult {
    let (Some(effect), Some(key)) = (outcome.effect(index, state), key) else {
        return Ok(());
    };
    effects::apply(ctx, &Keys::with_open(argv, &[(index, key)]), &[effect])
}

fn reply_decision(ctx: Ctx, decision: &Decision, extra: Option<usize>) {
    ctx.reply_array(if extra.is_some() { 6 } else { 5 });
    ctx.reply_integer(i64::from(decision.allowed));
    ctx.reply_u64(decision.limit);
    ctx.reply_u64(decision.remaining);
    ctx.reply_u64(decision.retry_after_ms);
    ctx.reply_u64(decision.reset_after_ms);
    if let Some(index) = extra {
        ctx.reply_u64(index as u64);
    }
}

/// `TK.RATELIMIT <key> <limit> <period> [BURST n] [COST n] [ALGO a]`
pub fn ratelimit(ctx: Ctx, argv: &Argv) -> CommandResult {
    let (key, spec) = parse_single(argv, "tk.ratelimit")?;
    let now = ctx.now_nanos();
    with_buffers(1, |buffers| {
        let state = &mut buffers[0];
        let opened = open(ctx, argv, key, false)?;
        let outcome = evaluate(opened.as_ref(), &spec, now, state)?;
        apply(ctx, argv, key, opened.as_ref(), &outcome, state)?;
        stats::RATELIMIT
            .algorithm(spec.algorithm)
            .record(outcome.decision.allowed);
        reply_decision(ctx, &outcome.decision, None);
        Ok(())
    })
}

/// `TK.RATELIMIT.PEEK ...`: the same decision, nothing written.
pub fn peek(ctx: Ctx, argv: &Argv) -> CommandResult {
    let (key, spec) = parse_single(argv, "tk.ratelimit.peek")?;
    let now = ctx.now_nanos();
    with_buffers(1, |buffers| {
        let opened = open(ctx, argv, key, true)?;
        let outcome = evaluate(opened.as_ref(), &spec, now, &mut buffers[0])?;
        stats::RATELIMIT.peek_calls.incr();
        reply_decision(ctx, &outcome.decision, None);
        Ok(())
    })
}
/// `TK.RATELIMIT.ALL <numkeys> <key>... <limit> <period> [opts] ...`
pub fn all(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_all(argv)?;
    let now = ctx.now_nanos();
    with_buffers(parsed.count, |buffers| {
        let empty = Outcome {
            decision: Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                retry_after_ms: 0,
                reset_after_ms: 0,
            },
            write: Write::None,
        };
        let mut outcomes = [empty; MAX_ALL_KEYS];
        let mut algorithms = [Algorithm::Gcra; MAX_ALL_KEYS];
        let mut keys: [Option<StringKey>; MAX_ALL_KEYS] = Default::default();
        for index in 0..parsed.count {
            let spec = parsed.specs[index].ok_or(CommandError::Internal("missing limit"))?;
            algorithms[index] = spec.algorithm;
            keys[index] = open(ctx, argv, parsed.first_key + index, false)?;
            outcomes[index] = evaluate(keys[index].as_ref(), &spec, now, &mut buffers[index])?;
        }
        let outcomes = &outcomes[..parsed.count];
        let allowed = outcomes.iter().all(|outcome| outcome.decision.allowed);
        if allowed {
            for (index, outcome) in outcomes.iter().enumerate() {
                apply(
                    ctx,
                    argv,
                    parsed.first_key + index,
                    keys[index].as_ref(),
                    outcome,
                    &buffers[index],
                )?;
            }
            stats::RATELIMIT.all_allowed.incr();
        } else {
            stats::RATELIMIT.all_denied.incr();
        }
        stats::RATELIMIT.all_calls.incr();
        for algorithm in &algorithms[..parsed.count] {
            stats::RATELIMIT.algorithm(*algorithm).record(allowed);
        }
        let reported = reported_limit(outcomes);
        // On refusal the reported limit is a refusing one, so its own
        // `allowed` is the answer for the whole call.
        reply_decision(ctx, &outcomes[reported].decision, Some(reported));
        Ok(())
    })
}

/// `TK.RATELIMIT.RESET <key> [<key> ...]`: deletes the keys (any string key;
/// other types are refused with WRONGTYPE and nothing is deleted).
pub fn reset(ctx: Ctx, argv: &Argv) -> CommandResult {
    let keys = parse_reset(argv)?;
    // Every key is checked before anything is deleted; a key named twice
    // is removed (and counted) once, as UNLINK counts it.
    let mut seen = std::collections::HashSet::new();
    let mut removed = 0u64;
    for key in keys.clone() {
        let name = argv.string(key)?;
        let exists = StringKey::open(ctx, name)?.is_some();
        removed += u64::from(exists && seen.insert(name.bytes()));
    }
    let unlinks: Vec<Effect> = keys
        .map(|key| Effect::Unlink {
            key: Target::Arg(key),
        })
        .collect();
    effects::apply(ctx, &Keys::of(argv), &unlinks)?;
    stats::RATELIMIT.reset_calls.incr();
    stats::RATELIMIT.reset_keys_removed.add(removed);
    ctx.reply_u64(removed);
    Ok(())
}
