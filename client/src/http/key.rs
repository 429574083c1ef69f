//! Who a rate limit counts against: the [`KeyExtractor`] trait and the
//! ready ones ([`ClientIp`], [`UserKey`], [`HeaderKey`], [`Or`]).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, Request, StatusCode};
use ipnet::IpNet;

use super::{json_error, AuthenticatedUser};
use crate::error::{Error, Result};

/// Finds the key a request is counted under (a client address, a user, an
/// API key).
///
/// Keys are only compared, never shown: [`RateLimitLayer`](super::RateLimitLayer)
/// hashes them into the Redis key, so any text is fine. Keys of different
/// kinds should not collide: the ready extractors prefix theirs (`ip:`,
/// `user:`, `header:<name>:`).
///
/// ```
/// use http::Request;
/// use tk_redis::http::{KeyExtractor, KeyRejection};
///
/// /// Limits per tenant, from a header the gateway sets.
/// #[derive(Clone)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     fn key<B>(&self, request: &Request<B>) -> Result<String, KeyRejection> {
///         request
///             .headers()
///             .get("x-tenant")
///             .and_then(|value| value.to_str().ok())
///             .map(|tenant| format!("tenant:{tenant}"))
///             .ok_or_else(|| KeyRejection::bad_request("missing X-Tenant header"))
///     }
/// }
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The request's key, or why it has none (answered as is, and the
    /// request goes no further).
    fn key<B>(&self, request: &Request<B>) -> Result<String, KeyRejection>;

    /// This extractor, and `other` for requests this one has no key for,
    /// e.g. `UserKey.or(ClientIp::new())`: per user when logged in, per
    /// address otherwise.
    fn or<K: KeyExtractor>(self, other: K) -> Or<Self, K>
    where
        Self: Sized,
    {
        Or(self, other)
    }
}

/// Why a [`KeyExtractor`] found no key: the response sent instead (a JSON
/// error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRejection {
    /// The response's status.
    pub status: StatusCode,
    /// What is missing, for the response's `message`.
    pub message: Cow<'static, str>,
}

impl KeyRejection {
    /// 400 Bad Request: the client left out what the key is made of.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> KeyRejection {
        KeyRejection {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 401 Unauthorized: the key is the user, and nobody is logged in.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> KeyRejection {
        KeyRejection {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    /// 500 Internal Server Error: the application is set up wrong.
    pub fn misconfigured(message: impl Into<Cow<'static, str>>) -> KeyRejection {
        KeyRejection {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl IntoResponse for KeyRejection {
    fn into_response(self) -> Response {
        json_error(self.status, "no_rate_limit_key", &self.message)
    }
}

/// The first extractor's key, or the second's when the first has none;
/// from [`KeyExtractor::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B>(pub A, pub B);

impl<A: KeyExtractor, B: KeyExtractor> KeyExtractor for Or<A, B> {
    fn key<R>(&self, request: &Request<R>) -> Result<String, KeyRejection> {
        self.0.key(request).or_else(|_| self.1.key(request))
    }
}

/// The [`AuthenticatedUser`] of the request, as `user:<id>`; 401 when there
/// is none (combine with [`KeyExtractor::or`] to limit anonymous requests
/// another way).
#[derive(Debug, Clone, Copy, Default)]
pub struct UserKey;

impl KeyExtractor for UserKey {
    fn key<B>(&self, request: &Request<B>) -> Result<String, KeyRejection> {
        request
            .extensions()
            .get::<AuthenticatedUser>()
            .map(|AuthenticatedUser(user)| format!("user:{user}"))
            .ok_or_else(|| KeyRejection::unauthorized("this endpoint needs a logged-in user"))
    }
}

/// The value of one request header, as `header:<name>:<value>` (e.g. an API
/// key); 400 when the header is missing.
///
/// Only use a header a client cannot choose freely (one checked by an
/// earlier layer, or set by your gateway): otherwise each new value is a
/// new, full allowance.
///
/// ```
/// use http::HeaderName;
/// use tk_redis::http::{HeaderKey, KeyExtractor};
///
/// let key = HeaderKey::new(HeaderName::from_static("x-api-key"));
/// let request = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap();
/// assert_eq!(key.key(&request).unwrap(), "header:x-api-key:k-123");
/// ```
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the header `name`.
    pub fn new(name: HeaderName) -> HeaderKey {
        HeaderKey { name }
    }
}

impl KeyExtractor for HeaderKey {
    fn key<B>(&self, request: &Request<B>) -> Result<String, KeyRejection> {
        let value = request
            .headers()
            .get(&self.name)
            .ok_or_else(|| KeyRejection::bad_request(format!("missing {} header", self.name)))?;
        // Keys are hashed, so non-UTF-8 bytes are kept rather than refused.
        Ok(format!(
            "header:{}:{}",
            self.name,
            String::from_utf8_lossy(value.as_bytes())
        ))
    }
}

/// The client's IP address, as `ip:<address>` (IPv4) or
/// `ip:<network>/<prefix>` (IPv6, grouped by prefix).
///
/// The address is the TCP peer's, from axum's
/// [`ConnectInfo<SocketAddr>`](ConnectInfo): serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`, or every request
/// is answered 500 saying so.
///
/// **Proxies.** `Forwarded` and `X-Forwarded-For` are read only when the
/// peer is one of the [trusted proxies](ClientIp::trust_proxies): anyone
/// else could write any address there and get a fresh allowance with each
/// request. The chain is read from the right (the hop nearest to us),
/// skipping trusted proxies; the first untrusted address is the client.
/// When `Forwarded` is present it is used, otherwise `X-Forwarded-For`. A
/// hop that is not an address (`unknown`, an obfuscated name, garbage)
/// ends the walk at the last trusted proxy, so such clients share that
/// proxy's allowance instead of escaping the limit.
///
/// **IPv6.** One subscriber usually gets a whole /64 (or more) and can use
/// any address in it, so IPv6 clients are grouped by their first 64 bits
/// by default ([`ipv6_prefix`](ClientIp::ipv6_prefix)). IPv4-mapped IPv6
/// addresses (`::ffff:192.0.2.1`) count as the IPv4 address.
///
/// ```
/// use tk_redis::http::ClientIp;
/// let behind_nginx = ClientIp::new().trust_proxies(["127.0.0.1", "10.0.0.0/8"])?.ipv6_prefix(56)?;
/// # let _ = behind_nginx;
/// # Ok::<(), tk_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    ipv6_prefix: u8,
}

/// The default grouping of IPv6 clients: /64.
const DEFAULT_IPV6_PREFIX: u8 = 64;

impl Default for ClientIp {
    fn default() -> Self {
        ClientIp::new()
    }
}

impl ClientIp {
    /// The peer address; no trusted proxies; IPv6 grouped by /64.
    pub fn new() -> ClientIp {
        ClientIp {
            trusted: Vec::new(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// Trusts the forwarding headers of peers in these networks
    /// (`10.0.0.0/8`, `fd00::/8`) or addresses (`127.0.0.1`), added to the
    /// ones already trusted. Text that is neither fails with
    /// [`Error::InvalidArgument`].
    pub fn trust_proxies<I, S>(mut self, proxies: I) -> Result<ClientIp>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for proxy in proxies {
            let text = proxy.as_ref().trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "trusted proxy {text:?} is neither an IP address nor a network \
                         like 10.0.0.0/8 or fd00::/8"
                    ))
                })?,
            };
            self.trusted.push(net);
        }
        Ok(self)
    }

    /// Groups IPv6 clients by their first `bits` bits (1 to 128; 128 keys
    /// each address apart). Anything else fails with
    /// [`Error::InvalidArgument`].
    pub fn ipv6_prefix(mut self, bits: u8) -> Result<ClientIp> {
        if !(1..=128).contains(&bits) {
            return Err(Error::InvalidArgument(format!(
                "the IPv6 prefix must be between 1 and 128 bits, got {bits}"
            )));
        }
        self.ipv6_prefix = bits;
        Ok(self)
    }

    /// The client's address for a request from `peer` with these headers,
    /// before grouping.
    fn client_addr(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops = forwarded_for(headers);
        if hops.is_empty() {
            hops = x_forwarded_for(headers);
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(addr) = hop.map(canonical) else {
                // Not an address: the trusted proxy on its right is the best
                // we know.
                return client;
            };
            client = addr;
            if !self.is_trusted(addr) {
                return addr;
            }
        }
        client
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// `ip:<v4>` or `ip:<v6 network>/<prefix>`.
    fn group(&self, addr: IpAddr) -> String {
        match addr {
            IpAddr::V4(v4) => format!("ip:{v4}"),
            IpAddr::V6(v6) => {
                let bits = u32::from(self.ipv6_prefix);
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let network = Ipv6Addr::from(u128::from(v6) & mask);
                format!("ip:{network}/{bits}")
            }
        }
    }
}

impl KeyExtractor for ClientIp {
    fn key<B>(&self, request: &Request<B>) -> Result<String, KeyRejection> {
        let ConnectInfo(peer) = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .ok_or_else(|| {
                KeyRejection::misconfigured(
                    "ClientIp needs the peer address: serve the router with \
                     into_make_service_with_connect_info::<SocketAddr>()",
                )
            })?;
        Ok(self.group(self.client_addr(peer.ip(), request.headers())))
    }
}

/// An IPv4-mapped IPv6 address as IPv4; any other address unchanged.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// The hops of all `X-Forwarded-For` headers, leftmost (the original
/// client) first; `None` for a hop that is not an address.
fn x_forwarded_for(headers: &http::HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| split_list(value.as_bytes()))
        .map(|hop| parse_hop(hop.trim()))
        .collect()
}

/// The `for=` of each element of all `Forwarded` headers (RFC 7239),
/// leftmost first; `None` for a hop that is not an address.
fn forwarded_for(headers: &http::HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|value| split_list(value.as_bytes()))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_hop(value.trim().trim_matches('"')))
        })
        .collect()
}

/// The comma-separated elements of a header value (none if not UTF-8).
fn split_list(value: &[u8]) -> Vec<&str> {
    std::str::from_utf8(value)
        .map(|text| text.split(',').collect())
        .unwrap_or_default()
}

/// An address, with or without a port: `192.0.2.1`, `192.0.2.1:8080`,
/// `2001:db8::1`, `[2001:db8::1]:8080`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    // `[v6]` without a port.
    hop.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    fn key(extractor: &ClientIp, peer: &str, headers: &[(&str, &str)]) -> String {
        extractor.key(&request(peer, headers)).unwrap()
    }

    #[test]
    fn untrusted_peers_forwarding_headers_are_ignored() {
        let ip = ClientIp::new();
        let spoofed = [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")];
        assert_eq!(key(&ip, "9.9.9.9:1", &spoofed), "ip:9.9.9.9");
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let ip = ClientIp::new()
            .trust_proxies(["10.0.0.0/8", "127.0.0.1"])
            .unwrap();
        let chain = [("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1")];
        // 6.6.6.6 was written by 1.2.3.4 (untrusted): not believed.
        assert_eq!(key(&ip, "127.0.0.1:1", &chain), "ip:1.2.3.4");
        let forwarded = [(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=http"#,
        )];
        assert_eq!(key(&ip, "10.0.0.2:1", &forwarded), "ip:2001:db8::/64");
        // All hops trusted: the leftmost.
        let inner = [("x-forwarded-for", "10.2.2.2, 10.3.3.3")];
        assert_eq!(key(&ip, "10.0.0.2:1", &inner), "ip:10.2.2.2");
        // Garbage ends the walk at the last trusted proxy.
        let garbage = [("x-forwarded-for", "1.1.1.1, nonsense, 10.4.4.4")];
        assert_eq!(key(&ip, "10.0.0.2:1", &garbage), "ip:10.4.4.4");
        let unknown = [("forwarded", "for=unknown")];
        assert_eq!(key(&ip, "10.0.0.2:1", &unknown), "ip:10.0.0.2");
        // Forwarded wins over X-Forwarded-For.
        let both = [("forwarded", "for=7.7.7.7"), ("x-forwarded-for", "8.8.8.8")];
        assert_eq!(key(&ip, "10.0.0.2:1", &both), "ip:7.7.7.7");
    }

    #[test]
    fn ipv6_is_grouped_by_prefix_and_mapped_v4_is_v4() {
        let ip = ClientIp::new();
        assert_eq!(
            key(&ip, "[2001:db8:1:2:aaaa::1]:1", &[]),
            key(&ip, "[2001:db8:1:2:bbbb::9]:1", &[])
        );
        assert_ne!(
            key(&ip, "[2001:db8:1:2::1]:1", &[]),
            key(&ip, "[2001:db8:1:3::1]:1", &[])
        );
        assert_eq!(key(&ip, "[::ffff:192.0.2.1]:1", &[]), "ip:192.0.2.1");
        let wide = ClientIp::new().ipv6_prefix(48).unwrap();
        assert_eq!(key(&wide, "[2001:db8:1:2::1]:1", &[]), "ip:2001:db8:1::/48");
        let exact = ClientIp::new().ipv6_prefix(128).unwrap();
        assert_eq!(key(&exact, "[2001:db8::1]:1", &[]), "ip:2001:db8::1/128");
        assert!(ClientIp::new().ipv6_prefix(0).is_err());
        assert!(ClientIp::new().ipv6_prefix(129).is_err());
    }

    #[test]
    fn bad_proxy_text_is_refused() {
        let err = ClientIp::new().trust_proxies(["10.0.0.0/33"]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn other_extractors() {
        let mut request = Request::builder()
            .header("x-api-key", "k1")
            .body(())
            .unwrap();
        assert_eq!(
            UserKey.key(&request).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let header = HeaderKey::new(HeaderName::from_static("x-api-key"));
        assert_eq!(header.key(&request).unwrap(), "header:x-api-key:k1");
        assert_eq!(
            UserKey.or(header.clone()).key(&request).unwrap(),
            "header:x-api-key:k1"
        );
        request
            .extensions_mut()
            .insert(AuthenticatedUser("42".into()));
        assert_eq!(UserKey.or(header).key(&request).unwrap(), "user:42");
        assert_eq!(
            ClientIp::new().key(&request).unwrap_err().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
