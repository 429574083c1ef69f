//! Parsing of the rate-limit commands' arguments, and ALL's choice of the
//! limit to report: pure code (no Redis types), shared by the command layer,
//! the unit tests and the fuzz targets.

use crate::args::{
    distinct_keys, parse_integer, ArgError, ArgSource, Args, Arity, SeenOptions, Token,
};
use crate::error::CommandError;

use super::{Algorithm, Outcome, Quota, MAX_COUNT, MAX_SPAN_MS};

/// Most keys one TK.RATELIMIT.ALL may check (keeps its work bounded and its
/// bookkeeping on the stack).
pub const MAX_ALL_KEYS: usize = 16;

/// One parsed `<limit> <period> [BURST n] [COST n] [ALGO a]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSpec {
    pub quota: Quota,
    pub cost: u64,
    pub algorithm: Algorithm,
}

const OPTIONS: [&str; 3] = ["BURST", "COST", "ALGO"];
const ALGORITHMS: [&str; 3] = ["GCRA", "SLIDING", "FIXED"];

/// Parses one limit. Stops at the first argument that is not an option
/// keyword (the caller decides whether that is an error).
pub fn parse_limit<S: ArgSource + ?Sized>(
    args: &mut Args<'_, S>,
) -> Result<LimitSpec, CommandError> {
    let limit = args.next_u64("limit", 1, MAX_COUNT)?;
    let period_ms = args.next_duration_ms("period", 1, MAX_SPAN_MS)?;
    let mut burst = None;
    let mut cost = 1;
    let mut algorithm = Algorithm::Gcra;
    let mut seen = SeenOptions::default();
    while let Some(option) = args.next_keyword(&OPTIONS) {
        seen.mark(option, OPTIONS[option])?;
        match option {
            0 => burst = Some(args.next_u64("BURST", 1, MAX_COUNT)?),
            1 => cost = args.next_u64("COST", 0, MAX_COUNT)?,
            _ => {
                algorithm = Algorithm::ALL
                    [args.next_choice("ALGO", &ALGORITHMS, "GCRA, SLIDING or FIXED")?]
            }
        }
    }
    if burst.is_some() && algorithm != Algorithm::Gcra {
        return Err(ArgError::Syntax("BURST only applies to ALGO GCRA").into());
    }
    let quota = Quota {
        limit,
        period_ms,
        burst: burst.unwrap_or(limit),
    };
    quota.validate(algorithm, cost)?;
    Ok(LimitSpec {
        quota,
        cost,
        algorithm,
    })
}

/// Parsed TK.RATELIMIT / TK.RATELIMIT.PEEK arguments.
pub fn parse_single<S: ArgSource + ?Sized>(
    source: &S,
    command: &'static str,
) -> Result<(usize, LimitSpec), CommandError> {
    let mut args = Args::checked(source, command, Arity::AtLeast(4))?;
    let key = args.next_index()?;
    let spec = parse_limit(&mut args)?;
    args.expect_end()?;
    Ok((key, spec))
}

/// `TK.RATELIMIT.RESET <key> [<key> ...]` → the argv positions of the keys.
pub fn parse_reset<S: ArgSource + ?Sized>(
    source: &S,
) -> Result<std::ops::RangeInclusive<usize>, CommandError> {
    Args::checked(source, "tk.ratelimit.reset", Arity::AtLeast(2))?;
    Ok(1..=source.count() - 1)
}

/// Parsed TK.RATELIMIT.ALL arguments: the index of the first key in argv,
/// and one spec per key.
pub struct AllArgs {
    pub first_key: usize,
    pub count: usize,
    pub specs: [Option<LimitSpec>; MAX_ALL_KEYS],
}

pub fn parse_all<S: ArgSource + ?Sized>(source: &S) -> Result<AllArgs, CommandError> {
    let mut args = Args::checked(source, "tk.ratelimit.all", Arity::AtLeast(5))?;
    let count = args.next_u64("numkeys", 1, MAX_ALL_KEYS as u64)? as usize;
    let first_key = args.position();
    for _ in 0..count {
        args.next_index()?;
    }
    distinct_keys(source, first_key..first_key + count)?;
    let mut specs = [None; MAX_ALL_KEYS];
    for spec in specs.iter_mut().take(count) {
        // Between limits, anything that is not a number is a stray option.
        if let Some(token) = args.peek() {
            if parse_integer(token).is_none() {
                return Err(ArgError::UnknownOption {
                    token: Token::new(token),
                }
                .into());
            }
        }
        *spec = Some(parse_limit(&mut args)?);
    }
    args.expect_end()?;
    Ok(AllArgs {
        first_key,
        count,
        specs,
    })
}

/// Which limit ALL reports: when refused, the refusing limit that makes the
/// caller wait longest; when allowed, the one with the fewest units left.
/// Ties go to the earliest.
pub fn reported_limit(outcomes: &[Outcome]) -> usize {
    let allowed = outcomes.iter().all(|outcome| outcome.decision.allowed);
    let mut best = 0;
    for (index, outcome) in outcomes.iter().enumerate() {
        let current = &outcomes[best].decision;
        let candidate = &outcome.decision;
        let better = if allowed {
            candidate.remaining < current.remaining
        } else {
            !candidate.allowed
                && (current.allowed || candidate.retry_after_ms > current.retry_after_ms)
        };
        if better {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Decision, Write};
    use proptest::prelude::*;

    fn single(list: &[&str]) -> Result<(usize, LimitSpec), CommandError> {
        let bytes: Vec<&[u8]> = list.iter().map(|s| s.as_bytes()).collect();
        parse_single(&bytes[..], "tk.ratelimit")
    }

    fn all_args(list: &[&str]) -> Result<AllArgs, CommandError> {
        let bytes: Vec<&[u8]> = list.iter().map(|s| s.as_bytes()).collect();
        parse_all(&bytes[..])
    }

    fn message(error: CommandError) -> String {
        error.to_string()
    }

    #[test]
    fn defaults_and_options() {
        let (key, spec) = single(&["tk.ratelimit", "k", "10", "1s"]).unwrap();
        assert_eq!(key, 1);
        assert_eq!(
            spec,
            LimitSpec {
                quota: Quota {
                    limit: 10,
                    period_ms: 1000,
                    burst: 10
                },
                cost: 1,
                algorithm: Algorithm::Gcra
            }
        );
        let (_, spec) = single(&[
            "x", "k", "10", "2m", "cost", "3", "BURST", "20", "algo", "gcra",
        ])
        .unwrap();
        assert_eq!(spec.quota.burst, 20);
        assert_eq!(spec.quota.period_ms, 120_000);
        assert_eq!(spec.cost, 3);
        let (_, spec) = single(&["x", "k", "5", "100", "ALGO", "SLIDING", "COST", "0"]).unwrap();
        assert_eq!(spec.algorithm, Algorithm::Sliding);
        assert_eq!(spec.cost, 0);
    }

    #[test]
    fn every_malformed_form_is_an_err() {
        let cases: &[(&[&str], &str)] = &[
            (&["x", "k", "10"], "ERR wrong number of arguments"),
            (&["x", "k"], "ERR wrong number of arguments"),
            (&["x", "k", "0", "1s"], "ERR limit must be between 1 and"),
            (&["x", "k", "-5", "1s"], "ERR limit must be between 1 and"),
            (&["x", "k", "ten", "1s"], "ERR limit must be an integer"),
            (
                &["x", "k", "99999999999999999999999", "1s"],
                "ERR limit must be an integer",
            ),
            (&["x", "k", "10", "0"], "ERR period must be between 1 and"),
            (&["x", "k", "10", "-1s"], "ERR period must be between 1 and"),
            (&["x", "k", "10", "1d"], "ERR period must be a duration"),
            (
                &["x", "k", "10", "1s", "BURST"],
                "ERR wrong number of arguments",
            ),
            (
                &["x", "k", "10", "1s", "BURST", "0"],
                "ERR BURST must be between 1 and",
            ),
            (
                &["x", "k", "10", "1s", "COST", "-1"],
                "ERR COST must be between 0 and",
            ),
            (
                &["x", "k", "10", "1s", "COST", "11"],
                "ERR COST 11 exceeds the capacity 10",
            ),
            (
                &["x", "k", "10", "1s", "BURST", "2", "COST", "3"],
                "ERR COST 3 exceeds the capacity 2",
            ),
            (
                &["x", "k", "10", "1s", "ALGO", "LEAKY"],
                "ERR ALGO must be one of",
            ),
            (
                &["x", "k", "10", "1s", "FOO", "1"],
                "ERR syntax error: unknown option 'FOO'",
            ),
            (
                &["x", "k", "10", "1s", "COST", "1", "COST", "1"],
                "ERR syntax error: option COST given more than once",
            ),
            (
                &["x", "k", "10", "1s", "ALGO", "FIXED", "BURST", "5"],
                "ERR syntax error: BURST only applies",
            ),
            (&["x", "k", "1", "3650d"], "ERR period must be a duration"),
            (
                &["x", "k", "1", "100000h"],
                "ERR period must be between 1 and",
            ),
            (
                &["x", "k", "1", "1h", "BURST", "1000000"],
                "ERR period * BURST / limit",
            ),
        ];
        for (args, expected) in cases {
            let error = single(args).expect_err(&format!("{args:?} should fail"));
            let text = message(error);
            assert!(
                text.starts_with(expected),
                "{args:?}: got {text:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn all_parses_each_limit() {
        let parsed = all_args(&[
            "x", "2", "a", "b", "10", "1s", "100", "1h", "ALGO", "SLIDING", "COST", "2",
        ])
        .unwrap();
        assert_eq!(parsed.first_key, 2);
        assert_eq!(parsed.count, 2);
        assert_eq!(parsed.specs[0].unwrap().quota.limit, 10);
        let second = parsed.specs[1].unwrap();
        assert_eq!(second.algorithm, Algorithm::Sliding);
        assert_eq!(second.cost, 2);
        assert!(parsed.specs[2].is_none());
    }

    #[test]
    fn all_rejects_malformed_forms() {
        let cases: &[(&[&str], &str)] = &[
            (&["x", "1", "a", "10"], "ERR wrong number of arguments"),
            (
                &["x", "0", "a", "10", "1s"],
                "ERR numkeys must be between 1 and 16",
            ),
            (
                &["x", "17", "a", "10", "1s"],
                "ERR numkeys must be between 1 and 16",
            ),
            (
                &["x", "2", "a", "10", "1s"],
                "ERR syntax error: unknown option '1s'",
            ),
            (
                &["x", "2", "a", "b", "10", "1s"],
                "ERR wrong number of arguments",
            ),
            (
                &["x", "2", "a", "a", "10", "1s", "10", "1s"],
                "ERR syntax error: the same key",
            ),
            (
                &["x", "1", "a", "10", "1s", "10", "1s"],
                "ERR syntax error: unknown option '10'",
            ),
            (
                &["x", "2", "a", "b", "10", "1s", "BOGUS", "10", "1s"],
                "ERR syntax error: unknown option 'BOGUS'",
            ),
            (
                &["x", "x", "a", "10", "1s"],
                "ERR numkeys must be an integer",
            ),
        ];
        for (args, expected) in cases {
            let error = all_args(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} should fail"));
            let text = message(error);
            assert!(
                text.starts_with(expected),
                "{args:?}: got {text:?}, want {expected:?}"
            );
        }
    }

    fn outcome(allowed: bool, remaining: u64, retry_after_ms: u64) -> Outcome {
        Outcome {
            decision: Decision {
                allowed,
                limit: 10,
                remaining,
                retry_after_ms,
                reset_after_ms: 0,
            },
            write: Write::None,
        }
    }

    #[test]
    fn all_reports_the_most_restrictive_limit() {
        let allowed = [
            outcome(true, 5, 0),
            outcome(true, 2, 0),
            outcome(true, 2, 0),
        ];
        assert_eq!(reported_limit(&allowed), 1);
        let refused = [
            outcome(true, 5, 0),
            outcome(false, 0, 100),
            outcome(false, 0, 900),
            outcome(true, 0, 0),
        ];
        assert_eq!(reported_limit(&refused), 2);
        let first_refused = [outcome(false, 0, 10), outcome(true, 0, 0)];
        assert_eq!(reported_limit(&first_refused), 0);
    }

    proptest! {
        /// The fuzz-style property: no argument vector makes the parsers panic,
        /// and every rejection is an ERR.
        #[test]
        fn random_argument_vectors_never_panic(
            raw in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..12),
                    Just(b"BURST".to_vec()), Just(b"COST".to_vec()), Just(b"ALGO".to_vec()),
                    Just(b"SLIDING".to_vec()), Just(b"10".to_vec()), Just(b"1s".to_vec()),
                    Just(b"0".to_vec()), Just(b"2".to_vec()),
                ],
                0..14,
            )
        ) {
            let bytes: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
            if let Err(error) = parse_single(&bytes[..], "tk.ratelimit") {
                prop_assert!(error.to_string().starts_with("ERR "));
            }
            if let Err(error) = parse_all(&bytes[..]) {
                prop_assert!(error.to_string().starts_with("ERR "));
            }
        }
    }
}
