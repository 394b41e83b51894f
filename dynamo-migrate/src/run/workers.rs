//! Workers: processes that share a run's data passes, started by whatever job engine a team
//! runs (local processes, an AWS Batch array job, a Kubernetes Indexed Job, a CI matrix).
//!
//! A run that shares its passes (`Migrator::with_sharing`) says in its ledger which pass is open
//! (the item `workers#pass`: the migration and its checksum, the pass's place in it, its tables,
//! the run's token and how long a segment's lease lasts). A worker is the same runner binary
//! (`cargo xtask worker --env E`): it reads that item, finds the migration and the pass in its own
//! build (the same checksum, or it refuses), and claims the pass's segments under leases (see
//! `data::checkpoint`) until nothing is left to claim. Then it looks for the next open pass, and
//! ends once no run holds the migration lock, or none has opened a pass for a while.
//!
//! # The rule
//!
//! A segment is worked by at most one live lease holder; a takeover resumes from its last
//! checkpoint; and every ledger write of a worker (claims, checkpoints) is fenced by the run's
//! token in the migration's record, so that a worker of a run that lost its lock, or that ended,
//! stops at its next page. The run alone replays streams, checks convergence and records the
//! step, once every segment is done; the totals it records are the segments', whoever worked them.
//!
//! A data step's code outside its passes runs in every worker, up to the open pass: in a worker
//! its `DataContext::client` only reads, so a step that writes outside its passes fails there
//! rather than writing once per worker.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use tokio::sync::watch;

use crate::data::{CheckpointStore, DataContext, DataError, DataReport, OPEN_PASS, Role, copy_map};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::lock::holder as lock_holder;
use crate::migration::{Migration, Step};
use crate::migrator::{names_after, run_data_step};
use crate::names::TableNames;

/// How a worker waits.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long to wait for a pass to open while a run holds the lock, before ending.
    pub idle: Duration,
    /// How long to wait for a run to take the lock, when none holds it at the start (a worker
    /// started beside its run may start first).
    pub wait_for_run: Duration,
    /// How often to look for an open pass.
    pub poll: Duration,
    /// Show a progress bar per pass on a terminal.
    pub progress: bool,
    /// Where the environment's export rebuilds keep their files (`[<env>.exports]`), for a
    /// rebuild's export files opened to workers.
    #[cfg(feature = "export")]
    pub export: Option<crate::data::ExportPlace>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            idle: Duration::from_secs(600),
            wait_for_run: Duration::ZERO,
            poll: Duration::from_secs(1),
            progress: false,
            #[cfg(feature = "export")]
            export: None,
        }
    }
}

/// A pass a worker joined, and what it did of it.
#[derive(Debug, Clone, Serialize)]
pub struct JoinedPass {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub migration: String,
    /// The pass's place in its migration: `step <i>, pass <j>`.
    pub pass: String,
    /// The table the pass reads (physical name).
    pub source: String,
    /// The table it writes (physical name; the same in place).
    pub target: String,
    /// The segments this worker finished.
    pub report: DataReport,
}

/// What a worker did, and why it ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerReport {
    /// The passes it joined, each once, in the order it first joined them.
    pub passes: Vec<JoinedPass>,
    /// Why it ended, in words: no ledger table, no pass open and no run holding the migration
    /// lock, or no pass opened for the idle time.
    pub ended: String,
}

/// The pass the ledger says is open to workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPass {
    /// Still open; false once its run closed it.
    pub open: bool,
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub migration: String,
    /// The migration's checksum: a worker whose build has another refuses the pass.
    pub checksum: String,
    /// The pass's place in its migration: `step <i>, pass <j>`.
    pub pass: String,
    /// The table the pass reads (physical name).
    pub source: String,
    /// The table it writes (physical name; the same in place).
    pub target: String,
    /// The token of the run that opened it.
    pub run: String,
    /// How long a segment's lease lasts without a renewal before another process takes the
    /// segment over.
    pub lease: Duration,
    /// How many processes the run expects to share the pass (each claims its share at once).
    pub participants: u32,
    /// The pass's budget of write capacity units per second, split among its processes.
    pub max_write_units: Option<u32>,
}

/// The pass open to workers in `ledger`, if one was ever opened (`open` says whether it still is).
pub async fn open_pass(ledger: &Ledger) -> Result<Option<OpenPass>> {
    let Some(item) = ledger.checkpoint(OPEN_PASS).await? else { return Ok(None) };
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse::<u64>().unwrap_or(0),
        _ => 0,
    };
    Ok(Some(OpenPass {
        open: matches!(item.get("open"), Some(AttributeValue::Bool(true))),
        version: number("version") as u32,
        migration: text("name"),
        checksum: text("checksum"),
        pass: text("pass"),
        source: text("source"),
        target: text("target"),
        run: text("run"),
        lease: Duration::from_millis(number("lease_ms")),
        participants: number("participants").max(1) as u32,
        max_write_units: item.contains_key("max_write_units").then(|| number("max_write_units") as u32),
    }))
}

/// Works the passes that runs open to workers in the environment of `client` and `names`, with
/// `migrations` (this build's), until none is left (see the module's header).
pub async fn work(
    client: &Client,
    names: &TableNames,
    migrations: &[Migration],
    options: &WorkerOptions,
    cancel: watch::Receiver<bool>,
) -> Result<WorkerReport> {
    let ledger = Ledger::new(client.clone(), names);
    let mut report = WorkerReport::default();
    if !ledger.exists().await? {
        report.ended = format!("no run has started in {}: there is no ledger table", ledger.table());
        return Ok(report);
    }
    let started = Instant::now();
    let mut idle_since = started;
    let mut seen_run = false;
    loop {
        if *cancel.borrow() {
            return Err(Error::Interrupted { before: "the next pass".to_owned() });
        }
        match open_pass(&ledger).await? {
            Some(open) if open.open => {
                seen_run = true;
                let joined = join(client, names, migrations, &ledger, &open, options, cancel.clone()).await?;
                let worked = joined.report.scanned > 0;
                match report.passes.iter_mut().find(|p| p.version == joined.version && p.pass == joined.pass) {
                    Some(known) => known.report = known.report + joined.report,
                    None => report.passes.push(joined),
                }
                idle_since = Instant::now();
                if !worked {
                    // Everything is claimed by live workers: look again in a while, in case
                    // one of them stops renewing its lease.
                    tokio::time::sleep(options.poll).await;
                }
            }
            _ => {
                if lock_holder(client, ledger.table()).await?.is_some() {
                    seen_run = true;
                } else if seen_run || started.elapsed() >= options.wait_for_run {
                    report.ended = "no pass is open, and no run holds the migration lock".to_owned();
                    return Ok(report);
                }
                if idle_since.elapsed() >= options.idle {
                    report.ended = format!(
                        "no pass has been open for {} s, although a run holds the migration lock",
                        options.idle.as_secs()
                    );
                    return Ok(report);
                }
                tokio::time::sleep(options.poll).await;
            }
        }
    }
}

/// Works the open pass `open` until nothing of it is left to claim.
async fn join(
    client: &Client,
    names: &TableNames,
    migrations: &[Migration],
    ledger: &Ledger,
    open: &OpenPass,
    options: &WorkerOptions,
    cancel: watch::Receiver<bool>,
) -> Result<JoinedPass> {
    let Some(migration) = migrations.iter().find(|m| m.version == open.version) else {
        return Err(Error::WorkerMismatch {
            reason: format!(
                "the pass open to workers ({}) is migration {} ({}), which this runner does not have",
                open.pass, open.version, open.migration
            ),
        });
    };
    if migration.checksum != open.checksum {
        return Err(Error::WorkerMismatch {
            reason: format!(
                "the pass open to workers ({}) is migration {} ({}) with checksum {}, and this runner was built with {}",
                open.pass,
                open.version,
                open.migration,
                short(&open.checksum),
                short(&migration.checksum)
            ),
        });
    }
    let step: usize = open
        .pass
        .strip_prefix("step ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|i| i.trim().parse().ok())
        .ok_or_else(|| Error::WorkerMismatch {
            reason: format!("the open pass's place {:?} names no step", open.pass),
        })?;
    let names = names_after(names, migrations.iter().filter(|m| m.version < open.version));
    let fenced = ledger.clone().fenced(&open.run);
    let checkpoints =
        CheckpointStore::in_ledger(fenced.clone(), migration.version, &migration.name, &migration.checksum);
    let ctx = DataContext::in_migration(client.clone(), names, checkpoints, step, cancel.clone(), options.progress)
        .shared(
            Role::Join {
                place: open.pass.clone(),
                participants: open.participants,
                max_write_units: open.max_write_units,
            },
            open.lease,
        );
    let done = match migration.steps.get(step) {
        // An export's data files: claimed and transformed like a pass's segments.
        Some(Step::Data(data)) => match run_data_step(data, ctx.clone()).await {
            Ok(_) => Ok(()),
            // The step's code went on past the open pass: this worker's part of the step is done.
            Err(Error::Data(e)) if e.chain().any(|c| matches!(c.downcast_ref(), Some(DataError::NotOpen { .. }))) => {
                Ok(())
            }
            Err(e) => Err(e),
        },
        Some(Step::Rebuild(rebuild)) if open.pass.ends_with(crate::data::EXPORT_FILES) => {
            #[cfg(feature = "export")]
            {
                // Boxed: the export path's futures are large, and a worker's stack holds this one.
                Box::pin(crate::data::work_export_files(
                    client,
                    options.export.as_ref(),
                    fenced.clone(),
                    migration,
                    step,
                    rebuild,
                    open,
                    ctx.checkpoints().clone(),
                    cancel.clone(),
                ))
                .await
                .map(|report| ctx.add_to_tally(report))
            }
            #[cfg(not(feature = "export"))]
            {
                let _ = rebuild;
                Err(Error::WorkerMismatch {
                    reason: format!(
                        "the pass open to workers ({}) is a rebuild's export files, and this runner is built without dynamo-migrate's `export` feature",
                        open.pass
                    ),
                })
            }
        }
        Some(Step::Rebuild(rebuild)) => {
            let mut options = rebuild.options.clone();
            options.consistent_read = true;
            let map = rebuild.map.clone().unwrap_or_else(copy_map);
            ctx.run_pass(open.source.clone(), open.target.clone(), options, map).await.map(drop).map_err(Error::from)
        }
        _ => Err(Error::WorkerMismatch {
            reason: format!("step {} of migration {} has no data pass", step + 1, open.version),
        }),
    };
    match done {
        Ok(()) => {}
        Err(e) if fenced_out(&e) => {
            return Err(Error::WorkerFenced { table: ledger.table().to_owned(), version: open.version });
        }
        Err(e) => return Err(e),
    }
    Ok(JoinedPass {
        version: open.version,
        migration: open.migration.clone(),
        pass: open.pass.clone(),
        source: open.source.clone(),
        target: open.target.clone(),
        report: ctx.tally(),
    })
}

/// Whether `error` says the run that opened the pass no longer owns its migration.
fn fenced_out(error: &Error) -> bool {
    let is = |e: &Error| matches!(e, Error::NotDirty { .. } | Error::LockLost { .. });
    match error {
        Error::Pass(DataError::Checkpoint(inner)) => is(inner),
        Error::Data(e) => e.chain().any(|c| match c.downcast_ref::<DataError>() {
            Some(DataError::Checkpoint(inner)) => is(inner),
            _ => false,
        }),
        other => is(other),
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}
