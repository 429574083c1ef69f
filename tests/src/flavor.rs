//! Which server a test runs against (Redis or Valkey, and its version), read
//! from the server itself, so that behaviour that legitimately differs
//! between servers (log wording, built-in modules, module APIs that exist
//! only from 7.2) is checked per server rather than skipped.
//!
//! `scripts/test --server NAME` picks the binary (`TK_REDIS_SERVER`); this
//! module never looks at that name, only at what the server reports.

use redis::aio::ConnectionLike;

use crate::harness::{info_section, redis_server_bin};

/// The server's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Redis (`redis_version`).
    Redis,
    /// Valkey (`server_name:valkey`, `valkey_version`; it also reports
    /// `redis_version:7.2.4` for clients that look at that field).
    Valkey,
}

/// A server's family and version, e.g. Valkey 8.1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flavor {
    pub family: Family,
    /// (major, minor, patch) of the family's own version.
    pub version: (u32, u32, u32),
}

impl Flavor {
    /// Reads `INFO server` of the server behind `conn`.
    ///
    /// # Panics
    /// When `INFO` fails or reports no version.
    pub async fn of<C: ConnectionLike>(conn: &mut C) -> Flavor {
        let info = info_section(conn, "server").await;
        Flavor::from_info(&info)
            .unwrap_or_else(|| panic!("INFO server reports no server version: {info:?}"))
    }

    /// From the fields of `INFO server`.
    pub fn from_info(info: &std::collections::HashMap<String, String>) -> Option<Flavor> {
        let valkey = info.get("server_name").is_some_and(|n| n == "valkey")
            || info.contains_key("valkey_version");
        let (family, field) = if valkey {
            (Family::Valkey, "valkey_version")
        } else {
            (Family::Redis, "redis_version")
        };
        let mut parts = info.get(field)?.split('.').map(|p| p.parse::<u32>().ok());
        let version = (
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
            parts.next().flatten().unwrap_or(0),
        );
        Some(Flavor { family, version })
    }

    /// The flavor of the local backend's binary ([`redis_server_bin`]),
    /// from its `--version` line (`Redis server v=8.0.2 …`, `Valkey server
    /// v=8.1.1 …`): for what happens before a server answers, e.g. a
    /// refused start.
    ///
    /// # Panics
    /// When the binary cannot be run or its output is not understood.
    pub fn of_binary() -> Flavor {
        let bin = redis_server_bin();
        let output = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", bin.display()));
        let text = String::from_utf8_lossy(&output.stdout);
        Flavor::from_version_line(&text)
            .unwrap_or_else(|| panic!("{} --version: unexpected output {text:?}", bin.display()))
    }

    /// Parses `<Name> server v=<x.y.z> …`.
    pub fn from_version_line(line: &str) -> Option<Flavor> {
        let family = if line.starts_with("Valkey") {
            Family::Valkey
        } else if line.starts_with("Redis") {
            Family::Redis
        } else {
            return None;
        };
        let version = line.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
        let field = match family {
            Family::Redis => "redis_version",
            Family::Valkey => "valkey_version",
        };
        let mut info = std::collections::HashMap::new();
        info.insert(field.to_string(), version.to_string());
        Flavor::from_info(&info)
    }

    /// Redis at `major.minor` or later.
    pub fn redis_at_least(&self, major: u32, minor: u32) -> bool {
        self.family == Family::Redis && (self.version.0, self.version.1) >= (major, minor)
    }

    /// Whether the module API of Redis 7.2 is there (ACL categories,
    /// `RedisModule_CachedMicroseconds`): Redis 7.2+ and every Valkey
    /// (forked from 7.2.4).
    pub fn has_72_module_api(&self) -> bool {
        self.family == Family::Valkey || self.redis_at_least(7, 2)
    }

    /// Whether the server loads modules of its own at start (Redis 8's
    /// `vectorset` and friends): they show up in `MODULE LIST` with an
    /// empty path.
    pub fn ships_builtin_modules(&self) -> bool {
        self.redis_at_least(8, 0)
    }

    /// What the server logs when it refuses an unknown directive at start:
    /// Redis 8 collects them under `Unresolved Configuration(s) Detected`,
    /// older Redis and Valkey say `Bad directive`.
    pub fn unknown_directive_log(&self) -> &'static str {
        if self.redis_at_least(8, 0) {
            "Unresolved Configuration(s) Detected"
        } else {
            "Bad directive"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn families_and_versions() {
        let redis70 = Flavor::from_info(&info(&[("redis_version", "7.0.15")])).unwrap();
        assert_eq!(redis70.family, Family::Redis);
        assert_eq!(redis70.version, (7, 0, 15));
        assert!(!redis70.has_72_module_api());
        assert!(!redis70.ships_builtin_modules());
        assert_eq!(redis70.unknown_directive_log(), "Bad directive");

        let valkey = Flavor::from_info(&info(&[
            ("redis_version", "7.2.4"),
            ("server_name", "valkey"),
            ("valkey_version", "8.1.1"),
        ]))
        .unwrap();
        assert_eq!(valkey.family, Family::Valkey);
        assert_eq!(valkey.version, (8, 1, 1));
        assert!(valkey.has_72_module_api());
        assert!(!valkey.ships_builtin_modules());
        assert_eq!(valkey.unknown_directive_log(), "Bad directive");

        let redis8 = Flavor::from_info(&info(&[("redis_version", "8.0.2")])).unwrap();
        assert!(redis8.has_72_module_api() && redis8.ships_builtin_modules());
        assert!(Flavor::from_info(&info(&[])).is_none());

        let line = "Valkey server v=8.1.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64";
        assert_eq!(Flavor::from_version_line(line), Some(valkey));
        let line = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64";
        assert_eq!(Flavor::from_version_line(line), Some(redis70));
        assert_eq!(Flavor::from_version_line("KeyDB"), None);
    }
}
