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

/// The conventional prefix for rate-limit keys.
pub const RATELIMIT_PREFIX: &str = "tk:rl:";

/// `prefix` followed by `key`, in one allocation.
pub fn prefixed(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + key.len());
    out.push_str(prefix);
    out.push_str(key);
    out
}

/// `key` under [`RATELIMIT_PREFIX`].
pub fn ratelimit(key: &str) -> String {
    prefixed(RATELIMIT_PREFIX, key)
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
}
