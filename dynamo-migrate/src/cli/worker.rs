//! `worker`: join the data passes a run has opened to workers, until none is left.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use super::session::{EnvArgs, cancel_on_ctrl_c};
use super::{Failure, Output};
use crate::Project;
use crate::error::Error;
use crate::workers::{WorkerOptions, work};

/// Work on the data passes a run shares (migrate --workers)
///
/// Works segments of the data passes a run shares with workers (`migrate --workers`).
///
/// A worker is this same runner: it reads which pass the environment's ledger says is open,
/// claims its segments under leases beside the run and the other workers, and when nothing is
/// left to claim looks for the next pass. It ends (exit 0) when no run holds the migration lock,
/// or none has opened a pass for --idle seconds; a worker started when nothing is open ends at
/// once, saying so. It needs the same build as the run (it refuses another migration's
/// checksum, exit 2), and it stops (exit 1) at its next page once the run that opened the pass
/// loses its lock or ends. Start as many as the table's capacity allows: locally (`migrate
/// --workers 8` starts them itself), as an AWS Batch array job or a Kubernetes Indexed Job
/// (`cargo xtask workers --emit …` prints one).
///
/// Example: `cargo xtask worker --env prod`
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// How long to wait for a pass to open while a run holds the lock, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    idle: u64,
    /// How long to wait for a run to take the migration lock when none holds it yet, in seconds
    /// (for workers started beside their run, as job engines do).
    #[arg(long, default_value_t = 0, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    wait_for_run: u64,
}

impl WorkerArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        // A worker writes only for a run that was confirmed and checked itself: it joins passes
        // a run opened, fenced by that run's token, so it asks for no confirmation of its own.
        let session = self.env.open(Some(project), true, true).await?;
        let cancelled = cancel_on_ctrl_c("stopping at the next checkpoint");
        let options = WorkerOptions {
            idle: Duration::from_secs(self.idle),
            wait_for_run: Duration::from_secs(self.wait_for_run),
            progress: std::io::stderr().is_terminal() && out.is_human(),
            export: session.export_place().await,
            ..WorkerOptions::default()
        };
        let result = work(&session.client, &session.names, &project.migrations, &options, cancelled).await;
        out.facts(serde_json::json!({ "environment": session.env.name, "worker": result.as_ref().ok() }));
        let report = match result {
            Ok(report) => report,
            Err(e @ Error::WorkerMismatch { .. }) => return Err(Failure::usage(e)),
            Err(e) if e.is_interrupted() => {
                return Err(Failure::work(anyhow!(
                    "stopped by {} at a checkpoint; the run takes its segments over after their lease",
                    super::session::stopped_by()
                )));
            }
            Err(e) => return Err(Failure::work(e)),
        };
        if out.is_human() {
            for pass in &report.passes {
                println!(
                    "migration {} ({}), {}: {} -> {}: {} items scanned, {} written, {} failed by this worker",
                    pass.version,
                    pass.migration,
                    pass.pass,
                    pass.source,
                    pass.target,
                    pass.report.scanned,
                    pass.report.written + pass.report.deleted,
                    pass.report.failed
                );
            }
            println!("environment {}: worker done: {}", session.env.name, report.ended);
        }
        Ok(())
    }
}
