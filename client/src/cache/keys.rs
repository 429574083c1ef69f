//! The keys of a user's cache entries, and the checks of a call's user,
//! namespace and TTL.

use super::*;
use crate::args;
use crate::error::{Error, Result};
use crate::keys::{self, tag_of, tagged, user_digest};
use std::time::Duration;

/// The hash tag of all of `user`'s cache keys: the first 16 hex digits
/// (lowercase) of the SHA-256 of the user id's bytes.
///
/// ```
/// assert_eq!(tk_redis::cache::user_tag("abc"), "ba7816bf8f01cfea");
/// ```
pub fn user_tag(user: &str) -> String {
    keys::user_tag(user)
}

/// `user`'s generations key: `tk:cg:{<tag>}` (see [`user_tag`]).
///
/// ```
/// assert_eq!(tk_redis::cache::generations_key("abc"), "tk:cg:{ba7816bf8f01cfea}");
/// ```
pub fn generations_key(user: &str) -> String {
    tagged(GENERATIONS_PREFIX, &user_tag(user))
}

/// `user`'s index key: `tk:ci:{<tag>}` (see [`user_tag`]).
///
/// ```
/// assert_eq!(tk_redis::cache::index_key("abc"), "tk:ci:{ba7816bf8f01cfea}");
/// ```
pub fn index_key(user: &str) -> String {
    tagged(INDEX_PREFIX, &user_tag(user))
}

/// The key of `user`'s entry for `identity` in `namespace`:
/// `tk:c:{<tag>}:<namespace>:<identity hex>` (see [`user_tag`],
/// [`RequestIdentity::hex`]).
///
/// Fails with [`Error::InvalidArgument`] for an invalid namespace. It does
/// not check that `identity` belongs to `user`; the [`Cache`] methods do.
///
/// ```
/// use tk_redis::cache::{entry_key, RequestIdentity, NO_QUERY};
/// let identity = RequestIdentity::for_user("abc", "GET", "/feed", NO_QUERY);
/// let key = entry_key("abc", "feed", &identity)?;
/// assert!(key.starts_with("tk:c:{ba7816bf8f01cfea}:feed:"));
/// # Ok::<(), tk_redis::Error>(())
/// ```
pub fn entry_key(user: &str, namespace: &str, identity: &RequestIdentity) -> Result<String> {
    check_namespace(namespace)?;
    Ok(entry_key_for_tag(&user_tag(user), namespace, identity))
}

pub(super) fn entry_key_for_tag(tag: &str, namespace: &str, identity: &RequestIdentity) -> String {
    let mut key = tagged(ENTRY_PREFIX, tag);
    key.push(':');
    key.push_str(namespace);
    key.push(':');
    key.push_str(&identity.hex());
    key
}

/// A namespace is 1 to [`MAX_NAMESPACE_LEN`] bytes of `[A-Za-z0-9_.-]`.
pub(crate) fn check_namespace(namespace: &str) -> Result<()> {
    let valid_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if namespace.is_empty()
        || namespace.len() > MAX_NAMESPACE_LEN
        || !namespace.bytes().all(valid_byte)
    {
        return Err(Error::InvalidArgument(format!(
            "cache namespace {namespace:?} must be 1 to {MAX_NAMESPACE_LEN} bytes \
             of A-Z, a-z, 0-9, '_', '.' and '-'"
        )));
    }
    Ok(())
}

pub(super) fn check_user(user: &str) -> Result<()> {
    if user.is_empty() {
        return Err(Error::InvalidArgument(
            "the cache user id must not be empty".into(),
        ));
    }
    Ok(())
}

/// The TTL in whole milliseconds, rounded up, within 1 ms ..= [`MAX_TTL`].
pub(crate) fn ttl_ms(ttl: Duration) -> Result<u64> {
    args::bounded_ms("cache ttl", ttl, MAX_TTL)
}

/// The three keys of one call, after validating its arguments.
pub(super) struct Keys {
    pub(super) entry: String,
    pub(super) generations: String,
    pub(super) index: String,
}

impl Keys {
    /// Checks the user, the namespace and that `identity` may be used for
    /// `user`.
    pub(super) fn new(user: &str, namespace: &str, identity: &RequestIdentity) -> Result<Keys> {
        check_user(user)?;
        check_namespace(namespace)?;
        let digest = user_digest(user);
        if identity.user.is_some_and(|owner| owner != digest) {
            // The user id is not echoed: it may be personal data.
            return Err(Error::InvalidArgument(
                "the request identity was built for another user than the one given: \
                 it must not be used to cache for this user"
                    .into(),
            ));
        }
        let tag = tag_of(&digest);
        Ok(Keys {
            entry: entry_key_for_tag(&tag, namespace, identity),
            generations: tagged(GENERATIONS_PREFIX, &tag),
            index: tagged(INDEX_PREFIX, &tag),
        })
    }

    /// The keys of the user-wide commands (no entry).
    pub(super) fn of_user(user: &str) -> Result<(String, String)> {
        check_user(user)?;
        let tag = user_tag(user);
        Ok((tagged(GENERATIONS_PREFIX, &tag), tagged(INDEX_PREFIX, &tag)))
    }
}
