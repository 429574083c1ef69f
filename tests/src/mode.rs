//! Which backend serves the tk commands in a test run: the module, or the
//! Functions library on a plain server (`TK_TEST_MODE=functions`).
//!
//! In functions mode every server the harness starts "with the module"
//! starts without it and gets the library loaded instead, and its
//! connections ([`Conn`]) send each `TK.*` command as the library's
//! `FCALL` (the client's own translation, `tk_redis::functions::to_fcall`).
//! So a suite written against the module runs unchanged against the
//! library: the same arguments, replies, errors and stored data. The typed
//! clients need nothing: in auto mode they find no module and use the
//! library by themselves.
//!
//! What only the module has (`INFO tk`, key specs, command docs, the
//! reclaim timer, module arguments) is skipped with [`skip_in_functions_mode`],
//! which says why.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};
use tk_redis::functions::{function_name, to_fcall};

/// The backend of this test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The module, loaded with `--loadmodule` (the default).
    Module,
    /// The Functions library on a server without the module.
    Functions,
}

/// `TK_TEST_MODE`: `module` (default, also when unset or empty) or `functions`.
///
/// # Panics
/// On any other value.
pub fn mode() -> Mode {
    match std::env::var("TK_TEST_MODE").unwrap_or_default().as_str() {
        "" | "module" => Mode::Module,
        "functions" => Mode::Functions,
        other => panic!("TK_TEST_MODE={other:?}: expected `module` or `functions`"),
    }
}

/// `true` (after printing why) when this run uses the library, for a test
/// of something only the module has. Use as
/// `if skip_in_functions_mode("INFO tk is the module's") { return; }`.
pub fn skip_in_functions_mode(why: &str) -> bool {
    if mode() == Mode::Functions {
        eprintln!("SKIPPED in TK_TEST_MODE=functions: {why}");
        return true;
    }
    false
}

/// A connection to a test server. On a server that serves the library in
/// place of the module (functions mode), `TK.*` commands are sent as
/// `FCALL`s, alone or in pipelines and transactions; everything else, and
/// every command on a module server, goes out as it is.
///
/// `C` is the connection underneath: a plain multiplexed connection, the
/// client crate's `tk_redis::Connection` ([`crate::topology::Topology::connection`])
/// or a cluster connection.
#[derive(Clone)]
pub struct Conn<C = MultiplexedConnection> {
    inner: C,
    to_library: bool,
}

impl<C: Clone> Conn<C> {
    /// `inner`, translating `TK.*` commands when `to_library`.
    pub fn new(inner: C, to_library: bool) -> Conn<C> {
        Conn { inner, to_library }
    }

    /// The connection underneath, which sends commands unchanged.
    pub fn plain(&self) -> C {
        self.inner.clone()
    }
}

/// `cmd` as the library's `FCALL` when it is a tk command (also inside
/// `COMMAND GETKEYS`, so a test of the declared keys checks what Cluster
/// routing and ACLs see of the `FCALL`); `None` otherwise (the server then
/// answers an unknown command, as a server without the module does).
fn translated(cmd: &Cmd) -> Option<Cmd> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            Arg::Simple(bytes) => bytes,
            _ => b"".as_slice(),
        })
        .collect();
    let is = |index: usize, word: &str| {
        args.get(index)
            .is_some_and(|arg| arg.eq_ignore_ascii_case(word.as_bytes()))
    };
    if is(0, "COMMAND") && is(1, "GETKEYS") {
        let inner = translated(&crate::raw::command(&args[2..]))?;
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYS");
        for arg in inner.args_iter() {
            if let Arg::Simple(bytes) = arg {
                getkeys.arg(bytes);
            }
        }
        return Some(getkeys);
    }
    let name = *args.first()?;
    if name.len() < 3 || !name[..3].eq_ignore_ascii_case(b"tk.") {
        return None;
    }
    match to_fcall(cmd) {
        Ok(fcall) => Some(fcall),
        // A TK.RATELIMIT.ALL whose numkeys is not a number: an app would
        // send it as FCALL's numkeys, which Redis checks first (a
        // difference documented in tk.lua's header).
        Err(_) if name.eq_ignore_ascii_case(b"TK.RATELIMIT.ALL") => {
            let mut fcall = redis::cmd("FCALL");
            fcall.arg(function_name("TK.RATELIMIT.ALL"));
            fcall.arg(&args[1..]);
            Some(fcall)
        }
        Err(_) => None,
    }
}

impl<C: ConnectionLike + Send> ConnectionLike for Conn<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self.to_library.then(|| translated(cmd)).flatten() {
            Some(fcall) => Box::pin(async move { self.inner.req_packed_command(&fcall).await }),
            None => self.inner.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let fcalls: Vec<Option<Cmd>> = if self.to_library {
            pipeline.cmd_iter().map(translated).collect()
        } else {
            Vec::new()
        };
        if fcalls.iter().all(Option::is_none) {
            return self.inner.req_packed_commands(pipeline, offset, count);
        }
        // The same commands in the same places, so `offset` and `count`
        // (and the caller's ignored replies) still line up.
        let mut rewritten = Pipeline::new();
        if pipeline.is_transaction() {
            rewritten.atomic();
        }
        for (cmd, fcall) in pipeline.cmd_iter().zip(fcalls) {
            rewritten.add_command(fcall.unwrap_or_else(|| cmd.clone()));
        }
        Box::pin(async move {
            self.inner
                .req_packed_commands(&rewritten, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Whether this run uses the module: for the checks of what only the
/// module has (`INFO tk` counters, key specs) inside a test whose commands
/// run in both modes.
pub fn module_mode() -> bool {
    mode() == Mode::Module
}
