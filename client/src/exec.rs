//! Sending one command with a deadline and mapping its outcome: shared by
//! every feature.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo};

use crate::error::{Error, Result};
use crate::reply;

/// Sends `cmd` (whose name is `command`) on a clone of `conn`, waits at most
/// `timeout` for the reply, and parses it as `T`.
///
/// Server error replies become [`Error::Server`] or
/// [`Error::ModuleNotLoaded`]; a reply of the wrong shape becomes
/// [`Error::UnexpectedReply`].
pub(crate) async fn query<C, T>(
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
    T::from_redis_value(reply).map_err(|err| unexpected_reply(command, &err))
}

fn unexpected_reply(command: &str, err: &redis::ParsingError) -> Error {
    Error::UnexpectedReply(format!("{command}: {}", reply::detail(err)))
}

/// Connects the self-reconnecting [`ConnectionManager`] behind every
/// `connect` constructor: connection attempts time out after
/// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT), and the manager has no
/// response timeout of its own (each type's per-call timeout applies).
pub(crate) async fn connect_manager<T: IntoConnectionInfo>(info: T) -> Result<ConnectionManager> {
    // Not a TK command: no error here can mean "module not loaded".
    const CONNECT: &str = "";
    let client = redis::Client::open(info).map_err(|err| Error::from_redis(err, CONNECT))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(crate::DEFAULT_TIMEOUT))
        .set_response_timeout(None);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|err| Error::from_redis(err, CONNECT))
}

/// The per-call timeout and connection accessors shared by every client
/// type (each has `conn: C` and `timeout: Duration` fields).
macro_rules! connection_accessors {
    () => {
        /// Sets the per-call timeout (default
        /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)); a call that takes
        /// longer fails with [`Error::Timeout`](crate::Error::Timeout).
        #[must_use]
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.timeout = timeout;
            self
        }

        /// The per-call timeout.
        pub fn timeout(&self) -> std::time::Duration {
            self.timeout
        }

        /// The underlying connection.
        pub fn connection(&self) -> &C {
            &self.conn
        }

        /// Returns the underlying connection.
        pub fn into_connection(self) -> C {
            self.conn
        }
    };
}
pub(crate) use connection_accessors;
