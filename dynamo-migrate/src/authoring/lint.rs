//! `cargo xtask lint`: the risky changes in migrations, for CI.
//!
//! Each step is judged against the tables the steps before it leave (the planner's simulation,
//! as `verify` and drift use), so that a stream replacement or a billing switch is told from
//! a first stream or a capacity change. A finding is acknowledged, and so does not fail the
//! lint, when the migration already says why the risk is taken (the reason a destructive step
//! must carry), or when the team has written it into the acknowledgements file (`lint.toml`),
//! which is reviewed like code:
//!
//! ```toml
//! [[acknowledge]]
//! migration = 5
//! rule = "rebuild"
//! reason = "customers v2: the application reads through the schema crate's version"
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use dynamo_model::{Billing, StreamView};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::drift::SimulatedTables;
use crate::migration::{Migration, SchemaStep, Step};
use crate::planner::PlanError;

/// A kind of risky change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A table (or a version a rebuild left) is deleted, with its items.
    DeleteTable,
    /// A GSI is deleted: queries on it fail until it exists and is backfilled again.
    DeleteIndex,
    /// A table is copied into its next version; the application must move to it.
    Rebuild,
    /// A table's stream is turned off or to another view: its consumers lose their place.
    StreamReplacement,
    /// A table switches between on-demand and provisioned billing, which AWS limits per day.
    BillingSwitch,
}

impl Rule {
    /// Every rule, in the order findings and messages list them.
    pub const ALL: [Rule; 5] =
        [Rule::DeleteTable, Rule::DeleteIndex, Rule::Rebuild, Rule::StreamReplacement, Rule::BillingSwitch];

    /// The rule's name, as findings and `lint.toml` write it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::DeleteTable => "delete-table",
            Rule::DeleteIndex => "delete-index",
            Rule::Rebuild => "rebuild",
            Rule::StreamReplacement => "stream-replacement",
            Rule::BillingSwitch => "billing-switch",
        }
    }

    fn named(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What acknowledges a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Acknowledgement {
    /// The destructive step's own reason.
    Reason {
        /// The reason, as [`Destructive::because`](crate::Destructive::because) gave it.
        reason: String,
    },
    /// An entry of the acknowledgements file.
    File {
        /// The acknowledgements file, as its path was given.
        file: String,
        /// The entry's reason.
        reason: String,
    },
}

impl fmt::Display for Acknowledgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Acknowledgement::Reason { reason } => write!(f, "acknowledged by its reason: {reason}"),
            Acknowledgement::File { file, reason } => write!(f, "acknowledged in {file}: {reason}"),
        }
    }
}

/// One risky change: where it is, the rule that fired, and what acknowledges it, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub migration: String,
    /// The step's position in its migration, from 1.
    pub step: usize,
    /// The rule that fired.
    pub rule: Rule,
    /// The logical name of the table the step changes.
    pub table: String,
    /// What the step risks, in a sentence.
    pub message: String,
    /// What acknowledges it; `None` fails the lint.
    pub acknowledged: Option<Acknowledgement>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "migration {} ({}), step {}: [{}] {}",
            self.version, self.migration, self.step, self.rule, self.message
        )
    }
}

/// Every risky change in `migrations`, each step judged against the tables the steps before it
/// leave (from empty). A destructive step with a reason is acknowledged by it.
pub fn lint(migrations: &[Migration]) -> Result<Vec<Finding>, LintError> {
    let mut tables = SimulatedTables::default();
    let mut findings = Vec::new();
    for migration in migrations {
        for (i, step) in migration.steps.iter().enumerate() {
            let mut found = |rule: Rule, table: &str, message: String, reason: Option<&str>| {
                findings.push(Finding {
                    version: migration.version,
                    migration: migration.name.clone(),
                    step: i + 1,
                    rule,
                    table: table.to_owned(),
                    message,
                    acknowledged: reason
                        .filter(|r| !r.trim().is_empty())
                        .map(|r| Acknowledgement::Reason { reason: r.to_owned() }),
                });
            };
            match step {
                Step::Schema(SchemaStep::DeleteTable { table, version, destructive }) => {
                    let what = match version {
                        Some(v) => format!("deletes version {v} of table {table}, left by a rebuild"),
                        None => format!("deletes table {table}"),
                    };
                    found(Rule::DeleteTable, table, format!("{what}, and every item in it"), Some(&destructive.reason));
                }
                Step::Schema(SchemaStep::DeleteGlobalIndex { table, index, destructive }) => found(
                    Rule::DeleteIndex,
                    table,
                    format!(
                        "deletes global index {index} of {table}: queries on it fail until it is created and backfilled again"
                    ),
                    Some(&destructive.reason),
                ),
                Step::Rebuild(rebuild) => found(
                    Rule::Rebuild,
                    &rebuild.table.name,
                    format!(
                        "rebuilds {} as version {}: every item is copied into a new table, and the application must move to it",
                        rebuild.table.name, rebuild.table.version
                    ),
                    None,
                ),
                Step::Schema(SchemaStep::UpdateStream { table, stream }) => {
                    if let Some(before) = tables.current(table).and_then(|t| t.stream)
                        && Some(before) != *stream
                    {
                        found(
                            Rule::StreamReplacement,
                            table,
                            format!(
                                "replaces the {} stream of {table} ({}): its consumers (triggers, replicas, a rebuild's replay) lose their place",
                                view(before),
                                stream.map_or_else(|| "turned off".to_owned(), |s| format!("by a {} one", view(s)))
                            ),
                            None,
                        );
                    }
                }
                Step::Schema(SchemaStep::ReplaceStream { table, stream, destructive }) => {
                    let before = tables.current(table).and_then(|t| t.stream).map_or("current", view);
                    found(
                        Rule::StreamReplacement,
                        table,
                        format!(
                            "replaces the {before} stream of {table} (by a {} one): its consumers (triggers, replicas, a rebuild's replay) lose their place",
                            view(*stream)
                        ),
                        Some(&destructive.reason),
                    )
                }
                Step::Schema(SchemaStep::ReplaceGlobalIndex { table, index, destructive }) => found(
                    Rule::DeleteIndex,
                    table,
                    format!(
                        "replaces global index {} of {table}: queries on it fail until it is created and backfilled again",
                        index.name
                    ),
                    Some(&destructive.reason),
                ),
                Step::Schema(SchemaStep::UpdateBilling { table, billing, .. }) => {
                    if let Some(before) = tables.current(table).map(|t| t.billing)
                        && std::mem::discriminant(&before) != std::mem::discriminant(billing)
                    {
                        found(
                            Rule::BillingSwitch,
                            table,
                            format!(
                                "switches {table} to {}: AWS limits how often a table may switch billing mode in 24 hours",
                                match billing {
                                    Billing::PayPerRequest => "on-demand billing".to_owned(),
                                    Billing::Provisioned(t) =>
                                        format!("provisioned billing ({} RCU / {} WCU)", t.read, t.write),
                                }
                            ),
                            None,
                        );
                    }
                }
                Step::Schema(_) | Step::Data(_) => {}
            }
            tables.apply(step).map_err(|error| LintError::Simulation {
                version: migration.version,
                name: migration.name.clone(),
                step: step.describe(),
                error,
            })?;
        }
    }
    Ok(findings)
}

fn view(view: StreamView) -> &'static str {
    match view {
        StreamView::KeysOnly => "KEYS_ONLY",
        StreamView::NewImage => "NEW_IMAGE",
        StreamView::OldImage => "OLD_IMAGE",
        StreamView::NewAndOldImages => "NEW_AND_OLD_IMAGES",
    }
}

/// What stops the lint before it can judge.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LintError {
    /// A step cannot be followed from the tables the steps before it leave (a table it changes
    /// does not exist, an index differs, …), so the steps after it cannot be judged.
    #[error(
        "migration {version} ({name}), {step}: {error}; the lint follows the tables from empty, and cannot go on (`cargo xtask verify` says more)"
    )]
    Simulation {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
        /// The step, in a few words.
        step: String,
        /// Why it cannot be followed.
        error: PlanError,
    },
    /// The acknowledgements file exists but cannot be read, is not TOML, or has an entry without
    /// `migration` or `rule`, or with a key an entry does not take.
    #[error("cannot read the acknowledgements file {}: {message}", .path.display())]
    File {
        /// The acknowledgements file.
        path: PathBuf,
        /// Why, with toml's line for a syntax error.
        message: String,
    },
    /// An entry names a rule that does not exist.
    #[error(
        "{path}: acknowledge #{entry} names rule {rule:?}, which is not a rule; the rules are delete-table, delete-index, rebuild, stream-replacement and billing-switch"
    )]
    UnknownRule {
        /// The acknowledgements file.
        path: PathBuf,
        /// The entry's position in the file, from 1.
        entry: usize,
        /// The rule as written.
        rule: String,
    },
    /// An entry names a migration version that the migrations do not have.
    #[error("{path}: acknowledge #{entry} names migration {version}, which does not exist")]
    UnknownMigration {
        /// The acknowledgements file.
        path: PathBuf,
        /// The entry's position in the file, from 1.
        entry: usize,
        /// The version as written.
        version: u32,
    },
    /// An entry whose reason is missing or blank.
    #[error("{path}: acknowledge #{entry} (migration {version}, rule {rule}) has no reason: say why the risk is taken")]
    NoReason {
        /// The acknowledgements file.
        path: PathBuf,
        /// The entry's position in the file, from 1.
        entry: usize,
        /// The migration it names.
        version: u32,
        /// The rule it names.
        rule: Rule,
    },
}

/// The acknowledgements file: findings a team has reviewed.
#[derive(Debug, Clone, Default)]
pub struct Acknowledgements {
    path: String,
    entries: Vec<(u32, Rule, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    acknowledge: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    migration: u32,
    rule: String,
    // Missing is the same as empty: refused, naming the entry.
    #[serde(default)]
    reason: String,
}

impl Acknowledgements {
    /// Reads `path`; a file that does not exist acknowledges nothing. Every entry must name a
    /// migration of `migrations`, a rule, and a reason.
    pub fn load(path: &Path, migrations: &[Migration]) -> Result<Self, LintError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Acknowledgements { path: path.display().to_string(), entries: vec![] });
            }
            Err(e) => return Err(LintError::File { path: path.to_owned(), message: e.to_string() }),
        };
        // toml's message says where on its first line and what on its last (the line itself and
        // a caret between them).
        let file: File = toml::from_str(&text).map_err(|e| {
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let message = match (lines.first(), lines.last()) {
                (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
                _ => lines.join(" "),
            };
            LintError::File { path: path.to_owned(), message }
        })?;
        let mut entries = Vec::new();
        for (i, entry) in file.acknowledge.into_iter().enumerate() {
            let rule = Rule::named(&entry.rule).ok_or_else(|| LintError::UnknownRule {
                path: path.to_owned(),
                entry: i + 1,
                rule: entry.rule.clone(),
            })?;
            if !migrations.iter().any(|m| m.version == entry.migration) {
                return Err(LintError::UnknownMigration {
                    path: path.to_owned(),
                    entry: i + 1,
                    version: entry.migration,
                });
            }
            if entry.reason.trim().is_empty() {
                return Err(LintError::NoReason {
                    path: path.to_owned(),
                    entry: i + 1,
                    version: entry.migration,
                    rule,
                });
            }
            entries.push((entry.migration, rule, entry.reason));
        }
        Ok(Acknowledgements { path: path.display().to_string(), entries })
    }

    /// Acknowledges the findings the file names (one entry covers its rule in its whole
    /// migration); returns the entries that matched no finding, as `(migration, rule)`.
    pub fn apply(&self, findings: &mut [Finding]) -> Vec<(u32, Rule)> {
        let mut used = BTreeSet::new();
        for finding in findings.iter_mut() {
            let entry = self.entries.iter().position(|(v, r, _)| *v == finding.version && *r == finding.rule);
            if let Some(i) = entry {
                used.insert(i);
                if finding.acknowledged.is_none() {
                    let reason = self.entries[i].2.clone();
                    finding.acknowledged = Some(Acknowledgement::File { file: self.path.clone(), reason });
                }
            }
        }
        let unused = self.entries.iter().enumerate().filter(|(i, _)| !used.contains(i));
        unused.map(|(_, (v, r, _))| (*v, *r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use dynamo_model::{GlobalIndex, KeyAttr, TableDef};

    use super::*;
    use crate::migration::{Destructive, RebuildStep};

    fn risky() -> Vec<Migration> {
        let alpha = TableDef::new("alpha", KeyAttr::s("id"))
            .global_index(GlobalIndex::new("by_x", KeyAttr::s("x")))
            .stream(StreamView::NewImage);
        vec![
            Migration::new(1, "create_alpha", "1").create_table(alpha),
            Migration::new(2, "drop_by_x", "2").delete_global_index("alpha", "by_x", Destructive::because("unused")),
            Migration::new(3, "keys_only", "3")
                .replace_stream("alpha", StreamView::KeysOnly, Destructive::because(" "))
                .update_billing("alpha", Billing::Provisioned(dynamo_model::Throughput { read: 5, write: 5 }), vec![])
                .update_billing("alpha", Billing::Provisioned(dynamo_model::Throughput { read: 9, write: 9 }), vec![]),
            Migration::new(4, "rebuild_alpha", "4")
                .rebuild_table(RebuildStep::copy(TableDef::new("alpha", KeyAttr::s("id")).version(2)))
                .delete_old_table("alpha", 1, Destructive::because(" ")),
        ]
    }

    #[test]
    fn each_rule_fires_where_its_change_is_and_a_reason_acknowledges_a_delete() {
        let findings = lint(&risky()).unwrap();
        let fired: Vec<(u32, usize, &str, bool)> =
            findings.iter().map(|f| (f.version, f.step, f.rule.name(), f.acknowledged.is_some())).collect();
        assert_eq!(
            fired,
            [
                (2, 1, "delete-index", true),
                (3, 1, "stream-replacement", false),
                (3, 2, "billing-switch", false),
                (4, 1, "rebuild", false),
                // A blank reason acknowledges nothing.
                (4, 2, "delete-table", false),
            ]
        );
        assert_eq!(
            findings[1].to_string(),
            "migration 3 (keys_only), step 1: [stream-replacement] replaces the NEW_IMAGE stream of alpha (by a KEYS_ONLY one): its consumers (triggers, replicas, a rebuild's replay) lose their place"
        );
    }

    #[test]
    fn a_first_stream_and_a_capacity_change_are_not_risky() {
        let migrations = vec![
            Migration::new(1, "create", "1").create_table(TableDef::new("alpha", KeyAttr::s("id")).provisioned(1, 1)),
            Migration::new(2, "more", "2").update_stream("alpha", Some(StreamView::NewImage)).update_billing(
                "alpha",
                Billing::Provisioned(dynamo_model::Throughput { read: 5, write: 5 }),
                vec![],
            ),
        ];
        assert_eq!(lint(&migrations).unwrap(), []);
    }

    #[test]
    fn the_file_acknowledges_by_migration_and_rule_and_its_mistakes_are_refused() {
        let dir = std::env::temp_dir().join(format!("lint-acks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lint.toml");
        let migrations = risky();
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Acknowledgements::load(&path, &migrations)
        };
        let acks = load(
            "[[acknowledge]]\nmigration = 4\nrule = \"rebuild\"\nreason = \"reviewed\"\n\n[[acknowledge]]\nmigration = 1\nrule = \"delete-table\"\nreason = \"stale\"\n",
        )
        .unwrap();
        let mut findings = lint(&migrations).unwrap();
        let unused = acks.apply(&mut findings);
        assert_eq!(unused, [(1, Rule::DeleteTable)]);
        assert_eq!(
            findings[3].acknowledged,
            Some(Acknowledgement::File { file: path.display().to_string(), reason: "reviewed".into() })
        );
        assert!(findings[4].acknowledged.is_none());

        let unknown = load("[[acknowledge]]\nmigration = 4\nrule = \"rebuilds\"\nreason = \"x\"\n").unwrap_err();
        assert!(unknown.to_string().ends_with("acknowledge #1 names rule \"rebuilds\", which is not a rule; the rules are delete-table, delete-index, rebuild, stream-replacement and billing-switch"), "{unknown}");
        let missing = load("[[acknowledge]]\nmigration = 9\nrule = \"rebuild\"\nreason = \"x\"\n").unwrap_err();
        assert!(missing.to_string().ends_with("acknowledge #1 names migration 9, which does not exist"), "{missing}");
        let blank = load("[[acknowledge]]\nmigration = 4\nrule = \"rebuild\"\nreason = \"\"\n").unwrap_err();
        assert!(blank.to_string().ends_with("has no reason: say why the risk is taken"), "{blank}");
        assert!(matches!(load("[[acknowledge]]\nmigration = 4\n").unwrap_err(), LintError::File { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
        let none = Acknowledgements::load(&path, &migrations).unwrap();
        assert_eq!(none.apply(&mut findings), []);
    }
}
