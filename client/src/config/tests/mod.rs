//! Unit tests of the settings, their parsing and the connection settings.

use std::collections::HashMap;
use std::time::Duration;

use redis::ConnectionAddr;

use super::addr::addr_strings;
use super::env::parse_duration;
use super::url::{percent_decode, percent_encode, redact_url};
use super::*;
use crate::error::Error;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn lookup(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| env.get(name).cloned())
}

/// The error for one bad variable; checks that it names the variable
/// and the value, and returns the reason.
fn invalid(variable: &str, value: &str) -> String {
    let err = lookup(&[(variable, value)]).expect_err(value);
    let message = err.to_string();
    match err {
        ConfigError::Invalid {
            variable: named,
            value: shown,
            reason,
        } => {
            assert_eq!(named, variable);
            assert_eq!(shown, value.trim());
            assert!(message.contains(variable), "{message}");
            assert!(
                message.contains(&format!("{:?}", value.trim())),
                "{message}"
            );
            reason
        }
        other => panic!("{other:?}"),
    }
}

fn url_error(url: &str) -> String {
    match Config::from_url(url) {
        Err(ConfigError::InvalidUrl { reason, .. }) => reason,
        other => panic!("{url}: {other:?}"),
    }
}

// ---- defaults ----------------------------------------------------

/// Every variable holding addresses: one, or a list of them.
const ADDRESS_VARIABLES: [&str; 4] = [
    vars::ADDR,
    vars::CACHE_ADDR,
    vars::CLUSTER_NODES,
    vars::SENTINEL_ADDRS,
];

mod building;
mod from_env;
mod parsing;
