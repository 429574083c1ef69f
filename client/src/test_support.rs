//! Test doubles shared by the unit tests of every feature module.

use std::sync::{Arc, Mutex};

use redis::aio::ConnectionLike;
use redis::{Arg, Cmd, RedisFuture, RedisResult, Value};

/// A command's arguments as strings (non-UTF-8 arguments panic: the tests
/// only send text).
pub fn args(cmd: &Cmd) -> Vec<String> {
    cmd.args_iter()
        .map(|arg| match arg {
            Arg::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            _ => "<not a plain argument>".to_owned(),
        })
        .collect()
}

type Responder = dyn Fn(&[String]) -> Option<RedisResult<Value>> + Send + Sync;

/// A connection that answers from a closure (`None` = never answers) and
/// records what was sent.
///
/// It plays a server with the tk module: `COMMAND INFO` (how a client in
/// [`TkMode::Auto`](crate::TkMode::Auto) learns the backend) is answered
/// with a known command and not recorded, unless made
/// [`asking`](Fake::asking).
#[derive(Clone)]
pub struct Fake {
    respond: Arc<Responder>,
    sent: Arc<Mutex<Vec<Vec<String>>>>,
    answers_command_info: bool,
}

impl Fake {
    pub fn new(
        respond: impl Fn(&[String]) -> Option<RedisResult<Value>> + Send + Sync + 'static,
    ) -> Self {
        Fake {
            respond: Arc::new(respond),
            sent: Arc::default(),
            answers_command_info: true,
        }
    }

    /// Passes `COMMAND INFO` to the closure (and records it) too.
    pub fn asking(mut self) -> Self {
        self.answers_command_info = false;
        self
    }

    /// Always replies `value`.
    pub fn replying(value: Value) -> Self {
        Fake::new(move |_| Some(Ok(value.clone())))
    }

    /// Replies with `replies` in turn, then repeats the last one.
    pub fn sequence(replies: Vec<RedisResult<Value>>) -> Self {
        let calls = Arc::new(Mutex::new(0usize));
        Fake::new(move |_| {
            let mut calls = calls.lock().unwrap();
            let reply = replies[(*calls).min(replies.len() - 1)].clone();
            *calls += 1;
            Some(reply)
        })
    }

    /// Every command sent so far, as strings.
    pub fn sent(&self) -> Vec<Vec<String>> {
        self.sent.lock().unwrap().clone()
    }
}

impl ConnectionLike for Fake {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let sent = args(cmd);
        if self.answers_command_info && sent.len() > 1 && sent[0] == "COMMAND" && sent[1] == "INFO"
        {
            let known = Value::Array(vec![Value::Array(vec![])]);
            return Box::pin(async move { Ok(known) });
        }
        let reply = (self.respond)(&sent);
        self.sent.lock().unwrap().push(sent);
        Box::pin(async move {
            match reply {
                Some(reply) => reply,
                None => std::future::pending().await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _: &'a redis::Pipeline,
        _: usize,
        _: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        unimplemented!("no pipelines here")
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// An array of integers, as the module replies.
pub fn ints(values: &[i64]) -> Value {
    Value::Array(values.iter().copied().map(Value::Int).collect())
}

/// An error reply such as `ERR ...` or `WRONGTYPE ...`, as Redis sends it.
pub fn error_reply(line: &str) -> Value {
    redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
}
