//! SessionLayer and CurrentSession over real HTTP against a real
//! redis-server with the module: cookie flags, a new token at login, a
//! destroyed session never coming back, "log out everywhere" from another
//! device, versioned updates, and Redis going away.
//!
//! Each "browser" is explicit: the test sends the cookie it holds.

use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use tk_redis::http::{CurrentSession, SameSite, SessionCookie, SessionError, SessionLayer};
use tk_redis::SessionStore;
use tk_redis_tests::harness::Server;
use tk_redis_tests::http::{
    client, set_cookies, short_timeout_connection, HttpServer, SHORT_TIMEOUT,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Data {
    visits: u64,
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

/// The test app: login, who am I, a counter, a stale update, logouts and
/// the list of sessions.
fn app<C>(store: SessionStore<Data, C>, cookie: SessionCookie) -> Router
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Current<C> = CurrentSession<Data, C>;
    let other_request = store.clone();
    Router::new()
        .route(
            "/login",
            post(
                |session: Current<C>, Query(form): Query<LoginForm>| async move {
                    session.login(&form.user, &Data::default()).await?;
                    Ok::<_, SessionError>("welcome")
                },
            ),
        )
        .route(
            "/me",
            get(|session: Current<C>| async move {
                let current = session.require()?;
                Ok::<_, SessionError>(Json(serde_json::json!({
                    "user": current.user,
                    "visits": current.data.visits,
                })))
            }),
        )
        .route(
            "/visit",
            post(|session: Current<C>| async move {
                let mut data = session.require()?.data;
                data.visits += 1;
                session.update(data).await?;
                Ok::<_, SessionError>("counted")
            }),
        )
        .route(
            "/stale",
            post(
                move |headers: axum::http::HeaderMap, session: Current<C>| async move {
                    session.require()?;
                    // Another request of the same browser updates the session
                    // after this one read it.
                    let token = cookie_token(&headers);
                    let _ = other_request
                        .update(&token, &Data { visits: 100 }, None)
                        .await
                        .expect("concurrent update");
                    session.update(Data { visits: 1 }).await?;
                    Ok::<_, SessionError>("not reached")
                },
            ),
        )
        .route(
            "/logout",
            post(|session: Current<C>| async move {
                session.logout().await?;
                Ok::<_, SessionError>("bye")
            }),
        )
        .route(
            "/logout-everywhere",
            post(|session: Current<C>| async move {
                Ok::<_, SessionError>(session.logout_everywhere().await?.to_string())
            }),
        )
        .route(
            "/sessions",
            get(|session: Current<C>| async move {
                let current = session.id();
                let list = session.list().await?;
                let marked: Vec<bool> = list
                    .iter()
                    .map(|s| Some(&s.id) == current.as_ref())
                    .collect();
                Ok::<_, SessionError>(Json(marked))
            }),
        )
        .layer(SessionLayer::new(store).cookie(cookie))
}

/// The session token the request's cookie carries: the test's "other
/// request" addresses the store directly with it.
fn cookie_token(headers: &axum::http::HeaderMap) -> tk_redis::SessionToken {
    let cookie = headers["cookie"].to_str().unwrap();
    cookie.strip_prefix("tk_session=").unwrap().parse().unwrap()
}

/// A browser: the session cookie it holds, if any.
struct Browser<'a> {
    http: &'a HttpServer,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(http: &'a HttpServer) -> Self {
        Browser { http, cookie: None }
    }

    /// Sends a request with the cookie; returns the status, the body and
    /// the `Set-Cookie` headers, and applies them as a browser would.
    async fn send(&mut self, method: reqwest::Method, path: &str) -> (u16, String, Vec<String>) {
        let mut request = client().request(method, self.http.url(path));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("tk_session={cookie}"));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let cookies = set_cookies(&response);
        let body = response.text().await.unwrap();
        for set in &cookies {
            let value = set
                .split(';')
                .next()
                .unwrap()
                .strip_prefix("tk_session=")
                .unwrap();
            let removal = set.contains("Max-Age=0");
            self.cookie = (!removal).then(|| value.to_owned());
        }
        (status, body, cookies)
    }

    async fn get(&mut self, path: &str) -> (u16, String, Vec<String>) {
        self.send(reqwest::Method::GET, path).await
    }

    async fn post(&mut self, path: &str) -> (u16, String, Vec<String>) {
        self.send(reqwest::Method::POST, path).await
    }
}

#[tokio::test]
async fn cookie_flags_and_a_new_token_at_login() {
    let server = Server::start().await;
    let store = SessionStore::<Data, _>::new(server.manager().await);
    let http = HttpServer::start(app(store, SessionCookie::default())).await;
    let mut browser = Browser::new(&http);

    let (status, _, cookies) = browser.post("/login?user=alice").await;
    assert_eq!(status, 200);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let set = &cookies[0];
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.split("; ").any(|part| part == flag), "{flag} in {set}");
    }
    let first = browser.cookie.clone().expect("a session cookie");
    assert!(first.parse::<tk_redis::SessionToken>().is_ok());
    let (status, body, cookies) = browser.get("/me").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\""), "{body}");
    assert!(
        cookies.is_empty(),
        "a plain request does not rewrite the cookie"
    );

    // Logging in again (e.g. over a token planted before the login): a new
    // token, and the one the browser had is dead.
    let (status, _, _) = browser.post("/login?user=alice").await;
    assert_eq!(status, 200);
    let second = browser.cookie.clone().unwrap();
    assert_ne!(first, second);
    let mut planted = Browser::new(&http);
    planted.cookie = Some(first);
    let (status, _, cookies) = planted.get("/me").await;
    assert_eq!(status, 401);
    assert!(
        cookies[0].contains("Max-Age=0"),
        "the dead cookie is deleted: {cookies:?}"
    );
    assert_eq!(browser.get("/me").await.0, 200);

    // A malformed cookie is no session, and is deleted.
    let mut garbage = Browser::new(&http);
    garbage.cookie = Some("not-a-token".into());
    let (status, _, cookies) = garbage.get("/me").await;
    assert_eq!(status, 401);
    assert!(cookies[0].contains("Max-Age=0"), "{cookies:?}");

    // Another configuration: name, domain, path, Secure off, Strict.
    let store = SessionStore::<Data, _>::new(server.manager().await);
    let custom = SessionCookie {
        name: "sid".into(),
        domain: Some("example.test".into()),
        path: "/".into(),
        secure: false,
        http_only: true,
        same_site: SameSite::Strict,
    };
    let http = HttpServer::start(app(store, custom)).await;
    let response = client()
        .post(http.url("/login?user=bob"))
        .send()
        .await
        .unwrap();
    let set = set_cookies(&response).remove(0);
    assert!(set.starts_with("sid="), "{set}");
    let parts: Vec<&str> = set.split("; ").collect();
    for flag in ["HttpOnly", "SameSite=Strict", "Domain=example.test"] {
        assert!(parts.contains(&flag), "{flag} in {set}");
    }
    assert!(!parts.contains(&"Secure"), "{set}");
}

#[tokio::test]
async fn logout_everywhere_from_another_device() {
    let server = Server::start().await;
    let store = SessionStore::<Data, _>::new(server.manager().await);
    let http = HttpServer::start(app(store, SessionCookie::default())).await;
    let mut laptop = Browser::new(&http);
    let mut phone = Browser::new(&http);
    assert_eq!(laptop.post("/login?user=carol").await.0, 200);
    assert_eq!(phone.post("/login?user=carol").await.0, 200);

    let (status, body, _) = laptop.get("/sessions").await;
    assert_eq!(status, 200);
    let marked: Vec<bool> = serde_json::from_str(&body).unwrap();
    assert_eq!(marked.len(), 2, "{body}");
    assert_eq!(
        marked.iter().filter(|current| **current).count(),
        1,
        "{body}"
    );

    let (status, body, cookies) = phone.post("/logout-everywhere").await;
    assert_eq!((status, body.as_str()), (200, "2"));
    assert!(cookies[0].contains("Max-Age=0"), "{cookies:?}");
    assert_eq!(phone.cookie, None);

    // The laptop, which did nothing, is logged out too, and stays so.
    let (status, _, cookies) = laptop.get("/me").await;
    assert_eq!(status, 401);
    assert!(cookies[0].contains("Max-Age=0"), "{cookies:?}");
}

#[tokio::test]
async fn logout_ends_the_session_for_good() {
    let server = Server::start().await;
    let store = SessionStore::<Data, _>::new(server.manager().await);
    let http = HttpServer::start(app(store, SessionCookie::default())).await;
    let mut browser = Browser::new(&http);
    browser.post("/login?user=dave").await;
    let token = browser.cookie.clone().unwrap();
    let (status, _, cookies) = browser.post("/logout").await;
    assert_eq!(status, 200);
    assert!(cookies[0].contains("Max-Age=0"), "{cookies:?}");

    // Whoever kept the old cookie gets nothing, however often they try.
    let mut replay = Browser::new(&http);
    for _ in 0..2 {
        replay.cookie = Some(token.clone());
        assert_eq!(replay.get("/me").await.0, 401);
    }
    assert_eq!(replay.post("/visit").await.0, 401);
}

#[tokio::test]
async fn updates_are_versioned_and_a_conflict_is_409() {
    let server = Server::start().await;
    let store = SessionStore::<Data, _>::new(server.manager().await);
    let http = HttpServer::start(app(store, SessionCookie::default())).await;
    let mut browser = Browser::new(&http);
    browser.post("/login?user=erin").await;
    for _ in 0..2 {
        assert_eq!(browser.post("/visit").await.0, 200);
    }
    let (_, body, _) = browser.get("/me").await;
    assert!(body.contains("\"visits\":2"), "{body}");

    let (status, body, _) = browser.post("/stale").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("session_conflict"), "{body}");
    // The other request's write stands.
    let (_, body, _) = browser.get("/me").await;
    assert!(body.contains("\"visits\":100"), "{body}");
}

#[tokio::test]
async fn redis_stopped_is_503_and_keeps_the_cookie() {
    let server = Server::start().await;
    let timeout = SHORT_TIMEOUT;
    let store =
        SessionStore::<Data, _>::new(short_timeout_connection(&server).await).with_timeout(timeout);
    let http = HttpServer::start(app(store, SessionCookie::default())).await;
    let mut browser = Browser::new(&http);
    browser.post("/login?user=frank").await;
    assert_eq!(browser.get("/me").await.0, 200);

    drop(server);

    let (status, body, cookies) = browser.get("/me").await;
    assert_eq!(status, 503, "{body}");
    assert!(cookies.is_empty(), "the session may be alive: {cookies:?}");
    assert!(browser.cookie.is_some());
}
