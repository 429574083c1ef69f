//! The one argument parser shared by every command.
//!
//! Commands read their arguments through an [`Args`] cursor over any
//! [`ArgSource`] (Redis's `argv` in production, `&[&[u8]]` in tests), so the
//! parsing rules — strict integers, durations with unit suffixes, keywords
//! matched case-insensitively, options given at most once — are written and
//! tested once. Parsing borrows the argument bytes and never allocates; only
//! building an error message does.

use std::fmt;

/// Random access to a command's arguments (index 0 is the command name).
pub trait ArgSource {
    fn count(&self) -> usize;
    fn bytes(&self, index: usize) -> &[u8];
}

impl ArgSource for [&[u8]] {
    fn count(&self) -> usize {
        self.len()
    }
    fn bytes(&self, index: usize) -> &[u8] {
        self.get(index).copied().unwrap_or_default()
    }
}

/// A malformed argument list. Every variant renders as an `ERR ...` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// Too few or too many arguments for the command's shape.
    Arity { command: &'static str },
    /// Not a base-10 integer (or too long to be one).
    NotInteger { what: &'static str },
    /// An integer outside the accepted range.
    OutOfRange {
        what: &'static str,
        min: u64,
        max: u64,
    },
    /// Not `<integer>[ms|s|m|h]`.
    NotDuration { what: &'static str },
    /// A token where an option keyword was expected.
    UnknownOption { token: Token },
    /// The same option twice in one limit.
    RepeatedOption { option: &'static str },
    /// A keyword argument with a value outside its set.
    BadChoice {
        what: &'static str,
        expected: &'static str,
    },
    /// Anything else, with a fixed message.
    Syntax(&'static str),
}

/// A short, printable copy of an offending argument for error messages:
/// at most 32 bytes, with anything outside printable ASCII shown as `?`, so a
/// reply error never carries control characters or a client's huge payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    bytes: [u8; 32],
    len: u8,
    truncated: bool,
}

impl Token {
    pub fn new(raw: &[u8]) -> Token {
        let mut bytes = [0u8; 32];
        let len = raw.len().min(bytes.len());
        for (dst, &src) in bytes.iter_mut().zip(&raw[..len]) {
            *dst = if src.is_ascii_graphic() { src } else { b'?' };
        }
        Token {
            bytes,
            len: len as u8,
            truncated: raw.len() > len,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only printable ASCII is stored, so this cannot fail.
        let text = std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?");
        f.write_str(text)?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Arity { command } => {
                write!(f, "ERR wrong number of arguments for '{command}' command")
            }
            ArgError::NotInteger { what } => write!(f, "ERR {what} must be an integer"),
            ArgError::OutOfRange { what, min, max } => {
                write!(f, "ERR {what} must be between {min} and {max}")
            }
            ArgError::NotDuration { what } => write!(
                f,
                "ERR {what} must be a duration: an integer number of milliseconds, optionally with a unit suffix ms, s, m or h"
            ),
            ArgError::UnknownOption { token } => {
                write!(f, "ERR syntax error: unknown option '{token}'")
            }
            ArgError::RepeatedOption { option } => {
                write!(f, "ERR syntax error: option {option} given more than once")
            }
            ArgError::BadChoice { what, expected } => {
                write!(f, "ERR {what} must be one of {expected}")
            }
            ArgError::Syntax(message) => write!(f, "ERR syntax error: {message}"),
        }
    }
}

/// Parses a base-10 integer: an optional `-`, then 1 to 20 ASCII digits.
/// Returns `None` for anything else; values beyond `i128` cannot occur.
pub fn parse_integer(raw: &[u8]) -> Option<i128> {
    let (negative, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut value: i128 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(digit - b'0');
    }
    Some(if negative { -value } else { value })
}

/// Parses a duration in milliseconds: an integer with an optional unit
/// suffix `ms`, `s`, `m` or `h` (case-insensitive). Returns `None` when
/// malformed; the value may be negative or huge (range is the caller's check).
pub fn parse_duration_ms(raw: &[u8]) -> Option<i128> {
    let digits_end = raw
        .iter()
        .rposition(|byte| byte.is_ascii_digit())
        .map_or(0, |index| index + 1);
    let (number, unit) = raw.split_at(digits_end);
    let scale: i128 = if unit.is_empty() || unit.eq_ignore_ascii_case(b"ms") {
        1
    } else if unit.eq_ignore_ascii_case(b"s") {
        1_000
    } else if unit.eq_ignore_ascii_case(b"m") {
        60_000
    } else if unit.eq_ignore_ascii_case(b"h") {
        3_600_000
    } else {
        return None;
    };
    parse_integer(number).map(|value| value * scale)
}

/// How many arguments (the command name included) a command takes:
/// checked first, so a missing argument is an arity error rather than a
/// complaint about the one after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
    /// One of these counts (a command whose options come in whole groups).
    OneOf(&'static [usize]),
}

impl Arity {
    pub fn admits(self, count: usize) -> bool {
        match self {
            Arity::Exactly(expected) => count == expected,
            Arity::AtLeast(least) => count >= least,
            Arity::OneOf(counts) => counts.contains(&count),
        }
    }
}

/// A forward-only cursor over a command's arguments.
pub struct Args<'a, S: ArgSource + ?Sized> {
    source: &'a S,
    position: usize,
    command: &'static str,
}

impl<'a, S: ArgSource + ?Sized> Args<'a, S> {
    /// Starts after the command name (index 1). `command` names the command
    /// in arity errors.
    pub fn new(source: &'a S, command: &'static str) -> Self {
        Args {
            source,
            position: 1,
            command,
        }
    }

    /// [`Args::new`], after checking the argument count against `arity`.
    pub fn checked(source: &'a S, command: &'static str, arity: Arity) -> Result<Self, ArgError> {
        let args = Args::new(source, command);
        if arity.admits(source.count()) {
            Ok(args)
        } else {
            Err(args.arity_error())
        }
    }

    /// Index of the next argument in the original `argv`.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn remaining(&self) -> usize {
        self.source.count().saturating_sub(self.position)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn arity_error(&self) -> ArgError {
        ArgError::Arity {
            command: self.command,
        }
    }

    pub fn peek(&self) -> Option<&'a [u8]> {
        (self.position < self.source.count()).then(|| self.source.bytes(self.position))
    }

    /// The next argument's index in `argv` (for keys, which the glue opens by
    /// index), or an arity error.
    pub fn next_index(&mut self) -> Result<usize, ArgError> {
        if self.is_empty() {
            return Err(self.arity_error());
        }
        self.position += 1;
        Ok(self.position - 1)
    }

    pub fn next_bytes(&mut self) -> Result<&'a [u8], ArgError> {
        let index = self.next_index()?;
        Ok(self.source.bytes(index))
    }

    /// An integer in `min..=max`.
    pub fn next_u64(&mut self, what: &'static str, min: u64, max: u64) -> Result<u64, ArgError> {
        let raw = self.next_bytes()?;
        let value = parse_integer(raw).ok_or(ArgError::NotInteger { what })?;
        in_range(value, what, min, max)
    }

    /// A duration in milliseconds in `min..=max`.
    pub fn next_duration_ms(
        &mut self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u64, ArgError> {
        let raw = self.next_bytes()?;
        let value = parse_duration_ms(raw).ok_or(ArgError::NotDuration { what })?;
        in_range(value, what, min, max)
    }

    /// One of `choices` (case-insensitive), returned by position.
    pub fn next_choice(
        &mut self,
        what: &'static str,
        choices: &[&str],
        expected: &'static str,
    ) -> Result<usize, ArgError> {
        let raw = self.next_bytes()?;
        choices
            .iter()
            .position(|choice| raw.eq_ignore_ascii_case(choice.as_bytes()))
            .ok_or(ArgError::BadChoice { what, expected })
    }

    /// If the next argument is one of `keywords`, consumes it and returns its
    /// position in `keywords`.
    pub fn next_keyword(&mut self, keywords: &[&str]) -> Option<usize> {
        let raw = self.peek()?;
        let found = keywords
            .iter()
            .position(|keyword| raw.eq_ignore_ascii_case(keyword.as_bytes()))?;
        self.position += 1;
        Some(found)
    }

    /// Errors unless every argument was consumed: a leftover argument is
    /// reported as an unknown option.
    pub fn expect_end(&self) -> Result<(), ArgError> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(ArgError::UnknownOption {
                token: Token::new(token),
            }),
        }
    }
}

fn in_range(value: i128, what: &'static str, min: u64, max: u64) -> Result<u64, ArgError> {
    if value < i128::from(min) || value > i128::from(max) {
        return Err(ArgError::OutOfRange { what, min, max });
    }
    // In range of two u64 bounds, so the conversion is exact.
    u64::try_from(value).map_err(|_| ArgError::OutOfRange { what, min, max })
}

/// Errors if two of `keys` (argv indexes) name the same key: a command that
/// writes several keys must not be handed one key in two roles.
pub fn distinct_keys<S, I>(source: &S, keys: I) -> Result<(), ArgError>
where
    S: ArgSource + ?Sized,
    I: IntoIterator<Item = usize> + Clone,
{
    for (position, key) in keys.clone().into_iter().enumerate() {
        let name = source.bytes(key);
        if keys
            .clone()
            .into_iter()
            .take(position)
            .any(|earlier| source.bytes(earlier) == name)
        {
            return Err(ArgError::Syntax("the same key is given twice"));
        }
    }
    Ok(())
}

/// Tracks which options a command has seen, to reject repeats.
#[derive(Default)]
pub struct SeenOptions(u32);

impl SeenOptions {
    /// Marks option `index` (< 32) as seen; errors if it already was.
    pub fn mark(&mut self, index: usize, name: &'static str) -> Result<(), ArgError> {
        let bit = 1u32 << (index % 32);
        if self.0 & bit != 0 {
            return Err(ArgError::RepeatedOption { option: name });
        }
        self.0 |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args<'a>(list: &'a [&'a [u8]]) -> Args<'a, [&'a [u8]]> {
        Args::new(list, "tk.test")
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-12"), Some(-12));
        assert_eq!(
            parse_integer(b"18446744073709551615"),
            Some(u64::MAX as i128)
        );
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"1e3",
            b"0x10",
            b"123456789012345678901",
            b"\xff",
        ] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_accept_unit_suffixes() {
        assert_eq!(parse_duration_ms(b"250"), Some(250));
        assert_eq!(parse_duration_ms(b"250ms"), Some(250));
        assert_eq!(parse_duration_ms(b"250MS"), Some(250));
        assert_eq!(parse_duration_ms(b"2s"), Some(2_000));
        assert_eq!(parse_duration_ms(b"3m"), Some(180_000));
        assert_eq!(parse_duration_ms(b"1H"), Some(3_600_000));
        assert_eq!(parse_duration_ms(b"-1s"), Some(-1_000));
        for bad in [
            &b""[..],
            b"s",
            b"ms",
            b"1d",
            b"1 s",
            b"1sec",
            b"1.5s",
            b"1ss",
            b"s1",
            b"1m1",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn range_and_arity_errors() {
        let list: [&[u8]; 4] = [b"cmd", b"0", b"abc", b"5"];
        let mut cursor = args(&list);
        assert_eq!(
            cursor.next_u64("limit", 1, 10),
            Err(ArgError::OutOfRange {
                what: "limit",
                min: 1,
                max: 10
            })
        );
        assert_eq!(
            cursor.next_u64("limit", 1, 10),
            Err(ArgError::NotInteger { what: "limit" })
        );
        assert_eq!(cursor.next_u64("limit", 1, 10), Ok(5));
        assert_eq!(
            cursor.next_u64("limit", 1, 10),
            Err(ArgError::Arity { command: "tk.test" })
        );
        assert_eq!(cursor.expect_end(), Ok(()));
    }

    #[test]
    fn keywords_and_leftovers() {
        let list: [&[u8]; 3] = [b"cmd", b"burst", b"\x01junk"];
        let mut cursor = args(&list);
        assert_eq!(cursor.next_keyword(&["COST", "BURST"]), Some(1));
        assert_eq!(cursor.next_keyword(&["COST", "BURST"]), None);
        let err = cursor.expect_end().unwrap_err();
        assert_eq!(err.to_string(), "ERR syntax error: unknown option '?junk'");
    }

    #[test]
    fn repeated_options_are_rejected() {
        let mut seen = SeenOptions::default();
        assert!(seen.mark(0, "BURST").is_ok());
        assert!(seen.mark(1, "COST").is_ok());
        assert_eq!(
            seen.mark(0, "BURST"),
            Err(ArgError::RepeatedOption { option: "BURST" })
        );
    }

    #[test]
    fn tokens_are_sanitized_and_truncated() {
        let long = [b'a'; 100];
        assert_eq!(
            Token::new(&long).to_string(),
            format!("{}...", "a".repeat(32))
        );
        assert_eq!(Token::new(b"a\r\nb").to_string(), "a??b");
    }

    proptest! {
        #[test]
        fn integer_parse_matches_std(value in any::<i64>()) {
            prop_assert_eq!(parse_integer(value.to_string().as_bytes()), Some(i128::from(value)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_integer(&raw);
            let _ = parse_duration_ms(&raw);
            let _ = Token::new(&raw).to_string();
        }

        #[test]
        fn durations_scale(value in 0u32..1_000_000, unit in 0usize..4) {
            let (suffix, scale) = [("ms", 1i128), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)][unit];
            let text = format!("{value}{suffix}");
            prop_assert_eq!(parse_duration_ms(text.as_bytes()), Some(i128::from(value) * scale));
        }
    }
}
