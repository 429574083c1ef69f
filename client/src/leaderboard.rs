//! Challenge leaderboards: a [`Leaderboard`] ranks users by score in a Redis
//! sorted set, highest score first.
//!
//! ```no_run
//! # async fn demo(conn: redis::aio::ConnectionManager) -> tk_redis::Result<()> {
//! use tk_redis::leaderboard::Leaderboard;
//!
//! let board = Leaderboard::new(conn, "spring-2025");
//! board.add_score("alice", 120.0).await?;
//! let total = board.incr_score("bob", 15.5).await?;
//! for entry in board.top(10).await? {
//!     println!("#{} {} ({})", entry.rank, entry.user, entry.score);
//! }
//! if let Some(rank) = board.rank_of("bob").await? {
//!     println!("bob is #{rank} with {total}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Ranking and ties
//!
//! Rank 1 is the highest score. Ranks are positions (1, 2, 3, ...), never
//! shared: users with equal scores get consecutive ranks, ordered by user id
//! in **descending** byte-wise (lexicographic) order, which is the order of
//! Redis's `ZREVRANGE`/`ZREVRANK`. So with `alice` and `bob` both on 10
//! points, `bob` is ranked above `alice`. [`Leaderboard::top`],
//! [`Leaderboard::rank_of`] and [`Leaderboard::around`] all follow this one
//! rule, so a user's rank is the same whichever call reports it.

use std::fmt;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::Value;

use crate::client::ClientCore;
use crate::error::{Error, Result};
use crate::reply::{truncate, type_name, unwrap_attribute, Count};

const CMD_ZADD: &str = "ZADD";
const CMD_ZINCRBY: &str = "ZINCRBY";
const CMD_ZREVRANGE: &str = "ZREVRANGE";
const CMD_ZREVRANK: &str = "ZREVRANK";
const CMD_ZREM: &str = "ZREM";
const CMD_ZCARD: &str = "ZCARD";
const CMD_EVAL: &str = "EVAL";

/// Prefix of leaderboard keys: `tk:challenge:<id>:leaderboard`.
const KEY_PREFIX: &str = "tk:challenge:";
/// Suffix of leaderboard keys.
const KEY_SUFFIX: &str = ":leaderboard";

/// A sorted set holds at most 2^32 - 1 members, so a window wider than this
/// already covers the whole leaderboard. Clamping keeps the numbers the
/// [`AROUND_SCRIPT`] computes exact integers.
const MAX_WINDOW: u64 = u32::MAX as u64;

/// `around` in one atomic step: the user's 0-based position, then the window
/// of up to `n` entries on each side. Replies `{}` when the user is absent,
/// else `{start, {member, score, member, score, ...}}` where `start` is the
/// 0-based position of the window's first entry.
const AROUND_SCRIPT: &str = r"
local position = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not position then
  return {}
end
local n = tonumber(ARGV[2])
local start = math.max(position - n, 0)
return {start, redis.call('ZREVRANGE', KEYS[1], start, position + n, 'WITHSCORES')}
";

/// The Redis key of a challenge's leaderboard: `tk:challenge:<id>:leaderboard`.
///
/// ```
/// use tk_redis::leaderboard::leaderboard_key;
/// assert_eq!(leaderboard_key("42"), "tk:challenge:42:leaderboard");
/// ```
pub fn leaderboard_key(challenge_id: &str) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + challenge_id.len() + KEY_SUFFIX.len());
    key.push_str(KEY_PREFIX);
    key.push_str(challenge_id);
    key.push_str(KEY_SUFFIX);
    key
}

/// One user's place on a leaderboard, as [`Leaderboard::top`] and
/// [`Leaderboard::around`] return it (see the [module docs](self) for an
/// example).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The user id, as given to [`Leaderboard::add_score`] or
    /// [`Leaderboard::incr_score`].
    pub user: String,
    /// The user's score.
    pub score: f64,
    /// 1-based rank: 1 is the highest score (see the
    /// [module docs](self#ranking-and-ties) for ties).
    pub rank: u64,
}

/// A challenge's leaderboard, stored as a Redis sorted set under
/// [`leaderboard_key`]`(challenge_id)`.
///
/// Higher scores rank better; ties are broken by user id, descending (see
/// the [module docs](self#ranking-and-ties)).
///
/// Generic over the connection like [`RateLimiter`](crate::RateLimiter):
/// by default a [`ConnectionManager`], but any cloneable async connection
/// works (e.g. [`redis::aio::MultiplexedConnection`] or
/// [`redis::cluster_async::ClusterConnection`]; each call touches one key).
/// Cloning a `Leaderboard` is cheap and shares the connection.
///
/// Every call waits at most [`timeout`](Leaderboard::timeout) (default
/// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT), 3 s) and then fails with [`Error::Timeout`].
#[derive(Clone)]
pub struct Leaderboard<C = ConnectionManager> {
    core: ClientCore<C>,
    key: String,
}

impl<C> fmt::Debug for Leaderboard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core
            .debug_struct(f, "Leaderboard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<C> Leaderboard<C> {
    /// The leaderboard of `challenge_id` on `conn`, with the default timeout.
    /// Nothing is sent until the first call.
    pub fn new(conn: C, challenge_id: &str) -> Self {
        Leaderboard {
            core: ClientCore::new(conn),
            key: leaderboard_key(challenge_id),
        }
    }

    crate::client::core_accessors!();

    /// The Redis key of this leaderboard.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl<C> Leaderboard<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Sets `user`'s score to `score` (`ZADD`), **overwriting** any previous
    /// score, whether higher or lower. Returns `true` when the user was not
    /// on the leaderboard before.
    ///
    /// A non-finite score (NaN or infinite) fails with
    /// [`Error::InvalidArgument`] before anything is sent.
    pub async fn add_score(&self, user: &str, score: f64) -> Result<bool> {
        check_finite("score", score)?;
        let mut cmd = redis::cmd(CMD_ZADD);
        cmd.arg(&self.key).arg(score).arg(user);
        let Count(added) = self.core.query(CMD_ZADD, &cmd).await?;
        Ok(added > 0)
    }

    /// Adds `delta` (possibly negative) to `user`'s score (`ZINCRBY`), a user
    /// not on the leaderboard starting from 0, and returns the new score.
    ///
    /// A non-finite `delta` (NaN or infinite) fails with
    /// [`Error::InvalidArgument`] before anything is sent.
    pub async fn incr_score(&self, user: &str, delta: f64) -> Result<f64> {
        check_finite("delta", delta)?;
        let mut cmd = redis::cmd(CMD_ZINCRBY);
        cmd.arg(&self.key).arg(delta).arg(user);
        let reply: Value = self.core.query(CMD_ZINCRBY, &cmd).await?;
        parse_score(&reply).map_err(|message| unexpected(CMD_ZINCRBY, &message))
    }

    /// The best `n` entries, best first (`ZREVRANGE ... WITHSCORES`); fewer
    /// when the leaderboard is smaller. `top(0)` is empty and sends nothing.
    pub async fn top(&self, n: usize) -> Result<Vec<Entry>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let stop = (n as u64).min(MAX_WINDOW) - 1;
        let mut cmd = redis::cmd(CMD_ZREVRANGE);
        cmd.arg(&self.key).arg(0).arg(stop).arg("WITHSCORES");
        let reply: Value = self.core.query(CMD_ZREVRANGE, &cmd).await?;
        parse_entries(&reply, 0).map_err(|message| unexpected(CMD_ZREVRANGE, &message))
    }

    /// `user`'s 1-based rank (`ZREVRANK`), or `None` when the user is not on
    /// the leaderboard.
    pub async fn rank_of(&self, user: &str) -> Result<Option<u64>> {
        let mut cmd = redis::cmd(CMD_ZREVRANK);
        cmd.arg(&self.key).arg(user);
        let reply: Value = self.core.query(CMD_ZREVRANK, &cmd).await?;
        parse_rank(&reply).map_err(|message| unexpected(CMD_ZREVRANK, &message))
    }

    /// `user`'s entry with up to `n` entries ranked just above and `n` just
    /// below it, best first: at most `2n + 1` entries, fewer near the top or
    /// bottom of the leaderboard. `around(user, 0)` is the user's own entry.
    /// Empty when the user is not on the leaderboard.
    ///
    /// Runs as one server-side script (`EVAL`), so the window is a consistent
    /// snapshot that always contains the user.
    pub async fn around(&self, user: &str, n: usize) -> Result<Vec<Entry>> {
        let n = (n as u64).min(MAX_WINDOW);
        let mut cmd = redis::cmd(CMD_EVAL);
        cmd.arg(AROUND_SCRIPT)
            .arg(1)
            .arg(&self.key)
            .arg(user)
            .arg(n);
        let reply: Value = self.core.query(CMD_EVAL, &cmd).await?;
        parse_around(&reply).map_err(|message| unexpected("EVAL (around)", &message))
    }

    /// Removes `user` from the leaderboard (`ZREM`). Returns whether the user
    /// was on it.
    pub async fn remove(&self, user: &str) -> Result<bool> {
        let mut cmd = redis::cmd(CMD_ZREM);
        cmd.arg(&self.key).arg(user);
        let Count(removed) = self.core.query(CMD_ZREM, &cmd).await?;
        Ok(removed > 0)
    }

    /// How many users are on the leaderboard (`ZCARD`); 0 when it does not
    /// exist.
    pub async fn len(&self) -> Result<u64> {
        let mut cmd = redis::cmd(CMD_ZCARD);
        cmd.arg(&self.key);
        let Count(len) = self.core.query(CMD_ZCARD, &cmd).await?;
        Ok(len)
    }

    /// Whether nobody is on the leaderboard ([`len`](Leaderboard::len) is 0).
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}

fn check_finite(what: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} must be a finite number, got {value}"
        )))
    }
}

fn unexpected(command: &str, message: &str) -> Error {
    Error::UnexpectedReply(format!("{command}: {message}"))
}

/// A score: a bulk string such as `"12.5"` or `"inf"` (RESP2), or a double
/// (RESP3).
fn parse_score(value: &Value) -> Result<f64, String> {
    match unwrap_attribute(value) {
        Value::Double(score) => Ok(*score),
        Value::BulkString(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| "score is not UTF-8".to_owned())?;
            match text.parse::<f64>() {
                Ok(score) if !score.is_nan() => Ok(score),
                _ => Err(format!("score is not a number: {:?}", truncate(text, 32))),
            }
        }
        other => Err(format!("expected a score, got {}", type_name(other))),
    }
}

/// A member name (user id): a UTF-8 bulk string.
fn parse_member(value: &Value) -> Result<String, String> {
    match unwrap_attribute(value) {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes.clone()).map_err(|_| "user id is not valid UTF-8".to_owned())
        }
        Value::SimpleString(text) => Ok(text.clone()),
        other => Err(format!("expected a user id, got {}", type_name(other))),
    }
}

/// A `ZREVRANGE ... WITHSCORES` reply whose first entry is at 0-based
/// position `start`: a flat array `[member, score, ...]` (RESP2) or an
/// array of `[member, score]` pairs (RESP3).
fn parse_entries(value: &Value, start: u64) -> Result<Vec<Entry>, String> {
    let items = match unwrap_attribute(value) {
        Value::Array(items) => items,
        other => return Err(format!("expected an array, got {}", type_name(other))),
    };
    let pairs: Vec<(&Value, &Value)> = if items
        .iter()
        .all(|item| matches!(unwrap_attribute(item), Value::Array(_)))
        && !items.is_empty()
    {
        items
            .iter()
            .map(|item| match unwrap_attribute(item) {
                Value::Array(pair) if pair.len() == 2 => Ok((&pair[0], &pair[1])),
                Value::Array(pair) => Err(format!(
                    "expected [user, score] pairs, got {} elements",
                    pair.len()
                )),
                _ => unreachable!("checked above"),
            })
            .collect::<Result<_, _>>()?
    } else {
        if items.len() % 2 != 0 {
            return Err(format!(
                "expected user/score pairs, got {} elements",
                items.len()
            ));
        }
        items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect()
    };
    pairs
        .into_iter()
        .zip(start + 1..)
        .map(|((member, score), rank)| {
            Ok(Entry {
                user: parse_member(member)?,
                score: parse_score(score)?,
                rank,
            })
        })
        .collect()
}

/// A `ZREVRANK` reply: the 0-based position, or nil; as a 1-based rank.
fn parse_rank(value: &Value) -> Result<Option<u64>, String> {
    match unwrap_attribute(value) {
        Value::Nil => Ok(None),
        Value::Int(position) => u64::try_from(*position)
            .ok()
            .and_then(|position| position.checked_add(1))
            .map(Some)
            .ok_or_else(|| format!("rank is out of range ({position})")),
        other => Err(format!(
            "expected an integer or nil, got {}",
            type_name(other)
        )),
    }
}

/// The [`AROUND_SCRIPT`] reply: `[]` when absent, else `[start, entries]`.
fn parse_around(value: &Value) -> Result<Vec<Entry>, String> {
    let items = match unwrap_attribute(value) {
        Value::Array(items) => items,
        other => return Err(format!("expected an array, got {}", type_name(other))),
    };
    match items.as_slice() {
        [] => Ok(Vec::new()),
        [start, entries] => {
            let start = match unwrap_attribute(start) {
                Value::Int(start) => u64::try_from(*start)
                    .map_err(|_| format!("window start is negative ({start})"))?,
                other => {
                    return Err(format!(
                        "window start should be an integer, got {}",
                        type_name(other)
                    ))
                }
            };
            let entries = parse_entries(entries, start)?;
            if entries.is_empty() {
                return Err("the window is empty although the user is ranked".to_owned());
            }
            Ok(entries)
        }
        other => Err(format!(
            "expected an empty array or [start, entries], got {} elements",
            other.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use redis::Value;
    use std::time::Duration;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn flat(pairs: &[(&str, &str)]) -> Value {
        Value::Array(
            pairs
                .iter()
                .flat_map(|(member, score)| [bulk(member), bulk(score)])
                .collect(),
        )
    }

    fn entry(user: &str, score: f64, rank: u64) -> Entry {
        Entry {
            user: user.to_owned(),
            score,
            rank,
        }
    }

    #[test]
    fn key_names() {
        assert_eq!(leaderboard_key("7"), "tk:challenge:7:leaderboard");
        assert_eq!(leaderboard_key(""), "tk:challenge::leaderboard");
        assert_eq!(
            leaderboard_key("{eu}:spring"),
            "tk:challenge:{eu}:spring:leaderboard"
        );
    }

    #[test]
    fn scores() {
        assert_eq!(parse_score(&bulk("12.5")), Ok(12.5));
        assert_eq!(parse_score(&bulk("-3")), Ok(-3.0));
        assert_eq!(parse_score(&bulk("inf")), Ok(f64::INFINITY));
        assert_eq!(parse_score(&bulk("-inf")), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_score(&bulk("0.10000000000000001")), Ok(0.1));
        assert_eq!(parse_score(&Value::Double(2.5)), Ok(2.5));
        assert!(parse_score(&bulk("nan")).is_err());
        assert!(parse_score(&bulk("abc")).is_err());
        assert!(parse_score(&Value::Nil).is_err());
        assert!(parse_score(&Value::BulkString(vec![0xff])).is_err());
        let long = "x".repeat(1000);
        let err = parse_score(&bulk(&long)).unwrap_err();
        assert!(err.len() < 100, "{err}");
    }

    #[test]
    fn entries_resp2_and_resp3() {
        let expected = vec![entry("bob", 10.0, 4), entry("alice", 7.5, 5)];
        let resp2 = flat(&[("bob", "10"), ("alice", "7.5")]);
        assert_eq!(parse_entries(&resp2, 3), Ok(expected.clone()));
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("bob"), Value::Double(10.0)]),
            Value::Array(vec![bulk("alice"), Value::Double(7.5)]),
        ]);
        assert_eq!(parse_entries(&resp3, 3), Ok(expected));
        assert_eq!(parse_entries(&Value::Array(vec![]), 0), Ok(vec![]));
    }

    #[test]
    fn malformed_entries() {
        assert!(parse_entries(&Value::Array(vec![bulk("bob")]), 0).is_err());
        assert!(parse_entries(&Value::Nil, 0).is_err());
        assert!(parse_entries(&flat(&[("bob", "x")]), 0).is_err());
        let odd_pair = Value::Array(vec![Value::Array(vec![bulk("bob")])]);
        assert!(parse_entries(&odd_pair, 0).is_err());
        let not_utf8 = Value::Array(vec![Value::BulkString(vec![0xff]), bulk("1")]);
        assert!(parse_entries(&not_utf8, 0).is_err());
    }

    #[test]
    fn ranks() {
        assert_eq!(parse_rank(&Value::Nil), Ok(None));
        assert_eq!(parse_rank(&Value::Int(0)), Ok(Some(1)));
        assert_eq!(parse_rank(&Value::Int(41)), Ok(Some(42)));
        assert!(parse_rank(&Value::Int(-1)).is_err());
        assert!(parse_rank(&bulk("1")).is_err());
    }

    #[test]
    fn around_replies() {
        assert_eq!(parse_around(&Value::Array(vec![])), Ok(vec![]));
        let reply = Value::Array(vec![Value::Int(2), flat(&[("c", "5"), ("d", "4")])]);
        assert_eq!(
            parse_around(&reply),
            Ok(vec![entry("c", 5.0, 3), entry("d", 4.0, 4)])
        );
        assert!(parse_around(&Value::Nil).is_err());
        assert!(parse_around(&Value::Array(vec![Value::Int(0)])).is_err());
        assert!(parse_around(&Value::Array(vec![Value::Int(-1), flat(&[("c", "5")])])).is_err());
        assert!(parse_around(&Value::Array(vec![bulk("0"), flat(&[("c", "5")])])).is_err());
        assert!(parse_around(&Value::Array(vec![Value::Int(0), flat(&[])])).is_err());
    }

    // ---- calls through a fake connection ----------------------------

    #[tokio::test]
    async fn commands_sent() {
        let fake = Fake::replying(Value::Int(1));
        let board = Leaderboard::new(fake.clone(), "c1");
        assert_eq!(board.key(), "tk:challenge:c1:leaderboard");
        assert!(board.add_score("alice", 12.5).await.unwrap());
        assert!(board.remove("alice").await.unwrap());
        assert_eq!(board.len().await.unwrap(), 1);
        let key = "tk:challenge:c1:leaderboard";
        assert_eq!(
            fake.sent(),
            [
                vec!["ZADD", key, "12.5", "alice"],
                vec!["ZREM", key, "alice"],
                vec!["ZCARD", key],
            ]
        );
    }

    #[tokio::test]
    async fn add_score_reports_updates() {
        let board = Leaderboard::new(Fake::replying(Value::Int(0)), "c");
        assert!(!board.add_score("alice", 1.0).await.unwrap());
        assert!(!board.remove("nobody").await.unwrap());
        assert!(board.is_empty().await.unwrap());
    }

    #[tokio::test]
    async fn non_finite_numbers_are_rejected() {
        let fake = Fake::replying(Value::Int(1));
        let board = Leaderboard::new(fake.clone(), "c");
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = board.add_score("a", bad).await.unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(ref m) if m.contains("score")),
                "{err:?}"
            );
            let err = board.incr_score("a", bad).await.unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(ref m) if m.contains("delta")),
                "{err:?}"
            );
        }
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn incr_score_parses_the_new_score() {
        let fake = Fake::replying(bulk("17.25"));
        let board = Leaderboard::new(fake.clone(), "c");
        assert_eq!(board.incr_score("bob", -2.75).await.unwrap(), 17.25);
        assert_eq!(
            fake.sent(),
            [["ZINCRBY", "tk:challenge:c:leaderboard", "-2.75", "bob"]]
        );
        let board = Leaderboard::new(Fake::replying(Value::Okay), "c");
        let err = board.incr_score("bob", 1.0).await.unwrap_err();
        assert!(
            matches!(err, Error::UnexpectedReply(ref m) if m.starts_with("ZINCRBY: ")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn top_ranges() {
        let fake = Fake::replying(flat(&[("b", "2"), ("a", "1")]));
        let board = Leaderboard::new(fake.clone(), "c");
        assert_eq!(
            board.top(5).await.unwrap(),
            [entry("b", 2.0, 1), entry("a", 1.0, 2)]
        );
        assert!(board.top(0).await.unwrap().is_empty());
        let _ = board.top(usize::MAX).await.unwrap();
        let sent = fake.sent();
        assert_eq!(sent.len(), 2, "top(0) sends nothing");
        assert_eq!(
            sent[0],
            [
                "ZREVRANGE",
                "tk:challenge:c:leaderboard",
                "0",
                "4",
                "WITHSCORES"
            ]
        );
        assert_eq!(sent[1][3], (u64::from(u32::MAX) - 1).to_string());
    }

    #[tokio::test]
    async fn rank_of_is_one_based() {
        let board = Leaderboard::new(Fake::replying(Value::Int(0)), "c");
        assert_eq!(board.rank_of("a").await.unwrap(), Some(1));
        let board = Leaderboard::new(Fake::replying(Value::Nil), "c");
        assert_eq!(board.rank_of("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn around_sends_one_script() {
        let fake = Fake::replying(Value::Array(vec![]));
        let board = Leaderboard::new(fake.clone(), "c");
        assert!(board.around("a", 2).await.unwrap().is_empty());
        let _ = board.around("a", usize::MAX).await.unwrap();
        let sent = fake.sent();
        assert_eq!(sent[0][0], "EVAL");
        assert_eq!(sent[0][2..], ["1", "tk:challenge:c:leaderboard", "a", "2"]);
        assert_eq!(sent[1][5], u32::MAX.to_string());
    }

    #[tokio::test]
    async fn errors_are_mapped() {
        let wrongtype = redis::parse_redis_value(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        )
        .unwrap();
        let board = Leaderboard::new(Fake::replying(wrongtype), "c");
        let err = board.len().await.unwrap_err();
        assert!(
            matches!(err, Error::Server { ref code, .. } if code == "WRONGTYPE"),
            "{err:?}"
        );
        let board =
            Leaderboard::new(Fake::new(|_| None), "c").with_timeout(Duration::from_millis(20));
        assert_eq!(board.timeout(), Duration::from_millis(20));
        assert!(matches!(board.top(3).await, Err(Error::Timeout)));
    }

    #[test]
    fn debug_shows_the_key() {
        let board = Leaderboard::new(Fake::replying(Value::Nil), "c");
        let text = format!("{board:?}");
        assert!(text.contains("tk:challenge:c:leaderboard"), "{text}");
    }
}
