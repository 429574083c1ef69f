use super::*;

#[tokio::test]
async fn create_sends_the_keys_user_ttl_and_data() {
    let fake = Fake::replying(session_reply("abc", DATA_JSON, 1));
    let (token, session) = store(&fake).create("abc", &data()).await.unwrap();
    assert_eq!(token.tag(), ABC_TAG);
    assert_eq!(session.user, "abc");
    assert_eq!(session.data, data());
    assert_eq!(
        (session.created, session.last_active, session.expires_at),
        (at(1_000), at(2_000), at(3_000))
    );
    let sent = fake.sent();
    assert_eq!(
        sent,
        [vec![
            "TK.SESSION.CREATE".to_owned(),
            session_key(&token),
            ABC_INDEX.into(),
            "abc".into(),
            "86400000".into(),
            DATA_JSON.into(),
        ]]
    );
    // The token is never sent, not even in part.
    assert!(sent[0]
        .iter()
        .all(|arg| !arg.contains(&token.as_str()[17..])));
}

#[tokio::test]
async fn create_sends_the_options() {
    let fake = Fake::replying(session_reply("abc", DATA_JSON, 1));
    let sessions = store(&fake).with_options(SessionOptions {
        idle_ttl: Duration::from_micros(1_500),
        max_lifetime: Some(Duration::from_secs(7 * 24 * 3600)),
        max_sessions: Some((5, CapPolicy::Evict)),
    });
    sessions.create("abc", &data()).await.unwrap();
    let reject = sessions.clone().with_options(SessionOptions {
        max_sessions: Some((1, CapPolicy::Reject)),
        ..SessionOptions::default()
    });
    reject.create("abc", &data()).await.unwrap();
    let sent = fake.sent();
    assert_eq!(
        sent[0][4..],
        [
            "2",
            DATA_JSON,
            "MAXLIFETIME",
            "604800000",
            "MAXSESSIONS",
            "5",
            "EVICT"
        ]
    );
    assert_eq!(
        sent[1][4..],
        ["86400000", DATA_JSON, "MAXSESSIONS", "1", "REJECT"]
    );
    // Each create draws a new token.
    assert_ne!(sent[0][1], sent[1][1]);
}

#[tokio::test]
async fn invalid_creates_send_nothing() {
    let fake = Fake::replying(session_reply("abc", DATA_JSON, 1));
    let sessions = store(&fake);
    assert!(invalid_argument(sessions.create("", &data()).await).contains("user id"));
    for options in [
        SessionOptions {
            idle_ttl: Duration::ZERO,
            ..SessionOptions::default()
        },
        SessionOptions {
            max_lifetime: Some(Duration::from_micros(10)),
            ..SessionOptions::default()
        },
        SessionOptions {
            max_lifetime: Some(MAX_DURATION * 2),
            ..SessionOptions::default()
        },
        SessionOptions {
            max_sessions: Some((0, CapPolicy::Evict)),
            ..SessionOptions::default()
        },
        SessionOptions {
            max_sessions: Some((MAX_SESSIONS + 1, CapPolicy::Reject)),
            ..SessionOptions::default()
        },
    ] {
        let result = sessions
            .clone()
            .with_options(options)
            .create("abc", &data())
            .await;
        invalid_argument(result);
    }
    // Data that is not JSON-serializable (a map with non-string keys).
    let odd: SessionStore<std::collections::HashMap<(u8, u8), u8>, Fake> =
        SessionStore::new(fake.clone());
    let map = [((1, 2), 3)].into_iter().collect();
    assert!(invalid_argument(odd.create("abc", &map).await).contains("JSON"));
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn create_checks_the_reply() {
    let other_user = store(&Fake::replying(session_reply("abd", DATA_JSON, 1)));
    let message = unexpected_reply(other_user.create("abc", &data()).await);
    assert!(message.contains("another user"), "{message}");
    let nil = store(&Fake::replying(Value::Nil));
    let message = unexpected_reply(nil.create("abc", &data()).await);
    assert!(
        message.starts_with("TK.SESSION.CREATE: expected an array"),
        "{message}"
    );
    let undecodable = store(&Fake::replying(session_reply("abc", "[]", 1)));
    unexpected_reply(undecodable.create("abc", &data()).await);
}

#[tokio::test]
async fn session_limit_and_other_server_errors() {
    let full = store(&Fake::replying(error_reply("ERR session limit reached")));
    let err = full.create("abc", &data()).await.unwrap_err();
    assert!(is_session_limit(&err), "{err:?}");
    assert!(!err.is_transient());
    let exists = store(&Fake::replying(error_reply("ERR session already exists")));
    let err = exists.create("abc", &data()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Server { code, message } if code == "ERR" && message == "session already exists"),
        "{err:?}"
    );
    assert!(!is_session_limit(&err));
    assert!(!is_session_limit(&Error::Server {
        code: "WRONGTYPE".into(),
        message: "session limit reached".into()
    }));
    let missing = store(&Fake::replying(error_reply(
        "ERR unknown command 'TK.SESSION.CREATE', with args beginning with: ",
    )));
    let err = missing.create("abc", &data()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ModuleNotLoaded {
                command: "TK.SESSION.CREATE"
            }
        ),
        "{err:?}"
    );
    let wrongtype = store(&Fake::replying(error_reply(
        "WRONGTYPE Operation against a key",
    )));
    let err = wrongtype.get(&abc_token()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Server { code, .. } if code == "WRONGTYPE"),
        "{err:?}"
    );
}

#[tokio::test]
async fn touch_and_get_send_only_the_session_key() {
    let fake = Fake::replying(session_reply("abc", DATA_JSON, 2));
    let sessions = store(&fake);
    let token = abc_token();
    let touched = sessions.touch(&token).await.unwrap().unwrap();
    assert_eq!(touched.data, data());
    assert_eq!(touched.version, 2);
    sessions
        .touch_with(
            &token,
            TouchOptions {
                idle: Some(Duration::from_secs(600)),
                min_gap: Some(Duration::from_micros(60_000_001)),
            },
        )
        .await
        .unwrap();
    sessions
        .touch_with(
            &token,
            TouchOptions {
                min_gap: Some(Duration::from_secs(1)),
                ..TouchOptions::default()
            },
        )
        .await
        .unwrap();
    let got = sessions.get(&token).await.unwrap().unwrap();
    assert_eq!(got, touched);
    assert_eq!(
        fake.sent(),
        [
            vec!["TK.SESSION.TOUCH", ABC_KEY],
            vec![
                "TK.SESSION.TOUCH",
                ABC_KEY,
                "IDLE",
                "600000",
                "MINGAP",
                "60001"
            ],
            vec!["TK.SESSION.TOUCH", ABC_KEY, "MINGAP", "1000"],
            vec!["TK.SESSION.GET", ABC_KEY],
        ]
    );
}

#[tokio::test]
async fn touch_and_get_of_gone_sessions_are_none() {
    let sessions = store(&Fake::replying(Value::Nil));
    assert!(sessions.touch(&abc_token()).await.unwrap().is_none());
    assert!(sessions.get(&abc_token()).await.unwrap().is_none());
}

#[tokio::test]
async fn touch_and_get_check_the_reply() {
    // A session of a user whose tag is not the token's.
    let sessions = store(&Fake::replying(session_reply("abd", DATA_JSON, 1)));
    let message = unexpected_reply(sessions.touch(&abc_token()).await);
    assert!(message.contains("another user"), "{message}");
    unexpected_reply(sessions.get(&abc_token()).await);
    let short = store(&Fake::replying(ints(&[1, 2, 3])));
    let message = unexpected_reply(short.get(&abc_token()).await);
    assert!(
        message.starts_with("TK.SESSION.GET: expected an array of 7"),
        "{message}"
    );
    let undecodable = store(&Fake::replying(session_reply(
        "abc",
        r#"{"x":"secret"}"#,
        1,
    )));
    let message = unexpected_reply(undecodable.touch(&abc_token()).await);
    assert!(
        message.starts_with("TK.SESSION.TOUCH: the session data"),
        "{message}"
    );
    assert!(!message.contains("secret"));
}

#[tokio::test]
async fn invalid_touches_send_nothing() {
    let fake = Fake::replying(Value::Nil);
    let sessions = store(&fake);
    for options in [
        TouchOptions {
            idle: Some(Duration::ZERO),
            ..TouchOptions::default()
        },
        TouchOptions {
            min_gap: Some(Duration::from_nanos(1)),
            ..TouchOptions::default()
        },
        TouchOptions {
            idle: Some(MAX_DURATION * 2),
            ..TouchOptions::default()
        },
    ] {
        invalid_argument(sessions.touch_with(&abc_token(), options).await);
    }
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn update_outcomes() {
    let token = abc_token();
    let updated = Fake::replying(Value::Int(8));
    let outcome = store(&updated)
        .update(&token, &data(), Some(7))
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Updated { version: 8 });
    let outcome = store(&updated).update(&token, &data(), None).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Updated { version: 8 });
    assert_eq!(
        updated.sent(),
        [
            vec!["TK.SESSION.SET", ABC_KEY, DATA_JSON, "IFVERSION", "7"],
            vec!["TK.SESSION.SET", ABC_KEY, DATA_JSON],
        ]
    );
    let gone = store(&Fake::replying(Value::Nil));
    assert_eq!(
        gone.update(&token, &data(), Some(1)).await.unwrap(),
        UpdateOutcome::Gone
    );
    for line in [
        "ERR version mismatch",
        "ERR version mismatch: expected 7, current 9",
    ] {
        let mismatch = store(&Fake::replying(error_reply(line)));
        assert_eq!(
            mismatch.update(&token, &data(), Some(7)).await.unwrap(),
            UpdateOutcome::VersionMismatch
        );
    }
    // Other errors stay errors.
    let other = store(&Fake::replying(error_reply("ERR value too large")));
    let err = other.update(&token, &data(), Some(7)).await.unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err:?}");
    let wrongtype = store(&Fake::replying(error_reply("WRONGTYPE version mismatch")));
    assert!(wrongtype.update(&token, &data(), Some(7)).await.is_err());
    let bad = store(&Fake::replying(Value::Int(-3)));
    unexpected_reply(bad.update(&token, &data(), None).await);
    // Not JSON-serializable (a map with non-string keys): refused before sending.
    let odd_fake = Fake::replying(Value::Int(1));
    let odd: SessionStore<std::collections::HashMap<(u8, u8), u8>, Fake> =
        SessionStore::new(odd_fake.clone());
    let map = [((1, 2), 3)].into_iter().collect();
    assert!(invalid_argument(odd.update(&token, &map, None).await).contains("JSON"));
    assert!(odd_fake.sent().is_empty());
    // Versions the module cannot hold.
    let fake = Fake::replying(Value::Int(1));
    invalid_argument(
        store(&fake)
            .update(&token, &data(), Some(MAX_VERSION + 1))
            .await,
    );
    assert!(fake.sent().is_empty());
    let outcome = store(&fake)
        .update(&token, &data(), Some(MAX_VERSION))
        .await;
    assert_eq!(outcome.unwrap(), UpdateOutcome::Updated { version: 1 });
}

#[tokio::test]
async fn destroy_sends_both_keys() {
    let fake = Fake::sequence(vec![Ok(Value::Int(1)), Ok(Value::Int(0))]);
    let sessions = store(&fake);
    assert!(sessions.destroy(&abc_token(), "abc").await.unwrap());
    assert!(!sessions.destroy(&abc_token(), "abc").await.unwrap());
    assert_eq!(
        fake.sent(),
        [
            vec!["TK.SESSION.DESTROY", ABC_KEY, ABC_INDEX],
            vec!["TK.SESSION.DESTROY", ABC_KEY, ABC_INDEX],
        ]
    );
    let bad = store(&Fake::replying(Value::Int(2)));
    unexpected_reply(bad.destroy(&abc_token(), "abc").await);
}

#[tokio::test]
async fn destroy_by_id_builds_the_key_from_the_user() {
    let fake = Fake::replying(Value::Int(1));
    let sessions = store(&fake);
    let id = abc_token().id();
    assert!(sessions.destroy_by_id("abc", &id).await.unwrap());
    assert_eq!(
        fake.sent(),
        [vec!["TK.SESSION.DESTROY", ABC_KEY, ABC_INDEX]]
    );
    for bad in [
        String::new(),
        id.to_uppercase(),
        id[..63].to_owned(),
        format!("{id}0"),
        ABC_KEY.to_owned(),
        format!("x{}", &id[1..]),
    ] {
        invalid_argument(sessions.destroy_by_id("abc", &bad).await);
    }
    invalid_argument(sessions.destroy_by_id("", &id).await);
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn rotate_moves_to_a_new_token_of_the_same_user() {
    let fake = Fake::replying(Value::Int(1));
    let sessions = store(&fake);
    let old = abc_token();
    let new = sessions.rotate(&old, "abc").await.unwrap().unwrap();
    assert_eq!(new.tag(), ABC_TAG);
    assert_ne!(new.as_str(), old.as_str());
    assert_eq!(
        fake.sent(),
        [vec![
            "TK.SESSION.ROTATE".to_owned(),
            ABC_KEY.into(),
            session_key(&new),
            ABC_INDEX.into(),
        ]]
    );
    let gone = store(&Fake::replying(Value::Nil));
    assert!(gone.rotate(&old, "abc").await.unwrap().is_none());
    let exists = store(&Fake::replying(error_reply("ERR session already exists")));
    assert!(matches!(
        exists.rotate(&old, "abc").await,
        Err(Error::Server { .. })
    ));
}

#[tokio::test]
async fn tokens_of_another_user_are_refused() {
    let fake = Fake::replying(Value::Int(1));
    let sessions = store(&fake);
    let token = abc_token();
    for message in [
        invalid_argument(sessions.destroy(&token, "abd").await),
        invalid_argument(sessions.rotate(&token, "abd").await),
        invalid_argument(sessions.revoke_all("abd", Some(&token)).await),
    ] {
        assert!(message.contains("not issued to the user"), "{message}");
        assert!(!message.contains("abd") && !message.contains(ABC_TAG));
    }
    invalid_argument(sessions.destroy(&token, "").await);
    invalid_argument(sessions.rotate(&token, "").await);
    invalid_argument(sessions.revoke_all("", None).await);
    invalid_argument(sessions.list("").await);
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn list_returns_ids_not_tokens() {
    let token = abc_token();
    let other = SessionToken::generate(ABC_TAG).unwrap();
    let fake = Fake::replying(Value::Array(vec![
        info_reply(&session_key(&other), [10, 30, 40]),
        info_reply(&session_key(&token), [5, 20, 25]),
    ]));
    let list = store(&fake).list("abc").await.unwrap();
    assert_eq!(
        list,
        [
            SessionInfo {
                id: other.id(),
                created: at(10),
                last_active: at(30),
                expires_at: at(40),
            },
            SessionInfo {
                id: token.id(),
                created: at(5),
                last_active: at(20),
                expires_at: at(25),
            },
        ]
    );
    assert!(list.iter().any(|info| info.id == token.id()));
    assert_eq!(fake.sent(), [vec!["TK.SESSION.LIST", ABC_INDEX]]);
    let empty = store(&Fake::replying(Value::Array(vec![])));
    assert!(empty.list("abc").await.unwrap().is_empty());
}

#[tokio::test]
async fn list_refuses_keys_of_another_shape_or_user() {
    let token = abc_token();
    let id = token.id();
    for key in [
        format!("tk:s:{{{}}}:{id}", user_tag("abd")),
        format!("tk:s:{{{ABC_TAG}}}:{}", id.to_uppercase()),
        format!("tk:s:{{{ABC_TAG}}}:{}", &id[..63]),
        format!("tk:s:{{{ABC_TAG}}}{id}"),
        format!("tk:si:{{{ABC_TAG}}}:{id}"),
        id.clone(),
    ] {
        let reply = Value::Array(vec![
            info_reply(&session_key(&token), [1, 2, 3]),
            info_reply(&key, [1, 2, 3]),
        ]);
        let message = unexpected_reply(store(&Fake::replying(reply)).list("abc").await);
        assert_eq!(
            message,
            "TK.SESSION.LIST: element 1 is not a session key of this user"
        );
    }
    let bad = store(&Fake::replying(Value::Array(vec![ints(&[1, 2, 3, 4])])));
    let message = unexpected_reply(bad.list("abc").await);
    assert!(
        message.starts_with("TK.SESSION.LIST: session 0"),
        "{message}"
    );
}

#[tokio::test]
async fn revoke_all_with_and_without_an_exception() {
    let fake = Fake::sequence(vec![Ok(Value::Int(3)), Ok(Value::Int(0))]);
    let sessions = store(&fake);
    assert_eq!(sessions.revoke_all("abc", None).await.unwrap(), 3);
    assert_eq!(
        sessions
            .revoke_all("abc", Some(&abc_token()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        fake.sent(),
        [
            vec!["TK.SESSION.REVOKEALL", ABC_INDEX],
            vec!["TK.SESSION.REVOKEALL", ABC_INDEX, "EXCEPT", ABC_KEY],
        ]
    );
    let bad = store(&Fake::replying(Value::Int(-1)));
    unexpected_reply(bad.revoke_all("abc", None).await);
}

#[tokio::test]
async fn transient_errors_and_timeouts() {
    let sessions = store(&Fake::new(|_| Some(reset())));
    assert!(matches!(
        sessions.touch(&abc_token()).await,
        Err(Error::Connection(_))
    ));
    assert!(matches!(
        sessions.update(&abc_token(), &data(), Some(1)).await,
        Err(Error::Connection(_))
    ));
    let slow = store(&Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
    let err = slow.get(&abc_token()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    let err = slow.create("abc", &data()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

// ---- compile-time checks -----------------------------------------

fn assert_send<T: Send>(_: &T) {}

/// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
/// for the default, cluster and multiplexed connections.
#[allow(dead_code)]
fn futures_are_send(
    single: &SessionStore<Data>,
    cluster: &SessionStore<Data, redis::cluster_async::ClusterConnection>,
    multiplexed: &SessionStore<Data, redis::aio::MultiplexedConnection>,
    token: &SessionToken,
    data: &Data,
) {
    assert_send(&single.create("u", data));
    assert_send(&single.touch(token));
    assert_send(&single.touch_with(token, TouchOptions::default()));
    assert_send(&single.get(token));
    assert_send(&single.update(token, data, Some(1)));
    assert_send(&single.destroy(token, "u"));
    assert_send(&single.destroy_by_id("u", "id"));
    assert_send(&single.rotate(token, "u"));
    assert_send(&single.list("u"));
    assert_send(&single.revoke_all("u", Some(token)));
    assert_send(&cluster.create("u", data));
    assert_send(&multiplexed.touch(token));
}
