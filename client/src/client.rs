//! What every client type is built on: a [`ClientCore`] holds the
//! connection and the per-call timeout and sends commands with a deadline;
//! [`Counter`]s back the per-object metrics; two macros give each type
//! the same public accessors and `connect` constructor.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo};

use crate::error::{Error, Result};
use crate::functions::{self, Backend, TkMode};
use crate::reply;
use crate::DEFAULT_TIMEOUT;

/// A client type's connection, per-call timeout and backend.
#[derive(Clone)]
pub(crate) struct ClientCore<C> {
    pub(crate) conn: C,
    pub(crate) timeout: Duration,
    /// Which backend serves the `TK.*` commands: learnt once, shared by
    /// the clones (a `LockGuard` shares its `Lock`'s).
    backend: Arc<BackendState>,
}

/// [`BackendState::chosen`] before the backend is known.
const UNKNOWN: u8 = 0;
const MODULE: u8 = 1;
const LIBRARY: u8 = 2;

/// The backend a [`ClientCore`] uses: the mode asked for, and (once
/// learnt) the backend chosen; read with one atomic load per call.
#[derive(Debug)]
struct BackendState {
    mode: TkMode,
    chosen: AtomicU8,
    /// Held while learning the backend, so that concurrent first calls
    /// ask the server once.
    learning: tokio::sync::Mutex<()>,
}

impl BackendState {
    fn new(mode: TkMode) -> Self {
        // `module` never asks: the TK.* commands, as before the library.
        let chosen = if mode == TkMode::Module {
            MODULE
        } else {
            UNKNOWN
        };
        BackendState {
            mode,
            chosen: AtomicU8::new(chosen),
            learning: tokio::sync::Mutex::new(()),
        }
    }

    fn chosen(&self) -> Option<Backend> {
        match self.chosen.load(Ordering::Acquire) {
            MODULE => Some(Backend::Module),
            LIBRARY => Some(Backend::Library),
            _ => None,
        }
    }

    fn set(&self, backend: Option<Backend>) {
        let value = match backend {
            Some(Backend::Module) => MODULE,
            Some(Backend::Library) => LIBRARY,
            None => UNKNOWN,
        };
        self.chosen.store(value, Ordering::Release);
    }
}

impl<C> ClientCore<C> {
    /// `conn` with the default timeout, in [`TkMode::Auto`].
    pub(crate) fn new(conn: C) -> Self {
        ClientCore {
            conn,
            timeout: DEFAULT_TIMEOUT,
            backend: Arc::new(BackendState::new(TkMode::Auto)),
        }
    }

    /// Uses `mode` from now on; the backend is learnt again on next use.
    pub(crate) fn set_mode(&mut self, mode: TkMode) {
        self.backend = Arc::new(BackendState::new(mode));
    }

    /// The mode asked for.
    pub(crate) fn mode(&self) -> TkMode {
        self.backend.mode
    }

    /// The backend in use, once learnt (by the first call).
    pub(crate) fn backend(&self) -> Option<Backend> {
        self.backend.chosen()
    }

    /// The `Debug` output of the client type `name`: its timeout, then the
    /// fields the caller adds. The connection is left out (it may not be
    /// `Debug`, and shows nothing useful).
    pub(crate) fn debug_struct<'a, 'b: 'a>(
        &self,
        f: &'a mut fmt::Formatter<'b>,
        name: &str,
    ) -> fmt::DebugStruct<'a, 'b> {
        let mut debug = f.debug_struct(name);
        debug.field("timeout", &self.timeout);
        debug
    }
}

impl<C> ClientCore<C>
where
    C: ConnectionLike + Clone + Send,
{
    /// Sends `cmd` (whose name is `command`) to the backend in use, waits
    /// at most the timeout for the reply, and parses it as `T`.
    ///
    /// A `TK.*` command goes as it is to the module, or as its `FCALL`
    /// ([`functions::to_fcall`]) to the library; the backend is learnt on
    /// first use ([`functions::ensure_backend`], bounded by the timeout
    /// too). If it disappears (the module's command unknown, the library's
    /// function not found: a failover to a server without it), it is learnt
    /// again and the call sent once more (the server did not run it).
    /// Other commands are sent as they are.
    ///
    /// Server error replies become [`Error::Server`] or
    /// [`Error::ModuleNotLoaded`]; a reply of the wrong shape becomes
    /// [`Error::UnexpectedReply`]; a backend that cannot be used,
    /// [`Error::NoBackend`].
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        command: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        if !functions::is_module_command(command) {
            return self.query_raw(command, cmd).await;
        }
        let backend = match self.backend.chosen() {
            Some(backend) => backend,
            None => self.learn_backend(None).await?,
        };
        match self.query_on(backend, command, cmd).await {
            Err(err) if self.backend.mode != TkMode::Module && gone(backend, &err) => {
                let backend = self.learn_backend(Some(backend)).await?;
                self.query_on(backend, command, cmd).await
            }
            result => result,
        }
    }

    async fn query_on<T: FromRedisValue>(
        &self,
        backend: Backend,
        command: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        match backend {
            Backend::Module => self.query_raw(command, cmd).await,
            Backend::Library => self.query_raw(command, &functions::to_fcall(cmd)?).await,
        }
    }

    /// Learns the backend (once for concurrent callers): `stale` is the one
    /// that just failed, learnt again unless another caller already did.
    async fn learn_backend(&self, stale: Option<Backend>) -> Result<Backend> {
        let _learning = self.backend.learning.lock().await;
        let current = self.backend.chosen();
        if let Some(backend) = current.filter(|backend| Some(*backend) != stale) {
            return Ok(backend);
        }
        self.backend.set(None);
        let learnt = async {
            match (self.backend.mode, stale) {
                (TkMode::Module, _) => Ok(Backend::Module),
                // The library's function was not found although the library
                // was there: load it, without asking its version first. On a
                // cluster the version is read from one node, while the call
                // that failed went to another (a new primary without it);
                // FUNCTION LOAD goes to every primary.
                (TkMode::Functions, Some(Backend::Library)) => {
                    functions::load_library(&self.conn).await?;
                    Ok(Backend::Library)
                }
                (_, Some(Backend::Library)) => {
                    if functions::module_loaded(&self.conn).await? == Some(true) {
                        return Ok(Backend::Module);
                    }
                    functions::load_library(&self.conn).await?;
                    Ok(Backend::Library)
                }
                (TkMode::Functions, _) => functions::ensure_library(&self.conn)
                    .await
                    .map(|_| Backend::Library),
                _ => functions::ensure_backend(&self.conn).await,
            }
        };
        let backend = tokio::time::timeout(self.timeout, learnt)
            .await
            .map_err(|_| Error::Timeout)??;
        self.backend.set(Some(backend));
        Ok(backend)
    }

    /// Sends `cmd` as it is (see [`ClientCore::query`]).
    pub(crate) async fn query_raw<T: FromRedisValue>(
        &self,
        command: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        send(&self.conn, self.timeout, command, cmd).await
    }
}

/// Sends `cmd` (whose name is `command`) as it is on a clone of `conn`,
/// waits at most `timeout` for the reply, and parses it as `T`: the one
/// place a command meets the connection.
pub(crate) async fn send<C, T>(
    conn: &C,
    timeout: Duration,
    command: &'static str,
    cmd: &Cmd,
) -> Result<T>
where
    C: ConnectionLike + Clone + Send,
    T: FromRedisValue,
{
    // Connection handles (ConnectionManager, ClusterConnection,
    // MultiplexedConnection) are cheap to clone and share one connection.
    let mut conn = conn.clone();
    let reply = tokio::time::timeout(timeout, conn.req_packed_command(cmd))
        .await
        .map_err(|_| Error::Timeout)?
        // Some connection types return error replies as `Ok(ServerError)`,
        // others as `Err`: both end up in `Error::from_redis`.
        .and_then(redis::Value::extract_error)
        .map_err(|err| Error::from_redis(err, command))?;
    T::from_redis_value(reply)
        .map_err(|err| Error::UnexpectedReply(format!("{command}: {}", reply::detail(&err))))
}

/// Whether `err`, from `backend`, says that backend is no longer on the
/// server (the command was not run).
fn gone(backend: Backend, err: &Error) -> bool {
    match (backend, err) {
        (Backend::Module, Error::ModuleNotLoaded { .. }) => true,
        (Backend::Library, Error::Server { code, message }) => {
            functions::is_function_not_found(code, message)
        }
        _ => false,
    }
}

/// Connects the self-reconnecting [`ConnectionManager`] behind every
/// `connect` constructor: connection attempts time out after
/// [`DEFAULT_TIMEOUT`], and the manager has no response timeout of its own
/// (each type's per-call timeout applies).
pub(crate) async fn connect_manager<T: IntoConnectionInfo>(info: T) -> Result<ConnectionManager> {
    let client = redis::Client::open(info).map_err(Error::connecting)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEFAULT_TIMEOUT))
        .set_response_timeout(None);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(Error::connecting)
}

/// One count of a per-object metrics snapshot; only ever grows.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn bump(&self) {
        // Plain statistics: no ordering with other memory is needed.
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The per-call timeout and connection accessors of a client type whose
/// [`ClientCore`] is its `core` field.
macro_rules! core_accessors {
    () => {
        /// Sets the per-call timeout (default
        /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)); a call that takes
        /// longer fails with [`Error::Timeout`](crate::Error::Timeout).
        #[must_use]
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.core.timeout = timeout;
            self
        }

        /// The per-call timeout.
        pub fn timeout(&self) -> std::time::Duration {
            self.core.timeout
        }

        /// The underlying connection.
        pub fn connection(&self) -> &C {
            &self.core.conn
        }

        /// Returns the underlying connection.
        pub fn into_connection(self) -> C {
            self.core.conn
        }
    };
}
pub(crate) use core_accessors;

/// The backend accessors of a client type that sends `TK.*` commands
/// through its [`ClientCore`] `core` field.
macro_rules! tk_mode_accessors {
    () => {
        /// Sets which backend serves the commands (default
        /// [`TkMode::Auto`](crate::TkMode::Auto); `REDIS_TK_MODE`, see
        /// [`Config::tk_mode`](crate::Config::tk_mode)): the module, the
        /// Functions library, or whichever the server has.
        #[must_use]
        pub fn with_tk_mode(mut self, mode: crate::TkMode) -> Self {
            self.core.set_mode(mode);
            self
        }

        /// The backend mode asked for ([`with_tk_mode`](Self::with_tk_mode)).
        pub fn tk_mode(&self) -> crate::TkMode {
            self.core.mode()
        }

        /// The backend in use, once the first call has learnt it.
        pub fn backend(&self) -> Option<crate::functions::Backend> {
            self.core.backend()
        }
    };
}
pub(crate) use tk_mode_accessors;

/// `connect(url)`, for the client types whose `new` takes only the
/// connection.
macro_rules! connect_constructor {
    () => {
        /// Connects to a single Redis server, e.g. `"redis://127.0.0.1:6379/"`,
        /// through a [`ConnectionManager`](redis::aio::ConnectionManager)
        /// that reconnects on its own. Connection attempts time out after
        /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT) (the first connection
        /// is retried a few times with backoff), and the manager has no
        /// response timeout of its own: the per-call timeout applies. To
        /// tune it, build the connection yourself (or use
        /// [`Config::connect`](crate::Config::connect)) and pass it to `new`.
        ///
        /// This does not contact the tk backend: the first call learns
        /// whether the server has the module or needs the Functions library
        /// (see [`with_tk_mode`](Self::with_tk_mode)).
        pub async fn connect<I: redis::IntoConnectionInfo>(info: I) -> crate::Result<Self> {
            Ok(Self::new(crate::client::connect_manager(info).await?))
        }
    };
}
pub(crate) use connect_constructor;

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::functions::LIBRARY_VERSION;
    use crate::test_support::{error_reply, Fake};

    /// A server whose module can be unloaded: `COMMAND INFO` and the
    /// replies follow `module`; the library is always loaded.
    fn server(module: Arc<AtomicBool>) -> Fake {
        Fake::new(move |sent| {
            let loaded = module.load(Ordering::SeqCst);
            Some(match sent[0].as_str() {
                "COMMAND" if loaded => Ok(Value::Array(vec![Value::Array(vec![])])),
                "COMMAND" => Ok(Value::Array(vec![Value::Nil])),
                "FCALL_RO" => Ok(Value::BulkString(LIBRARY_VERSION.into())),
                "TK.RATELIMIT" if !loaded => Ok(error_reply("ERR unknown command 'TK.RATELIMIT'")),
                _ => Ok(Value::Int(1)),
            })
        })
        .asking()
    }

    use redis::Value;

    fn check() -> Cmd {
        let mut cmd = redis::cmd("TK.RATELIMIT");
        cmd.arg("k").arg(10).arg("1s");
        cmd
    }

    #[tokio::test]
    async fn the_backend_is_learnt_once_and_again_when_the_module_goes() {
        let module = Arc::new(AtomicBool::new(true));
        let conn = server(module.clone());
        let core = ClientCore::new(conn.clone());
        let clone = core.clone();
        assert_eq!(core.backend(), None);
        let _: i64 = core.query("TK.RATELIMIT", &check()).await.unwrap();
        let _: i64 = clone.query("TK.RATELIMIT", &check()).await.unwrap();
        assert_eq!(clone.backend(), Some(Backend::Module));
        let names: Vec<String> = conn.sent().iter().map(|c| c[0].clone()).collect();
        assert_eq!(names, ["COMMAND", "TK.RATELIMIT", "TK.RATELIMIT"]);

        // The module is gone (a failover): learnt again, sent once more.
        module.store(false, Ordering::SeqCst);
        let _: i64 = core.query("TK.RATELIMIT", &check()).await.unwrap();
        assert_eq!(clone.backend(), Some(Backend::Library));
        let sent = conn.sent();
        let names: Vec<&str> = sent[3..].iter().map(|c| c[0].as_str()).collect();
        assert_eq!(names, ["TK.RATELIMIT", "COMMAND", "FCALL_RO", "FCALL"]);
        assert_eq!(
            sent.last().unwrap(),
            &["FCALL", "tk_ratelimit", "1", "k", "10", "1s"]
        );
        // Other commands are never translated.
        let _: i64 = core.query("ZCARD", &redis::cmd("ZCARD")).await.unwrap();
        assert_eq!(conn.sent().last().unwrap(), &["ZCARD"]);
    }

    #[tokio::test]
    async fn module_mode_never_asks_and_functions_mode_always_calls() {
        let conn = server(Arc::new(AtomicBool::new(false)));
        let mut core = ClientCore::new(conn.clone());
        core.set_mode(TkMode::Module);
        assert_eq!(core.backend(), Some(Backend::Module));
        let err = core
            .query::<i64>("TK.RATELIMIT", &check())
            .await
            .unwrap_err();
        assert!(err.is_module_not_loaded(), "{err:?}");
        assert_eq!(conn.sent().len(), 1);

        let conn = server(Arc::new(AtomicBool::new(true)));
        let mut core = ClientCore::new(conn.clone());
        core.set_mode(TkMode::Functions);
        let _: i64 = core.query("TK.RATELIMIT", &check()).await.unwrap();
        let names: Vec<String> = conn.sent().iter().map(|c| c[0].clone()).collect();
        assert_eq!(names, ["FCALL_RO", "FCALL"]);
        assert_eq!(core.backend(), Some(Backend::Library));
    }
}
