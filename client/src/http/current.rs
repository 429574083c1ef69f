//! [`CurrentSession`]: the extractor through which handlers read and
//! change the request's session.

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use http::request::Parts;
use redis::aio::{ConnectionLike, ConnectionManager};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::session::{lock, CookieChange, SessionError, Shared, State};
use crate::session::{Session, SessionInfo, SessionToken, UpdateOutcome};

/// The request's session, for handlers: who is logged in, their data, and
/// login, update, rotation and logout, whose cookie changes the
/// [`SessionLayer`](super::SessionLayer) writes into the response.
///
/// Extracting it never fails on a route with the layer (the rejection,
/// [`SessionError::MissingLayer`], means the layer is missing); use
/// [`require`](CurrentSession::require) for handlers that need a login.
/// Cloning is cheap and shares the state.
pub struct CurrentSession<T, C = ConnectionManager> {
    shared: Arc<Shared<T, C>>,
    state: Arc<Mutex<State<T>>>,
}

impl<T, C> CurrentSession<T, C> {
    pub(super) fn new(shared: Arc<Shared<T, C>>, state: Arc<Mutex<State<T>>>) -> Self {
        CurrentSession { shared, state }
    }
}

impl<T, C> Clone for CurrentSession<T, C> {
    fn clone(&self) -> Self {
        CurrentSession {
            shared: Arc::clone(&self.shared),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S, T, C> FromRequestParts<S> for CurrentSession<T, C>
where
    S: Send + Sync,
    T: Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, SessionError> {
        parts
            .extensions
            .get::<CurrentSession<T, C>>()
            .cloned()
            .ok_or(SessionError::MissingLayer)
    }
}

impl<T, C> CurrentSession<T, C>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The logged-in user, if any.
    pub fn user(&self) -> Option<String> {
        lock(&self.state).session.as_ref().map(|s| s.user.clone())
    }

    /// The session, if the request has a live one.
    pub fn get(&self) -> Option<Session<T>> {
        lock(&self.state).session.clone()
    }

    /// The session, or why there is none: [`SessionError::NotLoggedIn`]
    /// (401), or [`SessionError::Unavailable`] (503) when Redis did not
    /// answer. Use `?` in handlers that need a login.
    pub fn require(&self) -> Result<Session<T>, SessionError> {
        let state = lock(&self.state);
        if let Some(session) = &state.session {
            return Ok(session.clone());
        }
        match &state.unavailable {
            Some(err) => Err(SessionError::Unavailable(err.clone())),
            None => Err(SessionError::NotLoggedIn),
        }
    }

    /// The current session's id ([`SessionToken::id`]), to mark it in
    /// [`list`](CurrentSession::list).
    pub fn id(&self) -> Option<String> {
        lock(&self.state).token.as_ref().map(SessionToken::id)
    }

    /// The token and user of the live session, or [`SessionError`].
    fn current(&self) -> Result<(SessionToken, Session<T>), SessionError> {
        let session = self.require()?;
        let token = lock(&self.state)
            .token
            .clone()
            .ok_or(SessionError::NotLoggedIn)?;
        Ok((token, session))
    }

    /// Logs `user` in with `data`: ends the request's current session, if
    /// any, and creates a new one under a **new token** set in the cookie.
    /// A token planted in the browser before the login (session fixation)
    /// is never the logged-in one.
    ///
    /// Call it once the credentials are checked.
    pub async fn login(&self, user: &str, data: &T) -> Result<Session<T>, SessionError> {
        let previous = {
            let state = lock(&self.state);
            state
                .token
                .clone()
                .zip(state.session.as_ref().map(|s| s.user.clone()))
        };
        if let Some((token, previous_user)) = previous {
            self.shared.store.destroy(&token, &previous_user).await?;
            lock(&self.state).end();
        }
        let (token, session) = self.shared.store.create(user, data).await?;
        let mut state = lock(&self.state);
        state.token = Some(token);
        state.session = Some(session.clone());
        state.unavailable = None;
        state.cookie = CookieChange::Set;
        Ok(session)
    }

    /// Replaces the session's data, only if nobody changed it since this
    /// request read it (the session's version). Returns the new version.
    ///
    /// [`SessionError::Conflict`] when another request came first (nothing
    /// written), [`SessionError::Gone`] when the session ended meanwhile
    /// (the cookie is then deleted).
    pub async fn update(&self, data: T) -> Result<u64, SessionError> {
        let (token, session) = self.current()?;
        let outcome = self
            .shared
            .store
            .update(&token, &data, Some(session.version))
            .await?;
        let mut state = lock(&self.state);
        match outcome {
            UpdateOutcome::Updated { version } => {
                if let Some(current) = state.session.as_mut() {
                    current.data = data;
                    current.version = version;
                }
                Ok(version)
            }
            UpdateOutcome::VersionMismatch => Err(SessionError::Conflict),
            UpdateOutcome::Gone => {
                state.end();
                Err(SessionError::Gone)
            }
        }
    }

    /// Moves the session to a new token, set in the cookie (same data, same
    /// expiry; the old token stops working). Call it when the session's
    /// privilege changes (password change, sudo mode).
    pub async fn rotate(&self) -> Result<(), SessionError> {
        let (token, session) = self.current()?;
        let rotated = self.shared.store.rotate(&token, &session.user).await?;
        let mut state = lock(&self.state);
        match rotated {
            Some(new_token) => {
                state.token = Some(new_token);
                state.cookie = CookieChange::Set;
                Ok(())
            }
            None => {
                state.end();
                Err(SessionError::Gone)
            }
        }
    }

    /// Logs this session out and deletes the cookie. `false` when there
    /// was no live session.
    pub async fn logout(&self) -> Result<bool, SessionError> {
        let (token, session) = match self.current() {
            Ok(current) => current,
            Err(SessionError::NotLoggedIn) => {
                lock(&self.state).end();
                return Ok(false);
            }
            Err(err) => return Err(err),
        };
        let deleted = self.shared.store.destroy(&token, &session.user).await?;
        lock(&self.state).end();
        Ok(deleted)
    }

    /// Logs the user out on every device, this one included, and deletes
    /// the cookie. Returns how many sessions ended.
    pub async fn logout_everywhere(&self) -> Result<u64, SessionError> {
        let (_, session) = self.current()?;
        let ended = self.shared.store.revoke_all(&session.user, None).await?;
        lock(&self.state).end();
        Ok(ended)
    }

    /// Logs the user out on every other device; this session stays.
    /// Returns how many sessions ended.
    pub async fn logout_other_devices(&self) -> Result<u64, SessionError> {
        let (token, session) = self.current()?;
        Ok(self
            .shared
            .store
            .revoke_all(&session.user, Some(&token))
            .await?)
    }

    /// The user's live sessions, most recently active first; compare their
    /// ids with [`id`](CurrentSession::id) to mark this one.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (_, session) = self.current()?;
        Ok(self.shared.store.list(&session.user).await?)
    }
}
