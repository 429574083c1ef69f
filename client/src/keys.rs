//! Key naming helpers, kept in one place.
//!
//! The client **never rewrites keys**: the key you pass to
//! [`RateLimiter::check`](crate::RateLimiter::check) and friends is the exact
//! Redis key the module reads and writes. Use these helpers if you want a
//! consistent namespace, e.g. `tk:rl:` for rate limits, so the keys are easy
//! to find (`SCAN MATCH tk:rl:*`), to protect with ACL key patterns, or to
//! keep apart from your other data:
//!
//! ```
//! use tk_redis::keys;
//!
//! assert_eq!(keys::ratelimit("api:user:42"), "tk:rl:api:user:42");
//! assert_eq!(keys::prefixed("myapp:rl:", "login:10.0.0.1"), "myapp:rl:login:10.0.0.1");
//! ```
//!
//! On Redis Cluster, commands touching several keys (`check_all`, `reset`
//! with more than one key) need all keys in one hash slot: put the same
//! hash tag in each, e.g. `tk:rl:{user42}:second` and `tk:rl:{user42}:day`.

/// The conventional prefix for rate-limit keys ([example](self)).
pub const RATELIMIT_PREFIX: &str = "tk:rl:";

/// `prefix` followed by `key`, in one allocation ([example](self)).
pub fn prefixed(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + key.len());
    out.push_str(prefix);
    out.push_str(key);
    out
}

/// `key` under [`RATELIMIT_PREFIX`] ([example](self)).
pub fn ratelimit(key: &str) -> String {
    prefixed(RATELIMIT_PREFIX, key)
}

// ---- per-user hash tags (shared by the cache and the sessions) -------------

/// How many hex digits of the user id's SHA-256 make a user's hash tag.
pub(crate) const TAG_HEX_LEN: usize = 16;

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

/// The SHA-256 of a user id.
pub(crate) fn user_digest(user: &str) -> [u8; 32] {
    sha256(user.as_bytes())
}

/// The hash tag of a user's digest: its first [`TAG_HEX_LEN`] hex digits.
pub(crate) fn tag_of(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..TAG_HEX_LEN / 2])
}

/// The hash tag of all of `user`'s keys: the first 16 hex digits
/// (lowercase) of the SHA-256 of the user id's bytes.
pub(crate) fn user_tag(user: &str) -> String {
    tag_of(&user_digest(user))
}

/// `prefix` followed by `{<tag>}`.
pub(crate) fn tagged(prefix: &str, tag: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + tag.len() + 2);
    key.push_str(prefix);
    key.push('{');
    key.push_str(tag);
    key.push('}');
    key
}

/// The Redis Cluster hash slot of `key`, as `CLUSTER KEYSLOT` computes it:
/// the CRC16 of the hash tag (the bytes between the first `{` and the next
/// `}`, when not empty) or of the whole key, modulo 16384. Keys used in one
/// `TK.*` call must share a slot.
///
/// ```
/// use tk_redis::keys::key_slot;
/// assert_eq!(key_slot("foo"), 12182);
/// assert_eq!(key_slot("rl:{u42}:sec"), key_slot("rl:{u42}:hour"));
/// ```
pub fn key_slot(key: impl AsRef<[u8]>) -> u16 {
    tk_redis_core::keys::slot(key.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(prefixed("", "k"), "k");
        assert_eq!(prefixed("p:", ""), "p:");
        assert_eq!(ratelimit("{u1}:min"), "tk:rl:{u1}:min");
    }

    #[test]
    fn key_slot_matches_redis() {
        // Slots Redis reports.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("{foo}:x"), key_slot("foo"));
        // An empty tag hashes the whole key.
        assert_eq!(key_slot("a{}b"), 13694);
    }

    #[test]
    fn user_tags() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(user_tag("abc"), "ba7816bf8f01cfea");
        assert_eq!(tagged("p:", "t"), "p:{t}");
    }
}
