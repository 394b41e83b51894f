//! A migration as written in the migrations crate: its version, name, source checksum and steps.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use dynamo_model::{Billing, GlobalIndex, Item, StreamView, TableClass, TableDef};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::data::{Change, DataContext, DataReport, MapFn, PassOptions};

/// The SHA-256 of a migration's source, hex-encoded, with CRLF line endings turned into LF so
/// that a checkout on Windows does not look like an edit.
pub fn checksum(source: &str) -> String {
    let normalised = source.replace("\r\n", "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The acknowledgement a destructive step must carry: why losing what it deletes is fine.
///
/// A step that deletes a table or an index cannot be written without one, so a destructive
/// change can never slip into a migration unnoticed; `plan` prints the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destructive {
    /// Why losing what the step deletes (or stops) is fine, in the author's words. `plan` prints
    /// it beside the step, and it acknowledges the step's `cargo xtask lint` finding unless it is
    /// blank.
    pub reason: String,
}

impl Destructive {
    /// Marks a step as destroying data, with the reason that makes it acceptable.
    pub fn because(reason: impl Into<String>) -> Self {
        Destructive { reason: reason.into() }
    }
}

/// A change to a table's definition. Tables are named logically (as in the schema crate); the
/// engine adds the environment's prefix and the table's current version.
///
/// Each step is planned against the live table when it runs, so a step whose end state already
/// holds makes no call, and one that stopped half-way makes only the calls still missing; after
/// each call the engine waits until the table and every index are ACTIVE (and done
/// backfilling). Migrations usually add steps with [`Migration`]'s methods
/// ([`Migration::create_table`], …) rather than naming the variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchemaStep {
    /// Creates the table with `CreateTable` (keys, indexes, billing, stream, class, deletion
    /// protection, and on AWS its tags), then enables its TTL and point-in-time recovery with
    /// calls of their own. A table that exists as declared but for those calls (a create that
    /// stopped half-way) gets only the calls still missing; one that differs otherwise fails the
    /// step ([`PlanError::TableDiffers`](crate::schema_steps::PlanError::TableDiffers)).
    CreateTable {
        /// The table to create, its `version` included: the step makes that version current.
        table: TableDef,
    },
    /// Creates a GSI with `UpdateTable` (one GSI per call, as DynamoDB requires) and waits until
    /// it is ACTIVE and backfilled. An identical index makes no call; an index of that name with
    /// other keys or projection fails the step
    /// ([`PlanError::IndexDiffers`](crate::schema_steps::PlanError::IndexDiffers)): that change is
    /// [`SchemaStep::ReplaceGlobalIndex`].
    AddGlobalIndex {
        /// The table's logical name.
        table: String,
        /// The index to create.
        index: GlobalIndex,
    },
    /// Deletes a GSI; queries on it fail from then on. A table without a GSI of that name fails
    /// the step ([`PlanError::NothingToDelete`](crate::schema_steps::PlanError::NothingToDelete), since a
    /// wrong name would be recorded as applied), as does the name of an LSI.
    DeleteGlobalIndex {
        /// The table's logical name.
        table: String,
        /// The name of the GSI to delete.
        index: String,
        /// Why losing the index is fine.
        destructive: Destructive,
    },
    /// Enables TTL on the attribute, or disables it with `None`, with `UpdateTimeToLive`. Moving
    /// TTL to another attribute is two calls (off, then on), which AWS refuses within an hour of
    /// each other: see [`Migration::enable_ttl`].
    UpdateTtl {
        /// The table's logical name.
        table: String,
        /// The attribute whose value (a Number of seconds since the epoch) is when DynamoDB may
        /// delete the item; `None` turns TTL off.
        attribute: Option<String>,
    },
    /// Sets the billing mode and capacity with `UpdateTable`: see [`Migration::update_billing`].
    UpdateBilling {
        /// The table's logical name.
        table: String,
        /// On-demand, or provisioned with the table's read and write capacity units.
        billing: Billing,
        /// With provisioned billing, the capacity of each GSI, by index name: every GSI of the
        /// table must have one. Ignored with on-demand billing.
        index_throughput: Vec<(String, dynamo_model::Throughput)>,
    },
    /// Turns the stream on with a view, or off with `None`. A different view on a table that has
    /// a stream is refused: that is [`SchemaStep::ReplaceStream`].
    UpdateStream {
        /// The table's logical name.
        table: String,
        /// What each stream record carries of the item (keys, new image, old image, or both);
        /// `None` turns the stream off.
        stream: Option<StreamView>,
    },
    /// Replaces the table's stream by one with another view: off, then on, which gives it a new
    /// ARN; the old stream's consumers stop.
    ReplaceStream {
        /// The table's logical name.
        table: String,
        /// The view of the new stream; a stream that already has it makes no call.
        stream: StreamView,
        /// Why stopping the old stream's consumers is fine.
        destructive: Destructive,
    },
    /// Deletes a GSI and creates it again as `index` (other keys or projection), waiting for
    /// the deletion and then the backfill; queries on the index fail meanwhile.
    ReplaceGlobalIndex {
        /// The table's logical name.
        table: String,
        /// The index as it is to be; its name says which GSI is replaced.
        index: GlobalIndex,
        /// Why the index being unavailable until it is backfilled again is fine.
        destructive: Destructive,
    },
    /// Changes the table class (AWS allows two changes in 30 days).
    SetTableClass {
        /// The table's logical name.
        table: String,
        /// Standard, or Standard-Infrequent Access (cheaper storage, dearer reads and writes).
        class: TableClass,
    },
    /// Turns deletion protection on or off. While it is on, DynamoDB refuses `DeleteTable`, and
    /// so does the planner ([`PlanError::DeletionProtected`](crate::schema_steps::PlanError::DeletionProtected)).
    SetDeletionProtection {
        /// The table's logical name.
        table: String,
        /// `true` to protect the table from deletion.
        enabled: bool,
    },
    /// Deletes the table's current version, or (`Some`) an older one left by a rebuild.
    DeleteTable {
        /// The table's logical name.
        table: String,
        /// `None` for the current version; `Some(n)` for version `n`, which must not be the
        /// current one.
        version: Option<u32>,
        /// Why losing the table and every item in it is fine.
        destructive: Destructive,
    },
}

impl SchemaStep {
    /// The logical name of the table the step changes.
    pub fn table(&self) -> &str {
        match self {
            SchemaStep::CreateTable { table } => &table.name,
            SchemaStep::AddGlobalIndex { table, .. }
            | SchemaStep::DeleteGlobalIndex { table, .. }
            | SchemaStep::UpdateTtl { table, .. }
            | SchemaStep::UpdateBilling { table, .. }
            | SchemaStep::UpdateStream { table, .. }
            | SchemaStep::ReplaceStream { table, .. }
            | SchemaStep::ReplaceGlobalIndex { table, .. }
            | SchemaStep::SetTableClass { table, .. }
            | SchemaStep::SetDeletionProtection { table, .. }
            | SchemaStep::DeleteTable { table, .. } => table,
        }
    }

    /// The acknowledgement of a step that deletes data, if it is one.
    pub fn destructive(&self) -> Option<&Destructive> {
        match self {
            SchemaStep::DeleteGlobalIndex { destructive, .. }
            | SchemaStep::DeleteTable { destructive, .. }
            | SchemaStep::ReplaceStream { destructive, .. }
            | SchemaStep::ReplaceGlobalIndex { destructive, .. } => Some(destructive),
            _ => None,
        }
    }
}

type DataFn = dyn Fn(DataContext) -> Pin<Box<dyn Future<Output = anyhow::Result<DataReport>> + Send>> + Send + Sync;

/// A data step: async Rust run against the tables, with fixture items that `verify` and `local`
/// write first so that the step has something to work on.
///
/// Use one for what a schema step cannot do to the items: backfill an attribute, move items into
/// another table, delete the ones that no longer belong. It works through a
/// [`DataContext`](crate::DataContext): the client, the environment's physical table names, and
/// passes (`ctx.backfill(..)`, `ctx.pass(..)`) that scan in parallel, write only what changed
/// (in place, on the condition that the item is still as read), retry throttling and checkpoint
/// each page in the ledger, so that a killed run resumes. After a crash the page in flight is
/// done again, so a step must leave its own output alone: `verify` runs it a second time over its
/// output and fails if that would write anything.
#[derive(Clone)]
pub struct DataStep {
    /// The step's name, as plans, reports and errors show it (`data step <name>`).
    pub name: String,
    /// The items written before the step runs, on DynamoDB Local only (see [`Fixture`]).
    pub fixtures: Vec<Fixture>,
    run: Arc<DataFn>,
}

impl fmt::Debug for DataStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataStep").field("name", &self.name).field("fixtures", &self.fixtures.len()).finish()
    }
}

/// An item written to a table before a data step runs, only on DynamoDB Local.
///
/// `cargo xtask verify` and `cargo xtask local` put the fixtures of each data step just before
/// it runs, so that the step (and `verify`'s second, idempotence run) has items to work on;
/// nothing writes them to a real environment. Add them with [`DataStep::fixtures`].
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The logical name of the table the item is put into (its version current at that step).
    pub table: String,
    /// The item, as the data step's input type serialises it.
    pub item: Item,
}

impl DataStep {
    /// A data step named `name` that runs `run`: an async function of the step's
    /// [`DataContext`](crate::DataContext) that returns the
    /// [`DataReport`](crate::DataReport) of what it did (what a pass such as `ctx.backfill(..)`
    /// returns). An error it returns, or a panic, fails the step, and the migration is recorded
    /// `failed` with the message; stopped by Ctrl-C at a checkpoint, it is `interrupted`, and the
    /// next run resumes it.
    ///
    /// ```ignore
    /// DataStep::new("backfill_email_normalised", |ctx| async move {
    ///     Ok(ctx.backfill("customers", |c: Before| Some(normalise(c))).await?)
    /// })
    /// ```
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: Fn(DataContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<DataReport>> + Send + 'static,
    {
        DataStep { name: name.into(), fixtures: Vec::new(), run: Arc::new(move |ctx| Box::pin(run(ctx))) }
    }

    /// Adds fixture items (any serde type) for `table`, written before the step on DynamoDB Local.
    ///
    /// # Panics
    /// When an item does not serialise into a DynamoDB item: a bug in the migration itself.
    pub fn fixtures<T: Serialize>(mut self, table: &str, items: impl IntoIterator<Item = T>) -> Self {
        for item in items {
            let item: Item = serde_dynamo::to_item(item)
                .unwrap_or_else(|e| panic!("data step {}: a fixture for table {table} is not an item: {e}", self.name));
            self.fixtures.push(Fixture { table: table.to_owned(), item });
        }
        self
    }

    pub(crate) async fn run(&self, ctx: DataContext) -> anyhow::Result<DataReport> {
        (self.run)(ctx).await
    }
}

/// A table rebuild, for what DynamoDB cannot change in place (key schema, LSIs, a new item
/// shape), done online while the application keeps writing the old version.
///
/// The rebuild makes sure the old version has a stream its replay can use (it enables one with
/// new and old images when there is none), creates the next version (`<name>_v<n>`), copies
/// every item into it (through an optional conversion) with the data engine, replays the
/// stream's records since before the copy into it, and makes it current once a convergence check
/// finds it to be the conversion of the old version. A copy estimated to take longer than
/// [`COPY_LIMIT`](crate::data::COPY_LIMIT) (unless the migrator sets another limit) is refused before
/// it starts, since stream records live only 24 hours. The old version stays, kept in sync by
/// `cargo xtask sync`, until the application has moved to the new one and a later migration
/// deletes it with [`Migration::delete_old_table`]. Add it with [`Migration::rebuild_table`].
#[derive(Clone)]
pub struct RebuildStep {
    /// The new table; its version must be the next one.
    pub table: TableDef,
    pub(crate) map: Option<Arc<MapFn>>,
    /// How the copy runs: segments, writers, rate, dead-letter file and how many items may fail;
    /// set with [`RebuildStep::options`] and the methods after it.
    pub options: PassOptions,
    /// How the new version is filled: by a copy through the table, or by DynamoDB's Export to
    /// S3 and Import from S3 (see [`RebuildStep::via_export`]).
    pub path: RebuildPath,
}

/// How a rebuild fills its new version before the stream catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildPath {
    /// The copy for a table under [`crate::data::AUTO_EXPORT_BYTES`], the export for a larger one
    /// whose pre-flight passes (`plan` says which, and why).
    #[default]
    Auto,
    /// A parallel scan of the old table written into the new one (read and write units).
    Copy,
    /// Export to S3, the transform over the export's files, Import from S3 (no table capacity).
    Export,
}

impl fmt::Debug for RebuildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RebuildStep").field("table", &self.table).field("transform", &self.map.is_some()).finish()
    }
}

impl RebuildStep {
    /// A rebuild that copies every item exactly, as stored (every DynamoDB type byte for byte):
    /// for a new version whose items keep their key attributes, such as one with another LSI.
    pub fn copy(table: TableDef) -> Self {
        RebuildStep { table, map: None, options: PassOptions::default(), path: RebuildPath::Auto }
    }

    /// A rebuild that converts every item: `f(old)` is written to the new table; `None` leaves
    /// the item out. Items that `Old` cannot hold exactly stop the step with their key, and so
    /// do attributes `Old` does not hold at all, unless the step says
    /// [`RebuildStep::drop_unknown_attributes`]. The replay puts each stream record's new image
    /// through `f` the same way, and deletes the key of the converted old image for a removal.
    pub fn convert<Old, New, F>(table: TableDef, f: F) -> Self
    where
        Old: serde::de::DeserializeOwned + Serialize + 'static,
        New: Serialize + 'static,
        F: Fn(Old) -> Option<New> + Send + Sync + 'static,
    {
        RebuildStep {
            table,
            map: Some(crate::data::typed_map(f, Change::Keep)),
            options: PassOptions::default(),
            path: RebuildPath::Auto,
        }
    }

    /// Fills the new version through DynamoDB's own engines instead of a copy through the
    /// tables: `ExportTableToPointInTime` from the old table's point-in-time recovery (no read
    /// units), the step's transform over the exported files (shared by the run's workers, file by
    /// file), and `ImportTable` into the new version (no write units); then the same stream
    /// catch-up and convergence check as the copy. For tables too large to copy within the
    /// stream's day. It needs point-in-time recovery on the old table, no local secondary index
    /// in the new version (ImportTable cannot create one), and an S3 bucket for the environment
    /// (`[<env>.exports]` in environments.toml); `plan` and `migrate` refuse it, before anything
    /// is written, when one is missing. See README, "Huge tables: Export to S3, Import from S3".
    pub fn via_export(mut self) -> Self {
        self.path = RebuildPath::Export;
        self
    }

    /// Fills the new version by a copy through the tables whatever the table's size (see
    /// [`RebuildStep::via_export`] for the other way).
    pub fn via_copy(mut self) -> Self {
        self.path = RebuildPath::Copy;
        self
    }

    /// Sets how the copy runs (segments, writers, rate, dead-letter file). A
    /// [`RebuildStep::drop_unknown_attributes`] said before or after stays said: an opt-in to
    /// losing data must not be undone by setting a rate.
    pub fn options(mut self, options: PassOptions) -> Self {
        let drop_unknown = self.options.drop_unknown_attributes || options.drop_unknown_attributes;
        self.options = PassOptions { drop_unknown_attributes: drop_unknown, ..options };
        self
    }

    /// Lets the conversion drop the attributes its input type does not hold: without it, such
    /// an attribute stops the rebuild, naming it, so that losing data is a visible line in the
    /// migration.
    pub fn drop_unknown_attributes(mut self) -> Self {
        self.options.drop_unknown_attributes = true;
        self
    }

    /// Keeps the items the conversion fails on in this JSON-lines file instead of stopping at the
    /// first; the rebuild still fails (and its new version does not become current) if any did,
    /// unless it accepts that many ([`RebuildStep::max_failed_items`]).
    pub fn dead_letter(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.options.dead_letter = Some(path.into());
        self
    }

    /// Accepts up to `n` items the conversion fails on, kept in the dead-letter file: the new
    /// version becomes current without them, and `status` and `plan` say how many and where.
    pub fn max_failed_items(mut self, n: u64) -> Self {
        self.options.max_failed = crate::data::FailureBudget::Items(n);
        self
    }

    /// Accepts failed items up to this share (0 to 1) of the items read, as
    /// [`RebuildStep::max_failed_items`] does a number.
    pub fn max_failed_fraction(mut self, share: f64) -> Self {
        self.options.max_failed = crate::data::FailureBudget::Fraction(share);
        self
    }
}

/// One step of a migration. Steps run in order, each one finished (and its tables ACTIVE)
/// before the next starts.
#[derive(Debug, Clone)]
pub enum Step {
    /// A change to a table's definition, planned against the live table.
    Schema(SchemaStep),
    /// Async Rust over the tables' items.
    Data(DataStep),
    /// A copy of a table into its next version, which becomes current.
    Rebuild(RebuildStep),
}

impl Step {
    /// The step in a few words, as plans, reports and errors name it: a schema step as
    /// [`describe_step`](crate::schema_steps::describe_step) says it (a destructive one with its reason),
    /// `data step <name>`, or `rebuild table <name> as version <n>`.
    pub fn describe(&self) -> String {
        match self {
            Step::Schema(s) => crate::planner::describe_step(s),
            Step::Data(d) => format!("data step {}", d.name),
            Step::Rebuild(r) => format!(
                "rebuild table {} as version {}{}",
                r.table.name,
                r.table.version,
                if r.map.is_some() { " with a conversion" } else { "" }
            ),
        }
    }

    /// The table whose version this step makes current, if it does.
    pub(crate) fn sets_version(&self) -> Option<(&str, u32)> {
        match self {
            Step::Schema(SchemaStep::CreateTable { table }) | Step::Rebuild(RebuildStep { table, .. }) => {
                Some((&table.name, table.version))
            }
            _ => None,
        }
    }
}

/// A migration: an ordered list of steps with a version, a name and the checksum of its source.
///
/// A migrations crate writes one per file, `mNNNN_<name>.rs`, starting with
/// [`migration!`](crate::migration!) and adding steps with the builder methods:
///
/// ```ignore
/// pub fn migration() -> Migration {
///     migration!("m0002_add_customers_by_postcode.rs")
///         .add_global_index("customers", GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
/// }
/// ```
///
/// A migration spells out what it does instead of borrowing the schema crate's definitions, so
/// that an applied migration never changes meaning. The runner applies the pending ones in
/// version order, recording each in the ledger as running, then succeeded, failed or
/// interrupted.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Its place in the order migrations are applied, and the key of its ledger record;
    /// [`migration!`](crate::migration!) takes it from the file's name (7 from `m0007_…`).
    pub version: u32,
    /// The name after the version in the file's name (`create_orders` from
    /// `m0007_create_orders.rs`), shown beside the version in plans, errors and the ledger.
    pub name: String,
    /// The hex SHA-256 of its source ([`checksum`]), recorded in the ledger when it is applied:
    /// an applied migration whose checksum changed stops every later run
    /// ([`SequenceError::ChangedChecksum`](crate::run::SequenceError::ChangedChecksum)).
    pub checksum: String,
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
    /// The file that registered it through [`migration!`](crate::migration!), as the compiler
    /// names it (relative to the workspace root for a workspace member).
    pub source_file: Option<String>,
    /// What is wrong with its registration (a file name that is not `mNNNN_<name>.rs`, or another
    /// migration's file); `verify`, `plan` and `migrate` refuse to run while one stands.
    pub registration_error: Option<String>,
    /// The line of the header `cargo xtask new` wrote that its author has not replaced yet
    /// (`//! TODO: say what …`, `… say here why.`); `verify` refuses the migration while it
    /// stands.
    pub placeholder: Option<String>,
}

/// What `cargo xtask new` writes in a migration's header for its author to replace: its
/// `//! TODO: ` line, and the end of the line that says which command wrote it.
pub const PLACEHOLDERS: [&str; 2] = ["//! TODO: ", ": say here why."];

/// What is wrong with the migrations' registrations, one line each, naming the migration.
pub fn registration_problems(migrations: &[Migration]) -> Vec<String> {
    migrations
        .iter()
        .filter_map(|m| m.registration_error.as_ref().map(|e| format!("migration {} ({}): {e}", m.version, m.name)))
        .collect()
}

/// The first header line of `source` that still holds a placeholder of `cargo xtask new`.
fn placeholder(source: &str) -> Option<String> {
    source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .find(|l| l.starts_with(PLACEHOLDERS[0]) || l.trim_end().ends_with(PLACEHOLDERS[1]))
        .map(|l| l.trim_end().to_owned())
}

/// Registers the migration of the file it is written in: `migration!("m0007_create_orders.rs")`
/// takes version 7 and name `create_orders` from the file's name and its checksum from the
/// file's content, and records an error (reported before anything runs) when the name is not
/// the file's own, so that a copied migration cannot carry another one's checksum.
#[macro_export]
macro_rules! migration {
    ($file:literal) => {
        $crate::Migration::from_file($file, file!(), include_str!($file))
    };
}

impl Migration {
    /// A migration whose checksum is taken from `source`, normally `include_str!` of its own file.
    /// A migrations crate writes [`migration!`](crate::migration!) instead, which takes the
    /// version and name from the file's name and records which file registered it, so that
    /// `verify`, `plan` and `migrate` can check the files on disk.
    pub fn new(version: u32, name: impl Into<String>, source: &str) -> Self {
        Migration {
            version,
            name: name.into(),
            checksum: checksum(source),
            steps: Vec::new(),
            source_file: None,
            registration_error: None,
            placeholder: None,
        }
    }

    /// What [`migration!`](crate::migration!) expands to: `file` is the name it was given,
    /// `written_in` the file the macro was written in, `source` the content of `file`.
    pub fn from_file(file: &str, written_in: &str, source: &str) -> Self {
        let own = std::path::Path::new(written_in).file_name().and_then(|n| n.to_str()) == Some(file);
        let (version, name, mut error) = match parse_file_name(file) {
            Some((version, name)) => (version, name.to_owned(), None),
            None => (
                0,
                file.trim_end_matches(".rs").to_owned(),
                Some(format!(
                    "migration file {file} is not named mNNNN_<name>.rs (a version of exactly 4 digits, then the name in lowercase words joined by _)"
                )),
            ),
        };
        if error.is_none() && !own {
            let own_name = std::path::Path::new(written_in).file_name().and_then(|n| n.to_str()).unwrap_or(written_in);
            error = Some(format!(
                "{written_in} registers migration!(\"{file}\"), another migration's file: each migration registers its own file, so that its checksum is of its own source; write migration!(\"{own_name}\") in it (its version and name come from its file's name), then run `cargo xtask verify`"
            ));
        }
        Migration {
            source_file: Some(written_in.to_owned()),
            registration_error: error,
            placeholder: placeholder(source),
            ..Migration::new(version, name, source)
        }
    }

    /// Adds a step that creates the table as `table` declares it (keys, indexes, billing, stream,
    /// TTL, point-in-time recovery, class, deletion protection, tags) and waits until it and its
    /// indexes are ACTIVE ([`SchemaStep::CreateTable`]). Write the definition out in the
    /// migration rather than taking the schema crate's, which goes on changing. A version above 1
    /// creates that version of the table directly, and makes it current.
    pub fn create_table(self, table: TableDef) -> Self {
        self.schema(SchemaStep::CreateTable { table })
    }
    /// Adds a step that creates the GSI `index` on `table` and waits until it is ACTIVE and
    /// backfilled, which on a big table can take hours ([`SchemaStep::AddGlobalIndex`]). Queries
    /// on it work once the step is done.
    pub fn add_global_index(self, table: &str, index: GlobalIndex) -> Self {
        self.schema(SchemaStep::AddGlobalIndex { table: table.to_owned(), index })
    }
    /// Adds a step that deletes the GSI named `index` of `table`, whose queries fail from then on
    /// ([`SchemaStep::DeleteGlobalIndex`]); `destructive` says why that is fine.
    pub fn delete_global_index(self, table: &str, index: &str, destructive: Destructive) -> Self {
        self.schema(SchemaStep::DeleteGlobalIndex { table: table.to_owned(), index: index.to_owned(), destructive })
    }
    /// Adds a step that makes `attribute` the table's TTL attribute: DynamoDB deletes an item, in
    /// the background, once the time in it (a Number of seconds since the epoch) has passed
    /// ([`SchemaStep::UpdateTtl`]).
    ///
    /// AWS refuses a second TTL change on a table within about an hour of the first, and `plan`
    /// and `migrate` refuse it before writing anything. So to move TTL to another attribute,
    /// [`Migration::disable_ttl`] in one migration and `enable_ttl` in a migration applied at
    /// least an hour later.
    pub fn enable_ttl(self, table: &str, attribute: &str) -> Self {
        self.schema(SchemaStep::UpdateTtl { table: table.to_owned(), attribute: Some(attribute.to_owned()) })
    }
    /// Adds a step that turns the table's TTL off, so that its items no longer expire
    /// ([`SchemaStep::UpdateTtl`] with `None`); the one-hour rule of
    /// [`Migration::enable_ttl`] applies.
    pub fn disable_ttl(self, table: &str) -> Self {
        self.schema(SchemaStep::UpdateTtl { table: table.to_owned(), attribute: None })
    }
    /// Switches billing; a switch to provisioned gives each existing GSI its own throughput.
    ///
    /// `billing` is on-demand, or provisioned with the table's read and write capacity units,
    /// which is also how a provisioned table's capacity changes ([`SchemaStep::UpdateBilling`]).
    /// With provisioned billing, `index_throughput` gives each GSI its capacity by index name,
    /// and must name every GSI of the table; with on-demand it is ignored. AWS allows 4 switches
    /// to on-demand in 24 hours and limits capacity decreases per UTC day: `plan` and `migrate`
    /// refuse a step that breaks either before writing anything, and `cargo xtask lint` flags
    /// every switch of billing mode.
    pub fn update_billing(
        self,
        table: &str,
        billing: Billing,
        index_throughput: Vec<(String, dynamo_model::Throughput)>,
    ) -> Self {
        self.schema(SchemaStep::UpdateBilling { table: table.to_owned(), billing, index_throughput })
    }
    /// Adds a step that turns the table's stream on with view `stream`, or off with `None`
    /// ([`SchemaStep::UpdateStream`]). A table whose stream has another view fails the step: that
    /// is [`Migration::replace_stream`]. Turning a stream off is flagged by `cargo xtask lint`,
    /// since its consumers lose their place.
    pub fn update_stream(self, table: &str, stream: Option<StreamView>) -> Self {
        self.schema(SchemaStep::UpdateStream { table: table.to_owned(), stream })
    }
    /// Replaces the table's stream by one with view `stream` (a new stream ARN: its consumers stop).
    /// `destructive` says why that is fine ([`SchemaStep::ReplaceStream`]).
    pub fn replace_stream(self, table: &str, stream: StreamView, destructive: Destructive) -> Self {
        self.schema(SchemaStep::ReplaceStream { table: table.to_owned(), stream, destructive })
    }
    /// Deletes the GSI named like `index` and creates it again as `index` (queries on it fail until
    /// it is backfilled): how a GSI's keys or projection change. `destructive` says why that is
    /// fine ([`SchemaStep::ReplaceGlobalIndex`]).
    pub fn replace_global_index(self, table: &str, index: GlobalIndex, destructive: Destructive) -> Self {
        self.schema(SchemaStep::ReplaceGlobalIndex { table: table.to_owned(), index, destructive })
    }
    /// Changes the table class (AWS allows two changes in a trailing 30 days).
    /// DynamoDB Local keeps no table class, so there the call is skipped
    /// ([`SchemaStep::SetTableClass`]).
    pub fn set_table_class(self, table: &str, class: TableClass) -> Self {
        self.schema(SchemaStep::SetTableClass { table: table.to_owned(), class })
    }
    /// Adds a step that turns deletion protection of `table` on or off
    /// ([`SchemaStep::SetDeletionProtection`]). While it is on, the table cannot be deleted: turn
    /// it off in a step before [`Migration::delete_table`].
    pub fn deletion_protection(self, table: &str, enabled: bool) -> Self {
        self.schema(SchemaStep::SetDeletionProtection { table: table.to_owned(), enabled })
    }
    /// Deletes the current version of a table.
    ///
    /// Adds a step that deletes the table with every item in it, and waits until it is gone
    /// ([`SchemaStep::DeleteTable`]); `destructive` says why that is fine. The step fails while
    /// the table has deletion protection on, and when there is no such table (a wrong name would
    /// otherwise be recorded as applied).
    pub fn delete_table(self, table: &str, destructive: Destructive) -> Self {
        self.schema(SchemaStep::DeleteTable { table: table.to_owned(), version: None, destructive })
    }
    /// Deletes an older version of a table, left behind by a rebuild.
    ///
    /// Apply it once the application uses the new version everywhere. Before deleting, the step
    /// replays the old version's stream into the new one a last time, checks again that the new
    /// version is the conversion of the old, and refuses (the migration `interrupted`, to run
    /// again later) while the old version has been written to within the quiet window (15
    /// minutes by default; none on DynamoDB Local) or differs. `version` must not be the current
    /// one: that is [`Migration::delete_table`]. `migrate --accept-differences` deletes it despite
    /// differences, once they are known to be the application's own writes to the new version.
    pub fn delete_old_table(self, table: &str, version: u32, destructive: Destructive) -> Self {
        self.schema(SchemaStep::DeleteTable { table: table.to_owned(), version: Some(version), destructive })
    }
    /// Rebuilds a table as a new version (see [`RebuildStep`]); the steps and migrations after it
    /// work on the new version.
    pub fn rebuild_table(mut self, step: RebuildStep) -> Self {
        self.steps.push(Step::Rebuild(step));
        self
    }
    /// Adds any schema step; the methods above are shorthands for it.
    pub fn schema(mut self, step: SchemaStep) -> Self {
        self.steps.push(Step::Schema(step));
        self
    }
    /// Adds a data step (see [`DataStep`]).
    pub fn data(mut self, step: DataStep) -> Self {
        self.steps.push(Step::Data(step));
        self
    }

    /// What the ledger and the sequence check need to know of this migration.
    pub fn info(&self) -> MigrationInfo {
        MigrationInfo { version: self.version, name: self.name.clone(), checksum: self.checksum.clone() }
    }
}

/// `(7, "create_orders")` from `m0007_create_orders.rs`.
///
/// A migration file's name is `m`, exactly four digits, `_`, then lowercase ASCII words (letters
/// and digits) joined by single `_`, then `.rs`; any other name gives `None`.
pub fn parse_file_name(file: &str) -> Option<(u32, &str)> {
    let stem = file.strip_prefix('m')?.strip_suffix(".rs")?;
    let (digits, name) = stem.split_once('_')?;
    let valid_name = !name.is_empty()
        && name.split('_').all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) || !valid_name {
        return None;
    }
    Some((digits.parse().ok()?, name))
}

/// Where the registrations and the files on disk disagree: a `mNNNN_*.rs` file beside the
/// registered ones that no migration registers, or a registered migration whose file's content
/// is not what was compiled. Needs the sources (run from the workspace root, as `cargo xtask`
/// does); a migration whose file cannot be found is not checked here.
pub fn check_files(migrations: &[Migration]) -> Vec<String> {
    use std::path::Path;
    let mut problems = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for m in migrations {
        let Some(file) = &m.source_file else { continue };
        let Some(path) = locate(file) else { continue };
        let Ok(source) = std::fs::read_to_string(&path) else { continue };
        if checksum(&source) != m.checksum {
            problems.push(format!(
                "migration {} ({}): {file} is not what was compiled (its checksum differs); build again",
                m.version, m.name
            ));
        }
        if let (Some(dir), Some(named)) = (path.parent(), Path::new(file).parent()) {
            dirs.insert((dir.to_owned(), named.to_owned()));
        }
    }
    // Read where they are, named as the compiler names them (relative to the workspace root).
    for (dir, named) in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.starts_with('m') && f.ends_with(".rs") && parse_file_name(f).is_some()) {
            let registered = migrations
                .iter()
                .any(|m| m.source_file.as_deref().and_then(|s| Path::new(s).file_name()?.to_str()) == Some(file));
            if !registered {
                problems.push(format!(
                    "{} is a migration file that no migration!(\"{file}\") registers: add it to the migrations crate's list, or remove it",
                    named.join(file).display()
                ));
            }
        }
    }
    problems
}

/// Finds `file` (as the compiler names it: relative to the workspace root) from the current
/// directory or one of its parents, so that the check works from the root (`cargo xtask`) and
/// from a member crate (its tests).
pub(crate) fn locate(file: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(file);
    if path.is_absolute() {
        return path.exists().then(|| path.to_owned());
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|dir| dir.join(path)).find(|p| p.exists())
}

/// A migration's identity: what is compared with the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    /// The migration's version ([`Migration::version`]).
    pub version: u32,
    /// The migration's name ([`Migration::name`]).
    pub name: String,
    /// The hex SHA-256 of its source ([`Migration::checksum`]).
    pub checksum: String,
}

impl fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "migration {} ({})", self.version, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_options_keeps_an_opt_in_to_dropping_attributes() {
        let table = TableDef::new("t", dynamo_model::KeyAttr::s("id")).version(2);
        let step = RebuildStep::copy(table).drop_unknown_attributes().options(PassOptions::default());
        assert!(step.options.drop_unknown_attributes);
    }

    #[test]
    fn a_header_left_as_new_wrote_it_is_a_placeholder() {
        let empty = crate::generate::render_empty("m0007_add_orders.rs");
        let m = Migration::from_file("m0007_add_orders.rs", "migrations/src/m0007_add_orders.rs", &empty);
        assert_eq!(m.placeholder.as_deref(), Some("//! TODO: say what this migration changes, and why."));
        let generated = "//! Brings the tables to what the schema crate declares:\n//! - add global index by_name to customers.\n//!\n//! Written by `cargo xtask new by_name --from-schema`: say here why.\n\nuse x;\n";
        let m = Migration::from_file("m0007_by_name.rs", "m0007_by_name.rs", generated);
        assert_eq!(
            m.placeholder.as_deref(),
            Some("//! Written by `cargo xtask new by_name --from-schema`: say here why.")
        );
        let edited = generated.replace("say here why.", "the support team looks customers up by name.");
        assert_eq!(Migration::from_file("m0007_by_name.rs", "m0007_by_name.rs", &edited).placeholder, None);
        // Only the header counts: the same words in the code are not a placeholder.
        let code = "//! Adds by_name.\n\n// TODO: say here why.\n";
        assert_eq!(Migration::from_file("m0007_by_name.rs", "m0007_by_name.rs", code).placeholder, None);
    }

    #[test]
    fn the_migration_macro_takes_version_and_name_from_its_own_file() {
        let m = Migration::from_file("m0007_create_orders.rs", "migrations/src/m0007_create_orders.rs", "source");
        assert_eq!((m.version, m.name.as_str(), m.registration_error), (7, "create_orders", None));
        assert_eq!(m.checksum, checksum("source"));
    }

    #[test]
    fn registering_another_file_or_a_badly_named_one_is_an_error() {
        let copied = Migration::from_file("m0002_add_index.rs", "migrations/src/m0003_other.rs", "source");
        assert_eq!(
            copied.registration_error.unwrap(),
            "migrations/src/m0003_other.rs registers migration!(\"m0002_add_index.rs\"), another migration's file: each migration registers its own file, so that its checksum is of its own source; write migration!(\"m0003_other.rs\") in it (its version and name come from its file's name), then run `cargo xtask verify`"
        );
        for bad in ["m7_x.rs", "0007_x.rs", "m0007_Orders.rs", "m0007_.rs", "m0007_a__b.rs", "m0007-orders.rs"] {
            let m = Migration::from_file(bad, &format!("migrations/src/{bad}"), "");
            let error = m.registration_error.unwrap();
            assert!(error.contains("is not named mNNNN_<name>.rs (a version of exactly 4 digits"), "{bad}: {error}");
        }
    }

    #[test]
    fn files_that_no_migration_registers_or_that_changed_are_found() {
        let dir = std::env::temp_dir().join(format!("migration-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        std::fs::write(file("m0001_first.rs"), "one").unwrap();
        std::fs::write(file("m0002_second.rs"), "two, edited after the build").unwrap();
        std::fs::write(file("m0003_forgotten.rs"), "three").unwrap();
        std::fs::write(file("mod_helpers.rs"), "not a migration").unwrap();
        let registered = [
            Migration::from_file("m0001_first.rs", &file("m0001_first.rs"), "one"),
            Migration::from_file("m0002_second.rs", &file("m0002_second.rs"), "two"),
        ];
        let problems = check_files(&registered);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("migration 2 (second):") && problems[0].contains("is not what was compiled"));
        assert!(problems[1].ends_with(
            "m0003_forgotten.rs is a migration file that no migration!(\"m0003_forgotten.rs\") registers: add it to the migrations crate's list, or remove it"
        ));
    }

    #[test]
    fn checksum_is_sha256_of_the_source() {
        // The SHA-256 of "abc", from FIPS 180-2.
        assert_eq!(checksum("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn checksum_ignores_line_ending_style_but_not_content() {
        assert_eq!(checksum("a\r\nb\r\n"), checksum("a\nb\n"));
        assert_ne!(checksum("a\nb\n"), checksum("a\nb \n"));
        assert_ne!(checksum("a\n\nb"), checksum("a\nb"));
    }
}
