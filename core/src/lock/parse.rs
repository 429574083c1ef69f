//! Parsing of the lock commands' arguments: pure code on the shared parser,
//! used by the command layer, the unit tests and the fuzz targets.

use crate::args::{ArgError, ArgSource, Args, Arity};
use crate::error::CommandError;

use super::{MAX_TOKEN_LEN, MAX_TTL_MS};

/// `TK.LOCK.ACQUIRE <lock_key> <fence_key> <token> <ttl>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireArgs<'a> {
    /// Index of the lock key in argv.
    pub lock_key: usize,
    /// Index of the fence key in argv.
    pub fence_key: usize,
    pub token: &'a [u8],
    pub ttl_ms: u64,
}

/// `TK.LOCK.RELEASE <lock_key> <token>` and
/// `TK.LOCK.EXTEND <lock_key> <token> <ttl>` (`ttl_ms` is 0 for RELEASE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerArgs<'a> {
    pub lock_key: usize,
    pub token: &'a [u8],
    pub ttl_ms: u64,
}

fn token<'a, S: ArgSource + ?Sized>(args: &mut Args<'a, S>) -> Result<&'a [u8], ArgError> {
    let token = args.next_bytes()?;
    let len = token.len() as u64;
    if len == 0 || len > MAX_TOKEN_LEN {
        return Err(ArgError::OutOfRange {
            what: "token length",
            min: 1,
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(token)
}

fn ttl<S: ArgSource + ?Sized>(args: &mut Args<'_, S>) -> Result<u64, ArgError> {
    args.next_duration_ms("ttl", 1, MAX_TTL_MS)
}

pub fn parse_acquire<S: ArgSource + ?Sized>(source: &S) -> Result<AcquireArgs<'_>, CommandError> {
    let mut args = Args::checked(source, "tk.lock.acquire", Arity::Exactly(5))?;
    let lock_key = args.next_index()?;
    let fence_key = args.next_index()?;
    if source.bytes(lock_key) == source.bytes(fence_key) {
        return Err(
            ArgError::Syntax("the lock key and the fence key must be different keys").into(),
        );
    }
    let token = token(&mut args)?;
    let ttl_ms = ttl(&mut args)?;
    args.expect_end()?;
    Ok(AcquireArgs {
        lock_key,
        fence_key,
        token,
        ttl_ms,
    })
}

pub fn parse_release<S: ArgSource + ?Sized>(source: &S) -> Result<OwnerArgs<'_>, CommandError> {
    let mut args = Args::checked(source, "tk.lock.release", Arity::Exactly(3))?;
    let lock_key = args.next_index()?;
    let token = token(&mut args)?;
    args.expect_end()?;
    Ok(OwnerArgs {
        lock_key,
        token,
        ttl_ms: 0,
    })
}

pub fn parse_extend<S: ArgSource + ?Sized>(source: &S) -> Result<OwnerArgs<'_>, CommandError> {
    let mut args = Args::checked(source, "tk.lock.extend", Arity::Exactly(4))?;
    let lock_key = args.next_index()?;
    let token = token(&mut args)?;
    let ttl_ms = ttl(&mut args)?;
    args.expect_end()?;
    Ok(OwnerArgs {
        lock_key,
        token,
        ttl_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes<'a>(list: &[&'a str]) -> Vec<&'a [u8]> {
        list.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn acquire_args() {
        let list = bytes(&["tk.lock.acquire", "l", "f", "tok", "1500"]);
        assert_eq!(
            parse_acquire(&list[..]).unwrap(),
            AcquireArgs {
                lock_key: 1,
                fence_key: 2,
                token: b"tok",
                ttl_ms: 1_500
            }
        );
        let list = bytes(&["x", "l", "f", "t", "2s"]);
        assert_eq!(parse_acquire(&list[..]).unwrap().ttl_ms, 2_000);
        let list = bytes(&["x", "l", "f", "t", "24h"]);
        assert_eq!(parse_acquire(&list[..]).unwrap().ttl_ms, MAX_TTL_MS);
    }

    #[test]
    fn release_and_extend_args() {
        let list = bytes(&["x", "l", "tok"]);
        assert_eq!(
            parse_release(&list[..]).unwrap(),
            OwnerArgs {
                lock_key: 1,
                token: b"tok",
                ttl_ms: 0
            }
        );
        let list = bytes(&["x", "l", "tok", "1m"]);
        assert_eq!(
            parse_extend(&list[..]).unwrap(),
            OwnerArgs {
                lock_key: 1,
                token: b"tok",
                ttl_ms: 60_000
            }
        );
    }

    #[test]
    fn tokens_of_1_to_128_bytes() {
        let max = "t".repeat(128);
        let list = bytes(&["x", "l", &max]);
        assert!(parse_release(&list[..]).is_ok());
        let binary: [&[u8]; 3] = [b"x", b"l", b"\x00\xff\r\n"];
        assert_eq!(parse_release(&binary[..]).unwrap().token, b"\x00\xff\r\n");
    }

    #[test]
    fn every_malformed_form_is_an_err() {
        let long = "t".repeat(129);
        type Parser = fn(&[&[u8]]) -> Result<(), CommandError>;
        let acquire: Parser = |list| parse_acquire(list).map(drop);
        let release: Parser = |list| parse_release(list).map(drop);
        let extend: Parser = |list| parse_extend(list).map(drop);
        let cases: &[(Parser, &[&str], &str)] = &[
            (
                acquire,
                &["x", "l", "f", "t"],
                "ERR wrong number of arguments for 'tk.lock.acquire'",
            ),
            (
                acquire,
                &["x", "l", "f", "t", "1s", "NX"],
                "ERR wrong number of arguments",
            ),
            (acquire, &["x"], "ERR wrong number of arguments"),
            (
                acquire,
                &["x", "l", "l", "t", "1s"],
                "ERR syntax error: the lock key and the fence key must be different",
            ),
            (
                acquire,
                &["x", "l", "f", "", "1s"],
                "ERR token length must be between 1 and 128",
            ),
            (
                acquire,
                &["x", "l", "f", &long, "1s"],
                "ERR token length must be between 1 and 128",
            ),
            (
                acquire,
                &["x", "l", "f", "t", "0"],
                "ERR ttl must be between 1 and 86400000",
            ),
            (
                acquire,
                &["x", "l", "f", "t", "-5"],
                "ERR ttl must be between 1 and",
            ),
            (
                acquire,
                &["x", "l", "f", "t", "25h"],
                "ERR ttl must be between 1 and",
            ),
            (
                acquire,
                &["x", "l", "f", "t", "1d"],
                "ERR ttl must be a duration",
            ),
            (
                acquire,
                &["x", "l", "f", "t", "soon"],
                "ERR ttl must be a duration",
            ),
            (
                release,
                &["x", "l"],
                "ERR wrong number of arguments for 'tk.lock.release'",
            ),
            (
                release,
                &["x", "l", "t", "1s"],
                "ERR wrong number of arguments",
            ),
            (release, &["x", "l", ""], "ERR token length"),
            (release, &["x", "l", &long], "ERR token length"),
            (
                extend,
                &["x", "l", "t"],
                "ERR wrong number of arguments for 'tk.lock.extend'",
            ),
            (extend, &["x", "l", "", "1s"], "ERR token length"),
            (extend, &["x", "l", "t", "0ms"], "ERR ttl must be between"),
            (
                extend,
                &["x", "l", "t", "1.5s"],
                "ERR ttl must be a duration",
            ),
        ];
        for (parse, list, expected) in cases {
            let args = bytes(list);
            let text = parse(&args[..])
                .expect_err(&format!("{list:?} should fail"))
                .to_string();
            assert!(
                text.starts_with(expected),
                "{list:?}: got {text:?}, want {expected:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_argument_vectors_never_panic(
            raw in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..12),
                    Just(b"l".to_vec()), Just(b"f".to_vec()), Just(b"1s".to_vec()),
                    Just(b"0".to_vec()), Just(vec![b't'; 129]),
                ],
                0..7,
            )
        ) {
            let list: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
            for result in [
                parse_acquire(&list[..]).map(|a| (a.token.len(), a.ttl_ms)),
                parse_release(&list[..]).map(|a| (a.token.len(), 1)),
                parse_extend(&list[..]).map(|a| (a.token.len(), a.ttl_ms)),
            ] {
                match result {
                    Ok((len, ttl_ms)) => {
                        prop_assert!((1..=MAX_TOKEN_LEN as usize).contains(&len));
                        prop_assert!((1..=MAX_TTL_MS).contains(&ttl_ms));
                    }
                    Err(error) => prop_assert!(error.to_string().starts_with("ERR ")),
                }
            }
        }
    }
}
