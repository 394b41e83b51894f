//! `cargo xtask`: the workspace's command line.
//!
//! This crate stays light (xshell and anyhow) so that it builds in seconds. The work is done by
//! the runner binary, which links the engine with this workspace's schema and migrations: this
//! builds it with cargo and runs it with the arguments given here, unchanged, so that every
//! command and option is defined once, in the engine's command line (`cargo xtask --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use xshell::{Shell, cmd};

/// Commands that work on DynamoDB Local, the machine or the workspace's files (built with the dev
/// profile, shared with the tests); every other command works on real data, where speed counts
/// (release).
const DEV_COMMANDS: &[&str] = &["verify", "local", "setup", "new", "lint", "init", "schemas"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.iter().find(|a| !a.starts_with('-')).map(String::as_str);
    let release = command.is_some_and(|c| !DEV_COMMANDS.contains(&c));
    match run_runner(release, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_owned()
}

/// Builds and runs the runner with `args`, from the workspace root, and returns its exit code.
fn run_runner(release: bool, args: &[String]) -> anyhow::Result<ExitCode> {
    let sh = Shell::new()?;
    sh.change_dir(workspace_root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let release: &[&str] = if release { &["--release"] } else { &[] };
    let cmd = cmd!(sh, "{cargo} run --quiet --package runner {release...} -- {args...}");
    let status = std::process::Command::from(cmd).status().context("cannot run cargo")?;
    // The runner's own codes (0, 1, 2) pass through; a build failure or a signal becomes 1.
    Ok(match status.code() {
        Some(code @ 0..=2) => ExitCode::from(code as u8),
        _ => ExitCode::from(1),
    })
}
