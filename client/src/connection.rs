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
//! or times out fails with a transient error ([`Error::is_transient`]), and
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
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::SentinelClient;
use redis::{
    Arg, AsyncConnectionConfig, Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, Value,
};

use tokio::task::AbortHandle;

use crate::backoff;
use crate::error::Error;
use crate::pubsub::{Item, RawSubscription, SubscribeOptions};
use crate::telemetry;

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

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// How many times [`Connection::Cluster`] sends a refused command again
/// (see the [module docs](self#nothing-is-sent-twice)).
pub const CLUSTER_RETRIES: u32 = 10;

/// The first wait before sending a refused command again; it doubles up
/// to [`CLUSTER_MAX_BACKOFF`].
const CLUSTER_MIN_BACKOFF: Duration = Duration::from_millis(25);
const CLUSTER_MAX_BACKOFF: Duration = Duration::from_millis(800);

/// The index in argv (0 = the command name) of the key a `TK.*` command
/// is routed by on a cluster, or `None` for other commands (routed by the
/// redis crate).
fn tk_routing_key_index(command: &[u8]) -> Option<usize> {
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
fn arg_bytes(cmd: &Cmd, index: usize) -> Option<&[u8]> {
    match cmd.args_iter().nth(index)? {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    }
}

/// Explicit routing for commands the redis crate would route by the wrong
/// argument (`TK.RATELIMIT.ALL`); `None` leaves the routing to the crate.
fn cluster_routing(cmd: &Cmd) -> Option<RoutingInfo> {
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
enum Refusal {
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
fn is_refusal_code(code: &str) -> bool {
    code == "MOVED" || crate::error::is_unavailable_code(code)
}

fn refusal_of_error(err: &RedisError) -> Option<Refusal> {
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
fn redirect_target(err: &RedisError) -> Option<(String, u16)> {
    let (addr, _slot) = err.redirect_node()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

fn refusal(result: &RedisResult<Value>) -> Option<Refusal> {
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
async fn cluster_command(conn: &mut ClusterConnection, cmd: &Cmd) -> RedisResult<Value> {
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

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

/// A connection to the primary that Redis Sentinel names; made by
/// [`Config::connect`](crate::Config::connect) when `REDIS_SENTINEL_ADDRS`
/// is set.
///
/// It holds one multiplexed connection to the current primary. After an
/// error that means the primary is gone or was demoted (I/O error, dropped
/// or refused connection, timeout, or the replies `READONLY`, `MASTERDOWN`
/// and `LOADING`) it forgets that connection, and the **next** call asks
/// Sentinel again. It never sends a command again by itself: the failed
/// call returns its error (transient, see [`Error::is_transient`]).
/// A call that the caller abandons (its own timeout) after waiting about as
/// long as the response timeout counts as a timeout too.
///
/// Finding the primary is done by one caller at a time: concurrent calls
/// wait for it and then share the new connection, or the error if it
/// failed; calls within [`SENTINEL_RETRY_INTERVAL`] of a failure get its
/// error too, and a later call tries again. Finding the primary (asking the
/// sentinels, checking the primary's role, connecting) is bounded by the
/// configured dial timeout plus read timeout.
///
/// A background task per sentinel listens to its `+switch-master`
/// announcements and moves the connection to the announced primary (see
/// the [module docs](self)); the tasks stop when the last clone is
/// dropped.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    master_name: String,
    sentinels: Vec<String>,
    db: i64,
    /// Asks the sentinels; locked for the whole resolution, so one caller
    /// resolves while the others wait.
    resolver: tokio::sync::Mutex<SentinelClient>,
    connection_config: AsyncConnectionConfig,
    resolve_timeout: Duration,
    response_timeout: Duration,
    /// Never locked across an `.await`.
    state: StdMutex<SentinelState>,
    /// The `+switch-master` watches, one task per sentinel; stopped when
    /// the last clone of the connection is dropped.
    watches: OnceLock<Vec<AbortHandle>>,
}

impl Drop for SentinelShared {
    fn drop(&mut self) {
        for watch in self.watches.get().into_iter().flatten() {
            watch.abort();
        }
    }
}

/// After a resolution fails, the next one starts no sooner than this: calls
/// in between get its error at once. During a failover every call would
/// otherwise ask all the sentinels again (hundreds of times a second per
/// client); this caps it at 10 a second, and delays noticing the new
/// primary by at most this long.
pub const SENTINEL_RETRY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct SentinelState {
    master: Option<Master>,
    /// Connections made so far; identifies `master`.
    generation: u64,
    /// The last resolution's error and when it failed, if it failed.
    last_failure: Option<(RedisError, Instant)>,
}

impl SentinelState {
    /// What a call gets at `now` without asking Sentinel: the primary in
    /// use, or the error of a resolution that failed less than
    /// [`SENTINEL_RETRY_INTERVAL`] ago. `None`: Sentinel must be asked.
    fn settled(&self, now: Instant) -> Option<RedisResult<Master>> {
        if let Some(master) = &self.master {
            return Some(Ok(master.clone()));
        }
        match &self.last_failure {
            Some((err, failed_at))
                if now.saturating_duration_since(*failed_at) < SENTINEL_RETRY_INTERVAL =>
            {
                Some(Err(err.clone()))
            }
            _ => None,
        }
    }
}

#[derive(Clone)]
struct Master {
    conn: MultiplexedConnection,
    addr: String,
    generation: u64,
}

/// What [`SentinelConnection`] needs besides the sentinels.
pub(crate) struct SentinelSettings {
    pub(crate) master_name: String,
    pub(crate) db: i64,
    pub(crate) connection_config: AsyncConnectionConfig,
    pub(crate) resolve_timeout: Duration,
    pub(crate) response_timeout: Duration,
    /// How to reach each sentinel for the `+switch-master` watch.
    pub(crate) watch: Vec<ConnectionInfo>,
}

impl SentinelConnection {
    /// Wraps `client` (which must look up a primary); nothing is connected
    /// until the first call or [`SentinelConnection::resolve_master`].
    /// `sentinels` are the addresses shown by `Debug`.
    pub(crate) fn new(
        client: SentinelClient,
        sentinels: Vec<String>,
        settings: SentinelSettings,
    ) -> SentinelConnection {
        let shared = Arc::new(SentinelShared {
            master_name: settings.master_name,
            sentinels,
            db: settings.db,
            resolver: tokio::sync::Mutex::new(client),
            connection_config: settings.connection_config,
            resolve_timeout: settings.resolve_timeout,
            response_timeout: settings.response_timeout,
            state: StdMutex::default(),
            watches: OnceLock::new(),
        });
        // Spawned once the Arc exists, so that a watch never finds its
        // connection missing while it is being built.
        let options = SubscribeOptions::default().timeout(settings.resolve_timeout);
        let watches = settings
            .watch
            .into_iter()
            .map(|sentinel| {
                let watch = watch_switches(sentinel, Arc::downgrade(&shared), options);
                tokio::spawn(watch).abort_handle()
            })
            .collect();
        let _ = shared.watches.set(watches);
        SentinelConnection { shared }
    }

    /// The primary's name as Sentinel knows it (`REDIS_SENTINEL_MASTER`).
    pub fn master_name(&self) -> &str {
        &self.shared.master_name
    }

    /// The sentinels' addresses (`REDIS_SENTINEL_ADDRS`).
    pub fn sentinels(&self) -> &[String] {
        &self.shared.sentinels
    }

    /// The `host:port` of the primary in use, or `None` when there is no
    /// connection (before the first call, or after an error that will make
    /// the next call ask Sentinel again).
    pub fn master_addr(&self) -> Option<String> {
        self.shared
            .state()
            .master
            .as_ref()
            .map(|master| master.addr.clone())
    }

    /// Returns the `host:port` of the primary in use, asking Sentinel and
    /// connecting first when there is none.
    ///
    /// Fails with [`Error::Connection`] when no sentinel answers or none
    /// knows a healthy primary by that name (e.g. during a failover), and
    /// with [`Error::Timeout`] when that takes longer than the resolution
    /// timeout.
    pub async fn resolve_master(&self) -> crate::Result<String> {
        // Not a TK command: no error here can mean "module not loaded".
        const RESOLVE: &str = "";
        self.shared
            .master()
            .await
            .map(|master| master.addr)
            .map_err(|err| Error::from_redis(err, RESOLVE))
    }

    /// The current primary's connection, and the watch of one request on
    /// it.
    async fn begin(&self) -> RedisResult<(MultiplexedConnection, InFlight<'_>)> {
        let master = self.shared.master().await?;
        let watch = InFlight {
            shared: &self.shared,
            generation: master.generation,
            started: Instant::now(),
            finished: false,
        };
        Ok((master.conn, watch))
    }
}

impl SentinelShared {
    fn state(&self) -> MutexGuard<'_, SentinelState> {
        // The state is always consistent between statements: a panic
        // elsewhere while it was locked cannot have broken it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current primary's connection, resolving it first if needed.
    async fn master(&self) -> RedisResult<Master> {
        if let Some(settled) = self.state().settled(Instant::now()) {
            return settled;
        }
        let mut client = self.resolver.lock().await;
        // Resolved, or failed, while we waited for the lock: share that
        // outcome rather than queueing another resolution behind it.
        if let Some(settled) = self.state().settled(Instant::now()) {
            return settled;
        }
        let resolved = tokio::time::timeout(
            self.resolve_timeout,
            resolve(&mut client, &self.connection_config),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "asking Sentinel for the primary {:?} took longer than {:?}",
                    self.master_name, self.resolve_timeout
                ),
            )))
        });
        let mut state = self.state();
        match resolved {
            Ok((conn, addr)) => {
                state.generation += 1;
                // The first resolution is the initial connect; every later
                // one replaces a primary that was lost or moved.
                if state.generation > 1 {
                    telemetry::sentinel_reconnect(&self.master_name);
                }
                let master = Master {
                    conn,
                    addr,
                    generation: state.generation,
                };
                state.master = Some(master.clone());
                state.last_failure = None;
                Ok(master)
            }
            Err(err) => {
                state.last_failure = Some((err.clone(), Instant::now()));
                Err(err)
            }
        }
    }

    /// A sentinel announced a new primary at `addr` (`None`: announcements
    /// may have been missed): forget a connection to any other address, and
    /// let the next call ask Sentinel at once.
    fn primary_moved(&self, addr: Option<&str>) {
        let mut state = self.state();
        if state
            .master
            .as_ref()
            .is_some_and(|master| addr != Some(master.addr.as_str()))
        {
            state.master = None;
        }
        state.last_failure = None;
    }

    /// Forgets the connection of `generation`, if it is still the current
    /// one, so that the next call asks Sentinel again.
    fn discard(&self, generation: u64) {
        let mut state = self.state();
        if state
            .master
            .as_ref()
            .is_some_and(|master| master.generation == generation)
        {
            state.master = None;
        }
    }
}

/// The channel on which a sentinel announces a new primary, as
/// `<name> <old-ip> <old-port> <new-ip> <new-port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// The new primary's `ip:port` if `payload` announces a switch of
/// `master_name`.
fn switched_to(payload: &[u8], master_name: &str) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        [name, _old_ip, _old_port, new_ip, new_port] if *name == master_name => {
            let port: u16 = new_port.parse().ok()?;
            Some(format!("{new_ip}:{port}"))
        }
        _ => None,
    }
}

/// Listens to one sentinel's `+switch-master` announcements while the
/// connection lives, so that a *planned* failover (`SENTINEL FAILOVER`)
/// moves it to the new primary at once. Without this, the demoted primary
/// keeps accepting writes until Sentinel reconfigures it (about 10 s
/// later) and those writes are lost; errors alone give no signal, since
/// there are none. Connects (and reconnects) forever, with backoff
/// ([`RawSubscription::spawn`]).
async fn watch_switches(
    sentinel: ConnectionInfo,
    shared: Weak<SentinelShared>,
    options: SubscribeOptions,
) {
    let Ok(client) = redis::Client::open(sentinel) else {
        return; // the same address already served the first lookup
    };
    let mut subscription = RawSubscription::spawn(client, vec![SWITCH_MASTER.to_owned()], options);
    while let Some(item) = subscription.next().await {
        let Some(connection) = shared.upgrade() else {
            return;
        };
        match item {
            Item::Message { payload, .. } => {
                if let Some(addr) = switched_to(&payload, &connection.master_name) {
                    telemetry::sentinel_switch(&connection.master_name);
                    connection.primary_moved(Some(&addr));
                }
            }
            // Announcements may have been missed while disconnected.
            Item::Reconnected { .. } => connection.primary_moved(None),
        }
    }
}

/// Asks the sentinels for the primary and connects to it.
async fn resolve(
    client: &mut SentinelClient,
    config: &AsyncConnectionConfig,
) -> RedisResult<(MultiplexedConnection, String)> {
    let master = client.async_get_client().await?;
    let addr = master.get_connection_info().addr().to_string();
    let conn = master
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    Ok((conn, addr))
}

/// Discards the connection when a request is abandoned by its caller after
/// at least the response timeout: that is a timeout too.
struct InFlight<'a> {
    shared: &'a SentinelShared,
    generation: u64,
    started: Instant,
    finished: bool,
}

impl InFlight<'_> {
    /// The request finished; `lost` says whether its outcome means the
    /// primary is gone, so that the connection is forgotten.
    fn finish(mut self, lost: bool) {
        self.finished = true;
        if lost {
            self.shared.discard(self.generation);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished
            && self.started.elapsed() >= abandoned_threshold(self.shared.response_timeout)
        {
            self.shared.discard(self.generation);
        }
    }
}

/// How long a request must have waited for its reply, when its caller
/// abandons it, to count as timed out: the response timeout, less a
/// margin of a tenth of it (at most 10 ms), because a caller's timeout of
/// the same length started a moment earlier and fires first.
fn abandoned_threshold(response_timeout: Duration) -> Duration {
    let margin = (response_timeout / 10).min(Duration::from_millis(10));
    response_timeout - margin
}

/// Whether `err` means that the primary is gone, unreachable or demoted,
/// so that Sentinel must be asked again.
fn means_primary_lost(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || err.code().is_some_and(is_failover_code)
}

/// Replies of a server that is no longer (or not yet) a usable primary.
/// Not `NOREPLICAS`: a healthy primary sends it too while its replicas lag,
/// and forgetting it would reconnect on every call; after a failover the
/// `+switch-master` watch moves the connection instead.
fn is_failover_code(code: &str) -> bool {
    matches!(code, "READONLY" | "MASTERDOWN" | "LOADING")
}

fn value_means_primary_lost(value: &Value) -> bool {
    matches!(value, Value::ServerError(err) if is_failover_code(err.code()))
}

fn reply_means_primary_lost(result: &RedisResult<Value>) -> bool {
    match result {
        Err(err) => means_primary_lost(err),
        Ok(value) => value_means_primary_lost(value),
    }
}

fn replies_mean_primary_lost(result: &RedisResult<Vec<Value>>) -> bool {
    match result {
        Err(err) => means_primary_lost(err),
        Ok(values) => values.iter().any(value_means_primary_lost),
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let (mut conn, watch) = self.begin().await?;
            let result = conn.req_packed_command(cmd).await;
            watch.finish(reply_means_primary_lost(&result));
            result
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let (mut conn, watch) = self.begin().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            watch.finish(replies_mean_primary_lost(&result));
            result
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

/// Shows the primary's name, the sentinels and the primary in use.
impl fmt::Debug for SentinelConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConnection")
            .field("master_name", &self.shared.master_name)
            .field("sentinels", &self.shared.sentinels)
            .field("master_addr", &self.master_addr())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Cmd {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd
    }

    fn server_error(line: &str) -> RedisError {
        crate::test_support::error_reply(line)
            .extract_error()
            .expect_err("an error reply")
    }

    // ---- routing ---------------------------------------------------------

    #[test]
    fn routing_key_of_each_command() {
        for (command, index) in [
            ("TK.RATELIMIT", Some(1)),
            ("TK.RATELIMIT.PEEK", Some(1)),
            ("TK.RATELIMIT.RESET", Some(1)),
            ("TK.RATELIMIT.ALL", Some(2)),
            ("tk.ratelimit.all", Some(2)),
            ("Tk.RateLimit.All", Some(2)),
            ("TK.LOCK.ACQUIRE", Some(1)),
            ("TK.LOCK.RELEASE", Some(1)),
            ("TK.CACHE.GET", Some(1)),
            ("TK.CACHE.SET", Some(1)),
            ("TK.SESSION.CREATE", Some(1)),
            ("TK.SESSION.ROTATE", Some(1)),
            ("tk.session.revokeall", Some(1)),
            ("TK.RATELIMIT.ALLX", Some(1)),
            ("GET", None),
            ("EVAL", None),
            ("TK", None),
            ("", None),
        ] {
            assert_eq!(tk_routing_key_index(command.as_bytes()), index, "{command}");
        }
    }

    #[test]
    fn ratelimit_all_is_routed_by_its_first_key() {
        let all = cmd(&["TK.RATELIMIT.ALL", "2", "{u42}:s", "{u42}:d", "10", "1000"]);
        assert_eq!(
            cluster_routing(&all),
            Some(RoutingInfo::SingleNode(
                SingleNodeRoutingInfo::SpecificNode(Route::with_key("{u42}:s", SlotAddr::Master))
            ))
        );
        let lower = cmd(&["tk.ratelimit.all", "1", "k", "10", "1000"]);
        assert_eq!(
            cluster_routing(&lower),
            Some(RoutingInfo::SingleNode(
                SingleNodeRoutingInfo::SpecificNode(Route::with_key("k", SlotAddr::Master))
            ))
        );
        // Commands routed by argv[1] are left to the redis crate, as is a
        // TK.RATELIMIT.ALL without keys (the server rejects it).
        for args in [
            &["TK.RATELIMIT", "k", "10", "1000"][..],
            &["TK.SESSION.GET", "s"],
            &["GET", "k"],
            &["TK.RATELIMIT.ALL", "1"],
        ] {
            assert_eq!(cluster_routing(&cmd(args)), None, "{args:?}");
        }
    }

    #[test]
    fn the_crate_computes_the_same_slots_as_redis() {
        for key in ["foo", "bar", "{foo}:x", "a{}b", "tk:rl:{user42}:day", ""] {
            assert_eq!(
                Route::with_key(key, SlotAddr::Master),
                Route::new(crate::keys::key_slot(key), SlotAddr::Master),
                "{key}"
            );
        }
    }

    // ---- cluster refusals ------------------------------------------------

    #[test]
    fn only_unexecuted_refusals_are_sent_again() {
        for line in [
            "MOVED 3999",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "NOREPLICAS Not enough good replicas to write.",
        ] {
            assert_eq!(
                refusal_of_error(&server_error(line)),
                Some(Refusal::Wait),
                "{line}"
            );
            let value = crate::test_support::error_reply(line);
            assert_eq!(refusal(&Ok(value)), Some(Refusal::Wait), "{line}");
        }
        for (line, asking) in [
            ("ASK 3999 10.0.0.7:6381", true),
            ("MOVED 3999 10.0.0.7:6381", false),
        ] {
            let redirect = Refusal::Redirect {
                host: "10.0.0.7".into(),
                port: 6381,
                asking,
            };
            assert_eq!(
                refusal_of_error(&server_error(line)),
                Some(redirect.clone())
            );
            let value = crate::test_support::error_reply(line);
            assert_eq!(refusal(&Ok(value)), Some(redirect), "{line}");
        }
        assert_eq!(
            refusal_of_error(&server_error("MOVED 3999 [::1]:7000")),
            Some(Refusal::Redirect {
                host: "::1".into(),
                port: 7000,
                asking: false
            })
        );
        // An ASK that names no node cannot be followed.
        assert_eq!(refusal_of_error(&server_error("ASK 3999")), None);
        assert_eq!(
            refusal_of_error(&RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "No connections found"
            ))),
            Some(Refusal::Wait)
        );
        // Errors after which the command may have run, and ordinary
        // refusals, are returned as they are.
        for err in [
            server_error("ERR limit must be between 1 and 1000000"),
            server_error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            server_error("CROSSSLOT Keys in request don't hash to the same slot"),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            assert_eq!(refusal_of_error(&err), None, "{err:?}");
        }
        assert_eq!(refusal(&Ok(Value::Int(1))), None);
    }

    // ---- sentinel --------------------------------------------------------

    #[test]
    fn errors_that_make_sentinel_be_asked_again() {
        for err in [
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            RedisError::from((ErrorKind::Io, "connection dropped")),
            server_error("READONLY You can't write against a read only replica."),
            server_error("MASTERDOWN Link with MASTER is down"),
            server_error("LOADING Redis is loading the dataset in memory"),
        ] {
            assert!(means_primary_lost(&err), "{err:?}");
        }
        for err in [
            server_error("ERR limit must be between 1 and 1000000"),
            server_error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            server_error("NOPERM this user has no permissions"),
            server_error("NOREPLICAS Not enough good replicas to write."),
            RedisError::from((ErrorKind::Client, "bad argument")),
        ] {
            assert!(!means_primary_lost(&err), "{err:?}");
        }
        let readonly = crate::test_support::error_reply("READONLY no");
        assert!(reply_means_primary_lost(&Ok(readonly.clone())));
        assert!(!reply_means_primary_lost(&Ok(Value::Int(1))));
        assert!(replies_mean_primary_lost(&Ok(vec![Value::Okay, readonly])));
        assert!(!replies_mean_primary_lost(&Ok(vec![Value::Okay])));
    }

    #[test]
    fn switch_master_announcements_of_our_primary_only() {
        let payload = b"tkmaster 127.0.0.1 6379 10.0.0.7 6380";
        assert_eq!(
            switched_to(payload, "tkmaster").as_deref(),
            Some("10.0.0.7:6380")
        );
        assert_eq!(switched_to(payload, "other"), None);
        for malformed in [
            &b""[..],
            b"tkmaster",
            b"tkmaster 127.0.0.1 6379 10.0.0.7",
            b"tkmaster 127.0.0.1 6379 10.0.0.7 port",
            b"tkmaster 127.0.0.1 6379 10.0.0.7 6380 extra",
            b"tkmaster 127.0.0.1 6379 10.0.0.7 \xff",
        ] {
            assert_eq!(switched_to(malformed, "tkmaster"), None, "{malformed:?}");
        }
    }

    #[test]
    fn a_failed_resolution_answers_calls_for_the_retry_interval() {
        let failed_at = Instant::now();
        let not_found = RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "Master with given name not found in sentinel",
        ));
        let state = SentinelState {
            last_failure: Some((not_found, failed_at)),
            ..SentinelState::default()
        };
        for elapsed in [
            Duration::ZERO,
            SENTINEL_RETRY_INTERVAL - Duration::from_millis(1),
        ] {
            assert!(
                matches!(
                    state.settled(failed_at + elapsed),
                    Some(Err(err)) if err.kind() == ErrorKind::MasterNameNotFoundBySentinel
                ),
                "{elapsed:?}"
            );
        }
        assert!(state.settled(failed_at + SENTINEL_RETRY_INTERVAL).is_none());
        // A clock reading from before the failure does not panic.
        assert!(state
            .settled(failed_at - Duration::from_millis(1))
            .is_some());
        // Nothing known yet: ask.
        assert!(SentinelState::default().settled(failed_at).is_none());
    }

    // The behaviours against real Sentinels and clusters (failover,
    // timeouts, shared lookups, routing, refusals sent again, nothing sent
    // twice) are tested in tests/tests/connection.rs.

    #[test]
    fn abandoned_requests_count_as_timed_out_near_the_response_timeout() {
        assert_eq!(
            abandoned_threshold(Duration::from_secs(3)),
            Duration::from_millis(2990)
        );
        assert_eq!(
            abandoned_threshold(Duration::from_millis(50)),
            Duration::from_millis(45)
        );
        assert_eq!(abandoned_threshold(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn topology_names() {
        assert_eq!(Topology::Standalone.to_string(), "standalone");
        assert_eq!(Topology::Cluster.as_str(), "cluster");
        assert_eq!(format!("{}", Topology::Sentinel), "sentinel");
    }

    #[test]
    fn connections_are_send_and_sync() {
        fn check<T: Send + Sync + Clone + ConnectionLike + 'static>() {}
        check::<Connection>();
        check::<SentinelConnection>();
    }
}
