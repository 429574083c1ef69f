//! The machinery behind a [`Subscription`]: where it (re)connects, the
//! background task that forwards messages and reconnects, and the typed
//! stream on top.

use super::*;
use crate::backoff;
use crate::error::{Error, Result};
use crate::reply::from_json;
use crate::telemetry;
use futures_util::{Stream, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::sentinel::SentinelClient;
use redis::{Client, Msg};
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    pub(super) async fn client(&mut self) -> redis::RedisResult<Client> {
        match self {
            Source::Servers { clients, current } => Ok(clients[*current].clone()),
            Source::Sentinel(sentinel) => sentinel.async_get_client().await,
        }
    }

    /// The last attempt failed: the next one tries another server.
    pub(super) fn failed(&mut self) {
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
    pub(super) receiver: mpsc::Receiver<Item>,
    pub(super) task: tokio::task::AbortHandle,
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
/// down. Dropping it unsubscribes and closes the connection. See the
/// [module docs](super) for an example.
pub struct Subscription<T> {
    pub(super) raw: RawSubscription,
    pub(super) channels: Vec<Channel>,
    // `fn() -> T`: the stream yields `T`s but holds none, so it is Send,
    // Sync and Unpin whatever `T` is.
    pub(super) payload: PhantomData<fn() -> T>,
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

pub(super) fn decode<T: DeserializeOwned>(item: Item) -> Result<Event<T>> {
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
