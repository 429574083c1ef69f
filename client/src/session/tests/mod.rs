//! Unit tests of [`crate::session`].

use super::*;
use crate::keys::key_slot;
use crate::test_support::*;
use redis::{FromRedisValue, RedisResult, Value};
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Data {
    theme: String,
    visits: u32,
}

fn data() -> Data {
    Data {
        theme: "dark".into(),
        visits: 3,
    }
}

const DATA_JSON: &str = r#"{"theme":"dark","visits":3}"#;

/// SHA-256("abc") starts with this: the tag of user "abc".
const ABC_TAG: &str = "ba7816bf8f01cfea";

fn token(text: &str) -> SessionToken {
    SessionToken::parse(text).unwrap()
}

/// A fixed token of user "abc".
fn abc_token() -> SessionToken {
    token("ba7816bf8f01cfea.00000000000000000000000000000000")
}

/// Its session key (SHA-256 of the token's text, computed with sha256sum).
const ABC_KEY: &str =
    "tk:s:{ba7816bf8f01cfea}:445ca5bef022c3cc38e2c329bce1d5737d35b2b0516f83123bee2d11709989c9";
const ABC_INDEX: &str = "tk:si:{ba7816bf8f01cfea}:abc";

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A session reply of `user` with `json` and fixed times.
fn session_reply(user: &str, json: &str, version: i64) -> Value {
    Value::Array(vec![
        bulk(user),
        bulk(json),
        Value::Int(1_000),
        Value::Int(2_000),
        Value::Int(3_000),
        Value::Int(4_000),
        Value::Int(version),
    ])
}

fn info_reply(key: &str, times: [i64; 3]) -> Value {
    Value::Array(vec![
        bulk(key),
        Value::Int(times[0]),
        Value::Int(times[1]),
        Value::Int(times[2]),
    ])
}

fn reset() -> RedisResult<Value> {
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
}

fn store(fake: &Fake) -> SessionStore<Data, Fake> {
    SessionStore::new(fake.clone())
}

fn invalid_argument<T: fmt::Debug>(result: Result<T>) -> String {
    match result {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn unexpected_reply<T: fmt::Debug>(result: Result<T>) -> String {
    match result {
        Err(Error::UnexpectedReply(message)) => message,
        other => panic!("expected UnexpectedReply, got {other:?}"),
    }
}

// ---- tokens ------------------------------------------------------------

mod calls;
mod replies;
mod tokens_and_keys;
