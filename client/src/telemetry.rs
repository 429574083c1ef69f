//! The client's counters, through the [`metrics`] crate facade.
//!
//! Every counter below is incremented with `metrics::counter!`, so it reaches
//! whatever recorder the application installed (for Prometheus,
//! `metrics-exporter-prometheus`); without a recorder, each increment is a
//! no-op. Call [`describe`] once after installing the recorder to attach
//! help texts. The names end in `_total` because they are Prometheus
//! counters; docker/prometheus/alerts.yml alerts on
//! [`RATELIMIT_FALLBACKS`].
//!
//! These complement, and never replace, the per-object snapshots
//! ([`RateLimiter::metrics`](crate::RateLimiter::metrics),
//! [`Cache::metrics`](crate::Cache::metrics)): those count per limiter or
//! cache, these per process, with labels.
//!
//! | name | labels | counts |
//! |---|---|---|
//! | `tk_client_ratelimit_fallbacks_total` | `policy` = `open` \| `closed` | rate-limit decisions made by the [`FailurePolicy`](crate::FailurePolicy) because Redis was unreachable (transient error) |
//! | `tk_client_ratelimit_errors_total` | — | rate-limit calls that returned an error (non-transient, or transient under `FailurePolicy::Error`) |
//! | `tk_client_cache_hits_total` | — | cache lookups that found a decodable value |
//! | `tk_client_cache_misses_total` | — | cache lookups that found nothing visible |
//! | `tk_client_cache_errors_total` | `outcome` = `miss` \| `returned` | cache calls that failed: absorbed as a miss by `CacheErrorPolicy::Miss`, or returned to the caller (or counted in a [`WarmReport`](crate::WarmReport)) |
//! | `tk_client_session_version_conflicts_total` | — | `SessionStore::update` refused by `IFVERSION` (another writer won) |
//! | `tk_client_sentinel_reconnects_total` | `master` | connections to a primary resolved through Sentinel after the first one (a failover, or a lost connection) |
//! | `tk_client_sentinel_switches_total` | `master` | `+switch-master` announcements of the client's primary (a failover seen by a sentinel) |
//! | `tk_client_pubsub_reconnects_total` | — | typed subscriptions that lost their connection and subscribed again |
//!
//! ```
//! // Once, after installing the recorder (e.g. metrics-exporter-prometheus):
//! tk_redis::telemetry::describe();
//! // Alert rules and dashboards refer to the counters by these names.
//! assert_eq!(tk_redis::telemetry::RATELIMIT_FALLBACKS, "tk_client_ratelimit_fallbacks_total");
//! ```

/// Rate-limit decisions made by the failure policy, label `policy` =
/// `open` | `closed` ([example](self)).
pub const RATELIMIT_FALLBACKS: &str = "tk_client_ratelimit_fallbacks_total";
/// Rate-limit calls that returned an error ([example](self)).
pub const RATELIMIT_ERRORS: &str = "tk_client_ratelimit_errors_total";
/// Cache lookups that found a decodable value ([example](self)).
pub const CACHE_HITS: &str = "tk_client_cache_hits_total";
/// Cache lookups that found nothing visible ([example](self)).
pub const CACHE_MISSES: &str = "tk_client_cache_misses_total";
/// Cache calls that failed, label `outcome` = `miss` (absorbed) |
/// `returned` ([example](self)).
pub const CACHE_ERRORS: &str = "tk_client_cache_errors_total";
/// Session updates refused by `IFVERSION` ([example](self)).
pub const SESSION_VERSION_CONFLICTS: &str = "tk_client_session_version_conflicts_total";
/// Primary connections resolved through Sentinel after the first, label
/// `master` ([example](self)).
pub const SENTINEL_RECONNECTS: &str = "tk_client_sentinel_reconnects_total";
/// `+switch-master` announcements of the client's primary, label `master` ([example](self)).
pub const SENTINEL_SWITCHES: &str = "tk_client_sentinel_switches_total";
/// Typed subscriptions that reconnected ([example](self)).
pub const PUBSUB_RECONNECTS: &str = "tk_client_pubsub_reconnects_total";

/// Registers the help text of every counter with the installed recorder.
/// Optional: the counters work without it ([example](self)).
pub fn describe() {
    use metrics::describe_counter;
    describe_counter!(
        RATELIMIT_FALLBACKS,
        "Rate-limit decisions made by the failure policy because Redis was unreachable"
    );
    describe_counter!(RATELIMIT_ERRORS, "Rate-limit calls that returned an error");
    describe_counter!(CACHE_HITS, "Cache lookups that found a value");
    describe_counter!(CACHE_MISSES, "Cache lookups that found nothing visible");
    describe_counter!(
        CACHE_ERRORS,
        "Cache calls that failed (outcome=miss: absorbed as a miss)"
    );
    describe_counter!(
        SESSION_VERSION_CONFLICTS,
        "Session updates refused because another writer changed the session first"
    );
    describe_counter!(
        SENTINEL_RECONNECTS,
        "Connections to the primary resolved through Sentinel after the first"
    );
    describe_counter!(
        SENTINEL_SWITCHES,
        "+switch-master announcements of the client's primary"
    );
    describe_counter!(
        PUBSUB_RECONNECTS,
        "Typed subscriptions that lost their connection and subscribed again"
    );
}

pub(crate) fn ratelimit_fallback(open: bool) {
    let policy = if open { "open" } else { "closed" };
    metrics::counter!(RATELIMIT_FALLBACKS, "policy" => policy).increment(1);
}

pub(crate) fn ratelimit_error() {
    metrics::counter!(RATELIMIT_ERRORS).increment(1);
}

pub(crate) fn cache_hit() {
    metrics::counter!(CACHE_HITS).increment(1);
}

pub(crate) fn cache_miss() {
    metrics::counter!(CACHE_MISSES).increment(1);
}

pub(crate) fn cache_error(absorbed_as_miss: bool) {
    let outcome = if absorbed_as_miss { "miss" } else { "returned" };
    metrics::counter!(CACHE_ERRORS, "outcome" => outcome).increment(1);
}

pub(crate) fn session_version_conflict() {
    metrics::counter!(SESSION_VERSION_CONFLICTS).increment(1);
}

pub(crate) fn sentinel_reconnect(master: &str) {
    metrics::counter!(SENTINEL_RECONNECTS, "master" => master.to_owned()).increment(1);
}

pub(crate) fn sentinel_switch(master: &str) {
    metrics::counter!(SENTINEL_SWITCHES, "master" => master.to_owned()).increment(1);
}

pub(crate) fn pubsub_reconnect() {
    metrics::counter!(PUBSUB_RECONNECTS).increment(1);
}
