//! The connections a [`Config`] makes: the redis crate's settings for each
//! server, and [`Config::connect`] / [`Config::connect_cache`] for the
//! three topologies (see [`crate::connection`]).

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    TlsMode,
};

use super::{Addr, Config};
use crate::connection::{Connection, SentinelConnection, SentinelSettings, Topology};
use crate::error::Error;

impl Config {
    /// The redis crate's connection info for the main standalone instance
    /// (address, TLS flag, password, database).
    pub fn connection_info(&self) -> ConnectionInfo {
        self.connection_info_for(&self.addr)
    }
    /// The connection info for the cache: [`Config::effective_cache_addr`]
    /// with the same TLS flag, password and database as the main instance.
    pub fn cache_connection_info(&self) -> ConnectionInfo {
        self.connection_info_for(self.effective_cache_addr())
    }
    pub(super) fn connection_info_for(&self, addr: &Addr) -> ConnectionInfo {
        self.info(addr, self.redis_settings())
    }
    /// Database, user and password of every Redis connection.
    fn redis_settings(&self) -> RedisConnectionInfo {
        let mut settings = RedisConnectionInfo::default().set_db(i64::from(self.settings.db));
        if let Some(username) = &self.settings.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.settings.password {
            settings = settings.set_password(password.expose());
        }
        settings
    }
    /// The connection info of a Sentinel (its own password, database 0).
    pub(super) fn sentinel_connection_info(&self, addr: &Addr) -> ConnectionInfo {
        let mut settings = RedisConnectionInfo::default();
        if let Some(password) = &self.settings.sentinel_password {
            settings = settings.set_password(password.expose());
        }
        self.info(addr, settings)
    }
    fn info(&self, addr: &Addr, settings: RedisConnectionInfo) -> ConnectionInfo {
        let host = addr.host.clone();
        let conn_addr = if self.settings.tls {
            ConnectionAddr::TcpTls {
                host,
                port: addr.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, addr.port)
        };
        conn_addr
            .into_connection_info()
            .expect("a ConnectionAddr always converts to a ConnectionInfo")
            .set_redis_settings(settings)
    }
    /// The settings of the [`ConnectionManager`]s made by
    /// [`Config::connect`] and [`Config::connect_cache`] for a standalone
    /// instance: connection timeout `dial_timeout`, response timeout
    /// `read_timeout`, concurrency limit `pool_size`; reconnection backoff
    /// as in the redis crate.
    pub fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.dial_timeout))
            .set_response_timeout(Some(self.settings.read_timeout))
            .set_concurrency_limit(self.settings.pool_size)
    }
    /// The settings of the connections to cluster nodes and to the
    /// Sentinel-managed primary: the same timeouts and concurrency limit as
    /// [`Config::manager_config`].
    fn async_connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.dial_timeout))
            .set_response_timeout(Some(self.settings.read_timeout))
            .set_concurrency_limit(self.settings.pool_size)
    }
    /// The cluster client's settings: seed nodes, password, per-node
    /// timeouts and concurrency limit, and **no retries** by the redis
    /// crate, which would also resend commands after a connection error;
    /// [`Connection::Cluster`] sends again only refused commands (see
    /// [`crate::connection`]).
    pub(super) fn cluster_builder(&self) -> ClusterClientBuilder {
        let nodes = self
            .topology
            .cluster_nodes
            .iter()
            .map(|addr| self.connection_info_for(addr));
        ClusterClientBuilder::new(nodes)
            .connection_timeout(self.settings.dial_timeout)
            .response_timeout(self.settings.read_timeout)
            .connection_concurrency_limit(self.settings.pool_size)
            .retries(0)
    }
    /// Connects to the main topology (sessions, rate limits; see
    /// [Topologies](crate::config#topologies)):
    ///
    /// - standalone: a [`ConnectionManager`] with
    ///   [`Config::manager_config`], which reconnects on its own later (the
    ///   first connection is retried a few times with backoff first);
    /// - cluster: a cluster connection, once the seed nodes have told it
    ///   the slot map and it has connected to the primaries;
    /// - Sentinel: a connection to the primary, once Sentinel has named it.
    ///
    /// Fails with [`Error::Connection`] or [`Error::Timeout`] when the
    /// servers cannot be reached (or no Sentinel knows a healthy primary of
    /// that name), and with [`Error::InvalidArgument`] when TLS is
    /// requested but not supported by this build.
    pub async fn connect(&self) -> Result<Connection, Error> {
        match self.topology() {
            Topology::Standalone => self
                .connect_to(self.connection_info())
                .await
                .map(Connection::Standalone),
            Topology::Cluster => self.connect_cluster().await.map(Connection::Cluster),
            Topology::Sentinel => self.connect_sentinel().await.map(Connection::Sentinel),
        }
    }
    /// Connects to the cache's instance: the standalone
    /// [`Config::cache_addr`] when set, else the main topology, like
    /// [`Config::connect`] (with a connection of its own).
    pub async fn connect_cache(&self) -> Result<Connection, Error> {
        match &self.cache_addr {
            Some(addr) => self
                .connect_to(self.connection_info_for(addr))
                .await
                .map(Connection::Standalone),
            None => self.connect().await,
        }
    }
    async fn connect_to(&self, info: ConnectionInfo) -> Result<ConnectionManager, Error> {
        let client = self.client_for(info)?;
        ConnectionManager::new_with_config(client, self.manager_config())
            .await
            .map_err(Error::connecting)
    }
    async fn connect_cluster(&self) -> Result<ClusterConnection, Error> {
        if let Some(addr) = self.topology.cluster_nodes.first() {
            require_supported(&self.connection_info_for(addr))?;
        }
        let client = self.cluster_builder().build().map_err(Error::connecting)?;
        client
            .get_async_connection()
            .await
            .map_err(Error::connecting)
    }
    /// The primary's name as Sentinel knows it.
    fn master_name(&self) -> String {
        self.topology
            .sentinel_master
            .clone()
            .expect("a valid Config in Sentinel mode has a primary name")
    }
    /// The sentinels' connection info.
    pub(super) fn sentinel_infos(&self) -> Result<Vec<ConnectionInfo>, Error> {
        let sentinels: Vec<ConnectionInfo> = self
            .topology
            .sentinel_addrs
            .iter()
            .map(|addr| self.sentinel_connection_info(addr))
            .collect();
        for info in &sentinels {
            require_supported(info)?;
        }
        Ok(sentinels)
    }
    /// A client that asks `sentinels` for the primary and connects to it
    /// with this config's password, database and TLS flag.
    pub(super) fn sentinel_client(
        &self,
        sentinels: Vec<ConnectionInfo>,
    ) -> Result<SentinelClient, Error> {
        let mut primary =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(self.redis_settings());
        if self.settings.tls {
            primary = primary.set_tls_mode(TlsMode::Secure);
        }
        SentinelClient::build(
            sentinels,
            self.master_name(),
            Some(primary),
            SentinelServerType::Master,
        )
        .map_err(Error::connecting)
    }
    async fn connect_sentinel(&self) -> Result<SentinelConnection, Error> {
        let master_name = self.master_name();
        let sentinels = self.sentinel_infos()?;
        let client = self.sentinel_client(sentinels.clone())?;
        let conn = SentinelConnection::new(
            client,
            self.topology
                .sentinel_addrs
                .iter()
                .map(Addr::to_string)
                .collect(),
            SentinelSettings {
                master_name,
                db: i64::from(self.settings.db),
                connection_config: self.async_connection_config(),
                resolve_timeout: self
                    .settings
                    .dial_timeout
                    .saturating_add(self.settings.read_timeout),
                response_timeout: self.settings.read_timeout,
                watch: sentinels,
            },
        );
        conn.resolve_master().await?;
        Ok(conn)
    }
    pub(super) fn client_for(&self, info: ConnectionInfo) -> Result<redis::Client, Error> {
        require_supported(&info)?;
        redis::Client::open(info).map_err(Error::connecting)
    }
}

/// Refuses an address that needs TLS when this build has no TLS support.
fn require_supported(info: &ConnectionInfo) -> Result<(), Error> {
    if info.addr().is_supported() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "TLS (rediss://) was requested for {}, but this build of tk-redis has no TLS \
         support (the redis crate's TLS features are not enabled); refusing to connect \
         without TLS",
        info.addr()
    )))
}
