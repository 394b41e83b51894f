//! What `migrate` would do: each pending migration's steps and the DynamoDB calls they make,
//! planned against the live tables without changing anything, and checked against the rules AWS
//! applies to a table's recent changes (see `rules`). `migrate` runs the same plan as its
//! pre-flight, and refuses before its first write a run that AWS would refuse part of.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use dynamo_model::TableDef;
use serde::Serialize;

use crate::data::now_ms;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::live::describe;
use crate::migration::{Migration, SchemaStep, Step, check_files};
use crate::migrator::names_after;
use crate::names::TableNames;
use crate::planner::{Call, PlanError, plan_step};
use crate::rules::{History, Refusal, RuleBook, RuleScope};

/// One step as it would run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// The step, as [`Step::describe`](crate::Step::describe) says it.
    pub step: String,
    /// True for a step that deletes or stops something, and so carries a
    /// [`Destructive`](crate::Destructive) reason.
    pub destructive: bool,
    /// The calls it would make, as plan lines with the physical table names; for a rebuild, what
    /// it would do in words.
    pub calls: Vec<String>,
    /// What the step cannot say in calls (a data step), or why it would fail.
    pub note: Option<String>,
    /// True when the step would fail against the tables as the steps before it leave them, or
    /// AWS would refuse a call of it now.
    pub would_fail: bool,
    /// A call of the step that AWS would refuse now, given the table's recent changes and the
    /// run's earlier calls, with when it becomes possible (see `rules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// One pending migration as it would run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub name: String,
    /// Each step as it would run, in order.
    pub steps: Vec<PlannedStep>,
}

/// The migrations a run applies: their versions, and those among them that run again
/// (interrupted, or marked for re-run), in which a delete that finds nothing was done by the
/// earlier attempt.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The versions to apply, in order (as [`pending`](crate::run::pending) gives them).
    pub versions: &'a [u32],
    /// The versions whose records are `interrupted` or `rerun`.
    pub resuming: &'a [u32],
}

/// Every pending migration validated and planned before anything is written: the plan, and
/// every problem found (a registration that is not its own file, files and registrations that
/// disagree when `files`, a step that would fail against the state the steps before it leave).
/// `migrate` refuses while one stands, and `plan` exits 1. A call AWS's rules refuse is in the
/// plan (`PlannedStep::refused`), not among the problems: the pre-flight reports it.
pub async fn validate(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: Pending<'_>,
    files: bool,
    local: bool,
    environment: &str,
) -> Result<(Vec<PlannedMigration>, Vec<String>)> {
    let mut problems = crate::migration::registration_problems(migrations);
    if files {
        problems.extend(check_files(migrations));
    }
    let planned = preview(client, base, migrations, pending, local, environment).await?;
    for m in &planned {
        for step in m.steps.iter().filter(|s| s.would_fail && s.refused.is_none()) {
            let why = step.note.as_deref().unwrap_or_default().trim_start_matches("would fail: ");
            problems.push(format!("migration {} ({}), {}: {why}", m.version, m.name, step.step));
        }
    }
    Ok((planned, problems))
}

/// Plans the migrations with `pending` versions against the live tables, in order, each step
/// against the state the steps before it leave, and checks the calls against AWS's rules given
/// the tables' recent changes (`environment` names the environment in the commands a refusal
/// suggests). Reads only.
pub async fn preview(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: Pending<'_>,
    local: bool,
    environment: &str,
) -> Result<Vec<PlannedMigration>> {
    let book = RuleBook::new(now_ms(), RuleScope::Run, environment);
    plan_run(client, base, migrations, pending, local, book).await
}

/// The pre-flight of a run: plans it as [`preview`] does and refuses it, before anything is
/// written, when AWS would refuse a call of it now. A migration that breaks a rule by itself is
/// named first, since it must be split whenever it runs; otherwise the first refused call. A
/// step that cannot be planned ends the check there: the run stops at that step anyway.
pub(crate) async fn preflight(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: Pending<'_>,
    local: bool,
    book: RuleBook,
) -> Result<()> {
    let mut first = None;
    'run: for migration in plan_run(client, base, migrations, pending, local, book).await? {
        for step in migration.steps {
            if let Some(refusal) = step.refused {
                let split = refusal.split;
                let refused = Error::Step {
                    version: migration.version,
                    name: migration.name.clone(),
                    step: step.step,
                    cause: Box::new(Error::Refused(refusal)),
                };
                if split {
                    return Err(refused);
                }
                first.get_or_insert(refused);
            } else if step.would_fail {
                break 'run;
            }
        }
    }
    first.map_or(Ok(()), Err)
}

async fn plan_run(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: Pending<'_>,
    local: bool,
    book: RuleBook,
) -> Result<Vec<PlannedMigration>> {
    let solo = RuleBook::new(book.now_ms(), RuleScope::EachMigration, book.environment());
    let ledger = Ledger::new(client.clone(), base);
    let mut tables = Tables { client, ledger, local, state: BTreeMap::new(), book, solo };
    let mut out = Vec::new();
    for migration in migrations.iter().filter(|m| pending.versions.contains(&m.version)) {
        let mut names = names_after(base, migrations.iter().filter(|m| m.version < migration.version));
        let mut steps = Vec::new();
        for step in &migration.steps {
            let mut planned = PlannedStep {
                step: step.describe(),
                destructive: false,
                calls: vec![],
                note: None,
                would_fail: false,
                refused: None,
            };
            match step {
                Step::Schema(schema_step) => {
                    let logical = schema_step.table();
                    let version = match schema_step {
                        SchemaStep::CreateTable { table } => table.version,
                        SchemaStep::DeleteTable { version: Some(v), .. } => *v,
                        _ => names.version(logical),
                    };
                    let physical = names.physical_version(logical, version);
                    let declared = match schema_step {
                        SchemaStep::CreateTable { table } => Some(table),
                        _ => None,
                    };
                    let current = tables.current(&physical, logical, version, declared).await?;
                    planned.destructive = schema_step.destructive().is_some();
                    match plan_step(current.as_ref(), schema_step) {
                        Ok((calls, after)) => {
                            if calls.is_empty() {
                                planned.note = Some("no call: the table is already as this step wants".to_owned());
                            }
                            tables.admit(&mut planned, migration.version, &physical, current.as_ref(), &calls);
                            tables.state.insert(physical, after);
                        }
                        Err(PlanError::NothingToDelete { .. }) if pending.resuming.contains(&migration.version) => {
                            planned.note = Some("no call: deleted by the earlier attempt".to_owned());
                            tables.state.insert(physical, after_resumed_delete(current.as_ref(), schema_step));
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
                    let current_new = tables.current(&new, table, rebuild.table.version, Some(&rebuild.table)).await?;
                    match plan_step(current_new.as_ref(), &create) {
                        Ok((calls, after)) => {
                            tables.admit(&mut planned, migration.version, &new, current_new.as_ref(), &calls);
                            tables.state.insert(new.clone(), after);
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
fn after_resumed_delete(current: Option<&TableDef>, step: &SchemaStep) -> Option<TableDef> {
    match step {
        SchemaStep::DeleteTable { .. } => None,
        _ => current.cloned(),
    }
}

/// The tables as far as the plan has got (live at first, then planned), and the rules' view of
/// their recent changes.
struct Tables<'a> {
    client: &'a Client,
    ledger: Ledger,
    local: bool,
    state: BTreeMap<String, Option<TableDef>>,
    book: RuleBook,
    /// The same rules for each migration by itself: what it breaks alone, it must be split for.
    solo: RuleBook,
}

impl Tables<'_> {
    /// The table `physical` as the plan has it. Read live the first time, with its history (what
    /// DynamoDB describes and what the ledger recorded); what this endpoint cannot report is taken
    /// from `declared`, as the migrator does for a table it creates.
    async fn current(
        &mut self,
        physical: &str,
        logical: &str,
        version: u32,
        declared: Option<&TableDef>,
    ) -> Result<Option<TableDef>> {
        if let Some(known) = self.state.get(physical) {
            return Ok(known.clone());
        }
        let live = describe(self.client, physical, logical, version, self.local).await?;
        if !self.book.knows(physical) {
            let history = match &live {
                Some(live) if self.book.counts_history() => {
                    let recorded = self.ledger.control_changes(physical).await?;
                    History::new(&live.described, &recorded, live.created_ms)
                }
                _ => History::default(),
            };
            self.book.learn(physical, history);
        }
        let def = live.map(|live| match declared {
            Some(declared) => live.assuming_unchecked_as(declared),
            None => live.def,
        });
        self.state.insert(physical.to_owned(), def.clone());
        Ok(def)
    }

    /// Adds `calls` to the step's plan, checked against AWS's rules: first what the migration
    /// breaks by itself, then what it breaks given the history and the run.
    fn admit(
        &mut self,
        planned: &mut PlannedStep,
        version: u32,
        physical: &str,
        current: Option<&TableDef>,
        calls: &[Call],
    ) {
        planned.calls.extend(calls.iter().map(|c| c.describe(physical)));
        let alone = self.solo.admit(version, physical, current, calls);
        let given_history = self.book.admit(version, physical, current, calls);
        if let Err(refusal) = alone.and(given_history) {
            planned.note = Some(refusal.message.clone());
            planned.would_fail = true;
            planned.refused = Some(refusal);
        }
    }
}
