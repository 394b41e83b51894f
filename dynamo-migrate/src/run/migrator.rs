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

use std::time::Duration;

use aws_sdk_dynamodbstreams::Client as StreamsClient;

use crate::data::{CheckpointStore, DataContext, DataReport, ReplayReport, now_ms, unmark_item};
use crate::drift::{drift, expected_tables, known_tables};
use crate::error::{Error, Result};
use crate::executor::{ExecOptions, Outcome, execute};
use crate::ledger::{Ledger, now};
use crate::live::describe;
use crate::lock::{Lock, LockOptions, holder as lock_holder};
use crate::migration::{Migration, SchemaStep, Step};
use crate::names::TableNames;
use crate::planner::{PlanError, plan_step};
use crate::preview::{Pending, validate};
use crate::rebuild::{COPY_LIMIT, DEFAULT_QUIET_WINDOW};
use crate::rules::{Recorded, RuleBook, RuleScope, counted};
use crate::sequence::{AppliedMigration, Status, pending};

/// The migration a schema step belongs to, and whether that migration runs again (so that what
/// its earlier attempt deleted is found gone).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepOf {
    pub(crate) migration: u32,
    pub(crate) resume: bool,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step, as [`Step::describe`](crate::Step::describe) says it.
    pub step: String,
    /// Each DynamoDB call made, as a plan line (`UpdateTable prod_customers: create GSI …`);
    /// for a rebuild, and the replay before an old version's delete, a line per phase (the
    /// copy's estimate, the copy, the catch-up, the check).
    pub calls: Vec<String>,
    /// Each call not made, and why: one DynamoDB Local cannot make (tags, point-in-time
    /// recovery, table class), or a delete an earlier attempt already made.
    pub skipped: Vec<String>,
    /// How many fixture items were written before a data step (on DynamoDB Local only).
    pub fixtures_written: u64,
    /// What a data step's passes, or a rebuild's copy, read and wrote.
    pub data: Option<DataReport>,
    /// What a rebuild's stream replay did (the catch-up, or the replay before a cut-over).
    pub replay: Option<ReplayReport>,
    /// Checks made after the step (that a data step is idempotent).
    pub checked: Vec<String>,
    /// A rebuild's convergence check, before its new version became current.
    pub check: Option<crate::rebuild::CheckReport>,
}

/// What one migration did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub name: String,
    /// True when it ran again after being interrupted or marked for a rerun, resuming its
    /// passes from their checkpoints.
    pub resumed: bool,
    /// What each step did, in order.
    pub steps: Vec<StepReport>,
    /// How long it took, in milliseconds.
    pub millis: u128,
}

/// What a run applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The migrations applied, in order.
    pub applied: Vec<MigrationReport>,
    /// Stopped by Ctrl-C between migrations, with more pending.
    pub interrupted: bool,
}

/// A run that stopped: what it applied before, and why it stopped.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    /// The migrations the run applied before it stopped.
    pub report: RunReport,
    /// Why it stopped.
    #[source]
    pub error: Error,
}

/// Applies migrations to one environment.
#[derive(Debug, Clone)]
pub struct Migrator {
    pub(crate) client: Client,
    pub(crate) names: TableNames,
    pub(crate) exec: ExecOptions,
    pub(crate) applied_by: String,
    pub(crate) write_fixtures: bool,
    pub(crate) cancel: watch::Receiver<bool>,
    pub(crate) progress: bool,
    pub(crate) lock: LockOptions,
    pub(crate) check_idempotence: bool,
    /// Refuse to apply while the live tables differ from what the applied migrations produced.
    pub(crate) refuse_drift: bool,
    /// Check that the migration files on disk and the registrations agree.
    pub(crate) check_files: bool,
    pub(crate) streams: Option<StreamsClient>,
    pub(crate) quiet_window: Duration,
    pub(crate) copy_limit: Duration,
    pub(crate) rules: RuleScope,
    pub(crate) environment: String,
    /// Deletes an old version whose convergence check found differences (the application's own
    /// writes to the new version, after review).
    pub(crate) accept_differences: bool,
    /// How the run shares its passes with worker processes.
    pub(crate) sharing: crate::data::Sharing,
    /// How long a segment's lease lasts without a renewal.
    pub(crate) segment_lease: Duration,
    /// A rehearsal's: every pass and replay keeps every failed item and accepts them all, to
    /// report them (see `rehearse`).
    pub(crate) rehearsal: Option<crate::rehearse::Collector>,
    /// Where rebuilds through Export to S3 and Import from S3 keep their files.
    #[cfg(feature = "export")]
    pub(crate) export: Option<crate::data::ExportPlace>,
    /// The time a rebuild reads to decide whether its stream still holds every write it must
    /// replay (see `data::replay`), and an export rebuild whether to bridge the gap since its
    /// export (see `export::bridge`).
    pub(crate) clock: fn() -> u64,
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
            refuse_drift: false,
            check_files: false,
            streams: None,
            quiet_window: if local { Duration::ZERO } else { DEFAULT_QUIET_WINDOW },
            copy_limit: COPY_LIMIT,
            rules: RuleScope::Run,
            environment: "<environment>".to_owned(),
            accept_differences: false,
            sharing: crate::data::Sharing::Alone,
            segment_lease: crate::data::DEFAULT_LEASE,
            rehearsal: None,
            #[cfg(feature = "export")]
            export: None,
            clock: now_ms,
        }
    }

    /// Opens each data pass (a data step's, a rebuild's copy) to worker processes (`cargo xtask
    /// worker`), which claim its segments under leases beside this run (see `workers`).
    pub fn with_sharing(mut self, sharing: crate::data::Sharing) -> Self {
        self.sharing = sharing;
        self
    }

    /// How long a segment's lease lasts without a renewal before another worker takes it over.
    pub fn with_segment_lease(mut self, lease: Duration) -> Self {
        self.segment_lease = lease;
        self
    }

    /// Runs as a rehearsal collecting into `collector`: the data passes and rebuild replays keep
    /// every failed item in files of the rehearsal's own and go on, and a rebuild becomes current
    /// with its failures left out, so that every step runs to its end and shows what fails.
    #[cfg_attr(not(feature = "local"), allow(dead_code))]
    pub(crate) fn rehearsing(mut self, collector: crate::rehearse::Collector) -> Self {
        self.rehearsal = Some(collector);
        self
    }

    /// Lets `delete_old_table` delete an old version whose convergence check found the new one
    /// different: items the application has written in the new version since it moved there.
    pub fn with_accepted_differences(mut self, on: bool) -> Self {
        self.accept_differences = on;
        self
    }

    /// Refuses to apply anything while the live tables differ from what the applied migrations
    /// produced; checked under the lock, so that another run's migration in flight is not taken
    /// for drift.
    pub fn with_drift_check(mut self, on: bool) -> Self {
        self.refuse_drift = on;
        self
    }

    /// Checks, before anything is written, that every `mNNNN_*.rs` file beside the migrations'
    /// own files is registered and that each file is what was compiled (see
    /// [`check_files`](crate::migration::check_files)): for a workspace's complete list of
    /// migrations, as the command line runs them.
    pub fn with_file_check(mut self, on: bool) -> Self {
        self.check_files = on;
        self
    }

    /// How much history the pre-flight counts against AWS's control-plane rules (see `rules`):
    /// the tables' and the whole run's (the default), or each migration's alone (`verify`).
    pub fn with_rules(mut self, scope: RuleScope) -> Self {
        self.rules = scope;
        self
    }

    /// The environment's name, for the commands a refusal suggests.
    pub fn with_environment(mut self, name: impl Into<String>) -> Self {
        self.environment = name.into();
        self
    }

    /// The longest a rebuild's copy may be estimated to take before the rebuild is refused.
    pub fn with_copy_limit(mut self, limit: Duration) -> Self {
        self.copy_limit = limit;
        self
    }

    /// Lets rebuilds fill their new version by Export to S3 and Import from S3, with their files
    /// in `place` (see `RebuildStep::via_export`).
    #[cfg(feature = "export")]
    #[cfg_attr(docsrs, doc(cfg(feature = "export")))]
    pub fn with_export(mut self, place: crate::data::ExportPlace) -> Self {
        self.export = Some(place);
        self
    }

    /// The clock a rebuild reads (milliseconds since the epoch) when it decides whether the
    /// stream still holds every write it must replay, and an export rebuild whether the changes
    /// since its export must be bridged by incremental exports: a test's clock runs a day ahead.
    /// The default is the system's.
    #[doc(hidden)]
    pub fn with_clock(mut self, now: fn() -> u64) -> Self {
        self.clock = now;
        self
    }

    /// The DynamoDB Streams client through which rebuilds replay their old table's writes
    /// (see `data::replay`); a rebuild without one is refused.
    pub fn with_streams(mut self, streams: StreamsClient) -> Self {
        self.streams = Some(streams);
        self
    }

    /// How long an old table must have had no writes before `delete_old_table` deletes it.
    pub fn with_quiet_window(mut self, window: Duration) -> Self {
        self.quiet_window = window;
        self
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

    /// The ledger of the migrator's environment, unfenced (a run fences its own by its lock).
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.client.clone(), &self.names)
    }

    /// Applies every pending migration up to `target` (all when `None`), in order, holding the
    /// migration lock: lock → ensure ledger → check it against the code → apply → unlock.
    pub async fn run(&self, migrations: &[Migration], target: Option<u32>) -> Result<RunReport, RunFailure> {
        let fail = |error: Error| RunFailure { report: RunReport::default(), error };
        let ledger = self.ledger();
        // Bad migrations are refused before anything is written, the ledger table included; the
        // check is made again under the lock, against the records as they are then.
        self.check_before_writing(&ledger, migrations, target).await.map_err(fail)?;
        ledger.ensure().await.map_err(fail)?;
        let lock = Lock::acquire(&self.client, ledger.table(), &self.lock).await.map_err(fail)?;
        let (fenced, ledger) = self.fenced_by(&lock);
        let result = fenced.run_locked(&ledger, migrations, target).await;
        // A run that applied everything before its lock was lost did all of its work under it.
        match (self.release(lock, "migrate").await, result) {
            (Some(error), Err(failure)) => Err(RunFailure { report: failure.report, error }),
            (Some(error), Ok(report)) if report.interrupted => Err(RunFailure { report, error }),
            (_, result) => result,
        }
    }

    /// This migrator and its ledger for the run that holds `lock`: every request goes through a
    /// client fenced by the lock (none is sent once it is lost), every ledger write carries its
    /// token, and the work stops at its next checkpoint on Ctrl-C or once the lock is lost.
    pub(crate) fn fenced_by(&self, lock: &Lock) -> (Migrator, Ledger) {
        let client = lock.fence(&self.client);
        let ledger = Ledger::new(client.clone(), &self.names).fenced(lock.token());
        (Migrator { client, cancel: lock.stop_signal(self.cancel.clone()), ..self.clone() }, ledger)
    }

    /// Releases `lock`; when it was lost meanwhile, the error that says so, whatever the run's
    /// own result was, with the commands to see where it stopped and to go on with `command`.
    pub(crate) async fn release(&self, lock: Lock, command: &str) -> Option<Error> {
        let lost = lock.lost();
        if let Err(e) = lock.release().await {
            tracing::warn!("could not release the migration lock (its lease will run out): {e:#}");
        }
        lost.map(|loss| Error::RunLostLock {
            table: self.names.ledger().to_owned(),
            loss,
            env: self.lock.env.clone().unwrap_or_else(|| "<environment>".to_owned()),
            command: command.to_owned(),
        })
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
        let versions: Vec<u32> = match pending(&records, &known) {
            Ok(v) => v.into_iter().filter(|v| target.is_none_or(|t| *v <= t)).collect(),
            Err(e) => return Err(fail(report, e.into())),
        };
        let resuming: Vec<u32> = records.iter().filter(|r| r.status.is_resumable()).map(|r| r.version).collect();
        let pending = Pending { versions: &versions, resuming: &resuming };
        if let Err(e) = self.check_drift(migrations, &records).await {
            return Err(fail(report, e));
        }
        if let Err(e) = self.validate(migrations, pending).await {
            return Err(fail(report, e));
        }
        // Before the first write: a call AWS would refuse now, given what the tables and this
        // run have changed recently, stops the run (see `rules`).
        let book = RuleBook::new(now_ms(), self.rules, &self.environment);
        let checked = crate::preview::preflight(&self.client, &self.names, migrations, pending, self.exec.local, book);
        if let Err(e) = checked.await {
            return Err(fail(report, e));
        }
        for version in versions {
            if *self.cancel.borrow() {
                report.interrupted = true;
                break;
            }
            let migration = migrations.iter().find(|m| m.version == version).expect("pending versions are known");
            let names = names_after(&self.names, migrations.iter().filter(|m| m.version < version));
            let resume = resuming.contains(&version);
            match self.apply(ledger, migrations, migration, names, resume).await {
                Ok(done) => report.applied.push(done),
                Err(e) => return Err(fail(report, e)),
            }
        }
        Ok(report)
    }

    async fn check_drift(&self, migrations: &[Migration], records: &[AppliedMigration]) -> Result<()> {
        if !self.refuse_drift {
            return Ok(());
        }
        let applied = migrations
            .iter()
            .filter(|m| records.iter().any(|r| r.version == m.version && r.status == Status::Succeeded));
        let expected = expected_tables(applied)?;
        let mut drifts =
            drift(&self.client, &self.names, &expected, &known_tables(migrations), self.exec.local).await?;
        // A migration that stopped half-way (failed, interrupted, marked for a rerun) left its
        // tables between two states: a rebuild's stream and new version, a GSI created but not
        // the next one. That is not drift: running it again goes on from the live tables.
        let resuming: Vec<Migration> = migrations
            .iter()
            .filter(|m| records.iter().any(|r| r.version == m.version && r.status.is_resumable()))
            .cloned()
            .collect();
        let in_flux = known_tables(&resuming);
        drifts.retain(|d| !in_flux.contains(&d.table));
        if drifts.is_empty() { Ok(()) } else { Err(Error::Drift { drifts }) }
    }

    /// The migrations' problems, found without the lock, before anything (even the ledger table)
    /// is written. What another run may be changing meanwhile is decided under the lock: the
    /// ledger's refusals (a record another run holds `running` is its work in flight, not a
    /// crash), and problems seen while the lock is held.
    async fn check_before_writing(&self, ledger: &Ledger, migrations: &[Migration], target: Option<u32>) -> Result<()> {
        let records = ledger.records().await?;
        let known: Vec<_> = migrations.iter().map(Migration::info).collect();
        let Ok(versions) = pending(&records, &known) else { return Ok(()) };
        let versions: Vec<u32> = versions.into_iter().filter(|v| target.is_none_or(|t| *v <= t)).collect();
        let resuming: Vec<u32> = records.iter().filter(|r| r.status.is_resumable()).map(|r| r.version).collect();
        match self.validate(migrations, Pending { versions: &versions, resuming: &resuming }).await {
            Err(Error::Invalid { .. })
                if ledger.exists().await? && lock_holder(&self.client, ledger.table()).await?.is_some() =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Validates and plans every pending migration against the live tables before the first
    /// write (see `preview::validate`); nothing is applied while a problem stands.
    async fn validate(&self, migrations: &[Migration], pending: Pending<'_>) -> Result<()> {
        let (client, names, local) = (&self.client, &self.names, self.exec.local);
        let (_, problems) =
            validate(client, names, migrations, pending, self.check_files, local, &self.environment).await?;
        if problems.is_empty() { Ok(()) } else { Err(Error::Invalid { problems }) }
    }

    async fn apply(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
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
                self.apply_step(ledger, migrations, migration, index, &mut names, resume).await
            };
            match applied {
                Ok(done) => steps.push(done),
                Err(source) => {
                    let error = Error::Step {
                        version: migration.version,
                        name: migration.name.clone(),
                        step: step.describe(),
                        cause: Box::new(source),
                    };
                    // A cut-over refused because the old table is still written to is no failure
                    // of the migration: the next run tries again.
                    let resumable = error.is_interrupted() || error.is_not_quiet();
                    let status = if resumable { Status::Interrupted } else { Status::Failed };
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

    pub(crate) fn data_context(
        &self,
        ledger: &Ledger,
        migration: &Migration,
        index: usize,
        names: &TableNames,
    ) -> DataContext {
        DataContext::in_migration(
            self.client.clone(),
            names.clone(),
            CheckpointStore::in_ledger(ledger.clone(), migration.version, &migration.name, &migration.checksum),
            index,
            self.cancel.clone(),
            self.progress,
        )
        .shared(crate::data::Role::Run(self.sharing), self.segment_lease)
        .rehearsing(self.rehearsal.as_ref().map(|c| c.for_migration(migration.version)))
    }

    async fn apply_step(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
        migration: &Migration,
        index: usize,
        names: &mut TableNames,
        resume: bool,
    ) -> Result<StepReport> {
        let step = &migration.steps[index];
        let mut report = StepReport {
            step: step.describe(),
            calls: vec![],
            skipped: vec![],
            fixtures_written: 0,
            data: None,
            replay: None,
            checked: vec![],
            check: None,
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
                        let physical = names.physical_version(logical, *old);
                        if resume && describe(&self.client, &physical, logical, *old, self.exec.local).await?.is_none()
                        {
                            report.skipped.push(format!("DeleteTable {physical}: deleted by the earlier attempt"));
                            return Ok(report);
                        }
                        if let Some((replayed, line)) =
                            self.before_cut_over(ledger, migrations, logical, *old, names).await?
                        {
                            report.calls.push(line);
                            report.replay = Some(replayed);
                        }
                        *old
                    }
                    _ => names.version(logical),
                };
                let physical = names.physical_version(logical, version);
                let at = StepOf { migration: migration.version, resume };
                self.apply_schema_step(ledger, at, schema_step, (&physical, version), &mut report).await?;
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

    /// Plans a schema step against the live table (`physical`, version `version`) and makes its
    /// calls, recording in the ledger those AWS counts (see `rules`) as made by migration `at`.
    pub(crate) async fn apply_schema_step(
        &self,
        ledger: &Ledger,
        at: StepOf,
        step: &SchemaStep,
        (physical, version): (&str, u32),
        report: &mut StepReport,
    ) -> Result<()> {
        let StepOf { migration, resume } = at;
        let live = describe(&self.client, physical, step.table(), version, self.exec.local).await?;
        let current = live.map(|live| match step {
            SchemaStep::CreateTable { table } => live.assuming_unchecked_as(table),
            _ => live.def,
        });
        let calls = match plan_step(current.as_ref(), step) {
            Ok((calls, _)) => calls,
            // A migration that runs again finds what its earlier attempt deleted gone.
            Err(PlanError::NothingToDelete { what }) if resume => {
                report.skipped.push(format!("delete {what}: deleted by the earlier attempt"));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        for call in &calls {
            let line = call.describe(physical);
            match execute(&self.client, physical, call, &self.exec).await? {
                Outcome::Done => {
                    report.calls.push(line);
                    if let Some(kind) = counted(current.as_ref(), call) {
                        let change = Recorded { kind, at_ms: now_ms(), version: migration };
                        ledger.record_control_change(physical, change).await?;
                    }
                }
                Outcome::Skipped(why) => report.skipped.push(format!("{line}: {why}")),
            }
        }
        Ok(())
    }
}

/// Runs a data step's async Rust; a panic in it (outside a transform, which the engine catches
/// item by item) fails the step with its message instead of unwinding through the migrator
/// and leaving the ledger record `running`.
pub(crate) async fn run_data_step(step: &crate::migration::DataStep, ctx: DataContext) -> Result<DataReport> {
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
