//! Tower/axum layers for web applications (feature `axum`): rate limiting,
//! login sessions behind a cookie, and per-user response caching, on the
//! client's [`RateLimiter`](crate::RateLimiter),
//! [`SessionStore`](crate::SessionStore) and [`Cache`](crate::Cache).
//!
//! | layer | does | built on |
//! |---|---|---|
//! | [`RateLimitLayer`] | several quotas per route group, all-or-nothing; 429 with `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` headers | [`RateLimiter::check_all`](crate::RateLimiter::check_all) |
//! | [`SessionLayer`] + [`CurrentSession`] | the session token in an `HttpOnly`, `Secure`, `SameSite=Lax` cookie; touch with a minimum gap; login, versioned update, logout, log out everywhere | [`SessionStore`](crate::SessionStore) |
//! | [`CacheLayer`] | caches `GET` responses of configured routes per user, `X-Cache: HIT` / `MISS` | [`Cache::get_or_compute`](crate::Cache::get_or_compute) |
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tk_redis::http::{CacheLayer, ClientIp, CurrentSession, KeyExtractor, Policy, RateLimitLayer, SessionLayer, UserKey};
//! use tk_redis::{Cache, Config, Quota, RateLimiter, SessionStore};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Data { theme: String }
//!
//! async fn search(session: CurrentSession<Data, tk_redis::Connection>) -> String {
//!     format!("results for {:?}", session.user())
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = Config::from_env()?.connect().await?;
//! let api_limit = RateLimitLayer::new(
//!     RateLimiter::new(conn.clone()),
//!     "api",
//!     UserKey.or(ClientIp::new()),
//!     [Policy::new("burst", Quota::per_second(10)), Policy::new("hourly", Quota::per_hour(1_000))],
//! )?;
//! let cache = CacheLayer::new(Cache::new(conn.clone()))
//!     .route("/api/search", "search", Duration::from_secs(300))?;
//! let app = Router::new()
//!     .route("/api/search", get(search))
//!     // Layers added last run first: the session authenticates the
//!     // request before the limiter and the cache look for its user.
//!     .layer(cache)
//!     .layer(api_limit)
//!     .layer(SessionLayer::new(SessionStore::<Data, _>::new(conn)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // The peer address is what ClientIp reads: serve with connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! # Who is asking
//!
//! The layers agree on one request extension, [`AuthenticatedUser`]:
//! [`SessionLayer`] inserts it for a request with a live session, and an
//! application with its own authentication inserts it itself. [`UserKey`]
//! limits by it, and [`CacheLayer`] caches per it. Order the layers so the
//! one that authenticates runs first (in axum, it is added last).

mod cache;
mod current;
mod key;
mod ratelimit;
mod session;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

pub use cache::{CacheLayer, CacheService, DEFAULT_MAX_BODY, X_CACHE};
pub use cookie::SameSite;
pub use current::CurrentSession;
pub use key::{ClientIp, HeaderKey, KeyExtractor, KeyRejection, Or, UserKey};
pub use ratelimit::{
    Policy, RateLimitLayer, RateLimitService, RATELIMIT, RATELIMIT_FALLBACK, RATELIMIT_POLICY,
};
pub use session::{SessionCookie, SessionError, SessionLayer, SessionService, DEFAULT_COOKIE_NAME};

/// The user a request is authenticated as, in the request's extensions.
///
/// Inserted by [`SessionLayer`] for a request with a live session; insert
/// it yourself when the application authenticates another way (an API
/// token, a reverse proxy's header), before [`UserKey`] and [`CacheLayer`]
/// run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthenticatedUser(pub String);

/// The inner service that was polled ready, leaving a clone in its place:
/// a clone has not been polled, so the ready one is what the future calls.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A JSON error response: `{"error": code, "message": message}`.
fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    json_response(status, &body)
}

/// `body` as an `application/json` response.
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
