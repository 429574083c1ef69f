use super::*;

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
