//! The parsing of the `TK.SESSION.*` replies.

use super::*;
use crate::error::Result;
use crate::reply::{
    bulk, detail, elements, from_json, integer, into_unwrapped, text, type_name, unwrap_attribute,
};
use redis::{FromRedisValue, ParsingError, Value};
use serde::de::DeserializeOwned;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An element holding Unix milliseconds.
pub(super) fn unix_ms(value: &Value, index: usize, what: &str) -> Result<SystemTime, ParsingError> {
    let ms = integer(value, index, what)?;
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .ok_or_else(|| format!("element {index} ({what}) is out of range ({ms})").into())
}

/// A session reply: `[user, data, created, last_active, expires_at,
/// max_expires_at, version]`, with the data still JSON.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RawSession {
    pub(super) user: String,
    pub(super) data: Vec<u8>,
    pub(super) created: SystemTime,
    pub(super) last_active: SystemTime,
    pub(super) expires_at: SystemTime,
    pub(super) max_expires_at: SystemTime,
    pub(super) version: u64,
}

impl RawSession {
    pub(super) fn decode<T: DeserializeOwned>(self, command: &str) -> Result<Session<T>> {
        let data = from_json(&self.data, command, DATA)?;
        Ok(Session {
            user: self.user,
            data,
            created: self.created,
            last_active: self.last_active,
            expires_at: self.expires_at,
            max_expires_at: self.max_expires_at,
            version: self.version,
        })
    }
}

impl FromRedisValue for RawSession {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let [user, data, created, last_active, expires_at, max_expires_at, version] =
            elements::<7>(value)?;
        Ok(RawSession {
            user: text(user, 0, "user")?,
            data: bulk(data, 1, "data")?,
            created: unix_ms(&created, 2, "created")?,
            last_active: unix_ms(&last_active, 3, "last_active")?,
            expires_at: unix_ms(&expires_at, 4, "expires_at")?,
            max_expires_at: unix_ms(&max_expires_at, 5, "max_expires_at")?,
            version: integer(&version, 6, "version")?,
        })
    }
}

/// A session reply, or nil (TOUCH, GET).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MaybeSession(pub(super) Option<RawSession>);

impl FromRedisValue for MaybeSession {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        match into_unwrapped(value) {
            Value::Nil => Ok(MaybeSession(None)),
            other => RawSession::from_redis_value(other).map(|raw| MaybeSession(Some(raw))),
        }
    }
}

/// One element of LIST's reply: `[skey, created, last_active, expires_at]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RawInfo {
    pub(super) key: String,
    pub(super) created: SystemTime,
    pub(super) last_active: SystemTime,
    pub(super) expires_at: SystemTime,
}

impl FromRedisValue for RawInfo {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let [key, created, last_active, expires_at] = elements::<4>(value)?;
        Ok(RawInfo {
            key: text(key, 0, "session key")?,
            created: unix_ms(&created, 1, "created")?,
            last_active: unix_ms(&last_active, 2, "last_active")?,
            expires_at: unix_ms(&expires_at, 3, "expires_at")?,
        })
    }
}

/// LIST's reply: an array of [`RawInfo`] (possibly empty).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SessionList(pub(super) Vec<RawInfo>);

impl FromRedisValue for SessionList {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        match into_unwrapped(value) {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    RawInfo::from_redis_value(item)
                        .map_err(|err| format!("session {index}: {}", detail(&err)).into())
                })
                .collect::<Result<_, ParsingError>>()
                .map(SessionList),
            other => {
                Err(format!("expected an array of sessions, got {}", type_name(&other)).into())
            }
        }
    }
}

/// SET's reply: the new version, or nil when the session is gone.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NewVersion(pub(super) Option<u64>);

impl FromRedisValue for NewVersion {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        match unwrap_attribute(value) {
            Value::Nil => Ok(NewVersion(None)),
            Value::Int(n) => u64::try_from(*n)
                .map(|version| NewVersion(Some(version)))
                .map_err(|_| format!("the version is negative ({n})").into()),
            other => Err(format!("expected an integer or nil, got {}", type_name(other)).into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}

/// ROTATE's reply: `1` moved, nil when the old session is gone.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Rotated(pub(super) bool);

impl FromRedisValue for Rotated {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        match unwrap_attribute(value) {
            Value::Int(1) => Ok(Rotated(true)),
            Value::Nil => Ok(Rotated(false)),
            Value::Int(other) => Err(format!("expected 1 or nil, got {other}").into()),
            other => Err(format!("expected the integer 1 or nil, got {}", type_name(other)).into()),
        }
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        Self::from_redis_value_ref(&value)
    }
}
