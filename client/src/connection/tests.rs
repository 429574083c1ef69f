//! Unit tests of [`crate::connection`].

use std::time::{Duration, Instant};

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ErrorKind, RedisError};

use super::cluster::*;
use super::sentinel::*;
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
