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
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, PubSubSink, PubSubStream};
use redis::sentinel::SentinelClient;
use redis::{Client, Msg};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::args;
use crate::backoff;
use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::reply::{from_json, Count};
use crate::telemetry;
use crate::DEFAULT_TIMEOUT;

const CMD_PUBLISH: &str = "PUBLISH";
const CMD_SUBSCRIBE: &str = "SUBSCRIBE";

/// Prefix of conversation channels: `tk:messages:<conversation>`.
pub const MESSAGES_PREFIX: &str = "tk:messages:";
/// Prefix of notification channels: `tk:notifications:<user>`.
pub const NOTIFICATIONS_PREFIX: &str = "tk:notifications:";

/// Default interval between keepalive pings of a [`Subscription`].
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// First delay between reconnection attempts (after an immediate first try).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Events buffered between the background task and the stream's reader.
const BUFFER: usize = 256;

/// The channel of a conversation: `tk:messages:<conversation>`.
pub fn message_channel(conversation: &str) -> String {
    concat(MESSAGES_PREFIX, conversation)
}

/// The channel of a user's notifications: `tk:notifications:<user>`.
pub fn notification_channel(user: &str) -> String {
    concat(NOTIFICATIONS_PREFIX, user)
}

fn concat(prefix: &str, id: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + id.len());
    out.push_str(prefix);
    out.push_str(id);
    out
}

/// A channel to subscribe to.
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
/// [`DEFAULT_TIMEOUT`], 3 s) and then fails with [`Error::Timeout`].
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

/// What a [`Subscription`] yields.
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
/// [`subscribe_with`].
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
/// Must be called within a Tokio runtime.
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

/// Where a subscription (re)connects; asked again on every attempt.
pub(crate) enum Source {
    /// Fixed servers, any of which will do: one server, or the nodes of a
    /// cluster (classic pub/sub is cluster-wide). An attempt uses the
    /// server that worked last; a failed one moves on to the next, so a
    /// node that is gone for good is left behind.
    Servers {
        clients: Vec<Client>,
        /// Index of the server the next attempt uses.
        current: usize,
    },
    /// The primary that Sentinel names at the time of the attempt.
    Sentinel(SentinelClient),
}

impl From<Client> for Source {
    fn from(client: Client) -> Self {
        Source::Servers {
            clients: vec![client],
            current: 0,
        }
    }
}

impl Source {
    /// The client for the next attempt.
    async fn client(&mut self) -> redis::RedisResult<Client> {
        match self {
            Source::Servers { clients, current } => Ok(clients[*current].clone()),
            Source::Sentinel(sentinel) => sentinel.async_get_client().await,
        }
    }

    /// The last attempt failed: the next one tries another server.
    fn failed(&mut self) {
        if let Source::Servers { clients, current } = self {
            *current = (*current + 1) % clients.len();
        }
    }
}

/// The machinery behind a [`Subscription`], on raw channel names and
/// payloads: a background task that reconnects forever, as
/// [`subscribe_with`] describes. Also used by the Sentinel connection to
/// watch `+switch-master`. Dropping it stops the task.
pub(crate) struct RawSubscription {
    receiver: mpsc::Receiver<Item>,
    task: tokio::task::AbortHandle,
}

impl RawSubscription {
    /// Connects to a server of `source` and subscribes to `names`: one
    /// attempt, whose error is returned.
    pub(crate) async fn start(
        mut source: Source,
        names: Vec<String>,
        options: SubscribeOptions,
    ) -> Result<RawSubscription> {
        let connection = connect(&mut source, &names, options.timeout).await?;
        let (sender, receiver) = mpsc::channel(BUFFER);
        let task = tokio::spawn(run(source, names, options, connection, sender));
        Ok(RawSubscription {
            receiver,
            task: task.abort_handle(),
        })
    }

    /// Like [`RawSubscription::start`], but the first connection is made
    /// in the background too, retried like a reconnection (its success
    /// yields no [`Item::Reconnected`]). Never fails; must be called within
    /// a Tokio runtime.
    pub(crate) fn spawn(
        client: Client,
        names: Vec<String>,
        options: SubscribeOptions,
    ) -> RawSubscription {
        let (sender, receiver) = mpsc::channel(BUFFER);
        let task = tokio::spawn(async move {
            let mut source = Source::from(client);
            if let Some(connection) = reconnect(&mut source, &names, &options, &sender).await {
                run(source, names, options, connection, sender).await;
            }
        });
        RawSubscription {
            receiver,
            task: task.abort_handle(),
        }
    }

    /// The next message or reconnection; `None` only once the background
    /// task has stopped (the runtime is shutting down).
    pub(crate) async fn next(&mut self) -> Option<Item> {
        self.receiver.recv().await
    }
}

impl Drop for RawSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stream of [`Event`]s from [`subscribe`]: `Result<Event<T>>` items.
///
/// The stream does not end on its own (it reconnects instead); it ends
/// only if its background task stops, i.e. when the Tokio runtime shuts
/// down. Dropping it unsubscribes and closes the connection.
pub struct Subscription<T> {
    raw: RawSubscription,
    channels: Vec<Channel>,
    // `fn() -> T`: the stream yields `T`s but holds none, so it is Send,
    // Sync and Unpin whatever `T` is.
    payload: PhantomData<fn() -> T>,
}

impl<T> Subscription<T> {
    /// The channels subscribed to.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = Result<Event<T>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .raw
            .receiver
            .poll_recv(cx)
            .map(|item| item.map(decode))
    }
}

/// What the background task hands to the stream; decoding happens in the
/// reader, so `T` need not be `Send`.
#[derive(Debug)]
pub(crate) enum Item {
    Message { channel: String, payload: Vec<u8> },
    Reconnected { down_for: Duration },
}

impl Item {
    fn from_msg(msg: &Msg) -> Item {
        Item::Message {
            channel: msg.get_channel_name().to_owned(),
            payload: msg.get_payload_bytes().to_vec(),
        }
    }
}

fn decode<T: DeserializeOwned>(item: Item) -> Result<Event<T>> {
    match item {
        Item::Message { channel, payload } => {
            let payload = from_json(
                &payload,
                "pub/sub message",
                &format!("the payload on {channel}"),
            )?;
            Ok(Event::Message { channel, payload })
        }
        Item::Reconnected { down_for } => {
            telemetry::pubsub_reconnect();
            Ok(Event::Reconnected { down_for })
        }
    }
}

/// One attempt to find a server in `source`, open a pub/sub connection and
/// subscribe to `names`, within `timeout`.
async fn connect(source: &mut Source, names: &[String], timeout: Duration) -> Result<Connection> {
    let attempt = async {
        let client = source.client().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(names).await?;
        Ok(pubsub.split())
    };
    let result = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| Error::Timeout)
        .and_then(|connected| connected.map_err(|err| Error::from_redis(err, CMD_SUBSCRIBE)));
    if result.is_err() {
        source.failed();
    }
    result
}

/// A subscribed pub/sub connection, split into its command and message halves.
type Connection = (PubSubSink, PubSubStream);

/// Why [`forward`] returned.
enum Outcome {
    /// The connection is gone: reconnect.
    Lost,
    /// The [`Subscription`] was dropped: stop.
    Closed,
}

/// The background task: forwards messages, and reconnects when the
/// connection is lost, until the receiver is dropped.
async fn run(
    mut source: Source,
    names: Vec<String>,
    options: SubscribeOptions,
    mut connection: Connection,
    sender: mpsc::Sender<Item>,
) {
    loop {
        // `forward` consumes the connection, so a lost one is closed before
        // reconnecting: a connection given up on while still open (an
        // unanswered ping) would otherwise stay subscribed on the server
        // next to its replacement.
        match forward(connection, &sender, &options).await {
            Outcome::Closed => return,
            Outcome::Lost => {}
        }
        let down_since = Instant::now();
        let Some(next) = reconnect(&mut source, &names, &options, &sender).await else {
            return;
        };
        connection = next;
        let down_for = down_since.elapsed();
        if sender.send(Item::Reconnected { down_for }).await.is_err() {
            return;
        }
    }
}

/// Connects and subscribes to `names`, retrying at once, then after waits
/// doubling from [`MIN_BACKOFF`] to [`MAX_BACKOFF`] with jitter, until it
/// succeeds; `None` if the receiver of `sender` is dropped first.
async fn reconnect(
    source: &mut Source,
    names: &[String],
    options: &SubscribeOptions,
    sender: &mpsc::Sender<Item>,
) -> Option<Connection> {
    let mut waits = backoff::doubling_with_jitter(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        tokio::select! {
            connected = connect(source, names, options.timeout) => {
                if let Ok(connection) = connected {
                    return Some(connection);
                }
            }
            () = sender.closed() => return None,
        }
        let delay = waits.next().unwrap_or(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = sender.closed() => return None,
        }
    }
}

/// Forwards messages from the connection to `sender` until the connection
/// is lost (the message stream ends, or a keepalive ping fails) or the
/// receiver is dropped; the connection is closed on return.
async fn forward(
    (mut sink, mut stream): Connection,
    sender: &mpsc::Sender<Item>,
    options: &SubscribeOptions,
) -> Outcome {
    // A disabled ping is an interval so long it never fires.
    let period = options
        .ping_interval
        .filter(|period| !period.is_zero())
        .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    if sender.send(Item::from_msg(&msg)).await.is_err() {
                        return Outcome::Closed;
                    }
                }
                // The connection's reader ends when the socket is closed.
                None => return Outcome::Lost,
            },
            _ = ping.tick() => {
                let pong = tokio::time::timeout(options.timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return Outcome::Lost;
                }
            }
            () = sender.closed() => return Outcome::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Fake;
    use redis::Value;
    use std::collections::HashMap;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Chat {
        text: String,
    }

    #[test]
    fn channel_names() {
        assert_eq!(message_channel("c42"), "tk:messages:c42");
        assert_eq!(notification_channel("u1"), "tk:notifications:u1");
        assert_eq!(Channel::messages("c42").name(), "tk:messages:c42");
        assert_eq!(Channel::notifications("u1").name(), "tk:notifications:u1");
        assert_eq!(Channel::messages("a:b").to_string(), "tk:messages:a:b");
        assert_eq!(
            Channel::notifications("u1").to_string(),
            "tk:notifications:u1"
        );
    }

    #[test]
    fn channel_names_parse_back() {
        for channel in [
            Channel::messages("c42"),
            Channel::messages("a:b"),
            Channel::messages(""),
            Channel::notifications("u1"),
            Channel::notifications("tk:messages:x"),
        ] {
            assert_eq!(Channel::parse(&channel.name()), Some(channel));
        }
        assert_eq!(Channel::parse("tk:messages"), None);
        assert_eq!(Channel::parse("tk:other:x"), None);
    }

    #[test]
    fn servers_are_tried_from_the_last_good_one_moving_on_after_a_failure() {
        let clients = ["a", "b", "c"]
            .map(|host| Client::open(format!("redis://{host}:6379/")).unwrap())
            .to_vec();
        let mut source = Source::Servers {
            clients,
            current: 0,
        };
        let host = |source: &mut Source| {
            let client = futures_util::FutureExt::now_or_never(source.client())
                .expect("no await for fixed servers")
                .unwrap();
            client.get_connection_info().addr().to_string()
        };
        assert_eq!(host(&mut source), "a:6379");
        // A success keeps the server; each failure moves to the next, round.
        assert_eq!(host(&mut source), "a:6379");
        let mut tried = Vec::new();
        for _ in 0..4 {
            source.failed();
            tried.push(host(&mut source));
        }
        assert_eq!(tried, ["b:6379", "c:6379", "a:6379", "b:6379"]);
    }

    #[test]
    fn decoding() {
        let item = Item::Message {
            channel: "tk:messages:c".into(),
            payload: br#"{"text":"hi"}"#.to_vec(),
        };
        assert_eq!(
            decode::<Chat>(item).unwrap(),
            Event::Message {
                channel: "tk:messages:c".into(),
                payload: Chat { text: "hi".into() }
            }
        );
        let item = Item::Reconnected {
            down_for: Duration::from_secs(1),
        };
        assert_eq!(
            decode::<Chat>(item).unwrap(),
            Event::Reconnected {
                down_for: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn undecodable_payloads_name_the_channel() {
        for payload in [&b"not json"[..], br#"{"other":1}"#, b""] {
            let item = Item::Message {
                channel: "tk:notifications:u".into(),
                payload: payload.to_vec(),
            };
            match decode::<Chat>(item) {
                Err(Error::UnexpectedReply(message)) => {
                    assert!(message.contains("tk:notifications:u"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn subscription_is_send_sync_unpin_for_any_payload() {
        fn check<S: Send + Sync + Unpin>() {}
        check::<Subscription<std::rc::Rc<String>>>();
    }

    #[test]
    fn options() {
        let options = SubscribeOptions::default();
        assert_eq!(options.timeout, DEFAULT_TIMEOUT);
        assert_eq!(options.ping_interval, Some(DEFAULT_PING_INTERVAL));
        let options = options.timeout(Duration::from_secs(1)).ping_interval(None);
        assert_eq!(options.timeout, Duration::from_secs(1));
        assert_eq!(options.ping_interval, None);
    }

    #[tokio::test]
    async fn empty_channel_list_is_rejected() {
        let client = Client::open("redis://127.0.0.1:1/").unwrap();
        let err = subscribe::<Chat>(client, vec![]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_server_fails_the_first_subscribe() {
        // Bind then drop a listener: the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let err = subscribe::<Chat>(client, vec![Channel::messages("c")])
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    // ---- publishing through a fake connection -----------------------

    /// Replies to PUBLISH with 3 receivers on `tk:messages:c1`, 0 elsewhere.
    fn fake_server() -> Fake {
        Fake::new(|sent| {
            let receivers = if sent.get(1).map(String::as_str) == Some("tk:messages:c1") {
                3
            } else {
                0
            };
            Some(Ok(Value::Int(receivers)))
        })
    }

    #[tokio::test]
    async fn publishes_json_to_the_right_channels() {
        let fake = fake_server();
        let publisher = Publisher::new(fake.clone()).with_timeout(Duration::from_secs(1));
        assert_eq!(publisher.timeout(), Duration::from_secs(1));
        let chat = Chat { text: "hi".into() };
        assert_eq!(publisher.publish_message("c1", &chat).await.unwrap(), 3);
        assert_eq!(
            publisher.publish_notification("u1", &chat).await.unwrap(),
            0
        );
        assert_eq!(
            publisher
                .publish(&Channel::notifications("u2"), "plain")
                .await
                .unwrap(),
            0
        );
        let expected = [
            ["PUBLISH", "tk:messages:c1", r#"{"text":"hi"}"#],
            ["PUBLISH", "tk:notifications:u1", r#"{"text":"hi"}"#],
            ["PUBLISH", "tk:notifications:u2", r#""plain""#],
        ];
        assert_eq!(fake.sent(), expected);
    }

    #[tokio::test]
    async fn unserializable_payloads_are_rejected() {
        let fake = fake_server();
        let publisher = Publisher::new(fake.clone());
        let bad = HashMap::from([((1, 2), "tuple keys are not JSON")]);
        let err = publisher.publish_message("c", &bad).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains("tk:messages:c")),
            "{err:?}"
        );
        assert!(fake.sent().is_empty());
    }
}
