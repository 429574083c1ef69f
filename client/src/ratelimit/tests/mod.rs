//! Unit tests of [`crate::ratelimit`].

use super::*;
use crate::test_support::*;
use redis::Value;
use std::sync::{Arc, Mutex};

fn invalid_quota(result: Result<impl fmt::Debug>) -> String {
    match result {
        Err(Error::InvalidQuota(message)) => message,
        other => panic!("expected InvalidQuota, got {other:?}"),
    }
}

// ---- quotas -------------------------------------------------------

mod calls;
mod policy;
mod quota;
