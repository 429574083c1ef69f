//! Argument parsing for the TK.SESSION commands (pure; fuzzed).

use crate::args::{distinct_keys, ArgError, ArgSource, Args, Arity, SeenOptions};
use crate::error::CommandError;

use super::{DEFAULT_MAX_LIFETIME_MS, MAX_DURATION_MS, MAX_SESSIONS_CAP};

/// What CREATE does when the user already has MAXSESSIONS live sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapPolicy {
    /// Delete the least recently active sessions to make room.
    Evict,
    /// Refuse the new session (`ERR session limit reached`).
    Reject,
}

/// `TK.SESSION.CREATE <skey> <ikey> <user> <idle_ttl> <data> [MAXLIFETIME <ttl>] [MAXSESSIONS <n> EVICT|REJECT]`
#[derive(Debug, PartialEq, Eq)]
pub struct CreateArgs {
    pub session: usize,
    pub index: usize,
    pub user: usize,
    pub idle_ms: u64,
    pub data: usize,
    pub max_lifetime_ms: u64,
    pub cap: Option<(u64, CapPolicy)>,
}

/// `TK.SESSION.TOUCH <skey> [IDLE <ttl>] [MINGAP <ttl>]`
#[derive(Debug, PartialEq, Eq)]
pub struct TouchArgs {
    pub session: usize,
    pub idle_ms: Option<u64>,
    pub min_gap_ms: Option<u64>,
}

/// `TK.SESSION.SET <skey> <data> [IFVERSION <v>]`
#[derive(Debug, PartialEq, Eq)]
pub struct SetArgs {
    pub session: usize,
    pub data: usize,
    pub if_version: Option<u64>,
}

/// `TK.SESSION.REVOKEALL <ikey> [EXCEPT <skey>]`
#[derive(Debug, PartialEq, Eq)]
pub struct RevokeAllArgs {
    pub index: usize,
    pub except: Option<usize>,
}

fn duration<S: ArgSource + ?Sized>(
    args: &mut Args<'_, S>,
    what: &'static str,
) -> Result<u64, ArgError> {
    args.next_duration_ms(what, 1, MAX_DURATION_MS)
}

pub fn parse_create<S: ArgSource + ?Sized>(source: &S) -> Result<CreateArgs, CommandError> {
    let mut args = Args::checked(source, "tk.session.create", Arity::AtLeast(6))?;
    let session = args.next_index()?;
    let index = args.next_index()?;
    distinct_keys(source, [session, index])?;
    let user = args.next_index()?;
    if source.bytes(user).is_empty() {
        return Err(ArgError::Syntax("user must not be empty").into());
    }
    let idle_ms = duration(&mut args, "idle_ttl")?;
    let data = args.next_index()?;
    let mut max_lifetime_ms = DEFAULT_MAX_LIFETIME_MS;
    let mut cap = None;
    let mut seen = SeenOptions::default();
    const OPTIONS: [&str; 2] = ["MAXLIFETIME", "MAXSESSIONS"];
    while let Some(option) = args.next_keyword(&OPTIONS) {
        seen.mark(option, OPTIONS[option])?;
        if option == 0 {
            max_lifetime_ms = duration(&mut args, "MAXLIFETIME")?;
        } else {
            let count = args.next_u64("MAXSESSIONS", 1, MAX_SESSIONS_CAP)?;
            let policy = match args.next_choice(
                "the MAXSESSIONS policy",
                &["EVICT", "REJECT"],
                "EVICT or REJECT",
            )? {
                0 => CapPolicy::Evict,
                _ => CapPolicy::Reject,
            };
            cap = Some((count, policy));
        }
    }
    args.expect_end()?;
    Ok(CreateArgs {
        session,
        index,
        user,
        idle_ms,
        data,
        max_lifetime_ms,
        cap,
    })
}

pub fn parse_touch<S: ArgSource + ?Sized>(source: &S) -> Result<TouchArgs, CommandError> {
    let mut args = Args::checked(source, "tk.session.touch", Arity::AtLeast(2))?;
    let session = args.next_index()?;
    let (mut idle_ms, mut min_gap_ms) = (None, None);
    let mut seen = SeenOptions::default();
    const OPTIONS: [&str; 2] = ["IDLE", "MINGAP"];
    while let Some(option) = args.next_keyword(&OPTIONS) {
        seen.mark(option, OPTIONS[option])?;
        if option == 0 {
            idle_ms = Some(duration(&mut args, "IDLE")?);
        } else {
            min_gap_ms = Some(duration(&mut args, "MINGAP")?);
        }
    }
    args.expect_end()?;
    Ok(TouchArgs {
        session,
        idle_ms,
        min_gap_ms,
    })
}

/// `TK.SESSION.GET <skey>` and `TK.SESSION.LIST <ikey>`: one key, nothing else.
pub fn parse_single_key<S: ArgSource + ?Sized>(
    source: &S,
    command: &'static str,
) -> Result<usize, CommandError> {
    let mut args = Args::checked(source, command, Arity::Exactly(2))?;
    Ok(args.next_index()?)
}

pub fn parse_set<S: ArgSource + ?Sized>(source: &S) -> Result<SetArgs, CommandError> {
    let mut args = Args::checked(source, "tk.session.set", Arity::AtLeast(3))?;
    let session = args.next_index()?;
    let data = args.next_index()?;
    let if_version = match args.next_keyword(&["IFVERSION"]) {
        Some(_) => Some(args.next_u64("IFVERSION", 0, u64::MAX >> 1)?),
        None => None,
    };
    args.expect_end()?;
    Ok(SetArgs {
        session,
        data,
        if_version,
    })
}

/// `TK.SESSION.DESTROY <skey> <ikey>` → (session, index).
pub fn parse_destroy<S: ArgSource + ?Sized>(source: &S) -> Result<(usize, usize), CommandError> {
    let mut args = Args::checked(source, "tk.session.destroy", Arity::Exactly(3))?;
    let session = args.next_index()?;
    let index = args.next_index()?;
    distinct_keys(source, [session, index])?;
    Ok((session, index))
}

/// `TK.SESSION.ROTATE <old_skey> <new_skey> <ikey>` → (old, new, index).
pub fn parse_rotate<S: ArgSource + ?Sized>(
    source: &S,
) -> Result<(usize, usize, usize), CommandError> {
    let mut args = Args::checked(source, "tk.session.rotate", Arity::Exactly(4))?;
    let old = args.next_index()?;
    let new = args.next_index()?;
    let index = args.next_index()?;
    distinct_keys(source, [old, new, index])?;
    Ok((old, new, index))
}

pub fn parse_revoke_all<S: ArgSource + ?Sized>(source: &S) -> Result<RevokeAllArgs, CommandError> {
    let mut args = Args::checked(source, "tk.session.revokeall", Arity::AtLeast(2))?;
    let index = args.next_index()?;
    let except = match args.next_keyword(&["EXCEPT"]) {
        Some(_) => Some(args.next_index()?),
        None => None,
    };
    args.expect_end()?;
    if let Some(except) = except {
        distinct_keys(source, [index, except])?;
    }
    Ok(RevokeAllArgs { index, except })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn argv<'a>(list: &'a [&'a str]) -> Vec<&'a [u8]> {
        list.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn create_parses_options() {
        let list = argv(&[
            "c",
            "s",
            "i",
            "alice",
            "24h",
            "{}",
            "maxlifetime",
            "7d",
            "MAXSESSIONS",
            "5",
            "evict",
        ]);
        assert!(
            parse_create(&list[..]).is_err(),
            "7d is not a duration unit"
        );
        let list = argv(&[
            "c",
            "s",
            "i",
            "alice",
            "24h",
            "{}",
            "maxlifetime",
            "168h",
            "MAXSESSIONS",
            "5",
            "evict",
        ]);
        let parsed = parse_create(&list[..]).unwrap();
        assert_eq!(parsed.idle_ms, 24 * 3_600_000);
        assert_eq!(parsed.max_lifetime_ms, 168 * 3_600_000);
        assert_eq!(parsed.cap, Some((5, CapPolicy::Evict)));
        let list = argv(&["c", "s", "i", "alice", "1000", "{}"]);
        let parsed = parse_create(&list[..]).unwrap();
        assert_eq!(parsed.max_lifetime_ms, DEFAULT_MAX_LIFETIME_MS);
        assert_eq!(parsed.cap, None);
    }

    #[test]
    fn other_commands_parse() {
        let list = argv(&["t", "s", "IDLE", "30m", "mingap", "1m"]);
        assert_eq!(
            parse_touch(&list[..]).unwrap(),
            TouchArgs {
                session: 1,
                idle_ms: Some(1_800_000),
                min_gap_ms: Some(60_000)
            }
        );
        let list = argv(&["x", "s", "data", "IFVERSION", "3"]);
        assert_eq!(parse_set(&list[..]).unwrap().if_version, Some(3));
        let list = argv(&["x", "i", "EXCEPT", "s"]);
        assert_eq!(
            parse_revoke_all(&list[..]).unwrap(),
            RevokeAllArgs {
                index: 1,
                except: Some(3)
            }
        );
        let list = argv(&["x", "a", "b", "i"]);
        assert_eq!(parse_rotate(&list[..]).unwrap(), (1, 2, 3));
    }

    #[test]
    fn malformed_forms_are_errors() {
        type Parse = fn(&[&[u8]]) -> Option<CommandError>;
        let cases: &[(&[&str], Parse, &str)] = &[
            (
                &["c", "s", "i", "u", "1h"],
                |a| parse_create(a).err(),
                "ERR wrong number of arguments",
            ),
            (
                &["c", "s", "s", "u", "1h", "d"],
                |a| parse_create(a).err(),
                "ERR syntax error: the same key",
            ),
            (
                &["c", "s", "i", "", "1h", "d"],
                |a| parse_create(a).err(),
                "ERR syntax error: user must not be empty",
            ),
            (
                &["c", "s", "i", "u", "0", "d"],
                |a| parse_create(a).err(),
                "ERR idle_ttl must be between",
            ),
            (
                &["c", "s", "i", "u", "1h", "d", "MAXSESSIONS", "0", "EVICT"],
                |a| parse_create(a).err(),
                "ERR MAXSESSIONS must be between",
            ),
            (
                &["c", "s", "i", "u", "1h", "d", "MAXSESSIONS", "2", "DROP"],
                |a| parse_create(a).err(),
                "ERR the MAXSESSIONS policy must be",
            ),
            (
                &[
                    "c",
                    "s",
                    "i",
                    "u",
                    "1h",
                    "d",
                    "MAXLIFETIME",
                    "1h",
                    "MAXLIFETIME",
                    "2h",
                ],
                |a| parse_create(a).err(),
                "ERR syntax error: option MAXLIFETIME given more than once",
            ),
            (
                &["c", "s", "i", "u", "1h", "d", "NOPE"],
                |a| parse_create(a).err(),
                "ERR syntax error: unknown option",
            ),
            (
                &["t"],
                |a| parse_touch(a).err(),
                "ERR wrong number of arguments",
            ),
            (
                &["t", "s", "IDLE", "-1"],
                |a| parse_touch(a).err(),
                "ERR IDLE must be between",
            ),
            (
                &["t", "s", "MINGAP"],
                |a| parse_touch(a).err(),
                "ERR wrong number of arguments",
            ),
            (
                &["g"],
                |a| parse_single_key(a, "tk.session.get").err(),
                "ERR wrong number of arguments",
            ),
            (
                &["g", "a", "b"],
                |a| parse_single_key(a, "tk.session.get").err(),
                "ERR wrong number of arguments",
            ),
            (
                &["s", "k"],
                |a| parse_set(a).err(),
                "ERR wrong number of arguments",
            ),
            (
                &["s", "k", "d", "IFVERSION", "x"],
                |a| parse_set(a).err(),
                "ERR IFVERSION must be an integer",
            ),
            (
                &["d", "s"],
                |a| parse_destroy(a).err(),
                "ERR wrong number of arguments",
            ),
            (
                &["r", "a", "a", "i"],
                |a| parse_rotate(a).err(),
                "ERR syntax error: the same key",
            ),
            (
                &["v", "i", "EXCEPT"],
                |a| parse_revoke_all(a).err(),
                "ERR wrong number of arguments",
            ),
            (
                &["v", "i", "BUT", "s"],
                |a| parse_revoke_all(a).err(),
                "ERR syntax error: unknown option",
            ),
        ];
        for (list, parse, expected) in cases {
            let bytes = argv(list);
            let text = parse(&bytes).map(|e| e.to_string()).unwrap_or_default();
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
                    proptest::collection::vec(any::<u8>(), 0..8),
                    Just(b"MAXSESSIONS".to_vec()), Just(b"EVICT".to_vec()), Just(b"IDLE".to_vec()),
                    Just(b"MINGAP".to_vec()), Just(b"IFVERSION".to_vec()), Just(b"EXCEPT".to_vec()),
                    Just(b"1h".to_vec()), Just(b"3".to_vec()),
                ],
                0..12,
            )
        ) {
            let list: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
            let errors = [
                parse_create(&list[..]).err(),
                parse_touch(&list[..]).err(),
                parse_single_key(&list[..], "tk.session.get").err(),
                parse_set(&list[..]).err(),
                parse_destroy(&list[..]).err(),
                parse_rotate(&list[..]).err(),
                parse_revoke_all(&list[..]).err(),
            ];
            for error in errors.into_iter().flatten() {
                prop_assert!(error.to_string().starts_with("ERR "));
            }
        }
    }
}
