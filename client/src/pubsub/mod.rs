//! Typed pub/sub for conversations and notifications: a [`Publisher`] sends
//! JSON payloads, [`subscribe`] returns a [`Subscription`] stream of typed
//! [`Event`]s that survives Redis restarts.
//!
//! Channels are named `tk:messages:<conversation>` ([`Channel::Messages`])
//! and `tk:notifications:<user>` ([`Channel::Notifications`]); payloads are
//! JSON (`serde_json`).
//!
//! ```no_run
//! # async fn demo(conn: redis::aio::ConnectionManager) -> tk_redis::Result<()> {
//! use futures_util::StreamExt; // or tokio_stream::StreamExt
//! use tk_redis::pubsub::{self, Channel, Event, Publisher};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Chat { from: String, text: String }
//!
//! let client = redis::Client::open("redis://127.0.0.1/").expect("valid URL");
//! let mut events = pubsub::subscribe::<Chat>(client, vec![Channel::messages("c42")]).await?;
//!
//! let publisher = Publisher::new(conn);
//! let chat = Chat { from: "alice".into(), text: "hi".into() };
//! let receivers = publisher.publish_message("c42", &chat).await?;
//! # let _ = receivers;
//!
//! while let Some(event) = events.next().await {
//!     match event {
//!         Ok(Event::Message { channel, payload }) => println!("{channel}: {}", payload.text),
//!         Ok(Event::Reconnected { down_for }) => {
//!             println!("reconnected after {down_for:?}; reload what may have been missed");
//!         }
//!         Ok(_) => {}
//!         Err(err) => println!("skipped a message: {err}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Delivery
//!
//! Redis pub/sub is fire-and-forget: a message reaches the subscribers
//! connected when it is published, and nobody else. A [`Subscription`]
//! reconnects by itself when its connection is lost (server restart,
//! failover, network trouble, `CLIENT KILL`), but whatever was published
//! while it was away is lost; the stream says so with
//! [`Event::Reconnected`], so the application can reload from its source of
//! truth.
//!
//! # Cluster and Sentinel
//!
//! [`Publisher`] works through any [`Connection`](crate::Connection). On a
//! Redis Cluster, `PUBLISH` is forwarded to every node, so subscribers
//! connected to any node receive the message (the count it returns covers
//! only the node that ran it). With Sentinel, the primary's `PUBLISH` is
//! also replicated to its replicas.
//!
//! A subscription needs a dedicated connection to **one server**, so it
//! does not take a [`Connection`](crate::Connection). Subscribe through the
//! [`Config`](crate::Config) instead, which follows the topology:
//! [`Config::subscribe`](crate::Config::subscribe) connects to a cluster's
//! seed node and moves on to the next seed node when that one is gone
//! (classic pub/sub is cluster-wide, so any node will do), and with
//! Sentinel asks the Sentinels for the primary at every (re)connection, so
//! it moves to the new primary after a failover.
//!
//! [`subscribe`] takes a [`redis::Client`] for one server and resubscribes
//! to that same address after a disconnection, whatever it is.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::args;
use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::keys;
use crate::reply::Count;
use crate::DEFAULT_TIMEOUT;

mod subscription;
#[cfg(test)]
mod tests;

pub use subscription::*;

const CMD_PUBLISH: &str = "PUBLISH";
const CMD_SUBSCRIBE: &str = "SUBSCRIBE";

/// Prefix of conversation channels: `tk:messages:<conversation>` (see
/// [`message_channel`]).
pub const MESSAGES_PREFIX: &str = "tk:messages:";
/// Prefix of notification channels: `tk:notifications:<user>` (see
/// [`notification_channel`]).
pub const NOTIFICATIONS_PREFIX: &str = "tk:notifications:";

/// Default interval between keepalive pings of a [`Subscription`] (see
/// [`SubscribeOptions`]).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// First delay between reconnection attempts (after an immediate first try).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Events buffered between the background task and the stream's reader.
const BUFFER: usize = 256;

/// The channel of a conversation: `tk:messages:<conversation>`.
///
/// ```
/// assert_eq!(tk_redis::pubsub::message_channel("c42"), "tk:messages:c42");
/// ```
pub fn message_channel(conversation: &str) -> String {
    keys::prefixed(MESSAGES_PREFIX, conversation)
}

/// The channel of a user's notifications: `tk:notifications:<user>`.
///
/// ```
/// assert_eq!(tk_redis::pubsub::notification_channel("u7"), "tk:notifications:u7");
/// ```
pub fn notification_channel(user: &str) -> String {
    keys::prefixed(NOTIFICATIONS_PREFIX, user)
}

/// A channel to subscribe to.
///
/// ```
/// use tk_redis::pubsub::Channel;
///
/// let channel = Channel::messages("c42");
/// assert_eq!(channel.name(), "tk:messages:c42");
/// assert_eq!(Channel::parse(&channel.name()), Some(channel));
/// assert_eq!(Channel::notifications("u7").to_string(), "tk:notifications:u7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A conversation's messages: `tk:messages:<conversation>`.
    Messages(String),
    /// A user's notifications: `tk:notifications:<user>`.
    Notifications(String),
}

impl Channel {
    /// [`Channel::Messages`] of `conversation`.
    pub fn messages(conversation: impl Into<String>) -> Channel {
        Channel::Messages(conversation.into())
    }

    /// [`Channel::Notifications`] of `user`.
    pub fn notifications(user: impl Into<String>) -> Channel {
        Channel::Notifications(user.into())
    }

    /// The Redis channel name, e.g. `tk:messages:c42`.
    pub fn name(&self) -> String {
        match self {
            Channel::Messages(conversation) => message_channel(conversation),
            Channel::Notifications(user) => notification_channel(user),
        }
    }

    /// The channel named `name` (as in [`Event::Message::channel`]), or
    /// `None` when it has neither prefix.
    ///
    /// ```
    /// use tk_redis::pubsub::Channel;
    /// assert_eq!(Channel::parse("tk:messages:c42"), Some(Channel::messages("c42")));
    /// assert_eq!(Channel::parse("other"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Channel> {
        if let Some(conversation) = name.strip_prefix(MESSAGES_PREFIX) {
            Some(Channel::messages(conversation))
        } else {
            name.strip_prefix(NOTIFICATIONS_PREFIX)
                .map(Channel::notifications)
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, id) = match self {
            Channel::Messages(conversation) => (MESSAGES_PREFIX, conversation),
            Channel::Notifications(user) => (NOTIFICATIONS_PREFIX, user),
        };
        write!(f, "{prefix}{id}")
    }
}

/// Publishes JSON payloads to conversation and notification channels.
///
/// Generic over the connection like [`RateLimiter`](crate::RateLimiter): by
/// default a [`ConnectionManager`], but any cloneable async connection
/// works. Cloning a `Publisher` is cheap and shares the connection.
///
/// Every call waits at most [`timeout`](Publisher::timeout) (default
/// [`DEFAULT_TIMEOUT`], 3 s) and then fails with [`Error::Timeout`]. See
/// the [module docs](self) for an example.
#[derive(Clone)]
pub struct Publisher<C = ConnectionManager> {
    core: ClientCore<C>,
}

impl<C> fmt::Debug for Publisher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core
            .debug_struct(f, "Publisher")
            .finish_non_exhaustive()
    }
}

impl<C> Publisher<C> {
    /// Wraps an existing connection, with the default timeout.
    pub fn new(conn: C) -> Self {
        Publisher {
            core: ClientCore::new(conn),
        }
    }

    crate::client::core_accessors!();
}

impl<C> Publisher<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Publishes `payload` as JSON to conversation `conversation`
    /// (`tk:messages:<conversation>`). Returns how many subscribers received
    /// it (on Redis Cluster, only those connected to the node that ran the
    /// command).
    pub async fn publish_message<T: Serialize + ?Sized>(
        &self,
        conversation: &str,
        payload: &T,
    ) -> Result<u64> {
        self.publish_to(message_channel(conversation), payload)
            .await
    }

    /// Publishes `payload` as JSON to `user`'s notifications
    /// (`tk:notifications:<user>`). Returns how many subscribers received it.
    pub async fn publish_notification<T: Serialize + ?Sized>(
        &self,
        user: &str,
        payload: &T,
    ) -> Result<u64> {
        self.publish_to(notification_channel(user), payload).await
    }

    /// Publishes `payload` as JSON to `channel`. Returns how many
    /// subscribers received it.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &Channel,
        payload: &T,
    ) -> Result<u64> {
        self.publish_to(channel.name(), payload).await
    }

    /// A payload that cannot be serialized (e.g. a map with non-string
    /// keys) fails with [`Error::InvalidArgument`] before anything is sent.
    async fn publish_to<T: Serialize + ?Sized>(&self, channel: String, payload: &T) -> Result<u64> {
        let json = args::to_json(payload, &format!("the payload for {channel}"))?;
        let mut cmd = redis::cmd(CMD_PUBLISH);
        cmd.arg(channel).arg(json);
        let Count(receivers) = self.core.query(CMD_PUBLISH, &cmd).await?;
        Ok(receivers)
    }
}

/// What a [`Subscription`] yields; see the [module docs](self) for an
/// example.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message, its JSON payload decoded as `T`.
    Message {
        /// The channel it was published to, e.g. `tk:messages:c42` (see
        /// [`Channel::parse`]).
        channel: String,
        /// The decoded payload.
        payload: T,
    },
    /// The connection was lost and is back: every channel is subscribed
    /// again. **Messages published in the meantime were missed**; reload
    /// whatever state the application derives from them.
    ///
    /// This is the first item after resubscribing: messages that follow it
    /// were published after the subscription was restored.
    Reconnected {
        /// From noticing the lost connection to being subscribed again.
        down_for: Duration,
    },
}

/// Settings of a [`Subscription`] (see [`subscribe_with`]).
///
/// ```no_run
/// # async fn demo(config: tk_redis::Config) -> tk_redis::Result<()> {
/// use std::time::Duration;
/// use tk_redis::pubsub::{Channel, SubscribeOptions};
///
/// // Notice a silently dead connection within about 5 s.
/// let options = SubscribeOptions::default()
///     .ping_interval(Some(Duration::from_secs(5)))
///     .timeout(Duration::from_secs(1));
/// let events = config
///     .subscribe_with::<serde_json::Value>(vec![Channel::notifications("u7")], options)
///     .await?;
/// # let _ = events;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// How long one attempt to connect and subscribe may take, and how long
    /// to wait for a keepalive ping's reply. Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// How often to ping the server to detect a silently dead connection
    /// (one that was dropped without the socket being closed, e.g. by a
    /// network failure); `None` disables pings, so only a closed socket is
    /// noticed. Default [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Option<Duration>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            timeout: DEFAULT_TIMEOUT,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
        }
    }
}

impl SubscribeOptions {
    /// Sets [`SubscribeOptions::timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`SubscribeOptions::ping_interval`].
    #[must_use]
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }
}

/// Subscribes to `channels` with the default [`SubscribeOptions`]; see
/// [`subscribe_with`], and the [module docs](self) for an example.
pub async fn subscribe<T: DeserializeOwned>(
    client: Client,
    channels: Vec<Channel>,
) -> Result<Subscription<T>> {
    subscribe_with(client, channels, SubscribeOptions::default()).await
}

/// Connects to the server of `client` (a single Redis server), subscribes to
/// `channels`, and returns the stream of their messages with payloads
/// decoded from JSON as `T`.
///
/// When this returns, the subscription is confirmed by the server: every
/// message published from then on is delivered (until a disconnection).
/// If this first attempt fails, the error is returned
/// ([`Error::Connection`], [`Error::Timeout`], [`Error::Server`] e.g. for a
/// refused ACL); an empty `channels` fails with [`Error::InvalidArgument`].
///
/// Afterwards the [`Subscription`] keeps itself subscribed: when its
/// connection is lost, a background task reconnects, forever: it retries at
/// once, then after delays doubling from 50 ms up to 2 s (each shortened by
/// a random jitter of up to half, so that many subscribers do not retry in
/// lockstep), subscribes again and yields [`Event::Reconnected`]. The loss
/// is noticed when the socket closes or, for a connection that died
/// silently, when a keepalive ping goes unanswered
/// ([`SubscribeOptions::ping_interval`]). A message whose
/// payload does not decode as `T` yields `Err(`[`Error::UnexpectedReply`]`)`
/// naming the channel, and the stream goes on.
///
/// Each subscription uses one connection of its own: subscribe to many
/// channels in one call rather than one call per channel. Dropping the
/// [`Subscription`] stops the task and closes the connection.
///
/// Must be called within a Tokio runtime. See [`SubscribeOptions`] for an
/// example.
pub async fn subscribe_with<T: DeserializeOwned>(
    client: Client,
    channels: Vec<Channel>,
    options: SubscribeOptions,
) -> Result<Subscription<T>> {
    subscribe_from(Source::from(client), channels, options).await
}

/// [`subscribe_with`] on the servers `source` names; behind
/// [`Config::subscribe_with`](crate::Config::subscribe_with) too.
pub(crate) async fn subscribe_from<T: DeserializeOwned>(
    source: Source,
    channels: Vec<Channel>,
    options: SubscribeOptions,
) -> Result<Subscription<T>> {
    if channels.is_empty() {
        return Err(Error::InvalidArgument(
            "subscribe needs at least one channel".into(),
        ));
    }
    let mut seen = HashSet::new();
    let names: Vec<String> = channels
        .iter()
        .map(Channel::name)
        .filter(|name| seen.insert(name.clone()))
        .collect();
    Ok(Subscription {
        raw: RawSubscription::start(source, names, options).await?,
        channels,
        payload: PhantomData,
    })
}
