//! The write path fires the keyspace events the plain commands would
//! (`set`, `hset`, `expire`, `zadd`, `zrem`, `del`), so keyspace listeners
//! and client-side caching see the module's writes like any other.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tk_redis_tests::harness::Server;

/// Bound on waiting for the events.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `commands` and returns the `(event, key)` pairs seen, waiting until
/// every `expected` pair arrived (or the deadline passed).
async fn events_of(
    server: &Server,
    commands: &[&[&str]],
    expected: &[(&str, &str)],
) -> BTreeSet<(String, String)> {
    let mut pubsub = server
        .client()
        .get_async_pubsub()
        .await
        .expect("pub/sub connection");
    pubsub
        .psubscribe("__keyevent@0__:*")
        .await
        .expect("PSUBSCRIBE");
    let mut conn = server.conn().await;
    for command in commands {
        let mut cmd = redis::cmd(command[0]);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async::<redis::Value>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{command:?} failed: {e}"));
    }
    let wanted: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(event, key)| (event.to_string(), key.to_string()))
        .collect();
    let mut seen = BTreeSet::new();
    let mut messages = pubsub.on_message();
    let deadline = Instant::now() + DEADLINE;
    while !wanted.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(message)) =
            tokio::time::timeout(left, futures_util::StreamExt::next(&mut messages)).await
        else {
            break;
        };
        let event = message
            .get_channel_name()
            .trim_start_matches("__keyevent@0__:")
            .to_string();
        let key: String = message.get_payload().expect("key name");
        seen.insert((event, key));
    }
    assert!(
        wanted.is_subset(&seen),
        "missing events: {:?} (seen {seen:?})",
        wanted.difference(&seen).collect::<Vec<_>>()
    );
    seen
}

async fn server() -> Server {
    Server::builder()
        .arg("notify-keyspace-events", "KEA")
        .start()
        .await
}

#[tokio::test]
async fn rate_limits_and_locks_fire_set_expire_and_del() {
    let server = server().await;
    events_of(
        &server,
        &[
            &["TK.RATELIMIT", "rl", "10", "1000"],
            &["TK.LOCK.ACQUIRE", "lk", "fk", "token", "5000"],
            &["TK.LOCK.EXTEND", "lk", "token", "6000"],
            &["TK.LOCK.RELEASE", "lk", "token"],
        ],
        &[
            ("set", "rl"),
            ("expire", "rl"),
            ("set", "fk"),
            ("set", "lk"),
            ("expire", "lk"),
            ("del", "lk"),
        ],
    )
    .await;
}

#[tokio::test]
async fn sessions_fire_hash_index_and_expiry_events() {
    let server = server().await;
    events_of(
        &server,
        &[
            &[
                "TK.SESSION.CREATE",
                "tk:s:{u}:a",
                "tk:si:{u}:u",
                "u",
                "60000",
                "{}",
            ],
            &["TK.SESSION.TOUCH", "tk:s:{u}:a"],
            &[
                "TK.SESSION.ROTATE",
                "tk:s:{u}:a",
                "tk:s:{u}:b",
                "tk:si:{u}:u",
            ],
            &["TK.SESSION.DESTROY", "tk:s:{u}:b", "tk:si:{u}:u"],
        ],
        &[
            ("zadd", "tk:si:{u}:u"),
            ("expire", "tk:si:{u}:u"),
            ("hset", "tk:s:{u}:a"),
            ("expire", "tk:s:{u}:a"),
            ("rename_from", "tk:s:{u}:a"),
            ("rename_to", "tk:s:{u}:b"),
            ("zrem", "tk:si:{u}:u"),
            ("del", "tk:s:{u}:b"),
            // The index emptied by DESTROY goes, as ZREM's would.
            ("del", "tk:si:{u}:u"),
        ],
    )
    .await;
}

#[tokio::test]
async fn cache_writes_fire_hash_index_and_expiry_events() {
    let server = server().await;
    events_of(
        &server,
        &[
            &[
                "TK.CACHE.SET",
                "tk:c:{u}:ns:h",
                "tk:cg:{u}",
                "tk:ci:{u}",
                "ns",
                "60000",
                "body",
            ],
            &["TK.CACHE.INVALIDATEUSER", "tk:cg:{u}", "tk:ci:{u}"],
        ],
        &[
            ("hset", "tk:c:{u}:ns:h"),
            ("expire", "tk:c:{u}:ns:h"),
            ("zadd", "tk:ci:{u}"),
            ("expire", "tk:ci:{u}"),
            ("hset", "tk:cg:{u}"),
            ("expire", "tk:cg:{u}"),
        ],
    )
    .await;
}
