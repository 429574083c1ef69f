//! The TK.SESSION.* commands.
//!
//! Each handler: parse (`parse.rs`) → check the key names (`keys.rs`) and
//! types → read `now` once → read the keys → decide (`plan.rs` on the
//! rules of `rules.rs`: the decision and its effects) → apply the effects
//! (`effects.rs`) → reply.
//!
//! The index (a sorted set) lists the user's session keys. CREATE, LIST and
//! REVOKEALL read or delete those listed keys, which are not arguments, so
//! anyone who may write the index could list anything there. Every listed
//! key is therefore checked when it is read back ([`classify`]): its name
//! must fit the index (`tk:s:{tag}:…` for `tk:si:{tag}:<user>`, so the same
//! slot), the caller's ACL user must be allowed to read (and, for writes,
//! delete) it, and it must be a session of the index's user. Anything else
//! is foreign: unlisted (or skipped by LIST) and counted, never touched.

use crate::args::parse_integer;
use crate::call::{Call, Replicate, Reply};
use crate::effect::{Effect, Target};
use crate::effects::{self, Keys};
use crate::error::CommandError;
use crate::glue::{Access, ArgString, Argv, Caller, Ctx, KeyKind};
use crate::keyapi::{Fields8, HashKey, Opened, OwnedString};
use crate::keys::SessionIndex;
use crate::registry::CommandResult;
use crate::stats;

use super::parse::{
    parse_create, parse_destroy, parse_revoke_all, parse_rotate, parse_set, parse_single_key,
    parse_touch,
};
use super::plan::{self, CreateArgs, SessionKeys};
use super::rules::{self, LimitReached, Listed, Times, Touch};
use super::FIELDS;

// Positions in [`FIELDS`] (the order of the session reply).
const USER: usize = 0;
const DATA: usize = 1;
const CREATED: usize = 2;
const LAST_ACTIVE: usize = 3;
const EXPIRES_AT: usize = 4;
const MAX_EXPIRES_AT: usize = 5;
const VERSION: usize = 6;
const IDLE: usize = 7;

const NOT_A_SESSION: &str = "key holds a hash that is not a tk session (written by hand?)";

fn now_ms(ctx: Ctx) -> u64 {
    ctx.now_nanos() / 1_000_000
}

/// A stored session, read through the key API; `user` and `data` are
/// copies made by the read.
struct Stored {
    fields: Fields8,
    times: Times,
}

impl Stored {
    fn field(&self, index: usize) -> &[u8] {
        self.fields[index]
            .as_ref()
            .map_or(&[][..], OwnedString::bytes)
    }
    fn user(&self) -> &[u8] {
        self.field(USER)
    }
    fn data(&self) -> &[u8] {
        self.field(DATA)
    }
}

fn number(bytes: Option<&[u8]>) -> Option<u64> {
    parse_integer(bytes?).and_then(|value| u64::try_from(value).ok())
}

/// The session in `key`: `None` when there is none; a hash that is not a
/// session, or holds numbers tk could not have written, is WRONGTYPE (as
/// is another type, refused when the key was opened).
fn read(ctx: Ctx, key: &HashKey) -> Result<Option<Stored>, CommandError> {
    if !key.is_present() {
        return Ok(None);
    }
    let fields = key.get8(ctx, &FIELDS);
    let field = |index: usize| fields[index].as_ref().map(OwnedString::bytes);
    let times = (|| {
        field(USER)?;
        field(DATA)?;
        Some(Times {
            created: number(field(CREATED))?,
            last_active: number(field(LAST_ACTIVE))?,
            expires_at: number(field(EXPIRES_AT))?,
            max_expires_at: number(field(MAX_EXPIRES_AT))?,
            version: number(field(VERSION))?,
            idle_ms: number(field(IDLE))?,
        })
    })()
    .filter(Times::is_plausible)
    .ok_or(CommandError::Foreign(NOT_A_SESSION))?;
    Ok(Some(Stored { fields, times }))
}

/// Opens `name` for reading and reads its session.
fn read_only(ctx: Ctx, name: ArgString) -> Result<Option<Stored>, CommandError> {
    match HashKey::open(ctx, name, false)? {
        Some(key) => read(ctx, &key),
        None => Ok(None),
    }
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

/// The index's members (session keys): all of them, or only those scored
/// (max lifetime) at or after `from`. The index only holds the user's
/// possibly-live sessions, so it stays small.
fn index_members(ctx: Ctx, index: &[u8], from: Option<u64>) -> Result<Reply, CommandError> {
    let call = Call::new(c"ZRANGE").bytes(index);
    let call = match from {
        Some(from) => call.uint(from).bytes(b"+inf").bytes(b"BYSCORE"),
        None => call.int(0).int(-1),
    };
    let reply = call.run(ctx, Replicate::No)?;
    reply.get().check("ZRANGE on the index failed")?;
    Ok(reply)
}

/// The member names of a ZRANGE reply, borrowed from it.
fn member_names(reply: &Reply) -> Vec<&[u8]> {
    let members = reply.get();
    (0..members.len())
        .filter_map(|position| members.element(position).and_then(|member| member.bytes()))
        .collect()
}

/// What a key listed in `index` is, checked as untrusted input: see the
/// module docs. Never reads a key that fails the name or ACL check.
fn classify(
    ctx: Ctx,
    caller: &Caller,
    index: &SessionIndex,
    member: &[u8],
    now: u64,
    access: Access,
) -> Result<Listed, CommandError> {
    let listed = if !index.lists(member) || !caller.may(ctx, member, access) {
        Listed::Foreign
    } else {
        let name =
            OwnedString::new(ctx, member).ok_or(CommandError::Internal("CreateString failed"))?;
        match read_only(ctx, name.as_arg()) {
            Ok(None) => Listed::Gone,
            Ok(Some(stored)) => rules::listed(index.user(), stored.user(), stored.times, now),
            Err(CommandError::WrongType | CommandError::Foreign(_)) => Listed::Foreign,
            Err(other) => return Err(other),
        }
    };
    if listed == Listed::Foreign {
        stats::SESSION.foreign_members.incr();
    }
    Ok(listed)
}

/// Every member's classification, for the write commands.
fn classify_all<'a>(
    ctx: Ctx,
    index: &SessionIndex,
    members: &[&'a [u8]],
    now: u64,
) -> Result<Vec<(&'a [u8], Listed)>, CommandError> {
    let caller = Caller::current(ctx)?;
    members
        .iter()
        .map(|&member| {
            let listed = classify(ctx, &caller, index, member, now, Access::ReadAndDelete)?;
            Ok((member, listed))
        })
        .collect()
}

/// `TK.SESSION.CREATE <skey> <ikey> <user> <idle_ttl> <data> [MAXLIFETIME <ttl>] [MAXSESSIONS <n> EVICT|REJECT]`
pub fn create(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_create(argv)?;
    let session = argv.string(parsed.session)?;
    let index = argv.string(parsed.index)?;
    let user = argv.string(parsed.user)?.bytes();
    let shape = SessionIndex::parse(index.bytes())?;
    shape.check_session(session.bytes())?;
    if user != shape.user() {
        return Err(CommandError::Refused(
            "the user must be the one its index names (tk:si:{<tag>}:<user>)",
        ));
    }
    let session_key = HashKey::open(ctx, session, true)?.ok_or(CommandError::Internal(
        "no handle for a key opened for writing",
    ))?;
    if session_key.is_present() {
        return Err(CommandError::Refused("session already exists"));
    }
    let index_state = ctx.expect_kind_expiring(index, KeyKind::SortedSet)?;
    let now = now_ms(ctx);
    // Entries scored before now are past their max lifetime: dropped by
    // score, without reading them.
    let members = index_members(ctx, index.bytes(), Some(now))?;
    let listed = classify_all(ctx, &shape, &member_names(&members), now)?;
    let keys = SessionKeys {
        session: parsed.session,
        session_name: session.bytes(),
        index: parsed.index,
    };
    let data = argv.string(parsed.data)?.bytes();
    let args = CreateArgs {
        user,
        data,
        idle_ms: parsed.idle_ms,
        max_lifetime_ms: parsed.max_lifetime_ms,
        cap: parsed.cap,
    };
    // Decided before anything is written: a refusal changes nothing.
    let create = plan::create(keys, args, &listed, index_state.expire_at_ms, now).map_err(
        |LimitReached| {
            stats::SESSION.rejected.incr();
            CommandError::Refused("session limit reached")
        },
    )?;
    let open = [(parsed.session, &session_key as &dyn Opened)];
    effects::apply(ctx, &Keys::with_open(argv, &open), &create.effects)?;
    stats::SESSION.evicted.add(create.evicted);
    stats::SESSION.created.incr();
    reply_session(ctx, user, data, &create.times);
    Ok(())
}

/// A session read back that is no longer alive: counted, and (for write
/// commands) its `effects` applied (the session deleted, so a dead session
/// is dead everywhere), then nil.
fn dead(ctx: Ctx, keys: &Keys, effects: &[Effect]) -> CommandResult {
    stats::SESSION.expired_on_read.incr();
    effects::apply(ctx, keys, effects)?;
    reply_null(ctx);
    Ok(())
}

/// Opens `name` for writing (a TOUCH, SET or ROTATE on it).
fn open_for_write(ctx: Ctx, name: ArgString) -> Result<HashKey, CommandError> {
    HashKey::open(ctx, name, true)?.ok_or(CommandError::Internal(
        "no handle for a key opened for writing",
    ))
}

/// Opens argv's `position` for writing and reads its session if it is
/// alive at `now`. Otherwise replies nil (deleting a dead session) and
/// returns `None`: the command is done.
fn live_for_write(
    ctx: Ctx,
    argv: &Argv,
    position: usize,
    now: u64,
) -> Result<Option<(HashKey, Stored)>, CommandError> {
    let key = open_for_write(ctx, argv.string(position)?)?;
    match read(ctx, &key)? {
        None => dead(ctx, &Keys::of(argv), &[]).map(|()| None),
        Some(stored) if !stored.times.is_live(now) => {
            let unlink = Effect::Unlink {
                key: Target::Arg(position),
            };
            let open = [(position, &key as &dyn Opened)];
            dead(ctx, &Keys::with_open(argv, &open), &[unlink]).map(|()| None)
        }
        Some(stored) => Ok(Some((key, stored))),
    }
}

/// `TK.SESSION.TOUCH <skey> [IDLE <ttl>] [MINGAP <ttl>]` → the session, or nil.
pub fn touch(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_touch(argv)?;
    let now = now_ms(ctx);
    let Some((key, stored)) = live_for_write(ctx, argv, parsed.session, now)? else {
        return Ok(());
    };
    let times = match rules::touch(now, stored.times, parsed.idle_ms, parsed.min_gap_ms) {
        Touch::Skip => {
            stats::SESSION.touch_skipped.incr();
            stored.times
        }
        Touch::Write(times) => {
            let open = [(parsed.session, &key as &dyn Opened)];
            let write = plan::touch(parsed.session, &times);
            effects::apply(ctx, &Keys::with_open(argv, &open), &[write])?;
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
    let now = now_ms(ctx);
    match read_only(ctx, session)? {
        // Read-only: a dead session is reported gone, and the next write
        // (or Redis's own expiry) deletes it.
        Some(stored) if stored.times.is_live(now) => {
            reply_session(ctx, stored.user(), stored.data(), &stored.times);
            Ok(())
        }
        _ => dead(ctx, &Keys::of(argv), &[]),
    }
}

/// `TK.SESSION.SET <skey> <data> [IFVERSION <v>]` → the new version; nil if
/// the session is gone (never recreated); `ERR version mismatch` otherwise.
pub fn set(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_set(argv)?;
    let now = now_ms(ctx);
    let Some((key, stored)) = live_for_write(ctx, argv, parsed.session, now)? else {
        return Ok(());
    };
    if !rules::version_matches(stored.times.version, parsed.if_version) {
        stats::SESSION.version_conflicts.incr();
        return Err(CommandError::Refused(
            "version mismatch: the session was changed since it was read",
        ));
    }
    let version = rules::next_version(stored.times.version)
        .ok_or(CommandError::Refused("version limit reached"))?;
    let write = plan::set(parsed.session, argv.string(parsed.data)?.bytes(), version);
    let open = [(parsed.session, &key as &dyn Opened)];
    effects::apply(ctx, &Keys::with_open(argv, &open), &[write])?;
    stats::SESSION.updated.incr();
    ctx.reply_u64(version);
    Ok(())
}

/// `TK.SESSION.DESTROY <skey> <ikey>` → 1 if a session was deleted, else 0.
pub fn destroy(ctx: Ctx, argv: &Argv) -> CommandResult {
    let (session_position, index_position) = parse_destroy(argv)?;
    let (session, index) = (argv.string(session_position)?, argv.string(index_position)?);
    SessionIndex::parse(index.bytes())?.check_session(session.bytes())?;
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    // Only a session is deleted: another type or a hash of another shape is
    // refused by the read.
    let exists = read_only(ctx, session)?.is_some();
    let keys = SessionKeys {
        session: session_position,
        session_name: session.bytes(),
        index: index_position,
    };
    effects::apply(ctx, &Keys::of(argv), plan::destroy(keys, exists).as_slice())?;
    if exists {
        stats::SESSION.destroyed.incr();
    }
    ctx.reply_integer(i64::from(exists));
    Ok(())
}

/// `TK.SESSION.ROTATE <old_skey> <new_skey> <ikey>` → 1, or nil if the old
/// session is gone. Same data and expiry under a new key.
pub fn rotate(ctx: Ctx, argv: &Argv) -> CommandResult {
    let (old_position, new_position, index_position) = parse_rotate(argv)?;
    let old = argv.string(old_position)?;
    let new = argv.string(new_position)?;
    let index = argv.string(index_position)?;
    let shape = SessionIndex::parse(index.bytes())?;
    shape.check_session(old.bytes())?;
    shape.check_session(new.bytes())?;
    ctx.expect_kind(old, KeyKind::Hash)?;
    if ctx.expect_kind(new, KeyKind::Hash)? {
        return Err(CommandError::Refused("session already exists"));
    }
    let index_state = ctx.expect_kind_expiring(index, KeyKind::SortedSet)?;
    let now = now_ms(ctx);
    let old_keys = SessionKeys {
        session: old_position,
        session_name: old.bytes(),
        index: index_position,
    };
    let new_keys = SessionKeys {
        session: new_position,
        session_name: new.bytes(),
        index: index_position,
    };
    let Some(stored) = read_only(ctx, old)? else {
        return dead(ctx, &Keys::of(argv), &[]);
    };
    if stored.user() != shape.user() {
        return Err(CommandError::Refused(
            "the session belongs to another user than the index names",
        ));
    }
    if !stored.times.is_live(now) {
        return dead(ctx, &Keys::of(argv), plan::dead(old_keys, true).as_slice());
    }
    // No key is held open: RENAME moves the hash with its expiry.
    let writes = plan::rotate(
        old_keys,
        new_keys,
        stored.times.max_expires_at,
        index_state.expire_at_ms,
    );
    effects::apply(ctx, &Keys::of(argv), writes.as_slice())?;
    stats::SESSION.rotated.incr();
    ctx.reply_integer(1);
    Ok(())
}

/// `TK.SESSION.LIST <ikey>` → `[[skey, created, last_active, expires_at], ...]`,
/// most recently active first. Read-only: dead and foreign entries are
/// skipped here and unlisted by the next write to the index.
pub fn list(ctx: Ctx, argv: &Argv) -> CommandResult {
    let index = argv.string(parse_single_key(argv, "tk.session.list")?)?;
    let shape = SessionIndex::parse(index.bytes())?;
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    let now = now_ms(ctx);
    let caller = Caller::current(ctx)?;
    let members = index_members(ctx, index.bytes(), None)?;
    let mut live: Vec<(&[u8], Times)> = Vec::new();
    for session in member_names(&members) {
        if let Listed::Live(times) = classify(ctx, &caller, &shape, session, now, Access::Read)? {
            live.push((session, times));
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

/// `TK.SESSION.REVOKEALL <ikey> [EXCEPT <skey>]` → sessions deleted (live
/// sessions of the index's user; foreign entries are only unlisted).
pub fn revoke_all(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_revoke_all(argv)?;
    let index = argv.string(parsed.index)?;
    let shape = SessionIndex::parse(index.bytes())?;
    let except = parsed.except.map(|key| argv.string(key)).transpose()?;
    if let Some(except) = except {
        shape.check_session(except.bytes())?;
    }
    ctx.expect_kind(index, KeyKind::SortedSet)?;
    let now = now_ms(ctx);
    let members = index_members(ctx, index.bytes(), None)?;
    let names: Vec<&[u8]> = member_names(&members)
        .into_iter()
        .filter(|&session| except.is_none_or(|except| except.bytes() != session))
        .collect();
    let listed = classify_all(ctx, &shape, &names, now)?;
    let (revoked, writes) = plan::revoke_all(parsed.index, &listed);
    effects::apply(ctx, &Keys::of(argv), &writes)?;
    stats::SESSION.revoked.add(revoked);
    ctx.reply_u64(revoked);
    Ok(())
}
