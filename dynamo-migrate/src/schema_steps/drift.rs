//! Drift: the live tables against what the applied migrations should have produced.
//!
//! The expected state is the planner run over the applied migrations' schema steps from empty
//! (a pure simulation); data steps change items, not definitions.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::Client;
use dynamo_model::{FieldDiff, TableDef, diff_tables};
use serde::Serialize;

use crate::error::Result;
use crate::live::{describe, list_tables};
use crate::migration::{Migration, SchemaStep, Step};
use crate::names::TableNames;
use crate::planner::{PlanError, plan_step};

/// Every table (each version) that `migrations`, applied in order from empty, leave.
pub fn expected_tables<'a>(migrations: impl IntoIterator<Item = &'a Migration>) -> Result<Vec<TableDef>, PlanError> {
    let mut tables = SimulatedTables::default();
    for step in migrations.into_iter().flat_map(|m| &m.steps) {
        tables.apply(step)?;
    }
    Ok(tables.tables())
}

/// The tables, each version, as schema steps and rebuilds leave them: the planner's pure
/// simulation, without a database. A table's current version is the one steps name (a create
/// or a rebuild makes its version current); older versions are those rebuilds left behind.
#[derive(Debug, Clone, Default)]
pub struct SimulatedTables {
    tables: BTreeMap<(String, u32), TableDef>,
    current: BTreeMap<String, u32>,
}

impl SimulatedTables {
    /// A state holding `tables`; of several versions of one table, the highest is current.
    pub fn from_tables(tables: impl IntoIterator<Item = TableDef>) -> Self {
        let mut state = SimulatedTables::default();
        for table in tables {
            let current = state.current.entry(table.name.clone()).or_insert(table.version);
            *current = (*current).max(table.version);
            state.tables.insert((table.name.clone(), table.version), table);
        }
        state
    }

    /// The current version of the table named `name` (logically), if it exists.
    pub fn current(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(&(name.to_owned(), *self.current.get(name)?))
    }

    /// Every table, each version, by name and then version.
    pub fn tables(&self) -> Vec<TableDef> {
        self.tables.values().cloned().collect()
    }

    /// Applies one step, as the planner plans it; a data step changes no definition.
    pub fn apply(&mut self, step: &Step) -> Result<(), PlanError> {
        match step {
            Step::Schema(SchemaStep::CreateTable { table }) => {
                plan_step(None, &SchemaStep::CreateTable { table: table.clone() })?;
                self.current.insert(table.name.clone(), table.version);
                self.tables.insert((table.name.clone(), table.version), table.clone());
            }
            Step::Schema(SchemaStep::DeleteTable { table, version: Some(old), .. }) => {
                self.tables.remove(&(table.clone(), *old));
            }
            Step::Schema(step) => {
                let key = (step.table().to_owned(), self.current.get(step.table()).copied().unwrap_or(1));
                let (_, after) = plan_step(self.tables.get(&key), step)?;
                match after {
                    Some(after) => self.tables.insert(key, after),
                    None => self.tables.remove(&key),
                };
            }
            Step::Rebuild(rebuild) => {
                // The rebuild enables a stream on the old version when it has none (see
                // `data::stream`), and leaves it there until the old version is deleted.
                let name = &rebuild.table.name;
                let old = (name.clone(), self.current.get(name).copied().unwrap_or(1));
                if let Some(old) = self.tables.get_mut(&old)
                    && old.stream.is_none()
                {
                    old.stream = Some(dynamo_model::StreamView::NewAndOldImages);
                }
                self.current.insert(name.clone(), rebuild.table.version);
                self.tables.insert((name.clone(), rebuild.table.version), rebuild.table.clone());
            }
            Step::Data(_) => {}
        }
        Ok(())
    }
}

/// How one table stands against what is expected of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// An applied migration left the table, and it is not there.
    Missing,
    /// The table is there, with other fields than expected ([`TableDrift::diffs`]).
    Differs,
    /// A version of a table the migrations know, which no applied migration left.
    Unexpected,
}

/// One table that drifted.
#[derive(Debug, Clone, Serialize)]
pub struct TableDrift {
    /// The table's logical name.
    pub table: String,
    /// The version that drifted.
    pub version: u32,
    /// Its physical name in the environment.
    pub physical: String,
    /// How it drifted.
    pub kind: DriftKind,
    /// For [`DriftKind::Differs`], each field that differs, expected and found; empty otherwise.
    pub diffs: Vec<FieldDiff>,
}

impl std::fmt::Display for TableDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            DriftKind::Missing => write!(f, "table {} ({}) is missing", self.table, self.physical),
            DriftKind::Unexpected => {
                write!(f, "table {} ({}) exists but no applied migration created it", self.table, self.physical)
            }
            DriftKind::Differs => {
                let fields: Vec<String> = self
                    .diffs
                    .iter()
                    .map(|d| format!("{}: expected {}, found {}", d.field, d.expected, d.actual))
                    .collect();
                write!(f, "table {} ({}) differs: {}", self.table, self.physical, fields.join("; "))
            }
        }
    }
}

/// Compares the live tables with `expected`. Only tables whose logical names the migrations
/// know are looked at, so other tables sharing the account and prefix are left alone.
pub async fn drift(
    client: &Client,
    names: &TableNames,
    expected: &[TableDef],
    known: &BTreeSet<String>,
    local: bool,
) -> Result<Vec<TableDrift>> {
    let mut out = Vec::new();
    let mut expected_physical = BTreeSet::new();
    for def in expected {
        let physical = names.physical_version(&def.name, def.version);
        expected_physical.insert(physical.clone());
        let drift = |kind, diffs| TableDrift {
            table: def.name.clone(),
            version: def.version,
            physical: physical.clone(),
            kind,
            diffs,
        };
        match describe(client, &physical, &def.name, def.version, local).await? {
            None => out.push(drift(DriftKind::Missing, vec![])),
            Some(live) => {
                let diffs = diff_tables(def, &live.def, &live.not_checked);
                if !diffs.is_empty() {
                    out.push(drift(DriftKind::Differs, diffs));
                }
            }
        }
    }
    for physical in list_tables(client).await? {
        let Some((logical, version)) = names.logical(&physical) else { continue };
        if known.contains(logical) && !expected_physical.contains(&physical) {
            out.push(TableDrift {
                table: logical.to_owned(),
                version,
                physical: physical.clone(),
                kind: DriftKind::Unexpected,
                diffs: vec![],
            });
        }
    }
    Ok(out)
}

/// The logical names of every table the migrations touch.
pub fn known_tables(migrations: &[Migration]) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    for step in migrations.iter().flat_map(|m| &m.steps) {
        match step {
            Step::Schema(s) => {
                known.insert(s.table().to_owned());
            }
            Step::Rebuild(r) => {
                known.insert(r.table.name.clone());
            }
            Step::Data(_) => {}
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use dynamo_model::{GlobalIndex, KeyAttr};

    use super::*;
    use crate::migration::{Destructive, RebuildStep};

    #[test]
    fn the_expected_state_follows_every_schema_step_and_rebuild() {
        let migrations = vec![
            Migration::new(1, "a", "a").create_table(TableDef::new("customers", KeyAttr::n("nr"))),
            Migration::new(2, "b", "b").add_global_index("customers", GlobalIndex::new("by_zip", KeyAttr::s("zip"))),
            Migration::new(3, "c", "c").enable_ttl("customers", "expires_at"),
            Migration::new(4, "d", "d").rebuild_table(RebuildStep::copy(
                TableDef::new("customers", KeyAttr::n("nr")).version(2).sort_key(KeyAttr::s("kind")),
            )),
        ];
        let expected = expected_tables(&migrations[..3]).unwrap();
        assert_eq!(
            expected,
            [TableDef::new("customers", KeyAttr::n("nr"))
                .global_index(GlobalIndex::new("by_zip", KeyAttr::s("zip")))
                .ttl("expires_at")]
        );
        let expected = expected_tables(&migrations).unwrap();
        assert_eq!(expected.iter().map(|t| t.version).collect::<Vec<_>>(), [1, 2]);
        let mut all = migrations.clone();
        all.push(Migration::new(5, "e", "e").delete_old_table("customers", 1, Destructive::because("v2")));
        let expected = expected_tables(&all).unwrap();
        assert_eq!(expected.len(), 1);
        assert_eq!(expected[0].sort_key, Some(KeyAttr::s("kind")));
        assert_eq!(known_tables(&all).into_iter().collect::<Vec<_>>(), ["customers"]);
    }
}
