//! `plan`: what `migrate` would do, against the live account; changes nothing.

use anyhow::anyhow;
use clap::Args;

use super::session::{EnvArgs, Session, check_code, check_target};
use super::{Failure, Output};
use crate::Project;
use crate::drift::{TableDrift, drift, expected_tables, known_tables};
use crate::error::Error;
use crate::ledger::Ledger;
use crate::migration::Migration;
use crate::preview::{Pending, PlannedMigration, validate};
use crate::rebuild::rebuild_states;
use crate::rehearse::{StepForecast, deploy_sequence, forecast};
use crate::sequence::{AppliedMigration, Status, pending};

/// Show what migrate would do in an environment; changes nothing
///
/// Shows each pending migration and every DynamoDB call it will make (destructive ones marked),
/// and the drift of the live tables from what the applied migrations produced. Reads the
/// ledger and the tables; writes nothing. Exits 1 when a pending migration would fail.
///
/// Example: `cargo xtask plan --env prod`
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Plan only up to this version, as `migrate --target` applies.
    #[arg(long)]
    target: Option<u32>,
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
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        check_target(project, self.target, &format!("cargo xtask plan {}", self.env.options()))?;
        check_code(project)?;
        let session = self.env.open(Some(project), false, false).await?;
        let ledger = Ledger::new(session.client.clone(), &session.names);
        let records = ledger.records().await?;
        let known: Vec<_> = project.migrations.iter().map(Migration::info).collect();
        let mut pending =
            pending(&records, &known).map_err(|e| Failure::work(anyhow!("the ledger refuses to run: {e}")))?;
        pending.retain(|v| self.target.is_none_or(|t| *v <= t));
        let drifts = drift_of(&session, project, &records).await?;
        let resuming: Vec<u32> = records.iter().filter(|r| r.status.is_resumable()).map(|r| r.version).collect();
        let local = session.env.is_local();
        let pending = Pending { versions: &pending, resuming: &resuming };
        let (client, names, env) = (&session.client, &session.names, &session.env.name);
        let (planned, mut problems) = validate(client, names, &project.migrations, pending, true, local, env).await?;
        // What AWS's rules refuse now is a problem of the plan as well.
        for m in &planned {
            for refused in m.steps.iter().filter_map(|s| s.refused.as_ref()) {
                problems.push(format!("migration {} ({}): {}", m.version, m.name, refused.message));
            }
        }
        let rebuilds = if ledger.exists().await? {
            rebuild_states(&ledger, &session.names, &project.migrations).await?
        } else {
            vec![]
        };
        // What each pending data step and rebuild would take, and how to deploy around a rebuild.
        let estimates =
            forecast(client, names, &project.migrations, pending.versions, env, session.env.exports.is_some()).await?;
        let sequence = deploy_sequence(&project.migrations, pending.versions, env);
        out.facts(serde_json::json!({
            "environment": session.env.name,
            "caller": session.caller,
            "applied": records.len(),
            "pending": planned,
            "estimates": estimates,
            "deploy_sequence": sequence,
            "rebuilds": rebuilds,
            "drift": drifts,
            "problems": problems,
        }));
        if out.is_human() {
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
            print_plan(&planned, &estimates);
            for line in &sequence {
                println!("deploy sequence: {line}");
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Failure::work(Error::Invalid { problems })) }
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

fn print_plan(planned: &[PlannedMigration], estimates: &[StepForecast]) {
    let (mut calls, mut destructive) = (0, 0);
    for m in planned {
        println!("  {:04} {}", m.version, m.name);
        for (index, step) in m.steps.iter().enumerate() {
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
            let forecasts = || estimates.iter().filter(|e| e.version == m.version && e.step == index);
            for fill in forecasts().filter_map(|e| e.fill.as_ref()) {
                println!("        {fill}");
            }
            let passes = forecasts().flat_map(|e| &e.passes);
            for pass in passes {
                let over = if pass.source == pass.target || pass.target.is_empty() {
                    pass.source.clone()
                } else {
                    format!("{} into {}", pass.source, pass.target)
                };
                let note = pass.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                match &pass.estimate {
                    Some(estimate) => println!("        estimate, pass over {over}: {estimate}{note}"),
                    None => println!("        estimate: none{note}"),
                }
            }
        }
    }
    if planned.is_empty() {
        println!("nothing to apply");
    } else {
        println!("plan: {} migration(s), {calls} call(s), {destructive} destructive (marked !)", planned.len());
    }
}
