//! What a lookup answers: [`Lookup`], [`Generation`], and the parsing of
//! `TK.CACHE.GET`'s reply.

use crate::error::{Error, Result};
use crate::reply::{bulk, elements, truncate, type_name, unwrap_attribute};
use redis::{FromRedisValue, ParsingError, Value};
use std::fmt;
use std::str::FromStr;

/// The generations current at a miss ([`Lookup::Miss`]): an opaque token
/// to pass to [`Cache::set`](super::Cache::set) so that the store is refused if the user or
/// the namespace was invalidated since.
///
/// Its text form is the module's, `<user generation>.<namespace generation>`
/// (two decimal `u64`s): [`Display`](fmt::Display) writes it and
/// [`FromStr`] reads it back, strictly (no signs, spaces or leading zeros),
/// so it can be kept outside the process, e.g. in a job's payload.
///
/// ```
/// use tk_redis::cache::Generation;
/// let token: Generation = "3.17".parse()?;
/// assert_eq!(token.to_string(), "3.17");
/// assert!("3.017".parse::<Generation>().is_err());
/// # Ok::<(), tk_redis::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    pub(super) user: u64,
    pub(super) namespace: u64,
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.user, self.namespace)
    }
}

/// Fails with [`Error::InvalidArgument`] unless the text is exactly two
/// canonical decimal `u64`s separated by one `.`.
impl FromStr for Generation {
    type Err = Error;

    fn from_str(text: &str) -> Result<Generation> {
        parse_generation(text).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "invalid cache generation {:?}: expected <u64>.<u64>",
                truncate(text, 64)
            ))
        })
    }
}

pub(super) fn parse_generation(text: &str) -> Option<Generation> {
    let (user, namespace) = text.split_once('.')?;
    Some(Generation {
        user: canonical_u64(user)?,
        namespace: canonical_u64(namespace)?,
    })
}

/// Decimal digits only, no leading zero (except `0` itself), within `u64`.
pub(super) fn canonical_u64(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// The answer of [`Cache::get`](super::Cache::get).
///
/// ```no_run
/// # async fn demo(cache: tk_redis::Cache) -> tk_redis::Result<()> {
/// use std::time::Duration;
/// use tk_redis::cache::{Lookup, RequestIdentity, NO_QUERY};
///
/// let identity = RequestIdentity::for_user("42", "GET", "/feed", NO_QUERY);
/// let feed = match cache.get::<Vec<String>>("42", "feed", &identity).await? {
///     Lookup::Hit(feed) => feed,
///     Lookup::Miss(generation) => {
///         let feed = vec!["computed now".to_owned()];
///         // Refused if "42" or "feed" was invalidated since the miss.
///         cache.set("42", "feed", &identity, &feed, Duration::from_secs(60), Some(&generation)).await?;
///         feed
///     }
/// };
/// # let _ = feed;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The cached value.
    Hit(T),
    /// Nothing cached (or only entries from before an invalidation). Pass the
    /// generation to [`Cache::set`](super::Cache::set) with the value computed now, so the store
    /// is refused if an invalidation happens meanwhile.
    Miss(Generation),
}

impl<T> Lookup<T> {
    /// Whether this is a [`Lookup::Hit`].
    pub fn is_hit(&self) -> bool {
        matches!(self, Lookup::Hit(_))
    }

    /// The cached value of a hit.
    pub fn hit(self) -> Option<T> {
        match self {
            Lookup::Hit(value) => Some(value),
            Lookup::Miss(_) => None,
        }
    }
}

/// `TK.CACHE.GET`'s reply: `[1, <value>]` or `[0, <generation token>]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum GetReply {
    Hit(Vec<u8>),
    Miss(Generation),
}

impl FromRedisValue for GetReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let [flag, payload] = elements::<2>(value)?;
        let flag = match unwrap_attribute(&flag) {
            Value::Int(flag) => *flag,
            other => {
                return Err(
                    format!("element 0 should be an integer, got {}", type_name(other)).into(),
                )
            }
        };
        let payload = bulk(payload, 1, "value or generation")?;
        match flag {
            1 => Ok(GetReply::Hit(payload)),
            0 => {
                let text = String::from_utf8_lossy(&payload);
                parse_generation(&text).map(GetReply::Miss).ok_or_else(|| {
                    format!("invalid generation token {:?}", truncate(&text, 64)).into()
                })
            }
            other => Err(format!("element 0 must be 0 or 1, got {other}").into()),
        }
    }
}
