//! tk_redis::leaderboard against a real redis-server (plain sorted-set
//! commands and one script; the module is loaded but not used).

use rand::{Rng, SeedableRng};
use redis::aio::ConnectionManager;
use tk_redis::leaderboard::{leaderboard_key, Entry, Leaderboard};
use tk_redis::Error;
use tk_redis_tests::harness::Server;

fn entry(user: &str, score: f64, rank: u64) -> Entry {
    Entry {
        user: user.to_owned(),
        score,
        rank,
    }
}

fn users(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.user.as_str()).collect()
}

/// carol 20, bob 10, alice 10, dave 5: bob ranks above alice (same score,
/// user ids descending).
async fn board_with_ties(server: &Server, challenge: &str) -> Leaderboard<ConnectionManager> {
    let board = Leaderboard::new(server.manager().await, challenge);
    for (user, score) in [
        ("alice", 10.0),
        ("bob", 10.0),
        ("carol", 20.0),
        ("dave", 5.0),
    ] {
        assert!(board.add_score(user, score).await.unwrap(), "{user} is new");
    }
    board
}

#[tokio::test]
async fn empty_leaderboard() {
    let server = Server::start().await;
    let board = Leaderboard::new(server.manager().await, "empty");
    assert_eq!(board.len().await.unwrap(), 0);
    assert!(board.is_empty().await.unwrap());
    assert!(board.top(10).await.unwrap().is_empty());
    assert_eq!(board.rank_of("alice").await.unwrap(), None);
    assert!(board.around("alice", 3).await.unwrap().is_empty());
    assert!(!board.remove("alice").await.unwrap());
}

#[tokio::test]
async fn key_is_the_challenge_key() {
    let server = Server::start().await;
    let board = Leaderboard::new(server.manager().await, "42");
    assert_eq!(board.key(), "tk:challenge:42:leaderboard");
    assert_eq!(leaderboard_key("42"), board.key());
    board.add_score("alice", 3.5).await.unwrap();
    let mut conn = server.conn().await;
    let score: f64 = redis::cmd("ZSCORE")
        .arg("tk:challenge:42:leaderboard")
        .arg("alice")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(score, 3.5);
    // Another challenge is another leaderboard.
    let other = Leaderboard::new(server.manager().await, "43");
    assert_eq!(other.len().await.unwrap(), 0);
    assert_eq!(board.len().await.unwrap(), 1);
}

#[tokio::test]
async fn add_score_sets_and_overwrites() {
    let server = Server::start().await;
    let board = Leaderboard::new(server.manager().await, "c");
    assert!(board.add_score("alice", 50.0).await.unwrap());
    // Overwrites, even with a lower score.
    assert!(!board.add_score("alice", 7.25).await.unwrap());
    assert_eq!(board.top(1).await.unwrap(), [entry("alice", 7.25, 1)]);
    // Scores come back exactly.
    board.add_score("bob", 0.1).await.unwrap();
    board.add_score("carol", -1e300).await.unwrap();
    board.add_score("dave", 1e300).await.unwrap();
    assert_eq!(
        board.top(10).await.unwrap(),
        [
            entry("dave", 1e300, 1),
            entry("alice", 7.25, 2),
            entry("bob", 0.1, 3),
            entry("carol", -1e300, 4),
        ]
    );
    assert_eq!(board.len().await.unwrap(), 4);
}

#[tokio::test]
async fn incr_score_accumulates() {
    let server = Server::start().await;
    let board = Leaderboard::new(server.manager().await, "c");
    // An absent user starts from 0.
    assert_eq!(board.incr_score("alice", 2.5).await.unwrap(), 2.5);
    assert_eq!(board.incr_score("alice", 10.0).await.unwrap(), 12.5);
    assert_eq!(board.incr_score("alice", -20.0).await.unwrap(), -7.5);
    assert_eq!(board.incr_score("bob", 0.0).await.unwrap(), 0.0);
    assert_eq!(
        board.top(5).await.unwrap(),
        [entry("bob", 0.0, 1), entry("alice", -7.5, 2)]
    );
}

#[tokio::test]
async fn non_finite_numbers_are_rejected_before_sending() {
    let server = Server::start().await;
    let board = Leaderboard::new(server.manager().await, "c");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            board.add_score("alice", bad).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            board.incr_score("alice", bad).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(board.len().await.unwrap(), 0);
}

#[tokio::test]
async fn top_breaks_ties_by_user_id_descending() {
    let server = Server::start().await;
    let board = board_with_ties(&server, "c").await;
    let expected = [
        entry("carol", 20.0, 1),
        entry("bob", 10.0, 2),
        entry("alice", 10.0, 3),
        entry("dave", 5.0, 4),
    ];
    assert_eq!(board.top(4).await.unwrap(), expected);
    assert_eq!(board.top(2).await.unwrap(), expected[..2]);
    assert_eq!(board.top(100).await.unwrap(), expected);
    assert_eq!(board.top(usize::MAX).await.unwrap(), expected);
    assert!(board.top(0).await.unwrap().is_empty());
}

#[tokio::test]
async fn rank_of_agrees_with_top() {
    let server = Server::start().await;
    let board = board_with_ties(&server, "c").await;
    assert_eq!(board.rank_of("carol").await.unwrap(), Some(1));
    assert_eq!(board.rank_of("bob").await.unwrap(), Some(2));
    assert_eq!(board.rank_of("alice").await.unwrap(), Some(3));
    assert_eq!(board.rank_of("dave").await.unwrap(), Some(4));
    assert_eq!(board.rank_of("erin").await.unwrap(), None);
}

#[tokio::test]
async fn around_in_the_middle_and_at_the_edges() {
    let server = Server::start().await;
    let board = board_with_ties(&server, "c").await;
    // Middle: one above, one below.
    assert_eq!(
        board.around("bob", 1).await.unwrap(),
        [
            entry("carol", 20.0, 1),
            entry("bob", 10.0, 2),
            entry("alice", 10.0, 3)
        ]
    );
    // Top edge: nothing above carol.
    assert_eq!(
        users(&board.around("carol", 2).await.unwrap()),
        ["carol", "bob", "alice"]
    );
    // Bottom edge: nothing below dave.
    let bottom = board.around("dave", 2).await.unwrap();
    assert_eq!(
        bottom,
        [
            entry("bob", 10.0, 2),
            entry("alice", 10.0, 3),
            entry("dave", 5.0, 4)
        ]
    );
    // n = 0 is the user's own entry; a huge n is the whole board.
    assert_eq!(
        board.around("alice", 0).await.unwrap(),
        [entry("alice", 10.0, 3)]
    );
    assert_eq!(
        board.around("alice", usize::MAX).await.unwrap(),
        board.top(10).await.unwrap()
    );
    // Absent user.
    assert!(board.around("erin", 2).await.unwrap().is_empty());
}

#[tokio::test]
async fn around_on_a_single_entry_board() {
    let server = Server::start().await;
    let board = Leaderboard::new(server.manager().await, "solo");
    board.add_score("alice", 1.0).await.unwrap();
    assert_eq!(
        board.around("alice", 5).await.unwrap(),
        [entry("alice", 1.0, 1)]
    );
}

#[tokio::test]
async fn remove_present_and_absent() {
    let server = Server::start().await;
    let board = board_with_ties(&server, "c").await;
    assert!(board.remove("bob").await.unwrap());
    assert!(!board.remove("bob").await.unwrap());
    assert!(!board.remove("nobody").await.unwrap());
    assert_eq!(board.len().await.unwrap(), 3);
    assert_eq!(board.rank_of("bob").await.unwrap(), None);
    // Ranks close up.
    assert_eq!(board.rank_of("alice").await.unwrap(), Some(2));
    assert!(board.around("bob", 1).await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_type_is_a_server_error() {
    let server = Server::start().await;
    let mut conn = server.conn().await;
    let _: () = redis::cmd("SET")
        .arg(leaderboard_key("c"))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let board = Leaderboard::new(conn, "c");
    for result in [
        board.len().await.map(drop),
        board.top(3).await.map(drop),
        board.rank_of("a").await.map(drop),
        board.around("a", 1).await.map(drop),
        board.add_score("a", 1.0).await.map(drop),
    ] {
        match result {
            Err(Error::Server { code, .. }) => assert_eq!(code, "WRONGTYPE"),
            other => panic!("expected WRONGTYPE, got {other:?}"),
        }
    }
}

/// With many ties, every user's rank is the same in `top`, `rank_of` and
/// `around`, and `top` is sorted by (score desc, user desc).
#[tokio::test]
async fn ranks_are_consistent_across_calls() {
    let server = Server::start().await;
    // Works over a plain multiplexed connection too.
    let board = Leaderboard::new(server.conn().await, "random");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..60 {
        let score = f64::from(rng.random_range(0..6u8));
        board
            .add_score(&format!("user{i:02}"), score)
            .await
            .unwrap();
    }
    let all = board.top(1_000).await.unwrap();
    assert_eq!(all.len(), 60);
    for pair in all.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.score > b.score || (a.score == b.score && a.user > b.user),
            "{a:?} before {b:?}"
        );
        assert_eq!(b.rank, a.rank + 1);
    }
    for (index, e) in all.iter().enumerate() {
        assert_eq!(e.rank, index as u64 + 1);
        assert_eq!(board.rank_of(&e.user).await.unwrap(), Some(e.rank));
        let window = board.around(&e.user, 3).await.unwrap();
        let lo = index.saturating_sub(3);
        let hi = (index + 3).min(all.len() - 1);
        assert_eq!(window, all[lo..=hi], "around {}", e.user);
    }
}

/// RESP3 replies (doubles, nested pairs) parse the same as RESP2 ones.
#[tokio::test]
async fn works_over_resp3() {
    let server = Server::start().await;
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let board = Leaderboard::new(conn, "resp3");
    board.add_score("alice", 10.0).await.unwrap();
    board.add_score("bob", 10.0).await.unwrap();
    assert_eq!(board.incr_score("carol", 0.5).await.unwrap(), 0.5);
    let expected = [
        entry("bob", 10.0, 1),
        entry("alice", 10.0, 2),
        entry("carol", 0.5, 3),
    ];
    assert_eq!(board.top(3).await.unwrap(), expected);
    assert_eq!(board.around("alice", 1).await.unwrap(), expected);
    assert_eq!(board.rank_of("carol").await.unwrap(), Some(3));
    assert!(board.around("nobody", 1).await.unwrap().is_empty());
}
