//! [`RequestIdentity`]: what makes two requests share a cache entry.

use crate::keys::user_digest;
use sha2::{Digest, Sha256};
use std::fmt;

/// Version of the identity encoding, hashed first: changing the encoding
/// must change this, so old and new digests never mean different things.
pub(super) const IDENTITY_VERSION: u8 = 1;
/// An HTTP request: method, path and query pairs.
pub(super) const KIND_HTTP: u8 = b'H';
/// Arbitrary parts (`from_parts`).
pub(super) const KIND_PARTS: u8 = b'P';
/// A `vary` extension of another identity.
pub(super) const KIND_VARY: u8 = b'V';

/// The SHA-256 of an unambiguous encoding: every variable-length field is
/// prefixed with its length, every list with its count (except a final
/// one, which ends with the input).
pub(super) struct Encoder(Sha256);

impl Encoder {
    pub(super) fn new(kind: u8, user: Option<&[u8; 32]>) -> Encoder {
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

    pub(super) fn number(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    pub(super) fn field(&mut self, bytes: &[u8]) {
        self.number(bytes.len());
        self.0.update(bytes);
    }

    pub(super) fn finish(self) -> [u8; 32] {
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
/// [`Cache`](super::Cache) then also refuses to use that identity for another user.
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
    pub(super) digest: [u8; 32],
    /// SHA-256 of the user id, for a user's identity.
    pub(super) user: Option<[u8; 32]>,
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

    pub(super) fn http<I, K, V>(
        user: Option<[u8; 32]>,
        method: &str,
        path: &str,
        query: I,
    ) -> RequestIdentity
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

    pub(super) fn parts<I>(user: Option<[u8; 32]>, parts: I) -> RequestIdentity
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
