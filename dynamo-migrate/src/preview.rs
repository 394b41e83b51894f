//! What `migrate` would do: each pending migration's steps and the DynamoDB calls they make,
//! planned against the live tables without changing anything.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use dynamo_model::TableDef;
use serde::Serialize;

use crate::error::Result;
use crate::live::describe;
use crate::migration::{Migration, SchemaStep, Step, check_files};
use crate::migrator::names_after;
use crate::names::TableNames;
use crate::planner::{PlanError, plan_step};

/// One step as it would run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub step: String,
    pub destructive: bool,
    pub calls: Vec<String>,
    /// What the step cannot say in calls (a data step), or why it would fail.
    pub note: Option<String>,
    pub would_fail: bool,
}

/// One pending migration as it would run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    pub version: u32,
    pub name: String,
    pub steps: Vec<PlannedStep>,
}

/// Every pending migration validated and planned before anything is written: the plan, and
/// every problem found (a registration that is not its own file, files and registrations that
/// disagree, a step that would fail against the state the steps before it leave). `migrate`
/// refuses while one stands, and `plan` exits 1.
pub async fn validate(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: &[u32],
    resuming: &[u32],
    files: bool,
    local: bool,
) -> Result<(Vec<PlannedMigration>, Vec<String>)> {
    let mut problems: Vec<String> = migrations
        .iter()
        .filter_map(|m| m.registration_error.as_ref().map(|e| format!("migration {} ({}): {e}", m.version, m.name)))
        .collect();
    if files {
        problems.extend(check_files(migrations));
    }
    let planned = preview(client, base, migrations, pending, resuming, local).await?;
    for m in &planned {
        for step in m.steps.iter().filter(|s| s.would_fail) {
            let why = step.note.as_deref().unwrap_or_default().trim_start_matches("would fail: ");
            problems.push(format!("migration {} ({}), {}: {why}", m.version, m.name, step.step));
        }
    }
    Ok((planned, problems))
}

/// Plans the migrations with `pending` versions against the live tables, in order, each step
/// against the state the steps before it leave. Reads only. In a migration that runs again
/// (`resuming`: interrupted, or marked for re-run), a delete that finds nothing was done by the
/// earlier attempt.
pub async fn preview(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: &[u32],
    resuming: &[u32],
    local: bool,
) -> Result<Vec<PlannedMigration>> {
    // What each physical table is, as far as the plan has got: live at first, then planned.
    let mut state: BTreeMap<String, Option<TableDef>> = BTreeMap::new();
    let mut out = Vec::new();
    for migration in migrations.iter().filter(|m| pending.contains(&m.version)) {
        let mut names = names_after(base, migrations.iter().filter(|m| m.version < migration.version));
        let mut steps = Vec::new();
        for step in &migration.steps {
            let mut planned =
                PlannedStep { step: step.describe(), destructive: false, calls: vec![], note: None, would_fail: false };
            match step {
                Step::Schema(schema_step) => {
                    let logical = schema_step.table();
                    let version = match schema_step {
                        SchemaStep::CreateTable { table } => table.version,
                        SchemaStep::DeleteTable { version: Some(v), .. } => *v,
                        _ => names.version(logical),
                    };
                    let physical = names.physical_version(logical, version);
                    let current = current(client, &mut state, &physical, logical, version, local).await?;
                    planned.destructive = schema_step.destructive().is_some();
                    match plan_step(current.as_ref(), schema_step) {
                        Ok((calls, after)) => {
                            planned.calls = calls.iter().map(|c| c.describe(&physical)).collect();
                            if calls.is_empty() {
                                planned.note = Some("no call: the table is already as this step wants".to_owned());
                            }
                            state.insert(physical, after);
                        }
                        Err(PlanError::NothingToDelete { .. }) if resuming.contains(&migration.version) => {
                            planned.note = Some("no call: deleted by the earlier attempt".to_owned());
                            state.insert(physical, after_resumed_delete(current.as_ref(), schema_step));
                        }
                        Err(e) => {
                            planned.note = Some(format!("would fail: {e}"));
                            planned.would_fail = true;
                        }
                    }
                    if let SchemaStep::CreateTable { table } = schema_step {
                        names.set_version(&table.name, table.version);
                    }
                }
                Step::Data(data) => {
                    planned.note = Some(format!(
                        "data step {}: async Rust over the tables (scans; conditional writes of what changed in place, batch writes into other tables; resumable from checkpoints)",
                        data.name
                    ));
                }
                Step::Rebuild(rebuild) => {
                    let table = &rebuild.table.name;
                    let old = names.physical(table);
                    let new = names.physical_version(table, rebuild.table.version);
                    let items = client
                        .describe_table()
                        .table_name(&old)
                        .send()
                        .await
                        .ok()
                        .and_then(|d| d.table.and_then(|t| t.item_count()));
                    let create = SchemaStep::CreateTable { table: rebuild.table.clone() };
                    let current_new = current(client, &mut state, &new, table, rebuild.table.version, local).await?;
                    match plan_step(current_new.as_ref(), &create) {
                        Ok((calls, after)) => {
                            planned.calls = calls.iter().map(|c| c.describe(&new)).collect();
                            state.insert(new.clone(), after);
                        }
                        Err(e) => {
                            planned.note = Some(format!("would fail: {e}"));
                            planned.would_fail = true;
                        }
                    }
                    planned.calls.push(format!(
                        "make sure {old} has a stream (NEW_AND_OLD_IMAGES, enabled if it has none), copy {old} -> {new} ({} items by DynamoDB's estimate), then replay the stream into {new} (catch-up); {old} stays, waiting for cut-over",
                        items.map_or("an unknown number of".to_owned(), |n| n.to_string())
                    ));
                    names.set_version(table, rebuild.table.version);
                }
            }
            steps.push(planned);
        }
        out.push(PlannedMigration { version: migration.version, name: migration.name.clone(), steps });
    }
    Ok(out)
}

/// The table after a delete that an earlier attempt already made.
pub(crate) fn after_resumed_delete(current: Option<&TableDef>, step: &SchemaStep) -> Option<TableDef> {
    match step {
        SchemaStep::DeleteTable { .. } => None,
        _ => current.cloned(),
    }
}

async fn current(
    client: &Client,
    state: &mut BTreeMap<String, Option<TableDef>>,
    physical: &str,
    logical: &str,
    version: u32,
    local: bool,
) -> Result<Option<TableDef>> {
    if let Some(known) = state.get(physical) {
        return Ok(known.clone());
    }
    let live = describe(client, physical, logical, version, local).await?.map(|l| l.def);
    state.insert(physical.to_owned(), live.clone());
    Ok(live)
}
