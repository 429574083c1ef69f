//! Unit tests of [`crate::pubsub`].

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
