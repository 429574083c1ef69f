//! Sending one command with a deadline and mapping its outcome: shared by
//! every feature (rate limiting now; sessions, cache, locks later).

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue};

use crate::error::{Error, Result};

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
    let text = err.to_string();
    let detail = text.strip_prefix("Incompatible type - ").unwrap_or(&text);
    Error::UnexpectedReply(format!("{command}: {detail}"))
}
