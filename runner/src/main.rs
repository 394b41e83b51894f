//! The runner: the engine's command line, linked with this workspace's schema and migrations.
//! `cargo xtask` builds and runs it; see `cargo xtask --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    dynamo_migrate::cli::main(dynamo_migrate::Project { tables: schema::tables(), migrations: migrations::all() })
}
