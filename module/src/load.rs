//! The module's entry point: registers the commands (`commands.rs`) and
//! the `INFO tk` section (`info.rs`) when Redis loads the module.

use redis_module::{raw, Context, RedisString, Status};

use crate::commands;
use crate::info;
use crate::registry::{self, CommandSpec};

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    registry::install_panic_hook();
    let debug = args
        .iter()
        .any(|arg| arg.as_slice().eq_ignore_ascii_case(b"DEBUG-COMMANDS"));
    let extra: &[CommandSpec] = if debug { &commands::debug() } else { &[] };
    let acl_category = registry::add_acl_category(ctx);
    for spec in commands::all().iter().chain(extra) {
        if let Err(error) = registry::register(ctx, spec, acl_category) {
            ctx.log_warning(&format!("tk: {error}"));
            return Status::Err;
        }
    }
    // Replaces the generic info callback the macro installs with our section.
    // SAFETY: load-time context.
    unsafe {
        if let Some(register_info) = raw::RedisModule_RegisterInfoFunc {
            register_info(ctx.ctx, Some(info::info));
        }
    }
    Status::Ok
}

redis_module::redis_module! {
    name: "tk",
    version: crate::MODULE_VERSION,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    commands: [],
}
