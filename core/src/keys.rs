//! Key names: Redis Cluster's key → hash slot mapping, and the shape rules
//! that say which keys belong together.
//!
//! Some commands act on keys listed *inside* an index (a sorted set) rather
//! than given as arguments: session CREATE/LIST/REVOKEALL and the cache
//! reclaimer. Anyone who may write the index may put any name in it, so a
//! listed name is untrusted input. The rule that holds for every caller:
//!
//! | index | may list only |
//! |---|---|
//! | `tk:si:{tag}:<user>` | `tk:s:{tag}:<id>` |
//! | `tk:ci:{tag}` | `tk:c:{tag}:<rest>` |
//!
//! with the same non-empty `tag`, so a listed key always hashes to its
//! index's Cluster slot and carries the prefix an ACL pattern such as
//! `~tk:s:{tag}*` names. Commands that add to an index (CREATE, ROTATE,
//! cache SET) refuse keys that break the rule, so nothing tk writes is ever
//! skipped by it. (The caller's ACL permissions on each listed key are
//! checked on top of this, by the command layer.)

/// Session hashes: `tk:s:{tag}:<id>`.
pub const SESSION_PREFIX: &str = "tk:s:";
/// A user's index of sessions: `tk:si:{tag}:<user>`.
pub const SESSION_INDEX_PREFIX: &str = "tk:si:";
/// Cache entries: `tk:c:{tag}:<namespace>:<id>`.
pub const CACHE_ENTRY_PREFIX: &str = "tk:c:";
/// A user's cache generations: `tk:cg:{tag}`.
pub const CACHE_GENERATIONS_PREFIX: &str = "tk:cg:";
/// A user's index of cache entries: `tk:ci:{tag}`.
pub const CACHE_INDEX_PREFIX: &str = "tk:ci:";

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        let mut crc = crc ^ (u16::from(byte) << 8);
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// The part of a key that is hashed: the content of the first `{...}` when
/// non-empty, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&byte| byte == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&byte| byte == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The Cluster hash slot of `key` (0..16384).
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & 0x3FFF
}

/// Splits `<prefix>{<tag>}<rest>` into `(tag, rest)`; `None` unless `key`
/// starts with `prefix` directly followed by a non-empty `{tag}`.
fn split_tagged<'a>(key: &'a [u8], prefix: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let after = key.strip_prefix(prefix)?.strip_prefix(b"{")?;
    let close = after.iter().position(|&byte| byte == b'}')?;
    (close > 0).then(|| (&after[..close], &after[close + 1..]))
}

/// Whether `key` is `<prefix>{tag}:<non-empty rest>` for exactly this tag
/// (and so in the slot of every other key of the tag).
fn is_tagged_member(key: &[u8], prefix: &[u8], tag: &[u8]) -> bool {
    matches!(split_tagged(key, prefix), Some((key_tag, rest))
        if key_tag == tag && rest.len() > 1 && rest[0] == b':')
}

/// A key that breaks the naming rule, as an `ERR` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadKeyName(pub &'static str);

/// A well-formed session index, `tk:si:{tag}:<user>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionIndex<'a> {
    tag: &'a [u8],
    user: &'a [u8],
}

impl<'a> SessionIndex<'a> {
    pub fn parse(index: &'a [u8]) -> Result<SessionIndex<'a>, BadKeyName> {
        match split_tagged(index, SESSION_INDEX_PREFIX.as_bytes()) {
            Some((tag, rest)) if rest.len() > 1 && rest[0] == b':' => Ok(SessionIndex {
                tag,
                user: &rest[1..],
            }),
            _ => Err(BadKeyName(
                "a session index must be named tk:si:{<tag>}:<user>",
            )),
        }
    }

    /// The user whose sessions this index lists: the name's last part.
    pub fn user(&self) -> &'a [u8] {
        self.user
    }

    /// Whether `session` may be listed here: `tk:s:{tag}:<id>`, same tag.
    pub fn lists(&self, session: &[u8]) -> bool {
        is_tagged_member(session, SESSION_PREFIX.as_bytes(), self.tag)
    }

    /// Like [`lists`](Self::lists), as the check on an argument.
    pub fn check_session(&self, session: &[u8]) -> Result<(), BadKeyName> {
        if self.lists(session) {
            Ok(())
        } else {
            Err(BadKeyName(
                "a session key must be tk:s:{<tag>}:<id>, with the tag of its index tk:si:{<tag>}:<user>",
            ))
        }
    }
}

/// One user's cache keys, `tk:c:{tag}:…`, `tk:cg:{tag}` and `tk:ci:{tag}`,
/// known by the tag of one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheKeys<'a> {
    tag: &'a [u8],
}

const BAD_CACHE_KEYS: BadKeyName = BadKeyName(
    "cache keys must be tk:c:{<tag>}:<name>, tk:cg:{<tag>} and tk:ci:{<tag>}, with one tag",
);

impl<'a> CacheKeys<'a> {
    fn exact(key: &'a [u8], prefix: &[u8]) -> Result<CacheKeys<'a>, BadKeyName> {
        match split_tagged(key, prefix) {
            Some((tag, [])) => Ok(CacheKeys { tag }),
            _ => Err(BAD_CACHE_KEYS),
        }
    }

    /// From the index, `tk:ci:{tag}`.
    pub fn of_index(index: &'a [u8]) -> Result<CacheKeys<'a>, BadKeyName> {
        CacheKeys::exact(index, CACHE_INDEX_PREFIX.as_bytes())
    }

    /// From the generations key, `tk:cg:{tag}`.
    pub fn of_generations(generations: &'a [u8]) -> Result<CacheKeys<'a>, BadKeyName> {
        CacheKeys::exact(generations, CACHE_GENERATIONS_PREFIX.as_bytes())
    }

    /// Whether `entry` may be listed in the index: `tk:c:{tag}:<rest>`.
    pub fn lists(&self, entry: &[u8]) -> bool {
        is_tagged_member(entry, CACHE_ENTRY_PREFIX.as_bytes(), self.tag)
    }

    pub fn check_entry(&self, entry: &[u8]) -> Result<(), BadKeyName> {
        if self.lists(entry) {
            Ok(())
        } else {
            Err(BAD_CACHE_KEYS)
        }
    }

    /// An invalidation decides from the generations key which listed
    /// entries to delete, so both must be the same user's.
    pub fn check_generations(&self, generations: &[u8]) -> Result<(), BadKeyName> {
        match CacheKeys::of_generations(generations) {
            Ok(other) if other == *self => Ok(()),
            _ => Err(BAD_CACHE_KEYS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` on a real cluster.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"123456789"), 0x31C3 & 0x3FFF);
    }

    #[test]
    fn hash_tags_follow_the_cluster_rules() {
        assert_eq!(hash_tag(b"tk:s:{abc}:1"), b"abc");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no tag"), b"no tag");
        assert_eq!(hash_tag(b"open{only"), b"open{only");
    }

    #[test]
    fn a_session_index_lists_only_its_own_tag_and_prefix() {
        let index = SessionIndex::parse(b"tk:si:{a1}:alice").unwrap();
        assert_eq!(index.user(), b"alice");
        assert!(index.lists(b"tk:s:{a1}:0123"));
        for foreign in [
            &b"config:prod"[..],
            b"tk:s:{b2}:0123",
            b"tk:s:{a1}:",
            b"tk:s:{a1}0123",
            b"tk:si:{a1}:alice",
            b"tk:c:{a1}:x",
            b"xtk:s:{a1}:0",
            b"tk:s:{a1x}:0",
            b"tk:s:{a}:0",
            b"",
        ] {
            assert!(
                !index.lists(foreign),
                "{:?}",
                String::from_utf8_lossy(foreign)
            );
        }
        assert_eq!(
            SessionIndex::parse(b"tk:si:{a}:user:with:colons")
                .unwrap()
                .user(),
            b"user:with:colons"
        );
        for bad in [
            &b"tk:si:{}:alice"[..],
            b"tk:si:{a}:",
            b"tk:si:{a}alice",
            b"tk:si:a:alice",
            b"sessions:alice",
            b"tk:s:{a}:alice",
        ] {
            assert!(
                SessionIndex::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cache_keys_share_one_tag() {
        let index = CacheKeys::of_index(b"tk:ci:{u42}").unwrap();
        assert!(index.lists(b"tk:c:{u42}:http:ab"));
        assert!(!index.lists(b"tk:c:{u43}:http:ab"));
        assert!(!index.lists(b"users:42"));
        assert!(!index.lists(b"tk:cg:{u42}"));
        assert!(index.check_generations(b"tk:cg:{u42}").is_ok());
        assert!(index.check_generations(b"tk:cg:{u42}:x").is_err());
        assert!(index.check_generations(b"tk:cg:{u4}").is_err());
        assert!(index.check_generations(b"rl:cgen").is_err());
        assert_eq!(CacheKeys::of_generations(b"tk:cg:{u42}"), Ok(index));
        assert!(CacheKeys::of_generations(b"tk:ci:{u42}").is_err());
        assert!(CacheKeys::of_index(b"rl:cidx").is_err());
        assert!(CacheKeys::of_index(b"tk:ci:{u42}:more").is_err());
        assert!(CacheKeys::of_index(b"tk:ci:{}").is_err());
    }

    proptest! {
        /// Whatever the index holds, a member it accepts has the session
        /// prefix and hashes to the index's slot.
        #[test]
        fn a_listed_session_is_always_in_the_index_slot(
            index in proptest::collection::vec(any::<u8>(), 0..24),
            member in proptest::collection::vec(any::<u8>(), 0..24),
            tag in "[{}a-z0-9:]{0,6}",
            rest in "[{}a-z0-9:]{0,6}",
        ) {
            let candidates = [
                (index.clone(), member.clone()),
                ([b"tk:si:{", tag.as_bytes(), b"}:", rest.as_bytes()].concat(),
                 [b"tk:s:{", tag.as_bytes(), b"}", rest.as_bytes()].concat()),
                ([b"tk:si:{", tag.as_bytes(), b"}:u"].concat(),
                 [b"tk:s:{", tag.as_bytes(), b"}:", rest.as_bytes()].concat()),
            ];
            for (index, member) in candidates {
                if let Ok(parsed) = SessionIndex::parse(&index) {
                    if parsed.lists(&member) {
                        prop_assert!(member.starts_with(SESSION_PREFIX.as_bytes()));
                        prop_assert_eq!(slot(&member), slot(&index));
                    }
                }
            }
        }

        #[test]
        fn a_listed_cache_entry_is_always_in_the_index_slot(
            tag in "[{}a-z0-9:]{0,6}",
            member in "[{}a-z0-9:]{0,12}",
        ) {
            let index = [b"tk:ci:{", tag.as_bytes(), b"}"].concat();
            for member in [member.clone().into_bytes(), [b"tk:c:", member.as_bytes()].concat()] {
                if let Ok(parsed) = CacheKeys::of_index(&index) {
                    if parsed.lists(&member) {
                        prop_assert!(member.starts_with(CACHE_ENTRY_PREFIX.as_bytes()));
                        prop_assert_eq!(slot(&member), slot(&index));
                        let generations = [b"tk:cg:{", tag.as_bytes(), b"}"].concat();
                        prop_assert_eq!(slot(&generations), slot(&index));
                    }
                }
            }
        }
    }
}
