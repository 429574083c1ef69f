//! A small web app on the tk-redis layers, in the spirit of the app they
//! replace: login / logout / "your sessions", a login endpoint limited per
//! client IP that fails **closed**, an API limited per user (or IP) that
//! fails **open**, a search cached per user for 5 minutes, a challenge
//! leaderboard whose writes invalidate the cache, and `/health`.
//!
//! Run it against `scripts/serve`'s Redis (127.0.0.1:6379):
//!
//! ```text
//! cargo run -p tk-redis --features axum --example webapp
//! ```
//!
//! then open <http://127.0.0.1:3000/> (any user name, password `demo`).
//! `REDIS_*` variables select another Redis ([`Config::from_env`]);
//! `WEBAPP_ADDR` the listening address. Try:
//!
//! ```text
//! curl -i 'http://127.0.0.1:3000/api/search?q=redis'     # X-Cache, RateLimit headers
//! curl -i http://127.0.0.1:3000/api/leaderboard/weekly
//! curl -i http://127.0.0.1:3000/health
//! ```

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tk_redis::health::{self, HealthOptions};
use tk_redis::http::{
    CacheLayer, ClientIp, CurrentSession, KeyExtractor, Policy, RateLimitLayer, SessionCookie,
    SessionError, SessionLayer, UserKey,
};
use tk_redis::{
    Cache, Config, Connection, FailurePolicy, Leaderboard, Quota, RateLimiter, SessionStore,
};

/// What the app keeps in a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionData {
    /// When the user logged in (Unix seconds), shown on the sessions page.
    logged_in_at: u64,
    /// Searches made in this session: a versioned update per search.
    searches: u64,
}

type Current = CurrentSession<SessionData, Connection>;

#[derive(Clone)]
struct App {
    conn: Connection,
    cache: Cache<Connection>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `scripts/serve` listens on 127.0.0.1:6379; REDIS_ADDR overrides it.
    let config = Config::from_lookup(|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "REDIS_ADDR").then(|| "127.0.0.1:6379".to_owned()))
    })?;
    let conn = config.connect().await?;
    let listen: SocketAddr = std::env::var("WEBAPP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let app = router(conn)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("webapp on http://{listen}/ (Redis at {})", config.addr());
    // ClientIp reads the peer address from the connect info.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// The whole app: pages, login, API and health, with their layers.
fn router(conn: Connection) -> tk_redis::Result<Router> {
    // A cache must not slow every request down when Redis is slow.
    let cache = Cache::new(conn.clone()).with_timeout(Duration::from_millis(200));
    let state = App {
        conn: conn.clone(),
        cache: cache.clone(),
    };

    // Logins: per client IP (behind a local proxy, its X-Forwarded-For is
    // believed); refused when the limit cannot be enforced.
    let login_limit = RateLimitLayer::new(
        RateLimiter::new(conn.clone()).with_failure_policy(FailurePolicy::FailClosed),
        "login",
        ClientIp::new().trust_proxies(["127.0.0.1", "::1"])?,
        [
            Policy::new("minute", Quota::per_minute(5)),
            Policy::new("hour", Quota::per_hour(20)),
        ],
    )?;
    // The API: per user when logged in, per IP otherwise; kept serving
    // when Redis is away (the default policy), with legacy headers for old
    // clients.
    let api_limit = RateLimitLayer::new(
        RateLimiter::new(conn.clone()),
        "api",
        UserKey.or(ClientIp::new().trust_proxies(["127.0.0.1", "::1"])?),
        [
            Policy::new("burst", Quota::per_second(20)),
            Policy::new("hour", Quota::per_hour(2_000)),
        ],
    )?
    .legacy_headers(true);
    let response_cache = CacheLayer::new(cache)
        .route("/api/search", "search", Duration::from_secs(5 * 60))?
        .public_route("/api/leaderboard", "leaderboard", Duration::from_secs(15))?;
    let sessions = SessionStore::<SessionData, _>::new(conn);
    // Plain HTTP on a developer machine: a `Secure` cookie would not be
    // sent back by every client. Keep the default behind TLS.
    let cookie = SessionCookie {
        secure: false,
        ..SessionCookie::default()
    };

    let api = Router::new()
        .route("/api/search", get(search))
        .route("/api/leaderboard/{challenge}", get(leaderboard))
        .route("/api/leaderboard/{challenge}/score", post(add_score))
        .layer(response_cache)
        .route_layer(api_limit);
    let login = Router::new()
        .route("/login", post(login))
        .route_layer(login_limit);
    Ok(Router::new()
        .route("/", get(home))
        .route("/sessions", get(sessions_page))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/health", get(health_check))
        .merge(login)
        .merge(api)
        .with_state(state)
        // Outermost: authenticates before the limits and the cache look
        // for the user.
        .layer(SessionLayer::new(sessions).cookie(cookie)))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
}

async fn home(session: Current) -> Html<String> {
    match session.user() {
        Some(user) => page(
            "tk-redis demo",
            &format!(
                "<p>Logged in as <b>{}</b>. <a href=/sessions>Your sessions</a></p>\
                 <form method=get action=/api/search><input name=q><button>Search</button></form>\
                 <form method=post action=/logout><button>Log out</button></form>",
                escape(&user)
            ),
        ),
        None => page(
            "tk-redis demo",
            "<form method=post action=/login>\
             <input name=user placeholder=user> <input name=password type=password placeholder=demo>\
             <button>Log in</button></form>",
        ),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(session: Current, Form(form): Form<LoginForm>) -> Result<Response, SessionError> {
    // A demo: any user name, one password. A real app checks a hash here.
    let user = form.user.trim();
    if user.is_empty() || form.password != "demo" {
        return Ok((StatusCode::UNAUTHORIZED, "wrong user name or password").into_response());
    }
    let data = SessionData {
        logged_in_at: now_secs(),
        searches: 0,
    };
    // A new session under a new token, whatever cookie came in.
    session.login(user, &data).await?;
    Ok(Redirect::to("/sessions").into_response())
}

async fn logout(session: Current) -> Result<Redirect, SessionError> {
    session.logout().await?;
    Ok(Redirect::to("/"))
}

async fn logout_everywhere(session: Current) -> Result<Redirect, SessionError> {
    session.logout_everywhere().await?;
    Ok(Redirect::to("/"))
}

async fn sessions_page(session: Current) -> Result<Html<String>, SessionError> {
    let current = session.require()?;
    let this_id = session.id();
    let mut rows = String::new();
    for info in session.list().await? {
        let secs = |time: SystemTime| time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let marker = if Some(&info.id) == this_id.as_ref() {
            " (this one)"
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr><td>{}…{marker}</td><td>{}</td><td>{}</td></tr>",
            &info.id[..12],
            secs(info.created),
            secs(info.last_active)
        ));
    }
    Ok(page(
        "Your sessions",
        &format!(
            "<p>{} — logged in at {}, {} searches in this session.</p>\
             <table><tr><th>session</th><th>created</th><th>last active</th></tr>{rows}</table>\
             <form method=post action=/logout-everywhere><button>Log out everywhere</button></form>\
             <p><a href=/>home</a></p>",
            escape(&current.user),
            current.data.logged_in_at,
            current.data.searches
        ),
    ))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The catalogue searched (a stand-in for the database).
const CATALOGUE: &[&str] = &[
    "rate limiting with GCRA",
    "sliding window counters",
    "login sessions in Redis",
    "per-user response caching",
    "fencing tokens for locks",
    "leaderboards with sorted sets",
    "pub/sub across failovers",
];

/// Search: cached per user for 5 minutes by the CacheLayer, so the count
/// of searches below only moves on a miss.
async fn search(session: Current, Query(query): Query<SearchQuery>) -> Response {
    let needle = query.q.to_lowercase();
    let results: Vec<&str> = CATALOGUE
        .iter()
        .copied()
        .filter(|title| title.to_lowercase().contains(&needle))
        .collect();
    if let Some(current) = session.get() {
        let mut data = current.data;
        data.searches += 1;
        // A concurrent search may win the versioned update: fine, it is
        // only a counter.
        let _ = session.update(data).await;
    }
    Json(serde_json::json!({ "query": query.q, "results": results })).into_response()
}

async fn leaderboard(State(app): State<App>, Path(challenge): Path<String>) -> Response {
    let board = Leaderboard::new(app.conn.clone(), &challenge);
    match board.top(10).await {
        Ok(entries) => Json(entries).into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct Score {
    score: f64,
}

async fn add_score(
    State(app): State<App>,
    session: Current,
    Path(challenge): Path<String>,
    Json(score): Json<Score>,
) -> Result<Response, SessionError> {
    let user = session.require()?.user;
    let board = Leaderboard::new(app.conn.clone(), &challenge);
    board.add_score(&user, score.score).await?;
    // The public leaderboard entries changed: drop them now rather than
    // serve a stale board for 15 s.
    app.cache
        .invalidate_namespace("public", "leaderboard")
        .await?;
    Ok((StatusCode::CREATED, "recorded").into_response())
}

async fn health_check(State(app): State<App>) -> Response {
    let health = health::check(&app.conn, &HealthOptions::default()).await;
    let status = StatusCode::from_u16(health.http_status()).unwrap_or(StatusCode::OK);
    let body = serde_json::json!({
        "status": health.status.as_str(),
        "latency_ms": health.latency.map(|latency| latency.as_secs_f64() * 1000.0),
        "problems": health.problems,
    });
    (status, Json(body)).into_response()
}
