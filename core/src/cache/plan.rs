//! What TK.CACHE.SET and TK.CACHE.INVALIDATE* write, decided from what
//! they read (pure: no Redis types, `now` given).

use crate::effect::{extend_expiry, Effect, EffectList, HashFields, Target, Value};

use super::generation::{
    decide_set, invalidation_expiry, is_visible, next_generation, Generations, SetDecision,
};
use super::{
    ENTRY_NAMESPACE_FIELD, ENTRY_NAMESPACE_GENERATION_FIELD, ENTRY_USER_GENERATION_FIELD,
    VALUE_FIELD,
};

/// The keys of a SET, as argv positions, and the entry key's name (the
/// index lists it).
#[derive(Clone, Copy, Debug)]
pub struct SetKeys<'a> {
    pub entry: usize,
    pub generations: usize,
    pub index: usize,
    pub entry_name: &'a [u8],
}

/// What a SET read before deciding.
#[derive(Clone, Copy, Debug)]
pub struct SetState {
    pub current: Generations,
    /// The index's expiry (`None`: missing, or persistent).
    pub index_expiry: Option<u64>,
    /// The generations key's expiry, `None` when it is missing or has none
    /// (then it is left alone: INVALIDATE* gives it one).
    pub generations_expiry: Option<u64>,
}

/// A SET's arguments.
#[derive(Clone, Copy, Debug)]
pub struct SetArgs<'a> {
    pub namespace: &'a [u8],
    pub value: &'a [u8],
    pub ttl_ms: u64,
    pub if_generations: Option<Generations>,
}

/// The most effects a SET has.
pub const SET_EFFECTS: usize = 5;

/// What a SET does.
#[allow(clippy::large_enum_variant)] // inline on purpose, see `Effect`
#[derive(Clone, Copy, Debug)]
pub enum SetPlan<'a> {
    /// IFGEN names older (or other) generations: nothing is written.
    RefuseStale,
    /// Store: the entry (tagged with the current generations, expiring
    /// after its TTL), its index entry (scored with that expiry; entries
    /// already expired are dropped, so the index stays as small as the live
    /// entries), and the bookkeeping keys' expiry moved so they outlive it.
    Store(EffectList<'a, SET_EFFECTS>),
}

pub fn set<'a>(keys: SetKeys<'a>, state: SetState, args: SetArgs<'a>, now_ms: u64) -> SetPlan<'a> {
    let stored_under = match decide_set(state.current, args.if_generations) {
        SetDecision::RefuseStale => return SetPlan::RefuseStale,
        SetDecision::Store(generations) => generations,
    };
    let expire_at_ms = now_ms.saturating_add(args.ttl_ms);
    let mut effects = EffectList::new();
    effects.push(Effect::HashSet {
        key: Target::Arg(keys.entry),
        fields: HashFields::new(&[
            (VALUE_FIELD, Value::Bytes(args.value)),
            (
                ENTRY_USER_GENERATION_FIELD,
                Value::Number(stored_under.user),
            ),
            (
                ENTRY_NAMESPACE_GENERATION_FIELD,
                Value::Number(stored_under.namespace),
            ),
            (ENTRY_NAMESPACE_FIELD, Value::Bytes(args.namespace)),
        ]),
        expire_at_ms: Some(expire_at_ms),
    });
    let index = Target::Arg(keys.index);
    effects.push(Effect::ZAdd {
        key: index,
        score: expire_at_ms,
        member: keys.entry_name,
    });
    effects.push(Effect::ZRemScoresBelow {
        key: index,
        below: now_ms,
    });
    if let Some(at_ms) = extend_expiry(state.index_expiry, expire_at_ms) {
        effects.push(Effect::ExpireAt { key: index, at_ms });
    }
    if let Some(current) = state.generations_expiry {
        if let Some(at_ms) = extend_expiry(Some(current), expire_at_ms) {
            effects.push(Effect::ExpireAt {
                key: Target::Arg(keys.generations),
                at_ms,
            });
        }
    }
    SetPlan::Store(effects)
}

/// An invalidation: the new generation and its one write.
#[derive(Clone, Copy, Debug)]
pub struct Invalidation<'a> {
    pub generation: u64,
    pub effect: Effect<'a>,
}

/// The generation would pass `i64::MAX` (written by hand, or 9e18
/// invalidations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationLimit;

/// Bumps `field` (the user's or a namespace's generation, now `current`)
/// in the generations key (argv position `generations`), and makes that
/// key outlive the user's entries (the index expires with the last one)
/// and in-flight computations.
pub fn invalidate(
    generations: usize,
    field: &[u8],
    current: u64,
    generations_expiry: Option<u64>,
    index_expiry: Option<u64>,
    now_ms: u64,
) -> Result<Invalidation<'_>, GenerationLimit> {
    let generation = next_generation(current).ok_or(GenerationLimit)?;
    let wanted = invalidation_expiry(now_ms, index_expiry, generations_expiry);
    Ok(Invalidation {
        generation,
        effect: Effect::HashSet {
            key: Target::Arg(generations),
            fields: HashFields::new(&[(field, Value::Number(generation))]),
            expire_at_ms: (generations_expiry != Some(wanted)).then_some(wanted),
        },
    })
}

/// What the reclaimer does with one member of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// A visible entry: kept, and kept listed.
    Keep,
    /// An invisible entry (older generations, or damaged fields): deleted
    /// and unlisted.
    Delete,
    /// A member whose entry is gone, or that is not an entry of ours:
    /// unlisted only.
    Unlist,
}

/// The reclaimer's rule for an entry that holds `stored` generations
/// (`None`: absent or damaged) when its namespace's are `current`
/// (`None`: the entry names no namespace); `exists` is whether the entry
/// has any of the fields read.
pub fn reclaim(exists: bool, stored: Option<Generations>, current: Option<Generations>) -> Reclaim {
    match (stored, current) {
        _ if !exists => Reclaim::Unlist,
        (Some(stored), Some(current)) if is_visible(stored, current) => Reclaim::Keep,
        _ => Reclaim::Delete,
    }
}

impl Reclaim {
    /// The writes for `member` of the index `index`.
    pub fn effects<'a>(self, index: &'a [u8], member: &'a [u8]) -> EffectList<'a, 2> {
        let mut effects = EffectList::new();
        if self == Reclaim::Delete {
            effects.push(Effect::Unlink {
                key: Target::Named(member),
            });
        }
        if self != Reclaim::Keep {
            effects.push(Effect::ZRem {
                key: Target::Named(index),
                member,
            });
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::generation::GENERATION_RETENTION_MS;

    const KEYS: SetKeys = SetKeys {
        entry: 1,
        generations: 2,
        index: 3,
        entry_name: b"tk:c:{u}:ns:h",
    };
    const NOW: u64 = 1_000_000;

    fn args(if_generations: Option<Generations>) -> SetArgs<'static> {
        SetArgs {
            namespace: b"ns",
            value: b"body",
            ttl_ms: 500,
            if_generations,
        }
    }

    fn state(index_expiry: Option<u64>, generations_expiry: Option<u64>) -> SetState {
        SetState {
            current: Generations {
                user: 3,
                namespace: 7,
            },
            index_expiry,
            generations_expiry,
        }
    }

    fn stored(plan: SetPlan) -> Vec<Effect> {
        match plan {
            SetPlan::Store(effects) => effects.as_slice().to_vec(),
            SetPlan::RefuseStale => panic!("refused"),
        }
    }

    #[test]
    fn a_set_stores_the_entry_lists_it_and_extends_the_bookkeeping() {
        let effects = stored(set(KEYS, state(None, Some(NOW)), args(None), NOW));
        let expiry = NOW + 500;
        assert_eq!(
            effects[0],
            Effect::HashSet {
                key: Target::Arg(1),
                fields: HashFields::new(&[
                    (b"v", Value::Bytes(b"body")),
                    (b"g", Value::Number(3)),
                    (b"ng", Value::Number(7)),
                    (b"ns", Value::Bytes(b"ns")),
                ]),
                expire_at_ms: Some(expiry),
            }
        );
        assert_eq!(
            &effects[1..],
            &[
                Effect::ZAdd {
                    key: Target::Arg(3),
                    score: expiry,
                    member: b"tk:c:{u}:ns:h"
                },
                Effect::ZRemScoresBelow {
                    key: Target::Arg(3),
                    below: NOW
                },
                Effect::ExpireAt {
                    key: Target::Arg(3),
                    at_ms: expiry
                },
                Effect::ExpireAt {
                    key: Target::Arg(2),
                    at_ms: expiry
                },
            ]
        );
    }

    #[test]
    fn bookkeeping_that_already_outlives_the_entry_is_left_alone() {
        let later = NOW + 10_000;
        let effects = stored(set(KEYS, state(Some(later), Some(later)), args(None), NOW));
        assert_eq!(effects.len(), 3);
        // A generations key without expiry (or missing) is not given one here.
        assert_eq!(
            stored(set(KEYS, state(Some(later), None), args(None), NOW)).len(),
            3
        );
    }

    #[test]
    fn a_stale_ifgen_writes_nothing() {
        let old = Generations {
            user: 2,
            namespace: 7,
        };
        assert!(matches!(
            set(KEYS, state(None, None), args(Some(old)), NOW),
            SetPlan::RefuseStale
        ));
        let current = state(None, None).current;
        assert!(matches!(
            set(KEYS, state(None, None), args(Some(current)), NOW),
            SetPlan::Store(_)
        ));
    }

    #[test]
    fn an_invalidation_bumps_the_field_and_keeps_the_key_long_enough() {
        let plan = invalidate(2, b"u", 4, None, Some(NOW + 5), NOW).unwrap();
        assert_eq!(plan.generation, 5);
        assert_eq!(
            plan.effect,
            Effect::HashSet {
                key: Target::Arg(2),
                fields: HashFields::new(&[(b"u", Value::Number(5))]),
                expire_at_ms: Some(NOW + GENERATION_RETENTION_MS),
            }
        );
        // Already expiring late enough: the expiry is kept.
        let far = NOW + 2 * GENERATION_RETENTION_MS;
        let plan = invalidate(2, b"u", 4, Some(far), None, NOW).unwrap();
        assert!(matches!(
            plan.effect,
            Effect::HashSet {
                expire_at_ms: None,
                ..
            }
        ));
        assert_eq!(
            invalidate(2, b"u", i64::MAX as u64, None, None, NOW).map(|plan| plan.generation),
            Err(GenerationLimit)
        );
    }

    #[test]
    fn the_reclaimer_deletes_only_invisible_entries() {
        let current = Generations {
            user: 1,
            namespace: 2,
        };
        let older = Generations {
            user: 0,
            namespace: 2,
        };
        assert_eq!(reclaim(true, Some(current), Some(current)), Reclaim::Keep);
        assert_eq!(reclaim(true, Some(older), Some(current)), Reclaim::Delete);
        assert_eq!(reclaim(true, None, Some(current)), Reclaim::Delete);
        assert_eq!(reclaim(true, Some(current), None), Reclaim::Delete);
        assert_eq!(reclaim(false, None, None), Reclaim::Unlist);
        let index = b"tk:ci:{u}";
        let member = b"tk:c:{u}:ns:h";
        assert!(Reclaim::Keep.effects(index, member).as_slice().is_empty());
        assert_eq!(
            Reclaim::Unlist.effects(index, member).as_slice(),
            &[Effect::ZRem {
                key: Target::Named(index),
                member
            }]
        );
        assert_eq!(
            Reclaim::Delete.effects(index, member).as_slice(),
            &[
                Effect::Unlink {
                    key: Target::Named(member)
                },
                Effect::ZRem {
                    key: Target::Named(index),
                    member
                }
            ]
        );
    }
}
