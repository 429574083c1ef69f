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

mod calls;
mod get_or_compute;
mod key_names;
