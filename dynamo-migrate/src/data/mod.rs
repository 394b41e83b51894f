//! Data steps: what a migration's async Rust gets to work with, and the engine behind it.
//!
//! A data step runs passes over tables: a typed transform (`Old -> Option<New>`) in place or
//! into another table, a backfill, a delete-where, or a raw-item function. Every pass is a
//! parallel scan into bounded batch writers with checkpoints in the ledger (see `engine`).
//! A pass in place may see its own output again after a crash (the page in flight when it died
//! is done again), so an in-place transform must accept items it already transformed.

mod checkpoint;
mod dead_letter;
mod engine;
mod fidelity;
mod rate;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

pub(crate) use checkpoint::CheckpointStore;
pub(crate) use engine::count_items;
pub use fidelity::{canonical_item, canonical_json, canonical_number, key_text};
pub use rate::RateLimit;
pub(crate) use writer::backoff;

use crate::names::TableNames;

/// An item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// What to do with an item a pass has read.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write this item (in place: it replaces the one read; its key must be the same).
    Put(Item),
    /// Leave it as it is (into another table: do not copy it).
    Keep,
    /// Delete it (in place only; into another table it is not copied).
    Delete,
}

pub(crate) type MapFn = dyn Fn(Item) -> Result<Change, String> + Send + Sync;

/// Counts of what a data step did, including what an earlier, interrupted run of it did before
/// its last checkpoints. `unchanged` counts items kept as they were, or not copied; `resumed`
/// counts the items that this run did not scan again thanks to those checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    pub scanned: u64,
    pub written: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub failed: u64,
    #[serde(default)]
    pub resumed: u64,
}

impl std::ops::Add for DataReport {
    type Output = DataReport;

    fn add(mut self, other: DataReport) -> DataReport {
        self.scanned += other.scanned;
        self.written += other.written;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self.resumed += other.resumed;
        self
    }
}

/// Why a data step stopped. Every error about an item names its table and key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("table {table}: item {key}: {error}")]
    Item { table: String, key: String, error: String },
    #[error("the {role} table {table} does not exist; create it in an earlier step")]
    MissingTable { table: String, role: String },
    #[error("{action}: {detail}")]
    Aws { action: String, detail: String },
    #[error(
        "table {table}: {count} item(s) were still unprocessed after {attempts} attempts; the checkpoints are kept, run again to resume"
    )]
    Unprocessed { table: String, count: usize, attempts: u32 },
    #[error(
        "table {table}: interrupted with {done} of {segments} segments done; the checkpoints are kept, run again to resume"
    )]
    Interrupted { table: String, done: u32, segments: u32 },
    #[error("table {table}: cannot rate-limit: {reason}")]
    RateLimit { table: String, reason: String },
    #[error("dead-letter file {}: {error}", .path.display())]
    DeadLetter { path: PathBuf, error: String },
    #[error("saving a checkpoint: {0}")]
    Checkpoint(Box<crate::error::Error>),
    #[error("building a request: {0}")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
}

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Parallel scan segments; by default 8, more for large tables (one per 256 MiB).
    pub segments: Option<u32>,
    /// Items per scan page (DynamoDB's `Limit`); by default a page is what fits in 1 MB. A
    /// segment records its checkpoint and checks for Ctrl-C once per page.
    pub page_size: Option<i32>,
    /// `BatchWriteItem` calls in flight at once, over all segments.
    pub writers: usize,
    pub rate: Option<RateLimit>,
    /// Where items that fail go, one JSON line each, instead of stopping the step.
    pub dead_letter: Option<PathBuf>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions { segments: None, page_size: None, writers: 32, rate: None, dead_letter: None }
    }
}

/// The context a data step runs in: the environment's client and table names, and where its
/// checkpoints go.
#[derive(Debug, Clone)]
pub struct DataContext {
    client: Client,
    names: TableNames,
    checkpoints: CheckpointStore,
    step: usize,
    passes: Arc<AtomicUsize>,
    cancel: watch::Receiver<bool>,
    progress: bool,
}

impl DataContext {
    /// A context with no checkpoints and no Ctrl-C handling, for running passes outside a
    /// migration (benchmarks, tools, tests).
    pub fn new(client: Client, names: TableNames) -> Self {
        let (_, cancel) = watch::channel(false);
        DataContext::in_migration(client, names, CheckpointStore::default(), 0, cancel, false)
    }

    pub(crate) fn in_migration(
        client: Client,
        names: TableNames,
        checkpoints: CheckpointStore,
        step: usize,
        cancel: watch::Receiver<bool>,
        progress: bool,
    ) -> Self {
        DataContext { client, names, checkpoints, step, passes: Arc::new(AtomicUsize::new(0)), cancel, progress }
    }

    /// Runs one pass; each pass of a step gets the next checkpoint id, so a re-run that makes
    /// the same passes in the same order resumes each where it stopped.
    pub(crate) async fn run_pass(
        &self,
        source: String,
        target: String,
        options: PassOptions,
        map: Arc<MapFn>,
    ) -> Result<DataReport, DataError> {
        let pass = self.passes.fetch_add(1, Ordering::SeqCst);
        let pass =
            engine::Pass { id: format!("checkpoint_step{}_pass{pass}", self.step), source, target, options, map };
        engine::run(&self.client, pass, &self.checkpoints, self.cancel.clone(), self.progress).await
    }

    /// Shows a progress bar on a terminal.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// The DynamoDB client of the environment.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The physical name of the current version of a logical table.
    pub fn table(&self, logical: &str) -> String {
        self.names.physical(logical)
    }

    /// Writes items into the logical table `table` in batches (fixtures, seeding); returns how
    /// many were written.
    pub async fn put_items(&self, table: &str, items: Vec<Item>) -> Result<u64, DataError> {
        engine::put_items(&self.client, &self.table(table), items, PassOptions::default().writers).await
    }

    /// A pass over the logical table `table`; configure it, then run it with one of
    /// [`PassBuilder::transform`], [`PassBuilder::delete_where`], [`PassBuilder::raw`] or
    /// [`PassBuilder::copy`].
    pub fn pass(&self, table: &str) -> PassBuilder<'_> {
        let source = self.table(table);
        PassBuilder { ctx: self, target: source.clone(), source, options: PassOptions::default(), none_deletes: false }
    }

    /// Backfills in place: writes `f(old)` where it returns `Some`, leaves the item where `None`.
    pub async fn backfill<Old, New, F>(&self, table: &str, f: F) -> Result<DataReport, DataError>
    where
        Old: DeserializeOwned + Serialize + 'static,
        New: Serialize + 'static,
        F: Fn(Old) -> Option<New> + Send + Sync + 'static,
    {
        self.pass(table).transform(f).await
    }
}

/// The raw-item function of a typed transform: reads `Old`, checks that it held every number
/// exactly, and writes `f(old)`, or `none` where it returns `None`.
pub(crate) fn typed_map<Old, New, F>(f: F, none: Change) -> Arc<MapFn>
where
    Old: DeserializeOwned + Serialize + 'static,
    New: Serialize + 'static,
    F: Fn(Old) -> Option<New> + Send + Sync + 'static,
{
    Arc::new(move |item: Item| -> Result<Change, String> {
        let check = fidelity::needs_number_check(&item).then(|| item.clone());
        let old: Old =
            serde_dynamo::from_item(item).map_err(|e| format!("does not read as the step's input type: {e}"))?;
        if let Some(original) = check {
            let round_trip: Item = serde_dynamo::to_item(&old).map_err(|e| e.to_string())?;
            fidelity::check_numbers_kept(&original, &round_trip)?;
        }
        match f(old) {
            Some(new) => {
                Ok(Change::Put(serde_dynamo::to_item(new).map_err(|e| format!("the new value is not an item: {e}"))?))
            }
            None => Ok(none.clone()),
        }
    })
}

/// One pass being configured.
#[derive(Debug)]
pub struct PassBuilder<'a> {
    ctx: &'a DataContext,
    source: String,
    target: String,
    options: PassOptions,
    none_deletes: bool,
}

impl PassBuilder<'_> {
    /// Writes into this logical table instead of in place (its current version).
    pub fn into_table(mut self, logical: &str) -> Self {
        self.target = self.ctx.table(logical);
        self
    }
    /// Writes into this physical table (for rebuilds, which write a version not yet current).
    pub fn into_physical(mut self, physical: impl Into<String>) -> Self {
        self.target = physical.into();
        self
    }
    pub fn segments(mut self, segments: u32) -> Self {
        self.options.segments = Some(segments.max(1));
        self
    }
    pub fn page_size(mut self, items: i32) -> Self {
        self.options.page_size = Some(items.max(1));
        self
    }
    pub fn writers(mut self, writers: usize) -> Self {
        self.options.writers = writers.max(1);
        self
    }
    pub fn rate(mut self, rate: RateLimit) -> Self {
        self.options.rate = Some(rate);
        self
    }
    /// Sends items that fail to this JSON-lines file instead of stopping the step.
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.dead_letter = Some(path.into());
        self
    }
    /// In place, a transform's `None` deletes the item instead of leaving it.
    pub fn none_deletes(mut self) -> Self {
        self.none_deletes = true;
        self
    }

    /// A typed transform: reads each item as `Old`, writes `f(old)`; `None` leaves the item (or
    /// deletes it, with [`PassBuilder::none_deletes`]). An item that does not read as `Old`, or
    /// whose numbers `Old` cannot hold exactly, is an error naming the item and attribute.
    pub async fn transform<Old, New, F>(self, f: F) -> Result<DataReport, DataError>
    where
        Old: DeserializeOwned + Serialize + 'static,
        New: Serialize + 'static,
        F: Fn(Old) -> Option<New> + Send + Sync + 'static,
    {
        let none = if self.none_deletes { Change::Delete } else { Change::Keep };
        self.run(typed_map(f, none)).await
    }

    /// Deletes, in place, every item for which `f` holds. An item that does not read as `T` is
    /// an error naming it.
    pub async fn delete_where<T, F>(self, f: F) -> Result<DataReport, DataError>
    where
        T: DeserializeOwned + 'static,
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let map = move |item: Item| -> Result<Change, String> {
            let value: T =
                serde_dynamo::from_item(item).map_err(|e| format!("does not read as the step's type: {e}"))?;
            Ok(if f(&value) { Change::Delete } else { Change::Keep })
        };
        self.run(Arc::new(map)).await
    }

    /// A function of raw items, for what types cannot express.
    pub async fn raw<F>(self, f: F) -> Result<DataReport, DataError>
    where
        F: Fn(Item) -> Result<Change, String> + Send + Sync + 'static,
    {
        self.run(Arc::new(f)).await
    }

    /// Copies every item unchanged, exactly as stored.
    pub async fn copy(self) -> Result<DataReport, DataError> {
        self.run(Arc::new(|item| Ok(Change::Put(item)))).await
    }

    async fn run(self, map: Arc<MapFn>) -> Result<DataReport, DataError> {
        self.ctx.run_pass(self.source, self.target, self.options, map).await
    }
}
