//! The key API: keys opened for reading or writing, closed on drop, and the
//! strings created to talk to Redis. Reads only; writes go through
//! `effects.rs`.

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use redis_module::raw;

use crate::error::CommandError;
use crate::glue::{string_bytes, ArgString, Ctx, KeyKind};

/// An open key, closed on drop. Closing a key opened for writing signals
/// it as modified (WATCH, client-side caching), as a plain write would.
pub(crate) struct OpenKey(pub(crate) *mut raw::RedisModuleKey);

impl OpenKey {
    /// `None` when Redis returns no handle (read mode: the key does not
    /// exist). In write mode a missing key gets a handle of type empty.
    pub(crate) fn open(
        ctx: Ctx,
        name: ArgString,
        write: bool,
    ) -> Result<Option<OpenKey>, CommandError> {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        // SAFETY: live context and key name; the handle is closed on drop.
        unsafe {
            let Some(open) = raw::RedisModule_OpenKey else {
                return Err(CommandError::Internal("key API unavailable"));
            };
            let key =
                open(ctx.as_ptr(), name.as_ptr(), mode as c_int).cast::<raw::RedisModuleKey>();
            Ok((!key.is_null()).then(|| OpenKey(key)))
        }
    }

    /// The key's absolute expiry in Unix milliseconds, `None` when it has
    /// none. Uses `GetAbsExpire` (Redis 6.2.2+), else the relative
    /// `GetExpire` plus Redis's millisecond clock.
    pub fn expire_at_ms(&self) -> Option<u64> {
        // SAFETY: open key; function pointers filled in by RedisModule_Init.
        unsafe {
            if let Some(absolute) = raw::RedisModule_GetAbsExpire {
                return u64::try_from(absolute(self.0)).ok();
            }
            let (Some(relative), Some(millis)) =
                (raw::RedisModule_GetExpire, raw::RedisModule_Milliseconds)
            else {
                return None;
            };
            let left = u64::try_from(relative(self.0)).ok()?;
            Some(u64::try_from(millis()).unwrap_or(0).saturating_add(left))
        }
    }

    pub(crate) fn kind(&self) -> KeyKind {
        // SAFETY: an open key.
        let kind = unsafe { raw::RedisModule_KeyType.map_or(-1, |key_type| key_type(self.0)) };
        match kind as isize {
            raw::REDISMODULE_KEYTYPE_EMPTY => KeyKind::Absent,
            raw::REDISMODULE_KEYTYPE_STRING => KeyKind::String,
            raw::REDISMODULE_KEYTYPE_HASH => KeyKind::Hash,
            raw::REDISMODULE_KEYTYPE_ZSET => KeyKind::SortedSet,
            _ => KeyKind::Other,
        }
    }
}

impl Drop for OpenKey {
    fn drop(&mut self) {
        // SAFETY: opened by RedisModule_OpenKey and closed once.
        unsafe {
            if let Some(close) = raw::RedisModule_CloseKey {
                close(self.0);
            }
        }
    }
}

/// An open key that `effects.rs` can write through.
pub trait Opened {
    fn raw_key(&self) -> *mut raw::RedisModuleKey;
}

impl Opened for StringKey {
    fn raw_key(&self) -> *mut raw::RedisModuleKey {
        self.key.0
    }
}

impl Opened for OpenKey {
    fn raw_key(&self) -> *mut raw::RedisModuleKey {
        self.0
    }
}

impl Opened for HashKey {
    fn raw_key(&self) -> *mut raw::RedisModuleKey {
        self.key.0
    }
}

/// A key whose value, if any, is a hash: opened for reading, or for
/// reading and writing (see `effects::hash_set`).
pub struct HashKey {
    key: OpenKey,
    present: bool,
}

/// The values of [`HashKey::get8`]'s fields, `None` where missing.
pub type Fields8 = [Option<OwnedString>; 8];

impl HashKey {
    /// Opens `name`, for writing too when `write`. `Ok(None)` when reading a
    /// key that does not exist; `WrongType` when it holds anything but a
    /// hash.
    pub fn open(ctx: Ctx, name: ArgString, write: bool) -> Result<Option<HashKey>, CommandError> {
        let Some(key) = OpenKey::open(ctx, name, write)? else {
            return Ok(None);
        };
        match key.kind() {
            KeyKind::Absent if !write => Ok(None),
            KeyKind::Absent => Ok(Some(HashKey {
                key,
                present: false,
            })),
            KeyKind::Hash => Ok(Some(HashKey { key, present: true })),
            _ => Err(CommandError::WrongType),
        }
    }

    /// Whether the key exists.
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// A copy of one field's value (`None` if missing) whose name is kept
    /// for the module's lifetime ([`FieldNames`]).
    pub fn get_named(&self, ctx: Ctx, field: Retained) -> Option<OwnedString> {
        self.get_one(ctx, field.as_ptr())
    }

    /// A copy of one field's value (`None` if missing).
    pub fn get(&self, ctx: Ctx, field: &OwnedString) -> Option<OwnedString> {
        self.get_one(ctx, field.0)
    }

    fn get_one(&self, ctx: Ctx, field: *mut raw::RedisModuleString) -> Option<OwnedString> {
        if !self.present {
            return None;
        }
        let mut out: *mut raw::RedisModuleString = std::ptr::null_mut();
        // SAFETY: an open hash key; a live field name, the pointer where
        // Redis stores a new string (or null), the NULL terminator.
        unsafe {
            raw::RedisModule_HashGet?(
                self.key.0,
                raw::REDISMODULE_HASH_NONE as c_int,
                field,
                &mut out as *mut *mut raw::RedisModuleString,
                std::ptr::null::<raw::RedisModuleString>(),
            );
        }
        OwnedString::from_raw(ctx, out)
    }

    /// Copies of eight fields' values, in one lookup of the key.
    pub fn get8(&self, ctx: Ctx, fields: &FieldNames<8>) -> Fields8 {
        let mut out: [*mut raw::RedisModuleString; 8] = [std::ptr::null_mut(); 8];
        if self.present {
            let fields = fields.strings();
            // SAFETY: an open hash key; field names as live strings, each
            // followed by a pointer where Redis stores a new string (or
            // null), then the NULL terminator. The strings are ours to free.
            unsafe {
                if let Some(get) = raw::RedisModule_HashGet {
                    let [o0, o1, o2, o3, o4, o5, o6, o7] = &mut out;
                    get(
                        self.key.0,
                        raw::REDISMODULE_HASH_NONE as c_int,
                        fields[0].as_ptr(),
                        o0 as *mut _,
                        fields[1].as_ptr(),
                        o1 as *mut _,
                        fields[2].as_ptr(),
                        o2 as *mut _,
                        fields[3].as_ptr(),
                        o3 as *mut _,
                        fields[4].as_ptr(),
                        o4 as *mut _,
                        fields[5].as_ptr(),
                        o5 as *mut _,
                        fields[6].as_ptr(),
                        o6 as *mut _,
                        fields[7].as_ptr(),
                        o7 as *mut _,
                        std::ptr::null::<raw::RedisModuleString>(),
                    );
                }
            }
        }
        out.map(|string| OwnedString::from_raw(ctx, string))
    }
}

/// Hash field names as strings created once and kept for the module's
/// lifetime: HashGet then needs no new string per field per call.
pub struct FieldNames<const N: usize> {
    names: [&'static CStr; N],
    strings: OnceLock<[Retained; N]>,
}

/// A string that lives as long as the module. Used on Redis's main thread
/// only; the marker traits let it sit in a static.
#[derive(Clone, Copy)]
pub struct Retained(*mut raw::RedisModuleString);
// SAFETY: created once, never freed or mutated; read on the main thread.
unsafe impl Send for Retained {}
// SAFETY: as above.
unsafe impl Sync for Retained {}

impl Retained {
    pub(crate) fn as_ptr(self) -> *mut raw::RedisModuleString {
        self.0
    }
}

impl<const N: usize> FieldNames<N> {
    pub const fn new(names: [&'static CStr; N]) -> Self {
        FieldNames {
            names,
            strings: OnceLock::new(),
        }
    }

    /// The names, as given.
    pub fn names(&self) -> &[&'static CStr; N] {
        &self.names
    }

    /// The name at `index` (of the array given to [`FieldNames::new`]).
    pub fn get(&self, index: usize) -> Retained {
        self.strings()[index]
    }

    /// The retained string of the field called `name`, if it is one of
    /// these.
    pub fn find(&self, name: &[u8]) -> Option<Retained> {
        let index = self
            .names
            .iter()
            .position(|known| known.to_bytes() == name)?;
        Some(self.get(index))
    }

    fn strings(&self) -> &[Retained; N] {
        self.strings.get_or_init(|| {
            self.names.map(|name| {
                let bytes = name.to_bytes();
                // SAFETY: a NULL context makes a string no call frees; it is
                // kept for the module's lifetime.
                Retained(unsafe {
                    raw::RedisModule_CreateString.map_or(std::ptr::null_mut(), |create| {
                        create(std::ptr::null_mut(), bytes.as_ptr().cast(), bytes.len())
                    })
                })
            })
        })
    }
}

/// A key whose value, if any, is a string: opened for reading, or for
/// reading and writing (see `effects::store_string`).
pub struct StringKey {
    pub(crate) key: OpenKey,
    present: bool,
}

impl StringKey {
    /// Opens `name` for reading. `Ok(None)` when the key does not exist;
    /// `WrongType` when it holds anything but a string.
    pub fn open(ctx: Ctx, name: ArgString) -> Result<Option<StringKey>, CommandError> {
        let Some(key) = OpenKey::open(ctx, name, false)? else {
            return Ok(None);
        };
        match key.kind() {
            KeyKind::Absent => Ok(None),
            KeyKind::String => Ok(Some(StringKey { key, present: true })),
            _ => Err(CommandError::WrongType),
        }
    }

    /// Opens `name` for reading and writing, existing or not; `WrongType`
    /// when it holds anything but a string.
    pub fn open_for_write(ctx: Ctx, name: ArgString) -> Result<StringKey, CommandError> {
        let key = OpenKey::open(ctx, name, true)?.ok_or(CommandError::Internal(
            "no handle for a key opened for writing",
        ))?;
        match key.kind() {
            KeyKind::Absent => Ok(StringKey {
                key,
                present: false,
            }),
            KeyKind::String => Ok(StringKey { key, present: true }),
            _ => Err(CommandError::WrongType),
        }
    }

    /// The value, `None` when the key does not exist.
    pub fn current(&self) -> Option<&[u8]> {
        self.present.then(|| self.value())
    }

    /// The value, borrowed for as long as the key stays open (empty for a
    /// missing key). A DMA read turns a shared or encoded string into a
    /// plain one of the same size class: reading never grows a
    /// rate-limit state (its values are short: see `effects::store_string`).
    pub fn value(&self) -> &[u8] {
        let mut len: usize = 0;
        // SAFETY: open string key; DMA in read mode only reads.
        unsafe {
            let Some(dma) = raw::RedisModule_StringDMA else {
                return &[];
            };
            let data = dma(self.key.0, &mut len, raw::REDISMODULE_READ as c_int);
            if data.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(data.cast::<u8>().cast_const(), len)
        }
    }

    /// The key's absolute expiry in Unix milliseconds, `None` when it has
    /// none.
    pub fn expire_at_ms(&self) -> Option<u64> {
        self.key.expire_at_ms()
    }
}

/// A string created for one call into Redis, freed on drop.
pub struct OwnedString(pub(crate) *mut raw::RedisModuleString, Ctx);

impl OwnedString {
    pub fn new(ctx: Ctx, bytes: &[u8]) -> Option<OwnedString> {
        // SAFETY: live context; Redis copies the bytes.
        let string = unsafe {
            raw::RedisModule_CreateString?(ctx.as_ptr(), bytes.as_ptr().cast(), bytes.len())
        };
        (!string.is_null()).then(|| OwnedString(string, ctx))
    }
}

impl Drop for OwnedString {
    fn drop(&mut self) {
        // SAFETY: created by (or handed over from) Redis for us, freed once.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeString {
                free(self.1.as_ptr(), self.0);
            }
        }
    }
}

impl OwnedString {
    /// Takes ownership of a string Redis created for us (may be null).
    pub(crate) fn from_raw(ctx: Ctx, string: *mut raw::RedisModuleString) -> Option<OwnedString> {
        (!string.is_null()).then(|| OwnedString(string, ctx))
    }

    /// The string as a key name or value to hand back to Redis, for as
    /// long as it lives.
    pub fn as_arg(&self) -> ArgString<'_> {
        ArgString::from_ptr(NonNull::new(self.0).expect("a created string is never null"))
    }

    pub fn bytes(&self) -> &[u8] {
        string_bytes(self.0)
    }
}
