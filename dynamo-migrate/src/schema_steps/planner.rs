//! From a table's current state and one schema step to the DynamoDB calls that get there.
//!
//! A pure function, unit-tested without a database. It knows the control plane's rules: one GSI
//! created or deleted per `UpdateTable`; TTL, point-in-time recovery and tags are calls of their
//! own; a TTL attribute is changed by turning it off and on again; a stream view changes only by
//! replacing the stream (off, then on: a new stream ARN, so its consumers stop), and a GSI's keys
//! or projection only by deleting the index and creating it again (its queries fail until the
//! backfill ends): both destructive, so both need the migration's `Destructive` acknowledgement;
//! key schema and LSIs cannot change in place (that needs a rebuild).
//!
//! Every step plans from the live state, so a step whose end state already holds plans no call,
//! and a step of several calls that stopped half-way plans only the calls still missing (a
//! created table whose TTL call failed: the TTL call). Re-running a migration is therefore safe.
//!
//! Whether AWS accepts the calls *now*, given what was changed before (a TTL change within the
//! hour, switches to on-demand, table class changes, throughput decreases), is `rules`' part.

use std::fmt;

use dynamo_model::{
    Billing, FieldDiff, GlobalIndex, StreamView, TableClass, TableDef, Throughput, ValidationErrors, diff_tables,
};
use serde::Serialize;
use thiserror::Error;

use crate::migration::SchemaStep;

/// One DynamoDB control-plane call, on a table named logically.
///
/// The executor makes it on the table's physical name and then waits until the table and every
/// index are ACTIVE again (or, after a delete, gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `CreateTable` with the keys, indexes, billing, stream, class, deletion protection and (on
    /// AWS) tags of `table`; TTL and point-in-time recovery are calls of their own.
    CreateTable {
        /// The table to create.
        table: TableDef,
    },
    /// `UpdateTable` creating one GSI, which DynamoDB then backfills.
    CreateGlobalIndex {
        /// The table's logical name.
        table: String,
        /// The index to create.
        index: GlobalIndex,
        /// The table as it is with the index, whose attribute definitions the request carries.
        definition: TableDef,
    },
    /// `UpdateTable` deleting one GSI.
    DeleteGlobalIndex {
        /// The table's logical name.
        table: String,
        /// The GSI's name.
        index: String,
    },
    /// `UpdateTimeToLive` enabling TTL on an attribute.
    EnableTtl {
        /// The table's logical name.
        table: String,
        /// The attribute holding each item's expiry, in seconds since the epoch.
        attribute: String,
    },
    /// `UpdateTimeToLive` disabling TTL; DynamoDB needs the attribute it is disabled on.
    DisableTtl {
        /// The table's logical name.
        table: String,
        /// The table's current TTL attribute.
        attribute: String,
    },
    /// A new billing mode or table capacity (`None`: the table's own stays), and the capacity of
    /// each GSI whose capacity changes (DynamoDB refuses an update to the current value).
    UpdateBilling {
        /// The table's logical name.
        table: String,
        /// The new billing mode and table capacity, or `None` to leave them.
        billing: Option<Billing>,
        /// The new capacity of each GSI that changes, by index name.
        index_throughput: Vec<(String, Throughput)>,
    },
    /// `UpdateTable` turning the stream on with a view.
    EnableStream {
        /// The table's logical name.
        table: String,
        /// What each record carries of the item.
        view: StreamView,
    },
    /// `UpdateTable` turning the stream off; its consumers stop.
    DisableStream {
        /// The table's logical name.
        table: String,
    },
    /// `UpdateTable` turning deletion protection on or off.
    SetDeletionProtection {
        /// The table's logical name.
        table: String,
        /// `true` to protect the table from deletion.
        enabled: bool,
    },
    /// `UpdateContinuousBackups` turning point-in-time recovery on or off; skipped on DynamoDB
    /// Local, which has none.
    SetPointInTimeRecovery {
        /// The table's logical name.
        table: String,
        /// `true` to turn it on.
        enabled: bool,
    },
    /// `UpdateTable` changing the table class; skipped on DynamoDB Local, which keeps none.
    SetTableClass {
        /// The table's logical name.
        table: String,
        /// The new class.
        class: TableClass,
    },
    /// `TagResource` on the table's ARN; skipped on DynamoDB Local, which has no tags.
    TagTable {
        /// The table's logical name.
        table: String,
        /// The tags to set, as key and value.
        tags: Vec<(String, String)>,
    },
    /// `DeleteTable`: the table and every item in it.
    DeleteTable {
        /// The table's logical name.
        table: String,
    },
}

impl Call {
    /// The logical name of the table the call is made on.
    pub fn table(&self) -> &str {
        match self {
            Call::CreateTable { table } => &table.name,
            Call::CreateGlobalIndex { table, .. }
            | Call::DeleteGlobalIndex { table, .. }
            | Call::EnableTtl { table, .. }
            | Call::DisableTtl { table, .. }
            | Call::UpdateBilling { table, .. }
            | Call::EnableStream { table, .. }
            | Call::DisableStream { table }
            | Call::SetDeletionProtection { table, .. }
            | Call::SetPointInTimeRecovery { table, .. }
            | Call::SetTableClass { table, .. }
            | Call::TagTable { table, .. }
            | Call::DeleteTable { table } => table,
        }
    }

    /// True for a call that deletes data.
    pub fn is_destructive(&self) -> bool {
        matches!(self, Call::DeleteGlobalIndex { .. } | Call::DeleteTable { .. })
    }

    /// The call as a line of a plan, with the table's physical name.
    pub fn describe(&self, physical: &str) -> String {
        match self {
            Call::CreateTable { table } => {
                let keys: Vec<String> = table.keys().map(|k| format!("{} {}", k.name, k.ty)).collect();
                let mut extra = Vec::new();
                if !table.global_indexes.is_empty() {
                    extra.push(format!("{} GSI", table.global_indexes.len()));
                }
                if !table.local_indexes.is_empty() {
                    extra.push(format!("{} LSI", table.local_indexes.len()));
                }
                let extra = if extra.is_empty() { String::new() } else { format!(", {}", extra.join(", ")) };
                format!("CreateTable {physical} (key {}{extra})", keys.join(", "))
            }
            Call::CreateGlobalIndex { index, .. } => {
                format!("UpdateTable {physical}: create GSI {} on {}", index.name, index.partition_key.name)
            }
            Call::DeleteGlobalIndex { index, .. } => format!("UpdateTable {physical}: delete GSI {index}"),
            Call::EnableTtl { attribute, .. } => format!("UpdateTimeToLive {physical}: enable on {attribute}"),
            Call::DisableTtl { attribute, .. } => format!("UpdateTimeToLive {physical}: disable on {attribute}"),
            Call::UpdateBilling { billing, index_throughput, .. } => {
                let mut parts: Vec<String> = billing.iter().map(|b| format!("billing {}", billing_text(b))).collect();
                parts.extend(index_throughput.iter().map(|(i, t)| format!("GSI {i} {} RCU / {} WCU", t.read, t.write)));
                format!("UpdateTable {physical}: {}", parts.join(", "))
            }
            Call::EnableStream { view, .. } => format!("UpdateTable {physical}: enable stream {view:?}"),
            Call::DisableStream { .. } => format!("UpdateTable {physical}: disable stream"),
            Call::SetDeletionProtection { enabled, .. } => {
                format!("UpdateTable {physical}: deletion protection {}", on_off(*enabled))
            }
            Call::SetPointInTimeRecovery { enabled, .. } => {
                format!("UpdateContinuousBackups {physical}: point-in-time recovery {}", on_off(*enabled))
            }
            Call::SetTableClass { class, .. } => format!("UpdateTable {physical}: table class {}", class_text(*class)),
            Call::TagTable { tags, .. } => format!("TagResource {physical}: {} tag(s)", tags.len()),
            Call::DeleteTable { .. } => format!("DeleteTable {physical}"),
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn class_text(class: TableClass) -> &'static str {
    match class {
        TableClass::Standard => "STANDARD",
        TableClass::StandardInfrequentAccess => "STANDARD_INFREQUENT_ACCESS",
    }
}

fn billing_text(billing: &Billing) -> String {
    match billing {
        Billing::PayPerRequest => "pay per request".to_owned(),
        Billing::Provisioned(t) => format!("provisioned {} RCU / {} WCU", t.read, t.write),
    }
}

/// A step that cannot be planned against the table as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The step changes a table that does not exist.
    #[error("table {table} does not exist, so {step} cannot run; create it in an earlier step")]
    TableMissing {
        /// The table's logical name.
        table: String,
        /// The step, in a few words.
        step: String,
    },
    /// A table to create exists already, and not as the step declares it (beyond the TTL and
    /// point-in-time recovery calls a create that stopped half-way still owes).
    #[error("table {table} already exists and differs from the one to create: {}", diffs_text(.diffs))]
    TableDiffers {
        /// The table's logical name.
        table: String,
        /// Each field that differs, with the live value and the declared one.
        diffs: Vec<FieldDiff>,
    },
    /// A GSI to add exists with other keys or projection: that is a `replace_global_index`.
    #[error(
        "table {table}: index {index} already exists and differs ({}); DynamoDB cannot change an index's keys or projection in place: delete it and create it again with replace_global_index(\"{table}\", <the index>, Destructive::because(\"...\")) (queries on {index} fail until it is backfilled)",
        diffs_text(.diffs)
    )]
    IndexDiffers {
        /// The table's logical name.
        table: String,
        /// The index's name.
        index: String,
        /// Each field of the index that differs, with the live value and the declared one.
        diffs: Vec<FieldDiff>,
    },
    /// An `update_stream` to another view on a table whose stream is on: that is a
    /// `replace_stream`, since DynamoDB changes a view only by replacing the stream.
    #[error(
        "table {table}: changing the stream view from {from:?} to {to:?} replaces the stream: DynamoDB needs it turned off and on again, which gives it a new ARN, and its consumers (Lambda triggers, Kinesis adapters, replays) stop reading; write it as replace_stream(\"{table}\", StreamView::{to:?}, Destructive::because(\"...\")) and move the consumers to the new stream"
    )]
    StreamViewChange {
        /// The table's logical name.
        table: String,
        /// The live stream's view.
        from: StreamView,
        /// The view the step asks for.
        to: StreamView,
    },
    /// A GSI step names an LSI, which DynamoDB cannot add, change or delete in place.
    #[error("table {table}: {index} is a local secondary index; it can only change by rebuilding the table")]
    IndexIsLocal {
        /// The table's logical name.
        table: String,
        /// The LSI's name.
        index: String,
    },
    /// A delete of a table whose deletion protection is on.
    #[error(
        "table {table} has deletion protection on; turn it off in an earlier step (deletion_protection(\"{table}\", false))"
    )]
    DeletionProtected {
        /// The table's logical name.
        table: String,
    },
    /// A switch to provisioned billing that gives no capacity for one of the table's GSIs.
    #[error("table {table}: switching to provisioned billing needs a throughput for global index {index}")]
    MissingIndexThroughput {
        /// The table's logical name.
        table: String,
        /// The GSI without a capacity.
        index: String,
    },
    /// A `delete_old_table` naming the table's current version.
    #[error(
        "table {table}: version {version} is the current one; delete_old_table deletes versions left by a rebuild, delete_table the current one"
    )]
    CurrentVersion {
        /// The table's logical name.
        table: String,
        /// The version the step names, which is the current one.
        version: u32,
    },
    /// The table the step leaves breaks DynamoDB's rules (names, index counts, projections,
    /// capacity…), as [`TableDef::validate`] checks them.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// A destructive step that finds nothing to destroy: most likely a wrong name, which would
    /// otherwise be recorded as applied and hide the table or index that was meant.
    #[error(
        "{what} does not exist here, so there is nothing to delete: check the name (a wrong one would be recorded as applied while the table or index meant stays)"
    )]
    NothingToDelete {
        /// The table or index, in words (`global index by_x of table customers`).
        what: String,
    },
}

fn diffs_text(diffs: &[FieldDiff]) -> String {
    let parts: Vec<String> = diffs.iter().map(|d| format!("{}: {} -> {}", d.field, d.actual, d.expected)).collect();
    parts.join(", ")
}

/// The calls that take `current` (`None`: no such table) through `step`, and the table after it.
pub fn plan_step(current: Option<&TableDef>, step: &SchemaStep) -> Result<(Vec<Call>, Option<TableDef>), PlanError> {
    let missing = || PlanError::TableMissing { table: step.table().to_owned(), step: describe_step(step) };
    match step {
        SchemaStep::CreateTable { table } => {
            table.validate().map_err(PlanError::Invalid)?;
            let mut calls = Vec::new();
            let (ttl_done, pitr_done) = match current {
                None => {
                    calls.push(Call::CreateTable { table: table.clone() });
                    (None, false)
                }
                // A table that is what CreateTable made, but for the calls that follow it: a
                // create that stopped after CreateTable, which goes on where it stopped.
                Some(current) => {
                    let created = TableDef {
                        ttl_attribute: current.ttl_attribute.clone().or_else(|| table.ttl_attribute.clone()),
                        point_in_time_recovery: current.point_in_time_recovery || table.point_in_time_recovery,
                        ..current.clone()
                    };
                    let diffs = diff_tables(table, &created, &[]);
                    if !diffs.is_empty() {
                        let diffs = diff_tables(table, current, &[]);
                        return Err(PlanError::TableDiffers { table: table.name.clone(), diffs });
                    }
                    (current.ttl_attribute.clone(), current.point_in_time_recovery)
                }
            };
            if let Some(attribute) = &table.ttl_attribute
                && ttl_done.is_none()
            {
                calls.push(Call::EnableTtl { table: table.name.clone(), attribute: attribute.clone() });
            }
            if table.point_in_time_recovery && !pitr_done {
                calls.push(Call::SetPointInTimeRecovery { table: table.name.clone(), enabled: true });
            }
            Ok((calls, Some(table.clone())))
        }
        SchemaStep::AddGlobalIndex { table, index } => {
            let current = current.ok_or_else(missing)?;
            if current.local_indexes.iter().any(|l| l.name == index.name) {
                return Err(PlanError::IndexIsLocal { table: table.clone(), index: index.name.clone() });
            }
            if let Some(existing) = current.global_index_named(&index.name) {
                if existing == index {
                    return Ok((vec![], Some(current.clone())));
                }
                let as_table = |g: &GlobalIndex| TableDef { global_indexes: vec![g.clone()], ..current.clone() };
                let diffs = diff_tables(&as_table(index), &as_table(existing), &[]);
                return Err(PlanError::IndexDiffers { table: table.clone(), index: index.name.clone(), diffs });
            }
            let after = current.clone().global_index(index.clone());
            after.validate().map_err(PlanError::Invalid)?;
            let call =
                Call::CreateGlobalIndex { table: table.clone(), index: index.clone(), definition: after.clone() };
            Ok((vec![call], Some(after)))
        }
        SchemaStep::DeleteGlobalIndex { table, index, .. } => {
            let current = current.ok_or_else(missing)?;
            if current.local_indexes.iter().any(|l| &l.name == index) {
                return Err(PlanError::IndexIsLocal { table: table.clone(), index: index.clone() });
            }
            if current.global_index_named(index).is_none() {
                return Err(PlanError::NothingToDelete { what: format!("global index {index} of table {table}") });
            }
            let mut after = current.clone();
            after.global_indexes.retain(|g| &g.name != index);
            Ok((vec![Call::DeleteGlobalIndex { table: table.clone(), index: index.clone() }], Some(after)))
        }
        SchemaStep::UpdateTtl { table, attribute } => {
            let current = current.ok_or_else(missing)?;
            let mut calls = Vec::new();
            if current.ttl_attribute != *attribute {
                if let Some(old) = &current.ttl_attribute {
                    calls.push(Call::DisableTtl { table: table.clone(), attribute: old.clone() });
                }
                if let Some(new) = attribute {
                    calls.push(Call::EnableTtl { table: table.clone(), attribute: new.clone() });
                }
            }
            let after = TableDef { ttl_attribute: attribute.clone(), ..current.clone() };
            Ok((calls, Some(after)))
        }
        SchemaStep::UpdateBilling { table, billing, index_throughput } => {
            let current = current.ok_or_else(missing)?;
            let mut after = TableDef { billing: *billing, ..current.clone() };
            for gsi in &mut after.global_indexes {
                gsi.throughput = match billing {
                    Billing::PayPerRequest => None,
                    Billing::Provisioned(_) => {
                        let given = index_throughput.iter().find(|(name, _)| *name == gsi.name).map(|(_, t)| *t);
                        Some(given.ok_or_else(|| PlanError::MissingIndexThroughput {
                            table: table.clone(),
                            index: gsi.name.clone(),
                        })?)
                    }
                };
            }
            if after == *current {
                return Ok((vec![], Some(after)));
            }
            after.validate().map_err(PlanError::Invalid)?;
            let changed_indexes = after
                .global_indexes
                .iter()
                .filter_map(|g| {
                    let before = current.global_index_named(&g.name).and_then(|c| c.throughput);
                    g.throughput.filter(|t| before != Some(*t)).map(|t| (g.name.clone(), t))
                })
                .collect();
            let call = Call::UpdateBilling {
                table: table.clone(),
                billing: (current.billing != *billing).then_some(*billing),
                index_throughput: changed_indexes,
            };
            Ok((vec![call], Some(after)))
        }
        SchemaStep::UpdateStream { table, stream } => {
            let current = current.ok_or_else(missing)?;
            if let (Some(from), Some(to)) = (current.stream, *stream)
                && from != to
            {
                return Err(PlanError::StreamViewChange { table: table.clone(), from, to });
            }
            let mut calls = Vec::new();
            if current.stream != *stream {
                if current.stream.is_some() {
                    calls.push(Call::DisableStream { table: table.clone() });
                }
                if let Some(view) = stream {
                    calls.push(Call::EnableStream { table: table.clone(), view: *view });
                }
            }
            Ok((calls, Some(TableDef { stream: *stream, ..current.clone() })))
        }
        SchemaStep::ReplaceStream { table, stream, .. } => {
            let current = current.ok_or_else(missing)?;
            let calls = match current.stream {
                Some(view) if view == *stream => vec![],
                Some(_) => vec![
                    Call::DisableStream { table: table.clone() },
                    Call::EnableStream { table: table.clone(), view: *stream },
                ],
                // Also where a replacement stopped after turning the old stream off.
                None => vec![Call::EnableStream { table: table.clone(), view: *stream }],
            };
            Ok((calls, Some(TableDef { stream: Some(*stream), ..current.clone() })))
        }
        SchemaStep::ReplaceGlobalIndex { table, index, .. } => {
            let current = current.ok_or_else(missing)?;
            if current.local_indexes.iter().any(|l| l.name == index.name) {
                return Err(PlanError::IndexIsLocal { table: table.clone(), index: index.name.clone() });
            }
            let mut calls = Vec::new();
            let mut after = current.clone();
            match current.global_index_named(&index.name) {
                Some(existing) if existing == index => return Ok((vec![], Some(current.clone()))),
                Some(_) => {
                    calls.push(Call::DeleteGlobalIndex { table: table.clone(), index: index.name.clone() });
                    after.global_indexes.retain(|g| g.name != index.name);
                }
                // Also where a replacement stopped after deleting the old index.
                None => {}
            }
            let after = after.global_index(index.clone());
            after.validate().map_err(PlanError::Invalid)?;
            calls.push(Call::CreateGlobalIndex {
                table: table.clone(),
                index: index.clone(),
                definition: after.clone(),
            });
            Ok((calls, Some(after)))
        }
        SchemaStep::SetTableClass { table, class } => {
            let current = current.ok_or_else(missing)?;
            let calls = if current.table_class == *class {
                vec![]
            } else {
                vec![Call::SetTableClass { table: table.clone(), class: *class }]
            };
            Ok((calls, Some(TableDef { table_class: *class, ..current.clone() })))
        }
        SchemaStep::SetDeletionProtection { table, enabled } => {
            let current = current.ok_or_else(missing)?;
            let calls = if current.deletion_protection == *enabled {
                vec![]
            } else {
                vec![Call::SetDeletionProtection { table: table.clone(), enabled: *enabled }]
            };
            Ok((calls, Some(TableDef { deletion_protection: *enabled, ..current.clone() })))
        }
        SchemaStep::DeleteTable { table, .. } => match current {
            None => Err(PlanError::NothingToDelete { what: format!("table {table}") }),
            Some(current) if current.deletion_protection => Err(PlanError::DeletionProtected { table: table.clone() }),
            Some(_) => Ok((vec![Call::DeleteTable { table: table.clone() }], None)),
        },
    }
}

/// A schema step in a few words, for plans and errors.
pub fn describe_step(step: &SchemaStep) -> String {
    match step {
        SchemaStep::CreateTable { table } => format!("create table {}", table.name),
        SchemaStep::AddGlobalIndex { table, index } => format!("add global index {} to {table}", index.name),
        SchemaStep::DeleteGlobalIndex { table, index, destructive } => {
            format!("DESTRUCTIVE delete global index {index} of {table} ({})", destructive.reason)
        }
        SchemaStep::UpdateTtl { table, attribute: Some(a) } => format!("enable TTL on {table}.{a}"),
        SchemaStep::UpdateTtl { table, attribute: None } => format!("disable TTL on {table}"),
        SchemaStep::UpdateBilling { table, billing, .. } => {
            format!("set billing of {table} to {}", billing_text(billing))
        }
        SchemaStep::UpdateStream { table, stream: Some(v) } => format!("enable stream {v:?} on {table}"),
        SchemaStep::UpdateStream { table, stream: None } => format!("disable stream on {table}"),
        SchemaStep::ReplaceStream { table, stream, destructive } => format!(
            "DESTRUCTIVE replace the stream of {table} with a {stream:?} one: a new stream ARN, its consumers stop ({})",
            destructive.reason
        ),
        SchemaStep::ReplaceGlobalIndex { table, index, destructive } => format!(
            "DESTRUCTIVE replace global index {} of {table} (delete, then create and backfill: queries on it fail meanwhile) ({})",
            index.name, destructive.reason
        ),
        SchemaStep::SetTableClass { table, class } => {
            format!("set the table class of {table} to {}", class_text(*class))
        }
        SchemaStep::SetDeletionProtection { table, enabled } => {
            format!("turn deletion protection {} on {table}", on_off(*enabled))
        }
        SchemaStep::DeleteTable { table, version: None, destructive } => {
            format!("DESTRUCTIVE delete table {table} ({})", destructive.reason)
        }
        SchemaStep::DeleteTable { table, version: Some(v), destructive } => {
            format!("DESTRUCTIVE delete version {v} of table {table} ({})", destructive.reason)
        }
    }
}

impl fmt::Display for SchemaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_step(self))
    }
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
