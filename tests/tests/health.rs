//! tk_redis::health against real servers: Ok, Degraded without the module,
//! Down while the server is stopped, Ok again once it runs.

use std::time::Duration;

use tk_redis::health::{check, HealthOptions, Status};
use tk_redis_tests::harness::{skip_under_docker, Server};

fn options() -> HealthOptions {
    HealthOptions {
        timeout: Duration::from_millis(500),
        // A loaded CI machine must not make a healthy server look degraded.
        degraded_latency: Duration::from_secs(5),
        require_module: true,
    }
}

#[tokio::test]
async fn a_server_with_the_module_is_ok() {
    if tk_redis_tests::skip_in_functions_mode("a health check of the library: tests/backend.rs") {
        return;
    }
    let server = Server::start().await;
    let conn = server.manager().await;
    let _: Vec<i64> = redis::cmd("TK.RATELIMIT")
        .arg(&["k", "5", "1s"])
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let health = check(&conn, &options()).await;
    assert_eq!(health.status, Status::Ok, "{:?}", health.problems);
    assert_eq!(health.http_status(), 200);
    assert_eq!(
        health.module_version,
        Some(tk_redis_tests::harness::module_version() as u64)
    );
    assert!(health.server_version.is_some());
    assert!(health.latency.is_some());
    assert_eq!(health.tk_counters.get("ratelimit_gcra_calls"), Some(&1));
}

#[tokio::test]
async fn without_the_module_it_is_degraded() {
    let server = Server::builder().without_module().start().await;
    let health = check(&server.manager().await, &options()).await;
    assert_eq!(health.status, Status::Degraded);
    assert_eq!(health.http_status(), 503);
    assert!(health.problems.iter().any(|p| p.contains("not loaded")));
}

#[tokio::test]
async fn stopped_server_is_down_then_ok_again() {
    if skip_under_docker("pauses the server process with SIGSTOP") {
        return;
    }
    let server = Server::start().await;
    let conn = server.manager().await;
    assert_eq!(check(&conn, &options()).await.status, Status::Ok);
    server.pause();
    let down = check(&conn, &options()).await;
    server.resume();
    assert_eq!(down.status, Status::Down, "{down:?}");
    assert_eq!(down.http_status(), 503);
    // The same connection recovers once the server runs again.
    let mut status = Status::Down;
    for _ in 0..50 {
        status = check(&conn, &options()).await.status;
        if status == Status::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Status::Ok);
}
