use super::*;

async fn compute_count<C>(
    cache: &Cache<C>,
    calls: &std::sync::atomic::AtomicU32,
) -> Result<String, GetOrComputeError<Error>>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    cache
        .get_or_compute(
            "u",
            "feed",
            &identity("u"),
            Duration::from_secs(30),
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Error>("fresh".to_owned())
            },
        )
        .await
}

#[tokio::test]
async fn hit_returns_the_cached_value_without_computing() {
    let fake = server(Ok(hit("\"cached\"")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "cached");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(
        cache.metrics(),
        CacheMetrics {
            hits: 1,
            ..CacheMetrics::default()
        }
    );
}

#[tokio::test]
async fn miss_computes_and_stores_with_the_generation_of_the_miss() {
    let fake = server(Ok(miss("12.34")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0][0], "TK.CACHE.GET");
    assert_eq!(sent[1][0], "TK.CACHE.SET");
    assert_eq!(sent[1][1], sent[0][1], "same entry key");
    assert_eq!(sent[1][5..], ["30000", "\"fresh\"", "IFGEN", "12.34"]);
    let m = cache.metrics();
    assert_eq!((m.misses, m.stores, m.errors), (1, 1, 0));
}

#[tokio::test]
async fn a_refused_store_still_returns_the_value() {
    let cache = Cache::new(server(Ok(miss("1.1")), Ok(Value::Int(0))));
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!((m.misses, m.stores, m.stores_refused), (1, 0, 1));
}

#[tokio::test]
async fn undecodable_values_are_recomputed_and_overwritten() {
    let fake = server(Ok(hit("{not json")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    // No generation to condition on: stored under the current ones.
    assert_eq!(sent[1][5..], ["30000", "\"fresh\""]);
    // Valid JSON of another type, too.
    let cache = Cache::new(server(Ok(hit("[1,2]")), Ok(Value::Int(1))));
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!((m.hits, m.undecodable, m.stores, m.errors), (0, 1, 1, 0));
}

#[tokio::test]
async fn compute_errors_are_returned_and_nothing_is_stored() {
    let fake = server(Ok(miss("1.1")), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    let result: Result<u8, _> = cache
        .get_or_compute("u", "n", &identity("u"), Duration::from_secs(1), || async {
            Err(std::io::Error::other("db down"))
        })
        .await;
    let err = result.unwrap_err();
    assert!(matches!(&err, GetOrComputeError::Compute(e) if e.to_string() == "db down"));
    assert!(err.cache_error().is_none());
    assert_eq!(err.to_string(), "db down");
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(cache.metrics().errors, 0);
}

#[tokio::test]
async fn miss_policy_computes_through_transient_lookup_errors() {
    let fake = server(reset(), Ok(Value::Int(1)));
    let cache = Cache::new(fake.clone());
    assert_eq!(cache.error_policy(), CacheErrorPolicy::Miss);
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    // No store after a failed lookup.
    assert_eq!(fake.sent().len(), 1);
    // Timeouts too.
    let cache = Cache::new(Fake::new(|_| None)).with_timeout(Duration::from_millis(20));
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!((m.errors_as_misses, m.misses, m.errors), (1, 0, 0));
}

#[tokio::test]
async fn miss_policy_ignores_transient_store_errors() {
    let cache = Cache::new(server(Ok(miss("1.1")), reset()));
    let calls = std::sync::atomic::AtomicU32::new(0);
    assert_eq!(compute_count(&cache, &calls).await.unwrap(), "fresh");
    let m = cache.metrics();
    assert_eq!(
        (m.misses, m.stores, m.errors_as_misses, m.errors),
        (1, 0, 1, 0)
    );
}

#[tokio::test]
async fn error_policy_returns_transient_errors() {
    let calls = std::sync::atomic::AtomicU32::new(0);
    let cache =
        Cache::new(server(reset(), Ok(Value::Int(1)))).with_error_policy(CacheErrorPolicy::Error);
    let err = compute_count(&cache, &calls).await.unwrap_err();
    assert!(
        matches!(err.cache_error(), Some(Error::Connection(_))),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    let cache =
        Cache::new(server(Ok(miss("1.1")), reset())).with_error_policy(CacheErrorPolicy::Error);
    let err = compute_count(&cache, &calls).await.unwrap_err();
    assert!(
        matches!(err, GetOrComputeError::Cache(Error::Connection(_))),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let m = cache.metrics();
    assert_eq!((m.misses, m.errors_as_misses, m.errors), (1, 0, 1));
}

#[tokio::test]
async fn non_transient_errors_are_never_hidden() {
    for policy in [CacheErrorPolicy::Miss, CacheErrorPolicy::Error] {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let missing = Ok(error_reply("ERR unknown command 'TK.CACHE.GET'"));
        let cache = Cache::new(server(missing, Ok(Value::Int(1)))).with_error_policy(policy);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(
            err.cache_error().is_some_and(Error::is_module_not_loaded),
            "{err:?}"
        );
        // A malformed lookup reply.
        let cache =
            Cache::new(server(Ok(Value::Okay), Ok(Value::Int(1)))).with_error_policy(policy);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(matches!(
            err,
            GetOrComputeError::Cache(Error::UnexpectedReply(_))
        ));
        assert_eq!(calls.load(Ordering::Relaxed), 0, "{policy:?}");
        // A store refused by the server, after computing.
        let wrongtype = Ok(error_reply("WRONGTYPE Operation against a key"));
        let cache = Cache::new(server(Ok(miss("1.1")), wrongtype)).with_error_policy(policy);
        let err = compute_count(&cache, &calls).await.unwrap_err();
        assert!(matches!(
            err,
            GetOrComputeError::Cache(Error::Server { .. })
        ));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // An invalid ttl: nothing sent, nothing computed.
        let fake = server(Ok(miss("1.1")), Ok(Value::Int(1)));
        let cache = Cache::new(fake.clone()).with_error_policy(policy);
        let result = cache
            .get_or_compute("u", "n", &identity("u"), Duration::ZERO, || async {
                Ok::<_, Error>(1)
            })
            .await;
        assert!(matches!(
            result,
            Err(GetOrComputeError::Cache(Error::InvalidArgument(_)))
        ));
        assert!(fake.sent().is_empty());
        assert_eq!(cache.metrics().errors, 1);
    }
}

#[tokio::test]
async fn metrics_are_shared_by_clones() {
    let cache = Cache::new(server(Ok(miss("1.1")), Ok(Value::Int(1))));
    let strict = cache.clone().with_error_policy(CacheErrorPolicy::Error);
    let calls = std::sync::atomic::AtomicU32::new(0);
    compute_count(&cache, &calls).await.unwrap();
    compute_count(&strict, &calls).await.unwrap();
    assert_eq!(cache.metrics(), strict.metrics());
    assert_eq!(cache.metrics().misses, 2);
    // A new cache on the same connection has its own counters.
    let other = Cache::new(cache.connection().clone());
    assert_eq!(other.metrics(), CacheMetrics::default());
    let _conn: Fake = other.into_connection();
}

#[test]
fn get_or_compute_error_conversions() {
    #[derive(Debug)]
    struct AppError(String);
    impl From<Error> for AppError {
        fn from(err: Error) -> Self {
            AppError(format!("cache: {err}"))
        }
    }
    let compute: GetOrComputeError<AppError> = GetOrComputeError::Compute(AppError("db".into()));
    assert_eq!(compute.flatten().0, "db");
    let cache: GetOrComputeError<AppError> = GetOrComputeError::Cache(Error::Timeout);
    assert!(cache.cache_error().is_some());
    assert_eq!(
        cache.flatten().0,
        "cache: timed out waiting for the redis server"
    );
    // A standard error: `?` into Box<dyn Error>, displayed as what it holds.
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        Box::new(GetOrComputeError::<std::io::Error>::Cache(Error::Timeout));
    assert_eq!(boxed.to_string(), "timed out waiting for the redis server");
}

#[test]
fn defaults() {
    let cache = Cache::new(Fake::replying(Value::Nil));
    assert_eq!(cache.timeout(), crate::DEFAULT_TIMEOUT);
    assert_eq!(cache.error_policy(), CacheErrorPolicy::Miss);
    assert_eq!(CacheErrorPolicy::default(), CacheErrorPolicy::Miss);
    assert_eq!(cache.metrics(), CacheMetrics::default());
    let debug = format!("{cache:?}");
    assert!(debug.contains("3s") && debug.contains("Miss"), "{debug}");
}

// ---- compile-time checks -----------------------------------------

fn assert_send<T: Send>(_: &T) {}

/// The futures are `Send` (usable from `tokio::spawn`, axum handlers...)
/// for the default, cluster and multiplexed connections.
#[allow(dead_code)]
fn futures_are_send(
    single: &Cache,
    cluster: &Cache<redis::cluster_async::ClusterConnection>,
    multiplexed: &Cache<redis::aio::MultiplexedConnection>,
    id: &RequestIdentity,
    generation: &Generation,
) {
    let ttl = Duration::from_secs(1);
    assert_send(&single.get::<String>("u", "n", id));
    assert_send(&single.set("u", "n", id, "v", ttl, Some(generation)));
    assert_send(&single.invalidate_user("u"));
    assert_send(&single.invalidate_namespace("u", "n"));
    let compute = || async { Ok::<_, Error>(1u32) };
    assert_send(&single.get_or_compute("u", "n", id, ttl, compute));
    assert_send(&cluster.get_or_compute("u", "n", id, ttl, compute));
    assert_send(&multiplexed.get::<u32>("u", "n", id));
}
