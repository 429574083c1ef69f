//! Real multi-node topologies on free local ports, every data node with the
//! freshly built module loaded:
//!
//! * [`Cluster`]: a Redis Cluster, by default 3 masters with 1 replica each,
//!   created with `redis-cli --cluster create … --cluster-replicas 1
//!   --cluster-yes`, with helpers to find the owner of a slot, move a slot
//!   to another master (`CLUSTER SETSLOT` + `MIGRATE`), crash a node and
//!   wait for its replica's promotion.
//! * [`SentinelGroup`]: 1 master, 1 replica and 3 Sentinels monitoring them
//!   (other counts with [`SentinelGroup::start_with`]), with helpers to
//!   crash the master and wait for the promotion.
//! * [`Topology`]: what the generic integration suites run on, standalone
//!   or cluster; [`topology_tests!`](crate::topology_tests) runs a suite's
//!   test functions once per topology.
//!
//! Both tear down cleanly: every process is killed when its [`Server`] is
//! dropped (and by the kernel if the test process dies). Both run on the
//! local backend only; under `TK_TEST_BACKEND=docker` their tests skip.
//! Every wait is bounded and panics with what it saw.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::mode::Conn;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use crate::harness::{
    parse_info, skip_under_docker, wait_for_sync, wait_until, Backend, Server, ServerBuilder,
    CONNECT_TIMEOUT, RESPONSE_TIMEOUT,
};

/// How long a cluster or Sentinel group gets to agree on its layout.
pub const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(30);
/// `cluster-node-timeout` of [`Cluster`] nodes: a dead master's replica is
/// promoted about this long (plus a second or two of election) after the crash.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 2000;
/// `down-after-milliseconds` of the [`SentinelGroup`]'s Sentinels: how long
/// a Sentinel's PING (sent about once a second, and at once on a new link,
/// e.g. to the replica it just promoted) may go unanswered before it flags
/// the instance down. 1000 ms gave each PONG one second; on a loaded 2-core
/// machine two Sentinels sometimes missed it right after a failover, flagged
/// the just-promoted master down and failed over again, to the revived,
/// empty old master (acknowledged writes lost). 5 s is far beyond any stall
/// seen, and only delays detection of a real crash.
pub const SENTINEL_DOWN_AFTER_MS: u64 = 5000;
/// `failover-timeout` of the [`SentinelGroup`]'s Sentinels. A failover
/// whose election failed (split vote) is retried after twice this.
pub const SENTINEL_FAILOVER_TIMEOUT_MS: u64 = 10_000;
/// How long [`SentinelGroup::wait_for_failover`] waits: detection, one
/// failed election and its retry, and [`TOPOLOGY_TIMEOUT`] for the rest.
pub const SENTINEL_FAILOVER_WAIT: Duration = Duration::from_millis(
    SENTINEL_DOWN_AFTER_MS + 2 * SENTINEL_FAILOVER_TIMEOUT_MS + TOPOLOGY_TIMEOUT.as_millis() as u64,
);
/// The name the Sentinels monitor the master under.
pub const SENTINEL_MASTER_NAME: &str = "tkmaster";

/// The `redis-cli` binary: `TK_REDIS_CLI` if set, else `redis-cli` on `PATH`.
pub fn redis_cli_bin() -> PathBuf {
    match std::env::var_os("TK_REDIS_CLI") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("redis-cli"),
    }
}

/// The hash slot of `key`, as Redis computes it (`CLUSTER KEYSLOT`).
pub fn key_slot(key: &[u8]) -> u16 {
    tk_redis::keys::key_slot(key)
}

async fn conn_to(server: &Server) -> Conn {
    server.conn().await
}

async fn try_conn(server: &Server) -> redis::RedisResult<Conn> {
    server.try_conn().await
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeEntry {
    /// The node's cluster id.
    pub id: String,
    /// Client port.
    pub port: u16,
    /// A master (not failed).
    pub master: bool,
    /// Flagged `fail` or `fail?`.
    pub failed: bool,
    /// Id of the master it replicates (replicas only).
    pub master_id: Option<String>,
    /// Slot ranges it serves (masters only), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl NodeEntry {
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| lo <= slot && slot <= hi)
    }
}

/// Parses `CLUSTER NODES` output.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeEntry> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let port = fields[1]
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('[')) // migrating/importing markers
                .filter_map(|s| match s.split_once('-') {
                    Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeEntry {
                id: fields[0].to_string(),
                port,
                master: flags.contains(&"master"),
                failed: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                master_id: (fields[3] != "-").then(|| fields[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// A Redis Cluster of local `redis-server` processes with the module.
///
/// Nodes keep the index they were started with ([`Cluster::node`]); which
/// of them are masters changes with failovers, so ask
/// [`Cluster::master_of_slot`] / [`Cluster::masters`] rather than assuming.
pub struct Cluster {
    nodes: Vec<Server>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports: Vec<u16> = self.nodes.iter().map(Server::port).collect();
        f.debug_struct("Cluster").field("ports", &ports).finish()
    }
}

impl Cluster {
    /// Starts 3 masters with 1 replica each and waits until every node
    /// reports `cluster_state:ok` and every replica is in sync.
    pub async fn start() -> Cluster {
        Cluster::start_with(3, 1).await
    }

    /// Starts `masters` masters with `replicas` replicas each.
    pub async fn start_with(masters: usize, replicas: usize) -> Cluster {
        Cluster::launch(masters, replicas, Server::builder()).await
    }

    /// Starts `masters` plain masters, without the module and without the
    /// library (whatever `TK_TEST_MODE` says): a managed cluster a client
    /// meets for the first time.
    pub async fn start_without_module(masters: usize) -> Cluster {
        Cluster::launch(masters, 0, Server::builder().without_module()).await
    }

    async fn launch(masters: usize, replicas: usize, builder: ServerBuilder) -> Cluster {
        let count = masters * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(
                builder
                    .clone()
                    .backend(Backend::Local)
                    .cluster(true)
                    .arg("cluster-node-timeout", CLUSTER_NODE_TIMEOUT_MS.to_string())
                    // A replica may always take over, however long it was cut off.
                    .arg("cluster-replica-validity-factor", "0")
                    // Keep the layout the tests set up.
                    .arg("cluster-allow-replica-migration", "no")
                    .start()
                    .await,
            );
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(Server::addr));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        run_redis_cli(args).await;
        let cluster = Cluster { nodes };
        cluster.wait_healthy(masters, masters * replicas).await;
        cluster
    }

    /// Every node, in start order (down ones included).
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// Node `index` (start order).
    pub fn node(&self, index: usize) -> &Server {
        &self.nodes[index]
    }

    /// `host:port` of every node: the seed list for a cluster client
    /// (`REDIS_CLUSTER_NODES`).
    pub fn seed_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Server::addr).collect()
    }

    /// A cluster connection from the redis crate (follows MOVED/ASK).
    pub async fn conn(&self) -> Conn<ClusterConnection> {
        let urls: Vec<String> = self.nodes.iter().map(Server::url).collect();
        let conn = ClusterClientBuilder::new(urls)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .expect("valid cluster seeds")
            .get_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster {self:?}: {e}"));
        Conn::new(conn, self.serves_library())
    }

    /// Whether the nodes serve the Functions library in place of the
    /// module (functions mode, see [`crate::mode`]).
    pub fn serves_library(&self) -> bool {
        self.nodes.iter().any(Server::serves_library)
    }

    /// A plain connection to node `index` (no redirections followed).
    pub async fn node_conn(&self, index: usize) -> Conn {
        conn_to(&self.nodes[index]).await
    }

    fn index_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port} in {self:?}"))
    }

    /// `CLUSTER NODES` as seen by the first live node that answers.
    pub async fn cluster_nodes(&self) -> Vec<NodeEntry> {
        self.try_cluster_nodes()
            .await
            .unwrap_or_else(|e| panic!("CLUSTER NODES: {e}"))
    }

    async fn try_cluster_nodes(&self) -> Result<Vec<NodeEntry>, String> {
        let mut last = "no live node".to_string();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let reply: redis::RedisResult<String> = async {
                let mut conn = try_conn(node).await?;
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
            }
            .await;
            match reply {
                Ok(text) => return Ok(parse_cluster_nodes(&text)),
                Err(e) => last = format!("{}: {e}", node.addr()),
            }
        }
        Err(last)
    }

    /// The index of the master serving `slot`, as the cluster sees it now.
    pub async fn master_of_slot(&self, slot: u16) -> usize {
        let entries = self.cluster_nodes().await;
        let owner = entries
            .iter()
            .find(|e| e.master && !e.failed && e.serves(slot))
            .unwrap_or_else(|| panic!("no live master serves slot {slot}: {entries:?}"));
        self.index_of_port(owner.port)
    }

    /// The index of the master serving `key`'s slot.
    pub async fn master_of_key(&self, key: &str) -> usize {
        self.master_of_slot(key_slot(key.as_bytes())).await
    }

    /// Indexes of the live masters.
    pub async fn masters(&self) -> Vec<usize> {
        let entries = self.cluster_nodes().await;
        entries
            .iter()
            .filter(|e| e.master && !e.failed)
            .map(|e| self.index_of_port(e.port))
            .collect()
    }

    /// A live master other than `index` (the first one listed).
    pub async fn other_master(&self, index: usize) -> usize {
        self.masters()
            .await
            .into_iter()
            .find(|&master| master != index)
            .expect("another live master")
    }

    /// Indexes of the replicas of master `index`.
    pub async fn replicas_of(&self, index: usize) -> Vec<usize> {
        let entries = self.cluster_nodes().await;
        let port = self.nodes[index].port();
        let id = entries
            .iter()
            .find(|e| e.port == port)
            .map(|e| e.id.clone())
            .unwrap_or_else(|| panic!("node {index} unknown to the cluster: {entries:?}"));
        entries
            .iter()
            .filter(|e| e.master_id.as_deref() == Some(id.as_str()))
            .map(|e| self.index_of_port(e.port))
            .collect()
    }

    /// Waits until every live node reports `cluster_state:ok` and the full
    /// slot range, sees `masters` masters serving slots and `replicas`
    /// replicas and no failed node, all live nodes agree on which node serves
    /// every slot, and every live replica's link to its master is up.
    pub async fn wait_healthy(&self, masters: usize, replicas: usize) {
        let known = masters + replicas;
        wait_until("cluster healthy", TOPOLOGY_TIMEOUT, || async move {
            let mut views = Vec::new();
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                let mut conn = try_conn(node).await.map_err(|e| e.to_string())?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let info = parse_info(&info);
                let ok = info.get("cluster_state").map(String::as_str) == Some("ok")
                    && info.get("cluster_slots_assigned").map(String::as_str) == Some("16384")
                    && info.get("cluster_known_nodes") == Some(&known.to_string());
                if !ok {
                    return Err(format!("{}: {info:?}", node.addr()));
                }
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let replication = parse_info(&replication);
                if replication.get("role").map(String::as_str) == Some("slave")
                    && replication.get("master_link_status").map(String::as_str) != Some("up")
                {
                    return Err(format!("{}: replica link down", node.addr()));
                }
                let text: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let entries = parse_cluster_nodes(&text);
                let serving = entries.iter().filter(|e| e.master && !e.slots.is_empty());
                let replicating = entries.iter().filter(|e| e.master_id.is_some());
                if serving.count() != masters
                    || replicating.count() != replicas
                    || entries.iter().any(|e| e.failed)
                {
                    return Err(format!("{} sees {entries:?}", node.addr()));
                }
                let mut owners: Vec<(u16, (u16, u16))> = entries
                    .into_iter()
                    .filter(|e| e.master && !e.failed)
                    .flat_map(|e| e.slots.into_iter().map(move |r| (e.port, r)))
                    .collect();
                owners.sort_by_key(|&(_, range)| range);
                views.push(owners);
            }
            if views.windows(2).all(|w| w[0] == w[1]) {
                Ok(())
            } else {
                Err(format!("nodes disagree on slot owners: {views:?}"))
            }
        })
        .await
    }

    /// Kills node `index` with SIGKILL (see [`Server::kill`]).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts a killed node again; it rejoins with its old identity (as a
    /// replica, if its replica was promoted meanwhile).
    pub async fn revive(&mut self, index: usize) {
        self.nodes[index].revive().await;
    }

    /// After master `dead` was killed, waits until another node serves its
    /// slots and every live node reports `cluster_state:ok`; returns the new
    /// master's index.
    pub async fn wait_for_failover(&self, dead: usize, slot: u16) -> usize {
        let dead_port = self.nodes[dead].port();
        let promoted = wait_until("replica promoted", TOPOLOGY_TIMEOUT, || async move {
            let entries = self.try_cluster_nodes().await?;
            match entries
                .iter()
                .find(|e| e.master && !e.failed && e.serves(slot))
            {
                Some(owner) if owner.port != dead_port => Ok(owner.port),
                _ => Err(format!("slot {slot} not yet taken over: {entries:?}")),
            }
        })
        .await;
        wait_until(
            "cluster ok after failover",
            TOPOLOGY_TIMEOUT,
            || async move {
                for node in self.nodes.iter().filter(|n| n.is_running()) {
                    let mut conn = try_conn(node).await.map_err(|e| e.to_string())?;
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    if parse_info(&info).get("cluster_state").map(String::as_str) != Some("ok") {
                        return Err(format!("{}: {info}", node.addr()));
                    }
                }
                Ok(())
            },
        )
        .await;
        self.index_of_port(promoted)
    }

    /// Moves `slot` with all its keys from its master to master `to`, the
    /// way `redis-cli --cluster reshard` does it: `CLUSTER SETSLOT …
    /// IMPORTING/MIGRATING`, `MIGRATE` in batches, then `CLUSTER SETSLOT …
    /// NODE` on every master. Returns the number of keys moved.
    pub async fn migrate_slot(&self, slot: u16, to: usize) -> usize {
        let from = self.begin_slot_migration(slot, to).await;
        let mut source = self.node_conn(from).await;
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut source)
                .await
                .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            moved += keys.len();
            self.migrate_keys(from, to, &keys).await;
        }
        self.finish_slot_migration(slot, from, to).await;
        moved
    }

    /// The cluster id of node `index`.
    pub async fn node_id(&self, index: usize) -> String {
        let port = self.nodes[index].port();
        let entries = self.cluster_nodes().await;
        entries
            .iter()
            .find(|e| e.port == port)
            .map(|e| e.id.clone())
            .unwrap_or_else(|| panic!("node {index} unknown: {entries:?}"))
    }

    /// Starts moving `slot` from its master to master `to`: `CLUSTER SETSLOT
    /// <slot> IMPORTING` on `to`, then `MIGRATING` on the owner. No key
    /// moves yet ([`Cluster::migrate_keys`] moves them): meanwhile the
    /// owner answers `ASK` for a key it no longer has and `TRYAGAIN` for a
    /// multi-key command of which it has only some keys. Returns the owner's
    /// index; [`Cluster::finish_slot_migration`] ends the migration.
    pub async fn begin_slot_migration(&self, slot: u16, to: usize) -> usize {
        let from = self.master_of_slot(slot).await;
        assert_ne!(from, to, "slot {slot} is already on node {to}");
        let (from_id, to_id) = (self.node_id(from).await, self.node_id(to).await);
        let () = setslot(slot, "IMPORTING", &from_id)
            .query_async(&mut self.node_conn(to).await)
            .await
            .expect("SETSLOT IMPORTING");
        let () = setslot(slot, "MIGRATING", &to_id)
            .query_async(&mut self.node_conn(from).await)
            .await
            .expect("SETSLOT MIGRATING");
        from
    }

    /// Moves `keys` from node `from` to node `to` with `MIGRATE` (during a
    /// migration started by [`Cluster::begin_slot_migration`]).
    pub async fn migrate_keys<K: redis::ToRedisArgs>(&self, from: usize, to: usize, keys: &[K]) {
        let target = &self.nodes[to];
        let () = redis::cmd("MIGRATE")
            .arg(target.host())
            .arg(target.port())
            .arg("")
            .arg(0)
            .arg(10_000)
            .arg("KEYS")
            .arg(keys)
            .query_async(&mut self.node_conn(from).await)
            .await
            .expect("MIGRATE");
    }

    /// Ends a migration of `slot` from `from` to `to` (keys moved or not):
    /// `CLUSTER SETSLOT <slot> NODE <to>` on the target first, then the
    /// source, then every other master, as redis-cli does, so no node is
    /// left pointing at the wrong owner; waits until every live node agrees.
    pub async fn finish_slot_migration(&self, slot: u16, from: usize, to: usize) {
        let to_id = self.node_id(to).await;
        let mut order = vec![to, from];
        order.extend(
            self.masters()
                .await
                .into_iter()
                .filter(|m| *m != to && *m != from),
        );
        for index in order {
            let mut conn = self.node_conn(index).await;
            let () = setslot(slot, "NODE", &to_id)
                .query_async(&mut conn)
                .await
                .expect("SETSLOT NODE");
        }
        let target_node = &self.nodes[to];
        wait_until("slot owner agreed", TOPOLOGY_TIMEOUT, || async move {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                let mut conn = try_conn(node).await.map_err(|e| e.to_string())?;
                let text: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let owner = parse_cluster_nodes(&text)
                    .into_iter()
                    .find(|e| e.master && e.serves(slot))
                    .map(|e| e.port);
                if owner != Some(target_node.port()) {
                    return Err(format!("{} sees owner {owner:?}", node.addr()));
                }
            }
            Ok(())
        })
        .await;
    }
}

/// `CLUSTER SETSLOT <slot> <state> <node id>`.
fn setslot(slot: u16, state: &str, id: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
    cmd
}

async fn run_redis_cli(args: Vec<String>) {
    let bin = redis_cli_bin();
    let shown = format!("{} {}", bin.display(), args.join(" "));
    let mut child = Command::new(&bin)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{shown}`: {e} (install redis-tools or set TK_REDIS_CLI)")
        });
    // `--cluster create` waits for the nodes to join and never gives up when
    // one has died: bounded, a dead node is a failure with the output, not a
    // hang of the whole suite.
    let deadline = std::time::Instant::now() + REDIS_CLI_TIMEOUT;
    let timed_out = loop {
        match child.try_wait() {
            Ok(Some(_)) => break false,
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                break true;
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("waiting for `{shown}`: {e}"),
        }
    };
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("redis-cli thread")
        .unwrap_or_else(|e| panic!("reading the output of `{shown}`: {e}"));
    if timed_out || !output.status.success() {
        panic!(
            "`{shown}` {} ({}):\n{}\n{}",
            if timed_out {
                format!("did not finish within {REDIS_CLI_TIMEOUT:?}")
            } else {
                "failed".to_owned()
            },
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// How long one `redis-cli --cluster …` run may take (creating a 6-node
/// cluster takes a few seconds, even on a loaded machine).
const REDIS_CLI_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

/// A master and a replica (both with the module) watched by 3 Sentinels
/// under [`SENTINEL_MASTER_NAME`], quorum 2; or, with
/// [`SentinelGroup::start_with`], any number of replicas and Sentinels.
pub struct SentinelGroup {
    /// Data nodes: 0 starts as the master, 1 as its replica.
    data: Vec<Server>,
    sentinels: Vec<Server>,
}

impl fmt::Debug for SentinelGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data: Vec<u16> = self.data.iter().map(Server::port).collect();
        let sentinels: Vec<u16> = self.sentinels.iter().map(Server::port).collect();
        f.debug_struct("SentinelGroup")
            .field("data", &data)
            .field("sentinels", &sentinels)
            .finish()
    }
}

impl SentinelGroup {
    /// Starts the group and waits until every Sentinel knows the replica and
    /// the two other Sentinels.
    pub async fn start() -> SentinelGroup {
        SentinelGroup::start_with(1, 3).await
    }

    /// Starts a master with `replicas` replicas (data nodes `1..=replicas`)
    /// watched by `sentinels` Sentinels with a majority quorum
    /// (`sentinels / 2 + 1`), and waits until every Sentinel knows every
    /// replica and every other Sentinel.
    ///
    /// Without a replica no failover can succeed: a master Sentinel flags
    /// down stays named (flagged `s_down`, `o_down`) until it answers again.
    /// A lone Sentinel (`sentinels == 1`) gets no traffic from other
    /// Sentinels, so its `total_commands_processed` counts exactly what its
    /// clients sent.
    ///
    /// # Panics
    /// When `sentinels` is 0.
    pub async fn start_with(replicas: usize, sentinels: usize) -> SentinelGroup {
        assert!(sentinels > 0, "a Sentinel group needs a Sentinel");
        let master = Server::builder().backend(Backend::Local).start().await;
        let mut data = vec![master];
        for _ in 0..replicas {
            let replica = Server::builder()
                .backend(Backend::Local)
                .replica_of(&data[0])
                .start()
                .await;
            wait_for_sync(&data[0], &replica).await;
            data.push(replica);
        }
        let config = format!(
            "sentinel monitor {name} 127.0.0.1 {port} {quorum}\n\
             sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}\n\
             sentinel failover-timeout {name} {SENTINEL_FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {name} 1\n",
            name = SENTINEL_MASTER_NAME,
            port = data[0].port(),
            quorum = sentinels / 2 + 1,
        );
        let mut nodes = Vec::new();
        for _ in 0..sentinels {
            nodes.push(
                Server::builder()
                    .backend(Backend::Local)
                    .sentinel(config.clone())
                    .start()
                    .await,
            );
        }
        let group = SentinelGroup {
            data,
            sentinels: nodes,
        };
        group.wait_discovered(replicas, sentinels - 1).await;
        group
    }

    async fn wait_discovered(&self, replicas: usize, other_sentinels: usize) {
        let (replicas, others) = (replicas.to_string(), other_sentinels.to_string());
        for sentinel in &self.sentinels {
            let (replicas, others) = (&replicas, &others);
            wait_until("sentinel discovery", TOPOLOGY_TIMEOUT, || async move {
                let fields = sentinel_master(sentinel).await?;
                let slaves = fields.get("num-slaves");
                let seen = fields.get("num-other-sentinels");
                if slaves == Some(replicas) && seen == Some(others) {
                    Ok(())
                } else {
                    Err(format!("{}: {fields:?}", sentinel.addr()))
                }
            })
            .await;
        }
    }

    /// Waits until every Sentinel flags the master subjectively down
    /// (`s_down`) when `down`; otherwise until every Sentinel flags it
    /// neither `s_down` nor `o_down` and has no ping to it outstanding for
    /// longer than half of `down-after-milliseconds` (so that no Sentinel is
    /// about to flag it down again because of a ping sent while it was
    /// unreachable).
    pub async fn wait_master_flagged_down(&self, down: bool) {
        for sentinel in &self.sentinels {
            wait_until("sentinel master flags", TOPOLOGY_TIMEOUT, || async move {
                let fields = sentinel_master(sentinel).await?;
                let flags = fields.get("flags").map(String::as_str).unwrap_or("");
                let flagged = flags.split(',').any(|f| f == "s_down" || f == "o_down");
                let pending: u64 = fields
                    .get("last-ping-sent")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(u64::MAX);
                let reached = if down {
                    flags.split(',').any(|f| f == "s_down")
                } else {
                    !flagged && pending < SENTINEL_DOWN_AFTER_MS / 2
                };
                if reached {
                    Ok(())
                } else {
                    Err(format!("{}: flags {flags:?}, {fields:?}", sentinel.addr()))
                }
            })
            .await;
        }
    }

    /// The data nodes: index 0 started as the master, 1 as its replica.
    pub fn data_node(&self, index: usize) -> &Server {
        &self.data[index]
    }

    /// `host:port` of every Sentinel (`REDIS_SENTINEL_ADDRS`).
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Server::addr).collect()
    }

    /// The Sentinels.
    pub fn sentinels(&self) -> &[Server] {
        &self.sentinels
    }

    /// The data node the Sentinels currently name as master.
    pub async fn master(&self) -> usize {
        let mut conn = conn_to(&self.sentinels[0]).await;
        let (_host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(SENTINEL_MASTER_NAME)
            .query_async(&mut conn)
            .await
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        self.data
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| panic!("sentinel names unknown master port {port}"))
    }

    /// Kills data node `index` with SIGKILL.
    pub fn kill(&mut self, index: usize) {
        self.data[index].kill();
    }

    /// Starts a killed data node again (Sentinel turns an old master into a
    /// replica of the new one).
    pub async fn revive(&mut self, index: usize) {
        self.data[index].revive().await;
    }

    /// After master `dead` was killed, waits until every Sentinel names the
    /// other node and that node reports `role:master`; returns its index.
    pub async fn wait_for_failover(&self, dead: usize) -> usize {
        let dead_port = self.data[dead].port();
        for sentinel in &self.sentinels {
            wait_until("sentinel failover", SENTINEL_FAILOVER_WAIT, || async move {
                let mut conn = try_conn(sentinel).await.map_err(|e| e.to_string())?;
                let (_host, port): (String, u16) = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(SENTINEL_MASTER_NAME)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if port == dead_port {
                    Err(format!("{} still names {port}", sentinel.addr()))
                } else {
                    Ok(())
                }
            })
            .await;
        }
        let promoted = self.master().await;
        let node = &self.data[promoted];
        wait_until("promoted node is master", TOPOLOGY_TIMEOUT, || async move {
            let mut conn = try_conn(node).await.map_err(|e| e.to_string())?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            match parse_info(&info).get("role").map(String::as_str) {
                Some("master") => Ok(()),
                role => Err(format!("{}: role {role:?}", node.addr())),
            }
        })
        .await;
        promoted
    }
}

async fn sentinel_master(sentinel: &Server) -> Result<HashMap<String, String>, String> {
    let mut conn = try_conn(sentinel).await.map_err(|e| e.to_string())?;
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(SENTINEL_MASTER_NAME)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(flat
        .chunks(2)
        .filter_map(|pair| match pair {
            [k, v] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Generic suites
// ---------------------------------------------------------------------------

/// Which topology a generic test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyKind {
    /// One `Server`.
    Standalone,
    /// A [`Cluster`] of 3 masters with 1 replica each.
    Cluster,
}

/// What a generic integration test runs against.
#[derive(Debug)]
pub enum Topology {
    /// One server with the module.
    Standalone(Box<Server>),
    /// A cluster with the module on every node.
    Cluster(Cluster),
}

impl Topology {
    /// Starts a topology of `kind`; `None` (after a note) when it cannot run
    /// on the selected backend (cluster under docker).
    pub async fn start(kind: TopologyKind) -> Option<Topology> {
        match kind {
            TopologyKind::Standalone => Some(Topology::Standalone(Box::new(Server::start().await))),
            TopologyKind::Cluster => {
                if skip_under_docker("the cluster runs local redis-server processes") {
                    return None;
                }
                Some(Topology::Cluster(Cluster::start().await))
            }
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> TopologyKind {
        match self {
            Topology::Standalone(_) => TopologyKind::Standalone,
            Topology::Cluster(_) => TopologyKind::Cluster,
        }
    }

    /// The client configuration that reaches this topology, the way an
    /// application sets it (`REDIS_ADDR` or `REDIS_CLUSTER_NODES`).
    pub fn config(&self) -> tk_redis::Config {
        let builder = tk_redis::Config::builder().read_timeout(RESPONSE_TIMEOUT);
        match self {
            Topology::Standalone(server) => builder.addr(server.addr()),
            Topology::Cluster(cluster) => builder.cluster_nodes(cluster.seed_addrs()),
        }
        .build()
        .expect("a valid test configuration")
    }

    /// A connection through the client crate ([`tk_redis::Config::connect`]),
    /// usable by every typed client and for raw commands.
    ///
    /// In functions mode its raw `TK.*` commands go out as `FCALL`s (see
    /// [`crate::mode`]); typed clients choose the library by themselves.
    pub async fn connection(&self) -> Conn<tk_redis::Connection> {
        let conn = self
            .config()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {self:?}: {e}"));
        let to_library = match self {
            Topology::Standalone(server) => server.serves_library(),
            Topology::Cluster(cluster) => cluster.serves_library(),
        };
        Conn::new(conn, to_library)
    }

    /// The server holding `key` (the standalone server, or the master
    /// serving its slot), e.g. to read `INFO` or `DEBUG` output there.
    pub async fn node_for(&self, key: &str) -> &Server {
        match self {
            Topology::Standalone(server) => server,
            Topology::Cluster(cluster) => cluster.node(cluster.master_of_key(key).await),
        }
    }
}

/// Runs each listed `async fn name(topology: &Topology)` of a test file
/// once per topology, as `standalone::name` and `cluster::name`:
///
/// ```ignore
/// tk_redis_tests::topology_tests!(gcra_admits_burst, all_is_all_or_nothing);
/// ```
#[macro_export]
macro_rules! topology_tests {
    ($($name:ident),+ $(,)?) => {
        mod standalone {
            $(
                #[tokio::test]
                async fn $name() {
                    let topology = $crate::topology::Topology::start(
                        $crate::topology::TopologyKind::Standalone,
                    )
                    .await
                    .expect("standalone runs on every backend");
                    super::$name(&topology).await;
                }
            )+
        }
        mod cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(topology) = $crate::topology::Topology::start(
                        $crate::topology::TopologyKind::Cluster,
                    )
                    .await
                    else {
                        return;
                    };
                    super::$name(&topology).await;
                }
            )+
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_parsing() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host replica e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383 [10924->-abc]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 7000
";
        let nodes = parse_cluster_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].port, 30004);
        assert!(!nodes[0].master);
        assert_eq!(
            nodes[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(nodes[1].slots, vec![(5461, 10922)]);
        assert!(nodes[2].failed && nodes[2].master);
        assert_eq!(nodes[2].slots, vec![(10923, 16383)]);
        assert!(nodes[3].serves(7000) && nodes[3].serves(0) && !nodes[3].serves(6000));
    }

    #[test]
    fn key_slots_follow_hash_tags() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }
}
