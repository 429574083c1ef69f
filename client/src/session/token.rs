//! [`SessionToken`]s, the keys derived from them and from the user, and
//! the checks of a call's arguments.

use super::*;
use crate::args;
use crate::error::{Error, Result};
use crate::keys::{sha256, tagged, user_tag, TAG_HEX_LEN};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A session's token: the browser's credential, to put in the cookie.
///
/// `<16 hex digits of the user's tag>.<32 hex digits of 128 random bits>`,
/// all lowercase (see the [module docs](super#tokens)). Only its SHA-256
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
    pub(super) text: String,
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
    pub(super) fn generate(tag: &str) -> Result<SessionToken> {
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

pub(super) fn index_key_for(tag: &str, user: &str) -> String {
    let mut key = tagged(INDEX_PREFIX, tag);
    key.push(':');
    key.push_str(user);
    key
}

/// The session key prefix of a user's tag: `tk:s:{<tag>}:`.
pub(super) fn session_prefix(tag: &str) -> String {
    let mut key = tagged(SESSION_PREFIX, tag);
    key.push(':');
    key
}

pub(super) fn key_of_id(tag: &str, id: &str) -> String {
    let mut key = session_prefix(tag);
    key.push_str(id);
    key
}

/// Whether `text` is exactly `len` lowercase hex digits.
pub(super) fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(super) fn check_user(user: &str) -> Result<()> {
    if user.is_empty() {
        return Err(Error::InvalidArgument(
            "the session user id must not be empty".into(),
        ));
    }
    Ok(())
}

/// Checks that `token` was made for `user` (the tags match), and returns the
/// user's tag.
pub(super) fn check_owner(token: &SessionToken, user: &str) -> Result<String> {
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
pub(super) fn millis(what: &str, duration: Duration) -> Result<u64> {
    args::bounded_ms(&format!("session {what}"), duration, MAX_DURATION)
}

/// What the data is called in errors.
pub(super) const DATA: &str = "the session data";
