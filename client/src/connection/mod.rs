//! One connection type for every deployment: [`Connection`] talks to a
//! standalone Redis, a Redis Cluster or a primary managed by Redis
//! Sentinel, chosen by [`Config`](crate::Config) and made by
//! [`Config::connect`](crate::Config::connect).
//!
//! `Connection` implements [`redis::aio::ConnectionLike`] and is cheap to
//! clone, so every client type takes it through its `new` constructor,
//! unchanged: `RateLimiter::new(conn)`, `SessionStore::new(conn)`,
//! `Cache::new(conn)`, `Lock::new(conn)`, `Leaderboard::new(conn)`,
//! `Publisher::new(conn)` and [`health::check(&conn, ..)`](crate::health::check).
//! Subscriptions need a connection of their own:
//! [`Config::subscribe`](crate::Config::subscribe) follows the topology the
//! same way (see [`crate::pubsub`]).
//!
//! | topology | chosen by | variant | when the primary fails |
//! |---|---|---|---|
//! | standalone | `REDIS_ADDR` | [`Connection::Standalone`] ([`ConnectionManager`]) | reconnects to the same address |
//! | Redis Cluster | `REDIS_CLUSTER_NODES` | [`Connection::Cluster`] ([`ClusterConnection`]) | refreshes the slot map and follows `MOVED`/`ASK`; waits out `CLUSTERDOWN` and the like (below) |
//! | Sentinel | `REDIS_SENTINEL_ADDRS` + `REDIS_SENTINEL_MASTER` | [`Connection::Sentinel`] ([`SentinelConnection`]) | moves on Sentinel's `+switch-master` announcement, or the next call after an error asks Sentinel for the new primary |
//!
//! # Nothing is sent twice
//!
//! `TK.*` commands are not idempotent (a rate-limit check that is sent
//! again consumes again), so no variant ever sends a command again once it
//! *may* have reached the server. A call in flight when a connection breaks
//! or times out fails with a transient error ([`Error::is_transient`](crate::Error::is_transient)), and
//! the caller decides (the [`RateLimiter`](crate::RateLimiter) applies its
//! [`FailurePolicy`](crate::FailurePolicy)).
//!
//! What is sent again are commands the server *refused without executing
//! them*:
//!
//! | reply | meaning | cluster connection |
//! |---|---|---|
//! | `MOVED` | the slot lives on another node | sends again at once to the node named in the reply (the redis crate refreshes its slot map for later calls) |
//! | `ASK` | the slot is being migrated and the key is already on the target | sends again to the target, after `ASKING` |
//! | `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, `LOADING`, `READONLY`, `NOREPLICAS` | failover, resharding or replication catching up | waits, then sends again |
//! | no connection to the slot's node | the node is being reconnected | waits, then sends again |
//!
//! Waits start at 25 ms and double up to 800 ms, for at most
//! [`CLUSTER_RETRIES`] sends again (about 4.8 s in all), so a failover of a
//! few seconds is ridden out as long as the caller's own timeout allows
//! (3 s by default, `with_timeout` on each client type). The redis
//! crate's own retries are turned off for connections made by
//! [`Config::connect`](crate::Config::connect): they also resend commands
//! after a connection error, when the command may already have run.
//! Pipelines ([`ConnectionLike::req_packed_commands`]) are passed through
//! without any of this; the client types do not use them.
//!
//! The Sentinel connection sends nothing again at all: it reports the
//! error, and after one that means the primary is gone or demoted (I/O
//! error, dropped or refused connection, timeout, `READONLY`,
//! `MASTERDOWN`, `LOADING`) it forgets the connection, so that the *next*
//! call asks Sentinel where the primary is now. While no sentinel names a
//! healthy primary (mid-failover), calls fail fast with a transient error,
//! and Sentinel is asked again at most every [`SENTINEL_RETRY_INTERVAL`]
//! (100 ms), not once per call.
//!
//! It also subscribes to `+switch-master` on every sentinel. A *planned*
//! failover (`SENTINEL FAILOVER`) produces no error: the old primary keeps
//! accepting writes until Sentinel demotes it, about 10 s later, and those
//! writes are lost. On the announcement the connection moves to the new
//! primary at once. If a sentinel refuses the subscription (ACL) or is
//! down, the watch keeps retrying in the background and errors still move
//! the connection as above.
//!
//! # Routing `TK.*` commands on a cluster
//!
//! The redis crate routes a command it does not know by its first argument,
//! taken as the key. That is right for every `TK.*` command except
//! `TK.RATELIMIT.ALL numkeys key [key ...] ...`, whose first argument is
//! the number of keys: [`Connection::Cluster`] routes that one to the
//! primary of its first key's slot (all its keys must share a slot anyway:
//! give them a common hash tag, see [`keys`](crate::keys)).
//!
//! With the Functions library (see [`crate::functions`]) the client types
//! send `FCALL <function> <numkeys> <key> ...` instead, which the redis
//! crate routes by its first key, and `FUNCTION LOAD`, which it sends to
//! every primary.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tk_redis::{Config, RateLimiter, Topology};
//!
//! // REDIS_CLUSTER_NODES=redis-1:7000,redis-2:7001 selects a cluster, and so on.
//! let config = Config::from_env()?;
//! let conn = config.connect().await?;
//! assert_eq!(conn.topology(), config.topology());
//! let limiter = RateLimiter::new(conn.clone());
//! # let _ = limiter;
//! # Ok(()) }
//! ```

use std::fmt;

use futures_util::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

mod cluster;
mod sentinel;
#[cfg(test)]
mod tests;

pub use cluster::*;
pub use sentinel::*;

/// How a deployment is reached; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topology {
    /// One Redis server (`REDIS_ADDR`).
    Standalone,
    /// A Redis Cluster (`REDIS_CLUSTER_NODES`).
    Cluster,
    /// A primary found through Redis Sentinel (`REDIS_SENTINEL_ADDRS`,
    /// `REDIS_SENTINEL_MASTER`).
    Sentinel,
}

impl Topology {
    /// `"standalone"`, `"cluster"` or `"sentinel"`, e.g. for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Cluster => "cluster",
            Topology::Sentinel => "sentinel",
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection to a standalone Redis, a Redis Cluster or a
/// Sentinel-managed primary; see the [module docs](self).
///
/// Cloning is cheap and shares the underlying connection(s).
#[derive(Clone)]
pub enum Connection {
    /// One server, through the self-reconnecting [`ConnectionManager`].
    Standalone(ConnectionManager),
    /// A Redis Cluster. `TK.RATELIMIT.ALL` is routed by its first key, and
    /// refused commands are sent again as described in the
    /// [module docs](self#nothing-is-sent-twice). A `ClusterConnection`
    /// made by hand keeps whatever retries its builder configured.
    Cluster(ClusterConnection),
    /// The primary named by Redis Sentinel.
    Sentinel(SentinelConnection),
}

impl Connection {
    /// Which kind of deployment this connection talks to.
    pub fn topology(&self) -> Topology {
        match self {
            Connection::Standalone(_) => Topology::Standalone,
            Connection::Cluster(_) => Topology::Cluster,
            Connection::Sentinel(_) => Topology::Sentinel,
        }
    }
}

/// Shows the topology (and, for Sentinel, the primary's name and the
/// address in use); never a password.
impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Sentinel(sentinel) => f
                .debug_struct("Connection")
                .field("topology", &Topology::Sentinel)
                .field("master_name", &sentinel.master_name())
                .field("master_addr", &sentinel.master_addr())
                .finish(),
            other => f
                .debug_struct("Connection")
                .field("topology", &other.topology())
                .finish_non_exhaustive(),
        }
    }
}

impl From<ConnectionManager> for Connection {
    fn from(conn: ConnectionManager) -> Self {
        Connection::Standalone(conn)
    }
}

impl From<ClusterConnection> for Connection {
    fn from(conn: ClusterConnection) -> Self {
        Connection::Cluster(conn)
    }
}

impl From<SentinelConnection> for Connection {
    fn from(conn: SentinelConnection) -> Self {
        Connection::Sentinel(conn)
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => cluster_command(conn, cmd).boxed(),
            Connection::Sentinel(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
            Connection::Sentinel(conn) => conn.get_db(),
        }
    }
}
