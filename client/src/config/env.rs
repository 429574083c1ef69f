//! Settings from environment variables: [`Config::from_env`] and
//! [`Config::from_lookup`] read the text forms (numbers, flags, durations)
//! and hand every setting to the [`ConfigBuilder`](super::ConfigBuilder),
//! which validates them.

use crate::functions::TkMode;
use std::time::Duration;

use super::builder::POOL_SIZE_RULE;
use super::{parse_digits, vars, Config, ConfigError, REDACTED};

impl Config {
    /// Reads the [environment variables](crate::config#environment-variables) of the
    /// process. See [`Config::from_lookup`] for the rules.
    ///
    /// A value that is not valid UTF-8 is an error too.
    pub fn from_env() -> Result<Config, ConfigError> {
        for variable in vars::ALL {
            if let Some(value) = std::env::var_os(variable) {
                if value.to_str().is_none() {
                    let shown = if vars::is_secret(variable) {
                        REDACTED.to_owned()
                    } else {
                        value.to_string_lossy().into_owned()
                    };
                    return Err(ConfigError::Invalid {
                        variable,
                        value: shown,
                        reason: "not valid UTF-8".into(),
                    });
                }
            }
        }
        Config::from_lookup(|variable| std::env::var(variable).ok())
    }

    /// Reads the settings through `lookup`, which returns a variable's value
    /// (`None` when unset), e.g. from a map in tests:
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// use tk_redis::config::Config;
    ///
    /// let env = HashMap::from([
    ///     ("REDIS_ADDR", "redis:6379"),
    ///     ("REDIS_READ_TIMEOUT", "500ms"),
    ///     ("REDIS_CACHE_ENABLED", "off"),
    /// ]);
    /// let config = Config::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.addr().to_string(), "redis:6379");
    /// assert_eq!(config.read_timeout(), Duration::from_millis(500));
    /// assert!(!config.cache_enabled());
    /// assert_eq!(config.pool_size(), 20);
    /// ```
    ///
    /// Empty (or whitespace-only) values count as unset (the passwords
    /// excepted: only an empty one does); everything else
    /// must parse, or the result is [`ConfigError::Invalid`] naming the
    /// variable and the value. The syntax is in the
    /// [module docs](crate::config#environment-variables); the combinations of the
    /// topology variables are checked as described [there](crate::config#topologies)
    /// ([`ConfigError::Conflict`], [`ConfigError::Missing`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // Values other than the passwords are trimmed; blank means unset.
        let get = |variable: &str| {
            lookup(variable)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let mut builder = Config::builder()
            .password(lookup(vars::PASSWORD).unwrap_or_default())
            .sentinel_password(lookup(vars::SENTINEL_PASSWORD).unwrap_or_default());
        // Addresses and names are text to the builder too: it parses them.
        if let Some(addr) = get(vars::ADDR) {
            builder = builder.addr(addr);
        }
        if let Some(addr) = get(vars::CACHE_ADDR) {
            builder = builder.cache_addr(addr);
        }
        if let Some(nodes) = get(vars::CLUSTER_NODES) {
            builder = builder.cluster_nodes([nodes]);
        }
        if let Some(addrs) = get(vars::SENTINEL_ADDRS) {
            builder = builder.sentinel_addrs([addrs]);
        }
        if let Some(name) = get(vars::SENTINEL_MASTER) {
            builder = builder.sentinel_master(name);
        }
        if let Some(username) = get(vars::USERNAME) {
            builder = builder.username(username);
        }
        if let Some(db) = parsed(get, vars::DB, parse_db)? {
            builder = builder.db(db);
        }
        if let Some(size) = parsed(get, vars::POOL_SIZE, parse_pool_size)? {
            builder = builder.pool_size(size);
        }
        if let Some(timeout) = parsed(get, vars::DIAL_TIMEOUT, parse_duration)? {
            builder = builder.dial_timeout(timeout);
        }
        if let Some(timeout) = parsed(get, vars::READ_TIMEOUT, parse_duration)? {
            builder = builder.read_timeout(timeout);
        }
        if let Some(timeout) = parsed(get, vars::WRITE_TIMEOUT, parse_duration)? {
            builder = builder.write_timeout(timeout);
        }
        if let Some(enabled) = parsed(get, vars::SESSIONS_ENABLED, parse_bool)? {
            builder = builder.sessions_enabled(enabled);
        }
        if let Some(enabled) = parsed(get, vars::CACHE_ENABLED, parse_bool)? {
            builder = builder.cache_enabled(enabled);
        }
        if let Some(enabled) = parsed(get, vars::RATELIMIT_ENABLED, parse_bool)? {
            builder = builder.ratelimit_enabled(enabled);
        }
        if let Some(mode) = parsed(get, vars::TK_MODE, str::parse::<TkMode>)? {
            builder = builder.tk_mode(mode);
        }
        builder.build().map_err(|err| err.showing_text_of(get))
    }
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] from the builder shows the value as the
    /// builder had it (`0ns` for a zero timeout); show the variable's text
    /// as it was set instead (`0s`). Passwords are never shown.
    fn showing_text_of(self, get: impl Fn(&str) -> Option<String>) -> ConfigError {
        match self {
            ConfigError::Invalid {
                variable,
                value,
                reason,
            } if !vars::is_secret(variable) => ConfigError::Invalid {
                variable,
                value: get(variable).unwrap_or(value),
                reason,
            },
            other => other,
        }
    }
}

/// `variable`'s value (through `get`) parsed by `parse`; `None` when unset.
fn parsed<T>(
    get: impl Fn(&str) -> Option<String>,
    variable: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    get(variable)
        .map(|text| parse(&text).map_err(|reason| ConfigError::invalid(variable, &text, reason)))
        .transpose()
}

fn parse_db(text: &str) -> Result<u32, String> {
    parse_digits(text).ok_or_else(|| format!("expected a database number from 0 to {}", u32::MAX))
}

/// Only the syntax: the builder refuses 0.
fn parse_pool_size(text: &str) -> Result<usize, String> {
    parse_digits(text).ok_or_else(|| POOL_SIZE_RULE.to_owned())
}

/// The units, for error messages.
const UNITS_HELP: &str = "use ns, us, ms, s, m or h, e.g. 500ms, 5s or 1m30s";

/// A duration in [`humantime`]'s syntax, plus what the documented syntax
/// has and humantime has not: a bare integer meaning seconds and a leading
/// `+`. Negative durations are refused with a clear message. Zero is
/// accepted here; the builder refuses a zero timeout.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return parse_digits(text)
            .map(Duration::from_secs)
            .ok_or_else(|| "duration is too large".into());
    }
    humantime::parse_duration(text).map_err(|err| {
        use humantime::DurationError;
        match err {
            DurationError::Empty => format!("expected a number with a unit ({UNITS_HELP})"),
            DurationError::NumberExpected(at) => {
                format!("expected a number at {:?} ({UNITS_HELP})", &text[at..])
            }
            DurationError::InvalidCharacter(at) => {
                format!("invalid character at {:?} ({UNITS_HELP})", &text[at..])
            }
            DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => format!(
                "missing unit after {value} ({UNITS_HELP}; only a whole number alone means \
                 seconds)"
            ),
            DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit {unit:?} ({UNITS_HELP})")
            }
            DurationError::NumberOverflow => {
                "duration is too large, or finer than a nanosecond".into()
            }
        }
    })
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case.
fn parse_bool(text: &str) -> Result<bool, String> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if TRUE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Ok(true)
    } else if FALSE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Ok(false)
    } else {
        Err("expected true/false, 1/0, yes/no or on/off".into())
    }
}
