//! `migrate`: apply the pending migrations to an environment, safely.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use super::session::{
    EnvArgs, LEASE_SECS, WAIT_SECS, cancel_on_ctrl_c, check_code, check_target, lock_options, stopped_by,
};
use super::verify::print_migration;
use super::{Failure, NextStep, Output};
use crate::Project;

use crate::data::Sharing;
use crate::migrator::Migrator;

/// Apply the pending migrations to an environment
///
/// Checks the credentials' account, takes the migration lock, checks the ledger (changed, missing, out-of-order or unfinished migrations stop it) and the
/// live tables for drift, then apply one migration at a time, recording each in the ledger.
/// Ctrl-C (or SIGTERM) finishes the call in flight, records where it stopped, releases the
/// lock and exits 1; the next run resumes.
///
/// Example: `cargo xtask migrate --env prod`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
    /// Apply even though the live tables differ from what the applied migrations produced.
    #[arg(long)]
    allow_drift: bool,
    /// Stop after this version.
    #[arg(long)]
    target: Option<u32>,
    /// Let `delete_old_table` delete an old version although its convergence check found the new
    /// version different: after review, when the differences are the application's own writes
    /// to the new version since it moved there.
    #[arg(long)]
    accept_differences: bool,
    /// How long to wait for another run's lock, in seconds (0 to 86400).
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(WAIT_SECS))]
    lock_wait: u64,
    /// How long the lock outlives this run's last heartbeat, in seconds (3 to 3600).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(LEASE_SECS))]
    lock_lease: u64,
    /// Share every data pass with worker processes: a number starts that many local workers
    /// (this runner, or the program $DYNAMO_MIGRATE_WORKER_COMMAND names, as a JSON list);
    /// `batch` submits the environment's AWS Batch array job of workers ([<env>.workers]
    /// job_queue, job_definition, count); `external` opens the passes to workers started
    /// elsewhere (`cargo xtask workers --emit …`) and waits for them.
    #[arg(long, value_name = "N|batch|external")]
    workers: Option<Workers>,
    /// With --workers: this process claims no segment of its own; it only takes over segments
    /// whose workers stop renewing their lease, and waits.
    #[arg(long, requires = "workers")]
    workers_only: bool,
    /// How long a segment's lease lasts without a renewal before another worker takes it over,
    /// in seconds (5 to 3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(5..=3600))]
    segment_lease: u64,
}

/// Who shares the run's passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workers {
    /// This many local worker processes, started and waited for by the run.
    Local(u32),
    /// The environment's AWS Batch array job of workers, submitted and followed by the run.
    Batch,
    /// Workers started elsewhere.
    External,
}

impl std::str::FromStr for Workers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "external" => Ok(Workers::External),
            "batch" => Ok(Workers::Batch),
            number => match number.parse::<u32>() {
                Ok(n @ 1..=256) => Ok(Workers::Local(n)),
                _ => {
                    Err(format!("{text:?} is neither a number of local workers from 1 to 256, `batch` nor `external`"))
                }
            },
        }
    }
}

impl MigrateArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        check_target(project, self.target, &format!("cargo xtask migrate {}", self.env.options()))?;
        check_code(project)?;
        let session = self.env.open(Some(project), true, self.yes).await?;
        let local = session.env.is_local();

        let cancelled = cancel_on_ctrl_c("finishing the call in flight, then stopping at a checkpoint");
        let lock = lock_options(&session, self.lock_lease, self.lock_wait);
        let config = session.env.workers.clone().unwrap_or_default();
        let open =
            |workers| Sharing::Open { work: !self.workers_only, workers, max_write_units: config.max_write_units };
        let sharing = match self.workers {
            None => Sharing::Alone,
            Some(Workers::Local(n)) => open(n),
            Some(Workers::Batch) => open(config.count.unwrap_or(0)),
            Some(Workers::External) => open(0),
        };
        let local_workers = match self.workers {
            Some(Workers::Local(n)) => spawn_workers(n, &self.env).map_err(Failure::usage)?,
            _ => Vec::new(),
        };
        // The local workers are watched while the run goes on: a run that does no work itself
        // (`--workers-only`) would wait for ever once every one of them has ended, so it stops at
        // its next checkpoint instead, and says why.
        let (stop, cancelled) = forward_stop(cancelled);
        let (run_ended, run_ended_rx) = tokio::sync::watch::channel(false);
        let workers_gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = (!local_workers.is_empty()).then(|| {
            let stop = self.workers_only.then_some(stop);
            tokio::spawn(watch_workers(local_workers, run_ended_rx, stop, workers_gone.clone()))
        });
        let batch = match self.workers {
            Some(Workers::Batch) => {
                let (client, job) = super::workers::submit_batch(&session.env, &self.env).await?;
                eprintln!(
                    "submitted AWS Batch array job {} ({}, {} workers); its workers wait for this run's passes",
                    job.id, job.name, job.size
                );
                let follower = super::workers::follow_batch(client.clone(), job.clone(), Duration::from_secs(30));
                Some((client, job, follower))
            }
            _ => None,
        };
        let migrator = Migrator::new(session.client.clone(), session.names.clone(), local, session.caller.clone())
            .with_lock(lock)
            .with_drift_check(!self.allow_drift)
            .with_accepted_differences(self.accept_differences)
            .with_file_check(true)
            .with_environment(&session.env.name)
            .with_streams(session.streams.clone())
            .with_cancel(cancelled)
            .with_progress(std::io::stderr().is_terminal() && out.is_human())
            .with_sharing(sharing)
            .with_segment_lease(Duration::from_secs(self.segment_lease));
        let migrator = match session.export_place().await {
            Some(place) => migrator.with_export(place),
            None => migrator,
        };
        let result = migrator.run(&project.migrations, self.target).await;
        // The lock is released: the workers find nothing left and end.
        let _ = run_ended.send(true);
        let workers = match watcher {
            Some(watcher) => watcher.await.unwrap_or_else(|e| vec![format!("the workers' watcher stopped: {e}")]),
            None => Vec::new(),
        };
        let workers_gone = workers_gone.load(std::sync::atomic::Ordering::SeqCst);
        let batch = match batch {
            Some((client, mut job, follower)) => {
                follower.abort();
                let _ = super::workers::describe_batch(&client, &mut job).await;
                eprintln!(
                    "AWS Batch job {}: {}; its workers end once they find no run holding the lock",
                    job.id,
                    super::workers::statuses(&job)
                );
                Some(job)
            }
            None => None,
        };
        let (report, error) = match result {
            Ok(report) => (report, None),
            Err(failure) => (failure.report, Some(failure.error)),
        };
        out.facts(serde_json::json!({
            "environment": session.env.name,
            "report": report,
            "local_workers": workers,
            "batch_job": batch,
        }));
        if !workers.is_empty() && out.is_human() {
            eprintln!("local workers ended: {}", workers.join(", "));
        }
        if out.is_human() {
            if report.applied.is_empty() && error.is_none() {
                println!("environment {}: nothing to apply", session.env.name);
            } else {
                println!("environment {}: applied {} migration(s):", session.env.name, report.applied.len());
                for m in &report.applied {
                    print_migration(m);
                }
            }
        }
        let gone = || {
            format!(
                "every local worker ended while the run, which does no work itself (--workers-only), still had work for them ({}); it stopped at a checkpoint. Read the workers' errors above (`worker <i>:` lines), fix them, then run `cargo xtask migrate {}` again (with or without --workers-only)",
                workers.join(", "),
                self.env.options()
            )
        };
        match error {
            Some(e) if workers_gone && e.is_interrupted() => Err(Failure::work(NextStep::new(e, gone()))),
            None if workers_gone && report.interrupted => Err(Failure::work(anyhow!(gone()))),
            // The ledger records the migration as failed: the next run refuses until it is
            // recovered, which the message says how to do.
            Some(e @ crate::Error::Step { version, .. })
                if !e.is_interrupted() && !e.is_lock_lost() && !e.is_not_quiet() =>
            {
                let options = self.env.options();
                Err(Failure::work(NextStep::new(
                    e,
                    format!(
                        "the ledger records migration {version} as failed: fix what failed (its file, if it was wrong), then run `cargo xtask recover {options} --version {version} --rerun` to apply it again, or `cargo xtask recover {options} --version {version} --resolved` if you complete it by hand"
                    ),
                )))
            }
            // Stopped at a checkpoint: recorded as interrupted, the lock released.
            Some(e) if e.is_interrupted() => Err(Failure::work(NextStep::new(
                e,
                format!(
                    "stopped by {}: the ledger records where; to go on, run `cargo xtask migrate {}`",
                    stopped_by(),
                    self.env.options()
                ),
            ))),
            Some(e) => Err(Failure::work(e)),
            None if report.interrupted => Err(Failure::work(anyhow!(
                "interrupted by {} between migrations; to go on, run `cargo xtask migrate {}`",
                stopped_by(),
                self.env.options()
            ))),
            None => Ok(()),
        }
    }
}

/// The program local workers run: this runner, or the JSON list of program and first arguments
/// in `$DYNAMO_MIGRATE_WORKER_COMMAND` (a wrapper: `nice`, a container runtime).
const WORKER_COMMAND_ENV: &str = "DYNAMO_MIGRATE_WORKER_COMMAND";

/// Starts `n` local worker processes for the environment `env`; their stderr comes through here,
/// each line after `worker i:`.
fn spawn_workers(n: u32, env: &EnvArgs) -> anyhow::Result<Vec<(u32, tokio::process::Child)>> {
    let command: Vec<String> = match std::env::var(WORKER_COMMAND_ENV) {
        Ok(json) => serde_json::from_str(&json)
            .map_err(|e| anyhow!("${WORKER_COMMAND_ENV} is not a JSON list of strings ({e}): {json}"))?,
        Err(_) => vec![std::env::current_exe()?.display().to_string()],
    };
    let Some((program, first)) = command.split_first() else {
        anyhow::bail!("${WORKER_COMMAND_ENV} is an empty list: name the program local workers run");
    };
    let mut workers = Vec::new();
    for i in 1..=n {
        let mut child = tokio::process::Command::new(program)
            .args(first)
            .args(["worker", "--env", &env.env, "--environments"])
            .arg(&env.environments)
            .args(["--idle", "60", "--wait-for-run", "60"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow!("cannot start local worker {i} ({program}): {e}"))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt as _;
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("worker {i}: {line}");
                }
            });
        }
        workers.push((i, child));
    }
    Ok(workers)
}

/// A stop of the run's own, sent on Ctrl-C or SIGTERM as `cancelled` is, and by whoever else
/// holds the sender.
fn forward_stop(
    mut cancelled: tokio::sync::watch::Receiver<bool>,
) -> (tokio::sync::watch::Sender<bool>, tokio::sync::watch::Receiver<bool>) {
    let (stop, stopped) = tokio::sync::watch::channel(*cancelled.borrow());
    let forward = stop.clone();
    tokio::spawn(async move {
        if cancelled.wait_for(|c| *c).await.is_ok() {
            let _ = forward.send(true);
        }
    });
    (stop, stopped)
}

/// Waits for the local workers to end (they do once the run has released its lock), and says how
/// each did; one still running a minute after the run ended is killed. Given `stop` (a run that
/// does no work itself), when every worker has ended before the run did, marks `gone` and stops
/// the run at a checkpoint.
async fn watch_workers(
    workers: Vec<(u32, tokio::process::Child)>,
    run_ended: tokio::sync::watch::Receiver<bool>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    gone: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let each = workers.into_iter().map(|(i, mut child)| {
        let mut run_ended = run_ended.clone();
        async move {
            let after_the_run = async {
                let _ = run_ended.wait_for(|ended| *ended).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            };
            let status = tokio::select! {
                status = child.wait() => Some(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
                () = after_the_run => None,
            };
            let status = match status {
                Some(status) => status,
                None => {
                    let _ = child.kill().await;
                    "killed, still running a minute after the run".to_owned()
                }
            };
            format!("worker {i} {status}")
        }
    });
    let ended = futures::future::join_all(each).await;
    if let Some(stop) = stop
        && !*run_ended.borrow()
    {
        gone.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = stop.send(true);
    }
    ended
}
