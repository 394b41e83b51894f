//! The runner: the engine's command line, linked with this workspace's schema and migrations.
//! `cargo xtask` builds and runs it; see `cargo xtask --help`.

use std::process::ExitCode;

// mimalloc rather than the system allocator: a data pass allocates and frees millions of small
// items from many threads, and glibc's per-thread arenas kept growing with the table's size
// (peak RSS 174 MiB at 50k items, 237 MiB at 200k) where mimalloc returns what is freed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let tables = schema::tables();
    let migrations = migrations::all();
    dynamo_migrate::cli::main(dynamo_migrate::Project { tables, migrations })
}
