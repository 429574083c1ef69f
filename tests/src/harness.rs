//! Test harness: runs a real `redis-server` with the tk module loaded.
//!
//! Two backends, chosen by `TK_TEST_BACKEND`:
//!
//! * `local` (default): a `redis-server` child process (binary from
//!   [`redis_server_bin`]) on a free port of 127.0.0.1, with its own temporary
//!   directory holding its data and its log file.
//! * `docker`: a container started through testcontainers from the image
//!   `TK_TEST_REDIS_IMAGE` (default [`DEFAULT_REDIS_IMAGE`]), with the module
//!   bind-mounted read-only at [`CONTAINER_MODULE_PATH`].
//!
//! Environment variables:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `TK_MODULE_PATH` | module to load; default `<target>/release/libtk_redis.so`, built on demand |
//! | `TK_MODULE_REBUILD` | `0`: do not run `cargo build --release -p tk-redis-module` (once per test process) when the module exists |
//! | `TK_REDIS_SERVER` | `redis-server` binary of the local backend, Sentinels included (default: `redis-server` on `PATH`; `scripts/test --server NAME` sets it, see `scripts/servers.sh`) |
//! | `TK_REDIS_CLI` | `redis-cli` binary the cluster helpers run (default: `redis-cli` on `PATH`) |
//! | `TK_TEST_BACKEND` | `local` (default) or `docker` |
//! | `TK_TEST_REDIS_IMAGE` | image of the docker backend (default `redis:7.2`) |
//! | `TK_TEST_DOCKER_HOST` | host/IP under which published container ports are reached (default: what testcontainers reports, `localhost` mapped to 127.0.0.1) |
//! | `TK_TEST_MODE` | `module` (default) or `functions`: servers "with the module" serve the Functions library instead (see [`crate::mode`]) |
//! | `TK_TEST_KEEP_DIR` | `1`: keep the servers' temporary directories (data, `redis.log`) after the test |
//!
//! Every wait is bounded; nothing here asserts on how long something took.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, RedisResult};
use tempfile::TempDir;
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{AccessMode, IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::mode::{mode, Conn, Mode};

/// How long a server gets to answer `PING` (and finish loading) after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`wait_for_sync`] waits for a replica to catch up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the module is mounted inside a container of the docker backend.
pub const CONTAINER_MODULE_PATH: &str = "/modules/libtk_redis.so";
/// Image of the docker backend when `TK_TEST_REDIS_IMAGE` is not set.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7.2";
/// Response timeout of the connections handed out by [`Server::conn`] and
/// [`Server::manager`] (redis-rs defaults to 500 ms, too tight for loaded CI machines).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connection timeout of the connections handed out by [`Server`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound for creating a container, pulling its image included.
const DOCKER_START_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_INTERVAL: Duration = Duration::from_millis(25);
const LOG_TAIL_LINES: usize = 60;
const PORT_ATTEMPTS: usize = 10;
const LOG_FILE: &str = "redis.log";

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// Which kind of server the harness starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A `redis-server` child process.
    Local,
    /// A testcontainers container.
    Docker,
}

impl Backend {
    /// The backend selected by `TK_TEST_BACKEND` (`local` when unset or empty).
    ///
    /// # Panics
    /// On an unknown value.
    pub fn from_env() -> Backend {
        let value = std::env::var("TK_TEST_BACKEND").unwrap_or_default();
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "local" => Backend::Local,
            "docker" => Backend::Docker,
            other => panic!("TK_TEST_BACKEND={other:?}: expected `local` or `docker`"),
        }
    }
}

/// The backend selected by `TK_TEST_BACKEND`.
pub fn backend() -> Backend {
    Backend::from_env()
}

/// Prints a note and returns `true` when the docker backend is selected, so a
/// test that only makes sense against a local process can `return` early:
/// `if skip_under_docker("reads the AOF files") { return; }`.
pub fn skip_under_docker(why: &str) -> bool {
    let skip = backend() == Backend::Docker;
    if skip {
        eprintln!("skipped under docker backend: {why}");
    }
    skip
}

/// The cargo workspace root (parent of this crate's manifest directory).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `redis-server` binary of the local backend: `TK_REDIS_SERVER` if set,
/// else `redis-server` (looked up on `PATH`).
pub fn redis_server_bin() -> PathBuf {
    match std::env::var_os("TK_REDIS_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("redis-server"),
    }
}

fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "1" | "true" | "yes" | "on"
    )
}

// ---------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------

/// Path of the module to load (absolute).
///
/// `TK_MODULE_PATH` if set; otherwise `<target>/release/libtk_redis.so`, where
/// `<target>` is `CARGO_TARGET_DIR` if set, else `<workspace>/target`, brought
/// up to date first with `cargo build --release -p tk-redis-module` (a no-op
/// when fresh) once per test process however many tests ask concurrently, so
/// a plain `cargo test` never runs against a stale module. `TK_MODULE_REBUILD=0`
/// skips that build when the file exists.
///
/// # Panics
/// When the module cannot be found or built; the message says why.
pub fn module_path() -> PathBuf {
    static MODULE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match MODULE.get_or_init(resolve_module) {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

fn resolve_module() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TK_MODULE_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return fs::canonicalize(&path).map_err(|e| {
            format!(
                "TK_MODULE_PATH={}: {e} (point it at a built libtk_redis.so, or unset it to \
                 build the workspace's module)",
                path.display()
            )
        });
    }
    let workspace = workspace_dir();
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let so = target.join("release").join("libtk_redis.so");
    let skip_build = std::env::var("TK_MODULE_REBUILD").is_ok_and(|v| v == "0");
    if !so.is_file() || !skip_build {
        build_module(&workspace)?;
        if !so.is_file() {
            return Err(format!(
                "`cargo build --release -p tk-redis-module` succeeded but {} does not exist",
                so.display()
            ));
        }
    }
    fs::canonicalize(&so).map_err(|e| format!("{}: {e}", so.display()))
}

fn build_module(workspace: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "tk-redis-tests: building the module (cargo build --release -p tk-redis-module) in {}",
        workspace.display()
    );
    let output = Command::new(&cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "tk-redis-module"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {cargo:?} to build the module: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "building the module failed ({}): `cargo build --release -p tk-redis-module` in {}\n\
         --- cargo output (tail) ---\n{}",
        output.status,
        workspace.display(),
        tail(&stderr, 80)
    ))
}

// ---------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------

/// Configures a [`Server`] before starting it. Obtained from [`Server::builder`].
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    backend: Backend,
    aof: bool,
    load_module: bool,
    module_args: Vec<String>,
    args: Vec<String>,
    replica_of: Option<(String, u16)>,
    start_timeout: Duration,
    /// `--cluster-enabled yes` (local backend only).
    cluster: bool,
    /// Run as a Sentinel with this initial configuration (local backend only).
    sentinel_config: Option<String>,
    /// Extra environment variables of the server process.
    env: Vec<(String, String)>,
    /// Serves the Functions library in place of the module (functions
    /// mode, [`crate::mode`]): loaded after each start, and `TK.*` commands
    /// on its connections sent as `FCALL`s.
    library: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            backend: Backend::from_env(),
            aof: false,
            load_module: true,
            module_args: Vec::new(),
            args: Vec::new(),
            replica_of: None,
            start_timeout: START_TIMEOUT,
            cluster: false,
            sentinel_config: None,
            env: Vec::new(),
            library: false,
        }
    }
}

impl ServerBuilder {
    /// `true`: `--appendonly yes --appendfsync always`, so every acknowledged
    /// write survives [`Server::restart`] (which kills the process).
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// Adds a config directive, e.g. `.arg("--maxmemory", "10mb")`. The leading
    /// `--` may be omitted. Extra arguments come last, so they override the
    /// harness's defaults.
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let name = if name.starts_with("--") {
            name
        } else {
            format!("--{name}")
        };
        self.args.push(name);
        self.args.push(value.into());
        self
    }

    /// Adds raw command-line arguments verbatim, e.g. `["--save", "900 1"]`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the server process (the container's
    /// under docker), e.g. `.env("RUST_BACKTRACE", "1")`.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Adds an argument passed to the module (`--loadmodule <path> <arg>...`).
    pub fn module_arg(mut self, arg: impl Into<String>) -> Self {
        self.module_args.push(arg.into());
        self
    }

    /// Starts a plain Redis without the module.
    pub fn without_module(mut self) -> Self {
        self.load_module = false;
        self
    }

    /// Makes the server a replica of `primary` (`--replicaof`).
    pub fn replica_of(mut self, primary: &Server) -> Self {
        self.replica_of = Some(primary.repl_endpoint.clone());
        self
    }

    /// Starts a Redis Cluster node (`--cluster-enabled yes`, its `nodes.conf`
    /// in the server's directory, the cluster bus on a free port of its
    /// own). Local backend only. See [`crate::topology::Cluster`].
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Starts a Sentinel (`redis-server sentinel.conf --sentinel`) whose
    /// configuration file starts as `config` (Sentinel rewrites it, and a
    /// restarted Sentinel keeps what it learned). No module is loaded.
    /// Local backend only. See [`crate::topology::SentinelGroup`].
    pub fn sentinel(mut self, config: impl Into<String>) -> Self {
        self.sentinel_config = Some(config.into());
        self.load_module = false;
        self
    }

    /// How long to wait for `PING` after starting (default [`START_TIMEOUT`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Overrides the backend chosen by `TK_TEST_BACKEND`.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Starts the server and waits until it answers `PING` with its data loaded.
    ///
    /// # Panics
    /// When it does not come up; the message carries the tail of its log
    /// (e.g. the reason the module failed to load).
    pub async fn start(self) -> Server {
        Server::launch(self).await
    }

    /// The directives shared by both backends (everything but port, bind and dir).
    fn common_args(&self, module: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.sentinel_config.is_some() {
            out.extend(["--daemonize", "no"].map(String::from));
            out.extend(self.args.iter().cloned());
            return out;
        }
        let mut push = |items: &[&str]| out.extend(items.iter().map(|s| s.to_string()));
        push(&["--save", ""]);
        if self.aof {
            push(&["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            push(&["--appendonly", "no"]);
        }
        // DEBUG from "local" connections only; a container is reached from
        // outside through the port mapping, so there it has to be "yes".
        let debug = match self.backend {
            Backend::Local => "local",
            Backend::Docker => "yes",
        };
        push(&["--daemonize", "no", "--enable-debug-command", debug]);
        // A primary otherwise waits 5 s for more replicas before a full sync.
        push(&["--repl-diskless-sync-delay", "0"]);
        if let (true, Some(module)) = (self.load_module, module) {
            push(&["--loadmodule", module]);
            out.extend(self.module_args.iter().cloned());
        }
        if let Some((host, port)) = &self.replica_of {
            out.extend(["--replicaof".to_string(), host.clone(), port.to_string()]);
        }
        out.extend(self.args.iter().cloned());
        out
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

enum Process {
    Local(Option<Child>),
    Docker(Option<Box<DockerServer>>),
}

struct DockerServer {
    container: ContainerAsync<GenericImage>,
    log: Arc<Mutex<DockerLog>>,
}

/// A running Redis with the module loaded; killed (and its directory removed) on drop.
pub struct Server {
    config: ServerBuilder,
    host: String,
    port: u16,
    /// Where a replica reaches this server (a container address under docker).
    repl_endpoint: (String, u16),
    client: Client,
    process: Process,
    dir_path: PathBuf,
    dir: Option<TempDir>,
    /// Up and running (a failed start reports its log in its own panic).
    running: bool,
    /// The cluster bus port of a cluster node (kept across restarts).
    cluster_bus_port: Option<u16>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("backend", &self.config.backend)
            .field("addr", &self.addr())
            .field("dir", &self.dir_path)
            .field("pid", &self.pid())
            .finish()
    }
}

impl Server {
    /// A builder for a server with extra settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with the default settings (see [`ServerBuilder::start`]).
    pub async fn start() -> Server {
        Server::builder().start().await
    }

    /// Starts a replica of `primary` with the module loaded. Call
    /// [`wait_for_sync`] before reading from it.
    pub async fn replica_of(primary: &Server) -> Server {
        Server::builder().replica_of(primary).start().await
    }

    async fn launch(mut config: ServerBuilder) -> Server {
        if config.load_module && mode() == Mode::Functions {
            config.load_module = false;
            config.library = true;
        }
        let dir = tempfile::Builder::new()
            .prefix("tk-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let dir_path = dir.path().to_path_buf();
        let mut server = Server {
            host: "127.0.0.1".to_string(),
            port: 0,
            repl_endpoint: ("127.0.0.1".to_string(), 0),
            client: Client::open("redis://127.0.0.1:1/").expect("static URL"),
            process: Process::Local(None),
            dir_path,
            dir: Some(dir),
            running: false,
            cluster_bus_port: None,
            config,
        };
        let special = server.config.cluster || server.config.sentinel_config.is_some();
        match server.config.backend {
            Backend::Local => server.start_local(None).await,
            Backend::Docker if special => {
                panic!("cluster nodes and sentinels run on the local backend only")
            }
            Backend::Docker => server.start_docker().await,
        }
        server.running = true;
        server.load_library().await;
        server
    }

    /// Whether this server serves the Functions library in place of the
    /// module (functions mode, see [`crate::mode`]).
    pub fn serves_library(&self) -> bool {
        self.config.library
    }

    /// Functions mode: `FUNCTION LOAD REPLACE` of the library after a
    /// start, a restart or a revive. A replica gets it from its primary
    /// (and refuses the load: `READONLY`).
    async fn load_library(&self) {
        if !self.config.library {
            return;
        }
        match crate::functions::try_load_library(&mut self.conn().await).await {
            Ok(_) => {}
            Err(e) if e.code() == Some("READONLY") => {}
            Err(e) => panic!("FUNCTION LOAD of tk.lua on {} failed: {e}", self.addr()),
        }
    }

    /// The backend this server runs on.
    pub fn backend(&self) -> Backend {
        self.config.backend
    }

    /// The port clients connect to (the mapped host port under docker).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host clients connect to (`127.0.0.1` for the local backend).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port`, e.g. `127.0.0.1:40123`.
    pub fn addr(&self) -> String {
        format!("{}:{}", url_host(&self.host), self.port)
    }

    /// `redis://host:port/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr())
    }

    /// A client for this server.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A fresh multiplexed connection (response timeout [`RESPONSE_TIMEOUT`]).
    /// A connection dropped while it is being set up (e.g. Sentinel killing
    /// the node's clients as it reconfigures it: `broken pipe` in the
    /// handshake) is transient, so it is retried for up to
    /// [`CONNECT_TIMEOUT`].
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn conn(&self) -> Conn {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match self.try_conn().await {
                Ok(conn) => return conn,
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(e) => panic!("cannot connect to redis at {}: {e}", self.addr()),
            }
        }
    }

    /// One attempt at [`Server::conn`], returning the error, for loops that
    /// poll a server which may be restarting or being reconfigured.
    pub async fn try_conn(&self) -> RedisResult<Conn> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await?;
        Ok(Conn::new(conn, self.config.library))
    }

    /// A fresh multiplexed connection authenticated as the ACL user `user`
    /// (created beforehand with `ACL SETUSER`).
    ///
    /// # Panics
    /// When the server cannot be reached or refuses the credentials.
    pub async fn conn_as(&self, user: &str, password: &str) -> Conn {
        let url = format!("redis://{user}:{password}@{}/", self.addr());
        let conn = Client::open(url)
            .unwrap_or_else(|e| panic!("bad credentials for {user}: {e}"))
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to redis at {} as {user}: {e}", self.addr())
            });
        Conn::new(conn, self.config.library)
    }

    /// A fresh connection manager (reconnects by itself, e.g. across [`Server::restart`]
    /// when the port stays the same).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn manager(&self) -> ConnectionManager {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.client
            .get_connection_manager_with_config(config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to redis at {}: {e}", self.addr()))
    }

    /// The server's log so far (stdout and stderr; every run of the server
    /// across restarts), e.g. to look for the module's warnings.
    pub fn log(&self) -> String {
        match &self.process {
            Process::Docker(Some(docker)) => docker.log.lock().expect("log lock").text(),
            _ => read_file_lossy(&self.log_path(), 0),
        }
    }

    /// The server's own temporary directory. Under the local backend it is the
    /// server's `--dir` (data, AOF) and holds `redis.log`; under docker it is a
    /// scratch directory on the host (the data lives inside the container).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The process id of the local `redis-server` (`None` under docker).
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Local(Some(child)) => Some(child.id()),
            _ => None,
        }
    }

    /// `INFO <section>` of this server as a map (see [`info_section`]).
    pub async fn info(&self, section: &str) -> HashMap<String, String> {
        info_section(&mut self.conn().await, section).await
    }

    /// Kills the server (no shutdown, no save: like a crash) and starts it
    /// again on the same data directory and port (a new port only if the old
    /// one was taken meanwhile), with the same arguments; returns once it
    /// answers `PING` with its data loaded. Open connections break; take new
    /// ones (a [`ConnectionManager`] reconnects by itself when the port is unchanged).
    /// With [`ServerBuilder::aof`] every acknowledged write survives.
    pub async fn restart(&mut self) {
        self.running = false;
        match self.config.backend {
            Backend::Local => {
                if let Process::Local(child) = &mut self.process {
                    if let Some(child) = child.take() {
                        kill_and_wait(child);
                    }
                }
                let port = self.port;
                self.start_local(Some(port)).await;
            }
            Backend::Docker => self.restart_docker().await,
        }
        self.running = true;
        self.load_library().await;
    }

    /// Kills the server with SIGKILL (a crash: no shutdown, no save) and
    /// leaves it down; [`Server::revive`] starts it again. Local backend only.
    /// Works on a [paused](Server::pause) server too.
    pub fn kill(&mut self) {
        self.running = false;
        match &mut self.process {
            Process::Local(child) => {
                if let Some(child) = child.take() {
                    kill_and_wait(child);
                }
            }
            Process::Docker(_) => panic!("kill: local backend only"),
        }
    }

    /// Starts a server stopped by [`Server::kill`] again, on the same port and
    /// data directory with the same arguments (a cluster node keeps its
    /// identity through `nodes.conf`, a Sentinel its rewritten configuration).
    pub async fn revive(&mut self) {
        assert!(!self.running, "revive: the server is running");
        let port = self.port;
        self.start_local(Some(port)).await;
        self.running = true;
        self.load_library().await;
    }

    /// Whether the server is up (not killed by [`Server::kill`]).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the local server with SIGSTOP: it keeps its port and its
    /// connections (the kernel even accepts new ones and buffers what
    /// clients send) but processes nothing until [`Server::resume`], so to
    /// a client it hangs rather than disappears. What was sent meanwhile
    /// runs once it resumes. [`Server::kill`], [`Server::restart`] and
    /// dropping still work (SIGKILL ends a stopped process). Anything that
    /// talks to a paused server (e.g. [`Server::info`]) waits until it is
    /// resumed. Local backend only.
    ///
    /// # Panics
    /// Under docker, or when the server is not running.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP, "pause");
    }

    /// Continues a server stopped by [`Server::pause`] (SIGCONT).
    ///
    /// # Panics
    /// Under docker, or when the server is not running.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT, "resume");
    }

    fn signal(&self, signal: libc::c_int, what: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{what}: {} is not a running local process", self.addr()));
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: signals our own child process, which has not been reaped
        // (it is still held in `self.process`), so the pid is its own.
        if unsafe { libc::kill(pid, signal) } != 0 {
            panic!("{what} {}: {}", self.addr(), io::Error::last_os_error());
        }
    }

    /// `INFO commandstats` of this server for `command` (see [`command_stats`]).
    pub async fn command_stats(&self, command: &str) -> CommandStats {
        command_stats(&mut self.conn().await, command).await
    }

    fn log_path(&self) -> PathBuf {
        self.dir_path.join(LOG_FILE)
    }

    fn set_endpoint(&mut self, host: String, port: u16, repl_endpoint: (String, u16)) {
        self.client = Client::open(format!("redis://{}:{port}/", url_host(&host)))
            .unwrap_or_else(|e| panic!("invalid redis address {host}:{port}: {e}"));
        self.host = host;
        self.port = port;
        self.repl_endpoint = repl_endpoint;
    }

    // --- local backend -----------------------------------------------------

    fn local_command(&self, port: u16, log: &File) -> io::Result<Command> {
        let module = if self.config.load_module {
            Some(module_path().to_string_lossy().into_owned())
        } else {
            None
        };
        let mut cmd = Command::new(redis_server_bin());
        if let Some(config) = &self.config.sentinel_config {
            // Sentinel rewrites its file; a revived Sentinel keeps what it learned.
            let path = self.dir_path.join("sentinel.conf");
            if !path.exists() {
                fs::write(&path, config)?;
            }
            cmd.arg(&path).arg("--sentinel");
        }
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir_path)
            .args(self.config.common_args(module.as_deref()))
            .current_dir(&self.dir_path)
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
        if self.config.cluster {
            let bus_port = self
                .cluster_bus_port
                .expect("bus port chosen before spawning");
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .arg("--cluster-port")
            .arg(bus_port.to_string());
        }
        Ok(cmd)
    }

    /// Spawns `redis-server` (on `preferred_port` first, if given) and waits
    /// until it is ready; moves to another port when the chosen one is taken.
    async fn start_local(&mut self, preferred_port: Option<u16>) {
        let log_path = self.log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        for attempt in 0..PORT_ATTEMPTS {
            let port = match preferred_port {
                Some(port) if attempt == 0 => port,
                _ => free_port(),
            };
            if self.config.cluster && (self.cluster_bus_port.is_none() || attempt > 0) {
                self.cluster_bus_port = Some(free_port());
            }
            let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            let cmd = self
                .local_command(port, &log)
                .unwrap_or_else(|e| panic!("cannot set up redis-server's output: {e}"));
            let mut child = match spawn_tied_to_process(cmd) {
                Ok(child) => child,
                Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                    "redis-server not found ({}): install it (apt-get install redis-server) \
                     or set TK_REDIS_SERVER to its path",
                    redis_server_bin().display()
                ),
                Err(e) => panic!("cannot run {}: {e}", redis_server_bin().display()),
            };
            let outcome = wait_local_ready(
                &mut child,
                port,
                &log_path,
                log_start,
                self.config.start_timeout,
            )
            .await;
            match outcome {
                LocalStartup::Ready => {
                    self.process = Process::Local(Some(child));
                    self.set_endpoint(
                        "127.0.0.1".to_string(),
                        port,
                        ("127.0.0.1".to_string(), port),
                    );
                    return;
                }
                LocalStartup::PortTaken => {
                    kill_and_wait(child);
                }
                LocalStartup::Failed(why) => {
                    kill_and_wait(child);
                    panic!(
                        "redis-server on 127.0.0.1:{port} did not start: {why}\n\
                         command: {} {}\n--- {} (tail) ---\n{}",
                        redis_server_bin().display(),
                        shell_words(&self.config.common_args(Some("<module>"))),
                        log_path.display(),
                        tail(&read_file_lossy(&log_path, log_start), LOG_TAIL_LINES)
                    );
                }
            }
        }
        panic!("redis-server could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts");
    }

    // --- docker backend ----------------------------------------------------

    async fn start_docker(&mut self) {
        let image_ref =
            std::env::var("TK_TEST_REDIS_IMAGE").unwrap_or_else(|_| DEFAULT_REDIS_IMAGE.into());
        let image_ref = if image_ref.trim().is_empty() {
            DEFAULT_REDIS_IMAGE.to_string()
        } else {
            image_ref.trim().to_string()
        };
        let (name, tag) = split_image_ref(&image_ref);

        // Images not built like the official one keep protected mode on, which
        // refuses clients from outside the container. It comes first so that
        // the builder's arguments can still override it.
        let mut cmd: Vec<String> = ["redis-server", "--protected-mode", "no"]
            .into_iter()
            .map(String::from)
            .collect();
        cmd.extend(self.config.common_args(Some(CONTAINER_MODULE_PATH)));

        let log = Arc::new(Mutex::new(DockerLog::default()));
        let consumer_log = Arc::clone(&log);
        let mut request = GenericImage::new(name, tag)
            .with_exposed_port(6379.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_network("bridge")
            .with_cmd(cmd.clone())
            .with_startup_timeout(DOCKER_START_TIMEOUT.max(self.config.start_timeout))
            .with_log_consumer(move |frame: &LogFrame| {
                if let Ok(mut log) = consumer_log.lock() {
                    log.append(0, frame.bytes());
                }
            });
        for (name, value) in &self.config.env {
            request = request.with_env_var(name, value);
        }
        if self.config.load_module {
            let module = module_path();
            request = request.with_mount(
                Mount::bind_mount(module.to_string_lossy(), CONTAINER_MODULE_PATH)
                    .with_access_mode(AccessMode::ReadOnly),
            );
        }
        let container = match request.start().await {
            Ok(container) => container,
            Err(e) => {
                // Give the log consumer a moment to store the last frames.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let text = log.lock().map(|l| l.text()).unwrap_or_default();
                panic!(
                    "redis container ({image_ref}) did not start: {e}\ncommand: {}\n\
                     --- container log (tail) ---\n{}",
                    shell_words(&cmd),
                    tail(&text, LOG_TAIL_LINES)
                );
            }
        };
        self.process = Process::Docker(Some(Box::new(DockerServer { container, log })));
        self.await_docker_ready().await;
    }

    async fn restart_docker(&mut self) {
        let Process::Docker(Some(docker)) = &self.process else {
            panic!("restart: the container is gone");
        };
        if let Err(e) = docker.container.stop_with_timeout(Some(0)).await {
            panic!(
                "restart: cannot stop container {}: {e}",
                docker.container.id()
            );
        }
        if let Err(e) = docker.container.start().await {
            panic!(
                "restart: cannot start container {} again: {e}",
                docker.container.id()
            );
        }
        // The consumer registered at creation stops with the first run; follow
        // the whole log (every run) afresh.
        let generation = docker.log.lock().expect("log lock").next_generation();
        for stream in [docker.container.stdout(true), docker.container.stderr(true)] {
            let log = Arc::clone(&docker.log);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut stream = stream;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    match log.lock() {
                        Ok(mut log) => log.append(generation, &buf[..n]),
                        Err(_) => break,
                    }
                }
            });
        }
        self.await_docker_ready().await;
    }

    /// Reads the container's address and port mapping, then waits for `PING`.
    async fn await_docker_ready(&mut self) {
        let Process::Docker(Some(docker)) = &self.process else {
            unreachable!("docker backend without a container");
        };
        let container = &docker.container;
        let id = container.id().to_string();
        let port = container
            .get_host_port_ipv4(6379)
            .await
            .unwrap_or_else(|e| panic!("container {id}: no host port for 6379: {e}"));
        let host = match std::env::var("TK_TEST_DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => host.trim().to_string(),
            _ => match container.get_host().await {
                Ok(host) => host.to_string(),
                Err(e) => panic!("container {id}: cannot tell the docker host: {e}"),
            },
        };
        let host = if host == "localhost" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let bridge_ip = container
            .get_bridge_ip_address()
            .await
            .unwrap_or_else(|e| panic!("container {id}: no bridge address: {e}"));
        self.set_endpoint(host, port, (bridge_ip.to_string(), 6379));

        let deadline = Instant::now() + self.config.start_timeout;
        loop {
            match probe(&self.client).await {
                Ok(state) if !state.loading => return,
                _ => {}
            }
            if Instant::now() >= deadline {
                panic!(
                    "redis container {id} at {} did not answer PING within {:?}\n\
                     --- container log (tail) ---\n{}",
                    self.addr(),
                    self.config.start_timeout,
                    tail(&self.log(), LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running && std::thread::panicking() {
            eprintln!(
                "--- redis log of {} ({}), tail ---\n{}",
                self.addr(),
                self.dir_path.display(),
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
        match &mut self.process {
            Process::Local(child) => {
                if let Some(child) = child.take() {
                    kill_and_wait(child);
                }
            }
            Process::Docker(docker) => {
                if let Some(docker) = docker.take() {
                    drop_container(docker);
                }
            }
        }
        if env_flag("TK_TEST_KEEP_DIR") {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("tk-redis-tests: kept {}", kept.display());
            }
        }
    }
}

/// Removes a container; testcontainers needs a tokio runtime context for that.
fn drop_container(docker: Box<DockerServer>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(docker);
        return;
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let _guard = runtime.enter();
            drop(docker);
        }
        Err(e) => {
            eprintln!(
                "tk-redis-tests: cannot remove container {} (no tokio runtime: {e})",
                docker.container.id()
            );
            std::mem::forget(docker);
        }
    }
}

#[derive(Default)]
struct DockerLog {
    generation: u64,
    data: Vec<u8>,
}

impl DockerLog {
    fn append(&mut self, generation: u64, bytes: &[u8]) {
        if generation == self.generation {
            self.data.extend_from_slice(bytes);
        }
    }

    /// Starts over: writers of older generations are ignored from now on.
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.data.clear();
        self.generation
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

// ---------------------------------------------------------------------------
// Replication
// ---------------------------------------------------------------------------

/// Polls `check` every 50 ms until it returns `Ok`, or panics after
/// `timeout` with the last thing `check` reported (its `Err`).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    const POLL: Duration = Duration::from_millis(50);
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            panic!("{what}: not reached within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `replica` is connected to `primary` and has processed
/// everything the primary had written when this was called: its
/// `master_link_status` is `up` and its `master_repl_offset` has reached the
/// primary's (acknowledged through `WAIT 1`). Polls for up to [`SYNC_TIMEOUT`].
///
/// # Panics
/// When the replica does not catch up in time; the message has both sides'
/// `INFO replication` and the replica's log.
pub async fn wait_for_sync(primary: &Server, replica: &Server) {
    let mut p = primary.conn().await;
    let mut r = replica.conn().await;
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let last = match sync_state(&mut p, &mut r).await {
            Ok(None) => return,
            Ok(Some(state)) => state,
            Err(e) => format!("error: {e}"),
        };
        if Instant::now() >= deadline {
            panic!(
                "replica {} did not sync with primary {} within {SYNC_TIMEOUT:?}: {last}\n\
                 --- replica log (tail) ---\n{}\n--- primary log (tail) ---\n{}",
                replica.addr(),
                primary.addr(),
                tail(&replica.log(), LOG_TAIL_LINES),
                tail(&primary.log(), LOG_TAIL_LINES)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `Ok(None)` when in sync, `Ok(Some(description))` when not yet.
async fn sync_state(primary: &mut Conn, replica: &mut Conn) -> RedisResult<Option<String>> {
    let r = try_info_section(replica, "replication").await?;
    let get = |map: &HashMap<String, String>, key: &str| map.get(key).cloned().unwrap_or_default();
    if get(&r, "master_link_status") != "up" || get(&r, "master_sync_in_progress") == "1" {
        return Ok(Some(format!(
            "replica: role={} master_link_status={} master_sync_in_progress={}",
            get(&r, "role"),
            get(&r, "master_link_status"),
            get(&r, "master_sync_in_progress")
        )));
    }
    // Read the primary's offset first: the replica is in sync once it has
    // processed at least that much (the primary keeps moving, e.g. pings).
    let p = try_info_section(primary, "replication").await?;
    let target: i64 = get(&p, "master_repl_offset").parse().unwrap_or(i64::MAX);
    let _acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query_async(primary)
        .await?;
    let r = try_info_section(replica, "replication").await?;
    let reached: i64 = get(&r, "master_repl_offset").parse().unwrap_or(-1);
    if reached >= target {
        Ok(None)
    } else {
        Ok(Some(format!(
            "primary master_repl_offset={target}, replica master_repl_offset={reached}"
        )))
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `INFO <section>` as a map of its `field:value` lines (section headers and
/// blank lines skipped). `section` may be a module name (e.g. `"tk"`), which
/// returns all of that module's sections.
///
/// # Panics
/// When the command fails.
pub async fn info_section<C: ConnectionLike>(
    conn: &mut C,
    section: &str,
) -> HashMap<String, String> {
    try_info_section(conn, section)
        .await
        .unwrap_or_else(|e| panic!("INFO {section} failed: {e}"))
}

/// Like [`info_section`], returning the error instead of panicking.
pub async fn try_info_section<C: ConnectionLike>(
    conn: &mut C,
    section: &str,
) -> RedisResult<HashMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    Ok(parse_info(&text))
}

/// Parses the text of an `INFO` reply into a map (through the redis
/// crate's [`redis::InfoDict`], as the client's health check does).
pub fn parse_info(text: &str) -> HashMap<String, String> {
    redis::InfoDict::new(text)
        .iter()
        .filter_map(|(name, value)| {
            let value = redis::from_redis_value_ref::<String>(value).ok()?;
            Some((name.clone(), value))
        })
        .collect()
}

/// `total_commands_processed` from `INFO stats` of the server behind
/// `conn` (this INFO included). Sentinels report it too, though they have
/// no `commandstats`.
///
/// # Panics
/// When `INFO` fails or the field is missing.
pub async fn commands_processed<C: ConnectionLike>(conn: &mut C) -> u64 {
    info_section(conn, "stats").await["total_commands_processed"]
        .parse()
        .expect("total_commands_processed")
}

/// One command's line of `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandStats {
    /// Times the command ran (`calls`), whether it succeeded or not.
    pub calls: u64,
    /// Times it was refused before running (`rejected_calls`): unknown
    /// arguments, ACL, OOM, and the redirections and refusals of a cluster
    /// or a replica (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`).
    pub rejected_calls: u64,
    /// Times it ran and replied with an error (`failed_calls`).
    pub failed_calls: u64,
    /// Microseconds spent running it, all calls together (`usec`).
    pub usec: u64,
}

/// Parses the text of `INFO commandstats` into a map from command name,
/// lowercased (`tk.ratelimit`, `sentinel|masters`: Redis 7 counts each
/// subcommand on its own; module commands keep the case they were
/// registered with, hence the lowercasing), to its counts.
pub fn parse_commandstats(text: &str) -> HashMap<String, CommandStats> {
    parse_info(text)
        .into_iter()
        .filter_map(|(field, value)| {
            let name = field.strip_prefix("cmdstat_")?.to_ascii_lowercase();
            let counts: HashMap<&str, u64> = value
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect();
            let count = |k: &str| counts.get(k).copied().unwrap_or(0);
            Some((
                name,
                CommandStats {
                    calls: count("calls"),
                    rejected_calls: count("rejected_calls"),
                    failed_calls: count("failed_calls"),
                    usec: count("usec"),
                },
            ))
        })
        .collect()
}

/// The `INFO commandstats` counts of `command` (any case;
/// `name|subcommand` for a subcommand) on the server behind `conn`; all
/// zero when it was never called. (Sentinels of Redis 7.0 have no
/// commandstats section: there this is always zero.)
///
/// # Panics
/// When `INFO` fails.
pub async fn command_stats<C: ConnectionLike>(conn: &mut C, command: &str) -> CommandStats {
    all_command_stats(conn)
        .await
        .remove(&command.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Every command's `INFO commandstats` counts on the server behind `conn`,
/// by lowercased name (see [`parse_commandstats`]).
///
/// # Panics
/// When `INFO` fails.
pub async fn all_command_stats<C: ConnectionLike>(conn: &mut C) -> HashMap<String, CommandStats> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("INFO commandstats failed: {e}"));
    parse_commandstats(&text)
}

/// `DEBUG DIGEST`: a digest of the whole dataset (40 hex digits; all zeros
/// when empty). Equal digests mean equal datasets (module types included,
/// when they implement the digest callback).
///
/// # Panics
/// When the command fails.
pub async fn debug_digest<C: ConnectionLike>(conn: &mut C) -> String {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("DEBUG DIGEST failed: {e}"))
}

/// `DEBUG DIGEST-VALUE key`: the digest of one key's value.
///
/// # Panics
/// When the command fails.
pub async fn debug_digest_value<C: ConnectionLike>(conn: &mut C, key: &str) -> String {
    let digests: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("DEBUG DIGEST-VALUE {key} failed: {e}"));
    digests.into_iter().next().unwrap_or_default()
}

/// Whether `err` is a connection dropped by the peer (reset, broken pipe,
/// closed mid-reply): what a server does to its clients when it is
/// reconfigured, not a sign that it is gone.
pub fn is_transient(err: &redis::RedisError) -> bool {
    // A refused connection means nothing listens: not transient.
    err.is_connection_dropped() && !err.is_connection_refusal()
}

/// The connection settings of [`Server::conn`].
pub fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// `args` joined for display, empty or blank ones quoted.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_file_lossy(path: &Path, from: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let _ = file.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Brackets IPv6 literals for use in URLs and `host:port`.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `name:tag` → (`name`, `tag`); the tag defaults to `latest`; a registry
/// port (`host:5000/redis`) is not taken for a tag.
fn split_image_ref(image: &str) -> (String, String) {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (
            image[..name_start + i].to_string(),
            image[name_start + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The module version `MODULE LIST` and `INFO tk` report for this build
/// (major·10000 + minor·100 + patch of the workspace version).
pub fn module_version() -> i64 {
    let part = |text: &str| text.parse::<i64>().expect("a numeric version part");
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// A port on 127.0.0.1 that was free a moment ago and that this process has
/// not handed out before (redis-server may still lose a race for it: callers retry).
fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|e| panic!("cannot bind a port on 127.0.0.1: {e}"))
            .port();
        if handed_out.lock().expect("port set lock").insert(port) {
            return port;
        }
    }
}

struct ProbeState {
    pid: Option<u32>,
    loading: bool,
}

/// One attempt to talk to the server: PING, then its pid and loading flag.
async fn probe(client: &Client) -> RedisResult<ProbeState> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    let server = try_info_section(&mut conn, "server").await?;
    let persistence = try_info_section(&mut conn, "persistence").await?;
    Ok(ProbeState {
        pid: server.get("process_id").and_then(|v| v.parse().ok()),
        loading: persistence.get("loading").is_some_and(|v| v != "0"),
    })
}

enum LocalStartup {
    Ready,
    PortTaken,
    Failed(String),
}

async fn wait_local_ready(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    log_start: u64,
    timeout: Duration,
) -> LocalStartup {
    let client = Client::open(format!("redis://127.0.0.1:{port}/")).expect("valid URL");
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = read_file_lossy(log_path, log_start);
                if log.contains("Address already in use") {
                    return LocalStartup::PortTaken;
                }
                return LocalStartup::Failed(format!("redis-server exited ({status})"));
            }
            Ok(None) => {}
            Err(e) => return LocalStartup::Failed(format!("cannot check redis-server: {e}")),
        }
        // Only our own process counts: another server may have won the port.
        if let Ok(state) = probe(&client).await {
            if state.pid == Some(pid) && !state.loading {
                return LocalStartup::Ready;
            }
        }
        if Instant::now() >= deadline {
            return LocalStartup::Failed(format!(
                "no PING reply (with data loaded) within {timeout:?}"
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn kill_and_wait(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from one long-lived thread with `PR_SET_PDEATHSIG` set, so
/// the server is killed by the kernel even if this test process dies without
/// running destructors (abort, SIGKILL, a `static` server). The death signal
/// follows the spawning *thread*, hence the dedicated thread that lives as
/// long as the process.
fn spawn_tied_to_process(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("tk-redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    tie_to_parent(&mut cmd);
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
fn tie_to_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec; it only makes
    // async-signal-safe calls (prctl, getppid) and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn tie_to_parent(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Server>();
        check::<ServerBuilder>();
    }

    #[test]
    fn image_refs() {
        assert_eq!(split_image_ref("redis:7.2"), ("redis".into(), "7.2".into()));
        assert_eq!(split_image_ref("redis"), ("redis".into(), "latest".into()));
        assert_eq!(
            split_image_ref("localhost:5000/team/redis"),
            ("localhost:5000/team/redis".into(), "latest".into())
        );
        assert_eq!(
            split_image_ref("localhost:5000/redis:7.2-bookworm"),
            ("localhost:5000/redis".into(), "7.2-bookworm".into())
        );
    }

    #[test]
    fn info_parsing() {
        let text = "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n\r\n# Tk\r\ntk_keys:3\r\n";
        let info = parse_info(text);
        assert_eq!(info["redis_version"], "7.0.15");
        assert_eq!(info["process_id"], "42");
        assert_eq!(info["tk_keys"], "3");
        assert_eq!(info.len(), 3);
    }

    #[test]
    fn commandstats_parsing() {
        let text = "# Commandstats\r\n\
            cmdstat_TK.RATELIMIT.ALL:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n\
            cmdstat_sentinel|masters:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=2\r\n";
        let stats = parse_commandstats(text);
        assert_eq!(
            stats["tk.ratelimit.all"],
            CommandStats {
                calls: 0,
                rejected_calls: 1,
                failed_calls: 0,
                usec: 0,
            }
        );
        assert_eq!(stats["sentinel|masters"].calls, 3);
        assert_eq!(stats["sentinel|masters"].usec, 9);
        assert_eq!(stats["sentinel|masters"].failed_calls, 2);
        assert_eq!(stats.len(), 2);
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn builder_args() {
        let b = Server::builder()
            .aof(true)
            .arg("maxmemory", "10mb")
            .arg("--maxmemory-policy", "allkeys-lru")
            .module_arg("x");
        let args = b.common_args(Some("/m.so"));
        let joined = args.join(" ");
        assert!(
            joined.contains("--appendonly yes --appendfsync always"),
            "{joined}"
        );
        assert!(joined.contains("--loadmodule /m.so x"), "{joined}");
        assert!(
            joined.ends_with("--maxmemory 10mb --maxmemory-policy allkeys-lru"),
            "{joined}"
        );
        let plain = Server::builder()
            .without_module()
            .common_args(Some("/m.so"));
        assert!(!plain.iter().any(|a| a == "--loadmodule"));
    }
}
