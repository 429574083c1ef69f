use super::*;

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
