//! CacheLayer over real HTTP against a real redis-server with the module:
//! per-user entries (a response is never served to another user), HIT and
//! MISS, invalidation after a write, responses that must not be stored,
//! and Redis going away.
//!
//! Every handler numbers its answers, so a body tells whether the handler
//! ran (MISS) or the cache answered (HIT) independently of `X-Cache`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use redis::aio::ConnectionLike;
use tk_redis::http::{AuthenticatedUser, CacheLayer};
use tk_redis::Cache;
use tk_redis_tests::harness::Server;
use tk_redis_tests::http::{
    client, header as header_of, short_timeout_connection, HttpServer, SHORT_TIMEOUT,
};

/// The app's own authentication, as seen by the layers: an `X-User`
/// header (checked upstream, in this test's world) becomes the
/// [`AuthenticatedUser`].
async fn authenticate(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(user) = user {
        request.extensions_mut().insert(AuthenticatedUser(user));
    }
    next.run(request).await
}

fn user_of(headers: &HeaderMap) -> String {
    headers
        .get("x-user")
        .map_or("anonymous", |value| value.to_str().unwrap())
        .to_owned()
}

/// Search, responses that must not be stored, a public page, and a write
/// that invalidates the user's entries.
fn app<C>(cache: Cache<C>) -> Router
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let answers = Arc::new(AtomicU64::new(0));
    let next = move || answers.fetch_add(1, Ordering::Relaxed) + 1;
    let search = {
        let next = next.clone();
        move |headers: HeaderMap, request: Request| async move {
            let query = request.uri().query().unwrap_or("").to_owned();
            let body = format!("{}:{query}:{}", user_of(&headers), next());
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
        }
    };
    let no_store = {
        let next = next.clone();
        move || async move { ([(header::CACHE_CONTROL, "no-store")], next().to_string()) }
    };
    let missing = {
        let next = next.clone();
        move || async move { (StatusCode::NOT_FOUND, next().to_string()) }
    };
    let cookie = {
        let next = next.clone();
        move || async move { ([(header::SET_COOKIE, "pref=1")], next().to_string()) }
    };
    let public = move || async move { next().to_string() };
    let writer = cache.clone();
    let write = move |headers: HeaderMap| async move {
        // A write, then its invalidation.
        writer.invalidate_user(&user_of(&headers)).await.unwrap();
        "written".into_response()
    };
    let layer = CacheLayer::new(cache)
        .route("/api/search", "search", Duration::from_secs(300))
        .unwrap()
        .route("/api/other", "analytics", Duration::from_secs(900))
        .unwrap()
        .public_route("/public", "catalogue", Duration::from_secs(60))
        .unwrap()
        .vary(header::ACCEPT_LANGUAGE);
    Router::new()
        .route("/api/search", get(search))
        .route("/api/other/no-store", get(no_store))
        .route("/api/other/missing", get(missing))
        .route("/api/other/cookie", get(cookie))
        .route("/api/write", axum::routing::post(write))
        .route("/public", get(public))
        .layer(layer)
        .layer(middleware::from_fn(authenticate))
}

/// `GET path` as `user` (anonymous when `None`): status, `X-Cache`, body.
async fn fetch(http: &HttpServer, user: Option<&str>, path: &str) -> (u16, Option<String>, String) {
    let mut request = client().get(http.url(path));
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let x_cache = header_of(&response, "x-cache");
    (status, x_cache, response.text().await.unwrap())
}

fn hit(x_cache: &Option<String>) -> bool {
    x_cache.as_deref() == Some("HIT")
}

#[tokio::test]
async fn a_cached_response_is_never_served_to_another_user() {
    let server = Server::start().await;
    let http = HttpServer::start(app(Cache::new(server.manager().await))).await;

    let (status, x_cache, alice) = fetch(&http, Some("alice"), "/api/search?q=rust").await;
    assert_eq!((status, x_cache.as_deref()), (200, Some("MISS")));
    assert!(alice.starts_with("alice:q=rust:"), "{alice}");
    let (_, x_cache, again) = fetch(&http, Some("alice"), "/api/search?q=rust").await;
    assert!(hit(&x_cache), "{x_cache:?}");
    assert_eq!(again, alice);

    // Same URL, another user: the handler runs for them.
    let (_, x_cache, bob) = fetch(&http, Some("bob"), "/api/search?q=rust").await;
    assert_eq!(x_cache.as_deref(), Some("MISS"));
    assert!(bob.starts_with("bob:q=rust:"), "{bob}");
    let (_, x_cache, bob_again) = fetch(&http, Some("bob"), "/api/search?q=rust").await;
    assert!(hit(&x_cache));
    assert_eq!(bob_again, bob);

    // The headers that matter come back on a hit.
    let response = client()
        .get(http.url("/api/search?q=rust"))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header_of(&response, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );

    // The query's order does not matter; its content does.
    let (_, first, _) = fetch(&http, Some("alice"), "/api/search?q=a&page=2").await;
    let (_, second, _) = fetch(&http, Some("alice"), "/api/search?page=2&q=a").await;
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some("MISS"), Some("HIT"))
    );
    let (_, other, _) = fetch(&http, Some("alice"), "/api/search?page=3&q=a").await;
    assert_eq!(other.as_deref(), Some("MISS"));

    // A varying request header has an entry per value.
    let mut by_language = Vec::new();
    for language in ["fr", "de", "fr"] {
        let response = client()
            .get(http.url("/api/search?q=lang"))
            .header("x-user", "alice")
            .header("accept-language", language)
            .send()
            .await
            .unwrap();
        by_language.push(header_of(&response, "x-cache"));
    }
    let expected = ["MISS", "MISS", "HIT"].map(|s| Some(s.to_owned()));
    assert_eq!(by_language, expected);

    // Anonymous requests are not cached at all on a per-user route.
    let (_, x_cache, first) = fetch(&http, None, "/api/search?q=rust").await;
    assert_eq!(x_cache, None);
    let (_, _, second) = fetch(&http, None, "/api/search?q=rust").await;
    assert_ne!(first, second);

    // A public route is shared by everybody, anonymous included.
    let (_, x_cache, page) = fetch(&http, None, "/public").await;
    assert_eq!(x_cache.as_deref(), Some("MISS"));
    let (_, x_cache, same) = fetch(&http, Some("carol"), "/public").await;
    assert!(hit(&x_cache));
    assert_eq!(same, page);
}

#[tokio::test]
async fn a_write_invalidates_the_users_entries() {
    let server = Server::start().await;
    let http = HttpServer::start(app(Cache::new(server.manager().await))).await;
    let (_, _, before) = fetch(&http, Some("alice"), "/api/search?q=x").await;
    let (_, _, bob_before) = fetch(&http, Some("bob"), "/api/search?q=x").await;
    assert!(hit(&fetch(&http, Some("alice"), "/api/search?q=x").await.1));

    let response = client()
        .post(http.url("/api/write"))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (_, x_cache, after) = fetch(&http, Some("alice"), "/api/search?q=x").await;
    assert_eq!(x_cache.as_deref(), Some("MISS"));
    assert_ne!(after, before);
    assert!(hit(&fetch(&http, Some("alice"), "/api/search?q=x").await.1));
    // Bob's entries are his: still there.
    let (_, x_cache, bob_after) = fetch(&http, Some("bob"), "/api/search?q=x").await;
    assert!(hit(&x_cache));
    assert_eq!(bob_after, bob_before);
}

#[tokio::test]
async fn no_store_errors_and_cookies_are_never_cached() {
    let server = Server::start().await;
    let http = HttpServer::start(app(Cache::new(server.manager().await))).await;
    for (path, status) in [
        ("/api/other/no-store", 200),
        ("/api/other/missing", 404),
        ("/api/other/cookie", 200),
    ] {
        let (first_status, first_cache, first) = fetch(&http, Some("alice"), path).await;
        let (_, second_cache, second) = fetch(&http, Some("alice"), path).await;
        assert_eq!(first_status, status, "{path}");
        assert_eq!(first_cache.as_deref(), Some("MISS"), "{path}");
        assert_eq!(second_cache.as_deref(), Some("MISS"), "{path}");
        assert_ne!(first, second, "{path}: the handler ran twice");
    }
    // The uncached response keeps its cookie.
    let response = client()
        .get(http.url("/api/other/cookie"))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header_of(&response, "set-cookie").as_deref(),
        Some("pref=1")
    );
    // Nothing of theirs reached Redis.
    let mut conn = server.conn().await;
    let entries: Vec<String> = redis::cmd("KEYS")
        .arg("tk:c:*:analytics:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(entries.is_empty(), "{entries:?}");
}

#[tokio::test]
async fn redis_stopped_serves_from_the_handler() {
    let server = Server::start().await;
    let timeout = SHORT_TIMEOUT;
    let cache = Cache::new(short_timeout_connection(&server).await).with_timeout(timeout);
    let http = HttpServer::start(app(cache)).await;
    fetch(&http, Some("alice"), "/api/search?q=down").await;
    assert!(hit(&fetch(&http, Some("alice"), "/api/search?q=down")
        .await
        .1));

    drop(server);

    let (status, x_cache, first) = fetch(&http, Some("alice"), "/api/search?q=down").await;
    assert_eq!((status, x_cache.as_deref()), (200, Some("MISS")));
    let (_, _, second) = fetch(&http, Some("alice"), "/api/search?q=down").await;
    assert_ne!(first, second, "served by the handler each time");
}
