//! Login sessions: a [`SessionStore`] on the module's `TK.SESSION.*`
//! commands, handing out opaque [`SessionToken`]s for the cookie.
//!
//! ```no_run
//! use std::time::Duration;
//! use tk_redis::session::{
//!     CapPolicy, SessionOptions, SessionStore, SessionToken, TouchOptions, UpdateOutcome,
//! };
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Data { csrf: String, theme: String }
//!
//! # async fn demo(cookie: &str) -> tk_redis::Result<()> {
//! let sessions = SessionStore::<Data>::connect("redis://127.0.0.1:6379/")
//!     .await?
//!     .with_options(SessionOptions {
//!         // At most 10 sessions per user: log out the oldest ones.
//!         max_sessions: Some((10, CapPolicy::Evict)),
//!         ..SessionOptions::default()
//!     });
//!
//! // Login, once the password is checked: a new session, a new token.
//! let data = Data { csrf: "...".into(), theme: "dark".into() };
//! let (token, _session) = sessions.create("user-42", &data).await?;
//! println!("Set-Cookie: sid={}; HttpOnly; Secure; SameSite=Lax; Path=/", token.as_str());
//!
//! // Every request: the cookie's value. A malformed one is simply not logged in.
//! let Ok(token) = cookie.parse::<SessionToken>() else { return Ok(()) };
//! // Slide the idle expiry, writing at most once a minute per session.
//! let touch = TouchOptions { min_gap: Some(Duration::from_secs(60)), ..TouchOptions::default() };
//! let Some(mut session) = sessions.touch_with(&token, touch).await? else {
//!     return Ok(()); // expired or logged out: redirect to the login page
//! };
//!
//! // Change the data, without losing a concurrent request's change.
//! session.data.theme = "light".into();
//! match sessions.update(&token, &session.data, Some(session.version)).await? {
//!     UpdateOutcome::Updated { version } => println!("now at version {version}"),
//!     UpdateOutcome::VersionMismatch => println!("changed meanwhile: reload and retry"),
//!     UpdateOutcome::Gone => println!("logged out meanwhile"),
//! }
//!
//! // Logout: the user comes from the session itself.
//! sessions.destroy(&token, &session.user).await?;
//! # Ok(()) }
//! ```
//!
//! # Tokens
//!
//! A [`SessionToken`] is `<tag>.<secret>`: the user's 16-hex-digit hash tag
//! (see below), a dot, and 32 lowercase hex digits of 128 random bits from
//! the OS random source (49 characters, [`TOKEN_LEN`]). The token is the
//! browser's credential. It is **never sent to Redis nor stored**: the
//! session key holds the SHA-256 of the token, so reading Redis (a dump, a
//! replica, `MONITOR`) does not yield tokens that log anyone in.
//!
//! [`SessionToken::parse`] (and [`FromStr`]) accept exactly that format and
//! nothing else: no whitespace, no uppercase. A malformed token fails with
//! [`Error::InvalidArgument`], whose message never contains the token.
//! [`Debug`](fmt::Debug) prints only the tag, and there is deliberately no
//! [`Display`](fmt::Display): the secret is only reachable through
//! [`SessionToken::as_str`], for the cookie.
//!
//! The tag in the token is a pseudonym of the user (the first 64 bits of the
//! SHA-256 of the user id), visible to whoever sees the cookie. It does not
//! reveal the id itself, but when ids are guessable (small integers,
//! e-mail addresses) the id can be found by hashing candidates: treat the
//! cookie as personal data.
//!
//! # Keys and Redis Cluster
//!
//! The client derives the keys; all keys of one user share the user's hash
//! tag ([`cache::user_tag`](crate::cache::user_tag): the first 16 hex
//! digits of the SHA-256 of the user id), so they live in one Cluster slot
//! and every command touches a single slot:
//!
//! | key | format |
//! |---|---|
//! | session | `tk:s:{<tag>}:<64 hex digits of the SHA-256 of the token>` ([`session_key`]) |
//! | the user's index of sessions | `tk:si:{<tag>}:<user id>` ([`index_key`]) |
//!
//! Since the token carries the tag, a token alone locates its session:
//! [`touch`](SessionStore::touch), [`get`](SessionStore::get) and
//! [`update`](SessionStore::update) take only the token. The commands that
//! also change the user's index ([`destroy`](SessionStore::destroy),
//! [`rotate`](SessionStore::rotate)...) need the user id as well (see
//! [`SessionStore::destroy`] for why).
//!
//! # Expiry
//!
//! A session expires after its idle TTL ([`SessionOptions::idle_ttl`], 24 h
//! by default) without a [`touch`](SessionStore::touch), and at the latest
//! at [`Session::max_expires_at`], its creation plus the maximum lifetime
//! ([`SessionOptions::max_lifetime`]; the module's default is 30 days),
//! however often it is touched. Times are the server's clock, in Unix
//! milliseconds.
//!
//! Touching on every request writes on every request; with
//! [`TouchOptions::min_gap`] the module skips the write when the session
//! was touched more recently than that, which bounds the writes per session
//! at the cost of an expiry up to `min_gap` early.
//!
//! # Concurrent requests
//!
//! Each session has a [`version`](Session::version), bumped by every
//! [`update`](SessionStore::update). Pass the version the data was read at
//! as `expected_version` and an update based on stale data is refused
//! ([`UpdateOutcome::VersionMismatch`]) instead of overwriting another
//! request's change.
//!
//! # Session fixation
//!
//! Call [`rotate`](SessionStore::rotate) when the privilege of a session
//! changes (login, password change, sudo mode): the session moves to a new
//! token, with the same data and expiry, and the old token stops working.
//! Whoever planted or saw the old token gets nothing.
//!
//! # Errors
//!
//! Besides the usual [`Error`] variants:
//!
//! - [`create`](SessionStore::create) under [`CapPolicy::Reject`] fails with
//!   [`Error::Server`] (`ERR session limit reached`) when the user already
//!   has the maximum number of sessions: test it with [`is_session_limit`].
//! - data that does not decode as `T` (e.g. written by an older version of
//!   the application) fails with [`Error::UnexpectedReply`], whose message
//!   does not contain the data.
//! - after a transient error ([`Error::is_transient`]) the command may or
//!   may not have run; each method says what that means for it.
//!
//! # Connections
//!
//! Keep sessions on the main instance ([`Config::connect`](crate::Config::connect)),
//! not on a cache instance: a cache usually runs with
//! `maxmemory-policy allkeys-lru`, which would log users out at random.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{FromRedisValue, ParsingError, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::args;
use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::keys::{sha256, tagged, user_tag, TAG_HEX_LEN};
use crate::reply::{
    bulk, detail, elements, from_json, integer, into_unwrapped, text, type_name, unwrap_attribute,
    Count, Flag,
};
use crate::telemetry;

/// `TK.SESSION.CREATE <skey> <ikey> <user> <idle_ms> <data> [MAXLIFETIME <ms>] [MAXSESSIONS <n> EVICT|REJECT]`.
pub(crate) const CMD_CREATE: &str = "TK.SESSION.CREATE";
/// `TK.SESSION.TOUCH <skey> [IDLE <ms>] [MINGAP <ms>]`.
pub(crate) const CMD_TOUCH: &str = "TK.SESSION.TOUCH";
/// `TK.SESSION.GET <skey>` (read-only).
pub(crate) const CMD_GET: &str = "TK.SESSION.GET";
/// `TK.SESSION.SET <skey> <data> [IFVERSION <v>]`.
pub(crate) const CMD_SET: &str = "TK.SESSION.SET";
/// `TK.SESSION.DESTROY <skey> <ikey>`.
pub(crate) const CMD_DESTROY: &str = "TK.SESSION.DESTROY";
/// `TK.SESSION.ROTATE <old_skey> <new_skey> <ikey>`.
pub(crate) const CMD_ROTATE: &str = "TK.SESSION.ROTATE";
/// `TK.SESSION.LIST <ikey>` (read-only).
pub(crate) const CMD_LIST: &str = "TK.SESSION.LIST";
/// `TK.SESSION.REVOKEALL <ikey> [EXCEPT <skey>]`.
pub(crate) const CMD_REVOKE_ALL: &str = "TK.SESSION.REVOKEALL";

/// The prefix of session keys ([`session_key`]).
pub const SESSION_PREFIX: &str = "tk:s:";
/// The prefix of a user's index key ([`index_key`]).
pub const INDEX_PREFIX: &str = "tk:si:";

/// The default idle TTL of new sessions: 24 hours.
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The longest idle TTL, maximum lifetime or touch gap the module accepts:
/// 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest per-user limit ([`SessionOptions::max_sessions`]) the module
/// accepts.
pub const MAX_SESSIONS: u32 = 10_000;

/// The largest version the module accepts in `IFVERSION` (`i64::MAX`).
const MAX_VERSION: u64 = i64::MAX.unsigned_abs();

/// Random bytes in a token.
const SECRET_BYTES: usize = 16;
/// Hex digits of the random part of a token.
const SECRET_HEX_LEN: usize = 2 * SECRET_BYTES;
/// Hex digits of a session id (a SHA-256).
const ID_HEX_LEN: usize = 64;

/// The length of a token's text: the 16-digit tag, `.`, 32 hex digits.
pub const TOKEN_LEN: usize = TAG_HEX_LEN + 1 + SECRET_HEX_LEN;

// ---- tokens and keys ---------------------------------------------------------

/// A session's token: the browser's credential, to put in the cookie.
///
/// `<16 hex digits of the user's tag>.<32 hex digits of 128 random bits>`,
/// all lowercase (see the [module docs](self#tokens)). Only its SHA-256
/// reaches Redis.
///
/// [`Debug`](fmt::Debug) shows the tag only, and there is no
/// [`Display`](fmt::Display), so that logging a token by accident does not
/// leak it; [`as_str`](SessionToken::as_str) gives the secret text for the
/// cookie.
///
/// ```
/// use tk_redis::session::SessionToken;
/// let token: SessionToken = "ba7816bf8f01cfea.0123456789abcdef0123456789abcdef".parse()?;
/// assert_eq!(token.tag(), "ba7816bf8f01cfea");
/// assert_eq!(format!("{token:?}"), r#"SessionToken { tag: "ba7816bf8f01cfea", .. }"#);
/// assert!(" ba7816bf8f01cfea.0123456789abcdef0123456789abcdef".parse::<SessionToken>().is_err());
/// # Ok::<(), tk_redis::Error>(())
/// ```
#[derive(Clone)]
pub struct SessionToken {
    text: String,
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret part is left out: it is what logs the user in.
        f.debug_struct("SessionToken")
            .field("tag", &self.tag())
            .finish_non_exhaustive()
    }
}

impl SessionToken {
    /// Parses a token strictly: exactly [`TOKEN_LEN`] characters, 16
    /// lowercase hex digits, `.`, 32 lowercase hex digits. Anything else
    /// fails with [`Error::InvalidArgument`], whose message does not contain
    /// the text. Treat such a cookie as "not logged in".
    pub fn parse(text: &str) -> Result<SessionToken> {
        let valid = text.len() == TOKEN_LEN
            && text.as_bytes()[TAG_HEX_LEN] == b'.'
            && is_lower_hex(&text[..TAG_HEX_LEN], TAG_HEX_LEN)
            && is_lower_hex(&text[TAG_HEX_LEN + 1..], SECRET_HEX_LEN);
        if !valid {
            // The text is not echoed: it may be (almost) a valid credential.
            return Err(Error::InvalidArgument(format!(
                "invalid session token: expected {TAG_HEX_LEN} lowercase hex digits, '.', \
                 and {SECRET_HEX_LEN} lowercase hex digits"
            )));
        }
        Ok(SessionToken {
            text: text.to_owned(),
        })
    }

    /// A new token for the user whose tag is `tag`, with 128 bits from the
    /// OS random source.
    fn generate(tag: &str) -> Result<SessionToken> {
        let secret = args::random_hex::<SECRET_BYTES>("a session token")?;
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(tag);
        text.push('.');
        text.push_str(&secret);
        debug_assert_eq!(text.len(), TOKEN_LEN);
        Ok(SessionToken { text })
    }

    /// The token's text, the secret credential: for the cookie, and for
    /// nothing else (not for logs, URLs or error messages).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The user's hash tag the token carries (not secret).
    pub fn tag(&self) -> &str {
        &self.text[..TAG_HEX_LEN]
    }

    /// The session's id: the 64 lowercase hex digits of the SHA-256 of the
    /// token, as in the session key and in [`SessionInfo::id`]. Not a
    /// credential: it cannot be turned back into the token. Compare it with
    /// the ids from [`SessionStore::list`] to mark the current session.
    pub fn id(&self) -> String {
        hex::encode(sha256(self.text.as_bytes()))
    }
}

/// Strict, as [`SessionToken::parse`].
impl FromStr for SessionToken {
    type Err = Error;

    fn from_str(text: &str) -> Result<SessionToken> {
        SessionToken::parse(text)
    }
}

/// The key of the session of `token`:
/// `tk:s:{<tag>}:<SHA-256 of the token, 64 hex digits>`.
///
/// ```
/// use tk_redis::session::{session_key, SessionToken};
/// let token: SessionToken = "ba7816bf8f01cfea.00000000000000000000000000000000".parse()?;
/// assert_eq!(
///     session_key(&token),
///     "tk:s:{ba7816bf8f01cfea}:445ca5bef022c3cc38e2c329bce1d5737d35b2b0516f83123bee2d11709989c9"
/// );
/// # Ok::<(), tk_redis::Error>(())
/// ```
pub fn session_key(token: &SessionToken) -> String {
    key_of_id(token.tag(), &token.id())
}

/// `user`'s index of sessions: `tk:si:{<tag>}:<user id>` (the tag is
/// [`cache::user_tag`](crate::cache::user_tag)).
///
/// ```
/// assert_eq!(tk_redis::session::index_key("abc"), "tk:si:{ba7816bf8f01cfea}:abc");
/// ```
pub fn index_key(user: &str) -> String {
    index_key_for(&user_tag(user), user)
}

fn index_key_for(tag: &str, user: &str) -> String {
    let mut key = tagged(INDEX_PREFIX, tag);
    key.push(':');
    key.push_str(user);
    key
}

/// The session key prefix of a user's tag: `tk:s:{<tag>}:`.
fn session_prefix(tag: &str) -> String {
    let mut key = tagged(SESSION_PREFIX, tag);
    key.push(':');
    key
}

fn key_of_id(tag: &str, id: &str) -> String {
    let mut key = session_prefix(tag);
    key.push_str(id);
    key
}

/// Whether `text` is exactly `len` lowercase hex digits.
fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() {
        return Err(Error::InvalidArgument(
            "the session user id must not be empty".into(),
        ));
    }
    Ok(())
}

/// Checks that `token` was made for `user` (the tags match), and returns the
/// user's tag.
fn check_owner(token: &SessionToken, user: &str) -> Result<String> {
    let tag = user_tag(user);
    if token.tag() != tag {
        // Neither the user id nor the token is echoed.
        return Err(Error::InvalidArgument(
            "the session token was not issued to the user given".into(),
        ));
    }
    Ok(tag)
}

/// A duration in whole milliseconds, rounded up, within 1 ms ..=
/// [`MAX_DURATION`]; `what` names the option.
fn millis(what: &str, duration: Duration) -> Result<u64> {
    args::bounded_ms(&format!("session {what}"), duration, MAX_DURATION)
}

/// What the data is called in errors.
const DATA: &str = "the session data";

// ---- options ----------------------------------------------------------------

/// What [`create`](SessionStore::create) does when the user already has
/// the maximum number of sessions ([`SessionOptions::max_sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapPolicy {
    /// Delete the user's least recently active sessions to make room (those
    /// devices are logged out).
    Evict,
    /// Refuse the new session: `create` fails with [`Error::Server`]
    /// (`ERR session limit reached`, see [`is_session_limit`]).
    Reject,
}

impl CapPolicy {
    fn as_arg(self) -> &'static str {
        match self {
            CapPolicy::Evict => "EVICT",
            CapPolicy::Reject => "REJECT",
        }
    }
}

/// How [`create`](SessionStore::create) makes sessions; set with
/// [`SessionStore::with_options`].
///
/// Durations are sent in whole milliseconds, rounded up, and must be
/// between 1 ms and [`MAX_DURATION`]; the count of `max_sessions` between
/// 1 and [`MAX_SESSIONS`]. Invalid options fail each `create` with
/// [`Error::InvalidArgument`], before anything is sent.
///
/// ```
/// use std::time::Duration;
/// use tk_redis::session::{CapPolicy, SessionOptions};
/// let options = SessionOptions {
///     idle_ttl: Duration::from_secs(2 * 3600),
///     max_sessions: Some((5, CapPolicy::Reject)),
///     ..SessionOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionOptions {
    /// How long a session lives without a [`touch`](SessionStore::touch).
    /// Default [`DEFAULT_IDLE_TTL`], 24 hours.
    pub idle_ttl: Duration,
    /// How long a session lives at most after its creation, however often it
    /// is touched (`MAXLIFETIME`). Default `None`: the module's default,
    /// 30 days.
    pub max_lifetime: Option<Duration>,
    /// At most this many live sessions per user, and what to do when a new
    /// one would exceed it (`MAXSESSIONS`). Default `None`: no limit.
    pub max_sessions: Option<(u32, CapPolicy)>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_ttl: DEFAULT_IDLE_TTL,
            max_lifetime: None,
            max_sessions: None,
        }
    }
}

/// Options of [`touch_with`](SessionStore::touch_with). The default is a
/// plain [`touch`](SessionStore::touch).
///
/// Durations are sent in whole milliseconds, rounded up, and must be
/// between 1 ms and [`MAX_DURATION`] ([`Error::InvalidArgument`] otherwise,
/// nothing sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TouchOptions {
    /// The idle TTL to apply for this touch (`IDLE`) instead of the
    /// session's own: the session then expires at now + `idle`, but never
    /// after [`Session::max_expires_at`].
    pub idle: Option<Duration>,
    /// Skip the write when the session was touched less than this long ago
    /// (`MINGAP`); the session is still returned, with the expiry of that
    /// earlier touch. Bounds the writes per session to one per `min_gap`.
    pub min_gap: Option<Duration>,
}

// ---- sessions ---------------------------------------------------------------

/// A session as the module returned it, with its data decoded.
///
/// Times are the server's clock (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session<T> {
    /// The user the session was created for. Pass it to
    /// [`destroy`](SessionStore::destroy) and [`rotate`](SessionStore::rotate).
    pub user: String,
    /// The application's data (stored as JSON).
    pub data: T,
    /// When the session was created.
    pub created: SystemTime,
    /// When the session was last touched (or created).
    pub last_active: SystemTime,
    /// When the session expires unless touched again.
    pub expires_at: SystemTime,
    /// When the session expires at the latest, however often it is touched.
    pub max_expires_at: SystemTime,
    /// The data's version, bumped by every [`update`](SessionStore::update);
    /// pass it as `expected_version` to refuse updates based on stale data.
    pub version: u64,
}

/// One of a user's live sessions, from [`list`](SessionStore::list).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's id: the SHA-256 of its token, 64 lowercase hex digits
    /// ([`SessionToken::id`]). Not the token, and not a credential: it can
    /// be shown to the user, e.g. to pick a device to log out with
    /// [`destroy_by_id`](SessionStore::destroy_by_id).
    pub id: String,
    /// When the session was created.
    pub created: SystemTime,
    /// When the session was last touched (or created).
    pub last_active: SystemTime,
    /// When the session expires unless touched again.
    pub expires_at: SystemTime,
}

/// The answer of [`update`](SessionStore::update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "an update may have been refused"]
pub enum UpdateOutcome {
    /// The data was replaced; `version` is the session's new version.
    Updated {
        /// The new version.
        version: u64,
    },
    /// The session does not exist (expired, destroyed, rotated): nothing was
    /// written, and the session was not recreated.
    Gone,
    /// The session's version was not the `expected_version`: another update
    /// came first. Nothing was written; read the session again and retry.
    VersionMismatch,
}

/// Whether `err` is the module's refusal of a new session under
/// [`CapPolicy::Reject`]: [`Error::Server`] with code `ERR` and a message
/// starting with `session limit reached`.
///
/// ```
/// use tk_redis::{session::is_session_limit, Error};
/// let err = Error::Server { code: "ERR".into(), message: "session limit reached".into() };
/// assert!(is_session_limit(&err));
/// assert!(!is_session_limit(&Error::Timeout));
/// ```
pub fn is_session_limit(err: &Error) -> bool {
    is_server_error(err, "session limit reached")
}

/// `SET`'s refusal under `IFVERSION`.
fn is_version_mismatch(err: &Error) -> bool {
    is_server_error(err, "version mismatch")
}

fn is_server_error(err: &Error, prefix: &str) -> bool {
    matches!(err, Error::Server { code, message } if code == "ERR" && message.starts_with(prefix))
}

// ---- the store -----------------------------------------------------------------

/// Creates, reads and ends login sessions whose data is a `T`, stored as
/// JSON, on the module's `TK.SESSION.*` commands. Cloning is cheap and
/// shares the connection.
///
/// Generic over the connection like [`RateLimiter`](crate::RateLimiter): by
/// default a [`ConnectionManager`] ([`SessionStore::connect`]), or any
/// cloneable async connection ([`SessionStore::new`], e.g.
/// `SessionStore::<Data, _>::new(conn)`), cluster connections included (the
/// keys of one call share a hash slot). Every command waits at most
/// [`timeout`](SessionStore::timeout) (default
/// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT), 3 s) and then fails with
/// [`Error::Timeout`].
///
/// An empty user id is refused ([`Error::InvalidArgument`], nothing sent):
/// it is almost always an id that failed to load.
///
/// See the [module docs](self) for tokens, keys and expiry.
pub struct SessionStore<T, C = ConnectionManager> {
    core: ClientCore<C>,
    options: SessionOptions,
    data: PhantomData<fn() -> T>,
}

impl<T, C: Clone> Clone for SessionStore<T, C> {
    fn clone(&self) -> Self {
        SessionStore {
            core: self.core.clone(),
            options: self.options.clone(),
            data: PhantomData,
        }
    }
}

impl<T, C> fmt::Debug for SessionStore<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core
            .debug_struct(f, "SessionStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> SessionStore<T, ConnectionManager> {
    crate::client::connect_constructor!();
}

impl<T, C> SessionStore<T, C> {
    /// Wraps an existing connection, with the default timeout and the
    /// default [`SessionOptions`].
    pub fn new(conn: C) -> Self {
        SessionStore {
            core: ClientCore::new(conn),
            options: SessionOptions::default(),
            data: PhantomData,
        }
    }

    crate::client::core_accessors!();

    /// Sets the options of the sessions [`create`](SessionStore::create)
    /// makes. They are checked by each `create`.
    #[must_use]
    pub fn with_options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }

    /// The options of new sessions.
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }
}

impl<T, C> SessionStore<T, C>
where
    T: Serialize + DeserializeOwned,
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Creates a session for `user` holding `data`, with the store's
    /// [`SessionOptions`] (`TK.SESSION.CREATE`). Returns the new token, for
    /// the cookie, and the session.
    ///
    /// Under a [`CapPolicy::Evict`] limit, the user's least recently active
    /// sessions are deleted to make room; under [`CapPolicy::Reject`] the
    /// call fails with [`Error::Server`] when the user is at the limit
    /// ([`is_session_limit`]).
    ///
    /// An empty user, invalid options, and data that cannot be serialized as
    /// JSON fail with [`Error::InvalidArgument`] before anything is sent.
    /// After a transient error the session may have been created, under a
    /// token nobody knows: it expires after its idle TTL, and until then
    /// counts towards the user's limit. Retrying makes another session.
    pub async fn create(&self, user: &str, data: &T) -> Result<(SessionToken, Session<T>)> {
        check_user(user)?;
        let options = &self.options;
        let idle_ms = millis("idle_ttl", options.idle_ttl)?;
        let max_lifetime_ms = options
            .max_lifetime
            .map(|lifetime| millis("max_lifetime", lifetime))
            .transpose()?;
        if let Some((count, _)) = options.max_sessions {
            if !(1..=MAX_SESSIONS).contains(&count) {
                return Err(Error::InvalidArgument(format!(
                    "session max_sessions must be between 1 and {MAX_SESSIONS}, got {count}"
                )));
            }
        }
        let json = args::to_json(data, DATA)?;
        let tag = user_tag(user);
        let token = SessionToken::generate(&tag)?;
        let mut cmd = redis::cmd(CMD_CREATE);
        cmd.arg(session_key(&token))
            .arg(index_key_for(&tag, user))
            .arg(user)
            .arg(idle_ms)
            .arg(json);
        if let Some(ms) = max_lifetime_ms {
            cmd.arg("MAXLIFETIME").arg(ms);
        }
        if let Some((count, policy)) = options.max_sessions {
            cmd.arg("MAXSESSIONS").arg(count).arg(policy.as_arg());
        }
        let raw: RawSession = self.core.query(CMD_CREATE, &cmd).await?;
        if raw.user != user {
            return Err(Error::UnexpectedReply(format!(
                "{CMD_CREATE}: the new session belongs to another user than the one sent"
            )));
        }
        Ok((token, raw.decode(CMD_CREATE)?))
    }

    /// Marks the session of `token` active now and slides its expiry to now
    /// plus its idle TTL, never past [`Session::max_expires_at`]
    /// (`TK.SESSION.TOUCH`). Returns the session, or `None` when it does not
    /// exist (expired, destroyed, rotated): the request is not logged in.
    ///
    /// This is the call that authenticates a request; see
    /// [`touch_with`](SessionStore::touch_with) to limit the writes. A
    /// transient error leaves the session as it was or touched: retrying is
    /// safe.
    pub async fn touch(&self, token: &SessionToken) -> Result<Option<Session<T>>> {
        self.touch_with(token, TouchOptions::default()).await
    }

    /// [`touch`](SessionStore::touch) with [`TouchOptions`]: another idle
    /// TTL for this touch, and a minimum gap between writes.
    pub async fn touch_with(
        &self,
        token: &SessionToken,
        options: TouchOptions,
    ) -> Result<Option<Session<T>>> {
        let idle_ms = options
            .idle
            .map(|idle| millis("touch idle", idle))
            .transpose()?;
        let min_gap_ms = options
            .min_gap
            .map(|gap| millis("touch min_gap", gap))
            .transpose()?;
        let mut cmd = redis::cmd(CMD_TOUCH);
        cmd.arg(session_key(token));
        if let Some(ms) = idle_ms {
            cmd.arg("IDLE").arg(ms);
        }
        if let Some(ms) = min_gap_ms {
            cmd.arg("MINGAP").arg(ms);
        }
        self.session(CMD_TOUCH, token, &cmd).await
    }

    /// The session of `token`, without touching it (`TK.SESSION.GET`,
    /// read-only): `None` when it does not exist.
    pub async fn get(&self, token: &SessionToken) -> Result<Option<Session<T>>> {
        let mut cmd = redis::cmd(CMD_GET);
        cmd.arg(session_key(token));
        self.session(CMD_GET, token, &cmd).await
    }

    /// Replaces the data of the session of `token` (`TK.SESSION.SET`),
    /// keeping its expiry.
    ///
    /// With `expected_version`, only if the session is still at that
    /// version ([`Session::version`]); otherwise
    /// [`UpdateOutcome::VersionMismatch`] and nothing is written. A session
    /// that no longer exists is [`UpdateOutcome::Gone`] and is not
    /// recreated.
    ///
    /// Data that cannot be serialized as JSON, and an `expected_version`
    /// above `i64::MAX` (no session gets there), fail with
    /// [`Error::InvalidArgument`] before sending. After a transient error
    /// the update may have happened: a retry with the same
    /// `expected_version` then reports `VersionMismatch`; read the session
    /// to find out.
    pub async fn update(
        &self,
        token: &SessionToken,
        data: &T,
        expected_version: Option<u64>,
    ) -> Result<UpdateOutcome> {
        if expected_version.is_some_and(|version| version > MAX_VERSION) {
            return Err(Error::InvalidArgument(format!(
                "session expected_version must be at most {MAX_VERSION}"
            )));
        }
        let json = args::to_json(data, DATA)?;
        let mut cmd = redis::cmd(CMD_SET);
        cmd.arg(session_key(token)).arg(json);
        if let Some(version) = expected_version {
            cmd.arg("IFVERSION").arg(version);
        }
        match self.core.query(CMD_SET, &cmd).await {
            Ok(NewVersion(Some(version))) => Ok(UpdateOutcome::Updated { version }),
            Ok(NewVersion(None)) => Ok(UpdateOutcome::Gone),
            Err(err) if is_version_mismatch(&err) => {
                telemetry::session_version_conflict();
                Ok(UpdateOutcome::VersionMismatch)
            }
            Err(err) => Err(err),
        }
    }

    /// Ends the session of `token`, which belongs to `user`
    /// (`TK.SESSION.DESTROY`): logout. `true` when a session was deleted,
    /// `false` when there was none (already expired or destroyed).
    ///
    /// # Why the user is needed
    ///
    /// The command also removes the session from the user's index, whose
    /// key contains the user id; the token only carries the user's tag, a
    /// one-way hash of it. Pass [`Session::user`] of the session that
    /// authenticated the request. Reading the user with
    /// [`get`](SessionStore::get) first would cost a second round trip on
    /// every logout, for a value the application already has.
    ///
    /// A token whose tag is not `user`'s fails with
    /// [`Error::InvalidArgument`] before sending (a wrong user would leave
    /// the session listed in the real user's index). After a transient
    /// error, retrying is safe.
    pub async fn destroy(&self, token: &SessionToken, user: &str) -> Result<bool> {
        check_user(user)?;
        let tag = check_owner(token, user)?;
        self.destroy_key(session_key(token), &tag, user).await
    }

    /// Ends `user`'s session whose [`SessionInfo::id`] is `id`
    /// (`TK.SESSION.DESTROY`): "log out that device", from
    /// [`list`](SessionStore::list). `true` when a session was deleted.
    ///
    /// `id` must be 64 lowercase hex digits ([`Error::InvalidArgument`]
    /// otherwise, nothing sent). It only ever names a session of `user`:
    /// the key is built from `user`'s tag.
    pub async fn destroy_by_id(&self, user: &str, id: &str) -> Result<bool> {
        check_user(user)?;
        if !is_lower_hex(id, ID_HEX_LEN) {
            return Err(Error::InvalidArgument(format!(
                "a session id must be {ID_HEX_LEN} lowercase hex digits"
            )));
        }
        let tag = user_tag(user);
        self.destroy_key(key_of_id(&tag, id), &tag, user).await
    }

    /// Moves the session of `token`, which belongs to `user`, to a new token
    /// (`TK.SESSION.ROTATE`): same data, same expiry, and the old token stops
    /// working. Returns the new token, to set in the cookie, or `None` when
    /// the session does not exist.
    ///
    /// Call it whenever the session's privilege changes (at login, after a
    /// password change) to defeat session fixation. The user is needed for
    /// the same reason as for [`destroy`](SessionStore::destroy), and
    /// checked the same way.
    ///
    /// After a transient error the session may have moved to the new token,
    /// which is then lost: if the old token no longer works, log the user in
    /// again (create a session).
    pub async fn rotate(&self, token: &SessionToken, user: &str) -> Result<Option<SessionToken>> {
        check_user(user)?;
        let tag = check_owner(token, user)?;
        let new_token = SessionToken::generate(&tag)?;
        let mut cmd = redis::cmd(CMD_ROTATE);
        cmd.arg(session_key(token))
            .arg(session_key(&new_token))
            .arg(index_key_for(&tag, user));
        let Rotated(moved) = self.core.query(CMD_ROTATE, &cmd).await?;
        Ok(moved.then_some(new_token))
    }

    /// `user`'s live sessions, most recently active first
    /// (`TK.SESSION.LIST`, read-only). Each is identified by its
    /// [`SessionInfo::id`], never by its token.
    pub async fn list(&self, user: &str) -> Result<Vec<SessionInfo>> {
        check_user(user)?;
        let tag = user_tag(user);
        let mut cmd = redis::cmd(CMD_LIST);
        cmd.arg(index_key_for(&tag, user));
        let SessionList(raw) = self.core.query(CMD_LIST, &cmd).await?;
        let prefix = session_prefix(&tag);
        raw.into_iter()
            .enumerate()
            .map(|(index, info)| {
                let id = info
                    .key
                    .strip_prefix(&prefix)
                    .filter(|id| is_lower_hex(id, ID_HEX_LEN))
                    .ok_or_else(|| {
                        Error::UnexpectedReply(format!(
                            "{CMD_LIST}: element {index} is not a session key of this user"
                        ))
                    })?;
                Ok(SessionInfo {
                    id: id.to_owned(),
                    created: info.created,
                    last_active: info.last_active,
                    expires_at: info.expires_at,
                })
            })
            .collect()
    }

    /// Ends all of `user`'s sessions, except the one of `except` if given
    /// (`TK.SESSION.REVOKEALL`): "log out everywhere (else)". Returns how
    /// many sessions were deleted.
    ///
    /// An `except` token that was not issued to `user` fails with
    /// [`Error::InvalidArgument`] before sending: revoking everything but a
    /// session of someone else is never what was meant. After a transient
    /// error, retrying is safe.
    pub async fn revoke_all(&self, user: &str, except: Option<&SessionToken>) -> Result<u64> {
        check_user(user)?;
        let tag = user_tag(user);
        let mut cmd = redis::cmd(CMD_REVOKE_ALL);
        cmd.arg(index_key_for(&tag, user));
        if let Some(token) = except {
            check_owner(token, user)?;
            cmd.arg("EXCEPT").arg(session_key(token));
        }
        let Count(deleted) = self.core.query(CMD_REVOKE_ALL, &cmd).await?;
        Ok(deleted)
    }

    /// Sends TOUCH or GET, and checks that the session belongs to the user
    /// of the token's tag.
    async fn session(
        &self,
        command: &'static str,
        token: &SessionToken,
        cmd: &redis::Cmd,
    ) -> Result<Option<Session<T>>> {
        let MaybeSession(raw) = self.core.query(command, cmd).await?;
        let Some(raw) = raw else { return Ok(None) };
        if user_tag(&raw.user) != token.tag() {
            return Err(Error::UnexpectedReply(format!(
                "{command}: the session belongs to another user than the token's"
            )));
        }
        raw.decode(command).map(Some)
    }

    /// `TK.SESSION.DESTROY <skey> <ikey>`.
    async fn destroy_key(&self, session_key: String, tag: &str, user: &str) -> Result<bool> {
        let mut cmd = redis::cmd(CMD_DESTROY);
        cmd.arg(session_key).arg(index_key_for(tag, user));
        let Flag(deleted) = self.core.query(CMD_DESTROY, &cmd).await?;
        Ok(deleted)
    }
}

// ---- replies ---------------------------------------------------------------

/// An element holding Unix milliseconds.
fn unix_ms(value: &Value, index: usize, what: &str) -> Result<SystemTime, ParsingError> {
    let ms = integer(value, index, what)?;
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .ok_or_else(|| format!("element {index} ({what}) is out of range ({ms})").into())
}

/// A session reply: `[user, data, created, last_active, expires_at,
/// max_expires_at, version]`, with the data still JSON.
#[derive(Debug, PartialEq, Eq)]
struct RawSession {
    user: String,
    data: Vec<u8>,
    created: SystemTime,
    last_active: SystemTime,
    expires_at: SystemTime,
    max_expires_at: SystemTime,
    version: u64,
}

impl RawSession {
    fn decode<T: DeserializeOwned>(self, command: &str) -> Result<Session<T>> {
        let data = from_json(&self.data, command, DATA)?;
        Ok(Session {
            user: self.user,
            data,
            created: self.created,
            last_active: self.last_active,
            expires_at: self.expires_at,
            max_expires_at: self.max_expires_at,
            version: self.version,
        })
    }
}

impl FromRedisValue for RawSession {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let [user, data, created, last_active, expires_at, max_expires_at, version] =
            elements::<7>(value)?;
        Ok(RawSession {
            user: text(user, 0, "user")?,
            data: bulk(data, 1, "data")?,
            created: unix_ms(&created, 2, "created")?,
            last_active: unix_ms(&last_active, 3, "last_active")?,
            expires_at: unix_ms(&expires_at, 4, "expires_at")?,
            max_expires_at: unix_ms(&max_expires_at, 5, "max_expires_at")?,
            version: integer(&version, 6, "version")?,
        })
    }
}

/// A session reply, or nil (TOUCH, GET).
#[derive(Debug, PartialEq, Eq)]
struct MaybeSession(Option<RawSession>);

impl FromRedisValue for MaybeSession {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        match into_unwrapped(value) {
            Value::Nil => Ok(MaybeSession(None)),
            other => RawSession::from_redis_value(other).map(|raw| MaybeSession(Some(raw))),
        }
    }
}

/// One element of LIST's reply: `[skey, created, last_active, expires_at]`.
#[derive(Debug, PartialEq, Eq)]
struct RawInfo {
    key: String,
    created: SystemTime,
    last_active: SystemTime,
    expires_at: SystemTime,
}

impl FromRedisValue for RawInfo {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let [key, created, last_active, expires_at] = elements::<4>(value)?;
        Ok(RawInfo {
            key: text(key, 0, "session key")?,
            created: unix_ms(&created, 1, "created")?,
            last_active: unix_ms(&last_active, 2, "last_active")?,
            expires_at: unix_ms(&expires_at, 3, "expires_at")?,
        })
    }
}

/// LIST's reply: an array of [`RawInfo`] (possibly empty).
#[derive(Debug, PartialEq, Eq)]
struct SessionList(Vec<RawInfo>);

impl FromRedisValue for SessionList {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        match into_unwrapped(value) {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    RawInfo::from_redis_value(item)
                        .map_err(|err| format!("session {index}: {}", detail(&err)).into())
                })
                .collect::<Result<_, ParsingError>>()
                .map(SessionList),
            other => {
                Err(format!("expected an array of sessions, got {}", type_name(&other)).into())
            }
        }
    }
}

/// SET's reply: the new version, or nil when the session is gone.
#[derive(Debug, PartialEq, Eq)]
struct NewVersion(Option<u64>);

impl FromRedisValue for NewVersion {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        match unwrap_attribute(value) {
            Value::Nil => Ok(NewVersion(None)),
            Value::Int(n) => u64::try_from(*n)
                .map(|version| NewVersion(Some(version)))
                .map_err(|_| format!("the version is negative ({n})").into()),
            other => Err(format!("expected an integer or nil, got {}", type_name(other)).into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

/// ROTATE's reply: `1` moved, nil when the old session is gone.
#[derive(Debug, PartialEq, Eq)]
struct Rotated(bool);

impl FromRedisValue for Rotated {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        match unwrap_attribute(value) {
            Value::Int(1) => Ok(Rotated(true)),
            Value::Nil => Ok(Rotated(false)),
            Value::Int(other) => Err(format!("expected 1 or nil, got {other}").into()),
            other => Err(format!("expected the integer 1 or nil, got {}", type_name(other)).into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{crc16, key_slot};
    use crate::test_support::*;
    use redis::RedisResult;
    use std::collections::HashSet;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
    struct Data {
        theme: String,
        visits: u32,
    }

    fn data() -> Data {
        Data {
            theme: "dark".into(),
            visits: 3,
        }
    }

    const DATA_JSON: &str = r#"{"theme":"dark","visits":3}"#;

    /// SHA-256("abc") starts with this: the tag of user "abc".
    const ABC_TAG: &str = "ba7816bf8f01cfea";

    fn token(text: &str) -> SessionToken {
        SessionToken::parse(text).unwrap()
    }

    /// A fixed token of user "abc".
    fn abc_token() -> SessionToken {
        token("ba7816bf8f01cfea.00000000000000000000000000000000")
    }

    /// Its session key (SHA-256 of the token's text, computed with sha256sum).
    const ABC_KEY: &str =
        "tk:s:{ba7816bf8f01cfea}:445ca5bef022c3cc38e2c329bce1d5737d35b2b0516f83123bee2d11709989c9";
    const ABC_INDEX: &str = "tk:si:{ba7816bf8f01cfea}:abc";

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A session reply of `user` with `json` and fixed times.
    fn session_reply(user: &str, json: &str, version: i64) -> Value {
        Value::Array(vec![
            bulk(user),
            bulk(json),
            Value::Int(1_000),
            Value::Int(2_000),
            Value::Int(3_000),
            Value::Int(4_000),
            Value::Int(version),
        ])
    }

    fn info_reply(key: &str, times: [i64; 3]) -> Value {
        Value::Array(vec![
            bulk(key),
            Value::Int(times[0]),
            Value::Int(times[1]),
            Value::Int(times[2]),
        ])
    }

    fn reset() -> RedisResult<Value> {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
    }

    fn store(fake: &Fake) -> SessionStore<Data, Fake> {
        SessionStore::new(fake.clone())
    }

    fn invalid_argument<T: fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidArgument(message)) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn unexpected_reply<T: fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::UnexpectedReply(message)) => message,
            other => panic!("expected UnexpectedReply, got {other:?}"),
        }
    }

    // ---- tokens ------------------------------------------------------------

    #[test]
    fn generated_tokens_have_the_documented_format() {
        let token = SessionToken::generate(&user_tag("abc")).unwrap();
        let text = token.as_str();
        assert_eq!(text.len(), TOKEN_LEN);
        assert_eq!(TOKEN_LEN, 49);
        assert_eq!(&text[..16], ABC_TAG);
        assert_eq!(token.tag(), ABC_TAG);
        assert_eq!(&text[16..17], ".");
        // 32 hex digits: 16 bytes, 128 bits.
        assert!(is_lower_hex(&text[17..], 32));
        assert_eq!(SECRET_BYTES * 8, 128);
        // Parses back.
        assert_eq!(SessionToken::parse(text).unwrap().as_str(), text);
    }

    #[test]
    fn generated_tokens_are_random() {
        let tokens: Vec<SessionToken> = (0..256)
            .map(|_| SessionToken::generate(ABC_TAG).unwrap())
            .collect();
        let distinct: HashSet<&str> = tokens.iter().map(SessionToken::as_str).collect();
        assert_eq!(distinct.len(), tokens.len());
        // Every secret position takes many values (a constant or counter
        // would not), and every hex digit shows up.
        for position in 17..TOKEN_LEN {
            let seen: HashSet<u8> = tokens
                .iter()
                .map(|t| t.as_str().as_bytes()[position])
                .collect();
            assert!(seen.len() >= 8, "position {position}: {seen:?}");
        }
        let digits: HashSet<u8> = tokens
            .iter()
            .flat_map(|t| t.as_str().as_bytes()[17..].to_vec())
            .collect();
        assert_eq!(digits.len(), 16);
    }

    #[test]
    fn parsing_is_strict_and_does_not_echo() {
        let good = "ba7816bf8f01cfea.0123456789abcdef0123456789abcdef";
        assert!(SessionToken::parse(good).is_ok());
        assert!(good.parse::<SessionToken>().is_ok());
        let bad = [
            String::new(),
            ".".into(),
            good.to_uppercase(),
            good.replace('a', "A"),
            format!(" {good}"),
            format!("{good} "),
            format!("{good}\n"),
            format!("{good}0"),
            good[..48].to_owned(),
            good.replace('.', ":"),
            good.replacen('.', "", 1) + "0",
            // The dot elsewhere.
            "ba7816bf8f01cfe.a0123456789abcdef0123456789abcdef".into(),
            "ba7816bf8f01cfea0.123456789abcdef0123456789abcdef".into(),
            // Non-hex letters, signs, non-ASCII of the right byte length
            // (which must not panic on a char boundary either).
            good.replacen('f', "g", 1),
            good.replacen("01", "+1", 1),
            "ba7816bf8f01cfé.0123456789abcdef0123456789abcdef".into(),
            "ba7816bf8f01cfea.0123456789abcdef0123456789abcdé".into(),
            "é".repeat(24) + ".",
            "\u{0}".repeat(49),
            // Two tokens, or a token with a secret of 31/33 digits.
            format!("{good}.{good}"),
            "ba7816bf8f01cfea.0123456789abcdef0123456789abcde".into(),
            "ba7816bf8f01cfea.0123456789abcdef0123456789abcdef0".into(),
        ];
        for text in &bad {
            let message = invalid_argument(SessionToken::parse(text));
            assert!(
                message.contains("invalid session token"),
                "{text:?}: {message}"
            );
            if text.len() > 4 {
                assert!(!message.contains(text.as_str()), "{message}");
            }
            assert!(!message.contains("0123456789abcdef0123"), "{message}");
            assert!(text.parse::<SessionToken>().is_err());
        }
    }

    #[test]
    fn debug_shows_only_the_tag() {
        let token = SessionToken::generate(ABC_TAG).unwrap();
        let debug = format!("{token:?}");
        assert_eq!(debug, r#"SessionToken { tag: "ba7816bf8f01cfea", .. }"#);
        assert!(!debug.contains(&token.as_str()[17..]));
        let pretty = format!("{token:#?}");
        assert!(!pretty.contains(&token.as_str()[17..]), "{pretty}");
    }

    // ---- keys ----------------------------------------------------------------

    #[test]
    fn keys_have_the_documented_shape() {
        let token = abc_token();
        assert_eq!(session_key(&token), ABC_KEY);
        assert_eq!(index_key("abc"), ABC_INDEX);
        assert_eq!(
            token.id(),
            "445ca5bef022c3cc38e2c329bce1d5737d35b2b0516f83123bee2d11709989c9"
        );
        assert_eq!(session_key(&token), key_of_id(ABC_TAG, &token.id()));
        // The token itself never appears in its key.
        assert!(!session_key(&token).contains(&token.as_str()[17..]));
        // The tag is the cache's: one routing tag per user.
        assert_eq!(ABC_TAG, crate::cache::user_tag("abc"));
    }

    #[test]
    fn a_users_keys_share_one_slot() {
        for user in ["42", "alice", "ünïcødé", "{x}", "a}b{c", "with space", "}"] {
            let tag = user_tag(user);
            let token = SessionToken::generate(&tag).unwrap();
            let slot = crc16(tag.as_bytes()) % 16384;
            for key in [session_key(&token), index_key(user)] {
                assert!(key.contains(&format!("{{{tag}}}")), "{key}");
                assert_eq!(key_slot(&key), slot, "{key}");
            }
            assert_eq!(
                key_slot(session_key(&token)),
                key_slot(crate::cache::index_key(user))
            );
        }
    }

    #[test]
    fn lower_hex() {
        assert!(is_lower_hex("0123456789abcdef", 16));
        assert!(!is_lower_hex("0123456789abcdef", 15));
        assert!(!is_lower_hex("0123456789ABCDEF", 16));
        assert!(!is_lower_hex("0123456789abcdeg", 16));
        assert!(!is_lower_hex("+123456789abcdef", 16));
        assert!(is_lower_hex("", 0));
    }

    #[test]
    fn durations_are_whole_ms_rounded_up() {
        assert_eq!(millis("x", Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(millis("x", Duration::from_micros(1_001)).unwrap(), 2);
        assert_eq!(millis("x", DEFAULT_IDLE_TTL).unwrap(), 86_400_000);
        assert_eq!(millis("x", MAX_DURATION).unwrap(), 31_536_000_000);
        for bad in [
            Duration::ZERO,
            Duration::from_micros(999),
            MAX_DURATION + Duration::from_nanos(1),
            Duration::MAX,
        ] {
            assert!(invalid_argument(millis("idle_ttl", bad)).contains("idle_ttl"));
        }
    }

    // ---- options -------------------------------------------------------------

    #[test]
    fn defaults() {
        let options = SessionOptions::default();
        assert_eq!(options.idle_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(options.max_lifetime, None);
        assert_eq!(options.max_sessions, None);
        assert_eq!(
            TouchOptions::default(),
            TouchOptions {
                idle: None,
                min_gap: None
            }
        );
        let store = store(&Fake::replying(Value::Nil));
        assert_eq!(store.timeout(), crate::DEFAULT_TIMEOUT);
        assert_eq!(store.options(), &SessionOptions::default());
        let debug = format!("{store:?}");
        assert!(debug.contains("3s") && debug.contains("86400s"), "{debug}");
        let other = store
            .clone()
            .with_timeout(Duration::from_millis(5))
            .with_options(SessionOptions {
                max_sessions: Some((2, CapPolicy::Reject)),
                ..SessionOptions::default()
            });
        assert_eq!(other.timeout(), Duration::from_millis(5));
        assert_eq!(other.options().max_sessions, Some((2, CapPolicy::Reject)));
        assert_eq!(store.options().max_sessions, None);
        let _conn: &Fake = other.connection();
        let _conn: Fake = other.into_connection();
    }

    // ---- replies -------------------------------------------------------------

    fn parse<T: FromRedisValue>(value: Value) -> Result<T, String> {
        redis::from_redis_value::<T>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn session_replies() {
        let raw: RawSession = parse(session_reply("abc", DATA_JSON, 7)).unwrap();
        assert_eq!(
            raw,
            RawSession {
                user: "abc".into(),
                data: DATA_JSON.as_bytes().to_vec(),
                created: at(1_000),
                last_active: at(2_000),
                expires_at: at(3_000),
                max_expires_at: at(4_000),
                version: 7,
            }
        );
        let session: Session<Data> = raw.decode(CMD_GET).unwrap();
        assert_eq!(session.data, data());
        assert_eq!(session.version, 7);
        assert_eq!(session.max_expires_at, at(4_000));
        // RESP3 attributes are transparent.
        let wrapped = Value::Attribute {
            data: Box::new(session_reply("abc", DATA_JSON, 0)),
            attributes: vec![],
        };
        assert!(parse::<RawSession>(wrapped).is_ok());
        assert_eq!(
            parse::<MaybeSession>(Value::Nil).unwrap(),
            MaybeSession(None)
        );
        assert!(parse::<MaybeSession>(session_reply("abc", "1", 1))
            .unwrap()
            .0
            .is_some());
    }

    #[test]
    fn malformed_session_replies_are_rejected() {
        let good = match session_reply("abc", DATA_JSON, 1) {
            Value::Array(items) => items,
            _ => unreachable!(),
        };
        let with = |index: usize, value: Value| {
            let mut items = good.clone();
            items[index] = value;
            Value::Array(items)
        };
        let mut cases = vec![
            (Value::Nil, "got nil"),
            (Value::Int(1), "got integer"),
            (Value::Okay, "got OK"),
            (Value::Array(good[..6].to_vec()), "got 6 elements"),
            (
                Value::Array([good.clone(), vec![Value::Int(1)]].concat()),
                "got 8 elements",
            ),
            (Value::Array(vec![]), "got 0 elements"),
            (with(0, Value::Int(1)), "element 0 (user)"),
            (with(0, Value::BulkString(vec![0xff, 0xfe])), "not UTF-8"),
            (with(0, Value::SimpleString("abc".into())), "element 0"),
            (with(1, Value::Nil), "element 1 (data)"),
            (with(1, Value::Int(5)), "element 1 (data)"),
            (with(6, Value::Int(-1)), "version) is negative"),
            (with(6, bulk("1")), "element 6 (version)"),
            (with(5, Value::Double(1.0)), "element 5 (max_expires_at)"),
        ];
        for index in 2..=5 {
            cases.push((with(index, bulk("1000")), "should be an integer"));
            cases.push((with(index, Value::Int(-5)), "is negative"));
            cases.push((with(index, Value::Nil), "should be an integer"));
        }
        for (value, expected) in cases {
            let err = parse::<RawSession>(value.clone()).unwrap_err();
            assert!(err.contains(expected), "{value:?}: {err}");
            if !matches!(value, Value::Nil) {
                assert!(parse::<MaybeSession>(value).is_err());
            }
        }
    }

    #[test]
    fn undecodable_data_does_not_leak_into_the_error() {
        for json in [
            r#"{"theme":"secret-value","visits":"secret-value"}"#,
            r#"{"theme":"secret-value""#,
            "secret-value",
            r#"["secret-value"]"#,
        ] {
            let raw: RawSession = parse(session_reply("abc", json, 1)).unwrap();
            let message = unexpected_reply(raw.decode::<Data>(CMD_GET));
            assert!(message.starts_with("TK.SESSION.GET: the session data does not decode"));
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn list_replies() {
        let list: SessionList = parse(Value::Array(vec![
            info_reply("k1", [1, 2, 3]),
            info_reply("k2", [4, 5, 6]),
        ]))
        .unwrap();
        assert_eq!(list.0.len(), 2);
        assert_eq!(
            list.0[1],
            RawInfo {
                key: "k2".into(),
                created: at(4),
                last_active: at(5),
                expires_at: at(6),
            }
        );
        assert!(parse::<SessionList>(Value::Array(vec![]))
            .unwrap()
            .0
            .is_empty());
        for (value, expected) in [
            (Value::Nil, "expected an array of sessions"),
            (Value::Int(0), "expected an array of sessions"),
            (
                Value::Array(vec![Value::Int(1)]),
                "session 0: expected an array of 4",
            ),
            (
                Value::Array(vec![info_reply("k", [1, 2, 3]), ints(&[1, 2, 3, 4])]),
                "session 1: element 0 (session key)",
            ),
            (
                Value::Array(vec![info_reply("k", [1, -2, 3])]),
                "element 2 (last_active) is negative",
            ),
            (
                Value::Array(vec![Value::Array(vec![
                    bulk("k"),
                    Value::Int(1),
                    Value::Int(2),
                ])]),
                "got 3 elements",
            ),
        ] {
            let err = parse::<SessionList>(value.clone()).unwrap_err();
            assert!(err.contains(expected), "{value:?}: {err}");
        }
    }

    #[test]
    fn small_replies() {
        assert_eq!(
            parse::<NewVersion>(Value::Int(4)).unwrap(),
            NewVersion(Some(4))
        );
        assert_eq!(parse::<NewVersion>(Value::Nil).unwrap(), NewVersion(None));
        assert!(parse::<NewVersion>(Value::Int(-1)).is_err());
        assert!(parse::<NewVersion>(bulk("4")).is_err());
        assert!(parse::<NewVersion>(Value::Okay).is_err());
        assert_eq!(parse::<Flag>(Value::Int(1)).unwrap(), Flag(true));
        assert_eq!(parse::<Flag>(Value::Int(0)).unwrap(), Flag(false));
        assert!(parse::<Flag>(Value::Int(2)).is_err());
        assert!(parse::<Flag>(Value::Nil).is_err());
        assert_eq!(parse::<Rotated>(Value::Int(1)).unwrap(), Rotated(true));
        assert_eq!(parse::<Rotated>(Value::Nil).unwrap(), Rotated(false));
        assert!(parse::<Rotated>(Value::Int(0)).is_err());
        assert!(parse::<Rotated>(Value::Okay).is_err());
    }

    // ---- commands through a fake connection ------------------------------------

    #[tokio::test]
    async fn create_sends_the_keys_user_ttl_and_data() {
        let fake = Fake::replying(session_reply("abc", DATA_JSON, 1));
        let (token, session) = store(&fake).create("abc", &data()).await.unwrap();
        assert_eq!(token.tag(), ABC_TAG);
        assert_eq!(session.user, "abc");
        assert_eq!(session.data, data());
        assert_eq!(
            (session.created, session.last_active, session.expires_at),
            (at(1_000), at(2_000), at(3_000))
        );
        let sent = fake.sent();
        assert_eq!(
            sent,
            [vec![
                "TK.SESSION.CREATE".to_owned(),
                session_key(&token),
                ABC_INDEX.into(),
                "abc".into(),
                "86400000".into(),
                DATA_JSON.into(),
            ]]
        );
        // The token is never sent, not even in part.
        assert!(sent[0]
            .iter()
            .all(|arg| !arg.contains(&token.as_str()[17..])));
    }

    #[tokio::test]
    async fn create_sends_the_options() {
        let fake = Fake::replying(session_reply("abc", DATA_JSON, 1));
        let sessions = store(&fake).with_options(SessionOptions {
            idle_ttl: Duration::from_micros(1_500),
            max_lifetime: Some(Duration::from_secs(7 * 24 * 3600)),
            max_sessions: Some((5, CapPolicy::Evict)),
        });
        sessions.create("abc", &data()).await.unwrap();
        let reject = sessions.clone().with_options(SessionOptions {
            max_sessions: Some((1, CapPolicy::Reject)),
            ..SessionOptions::default()
        });
        reject.create("abc", &data()).await.unwrap();
        let sent = fake.sent();
        assert_eq!(
            sent[0][4..],
            [
                "2",
                DATA_JSON,
                "MAXLIFETIME",
                "604800000",
                "MAXSESSIONS",
                "5",
                "EVICT"
            ]
        );
        assert_eq!(
            sent[1][4..],
            ["86400000", DATA_JSON, "MAXSESSIONS", "1", "REJECT"]
        );
        // Each create draws a new token.
        assert_ne!(sent[0][1], sent[1][1]);
    }

    #[tokio::test]
    async fn invalid_creates_send_nothing() {
        let fake = Fake::replying(session_reply("abc", DATA_JSON, 1));
        let sessions = store(&fake);
        assert!(invalid_argument(sessions.create("", &data()).await).contains("user id"));
        for options in [
            SessionOptions {
                idle_ttl: Duration::ZERO,
                ..SessionOptions::default()
            },
            SessionOptions {
                max_lifetime: Some(Duration::from_micros(10)),
                ..SessionOptions::default()
            },
            SessionOptions {
                max_lifetime: Some(MAX_DURATION * 2),
                ..SessionOptions::default()
            },
            SessionOptions {
                max_sessions: Some((0, CapPolicy::Evict)),
                ..SessionOptions::default()
            },
            SessionOptions {
                max_sessions: Some((MAX_SESSIONS + 1, CapPolicy::Reject)),
                ..SessionOptions::default()
            },
        ] {
            let result = sessions
                .clone()
                .with_options(options)
                .create("abc", &data())
                .await;
            invalid_argument(result);
        }
        // Data that is not JSON-serializable (a map with non-string keys).
        let odd: SessionStore<std::collections::HashMap<(u8, u8), u8>, Fake> =
            SessionStore::new(fake.clone());
        let map = [((1, 2), 3)].into_iter().collect();
        assert!(invalid_argument(odd.create("abc", &map).await).contains("JSON"));
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn create_checks_the_reply() {
        let other_user = store(&Fake::replying(session_reply("abd", DATA_JSON, 1)));
        let message = unexpected_reply(other_user.create("abc", &data()).await);
        assert!(message.contains("another user"), "{message}");
        let nil = store(&Fake::replying(Value::Nil));
        let message = unexpected_reply(nil.create("abc", &data()).await);
        assert!(
            message.starts_with("TK.SESSION.CREATE: expected an array"),
            "{message}"
        );
        let undecodable = store(&Fake::replying(session_reply("abc", "[]", 1)));
        unexpected_reply(undecodable.create("abc", &data()).await);
    }

    #[tokio::test]
    async fn session_limit_and_other_server_errors() {
        let full = store(&Fake::replying(error_reply("ERR session limit reached")));
        let err = full.create("abc", &data()).await.unwrap_err();
        assert!(is_session_limit(&err), "{err:?}");
        assert!(!err.is_transient());
        let exists = store(&Fake::replying(error_reply("ERR session already exists")));
        let err = exists.create("abc", &data()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Server { code, message } if code == "ERR" && message == "session already exists"),
            "{err:?}"
        );
        assert!(!is_session_limit(&err));
        assert!(!is_session_limit(&Error::Server {
            code: "WRONGTYPE".into(),
            message: "session limit reached".into()
        }));
        let missing = store(&Fake::replying(error_reply(
            "ERR unknown command 'TK.SESSION.CREATE', with args beginning with: ",
        )));
        let err = missing.create("abc", &data()).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::ModuleNotLoaded {
                    command: "TK.SESSION.CREATE"
                }
            ),
            "{err:?}"
        );
        let wrongtype = store(&Fake::replying(error_reply(
            "WRONGTYPE Operation against a key",
        )));
        let err = wrongtype.get(&abc_token()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Server { code, .. } if code == "WRONGTYPE"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn touch_and_get_send_only_the_session_key() {
        let fake = Fake::replying(session_reply("abc", DATA_JSON, 2));
        let sessions = store(&fake);
        let token = abc_token();
        let touched = sessions.touch(&token).await.unwrap().unwrap();
        assert_eq!(touched.data, data());
        assert_eq!(touched.version, 2);
        sessions
            .touch_with(
                &token,
                TouchOptions {
                    idle: Some(Duration::from_secs(600)),
                    min_gap: Some(Duration::from_micros(60_000_001)),
                },
            )
            .await
            .unwrap();
        sessions
            .touch_with(
                &token,
                TouchOptions {
                    min_gap: Some(Duration::from_secs(1)),
                    ..TouchOptions::default()
                },
            )
            .await
            .unwrap();
        let got = sessions.get(&token).await.unwrap().unwrap();
        assert_eq!(got, touched);
        assert_eq!(
            fake.sent(),
            [
                vec!["TK.SESSION.TOUCH", ABC_KEY],
                vec![
                    "TK.SESSION.TOUCH",
                    ABC_KEY,
                    "IDLE",
                    "600000",
                    "MINGAP",
                    "60001"
                ],
                vec!["TK.SESSION.TOUCH", ABC_KEY, "MINGAP", "1000"],
                vec!["TK.SESSION.GET", ABC_KEY],
            ]
        );
    }

    #[tokio::test]
    async fn touch_and_get_of_gone_sessions_are_none() {
        let sessions = store(&Fake::replying(Value::Nil));
        assert!(sessions.touch(&abc_token()).await.unwrap().is_none());
        assert!(sessions.get(&abc_token()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn touch_and_get_check_the_reply() {
        // A session of a user whose tag is not the token's.
        let sessions = store(&Fake::replying(session_reply("abd", DATA_JSON, 1)));
        let message = unexpected_reply(sessions.touch(&abc_token()).await);
        assert!(message.contains("another user"), "{message}");
        unexpected_reply(sessions.get(&abc_token()).await);
        let short = store(&Fake::replying(ints(&[1, 2, 3])));
        let message = unexpected_reply(short.get(&abc_token()).await);
        assert!(
            message.starts_with("TK.SESSION.GET: expected an array of 7"),
            "{message}"
        );
        let undecodable = store(&Fake::replying(session_reply(
            "abc",
            r#"{"x":"secret"}"#,
            1,
        )));
        let message = unexpected_reply(undecodable.touch(&abc_token()).await);
        assert!(
            message.starts_with("TK.SESSION.TOUCH: the session data"),
            "{message}"
        );
        assert!(!message.contains("secret"));
    }

    #[tokio::test]
    async fn invalid_touches_send_nothing() {
        let fake = Fake::replying(Value::Nil);
        let sessions = store(&fake);
        for options in [
            TouchOptions {
                idle: Some(Duration::ZERO),
                ..TouchOptions::default()
            },
            TouchOptions {
                min_gap: Some(Duration::from_nanos(1)),
                ..TouchOptions::default()
            },
            TouchOptions {
                idle: Some(MAX_DURATION * 2),
                ..TouchOptions::default()
            },
        ] {
            invalid_argument(sessions.touch_with(&abc_token(), options).await);
        }
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn update_outcomes() {
        let token = abc_token();
        let updated = Fake::replying(Value::Int(8));
        let outcome = store(&updated)
            .update(&token, &data(), Some(7))
            .await
            .unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated { version: 8 });
        let outcome = store(&updated).update(&token, &data(), None).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated { version: 8 });
        assert_eq!(
            updated.sent(),
            [
                vec!["TK.SESSION.SET", ABC_KEY, DATA_JSON, "IFVERSION", "7"],
                vec!["TK.SESSION.SET", ABC_KEY, DATA_JSON],
            ]
        );
        let gone = store(&Fake::replying(Value::Nil));
        assert_eq!(
            gone.update(&token, &data(), Some(1)).await.unwrap(),
            UpdateOutcome::Gone
        );
        for line in [
            "ERR version mismatch",
            "ERR version mismatch: expected 7, current 9",
        ] {
            let mismatch = store(&Fake::replying(error_reply(line)));
            assert_eq!(
                mismatch.update(&token, &data(), Some(7)).await.unwrap(),
                UpdateOutcome::VersionMismatch
            );
        }
        // Other errors stay errors.
        let other = store(&Fake::replying(error_reply("ERR value too large")));
        let err = other.update(&token, &data(), Some(7)).await.unwrap_err();
        assert!(matches!(err, Error::Server { .. }), "{err:?}");
        let wrongtype = store(&Fake::replying(error_reply("WRONGTYPE version mismatch")));
        assert!(wrongtype.update(&token, &data(), Some(7)).await.is_err());
        let bad = store(&Fake::replying(Value::Int(-3)));
        unexpected_reply(bad.update(&token, &data(), None).await);
        // Not JSON-serializable (a map with non-string keys): refused before sending.
        let odd_fake = Fake::replying(Value::Int(1));
        let odd: SessionStore<std::collections::HashMap<(u8, u8), u8>, Fake> =
            SessionStore::new(odd_fake.clone());
        let map = [((1, 2), 3)].into_iter().collect();
        assert!(invalid_argument(odd.update(&token, &map, None).await).contains("JSON"));
        assert!(odd_fake.sent().is_empty());
        // Versions the module cannot hold.
        let fake = Fake::replying(Value::Int(1));
        invalid_argument(
            store(&fake)
                .update(&token, &data(), Some(MAX_VERSION + 1))
                .await,
        );
        assert!(fake.sent().is_empty());
        let outcome = store(&fake)
            .update(&token, &data(), Some(MAX_VERSION))
            .await;
        assert_eq!(outcome.unwrap(), UpdateOutcome::Updated { version: 1 });
    }

    #[tokio::test]
    async fn destroy_sends_both_keys() {
        let fake = Fake::sequence(vec![Ok(Value::Int(1)), Ok(Value::Int(0))]);
        let sessions = store(&fake);
        assert!(sessions.destroy(&abc_token(), "abc").await.unwrap());
        assert!(!sessions.destroy(&abc_token(), "abc").await.unwrap());
        assert_eq!(
            fake.sent(),
            [
                vec!["TK.SESSION.DESTROY", ABC_KEY, ABC_INDEX],
                vec!["TK.SESSION.DESTROY", ABC_KEY, ABC_INDEX],
            ]
        );
        let bad = store(&Fake::replying(Value::Int(2)));
        unexpected_reply(bad.destroy(&abc_token(), "abc").await);
    }

    #[tokio::test]
    async fn destroy_by_id_builds_the_key_from_the_user() {
        let fake = Fake::replying(Value::Int(1));
        let sessions = store(&fake);
        let id = abc_token().id();
        assert!(sessions.destroy_by_id("abc", &id).await.unwrap());
        assert_eq!(
            fake.sent(),
            [vec!["TK.SESSION.DESTROY", ABC_KEY, ABC_INDEX]]
        );
        for bad in [
            String::new(),
            id.to_uppercase(),
            id[..63].to_owned(),
            format!("{id}0"),
            ABC_KEY.to_owned(),
            format!("x{}", &id[1..]),
        ] {
            invalid_argument(sessions.destroy_by_id("abc", &bad).await);
        }
        invalid_argument(sessions.destroy_by_id("", &id).await);
        assert_eq!(fake.sent().len(), 1);
    }

    #[tokio::test]
    async fn rotate_moves_to_a_new_token_of_the_same_user() {
        let fake = Fake::replying(Value::Int(1));
        let sessions = store(&fake);
        let old = abc_token();
        let new = sessions.rotate(&old, "abc").await.unwrap().unwrap();
        assert_eq!(new.tag(), ABC_TAG);
        assert_ne!(new.as_str(), old.as_str());
        assert_eq!(
            fake.sent(),
            [vec![
                "TK.SESSION.ROTATE".to_owned(),
                ABC_KEY.into(),
                session_key(&new),
                ABC_INDEX.into(),
            ]]
        );
        let gone = store(&Fake::replying(Value::Nil));
        assert!(gone.rotate(&old, "abc").await.unwrap().is_none());
        let exists = store(&Fake::replying(error_reply("ERR session already exists")));
        assert!(matches!(
            exists.rotate(&old, "abc").await,
            Err(Error::Server { .. })
        ));
    }

    #[tokio::test]
    async fn tokens_of_another_user_are_refused() {
        let fake = Fake::replying(Value::Int(1));
        let sessions = store(&fake);
        let token = abc_token();
        for message in [
            invalid_argument(sessions.destroy(&token, "abd").await),
            invalid_argument(sessions.rotate(&token, "abd").await),
            invalid_argument(sessions.revoke_all("abd", Some(&token)).await),
        ] {
            assert!(message.contains("not issued to the user"), "{message}");
            assert!(!message.contains("abd") && !message.contains(ABC_TAG));
        }
        invalid_argument(sessions.destroy(&token, "").await);
        invalid_argument(sessions.rotate(&token, "").await);
        invalid_argument(sessions.revoke_all("", None).await);
        invalid_argument(sessions.list("").await);
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn list_returns_ids_not_tokens() {
        let token = abc_token();
        let other = SessionToken::generate(ABC_TAG).unwrap();
        let fake = Fake::replying(Value::Array(vec![
            info_reply(&session_key(&other), [10, 30, 40]),
            info_reply(&session_key(&token), [5, 20, 25]),
        ]));
        let list = store(&fake).list("abc").await.unwrap();
        assert_eq!(
            list,
            [
                SessionInfo {
                    id: other.id(),
                    created: at(10),
                    last_active: at(30),
                    expires_at: at(40),
                },
                SessionInfo {
                    id: token.id(),
                    created: at(5),
                    last_active: at(20),
                    expires_at: at(25),
                },
            ]
        );
        assert!(list.iter().any(|info| info.id == token.id()));
        assert_eq!(fake.sent(), [vec!["TK.SESSION.LIST", ABC_INDEX]]);
        let empty = store(&Fake::replying(Value::Array(vec![])));
        assert!(empty.list("abc").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn list_refuses_keys_of_another_shape_or_user() {
        let token = abc_token();
        let id = token.id();
        for key in [
            format!("tk:s:{{{}}}:{id}", user_tag("abd")),
            format!("tk:s:{{{ABC_TAG}}}:{}", id.to_uppercase()),
            format!("tk:s:{{{ABC_TAG}}}:{}", &id[..63]),
            format!("tk:s:{{{ABC_TAG}}}{id}"),
            format!("tk:si:{{{ABC_TAG}}}:{id}"),
            id.clone(),
        ] {
            let reply = Value::Array(vec![
                info_reply(&session_key(&token), [1, 2, 3]),
                info_reply(&key, [1, 2, 3]),
            ]);
            let message = unexpected_reply(store(&Fake::replying(reply)).list("abc").await);
            assert_eq!(
                message,
                "TK.SESSION.LIST: element 1 is not a session key of this user"
            );
        }
        let bad = store(&Fake::replying(Value::Array(vec![ints(&[1, 2, 3, 4])])));
        let message = unexpected_reply(bad.list("abc").await);
        assert!(
            message.starts_with("TK.SESSION.LIST: session 0"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn revoke_all_with_and_without_an_exception() {
        let fake = Fake::sequence(vec![Ok(Value::Int(3)), Ok(Value::Int(0))]);
        let sessions = store(&fake);
        assert_eq!(sessions.revoke_all("abc", None).await.unwrap(), 3);
        assert_eq!(
            sessions
                .revoke_all("abc", Some(&abc_token()))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            fake.sent(),
            [
                vec!["TK.SESSION.REVOKEALL", ABC_INDEX],
                vec!["TK.SESSION.REVOKEALL", ABC_INDEX, "EXCEPT", ABC_KEY],
            ]
        );
        let bad = store(&Fake::replying(Value::Int(-1)));
        unexpected_reply(bad.revoke_all("abc", None).await);
    }

    #[tokio::test]
    async fn transient_errors_and_timeouts() {
        let sessions = store(&Fake::new(|_| Some(reset())));
        assert!(matches!(
            sessions.touch(&abc_token()).await,
            Err(Error::Connection(_))
        ));
        assert!(matches!(
            sessions.update(&abc_token(), &data(), Some(1)).await,
            Err(Error::Connection(_))
        ));
        let slow = store(&Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
        let err = slow.get(&abc_token()).await.unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        let err = slow.create("abc", &data()).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    // ---- compile-time checks -----------------------------------------

    fn assert_send<T: Send>(_: &T) {}

    /// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
    /// for the default, cluster and multiplexed connections.
    #[allow(dead_code)]
    fn futures_are_send(
        single: &SessionStore<Data>,
        cluster: &SessionStore<Data, redis::cluster_async::ClusterConnection>,
        multiplexed: &SessionStore<Data, redis::aio::MultiplexedConnection>,
        token: &SessionToken,
        data: &Data,
    ) {
        assert_send(&single.create("u", data));
        assert_send(&single.touch(token));
        assert_send(&single.touch_with(token, TouchOptions::default()));
        assert_send(&single.get(token));
        assert_send(&single.update(token, data, Some(1)));
        assert_send(&single.destroy(token, "u"));
        assert_send(&single.destroy_by_id("u", "id"));
        assert_send(&single.rotate(token, "u"));
        assert_send(&single.list("u"));
        assert_send(&single.revoke_all("u", Some(token)));
        assert_send(&cluster.create("u", data));
        assert_send(&multiplexed.touch(token));
    }
}
