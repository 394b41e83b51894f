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

use crate::data::{
    CheckpointStore, DataContext, DataReport, Phase, Replay, ReplayHeader, ReplayReport, ReplayStore, copy_map,
    ensure_stream, key_attributes, now_ms, unmark_item,
};
use crate::drift::{drift, expected_tables, known_tables};
use crate::error::{Error, Result};
use crate::executor::{ExecOptions, Outcome, execute};
use crate::ledger::{Ledger, now};
use crate::live::describe;
use crate::lock::{Lock, LockOptions, holder as lock_holder};
use crate::migration::{Migration, RebuildStep, SchemaStep, Step};
use crate::names::TableNames;
use crate::planner::{PlanError, plan_step};
use crate::preview::{Pending, validate};
use crate::rules::{Recorded, RuleBook, RuleScope, counted};
use crate::sequence::{AppliedMigration, Status, pending};

/// The migration a schema step belongs to, and whether that migration runs again (so that what
/// its earlier attempt deleted is found gone).
#[derive(Debug, Clone, Copy)]
struct StepOf {
    migration: u32,
    resume: bool,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub calls: Vec<String>,
    pub skipped: Vec<String>,
    pub fixtures_written: u64,
    pub data: Option<DataReport>,
    /// What a rebuild's stream replay did (the catch-up, or the replay before a cut-over).
    pub replay: Option<ReplayReport>,
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
    /// Refuse to apply while the live tables differ from what the applied migrations produced.
    refuse_drift: bool,
    /// Check that the migration files on disk and the registrations agree.
    check_files: bool,
    streams: Option<StreamsClient>,
    quiet_window: Duration,
    copy_limit: Duration,
    rules: RuleScope,
    environment: String,
}

/// The longest a rebuild's copy may be estimated to take: stream records live 24 hours, and the
/// catch-up must start well before the oldest of them expire.
pub const COPY_LIMIT: Duration = Duration::from_secs(12 * 3600);

/// How long an old table must have had no writes before `delete_old_table` deletes it, unless
/// the migrator is told otherwise: none on DynamoDB Local, where nothing else writes.
pub const DEFAULT_QUIET_WINDOW: Duration = Duration::from_secs(15 * 60);

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
        }
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
    fn fenced_by(&self, lock: &Lock) -> (Migrator, Ledger) {
        let client = lock.fence(&self.client);
        let ledger = Ledger::new(client.clone(), &self.names).fenced(lock.token());
        (Migrator { client, cancel: lock.stop_signal(self.cancel.clone()), ..self.clone() }, ledger)
    }

    /// Releases `lock`; when it was lost meanwhile, the error that says so, whatever the run's
    /// own result was, with the commands to see where it stopped and to go on with `command`.
    async fn release(&self, lock: Lock, command: &str) -> Option<Error> {
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
        let drifts = drift(&self.client, &self.names, &expected, &known_tables(migrations), self.exec.local).await?;
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
    async fn apply_schema_step(
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

    /// The rebuild's replay of `header`'s stream (see `data::replay`).
    async fn replay(
        &self,
        ledger: &Ledger,
        version: u32,
        rebuild: &RebuildStep,
        header: &ReplayHeader,
    ) -> Result<Replay> {
        let streams = self.streams.clone().ok_or_else(|| Error::Rebuild {
            table: rebuild.table.name.clone(),
            reason: "the migrator has no DynamoDB Streams client (Migrator::with_streams), so it cannot replay the old table's writes".to_owned(),
        })?;
        let source_keys = key_attributes(&self.client, &header.source).await?;
        let target_keys = key_attributes(&self.client, &header.target).await?;
        Ok(Replay {
            dynamo: self.client.clone(),
            streams,
            source: header.source.clone(),
            keys_carry_over: rebuild.map.is_none() && source_keys == target_keys,
            source_keys,
            target: header.target.clone(),
            target_keys,
            stream_arn: header.stream_arn.clone(),
            map: rebuild.map.clone().unwrap_or_else(copy_map),
            drop_unknown_attributes: rebuild.options.drop_unknown_attributes,
            store: ReplayStore::new(ledger.clone(), version),
            cancel: self.cancel.clone(),
            writers: rebuild.options.writers,
            progress: self.progress,
        })
    }

    /// Online rebuild (see `data::replay` for the rule it keeps): makes sure the old table has a
    /// stream, creates the next version, copies every item into it through the transform with
    /// strongly consistent reads, then replays every stream record since before the copy. The
    /// new table is then current as of the end of the step; the old one stays, and writes to it
    /// are replayed by `sync` and by the `delete_old_table` step that ends it.
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
        let Some(live) = describe(&self.client, &old, table, current, self.exec.local).await? else {
            return Err(PlanError::TableMissing { table: table.clone(), step: report.step.clone() }.into());
        };
        if self.streams.is_none() {
            return Err(Error::Rebuild {
                table: table.clone(),
                reason: "the migrator has no DynamoDB Streams client (Migrator::with_streams), so it cannot replay the old table's writes".to_owned(),
            });
        }
        let key_names = |def: &dynamo_model::TableDef| def.keys().map(|k| k.name.clone()).collect::<Vec<_>>();
        let needs_old_images = rebuild.map.is_some() || key_names(&live.def) != key_names(&rebuild.table);
        let stream = ensure_stream(&self.client, &old, table, needs_old_images, self.exec.wait_timeout).await?;
        let store = ReplayStore::new(ledger.clone(), migration.version);
        let mut header = match store.header().await? {
            Some(header) if header.stream_arn != stream.arn => {
                return Err(crate::data::ReplayError::StreamChanged {
                    table: old.clone(),
                    target: new.clone(),
                    version: migration.version,
                    then: header.stream_arn,
                    now: stream.arn,
                }
                .into());
            }
            Some(header) => header,
            None => {
                let header = ReplayHeader {
                    version: migration.version,
                    source: old.clone(),
                    target: new.clone(),
                    stream_arn: stream.arn.clone(),
                    phase: Phase::Copying,
                    copy_started_ms: now_ms(),
                    synced_from_ms: None,
                    last_write_ms: None,
                    records: 0,
                };
                store.save_header(&header).await?;
                report.calls.push(format!(
                    "stream on {old} ({}): {}",
                    if stream.old_images { "NEW_AND_OLD_IMAGES" } else { "NEW_IMAGE" },
                    stream.arn
                ));
                header
            }
        };
        let create = SchemaStep::CreateTable { table: rebuild.table.clone() };
        let at = StepOf { migration: migration.version, resume: false };
        self.apply_schema_step(ledger, at, &create, (&new, rebuild.table.version), report).await?;

        let ctx = self.data_context(ledger, migration, index, names);
        let map = rebuild.map.clone().unwrap_or_else(copy_map);
        let mut options = rebuild.options.clone();
        options.consistent_read = true;
        if header.phase == Phase::Copying {
            let estimate = self.estimate_copy(&ctx, &old, &new, &options, &map, live.item_count).await?;
            report.calls.push(estimate);
        }
        let copy_started = Instant::now();
        let copied = ctx.run_pass(old.clone(), new.clone(), options, map).await?;
        let copy_secs = copy_started.elapsed().as_secs_f64();
        if header.phase == Phase::Copying {
            header.phase = Phase::CatchingUp;
            store.save_header(&header).await?;
        }
        report.calls.push(format!(
            "copied {old} -> {new}: {} items scanned, {} written ({:.0} items/s)",
            copied.scanned,
            copied.written,
            (copied.scanned - copied.resumed) as f64 / copy_secs.max(0.001)
        ));

        let replay = self.replay(ledger, migration.version, rebuild, &header).await?;
        let caught_up = replay.catch_up(&mut header).await?;
        header.phase = Phase::WaitingForCutOver;
        store.save_header(&header).await?;
        report.calls.push(format!(
            "caught up from the stream of {old}: {} records ({} puts, {} deletes, {:.0} records/s); {new} is current, waiting for cut-over",
            caught_up.records,
            caught_up.puts,
            caught_up.deletes,
            caught_up.records as f64 / (caught_up.millis as f64 / 1000.0).max(0.001)
        ));
        report.replay = Some(caught_up);
        Ok(copied)
    }

    /// Estimates the copy's duration from the old table's item count and the rate measured on a
    /// sample (the first page of every segment), and refuses a copy that would not end well
    /// within the stream's 24-hour retention; returns the estimate as a report line.
    async fn estimate_copy(
        &self,
        ctx: &DataContext,
        old: &str,
        new: &str,
        options: &crate::data::PassOptions,
        map: &std::sync::Arc<crate::data::MapFn>,
        item_count: Option<i64>,
    ) -> Result<String> {
        let items = item_count.unwrap_or(0).max(0) as f64;
        let (sampled, took) = ctx.sample_pass(old.to_owned(), new.to_owned(), options.clone(), map.clone()).await?;
        let mut rate = sampled as f64 / took.as_secs_f64().max(0.001);
        if let Some(crate::data::RateLimit::ItemsPerSecond(limit)) = options.rate {
            rate = rate.min(limit);
        }
        let estimate = Duration::from_secs_f64(if sampled == 0 { 0.0 } else { items / rate.max(0.001) });
        let line = format!(
            "estimated copy: {items:.0} items at {rate:.0} items/s (measured on {sampled} items) = {}",
            human(estimate)
        );
        if estimate > self.copy_limit {
            return Err(Error::Rebuild {
                table: old.to_owned(),
                reason: format!(
                    "{line}, more than the {} a copy may take: stream records live 24 hours, and the catch-up must begin well before the first of them expire. The copy has not started (a sample of it was written to {new}); give the rebuild more writers or segments (RebuildStep::options), raise the tables' write capacity, or lift a rate limit, then run `cargo xtask migrate --env <environment>` again",
                    human(self.copy_limit)
                ),
            });
        }
        Ok(line)
    }

    /// Before an old version of `logical` is deleted: when the rebuild that replaced it went the
    /// online way, replays its stream once more (what old instances wrote during the deploy), then
    /// requires the old table to have had no write for the quiet window.
    async fn before_cut_over(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
        logical: &str,
        old: u32,
        names: &TableNames,
    ) -> Result<Option<(ReplayReport, String)>> {
        let Some((version, rebuild)) = rebuild_of(migrations, logical, old + 1) else { return Ok(None) };
        let store = ReplayStore::new(ledger.clone(), version);
        let Some(mut header) = store.header().await? else {
            tracing::warn!(
                "table {logical}: version {old} was rebuilt without a stream replay; deleting it without one"
            );
            return Ok(None);
        };
        if header.phase == Phase::CutOver || header.source != names.physical_version(logical, old) {
            return Ok(None);
        }
        let replay = self.replay(ledger, version, rebuild, &header).await?;
        let replayed = replay.catch_up(&mut header).await?;
        let last_write = header.last_write_ms.unwrap_or(header.copy_started_ms);
        let quiet_for = Duration::from_millis(now_ms().saturating_sub(last_write));
        if quiet_for < self.quiet_window {
            return Err(Error::NotQuiet {
                table: header.source.clone(),
                new: header.target.clone(),
                since: crate::ledger::rfc3339_millis(last_write),
                quiet_s: quiet_for.as_secs(),
                window_s: self.quiet_window.as_secs(),
            });
        }
        header.phase = Phase::CutOver;
        store.save_header(&header).await?;
        let line = format!(
            "replayed the stream of {} once more: {} records ({} puts, {} deletes); no write for {} s (quiet window {} s)",
            header.source,
            replayed.records,
            replayed.puts,
            replayed.deletes,
            quiet_for.as_secs(),
            self.quiet_window.as_secs()
        );
        Ok(Some((replayed, line)))
    }
}

/// What `sync` did for one rebuild waiting for cut-over.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The migration whose rebuild this is.
    pub version: u32,
    pub source: String,
    pub target: String,
    pub phase: Phase,
    pub replay: ReplayReport,
    /// The old table's last write the stream showed, RFC 3339.
    pub last_write: Option<String>,
    /// How long the old table has had no write, in seconds.
    pub quiet_s: u64,
}

impl Migrator {
    /// Replays the pending stream records of every rebuild waiting for cut-over, holding the
    /// migration lock; with `until_quiet`, keeps following until each old table has had no write
    /// for that long (Ctrl-C stops it at a shard checkpoint).
    pub async fn sync(&self, migrations: &[Migration], until_quiet: Option<Duration>) -> Result<Vec<SyncReport>> {
        let ledger = self.ledger();
        ledger.ensure().await?;
        let lock = Lock::acquire(&self.client, ledger.table(), &self.lock).await?;
        let (fenced, ledger) = self.fenced_by(&lock);
        let result = fenced.sync_locked(&ledger, migrations, until_quiet).await;
        match self.release(lock, "sync").await {
            None => result,
            Some(error) => Err(error),
        }
    }

    async fn sync_locked(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
        until_quiet: Option<Duration>,
    ) -> Result<Vec<SyncReport>> {
        let mut reports = Vec::new();
        for migration in migrations {
            for step in &migration.steps {
                let Step::Rebuild(rebuild) = step else { continue };
                let store = ReplayStore::new(ledger.clone(), migration.version);
                let Some(mut header) = store.header().await? else { continue };
                if header.phase != Phase::WaitingForCutOver {
                    continue;
                }
                let replay = self.replay(ledger, migration.version, rebuild, &header).await?;
                let mut total = ReplayReport::default();
                let quiet = loop {
                    let done = replay.catch_up(&mut header).await?;
                    total.records += done.records;
                    total.puts += done.puts;
                    total.deletes += done.deletes;
                    total.shards = done.shards;
                    total.millis += done.millis;
                    let last_write = header.last_write_ms.unwrap_or(header.copy_started_ms);
                    let quiet = Duration::from_millis(now_ms().saturating_sub(last_write));
                    match until_quiet {
                        Some(window) if quiet < window && !*self.cancel.borrow() => {
                            tokio::time::sleep((window - quiet).min(Duration::from_secs(1))).await;
                        }
                        _ => break quiet,
                    }
                };
                reports.push(SyncReport {
                    version: migration.version,
                    source: header.source.clone(),
                    target: header.target.clone(),
                    phase: header.phase,
                    replay: total,
                    last_write: header.last_write_ms.map(crate::ledger::rfc3339_millis),
                    quiet_s: quiet.as_secs(),
                });
            }
        }
        Ok(reports)
    }
}

/// A duration for people: seconds, minutes or hours.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Where one rebuild stands, for `status` and `plan`.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildState {
    #[serde(flatten)]
    pub header: ReplayHeader,
    /// The old table's last write the stream showed, RFC 3339.
    pub last_write: Option<String>,
    /// How long ago that was, in seconds: the replay's lag while catching up, the quiet time while
    /// waiting for cut-over.
    pub since_s: Option<u64>,
}

impl std::fmt::Display for RebuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.header;
        write!(f, "migration {}: {} -> {}: {}", h.version, h.source, h.target, h.phase)?;
        match (h.phase, &self.last_write, self.since_s) {
            (Phase::CatchingUp, Some(at), Some(s)) => write!(f, " (newest record applied written at {at}, {s} s ago)"),
            (Phase::WaitingForCutOver, Some(at), Some(s)) => {
                write!(f, " (quiet since {at}, {s} s; `cargo xtask sync` replays what is written meanwhile)")
            }
            _ => Ok(()),
        }?;
        write!(f, "; {} stream records replayed", h.records)
    }
}

/// Where every rebuild of `migrations` that went the online way stands.
pub async fn rebuild_states(ledger: &Ledger, migrations: &[Migration]) -> Result<Vec<RebuildState>> {
    let mut states = Vec::new();
    for migration in migrations {
        if !migration.steps.iter().any(|s| matches!(s, Step::Rebuild(_))) {
            continue;
        }
        let Some(header) = ReplayStore::new(ledger.clone(), migration.version).header().await? else { continue };
        let last = header.last_write_ms;
        states.push(RebuildState {
            last_write: last.map(crate::ledger::rfc3339_millis),
            since_s: last.map(|ms| now_ms().saturating_sub(ms) / 1000),
            header,
        });
    }
    Ok(states)
}

/// The migration version and step that rebuilt `logical` as `version`, if one did.
pub(crate) fn rebuild_of<'a>(
    migrations: &'a [Migration],
    logical: &str,
    version: u32,
) -> Option<(u32, &'a RebuildStep)> {
    migrations.iter().find_map(|m| {
        m.steps.iter().find_map(|step| match step {
            Step::Rebuild(r) if r.table.name == logical && r.table.version == version => Some((m.version, r)),
            _ => None,
        })
    })
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
