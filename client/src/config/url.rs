//! `redis://` URLs: [`Config::from_url`] and [`Config::redis_url`], on the
//! `url` and `percent-encoding` crates.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::{Host, Url};

use super::{
    parse_digits, Addr, Config, ConfigError, Password, Settings, DEFAULT_DB, DEFAULT_PORT, REDACTED,
};

/// The accepted form, for error messages.
const FORM: &str = "expected redis://[:password@]host[:port][/db] or rediss://...";

/// What is percent-encoded in a user name or password: every byte but the
/// URL-unreserved ones.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Config {
    /// Parses `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://...` to request TLS (see the [module docs](crate::config#tls)).
    ///
    /// ```
    /// use tk_redis::config::Config;
    ///
    /// let config = Config::from_url("redis://:s3cret@redis:6380/2").unwrap();
    /// assert_eq!(config.addr().to_string(), "redis:6380");
    /// assert_eq!(config.password(), Some("s3cret"));
    /// assert_eq!(config.db(), 2);
    /// assert!(!config.tls());
    /// assert!(Config::from_url("rediss://cache.example.com").unwrap().tls());
    /// ```
    ///
    /// The port defaults to 6379 and the database to 0; the password may be
    /// percent-encoded. A user name other than `default` (which is what a
    /// password-only `AUTH` logs in as) is an ACL user, as with
    /// `REDIS_USERNAME`; query strings (`?...`) and
    /// fragments (`#...`) are rejected rather than ignored. Every other
    /// setting has its default; change them with [`Config::to_builder`].
    pub fn from_url(url: &str) -> Result<Config, ConfigError> {
        parse_url(url).map_err(|reason| ConfigError::InvalidUrl {
            url: redact_url(url),
            reason,
        })
    }

    /// The main standalone instance as a URL,
    /// `redis://[:password@]host:port/db` (`rediss://` with TLS), accepted
    /// back by [`Config::from_url`]. Cluster and Sentinel settings have no
    /// URL form.
    ///
    /// **Contains the password** (percent-encoded); do not log it.
    pub fn redis_url(&self) -> String {
        let scheme = if self.settings.tls { "rediss" } else { "redis" };
        let user = self
            .settings
            .username
            .as_deref()
            .map(percent_encode)
            .unwrap_or_default();
        let auth = match (&self.settings.password, user.is_empty()) {
            (Some(password), _) => format!("{user}:{}@", percent_encode(password.expose())),
            (None, false) => format!("{user}@"),
            (None, true) => String::new(),
        };
        format!("{scheme}://{auth}{}/{}", self.addr, self.settings.db)
    }
}

/// The settings of a `redis://` URL, each checked as it is read (the rest
/// are the defaults); the error is the reason.
fn parse_url(text: &str) -> Result<Config, String> {
    let (scheme, userinfo, rest) = split_userinfo(text).ok_or(FORM)?;
    let tls = match &scheme[..scheme.len() - "://".len()] {
        name if name.eq_ignore_ascii_case("redis") => false,
        name if name.eq_ignore_ascii_case("rediss") => true,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (expected redis or rediss)"
            ))
        }
    };
    // A URL parser drops spaces around a URL, and tabs and newlines in it;
    // here they are mistakes, as in REDIS_ADDR.
    if let Some(bad) = rest.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid character {bad:?} after the user info"));
    }
    let url = Url::parse(&format!("{scheme}{rest}")).map_err(|err| match err {
        url::ParseError::RelativeUrlWithoutBase => FORM.to_owned(),
        url::ParseError::EmptyHost => MISSING_HOST.to_owned(),
        url::ParseError::InvalidPort => {
            "port must be a number from 1 to 65535 (an IPv6 address must be in brackets, \
             e.g. [::1]:6379)"
                .to_owned()
        }
        other => other.to_string(),
    })?;
    if url.query().is_some() {
        return Err("query parameters (?...) are not supported".into());
    }
    if url.fragment().is_some() {
        return Err("fragments (#...) are not supported".into());
    }
    let host = match url.host() {
        Some(Host::Domain(host)) => host.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => String::new(),
    };
    let addr = Addr::new(&host, url.port().unwrap_or(DEFAULT_PORT))?;
    let db = match url.path() {
        "" | "/" => DEFAULT_DB,
        path => {
            let digits = &path[1..];
            parse_digits::<u32>(digits).ok_or_else(|| {
                format!(
                    "the path must be a database number from 0 to {}, got {digits:?}",
                    u32::MAX
                )
            })?
        }
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let user = percent_decode(user).map_err(|why| format!("user name: {why}"))?;
            // `default` is what a password-only AUTH logs in as.
            let username = (!(user.is_empty() || user == "default")).then_some(user);
            let password = match password {
                Some(password) => {
                    percent_decode(password).map_err(|why| format!("password: {why}"))?
                }
                None => String::new(),
            };
            (username, Password::new(password))
        }
    };
    Ok(Config {
        addr,
        settings: Settings {
            tls,
            username,
            password,
            db,
            ..Settings::default()
        },
        ..Config::default()
    })
}

const MISSING_HOST: &str = "missing host (expected host[:port], e.g. redis:6379; an IPv6 \
                            address must be in brackets, e.g. [::1]:6379)";

/// `url` split around its user info: `("redis://", Some(user info), the
/// rest)`, `None` without `://`. The user info ends at the **last** `@` (a
/// host or a path has none), so a password may contain unencoded `/`, `?`,
/// `#` or `@`, which a URL parser would take for the start of the path,
/// query or fragment.
fn split_userinfo(url: &str) -> Option<(&str, Option<&str>, &str)> {
    let start = url.find("://")? + 3;
    let (scheme, after) = url.split_at(start);
    Some(match after.rsplit_once('@') {
        Some((userinfo, rest)) => (scheme, Some(userinfo), rest),
        None => (scheme, None, after),
    })
}

/// `url` with the password of its user info replaced by `<redacted>`; a
/// user info without `:` other than `default` is redacted whole, in case it
/// is a password. Works on any text, parseable or not.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, Some(userinfo), rest)) = split_userinfo(url) else {
        return url.to_owned();
    };
    let kept = match userinfo.split_once(':') {
        Some((user, _)) => Cow::Owned(format!("{user}:{REDACTED}")),
        None if userinfo.is_empty() || userinfo == "default" => Cow::Borrowed(userinfo),
        None => Cow::Borrowed(REDACTED),
    };
    format!("{scheme}{kept}@{rest}")
}

/// Decodes `%XX` escapes; a `%` without two hex digits is an error (the
/// `percent-encoding` crate would keep it as it is), and so is a result
/// that is not UTF-8.
pub(super) fn percent_decode(text: &str) -> Result<String, String> {
    let escapes_valid = text
        .split('%')
        .skip(1)
        .all(|after| after.len() >= 2 && after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if !escapes_valid {
        return Err("invalid %-escape (expected % followed by two hex digits)".into());
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| "not valid UTF-8 once %-decoded".into())
}

/// Encodes a user name or password for the URL.
pub(super) fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, USERINFO).to_string()
}
