//! What sessions are made with and what the store answers: the options,
//! [`Session`], [`SessionInfo`] and [`UpdateOutcome`].

use super::*;
use crate::error::Error;
use std::time::{Duration, SystemTime};

/// What [`create`](SessionStore::create) does when the user already has
/// the maximum number of sessions ([`SessionOptions::max_sessions`]); see
/// [`SessionOptions`] for an example.
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
    pub(super) fn as_arg(self) -> &'static str {
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
/// nothing sent). See the [module docs](super) for an example.
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

/// A session as the module returned it, with its data decoded.
///
/// Times are the server's clock (Unix milliseconds). See the
/// [module docs](super) for an example.
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
///
/// ```no_run
/// # async fn demo(sessions: tk_redis::SessionStore<()>, token: tk_redis::SessionToken) -> tk_redis::Result<()> {
/// // "Your devices", marking the one making this request.
/// for info in sessions.list("user-42").await? {
///     let current = if info.id == token.id() { " (this device)" } else { "" };
///     println!("{} last active {:?}{current}", info.id, info.last_active);
/// }
/// # Ok(()) }
/// ```
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

/// The answer of [`update`](SessionStore::update); see the
/// [module docs](super) for an example.
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
pub(super) fn is_version_mismatch(err: &Error) -> bool {
    is_server_error(err, "version mismatch")
}

pub(super) fn is_server_error(err: &Error, prefix: &str) -> bool {
    matches!(err, Error::Server { code, message } if code == "ERR" && message.starts_with(prefix))
}
