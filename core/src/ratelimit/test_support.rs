//! What the three algorithms' unit tests share: the clock they start at
//! and one step of an algorithm on a state held by the test.

use super::{CorruptState, Nanos, Outcome, Quota, Write, NANOS_PER_MS};

pub const MS: u64 = NANOS_PER_MS;
/// 2025-11-25T00:00:00Z, in ms: a multiple of every period the tests use.
pub const T0_MS: u64 = 1_764_028_800_000;
/// [`T0_MS`] in ns.
pub const T0: u64 = T0_MS * MS;

/// An algorithm's `decide` on the whole-state form.
pub type Decide =
    fn(Option<&[u8]>, Nanos, &Quota, u64, &mut Vec<u8>) -> Result<Outcome, CorruptState>;

/// Runs `decide`, returning the outcome and the state after it (the old one
/// when nothing is written, which must then leave the buffer empty).
pub fn step(
    decide: Decide,
    state: &Option<Vec<u8>>,
    now: u64,
    q: &Quota,
    cost: u64,
) -> (Outcome, Option<Vec<u8>>) {
    let mut out = Vec::new();
    let outcome = decide(state.as_deref(), now, q, cost, &mut out).expect("valid state");
    match outcome.write {
        Write::Set { .. } => (outcome, Some(out)),
        Write::None => {
            assert!(out.is_empty(), "no write but out was filled");
            (outcome, state.clone())
        }
    }
}
