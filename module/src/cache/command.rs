//! TK.CACHE.GET, TK.CACHE.SET, TK.CACHE.INVALIDATEUSER, TK.CACHE.INVALIDATENS.
//!
//! Each handler: parse (`parse.rs`) → check the key names (one user's
//! `tk:c:{tag}:…`, `tk:cg:{tag}`, `tk:ci:{tag}`, see `keys.rs`) and every
//! key's type before writing anything → read the generations → decide
//! (`plan.rs`, on the rules of `generation.rs`: the decision and its
//! effects) → apply the effects (`effects.rs`) → reply. Invalidations also queue the user's
//! index for the background reclaimer (`reclaim.rs`), which may delete only
//! entries of the same tag that the invalidating ACL user could delete.

use crate::effects::{self, Keys};
use crate::error::CommandError;
use crate::glue::{current_user_name, ArgString, Argv, Ctx, KeyKind};
use crate::keyapi::{HashKey, OwnedString};
use crate::keys::CacheKeys;
use crate::registry::CommandResult;
use crate::stats;

use super::generation::{is_visible, parse_generation, Generations, USER_FIELD};
use super::parse::{parse_get, parse_invalidate_namespace, parse_invalidate_user, parse_set};
use super::plan::{self, GenerationLimit, SetPlan};
use super::{reclaim, ENTRY_FIELDS, GENERATION_FIELDS, MAX_NAMESPACE_LEN, NAMESPACE_FIELD_PREFIX};

const CORRUPT_GENERATIONS: &str =
    "cache generations key holds a field that is not a generation (edited by hand?)";

/// `n:<namespace>` on the stack.
struct NamespaceField {
    bytes: [u8; NAMESPACE_FIELD_PREFIX.len() + MAX_NAMESPACE_LEN],
    len: usize,
}

impl NamespaceField {
    fn new(namespace: &[u8]) -> NamespaceField {
        let mut bytes = [0u8; NAMESPACE_FIELD_PREFIX.len() + MAX_NAMESPACE_LEN];
        let prefix = NAMESPACE_FIELD_PREFIX.len();
        // The parser caps namespaces at MAX_NAMESPACE_LEN; `min` keeps this
        // in bounds regardless.
        let len = namespace.len().min(MAX_NAMESPACE_LEN);
        bytes[..prefix].copy_from_slice(NAMESPACE_FIELD_PREFIX);
        bytes[prefix..prefix + len].copy_from_slice(&namespace[..len]);
        NamespaceField {
            bytes,
            len: prefix + len,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The current generations of `namespace` (0 when never invalidated),
/// read through the key API; a key of another type is WRONGTYPE, a
/// generation tk could not have written is foreign data.
pub fn current_generations(
    ctx: Ctx,
    generations_key: ArgString,
    namespace: &[u8],
) -> Result<Generations, CommandError> {
    let Some(generations) = HashKey::open(ctx, generations_key, false)? else {
        return Ok(Generations {
            user: 0,
            namespace: 0,
        });
    };
    let namespace_field = OwnedString::new(ctx, NamespaceField::new(namespace).as_bytes())
        .ok_or(CommandError::Internal("CreateString failed"))?;
    let user = generations.get_named(ctx, GENERATION_FIELDS.get(0));
    let namespace = generations.get(ctx, &namespace_field);
    let corrupt = |_| CommandError::Foreign(CORRUPT_GENERATIONS);
    Ok(Generations {
        user: parse_generation(user.as_ref().map(OwnedString::bytes)).map_err(corrupt)?,
        namespace: parse_generation(namespace.as_ref().map(OwnedString::bytes)).map_err(corrupt)?,
    })
}

/// An entry's recorded generations, if it has well-formed ones. An entry
/// whose fields are damaged is simply invisible (and reclaimable).
pub fn entry_generations(user: Option<&[u8]>, namespace: Option<&[u8]>) -> Option<Generations> {
    Some(Generations {
        user: parse_generation(Some(user?)).ok()?,
        namespace: parse_generation(Some(namespace?)).ok()?,
    })
}

/// `TK.CACHE.GET <entry_key> <generations_key> <namespace>` →
/// `[1, value]` on a hit, `[0, "<user>.<namespace generation>"]` on a miss.
pub fn get(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_get(argv)?;
    let entry_key = argv.string(parsed.entry)?;
    let generations_key = argv.string(parsed.generations)?;
    CacheKeys::of_generations(generations_key.bytes())?.check_entry(entry_key.bytes())?;
    // Read-only, through the key API; a key of another type is WRONGTYPE.
    let current = current_generations(ctx, generations_key, parsed.namespace)?;
    let entry = HashKey::open(ctx, entry_key, false)?;
    let fields: [Option<OwnedString>; 4] = std::array::from_fn(|index| {
        entry
            .as_ref()
            .and_then(|key| key.get_named(ctx, ENTRY_FIELDS.get(index)))
    });
    let field = |index: usize| fields[index].as_ref().map(OwnedString::bytes);
    let visible = match (field(0), entry_generations(field(1), field(2))) {
        // The namespace check guards against a key reused across namespaces.
        (Some(value), Some(stored))
            if is_visible(stored, current) && field(3) == Some(parsed.namespace) =>
        {
            Some(value)
        }
        _ => None,
    };
    ctx.reply_array(2);
    match visible {
        Some(value) => {
            stats::CACHE.hits.incr();
            ctx.reply_integer(1);
            ctx.reply_bytes(value);
        }
        None => {
            stats::CACHE.misses.incr();
            ctx.reply_integer(0);
            ctx.reply_bytes(current.token().as_bytes());
        }
    }
    Ok(())
}

/// `TK.CACHE.SET <entry_key> <generations_key> <index_key> <namespace> <ttl> <value> [IFGEN <token>]`
/// → 1 stored, 0 refused (IFGEN older than the current generations).
pub fn set(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_set(argv)?;
    let entry_key = argv.string(parsed.entry)?;
    let generations_key = argv.string(parsed.generations)?;
    let index_key = argv.string(parsed.index)?;
    let keys = CacheKeys::of_index(index_key.bytes())?;
    keys.check_generations(generations_key.bytes())?;
    keys.check_entry(entry_key.bytes())?;
    // Every type is checked before anything is written.
    ctx.expect_kind(entry_key, KeyKind::Hash)?;
    let generations = ctx.expect_kind_expiring(generations_key, KeyKind::Hash)?;
    let index = ctx.expect_kind_expiring(index_key, KeyKind::SortedSet)?;
    let now_ms = ctx.now_nanos() / 1_000_000;
    let state = plan::SetState {
        current: current_generations(ctx, generations_key, parsed.namespace)?,
        index_expiry: index.expire_at_ms,
        generations_expiry: generations.expire_at_ms,
    };
    let plan_keys = plan::SetKeys {
        entry: parsed.entry,
        generations: parsed.generations,
        index: parsed.index,
        entry_name: entry_key.bytes(),
    };
    let args = plan::SetArgs {
        namespace: parsed.namespace,
        value: argv.string(parsed.value)?.bytes(),
        ttl_ms: parsed.ttl_ms,
        if_generations: parsed.if_generations,
    };
    match plan::set(plan_keys, state, args, now_ms) {
        SetPlan::RefuseStale => {
            stats::CACHE.sets_refused.incr();
            ctx.reply_integer(0);
        }
        SetPlan::Store(writes) => {
            effects::apply(ctx, &Keys::of(argv), writes.as_slice())?;
            stats::CACHE.sets.incr();
            ctx.reply_integer(1);
        }
    }
    Ok(())
}

fn invalidate(
    ctx: Ctx,
    argv: &Argv,
    namespace: Option<&[u8]>,
    generations: usize,
    index: usize,
) -> CommandResult {
    let generations_key = argv.string(generations)?;
    let index_key = argv.string(index)?;
    CacheKeys::of_index(index_key.bytes())?.check_generations(generations_key.bytes())?;
    let generations_state = ctx.expect_kind_expiring(generations_key, KeyKind::Hash)?;
    let index_state = ctx.expect_kind_expiring(index_key, KeyKind::SortedSet)?;
    let field = namespace.map(NamespaceField::new);
    let field_bytes = field.as_ref().map_or(USER_FIELD, NamespaceField::as_bytes);
    // Read with the same rule as GET and SET (not HINCRBY's own), so a
    // value one command refuses is refused by all.
    let stored = match HashKey::open(ctx, generations_key, false)? {
        Some(key) => {
            let name = OwnedString::new(ctx, field_bytes)
                .ok_or(CommandError::Internal("CreateString failed"))?;
            key.get(ctx, &name)
        }
        None => None,
    };
    let current = parse_generation(stored.as_ref().map(OwnedString::bytes))
        .map_err(|_| CommandError::Foreign(CORRUPT_GENERATIONS))?;
    let now_ms = ctx.now_nanos() / 1_000_000;
    let invalidation = plan::invalidate(
        generations,
        field_bytes,
        current,
        generations_state.expire_at_ms,
        index_state.expire_at_ms,
        now_ms,
    )
    .map_err(|GenerationLimit| CommandError::Refused("generation limit reached"))?;
    effects::apply(ctx, &Keys::of(argv), &[invalidation.effect])?;
    if index_state.exists {
        reclaim::enqueue(ctx, generations_key, index_key, current_user_name(ctx));
    }
    stats::CACHE.invalidations.incr();
    ctx.reply_u64(invalidation.generation);
    Ok(())
}

/// `TK.CACHE.INVALIDATEUSER <generations_key> <index_key>` → the user's new
/// generation: every entry of the user, in every namespace, is invisible.
pub fn invalidate_user(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_invalidate_user(argv)?;
    invalidate(ctx, argv, None, parsed.generations, parsed.index)
}

/// `TK.CACHE.INVALIDATENS <generations_key> <index_key> <namespace>` → the
/// namespace's new generation: that namespace's entries are invisible.
pub fn invalidate_namespace(ctx: Ctx, argv: &Argv) -> CommandResult {
    let parsed = parse_invalidate_namespace(argv)?;
    invalidate(
        ctx,
        argv,
        parsed.namespace,
        parsed.generations,
        parsed.index,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{
        ENTRY_NAMESPACE_FIELD, ENTRY_NAMESPACE_GENERATION_FIELD, ENTRY_USER_GENERATION_FIELD,
        VALUE_FIELD,
    };

    #[test]
    fn the_field_names_read_are_the_ones_written() {
        let entry = ENTRY_FIELDS.names().map(std::ffi::CStr::to_bytes);
        assert_eq!(
            entry,
            [
                VALUE_FIELD,
                ENTRY_USER_GENERATION_FIELD,
                ENTRY_NAMESPACE_GENERATION_FIELD,
                ENTRY_NAMESPACE_FIELD
            ]
        );
        assert_eq!(GENERATION_FIELDS.names()[0].to_bytes(), USER_FIELD);
    }
}
