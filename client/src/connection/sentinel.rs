//! [`SentinelConnection`]: the primary that Redis Sentinel names, followed
//! through failovers.

use crate::error::Error;
use crate::pubsub::{Item, RawSubscription, SubscribeOptions};
use crate::telemetry;
use futures_util::FutureExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    Value,
};
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

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
/// the [module docs](super)); the tasks stop when the last clone is
/// dropped.
///
/// Cloning is cheap and shares the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tk_redis::{Config, Connection};
///
/// let config = Config::builder()
///     .sentinel(["sentinel-1:26379", "sentinel-2:26379"], "tk-state")
///     .build()?;
/// if let Connection::Sentinel(sentinel) = config.connect().await? {
///     println!("{} is at {:?}", sentinel.master_name(), sentinel.master_addr());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SentinelConnection {
    pub(super) shared: Arc<SentinelShared>,
}

pub(super) struct SentinelShared {
    pub(super) master_name: String,
    pub(super) sentinels: Vec<String>,
    pub(super) db: i64,
    /// Asks the sentinels; locked for the whole resolution, so one caller
    /// resolves while the others wait.
    pub(super) resolver: tokio::sync::Mutex<SentinelClient>,
    pub(super) connection_config: AsyncConnectionConfig,
    pub(super) resolve_timeout: Duration,
    pub(super) response_timeout: Duration,
    /// Never locked across an `.await`.
    pub(super) state: StdMutex<SentinelState>,
    /// The `+switch-master` watches, one task per sentinel; stopped when
    /// the last clone of the connection is dropped.
    pub(super) watches: OnceLock<Vec<AbortHandle>>,
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
/// primary by at most this long. See [`SentinelConnection`] for an example.
pub const SENTINEL_RETRY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(super) struct SentinelState {
    pub(super) master: Option<Master>,
    /// Connections made so far; identifies `master`.
    pub(super) generation: u64,
    /// The last resolution's error and when it failed, if it failed.
    pub(super) last_failure: Option<(RedisError, Instant)>,
}

impl SentinelState {
    /// What a call gets at `now` without asking Sentinel: the primary in
    /// use, or the error of a resolution that failed less than
    /// [`SENTINEL_RETRY_INTERVAL`] ago. `None`: Sentinel must be asked.
    pub(super) fn settled(&self, now: Instant) -> Option<RedisResult<Master>> {
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
pub(super) struct Master {
    pub(super) conn: MultiplexedConnection,
    pub(super) addr: String,
    pub(super) generation: u64,
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
        self.shared
            .master()
            .await
            .map(|master| master.addr)
            .map_err(Error::connecting)
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
    pub(super) fn state(&self) -> MutexGuard<'_, SentinelState> {
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
    pub(super) fn primary_moved(&self, addr: Option<&str>) {
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
    pub(super) fn discard(&self, generation: u64) {
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
pub(super) const SWITCH_MASTER: &str = "+switch-master";

/// The new primary's `ip:port` if `payload` announces a switch of
/// `master_name`.
pub(super) fn switched_to(payload: &[u8], master_name: &str) -> Option<String> {
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
pub(super) struct InFlight<'a> {
    pub(super) shared: &'a SentinelShared,
    pub(super) generation: u64,
    pub(super) started: Instant,
    pub(super) finished: bool,
}

impl InFlight<'_> {
    /// The request finished; `lost` says whether its outcome means the
    /// primary is gone, so that the connection is forgotten.
    pub(super) fn finish(mut self, lost: bool) {
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
pub(super) fn abandoned_threshold(response_timeout: Duration) -> Duration {
    let margin = (response_timeout / 10).min(Duration::from_millis(10));
    response_timeout - margin
}

/// Whether `err` means that the primary is gone, unreachable or demoted,
/// so that Sentinel must be asked again.
pub(super) fn means_primary_lost(err: &RedisError) -> bool {
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
pub(super) fn is_failover_code(code: &str) -> bool {
    matches!(code, "READONLY" | "MASTERDOWN" | "LOADING")
}

pub(super) fn value_means_primary_lost(value: &Value) -> bool {
    matches!(value, Value::ServerError(err) if is_failover_code(err.code()))
}

pub(super) fn reply_means_primary_lost(result: &RedisResult<Value>) -> bool {
    match result {
        Err(err) => means_primary_lost(err),
        Ok(value) => value_means_primary_lost(value),
    }
}

pub(super) fn replies_mean_primary_lost(result: &RedisResult<Vec<Value>>) -> bool {
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
