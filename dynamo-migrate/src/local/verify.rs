//! `verify`: every migration from empty on DynamoDB Local, the end state compared with the schema
//! crate field by field, every item read exactly as its Rust type (see `schema_read`), and a
//! second run that applies nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use dynamo_model::{FieldDiff, TableSchema, diff_tables};
use serde::Serialize;

use crate::client::{Target, connect, connect_streams};
use crate::data::key_text;
use crate::error::{Error, SdkFailure};
use crate::live::{describe, list_tables};
use crate::local::{DynamoDbLocal, LocalError, LocalOptions};
use crate::migration::Migration;
use crate::migrator::{MigrationReport, Migrator};
use crate::names::TableNames;
use crate::schema_read::{BadItem, read_exactly};

/// At most this many unreadable items are listed per table; all are counted.
const LISTED_BAD_ITEMS: usize = 20;

/// What verify found for one table of the schema crate.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// The logical table.
    pub table: String,
    /// The physical name of the version the schema crate declares.
    pub physical: String,
    /// That version exists after the migrations.
    pub exists: bool,
    /// Where the table the migrations made differs from the schema crate's definition.
    pub diffs: Vec<FieldDiff>,
    /// Fields DynamoDB Local cannot report, so not compared
    /// ([`NOT_CHECKED_ON_LOCAL`](crate::schema_steps::NOT_CHECKED_ON_LOCAL)); empty when the table does not
    /// exist.
    pub not_checked: Vec<&'static str>,
    /// Items scanned, each read exactly as the table's item type.
    pub items_read: u64,
    /// Items that do not read exactly as the item type.
    pub bad_items: u64,
    /// The first of them (at most 20).
    pub bad_item_examples: Vec<BadItem>,
}

/// Everything verify did and found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// DynamoDB Local's URL.
    pub endpoint: String,
    /// How DynamoDB Local was had: `given`, `container` or `java`.
    pub backend: String,
    /// The container's image, when DynamoDB Local ran in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Why DynamoDB Local did not run in a container, when one was tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not_container: Option<String>,
    /// How long finding or starting DynamoDB Local took, in milliseconds.
    pub local_start_ms: u128,
    /// The migrations the first run applied, in order (those before a failure, when one
    /// failed).
    pub applied: Vec<MigrationReport>,
    /// Each table of the schema crate, as the migrations left it.
    pub tables: Vec<TableCheck>,
    /// How many migrations the second run applied (it must apply none); `None` when it did not
    /// run, since problems were found before.
    pub second_run_applied: Option<usize>,
    /// Everything wrong, one message each (the migrations' registrations and headers, the schema
    /// crate, the run, the tables, their items); empty when verify passes.
    pub problems: Vec<String>,
    /// How long verify took, in milliseconds.
    pub millis: u128,
}

impl VerifyReport {
    /// True when verify found no problem.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How verify runs.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// How to find or start DynamoDB Local.
    pub local: LocalOptions,
    /// Prefix of the physical table names; each run of verify can use its own.
    pub table_prefix: String,
    /// Check the migration files on disk against the registrations (`Migrator::with_file_check`):
    /// for a workspace's complete list, as `cargo xtask verify` runs it.
    pub check_files: bool,
}

/// Runs verify. An `Err` means verify could not run at all (no DynamoDB Local, or an endpoint
/// that is not local); problems with the migrations or the schema are in the report.
pub async fn verify(
    tables: &[TableSchema],
    migrations: &[Migration],
    options: &VerifyOptions,
) -> Result<VerifyReport, LocalError> {
    let started = Instant::now();
    let mut problems = Vec::new();

    let mut names_seen = BTreeSet::new();
    for table in tables {
        if !names_seen.insert(table.name()) {
            problems.push(format!("table {} is declared twice in the schema crate", table.name()));
        }
        if let Err(errors) = table.validate() {
            problems.extend(errors.0.iter().map(ToString::to_string));
        }
    }

    // A copied file that registers another migration's would be reported as a version used
    // twice: its registration says what is wrong, and nothing runs until it is right.
    let registration = crate::migration::registration_problems(migrations);
    let runnable = registration.is_empty();
    problems.extend(registration);
    // A migration `cargo xtask new` wrote and nobody finished is not a migration yet.
    for m in migrations {
        let file = m.source_file.as_deref().map(|f| format!(" in {f}")).unwrap_or_default();
        if m.steps.is_empty() {
            problems.push(format!(
                "migration {} ({}) has no steps: write them{file} (or remove the migration and its registration), then run `cargo xtask verify`",
                m.version, m.name
            ));
        }
        if let Some(line) = &m.placeholder {
            problems.push(format!(
                "migration {} ({}): its header still says {line:?}, as `cargo xtask new` wrote it: say there what it changes and why{file}, then run `cargo xtask verify`",
                m.version, m.name
            ));
        }
    }

    let server = DynamoDbLocal::start(&options.local).await?;
    let target = Target::local(server.endpoint());
    let client = connect(&target).await;
    // A given endpoint is a running server or not: a setup problem, said before any work.
    if let Some(endpoint) = &options.local.endpoint
        && let Err(e) = client.list_tables().limit(1).send().await
    {
        return Err(LocalError::Unreachable { endpoint: endpoint.clone(), detail: SdkFailure::of(&e).to_string() });
    }
    let names = TableNames::new(options.table_prefix.clone());
    let migrator = Migrator::new(client.clone(), names.clone(), true, "verify (DynamoDB Local)")
        .with_fixtures(true)
        .with_streams(connect_streams(&target).await)
        .with_idempotence_check(true)
        .with_file_check(options.check_files)
        .with_rules(crate::rules::RuleScope::EachMigration);

    let mut report = VerifyReport {
        endpoint: server.endpoint().to_owned(),
        backend: server.backend().to_owned(),
        image: server.image().map(str::to_owned),
        why_not_container: server.why_not_container().map(str::to_owned),
        local_start_ms: server.started_in().as_millis(),
        applied: vec![],
        tables: vec![],
        second_run_applied: None,
        problems: vec![],
        millis: 0,
    };

    if runnable {
        match migrator.run(migrations, None).await {
            Ok(run) => report.applied = run.applied,
            Err(failure) => {
                report.applied = failure.report.applied;
                problems.push(format!("{:#}", failure.error));
            }
        }
    }

    if problems.is_empty() || !report.applied.is_empty() {
        check_tables(&client, &names, tables, &mut report.tables, &mut problems).await;
    }

    if problems.is_empty() {
        match migrator.run(migrations, None).await {
            Ok(again) => {
                report.second_run_applied = Some(again.applied.len());
                for m in &again.applied {
                    problems.push(format!(
                        "migration {} ({}) was applied again by a second run; the ledger should have skipped it",
                        m.version, m.name
                    ));
                }
            }
            Err(failure) => problems.push(format!("the second run failed: {:#}", failure.error)),
        }
    }

    report.problems = problems;
    report.millis = started.elapsed().as_millis();
    Ok(report)
}

/// What verify checks of the tables after the migrations, for each table of the schema crate
/// (into `checks`): that no other table is left, that its definition is the schema crate's, and
/// that every item reads exactly as its item type; `rehearse` checks its copy the same way.
pub(crate) async fn check_tables(
    client: &aws_sdk_dynamodb::Client,
    names: &TableNames,
    tables: &[TableSchema],
    checks: &mut Vec<TableCheck>,
    problems: &mut Vec<String>,
) {
    let declared: BTreeMap<&str, u32> = tables.iter().map(|t| (t.name(), t.def.version)).collect();
    match list_tables(client).await {
        Ok(physical) => {
            for name in &physical {
                let Some((logical, version)) = names.logical(name) else { continue };
                match declared.get(logical) {
                    None => problems.push(format!(
                        "table {logical} is created by the migrations but the schema crate does not declare it: declare it in the schema crate, or delete it in a migration"
                    )),
                    Some(&current) if current != version => problems.push(format!(
                        "table {logical}: version {version} ({name}) is left by the migrations but the schema crate declares version {current}: delete it in a migration (delete_old_table), or declare version {version}"
                    )),
                    Some(_) => {}
                }
            }
        }
        Err(e) => problems.push(format!("{e:#}")),
    }

    for table in tables {
        let physical = table.def.physical_name(names.prefix());
        let mut check = TableCheck {
            table: table.name().to_owned(),
            physical: physical.clone(),
            exists: false,
            diffs: vec![],
            not_checked: vec![],
            items_read: 0,
            bad_items: 0,
            bad_item_examples: vec![],
        };
        match describe(client, &physical, table.name(), table.def.version, true).await {
            Ok(None) if table.def.version > 1 => problems.push(format!(
                "table {} version {} ({physical}) is declared in the schema crate but no migration creates it",
                table.name(),
                table.def.version
            )),
            Ok(None) => problems
                .push(format!("table {} is declared in the schema crate but no migration creates it", table.name())),
            Ok(Some(live)) => {
                check.exists = true;
                check.diffs = diff_tables(&table.def, &live.def, &live.not_checked);
                check.not_checked = live.not_checked;
                for diff in &check.diffs {
                    problems.push(describe_diff(diff));
                }
                if let Err(e) = read_items(client, &physical, table, &mut check).await {
                    problems.push(format!("{e:#}"));
                }
                if check.bad_items > 0 {
                    let first = &check.bad_item_examples[0];
                    problems.push(format!(
                        "table {}: {} item(s) do not read as {}; the first is {}: {}",
                        table.name(),
                        check.bad_items,
                        table.item_type,
                        first.key,
                        first.error
                    ));
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
        checks.push(check);
    }
}

/// A diff as a sentence that says which side is the code, naming a missing or extra index.
fn describe_diff(diff: &FieldDiff) -> String {
    let index = ["global_indexes.", "local_indexes."].iter().find_map(|prefix| {
        let name = diff.field.strip_prefix(prefix)?;
        (!name.contains('.')).then(|| (if prefix.starts_with('g') { "global" } else { "local" }, name))
    });
    match index {
        Some((kind, name)) if diff.actual == "absent" => format!(
            "table {}: {kind} index {name} is declared in the schema crate but no migration creates it ({})",
            diff.table, diff.expected
        ),
        Some((kind, name)) if diff.expected == "absent" => format!(
            "table {}: {kind} index {name} is created by the migrations but the schema crate does not declare it ({})",
            diff.table, diff.actual
        ),
        _ => format!(
            "table {}: {} is {} in the schema crate but {} after the migrations",
            diff.table, diff.field, diff.expected, diff.actual
        ),
    }
}

async fn read_items(
    client: &aws_sdk_dynamodb::Client,
    physical: &str,
    table: &TableSchema,
    check: &mut TableCheck,
) -> Result<(), Error> {
    let keys: Vec<String> = table.def.keys().map(|k| k.name.clone()).collect();
    let mut items = client.scan().table_name(physical).into_paginator().items().send();
    while let Some(item) = items.next().await {
        let item = item.map_err(Error::aws(format!("Scan {physical}")))?;
        check.items_read += 1;
        let key = key_text(&item, &keys);
        if let Err(error) = read_exactly(table, &item) {
            check.bad_items += 1;
            if check.bad_item_examples.len() < LISTED_BAD_ITEMS {
                check.bad_item_examples.push(BadItem { key, error });
            }
        }
    }
    Ok(())
}
