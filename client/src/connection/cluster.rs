//! [`Connection::Cluster`](crate::Connection::Cluster)'s sending: `TK.RATELIMIT.ALL` routed by its first
//! key, and only commands refused unexecuted sent again (see the
//! [module docs](super#nothing-is-sent-twice)).

use crate::backoff;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, ErrorKind, RedisError, RedisResult, Value};
use std::time::Duration;

/// How many times [`Connection::Cluster`](crate::Connection::Cluster) sends a refused command again
/// (see the [module docs](super#nothing-is-sent-twice)).
pub const CLUSTER_RETRIES: u32 = 10;

/// The first wait before sending a refused command again; it doubles up
/// to [`CLUSTER_MAX_BACKOFF`].
pub(super) const CLUSTER_MIN_BACKOFF: Duration = Duration::from_millis(25);
pub(super) const CLUSTER_MAX_BACKOFF: Duration = Duration::from_millis(800);

/// The index in argv (0 = the command name) of the key a `TK.*` command
/// is routed by on a cluster, or `None` for other commands (routed by the
/// redis crate).
pub(super) fn tk_routing_key_index(command: &[u8]) -> Option<usize> {
    let is_tk = command
        .get(..3)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"TK."));
    if !is_tk {
        None
    } else if command.eq_ignore_ascii_case(b"TK.RATELIMIT.ALL") {
        // TK.RATELIMIT.ALL numkeys key [key ...] ...
        Some(2)
    } else {
        Some(1)
    }
}

/// Where the argument `index` of `cmd` is, as bytes (`None` for a missing
/// or non-plain argument).
pub(super) fn arg_bytes(cmd: &Cmd, index: usize) -> Option<&[u8]> {
    match cmd.args_iter().nth(index)? {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    }
}

/// Explicit routing for commands the redis crate would route by the wrong
/// argument (`TK.RATELIMIT.ALL`); `None` leaves the routing to the crate.
pub(super) fn cluster_routing(cmd: &Cmd) -> Option<RoutingInfo> {
    let index = tk_routing_key_index(arg_bytes(cmd, 0)?)?;
    if index == 1 {
        return None; // what the crate does already
    }
    let key = arg_bytes(cmd, index)?;
    Some(RoutingInfo::SingleNode(
        SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)),
    ))
}

/// A reply that guarantees the command was not executed, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Wait, then send again by slot (the crate refreshes its slot map).
    Wait,
    /// Send again at once to the node a redirection names: the slot's
    /// owner (`MOVED`), or the node importing it, after `ASKING` (`ASK`).
    Redirect {
        host: String,
        port: u16,
        asking: bool,
    },
}

/// Error codes that a node sends instead of executing the command: a
/// redirection, or a transient refusal (see
/// [`Error::Connection`](crate::Error::Connection)).
pub(super) fn is_refusal_code(code: &str) -> bool {
    code == "MOVED" || crate::error::is_unavailable_code(code)
}

pub(super) fn refusal_of_error(err: &RedisError) -> Option<Refusal> {
    if err.kind() == ErrorKind::ClusterConnectionNotFound {
        // Raised before anything is sent (no connection to the node).
        return Some(Refusal::Wait);
    }
    let code = err.code()?;
    if code == "ASK" || code == "MOVED" {
        if let Some((host, port)) = redirect_target(err) {
            return Some(Refusal::Redirect {
                host,
                port,
                asking: code == "ASK",
            });
        }
    }
    is_refusal_code(code).then_some(Refusal::Wait)
}

/// The `host` and `port` a `MOVED` or `ASK` reply names (`None` when it
/// cannot be read: an `ASK` is then returned as it is, a `MOVED` waited
/// out like other refusals).
pub(super) fn redirect_target(err: &RedisError) -> Option<(String, u16)> {
    let (addr, _slot) = err.redirect_node()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

pub(super) fn refusal(result: &RedisResult<Value>) -> Option<Refusal> {
    match result {
        Err(err) => refusal_of_error(err),
        Ok(Value::ServerError(server_error)) => {
            let err = Value::ServerError(server_error.clone())
                .extract_error()
                .err()?;
            refusal_of_error(&err)
        }
        Ok(_) => None,
    }
}

/// Sends `cmd` on the cluster, routing `TK.RATELIMIT.ALL` by its first key
/// and sending again only commands that were refused unexecuted.
pub(super) async fn cluster_command(conn: &mut ClusterConnection, cmd: &Cmd) -> RedisResult<Value> {
    let routing = cluster_routing(cmd);
    let mut waits = backoff::doubling(
        CLUSTER_MIN_BACKOFF,
        CLUSTER_MAX_BACKOFF,
        Some(CLUSTER_RETRIES as usize),
    );
    let mut redirect = None;
    loop {
        let result = match redirect.take() {
            Some((host, port, asking)) => send_to(conn, cmd, host, port, asking).await,
            None => match &routing {
                Some(routing) => conn.route_command(cmd.clone(), routing.clone()).await,
                None => conn.req_packed_command(cmd).await,
            },
        };
        let Some(refused) = refusal(&result) else {
            return result;
        };
        // Every send again counts, redirections included; only refusals wait.
        let Some(wait) = waits.next() else {
            return result;
        };
        match refused {
            Refusal::Redirect { host, port, asking } => redirect = Some((host, port, asking)),
            Refusal::Wait => tokio::time::sleep(wait).await,
        }
    }
}

/// `cmd` (preceded by `ASKING` when `asking`) on the connection to
/// `host:port`.
async fn send_to(
    conn: &mut ClusterConnection,
    cmd: &Cmd,
    host: String,
    port: u16,
    asking: bool,
) -> RedisResult<Value> {
    if !asking {
        let node = SingleNodeRoutingInfo::ByAddress { host, port };
        return conn
            .route_command(cmd.clone(), RoutingInfo::SingleNode(node))
            .await;
    }
    let mut pipeline = redis::pipe();
    pipeline.cmd("ASKING").add_command(cmd.clone());
    let mut replies = conn
        .route_pipeline(
            pipeline,
            1,
            1,
            SingleNodeRoutingInfo::ByAddress { host, port },
        )
        .await?;
    replies
        .pop()
        .ok_or_else(|| RedisError::from((ErrorKind::UnexpectedReturnType, "no reply after ASKING")))
}
