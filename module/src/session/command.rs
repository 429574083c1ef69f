//! The TK.SESSION.* commands.
//!
//! Each handler: parse (`spec.rs`) → check key types and that a session and
//! its index share a hash slot → read → decide (`rules.rs`, with Redis's
//! time read once) → write and replicate plain effects (HSET, PEXPIREAT with
//! absolute times, ZADD/ZREM on the index, UNLINK, RENAME) → reply.
//!
//! The index (a sorted set) lists the user's session keys, each added only
//! after checking it hashes to the index's slot; CREATE, LIST and REVOKEALL
//! read or delete those listed keys, which therefore always live in the slot
//! of the index key they declare.

use crate::args::parse_integer;
use crate::call::{Call, Key, Replicate, Reply};
use crate::effects;
use crate::error::CommandError;
use crate::glue::{ArgString, Argv, Ctx, KeyKind};
use crate::keyslot;
use crate::registry::CommandResult;
use crate::stats;

use super::rules::{self, Times, Touch};
use super::spec::{
    parse_create, parse_destroy, parse_revoke_all, parse_rotate, parse_set, parse_single_key,
    parse_touch, CapPolicy,
};
use super::{
    CREATED_FIELD, DATA_FIELD, EXPIRES_AT_FIELD, IDLE_FIELD, LAST_ACTIVE_FIELD,
    MAX_EXPIRES_AT_FIELD, USER_FIELD, VERSION_FIELD,
};

const NOT_A_SESSION: &str = "key holds a hash that is not a tk session (written by hand?)";

fn now_ms(ctx: Ctx) -> u64 {
    ctx.now_nanos() / 1_000_000
}

/// Refuses keys that would land in different Cluster slots: a session must
/// live with its user's index.
fn same_slot(keys: &[&[u8]]) -> Result<(), CommandError> {
    let first = keyslot::slot(keys.first().copied().unwrap_or_default());
    if keys.iter().all(|key| keyslot::slot(key) == first) {
        Ok(())
    } else {
        Err(CommandError::Refused(
            "a session and its index must share a hash tag (one Cluster slot)",
        ))
    }
}

/// A stored session, read with one HMGET; `user` and `data` borrow the reply.
struct Stored {
    reply: Reply,
    times: Times,
}

impl Stored {
    fn field(&self, index: usize) -> &[u8] {
        self.reply
            .get()
            .element(index)
            .and_then(|element| element.bytes())
            .unwrap_or_default()
    }
    fn user(&self) -> &[u8] {
        self.field(0)
    }
    fn data(&self) -> &[u8] {
        self.field(1)
    }
}

fn number(bytes: Option<&[u8]>) -> Option<u64> {
    parse_integer(bytes?).and_then(|value| u64::try_from(value).ok())
}

/// Reads the session at `key`: `None` when there is none. A key of another
/// type is WRONGTYPE (reported by HMGET itself), as is a hash that is not a
/// session.
fn read<'a>(ctx: Ctx, key: impl Into<Key<'a>>) -> Result<Option<Stored>, CommandError> {
    let key = key.into();
    let reply = Call::new(c"HMGET")
        .key(key)
        .bytes(USER_FIELD)
        .bytes(DATA_FIELD)
        .bytes(CREATED_FIELD)
        .bytes(LAST_ACTIVE_FIELD)
        .bytes(EXPIRES_AT_FIELD)
        .bytes(MAX_EXPIRES_AT_FIELD)
        .bytes(VERSION_FIELD)
        .bytes(IDLE_FIELD)
        .run(ctx, Replicate::No)?;
    let fields = reply.get().check("HMGET on a session failed")?;
    let field = |index| fields.element(index).and_then(|element| element.bytes());
    if (0..8).all(|index| field(index).is_none()) {
        // No session fields: either no key, or a hash that is not ours.
        let exists = Call::new(c"EXISTS").key(key).run(ctx, Replicate::No)?;
        return match exists.get().integer() {
            Some(0) => Ok(None),
            _ => Err(CommandError::Foreign(NOT_A_SESSION)),
        };
    }
    let times = (|| {
        field(0)?;
        field(1)?;
        Some(Times {
            created: number(field(2))?,
            last_active: number(field(3))?,
            expires_at: number(field(4))?,
            max_expires_at: number(field(5))?,
            version: number(field(6))?,
            idle_ms: number(field(7))?,
        })
    })()
    .ok_or(CommandError::Foreign(NOT_A_SESSION))?;
    Ok(Some(Stored { reply, times }))
}

/// The session reply: `[user, data, created, last_active, expires_at, max_expires_at, version]`.
fn reply_session(ctx: Ctx, user: &[u8], data: &[u8], times: &Times) {
    ctx.reply_array(7);
    ctx.reply_bytes(user);
    ctx.reply_bytes(data);
    for value in [
        times.created,
        times.last_active,
        times.expires_at,
        times.max_expires_at,
        times.version,
    ] {
        ctx.reply_u64(value);
    }
}

fn reply_null(ctx: Ctx) {
    // SAFETY: live context.
    unsafe {
        if let Some(reply) = redis_module::raw::RedisModule_ReplyWithNull {
            reply(ctx.as_ptr());
        }
    }
}

/// Writes the times (and optionally user and data) of a session, and its expiry.
fn write_session(
    ctx: Ctx,
    key: &[u8],
    identity: Option<(&[u8], ArgString)>,
    times: &Times,
) -> CommandResult {
    let mut buffers = [(); 6].map(|()| itoa::Buffer::new());
    let [created, last_active, expires, max_expires, version, idle] = &mut buffers;
    let mut call = Call::new(c"HSET").bytes(key);
    if let Some((user, data)) = identity {
        call = call
            .bytes(USER_FIELD)
            .bytes(user)
            .bytes(DATA_FIELD)
            .string(data.as_ptr());
    }
    call.bytes(CREATED_FIELD)
        .bytes(created.format(times.created).as_bytes())
        .bytes(LAST_ACTIVE_FIELD)
        .bytes(last_active.format(times.last_active).as_bytes())
        .bytes(EXPIRES_AT_FIELD)
        .bytes(expires.format(times.expires_at).as_bytes())
        .bytes(MAX_EXPIRES_AT_FIELD)
        .bytes(max_expires.format(times.max_expires_at).as_bytes())
        .bytes(VERSION_FIELD)
        .bytes(version.format(times.version).as_bytes())
        .bytes(IDLE_FIELD)
        .bytes(idle.format(times.idle_ms).as_bytes())
        .run(ctx, Replicate::Yes)?
        .get()
        .check("HSET failed")?;
    effects::expire_at(ctx, key, times.expires_at)?;
    Ok(())
}

/// The index's members (session keys), all of them. The index only holds
/// the user's possibly-live sessions, so it stays small.
fn index_members(ctx: Ctx, index: &[u8]) -> Result<Reply, CommandError> {
    let reply = Call::new(c"ZRANGE")
        .bytes(index)
        .int(0)
        .int(-1)
        .run(ctx, Replicate::No)?;
    reply.get().check("ZRANGE on the index failed")?;
    Ok(reply)
}

/// Drops index entries whose session can no longer be alive: past their
/// max lifetime (by score), or gone (idle expiry, deleted).
/// Returns the live sessions with their last activity.
fn prune(ctx: Ctx, index: &[u8], now: u64) -> Result<Vec<(Vec<u8>, u64)>, CommandError> {
    effects::remove_scores_below(ctx, index, now)?;
    let members = index_members(ctx, index)?;
    let mut live = Vec::new();
    for position in 0..members.get().len() {
        let Some(session) = members.get().element(position).and_then(|m| m.bytes()) else {
            continue;
        };
        match read(ctx, session) {
            Ok(Some(stored)) => live.push((session.to_vec(), stored.times.last_active)),
            Ok(None) | Err(CommandError::WrongType) | Err(CommandError::Foreign(_)) => {
                effects::remove_member(ctx, index, session)?
            }
            Err(other) => return Err(other),
        }
    }
    Ok(live)
}

/// Makes the index expire no earlier than `at_ms` (it must outlive every
/// session it lists).
fn extend_index(ctx: Ctx, index: &[u8], at_ms: u64) -> CommandResult {
    if effects::expire_time(ctx, index)?.is_none_or(|current| current < at_ms) {
        effects::expire_at(ctx, index, at_ms)?;
    }
    Ok(())
}

fn add_to_index(ctx: Ctx, index: &[u8], session: &[u8], max_expires_at: u64) -> CommandResult {
    Call::new(c"ZADD")
        .bytes(index)
        .uint(max_expires_at)
        .bytes(session)
        .run(ctx, Replicate::Yes)?
        .get()
        .check("ZADD failed")?;
    extend_index(ctx, index, max_expires_at)
}

/// `TK.SESSION.CREATE <skey> <ikey> <user> <idle_ttl> <data> [MAXLIFETIME <ttl>] [MAXSESSIONS <n> EVICT|REJECT]`
pub fn create(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_create(argv)?;
    let session = argv.string(parsed.session)?;
    let index = argv.string(parsed.index)?;
    same_slot(&[session.bytes(), index.bytes()])?;
    if ctx.expect_kind(session, KeyKind::Hash)? {
        return Err(CommandError::Refused("session already exists"));
    }
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    let now = now_ms(ctx);
    let live = prune(ctx, index.bytes(), now)?;
    if let Some((cap, policy)) = parsed.cap {
        let excess = rules::evictions_needed(live.len(), cap);
        if excess > 0 {
            if policy == CapPolicy::Reject {
                stats::SESSION.rejected.incr();
                return Err(CommandError::Refused("session limit reached"));
            }
            let mut oldest_first = live;
            rules::eviction_order(&mut oldest_first);
            for (victim, _) in oldest_first.iter().take(excess) {
                effects::delete(ctx, victim)?;
                effects::remove_member(ctx, index, victim)?;
                stats::SESSION.evicted.incr();
            }
        }
    }
    let times = rules::create(now, parsed.idle_ms, parsed.max_lifetime_ms);
    let user = argv.string(parsed.user)?.bytes();
    let data = argv.string(parsed.data)?;
    write_session(ctx, session.bytes(), Some((user, data)), &times)?;
    add_to_index(ctx, index.bytes(), session.bytes(), times.max_expires_at)?;
    stats::SESSION.created.incr();
    reply_session(ctx, user, data.bytes(), &times);
    Ok(())
}

/// `TK.SESSION.TOUCH <skey> [IDLE <ttl>] [MINGAP <ttl>]` → the session, or nil.
pub fn touch(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_touch(argv)?;
    let session = argv.string(parsed.session)?;
    let Some(stored) = read(ctx, session)? else {
        stats::SESSION.expired_on_read.incr();
        reply_null(ctx);
        return Ok(());
    };
    let times = match rules::touch(now_ms(ctx), stored.times, parsed.idle_ms, parsed.min_gap_ms) {
        Touch::Skip => {
            stats::SESSION.touch_skipped.incr();
            stored.times
        }
        Touch::Write(times) => {
            write_session(ctx, session.bytes(), None, &times)?;
            stats::SESSION.touched.incr();
            times
        }
    };
    reply_session(ctx, stored.user(), stored.data(), &times);
    Ok(())
}

/// `TK.SESSION.GET <skey>` → the session, or nil. Read-only.
pub fn get(ctx: Ctx, argv: &Argv) -> CommandResult {
    let session = argv.string(parse_single_key(argv, "tk.session.get")?)?;
    match read(ctx, session)? {
        Some(stored) => reply_session(ctx, stored.user(), stored.data(), &stored.times),
        None => {
            stats::SESSION.expired_on_read.incr();
            reply_null(ctx);
        }
    }
    Ok(())
}

/// `TK.SESSION.SET <skey> <data> [IFVERSION <v>]` → the new version; nil if
/// the session is gone (never recreated); `ERR version mismatch` otherwise.
pub fn set(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_set(argv)?;
    let session = argv.string(parsed.session)?;
    let Some(stored) = read(ctx, session)? else {
        stats::SESSION.expired_on_read.incr();
        reply_null(ctx);
        return Ok(());
    };
    if !rules::version_matches(stored.times.version, parsed.if_version) {
        stats::SESSION.version_conflicts.incr();
        return Err(CommandError::Refused(
            "version mismatch: the session was changed since it was read",
        ));
    }
    let version = stored.times.version.saturating_add(1);
    let mut buffer = itoa::Buffer::new();
    // HSET keeps the key's expiry: the session lives exactly as long as before.
    Call::new(c"HSET")
        .key(session)
        .bytes(DATA_FIELD)
        .string(argv.string(parsed.data)?.as_ptr())
        .bytes(VERSION_FIELD)
        .bytes(buffer.format(version).as_bytes())
        .run(ctx, Replicate::Yes)?
        .get()
        .check("HSET failed")?;
    stats::SESSION.updated.incr();
    ctx.reply_u64(version);
    Ok(())
}

/// `TK.SESSION.DESTROY <skey> <ikey>` → 1 if a session was deleted, else 0.
pub fn destroy(ctx: Ctx, argv: &Argv) -> CommandResult {
    let (session, index) = parse_destroy(argv)?;
    let (session, index) = (argv.string(session)?, argv.string(index)?);
    same_slot(&[session.bytes(), index.bytes()])?;
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    // Only a session is deleted: another type or a hash of another shape is
    // refused by the read.
    read(ctx, session)?;
    let existed = effects::delete(ctx, session)?;
    effects::remove_member(ctx, index, session.bytes())?;
    if existed {
        stats::SESSION.destroyed.incr();
    }
    ctx.reply_integer(i64::from(existed));
    Ok(())
}

/// `TK.SESSION.ROTATE <old_skey> <new_skey> <ikey>` → 1, or nil if the old
/// session is gone. Same data and expiry under a new key.
pub fn rotate(ctx: Ctx, argv: &Argv) -> CommandResult {
    let (old, new, index) = parse_rotate(argv)?;
    let (old, new, index) = (argv.string(old)?, argv.string(new)?, argv.string(index)?);
    same_slot(&[old.bytes(), new.bytes(), index.bytes()])?;
    ctx.expect_kind(old, KeyKind::Hash)?;
    if ctx.expect_kind(new, KeyKind::Hash)? {
        return Err(CommandError::Refused("session already exists"));
    }
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    let Some(stored) = read(ctx, old)? else {
        stats::SESSION.expired_on_read.incr();
        reply_null(ctx);
        return Ok(());
    };
    // RENAME keeps the value and the expiry, and replicates as itself.
    Call::new(c"RENAME")
        .key(old)
        .key(new)
        .run(ctx, Replicate::Yes)?
        .get()
        .check("RENAME failed")?;
    effects::remove_member(ctx, index, old.bytes())?;
    add_to_index(ctx, index.bytes(), new.bytes(), stored.times.max_expires_at)?;
    stats::SESSION.rotated.incr();
    ctx.reply_integer(1);
    Ok(())
}

/// `TK.SESSION.LIST <ikey>` → `[[skey, created, last_active, expires_at], ...]`,
/// most recently active first. Read-only: dead entries are skipped here and
/// pruned by the next write to the index.
pub fn list(ctx: Ctx, argv: &Argv) -> CommandResult {
    let index = argv.string(parse_single_key(argv, "tk.session.list")?)?;
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    let now = now_ms(ctx);
    let members = index_members(ctx, index.bytes())?;
    let mut live: Vec<(&[u8], Times)> = Vec::new();
    for position in 0..members.get().len() {
        let Some(session) = members.get().element(position).and_then(|m| m.bytes()) else {
            continue;
        };
        // A session of another type or shape is not listed (not ours).
        if let Ok(Some(stored)) = read(ctx, session) {
            if rules::is_live(stored.times.expires_at, now) {
                live.push((session, stored.times));
            }
        }
    }
    live.sort_by(|(key_a, a), (key_b, b)| b.last_active.cmp(&a.last_active).then(key_a.cmp(key_b)));
    ctx.reply_array(live.len());
    for (session, times) in &live {
        ctx.reply_array(4);
        ctx.reply_bytes(session);
        ctx.reply_u64(times.created);
        ctx.reply_u64(times.last_active);
        ctx.reply_u64(times.expires_at);
    }
    Ok(())
}

/// `TK.SESSION.REVOKEALL <ikey> [EXCEPT <skey>]` → sessions deleted.
pub fn revoke_all(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_revoke_all(argv)?;
    let index = argv.string(parsed.index)?;
    let except = parsed.except.map(|key| argv.string(key)).transpose()?;
    if let Some(except) = except {
        same_slot(&[index.bytes(), except.bytes()])?;
    }
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    let members = index_members(ctx, index.bytes())?;
    let mut revoked = 0u64;
    for position in 0..members.get().len() {
        let Some(session) = members.get().element(position).and_then(|m| m.bytes()) else {
            continue;
        };
        if except.is_some_and(|except| except.bytes() == session) {
            continue;
        }
        // Only hashes are sessions; anything else under a listed name is
        // left alone and just unlisted.
        let kind = Call::new(c"TYPE").bytes(session).run(ctx, Replicate::No)?;
        let is_session = kind.get().bytes() == Some(&b"hash"[..]);
        if is_session && effects::delete(ctx, session)? {
            revoked += 1;
        }
        effects::remove_member(ctx, index, session)?;
    }
    stats::SESSION.revoked.add(revoked);
    ctx.reply_u64(revoked);
    Ok(())
}
