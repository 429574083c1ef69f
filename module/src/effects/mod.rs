//! Performs and replicates the [`Effect`]s a command decided on.
//!
//! Commands whose result depends on time must not be replicated verbatim:
//! a replica or an AOF replay would recompute them at another time. Each
//! effect is therefore written through the key API (no nested command
//! dispatch) and replicated with `RedisModule_Replicate` as the plain
//! command that has the same effect, with absolute times (`SET key value
//! PXAT <ms>`, `HSET`, `PEXPIREAT key <ms>`, `ZADD`, `ZREM`, `UNLINK`),
//! inside the command's MULTI/EXEC, and only when it changes something.
//! `SetAbsExpire` (Redis 6.2+) gives the primary the same absolute
//! millisecond the replica gets. Each write fires the keyspace events the
//! plain command would, so keyspace listeners and client-side caching keep
//! working.
//!
//! Two effects still go through `RedisModule_Call` (with `!`, so Redis
//! propagates exactly that command): `RENAME` and `ZREMRANGEBYSCORE`, which
//! the key API has no counterpart for.
//!
//! This is the only module that writes or replicates: `grep Replicate`
//! finds nothing in the command files.

mod write;

use crate::call::{Call, Key, Replicate};
use crate::effect::{Effect, Target, Value};
use crate::error::CommandError;
use crate::glue::{ArgString, Argv, Ctx};
use crate::keyapi::{OpenKey, Opened, OwnedString};
use crate::registry::CommandResult;

/// How [`apply`] finds the keys effects name: argv for [`Target::Arg`],
/// and the keys the command already holds open (their handles serve the
/// write; any other key is opened for the effect and closed after it).
pub struct Keys<'k> {
    argv: Option<&'k Argv<'k>>,
    open: &'k [(usize, &'k dyn Opened)],
}

impl<'k> Keys<'k> {
    /// Effects on the command's arguments, none of them held open.
    pub fn of(argv: &'k Argv<'k>) -> Keys<'k> {
        Keys {
            argv: Some(argv),
            open: &[],
        }
    }

    /// Effects on the command's arguments; `open` pairs argv positions
    /// with the handles the command holds open for writing.
    pub fn with_open(argv: &'k Argv<'k>, open: &'k [(usize, &'k dyn Opened)]) -> Keys<'k> {
        Keys {
            argv: Some(argv),
            open,
        }
    }

    /// Effects on named keys only (a timer has no argv).
    pub fn named() -> Keys<'static> {
        Keys {
            argv: None,
            open: &[],
        }
    }

    fn held(&self, position: usize) -> Option<&'k dyn Opened> {
        self.open
            .iter()
            .find(|(held, _)| *held == position)
            .map(|(_, key)| *key)
    }

    fn arg(&self, position: usize) -> Result<ArgString<'k>, CommandError> {
        self.argv
            .ok_or(CommandError::Internal("an argument key without argv"))?
            .string(position)
    }
}

/// Performs `effects` in order; stops at the first failure (which only the
/// key API's own errors can cause: types were checked before deciding).
pub fn apply(ctx: Ctx, keys: &Keys, effects: &[Effect]) -> CommandResult {
    effects
        .iter()
        .try_for_each(|effect| apply_one(ctx, keys, effect))
}

fn apply_one(ctx: Ctx, keys: &Keys, effect: &Effect) -> CommandResult {
    match *effect {
        // No key API renames a key.
        Effect::Rename { from, to } => with_name(keys, from, |from| {
            with_name(keys, to, |to| {
                Call::new(c"RENAME")
                    .key(from)
                    .key(to)
                    .run(ctx, Replicate::Yes)?
                    .get()
                    .check("RENAME failed")?;
                Ok(())
            })
        }),
        // The key API removes members one by one (after a range walk);
        // Redis's own command does it in one pass and replicates itself
        // (deterministic: the same members go on the replica).
        Effect::ZRemScoresBelow { key, below } => with_name(keys, key, |name| {
            let mut bound = [0u8; 21];
            bound[0] = b'(';
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(below).as_bytes();
            bound[1..1 + digits.len()].copy_from_slice(digits);
            Call::new(c"ZREMRANGEBYSCORE")
                .key(name)
                .bytes(b"-inf")
                .bytes(&bound[..1 + digits.len()])
                .run(ctx, Replicate::Yes)?
                .get()
                .check("ZREMRANGEBYSCORE failed")?;
            Ok(())
        }),
        Effect::SetString {
            key,
            value,
            expire_at_ms,
        } => with_key(ctx, keys, key, |open, name| {
            let mut digits = itoa::Buffer::new();
            let value = match value {
                Value::Bytes(bytes) => bytes,
                Value::Number(number) => digits.format(number).as_bytes(),
            };
            write::store_string(ctx, open, name, value, expire_at_ms)
        }),
        Effect::HashSet {
            key,
            fields,
            expire_at_ms,
        } => with_key(ctx, keys, key, |open, name| {
            write::hash_set(ctx, open, name, fields.as_slice(), expire_at_ms)
        }),
        Effect::ExpireAt { key, at_ms } => with_key(ctx, keys, key, |open, name| {
            write::expire_at(ctx, open, name, at_ms)
        }),
        Effect::Unlink { key } => {
            with_key(ctx, keys, key, |open, name| write::unlink(ctx, open, name))
        }
        Effect::ZAdd { key, score, member } => with_key(ctx, keys, key, |open, name| {
            write::zset_add(ctx, open, name, score, member)
        }),
        Effect::ZRem { key, member } => with_key(ctx, keys, key, |open, name| {
            write::zset_remove(ctx, open, name, member)
        }),
    }
}

/// Runs `body` with the key's name as a Redis string.
fn with_name<T>(
    keys: &Keys,
    target: Target,
    body: impl FnOnce(Key) -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    match target {
        Target::Arg(position) => body(Key::Arg(keys.arg(position)?)),
        Target::Named(name) => body(Key::Name(name)),
    }
}

/// Runs `body` with the key open for writing and its name.
fn with_key(
    ctx: Ctx,
    keys: &Keys,
    target: Target,
    body: impl FnOnce(&dyn Opened, ArgString) -> CommandResult,
) -> CommandResult {
    let named;
    let name = match target {
        Target::Arg(position) => {
            let name = keys.arg(position)?;
            if let Some(open) = keys.held(position) {
                return body(open, name);
            }
            name
        }
        Target::Named(bytes) => {
            named = OwnedString::new(ctx, bytes)
                .ok_or(CommandError::Internal("CreateString failed"))?;
            named.as_arg()
        }
    };
    let open = OpenKey::open(ctx, name, true)?.ok_or(CommandError::Internal(
        "no handle for a key opened for writing",
    ))?;
    body(&open, name)
}
