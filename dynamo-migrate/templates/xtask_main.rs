//! `cargo xtask`: the workspace's command line.
//!
//! This crate stays light (xshell and anyhow) so that it builds in seconds. The work is done by
//! the runner binary, which links the engine with this workspace's schema and migrations: this
//! builds it with cargo and runs it with the arguments given here, unchanged, so that every
//! command and option is defined once, in the engine's command line (`cargo xtask --help`).
//!
//! On Unix the xtask becomes `cargo run` (exec), which becomes the runner once it is built, as
//! `cargo run` itself does: the shell or the CI runner waits for the runner itself, Ctrl-C and a
//! cancel's SIGTERM reach it, and its exit code is the command's. Elsewhere the xtask waits for
//! cargo and passes its exit code on.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use xshell::cmd;

/// Commands that work on DynamoDB Local, the machine or the workspace's files (built with the dev
/// profile, shared with the tests); every other command works on real data, where speed counts
/// (release).
const DEV_COMMANDS: &[&str] = &["verify", "local", "setup", "new", "lint", "init", "schemas"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.iter().find(|a| !a.starts_with('-'));
    let release = command.is_some_and(|c| !DEV_COMMANDS.contains(&c.as_str()));
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
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().expect("xtask is in the workspace").into()
}

/// Builds and runs the runner with `args`, from the workspace root.
fn run_runner(release: bool, args: &[String]) -> anyhow::Result<ExitCode> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(workspace_root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release: &[&str] = if release { &["--release"] } else { &[] };
    let run = ["run", "--quiet", "--package", "runner"];
    let cmd = cmd!(sh, "{cargo} {run...} {release...} -- {args...}");
    exec(Command::from(cmd))
}

/// Becomes `cargo`: nothing of the xtask is left to end before the runner does.
#[cfg(unix)]
fn exec(mut cargo: Command) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    // `exec` returns only when it failed.
    Err(cargo.exec()).context("cannot run cargo")
}

/// Runs `cargo` and passes its exit code on (a build failure is cargo's 101).
#[cfg(not(unix))]
fn exec(mut cargo: Command) -> anyhow::Result<ExitCode> {
    let status = cargo.status().context("cannot run cargo")?;
    let code = status.code().and_then(|c| u8::try_from(c).ok());
    Ok(ExitCode::from(code.unwrap_or(1)))
}
