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
//! [`SessionToken::parse`] (and [`FromStr`](std::str::FromStr)) accept exactly that format and
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
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::args;
use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::keys::{user_tag, TAG_HEX_LEN};
use crate::reply::{Count, Flag};
use crate::telemetry;

mod options;
mod replies;
#[cfg(test)]
mod tests;
mod token;

pub use options::*;
use replies::*;
pub use token::*;

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
pub const SESSION_PREFIX: &str = tk_redis_core::keys::SESSION_PREFIX;
/// The prefix of a user's index key ([`index_key`]).
pub const INDEX_PREFIX: &str = tk_redis_core::keys::SESSION_INDEX_PREFIX;

/// The default idle TTL of new sessions: 24 hours (see [`SessionOptions`]).
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The longest idle TTL, maximum lifetime or touch gap the module accepts:
/// 365 days (see [`SessionOptions`]).
pub const MAX_DURATION: Duration = Duration::from_millis(tk_redis_core::session::MAX_DURATION_MS);

/// The largest per-user limit ([`SessionOptions::max_sessions`]) the module
/// accepts (see [`SessionOptions`]).
pub const MAX_SESSIONS: u32 = tk_redis_core::session::MAX_SESSIONS_CAP as u32;

/// The largest version the module accepts in `IFVERSION` (`i64::MAX`).
const MAX_VERSION: u64 = tk_redis_core::session::rules::MAX_STORED;

/// Random bytes in a token.
const SECRET_BYTES: usize = 16;
/// Hex digits of the random part of a token.
const SECRET_HEX_LEN: usize = 2 * SECRET_BYTES;
/// Hex digits of a session id (a SHA-256).
const ID_HEX_LEN: usize = 64;

/// The length of a token's text: the 16-digit tag, `.`, 32 hex digits
/// (see [`SessionToken`]).
pub const TOKEN_LEN: usize = TAG_HEX_LEN + 1 + SECRET_HEX_LEN;

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
    crate::client::tk_mode_accessors!();

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
