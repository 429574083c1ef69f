//! Typed pub/sub subscriptions that follow a [`Config`]'s topology.

use serde::de::DeserializeOwned;

use super::Config;
use crate::connection::Topology;
use crate::error::Error;
use crate::pubsub::{self, Channel, Source, SubscribeOptions, Subscription};

impl Config {
    /// Subscribes to `channels` on the main topology with the default
    /// [`SubscribeOptions`]; see [`Config::subscribe_with`].
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        channels: Vec<Channel>,
    ) -> Result<Subscription<T>, Error> {
        self.subscribe_with(channels, SubscribeOptions::default())
            .await
    }
    /// Like [`pubsub::subscribe_with`], on the main topology (not the
    /// cache's instance), and following it when a server goes away:
    ///
    /// - standalone: the instance at [`Config::addr`], reconnecting to it;
    /// - cluster: a seed node ([`Config::cluster_nodes`]); classic pub/sub
    ///   is cluster-wide, so any node will do. A reconnection tries the
    ///   node that worked last, then the next seed node on each failure,
    ///   so a node that is gone for good is left behind;
    /// - Sentinel: the primary that the Sentinels name at each
    ///   (re)connection, so a subscription moves to the new primary after
    ///   a failover.
    ///
    /// Fails like [`pubsub::subscribe_with`] when the first attempt does,
    /// and with [`Error::InvalidArgument`] when TLS is requested but not
    /// supported by this build.
    pub async fn subscribe_with<T: DeserializeOwned>(
        &self,
        channels: Vec<Channel>,
        options: SubscribeOptions,
    ) -> Result<Subscription<T>, Error> {
        let source = match self.topology() {
            Topology::Standalone => Source::from(self.client_for(self.connection_info())?),
            Topology::Cluster => Source::Servers {
                clients: self
                    .topology
                    .cluster_nodes
                    .iter()
                    .map(|addr| self.client_for(self.connection_info_for(addr)))
                    .collect::<Result<_, _>>()?,
                current: 0,
            },
            Topology::Sentinel => Source::Sentinel(self.sentinel_client(self.sentinel_infos()?)?),
        };
        pubsub::subscribe_from(source, channels, options).await
    }
}
