//! `build-runner`: the release runner, built once for deploy pipelines.
//!
//! `cargo xtask migrate` builds the runner in release without DynamoDB Local (no testcontainers,
//! no Docker client) the first time it runs; a deploy job that starts from a clean machine would
//! pay for that build, the AWS SDK's, every time. This builds the same binary ahead and says where
//! it is, so that a pipeline caches it (keyed by `Cargo.lock` and the workspace's sources) or
//! copies it into an image.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::{Failure, Output, usage};

/// Build the release runner for deploy pipelines
///
/// Builds the runner as `migrate`, `sync` and `worker` run it (release, without DynamoDB Local,
/// so without testcontainers and its Docker client) and prints the binary's path. A deploy job
/// then runs that binary instead of `cargo xtask migrate`, and compiles nothing: cache the target
/// directory keyed by Cargo.lock and the workspace's sources, or copy the binary into an image.
/// The binary takes the same commands as `cargo xtask`; run it from the workspace root (where
/// environments.toml is), or name the file with --environments.
///
/// Example: `cargo xtask build-runner --target-dir ~/.cache/runner && ~/.cache/runner/release/runner migrate --env prod`
#[derive(Debug, Args)]
pub struct BuildRunnerArgs {
    /// Build in this directory instead of the workspace's target directory.
    #[arg(long)]
    target_dir: Option<PathBuf>,
}

/// The runner's package, as `init` writes it.
const RUNNER: &str = "runner";

impl BuildRunnerArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--release", "--no-default-features", "--package", RUNNER]);
        build.args(["--message-format", "json-render-diagnostics"]);
        if let Some(dir) = &self.target_dir {
            build.arg("--target-dir").arg(dir);
        }
        out.line(format_args!(
            "building the runner in release, without DynamoDB Local: a few minutes the first time (the AWS SDK)"
        ));
        let started = Instant::now();
        // Cargo's messages are JSON on stdout (the one that names the binary is read here); its
        // progress and the compiler's diagnostics go to stderr, as they come.
        let mut child = build.stdout(Stdio::piped()).spawn().context("cannot run cargo").map_err(usage)?;
        let stdout = child.stdout.take().expect("piped");
        let mut binary = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading cargo's messages")?;
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            let is_runner = message["reason"] == "compiler-artifact" && message["target"]["name"] == RUNNER;
            if let (true, Some(executable)) = (is_runner, message["executable"].as_str()) {
                binary = Some(PathBuf::from(executable));
            }
        }
        let status = child.wait().context("waiting for cargo")?;
        if !status.success() {
            return Err(Failure::work(anyhow!(
                "cargo build of the runner failed ({status}); fix what cargo reports above, then run `cargo xtask build-runner{}`",
                self.target_dir.as_ref().map(|d| format!(" --target-dir {}", d.display())).unwrap_or_default()
            )));
        }
        let binary = binary.ok_or_else(|| anyhow!("cargo built no binary named {RUNNER}"))?;
        let bytes = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        out.facts(serde_json::json!({
            "runner": binary,
            "bytes": bytes,
            "seconds": started.elapsed().as_secs_f64(),
        }));
        out.line(format_args!(
            "built {} ({:.1} MiB) in {:.0} s; a deploy job runs it as it runs cargo xtask, from the workspace root: `{} migrate --env prod`",
            binary.display(),
            bytes as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64(),
            binary.display()
        ));
        Ok(())
    }
}
