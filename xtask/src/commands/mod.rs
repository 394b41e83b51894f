//! One file per subcommand; each forwards its options to the runner.

pub mod bench;
pub mod env;
pub mod local;
pub mod migrate;
pub mod plan;
pub mod recover;
pub mod setup;
pub mod status;
pub mod sync;
pub mod unlock;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use xshell::{Shell, cmd};

/// Which cargo profile the runner is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The dev profile, shared with the tests (dependencies are optimised in it).
    Dev,
    /// Release, for work on real data where speed counts.
    Release,
}

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_owned()
}

/// Builds and runs the runner with `args`, from the workspace root, and returns its exit code.
pub fn run_runner(profile: Profile, args: &[String]) -> anyhow::Result<ExitCode> {
    let sh = Shell::new()?;
    sh.change_dir(workspace_root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let release: &[&str] = if profile == Profile::Release { &["--release"] } else { &[] };
    let cmd = cmd!(sh, "{cargo} run --quiet --package runner {release...} -- {args...}");
    let status = std::process::Command::from(cmd).status().context("cannot run cargo")?;
    // The runner's own codes (0, 1, 2) pass through; a build failure or a signal becomes 1.
    Ok(match status.code() {
        Some(code @ 0..=2) => ExitCode::from(code as u8),
        _ => ExitCode::from(1),
    })
}

/// Appends `--flag` when `on`.
pub fn flag(args: &mut Vec<String>, name: &str, on: bool) {
    if on {
        args.push(name.to_owned());
    }
}

/// Appends `--option value` when there is a value.
pub fn option(args: &mut Vec<String>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        args.push(name.to_owned());
        args.push(value.to_owned());
    }
}
