use super::*;

#[test]
fn generated_tokens_have_the_documented_format() {
    let token = SessionToken::generate(&user_tag("abc")).unwrap();
    let text = token.as_str();
    assert_eq!(text.len(), TOKEN_LEN);
    assert_eq!(TOKEN_LEN, 49);
    assert_eq!(&text[..16], ABC_TAG);
    assert_eq!(token.tag(), ABC_TAG);
    assert_eq!(&text[16..17], ".");
    // 32 hex digits: 16 bytes, 128 bits.
    assert!(is_lower_hex(&text[17..], 32));
    assert_eq!(SECRET_BYTES * 8, 128);
    // Parses back.
    assert_eq!(SessionToken::parse(text).unwrap().as_str(), text);
}

#[test]
fn generated_tokens_are_random() {
    let tokens: Vec<SessionToken> = (0..256)
        .map(|_| SessionToken::generate(ABC_TAG).unwrap())
        .collect();
    let distinct: HashSet<&str> = tokens.iter().map(SessionToken::as_str).collect();
    assert_eq!(distinct.len(), tokens.len());
    // Every secret position takes many values (a constant or counter
    // would not), and every hex digit shows up.
    for position in 17..TOKEN_LEN {
        let seen: HashSet<u8> = tokens
            .iter()
            .map(|t| t.as_str().as_bytes()[position])
            .collect();
        assert!(seen.len() >= 8, "position {position}: {seen:?}");
    }
    let digits: HashSet<u8> = tokens
        .iter()
        .flat_map(|t| t.as_str().as_bytes()[17..].to_vec())
        .collect();
    assert_eq!(digits.len(), 16);
}

#[test]
fn parsing_is_strict_and_does_not_echo() {
    let good = "ba7816bf8f01cfea.0123456789abcdef0123456789abcdef";
    assert!(SessionToken::parse(good).is_ok());
    assert!(good.parse::<SessionToken>().is_ok());
    let bad = [
        String::new(),
        ".".into(),
        good.to_uppercase(),
        good.replace('a', "A"),
        format!(" {good}"),
        format!("{good} "),
        format!("{good}\n"),
        format!("{good}0"),
        good[..48].to_owned(),
        good.replace('.', ":"),
        good.replacen('.', "", 1) + "0",
        // The dot elsewhere.
        "ba7816bf8f01cfe.a0123456789abcdef0123456789abcdef".into(),
        "ba7816bf8f01cfea0.123456789abcdef0123456789abcdef".into(),
        // Non-hex letters, signs, non-ASCII of the right byte length
        // (which must not panic on a char boundary either).
        good.replacen('f', "g", 1),
        good.replacen("01", "+1", 1),
        "ba7816bf8f01cfé.0123456789abcdef0123456789abcdef".into(),
        "ba7816bf8f01cfea.0123456789abcdef0123456789abcdé".into(),
        "é".repeat(24) + ".",
        "\u{0}".repeat(49),
        // Two tokens, or a token with a secret of 31/33 digits.
        format!("{good}.{good}"),
        "ba7816bf8f01cfea.0123456789abcdef0123456789abcde".into(),
        "ba7816bf8f01cfea.0123456789abcdef0123456789abcdef0".into(),
    ];
    for text in &bad {
        let message = invalid_argument(SessionToken::parse(text));
        assert!(
            message.contains("invalid session token"),
            "{text:?}: {message}"
        );
        if text.len() > 4 {
            assert!(!message.contains(text.as_str()), "{message}");
        }
        assert!(!message.contains("0123456789abcdef0123"), "{message}");
        assert!(text.parse::<SessionToken>().is_err());
    }
}

#[test]
fn debug_shows_only_the_tag() {
    let token = SessionToken::generate(ABC_TAG).unwrap();
    let debug = format!("{token:?}");
    assert_eq!(debug, r#"SessionToken { tag: "ba7816bf8f01cfea", .. }"#);
    assert!(!debug.contains(&token.as_str()[17..]));
    let pretty = format!("{token:#?}");
    assert!(!pretty.contains(&token.as_str()[17..]), "{pretty}");
}

// ---- keys ----------------------------------------------------------------

#[test]
fn keys_have_the_documented_shape() {
    let token = abc_token();
    assert_eq!(session_key(&token), ABC_KEY);
    assert_eq!(index_key("abc"), ABC_INDEX);
    assert_eq!(
        token.id(),
        "445ca5bef022c3cc38e2c329bce1d5737d35b2b0516f83123bee2d11709989c9"
    );
    assert_eq!(session_key(&token), key_of_id(ABC_TAG, &token.id()));
    // The token itself never appears in its key.
    assert!(!session_key(&token).contains(&token.as_str()[17..]));
    // The tag is the cache's: one routing tag per user.
    assert_eq!(ABC_TAG, crate::cache::user_tag("abc"));
}

#[test]
fn a_users_keys_share_one_slot() {
    for user in ["42", "alice", "ünïcødé", "{x}", "a}b{c", "with space", "}"] {
        let tag = user_tag(user);
        let token = SessionToken::generate(&tag).unwrap();
        let slot = key_slot(tag.as_bytes());
        for key in [session_key(&token), index_key(user)] {
            assert!(key.contains(&format!("{{{tag}}}")), "{key}");
            assert_eq!(key_slot(&key), slot, "{key}");
        }
        assert_eq!(
            key_slot(session_key(&token)),
            key_slot(crate::cache::index_key(user))
        );
    }
}

#[test]
fn lower_hex() {
    assert!(is_lower_hex("0123456789abcdef", 16));
    assert!(!is_lower_hex("0123456789abcdef", 15));
    assert!(!is_lower_hex("0123456789ABCDEF", 16));
    assert!(!is_lower_hex("0123456789abcdeg", 16));
    assert!(!is_lower_hex("+123456789abcdef", 16));
    assert!(is_lower_hex("", 0));
}

#[test]
fn durations_are_whole_ms_rounded_up() {
    assert_eq!(millis("x", Duration::from_millis(1)).unwrap(), 1);
    assert_eq!(millis("x", Duration::from_micros(1_001)).unwrap(), 2);
    assert_eq!(millis("x", DEFAULT_IDLE_TTL).unwrap(), 86_400_000);
    assert_eq!(millis("x", MAX_DURATION).unwrap(), 31_536_000_000);
    for bad in [
        Duration::ZERO,
        Duration::from_micros(999),
        MAX_DURATION + Duration::from_nanos(1),
        Duration::MAX,
    ] {
        assert!(invalid_argument(millis("idle_ttl", bad)).contains("idle_ttl"));
    }
}

// ---- options -------------------------------------------------------------

#[test]
fn defaults() {
    let options = SessionOptions::default();
    assert_eq!(options.idle_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(options.max_lifetime, None);
    assert_eq!(options.max_sessions, None);
    assert_eq!(
        TouchOptions::default(),
        TouchOptions {
            idle: None,
            min_gap: None
        }
    );
    let store = store(&Fake::replying(Value::Nil));
    assert_eq!(store.timeout(), crate::DEFAULT_TIMEOUT);
    assert_eq!(store.options(), &SessionOptions::default());
    let debug = format!("{store:?}");
    assert!(debug.contains("3s") && debug.contains("86400s"), "{debug}");
    let other = store
        .clone()
        .with_timeout(Duration::from_millis(5))
        .with_options(SessionOptions {
            max_sessions: Some((2, CapPolicy::Reject)),
            ..SessionOptions::default()
        });
    assert_eq!(other.timeout(), Duration::from_millis(5));
    assert_eq!(other.options().max_sessions, Some((2, CapPolicy::Reject)));
    assert_eq!(store.options().max_sessions, None);
    let _conn: &Fake = other.connection();
    let _conn: Fake = other.into_connection();
}

// ---- replies -------------------------------------------------------------
