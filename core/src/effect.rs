//! What a command writes, as plain data.
//!
//! Every command decides in pure code (no Redis types) and returns its
//! writes as a list of [`Effect`]s; `effects::apply` performs them through
//! the key API and replicates each as the plain command that has the same
//! effect (absolute times only). So the decision is testable without a
//! server, and no command file writes or replicates anything itself.

/// The key an effect is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// The command's argument at this argv position.
    Arg(usize),
    /// A key named elsewhere (an index member, a queued job), checked by
    /// the caller before it is named here.
    Named(&'a [u8]),
}

/// A value to store: bytes, or a number written in decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Bytes(&'a [u8]),
    Number(u64),
}

/// The most fields one [`Effect::HashSet`] sets.
pub const MAX_HASH_FIELDS: usize = 8;

/// Up to [`MAX_HASH_FIELDS`] `(field, value)` pairs, inline (no heap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashFields<'a> {
    pairs: [(&'a [u8], Value<'a>); MAX_HASH_FIELDS],
    len: usize,
}

impl<'a> HashFields<'a> {
    /// The pairs, in order. More than [`MAX_HASH_FIELDS`] is a bug of the
    /// caller: the extra pairs are dropped (and a debug build panics).
    pub fn new(pairs: &[(&'a [u8], Value<'a>)]) -> HashFields<'a> {
        debug_assert!(pairs.len() <= MAX_HASH_FIELDS, "too many hash fields");
        let len = pairs.len().min(MAX_HASH_FIELDS);
        let mut all = [(&[][..], Value::Number(0)); MAX_HASH_FIELDS];
        all[..len].copy_from_slice(&pairs[..len]);
        HashFields { pairs: all, len }
    }

    pub fn as_slice(&self) -> &[(&'a [u8], Value<'a>)] {
        &self.pairs[..self.len]
    }
}

/// One write, replicated as the plain command named in each variant.
// HashSet's fields are inline (a few hundred bytes) on purpose: effects
// live on the stack for one call, and the hot paths must not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect<'a> {
    /// `SET key value [PXAT expire_at_ms]`: the value and the expiry are
    /// replaced (no expiry: persistent).
    SetString {
        key: Target<'a>,
        value: Value<'a>,
        expire_at_ms: Option<u64>,
    },
    /// `HSET key field value ...`, then `PEXPIREAT key expire_at_ms` when
    /// given (otherwise the hash keeps its expiry, as HSET does).
    HashSet {
        key: Target<'a>,
        fields: HashFields<'a>,
        expire_at_ms: Option<u64>,
    },
    /// `PEXPIREAT key at_ms`.
    ExpireAt { key: Target<'a>, at_ms: u64 },
    /// `UNLINK key`.
    Unlink { key: Target<'a> },
    /// `ZADD key score member`.
    ZAdd {
        key: Target<'a>,
        score: u64,
        member: &'a [u8],
    },
    /// `ZREM key member`.
    ZRem { key: Target<'a>, member: &'a [u8] },
    /// `ZREMRANGEBYSCORE key -inf (below`: members scored strictly below.
    ZRemScoresBelow { key: Target<'a>, below: u64 },
    /// `RENAME from to`: the value and its expiry move.
    Rename { from: Target<'a>, to: Target<'a> },
}

/// Up to `N` effects, inline (no heap), in the order they are pushed.
#[derive(Clone, Copy, Debug)]
pub struct EffectList<'a, const N: usize> {
    items: [Effect<'a>; N],
    len: usize,
}

impl<'a, const N: usize> EffectList<'a, N> {
    pub fn new() -> Self {
        EffectList {
            items: [Effect::Unlink {
                key: Target::Arg(0),
            }; N],
            len: 0,
        }
    }

    /// Appends `effect`. More than `N` is a bug of the planner: a debug
    /// build panics, a release build drops the extra effect.
    pub fn push(&mut self, effect: Effect<'a>) {
        debug_assert!(self.len < N, "effect list full");
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = effect;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[Effect<'a>] {
        &self.items[..self.len]
    }
}

impl<const N: usize> Default for EffectList<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The expiry that keeps a bookkeeping key (an index, a generations hash)
/// alive at least until `at_ms`: `None` when `current` already does.
pub fn extend_expiry(current: Option<u64>, at_ms: u64) -> Option<u64> {
    current
        .is_none_or(|current| current < at_ms)
        .then_some(at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_fields_keep_their_order() {
        let fields = HashFields::new(&[(b"a", Value::Number(1)), (b"b", Value::Bytes(b"x"))]);
        assert_eq!(
            fields.as_slice(),
            &[
                (&b"a"[..], Value::Number(1)),
                (&b"b"[..], Value::Bytes(b"x"))
            ]
        );
        assert!(HashFields::new(&[]).as_slice().is_empty());
    }

    #[test]
    fn an_expiry_is_only_ever_moved_later() {
        assert_eq!(extend_expiry(None, 10), Some(10));
        assert_eq!(extend_expiry(Some(5), 10), Some(10));
        assert_eq!(extend_expiry(Some(10), 10), None);
        assert_eq!(extend_expiry(Some(11), 10), None);
    }
}
