//! What each TK.SESSION write command writes, decided from what it read
//! (pure: no Redis types, `now` given). The rules themselves are in
//! `rules.rs`; this file turns their decisions into effects.
//!
//! Index upkeep: the new (or rotated) session is listed *before* other
//! members are removed, so the index never empties (which would delete it
//! and drop its expiry) within a command; its expiry is then moved so it
//! outlives every session it lists.

use crate::effect::{extend_expiry, Effect, EffectList, HashFields, Target, Value};

use super::parse::CapPolicy;
use super::rules::{self, Cleanup, LimitReached, Listed, Times};
use super::{
    CREATED_FIELD, DATA_FIELD, EXPIRES_AT_FIELD, IDLE_FIELD, LAST_ACTIVE_FIELD,
    MAX_EXPIRES_AT_FIELD, USER_FIELD, VERSION_FIELD,
};

/// A session key (argv position) and the index (argv position) listing it.
#[derive(Clone, Copy, Debug)]
pub struct SessionKeys<'a> {
    pub session: usize,
    pub session_name: &'a [u8],
    pub index: usize,
}

/// The effects that remove `member` from the index (and delete it).
fn clean_up<'a>(index: usize, member: &'a [u8], cleanup: Cleanup, out: &mut Vec<Effect<'a>>) {
    if cleanup == Cleanup::DeleteAndUnlist {
        out.push(Effect::Unlink {
            key: Target::Named(member),
        });
    }
    if cleanup != Cleanup::Keep {
        out.push(Effect::ZRem {
            key: Target::Arg(index),
            member,
        });
    }
}

/// Lists `session_name` until `max_expires_at`, keeping the index alive
/// at least that long (`index_expiry`: its expiry now).
fn list<'a>(
    keys: SessionKeys<'a>,
    max_expires_at: u64,
    index_expiry: Option<u64>,
) -> [Option<Effect<'a>>; 2] {
    let index = Target::Arg(keys.index);
    [
        Some(Effect::ZAdd {
            key: index,
            score: max_expires_at,
            member: keys.session_name,
        }),
        extend_expiry(index_expiry, max_expires_at)
            .map(|at_ms| Effect::ExpireAt { key: index, at_ms }),
    ]
}

/// CREATE's arguments.
#[derive(Clone, Copy, Debug)]
pub struct CreateArgs<'a> {
    pub user: &'a [u8],
    pub data: &'a [u8],
    pub idle_ms: u64,
    pub max_lifetime_ms: u64,
    pub cap: Option<(u64, CapPolicy)>,
}

/// What CREATE writes.
#[derive(Debug)]
pub struct Create<'a> {
    pub times: Times,
    /// Live sessions evicted to make room (for INFO).
    pub evicted: u64,
    pub effects: Vec<Effect<'a>>,
}

/// CREATE at `now`: `listed` are the index's members scored at or after
/// `now`, read and classified (members scored before are past their max
/// lifetime and dropped by score, unread). Refused, with nothing written,
/// under `MAXSESSIONS n REJECT` when the cap is reached.
pub fn create<'a>(
    keys: SessionKeys<'a>,
    args: CreateArgs<'a>,
    listed: &[(&'a [u8], Listed)],
    index_expiry: Option<u64>,
    now: u64,
) -> Result<Create<'a>, LimitReached> {
    let cleanups = rules::plan_create(listed, args.cap)?;
    let times = rules::create(now, args.idle_ms, args.max_lifetime_ms);
    let [add, expire] = list(keys, times.max_expires_at, index_expiry);
    let mut effects: Vec<Effect> = add.into_iter().collect();
    effects.push(Effect::ZRemScoresBelow {
        key: Target::Arg(keys.index),
        below: now,
    });
    let mut evicted = 0;
    for (&(member, listed), cleanup) in listed.iter().zip(cleanups) {
        // A stale entry of the new session's own name is now its entry.
        if member == keys.session_name {
            continue;
        }
        if matches!(listed, Listed::Live(_)) && cleanup == Cleanup::DeleteAndUnlist {
            evicted += 1;
        }
        clean_up(keys.index, member, cleanup, &mut effects);
    }
    effects.push(Effect::HashSet {
        key: Target::Arg(keys.session),
        fields: HashFields::new(&[
            (USER_FIELD.to_bytes(), Value::Bytes(args.user)),
            (DATA_FIELD.to_bytes(), Value::Bytes(args.data)),
            (CREATED_FIELD.to_bytes(), Value::Number(times.created)),
            (
                LAST_ACTIVE_FIELD.to_bytes(),
                Value::Number(times.last_active),
            ),
            (EXPIRES_AT_FIELD.to_bytes(), Value::Number(times.expires_at)),
            (
                MAX_EXPIRES_AT_FIELD.to_bytes(),
                Value::Number(times.max_expires_at),
            ),
            (VERSION_FIELD.to_bytes(), Value::Number(times.version)),
            (IDLE_FIELD.to_bytes(), Value::Number(times.idle_ms)),
        ]),
        expire_at_ms: Some(times.expires_at),
    });
    effects.extend(expire);
    Ok(Create {
        times,
        evicted,
        effects,
    })
}

/// A TOUCH's write: the activity, the expiry and the idle TTL.
pub fn touch(session: usize, times: &Times) -> Effect<'static> {
    Effect::HashSet {
        key: Target::Arg(session),
        fields: HashFields::new(&[
            (
                LAST_ACTIVE_FIELD.to_bytes(),
                Value::Number(times.last_active),
            ),
            (EXPIRES_AT_FIELD.to_bytes(), Value::Number(times.expires_at)),
            (IDLE_FIELD.to_bytes(), Value::Number(times.idle_ms)),
        ]),
        expire_at_ms: Some(times.expires_at),
    }
}

/// A SET's write: the data and its new version; the expiry is kept (the
/// session lives exactly as long as before).
pub fn set(session: usize, data: &[u8], version: u64) -> Effect<'_> {
    Effect::HashSet {
        key: Target::Arg(session),
        fields: HashFields::new(&[
            (DATA_FIELD.to_bytes(), Value::Bytes(data)),
            (VERSION_FIELD.to_bytes(), Value::Number(version)),
        ]),
        expire_at_ms: None,
    }
}

/// A session found dead by a write command: deleted, so a dead session is
/// dead everywhere; `index` (if the command names one) unlists it.
pub fn dead<'a>(keys: SessionKeys<'a>, unlist: bool) -> EffectList<'a, 2> {
    let mut effects = EffectList::new();
    effects.push(Effect::Unlink {
        key: Target::Arg(keys.session),
    });
    if unlist {
        effects.push(Effect::ZRem {
            key: Target::Arg(keys.index),
            member: keys.session_name,
        });
    }
    effects
}

/// DESTROY: the session goes (when there is one) and is unlisted.
pub fn destroy(keys: SessionKeys<'_>, exists: bool) -> EffectList<'_, 2> {
    let mut effects = EffectList::new();
    if exists {
        effects.push(Effect::Unlink {
            key: Target::Arg(keys.session),
        });
    }
    effects.push(Effect::ZRem {
        key: Target::Arg(keys.index),
        member: keys.session_name,
    });
    effects
}

/// ROTATE of a live session (`old`) to the free key `new`: the hash moves
/// with its expiry, and the index lists the new key instead of the old.
pub fn rotate<'a>(
    old: SessionKeys<'a>,
    new: SessionKeys<'a>,
    max_expires_at: u64,
    index_expiry: Option<u64>,
) -> EffectList<'a, 4> {
    let mut effects = EffectList::new();
    effects.push(Effect::Rename {
        from: Target::Arg(old.session),
        to: Target::Arg(new.session),
    });
    let [add, expire] = list(new, max_expires_at, index_expiry);
    add.into_iter().for_each(|effect| effects.push(effect));
    effects.push(Effect::ZRem {
        key: Target::Arg(old.index),
        member: old.session_name,
    });
    expire.into_iter().for_each(|effect| effects.push(effect));
    effects
}

/// REVOKEALL: every live session of the user is deleted; other entries
/// are cleaned up as CREATE prunes them. Returns how many were live.
pub fn revoke_all<'a>(index: usize, listed: &[(&'a [u8], Listed)]) -> (u64, Vec<Effect<'a>>) {
    let mut effects = Vec::new();
    let mut revoked = 0;
    for &(member, listed) in listed {
        if matches!(listed, Listed::Live(_)) {
            revoked += 1;
        }
        clean_up(index, member, listed.revoke(), &mut effects);
    }
    (revoked, effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;
    const KEYS: SessionKeys = SessionKeys {
        session: 1,
        session_name: b"tk:s:{u}:new",
        index: 2,
    };

    fn live(last_active: u64) -> Listed {
        Listed::Live(Times {
            created: 0,
            last_active,
            expires_at: NOW + 10,
            max_expires_at: NOW + 100,
            version: 1,
            idle_ms: 10,
        })
    }

    fn args(cap: Option<(u64, CapPolicy)>) -> CreateArgs<'static> {
        CreateArgs {
            user: b"u",
            data: b"{}",
            idle_ms: 1_000,
            max_lifetime_ms: 5_000,
            cap,
        }
    }

    #[test]
    fn create_lists_first_then_prunes_writes_and_extends_the_index() {
        let listed: [(&[u8], Listed); 3] = [
            (b"tk:s:{u}:dead", Listed::Dead),
            (b"tk:s:{u}:gone", Listed::Gone),
            (b"tk:s:{u}:live", live(5)),
        ];
        let plan = create(KEYS, args(None), &listed, None, NOW).unwrap();
        let index = Target::Arg(2);
        assert_eq!(plan.evicted, 0);
        assert_eq!(
            plan.effects[0],
            Effect::ZAdd {
                key: index,
                score: NOW + 5_000,
                member: b"tk:s:{u}:new"
            }
        );
        assert_eq!(
            &plan.effects[1..5],
            &[
                Effect::ZRemScoresBelow {
                    key: index,
                    below: NOW
                },
                Effect::Unlink {
                    key: Target::Named(b"tk:s:{u}:dead")
                },
                Effect::ZRem {
                    key: index,
                    member: b"tk:s:{u}:dead"
                },
                Effect::ZRem {
                    key: index,
                    member: b"tk:s:{u}:gone"
                },
            ]
        );
        assert!(matches!(
            plan.effects[5],
            Effect::HashSet { key: Target::Arg(1), expire_at_ms: Some(at), .. } if at == NOW + 1_000
        ));
        assert_eq!(
            plan.effects[6],
            Effect::ExpireAt {
                key: index,
                at_ms: NOW + 5_000
            }
        );
        assert_eq!(plan.effects.len(), 7);
    }

    #[test]
    fn create_evicts_the_least_recently_active_or_refuses() {
        let listed: [(&[u8], Listed); 2] = [(b"tk:s:{u}:a", live(9)), (b"tk:s:{u}:b", live(3))];
        let plan = create(KEYS, args(Some((2, CapPolicy::Evict))), &listed, None, NOW).unwrap();
        assert_eq!(plan.evicted, 1);
        assert!(plan.effects.contains(&Effect::Unlink {
            key: Target::Named(b"tk:s:{u}:b")
        }));
        assert!(!plan.effects.contains(&Effect::Unlink {
            key: Target::Named(b"tk:s:{u}:a")
        }));
        assert_eq!(
            create(KEYS, args(Some((2, CapPolicy::Reject))), &listed, None, NOW).unwrap_err(),
            LimitReached
        );
    }

    #[test]
    fn a_stale_entry_of_the_new_name_is_not_unlisted() {
        let listed: [(&[u8], Listed); 1] = [(b"tk:s:{u}:new", Listed::Gone)];
        let plan = create(KEYS, args(None), &listed, Some(NOW + 10_000), NOW).unwrap();
        assert!(!plan
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::ZRem { .. })));
        // The index already outlives the session: its expiry is kept.
        assert!(!plan
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::ExpireAt { .. })));
    }

    #[test]
    fn rotate_lists_the_new_key_before_unlisting_the_old() {
        let new = SessionKeys {
            session: 3,
            session_name: b"tk:s:{u}:next",
            index: 2,
        };
        let effects = rotate(KEYS, new, NOW + 50, Some(NOW + 50));
        assert_eq!(
            effects.as_slice(),
            &[
                Effect::Rename {
                    from: Target::Arg(1),
                    to: Target::Arg(3)
                },
                Effect::ZAdd {
                    key: Target::Arg(2),
                    score: NOW + 50,
                    member: b"tk:s:{u}:next"
                },
                Effect::ZRem {
                    key: Target::Arg(2),
                    member: b"tk:s:{u}:new"
                },
            ]
        );
    }

    #[test]
    fn revoke_all_deletes_live_sessions_and_only_unlists_foreign_ones() {
        let listed: [(&[u8], Listed); 2] =
            [(b"tk:s:{u}:a", live(1)), (b"config:prod", Listed::Foreign)];
        let (revoked, effects) = revoke_all(2, &listed);
        assert_eq!(revoked, 1);
        assert!(!effects.contains(&Effect::Unlink {
            key: Target::Named(b"config:prod")
        }));
        assert!(effects.contains(&Effect::ZRem {
            key: Target::Arg(2),
            member: b"config:prod"
        }));
    }

    #[test]
    fn touch_writes_three_fields_and_set_keeps_the_expiry() {
        let times = rules::create(NOW, 10, 100);
        assert!(
            matches!(touch(1, &times), Effect::HashSet { fields, expire_at_ms: Some(_), .. } if fields.as_slice().len() == 3)
        );
        assert!(matches!(
            set(1, b"x", 2),
            Effect::HashSet {
                expire_at_ms: None,
                ..
            }
        ));
    }
}
