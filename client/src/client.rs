//! What every client type is built on: a [`ClientCore`] holds the
//! connection and the per-call timeout and sends commands with a deadline;
//! [`Counter`]s back the per-object metrics; two macros give each type
//! the same public accessors and `connect` constructor.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo};

use crate::error::{Error, Result};
use crate::reply;
use crate::DEFAULT_TIMEOUT;

/// A client type's connection and per-call timeout.
#[derive(Clone)]
pub(crate) struct ClientCore<C> {
    pub(crate) conn: C,
    pub(crate) timeout: Duration,
}

impl<C> ClientCore<C> {
    /// `conn` with the default timeout.
    pub(crate) fn new(conn: C) -> Self {
        ClientCore {
            conn,
            timeout: DEFAULT_TIMEOUT,
        }
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
    /// Sends `cmd` (whose name is `command`) on a clone of the connection,
    /// waits at most the timeout for the reply, and parses it as `T`.
    ///
    /// Server error replies become [`Error::Server`] or
    /// [`Error::ModuleNotLoaded`]; a reply of the wrong shape becomes
    /// [`Error::UnexpectedReply`].
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        command: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        // Connection handles (ConnectionManager, ClusterConnection,
        // MultiplexedConnection) are cheap to clone and share one connection.
        let mut conn = self.conn.clone();
        let reply = tokio::time::timeout(self.timeout, conn.req_packed_command(cmd))
            .await
            .map_err(|_| Error::Timeout)?
            // Some connection types return error replies as `Ok(ServerError)`,
            // others as `Err`: both end up in `Error::from_redis`.
            .and_then(redis::Value::extract_error)
            .map_err(|err| Error::from_redis(err, command))?;
        T::from_redis_value(reply)
            .map_err(|err| Error::UnexpectedReply(format!("{command}: {}", reply::detail(&err))))
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
        /// This does not check that the tk module is loaded; the first call
        /// reports [`Error::ModuleNotLoaded`](crate::Error::ModuleNotLoaded)
        /// if it is not.
        pub async fn connect<I: redis::IntoConnectionInfo>(info: I) -> crate::Result<Self> {
            Ok(Self::new(crate::client::connect_manager(info).await?))
        }
    };
}
pub(crate) use connect_constructor;
