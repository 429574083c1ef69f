//! Per-user response caching with instant invalidation: a [`Cache`] on the
//! module's `TK.CACHE.*` commands, keyed by a [`RequestIdentity`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tk_redis::cache::{Cache, GetOrComputeError, RequestIdentity};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Dashboard { unread: u32 }
//!
//! #[derive(Debug)]
//! enum AppError { Db(String), Cache(tk_redis::Error) }
//!
//! impl From<tk_redis::Error> for AppError {
//!     fn from(err: tk_redis::Error) -> Self { AppError::Cache(err) }
//! }
//!
//! async fn load_dashboard(user: &str) -> Result<Dashboard, AppError> {
//!     // ... the database queries ...
//! # let _ = user; Err(AppError::Db("unreachable".into()))
//! }
//!
//! async fn get_dashboard(cache: &Cache, user: &str, page: &str) -> Result<Dashboard, AppError> {
//!     // The user is part of the identity: this response is private.
//!     let identity = RequestIdentity::for_user(user, "GET", "/api/dashboard", [("page", page)]);
//!     cache
//!         .get_or_compute(user, "dashboard", &identity, Duration::from_secs(60), || {
//!             load_dashboard(user)
//!         })
//!         .await
//!         // Compute errors come back as they are, cache errors through `From`.
//!         .map_err(GetOrComputeError::flatten)
//! }
//!
//! async fn mark_all_read(cache: &Cache, user: &str) -> Result<(), AppError> {
//!     // ... write to the database, then:
//!     cache.invalidate_namespace(user, "dashboard").await?;
//!     Ok(())
//! }
//! ```
//!
//! # The user is part of every key
//!
//! A cache that ignores who asked serves one user's private page to
//! another: the first user's dashboard, cached under `GET /api/dashboard`,
//! would be the answer to everyone requesting `GET /api/dashboard`. So the
//! user appears twice:
//!
//! - every call takes the `user` it caches for, which selects the user's
//!   keys ([`entry_key`], [`generations_key`], [`index_key`]) and their
//!   invalidation generation;
//! - the [`RequestIdentity`] of an authenticated response is built with
//!   [`RequestIdentity::for_user`], which hashes the user id into the
//!   identity itself, and the cache refuses
//!   ([`Error::InvalidArgument`]) to use it for any other user.
//!
//! [`RequestIdentity::public`] is for responses that are byte-for-byte the
//! same for every user (a public catalogue page), and only for them. Public
//! identities still live under the `user` given to the call: to share one
//! entry between all users, pass one fixed scope name as `user`, e.g.
//! `"public"` (then `invalidate_user("public")` drops them all).
//!
//! An empty user id is refused ([`Error::InvalidArgument`]): it is almost
//! always an id that failed to load, and caching under it would share
//! entries between everyone whose id is missing.
//!
//! # Keys and Redis Cluster
//!
//! All keys of one user share one hash tag, [`user_tag`] (the first 16 hex
//! digits of the SHA-256 of the user id), so they live in one Cluster slot
//! and every command touches a single slot:
//!
//! | key | format |
//! |---|---|
//! | generations | `tk:cg:{<tag>}` |
//! | index | `tk:ci:{<tag>}` |
//! | entry | `tk:c:{<tag>}:<namespace>:<64 hex digits of the identity's SHA-256>` |
//!
//! A namespace groups entries to invalidate together (e.g. `dashboard`,
//! `search`): 1 to [`MAX_NAMESPACE_LEN`] bytes of `A-Z`, `a-z`, `0-9`, `_`,
//! `.` and `-`.
//!
//! # Invalidation without races
//!
//! The module keeps, per user, a user generation and one generation per
//! namespace. [`Cache::invalidate_user`] bumps the user's generation (every
//! namespace becomes invisible at once) and
//! [`Cache::invalidate_namespace`] one namespace's. An entry is only visible
//! while the generations it was stored under are current.
//!
//! A miss ([`Lookup::Miss`]) carries the [`Generation`] current at the time
//! of the lookup. [`Cache::get_or_compute`] stores the value it computed
//! with `IFGEN <that generation>`, and the module refuses the store if an
//! invalidation happened in between: a value computed from data read before
//! an invalidation is never cached after it.
//!
//! # When Redis is unavailable
//!
//! The [`CacheErrorPolicy`] of [`Cache::get_or_compute`] is
//! [`Miss`](CacheErrorPolicy::Miss) by default: a transient error
//! ([`Error::is_transient`]) is treated as a miss, the value is computed and
//! returned. All other errors ([`Error::ModuleNotLoaded`],
//! [`Error::Server`], [`Error::InvalidArgument`],
//! [`Error::UnexpectedReply`]) are returned whatever the policy, and
//! [`Cache::get`], [`Cache::set`] and the invalidations always return
//! their errors. Nothing is swallowed silently: every error absorbed by the
//! policy is counted in [`CacheMetrics::errors_as_misses`], every error
//! returned in [`CacheMetrics::errors`].
//!
//! Every command waits at most [`Cache::timeout`] (3 s by default). For a
//! cache, a shorter timeout is usually better (e.g. 200 ms with
//! [`Cache::with_timeout`]): under the `Miss` policy an unreachable Redis
//! then costs each request that much before the value is computed.
//!
//! # Connections
//!
//! Use the cache's own instance when there is one
//! ([`Config::connect_cache`](crate::Config::connect_cache), from
//! `REDIS_CACHE_ADDR`): a cache instance usually runs with
//! `maxmemory-policy allkeys-lru`, which must not hold sessions or rate
//! limits.
//!
//! # Values
//!
//! Values are stored as JSON (`serde_json`). A cached value that no longer
//! decodes as the requested type (e.g. written by an older version of the
//! application) is reported by [`Cache::get`] as
//! [`Error::UnexpectedReply`] and recomputed by [`Cache::get_or_compute`];
//! both count it in [`CacheMetrics::undecodable`].

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{FromRedisValue, ParsingError, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::args;
use crate::client::{ClientCore, Counter};
use crate::error::{Error, Result};
use crate::keys::{self, tag_of, tagged, user_digest};
use crate::reply::{
    bulk, elements, truncate, type_name, undecodable, unwrap_attribute, Count, Flag,
};
use crate::telemetry;

/// `TK.CACHE.GET <entry_key> <gen_key> <namespace>` (read-only).
pub(crate) const CMD_GET: &str = "TK.CACHE.GET";
/// `TK.CACHE.SET <entry_key> <gen_key> <index_key> <namespace> <ttl_ms> <value> [IFGEN <token>]`.
pub(crate) const CMD_SET: &str = "TK.CACHE.SET";
/// `TK.CACHE.INVALIDATEUSER <gen_key> <index_key>`.
pub(crate) const CMD_INVALIDATE_USER: &str = "TK.CACHE.INVALIDATEUSER";
/// `TK.CACHE.INVALIDATENS <gen_key> <index_key> <namespace>`.
pub(crate) const CMD_INVALIDATE_NAMESPACE: &str = "TK.CACHE.INVALIDATENS";

/// The prefix of a user's generations key ([`generations_key`]).
pub const GENERATIONS_PREFIX: &str = "tk:cg:";
/// The prefix of a user's index key ([`index_key`]).
pub const INDEX_PREFIX: &str = "tk:ci:";
/// The prefix of entry keys ([`entry_key`]).
pub const ENTRY_PREFIX: &str = "tk:c:";

/// The longest TTL the module accepts for an entry: 7 days.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// An empty query string, for [`RequestIdentity::for_user`] and
/// [`RequestIdentity::public`]:
///
/// ```
/// use tk_redis::cache::{RequestIdentity, NO_QUERY};
/// let identity = RequestIdentity::public("GET", "/api/catalogue", NO_QUERY);
/// # let _ = identity;
/// ```
pub const NO_QUERY: [(&str, &str); 0] = [];

// ---- keys ------------------------------------------------------------------

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

fn entry_key_for_tag(tag: &str, namespace: &str, identity: &RequestIdentity) -> String {
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

fn check_user(user: &str) -> Result<()> {
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
struct Keys {
    entry: String,
    generations: String,
    index: String,
}

impl Keys {
    /// Checks the user, the namespace and that `identity` may be used for
    /// `user`.
    fn new(user: &str, namespace: &str, identity: &RequestIdentity) -> Result<Keys> {
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
    fn of_user(user: &str) -> Result<(String, String)> {
        check_user(user)?;
        let tag = user_tag(user);
        Ok((tagged(GENERATIONS_PREFIX, &tag), tagged(INDEX_PREFIX, &tag)))
    }
}

// ---- request identity --------------------------------------------------------

/// Version of the identity encoding, hashed first: changing the encoding
/// must change this, so old and new digests never mean different things.
const IDENTITY_VERSION: u8 = 1;
/// An HTTP request: method, path and query pairs.
const KIND_HTTP: u8 = b'H';
/// Arbitrary parts (`from_parts`).
const KIND_PARTS: u8 = b'P';
/// A `vary` extension of another identity.
const KIND_VARY: u8 = b'V';

/// The SHA-256 of an unambiguous encoding: every variable-length field is
/// prefixed with its length, every list with its count (except a final
/// one, which ends with the input).
struct Encoder(Sha256);

impl Encoder {
    fn new(kind: u8, user: Option<&[u8; 32]>) -> Encoder {
        let mut hasher = Sha256::new();
        hasher.update([IDENTITY_VERSION, kind]);
        match user {
            None => hasher.update([0]),
            Some(digest) => {
                hasher.update([1]);
                hasher.update(digest);
            }
        }
        Encoder(hasher)
    }

    fn number(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.number(bytes.len());
        self.0.update(bytes);
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// What makes two requests share a cache entry: a SHA-256 digest of the
/// request's parts and, for private responses, of the user.
///
/// # Always include the user for authenticated responses
///
/// A cache key that leaves out who asked serves one user's private data to
/// the next user making the same request. Build the identity of anything
/// that depends on the logged-in user (their dashboard, their feed, a page
/// showing their name) with [`for_user`](RequestIdentity::for_user) or
/// [`for_user_from_parts`](RequestIdentity::for_user_from_parts). The
/// [`Cache`] then also refuses to use that identity for another user.
/// Use [`public`](RequestIdentity::public) or
/// [`from_parts`](RequestIdentity::from_parts) only for results that are
/// the same whoever asks.
///
/// # Canonical form
///
/// - The method is uppercased (`get` and `GET` are the same request).
/// - The path is used as given, case-sensitive: normalise it first if
///   `/a/` and `/a` are the same resource for you.
/// - The query pairs are sorted by name, then value (bytewise), so their
///   order in the URL does not matter. Repeated pairs are kept (`a=1&a=1`
///   differs from `a=1`). Pass them decoded, e.g. from
///   `url::Url::query_pairs`, so that `%61` and `a` agree.
/// - Anything else the response depends on (a header such as
///   `Accept-Language`, a feature flag) must be added with
///   [`vary`](RequestIdentity::vary).
///
/// The encoding is unambiguous (lengths prefix every field; a version byte
/// and whether a user is present come first), so `("a", "bc")` and
/// `("ab", "c")` never share a digest, nor do a user's identity and a
/// public one.
///
/// ```
/// use tk_redis::cache::RequestIdentity;
///
/// let a = RequestIdentity::for_user("42", "get", "/search", [("q", "rust"), ("page", "2")]);
/// let b = RequestIdentity::for_user("42", "GET", "/search", [("page", "2"), ("q", "rust")]);
/// assert_eq!(a, b);
/// assert_ne!(a, RequestIdentity::for_user("43", "GET", "/search", [("page", "2"), ("q", "rust")]));
/// assert_ne!(a, RequestIdentity::public("GET", "/search", [("page", "2"), ("q", "rust")]));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestIdentity {
    digest: [u8; 32],
    /// SHA-256 of the user id, for a user's identity.
    user: Option<[u8; 32]>,
}

impl fmt::Debug for RequestIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestIdentity")
            .field("digest", &self.hex())
            .field("has_user", &self.has_user())
            .finish()
    }
}

impl RequestIdentity {
    /// The identity of an HTTP request made by `user`, for a response that
    /// depends on who asks. `query` yields the query string's decoded
    /// `(name, value)` pairs, in any order (see the [type docs](Self)).
    pub fn for_user<I, K, V>(user: &str, method: &str, path: &str, query: I) -> RequestIdentity
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        RequestIdentity::http(Some(user_digest(user)), method, path, query)
    }

    /// The identity of an HTTP request whose response is **the same for
    /// every user** (nothing in it depends on who is logged in). When in
    /// doubt, use [`for_user`](RequestIdentity::for_user): a public identity
    /// for a private response leaks it to other users.
    pub fn public<I, K, V>(method: &str, path: &str, query: I) -> RequestIdentity
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        RequestIdentity::http(None, method, path, query)
    }

    /// The identity of something other than an HTTP request (a search or
    /// analytics query...), from its parts, in order. Includes **no user**:
    /// like [`public`](RequestIdentity::public), only for results that are
    /// the same whoever asks; otherwise use
    /// [`for_user_from_parts`](RequestIdentity::for_user_from_parts).
    ///
    /// ```
    /// use tk_redis::cache::RequestIdentity;
    /// let a = RequestIdentity::from_parts(["top-posts", "week"]);
    /// let b = RequestIdentity::from_parts([b"top-posts".as_slice(), b"week".as_slice()]);
    /// assert_eq!(a, b);
    /// ```
    pub fn from_parts<I>(parts: I) -> RequestIdentity
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        RequestIdentity::parts(None, parts)
    }

    /// Like [`from_parts`](RequestIdentity::from_parts), for a result that
    /// depends on `user`.
    pub fn for_user_from_parts<I>(user: &str, parts: I) -> RequestIdentity
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        RequestIdentity::parts(Some(user_digest(user)), parts)
    }

    /// This identity extended with something else the response depends on,
    /// such as a request header (`vary("accept-language", "fr")`). The user
    /// (or its absence) is kept. Calls can be chained; their order matters.
    #[must_use]
    pub fn vary(&self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> RequestIdentity {
        let mut encoder = Encoder::new(KIND_VARY, self.user.as_ref());
        encoder.0.update(self.digest);
        encoder.field(name.as_ref());
        encoder.field(value.as_ref());
        RequestIdentity {
            digest: encoder.finish(),
            user: self.user,
        }
    }

    /// Whether the identity was built for a user
    /// ([`for_user`](RequestIdentity::for_user),
    /// [`for_user_from_parts`](RequestIdentity::for_user_from_parts)).
    pub fn has_user(&self) -> bool {
        self.user.is_some()
    }

    /// The SHA-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The digest as 64 lowercase hex digits, as it appears in the entry key.
    pub fn hex(&self) -> String {
        hex::encode(self.digest)
    }

    fn http<I, K, V>(user: Option<[u8; 32]>, method: &str, path: &str, query: I) -> RequestIdentity
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut pairs: Vec<(K, V)> = query.into_iter().collect();
        pairs.sort_by(|(a_name, a_value), (b_name, b_value)| {
            (a_name.as_ref(), a_value.as_ref()).cmp(&(b_name.as_ref(), b_value.as_ref()))
        });
        let mut encoder = Encoder::new(KIND_HTTP, user.as_ref());
        encoder.field(method.to_ascii_uppercase().as_bytes());
        encoder.field(path.as_bytes());
        encoder.number(pairs.len());
        for (name, value) in &pairs {
            encoder.field(name.as_ref());
            encoder.field(value.as_ref());
        }
        RequestIdentity {
            digest: encoder.finish(),
            user,
        }
    }

    fn parts<I>(user: Option<[u8; 32]>, parts: I) -> RequestIdentity
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let parts: Vec<I::Item> = parts.into_iter().collect();
        let mut encoder = Encoder::new(KIND_PARTS, user.as_ref());
        encoder.number(parts.len());
        for part in &parts {
            encoder.field(part.as_ref());
        }
        RequestIdentity {
            digest: encoder.finish(),
            user,
        }
    }
}

// ---- generations and lookups --------------------------------------------------

/// The generations current at a miss ([`Lookup::Miss`]): an opaque token
/// to pass to [`Cache::set`] so that the store is refused if the user or
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
    user: u64,
    namespace: u64,
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

fn parse_generation(text: &str) -> Option<Generation> {
    let (user, namespace) = text.split_once('.')?;
    Some(Generation {
        user: canonical_u64(user)?,
        namespace: canonical_u64(namespace)?,
    })
}

/// Decimal digits only, no leading zero (except `0` itself), within `u64`.
fn canonical_u64(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// The answer of [`Cache::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The cached value.
    Hit(T),
    /// Nothing cached (or only entries from before an invalidation). Pass the
    /// generation to [`Cache::set`] with the value computed now, so the store
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

// ---- policy, metrics, errors --------------------------------------------------

/// What [`Cache::get_or_compute`] does with a transient error
/// ([`Error::Connection`], [`Error::Timeout`]; see [`Error::is_transient`]).
///
/// Only `get_or_compute` follows the policy: [`Cache::get`], [`Cache::set`]
/// and the invalidations always return their errors. Non-transient errors
/// ([`Error::ModuleNotLoaded`], [`Error::Server`],
/// [`Error::InvalidArgument`], [`Error::UnexpectedReply`]) are always
/// returned: they mean a deployment or programming mistake, which must not
/// be hidden behind a cache miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CacheErrorPolicy {
    /// Treat the error as a miss (the default): when the lookup fails, the
    /// value is computed and returned, and not stored (Redis was just
    /// unreachable; trying would add another timeout to the request); when
    /// only the store fails, the computed value is returned. Each such error
    /// is counted in [`CacheMetrics::errors_as_misses`].
    ///
    /// The default, because an outage of a cache must not take the
    /// application down: requests get slower, not failed.
    #[default]
    Miss,
    /// Return the error ([`GetOrComputeError::Cache`]), even when the value
    /// was already computed and only storing it failed.
    Error,
}

/// A snapshot of a [`Cache`]'s counters, from [`Cache::metrics`].
///
/// The counters are shared by clones of the cache (including clones given
/// another policy or timeout) and only ever grow. Every `TK.CACHE.GET`
/// reply counts in exactly one of `hits`, `misses` and `undecodable`; every
/// `TK.CACHE.SET` reply in `stores` or `stores_refused`; every error either
/// in `errors_as_misses` (absorbed by [`CacheErrorPolicy::Miss`]) or in
/// `errors` (returned to the caller). Errors of the compute function of
/// [`Cache::get_or_compute`] are the application's, and not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Lookups that found a value (which decoded).
    pub hits: u64,
    /// Lookups that found nothing current.
    pub misses: u64,
    /// Lookups that found a value that did not decode as the requested type
    /// (returned as an error by `get`, so also counted in `errors`;
    /// recomputed and overwritten by `get_or_compute`).
    pub undecodable: u64,
    /// Values stored.
    pub stores: u64,
    /// Stores refused because the user or namespace was invalidated after
    /// the miss whose generation they presented (the value was computed
    /// from data older than the invalidation).
    pub stores_refused: u64,
    /// Transient errors that [`CacheErrorPolicy::Miss`] turned into a miss
    /// (failed lookups) or ignored (failed stores).
    pub errors_as_misses: u64,
    /// Errors returned to the caller, by any method.
    pub errors: u64,
}

/// The live counters behind [`CacheMetrics`].
#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    undecodable: Counter,
    stores: Counter,
    stores_refused: Counter,
    errors_as_misses: Counter,
    errors: Counter,
}

impl Counters {
    fn snapshot(&self) -> CacheMetrics {
        CacheMetrics {
            hits: self.hits.get(),
            misses: self.misses.get(),
            undecodable: self.undecodable.get(),
            stores: self.stores.get(),
            stores_refused: self.stores_refused.get(),
            errors_as_misses: self.errors_as_misses.get(),
            errors: self.errors.get(),
        }
    }
}

/// The error of [`Cache::get_or_compute`]: the compute function's own
/// error, or the cache's.
///
/// Kept apart so that the caller always knows which failed, and so that the
/// compute function can use any error type. Both variants display as, and
/// have the source of, the error they hold. To merge them into an
/// application error type that converts from [`Error`], use
/// [`flatten`](GetOrComputeError::flatten):
///
/// ```no_run
/// # use std::time::Duration;
/// # use tk_redis::cache::{Cache, GetOrComputeError, RequestIdentity, NO_QUERY};
/// # #[derive(Debug)] struct AppError;
/// # impl From<tk_redis::Error> for AppError { fn from(_: tk_redis::Error) -> Self { AppError } }
/// # async fn load() -> Result<u32, AppError> { Ok(1) }
/// # async fn demo(cache: Cache) -> Result<u32, AppError> {
/// let identity = RequestIdentity::public("GET", "/stats", NO_QUERY);
/// let stats = cache
///     .get_or_compute("public", "stats", &identity, Duration::from_secs(30), load)
///     .await
///     .map_err(GetOrComputeError::flatten)?;
/// # Ok(stats) }
/// ```
///
/// With `anyhow` or `Box<dyn Error>`, `?` works directly when `E` is a
/// standard error.
#[derive(Debug)]
pub enum GetOrComputeError<E> {
    /// The compute function failed; nothing was stored.
    Compute(E),
    /// The cache failed: always for non-transient errors, and for transient
    /// ones under [`CacheErrorPolicy::Error`].
    Cache(Error),
}

impl<E> GetOrComputeError<E> {
    /// The compute function's error as is, the cache's converted into `E`.
    pub fn flatten(self) -> E
    where
        E: From<Error>,
    {
        match self {
            GetOrComputeError::Compute(err) => err,
            GetOrComputeError::Cache(err) => E::from(err),
        }
    }

    /// The cache's error, if it is one.
    pub fn cache_error(&self) -> Option<&Error> {
        match self {
            GetOrComputeError::Compute(_) => None,
            GetOrComputeError::Cache(err) => Some(err),
        }
    }
}

impl<E: fmt::Display> fmt::Display for GetOrComputeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetOrComputeError::Compute(err) => err.fmt(f),
            GetOrComputeError::Cache(err) => err.fmt(f),
        }
    }
}

impl<E: std::error::Error> std::error::Error for GetOrComputeError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetOrComputeError::Compute(err) => err.source(),
            GetOrComputeError::Cache(err) => std::error::Error::source(err),
        }
    }
}

// ---- the cache ----------------------------------------------------------------

/// Caches JSON values per user, on the module's `TK.CACHE.*` commands.
/// Cloning is cheap and shares the connection and the counters.
///
/// Generic over the connection like [`RateLimiter`](crate::RateLimiter): by
/// default a [`ConnectionManager`] ([`Cache::connect`]), or any cloneable
/// async connection ([`Cache::new`]), cluster connections included (the
/// keys of one call share a hash slot). Every command waits at most
/// [`timeout`](Cache::timeout) (default
/// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT), 3 s) and then fails with
/// [`Error::Timeout`].
///
/// See the [module docs](self) for keys, invalidation and error handling.
#[derive(Clone)]
pub struct Cache<C = ConnectionManager> {
    core: ClientCore<C>,
    error_policy: CacheErrorPolicy,
    counters: Arc<Counters>,
}

impl<C> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core
            .debug_struct(f, "Cache")
            .field("error_policy", &self.error_policy)
            .finish_non_exhaustive()
    }
}

impl Cache<ConnectionManager> {
    crate::client::connect_constructor!();
}

impl<C> Cache<C> {
    /// Wraps an existing connection, with the default timeout, the default
    /// error policy ([`CacheErrorPolicy::Miss`]) and new counters.
    pub fn new(conn: C) -> Self {
        Cache {
            core: ClientCore::new(conn),
            error_policy: CacheErrorPolicy::default(),
            counters: Arc::default(),
        }
    }

    crate::client::core_accessors!();

    /// Sets what [`get_or_compute`](Cache::get_or_compute) does with
    /// transient errors (see [`CacheErrorPolicy`]). The counters stay shared
    /// with the cache this one was cloned from.
    #[must_use]
    pub fn with_error_policy(mut self, policy: CacheErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// The error policy.
    pub fn error_policy(&self) -> CacheErrorPolicy {
        self.error_policy
    }

    /// A snapshot of the counters, shared by all clones of this cache. See
    /// [`CacheMetrics`].
    pub fn metrics(&self) -> CacheMetrics {
        self.counters.snapshot()
    }

    /// Counts an error returned to the caller.
    fn fail(&self, err: Error) -> Error {
        self.counters.errors.bump();
        telemetry::cache_error(false);
        err
    }

    /// Counts the error, if any, of a result returned to the caller.
    fn count<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|err| self.fail(err))
    }

    /// Applies the error policy of `get_or_compute` to `err`: `Ok` when it
    /// is absorbed as a miss, the error to return otherwise. Counted either
    /// way.
    fn absorb<E>(&self, err: Error) -> Result<(), GetOrComputeError<E>> {
        if err.is_transient() && self.error_policy == CacheErrorPolicy::Miss {
            self.counters.errors_as_misses.bump();
            telemetry::cache_error(true);
            Ok(())
        } else {
            Err(GetOrComputeError::Cache(self.fail(err)))
        }
    }

    /// Decodes a lookup's reply, counting it.
    fn classify<T: DeserializeOwned>(&self, reply: GetReply) -> Found<T> {
        let counters = &*self.counters;
        match reply {
            GetReply::Hit(json) => match serde_json::from_slice(&json) {
                Ok(value) => {
                    counters.hits.bump();
                    telemetry::cache_hit();
                    Found::Hit(value)
                }
                Err(err) => {
                    counters.undecodable.bump();
                    Found::Undecodable(err)
                }
            },
            GetReply::Miss(generation) => {
                counters.misses.bump();
                telemetry::cache_miss();
                Found::Miss(generation)
            }
        }
    }
}

/// What [`Cache::warm`] did, entry by entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmReport {
    /// Entries already visible: left alone, not computed.
    pub present: u64,
    /// Entries computed and stored.
    pub stored: u64,
    /// Entries computed but refused by `IFGEN`: the user or the namespace
    /// was invalidated after the lookup, so the value may be stale.
    pub refused: u64,
    /// Entries whose compute function failed (nothing stored).
    pub compute_failed: u64,
    /// Entries the cache failed on (lookup or store error, or a visible
    /// entry that is not JSON); each error is also counted in
    /// [`CacheMetrics::errors`].
    pub cache_failed: u64,
}

/// The outcome of one entry of [`Cache::warm`].
enum Warmed {
    Present,
    Stored,
    Refused,
    ComputeFailed,
    CacheFailed,
}

/// A lookup's reply, decoded.
enum Found<T> {
    Hit(T),
    Undecodable(serde_json::Error),
    Miss(Generation),
}

/// How `get_or_compute` stores what it computed.
enum Store {
    /// Only if the generations are still those of the miss.
    IfGeneration(Generation),
    /// Under the current generations (replacing an undecodable value: a hit
    /// carries no generation to condition on).
    Unconditionally,
    /// Not at all (the lookup failed).
    Skip,
}

impl<C> Cache<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Looks up `user`'s entry for `identity` in `namespace`
    /// (`TK.CACHE.GET`, read-only).
    ///
    /// A miss carries the current [`Generation`]: pass it to
    /// [`set`](Cache::set) with the value computed now. A cached value that
    /// does not decode as `T` fails with [`Error::UnexpectedReply`] (and is
    /// counted in [`CacheMetrics::undecodable`]).
    ///
    /// Fails with [`Error::InvalidArgument`], before sending anything, for
    /// an empty user, an invalid namespace or an identity built for another
    /// user. The [`CacheErrorPolicy`] does not apply: every error is
    /// returned.
    pub async fn get<T: DeserializeOwned>(
        &self,
        user: &str,
        namespace: &str,
        identity: &RequestIdentity,
    ) -> Result<Lookup<T>> {
        let result = async {
            let keys = Keys::new(user, namespace, identity)?;
            let reply = self.lookup(&keys, namespace).await?;
            match self.classify(reply) {
                Found::Hit(value) => Ok(Lookup::Hit(value)),
                Found::Miss(generation) => Ok(Lookup::Miss(generation)),
                Found::Undecodable(err) => Err(undecodable(CMD_GET, VALUE, &err)),
            }
        }
        .await;
        self.count(result)
    }

    /// Stores `value` as JSON for `ttl` as `user`'s entry for `identity` in
    /// `namespace` (`TK.CACHE.SET`). Returns `false` when the store was
    /// refused as stale: `if_generation` is older than the current
    /// generations, i.e. the user or the namespace was invalidated after the
    /// miss that returned it, so the value may be computed from outdated
    /// data.
    ///
    /// Without `if_generation` the value is stored under the current
    /// generations, whatever happened before: only do that for a value
    /// known to be current.
    ///
    /// `ttl` is sent in whole milliseconds, rounded up, and must be between
    /// 1 ms and [`MAX_TTL`]. Invalid arguments (see [`get`](Cache::get)), and
    /// a value that cannot be serialized as JSON, fail with
    /// [`Error::InvalidArgument`] before anything is sent. The
    /// [`CacheErrorPolicy`] does not apply: every error is returned.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        user: &str,
        namespace: &str,
        identity: &RequestIdentity,
        value: &T,
        ttl: Duration,
        if_generation: Option<&Generation>,
    ) -> Result<bool> {
        let result = async {
            let keys = Keys::new(user, namespace, identity)?;
            let ttl_ms = ttl_ms(ttl)?;
            let json = to_json(value)?;
            self.store(&keys, namespace, ttl_ms, json, if_generation)
                .await
        }
        .await;
        self.count(result)
    }

    /// Returns the cached value of `user`'s entry for `identity` in
    /// `namespace`, or computes it with `compute`, caches it for `ttl` and
    /// returns it.
    ///
    /// On a miss, the value is stored with the generation of the miss
    /// (`IFGEN`): if `user` or `namespace` is invalidated while `compute`
    /// runs, the store is refused ([`CacheMetrics::stores_refused`]) and the
    /// computed value is still returned. A cached value that does not decode
    /// as `T` is treated as a miss: recomputed and overwritten
    /// ([`CacheMetrics::undecodable`]). That overwrite is unconditional, as
    /// a hit carries no generation: an invalidation landing while that one
    /// value is recomputed is missed for it until its `ttl` runs out.
    ///
    /// Transient errors follow the [`CacheErrorPolicy`] (by default they
    /// count as a miss); other errors are returned as
    /// [`GetOrComputeError::Cache`], even when the value was computed and
    /// only storing it failed. Arguments are checked first, as for
    /// [`set`](Cache::set), so an invalid call never runs `compute`. An
    /// error of `compute` is returned as [`GetOrComputeError::Compute`] and
    /// nothing is stored.
    ///
    /// The call takes up to one timeout for the lookup, plus `compute`, plus
    /// one timeout for the store.
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        user: &str,
        namespace: &str,
        identity: &RequestIdentity,
        ttl: Duration,
        compute: F,
    ) -> Result<T, GetOrComputeError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (keys, ttl_ms) =
            match Keys::new(user, namespace, identity).and_then(|keys| Ok((keys, ttl_ms(ttl)?))) {
                Ok(prepared) => prepared,
                Err(err) => return Err(GetOrComputeError::Cache(self.fail(err))),
            };
        let store = match self.lookup(&keys, namespace).await {
            Ok(reply) => match self.classify(reply) {
                Found::Hit(value) => return Ok(value),
                Found::Miss(generation) => Store::IfGeneration(generation),
                Found::Undecodable(_) => Store::Unconditionally,
            },
            Err(err) => {
                self.absorb(err)?;
                Store::Skip
            }
        };
        let value = compute().await.map_err(GetOrComputeError::Compute)?;
        let if_generation = match store {
            Store::IfGeneration(generation) => Some(generation),
            Store::Unconditionally => None,
            Store::Skip => return Ok(value),
        };
        let stored = match to_json(&value) {
            Ok(json) => {
                self.store(&keys, namespace, ttl_ms, json, if_generation.as_ref())
                    .await
            }
            Err(err) => Err(err),
        };
        match stored {
            Ok(_) => Ok(value),
            Err(err) => self.absorb(err).map(|()| value),
        }
    }

    /// Precomputes and stores `user`'s entries for `identities` in
    /// `namespace` (cache warming, e.g. after a deploy or for the pages most
    /// users open first), running at most `concurrency` entries at a time.
    ///
    /// Each entry goes through the same steps as
    /// [`get_or_compute`](Cache::get_or_compute): a lookup; an entry already
    /// visible is left alone and `compute` is not called for it; otherwise
    /// `compute(identity)` runs and its value is stored with `ttl` **under
    /// the generation the lookup saw** (`IFGEN`). So warming never
    /// resurrects invalidated data: when the user or the namespace is
    /// invalidated while a value is being computed, that value is refused
    /// ([`WarmReport::refused`]), exactly as for a request's own store.
    ///
    /// Failures do not stop the other entries: each is counted in the
    /// report. Lookups count as cache hits and misses (client and module
    /// counters alike), so warming a cold cache shows as misses.
    ///
    /// Fails before sending anything with [`Error::InvalidArgument`] for a
    /// `concurrency` of 0, an empty user, an invalid namespace or `ttl`.
    ///
    /// ```no_run
    /// # async fn f(cache: tk_redis::Cache) -> tk_redis::Result<()> {
    /// use std::time::Duration;
    /// use tk_redis::cache::{RequestIdentity, NO_QUERY};
    ///
    /// let pages = ["/feed", "/inbox"].map(|path| RequestIdentity::for_user("42", "GET", path, NO_QUERY));
    /// let report = cache
    ///     .warm("42", "http", pages, Duration::from_secs(300), 4, |identity| async move {
    ///         Ok::<_, std::io::Error>(format!("rendered {identity:?}"))
    ///     })
    ///     .await?;
    /// println!("{} stored, {} already cached", report.stored, report.present);
    /// # Ok(()) }
    /// ```
    pub async fn warm<T, E, I, F, Fut>(
        &self,
        user: &str,
        namespace: &str,
        identities: I,
        ttl: Duration,
        concurrency: usize,
        compute: F,
    ) -> Result<WarmReport>
    where
        T: Serialize,
        I: IntoIterator<Item = RequestIdentity>,
        F: Fn(RequestIdentity) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        use futures_util::stream::{self, StreamExt};

        if concurrency == 0 {
            return Err(Error::InvalidArgument(
                "cache warming needs a concurrency of at least 1".to_owned(),
            ));
        }
        check_user(user)?;
        check_namespace(namespace)?;
        let ttl_ms = ttl_ms(ttl)?;
        let compute = &compute;
        let outcomes: Vec<Warmed> = stream::iter(identities)
            .map(|identity| self.warm_one(user, namespace, identity, ttl_ms, compute))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut report = WarmReport::default();
        for outcome in outcomes {
            match outcome {
                Warmed::Present => report.present += 1,
                Warmed::Stored => report.stored += 1,
                Warmed::Refused => report.refused += 1,
                Warmed::ComputeFailed => report.compute_failed += 1,
                Warmed::CacheFailed => report.cache_failed += 1,
            }
        }
        Ok(report)
    }

    /// One entry of [`warm`](Cache::warm).
    async fn warm_one<T, E, F, Fut>(
        &self,
        user: &str,
        namespace: &str,
        identity: RequestIdentity,
        ttl_ms: u64,
        compute: &F,
    ) -> Warmed
    where
        T: Serialize,
        F: Fn(RequestIdentity) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let keys = match Keys::new(user, namespace, &identity) {
            Ok(keys) => keys,
            Err(err) => {
                self.fail(err);
                return Warmed::CacheFailed;
            }
        };
        let generation = match self.lookup(&keys, namespace).await {
            // Any JSON counts as present: the value's type is the reader's
            // business, and overwriting it would race with invalidations.
            Ok(reply) => match self.classify::<serde::de::IgnoredAny>(reply) {
                Found::Hit(_) => return Warmed::Present,
                Found::Undecodable(_) => return Warmed::CacheFailed,
                Found::Miss(generation) => generation,
            },
            Err(err) => {
                self.fail(err);
                return Warmed::CacheFailed;
            }
        };
        let Ok(value) = compute(identity).await else {
            return Warmed::ComputeFailed;
        };
        let stored = match to_json(&value) {
            Ok(json) => {
                self.store(&keys, namespace, ttl_ms, json, Some(&generation))
                    .await
            }
            Err(err) => Err(err),
        };
        match stored {
            Ok(true) => Warmed::Stored,
            Ok(false) => Warmed::Refused,
            Err(err) => {
                self.fail(err);
                Warmed::CacheFailed
            }
        }
    }

    /// Invalidates all of `user`'s entries, in every namespace, at once
    /// (`TK.CACHE.INVALIDATEUSER`). Returns the user's new generation.
    ///
    /// Every error is returned (the [`CacheErrorPolicy`] does not apply).
    /// After a transient error the invalidation may or may not have
    /// happened: retry it, or stale entries may be served until they
    /// expire.
    pub async fn invalidate_user(&self, user: &str) -> Result<u64> {
        let result = async {
            let (generations, index) = Keys::of_user(user)?;
            let mut cmd = redis::cmd(CMD_INVALIDATE_USER);
            cmd.arg(generations).arg(index);
            let Count(generation) = self.core.query(CMD_INVALIDATE_USER, &cmd).await?;
            Ok(generation)
        }
        .await;
        self.count(result)
    }

    /// Invalidates `user`'s entries in `namespace` only
    /// (`TK.CACHE.INVALIDATENS`). Returns the namespace's new generation.
    ///
    /// Errors as for [`invalidate_user`](Cache::invalidate_user); an invalid
    /// namespace fails with [`Error::InvalidArgument`] before sending.
    pub async fn invalidate_namespace(&self, user: &str, namespace: &str) -> Result<u64> {
        let result = async {
            let (generations, index) = Keys::of_user(user)?;
            check_namespace(namespace)?;
            let mut cmd = redis::cmd(CMD_INVALIDATE_NAMESPACE);
            cmd.arg(generations).arg(index).arg(namespace);
            let Count(generation) = self.core.query(CMD_INVALIDATE_NAMESPACE, &cmd).await?;
            Ok(generation)
        }
        .await;
        self.count(result)
    }

    /// `TK.CACHE.GET <entry_key> <gen_key> <namespace>`.
    async fn lookup(&self, keys: &Keys, namespace: &str) -> Result<GetReply> {
        let mut cmd = redis::cmd(CMD_GET);
        cmd.arg(&keys.entry).arg(&keys.generations).arg(namespace);
        self.core.query(CMD_GET, &cmd).await
    }

    /// `TK.CACHE.SET <entry_key> <gen_key> <index_key> <namespace> <ttl_ms>
    /// <value> [IFGEN <token>]`, counting the outcome.
    async fn store(
        &self,
        keys: &Keys,
        namespace: &str,
        ttl_ms: u64,
        json: Vec<u8>,
        if_generation: Option<&Generation>,
    ) -> Result<bool> {
        let mut cmd = redis::cmd(CMD_SET);
        cmd.arg(&keys.entry)
            .arg(&keys.generations)
            .arg(&keys.index)
            .arg(namespace)
            .arg(ttl_ms)
            .arg(json);
        if let Some(generation) = if_generation {
            cmd.arg("IFGEN").arg(generation.to_string());
        }
        let Flag(stored) = self.core.query(CMD_SET, &cmd).await?;
        if stored {
            self.counters.stores.bump();
        } else {
            self.counters.stores_refused.bump();
        }
        Ok(stored)
    }
}

/// What a cached value is called in errors.
const VALUE: &str = "the cached value";

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    args::to_json(value, "the value to cache")
}

// ---- replies ---------------------------------------------------------------

/// `TK.CACHE.GET`'s reply: `[1, <value>]` or `[0, <generation token>]`.
#[derive(Debug, PartialEq, Eq)]
enum GetReply {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{crc16, key_slot};
    use crate::test_support::*;
    use redis::RedisResult;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;

    fn invalid_argument<T: fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidArgument(message)) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn hit(json: &str) -> Value {
        Value::Array(vec![Value::Int(1), bulk(json)])
    }

    fn miss(token: &str) -> Value {
        Value::Array(vec![Value::Int(0), bulk(token)])
    }

    fn reset() -> RedisResult<Value> {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
    }

    /// A server answering GET with `get` and SET with `set`.
    fn server(get: RedisResult<Value>, set: RedisResult<Value>) -> Fake {
        Fake::new(move |sent| {
            Some(match sent[0].as_str() {
                CMD_GET => get.clone(),
                CMD_SET => set.clone(),
                other => panic!("unexpected {other}"),
            })
        })
    }

    fn identity(user: &str) -> RequestIdentity {
        RequestIdentity::for_user(user, "GET", "/feed", [("page", "1")])
    }

    // ---- keys ------------------------------------------------------------

    #[test]
    fn user_tag_is_the_start_of_the_sha256() {
        // SHA-256("") = e3b0c442 98fc1c14 ..., SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(user_tag(""), "e3b0c44298fc1c14");
        assert_eq!(user_tag("abc"), "ba7816bf8f01cfea");
        let tag = user_tag("user-42");
        assert_eq!(tag.len(), 16);
        assert!(tag
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let id = identity("abc");
        assert_eq!(generations_key("abc"), "tk:cg:{ba7816bf8f01cfea}");
        assert_eq!(index_key("abc"), "tk:ci:{ba7816bf8f01cfea}");
        assert_eq!(
            entry_key("abc", "feed", &id).unwrap(),
            format!("tk:c:{{ba7816bf8f01cfea}}:feed:{}", id.hex())
        );
        assert_eq!(id.hex().len(), 64);
        assert!(invalid_argument(entry_key("abc", "", &id)).contains("namespace"));
    }

    #[test]
    fn all_keys_of_a_user_share_one_slot() {
        for user in ["42", "alice", "ünïcødé", "{x}", "a}b{c", "with space"] {
            let tag = user_tag(user);
            let keys = [
                generations_key(user),
                index_key(user),
                entry_key(user, "feed", &identity(user)).unwrap(),
                entry_key(user, "search.v2", &RequestIdentity::from_parts(["q"])).unwrap(),
            ];
            for key in &keys {
                assert!(key.contains(&format!("{{{tag}}}")), "{key}");
                assert_eq!(key_slot(key), crc16(tag.as_bytes()) % 16384, "{key}");
            }
        }
    }

    #[test]
    fn different_users_spread_over_slots() {
        let users: Vec<String> = (0..200).map(|n| format!("user-{n}")).collect();
        let tags: HashSet<String> = users.iter().map(|u| user_tag(u)).collect();
        assert_eq!(tags.len(), users.len());
        let slots: HashSet<u16> = users.iter().map(|u| key_slot(generations_key(u))).collect();
        // 200 users in 16384 slots: a few may share one, most must not.
        assert!(slots.len() >= 190, "{}", slots.len());
    }

    #[test]
    fn namespaces_are_validated() {
        for good in ["a", "feed", "search.v2", "A-Z_0-9", &"n".repeat(64)] {
            assert!(check_namespace(good).is_ok(), "{good}");
        }
        for bad in ["", &"n".repeat(65), "a:b", "a b", "{a}", "é", "a*", "a/b"] {
            let message = invalid_argument(check_namespace(bad));
            assert!(message.contains("namespace"), "{bad}: {message}");
        }
    }

    #[test]
    fn ttls_are_whole_ms_rounded_up() {
        assert_eq!(ttl_ms(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1_001)).unwrap(), 2);
        assert_eq!(ttl_ms(MAX_TTL).unwrap(), 604_800_000);
        assert!(invalid_argument(ttl_ms(Duration::ZERO)).contains("between 1 ms"));
        assert!(invalid_argument(ttl_ms(Duration::from_micros(999))).contains("ttl"));
        assert!(invalid_argument(ttl_ms(MAX_TTL + Duration::from_nanos(1))).contains("ttl"));
    }

    // ---- identities ------------------------------------------------------

    #[test]
    fn query_order_and_method_case_do_not_matter() {
        let a = RequestIdentity::for_user("u", "get", "/s", [("q", "x"), ("p", "2"), ("q", "a")]);
        let b = RequestIdentity::for_user("u", "GET", "/s", [("q", "a"), ("p", "2"), ("q", "x")]);
        let c = RequestIdentity::for_user(
            "u",
            "Get",
            "/s",
            vec![
                ("p".to_owned(), "2".to_owned()),
                ("q".into(), "x".into()),
                ("q".into(), "a".into()),
            ],
        );
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.has_user());
        let public = RequestIdentity::public("get", "/s", [("b", "1"), ("a", "2")]);
        assert_eq!(
            public,
            RequestIdentity::public("GET", "/s", [("a", "2"), ("b", "1")])
        );
        assert!(!public.has_user());
    }

    #[test]
    fn everything_else_matters() {
        let base = RequestIdentity::for_user("u", "GET", "/s", [("q", "x")]);
        let others = [
            RequestIdentity::for_user("v", "GET", "/s", [("q", "x")]),
            RequestIdentity::public("GET", "/s", [("q", "x")]),
            RequestIdentity::for_user("u", "POST", "/s", [("q", "x")]),
            RequestIdentity::for_user("u", "GET", "/S", [("q", "x")]),
            RequestIdentity::for_user("u", "GET", "/s", [("q", "X")]),
            RequestIdentity::for_user("u", "GET", "/s", [("q", "x"), ("q", "x")]),
            RequestIdentity::for_user("u", "GET", "/s", NO_QUERY),
            RequestIdentity::for_user("u", "GET", "/s?q=x", NO_QUERY),
            RequestIdentity::for_user_from_parts("u", ["GET", "/s", "q", "x"]),
            base.vary("accept-language", "fr"),
        ];
        let mut seen = HashSet::new();
        seen.insert(base.clone());
        for other in others {
            assert!(seen.insert(other.clone()), "{other:?}");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let pairs =
            |a: &'static str, b: &'static str| RequestIdentity::public("GET", "/", [(a, b)]);
        assert_ne!(pairs("a", "bc"), pairs("ab", "c"));
        assert_ne!(pairs("", "ab"), pairs("a", "b"));
        assert_ne!(
            RequestIdentity::public("GET", "/", [("a", "b"), ("c", "d")]),
            RequestIdentity::public("GET", "/", [("a", "bc"), ("", "d")])
        );
        assert_ne!(
            RequestIdentity::public("GE", "T/", NO_QUERY),
            RequestIdentity::public("GET", "/", NO_QUERY)
        );
        // An empty pair is not the same as no pair.
        assert_ne!(
            RequestIdentity::public("GET", "/", [("", "")]),
            RequestIdentity::public("GET", "/", NO_QUERY)
        );
        assert_ne!(
            RequestIdentity::from_parts(["a", "bc"]),
            RequestIdentity::from_parts(["ab", "c"])
        );
        assert_ne!(
            RequestIdentity::from_parts([""]),
            RequestIdentity::from_parts(Vec::<&str>::new())
        );
        assert_ne!(
            RequestIdentity::from_parts(["a"]),
            RequestIdentity::for_user_from_parts("u", ["a"])
        );
        // HTTP and parts are different kinds even with the same bytes.
        assert_ne!(
            RequestIdentity::public("GET", "/", NO_QUERY),
            RequestIdentity::from_parts(["GET", "/"])
        );
        // Vary calls are ordered and keep the user.
        let base = RequestIdentity::from_parts(["x"]);
        assert_ne!(
            base.vary("a", "1").vary("b", "2"),
            base.vary("b", "2").vary("a", "1")
        );
        assert_ne!(base.vary("a", "bc"), base.vary("ab", "c"));
        assert!(identity("u").vary("a", "b").has_user());
        assert!(!base.vary("a", "b").has_user());
    }

    #[test]
    fn parts_accept_bytes_and_strings() {
        let owned = vec!["q".to_owned(), "rust".to_owned()];
        assert_eq!(
            RequestIdentity::from_parts(&owned),
            RequestIdentity::from_parts([b"q".as_slice(), b"rust".as_slice()])
        );
        let parts: &[&[u8]] = &[b"q", b"rust"];
        assert_eq!(
            RequestIdentity::from_parts(parts),
            RequestIdentity::from_parts(owned)
        );
    }

    #[test]
    fn the_encoding_is_stable() {
        // Changing the encoding changes every key (all entries are lost at
        // once): do it on purpose, with a new IDENTITY_VERSION.
        let mut manual = Sha256::new();
        manual.update([1, b'H', 1]);
        manual.update(Sha256::digest(b"u"));
        for field in [&b"GET"[..], b"/s"] {
            manual.update((field.len() as u64).to_be_bytes());
            manual.update(field);
        }
        manual.update(1u64.to_be_bytes());
        for field in [&b"q"[..], b"x"] {
            manual.update((field.len() as u64).to_be_bytes());
            manual.update(field);
        }
        let expected: [u8; 32] = manual.finalize().into();
        let id = RequestIdentity::for_user("u", "get", "/s", [("q", "x")]);
        assert_eq!(id.digest(), &expected);
        assert_eq!(id.hex(), hex::encode(expected));
        let debug = format!("{id:?}");
        assert!(
            debug.contains(&id.hex()) && debug.contains("has_user: true"),
            "{debug}"
        );
    }

    // ---- generations and replies -------------------------------------------

    #[test]
    fn generations_round_trip_strictly() {
        for text in [
            "0.0",
            "1.2",
            "18446744073709551615.7",
            "3.18446744073709551615",
        ] {
            let generation: Generation = text.parse().unwrap();
            assert_eq!(generation.to_string(), text);
        }
        for bad in [
            "",
            ".",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "01.2",
            "1.02",
            "+1.2",
            "-1.2",
            " 1.2",
            "1.2 ",
            "1,2",
            "a.b",
            "18446744073709551616.0",
            "1.18446744073709551616",
            "١.٢",
        ] {
            let message = invalid_argument(bad.parse::<Generation>());
            assert!(message.contains("generation"), "{bad:?}: {message}");
        }
    }

    fn parse<T: FromRedisValue>(value: Value) -> Result<T, String> {
        redis::from_redis_value::<T>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn get_replies() {
        assert_eq!(
            parse::<GetReply>(hit(r#"{"a":1}"#)).unwrap(),
            GetReply::Hit(br#"{"a":1}"#.to_vec())
        );
        assert_eq!(
            parse::<GetReply>(hit("")).unwrap(),
            GetReply::Hit(Vec::new())
        );
        assert_eq!(
            parse::<GetReply>(miss("4.9")).unwrap(),
            GetReply::Miss("4.9".parse().unwrap())
        );
        let attributed = Value::Attribute {
            data: Box::new(miss("0.0")),
            attributes: vec![],
        };
        assert!(parse::<GetReply>(attributed).is_ok());
        assert!(redis::from_redis_value_ref::<GetReply>(&hit("1")).is_ok());
        for bad in [
            Value::Nil,
            Value::Int(1),
            bulk("x"),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Int(1), bulk("x"), bulk("y")]),
            Value::Array(vec![Value::Int(2), bulk("x")]),
            Value::Array(vec![Value::Int(-1), bulk("x")]),
            Value::Array(vec![bulk("1"), bulk("x")]),
            Value::Array(vec![Value::Int(1), Value::SimpleString("x".into())]),
            Value::Array(vec![Value::Int(1), Value::Nil]),
            Value::Array(vec![Value::Int(0), Value::Int(3)]),
            miss("3"),
            miss("1.2.3"),
            miss("01.2"),
            miss(""),
            Value::Array(vec![
                Value::Int(0),
                Value::BulkString(vec![0xff, b'.', b'1']),
            ]),
        ] {
            assert!(parse::<GetReply>(bad.clone()).is_err(), "{bad:?}");
        }
        let err = parse::<GetReply>(Value::Array(vec![Value::Int(1)])).unwrap_err();
        assert!(err.contains("got 1 elements"), "{err}");
    }

    #[test]
    fn set_replies() {
        assert!(parse::<Flag>(Value::Int(1)).unwrap().0);
        assert!(!parse::<Flag>(Value::Int(0)).unwrap().0);
        assert!(parse::<Flag>(Value::Int(2)).is_err());
        assert!(parse::<Flag>(Value::Okay).is_err());
        assert!(parse::<Flag>(bulk("1")).is_err());
    }

    // ---- commands sent -----------------------------------------------------

    #[tokio::test]
    async fn get_sends_entry_generations_and_namespace() {
        let fake = Fake::replying(miss("2.5"));
        let cache = Cache::new(fake.clone());
        let id = identity("alice");
        let lookup = cache.get::<String>("alice", "feed", &id).await.unwrap();
        assert_eq!(lookup, Lookup::Miss("2.5".parse().unwrap()));
        assert!(!lookup.is_hit());
        assert_eq!(
            fake.sent(),
            [[
                "TK.CACHE.GET".to_owned(),
                entry_key("alice", "feed", &id).unwrap(),
                generations_key("alice"),
                "feed".to_owned(),
            ]]
        );
    }

    #[tokio::test]
    async fn get_decodes_json() {
        let cache = Cache::new(Fake::replying(hit(r#"{"unread":3}"#)));
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Dash {
            unread: u32,
        }
        let lookup = cache
            .get::<Dash>("u", "dash", &identity("u"))
            .await
            .unwrap();
        assert!(lookup.is_hit());
        assert_eq!(lookup.hit(), Some(Dash { unread: 3 }));
        // Another type: an error, counted.
        let err = cache
            .get::<Vec<u8>>("u", "dash", &identity("u"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnexpectedReply(m) if m.contains("does not decode")),
            "{err:?}"
        );
        let m = cache.metrics();
        assert_eq!((m.hits, m.undecodable, m.errors), (1, 1, 1));
    }

    #[tokio::test]
    async fn set_sends_ttl_value_and_ifgen() {
        let fake = Fake::replying(Value::Int(1));
        let cache = Cache::new(fake.clone());
        let id = identity("bob");
        let generation: Generation = "7.3".parse().unwrap();
        assert!(cache
            .set(
                "bob",
                "feed",
                &id,
                &vec![1, 2],
                Duration::from_micros(1_500),
                Some(&generation)
            )
            .await
            .unwrap());
        assert!(cache
            .set("bob", "feed", &id, "x", Duration::from_secs(60), None)
            .await
            .unwrap());
        let entry = entry_key("bob", "feed", &id).unwrap();
        let (gens, index) = (generations_key("bob"), index_key("bob"));
        let expected: [Vec<&str>; 2] = [
            vec![
                "TK.CACHE.SET",
                &entry,
                &gens,
                &index,
                "feed",
                "2",
                "[1,2]",
                "IFGEN",
                "7.3",
            ],
            vec![
                "TK.CACHE.SET",
                &entry,
                &gens,
                &index,
                "feed",
                "60000",
                "\"x\"",
            ],
        ];
        assert_eq!(fake.sent(), expected);
        assert_eq!(cache.metrics().stores, 2);
    }

    #[tokio::test]
    async fn refused_sets_are_false() {
        let cache = Cache::new(Fake::replying(Value::Int(0)));
        let generation = "1.1".parse().unwrap();
        let stored = cache
            .set(
                "u",
                "n",
                &identity("u"),
                &1,
                Duration::from_secs(1),
                Some(&generation),
            )
            .await
            .unwrap();
        assert!(!stored);
        assert_eq!(cache.metrics().stores_refused, 1);
    }

    #[tokio::test]
    async fn invalidations_send_the_user_keys() {
        let fake = Fake::sequence(vec![Ok(Value::Int(5)), Ok(Value::Int(12))]);
        let cache = Cache::new(fake.clone());
        assert_eq!(cache.invalidate_user("carol").await.unwrap(), 5);
        assert_eq!(
            cache.invalidate_namespace("carol", "feed").await.unwrap(),
            12
        );
        let (gens, index) = (generations_key("carol"), index_key("carol"));
        let expected: [Vec<&str>; 2] = [
            vec!["TK.CACHE.INVALIDATEUSER", &gens, &index],
            vec!["TK.CACHE.INVALIDATENS", &gens, &index, "feed"],
        ];
        assert_eq!(fake.sent(), expected);
        // Replies of the wrong shape.
        let cache = Cache::new(Fake::sequence(vec![Ok(Value::Int(-1)), Ok(Value::Okay)]));
        assert!(matches!(
            cache.invalidate_user("u").await,
            Err(Error::UnexpectedReply(_))
        ));
        assert!(matches!(
            cache.invalidate_namespace("u", "n").await,
            Err(Error::UnexpectedReply(_))
        ));
        assert_eq!(cache.metrics().errors, 2);
    }

    #[tokio::test]
    async fn invalid_arguments_send_nothing() {
        let fake = Fake::replying(Value::Int(1));
        let cache = Cache::new(fake.clone());
        let id = identity("u");
        let ttl = Duration::from_secs(1);
        assert!(invalid_argument(cache.get::<u8>("", "n", &id).await).contains("user"));
        assert!(invalid_argument(cache.get::<u8>("u", "bad ns", &id).await).contains("namespace"));
        assert!(
            invalid_argument(cache.set("u", "n", &id, &1, Duration::ZERO, None).await)
                .contains("ttl")
        );
        assert!(
            invalid_argument(cache.set("u", "n", &id, &1, MAX_TTL * 2, None).await).contains("ttl")
        );
        // A map with non-string keys cannot be JSON.
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        assert!(
            invalid_argument(cache.set("u", "n", &id, &map, ttl, None).await).contains("serialize")
        );
        assert!(invalid_argument(cache.invalidate_user("").await).contains("user"));
        assert!(invalid_argument(cache.invalidate_namespace("u", "").await).contains("namespace"));
        assert!(fake.sent().is_empty());
        assert_eq!(cache.metrics().errors, 7);
    }

    #[tokio::test]
    async fn an_identity_is_only_used_for_its_user() {
        let fake = Fake::replying(miss("1.1"));
        let cache = Cache::new(fake.clone());
        let alices = identity("alice");
        let message = invalid_argument(cache.get::<u8>("bob", "feed", &alices).await);
        assert!(message.contains("another user"), "{message}");
        assert!(
            !message.contains("alice") && !message.contains("bob"),
            "{message}"
        );
        assert!(cache
            .set("bob", "feed", &alices, &1, Duration::from_secs(1), None)
            .await
            .is_err());
        let computed = cache
            .get_or_compute("bob", "feed", &alices, Duration::from_secs(1), || async {
                Ok::<_, Error>(1)
            })
            .await;
        assert!(matches!(
            computed,
            Err(GetOrComputeError::Cache(Error::InvalidArgument(_)))
        ));
        assert!(fake.sent().is_empty());
        // Public identities (and parts without a user) go with any user.
        let public = RequestIdentity::public("GET", "/about", NO_QUERY);
        assert!(cache.get::<u8>("bob", "pages", &public).await.is_ok());
        assert!(cache.get::<u8>("public", "pages", &public).await.is_ok());
        assert_eq!(fake.sent().len(), 2);
    }

    #[tokio::test]
    async fn error_replies_are_mapped() {
        let cache = Cache::new(Fake::replying(error_reply(
            "ERR unknown command 'TK.CACHE.GET', with args beginning with: ",
        )));
        let err = cache.get::<u8>("u", "n", &identity("u")).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::ModuleNotLoaded {
                    command: "TK.CACHE.GET"
                }
            ),
            "{err:?}"
        );
        let cache = Cache::new(Fake::replying(error_reply(
            "WRONGTYPE Operation against a key",
        )));
        let err = cache
            .set("u", "n", &identity("u"), &1, Duration::from_secs(1), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Server { code, .. } if code == "WRONGTYPE"),
            "{err:?}"
        );
        let cache = Cache::new(Fake::replying(error_reply(
            "ERR unknown command 'TK.CACHE.INVALIDATENS'",
        )));
        let err = cache.invalidate_namespace("u", "n").await.unwrap_err();
        assert!(err.is_module_not_loaded(), "{err:?}");
    }

    #[tokio::test]
    async fn direct_calls_always_return_transient_errors() {
        for policy in [CacheErrorPolicy::Miss, CacheErrorPolicy::Error] {
            let cache = Cache::new(Fake::new(|_| Some(reset()))).with_error_policy(policy);
            let id = identity("u");
            assert!(matches!(
                cache.get::<u8>("u", "n", &id).await,
                Err(Error::Connection(_))
            ));
            assert!(matches!(
                cache
                    .set("u", "n", &id, &1, Duration::from_secs(1), None)
                    .await,
                Err(Error::Connection(_))
            ));
            assert!(matches!(
                cache.invalidate_user("u").await,
                Err(Error::Connection(_))
            ));
            let m = cache.metrics();
            assert_eq!((m.errors, m.errors_as_misses), (3, 0), "{policy:?}");
        }
        let cache = Cache::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
        assert_eq!(cache.timeout(), Duration::from_millis(20));
        let err = cache.get::<u8>("u", "n", &identity("u")).await.unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
    }

    // ---- get_or_compute ----------------------------------------------------

    async fn compute_count<C>(
        cache: &Cache<C>,
        calls: &std::sync::atomic::AtomicU32,
    ) -> Result<String, GetOrComputeError<Error>>
    where
        C: ConnectionLike + Clone + Send + Sync,
    {
        cache
            .get_or_compute(
                "u",
                "feed",
                &identity("u"),
                Duration::from_secs(30),
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Error>("fresh".to_owned())
                },
            )
            .await
    }

    #[tokio::test]
    async fn hit_returns_the_cached_value_without_computing() {
        let fake = server(Ok(hit("\"cached\"")), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone());
        let calls = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "cached");
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        assert_eq!(fake.sent().len(), 1);
        assert_eq!(
            cache.metrics(),
            CacheMetrics {
                hits: 1,
                ..CacheMetrics::default()
            }
        );
    }

    #[tokio::test]
    async fn miss_computes_and_stores_with_the_generation_of_the_miss() {
        let fake = server(Ok(miss("12.34")), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone());
        let calls = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0][0], "TK.CACHE.GET");
        assert_eq!(sent[1][0], "TK.CACHE.SET");
        assert_eq!(sent[1][1], sent[0][1], "same entry key");
        assert_eq!(sent[1][5..], ["30000", "\"fresh\"", "IFGEN", "12.34"]);
        let m = cache.metrics();
        assert_eq!((m.misses, m.stores, m.errors), (1, 1, 0));
    }

    #[tokio::test]
    async fn a_refused_store_still_returns_the_value() {
        let cache = Cache::new(server(Ok(miss("1.1")), Ok(Value::Int(0))));
        let calls = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        let m = cache.metrics();
        assert_eq!((m.misses, m.stores, m.stores_refused), (1, 0, 1));
    }

    #[tokio::test]
    async fn undecodable_values_are_recomputed_and_overwritten() {
        let fake = server(Ok(hit("{not json")), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone());
        let calls = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        // No generation to condition on: stored under the current ones.
        assert_eq!(sent[1][5..], ["30000", "\"fresh\""]);
        // Valid JSON of another type, too.
        let cache = Cache::new(server(Ok(hit("[1,2]")), Ok(Value::Int(1))));
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        let m = cache.metrics();
        assert_eq!((m.hits, m.undecodable, m.stores, m.errors), (0, 1, 1, 0));
    }

    #[tokio::test]
    async fn compute_errors_are_returned_and_nothing_is_stored() {
        let fake = server(Ok(miss("1.1")), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone());
        let result: Result<u8, _> = cache
            .get_or_compute("u", "n", &identity("u"), Duration::from_secs(1), || async {
                Err(std::io::Error::other("db down"))
            })
            .await;
        let err = result.unwrap_err();
        assert!(matches!(&err, GetOrComputeError::Compute(e) if e.to_string() == "db down"));
        assert!(err.cache_error().is_none());
        assert_eq!(err.to_string(), "db down");
        assert_eq!(fake.sent().len(), 1);
        assert_eq!(cache.metrics().errors, 0);
    }

    #[tokio::test]
    async fn miss_policy_computes_through_transient_lookup_errors() {
        let fake = server(reset(), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone());
        assert_eq!(cache.error_policy(), CacheErrorPolicy::Miss);
        let calls = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // No store after a failed lookup.
        assert_eq!(fake.sent().len(), 1);
        // Timeouts too.
        let cache = Cache::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        let m = cache.metrics();
        assert_eq!((m.errors_as_misses, m.misses, m.errors), (1, 0, 0));
    }

    #[tokio::test]
    async fn miss_policy_ignores_transient_store_errors() {
        let cache = Cache::new(server(Ok(miss("1.1")), reset()));
        let calls = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
        let m = cache.metrics();
        assert_eq!(
            (m.misses, m.stores, m.errors_as_misses, m.errors),
            (1, 0, 1, 0)
        );
    }

    #[tokio::test]
    async fn error_policy_returns_transient_errors() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let cache = Cache::new(server(reset(), Ok(Value::Int(1))))
            .with_error_policy(CacheErrorPolicy::Error);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(
            matches!(err.cache_error(), Some(Error::Connection(_))),
            "{err:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        let cache =
            Cache::new(server(Ok(miss("1.1")), reset())).with_error_policy(CacheErrorPolicy::Error);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(
            matches!(err, GetOrComputeError::Cache(Error::Connection(_))),
            "{err:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let m = cache.metrics();
        assert_eq!((m.misses, m.errors_as_misses, m.errors), (1, 0, 1));
    }

    #[tokio::test]
    async fn non_transient_errors_are_never_hidden() {
        for policy in [CacheErrorPolicy::Miss, CacheErrorPolicy::Error] {
            let calls = std::sync::atomic::AtomicU32::new(0);
            let missing = Ok(error_reply("ERR unknown command 'TK.CACHE.GET'"));
            let cache = Cache::new(server(missing, Ok(Value::Int(1)))).with_error_policy(policy);
            let err = compute_count(&cache, &calls).await.unwrap_err();
            assert!(
                err.cache_error().is_some_and(Error::is_module_not_loaded),
                "{err:?}"
            );
            // A malformed lookup reply.
            let cache =
                Cache::new(server(Ok(Value::Okay), Ok(Value::Int(1)))).with_error_policy(policy);
            let err = compute_count(&cache, &calls).await.unwrap_err();
            assert!(matches!(
                err,
                GetOrComputeError::Cache(Error::UnexpectedReply(_))
            ));
            assert_eq!(calls.load(Ordering::Relaxed), 0, "{policy:?}");
            // A store refused by the server, after computing.
            let wrongtype = Ok(error_reply("WRONGTYPE Operation against a key"));
            let cache = Cache::new(server(Ok(miss("1.1")), wrongtype)).with_error_policy(policy);
            let err = compute_count(&cache, &calls).await.unwrap_err();
            assert!(matches!(
                err,
                GetOrComputeError::Cache(Error::Server { .. })
            ));
            assert_eq!(calls.load(Ordering::Relaxed), 1);
            // An invalid ttl: nothing sent, nothing computed.
            let fake = server(Ok(miss("1.1")), Ok(Value::Int(1)));
            let cache = Cache::new(fake.clone()).with_error_policy(policy);
            let result = cache
                .get_or_compute("u", "n", &identity("u"), Duration::ZERO, || async {
                    Ok::<_, Error>(1)
                })
                .await;
            assert!(matches!(
                result,
                Err(GetOrComputeError::Cache(Error::InvalidArgument(_)))
            ));
            assert!(fake.sent().is_empty());
            assert_eq!(cache.metrics().errors, 1);
        }
    }

    #[tokio::test]
    async fn metrics_are_shared_by_clones() {
        let cache = Cache::new(server(Ok(miss("1.1")), Ok(Value::Int(1))));
        let strict = cache.clone().with_error_policy(CacheErrorPolicy::Error);
        let calls = std::sync::atomic::AtomicU32::new(0);
        compute_count(&cache, &calls).await.unwrap();
        compute_count(&strict, &calls).await.unwrap();
        assert_eq!(cache.metrics(), strict.metrics());
        assert_eq!(cache.metrics().misses, 2);
        // A new cache on the same connection has its own counters.
        let other = Cache::new(cache.connection().clone());
        assert_eq!(other.metrics(), CacheMetrics::default());
        let _conn: Fake = other.into_connection();
    }

    #[test]
    fn get_or_compute_error_conversions() {
        #[derive(Debug)]
        struct AppError(String);
        impl From<Error> for AppError {
            fn from(err: Error) -> Self {
                AppError(format!("cache: {err}"))
            }
        }
        let compute: GetOrComputeError<AppError> =
            GetOrComputeError::Compute(AppError("db".into()));
        assert_eq!(compute.flatten().0, "db");
        let cache: GetOrComputeError<AppError> = GetOrComputeError::Cache(Error::Timeout);
        assert!(cache.cache_error().is_some());
        assert_eq!(
            cache.flatten().0,
            "cache: timed out waiting for the redis server"
        );
        // A standard error: `?` into Box<dyn Error>, displayed as what it holds.
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(GetOrComputeError::<std::io::Error>::Cache(Error::Timeout));
        assert_eq!(boxed.to_string(), "timed out waiting for the redis server");
    }

    #[test]
    fn defaults() {
        let cache = Cache::new(Fake::replying(Value::Nil));
        assert_eq!(cache.timeout(), crate::DEFAULT_TIMEOUT);
        assert_eq!(cache.error_policy(), CacheErrorPolicy::Miss);
        assert_eq!(CacheErrorPolicy::default(), CacheErrorPolicy::Miss);
        assert_eq!(cache.metrics(), CacheMetrics::default());
        let debug = format!("{cache:?}");
        assert!(debug.contains("3s") && debug.contains("Miss"), "{debug}");
    }

    // ---- compile-time checks -----------------------------------------

    fn assert_send<T: Send>(_: &T) {}

    /// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
    /// for the default, cluster and multiplexed connections.
    #[allow(dead_code)]
    fn futures_are_send(
        single: &Cache,
        cluster: &Cache<redis::cluster_async::ClusterConnection>,
        multiplexed: &Cache<redis::aio::MultiplexedConnection>,
        id: &RequestIdentity,
        generation: &Generation,
    ) {
        let ttl = Duration::from_secs(1);
        assert_send(&single.get::<String>("u", "n", id));
        assert_send(&single.set("u", "n", id, "v", ttl, Some(generation)));
        assert_send(&single.invalidate_user("u"));
        assert_send(&single.invalidate_namespace("u", "n"));
        let compute = || async { Ok::<_, Error>(1u32) };
        assert_send(&single.get_or_compute("u", "n", id, ttl, compute));
        assert_send(&cluster.get_or_compute("u", "n", id, ttl, compute));
        assert_send(&multiplexed.get::<u32>("u", "n", id));
    }
}
