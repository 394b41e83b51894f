//! `plan`: what `migrate` would do, against the live account; changes nothing.

use anyhow::anyhow;
use clap::Args;

use super::session::{EnvArgs, Session};
use super::{Failure, Format, print_json};
use crate::Project;
use crate::drift::{TableDrift, drift, expected_tables, known_tables};
use crate::ledger::Ledger;
use crate::migration::Migration;
use crate::migrator::rebuild_states;
use crate::preview::{PlannedMigration, preview};
use crate::sequence::{AppliedMigration, Status, pending};

/// Show each pending migration and every DynamoDB call it will make (destructive ones marked),
/// and the drift of the live tables from what the applied migrations produced. Reads the
/// ledger and the tables; writes nothing.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The drift of the session's live tables from what the applied migrations (those the ledger
/// records as succeeded) should have left.
pub(crate) async fn drift_of(
    session: &Session,
    project: &Project,
    records: &[AppliedMigration],
) -> Result<Vec<TableDrift>, Failure> {
    let applied = project
        .migrations
        .iter()
        .filter(|m| records.iter().any(|r| r.version == m.version && r.status == Status::Succeeded));
    let expected = expected_tables(applied)?;
    let known = known_tables(&project.migrations);
    Ok(drift(&session.client, &session.names, &expected, &known, session.env.is_local()).await?)
}

impl PlanArgs {
    pub async fn run(self, project: &Project) -> Result<(), Failure> {
        let session = self.env.open(false, false).await?;
        let ledger = Ledger::new(session.client.clone(), &session.names);
        let records = ledger.records().await?;
        let known: Vec<_> = project.migrations.iter().map(Migration::info).collect();
        let pending =
            pending(&records, &known).map_err(|e| Failure::Work(anyhow!("the ledger refuses to run: {e}")))?;
        let drifts = drift_of(&session, project, &records).await?;
        let local = session.env.is_local();
        let planned =
            preview(&session.client, &session.names, &project.migrations, &pending, local, &session.env.name).await?;
        let rebuilds =
            if ledger.exists().await? { rebuild_states(&ledger, &project.migrations).await? } else { vec![] };
        match self.format {
            Format::Json => print_json(&serde_json::json!({
                "environment": session.env.name,
                "caller": session.caller,
                "applied": records.len(),
                "pending": planned,
                "rebuilds": rebuilds,
                "drift": drifts,
            })),
            Format::Human => {
                println!(
                    "environment {} (region {}, caller {}), ledger {}: {} applied, {} pending",
                    session.env.name,
                    session.env.region,
                    session.caller,
                    session.names.ledger(),
                    records.len(),
                    planned.len()
                );
                print_drift(&drifts);
                for rebuild in &rebuilds {
                    println!("rebuild: {rebuild}");
                }
                print_plan(&planned);
            }
        }
        Ok(())
    }
}

pub(crate) fn print_drift(drifts: &[TableDrift]) {
    if drifts.is_empty() {
        println!("drift: none (the live tables are what the applied migrations produced)");
    } else {
        println!("drift: {} table(s) differ from what the applied migrations produced:", drifts.len());
        for d in drifts {
            println!("  ~ {d}");
        }
    }
}

fn print_plan(planned: &[PlannedMigration]) {
    let (mut calls, mut destructive) = (0, 0);
    for m in planned {
        println!("  {:04} {}", m.version, m.name);
        for step in &m.steps {
            let mark = if step.destructive { "!" } else { " " };
            println!("   {mark} {}", step.step);
            for call in &step.calls {
                println!("   {mark}   {} {call}", if step.destructive { "-" } else { "+" });
                calls += 1;
                destructive += usize::from(step.destructive);
            }
            if let Some(note) = &step.note {
                println!("        ({note})");
            }
        }
    }
    if planned.is_empty() {
        println!("nothing to apply");
    } else {
        println!("plan: {} migration(s), {calls} call(s), {destructive} destructive (marked !)", planned.len());
    }
}
