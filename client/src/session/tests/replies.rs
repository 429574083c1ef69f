use super::*;

fn parse<T: FromRedisValue>(value: Value) -> Result<T, String> {
    redis::from_redis_value::<T>(value).map_err(|e| e.to_string())
}

#[test]
fn session_replies() {
    let raw: RawSession = parse(session_reply("abc", DATA_JSON, 7)).unwrap();
    assert_eq!(
        raw,
        RawSession {
            user: "abc".into(),
            data: DATA_JSON.as_bytes().to_vec(),
            created: at(1_000),
            last_active: at(2_000),
            expires_at: at(3_000),
            max_expires_at: at(4_000),
            version: 7,
        }
    );
    let session: Session<Data> = raw.decode(CMD_GET).unwrap();
    assert_eq!(session.data, data());
    assert_eq!(session.version, 7);
    assert_eq!(session.max_expires_at, at(4_000));
    // RESP3 attributes are transparent.
    let wrapped = Value::Attribute {
        data: Box::new(session_reply("abc", DATA_JSON, 0)),
        attributes: vec![],
    };
    assert!(parse::<RawSession>(wrapped).is_ok());
    assert_eq!(
        parse::<MaybeSession>(Value::Nil).unwrap(),
        MaybeSession(None)
    );
    assert!(parse::<MaybeSession>(session_reply("abc", "1", 1))
        .unwrap()
        .0
        .is_some());
}

#[test]
fn malformed_session_replies_are_rejected() {
    let good = match session_reply("abc", DATA_JSON, 1) {
        Value::Array(items) => items,
        _ => unreachable!(),
    };
    let with = |index: usize, value: Value| {
        let mut items = good.clone();
        items[index] = value;
        Value::Array(items)
    };
    let mut cases = vec![
        (Value::Nil, "got nil"),
        (Value::Int(1), "got integer"),
        (Value::Okay, "got OK"),
        (Value::Array(good[..6].to_vec()), "got 6 elements"),
        (
            Value::Array([good.clone(), vec![Value::Int(1)]].concat()),
            "got 8 elements",
        ),
        (Value::Array(vec![]), "got 0 elements"),
        (with(0, Value::Int(1)), "element 0 (user)"),
        (with(0, Value::BulkString(vec![0xff, 0xfe])), "not UTF-8"),
        (with(0, Value::SimpleString("abc".into())), "element 0"),
        (with(1, Value::Nil), "element 1 (data)"),
        (with(1, Value::Int(5)), "element 1 (data)"),
        (with(6, Value::Int(-1)), "version) is negative"),
        (with(6, bulk("1")), "element 6 (version)"),
        (with(5, Value::Double(1.0)), "element 5 (max_expires_at)"),
    ];
    for index in 2..=5 {
        cases.push((with(index, bulk("1000")), "should be an integer"));
        cases.push((with(index, Value::Int(-5)), "is negative"));
        cases.push((with(index, Value::Nil), "should be an integer"));
    }
    for (value, expected) in cases {
        let err = parse::<RawSession>(value.clone()).unwrap_err();
        assert!(err.contains(expected), "{value:?}: {err}");
        if !matches!(value, Value::Nil) {
            assert!(parse::<MaybeSession>(value).is_err());
        }
    }
}

#[test]
fn undecodable_data_does_not_leak_into_the_error() {
    for json in [
        r#"{"theme":"secret-value","visits":"secret-value"}"#,
        r#"{"theme":"secret-value""#,
        "secret-value",
        r#"["secret-value"]"#,
    ] {
        let raw: RawSession = parse(session_reply("abc", json, 1)).unwrap();
        let message = unexpected_reply(raw.decode::<Data>(CMD_GET));
        assert!(message.starts_with("TK.SESSION.GET: the session data does not decode"));
        assert!(!message.contains("secret"), "{message}");
    }
}

#[test]
fn list_replies() {
    let list: SessionList = parse(Value::Array(vec![
        info_reply("k1", [1, 2, 3]),
        info_reply("k2", [4, 5, 6]),
    ]))
    .unwrap();
    assert_eq!(list.0.len(), 2);
    assert_eq!(
        list.0[1],
        RawInfo {
            key: "k2".into(),
            created: at(4),
            last_active: at(5),
            expires_at: at(6),
        }
    );
    assert!(parse::<SessionList>(Value::Array(vec![]))
        .unwrap()
        .0
        .is_empty());
    for (value, expected) in [
        (Value::Nil, "expected an array of sessions"),
        (Value::Int(0), "expected an array of sessions"),
        (
            Value::Array(vec![Value::Int(1)]),
            "session 0: expected an array of 4",
        ),
        (
            Value::Array(vec![info_reply("k", [1, 2, 3]), ints(&[1, 2, 3, 4])]),
            "session 1: element 0 (session key)",
        ),
        (
            Value::Array(vec![info_reply("k", [1, -2, 3])]),
            "element 2 (last_active) is negative",
        ),
        (
            Value::Array(vec![Value::Array(vec![
                bulk("k"),
                Value::Int(1),
                Value::Int(2),
            ])]),
            "got 3 elements",
        ),
    ] {
        let err = parse::<SessionList>(value.clone()).unwrap_err();
        assert!(err.contains(expected), "{value:?}: {err}");
    }
}

#[test]
fn small_replies() {
    assert_eq!(
        parse::<NewVersion>(Value::Int(4)).unwrap(),
        NewVersion(Some(4))
    );
    assert_eq!(parse::<NewVersion>(Value::Nil).unwrap(), NewVersion(None));
    assert!(parse::<NewVersion>(Value::Int(-1)).is_err());
    assert!(parse::<NewVersion>(bulk("4")).is_err());
    assert!(parse::<NewVersion>(Value::Okay).is_err());
    assert_eq!(parse::<Flag>(Value::Int(1)).unwrap(), Flag(true));
    assert_eq!(parse::<Flag>(Value::Int(0)).unwrap(), Flag(false));
    assert!(parse::<Flag>(Value::Int(2)).is_err());
    assert!(parse::<Flag>(Value::Nil).is_err());
    assert_eq!(parse::<Rotated>(Value::Int(1)).unwrap(), Rotated(true));
    assert_eq!(parse::<Rotated>(Value::Nil).unwrap(), Rotated(false));
    assert!(parse::<Rotated>(Value::Int(0)).is_err());
    assert!(parse::<Rotated>(Value::Okay).is_err());
}

// ---- commands through a fake connection ------------------------------------
