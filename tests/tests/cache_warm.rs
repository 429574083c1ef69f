//! Cache::warm against a real server: bounded concurrency, entries already
//! cached are left alone, and an invalidation during warming wins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tk_redis::cache::{RequestIdentity, NO_QUERY};
use tk_redis::{Cache, Error, Lookup};
use tk_redis_tests::harness::Server;

const TTL: Duration = Duration::from_secs(3600);

fn page(user: &str, n: usize) -> RequestIdentity {
    RequestIdentity::for_user(user, "GET", &format!("/page/{n}"), NO_QUERY)
}

async fn lookup(
    cache: &Cache<impl redis::aio::ConnectionLike + Clone + Send + Sync>,
    user: &str,
    n: usize,
) -> Lookup<String> {
    cache
        .get::<String>(user, "http", &page(user, n))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_invalidation_while_computing_wins() {
    let server = Server::start().await;
    let cache = Cache::new(server.manager().await);
    let invalidator = cache.clone();
    // One at a time, so the order is the iteration order: page 0 is stored
    // before the invalidation (and so hidden by it), page 1's compute
    // invalidates the user (a logout, a permission change) after its lookup,
    // page 2 is looked up after the invalidation.
    let report = cache
        .warm(
            "alice",
            "http",
            (0..3).map(|n| page("alice", n)),
            TTL,
            1,
            |identity| {
                let invalidator = invalidator.clone();
                async move {
                    if identity == page("alice", 1) {
                        invalidator.invalidate_user("alice").await?;
                    }
                    Ok::<_, Error>(format!("{identity:?}"))
                }
            },
        )
        .await
        .unwrap();
    assert_eq!((report.stored, report.refused), (2, 1), "{report:?}");
    assert_eq!(
        (report.present, report.compute_failed, report.cache_failed),
        (0, 0, 0)
    );
    assert!(matches!(lookup(&cache, "alice", 0).await, Lookup::Miss(_)));
    assert!(matches!(lookup(&cache, "alice", 1).await, Lookup::Miss(_)));
    assert_eq!(
        lookup(&cache, "alice", 2).await,
        Lookup::Hit(format!("{:?}", page("alice", 2)))
    );
}

#[tokio::test]
async fn concurrency_is_bounded_and_cached_entries_are_left_alone() {
    let server = Server::start().await;
    let cache = Cache::new(server.manager().await);
    // Page 0 is already cached with another value: warming must keep it.
    let Lookup::Miss(generation) = lookup(&cache, "bob", 0).await else {
        panic!("cold cache");
    };
    assert!(cache
        .set(
            "bob",
            "http",
            &page("bob", 0),
            "cached",
            TTL,
            Some(&generation)
        )
        .await
        .unwrap());

    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let report = cache
        .warm(
            "bob",
            "http",
            (0..40).map(|n| page("bob", n)),
            TTL,
            3,
            |identity| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Give the other entries a chance to start meanwhile.
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    if identity == page("bob", 7) {
                        return Err("backend down");
                    }
                    Ok(format!("{identity:?}"))
                }
            },
        )
        .await
        .unwrap();
    assert!(most.load(Ordering::SeqCst) <= 3, "{most:?}");
    assert_eq!(report.present, 1);
    assert_eq!(report.compute_failed, 1);
    assert_eq!(report.stored, 38);
    assert_eq!((report.refused, report.cache_failed), (0, 0));
    assert_eq!(
        lookup(&cache, "bob", 0).await,
        Lookup::Hit("cached".to_owned())
    );
    assert!(matches!(lookup(&cache, "bob", 7).await, Lookup::Miss(_)));
    assert_eq!(
        lookup(&cache, "bob", 39).await,
        Lookup::Hit(format!("{:?}", page("bob", 39)))
    );

    let zero = cache
        .warm("bob", "http", [page("bob", 1)], TTL, 0, |_| async {
            Ok::<_, Error>("x")
        })
        .await;
    assert!(matches!(zero, Err(Error::InvalidArgument(_))), "{zero:?}");
}
