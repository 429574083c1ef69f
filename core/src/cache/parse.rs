//! Argument parsing for the TK.CACHE commands (pure; fuzzed).

use crate::args::{distinct_keys, ArgError, ArgSource, Args, Arity};
use crate::error::CommandError;

use super::generation::Generations;
use super::{MAX_NAMESPACE_LEN, MAX_TTL_MS};

/// `TK.CACHE.GET <entry_key> <generations_key> <namespace>`
#[derive(Debug, PartialEq, Eq)]
pub struct GetArgs<'a> {
    pub entry: usize,
    pub generations: usize,
    pub namespace: &'a [u8],
}

/// `TK.CACHE.SET <entry_key> <generations_key> <index_key> <namespace> <ttl> <value> [IFGEN <token>]`
#[derive(Debug, PartialEq, Eq)]
pub struct SetArgs<'a> {
    pub entry: usize,
    pub generations: usize,
    pub index: usize,
    pub namespace: &'a [u8],
    pub ttl_ms: u64,
    /// Index of the value in argv (passed on to Redis without copying).
    pub value: usize,
    pub if_generations: Option<Generations>,
}

/// `TK.CACHE.INVALIDATEUSER <generations_key> <index_key>` (namespace None)
/// and `TK.CACHE.INVALIDATENS <generations_key> <index_key> <namespace>`.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidateArgs<'a> {
    pub generations: usize,
    pub index: usize,
    pub namespace: Option<&'a [u8]>,
}

/// A namespace is 1 to 64 bytes of `A-Z a-z 0-9 _ . -`: it becomes part of
/// key and field names, so nothing that could collide or confuse.
pub fn validate_namespace(namespace: &[u8]) -> Result<(), ArgError> {
    let valid = !namespace.is_empty()
        && namespace.len() <= MAX_NAMESPACE_LEN
        && namespace
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ArgError::Syntax(
            "namespace must be 1 to 64 characters of A-Z a-z 0-9 _ . -",
        ))
    }
}

fn next_namespace<'a, S: ArgSource + ?Sized>(args: &mut Args<'a, S>) -> Result<&'a [u8], ArgError> {
    let namespace = args.next_bytes()?;
    validate_namespace(namespace)?;
    Ok(namespace)
}

pub fn parse_get<S: ArgSource + ?Sized>(source: &S) -> Result<GetArgs<'_>, CommandError> {
    let mut args = Args::checked(source, "tk.cache.get", Arity::Exactly(4))?;
    let entry = args.next_index()?;
    let generations = args.next_index()?;
    distinct_keys(source, [entry, generations])?;
    let namespace = next_namespace(&mut args)?;
    Ok(GetArgs {
        entry,
        generations,
        namespace,
    })
}

pub fn parse_set<S: ArgSource + ?Sized>(source: &S) -> Result<SetArgs<'_>, CommandError> {
    let mut args = Args::checked(source, "tk.cache.set", Arity::OneOf(&[7, 9]))?;
    let entry = args.next_index()?;
    let generations = args.next_index()?;
    let index = args.next_index()?;
    distinct_keys(source, [entry, generations, index])?;
    let namespace = next_namespace(&mut args)?;
    let ttl_ms = args.next_duration_ms("ttl", 1, MAX_TTL_MS)?;
    let value = args.next_index()?;
    let mut if_generations = None;
    if args.next_keyword(&["IFGEN"]).is_some() {
        let token = args.next_bytes()?;
        if_generations = Some(Generations::parse(token).ok_or(ArgError::Syntax(
            "IFGEN takes the generation token returned by TK.CACHE.GET (\"<user>.<namespace>\")",
        ))?);
    }
    args.expect_end()?;
    Ok(SetArgs {
        entry,
        generations,
        index,
        namespace,
        ttl_ms,
        value,
        if_generations,
    })
}

fn parse_invalidate<'a, S: ArgSource + ?Sized>(
    source: &'a S,
    command: &'static str,
    with_namespace: bool,
) -> Result<InvalidateArgs<'a>, CommandError> {
    let arity = Arity::Exactly(if with_namespace { 4 } else { 3 });
    let mut args = Args::checked(source, command, arity)?;
    let generations = args.next_index()?;
    let index = args.next_index()?;
    distinct_keys(source, [generations, index])?;
    let namespace = if with_namespace {
        Some(next_namespace(&mut args)?)
    } else {
        None
    };
    Ok(InvalidateArgs {
        generations,
        index,
        namespace,
    })
}

pub fn parse_invalidate_user<S: ArgSource + ?Sized>(
    source: &S,
) -> Result<InvalidateArgs<'_>, CommandError> {
    parse_invalidate(source, "tk.cache.invalidateuser", false)
}

pub fn parse_invalidate_namespace<S: ArgSource + ?Sized>(
    source: &S,
) -> Result<InvalidateArgs<'_>, CommandError> {
    parse_invalidate(source, "tk.cache.invalidatens", true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn argv<'a>(list: &'a [&'a str]) -> Vec<&'a [u8]> {
        list.iter().map(|s| s.as_bytes()).collect()
    }

    fn err(result: Result<impl std::fmt::Debug, CommandError>) -> String {
        result.expect_err("should fail").to_string()
    }

    #[test]
    fn get_parses() {
        let list = argv(&["tk.cache.get", "e", "g", "search"]);
        assert_eq!(
            parse_get(&list[..]).unwrap(),
            GetArgs {
                entry: 1,
                generations: 2,
                namespace: b"search"
            }
        );
    }

    #[test]
    fn set_parses_with_and_without_ifgen() {
        let list = argv(&["x", "e", "g", "i", "http", "5m", "payload"]);
        let parsed = parse_set(&list[..]).unwrap();
        assert_eq!(
            (parsed.entry, parsed.generations, parsed.index, parsed.value),
            (1, 2, 3, 6)
        );
        assert_eq!(parsed.ttl_ms, 300_000);
        assert_eq!(parsed.if_generations, None);
        let list = argv(&[
            "x", "e", "g", "i", "http", "1500", "payload", "ifgen", "3.4",
        ]);
        assert_eq!(
            parse_set(&list[..]).unwrap().if_generations,
            Some(Generations {
                user: 3,
                namespace: 4
            })
        );
    }

    #[test]
    fn invalidations_parse() {
        let list = argv(&["x", "g", "i"]);
        assert_eq!(parse_invalidate_user(&list[..]).unwrap().namespace, None);
        let list = argv(&["x", "g", "i", "analytics"]);
        assert_eq!(
            parse_invalidate_namespace(&list[..]).unwrap().namespace,
            Some(&b"analytics"[..])
        );
    }

    #[test]
    fn malformed_forms_are_errors() {
        type Parse = fn(&[&[u8]]) -> String;
        let cases: &[(&[&str], Parse, &str)] = &[
            (
                &["x", "e", "g"],
                |a| err(parse_get(a)),
                "ERR wrong number of arguments for 'tk.cache.get'",
            ),
            (
                &["x", "e", "g", "ns", "extra"],
                |a| err(parse_get(a)),
                "ERR wrong number of arguments",
            ),
            (
                &["x", "e", "e", "ns"],
                |a| err(parse_get(a)),
                "ERR syntax error: the same key",
            ),
            (
                &["x", "e", "g", "bad ns"],
                |a| err(parse_get(a)),
                "ERR syntax error: namespace must be",
            ),
            (
                &["x", "e", "g", ""],
                |a| err(parse_get(a)),
                "ERR syntax error: namespace must be",
            ),
            (
                &["x", "e", "g", "i", "ns", "5m"],
                |a| err(parse_set(a)),
                "ERR wrong number of arguments",
            ),
            (
                &["x", "e", "g", "g", "ns", "5m", "v"],
                |a| err(parse_set(a)),
                "ERR syntax error: the same key",
            ),
            (
                &["x", "e", "g", "i", "ns", "0", "v"],
                |a| err(parse_set(a)),
                "ERR ttl must be between 1 and",
            ),
            (
                &["x", "e", "g", "i", "ns", "8d", "v"],
                |a| err(parse_set(a)),
                "ERR ttl must be a duration",
            ),
            (
                &["x", "e", "g", "i", "ns", "169h", "v"],
                |a| err(parse_set(a)),
                "ERR ttl must be between 1 and",
            ),
            (
                &["x", "e", "g", "i", "ns", "5m", "v", "IFGEN", "7"],
                |a| err(parse_set(a)),
                "ERR syntax error: IFGEN takes",
            ),
            (
                &["x", "e", "g", "i", "ns", "5m", "v", "NOPE", "1.1"],
                |a| err(parse_set(a)),
                "ERR syntax error: unknown option 'NOPE'",
            ),
            (
                &["x", "g"],
                |a| err(parse_invalidate_user(a)),
                "ERR wrong number of arguments",
            ),
            (
                &["x", "g", "g"],
                |a| err(parse_invalidate_user(a)),
                "ERR syntax error: the same key",
            ),
            (
                &["x", "g", "i"],
                |a| err(parse_invalidate_namespace(a)),
                "ERR wrong number of arguments",
            ),
            (
                &["x", "g", "i", "n:x"],
                |a| err(parse_invalidate_namespace(a)),
                "ERR syntax error: namespace must be",
            ),
        ];
        for (list, parse, expected) in cases {
            let bytes = argv(list);
            let text = parse(&bytes);
            assert!(
                text.starts_with(expected),
                "{list:?}: got {text:?}, want {expected:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_vectors_never_panic(
            raw in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..10),
                    Just(b"IFGEN".to_vec()), Just(b"1.2".to_vec()), Just(b"5m".to_vec()),
                    Just(b"ns".to_vec()), Just(b"k".to_vec()),
                ],
                0..11,
            )
        ) {
            let list: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
            for result in [
                parse_get(&list[..]).err(),
                parse_set(&list[..]).err(),
                parse_invalidate_user(&list[..]).err(),
                parse_invalidate_namespace(&list[..]).err(),
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(result.to_string().starts_with("ERR "));
            }
        }
    }
}
