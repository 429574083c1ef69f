//! Integration-test harness for tk-redis: starts `redis-server` (a local
//! process, or a container with `TK_TEST_BACKEND=docker`) with the module
//! loaded, and offers helpers for replication, restarts and `INFO`/`DEBUG`.
//!
//! ```no_run
//! # async fn demo() {
//! use tk_redis_tests::{Server, info_section};
//! let server = Server::start().await;
//! let mut conn = server.conn().await;
//! let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut conn).await.unwrap();
//! let tk = info_section(&mut conn, "tk").await;
//! # let _ = tk;
//! # }
//! ```

pub mod fixtures;
pub mod flavor;
pub mod functions;
pub mod harness;
pub mod http;
pub mod mode;
pub mod raw;
pub mod topology;

pub use flavor::{Family, Flavor};
pub use harness::*;
pub use mode::{mode, module_mode, skip_in_functions_mode, Conn, Mode};
