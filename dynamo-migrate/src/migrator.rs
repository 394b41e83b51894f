//! The run sequence: ensure the ledger, check it against the code, apply what is pending.
//!
//! After sqlx's `Migrator::run_direct`: ensure ledger → dirty and checksum checks (all in
//! `sequence::pending`) → apply one migration at a time, recording running → succeeded/failed.
//! A failed run reports what it did apply before it failed (refinery's `Error { report }`).

use std::time::Instant;

use aws_sdk_dynamodb::Client;
use serde::Serialize;

use crate::data::{DataContext, DataReport};
use crate::error::{Error, Result};
use crate::executor::{ExecOptions, Outcome, execute};
use crate::ledger::{Ledger, now};
use crate::live::describe;
use crate::migration::{Migration, SchemaStep, Step};
use crate::names::TableNames;
use crate::planner::plan_step;
use crate::sequence::{AppliedMigration, Status, pending};

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub calls: Vec<String>,
    pub skipped: Vec<String>,
    pub fixtures_written: usize,
    pub data: Option<DataReport>,
}

/// What one migration did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub version: u32,
    pub name: String,
    pub steps: Vec<StepReport>,
    pub millis: u128,
}

/// What a run applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub applied: Vec<MigrationReport>,
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
}

impl Migrator {
    /// A migrator for the tables named by `names`; `local` says the endpoint is DynamoDB Local.
    pub fn new(client: Client, names: TableNames, local: bool, applied_by: impl Into<String>) -> Self {
        Migrator { client, names, exec: ExecOptions::new(local), applied_by: applied_by.into(), write_fixtures: false }
    }

    /// Writes each data step's fixture items before it runs (on DynamoDB Local only).
    pub fn with_fixtures(mut self, on: bool) -> Self {
        self.write_fixtures = on && self.exec.local;
        self
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.client.clone(), &self.names)
    }

    /// Applies every pending migration up to `target` (all when `None`), in order.
    pub async fn run(&self, migrations: &[Migration], target: Option<u32>) -> Result<RunReport, RunFailure> {
        let mut report = RunReport::default();
        let fail = |report: RunReport, error: Error| RunFailure { report, error };
        let ledger = self.ledger();
        if let Err(e) = ledger.ensure().await {
            return Err(fail(report, e));
        }
        let applied = match ledger.records().await {
            Ok(applied) => applied,
            Err(e) => return Err(fail(report, e)),
        };
        let known: Vec<_> = migrations.iter().map(Migration::info).collect();
        let versions = match pending(&applied, &known) {
            Ok(v) => v,
            Err(e) => return Err(fail(report, e.into())),
        };
        for version in versions.into_iter().filter(|v| target.is_none_or(|t| *v <= t)) {
            let migration = migrations.iter().find(|m| m.version == version).expect("pending versions are known");
            match self.apply(&ledger, migration).await {
                Ok(done) => report.applied.push(done),
                Err(e) => return Err(fail(report, e)),
            }
        }
        Ok(report)
    }

    async fn apply(&self, ledger: &Ledger, migration: &Migration) -> Result<MigrationReport> {
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
        };
        ledger.start(&record).await?;
        let mut steps = Vec::new();
        for step in &migration.steps {
            match self.apply_step(step).await {
                Ok(done) => steps.push(done),
                Err(source) => {
                    let error = Error::Step {
                        version: migration.version,
                        name: migration.name.clone(),
                        step: step.describe(),
                        source: Box::new(source),
                    };
                    ledger.finish(&record, Status::Failed, Some(format!("{error:#}"))).await?;
                    return Err(error);
                }
            }
        }
        ledger.finish(&record, Status::Succeeded, None).await?;
        Ok(MigrationReport {
            version: migration.version,
            name: migration.name.clone(),
            steps,
            millis: started.elapsed().as_millis(),
        })
    }

    async fn apply_step(&self, step: &Step) -> Result<StepReport> {
        let mut report =
            StepReport { step: step.describe(), calls: vec![], skipped: vec![], fixtures_written: 0, data: None };
        match step {
            Step::Schema(schema_step) => {
                let logical = schema_step.table();
                let physical = self.names.physical(logical);
                let live = describe(&self.client, &physical, logical, self.exec.local).await?;
                let current = live.map(|live| match schema_step {
                    SchemaStep::CreateTable { table } => live.assuming_unchecked_as(table),
                    _ => live.def,
                });
                let (calls, _) = plan_step(current.as_ref(), schema_step)?;
                for call in &calls {
                    let line = call.describe(&physical);
                    match execute(&self.client, &self.names, call, &self.exec).await? {
                        Outcome::Done => report.calls.push(line),
                        Outcome::Skipped(why) => report.skipped.push(format!("{line}: {why}")),
                    }
                }
            }
            Step::Data(data_step) => {
                let ctx = DataContext::new(self.client.clone(), self.names.clone());
                if self.write_fixtures {
                    let mut by_table: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
                    for fixture in &data_step.fixtures {
                        by_table.entry(&fixture.table).or_default().push(fixture.item.clone().into());
                    }
                    for (table, items) in by_table {
                        report.fixtures_written += items.len();
                        ctx.put_all(&self.names.physical(table), items).await.map_err(Error::Data)?;
                    }
                }
                report.data = Some(data_step.run(ctx).await.map_err(Error::Data)?);
            }
        }
        Ok(report)
    }
}
