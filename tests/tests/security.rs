//! Keys named *inside* an index (session CREATE/LIST/REVOKEALL, the cache
//! reclaimer) are untrusted input: tried here as an attacker would, with
//! real ACL users confined by key patterns (`~`, `%R~`), crafted index
//! members that name foreign keys (another prefix, another tenant's tag and
//! so another slot, another type, another user's session), and the data
//! checks that go with them: a refused CREATE changes nothing, a dead
//! session is dead everywhere (also on a replica), and a reclaim job whose
//! user disappears stops without flooding the log.
//!
//! Standalone servers only: the rules are about names and ACLs, and a
//! member of another tag is in another slot by construction
//! (`keys.rs`'s property tests prove it for any name).

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Value};
use tk_redis_tests::fixtures::write_session_by_hand;
use tk_redis_tests::harness::{info_section, wait_for_sync, wait_until, Server};
use tk_redis_tests::raw::query;
use tk_redis_tests::Flavor;
use tk_redis_tests::{module_mode, skip_in_functions_mode, Conn};

const PASSWORD: &str = "pw";
const HOUR_MS: i64 = 3_600_000;

async fn outcome(conn: &mut impl ConnectionLike, args: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn)
        .await
        .map_err(|e| format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")))
}

async fn exists(conn: &mut impl ConnectionLike, key: &str) -> bool {
    query::<i64>(conn, &["EXISTS", key]).await == 1
}

async fn members(conn: &mut impl ConnectionLike, index: &str) -> Vec<String> {
    query(conn, &["ZRANGE", index, "0", "-1"]).await
}

async fn counters(conn: &mut impl ConnectionLike) -> HashMap<String, u64> {
    info_section(conn, "tk")
        .await
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.parse().ok()?)))
        .collect()
}

/// An ACL user with `rules` (key patterns and commands), and a connection
/// as that user.
async fn user(server: &Server, admin: &mut Conn, name: &str, rules: &[&str]) -> Conn {
    let password = format!(">{PASSWORD}");
    let mut args = vec!["ACL", "SETUSER", name, "reset", "on", &password];
    args.extend_from_slice(rules);
    let _: () = query(admin, &args).await;
    server.conn_as(name, PASSWORD).await
}

/// A session created by the admin (unrestricted) in `user`'s index of tag `tag`.
async fn session(conn: &mut impl ConnectionLike, tag: &str, id: &str, user: &str) -> String {
    let key = format!("tk:s:{{{tag}}}:{id}");
    let index = format!("tk:si:{{{tag}}}:{user}");
    let _: Value = query(conn, &["TK.SESSION.CREATE", &key, &index, user, "1h", "d"]).await;
    key
}

const FAR_SCORE: &str = "99999999999999";

#[tokio::test]
async fn revokeall_never_deletes_a_key_outside_the_callers_acl() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    // The reproduction: app may write only tenant a's sessions.
    let mut app = user(
        &server,
        &mut admin,
        "app",
        &["~tk:s:{a}*", "~tk:si:{a}*", "+@all"],
    )
    .await;
    let _: () = query(&mut admin, &["HSET", "config:prod", "dbpass", "hunter2"]).await;
    let index = "tk:si:{a}:u";
    assert!(outcome(&mut app, &["HGETALL", "config:prod"])
        .await
        .unwrap_err()
        .starts_with("NOPERM"));
    let mine = session(&mut admin, "a", "mine", "u").await;
    // Foreign names: another prefix, another tenant (another slot), and a
    // session of tenant a's that belongs to another user.
    let theirs = session(&mut admin, "b", "theirs", "v").await;
    let other_user = session(&mut admin, "a", "other", "w").await;
    for foreign in ["config:prod", theirs.as_str(), other_user.as_str()] {
        let _: i64 = query(&mut app, &["ZADD", index, FAR_SCORE, foreign]).await;
    }
    let before = counters(&mut admin)
        .await
        .get("tk_session_foreign_members")
        .copied();

    let listed: Vec<(String, i64, i64, i64)> = query(&mut app, &["TK.SESSION.LIST", index]).await;
    assert_eq!(
        listed
            .iter()
            .map(|(key, ..)| key.as_str())
            .collect::<Vec<_>>(),
        [mine.as_str()]
    );
    let revoked: i64 = query(&mut app, &["TK.SESSION.REVOKEALL", index]).await;
    assert_eq!(revoked, 1, "only u's own session");

    for survivor in ["config:prod", theirs.as_str(), other_user.as_str()] {
        assert!(exists(&mut admin, survivor).await, "{survivor} was deleted");
    }
    assert!(!exists(&mut admin, &mine).await);
    assert_eq!(
        members(&mut admin, index).await,
        Vec::<String>::new(),
        "foreign entries are unlisted"
    );
    if let Some(before) = before {
        let after = counters(&mut admin).await["tk_session_foreign_members"];
        assert_eq!(
            after - before,
            6,
            "3 skipped by LIST, 3 unlisted by REVOKEALL"
        );
    }
}

#[tokio::test]
async fn a_tenant_cannot_list_or_revoke_another_tenants_session() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let mut tenant_b = user(
        &server,
        &mut admin,
        "b",
        &["~tk:s:{b}*", "~tk:si:{b}*", "+@all"],
    )
    .await;
    let victim = session(&mut admin, "a", "s1", "alice").await;
    let index = "tk:si:{b}:bob";
    session(&mut admin, "b", "own", "bob").await;
    let _: i64 = query(&mut tenant_b, &["ZADD", index, FAR_SCORE, &victim]).await;
    let listed: Vec<(String, i64, i64, i64)> =
        query(&mut tenant_b, &["TK.SESSION.LIST", index]).await;
    assert!(listed.iter().all(|(key, ..)| key != &victim), "{listed:?}");
    let _: i64 = query(&mut tenant_b, &["TK.SESSION.REVOKEALL", index]).await;
    assert!(exists(&mut admin, &victim).await);
    // Even an unrestricted caller never leaves the index's tag (slot).
    let _: i64 = query(&mut admin, &["ZADD", index, FAR_SCORE, &victim]).await;
    let _: i64 = query(&mut admin, &["TK.SESSION.REVOKEALL", index]).await;
    assert!(exists(&mut admin, &victim).await);
}

#[tokio::test]
async fn read_only_acl_on_sessions_lists_but_never_deletes() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let mut reader = user(
        &server,
        &mut admin,
        "reader",
        &["%R~tk:s:{a}*", "~tk:si:{a}*", "+@all"],
    )
    .await;
    let index = "tk:si:{a}:alice";
    let existing = session(&mut admin, "a", "one", "alice").await;
    let listed: Vec<(String, i64, i64, i64)> =
        query(&mut reader, &["TK.SESSION.LIST", index]).await;
    assert_eq!(listed.len(), 1, "reading is allowed");
    // REVOKEALL and CREATE's EVICT would delete: not allowed, so the entry
    // is only unlisted and the session stays.
    let revoked: i64 = query(&mut reader, &["TK.SESSION.REVOKEALL", index]).await;
    assert_eq!(revoked, 0);
    assert!(exists(&mut admin, &existing).await);
    let _: i64 = query(&mut admin, &["ZADD", index, FAR_SCORE, &existing]).await;
    let outcome = outcome(
        &mut reader,
        &[
            "TK.SESSION.CREATE",
            "tk:s:{a}:two",
            index,
            "alice",
            "1h",
            "d",
            "MAXSESSIONS",
            "1",
            "EVICT",
        ],
    )
    .await;
    // Creating needs write access to the new session key, which the reader
    // lacks: Redis itself refuses before the module runs.
    assert!(outcome.unwrap_err().starts_with("NOPERM"));
    assert!(exists(&mut admin, &existing).await);
}

#[tokio::test]
async fn create_evict_and_prune_touch_only_the_users_own_sessions() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let index = "tk:si:{a}:alice";
    let live = session(&mut admin, "a", "live", "alice").await;
    // A session-shaped hash outside the layout, one of another user, and one
    // of another type, all listed as if they were alice's oldest sessions.
    write_session_by_hand(&mut admin, "victim", "alice", HOUR_MS, "1").await;
    write_session_by_hand(&mut admin, "tk:s:{a}:bobs", "bob", HOUR_MS, "1").await;
    let _: () = query(&mut admin, &["SET", "tk:s:{a}:string", "x"]).await;
    for foreign in ["victim", "tk:s:{a}:bobs", "tk:s:{a}:string"] {
        let _: i64 = query(&mut admin, &["ZADD", index, FAR_SCORE, foreign]).await;
    }
    let _: Value = query(
        &mut admin,
        &[
            "TK.SESSION.CREATE",
            "tk:s:{a}:new",
            index,
            "alice",
            "1h",
            "d",
            "MAXSESSIONS",
            "1",
            "EVICT",
        ],
    )
    .await;
    for survivor in ["victim", "tk:s:{a}:bobs", "tk:s:{a}:string"] {
        assert!(exists(&mut admin, survivor).await, "{survivor} was deleted");
    }
    assert!(
        !exists(&mut admin, &live).await,
        "alice's own oldest session is evicted"
    );
    assert_eq!(members(&mut admin, index).await, ["tk:s:{a}:new"]);
}

#[tokio::test]
async fn create_refuses_another_users_index_and_rotate_another_users_session() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let bobs = session(&mut admin, "a", "bobs", "bob").await;
    let error = outcome(
        &mut admin,
        &[
            "TK.SESSION.CREATE",
            "tk:s:{a}:x",
            "tk:si:{a}:alice",
            "bob",
            "1h",
            "d",
        ],
    )
    .await
    .unwrap_err();
    assert!(
        error.starts_with("ERR the user must be the one its index names"),
        "{error}"
    );
    let error = outcome(
        &mut admin,
        &["TK.SESSION.ROTATE", &bobs, "tk:s:{a}:y", "tk:si:{a}:alice"],
    )
    .await
    .unwrap_err();
    assert!(
        error.starts_with("ERR the session belongs to another user"),
        "{error}"
    );
    assert!(exists(&mut admin, &bobs).await);
    assert!(!exists(&mut admin, "tk:s:{a}:x").await && !exists(&mut admin, "tk:s:{a}:y").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_at_the_cap_changes_and_replicates_nothing() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    let mut conn = primary.conn().await;
    let index = "tk:si:{a}:alice";
    session(&mut conn, "a", "live", "alice").await;
    // Entries CREATE would prune: one past its max lifetime by score, one
    // whose session is gone.
    let _: i64 = query(&mut conn, &["ZADD", index, "1", "tk:s:{a}:old"]).await;
    let _: i64 = query(&mut conn, &["ZADD", index, FAR_SCORE, "tk:s:{a}:gone"]).await;
    wait_for_sync(&primary, &replica).await;
    let offset = |info: HashMap<String, String>| info["master_repl_offset"].clone();
    let before = offset(info_section(&mut conn, "replication").await);
    let members_before = members(&mut conn, index).await;
    let error = outcome(
        &mut conn,
        &[
            "TK.SESSION.CREATE",
            "tk:s:{a}:new",
            index,
            "alice",
            "1h",
            "d",
            "MAXSESSIONS",
            "1",
            "REJECT",
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(error, "ERR session limit reached");
    assert_eq!(
        members(&mut conn, index).await,
        members_before,
        "nothing pruned"
    );
    assert_eq!(
        offset(info_section(&mut conn, "replication").await),
        before,
        "nothing replicated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_lifetime_is_nil_everywhere_and_goes_away() {
    let primary = Server::start().await;
    let replica = Server::replica_of(&primary).await;
    let mut conn = primary.conn().await;
    let mut replica_conn = replica.conn().await;
    // Hand-written sessions with no TTL whose max lifetime has passed.
    for key in [
        "tk:s:{a}:get",
        "tk:s:{a}:touch",
        "tk:s:{a}:set",
        "tk:s:{a}:rotate",
    ] {
        write_session_by_hand(&mut conn, key, "alice", -1_000, "1").await;
        let _: i64 = query(&mut conn, &["ZADD", "tk:si:{a}:alice", FAR_SCORE, key]).await;
    }
    assert_eq!(
        query::<Value>(&mut conn, &["TK.SESSION.GET", "tk:s:{a}:get"]).await,
        Value::Nil
    );
    assert!(exists(&mut conn, "tk:s:{a}:get").await, "GET is read-only");
    assert_eq!(
        query::<Value>(&mut conn, &["TK.SESSION.TOUCH", "tk:s:{a}:touch"]).await,
        Value::Nil
    );
    assert_eq!(
        query::<Value>(&mut conn, &["TK.SESSION.SET", "tk:s:{a}:set", "new"]).await,
        Value::Nil
    );
    assert_eq!(
        query::<Value>(
            &mut conn,
            &[
                "TK.SESSION.ROTATE",
                "tk:s:{a}:rotate",
                "tk:s:{a}:rotated",
                "tk:si:{a}:alice"
            ]
        )
        .await,
        Value::Nil
    );
    let listed: Vec<Value> = query(&mut conn, &["TK.SESSION.LIST", "tk:si:{a}:alice"]).await;
    assert!(listed.is_empty(), "{listed:?}");
    wait_for_sync(&primary, &replica).await;
    for key in [
        "tk:s:{a}:touch",
        "tk:s:{a}:set",
        "tk:s:{a}:rotate",
        "tk:s:{a}:rotated",
    ] {
        assert!(!exists(&mut conn, key).await, "{key} on the primary");
        assert!(
            !exists(&mut replica_conn, key).await,
            "{key} on the replica"
        );
    }
}

/// Fills `tk:ci:{tag}` with `count` entries of tag `tag` (as the admin).
async fn cache_entries(conn: &mut impl ConnectionLike, tag: &str, count: usize) {
    let (generations, index) = (format!("tk:cg:{{{tag}}}"), format!("tk:ci:{{{tag}}}"));
    let mut pipe = redis::pipe();
    for n in 0..count {
        pipe.cmd("TK.CACHE.SET")
            .arg(format!("tk:c:{{{tag}}}:http:{n}"))
            .arg(&generations)
            .arg(&index)
            .arg("http")
            .arg("1h")
            .arg("v")
            .ignore();
    }
    let _: () = pipe.query_async(conn).await.unwrap();
}

/// Waits until the module's reclaim queue is empty. The library reclaims
/// inside the calls themselves: nothing to wait for.
async fn reclaim_done(conn: &mut Conn) {
    if !module_mode() {
        return;
    }
    wait_until(
        "the reclaim queue to drain",
        Duration::from_secs(20),
        || {
            let mut conn = conn.clone();
            async move {
                match counters(&mut conn).await["tk_cache_reclaim_pending"] {
                    0 => Ok(()),
                    pending => Err(format!("{pending} pending")),
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_reclaimer_never_deletes_what_the_invalidating_user_could_not() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let mut app = user(
        &server,
        &mut admin,
        "cacheapp",
        &["~tk:c:{a}*", "~tk:cg:{a}*", "~tk:ci:{a}*", "+@all"],
    )
    .await;
    // The reproduction: a hash with a field `g` outside the prefix,
    // another tenant's entry (another slot), and a key of another type.
    let _: () = query(&mut admin, &["HSET", "users:42", "g", "0", "name", "x"]).await;
    cache_entries(&mut admin, "b", 1).await;
    let _: () = query(&mut admin, &["SET", "tk:c:{a}:http:string", "x"]).await;
    cache_entries(&mut admin, "a", 3).await;
    let foreign = ["users:42", "tk:c:{b}:http:0", "tk:c:{a}:http:string"];
    for key in foreign {
        let _: i64 = query(&mut app, &["ZADD", "tk:ci:{a}", FAR_SCORE, key]).await;
    }
    let before = counters(&mut admin)
        .await
        .get("tk_cache_foreign_members")
        .copied();
    let _: i64 = query(
        &mut app,
        &["TK.CACHE.INVALIDATEUSER", "tk:cg:{a}", "tk:ci:{a}"],
    )
    .await;
    reclaim_done(&mut admin).await;
    for key in foreign {
        assert!(exists(&mut admin, key).await, "{key} was deleted");
    }
    for n in 0..3 {
        assert!(
            !exists(&mut admin, &format!("tk:c:{{a}}:http:{n}")).await,
            "invisible entries are reclaimed"
        );
    }
    assert_eq!(members(&mut admin, "tk:ci:{a}").await, Vec::<String>::new());
    if let Some(before) = before {
        assert_eq!(
            counters(&mut admin).await["tk_cache_foreign_members"] - before,
            3
        );
    }
    // Names outside the layout are refused outright.
    let error = outcome(
        &mut admin,
        &["TK.CACHE.INVALIDATEUSER", "tk:cg:{a}", "tk:ci:{b}"],
    )
    .await
    .unwrap_err();
    assert!(error.starts_with("ERR cache keys must be"), "{error}");
}

#[tokio::test]
async fn the_reclaimer_acts_with_the_rights_of_the_invalidating_user() {
    let server = Server::start().await;
    let mut admin = server.conn().await;
    // May invalidate, but may only read the entries.
    let mut reader = user(
        &server,
        &mut admin,
        "reader",
        &["%R~tk:c:{a}*", "~tk:cg:{a}*", "~tk:ci:{a}*", "+@all"],
    )
    .await;
    cache_entries(&mut admin, "a", 3).await;
    let _: i64 = query(
        &mut reader,
        &["TK.CACHE.INVALIDATEUSER", "tk:cg:{a}", "tk:ci:{a}"],
    )
    .await;
    reclaim_done(&mut admin).await;
    for n in 0..3 {
        assert!(
            exists(&mut admin, &format!("tk:c:{{a}}:http:{n}")).await,
            "not the reader's to delete"
        );
    }
    assert_eq!(members(&mut admin, "tk:ci:{a}").await, Vec::<String>::new());
}

#[tokio::test]
async fn reclaim_jobs_whose_user_is_gone_stop_and_are_counted_not_logged_each() {
    if skip_in_functions_mode("the library has no reclaim jobs: it reclaims inside the call") {
        return;
    }
    let server = Server::start().await;
    let mut admin = server.conn().await;
    for round in 0..5 {
        let name = format!("gone{round}");
        let tag = format!("g{round}");
        cache_entries(&mut admin, &tag, 2).await;
        let rules = [format!("~tk:c*:{{{tag}}}*"), "+@all".to_string()];
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        let mut doomed = user(&server, &mut admin, &name, &rules).await;
        // One transaction: the job is queued, then its user deleted, before
        // the reclaim timer can run. Deleting the user closes this
        // connection, so the reply may be lost.
        let _ = redis::pipe()
            .atomic()
            .cmd("TK.CACHE.INVALIDATEUSER")
            .arg(format!("tk:cg:{{{tag}}}"))
            .arg(format!("tk:ci:{{{tag}}}"))
            .cmd("ACL")
            .arg("DELUSER")
            .arg(&name)
            .query_async::<Value>(&mut doomed)
            .await;
        reclaim_done(&mut admin).await;
        for n in 0..2 {
            assert!(
                exists(&mut admin, &format!("tk:c:{{{tag}}}:http:{n}")).await,
                "round {round}"
            );
        }
    }
    assert_eq!(counters(&mut admin).await["tk_cache_reclaim_stopped"], 5);
    let lines = server
        .log()
        .matches("cache reclaim of one index stopped")
        .count();
    assert_eq!(lines, 1, "{}", server.log());
}

/// Names built from the pieces a crafted index member could use.
fn crafted_names(seed: u64, count: usize, prefixes: &[&str]) -> Vec<String> {
    const TAGS: [&str; 7] = ["{a}", "{b}", "{}", "", "{a", "a}", "{{a}}"];
    const SEPARATORS: [&str; 3] = [":", "", "::"];
    const IDS: [&str; 4] = ["1", "x:y", "", "{a}"];
    let mut state = seed;
    let mut pick = |len: usize| {
        // xorshift: deterministic, so a failure replays with its seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % len as u64) as usize
    };
    let mut names: Vec<String> = (0..count)
        .map(|_| {
            let prefix = prefixes[pick(prefixes.len())];
            let tag = TAGS[pick(TAGS.len())];
            let separator = SEPARATORS[pick(SEPARATORS.len())];
            let id = IDS[pick(IDS.len())];
            format!("{prefix}{tag}{separator}{id}")
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether `key` is `<prefix>{a}:<something>`: the only keys tag `a`'s
/// index may make a command delete.
fn is_tag_a(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("{a}:"))
        .is_some_and(|id| !id.is_empty())
}

#[tokio::test]
async fn random_index_contents_never_reach_outside_the_prefix_and_tag() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    for seed in 1..=5u64 {
        let _: () = query(&mut conn, &["FLUSHALL"]).await;
        let names = crafted_names(seed, 60, &["tk:s:", "tk:si:", "tk:c:", "x:", ""]);
        // Every name is a live, session-shaped hash of alice, also carrying
        // cache-entry fields, so a command that wrongly trusted it could
        // delete it.
        for name in &names {
            write_session_by_hand(&mut conn, name, "alice", HOUR_MS, "1").await;
            let _: () = query(
                &mut conn,
                &["HSET", name, "g", "0", "ng", "0", "ns", "http"],
            )
            .await;
            let _: i64 = query(&mut conn, &["ZADD", "tk:si:{a}:alice", FAR_SCORE, name]).await;
            let _: i64 = query(&mut conn, &["ZADD", "tk:ci:{a}", FAR_SCORE, name]).await;
        }
        let _: Value = query(
            &mut conn,
            &[
                "TK.SESSION.CREATE",
                "tk:s:{a}:new",
                "tk:si:{a}:alice",
                "alice",
                "1h",
                "d",
                "MAXSESSIONS",
                "2",
                "EVICT",
            ],
        )
        .await;
        let _: i64 = query(&mut conn, &["TK.SESSION.REVOKEALL", "tk:si:{a}:alice"]).await;
        let _: i64 = query(
            &mut conn,
            &["TK.CACHE.INVALIDATEUSER", "tk:cg:{a}", "tk:ci:{a}"],
        )
        .await;
        reclaim_done(&mut conn).await;
        for name in &names {
            let allowed = is_tag_a(name, "tk:s:") || is_tag_a(name, "tk:c:");
            if !allowed {
                assert!(
                    exists(&mut conn, name).await,
                    "seed {seed}: {name:?} was deleted"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_client_works_as_an_acl_user_confined_to_one_users_keys() {
    use tk_redis::cache::{Lookup, RequestIdentity};
    use tk_redis::config::Config;
    use tk_redis::{Cache, SessionStore};

    let server = Server::start().await;
    let mut admin = server.conn().await;
    // An app user that may only touch alice's sessions and cache: the
    // patterns name her hash tag, derived the way the client derives it.
    let index = tk_redis::session::index_key("alice");
    let tag = &index[index.find('{').unwrap()..=index.find('}').unwrap()];
    let patterns: Vec<String> = ["tk:s:", "tk:si:", "tk:c:", "tk:cg:", "tk:ci:"]
        .iter()
        .map(|prefix| format!("~{prefix}{tag}*"))
        .collect();
    let mut rules: Vec<&str> = patterns.iter().map(String::as_str).collect();
    rules.push("+@all");
    user(&server, &mut admin, "alice-app", &rules).await;
    let config =
        Config::from_url(&format!("redis://alice-app:{PASSWORD}@{}/", server.addr())).unwrap();
    assert_eq!(config.username(), Some("alice-app"));
    let connection = config.connect().await.unwrap();

    let sessions: SessionStore<String, _> = SessionStore::new(connection.clone());
    let (token, _) = sessions.create("alice", &"data".to_string()).await.unwrap();
    assert_eq!(sessions.list("alice").await.unwrap().len(), 1);
    assert_eq!(sessions.revoke_all("alice", None).await.unwrap(), 1);
    assert!(sessions.touch(&token).await.unwrap().is_none());
    // Bob's keys are outside the user's patterns: Redis refuses.
    let error = sessions
        .create("bob", &"data".to_string())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("NOPERM"), "{error}");

    let cache = Cache::new(connection);
    let identity = RequestIdentity::for_user("alice", "GET", "/feed", [("page", "1")]);
    let miss = cache
        .get::<String>("alice", "feed", &identity)
        .await
        .unwrap();
    let Lookup::Miss(generation) = miss else {
        panic!("{miss:?}")
    };
    let stored = cache
        .set(
            "alice",
            "feed",
            &identity,
            "page",
            Duration::from_secs(60),
            Some(&generation),
        )
        .await
        .unwrap();
    assert!(stored);
    cache.invalidate_user("alice").await.unwrap();
    reclaim_done(&mut admin).await;
    let keys: Vec<String> = query(&mut admin, &["KEYS", "tk:c:*"]).await;
    assert!(
        keys.is_empty(),
        "the app user's invalidation reclaimed its entry: {keys:?}"
    );
}

/// Where the server has module ACL categories (Redis 7.2+, Valkey) every
/// TK command is in `@tk`, so `+@tk` grants exactly the module's commands;
/// on Redis 7.0 there is no `@tk` and `ACL SETUSER … +@tk` is refused, as
/// for any unknown category.
#[tokio::test]
async fn acl_category_tk_holds_every_module_command_where_the_server_has_categories() {
    if skip_in_functions_mode("@tk is the module's ACL category") {
        return;
    }
    let server = Server::start().await;
    let mut admin = server.conn().await;
    let flavor = Flavor::of(&mut admin).await;
    let categories: Vec<String> = query(&mut admin, &["ACL", "CAT"]).await;
    let rules = ["~*", "+@tk"];
    if !flavor.has_72_module_api() {
        assert!(!categories.iter().any(|c| c == "tk"), "{categories:?}");
        let mut args = vec!["ACL", "SETUSER", "app", "on", ">pw"];
        args.extend_from_slice(&rules);
        let refused = outcome(&mut admin, &args).await.unwrap_err();
        assert!(refused.contains("tk"), "{refused}");
        return;
    }
    assert!(categories.iter().any(|c| c == "tk"), "{categories:?}");
    let mut in_category: Vec<String> = query(&mut admin, &["ACL", "CAT", "tk"]).await;
    in_category
        .iter_mut()
        .for_each(|c| c.make_ascii_lowercase());
    in_category.sort();
    let mut module_commands: Vec<String> = query::<Vec<Value>>(&mut admin, &["COMMAND", "LIST"])
        .await
        .into_iter()
        .filter_map(|name| String::from_redis_value(name).ok())
        .map(|name| name.to_ascii_lowercase())
        .filter(|name| name.starts_with("tk."))
        .collect();
    module_commands.sort();
    for family in [
        "tk.ratelimit",
        "tk.lock.acquire",
        "tk.session.create",
        "tk.cache.get",
    ] {
        assert!(
            module_commands.iter().any(|c| c == family),
            "{module_commands:?}"
        );
    }
    assert_eq!(in_category, module_commands);
    // They also join the built-in categories of their flags.
    let writes: Vec<String> = query(&mut admin, &["ACL", "CAT", "write"]).await;
    assert!(writes
        .iter()
        .any(|c| c.eq_ignore_ascii_case("tk.ratelimit")));
    let reads: Vec<String> = query(&mut admin, &["ACL", "CAT", "read"]).await;
    assert!(reads
        .iter()
        .any(|c| c.eq_ignore_ascii_case("tk.ratelimit.peek")));
    assert!(!reads.iter().any(|c| c.eq_ignore_ascii_case("tk.ratelimit")));

    let mut app = user(&server, &mut admin, "app", &rules).await;
    let decision: Vec<i64> = query(&mut app, &["TK.RATELIMIT", "rl:acl", "5", "1m"]).await;
    assert_eq!(decision[..3], [1, 5, 4]);
    let _: Value = query(&mut app, &["TK.LOCK.ACQUIRE", "l", "f", "t", "1s"]).await;
    // Nothing outside the module.
    let refused = outcome(&mut app, &["GET", "rl:acl"]).await.unwrap_err();
    assert!(refused.starts_with("NOPERM"), "{refused}");
}
