//! Serving an axum router on a free port for the HTTP layers' tests and
//! bench, and reading what came back.

use std::net::SocketAddr;

use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use crate::harness::Server;

/// The timeouts of [`short_timeout_connection`].
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// A connection to `server` whose dial and read timeouts are
/// [`SHORT_TIMEOUT`], so that once the server is stopped each request
/// waits little before its layer's fallback applies. Give the typed
/// clients the same timeout (`with_timeout(SHORT_TIMEOUT)`).
///
/// # Panics
/// When the server cannot be reached.
pub async fn short_timeout_connection(server: &Server) -> tk_redis::Connection {
    tk_redis::Config::builder()
        .addr(server.addr())
        .dial_timeout(SHORT_TIMEOUT)
        .read_timeout(SHORT_TIMEOUT)
        .build()
        .expect("valid config")
        .connect()
        .await
        .expect("connect")
}

/// A router served on `127.0.0.1:<free port>` with the peer address
/// available to `ClientIp`; stopped when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Serves `router` until dropped.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(router: Router) -> HttpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, service).await.expect("serve");
        });
        HttpServer { addr, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP client that keeps no cookies (each test is explicit about which
/// "browser" sends which cookie), ignores proxy settings of the
/// environment and follows no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// The `Set-Cookie` headers of a response.
pub fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("ASCII Set-Cookie").to_owned())
        .collect()
}

/// A header of a response as text (`None` when absent).
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("ASCII header").to_owned())
}
