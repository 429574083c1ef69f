//! The tk Functions library (`client/lua/tk.lua`) in tests: servers that
//! have it loaded, and one way to send a module command either as itself or
//! as the library's `FCALL`, so a test can run the same calls on both and
//! compare the replies.

use redis::aio::ConnectionLike;
use redis::Value;
use tk_redis::functions::{function_name, LIBRARY_SOURCE};

use crate::harness::Server;
use crate::mode::Conn;

/// `FUNCTION LOAD REPLACE` of the library; the library's name, or the
/// server's refusal.
pub async fn try_load_library<C: ConnectionLike>(conn: &mut C) -> redis::RedisResult<String> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY_SOURCE)
        .query_async(conn)
        .await
}

/// [`try_load_library`] that must succeed.
///
/// # Panics
/// When the server refuses it (the message has the server's error).
pub async fn load_library<C: ConnectionLike>(conn: &mut C) -> String {
    try_load_library(conn)
        .await
        .unwrap_or_else(|e| panic!("FUNCTION LOAD REPLACE of tk.lua failed: {e}"))
}

/// A plain server (no module) with the library loaded.
pub async fn functions_server() -> Server {
    let server = Server::builder().without_module().start().await;
    load_library(&mut server.conn().await).await;
    server
}

/// A server with the module loaded and the library too, so the same key can
/// be used through both.
pub async fn module_and_library_server() -> Server {
    let server = Server::start().await;
    load_library(&mut server.conn().await).await;
    server
}

/// Which implementation a call goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The module's command.
    Module,
    /// The library's function, through `FCALL`.
    Library,
}

/// A call of a module command: its name, its keys and its other arguments.
/// TK.RATELIMIT.ALL's `numkeys` is not part of `args`: it is the number of
/// keys (the module form gets it before the keys, FCALL's numkeys is it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub command: &'static str,
    pub keys: Vec<Vec<u8>>,
    pub args: Vec<Vec<u8>>,
}

/// A reply, or the error as "<CODE> <detail>".
pub type Reply = Result<Value, String>;

impl Call {
    pub fn new(command: &'static str, keys: &[&str], args: &[&str]) -> Call {
        Call {
            command,
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        }
    }

    /// With raw byte arguments.
    pub fn bytes(command: &'static str, keys: &[&[u8]], args: &[&[u8]]) -> Call {
        Call {
            command,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            args: args.iter().map(|a| a.to_vec()).collect(),
        }
    }

    /// The command as the module takes it.
    pub fn module_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd(self.command);
        if self.command == "TK.RATELIMIT.ALL" {
            cmd.arg(self.keys.len());
        }
        cmd.arg(&self.keys).arg(&self.args);
        cmd
    }

    /// The same call as the library's `FCALL` (`FCALL_RO` when `read_only`).
    pub fn fcall_cmd(&self, read_only: bool) -> redis::Cmd {
        let mut cmd = redis::cmd(if read_only { "FCALL_RO" } else { "FCALL" });
        cmd.arg(function_name(self.command))
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    pub fn cmd(&self, via: Via) -> redis::Cmd {
        match via {
            Via::Module => self.module_cmd(),
            Via::Library => self.fcall_cmd(false),
        }
    }

    /// Sends the call and returns its reply or error text.
    pub async fn run<C: ConnectionLike>(&self, conn: &mut C, via: Via) -> Reply {
        send(conn, &self.cmd(via)).await
    }
}

/// Sends `cmd`; an error reply comes back as "<CODE> <detail>".
///
/// # Panics
/// On a connection failure (not an error reply).
pub async fn send<C: ConnectionLike>(conn: &mut C, cmd: &redis::Cmd) -> Reply {
    match cmd.query_async::<Value>(conn).await {
        Ok(value) => Ok(value),
        Err(e) if e.code().is_some() => Err(format!(
            "{} {}",
            e.code().unwrap_or_default(),
            e.detail().unwrap_or_default()
        )),
        Err(e) => panic!("{cmd:?}: connection failure {e}"),
    }
}

/// A reply's integers (an array of integers), or `None` for anything else.
pub fn integers(reply: &Reply) -> Option<Vec<i64>> {
    match reply {
        Ok(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The server's clock (`TIME`) in microseconds.
pub async fn server_time_us<C: ConnectionLike>(conn: &mut C) -> i64 {
    let (seconds, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("TIME failed: {e}"));
    seconds * 1_000_000 + micros
}

// ---- plain commands and a pair of servers ----------------------------------------

/// `SET key value`.
pub async fn set(conn: &mut Conn, key: &str, value: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

pub use crate::raw::query;

/// `GET key`.
pub async fn get(conn: &mut Conn, key: &str) -> Option<Vec<u8>> {
    query(conn, &["GET", key]).await
}

/// Every key (`KEYS *`), sorted.
pub async fn sorted_keys(conn: &mut Conn) -> Vec<String> {
    let mut keys: Vec<String> = query(conn, &["KEYS", "*"]).await;
    keys.sort();
    keys
}

/// A module server and a functions server, and a connection to each.
pub struct Pair {
    _module: Server,
    _library: Server,
    pub module: Conn,
    pub library: Conn,
}

impl Pair {
    /// Starts both servers.
    pub async fn start() -> Pair {
        let module = Server::start().await;
        let library = functions_server().await;
        Pair {
            module: module.conn().await,
            library: library.conn().await,
            _module: module,
            _library: library,
        }
    }

    /// The module's server and the library's.
    pub fn servers(&self) -> (&Server, &Server) {
        (&self._module, &self._library)
    }

    /// Runs `call` on both; returns (module's reply, library's reply).
    pub async fn run(&mut self, call: &Call) -> (Reply, Reply) {
        let module = call.run(&mut self.module, Via::Module).await;
        let library = call.run(&mut self.library, Via::Library).await;
        (module, library)
    }

    /// Runs `call` on both and asserts the same reply, exactly.
    pub async fn same(&mut self, call: &Call) -> Reply {
        let (module, library) = self.run(call).await;
        assert_eq!(module, library, "{call:?}");
        module
    }

    /// Sets `key` to `value` on both servers.
    pub async fn set(&mut self, key: &str, value: &[u8]) {
        set(&mut self.module, key, value).await;
        set(&mut self.library, key, value).await;
    }

    /// Runs the plain command `args` on both servers.
    pub async fn both(&mut self, args: &[&str]) {
        let _: Value = query(&mut self.module, args).await;
        let _: Value = query(&mut self.library, args).await;
    }
}

/// Sends `FCALL <name> <numkeys> <args>...` for each case, which must fail
/// with an error starting with its text: calls refused for how FCALL was
/// used (keys outside KEYS, or in the wrong number).
pub async fn assert_fcalls_refused<C: ConnectionLike>(
    conn: &mut C,
    cases: &[(&str, usize, Vec<&str>, &str)],
) {
    for (name, numkeys, args, expected) in cases {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(name).arg(numkeys).arg(args);
        let reply = send(conn, &cmd).await;
        assert!(
            reply.as_ref().is_err_and(|e| e.starts_with(expected)),
            "FCALL {name} {numkeys} {args:?}: {reply:?}"
        );
    }
}

/// Whether the function serving module command `command` is flagged
/// `no-writes` in the loaded library (`FUNCTION LIST`): it then runs
/// through `FCALL_RO`, on replicas too. The library's counterpart of a
/// module command's `readonly` flag.
///
/// # Panics
/// When the library is not loaded or has no such function.
pub async fn runs_read_only<C: ConnectionLike>(conn: &mut C, command: &str) -> bool {
    let listed: Value = query(conn, &["FUNCTION", "LIST", "LIBRARYNAME", "tk"]).await;
    let name = function_name(command);
    let libraries = match listed {
        Value::Array(libraries) => libraries,
        other => panic!("FUNCTION LIST replied {other:?}"),
    };
    for library in libraries {
        let Some(Value::Array(functions)) = field(&library, "functions") else {
            continue;
        };
        for function in functions {
            if field(&function, "name") != Some(Value::BulkString(name.clone().into_bytes())) {
                continue;
            }
            let flags: Vec<String> = match field(&function, "flags") {
                Some(flags) => redis::from_redis_value(flags).expect("flags are strings"),
                None => Vec::new(),
            };
            return flags.iter().any(|flag| flag == "no-writes");
        }
    }
    panic!("the library has no function {name}")
}

/// Asserts which of `commands` the library serves with `no-writes`
/// functions ([`runs_read_only`]): `(command, read_only)` pairs.
pub async fn assert_read_only_functions<C: ConnectionLike>(
    conn: &mut C,
    commands: &[(&str, bool)],
) {
    for (command, read_only) in commands {
        assert_eq!(runs_read_only(conn, command).await, *read_only, "{command}");
    }
}

/// The value of `key` in a RESP2 (flat key/value array) or RESP3 map.
fn field(entry: &Value, key: &str) -> Option<Value> {
    let matches = |k: &Value| {
        matches!(k, Value::BulkString(b) if b == key.as_bytes())
            || matches!(k, Value::SimpleString(s) if s == key)
    };
    match entry {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| matches(&pair[0]))
            .and_then(|pair| pair.get(1).cloned()),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| matches(k))
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}
