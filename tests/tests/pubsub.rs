//! tk_redis::pubsub against a real redis-server: typed delivery, bad
//! payloads, and resubscription after the connection is lost (killed
//! client, server restart, unresponsive server).
//!
//! Waits are bounded (a test fails instead of hanging) but nothing asserts
//! how fast anything happens.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tk_redis::pubsub::{self, Channel, Event, Publisher, SubscribeOptions, Subscription};
use tk_redis::{Config, Error};
use tk_redis_tests::harness::{wait_until, Server};

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Chat {
    from: String,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    Mention { by: String },
    Badge { name: String, level: u32 },
}

fn chat(text: &str) -> Chat {
    Chat {
        from: "alice".into(),
        text: text.into(),
    }
}

/// The next item, failing the test if none comes within [`WAIT`].
async fn next<T: serde::de::DeserializeOwned>(
    sub: &mut Subscription<T>,
) -> tk_redis::Result<Event<T>> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {WAIT:?}"))
        .expect("the subscription stream ended")
}

/// The next message's (channel, payload), failing on anything else.
async fn next_message<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    sub: &mut Subscription<T>,
) -> (String, T) {
    match next(sub).await {
        Ok(Event::Message { channel, payload }) => (channel, payload),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Waits for [`Event::Reconnected`], failing on anything else.
async fn expect_reconnected<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    sub: &mut Subscription<T>,
) {
    match next(sub).await {
        Ok(Event::Reconnected { .. }) => {}
        other => panic!("expected Reconnected, got {other:?}"),
    }
}

/// Publishes, retrying while the publisher's own connection recovers (a
/// connection manager reconnects after a failed call); bounded by [`WAIT`].
async fn publish_retrying(
    publisher: &Publisher<ConnectionManager>,
    conversation: &str,
    payload: &Chat,
) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match publisher.publish_message(conversation, payload).await {
            Ok(receivers) => return receivers,
            Err(err) if err.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("publish failed: {err}"),
        }
    }
}

/// Publishes until `receivers` accepts the receiver count PUBLISH reports,
/// bounded by [`WAIT`]. Counts settle a moment after a reconnect: the server
/// can still count a connection the subscriber already gave up on (a SUBSCRIBE
/// it sent while the server was paused runs before the server sees the close).
async fn publish_until(
    publisher: &Publisher<ConnectionManager>,
    conversation: &str,
    payload: &Chat,
    receivers: impl Fn(u64) -> bool,
) {
    wait_until("PUBLISH reaches the expected subscribers", WAIT, || async {
        let count = publish_retrying(publisher, conversation, payload).await;
        if receivers(count) {
            Ok(())
        } else {
            Err(format!("PUBLISH reached {count} subscribers"))
        }
    })
    .await;
}

async fn raw_publish(server: &Server, channel: &str, payload: &[u8]) -> i64 {
    let mut conn = server.conn().await;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn typed_messages_on_both_channel_kinds() {
    let server = Server::start().await;
    let publisher = Publisher::new(server.manager().await);

    let mut chats = pubsub::subscribe::<Chat>(
        server.client(),
        vec![Channel::messages("c1"), Channel::messages("c2")],
    )
    .await
    .unwrap();
    let mut notices =
        pubsub::subscribe::<Notice>(server.client(), vec![Channel::notifications("u1")])
            .await
            .unwrap();
    assert_eq!(
        chats.channels(),
        [Channel::messages("c1"), Channel::messages("c2")]
    );

    // Subscribed when `subscribe` returns: the first publish is delivered.
    assert_eq!(
        publisher
            .publish_message("c1", &chat("hello"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        publisher
            .publish_message("c2", &chat("second"))
            .await
            .unwrap(),
        1
    );
    // Nobody listens to c3 or to u2.
    assert_eq!(
        publisher
            .publish_message("c3", &chat("lost"))
            .await
            .unwrap(),
        0
    );
    let mention = Notice::Mention { by: "bob".into() };
    let badge = Notice::Badge {
        name: "streak".into(),
        level: 3,
    };
    assert_eq!(
        publisher
            .publish_notification("u2", &mention)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        publisher
            .publish_notification("u1", &mention)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        publisher
            .publish(&Channel::notifications("u1"), &badge)
            .await
            .unwrap(),
        1
    );

    assert_eq!(
        next_message(&mut chats).await,
        ("tk:messages:c1".to_owned(), chat("hello"))
    );
    let (channel, payload) = next_message(&mut chats).await;
    assert_eq!(
        (channel.as_str(), payload),
        ("tk:messages:c2", chat("second"))
    );
    assert_eq!(Channel::parse(&channel), Some(Channel::messages("c2")));

    assert_eq!(
        next_message(&mut notices).await,
        ("tk:notifications:u1".to_owned(), mention)
    );
    assert_eq!(
        next_message(&mut notices).await,
        ("tk:notifications:u1".to_owned(), badge)
    );
}

#[tokio::test]
async fn bad_payload_is_an_error_and_the_stream_goes_on() {
    let server = Server::start().await;
    let publisher = Publisher::new(server.manager().await);
    let mut chats = pubsub::subscribe::<Chat>(server.client(), vec![Channel::messages("c")])
        .await
        .unwrap();

    assert_eq!(raw_publish(&server, "tk:messages:c", b"not json").await, 1);
    // Valid JSON of the wrong shape.
    assert_eq!(
        raw_publish(&server, "tk:messages:c", br#"{"text":1}"#).await,
        1
    );
    publisher
        .publish_message("c", &chat("after"))
        .await
        .unwrap();

    for _ in 0..2 {
        match next(&mut chats).await {
            Err(Error::UnexpectedReply(message)) => {
                assert!(message.contains("tk:messages:c"), "{message}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
    assert_eq!(next_message(&mut chats).await.1, chat("after"));
}

#[tokio::test]
async fn resubscribes_after_the_connection_is_killed() {
    let server = Server::start().await;
    let chats = pubsub::subscribe::<Chat>(server.client(), vec![Channel::messages("c")])
        .await
        .unwrap();
    expect_resubscribed_after_a_kill(&server, chats).await;
}

/// `Config::subscribe` on a standalone server: the same subscription.
#[tokio::test]
async fn config_subscribes_on_the_standalone_server() {
    let server = Server::start().await;
    let config = Config::builder().addr(server.addr()).build().unwrap();
    let chats = config
        .subscribe::<Chat>(vec![Channel::messages("c")])
        .await
        .unwrap();
    expect_resubscribed_after_a_kill(&server, chats).await;
}

/// Delivers a message to `chats` (subscribed to conversation `c`), kills
/// its connection, and expects `Reconnected` and delivery again.
async fn expect_resubscribed_after_a_kill(server: &Server, mut chats: Subscription<Chat>) {
    let publisher = Publisher::new(server.manager().await);
    publisher
        .publish_message("c", &chat("before"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut chats).await.1, chat("before"));

    let mut conn = server.conn().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);

    expect_reconnected(&mut chats).await;
    // Reconnected comes after resubscribing: the next publish is delivered.
    assert_eq!(
        publisher
            .publish_message("c", &chat("after"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(next_message(&mut chats).await.1, chat("after"));
}

#[tokio::test]
async fn resubscribes_after_a_server_restart() {
    let mut server = Server::builder().start().await;
    let publisher = Publisher::new(server.manager().await);
    let mut chats = pubsub::subscribe::<Chat>(
        server.client(),
        vec![Channel::messages("c"), Channel::notifications("u")],
    )
    .await
    .unwrap();
    publisher
        .publish_message("c", &chat("before"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut chats).await.1, chat("before"));

    let port = server.port();
    server.restart().await;
    if server.port() != port {
        // The subscription knows the old address only.
        eprintln!("note: the restarted server moved to another port; nothing to check");
        return;
    }

    expect_reconnected(&mut chats).await;
    // Resubscribed before Reconnected was yielded, but retry while the
    // publisher's own connection manager reconnects.
    publish_until(&publisher, "c", &chat("after"), |count| count > 0).await;
    assert_eq!(next_message(&mut chats).await.1, chat("after"));
    // Both channels are subscribed again.
    let mut conn = server.conn().await;
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("tk:messages:c")
        .arg("tk:notifications:u")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        counts,
        [
            ("tk:messages:c".to_owned(), 1),
            ("tk:notifications:u".to_owned(), 1)
        ]
    );
}

/// A server that stops answering (without closing the socket) is noticed by
/// the keepalive ping, and the subscription reconnects once it answers again.
#[tokio::test]
async fn unresponsive_server_is_detected_by_ping() {
    let server = Server::start().await;
    let publisher = Publisher::new(server.manager().await);
    let options = SubscribeOptions::default()
        .timeout(Duration::from_millis(300))
        .ping_interval(Some(Duration::from_millis(100)));
    let mut chats =
        pubsub::subscribe_with::<Chat>(server.client(), vec![Channel::messages("c")], options)
            .await
            .unwrap();

    // Every client command (the subscriber's PING included) waits for 1.5 s.
    let mut conn = server.conn().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();

    expect_reconnected(&mut chats).await;
    // Exactly one subscriber once the abandoned connections are closed.
    publish_until(&publisher, "c", &chat("after"), |count| count == 1).await;
    assert_eq!(next_message(&mut chats).await.1, chat("after"));
}

#[tokio::test]
async fn dropping_the_subscription_unsubscribes() {
    let server = Server::start().await;
    let chats = pubsub::subscribe::<Chat>(server.client(), vec![Channel::messages("c")])
        .await
        .unwrap();
    let mut conn = server.conn().await;
    let numsub = |conn: &mut tk_redis_tests::Conn| {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("tk:messages:c")
                .query_async(&mut conn)
                .await
                .unwrap();
            counts[0].1
        }
    };
    assert_eq!(numsub(&mut conn).await, 1);
    drop(chats);
    let deadline = tokio::time::Instant::now() + WAIT;
    while numsub(&mut conn).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still subscribed after the subscription was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn first_subscribe_reports_errors() {
    let server = Server::start().await;
    let err = pubsub::subscribe::<Chat>(server.client(), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    let port = server.port();
    drop(server);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let err = pubsub::subscribe::<Chat>(client, vec![Channel::messages("c")])
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    // The same through a Config, for each topology it can name.
    let gone = format!("127.0.0.1:{port}");
    let configs = [
        Config::builder().addr(&gone).build().unwrap(),
        Config::builder().cluster_nodes([&gone]).build().unwrap(),
        Config::builder().sentinel([&gone], "main").build().unwrap(),
    ];
    for config in configs {
        let err = config.subscribe::<Chat>(vec![]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        let err = config
            .subscribe::<Chat>(vec![Channel::messages("c")])
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{config:?}: {err:?}");
    }
}
