//! Unit tests of [`crate::cache`].

use super::*;
use crate::keys::key_slot;
use crate::test_support::*;
use redis::{FromRedisValue, RedisResult, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

fn invalid_argument<T: fmt::Debug>(result: Result<T>) -> String {
    match result {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

fn hit(json: &str) -> Value {
    Value::Array(vec![Value::Int(1), bulk(json)])
}

fn miss(token: &str) -> Value {
    Value::Array(vec![Value::Int(0), bulk(token)])
}

fn reset() -> RedisResult<Value> {
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
}

/// A server answering GET with `get` and SET with `set`.
fn server(get: RedisResult<Value>, set: RedisResult<Value>) -> Fake {
    Fake::new(move |sent| {
        Some(match sent[0].as_str() {
            CMD_GET => get.clone(),
            CMD_SET => set.clone(),
            other => panic!("unexpected {other}"),
        })
    })
}

fn identity(user: &str) -> RequestIdentity {
    RequestIdentity::for_user(user, "GET", "/feed", [("page", "1")])
}

// ---- keys ------------------------------------------------------------

#[test]
fn user_tag_is_the_start_of_the_sha256() {
    // SHA-256("") = e3b0c442 98fc1c14 ..., SHA-256("abc") = ba7816bf 8f01cfea ...
    assert_eq!(user_tag(""), "e3b0c44298fc1c14");
    assert_eq!(user_tag("abc"), "ba7816bf8f01cfea");
    let tag = user_tag("user-42");
    assert_eq!(tag.len(), 16);
    assert!(tag
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn keys_have_the_documented_shape() {
    let id = identity("abc");
    assert_eq!(generations_key("abc"), "tk:cg:{ba7816bf8f01cfea}");
    assert_eq!(index_key("abc"), "tk:ci:{ba7816bf8f01cfea}");
    assert_eq!(
        entry_key("abc", "feed", &id).unwrap(),
        format!("tk:c:{{ba7816bf8f01cfea}}:feed:{}", id.hex())
    );
    assert_eq!(id.hex().len(), 64);
    assert!(invalid_argument(entry_key("abc", "", &id)).contains("namespace"));
}

#[test]
fn all_keys_of_a_user_share_one_slot() {
    for user in ["42", "alice", "ünïcødé", "{x}", "a}b{c", "with space"] {
        let tag = user_tag(user);
        let keys = [
            generations_key(user),
            index_key(user),
            entry_key(user, "feed", &identity(user)).unwrap(),
            entry_key(user, "search.v2", &RequestIdentity::from_parts(["q"])).unwrap(),
        ];
        for key in &keys {
            assert!(key.contains(&format!("{{{tag}}}")), "{key}");
            assert_eq!(key_slot(key), key_slot(tag.as_bytes()), "{key}");
        }
    }
}

#[test]
fn different_users_spread_over_slots() {
    let users: Vec<String> = (0..200).map(|n| format!("user-{n}")).collect();
    let tags: HashSet<String> = users.iter().map(|u| user_tag(u)).collect();
    assert_eq!(tags.len(), users.len());
    let slots: HashSet<u16> = users.iter().map(|u| key_slot(generations_key(u))).collect();
    // 200 users in 16384 slots: a few may share one, most must not.
    assert!(slots.len() >= 190, "{}", slots.len());
}

#[test]
fn namespaces_are_validated() {
    for good in ["a", "feed", "search.v2", "A-Z_0-9", &"n".repeat(64)] {
        assert!(check_namespace(good).is_ok(), "{good}");
    }
    for bad in ["", &"n".repeat(65), "a:b", "a b", "{a}", "é", "a*", "a/b"] {
        let message = invalid_argument(check_namespace(bad));
        assert!(message.contains("namespace"), "{bad}: {message}");
    }
}

#[test]
fn ttls_are_whole_ms_rounded_up() {
    assert_eq!(ttl_ms(Duration::from_millis(1)).unwrap(), 1);
    assert_eq!(ttl_ms(Duration::from_micros(1_001)).unwrap(), 2);
    assert_eq!(ttl_ms(MAX_TTL).unwrap(), 604_800_000);
    assert!(invalid_argument(ttl_ms(Duration::ZERO)).contains("between 1 ms"));
    assert!(invalid_argument(ttl_ms(Duration::from_micros(999))).contains("ttl"));
    assert!(invalid_argument(ttl_ms(MAX_TTL + Duration::from_nanos(1))).contains("ttl"));
}

// ---- identities ------------------------------------------------------

#[test]
fn query_order_and_method_case_do_not_matter() {
    let a = RequestIdentity::for_user("u", "get", "/s", [("q", "x"), ("p", "2"), ("q", "a")]);
    let b = RequestIdentity::for_user("u", "GET", "/s", [("q", "a"), ("p", "2"), ("q", "x")]);
    let c = RequestIdentity::for_user(
        "u",
        "Get",
        "/s",
        vec![
            ("p".to_owned(), "2".to_owned()),
            ("q".into(), "x".into()),
            ("q".into(), "a".into()),
        ],
    );
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(a.has_user());
    let public = RequestIdentity::public("get", "/s", [("b", "1"), ("a", "2")]);
    assert_eq!(
        public,
        RequestIdentity::public("GET", "/s", [("a", "2"), ("b", "1")])
    );
    assert!(!public.has_user());
}

#[test]
fn everything_else_matters() {
    let base = RequestIdentity::for_user("u", "GET", "/s", [("q", "x")]);
    let others = [
        RequestIdentity::for_user("v", "GET", "/s", [("q", "x")]),
        RequestIdentity::public("GET", "/s", [("q", "x")]),
        RequestIdentity::for_user("u", "POST", "/s", [("q", "x")]),
        RequestIdentity::for_user("u", "GET", "/S", [("q", "x")]),
        RequestIdentity::for_user("u", "GET", "/s", [("q", "X")]),
        RequestIdentity::for_user("u", "GET", "/s", [("q", "x"), ("q", "x")]),
        RequestIdentity::for_user("u", "GET", "/s", NO_QUERY),
        RequestIdentity::for_user("u", "GET", "/s?q=x", NO_QUERY),
        RequestIdentity::for_user_from_parts("u", ["GET", "/s", "q", "x"]),
        base.vary("accept-language", "fr"),
    ];
    let mut seen = HashSet::new();
    seen.insert(base.clone());
    for other in others {
        assert!(seen.insert(other.clone()), "{other:?}");
    }
}

#[test]
fn field_boundaries_are_unambiguous() {
    let pairs = |a: &'static str, b: &'static str| RequestIdentity::public("GET", "/", [(a, b)]);
    assert_ne!(pairs("a", "bc"), pairs("ab", "c"));
    assert_ne!(pairs("", "ab"), pairs("a", "b"));
    assert_ne!(
        RequestIdentity::public("GET", "/", [("a", "b"), ("c", "d")]),
        RequestIdentity::public("GET", "/", [("a", "bc"), ("", "d")])
    );
    assert_ne!(
        RequestIdentity::public("GE", "T/", NO_QUERY),
        RequestIdentity::public("GET", "/", NO_QUERY)
    );
    // An empty pair is not the same as no pair.
    assert_ne!(
        RequestIdentity::public("GET", "/", [("", "")]),
        RequestIdentity::public("GET", "/", NO_QUERY)
    );
    assert_ne!(
        RequestIdentity::from_parts(["a", "bc"]),
        RequestIdentity::from_parts(["ab", "c"])
    );
    assert_ne!(
        RequestIdentity::from_parts([""]),
        RequestIdentity::from_parts(Vec::<&str>::new())
    );
    assert_ne!(
        RequestIdentity::from_parts(["a"]),
        RequestIdentity::for_user_from_parts("u", ["a"])
    );
    // HTTP and parts are different kinds even with the same bytes.
    assert_ne!(
        RequestIdentity::public("GET", "/", NO_QUERY),
        RequestIdentity::from_parts(["GET", "/"])
    );
    // Vary calls are ordered and keep the user.
    let base = RequestIdentity::from_parts(["x"]);
    assert_ne!(
        base.vary("a", "1").vary("b", "2"),
        base.vary("b", "2").vary("a", "1")
    );
    assert_ne!(base.vary("a", "bc"), base.vary("ab", "c"));
    assert!(identity("u").vary("a", "b").has_user());
    assert!(!base.vary("a", "b").has_user());
}

#[test]
fn parts_accept_bytes_and_strings() {
    let owned = vec!["q".to_owned(), "rust".to_owned()];
    assert_eq!(
        RequestIdentity::from_parts(&owned),
        RequestIdentity::from_parts([b"q".as_slice(), b"rust".as_slice()])
    );
    let parts: &[&[u8]] = &[b"q", b"rust"];
    assert_eq!(
        RequestIdentity::from_parts(parts),
        RequestIdentity::from_parts(owned)
    );
}

#[test]
fn the_encoding_is_stable() {
    // Changing the encoding changes every key (all entries are lost at
    // once): do it on purpose, with a new IDENTITY_VERSION.
    let mut manual = Sha256::new();
    manual.update([1, b'H', 1]);
    manual.update(Sha256::digest(b"u"));
    for field in [&b"GET"[..], b"/s"] {
        manual.update((field.len() as u64).to_be_bytes());
        manual.update(field);
    }
    manual.update(1u64.to_be_bytes());
    for field in [&b"q"[..], b"x"] {
        manual.update((field.len() as u64).to_be_bytes());
        manual.update(field);
    }
    let expected: [u8; 32] = manual.finalize().into();
    let id = RequestIdentity::for_user("u", "get", "/s", [("q", "x")]);
    assert_eq!(id.digest(), &expected);
    assert_eq!(id.hex(), hex::encode(expected));
    let debug = format!("{id:?}");
    assert!(
        debug.contains(&id.hex()) && debug.contains("has_user: true"),
        "{debug}"
    );
}

// ---- generations and replies -------------------------------------------

#[test]
fn generations_round_trip_strictly() {
    for text in [
        "0.0",
        "1.2",
        "18446744073709551615.7",
        "3.18446744073709551615",
    ] {
        let generation: Generation = text.parse().unwrap();
        assert_eq!(generation.to_string(), text);
    }
    for bad in [
        "",
        ".",
        "1",
        "1.",
        ".1",
        "1.2.3",
        "01.2",
        "1.02",
        "+1.2",
        "-1.2",
        " 1.2",
        "1.2 ",
        "1,2",
        "a.b",
        "18446744073709551616.0",
        "1.18446744073709551616",
        "١.٢",
    ] {
        let message = invalid_argument(bad.parse::<Generation>());
        assert!(message.contains("generation"), "{bad:?}: {message}");
    }
}

fn parse<T: FromRedisValue>(value: Value) -> Result<T, String> {
    redis::from_redis_value::<T>(value).map_err(|e| e.to_string())
}

#[test]
fn get_replies() {
    assert_eq!(
        parse::<GetReply>(hit(r#"{"a":1}"#)).unwrap(),
        GetReply::Hit(br#"{"a":1}"#.to_vec())
    );
    assert_eq!(
        parse::<GetReply>(hit("")).unwrap(),
        GetReply::Hit(Vec::new())
    );
    assert_eq!(
        parse::<GetReply>(miss("4.9")).unwrap(),
        GetReply::Miss("4.9".parse().unwrap())
    );
    let attributed = Value::Attribute {
        data: Box::new(miss("0.0")),
        attributes: vec![],
    };
    assert!(parse::<GetReply>(attributed).is_ok());
    assert!(redis::from_redis_value_ref::<GetReply>(&hit("1")).is_ok());
    for bad in [
        Value::Nil,
        Value::Int(1),
        bulk("x"),
        Value::Array(vec![]),
        Value::Array(vec![Value::Int(1)]),
        Value::Array(vec![Value::Int(1), bulk("x"), bulk("y")]),
        Value::Array(vec![Value::Int(2), bulk("x")]),
        Value::Array(vec![Value::Int(-1), bulk("x")]),
        Value::Array(vec![bulk("1"), bulk("x")]),
        Value::Array(vec![Value::Int(1), Value::SimpleString("x".into())]),
        Value::Array(vec![Value::Int(1), Value::Nil]),
        Value::Array(vec![Value::Int(0), Value::Int(3)]),
        miss("3"),
        miss("1.2.3"),
        miss("01.2"),
        miss(""),
        Value::Array(vec![
            Value::Int(0),
            Value::BulkString(vec![0xff, b'.', b'1']),
        ]),
    ] {
        assert!(parse::<GetReply>(bad.clone()).is_err(), "{bad:?}");
    }
    let err = parse::<GetReply>(Value::Array(vec![Value::Int(1)])).unwrap_err();
    assert!(err.contains("got 1 elements"), "{err}");
}

#[test]
fn set_replies() {
    assert!(parse::<Flag>(Value::Int(1)).unwrap().0);
    assert!(!parse::<Flag>(Value::Int(0)).unwrap().0);
    assert!(parse::<Flag>(Value::Int(2)).is_err());
    assert!(parse::<Flag>(Value::Okay).is_err());
    assert!(parse::<Flag>(bulk("1")).is_err());
}

// ---- commands sent -----------------------------------------------------

#[tokio::test]
async fn get_sends_entry_generations_and_namespace() {
    let fake = Fake::replying(miss("2.5"));
    let cache = Cache::new(fake.clone());
    let id = identity("alice");
    let lookup = cache.get::<String>("alice", "feed", &id).await.unwrap();
    assert_eq!(lookup, Lookup::Miss("2.5".parse().unwrap()));
    assert!(!lookup.is_hit());
    assert_eq!(
        fake.sent(),
        [[
            "TK.CACHE.GET".to_owned(),
            entry_key("alice", "feed", &id).unwrap(),
            generations_key("alice"),
            "feed".to_owned(),
        ]]
    );
}

#[tokio::test]
async fn get_decodes_json() {
    let cache = Cache::new(Fake::replying(hit(r#"{"unread":3}"#)));
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Dash {
        unread: u32,
    }
    let lookup = cache
        .get::<Dash>("u", "dash", &identity("u"))
        .await
        .unwrap();
    assert!(lookup.is_hit());
    assert_eq!(lookup.hit(), Some(Dash { unread: 3 }));
    // Another type: an error, counted.
    let err = cache
        .get::<Vec<u8>>("u", "dash", &identity("u"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedReply(m) if m.contains("does not decode")),
        "{err:?}"
    );
    let m = cache.metrics();
    assert_eq!((m.hits, m.undecodable, m.errors), (1, 1, 1));
}

#[tokio::test]
async fn set_sends_ttl_value_and_ifgen() {
    let fake = Fake::replying(Value::Int(1));
    let cache = Cache::new(fake.clone());
    let id = identity("bob");
    let generation: Generation = "7.3".parse().unwrap();
    assert!(cache
        .set(
            "bob",
            "feed",
            &id,
            &vec![1, 2],
            Duration::from_micros(1_500),
            Some(&generation)
        )
        .await
        .unwrap());
    assert!(cache
        .set("bob", "feed", &id, "x", Duration::from_secs(60), None)
        .await
        .unwrap());
    let entry = entry_key("bob", "feed", &id).unwrap();
    let (gens, index) = (generations_key("bob"), index_key("bob"));
    let expected: [Vec<&str>; 2] = [
        vec![
            "TK.CACHE.SET",
            &entry,
            &gens,
            &index,
            "feed",
            "2",
            "[1,2]",
            "IFGEN",
            "7.3",
        ],
        vec![
            "TK.CACHE.SET",
            &entry,
            &gens,
            &index,
            "feed",
            "60000",
            "\"x\"",
        ],
    ];
    assert_eq!(fake.sent(), expected);
    assert_eq!(cache.metrics().stores, 2);
}

#[tokio::test]
async fn refused_sets_are_false() {
    let cache = Cache::new(Fake::replying(Value::Int(0)));
    let generation = "1.1".parse().unwrap();
    let stored = cache
        .set(
            "u",
            "n",
            &identity("u"),
            &1,
            Duration::from_secs(1),
            Some(&generation),
        )
        .await
        .unwrap();
    assert!(!stored);
    assert_eq!(cache.metrics().stores_refused, 1);
}

#[tokio::test]
async fn invalidations_send_the_user_keys() {
    let fake = Fake::sequence(vec![Ok(Value::Int(5)), Ok(Value::Int(12))]);
    let cache = Cache::new(fake.clone());
    assert_eq!(cache.invalidate_user("carol").await.unwrap(), 5);
    assert_eq!(
        cache.invalidate_namespace("carol", "feed").await.unwrap(),
        12
    );
    let (gens, index) = (generations_key("carol"), index_key("carol"));
    let expected: [Vec<&str>; 2] = [
        vec!["TK.CACHE.INVALIDATEUSER", &gens, &index],
        vec!["TK.CACHE.INVALIDATENS", &gens, &index, "feed"],
    ];
    assert_eq!(fake.sent(), expected);
    // Replies of the wrong shape.
    let cache = Cache::new(Fake::sequence(vec![Ok(Value::Int(-1)), Ok(Value::Okay)]));
    assert!(matches!(
        cache.invalidate_user("u").await,
        Err(Error::UnexpectedReply(_))
    ));
    assert!(matches!(
        cache.invalidate_namespace("u", "n").await,
        Err(Error::UnexpectedReply(_))
    ));
    assert_eq!(cache.metrics().errors, 2);
}

#[tokio::test]
async fn invalid_arguments_send_nothing() {
    let fake = Fake::replying(Value::Int(1));
    let cache = Cache::new(fake.clone());
    let id = identity("u");
    let ttl = Duration::from_secs(1);
    assert!(invalid_argument(cache.get::<u8>("", "n", &id).await).contains("user"));
    assert!(invalid_argument(cache.get::<u8>("u", "bad ns", &id).await).contains("namespace"));
    assert!(
        invalid_argument(cache.set("u", "n", &id, &1, Duration::ZERO, None).await).contains("ttl")
    );
    assert!(
        invalid_argument(cache.set("u", "n", &id, &1, MAX_TTL * 2, None).await).contains("ttl")
    );
    // A map with non-string keys cannot be JSON.
    let map = std::collections::HashMap::from([((1, 2), 3)]);
    assert!(
        invalid_argument(cache.set("u", "n", &id, &map, ttl, None).await).contains("serialize")
    );
    assert!(invalid_argument(cache.invalidate_user("").await).contains("user"));
    assert!(invalid_argument(cache.invalidate_namespace("u", "").await).contains("namespace"));
    assert!(fake.sent().is_empty());
    assert_eq!(cache.metrics().errors, 7);
}

#[tokio::test]
async fn an_identity_is_only_used_for_its_user() {
    let fake = Fake::replying(miss("1.1"));
    let cache = Cache::new(fake.clone());
    let alices = identity("alice");
    let message = invalid_argument(cache.get::<u8>("bob", "feed", &alices).await);
    assert!(message.contains("another user"), "{message}");
    assert!(
        !message.contains("alice") && !message.contains("bob"),
        "{message}"
    );
    assert!(cache
        .set("bob", "feed", &alices, &1, Duration::from_secs(1), None)
        .await
        .is_err());
    let computed = cache
        .get_or_compute("bob", "feed", &alices, Duration::from_secs(1), || async {
            Ok::<_, Error>(1)
        })
        .await;
    assert!(matches!(
        computed,
        Err(GetOrComputeError::Cache(Error::InvalidArgument(_)))
    ));
    assert!(fake.sent().is_empty());
    // Public identities (and parts without a user) go with any user.
    let public = RequestIdentity::public("GET", "/about", NO_QUERY);
    assert!(cache.get::<u8>("bob", "pages", &public).await.is_ok());
    assert!(cache.get::<u8>("public", "pages", &public).await.is_ok());
    assert_eq!(fake.sent().len(), 2);
}

#[tokio::test]
async fn error_replies_are_mapped() {
    let cache = Cache::new(Fake::replying(error_reply(
        "ERR unknown command 'TK.CACHE.GET', with args beginning with: ",
    )));
    let err = cache.get::<u8>("u", "n", &identity("u")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ModuleNotLoaded {
                command: "TK.CACHE.GET"
            }
        ),
        "{err:?}"
    );
    let cache = Cache::new(Fake::replying(error_reply(
        "WRONGTYPE Operation against a key",
    )));
    let err = cache
        .set("u", "n", &identity("u"), &1, Duration::from_secs(1), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Server { code, .. } if code == "WRONGTYPE"),
        "{err:?}"
    );
    let cache = Cache::new(Fake::replying(error_reply(
        "ERR unknown command 'TK.CACHE.INVALIDATENS'",
    )));
    let err = cache.invalidate_namespace("u", "n").await.unwrap_err();
    assert!(err.is_module_not_loaded(), "{err:?}");
}

#[tokio::test]
async fn direct_calls_always_return_transient_errors() {
    for policy in [CacheErrorPolicy::Miss, CacheErrorPolicy::Error] {
        let cache = Cache::new(Fake::new(|_| Some(reset()))).with_error_policy(policy);
        let id = identity("u");
        assert!(matches!(
            cache.get::<u8>("u", "n", &id).await,
            Err(Error::Connection(_))
        ));
        assert!(matches!(
            cache
                .set("u", "n", &id, &1, Duration::from_secs(1), None)
                .await,
            Err(Error::Connection(_))
        ));
        assert!(matches!(
            cache.invalidate_user("u").await,
            Err(Error::Connection(_))
        ));
        let m = cache.metrics();
        assert_eq!((m.errors, m.errors_as_misses), (3, 0), "{policy:?}");
    }
    let cache = Cache::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
    assert_eq!(cache.timeout(), Duration::from_millis(20));
    let err = cache.get::<u8>("u", "n", &identity("u")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
}

// ---- get_or_compute ----------------------------------------------------

async fn compute_count<C>(
    cache: &Cache<C>,
    calls: &std::sync::atomic::AtomicU32,
) -> Result<String, GetOrComputeError<Error>>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    cache
        .get_or_compute(
            "u",
            "feed",
            &identity("u"),
            Duration::from_secs(30),
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Error>("fresh".to_owned())
            },
        )
        .await
}

#[tokio::test]
async fn hit_returns_the_cached_value_without_computing() {
    let fake = server(Ok(hit("\"cached\"")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "cached");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(
        cache.metrics(),
        CacheMetrics {
            hits: 1,
            ..CacheMetrics::default()
        }
    );
}

#[tokio::test]
async fn miss_computes_and_stores_with_the_generation_of_the_miss() {
    let fake = server(Ok(miss("12.34")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0][0], "TK.CACHE.GET");
    assert_eq!(sent[1][0], "TK.CACHE.SET");
    assert_eq!(sent[1][1], sent[0][1], "same entry key");
    assert_eq!(sent[1][5..], ["30000", "\"fresh\"", "IFGEN", "12.34"]);
    let m = cache.metrics();
    assert_eq!((m.misses, m.stores, m.errors), (1, 1, 0));
}

#[tokio::test]
async fn a_refused_store_still_returns_the_value() {
    let cache = Cache::new(server(Ok(miss("1.1")), Ok(Value::Int(0))));
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!((m.misses, m.stores, m.stores_refused), (1, 0, 1));
}

#[tokio::test]
async fn undecodable_values_are_recomputed_and_overwritten() {
    let fake = server(Ok(hit("{not json")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    // No generation to condition on: stored under the current ones.
    assert_eq!(sent[1][5..], ["30000", "\"fresh\""]);
    // Valid JSON of another type, too.
    let cache = Cache::new(server(Ok(hit("[1,2]")), Ok(Value::Int(1))));
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!((m.hits, m.undecodable, m.stores, m.errors), (0, 1, 1, 0));
}

#[tokio::test]
async fn compute_errors_are_returned_and_nothing_is_stored() {
    let fake = server(Ok(miss("1.1")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let result: Result<u8, _> = cache
        .get_or_compute("u", "n", &identity("u"), Duration::from_secs(1), || async {
            Err(std::io::Error::other("db down"))
        })
        .await;
    let err = result.unwrap_err();
    assert!(matches!(&err, GetOrComputeError::Compute(e) if e.to_string() == "db down"));
    assert!(err.cache_error().is_none());
    assert_eq!(err.to_string(), "db down");
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(cache.metrics().errors, 0);
}

#[tokio::test]
async fn miss_policy_computes_through_transient_lookup_errors() {
    let fake = server(reset(), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    assert_eq!(cache.error_policy(), CacheErrorPolicy::Miss);
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    // No store after a failed lookup.
    assert_eq!(fake.sent().len(), 1);
    // Timeouts too.
    let cache = Cache::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!((m.errors_as_misses, m.misses, m.errors), (1, 0, 0));
}

#[tokio::test]
async fn miss_policy_ignores_transient_store_errors() {
    let cache = Cache::new(server(Ok(miss("1.1")), reset()));
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!(
        (m.misses, m.stores, m.errors_as_misses, m.errors),
        (1, 0, 1, 0)
    );
}

#[tokio::test]
async fn error_policy_returns_transient_errors() {
    let calls = std::sync::atomic::AtomicU32::new(0);
    let cache =
        Cache::new(server(reset(), Ok(Value::Int(1)))).with_error_policy(CacheErrorPolicy::Error);
    let err = compute_count(&cache, &calls).await.unwrap_err();
    assert!(
        matches!(err.cache_error(), Some(Error::Connection(_))),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    let cache =
        Cache::new(server(Ok(miss("1.1")), reset())).with_error_policy(CacheErrorPolicy::Error);
    let err = compute_count(&cache, &calls).await.unwrap_err();
    assert!(
        matches!(err, GetOrComputeError::Cache(Error::Connection(_))),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let m = cache.metrics();
    assert_eq!((m.misses, m.errors_as_misses, m.errors), (1, 0, 1));
}

#[tokio::test]
async fn non_transient_errors_are_never_hidden() {
    for policy in [CacheErrorPolicy::Miss, CacheErrorPolicy::Error] {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let missing = Ok(error_reply("ERR unknown command 'TK.CACHE.GET'"));
        let cache = Cache::new(server(missing, Ok(Value::Int(1)))).with_error_policy(policy);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(
            err.cache_error().is_some_and(Error::is_module_not_loaded),
            "{err:?}"
        );
        // A malformed lookup reply.
        let cache =
            Cache::new(server(Ok(Value::Okay), Ok(Value::Int(1)))).with_error_policy(policy);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(matches!(
            err,
            GetOrComputeError::Cache(Error::UnexpectedReply(_))
        ));
        assert_eq!(calls.load(Ordering::Relaxed), 0, "{policy:?}");
        // A store refused by the server, after computing.
        let wrongtype = Ok(error_reply("WRONGTYPE Operation against a key"));
        let cache = Cache::new(server(Ok(miss("1.1")), wrongtype)).with_error_policy(policy);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(matches!(
            err,
            GetOrComputeError::Cache(Error::Server { .. })
        ));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // An invalid ttl: nothing sent, nothing computed.
        let fake = server(Ok(miss("1.1")), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone()).with_error_policy(policy);
        let result = cache
            .get_or_compute("u", "n", &identity("u"), Duration::ZERO, || async {
                Ok::<_, Error>(1)
            })
            .await;
        assert!(matches!(
            result,
            Err(GetOrComputeError::Cache(Error::InvalidArgument(_)))
        ));
        assert!(fake.sent().is_empty());
        assert_eq!(cache.metrics().errors, 1);
    }
}

#[tokio::test]
async fn metrics_are_shared_by_clones() {
    let cache = Cache::new(server(Ok(miss("1.1")), Ok(Value::Int(1))));
    let strict = cache.clone().with_error_policy(CacheErrorPolicy::Error);
    let calls = std::sync::atomic::AtomicU32::new(0);
    compute_count(&cache, &calls).await.unwrap();
    compute_count(&strict, &calls).await.unwrap();
    assert_eq!(cache.metrics(), strict.metrics());
    assert_eq!(cache.metrics().misses, 2);
    // A new cache on the same connection has its own counters.
    let other = Cache::new(cache.connection().clone());
    assert_eq!(other.metrics(), CacheMetrics::default());
    let _conn: Fake = other.into_connection();
}

#[test]
fn get_or_compute_error_conversions() {
    #[derive(Debug)]
    struct AppError(String);
    impl From<Error> for AppError {
        fn from(err: Error) -> Self {
            AppError(format!("cache: {err}"))
        }
    }
    let compute: GetOrComputeError<AppError> = GetOrComputeError::Compute(AppError("db".into()));
    assert_eq!(compute.flatten().0, "db");
    let cache: GetOrComputeError<AppError> = GetOrComputeError::Cache(Error::Timeout);
    assert!(cache.cache_error().is_some());
    assert_eq!(
        cache.flatten().0,
        "cache: timed out waiting for the redis server"
    );
    // A standard error: `?` into Box<dyn Error>, displayed as what it holds.
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        Box::new(GetOrComputeError::<std::io::Error>::Cache(Error::Timeout));
    assert_eq!(boxed.to_string(), "timed out waiting for the redis server");
}

#[test]
fn defaults() {
    let cache = Cache::new(Fake::replying(Value::Nil));
    assert_eq!(cache.timeout(), crate::DEFAULT_TIMEOUT);
    assert_eq!(cache.error_policy(), CacheErrorPolicy::Miss);
    assert_eq!(CacheErrorPolicy::default(), CacheErrorPolicy::Miss);
    assert_eq!(cache.metrics(), CacheMetrics::default());
    let debug = format!("{cache:?}");
    assert!(debug.contains("3s") && debug.contains("Miss"), "{debug}");
}

// ---- compile-time checks -----------------------------------------

fn assert_send<T: Send>(_: &T) {}

/// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
/// for the default, cluster and multiplexed connections.
#[allow(dead_code)]
fn futures_are_send(
    single: &Cache,
    cluster: &Cache<redis::cluster_async::ClusterConnection>,
    multiplexed: &Cache<redis::aio::MultiplexedConnection>,
    id: &RequestIdentity,
    generation: &Generation,
) {
    let ttl = Duration::from_secs(1);
    assert_send(&single.get::<String>("u", "n", id));
    assert_send(&single.set("u", "n", id, "v", ttl, Some(generation)));
    assert_send(&single.invalidate_user("u"));
    assert_send(&single.invalidate_namespace("u", "n"));
    let compute = || async { Ok::<_, Error>(1u32) };
    assert_send(&single.get_or_compute("u", "n", id, ttl, compute));
    assert_send(&cluster.get_or_compute("u", "n", id, ttl, compute));
    assert_send(&multiplexed.get::<u32>("u", "n", id));
}
