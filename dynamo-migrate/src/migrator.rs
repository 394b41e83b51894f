//! The run sequence: ensure the ledger, check it against the code, apply what is pending.
//!
//! After sqlx's `Migrator::run_direct`: ensure ledger → dirty and checksum checks (all in
//! `sequence::pending`) → apply one migration at a time, recording running → succeeded / failed /
//! interrupted. A failed run reports what it did apply before it failed (refinery's `Error {
//! report }`).

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use serde::Serialize;
use tokio::sync::watch;

use crate::data::{CheckpointStore, DataContext, DataReport, copy_map, count_items, unmark_item};
use crate::error::{Error, Result};
use crate::executor::{ExecOptions, Outcome, execute};
use crate::ledger::{Ledger, now};
use crate::live::describe;
use crate::lock::{Lock, LockOptions};
use crate::migration::{Migration, RebuildStep, SchemaStep, Step};
use crate::names::TableNames;
use crate::planner::{PlanError, plan_step};
use crate::sequence::{AppliedMigration, Status, pending};

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub calls: Vec<String>,
    pub skipped: Vec<String>,
    pub fixtures_written: u64,
    pub data: Option<DataReport>,
    /// Checks made after the step (that a data step is idempotent).
    pub checked: Vec<String>,
}

/// What one migration did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub version: u32,
    pub name: String,
    pub resumed: bool,
    pub steps: Vec<StepReport>,
    pub millis: u128,
}

/// What a run applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub applied: Vec<MigrationReport>,
    /// Stopped by Ctrl-C between migrations, with more pending.
    pub interrupted: bool,
}

/// A run that stopped: what it applied before, and why it stopped.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    pub report: RunReport,
    #[source]
    pub error: Error,
}

/// Applies migrations to one environment.
#[derive(Debug, Clone)]
pub struct Migrator {
    client: Client,
    names: TableNames,
    exec: ExecOptions,
    applied_by: String,
    write_fixtures: bool,
    cancel: watch::Receiver<bool>,
    progress: bool,
    lock: LockOptions,
    check_idempotence: bool,
}

/// The table versions current after `migrations` (each rebuild makes a new one current).
pub fn names_after<'a>(base: &TableNames, migrations: impl IntoIterator<Item = &'a Migration>) -> TableNames {
    let mut names = base.clone();
    for step in migrations.into_iter().flat_map(|m| &m.steps) {
        if let Some((table, version)) = step.sets_version() {
            names.set_version(table, version);
        }
    }
    names
}

impl Migrator {
    /// A migrator for the tables named by `names`; `local` says the endpoint is DynamoDB Local.
    pub fn new(client: Client, names: TableNames, local: bool, applied_by: impl Into<String>) -> Self {
        let (_, cancel) = watch::channel(false);
        Migrator {
            client,
            names,
            exec: ExecOptions::new(local),
            applied_by: applied_by.into(),
            write_fixtures: false,
            cancel,
            progress: false,
            lock: LockOptions::new("dynamo-migrate"),
            check_idempotence: false,
        }
    }

    /// How the run takes the migration lock (owner, lease, how long to wait for another run).
    pub fn with_lock(mut self, lock: LockOptions) -> Self {
        self.lock = lock;
        self
    }

    /// The caller recorded in the ledger for each migration this run applies.
    pub fn applied_by(&self) -> &str {
        &self.applied_by
    }

    /// Writes each data step's fixture items before it runs (on DynamoDB Local only).
    pub fn with_fixtures(mut self, on: bool) -> Self {
        self.write_fixtures = on && self.exec.local;
        self
    }

    /// Stops data steps at their next checkpoint when `cancel` turns true (Ctrl-C).
    pub fn with_cancel(mut self, cancel: watch::Receiver<bool>) -> Self {
        self.cancel = cancel;
        self
    }

    /// Runs every data step a second time over its own output, writing nothing, and fails the
    /// migration when that second run would write anything (`verify` does).
    pub fn with_idempotence_check(mut self, on: bool) -> Self {
        self.check_idempotence = on;
        self
    }

    /// Shows a progress bar per data pass on a terminal.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.client.clone(), &self.names)
    }

    /// Applies every pending migration up to `target` (all when `None`), in order, holding the
    /// migration lock: lock → ensure ledger → check it against the code → apply → unlock.
    pub async fn run(&self, migrations: &[Migration], target: Option<u32>) -> Result<RunReport, RunFailure> {
        let fail = |error: Error| RunFailure { report: RunReport::default(), error };
        let ledger = self.ledger();
        ledger.ensure().await.map_err(fail)?;
        let lock = Lock::acquire(&self.client, ledger.table(), &self.lock).await.map_err(fail)?;
        let result = self.run_locked(&ledger.fenced(lock.token()), migrations, target).await;
        if let Err(e) = lock.release().await {
            tracing::warn!("could not release the migration lock (its lease will expire): {e:#}");
        }
        result
    }

    async fn run_locked(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
        target: Option<u32>,
    ) -> Result<RunReport, RunFailure> {
        let mut report = RunReport::default();
        let fail = |report: RunReport, error: Error| RunFailure { report, error };
        let records = match ledger.records().await {
            Ok(records) => records,
            Err(e) => return Err(fail(report, e)),
        };
        let known: Vec<_> = migrations.iter().map(Migration::info).collect();
        let versions = match pending(&records, &known) {
            Ok(v) => v,
            Err(e) => return Err(fail(report, e.into())),
        };
        for version in versions.into_iter().filter(|v| target.is_none_or(|t| *v <= t)) {
            if *self.cancel.borrow() {
                report.interrupted = true;
                break;
            }
            let migration = migrations.iter().find(|m| m.version == version).expect("pending versions are known");
            let names = names_after(&self.names, migrations.iter().filter(|m| m.version < version));
            let resume = records.iter().any(|r| r.version == version && r.status.is_resumable());
            match self.apply(ledger, migration, names, resume).await {
                Ok(done) => report.applied.push(done),
                Err(e) => return Err(fail(report, e)),
            }
        }
        Ok(report)
    }

    async fn apply(
        &self,
        ledger: &Ledger,
        migration: &Migration,
        mut names: TableNames,
        resume: bool,
    ) -> Result<MigrationReport> {
        let started = Instant::now();
        let record = AppliedMigration {
            version: migration.version,
            name: migration.name.clone(),
            checksum: migration.checksum.clone(),
            status: Status::Running,
            started_at: now(),
            finished_at: None,
            applied_by: self.applied_by.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            error: None,
            recovered_by: None,
            recovered_at: None,
        };
        if resume {
            ledger.resume(&record).await?;
        } else {
            ledger.start(&record).await?;
        }
        let mut steps = Vec::new();
        for (index, step) in migration.steps.iter().enumerate() {
            let applied = if *self.cancel.borrow() {
                // Ctrl-C between steps: the step in flight has finished; stop here, resumable.
                Err(Error::Interrupted { before: step.describe() })
            } else {
                self.apply_step(ledger, migration, index, step, &mut names).await
            };
            match applied {
                Ok(done) => steps.push(done),
                Err(source) => {
                    let error = Error::Step {
                        version: migration.version,
                        name: migration.name.clone(),
                        step: step.describe(),
                        source: Box::new(source),
                    };
                    let status = if error.is_interrupted() { Status::Interrupted } else { Status::Failed };
                    ledger.finish(&record, status, Some(format!("{error:#}"))).await?;
                    return Err(error);
                }
            }
        }
        ledger.finish(&record, Status::Succeeded, None).await?;
        Ok(MigrationReport {
            version: migration.version,
            name: migration.name.clone(),
            resumed: resume,
            steps,
            millis: started.elapsed().as_millis(),
        })
    }

    fn data_context(&self, ledger: &Ledger, migration: &Migration, index: usize, names: &TableNames) -> DataContext {
        DataContext::in_migration(
            self.client.clone(),
            names.clone(),
            CheckpointStore::in_ledger(ledger.clone(), migration.version, &migration.name, &migration.checksum),
            index,
            self.cancel.clone(),
            self.progress,
        )
    }

    async fn apply_step(
        &self,
        ledger: &Ledger,
        migration: &Migration,
        index: usize,
        step: &Step,
        names: &mut TableNames,
    ) -> Result<StepReport> {
        let mut report = StepReport {
            step: step.describe(),
            calls: vec![],
            skipped: vec![],
            fixtures_written: 0,
            data: None,
            checked: vec![],
        };
        match step {
            Step::Schema(schema_step) => {
                let logical = schema_step.table();
                let version = match schema_step {
                    SchemaStep::CreateTable { table } => table.version,
                    SchemaStep::DeleteTable { version: Some(old), .. } => {
                        if *old == names.version(logical) {
                            return Err(PlanError::CurrentVersion { table: logical.to_owned(), version: *old }.into());
                        }
                        *old
                    }
                    _ => names.version(logical),
                };
                self.apply_schema_step(schema_step, &names.physical_version(logical, version), version, &mut report)
                    .await?;
                if let SchemaStep::CreateTable { table } = schema_step {
                    names.set_version(&table.name, table.version);
                }
            }
            Step::Data(data_step) => {
                let ctx = self.data_context(ledger, migration, index, names);
                if self.write_fixtures {
                    let mut by_table: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                    for fixture in &data_step.fixtures {
                        let mut item = fixture.item.clone().into();
                        unmark_item(&mut item);
                        by_table.entry(&fixture.table).or_default().push(item);
                    }
                    for (table, items) in by_table {
                        report.fixtures_written += ctx.put_items(table, items).await?;
                    }
                }
                report.data = Some(run_data_step(data_step, ctx.clone()).await?);
                if self.check_idempotence {
                    let again = ctx.idempotence_check();
                    run_data_step(data_step, again.clone()).await?;
                    let would = again.tally();
                    if would.written + would.deleted > 0 {
                        return Err(Error::NotIdempotent {
                            step: data_step.name.clone(),
                            written: would.written,
                            deleted: would.deleted,
                        });
                    }
                    report.checked.push("run again over its own output: nothing to write (idempotent)".to_owned());
                }
            }
            Step::Rebuild(rebuild) => {
                report.data = Some(self.rebuild(ledger, migration, index, rebuild, names, &mut report).await?);
                names.set_version(&rebuild.table.name, rebuild.table.version);
            }
        }
        Ok(report)
    }

    /// Plans a schema step against the live table and makes its calls.
    async fn apply_schema_step(
        &self,
        step: &SchemaStep,
        physical: &str,
        version: u32,
        report: &mut StepReport,
    ) -> Result<()> {
        let live = describe(&self.client, physical, step.table(), version, self.exec.local).await?;
        let current = live.map(|live| match step {
            SchemaStep::CreateTable { table } => live.assuming_unchecked_as(table),
            _ => live.def,
        });
        let (calls, _) = plan_step(current.as_ref(), step)?;
        for call in &calls {
            let line = call.describe(physical);
            match execute(&self.client, physical, call, &self.exec).await? {
                Outcome::Done => report.calls.push(line),
                Outcome::Skipped(why) => report.skipped.push(format!("{line}: {why}")),
            }
        }
        Ok(())
    }

    /// Creates the next version of a table, copies every item into it, and compares the counts.
    async fn rebuild(
        &self,
        ledger: &Ledger,
        migration: &Migration,
        index: usize,
        rebuild: &RebuildStep,
        names: &TableNames,
        report: &mut StepReport,
    ) -> Result<DataReport> {
        let table = &rebuild.table.name;
        let current = names.version(table);
        if rebuild.table.version != current + 1 {
            return Err(Error::Rebuild {
                table: table.clone(),
                reason: format!(
                    "the current version is {current}, so the rebuild must create version {}, not {}",
                    current + 1,
                    rebuild.table.version
                ),
            });
        }
        let old = names.physical(table);
        let new = names.physical_version(table, rebuild.table.version);
        if describe(&self.client, &old, table, current, self.exec.local).await?.is_none() {
            return Err(PlanError::TableMissing { table: table.clone(), step: report.step.clone() }.into());
        }
        let create = SchemaStep::CreateTable { table: rebuild.table.clone() };
        self.apply_schema_step(&create, &new, rebuild.table.version, report).await?;

        let ctx = self.data_context(ledger, migration, index, names);
        let map = rebuild.map.clone().unwrap_or_else(copy_map);
        let copied = ctx.run_pass(old.clone(), new.clone(), rebuild.options.clone(), map).await?;

        // Counts over both tables (not only this run's), so that a resumed copy is checked whole.
        let (in_old, in_new) = tokio::try_join!(count_items(&self.client, &old), count_items(&self.client, &new))?;
        let expected = in_old - copied.unchanged.min(in_old) - copied.failed.min(in_old);
        if in_new != expected {
            return Err(Error::Rebuild {
                table: table.clone(),
                reason: format!(
                    "{new} has {in_new} items after the copy but {expected} were expected ({old} has {in_old}, {} left out, {} failed); was {old} written to during the copy?",
                    copied.unchanged, copied.failed
                ),
            });
        }
        report.calls.push(format!("copied {old} -> {new}: {in_new} items, counts match"));
        Ok(copied)
    }
}

/// Runs a data step's async Rust; a panic in it (outside a transform, which the engine catches
/// item by item) fails the step with its message instead of unwinding through the migrator
/// and leaving the ledger record `running`.
async fn run_data_step(step: &crate::migration::DataStep, ctx: DataContext) -> Result<DataReport> {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(step.run(ctx)).catch_unwind().await {
        Ok(result) => result.map_err(Error::Data),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".to_owned());
            Err(Error::Data(anyhow::anyhow!("the data step panicked: {message}")))
        }
    }
}
