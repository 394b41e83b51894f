//! The rehearsal itself: the copy, the run, the checks, the report (see the parent module).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use dynamo_model::TableDef;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use thiserror::Error;

use super::collect::{Collector, PassRun, key_display};
use super::estimate::{Estimate, TableFacts, Work, estimate, facts, scan_units};
use super::sample::{Sample, SampleOptions, SampleReport, read};
use crate::Project;
use crate::client::{Target, connect, connect_streams, read_only};
use crate::data::{BATCH, Concurrency, DataReport, Item, RateLimit, Writer, key_attributes, without_retries};
use crate::drift::known_tables;
use crate::error::Error;
use crate::executor::{ExecOptions, execute};
use crate::ledger::Ledger;
use crate::live::{describe, list_tables};
use crate::local::{DynamoDbLocal, LocalError, LocalOptions};
use crate::migration::{Migration, SchemaStep, Step};
use crate::migrator::{MigrationReport, Migrator, StepReport};
use crate::names::TableNames;
use crate::planner::plan_step;
use crate::rebuild::CheckReport;
use crate::rules::RuleScope;
use crate::sequence::pending;
use crate::verify::{TableCheck, check_tables};

/// How a rehearsal runs.
#[derive(Debug, Clone)]
pub struct RehearsalOptions {
    /// How much of each table to copy; by default a sample of 1000 items.
    pub sample: Sample,
    /// Segments to cut each table into (see `sample`).
    pub segments: Option<u32>,
    /// At most this many read units a second from the environment.
    pub read_units_per_second: Option<f64>,
    /// The rehearsal's own DynamoDB Local.
    pub local: LocalOptions,
    /// The environment's name, for the report and the commands it suggests.
    pub environment: String,
    /// The environment is on a loopback endpoint (DynamoDB Local describes less).
    pub environment_is_local: bool,
    /// Check the migration files on disk against the registrations, as `migrate` does.
    pub check_files: bool,
    /// Apply even though the tables differ from what the applied migrations produced, as
    /// `migrate --allow-drift` does.
    pub allow_drift: bool,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Failed items listed per step (all are counted).
    pub listed: usize,
}

impl Default for RehearsalOptions {
    fn default() -> Self {
        RehearsalOptions {
            sample: Sample::Items(1000),
            segments: None,
            read_units_per_second: None,
            local: LocalOptions::default(),
            environment: crate::error::ENVIRONMENT_PLACEHOLDER.to_owned(),
            environment_is_local: false,
            check_files: false,
            allow_drift: false,
            progress: false,
            listed: 10,
        }
    }
}

/// Why a rehearsal could not be made (what it finds goes in its report instead).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RehearseError {
    /// No DynamoDB Local for the copy: a setup problem.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// Reading the environment, or writing the copy, failed.
    #[error(transparent)]
    Engine(#[from] Error),
    /// The rehearsal's private folder for the failed items of its passes (in the system's
    /// temporary folder) could not be made.
    #[error("the rehearsal's folder for failed items cannot be made: {0}")]
    Folder(std::io::Error),
}

/// A table of the environment and what was copied of it.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedTable {
    /// Its physical name, the same in the environment and in the copy.
    pub table: String,
    /// The logical table it is a version of.
    pub logical: String,
    /// Which version of it.
    pub version: u32,
    /// What the environment describes.
    pub facts: TableFacts,
    /// What was read of it.
    pub read: SampleReport,
}

impl CopiedTable {
    /// How many of the environment's items one item of the copy stands for.
    fn scale(&self) -> f64 {
        if self.read.whole_table || self.read.items == 0 {
            1.0
        } else {
            (self.facts.item_count.max(0) as f64 / self.read.items as f64).max(1.0)
        }
    }
}

/// An item that failed a step, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedFailure {
    /// The table its dead-letter line names (physical): the table the pass read, or the table
    /// written when DynamoDB refused the write.
    pub table: String,
    /// Its key as people read it (`{customer_nr: 1042, record: "profile"}`), in key-schema
    /// order.
    pub key: String,
    /// The typed read's message: every attribute that fails, and why.
    pub error: String,
}

/// A pass of a step, with its extrapolation to the whole table.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsedPass {
    /// What the pass did on the copy (its fields are this value's own in JSON).
    #[serde(flatten)]
    pub run: PassRun,
    /// Items a second it went through here.
    pub items_per_s: f64,
    /// The same pass over the environment's whole table.
    pub estimate: Option<Estimate>,
}

/// A step as it ran in the rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsedStep {
    /// The step in words (`data step <name>`, `rebuild table <table> as version <n>`, …).
    pub step: String,
    /// What the migrator reported, when the step ended.
    pub report: Option<StepReport>,
    /// Its data passes (a rebuild's copy), in order; an in-place pass's second run, the
    /// idempotence check, is left out.
    pub passes: Vec<RehearsedPass>,
    /// The first items that failed it (each once), with the attribute and reason.
    pub failures: Vec<ListedFailure>,
    /// Read units its convergence check would spend on the whole table (a rebuild).
    pub check_read_units: Option<f64>,
    /// Why it would fail in the environment, if it would.
    pub would_fail: Option<String>,
}

/// A pending migration as it ran in the rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsedMigration {
    /// Its version.
    pub version: u32,
    /// Its name.
    pub name: String,
    /// Applied to its end in the copy.
    pub applied: bool,
    /// How long applying it took in the copy, in milliseconds; 0 when it was not applied to its
    /// end.
    pub millis: u128,
    /// Its steps, in order.
    pub steps: Vec<RehearsedStep>,
}

/// The DynamoDB Local that held the copy.
#[derive(Debug, Clone, Serialize)]
pub struct LocalServer {
    /// Its URL.
    pub endpoint: String,
    /// `container`, `java` or `given`.
    pub backend: String,
    /// How long finding or starting it took, in milliseconds.
    pub started_ms: u128,
}

/// Everything a rehearsal did and found.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsalReport {
    /// The environment's name.
    pub environment: String,
    /// How much of each table was copied.
    pub sample: Sample,
    /// The rehearsal's DynamoDB Local, when pending migrations needed one.
    pub local: Option<LocalServer>,
    /// The versions pending in the environment.
    pub pending: Vec<u32>,
    /// The environment's tables that the migrations know, as copied.
    pub tables: Vec<CopiedTable>,
    /// Read units spent on the environment, in all.
    pub read_units: f64,
    /// How long copying the tables and the ledger's records took, in milliseconds.
    pub copy_millis: u128,
    /// The pending migrations as they ran in the copy, in order.
    pub migrations: Vec<RehearsedMigration>,
    /// Why the run stopped before applying every pending migration, when it did.
    pub run_error: Option<String>,
    /// The tables after the run, checked as `verify` checks them.
    pub checked: Vec<TableCheck>,
    /// Everything that would go wrong in the environment: steps that would fail, items the
    /// schema crate's types cannot read, differences from the schema crate.
    pub problems: Vec<String>,
    /// How long the rehearsal took, in milliseconds.
    pub millis: u128,
}

impl RehearsalReport {
    /// True when the rehearsal found no problem (also when nothing was pending).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Rehearses the migrations of `project` pending in the environment that `environment` (a
/// client of it) and `names` (its table names) reach; `narrate` is told what happens as it does.
pub async fn rehearse(
    environment: &Client,
    names: &TableNames,
    project: &Project,
    options: &RehearsalOptions,
    narrate: &(dyn Fn(String) + Sync),
) -> Result<RehearsalReport, RehearseError> {
    let started = Instant::now();
    // Every read of the environment goes through this client, which sends nothing else.
    let env = read_only(environment, format!("environment {}", options.environment));
    let mut report = RehearsalReport {
        environment: options.environment.clone(),
        sample: options.sample,
        local: None,
        pending: vec![],
        tables: vec![],
        read_units: 0.0,
        copy_millis: 0,
        migrations: vec![],
        run_error: None,
        checked: vec![],
        problems: vec![],
        millis: 0,
    };
    let ledger = Ledger::new(env.clone(), names);
    let records = ledger.records().await?;
    let known: Vec<_> = project.migrations.iter().map(Migration::info).collect();
    report.pending = pending(&records, &known).map_err(Error::Sequence)?;
    if report.pending.is_empty() {
        report.millis = started.elapsed().as_millis();
        return Ok(report);
    }

    let server = DynamoDbLocal::start(&options.local).await?;
    report.local = Some(LocalServer {
        endpoint: server.endpoint().to_owned(),
        backend: server.backend().to_owned(),
        started_ms: server.started_in().as_millis(),
    });
    let target = Target::local(server.endpoint());
    let local = connect(&target).await;
    narrate(format!(
        "DynamoDB Local ({}, in memory) at {}, ready in {:.1} s",
        server.backend(),
        server.endpoint(),
        server.started_in().as_secs_f64()
    ));

    let copy_started = Instant::now();
    let known_tables = known_tables(&project.migrations);
    for physical in list_tables(&env).await? {
        let Some((logical, version)) = names.logical(&physical) else { continue };
        if !known_tables.contains(logical) {
            continue;
        }
        let copied = copy_table(&env, &local, (&physical, logical, version), options).await?;
        narrate(format!(
            "copied {physical}: {} of its {} items (DynamoDB's estimate) from {} of {} segments, {:.1} read units, {:.1} s",
            copied.read.items,
            copied.facts.item_count,
            copied.read.segments_read,
            copied.read.segments,
            copied.read.read_units,
            copied.read.millis as f64 / 1000.0
        ));
        report.read_units += copied.read.read_units;
        report.tables.push(copied);
    }
    let copied_ledger = Ledger::new(local.clone(), names);
    copied_ledger.ensure().await?;
    ledger.copy_records_into(&copied_ledger).await?;
    report.copy_millis = copy_started.elapsed().as_millis();

    let collector = Collector::new().map_err(RehearseError::Folder)?;
    let migrator = Migrator::new(local.clone(), names.clone(), true, format!("rehearsal of {}", options.environment))
        .with_streams(connect_streams(&target).await)
        .with_idempotence_check(true)
        .with_file_check(options.check_files)
        .with_drift_check(!options.allow_drift)
        .with_environment(&options.environment)
        .with_rules(RuleScope::Run)
        .with_progress(options.progress)
        .rehearsing(collector.clone());
    let (applied, stopped) = match migrator.run(&project.migrations, None).await {
        Ok(run) => (run.applied, None),
        Err(failure) => (failure.report.applied, Some(failure.error)),
    };
    report.run_error = stopped.as_ref().map(|e| format!("{e:#}"));
    // A run that stopped at a step is that step's problem; one that stopped before any (the
    // ledger, drift, the pre-flight) is the run's.
    let stopped_at = match &stopped {
        Some(Error::Step { version, step, cause, .. }) => Some((*version, step.clone(), format!("{cause:#}"))),
        _ => None,
    };
    if let (None, Some(error)) = (&stopped_at, &report.run_error) {
        report.problems.push(format!("the migrations would stop: {error}"));
    }

    let runs = collector.runs();
    let keys = key_orders(&local, &runs).await;
    for version in report.pending.clone() {
        let migration = project.migrations.iter().find(|m| m.version == version).expect("pending versions are known");
        let done = applied.iter().find(|m| m.version == version);
        let shown = Shown { names, keys: &keys, listed: options.listed, stopped_at: stopped_at.as_ref() };
        let rehearsed = rehearse_migration(migration, done, &runs, &collector, &report, &shown);
        report.problems.extend(rehearsed.steps.iter().filter_map(|s| {
            s.would_fail.as_ref().map(|why| format!("migration {} ({}), {}: {why}", version, migration.name, s.step))
        }));
        report.migrations.push(rehearsed);
    }
    if report.run_error.is_none() {
        check_tables(&local, names, &project.tables, &mut report.checked, &mut report.problems).await;
    }
    report.millis = started.elapsed().as_millis();
    Ok(report)
}

/// Creates `physical` in the copy as the environment describes it (its stream after its items,
/// so that the stream holds only what the migrations write), and copies the sample into it.
async fn copy_table(
    env: &Client,
    local: &Client,
    (physical, logical, version): (&str, &str, u32),
    options: &RehearsalOptions,
) -> Result<CopiedTable, Error> {
    let live = describe(env, physical, logical, version, options.environment_is_local).await?.ok_or_else(|| {
        Error::NoSuchTable { table: physical.to_owned(), what: "it cannot be copied (deleted meanwhile?)".to_owned() }
    })?;
    let facts = facts(env, physical).await?.unwrap_or_else(|| TableFacts {
        table: physical.to_owned(),
        item_count: 0,
        size_bytes: 0,
        provisioned: None,
        warm: None,
        infrequent_access: false,
    });
    // DynamoDB Local keeps no table class, tags or point-in-time recovery (see `live`).
    let copy = TableDef {
        stream: None,
        point_in_time_recovery: false,
        tags: BTreeMap::new(),
        table_class: Default::default(),
        ..live.def.clone()
    };
    let exec = ExecOptions::new(true);
    for call in plan_step(None, &SchemaStep::CreateTable { table: copy.clone() })?.0 {
        execute(local, physical, &call, &exec).await?;
    }
    let writer = Writer {
        client: without_retries(local),
        table: physical.to_owned(),
        keys: copy.keys().map(|k| k.name.clone()).collect(),
        concurrency: Arc::new(Concurrency::new(32)),
        rate: None,
    };
    let sample_options = SampleOptions {
        segments: options.segments,
        read_units_per_second: options.read_units_per_second,
        progress: options.progress,
    };
    let size = (facts.item_count, facts.size_bytes);
    let read = read(env, physical, size, options.sample, &sample_options, |items| write_page(&writer, items)).await?;
    if let Some(view) = live.def.stream {
        let on = SchemaStep::UpdateStream { table: logical.to_owned(), stream: Some(view) };
        for call in plan_step(Some(&copy), &on)?.0 {
            execute(local, physical, &call, &exec).await?;
        }
    }
    Ok(CopiedTable { table: physical.to_owned(), logical: logical.to_owned(), version, facts, read })
}

/// Writes a page of the sample into the copy, in batches.
async fn write_page(writer: &Writer, items: Vec<Item>) -> Result<(), Error> {
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            PutRequest::builder().set_item(Some(item)).build().map(|p| WriteRequest::builder().put_request(p).build())
        })
        .collect::<Result<_, _>>()
        .map_err(Error::Build)?;
    let batches: Vec<Vec<WriteRequest>> = requests.chunks(BATCH).map(<[_]>::to_vec).collect();
    let refused: Vec<Vec<_>> = futures::stream::iter(batches)
        .map(|batch| writer.write(batch))
        .buffer_unordered(4)
        .try_collect()
        .await
        .map_err(Error::Pass)?;
    match refused.into_iter().flatten().next() {
        None => Ok(()),
        Some(r) => Err(Error::Pass(crate::data::DataError::Item {
            table: writer.table.clone(),
            key: writer.key_of(&r.request),
            error: r.error,
        })),
    }
}

/// The key attributes of every table a pass read, in key-schema order, to show keys in.
async fn key_orders(local: &Client, runs: &[PassRun]) -> BTreeMap<String, Vec<String>> {
    let mut orders = BTreeMap::new();
    for run in runs {
        if !orders.contains_key(&run.source) {
            orders.insert(run.source.clone(), key_attributes(local, &run.source).await.unwrap_or_default());
        }
    }
    orders
}

/// How the report names tables and keys.
struct Shown<'a> {
    names: &'a TableNames,
    /// Each table's key attributes, in key-schema order.
    keys: &'a BTreeMap<String, Vec<String>>,
    /// Failed items listed per step.
    listed: usize,
    /// The migration and step the run stopped at, and why.
    stopped_at: Option<&'a (u32, String, String)>,
}

/// One pending migration as it ran: its steps, their passes and failures, and their estimates.
fn rehearse_migration(
    migration: &Migration,
    done: Option<&MigrationReport>,
    runs: &[PassRun],
    collector: &Collector,
    report: &RehearsalReport,
    shown: &Shown<'_>,
) -> RehearsedMigration {
    let mut steps = Vec::new();
    for (index, step) in migration.steps.iter().enumerate() {
        let step_report = done.and_then(|d| d.steps.get(index)).cloned();
        let passes: Vec<RehearsedPass> = runs
            .iter()
            .filter(|r| r.migration == migration.version && r.step == index && !r.again)
            .map(|run| {
                let table = copied_table_of(report, shown.names, &run.source);
                let items_per_s =
                    run.report.map_or(0.0, |r| r.scanned as f64 / (run.millis as f64 / 1000.0).max(0.001));
                let estimate = run.report.map(|r| extrapolate(run, r, items_per_s, table));
                RehearsedPass { run: run.clone(), items_per_s, estimate }
            })
            .collect();
        let failures = collector
            .failures(migration.version, index, shown.listed)
            .into_iter()
            .map(|f| ListedFailure {
                key: key_display(&f.key, shown.keys.get(&f.table).map_or(&[][..], Vec::as_slice)),
                table: f.table,
                error: f.error,
            })
            .collect();
        let check_read_units = match (step, step_report.as_ref().and_then(|s| s.check.as_ref())) {
            (Step::Rebuild(rebuild), Some(check)) => {
                let scale =
                    report.tables.iter().find(|t| t.logical == rebuild.table.name).map_or(1.0, CopiedTable::scale);
                Some((check.read_units * scale).ceil())
            }
            _ => None,
        };
        let would_fail = judge(&passes, step_report.as_ref().and_then(|s| s.check.as_ref()));
        steps.push(RehearsedStep {
            step: step.describe(),
            report: step_report,
            passes,
            failures,
            check_read_units,
            would_fail,
        });
    }
    // The step the run stopped at, if it stopped in this migration.
    if let Some((version, step, why)) = shown.stopped_at
        && *version == migration.version
        && let Some(stopped) = steps.iter_mut().find(|s| s.report.is_none() && s.step == *step)
    {
        stopped.would_fail.get_or_insert_with(|| format!("the run stops here: {why}"));
    }
    RehearsedMigration {
        version: migration.version,
        name: migration.name.clone(),
        applied: done.is_some(),
        millis: done.map_or(0, |d| d.millis),
        steps,
    }
}

/// The environment's table a pass's source stands for: the table itself, or (for a version the
/// migrations create) the version of the same table that was copied.
fn copied_table_of<'a>(report: &'a RehearsalReport, names: &TableNames, source: &str) -> Option<&'a CopiedTable> {
    report.tables.iter().find(|t| t.table == source).or_else(|| {
        let (logical, _) = names.logical(source)?;
        report.tables.iter().find(|t| t.logical == logical)
    })
}

/// A pass over the sample, extrapolated to the environment's whole table.
fn extrapolate(run: &PassRun, done: DataReport, items_per_s: f64, table: Option<&CopiedTable>) -> Estimate {
    let scale = table.map_or(1.0, CopiedTable::scale);
    let per_item = |total: u64| match table {
        Some(t) if t.read.items > 0 => total as f64 / t.read.items as f64,
        _ => 0.0,
    };
    let (bytes_per_item, writes_per_item) =
        table.map_or((0.0, 1.0), |t| (per_item(t.read.bytes), per_item(t.read.write_units).max(1.0)));
    let items = (done.scanned as f64 * scale).round();
    let work = Work {
        items: items as u64,
        read_units: scan_units(items * bytes_per_item, run.consistent_read),
        write_units: ((done.written + done.deleted) as f64 * scale * writes_per_item).ceil(),
    };
    let measured = (items_per_s, format!("at the {items_per_s:.0} items/s it went through here"));
    let rate = match run.rate {
        Some(RateLimit::ItemsPerSecond(limit)) if limit < items_per_s => {
            (limit, format!("its rate limit of {limit} items/s"))
        }
        _ => measured,
    };
    let failed = (done.failed as f64 * scale).round() as u64;
    let facts = table.map(|t| t.facts.clone()).unwrap_or_else(|| TableFacts {
        table: run.source.clone(),
        item_count: 0,
        size_bytes: 0,
        provisioned: None,
        warm: None,
        infrequent_access: false,
    });
    estimate(work, &facts, Some(rate), Some(failed))
}

/// Why a step would fail in the environment: a pass that stopped, or more failed items (at the
/// share of the sample that failed) than the step accepts.
fn judge(passes: &[RehearsedPass], check: Option<&CheckReport>) -> Option<String> {
    for pass in passes {
        let run = &pass.run;
        if let Some(error) = &run.error {
            return Some(format!("pass over {}: {error}", run.source));
        }
        let (Some(done), Some(estimate)) = (run.report, &pass.estimate) else { continue };
        let failed = estimate.failed.unwrap_or(done.failed);
        if done.failed > 0 && !run.budget.allows(failed, estimate.items) {
            let (read, budget) = (done.scanned, run.budget);
            return Some(if estimate.items == read {
                format!("{failed} of the environment's {read} item(s) failed, and the step accepts {budget}")
            } else {
                format!(
                    "{} of the {read} item(s) read here failed (about {failed} of the environment's {}), and the step accepts {budget}",
                    done.failed, estimate.items
                )
            });
        }
    }
    check.filter(|c| !c.is_clean()).map(|c| format!("its convergence check found differences: {}", c.summary()))
}
