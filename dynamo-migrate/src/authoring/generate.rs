//! `cargo xtask new <name> --from-schema`: the migration from the tables the migrations leave to
//! the tables the schema crate declares.
//!
//! [`generate`] is a pure function from (desired tables, current tables) to the steps that get
//! there, written the way DynamoDB needs them: one GSI per step, an index whose keys or
//! projection change dropped and created again, indexes dropped before the billing changes and
//! created after it (so that a switch to provisioned names only the indexes that stay), TTL,
//! stream and deletion protection as steps of their own, a rebuild into the next version where
//! the key schema or the LSIs change, and deletes last. [`render`] writes the steps as a
//! migration's Rust source, laid out as rustfmt lays out the hand-written ones.
//!
//! Whatever the generator cannot know is left as a compile error in the source, so that the
//! migration cannot be built, verified or applied before its author has written it: the reason
//! of every destructive step ([`reason_required!`](crate::reason_required!)) and the values a
//! rebuild's conversion must compute ([`value_required!`](crate::value_required!)).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dynamo_model::{
    Billing, GlobalIndex, KeyAttr, KeyType, LocalIndex, Projection, StreamView, TableClass, TableDef, Throughput,
    ValidationErrors,
};
use thiserror::Error;

use crate::drift::SimulatedTables;
use crate::migration::{Destructive, RebuildStep, SchemaStep, Step};

/// What a generated destructive step carries until it is rendered: the source says
/// `reason_required!()` in its place, which does not compile.
const NO_REASON: &str = "";

/// Stands where a destructive step's reason goes, in a generated migration: it does not compile,
/// so the migration cannot be built, verified or applied before its author says why losing the
/// data is fine.
///
/// ```compile_fail
/// use dynamo_migrate::Destructive;
/// let _ = Destructive::because(dynamo_migrate::reason_required!());
/// ```
/// With the reason written in its place, the same line compiles:
/// ```
/// use dynamo_migrate::Destructive;
/// let _ = Destructive::because("orders_v2 holds every order since migration 7");
/// ```
#[macro_export]
macro_rules! reason_required {
    () => {
        compile_error!(
            "a destructive step needs its reason: replace reason_required!() with why losing this data is fine, e.g. Destructive::because(\"orders_v2 holds every order since migration 7\")"
        )
    };
}

/// Stands where a generated rebuild's conversion needs a value that only its author knows (a new
/// key attribute every item must have): it does not compile until the value is written.
///
/// ```compile_fail
/// let record: String = dynamo_migrate::value_required!("record, the new sort key");
/// ```
#[macro_export]
macro_rules! value_required {
    ($what:literal) => {
        compile_error!(concat!(
            "a rebuild's conversion needs a value here: ",
            $what,
            "; compute it from the old item, in place of value_required!(..)"
        ))
    };
}

/// One step of a generated migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedStep {
    /// What the step does.
    pub kind: GeneratedKind,
    /// Why the step is there or what it costs, for the source (a `//` line above the step).
    pub comment: Option<String>,
}

/// What a generated step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneratedKind {
    /// A schema step. A destructive one has no reason yet: its author writes it.
    Schema(SchemaStep),
    /// A rebuild of `from` (the current version) into `to` (the next one), rendered as a
    /// [`RebuildStep::copy`] when every key attribute of `to` is a key attribute of `from`, else
    /// as a [`RebuildStep::convert`] stub whose new key values are `value_required!(..)`.
    Rebuild {
        /// The table as the migrations leave it.
        from: Box<TableDef>,
        /// The table as the schema crate declares it, one version up.
        to: Box<TableDef>,
    },
}

impl GeneratedStep {
    fn schema(step: SchemaStep) -> Self {
        GeneratedStep { kind: GeneratedKind::Schema(step), comment: None }
    }

    fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The step as a migration holds it, for the planner's simulation (a rebuild's conversion
    /// changes items, not definitions, so a copy stands for it).
    pub fn to_step(&self) -> Step {
        match &self.kind {
            GeneratedKind::Schema(step) => Step::Schema(step.clone()),
            GeneratedKind::Rebuild { to, .. } => Step::Rebuild(RebuildStep::copy(TableDef::clone(to))),
        }
    }

    /// True when the author must write something before the migration compiles: the reason of
    /// a destructive step, or the values of a rebuild's conversion.
    pub fn needs_author(&self) -> bool {
        match &self.kind {
            GeneratedKind::Schema(step) => step.destructive().is_some(),
            GeneratedKind::Rebuild { from, to } => !new_keys(from, to).is_empty(),
        }
    }
}

impl fmt::Display for GeneratedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            GeneratedKind::Schema(step) => f.write_str(&summary(step)),
            GeneratedKind::Rebuild { from, to } if !new_keys(from, to).is_empty() => write!(
                f,
                "rebuild table {} as version {} with a conversion (write the values it marks)",
                to.name, to.version
            ),
            GeneratedKind::Rebuild { to, .. } => {
                write!(f, "rebuild table {} as version {}, copying every item", to.name, to.version)
            }
        }
    }
}

/// A step in a few words, as the summary of a migration says it.
fn summary(step: &SchemaStep) -> String {
    match step {
        SchemaStep::CreateTable { table } if table.version > 1 => {
            format!("create table {} (version {})", table.name, table.version)
        }
        SchemaStep::CreateTable { table } => format!("create table {}", table.name),
        SchemaStep::AddGlobalIndex { table, index } => format!("add global index {} to {table}", index.name),
        SchemaStep::DeleteGlobalIndex { table, index, .. } => {
            format!("delete global index {index} of {table} (destructive: write why)")
        }
        SchemaStep::UpdateTtl { table, attribute: Some(a) } => format!("enable TTL on {table}.{a}"),
        SchemaStep::UpdateTtl { table, attribute: None } => format!("disable TTL on {table}"),
        SchemaStep::UpdateBilling { table, billing: Billing::PayPerRequest, .. } => {
            format!("switch {table} to on-demand billing")
        }
        SchemaStep::UpdateBilling { table, billing: Billing::Provisioned(t), .. } => {
            format!("provision {table} with {} RCU / {} WCU", t.read, t.write)
        }
        SchemaStep::UpdateStream { table, stream: Some(view) } => {
            format!("turn the stream of {table} to {}", stream_name(*view))
        }
        SchemaStep::UpdateStream { table, stream: None } => format!("turn the stream of {table} off"),
        SchemaStep::ReplaceStream { table, stream, .. } => {
            format!("replace the stream of {table} by a {} one (destructive: write why)", stream_name(*stream))
        }
        SchemaStep::ReplaceGlobalIndex { table, index, .. } => {
            format!("replace global index {} of {table} (destructive: write why)", index.name)
        }
        SchemaStep::SetTableClass { table, class } => format!("set the table class of {table} to {class:?}"),
        SchemaStep::SetDeletionProtection { table, enabled } => {
            format!("turn deletion protection of {table} {}", if *enabled { "on" } else { "off" })
        }
        SchemaStep::DeleteTable { table, version: None, .. } => {
            format!("delete table {table} (destructive: write why)")
        }
        SchemaStep::DeleteTable { table, version: Some(v), .. } => {
            format!("delete version {v} of table {table} (destructive: write why)")
        }
    }
}

fn stream_name(view: StreamView) -> &'static str {
    match view {
        StreamView::KeysOnly => "KEYS_ONLY",
        StreamView::NewImage => "NEW_IMAGE",
        StreamView::OldImage => "OLD_IMAGE",
        StreamView::NewAndOldImages => "NEW_AND_OLD_IMAGES",
    }
}

/// A difference between the schema crate and the migrations that no step can make in place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotGenerated {
    /// The table's logical name.
    pub table: String,
    /// The field of `TableDef`, as `dynamo_model::diff_tables` names it.
    pub field: String,
    /// The difference and why no step makes it, for the author.
    pub message: String,
}

impl fmt::Display for NotGenerated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The generated migration: its steps, what could not be generated, and what its author should
/// know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// The steps, in order: creates, then changes (a table's index deletes before a billing
    /// change, index creates after it), then deletes.
    pub steps: Vec<GeneratedStep>,
    /// The differences no step can make in place yet (point-in-time recovery, tags), which
    /// the migration leaves as they are.
    pub not_generated: Vec<NotGenerated>,
    /// What the author should know beyond the steps, such as the later migration a rebuild's
    /// old version needs.
    pub notes: Vec<String>,
}

impl Generation {
    /// What the author must replace before the migration compiles, as the source writes it:
    /// `reason_required!()` (a destructive step's reason), `value_required!(..)` (a rebuild's
    /// new key values).
    pub fn holes(&self) -> Vec<&'static str> {
        let reasons =
            self.steps.iter().any(|s| matches!(&s.kind, GeneratedKind::Schema(s) if s.destructive().is_some()));
        let values = self.steps.iter().any(|s| matches!(&s.kind, GeneratedKind::Rebuild { .. }) && s.needs_author());
        [(reasons, "reason_required!()"), (values, "value_required!(..)")]
            .into_iter()
            .filter_map(|(present, hole)| present.then_some(hole))
            .collect()
    }

    /// The steps as a migration holds them (see [`GeneratedStep::to_step`]).
    pub fn migration_steps(&self) -> Vec<Step> {
        self.steps.iter().map(GeneratedStep::to_step).collect()
    }
}

/// A schema crate the generator cannot write a migration towards.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// Two of the schema crate's tables have the same logical name.
    #[error("table {table} is declared twice in the schema crate")]
    DeclaredTwice {
        /// The name declared twice.
        table: String,
    },
    /// A table of the schema crate breaks DynamoDB's rules, as `TableDef::validate` checks them.
    #[error("the schema crate declares a table DynamoDB would refuse: {0}")]
    Invalid(ValidationErrors),
    /// The schema crate declares an older version of a table than the migrations reach.
    #[error(
        "table {table}: the schema crate declares version {declared}, but the migrations are at version {current}: declare version {current} (or {} to rebuild the table)",
        current + 1
    )]
    VersionBehind {
        /// The table's logical name.
        table: String,
        /// The version the schema crate declares.
        declared: u32,
        /// The version the migrations leave current.
        current: u32,
    },
    /// The schema crate declares a version more than one above the migrations' current one.
    #[error(
        "table {table}: the schema crate declares version {declared}, but the migrations are at version {current} and a rebuild makes the next version only: declare version {}",
        current + 1
    )]
    VersionSkips {
        /// The table's logical name.
        table: String,
        /// The version the schema crate declares.
        declared: u32,
        /// The version the migrations leave current.
        current: u32,
    },
    /// The keys or LSIs change at the same version: only a rebuild into the next version can
    /// make that change.
    #[error(
        "table {table}: {} change(s), which DynamoDB cannot do in place: declare version {} in the schema crate (`.version({})`) so that the migration rebuilds the table",
        changes.join(" and "), current + 1, current + 1
    )]
    NeedsRebuild {
        /// The table's logical name.
        table: String,
        /// The version the migrations leave current, which the schema crate declares too.
        current: u32,
        /// Each change that needs the rebuild (`the sort key (none -> record S)`, …).
        changes: Vec<String>,
    },
}

/// Every reason the generator refuses, so that all of them can be fixed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateErrors(pub Vec<GenerateError>);

impl fmt::Display for GenerateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for GenerateErrors {}

/// The steps that take the tables the migrations leave (`current`: every table, each version;
/// of several versions of one table the highest is current) to `desired` (the schema crate's
/// tables, one version each).
///
/// Applied to `current` through the planner's simulation, the steps leave every desired table
/// exactly as declared, except the fields listed in [`Generation::not_generated`], plus the
/// versions that a rebuild among the steps leaves behind (deleted by a later migration, once the
/// application has moved to the new version).
pub fn generate(desired: &[TableDef], current: &[TableDef]) -> Result<Generation, GenerateErrors> {
    let state = SimulatedTables::from_tables(current.iter().cloned());
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for table in desired {
        if !seen.insert(table.name.as_str()) {
            errors.push(GenerateError::DeclaredTwice { table: table.name.clone() });
        }
        if let Err(e) = table.validate() {
            errors.push(GenerateError::Invalid(e));
        }
    }

    let mut generation = Generation::default();
    let (mut creates, mut changes, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    let names: BTreeSet<&str> =
        desired.iter().map(|t| t.name.as_str()).chain(current.iter().map(|t| t.name.as_str())).collect();
    for name in names {
        let want = desired.iter().find(|t| t.name == name);
        let have = state.current(name);
        let older: Vec<u32> = current
            .iter()
            .filter(|t| t.name == name && Some(t.version) != have.map(|h| h.version))
            .map(|t| t.version)
            .collect();
        // The versions a rebuild left behind; `current_version` is the one the application moves
        // to, if the table stays.
        let delete_older = |deletes: &mut Vec<GeneratedStep>, current_version: Option<u32>| {
            for version in &older {
                let comment = match current_version {
                    Some(current) => format!(
                        "Apply once the application uses version {current} everywhere: this replays version {version}'s last writes and refuses unless it has been quiet."
                    ),
                    None => format!("The schema crate no longer declares {name}: version {version} goes too."),
                };
                deletes.push(
                    GeneratedStep::schema(SchemaStep::DeleteTable {
                        table: name.to_owned(),
                        version: Some(*version),
                        destructive: Destructive::because(NO_REASON),
                    })
                    .with_comment(comment),
                );
            }
        };
        match (want, have) {
            (Some(want), None) => creates.push(GeneratedStep::schema(SchemaStep::CreateTable { table: want.clone() })),
            (None, Some(have)) => {
                delete_older(&mut deletes, None);
                if have.deletion_protection {
                    deletes.push(GeneratedStep::schema(SchemaStep::SetDeletionProtection {
                        table: name.to_owned(),
                        enabled: false,
                    }));
                }
                deletes.push(
                    GeneratedStep::schema(SchemaStep::DeleteTable {
                        table: name.to_owned(),
                        version: None,
                        destructive: Destructive::because(NO_REASON),
                    })
                    .with_comment(format!("The schema crate no longer declares {name}.")),
                );
            }
            (Some(want), Some(have)) if want.version < have.version => errors.push(GenerateError::VersionBehind {
                table: name.to_owned(),
                declared: want.version,
                current: have.version,
            }),
            (Some(want), Some(have)) if want.version > have.version + 1 => errors.push(GenerateError::VersionSkips {
                table: name.to_owned(),
                declared: want.version,
                current: have.version,
            }),
            (Some(want), Some(have)) if want.version == have.version + 1 => {
                changes.extend(rebuild(have, want));
                delete_older(&mut deletes, Some(want.version));
                generation.notes.push(format!(
                    "version {} of table {name} stays until a later migration deletes it, once the application uses version {} everywhere; `cargo xtask verify` asks for that migration: when this one compiles, `cargo xtask new delete_{}_v{} --from-schema` writes it",
                    have.version, want.version, ident(name), have.version
                ));
            }
            (Some(want), Some(have)) => {
                let structural = structural_changes(have, want);
                if structural.is_empty() {
                    changes.extend(in_place(have, want, &mut generation.not_generated));
                    delete_older(&mut deletes, Some(have.version));
                } else {
                    errors.push(GenerateError::NeedsRebuild {
                        table: name.to_owned(),
                        current: have.version,
                        changes: structural,
                    });
                }
            }
            (None, None) => {}
        }
    }
    if !errors.is_empty() {
        return Err(GenerateErrors(errors));
    }
    generation.steps = creates.into_iter().chain(changes).chain(deletes).collect();
    Ok(generation)
}

/// What differs between two versions of a table that only a rebuild can change.
fn structural_changes(have: &TableDef, want: &TableDef) -> Vec<String> {
    let key = |k: Option<&KeyAttr>| k.map_or_else(|| "none".to_owned(), |k| format!("{} {}", k.name, k.ty));
    let mut changes = Vec::new();
    if have.partition_key != want.partition_key {
        changes.push(format!(
            "the partition key ({} -> {})",
            key(Some(&have.partition_key)),
            key(Some(&want.partition_key))
        ));
    }
    if have.sort_key != want.sort_key {
        changes.push(format!("the sort key ({} -> {})", key(have.sort_key.as_ref()), key(want.sort_key.as_ref())));
    }
    let lsis = |t: &TableDef| -> BTreeMap<String, LocalIndex> {
        t.local_indexes.iter().map(|l| (l.name.clone(), l.clone())).collect()
    };
    let (before, after) = (lsis(have), lsis(want));
    for name in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        match (before.get(name), after.get(name)) {
            (None, Some(_)) => changes.push(format!("local index {name} (added)")),
            (Some(_), None) => changes.push(format!("local index {name} (removed)")),
            (Some(a), Some(b)) if a != b => changes.push(format!("local index {name} (changed)")),
            _ => {}
        }
    }
    changes
}

/// True when a rebuild changes the table's own keys, so that its items need a conversion.
fn keys_change(from: &TableDef, to: &TableDef) -> bool {
    from.partition_key != to.partition_key || from.sort_key != to.sort_key
}

/// The key attributes of `to` that items of `from` do not have (as keys, with this type): a
/// rebuild must compute them, in a conversion.
fn new_keys<'a>(from: &TableDef, to: &'a TableDef) -> Vec<&'a KeyAttr> {
    to.keys().filter(|k| !from.keys().any(|old| old == *k)).collect()
}

/// An index as it is apart from its capacity, which an update changes in place.
fn shape(index: &GlobalIndex) -> GlobalIndex {
    GlobalIndex { throughput: None, ..index.clone() }
}

/// The in-place steps from `have` to `want`, which have the same keys and LSIs.
fn in_place(have: &TableDef, want: &TableDef, not_generated: &mut Vec<NotGenerated>) -> Vec<GeneratedStep> {
    let table = &want.name;
    let mut steps = Vec::new();
    let kept = |g: &GlobalIndex| have.global_index_named(&g.name).is_some_and(|h| shape(h) == shape(g));

    // Indexes go first: fewer indexes for a billing switch to name, and room under the limits
    // (20 GSIs, 100 projected attributes) for the ones created after it.
    for index in &have.global_indexes {
        let comment = match want.global_index_named(&index.name) {
            None => "The schema crate no longer declares this index.".to_owned(),
            Some(new) if shape(new) != shape(index) => format!(
                "DynamoDB cannot change an index's {} in place: it is dropped here and created again below, and queries on it fail until its backfill ends.",
                if new.projection != index.projection && new.keys().eq(index.keys()) { "projection" } else { "keys" }
            ),
            Some(_) => continue,
        };
        steps.push(
            GeneratedStep::schema(SchemaStep::DeleteGlobalIndex {
                table: table.clone(),
                index: index.name.clone(),
                destructive: Destructive::because(NO_REASON),
            })
            .with_comment(comment),
        );
    }

    let capacity_changes = want
        .global_indexes
        .iter()
        .filter(|g| kept(g))
        .any(|g| have.global_index_named(&g.name).is_some_and(|h| h.throughput != g.throughput));
    if have.billing != want.billing || capacity_changes {
        let index_throughput = match want.billing {
            Billing::PayPerRequest => vec![],
            Billing::Provisioned(_) => want
                .global_indexes
                .iter()
                .filter(|g| kept(g))
                .filter_map(|g| g.throughput.map(|t| (g.name.clone(), t)))
                .collect(),
        };
        let mut step = GeneratedStep::schema(SchemaStep::UpdateBilling {
            table: table.clone(),
            billing: want.billing,
            index_throughput,
        });
        if std::mem::discriminant(&have.billing) != std::mem::discriminant(&want.billing) {
            step = step.with_comment(
                "AWS limits how often a table may switch billing mode in 24 hours: `cargo xtask lint` flags the switch.",
            );
        }
        steps.push(step);
    }

    for index in want.global_indexes.iter().filter(|g| !kept(g)) {
        steps.push(GeneratedStep::schema(SchemaStep::AddGlobalIndex { table: table.clone(), index: index.clone() }));
    }

    if have.ttl_attribute != want.ttl_attribute {
        let mut step = GeneratedStep::schema(SchemaStep::UpdateTtl {
            table: table.clone(),
            attribute: want.ttl_attribute.clone(),
        });
        if have.ttl_attribute.is_some() && want.ttl_attribute.is_some() {
            step = step.with_comment(
                "A new TTL attribute is two calls (off, then on), and AWS refuses the second for up to an hour after the first: `cargo xtask plan` says so.",
            );
        }
        steps.push(step);
    }
    match (have.stream, want.stream) {
        // Another view is another stream (a new ARN): a destructive replacement.
        (Some(_), Some(view)) if have.stream != want.stream => steps.push(
            GeneratedStep::schema(SchemaStep::ReplaceStream {
                table: table.clone(),
                stream: view,
                destructive: Destructive::because(NO_REASON),
            })
            .with_comment(
                "This ends the current stream: its consumers (triggers, replicas, a rebuild's replay) lose their place.",
            ),
        ),
        (Some(_), None) => steps.push(
            GeneratedStep::schema(SchemaStep::UpdateStream { table: table.clone(), stream: None }).with_comment(
                "This ends the current stream: its consumers (triggers, replicas, a rebuild's replay) lose their place.",
            ),
        ),
        (None, Some(_)) => {
            steps.push(GeneratedStep::schema(SchemaStep::UpdateStream { table: table.clone(), stream: want.stream }))
        }
        _ => {}
    }
    if have.deletion_protection != want.deletion_protection {
        steps.push(GeneratedStep::schema(SchemaStep::SetDeletionProtection {
            table: table.clone(),
            enabled: want.deletion_protection,
        }));
    }

    let mut missing = |field: &str, from: String, to: String| {
        not_generated.push(NotGenerated {
            table: table.clone(),
            field: field.to_owned(),
            message: format!(
                "table {table}: {field} changes ({from} -> {to}), and no migration step changes it in place yet: change it by hand (the AWS console or CLI), and `cargo xtask plan` will show it as drift until the migrations say so too"
            ),
        });
    };
    if have.point_in_time_recovery != want.point_in_time_recovery {
        missing(
            "point_in_time_recovery",
            have.point_in_time_recovery.to_string(),
            want.point_in_time_recovery.to_string(),
        );
    }
    if have.table_class != want.table_class {
        steps.push(
            GeneratedStep::schema(SchemaStep::SetTableClass { table: table.clone(), class: want.table_class })
                .with_comment(
                    "AWS allows two table class changes in 30 days: `cargo xtask plan` says when one is refused.",
                ),
        );
    }
    if have.tags != want.tags {
        missing("tags", format!("{:?}", have.tags), format!("{:?}", want.tags));
    }
    steps
}

/// A rebuild of `have` into `want` (the next version), after making sure the old version has a
/// stream the rebuild's replay can use.
fn rebuild(have: &TableDef, want: &TableDef) -> Vec<GeneratedStep> {
    let mut steps = Vec::new();
    // The rebuild reuses a NEW_AND_OLD_IMAGES stream, and a NEW_IMAGE one for a plain copy into
    // the same keys; it refuses to replace any other (see `data::stream`), so the migration does.
    let usable = match have.stream {
        None | Some(StreamView::NewAndOldImages) => true,
        Some(StreamView::NewImage) => !keys_change(have, want),
        Some(StreamView::KeysOnly | StreamView::OldImage) => false,
    };
    if !usable {
        let stream = Some(StreamView::NewAndOldImages);
        let step = match have.stream {
            Some(_) => SchemaStep::ReplaceStream {
                table: have.name.clone(),
                stream: StreamView::NewAndOldImages,
                destructive: Destructive::because(NO_REASON),
            },
            None => SchemaStep::UpdateStream { table: have.name.clone(), stream },
        };
        steps.push(
            GeneratedStep::schema(step)
            .with_comment(format!(
                "The rebuild replays the old version's stream, which must carry new and old images: this replaces the {} stream, and its consumers lose their place.",
                have.stream.map_or("", stream_name)
            )),
        );
    }
    steps.push(GeneratedStep {
        kind: GeneratedKind::Rebuild { from: Box::new(have.clone()), to: Box::new(want.clone()) },
        comment: None,
    });
    steps
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// rustfmt's line width in this workspace (`rustfmt.toml`), which the rendering follows.
const WIDTH: usize = 120;
/// Comments wrap earlier, to read as the hand-written ones do.
const COMMENT_WIDTH: usize = 100;

/// The source of a new, empty migration in the file `file` (`m0007_add_orders.rs`).
pub fn render_empty(file: &str) -> String {
    format!(
        r#"//! TODO: say what this migration changes, and why.

use dynamo_migrate::{{Migration, migration}};

pub fn migration() -> Migration {{
    // The steps, in the order they run: .create_table(..), .add_global_index(..), .enable_ttl(..),
    // .rebuild_table(..), .data(..) and the rest of `Migration`'s builder (see the migrations before
    // this one). `cargo xtask verify` runs them on DynamoDB Local.
    migration!("{file}")
}}
"#
    )
}

/// The source of the migration in the file `file` (`m0007_add_orders.rs`) that makes the steps
/// of `generation`; `command` is the command line that wrote it, for its header.
pub fn render(file: &str, command: &str, generation: &Generation) -> String {
    let mut r = Renderer::default();
    r.imports.extend(["Migration", "migration"]);

    // Bindings first (tables, indexes, the types and functions of conversions), then the chain.
    let mut elements = Vec::new();
    for step in &generation.steps {
        let comment = step.comment.clone();
        match &step.kind {
            GeneratedKind::Schema(step) => {
                let (method, args) = r.step_call(step);
                elements.push(Element { comment, method, args });
            }
            GeneratedKind::Rebuild { from, to } => {
                let table = r.table_binding(to);
                r.imports.insert("RebuildStep");
                let converts = !new_keys(from, to).is_empty();
                let arg = if converts {
                    let convert = r.conversion(from, to);
                    format!("RebuildStep::convert({table}, {convert})")
                } else {
                    format!("RebuildStep::copy({table})")
                };
                let comment = comment.or_else(|| {
                    Some(if converts {
                        format!(
                            "Version {} is a new table: every item is converted into it, then the stream is replayed until the application moves to it.",
                            to.version
                        )
                    } else if keys_change(from, to) {
                        format!(
                            "Version {} is a new table without the sort key: items that share a partition key become one (the last copied wins). Every item is copied, then the stream is replayed until the application moves to it.",
                            to.version
                        )
                    } else {
                        format!(
                            "Version {} is a new table (DynamoDB cannot change LSIs in place): every item is copied as it is, then the stream is replayed until the application moves to it. RebuildStep::convert changes the items on the way.",
                            to.version
                        )
                    })
                });
                elements.push(Element { comment, method: "rebuild_table".into(), args: vec![arg] });
            }
        }
    }

    let mut out = String::new();
    out.push_str("//! Brings the tables to what the schema crate declares:\n");
    let n = generation.steps.len();
    for (i, step) in generation.steps.iter().enumerate() {
        let end = if i + 1 == n { "." } else { ";" };
        out.push_str(&format!("//! - {step}{end}\n"));
    }
    out.push_str("//!\n");
    out.push_str(&format!("//! Written by `{command}`: say here why.\n"));
    let holes: Vec<String> = generation.holes().iter().map(|h| format!("`{h}`")).collect();
    if !holes.is_empty() {
        out.push_str(&format!("//! It compiles once every {} is replaced by what it asks for.\n", holes.join(" and ")));
    }
    out.push('\n');
    let mut uses: Vec<&str> = r.imports.iter().copied().collect();
    // rustfmt's order (style edition 2024): types before functions and macros.
    uses.sort_by_key(|u| (u.starts_with(|c: char| c.is_ascii_lowercase()), *u));
    out.push_str(&use_line("dynamo_migrate", &uses));
    if r.serde {
        out.push_str("use serde::{Deserialize, Serialize};\n");
    }
    out.push('\n');
    for item in &r.items {
        out.push_str(item);
        out.push('\n');
    }
    out.push_str("pub fn migration() -> Migration {\n");
    for binding in &r.bindings {
        out.push_str(binding);
    }
    out.push_str(&chain(4, "", &format!("migration!(\"{file}\")"), &elements, ""));
    out.push_str("}\n");
    out
}

/// `use krate::{..};`, on one line when it fits, else as rustfmt's mixed layout: the names in
/// as few indented lines as fit, with a trailing comma.
fn use_line(krate: &str, names: &[&str]) -> String {
    let one = format!("use {krate}::{{{}}};\n", names.join(", "));
    if one.len() - 1 <= WIDTH {
        return one;
    }
    let mut lines = vec![String::from("   ")];
    for name in names {
        let line = lines.last_mut().expect("a line");
        if line.len() + 1 + name.len() + 1 > WIDTH {
            lines.push(format!("    {name},"));
        } else {
            line.push_str(&format!(" {name},"));
        }
    }
    format!("use {krate}::{{\n{}\n}};\n", lines.join("\n"))
}

/// One call of a chain, with the comment above it.
#[derive(Debug, Clone)]
struct Element {
    comment: Option<String>,
    method: String,
    args: Vec<String>,
}

impl Element {
    fn call(method: &str, args: Vec<String>) -> Self {
        Element { comment: None, method: method.to_owned(), args }
    }

    fn one_line(&self) -> String {
        format!(".{}({})", self.method, self.args.join(", "))
    }
}

/// A method chain at `indent`, as rustfmt lays it out: on one line when it fits; otherwise each
/// call on a line of its own, except that the last call's arguments may "overflow" (the chain on
/// the first line, the arguments below) when everything before it fits on one line and that is
/// no taller than the call on its own line, or at least five lines (rustfmt's
/// `ChainFormatter::format_last_child`). A chain with a comment is always laid out a call a line.
/// Arguments are atoms: what would not fit is bound to a `let` before the chain.
fn chain(indent: usize, prefix: &str, root: &str, elements: &[Element], suffix: &str) -> String {
    let pad = " ".repeat(indent);
    let inner = " ".repeat(indent + 4);
    let head = format!("{pad}{prefix}{root}");
    let calls: String = elements.iter().map(Element::one_line).collect();
    let commented = elements.iter().any(|e| e.comment.is_some());
    if !commented && head.len() + calls.len() + suffix.len() <= WIDTH {
        return format!("{head}{calls}{suffix}\n");
    }
    let vertical_args = |e: &Element, pad: &str, end: &str| -> String {
        let args: String = e.args.iter().map(|a| format!("{pad}    {a},\n")).collect();
        format!(".{}(\n{args}{pad}){end}\n", e.method)
    };
    if let Some((last, before)) = elements.split_last()
        && !commented
        && !last.args.is_empty()
    {
        let before: String = before.iter().map(Element::one_line).collect();
        let first_line = head.len() + before.len() + last.method.len() + 2;
        let overflow_lines = last.args.len() + 2;
        let own_lines = if inner.len() + last.one_line().len() + suffix.len() <= WIDTH { 1 } else { overflow_lines };
        // An argument on a line of its own, with its comma.
        let args_fit = last.args.iter().all(|a| inner.len() + a.len() < WIDTH);
        if first_line <= WIDTH && args_fit && (overflow_lines >= 5 || own_lines >= overflow_lines) {
            return format!("{head}{before}{}", vertical_args(last, &pad, suffix));
        }
    }
    let mut out = format!("{head}\n");
    for (i, element) in elements.iter().enumerate() {
        if let Some(comment) = &element.comment {
            for line in wrap(comment, COMMENT_WIDTH - inner.len() - 3) {
                out.push_str(&format!("{inner}// {line}\n"));
            }
        }
        let end = if i + 1 == elements.len() { suffix } else { "" };
        let line = format!("{inner}{}{end}", element.one_line());
        if line.len() <= WIDTH {
            out.push_str(&line);
            out.push('\n');
        } else {
            out.push_str(&format!("{inner}{}", vertical_args(element, &inner, end)));
        }
    }
    out
}

/// `let name = <chain>;` as rustfmt writes it (`choose_rhs`): the chain beside the `=` when it fits
/// on one line there; else on the next line, indented, when it fits on one line there, when its
/// first line does not fit beside the `=`, or when that saves more than one line.
fn binding(name: &str, root: &str, elements: &[Element]) -> String {
    let beside = chain(4, &format!("let {name} = "), root, elements, ";");
    let below = chain(8, "", root, elements, ";");
    let lines = |s: &str| s.lines().count();
    let first_fits = 4 + "let  = ".len() + name.len() + root.len() <= WIDTH;
    let opens = |s: &str| s.lines().next().is_some_and(|l| l.ends_with('('));
    if lines(&beside) == 1
        || !(lines(&below) == 1
            || !first_fits
            || lines(&beside) > lines(&below) + 1
            || (opens(&beside) && !opens(&below)))
    {
        beside
    } else {
        format!("    let {name} =\n{below}")
    }
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("a line");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[derive(Debug, Default)]
struct Renderer {
    imports: BTreeSet<&'static str>,
    serde: bool,
    /// `let` statements in `migration()`, each ending in a newline.
    bindings: Vec<String>,
    /// Items before `migration()` (a conversion's types and function), each ending in a newline.
    items: Vec<String>,
    names: BTreeSet<String>,
}

impl Renderer {
    /// A name for a binding or an item that is not taken yet.
    fn fresh(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// Binds `expr` (a chain) to a new `let`, or returns it as it is when the call it is an
    /// argument of fits on its line.
    fn argument(&mut self, name: String, root: String, elements: Vec<Element>, line_so_far: usize) -> String {
        let inline: String = root.clone() + &elements.iter().map(Element::one_line).collect::<String>();
        if line_so_far + inline.len() <= WIDTH {
            return inline;
        }
        let name = self.fresh(name);
        self.bindings.push(binding(&name, &root, &elements));
        name
    }

    fn key(&mut self, key: &KeyAttr) -> String {
        self.imports.insert("KeyAttr");
        let f = match key.ty {
            KeyType::S => "s",
            KeyType::N => "n",
            KeyType::B => "b",
        };
        format!("KeyAttr::{f}({})", string(&key.name))
    }

    fn projection(&mut self, projection: &Projection) -> String {
        self.imports.insert("Projection");
        match projection {
            Projection::All => "Projection::All".to_owned(),
            Projection::KeysOnly => "Projection::KeysOnly".to_owned(),
            Projection::Include(attrs) => {
                let attrs: Vec<String> = attrs.iter().map(|a| format!("{}.into()", string(a))).collect();
                format!("Projection::Include(vec![{}])", attrs.join(", "))
            }
        }
    }

    fn global_index_parts(&mut self, index: &GlobalIndex) -> (String, Vec<Element>) {
        self.imports.insert("GlobalIndex");
        let root = format!("GlobalIndex::new({}, {})", string(&index.name), self.key(&index.partition_key));
        let mut elements = Vec::new();
        if let Some(sort) = &index.sort_key {
            elements.push(Element::call("sort_key", vec![self.key(sort)]));
        }
        if index.projection != Projection::All {
            elements.push(Element::call("projection", vec![self.projection(&index.projection)]));
        }
        if let Some(t) = index.throughput {
            elements.push(Element::call("throughput", vec![t.read.to_string(), t.write.to_string()]));
        }
        (root, elements)
    }

    /// An index as an argument: inline when `line_so_far` leaves room, else bound to a `let`.
    fn global_index(&mut self, index: &GlobalIndex, line_so_far: usize) -> String {
        let (root, elements) = self.global_index_parts(index);
        self.argument(ident(&index.name), root, elements, line_so_far)
    }

    fn table_parts(&mut self, table: &TableDef) -> (String, Vec<Element>) {
        self.imports.insert("TableDef");
        let root = format!("TableDef::new({}, {})", string(&table.name), self.key(&table.partition_key));
        let mut elements = Vec::new();
        if table.version > 1 {
            elements.push(Element::call("version", vec![table.version.to_string()]));
        }
        if let Some(sort) = &table.sort_key {
            elements.push(Element::call("sort_key", vec![self.key(sort)]));
        }
        for index in &table.global_indexes {
            // `.global_index(..)` on a line of its own, eight columns in.
            let arg = self.global_index(index, 8 + ".global_index()".len());
            elements.push(Element::call("global_index", vec![arg]));
        }
        for index in &table.local_indexes {
            self.imports.insert("LocalIndex");
            let mut arg = format!("LocalIndex::new({}, {})", string(&index.name), self.key(&index.sort_key));
            if index.projection != Projection::All {
                arg = format!("{arg}.projection({})", self.projection(&index.projection));
            }
            elements.push(Element::call("local_index", vec![arg]));
        }
        if let Some(ttl) = &table.ttl_attribute {
            elements.push(Element::call("ttl", vec![string(ttl)]));
        }
        if let Some(view) = table.stream {
            elements.push(Element::call("stream", vec![self.stream_view(view)]));
        }
        if let Billing::Provisioned(t) = table.billing {
            elements.push(Element::call("provisioned", vec![t.read.to_string(), t.write.to_string()]));
        }
        if table.deletion_protection {
            elements.push(Element::call("deletion_protection", vec!["true".into()]));
        }
        if table.table_class != TableClass::Standard {
            self.imports.insert("TableClass");
            elements.push(Element::call("table_class", vec![format!("TableClass::{:?}", table.table_class)]));
        }
        if table.point_in_time_recovery {
            elements.push(Element::call("point_in_time_recovery", vec!["true".into()]));
        }
        for (key, value) in &table.tags {
            elements.push(Element::call("tag", vec![string(key), string(value)]));
        }
        (root, elements)
    }

    /// A table bound to a `let` named after it (and its version, from 2 on).
    fn table_binding(&mut self, table: &TableDef) -> String {
        let (root, elements) = self.table_parts(table);
        let base =
            if table.version > 1 { format!("{}_v{}", ident(&table.name), table.version) } else { ident(&table.name) };
        let name = self.fresh(base);
        self.bindings.push(binding(&name, &root, &elements));
        name
    }

    fn stream_view(&mut self, view: StreamView) -> String {
        self.imports.insert("StreamView");
        format!("StreamView::{view:?}")
    }

    fn throughput(&mut self, t: Throughput) -> String {
        self.imports.insert("Throughput");
        format!("Throughput {{ read: {}, write: {} }}", t.read, t.write)
    }

    fn reason(&mut self) -> String {
        self.imports.insert("Destructive");
        "Destructive::because(dynamo_migrate::reason_required!())".to_owned()
    }

    /// The method and arguments of the `Migration` builder call that makes `step`.
    fn step_call(&mut self, step: &SchemaStep) -> (String, Vec<String>) {
        // A call in the chain starts eight columns in.
        let at = |method: &str, args_before: &[&String]| {
            // The dot and parentheses of the call, and the arguments before with their ", ".
            8 + method.len() + 3 + args_before.iter().map(|a| a.len() + 2).sum::<usize>()
        };
        match step {
            SchemaStep::CreateTable { table } => {
                let (root, elements) = self.table_parts(table);
                let arg = self.argument(ident(&table.name), root, elements, at("create_table", &[]));
                ("create_table".into(), vec![arg])
            }
            SchemaStep::AddGlobalIndex { table, index } => {
                let table = string(table);
                let arg = self.global_index(index, at("add_global_index", &[&table]));
                ("add_global_index".into(), vec![table, arg])
            }
            SchemaStep::DeleteGlobalIndex { table, index, .. } => {
                ("delete_global_index".into(), vec![string(table), string(index), self.reason()])
            }
            SchemaStep::UpdateTtl { table, attribute: Some(a) } => {
                ("enable_ttl".into(), vec![string(table), string(a)])
            }
            SchemaStep::UpdateTtl { table, attribute: None } => ("disable_ttl".into(), vec![string(table)]),
            SchemaStep::UpdateBilling { table, billing, index_throughput } => {
                self.imports.insert("Billing");
                let billing = match billing {
                    Billing::PayPerRequest => "Billing::PayPerRequest".to_owned(),
                    Billing::Provisioned(t) => format!("Billing::Provisioned({})", self.throughput(*t)),
                };
                let indexes: Vec<String> = index_throughput
                    .iter()
                    .map(|(name, t)| format!("({}.into(), {})", string(name), self.throughput(*t)))
                    .collect();
                let indexes = format!("vec![{}]", indexes.join(", "));
                let table = string(table);
                let indexes = if at("update_billing", &[&table, &billing]) + indexes.len() <= WIDTH {
                    indexes
                } else {
                    let name = self.fresh("index_throughput".into());
                    let line = format!("    let {name} = {indexes};\n");
                    if line.len() <= WIDTH + 1 {
                        self.bindings.push(line);
                    } else {
                        let items: String = index_throughput
                            .iter()
                            .map(|(index, t)| format!("        ({}.into(), {}),\n", string(index), self.throughput(*t)))
                            .collect();
                        self.bindings.push(format!("    let {name} = vec![\n{items}    ];\n"));
                    }
                    name
                };
                ("update_billing".into(), vec![table, billing, indexes])
            }
            SchemaStep::UpdateStream { table, stream } => {
                let view = match stream {
                    Some(view) => format!("Some({})", self.stream_view(*view)),
                    None => "None".to_owned(),
                };
                ("update_stream".into(), vec![string(table), view])
            }
            SchemaStep::ReplaceStream { table, stream, .. } => {
                ("replace_stream".into(), vec![string(table), self.stream_view(*stream), self.reason()])
            }
            SchemaStep::ReplaceGlobalIndex { table, index, .. } => {
                let table = string(table);
                let arg = self.global_index(index, at("replace_global_index", &[&table]));
                ("replace_global_index".into(), vec![table, arg, self.reason()])
            }
            SchemaStep::SetTableClass { table, class } => {
                self.imports.insert("TableClass");
                ("set_table_class".into(), vec![string(table), format!("TableClass::{class:?}")])
            }
            SchemaStep::SetDeletionProtection { table, enabled } => {
                ("deletion_protection".into(), vec![string(table), enabled.to_string()])
            }
            SchemaStep::DeleteTable { table, version: None, .. } => {
                ("delete_table".into(), vec![string(table), self.reason()])
            }
            SchemaStep::DeleteTable { table, version: Some(v), .. } => {
                ("delete_old_table".into(), vec![string(table), v.to_string(), self.reason()])
            }
        }
    }

    /// The types and function that convert an item of `from` into one of `to`, written before
    /// `migration()`; returns the function's name. Key attributes the new version adds (or
    /// whose type changes) are `value_required!` holes.
    fn conversion(&mut self, from: &TableDef, to: &TableDef) -> String {
        self.serde = true;
        let camel = camel(&to.name);
        let old_type = self.fresh(format!("{camel}V{}", from.version));
        let new_type = self.fresh(format!("{camel}V{}", to.version));
        let function = self.fresh(format!("convert_{}", ident(&to.name)));
        let fields = |r: &mut Renderer, t: &TableDef| -> Vec<String> {
            t.keys()
                .map(|k| {
                    let (field, renamed) = field_ident(&k.name);
                    let rename =
                        if renamed { format!("    #[serde(rename = {})]\n", string(&k.name)) } else { String::new() };
                    format!("{rename}    {field}: {},\n", r.rust_type(k.ty))
                })
                .collect()
        };
        let old_fields: String = fields(self, from).concat();
        let new_fields: String = fields(self, to).concat();
        self.items.push(format!(
            "/// An item of {table} as version {v} holds it. Add every attribute its items have: one that this\n\
             /// type does not hold stops the rebuild, naming it (unless it says `.drop_unknown_attributes()`).\n\
             #[derive(Debug, Serialize, Deserialize)]\nstruct {old_type} {{\n{old_fields}}}\n",
            table = from.name,
            v = from.version
        ));
        self.items.push(format!(
            "/// An item of {table} as version {v} holds it.\n#[derive(Debug, Serialize)]\nstruct {new_type} {{\n{new_fields}}}\n",
            table = to.name,
            v = to.version
        ));
        let mut fields = Vec::new();
        let mut holes = false;
        for key in to.keys() {
            let (field, _) = field_ident(&key.name);
            let role = if key == &to.partition_key { "partition key" } else { "sort key" };
            if from.keys().any(|old| old == key) {
                fields.push(format!("{field}: old.{field}"));
            } else {
                holes = true;
                fields.push(format!(
                    "// Every item of version {v} needs its {name}, its new {role}.\n        {field}: dynamo_migrate::value_required!({})",
                    string(&format!("{} ({}), the {role} of every item of version {}", key.name, key.ty, to.version)),
                    v = to.version,
                    name = key.name,
                ));
            }
        }
        let one_line = format!("    Some({new_type} {{ {} }})", fields.join(", "));
        let body = if !holes && one_line.len() <= WIDTH {
            format!("{one_line}\n")
        } else {
            let fields: String = fields.iter().map(|f| format!("        {f},\n")).collect();
            format!("    Some({new_type} {{\n{fields}    }})\n")
        };
        let param = if to.keys().any(|k| from.keys().any(|o| o == k)) { "old" } else { "_old" };
        self.items.push(format!("fn {function}({param}: {old_type}) -> Option<{new_type}> {{\n{body}}}\n"));
        function
    }

    fn rust_type(&mut self, ty: KeyType) -> &'static str {
        match ty {
            KeyType::S => "String",
            KeyType::N => {
                // Any DynamoDB number, exactly: a key's type is not known to be an integer.
                self.imports.insert("Number");
                "Number"
            }
            KeyType::B => "dynamo_migrate::serde_bytes::ByteBuf",
        }
    }
}

/// A Rust string literal.
fn string(text: &str) -> String {
    format!("{text:?}")
}

/// `name` in lowercase words joined by `_` (every other character separates words).
pub(crate) fn snake_case(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// A snake_case identifier for a name of DynamoDB's (letters, digits, `_`, `-`, `.`).
fn ident(name: &str) -> String {
    let mut out = snake_case(name);
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out = format!("t_{out}");
    }
    if is_keyword(&out) { format!("{out}_") } else { out }
}

/// A field name for an attribute, and whether it needs `#[serde(rename)]`: the attribute's own
/// name where it is an identifier (`r#type` for a keyword), else its [`ident`].
fn field_ident(name: &str) -> (String, bool) {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match plain {
        true if is_keyword(name) && !matches!(name, "self" | "super" | "crate") => (format!("r#{name}"), false),
        true if !is_keyword(name) => (name.to_owned(), false),
        _ => (ident(name), true),
    }
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
        "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
        "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become",
        "box", "do", "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    KEYWORDS.contains(&word)
}

/// CamelCase of a table name, for a type.
fn camel(name: &str) -> String {
    let camel: String = ident(name)
        .split('_')
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    if camel.starts_with(|c: char| c.is_ascii_digit()) { format!("T{camel}") } else { camel }
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
