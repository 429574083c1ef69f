//! [`CacheLayer`]: `GET` responses of configured routes cached per user
//! with [`Cache::get_or_compute`].

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::future::BoxFuture;
use http::response::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body::Body as _;
use redis::aio::{ConnectionLike, ConnectionManager};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

use super::{json_error, AuthenticatedUser};
use crate::cache::{check_namespace, ttl_ms, Cache, GetOrComputeError, RequestIdentity};
use crate::error::{Error, Result};

/// `X-Cache`: `HIT` when the response came from the cache, `MISS` when the
/// handler made it (whether or not it was then stored).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The largest body [`CacheLayer`] stores by default: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The scope public routes are cached under (see [`CacheLayer::public_route`]).
const PUBLIC_SCOPE: &str = "public";

/// Caches the `GET` responses of configured routes, per authenticated user
/// ([`AuthenticatedUser`], via [`RequestIdentity::for_user`]), each route
/// with its namespace and TTL: search 5 minutes, analytics 15 minutes...
///
/// - A response is stored only when it is a 2xx, has no `Set-Cookie`, no
///   `Cache-Control: no-store` (nor `private`, on a public route), and a
///   body of known size up to [`max_body`](CacheLayer::max_body). Stored
///   are the status, the body and the headers in
///   [`store_header`](CacheLayer::store_header) (by default
///   `Content-Type`, `Content-Language`, `ETag` and `Last-Modified`).
/// - Every response of a cached route says `X-Cache: HIT` or `MISS`
///   ([`X_CACHE`]).
/// - The key is the user, the path, the decoded query string (in any
///   order) and the request headers named with [`vary`](CacheLayer::vary):
///   another user's request never finds this user's entry. A
///   request without a user on a per-user route is passed through
///   uncached.
/// - After a write, call [`Cache::invalidate_user`] (all the user's
///   routes) or [`Cache::invalidate_namespace`] (one route kind) on the
///   same [`Cache`]: the next request is a miss, and a response computed
///   from data read before the invalidation is never stored after it.
/// - Redis unreachable: the request is served by the handler (the
///   [`CacheErrorPolicy::Miss`](crate::CacheErrorPolicy::Miss) default);
///   any other cache error before the handler ran is answered 500 with its
///   message (a deployment mistake must not be hidden).
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tk_redis::http::CacheLayer;
/// use tk_redis::Cache;
///
/// # fn demo(conn: tk_redis::Connection) -> tk_redis::Result<()> {
/// let cache = Cache::new(conn).with_timeout(Duration::from_millis(200));
/// let layer = CacheLayer::new(cache.clone())
///     .route("/api/search", "search", Duration::from_secs(5 * 60))?
///     .route("/api/analytics", "analytics", Duration::from_secs(15 * 60))?
///     .public_route("/api/catalogue", "catalogue", Duration::from_secs(60))?;
/// let app: Router = Router::new()
///     .route("/api/search", get(|| async { "results" }))
///     .layer(layer); // below the SessionLayer, which provides the user
/// # let _ = app; Ok(()) }
/// ```
pub struct CacheLayer<C = ConnectionManager> {
    shared: Arc<Shared<C>>,
}

#[derive(Clone)]
struct Shared<C> {
    cache: Cache<C>,
    routes: Vec<Route>,
    stored_headers: Vec<HeaderName>,
    vary: Vec<HeaderName>,
    max_body: usize,
}

#[derive(Debug, Clone)]
struct Route {
    path: String,
    namespace: String,
    ttl: Duration,
    public: bool,
}

impl Route {
    /// The path itself, or anything below it (`/api/search/...`).
    fn matches(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str()).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with('/') || self.path.ends_with('/')
        })
    }
}

impl<C> Clone for CacheLayer<C> {
    fn clone(&self) -> Self {
        CacheLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> std::fmt::Debug for CacheLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("routes", &self.shared.routes)
            .field("max_body", &self.shared.max_body)
            .finish_non_exhaustive()
    }
}

impl<C: Clone> CacheLayer<C> {
    /// Caches nothing yet: add routes with [`route`](CacheLayer::route).
    pub fn new(cache: Cache<C>) -> Self {
        CacheLayer {
            shared: Arc::new(Shared {
                cache,
                routes: Vec::new(),
                stored_headers: [
                    http::header::CONTENT_TYPE,
                    http::header::CONTENT_LANGUAGE,
                    http::header::ETAG,
                    http::header::LAST_MODIFIED,
                ]
                .into(),
                vary: Vec::new(),
                max_body: DEFAULT_MAX_BODY,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<C> {
        Arc::make_mut(&mut self.shared)
    }

    fn add(mut self, path: &str, namespace: &str, ttl: Duration, public: bool) -> Result<Self> {
        check_namespace(namespace)?;
        ttl_ms(ttl)?;
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "a cached route's path must start with '/', got {path:?}"
            )));
        }
        self.shared_mut().routes.push(Route {
            path: path.to_owned(),
            namespace: namespace.to_owned(),
            ttl,
            public,
        });
        Ok(self)
    }

    /// Caches `GET path` (and the paths below it) per user, for `ttl`, in
    /// `namespace` (what [`Cache::invalidate_namespace`] drops). Routes are
    /// tried in the order added. An invalid namespace or TTL, or a path not
    /// starting with `/`, fails with [`Error::InvalidArgument`].
    pub fn route(self, path: &str, namespace: &str, ttl: Duration) -> Result<Self> {
        self.add(path, namespace, ttl, false)
    }

    /// Caches `GET path` once for everybody: only for responses that are
    /// byte-for-byte the same whoever asks (nothing in them depends on the
    /// user). Stored under the user scope `"public"`, so
    /// `invalidate_user("public")` drops them all.
    pub fn public_route(self, path: &str, namespace: &str, ttl: Duration) -> Result<Self> {
        self.add(path, namespace, ttl, true)
    }

    /// Also stores the response header `name` (`Set-Cookie` is never
    /// stored, even if named here).
    #[must_use]
    pub fn store_header(mut self, name: HeaderName) -> Self {
        if name != http::header::SET_COOKIE {
            self.shared_mut().stored_headers.push(name);
        }
        self
    }

    /// Keeps one entry per value of the request header `name` (e.g.
    /// `Accept-Language`), for responses that depend on it. A request
    /// without the header has an entry of its own.
    #[must_use]
    pub fn vary(mut self, name: HeaderName) -> Self {
        self.shared_mut().vary.push(name);
        self
    }

    /// Stores bodies up to `bytes` long (default [`DEFAULT_MAX_BODY`]);
    /// longer ones are served uncached.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.shared_mut().max_body = bytes;
        self
    }
}

impl<S, C> Layer<S> for CacheLayer<C> {
    type Service = CacheService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of a [`CacheLayer`].
pub struct CacheService<S, C = ConnectionManager> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for CacheService<S, C> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A response as stored: JSON, with the body as text when it is UTF-8.
#[derive(Serialize, Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    #[serde(flatten)]
    body: StoredBody,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredBody {
    Text(String),
    Bytes(Vec<u8>),
}

impl Stored {
    fn into_response(self) -> Response {
        let body = match self.body {
            StoredBody::Text(text) => Body::from(text),
            StoredBody::Bytes(bytes) => Body::from(bytes),
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// Why the handler's answer was not stored: it is passed on as is.
enum Uncached<E> {
    Response(Response),
    Inner(E),
}

impl<S, C> Service<Request<Body>> for CacheService<S, C>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let shared = Arc::clone(&self.shared);
        let route = (request.method() == Method::GET)
            .then(|| {
                shared
                    .routes
                    .iter()
                    .find(|r| r.matches(request.uri().path()))
            })
            .flatten()
            .cloned();
        let Some(route) = route else {
            return Box::pin(inner.call(request));
        };
        let user = if route.public {
            Some(PUBLIC_SCOPE.to_owned())
        } else {
            request
                .extensions()
                .get::<AuthenticatedUser>()
                .map(|AuthenticatedUser(user)| user.clone())
        };
        let Some(user) = user else {
            // Nobody to cache for; an anonymous response is never shared.
            return Box::pin(inner.call(request));
        };
        let identity = identity(&request, &user, route.public, &shared.vary);
        Box::pin(async move {
            // What the handler answered, so that it is served even when
            // storing it fails.
            let made: Arc<Mutex<Option<(Parts, Bytes)>>> = Arc::default();
            let made_by_handler = Arc::clone(&made);
            let collector = Arc::clone(&shared);
            let compute = || async move {
                let response = inner.call(request).await.map_err(Uncached::Inner)?;
                let (parts, body) = response.into_parts();
                let bytes = match collector.collect(&parts, body, route.public).await {
                    Collected::Bytes(bytes) => bytes,
                    Collected::Uncacheable(body) => {
                        return Err(Uncached::Response(Response::from_parts(parts, body)))
                    }
                    Collected::Failed(message) => {
                        return Err(Uncached::Response(json_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "body_error",
                            &message,
                        )))
                    }
                };
                let stored = collector.stored(&parts, &bytes);
                *made_by_handler.lock().unwrap_or_else(|p| p.into_inner()) = Some((parts, bytes));
                Ok(stored)
            };
            let result = shared
                .cache
                .get_or_compute(&user, &route.namespace, &identity, route.ttl, compute)
                .await;
            let original = made.lock().unwrap_or_else(|p| p.into_inner()).take();
            let (mut response, status) = match (result, original) {
                // Served as the handler made it, with all its headers.
                (_, Some((parts, bytes))) => {
                    (Response::from_parts(parts, Body::from(bytes)), "MISS")
                }
                (Ok(stored), None) => (stored.into_response(), "HIT"),
                (Err(GetOrComputeError::Compute(Uncached::Response(response))), None) => {
                    (response, "MISS")
                }
                (Err(GetOrComputeError::Compute(Uncached::Inner(err))), None) => return Err(err),
                (Err(GetOrComputeError::Cache(err)), None) => {
                    return Ok(json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cache_error",
                        &format!("the response cache failed: {err}"),
                    ))
                }
            };
            response
                .headers_mut()
                .insert(X_CACHE, HeaderValue::from_static(status));
            Ok(response)
        })
    }
}

/// The body of a handler's response, read or not.
enum Collected {
    Bytes(Bytes),
    /// Not to be stored: the body, untouched.
    Uncacheable(Body),
    /// Reading the body failed.
    Failed(String),
}

/// The identity of `GET <path>?<query>` for `user` (or for everyone),
/// with the values of the `vary` request headers.
fn identity(
    request: &Request<Body>,
    user: &str,
    public: bool,
    vary: &[HeaderName],
) -> RequestIdentity {
    let path = request.uri().path();
    let query = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes());
    let pairs = query.map(|(name, value)| (name.into_owned(), value.into_owned()));
    let mut identity = if public {
        RequestIdentity::public("GET", path, pairs)
    } else {
        RequestIdentity::for_user(user, "GET", path, pairs)
    };
    for name in vary {
        // Absent and empty differ: a one-byte marker before the values.
        let mut value = vec![u8::from(request.headers().contains_key(name))];
        for part in request.headers().get_all(name) {
            value.extend_from_slice(part.as_bytes());
            value.push(b'\n');
        }
        identity = identity.vary(name.as_str(), value);
    }
    identity
}

impl<C> Shared<C> {
    /// Whether a response with these parts may be stored.
    fn cacheable(&self, parts: &Parts, public: bool) -> bool {
        let no_store = cache_control_has(&parts.headers, "no-store")
            || (public && cache_control_has(&parts.headers, "private"));
        parts.status.is_success()
            && !parts.headers.contains_key(http::header::SET_COOKIE)
            && !no_store
    }

    /// The body, when the response may be stored and its size is known
    /// and small enough.
    async fn collect(&self, parts: &Parts, body: Body, public: bool) -> Collected {
        let small = body
            .size_hint()
            .exact()
            .is_some_and(|size| size <= self.max_body as u64);
        if !self.cacheable(parts, public) || !small {
            return Collected::Uncacheable(body);
        }
        match axum::body::to_bytes(body, self.max_body).await {
            Ok(bytes) => Collected::Bytes(bytes),
            Err(err) => Collected::Failed(format!("the handler's response body failed: {err}")),
        }
    }

    fn stored(&self, parts: &Parts, bytes: &Bytes) -> Stored {
        let headers = self
            .stored_headers
            .iter()
            .flat_map(|name| parts.headers.get_all(name).iter().map(move |v| (name, v)))
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let body = match std::str::from_utf8(bytes) {
            Ok(text) => StoredBody::Text(text.to_owned()),
            Err(_) => StoredBody::Bytes(bytes.to_vec()),
        };
        Stored {
            status: parts.status.as_u16(),
            headers,
            body,
        }
    }
}

/// Whether a `Cache-Control` header of `headers` has `directive`.
fn cache_control_has(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .any(|item| {
            let name = item.split('=').next().unwrap_or("").trim();
            name.eq_ignore_ascii_case(directive)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_their_path_and_below_only() {
        let route = |path: &str| Route {
            path: path.into(),
            namespace: "n".into(),
            ttl: Duration::from_secs(1),
            public: false,
        };
        let search = route("/api/search");
        assert!(search.matches("/api/search"));
        assert!(search.matches("/api/search/advanced"));
        assert!(!search.matches("/api/searches"));
        assert!(!search.matches("/api"));
        assert!(route("/api/").matches("/api/anything"));
    }

    #[test]
    fn cache_control_directives_are_found_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, No-Store"),
        );
        assert!(cache_control_has(&headers, "no-store"));
        assert!(!cache_control_has(&headers, "private"));
        headers.append(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("private=\"x\""),
        );
        assert!(cache_control_has(&headers, "private"));
    }

    #[test]
    fn only_plain_successes_are_stored() {
        let layer = CacheLayer::new(Cache::new(()));
        let parts = |status: u16, headers: &[(&str, &str)]| {
            let mut builder = Response::builder().status(status);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let shared = &layer.shared;
        assert!(shared.cacheable(&parts(200, &[]), false));
        assert!(shared.cacheable(&parts(204, &[]), false));
        assert!(!shared.cacheable(&parts(404, &[]), false));
        assert!(!shared.cacheable(&parts(302, &[]), false));
        assert!(!shared.cacheable(&parts(200, &[("set-cookie", "a=1")]), false));
        assert!(!shared.cacheable(&parts(200, &[("cache-control", "no-store")]), false));
        // Private responses are fine per user, not for everyone.
        assert!(shared.cacheable(&parts(200, &[("cache-control", "private")]), false));
        assert!(!shared.cacheable(&parts(200, &[("cache-control", "private")]), true));
    }

    #[test]
    fn invalid_routes_are_refused() {
        let layer = || CacheLayer::new(Cache::new(()));
        assert!(layer()
            .route("/ok", "search", Duration::from_secs(300))
            .is_ok());
        for (path, namespace, ttl) in [
            ("no-slash", "search", Duration::from_secs(1)),
            ("/a", "bad namespace", Duration::from_secs(1)),
            ("/a", "search", Duration::ZERO),
        ] {
            let err = layer().route(path, namespace, ttl).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        }
    }
}
