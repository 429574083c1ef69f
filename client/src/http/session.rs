//! [`SessionLayer`]: the session token in a cookie, the session touched on
//! each request and handed to handlers as a [`CurrentSession`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use redis::aio::{ConnectionLike, ConnectionManager};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::{Layer, Service};

use super::current::CurrentSession;
use super::{json_error, AuthenticatedUser};
use crate::error::Error;
use crate::session::{Session, SessionStore, SessionToken, TouchOptions};

/// The default name of the session cookie.
pub const DEFAULT_COOKIE_NAME: &str = "tk_session";

/// The default minimum gap between two writes of a session's expiry: one
/// minute (see [`SessionLayer::touch_min_gap`]).
const DEFAULT_MIN_GAP: Duration = Duration::from_secs(60);

/// How the session cookie is written. The default is the safe one:
/// `tk_session`, `Path=/`, no `Domain` (this host only), `HttpOnly` (no
/// script can read it), `Secure` (HTTPS only) and `SameSite=Lax` (not sent
/// on cross-site `POST`s).
///
/// Turn `secure` off only for local development over plain HTTP: browsers
/// do not send a `Secure` cookie to `http://` sites other than `localhost`.
/// The cookie has no `Max-Age`: Redis decides when a session ends, and a
/// browser that keeps the cookie longer just holds a dead token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    /// The cookie's name.
    pub name: String,
    /// `Domain`: `None` for this host only.
    pub domain: Option<String>,
    /// `Path`.
    pub path: String,
    /// `Secure`: sent over HTTPS only.
    pub secure: bool,
    /// `HttpOnly`: not readable by scripts.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: SameSite,
}

impl Default for SessionCookie {
    fn default() -> Self {
        SessionCookie {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            domain: None,
            path: "/".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

impl SessionCookie {
    /// The `Set-Cookie` value carrying `value`; an empty value with
    /// `Max-Age=0` (the browser deletes the cookie) when `None`.
    fn header(&self, value: Option<&str>) -> Option<HeaderValue> {
        let mut cookie = Cookie::new(self.name.clone(), value.unwrap_or("").to_owned());
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.set_secure(self.secure);
        cookie.set_http_only(self.http_only);
        cookie.set_same_site(self.same_site);
        if value.is_none() {
            cookie.make_removal();
        }
        HeaderValue::from_str(&cookie.to_string()).ok()
    }

    /// The value of this cookie in the request's `Cookie` headers.
    fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|text| text.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name)
            .map(|(_, value)| value.trim_matches('"'))
    }
}

/// Why a [`CurrentSession`] operation failed; as a response, a JSON error
/// with a status that says what the client should do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The request has no live session (401).
    #[error("not logged in: log in first")]
    NotLoggedIn,
    /// The session ended (expired, logged out, rotated elsewhere) while the
    /// request ran (401): log in again.
    #[error("the session ended meanwhile (expired or logged out): log in again")]
    Gone,
    /// Another request updated the session after this one read it (409):
    /// nothing was written; reload the page (or read the session again)
    /// and retry.
    #[error("the session was changed by another request since this one read it: reload and retry")]
    Conflict,
    /// Redis did not answer, so the session could not be read or written
    /// (503): retry later.
    #[error("sessions are unavailable (Redis did not answer: {0}); retry later")]
    Unavailable(#[source] Error),
    /// Any other error of the store (500): a deployment or programming
    /// mistake, e.g. the module is not loaded.
    #[error("session store error: {0}")]
    Store(#[source] Error),
    /// [`CurrentSession`] was extracted on a route without
    /// [`SessionLayer`] (500).
    #[error("CurrentSession needs SessionLayer on this route: add .layer(SessionLayer::new(store)) to the router")]
    MissingLayer,
}

impl From<Error> for SessionError {
    fn from(err: Error) -> Self {
        if err.is_transient() {
            SessionError::Unavailable(err)
        } else {
            SessionError::Store(err)
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            SessionError::NotLoggedIn => (StatusCode::UNAUTHORIZED, "not_logged_in"),
            SessionError::Gone => (StatusCode::UNAUTHORIZED, "session_ended"),
            SessionError::Conflict => (StatusCode::CONFLICT, "session_conflict"),
            SessionError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "sessions_unavailable")
            }
            SessionError::Store(_) | SessionError::MissingLayer => {
                (StatusCode::INTERNAL_SERVER_ERROR, "session_error")
            }
        };
        json_error(status, code, &self.to_string())
    }
}

/// Keeps login sessions in a [`SessionStore`], their token in a cookie
/// ([`SessionCookie`]).
///
/// On each request the layer reads the cookie and touches the session
/// (`TK.SESSION.TOUCH` with `MINGAP`, so most requests do not write; see
/// [`touch_min_gap`](SessionLayer::touch_min_gap)). A live session puts its
/// user in the request as [`AuthenticatedUser`]; handlers read and change
/// it through the [`CurrentSession`] extractor. A cookie whose session is
/// gone (expired, logged out, malformed) is deleted in the response: a
/// destroyed session never comes back. When Redis does not answer the
/// request goes on without a session, the cookie is kept, and
/// [`CurrentSession::require`] answers 503; any other error (module not
/// loaded...) is answered 500.
///
/// ```no_run
/// use axum::{routing::{get, post}, Router};
/// use tk_redis::http::{CurrentSession, SessionCookie, SessionError, SessionLayer};
/// use tk_redis::SessionStore;
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct Data { theme: String }
/// type Current = CurrentSession<Data, tk_redis::Connection>;
///
/// async fn login(session: Current) -> Result<&'static str, SessionError> {
///     // ... once the password is checked:
///     session.login("user-42", &Data::default()).await?;
///     Ok("welcome")
/// }
///
/// async fn theme(session: Current) -> Result<String, SessionError> {
///     let mut data = session.require()?.data;
///     data.theme = "dark".into();
///     session.update(data).await?; // 409 if another request changed it first
///     Ok("saved".into())
/// }
///
/// async fn logout_everywhere(session: Current) -> Result<String, SessionError> {
///     Ok(format!("{} sessions ended", session.logout_everywhere().await?))
/// }
///
/// # fn demo(conn: tk_redis::Connection) {
/// let local_dev = SessionCookie { secure: false, ..SessionCookie::default() };
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .route("/theme", post(theme))
///     .route("/logout-everywhere", post(logout_everywhere))
///     .layer(SessionLayer::new(SessionStore::<Data, _>::new(conn)).cookie(local_dev));
/// # }
/// ```
pub struct SessionLayer<T, C = ConnectionManager> {
    shared: Arc<Shared<T, C>>,
}

pub(super) struct Shared<T, C> {
    pub(super) store: SessionStore<T, C>,
    pub(super) cookie: SessionCookie,
    pub(super) min_gap: Option<Duration>,
}

impl<T, C> Clone for SessionLayer<T, C> {
    fn clone(&self) -> Self {
        SessionLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T, C> std::fmt::Debug for SessionLayer<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.shared.cookie)
            .field("min_gap", &self.shared.min_gap)
            .finish_non_exhaustive()
    }
}

impl<T, C> SessionLayer<T, C> {
    /// Sessions in `store`, with the default [`SessionCookie`] and a touch
    /// gap of one minute.
    pub fn new(store: SessionStore<T, C>) -> Self {
        SessionLayer {
            shared: Arc::new(Shared {
                store,
                cookie: SessionCookie::default(),
                min_gap: Some(DEFAULT_MIN_GAP),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<T, C>
    where
        C: Clone,
    {
        if Arc::get_mut(&mut self.shared).is_none() {
            self.shared = Arc::new(Shared {
                store: self.shared.store.clone(),
                cookie: self.shared.cookie.clone(),
                min_gap: self.shared.min_gap,
            });
        }
        Arc::get_mut(&mut self.shared).expect("just made unique")
    }

    /// How the cookie is written.
    #[must_use]
    pub fn cookie(mut self, cookie: SessionCookie) -> Self
    where
        C: Clone,
    {
        self.shared_mut().cookie = cookie;
        self
    }

    /// Skip writing a session's new expiry when it was touched less than
    /// `gap` ago (`MINGAP`; `None` writes on every request). A session then
    /// expires up to `gap` earlier than its idle TTL says. Default: one
    /// minute.
    #[must_use]
    pub fn touch_min_gap(mut self, gap: Option<Duration>) -> Self
    where
        C: Clone,
    {
        self.shared_mut().min_gap = gap;
        self
    }
}

impl<S, T, C> Layer<S> for SessionLayer<T, C> {
    type Service = SessionService<S, T, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of a [`SessionLayer`].
pub struct SessionService<S, T, C = ConnectionManager> {
    inner: S,
    shared: Arc<Shared<T, C>>,
}

impl<S: Clone, T, C> Clone for SessionService<S, T, C> {
    fn clone(&self) -> Self {
        SessionService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What the response does with the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CookieChange {
    Keep,
    /// Set it to the state's token (login, rotation).
    Set,
    /// Delete it (logout, or a session that is gone).
    Clear,
}

/// One request's view of its session, shared by the layer and the
/// handler's [`CurrentSession`].
pub(super) struct State<T> {
    pub(super) token: Option<SessionToken>,
    pub(super) session: Option<Session<T>>,
    /// Redis did not answer the touch.
    pub(super) unavailable: Option<Error>,
    pub(super) cookie: CookieChange,
}

impl<T> State<T> {
    /// No session any more, and the browser is told to forget the cookie.
    pub(super) fn end(&mut self) {
        self.token = None;
        self.session = None;
        self.cookie = CookieChange::Clear;
    }
}

impl<S, T, C> Service<Request<Body>> for SessionService<S, T, C>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut state = State {
                token: None,
                session: None,
                unavailable: None,
                cookie: CookieChange::Keep,
            };
            if let Some(text) = shared.cookie.read(request.headers()) {
                match SessionToken::parse(text) {
                    // A malformed cookie is simply not a session.
                    Err(_) => state.cookie = CookieChange::Clear,
                    Ok(token) => {
                        let options = TouchOptions {
                            min_gap: shared.min_gap,
                            ..TouchOptions::default()
                        };
                        match shared.store.touch_with(&token, options).await {
                            Ok(Some(session)) => {
                                state.token = Some(token);
                                state.session = Some(session);
                            }
                            Ok(None) => state.cookie = CookieChange::Clear,
                            // Keep the cookie: the session may well be alive.
                            Err(err) if err.is_transient() => state.unavailable = Some(err),
                            Err(err) => return Ok(SessionError::Store(err).into_response()),
                        }
                    }
                }
            }
            if let Some(session) = &state.session {
                let user = AuthenticatedUser(session.user.clone());
                request.extensions_mut().insert(user);
            }
            let state = Arc::new(Mutex::new(state));
            request
                .extensions_mut()
                .insert(CurrentSession::new(Arc::clone(&shared), Arc::clone(&state)));
            let mut response = inner.call(request).await?;
            let state = lock(&state);
            let value = match state.cookie {
                CookieChange::Keep => None,
                CookieChange::Set => shared
                    .cookie
                    .header(state.token.as_ref().map(SessionToken::as_str)),
                CookieChange::Clear => shared.cookie.header(None),
            };
            if let Some(value) = value {
                let headers = response.headers_mut();
                headers.append(http::header::SET_COOKIE, value);
                // A response that carries a session token must not be kept
                // by any shared cache.
                headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
            }
            Ok(response)
        })
    }
}

pub(super) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked mid-update leaves a consistent enough state:
    // every update is one assignment.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_flags() {
        let cookie = SessionCookie::default();
        let set = cookie.header(Some("abc")).unwrap();
        let text = set.to_str().unwrap();
        for part in [
            "tk_session=abc",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!text.contains("Max-Age"), "{text}");
        let cleared = cookie.header(None).unwrap();
        assert!(
            cleared.to_str().unwrap().contains("Max-Age=0"),
            "{cleared:?}"
        );
        let custom = SessionCookie {
            name: "sid".into(),
            domain: Some("example.com".into()),
            path: "/app".into(),
            secure: false,
            http_only: true,
            same_site: SameSite::Strict,
        };
        let text = custom
            .header(Some("x"))
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            text.contains("Domain=example.com") && text.contains("Path=/app"),
            "{text}"
        );
        assert!(
            text.contains("SameSite=Strict") && !text.contains("Secure"),
            "{text}"
        );
    }

    #[test]
    fn cookie_is_read_among_others() {
        let cookie = SessionCookie::default();
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; tk_sessionx=2"),
        );
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("b=3;tk_session=tok"),
        );
        assert_eq!(cookie.read(&headers), Some("tok"));
        assert_eq!(cookie.read(&HeaderMap::new()), None);
    }
}
