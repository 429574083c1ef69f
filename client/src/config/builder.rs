//! [`ConfigBuilder`]: settings from code, and the one place where every
//! setting is validated (the environment and URLs go through it too).

use crate::functions::TkMode;
use std::time::Duration;

use super::addr::{addr_strings, parse_addr_list, Addr};
use super::{vars, Config, ConfigError, Password, Settings, TopologySettings};

/// What `REDIS_POOL_SIZE` must be, in errors.
pub(super) const POOL_SIZE_RULE: &str = "expected a whole number of at least 1";

/// Builds a [`Config`] from code; obtained from [`Config::builder`] or
/// [`Config::to_builder`]. Setters take values as given and
/// [`build`](ConfigBuilder::build) validates them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigBuilder {
    /// Checked by `build`.
    settings: Settings,
    addr: String,
    cache_addr: Option<String>,
    cluster_nodes: Vec<String>,
    sentinel_addrs: Vec<String>,
    sentinel_master: Option<String>,
}

impl ConfigBuilder {
    pub(super) fn from_config(config: &Config) -> ConfigBuilder {
        let topology = &config.topology;
        ConfigBuilder {
            settings: config.settings.clone(),
            addr: config.addr.to_string(),
            cache_addr: config.cache_addr.as_ref().map(Addr::to_string),
            cluster_nodes: addr_strings(&topology.cluster_nodes),
            sentinel_addrs: addr_strings(&topology.sentinel_addrs),
            sentinel_master: topology.sentinel_master.clone(),
        }
    }

    /// The main instance's `host:port` (`[v6]:port` for IPv6).
    #[must_use]
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// The cache's own `host:port`; an empty string unsets it (the cache
    /// then uses [`addr`](ConfigBuilder::addr)).
    #[must_use]
    pub fn cache_addr(mut self, addr: impl Into<String>) -> Self {
        let addr = addr.into();
        self.cache_addr = (!addr.is_empty()).then_some(addr);
        self
    }

    /// The `host:port` seed nodes of a Redis Cluster, which selects the
    /// [cluster topology](crate::config#topologies); an empty list unsets them. An
    /// item may itself be a comma-separated list, as in
    /// `REDIS_CLUSTER_NODES`.
    #[must_use]
    pub fn cluster_nodes<I>(mut self, nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// The `host:port` of the Sentinels, which selects the
    /// [Sentinel topology](crate::config#topologies) (with
    /// [`sentinel_master`](ConfigBuilder::sentinel_master)); an empty list
    /// unsets them. An item may itself be a comma-separated list, as in
    /// `REDIS_SENTINEL_ADDRS`.
    #[must_use]
    pub fn sentinel_addrs<I>(mut self, addrs: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.sentinel_addrs = addrs.into_iter().map(Into::into).collect();
        self
    }

    /// The Sentinels and the primary's name together:
    /// [`sentinel_addrs`](ConfigBuilder::sentinel_addrs) and
    /// [`sentinel_master`](ConfigBuilder::sentinel_master).
    ///
    /// ```
    /// use tk_redis::{Config, Topology};
    ///
    /// let config = Config::builder()
    ///     .sentinel(["sentinel-1:26379", "sentinel-2:26379"], "tk-state")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.topology(), Topology::Sentinel);
    /// assert_eq!(config.sentinel_master(), Some("tk-state"));
    /// ```
    #[must_use]
    pub fn sentinel<I>(self, addrs: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.sentinel_addrs(addrs).sentinel_master(master_name)
    }

    /// The primary's name in Sentinel; an empty string unsets it.
    #[must_use]
    pub fn sentinel_master(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.sentinel_master = (!name.is_empty()).then_some(name);
        self
    }

    /// The Sentinels' own `AUTH` password; an empty string means none.
    #[must_use]
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.settings.sentinel_password = Password::new(password.into());
        self
    }

    /// Requests TLS; see the [module docs](crate::config#tls).
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.settings.tls = tls;
        self
    }

    /// The ACL user name; an empty string means none (the `default` user).
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        let username = username.into();
        self.settings.username = (!username.is_empty()).then_some(username);
        self
    }

    /// The password; an empty string means none.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.settings.password = Password::new(password.into());
        self
    }

    /// The database number.
    #[must_use]
    pub fn db(mut self, db: u32) -> Self {
        self.settings.db = db;
        self
    }

    /// The maximum number of concurrent requests per connection (>= 1).
    #[must_use]
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.settings.pool_size = pool_size;
        self
    }

    /// The connection timeout (> 0).
    #[must_use]
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.settings.dial_timeout = timeout;
        self
    }

    /// The per-request response timeout (> 0).
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.read_timeout = timeout;
        self
    }

    /// The write timeout (> 0; validated, not applied separately).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// Enables or disables sessions.
    #[must_use]
    pub fn sessions_enabled(mut self, enabled: bool) -> Self {
        self.settings.sessions_enabled = enabled;
        self
    }

    /// Enables or disables the cache.
    #[must_use]
    pub fn cache_enabled(mut self, enabled: bool) -> Self {
        self.settings.cache_enabled = enabled;
        self
    }

    /// Enables or disables rate limiting.
    #[must_use]
    pub fn ratelimit_enabled(mut self, enabled: bool) -> Self {
        self.settings.ratelimit_enabled = enabled;
        self
    }

    /// Chooses the tk backend the client types use (`REDIS_TK_MODE`; see
    /// [`Config::tk_mode`]).
    #[must_use]
    pub fn tk_mode(mut self, mode: TkMode) -> Self {
        self.settings.tk_mode = mode;
        self
    }

    /// Validates the settings: addresses are `host:port`, the pool size is
    /// at least 1, every timeout is greater than zero, and the topology
    /// settings fit together (see [Topologies](crate::config#topologies)). Errors
    /// are named after the settings' environment variables.
    ///
    /// This is the one place where settings are validated:
    /// [`Config::from_lookup`] and [`Config::from_url`] build through it.
    pub fn build(self) -> Result<Config, ConfigError> {
        let addr = Addr::parse(&self.addr)
            .map_err(|reason| ConfigError::invalid(vars::ADDR, &self.addr, reason))?;
        let cache_addr = self
            .cache_addr
            .as_deref()
            .map(|text| {
                Addr::parse(text)
                    .map_err(|reason| ConfigError::invalid(vars::CACHE_ADDR, text, reason))
            })
            .transpose()?;
        let list = |variable: &'static str, items: &[String]| {
            let text = items.join(",");
            if text.trim().is_empty() {
                Ok(Vec::new())
            } else {
                parse_addr_list(variable, &text)
            }
        };
        let topology = TopologySettings {
            cluster_nodes: list(vars::CLUSTER_NODES, &self.cluster_nodes)?,
            sentinel_addrs: list(vars::SENTINEL_ADDRS, &self.sentinel_addrs)?,
            sentinel_master: self
                .sentinel_master
                .as_deref()
                .map(parse_master_name)
                .transpose()?,
        };
        let settings = self.settings;
        if settings.pool_size == 0 {
            return Err(ConfigError::invalid(vars::POOL_SIZE, "0", POOL_SIZE_RULE));
        }
        for (variable, timeout) in [
            (vars::DIAL_TIMEOUT, settings.dial_timeout),
            (vars::READ_TIMEOUT, settings.read_timeout),
            (vars::WRITE_TIMEOUT, settings.write_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::invalid(
                    variable,
                    &format!("{timeout:?}"),
                    "must be greater than zero",
                ));
            }
        }
        // Values first, then whether they fit together.
        topology.check(&settings)?;
        Ok(Config {
            addr,
            cache_addr,
            topology,
            settings,
        })
    }
}

/// A Sentinel primary name: no whitespace or control characters.
pub(super) fn parse_master_name(text: &str) -> Result<String, ConfigError> {
    if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            vars::SENTINEL_MASTER,
            text,
            format!(
                "invalid character {bad:?} (expected the name given to `sentinel monitor`, e.g. \
                 mymaster)"
            ),
        ));
    }
    Ok(text.to_owned())
}

impl TopologySettings {
    /// Checks the combinations described in the
    /// [module docs](crate::config#topologies).
    pub(super) fn check(&self, settings: &Settings) -> Result<(), ConfigError> {
        let cluster = !self.cluster_nodes.is_empty();
        let sentinel = !self.sentinel_addrs.is_empty();
        if cluster && sentinel {
            return Err(ConfigError::Conflict {
                first: vars::CLUSTER_NODES,
                second: vars::SENTINEL_ADDRS,
                reason: "choose one topology: REDIS_CLUSTER_NODES for a Redis Cluster, or \
                         REDIS_SENTINEL_ADDRS (with REDIS_SENTINEL_MASTER) for a primary \
                         managed by Sentinel"
                    .into(),
            });
        }
        if cluster && settings.db != 0 {
            return Err(ConfigError::Conflict {
                first: vars::CLUSTER_NODES,
                second: vars::DB,
                reason: format!(
                    "a Redis Cluster has only database 0, got REDIS_DB={} (unset REDIS_DB or \
                     set it to 0)",
                    settings.db
                ),
            });
        }
        if sentinel && self.sentinel_master.is_none() {
            return Err(ConfigError::Missing {
                variable: vars::SENTINEL_MASTER,
                required_by: vars::SENTINEL_ADDRS,
            });
        }
        if !sentinel {
            for (variable, set) in [
                (vars::SENTINEL_MASTER, self.sentinel_master.is_some()),
                (
                    vars::SENTINEL_PASSWORD,
                    settings.sentinel_password.is_some(),
                ),
            ] {
                if set {
                    return Err(ConfigError::Missing {
                        variable: vars::SENTINEL_ADDRS,
                        required_by: variable,
                    });
                }
            }
        }
        Ok(())
    }
}
