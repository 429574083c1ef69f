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
#[derive(Clone)]
pub struct Fake {
    respond: Arc<Responder>,
    sent: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Fake {
    pub fn new(
        respond: impl Fn(&[String]) -> Option<RedisResult<Value>> + Send + Sync + 'static,
    ) -> Self {
        Fake {
            respond: Arc::new(respond),
            sent: Arc::default(),
        }
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

// ---- a fake RESP server -------------------------------------------------

/// What a [`FakeServer`] does with one command.
pub enum Reply {
    /// Sends these bytes (RESP, see [`resp`]).
    Resp(Vec<u8>),
    /// Closes the connection without replying.
    Close,
    /// Never replies (to this command), keeping the connection open.
    Ignore,
}

type Handler = dyn Fn(&[String]) -> Reply + Send + Sync;

/// A TCP server on 127.0.0.1 speaking enough RESP for the redis crate's
/// async connections: every command (an array of bulk strings) is answered
/// by the handler. Dropping it closes the listener and every connection.
pub struct FakeServer {
    port: u16,
    task: tokio::task::AbortHandle,
}

impl FakeServer {
    pub async fn start(handler: impl Fn(&[String]) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(async move {
            // Dropped (aborting every connection) when this task is aborted.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(serve(socket, handler.clone()));
            }
        });
        FakeServer {
            port,
            task: task.abort_handle(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: tokio::net::TcpStream, handler: Arc<Handler>) {
    // readable()/try_read and writable()/try_write: tokio's io-util
    // feature (read/write_all) is not enabled for this crate.
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((command, used)) = parse_command(&buffer) {
            buffer.drain(..used);
            match handler(&command) {
                Reply::Resp(bytes) => {
                    if write_all(&socket, &bytes).await.is_err() {
                        return;
                    }
                }
                Reply::Close => return,
                Reply::Ignore => {}
            }
        }
        if socket.readable().await.is_err() {
            return;
        }
        match socket.try_read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

async fn write_all(socket: &tokio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// One complete `*N\r\n$len\r\narg\r\n...` command at the start of
/// `buffer`, and how many bytes it takes.
fn parse_command(buffer: &[u8]) -> Option<(Vec<String>, usize)> {
    fn line(buffer: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let end = buffer[from..].windows(2).position(|w| w == b"\r\n")? + from;
        Some((&buffer[from..end], end + 2))
    }
    let (header, mut at) = line(buffer, 0)?;
    let count: usize = std::str::from_utf8(header.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, next) = line(buffer, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let end = next + len;
        if buffer.len() < end + 2 {
            return None;
        }
        args.push(String::from_utf8_lossy(&buffer[next..end]).into_owned());
        at = end + 2;
    }
    Some((args, at))
}

/// RESP2 encoders for [`Reply::Resp`].
pub mod resp {
    pub fn simple(text: &str) -> Vec<u8> {
        format!("+{text}\r\n").into_bytes()
    }

    pub fn error(line: &str) -> Vec<u8> {
        format!("-{line}\r\n").into_bytes()
    }

    pub fn int(value: i64) -> Vec<u8> {
        format!(":{value}\r\n").into_bytes()
    }

    pub fn bulk(text: &str) -> Vec<u8> {
        format!("${}\r\n{text}\r\n", text.len()).into_bytes()
    }

    pub fn array(items: Vec<Vec<u8>>) -> Vec<u8> {
        let mut out = format!("*{}\r\n", items.len()).into_bytes();
        for item in items {
            out.extend(item);
        }
        out
    }

    /// A flat array of bulk strings.
    pub fn strings(items: &[&str]) -> Vec<u8> {
        array(items.iter().map(|item| bulk(item)).collect())
    }
}

#[test]
fn parses_pipelined_commands() {
    let mut bytes = resp::strings(&["SET", "k", "v"]);
    bytes.extend(resp::strings(&["GET", "k"]));
    let (first, used) = parse_command(&bytes).unwrap();
    assert_eq!(first, ["SET", "k", "v"]);
    let (second, rest) = parse_command(&bytes[used..]).unwrap();
    assert_eq!(second, ["GET", "k"]);
    assert_eq!(used + rest, bytes.len());
    assert_eq!(parse_command(&bytes[..used - 1]), None);
}
