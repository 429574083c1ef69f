//! Server addresses: `host:port`, as in `REDIS_ADDR` and the lists of
//! `REDIS_CLUSTER_NODES` and `REDIS_SENTINEL_ADDRS`.

use std::fmt;
use std::net::Ipv6Addr;

use super::{parse_digits, ConfigError};

/// A server address: host and port.
///
/// ```
/// use tk_redis::config::Config;
///
/// let config = Config::from_url("redis://[::1]:7000").unwrap();
/// assert_eq!(config.addr().host(), "::1");
/// assert_eq!(config.addr().port(), 7000);
/// assert_eq!(config.addr().to_string(), "[::1]:7000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    /// Host name or IP address; an IPv6 address without brackets.
    pub(super) host: String,
    pub(super) port: u16,
}

impl Addr {
    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Parses `host:port`, with an IPv6 host in brackets (`[::1]:6379`);
    /// the port is required.
    pub(super) fn parse(text: &str) -> Result<Addr, String> {
        if text.contains("://") {
            return Err("expected host:port, not a URL (use Config::from_url for URLs)".into());
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let end = rest.find(']').ok_or("missing ']' after the IPv6 address")?;
            let (host, after) = (&rest[..end], &rest[end + 1..]);
            host.parse::<Ipv6Addr>()
                .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected {after:?} after ']'")),
            };
            (host, port)
        } else {
            let (host, port) = match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            if host.contains(':') {
                return Err("an IPv6 address must be in brackets, e.g. [::1]:6379".into());
            }
            (host, port)
        };
        // The host's errors first: "missing host" says more than "missing
        // port" about ":6379".
        Addr::check_host(host)?;
        let port = port.ok_or("missing port (expected host:port, e.g. redis:6379)")?;
        Addr::new(host, parse_port(port)?)
    }

    /// `host` (an IPv6 address without brackets) and `port`, checked.
    pub(super) fn new(host: &str, port: u16) -> Result<Addr, String> {
        Addr::check_host(host)?;
        if port == 0 {
            return Err("port must be a number from 1 to 65535, got 0".into());
        }
        Ok(Addr {
            host: host.to_owned(),
            port,
        })
    }

    /// A host name of `A-Z a-z 0-9 . - _`, an IPv4 address, or an IPv6
    /// address.
    fn check_host(host: &str) -> Result<(), String> {
        if host.is_empty() {
            return Err("missing host (expected host:port, e.g. redis:6379)".into());
        }
        if host.parse::<Ipv6Addr>().is_ok() {
            return Ok(());
        }
        match host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            Some(bad) => Err(format!("invalid character {bad:?} in host {host:?}")),
            None => Ok(()),
        }
    }
}

/// `host:port`, with an IPv6 host in brackets.
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port after ':'".into());
    }
    match parse_digits::<u16>(text) {
        Some(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "port must be a number from 1 to 65535, got {text:?}"
        )),
    }
}

/// A comma-separated list of `host:port` (e.g. `REDIS_CLUSTER_NODES`); the
/// error names `variable` and shows the whole `text`.
pub(super) fn parse_addr_list(
    variable: &'static str,
    text: &str,
) -> Result<Vec<Addr>, ConfigError> {
    text.split(',')
        .enumerate()
        .map(|(index, item)| {
            let item = item.trim();
            let number = index + 1;
            if item.is_empty() {
                return Err(ConfigError::invalid(
                    variable,
                    text,
                    format!("item {number} is empty (expected host:port,host:port,...)"),
                ));
            }
            Addr::parse(item).map_err(|reason| {
                ConfigError::invalid(variable, text, format!("item {number} {item:?}: {reason}"))
            })
        })
        .collect()
}

pub(super) fn addr_strings(addrs: &[Addr]) -> Vec<String> {
    addrs.iter().map(Addr::to_string).collect()
}
