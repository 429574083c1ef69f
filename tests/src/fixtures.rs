//! Data written with plain commands, shaped like what the module writes:
//! for tests of what the module does with data it did not write itself
//! (hand-edited, from another version, crafted by an attacker).

use redis::aio::ConnectionLike;

const HOUR_MS: i64 = 3_600_000;

/// Writes a session-shaped hash at `key` with plain `HSET` (no TTL): user
/// `user`, created and last active two hours ago by the server's clock,
/// `expires_at` = `max_expires_at` = now + `lifetime_ms` (negative: already
/// past its max lifetime), `version` as given (a string, so it may be out
/// of range).
///
/// # Panics
/// When a command fails.
pub async fn write_session_by_hand(
    conn: &mut impl ConnectionLike,
    key: &str,
    user: &str,
    lifetime_ms: i64,
    version: &str,
) {
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    let now = seconds * 1000 + micros / 1000;
    let end = (now + lifetime_ms).to_string();
    let start = (now - 2 * HOUR_MS).to_string();
    let fields = [
        ("user", user),
        ("data", "by hand"),
        ("created", &start),
        ("last_active", &start),
        ("expires_at", &end),
        ("max_expires_at", &end),
        ("version", version),
        ("idle", "3600000"),
    ];
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg(&fields[..])
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("HSET {key}: {e}"));
}
