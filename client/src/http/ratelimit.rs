//! [`RateLimitLayer`]: one or more quotas for a group of routes, checked
//! all-or-nothing per key with [`RateLimiter::check_all`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use redis::aio::{ConnectionLike, ConnectionManager};
use tower::{Layer, Service};

use super::key::KeyExtractor;
use super::{json_error, json_response};
use crate::error::{Error, Result};
use crate::keys::{tagged, user_tag, RATELIMIT_PREFIX};
use crate::ratelimit::{AllDecision, Decision, Quota, RateLimiter};

/// `RateLimit-Policy`: the quotas of the route group
/// (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of the quota nearest to exhaustion.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Fallback`: `fail-open` when Redis could not be asked and the
/// request was admitted anyway ([`FailurePolicy::FailOpen`](crate::FailurePolicy::FailOpen)), `fail-closed`
/// when it was refused for that reason ([`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed)).
pub const RATELIMIT_FALLBACK: HeaderName = HeaderName::from_static("x-ratelimit-fallback");

const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One named quota of a route group, e.g. `Policy::new("hourly",
/// Quota::per_hour(100))`. The name appears in the `RateLimit-Policy` and
/// `RateLimit` headers and in the Redis key: 1 to 64 characters of
/// `A-Z a-z 0-9 _ . -`. See [`RateLimitLayer`] for an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    quota: Quota,
}

impl Policy {
    /// A quota named `name` (checked by [`RateLimitLayer::new`]).
    pub fn new(name: impl Into<String>, quota: Quota) -> Policy {
        Policy {
            name: name.into(),
            quota,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }
}

/// Rate-limits the routes it wraps with one or more [`Policy`]s per key,
/// checked all-or-nothing (`TK.RATELIMIT.ALL`): a request is admitted only
/// if every policy admits it, and then counts against all of them.
///
/// - **Admitted:** the response gets `RateLimit-Policy` (every quota:
///   `"burst";q=10;w=1, "hourly";q=1000;w=3600`) and `RateLimit` (the
///   quota with the fewest left: `"hourly";r=994;t=3600`, `t` in seconds
///   until it is full again), and with
///   [`legacy_headers`](RateLimitLayer::legacy_headers) also
///   `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds).
/// - **Refused:** 429 with `Retry-After` in whole seconds **rounded up**
///   (a client that waits that long is admitted; rounding down would have
///   it refused again), the same headers (`RateLimit` about the refusing
///   quota), and a JSON body:
///   `{"error": "rate_limited", "message": ..., "policy": "burst", "retry_after": 1}`.
/// - **Redis unreachable:** the limiter's [`FailurePolicy`](crate::FailurePolicy) decides. Fail
///   open admits the request with `X-RateLimit-Fallback: fail-open`
///   ([`RATELIMIT_FALLBACK`]) and no other rate-limit header (there are
///   no real counts); fail closed answers 429 with `Retry-After: 1` and
///   `X-RateLimit-Fallback: fail-closed`; [`FailurePolicy::Error`](crate::FailurePolicy::Error)
///   answers 503. Any other error (module not loaded, ...) is a 500 whose
///   message says what is wrong.
///
/// Keys are `tk:rl:{<tag>}:<group>:<policy>`, where `<tag>` is a hash of
/// the [`KeyExtractor`]'s key: one Cluster slot per client, and no client
/// text in key names.
///
/// ```no_run
/// use axum::{routing::post, Router};
/// use tk_redis::http::{ClientIp, Policy, RateLimitLayer};
/// use tk_redis::{FailurePolicy, Quota, RateLimiter};
///
/// # async fn demo(conn: tk_redis::Connection) -> tk_redis::Result<()> {
/// // Logins: refuse when the limit cannot be enforced.
/// let limiter = RateLimiter::new(conn).with_failure_policy(FailurePolicy::FailClosed);
/// let login_limit = RateLimitLayer::new(
///     limiter,
///     "login",
///     ClientIp::new().trust_proxies(["127.0.0.1"])?,
///     [Policy::new("minute", Quota::per_minute(5)), Policy::new("hour", Quota::per_hour(20))],
/// )?;
/// let app: Router = Router::new()
///     .route("/login", post(|| async { "welcome" }))
///     .route_layer(login_limit);
/// # let _ = app; Ok(()) }
/// ```
pub struct RateLimitLayer<K, C = ConnectionManager> {
    shared: Arc<Shared<K, C>>,
    legacy_headers: bool,
}

struct Shared<K, C> {
    limiter: RateLimiter<C>,
    group: String,
    policies: Vec<Policy>,
    extractor: K,
    /// `RateLimit-Policy`, the same for every response.
    policy_header: HeaderValue,
}

impl<K, C> Clone for RateLimitLayer<K, C> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
            legacy_headers: self.legacy_headers,
        }
    }
}

impl<K, C> std::fmt::Debug for RateLimitLayer<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("group", &self.shared.group)
            .field("policies", &self.shared.policies)
            .finish_non_exhaustive()
    }
}

impl<K: KeyExtractor, C> RateLimitLayer<K, C> {
    /// Limits the route group `group` (a name for the keys: 1 to 64 of
    /// `A-Z a-z 0-9 _ . -`) per key of `extractor`, with `policies`.
    ///
    /// Fails with [`Error::InvalidArgument`] for an invalid group or policy
    /// name, a repeated policy name or no policy at all, and with
    /// [`Error::InvalidQuota`] for an invalid quota.
    pub fn new(
        limiter: RateLimiter<C>,
        group: &str,
        extractor: K,
        policies: impl IntoIterator<Item = Policy>,
    ) -> Result<Self> {
        check_name("route group", group)?;
        let policies: Vec<Policy> = policies.into_iter().collect();
        if policies.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "rate limit group {group:?} needs at least one policy"
            )));
        }
        for (index, policy) in policies.iter().enumerate() {
            check_name("policy", &policy.name)?;
            if policies[..index].iter().any(|p| p.name == policy.name) {
                return Err(Error::InvalidArgument(format!(
                    "rate limit group {group:?} has two policies named {:?}",
                    policy.name
                )));
            }
            policy.quota.validate().map_err(|err| match err {
                Error::InvalidQuota(message) => {
                    Error::InvalidQuota(format!("policy {:?}: {message}", policy.name))
                }
                other => other,
            })?;
        }
        let policy_header = policy_header(&policies)?;
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                limiter,
                group: group.to_owned(),
                policies,
                extractor,
                policy_header,
            }),
            legacy_headers: false,
        })
    }

    /// Also sends `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds until full), for clients written
    /// against them. Off by default.
    #[must_use]
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.legacy_headers = on;
        self
    }
}

/// `1..=64` characters of `A-Z a-z 0-9 _ . -`: safe in a key, and in an
/// sf-string without escaping.
fn check_name(what: &str, name: &str) -> Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "rate limit {what} name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 _ . -"
        )))
    }
}

/// `"name";q=<limit>;w=<period in seconds, rounded up>, ...`
fn policy_header(policies: &[Policy]) -> Result<HeaderValue> {
    let mut text = String::new();
    for policy in policies {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let window =
            policy.quota.period.as_secs() + u64::from(policy.quota.period.subsec_nanos() > 0);
        let _ = write!(
            text,
            "\"{}\";q={};w={}",
            policy.name, policy.quota.limit, window
        );
    }
    HeaderValue::from_str(&text).map_err(|_| Error::InvalidArgument("policy names".into()))
}

impl<S, K, C> Layer<S> for RateLimitLayer<K, C> {
    type Service = RateLimitService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: Arc::clone(&self.shared),
            legacy_headers: self.legacy_headers,
        }
    }
}

/// The service of a [`RateLimitLayer`].
pub struct RateLimitService<S, K, C = ConnectionManager> {
    inner: S,
    shared: Arc<Shared<K, C>>,
    legacy_headers: bool,
}

impl<S: Clone, K, C> Clone for RateLimitService<S, K, C> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            legacy_headers: self.legacy_headers,
        }
    }
}

impl<S, K, C> Service<Request<Body>> for RateLimitService<S, K, C>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    K: KeyExtractor,
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let shared = Arc::clone(&self.shared);
        let legacy = self.legacy_headers;
        Box::pin(async move {
            let key = match shared.extractor.key(&request) {
                Ok(key) => key,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            let limits = shared.limits(&key);
            match shared.limiter.check_all(&limits, 1).await {
                Ok(all) if all.decision.allowed => {
                    let mut response = inner.call(request).await?;
                    shared.decorate(response.headers_mut(), &all, legacy);
                    Ok(response)
                }
                Ok(all) => Ok(shared.refusal(&all, legacy)),
                Err(err) => Ok(error_response(&shared.group, &err)),
            }
        })
    }
}

impl<K, C> Shared<K, C> {
    /// The Redis key of each policy for the client `key`, with its quota.
    fn limits(&self, key: &str) -> Vec<(String, Quota)> {
        let base = tagged(RATELIMIT_PREFIX, &user_tag(key));
        self.policies
            .iter()
            .map(|policy| {
                (
                    format!("{base}:{}:{}", self.group, policy.name),
                    policy.quota,
                )
            })
            .collect()
    }

    /// Adds the rate-limit headers of `all` to a response.
    fn decorate(&self, headers: &mut HeaderMap, all: &AllDecision, legacy: bool) {
        let decision = &all.decision;
        if decision.fallback {
            // A fallback has no real counts: say why instead.
            let value = if decision.allowed {
                "fail-open"
            } else {
                "fail-closed"
            };
            headers.insert(RATELIMIT_FALLBACK, HeaderValue::from_static(value));
            return;
        }
        headers.insert(RATELIMIT_POLICY, self.policy_header.clone());
        let name = &self.policies[all.index].name;
        let current = format!(
            "\"{name}\";r={};t={}",
            decision.remaining,
            decision.reset_after_secs()
        );
        if let Ok(value) = HeaderValue::from_str(&current) {
            headers.insert(RATELIMIT, value);
        }
        if legacy {
            headers.insert(X_RATELIMIT_LIMIT, decision.limit.into());
            headers.insert(X_RATELIMIT_REMAINING, decision.remaining.into());
            headers.insert(X_RATELIMIT_RESET, decision.reset_after_secs().into());
        }
    }

    /// 429 for a refusal (by Redis or by [`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed)).
    fn refusal(&self, all: &AllDecision, legacy: bool) -> Response {
        let decision: &Decision = &all.decision;
        let retry_after = decision.retry_after_secs().max(1);
        let policy = &self.policies[all.index].name;
        let body = serde_json::json!({
            "error": "rate_limited",
            "message": format!("too many requests: retry after {retry_after} s"),
            "policy": policy,
            "retry_after": retry_after,
        });
        let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
        let headers = response.headers_mut();
        headers.insert(http::header::RETRY_AFTER, retry_after.into());
        self.decorate(headers, all, legacy);
        response
    }
}

/// 503 for a transient error under [`FailurePolicy::Error`](crate::FailurePolicy::Error), 500 for the
/// rest (a deployment or programming mistake, which must not pass
/// silently).
fn error_response(group: &str, err: &Error) -> Response {
    if err.is_transient() {
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limit_unavailable",
            &format!("the rate limit of {group:?} could not be checked: {err}"),
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else {
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rate_limit_error",
            &format!("the rate limit of {group:?} failed: {err}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn policy_header_rounds_windows_up() {
        let header = policy_header(&[
            Policy::new("burst", Quota::new(5, Duration::from_millis(1500))),
            Policy::new("hourly", Quota::per_hour(100)),
        ])
        .unwrap();
        assert_eq!(header, "\"burst\";q=5;w=2, \"hourly\";q=100;w=3600");
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let limiter = || RateLimiter::new(());
        let key = super::super::UserKey;
        let ok = Policy::new("s", Quota::per_second(1));
        assert!(RateLimitLayer::new(limiter(), "api", key, [ok.clone()]).is_ok());
        for (group, policies) in [
            ("", vec![ok.clone()]),
            ("a b", vec![ok.clone()]),
            ("api", vec![]),
            ("api", vec![ok.clone(), ok.clone()]),
            ("api", vec![Policy::new("x\"", Quota::per_second(1))]),
        ] {
            let err = RateLimitLayer::new(limiter(), group, key, policies).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        }
        let zero = Policy::new("zero", Quota::per_second(0));
        let err = RateLimitLayer::new(limiter(), "api", key, [zero]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidQuota(m) if m.contains("zero")),
            "{err:?}"
        );
    }
}
