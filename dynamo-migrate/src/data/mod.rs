//! Data steps: what a migration's async Rust gets to work with, and the engine behind it.
//!
//! A data step runs passes over tables: a typed transform (`Old -> Option<New>`) in place or
//! into another table, a backfill, a delete-where, or a raw-item function. Every pass is a
//! parallel scan into bounded batch writers with checkpoints in the ledger (see `engine`).
//! A pass in place writes only what its function changed, on the condition that what the
//! function saw still holds (see `in_place`), so the application's concurrent writes and the
//! attributes a step never names survive. A typed function's input is read exactly or refused
//! (see `typed`). A pass in place may see its own output again after a crash (the page in flight
//! when it died is done again), so an in-place transform must accept items it already
//! transformed; `verify` runs every in-place pass a second time and requires it to write nothing.
//!
//! Online rebuilds (`rebuild`: copy, stream catch-up, convergence check, cut-over, `sync`) and the
//! exact read of items by the schema crate's types (`schema_read`) live here too.

pub(crate) mod checkpoint;
mod concurrency;
mod dead_letter;
pub(crate) mod engine;
mod fidelity;
mod in_place;
mod rate;
pub(crate) mod rebuild;
mod records;
pub(crate) mod replay;
pub(crate) mod schema_read;
mod stream;
mod typed;
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

pub(crate) use checkpoint::{CheckpointStore, DEFAULT_LEASE, checkpoint_prefix};
pub(crate) use concurrency::Concurrency;
pub(crate) use dead_letter::DeadLetters;
pub(crate) use engine::{default_segments, into_other_table, panic_message, without_retries};
pub(crate) use fidelity::key_of;
pub use fidelity::{canonical_item, canonical_json, canonical_number, key_text};
pub(crate) use rate::Limiter;
pub use rate::RateLimit;
pub use replay::{Phase, RESUME_LIMIT, ReplayError, ReplayHeader, ReplayReport, ReplayStore};
pub(crate) use replay::{Replay, key_attributes, now_ms, prefix as replay_prefix};
pub(crate) use stream::ensure_stream;
pub(crate) use typed::unmark_item;
pub use typed::{from_item, to_item};
pub(crate) use writer::{BATCH, Writer, backoff, is_retryable};

pub(crate) use rebuild::EXPORT_FILES;
#[cfg(feature = "export")]
#[cfg_attr(docsrs, doc(cfg(feature = "export")))]
pub use rebuild::export::path::ExportPlace;
#[cfg(feature = "export")]
pub(crate) use rebuild::fill::work_export_files;
pub use rebuild::{
    AUTO_EXPORT_BYTES, COPY_LIMIT, CheckReport, DEFAULT_QUIET_WINDOW, RebuildState, SyncCheck, SyncReport,
    rebuild_states,
};
pub use schema_read::{BadItem, ItemsCheck, check_items, read_exactly};

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

/// What a pass's function made of one item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapped {
    pub change: Change,
    /// What a typed function's input type saw of the item (its value serialised back); `None`
    /// when the function saw the whole item (a raw function).
    pub seen: Option<Item>,
    /// Attributes of the item the input type does not hold, with their DynamoDB types.
    pub not_held: Vec<(String, &'static str)>,
    /// Attributes the input type could hold that the item does not have: the function saw them
    /// absent.
    pub absent: Vec<String>,
}

impl Mapped {
    fn raw(change: Change) -> Mapped {
        Mapped { change, seen: None, not_held: Vec::new(), absent: Vec::new() }
    }

    fn typed(change: Change, seen: Item, not_held: Vec<String>, item: &Item, fields: Option<&[&str]>) -> Mapped {
        let not_held = not_held.into_iter().map(|name| (name.clone(), typed::type_name(&item[&name]))).collect();
        let absent = fields
            .unwrap_or_default()
            .iter()
            .filter(|name| !item.contains_key(**name) && !seen.contains_key(**name))
            .map(|name| (*name).to_owned())
            .collect();
        Mapped { change, seen: Some(seen), not_held, absent }
    }
}

pub(crate) type MapFn = dyn Fn(Item) -> Result<Mapped, String> + Send + Sync;

/// Counts of what a data step did, in items, including what an earlier, interrupted run of it
/// did before its last checkpoints. Reports add up (`+`): a step's is the sum of its passes'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    /// Items the scans read, earlier runs' included.
    pub scanned: u64,
    /// Items written: into another table, each item put; in place, each item the function
    /// changed. In a dry run (`verify`'s second run of an in-place pass), what would be written.
    pub written: u64,
    /// Items kept as they were (in place), or not copied (into another table).
    pub unchanged: u64,
    /// Items deleted in place ([`Change::Delete`]: a `delete_where`, a transform's `None` with
    /// `none_deletes`, a raw function's choice).
    pub deleted: u64,
    /// Items that failed (the transform, the exact read, or DynamoDB refusing the write), each
    /// kept in the dead-letter file; without one, the first stops the pass instead.
    pub failed: u64,
    /// Of `scanned`, the items this run did not scan again thanks to an earlier run's
    /// checkpoints.
    #[serde(default)]
    pub resumed: u64,
    /// In-place writes that found the item changed since it was read (by the application), and
    /// so read it again and transformed it again.
    #[serde(default)]
    pub conflicts: u64,
    /// Items deleted by someone else between the scan and the in-place write: nothing to do.
    #[serde(default)]
    pub vanished: u64,
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
        self.conflicts += other.conflicts;
        self.vanished += other.vanished;
        self
    }
}

/// Why a data step stopped. Every error about an item names its table and key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// An item failed (the transform, the exact read of its input type, or DynamoDB refusing its
    /// write), and the pass keeps no dead-letter file: the pass stops at it.
    #[error("table {table}: item {key}: {error}")]
    Item {
        /// The table it was read from, or, for a write DynamoDB refused, the table written.
        table: String,
        /// Its key, as `{name: value, …}`.
        key: String,
        /// Why it failed: for a typed read, every attribute that fails and what would hold it.
        error: String,
    },
    /// A table the pass reads or writes does not exist.
    #[error("the {role} table {table} does not exist; create it in an earlier step")]
    MissingTable {
        /// Its physical name.
        table: String,
        /// `source` (the table read) or `target` (the table written).
        role: String,
    },
    /// A DynamoDB call failed in a way that is not retried (throttling and transient failures
    /// are, with backoff), or went on failing.
    #[error("{action}: {detail}")]
    Aws {
        /// The call and what it was about: `Scan <table> (segment 3)`,
        /// `BatchWriteItem to table <table>`, ….
        action: String,
        /// What AWS said.
        detail: String,
    },
    /// DynamoDB went on returning part of a batch (`BatchWriteItem`, or `BatchGetItem` in a
    /// convergence check) as unprocessed; the checkpoints are kept for the next run.
    #[error(
        "table {table}: {count} item(s) were still unprocessed after {attempts} attempts; the checkpoints are kept, run again to resume"
    )]
    Unprocessed {
        /// The table of the batch.
        table: String,
        /// Items (or keys) still unprocessed at the last attempt.
        count: usize,
        /// Attempts made at the batch.
        attempts: u32,
    },
    /// Ctrl-C stopped the pass before every segment was done; the checkpoints are kept, so the
    /// next run resumes each segment where it stopped.
    #[error(
        "table {table}: interrupted with {done} of {segments} segments done; the checkpoints are kept, run again to resume"
    )]
    Interrupted {
        /// The table the pass reads.
        table: String,
        /// Segments done.
        done: u32,
        /// The pass's parallel scan segments.
        segments: u32,
    },
    /// The pass's [`RateLimit`] cannot apply to its target: a
    /// [`RateLimit::WriteCapacityShare`] of an on-demand table, which has no provisioned write
    /// capacity.
    #[error("table {table}: cannot rate-limit: {reason}")]
    RateLimit {
        /// The table written.
        table: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// The dead-letter file could not be opened for appending, or written.
    #[error("dead-letter file {}: {error}", .path.display())]
    DeadLetter {
        /// The file the step names.
        path: PathBuf,
        /// The I/O error.
        error: String,
    },
    /// A data file of an export could not be read, transformed or written back (see
    /// `RebuildStep::via_export`).
    #[error("{file}: {error}")]
    File {
        /// The file's S3 key.
        file: String,
        /// What failed.
        error: String,
    },
    /// Reading or saving the pass's checkpoints in the ledger failed. It is also how a pass of a
    /// run that lost its lock, or whose migration is no longer running, is fenced: its next
    /// checkpoint is refused.
    #[error("checkpoints: {0}")]
    Checkpoint(Box<crate::error::Error>),
    /// The checkpoints an earlier run left at this place belong to another pass (other tables,
    /// or a migration file with another checksum): resuming would mix two steps' output.
    #[error(
        "migration {version} ({migration}), {place}: the checkpoints of an earlier run belong to another pass: {differences}. Resuming would mix the output of two different steps; to start the migration's passes over from the beginning, run `cargo xtask recover --env <environment> --version {version} --rerun --restart-passes`"
    )]
    CheckpointMismatch {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        migration: String,
        /// The pass's place in the migration: `step <i>, pass <j>`, from 0.
        place: String,
        /// What differs, in words.
        differences: String,
    },
    /// A worker met a pass that is not the one open to workers (the step's code runs in every
    /// worker up to the open pass): not a failure, the worker is done with this step.
    #[error("{place} is not the pass open to workers ({open})")]
    NotOpen {
        /// The place of the pass the step's code made: `step <i>, pass <j>`.
        place: String,
        /// The place of the pass open to workers.
        open: String,
    },
    /// Another worker of the run took the segment over (this one was too slow to renew its
    /// lease): not a failure of the pass, whose segment goes on elsewhere.
    #[error("checkpoint {id}: another worker of this run took its segment over")]
    SegmentTaken {
        /// The ledger id of the segment's checkpoint.
        id: String,
    },
    /// The pass's function panicked; the panic is caught and stops the pass (it never goes to
    /// the dead-letter file).
    #[error("table {table}: item {key}: the transform panicked: {message}")]
    Panicked {
        /// The table the pass reads.
        table: String,
        /// The item's key, or `(not known)` when the panic escaped a segment's task.
        key: String,
        /// The panic's message.
        message: String,
    },
    /// An in-place write found its item changed by someone else each time, too many times in a
    /// row; the migration can run again later.
    #[error(
        "table {table}: item {key} changed under the step {attempts} times in a row (the application writes it that often); run the migration again later"
    )]
    Contended {
        /// The table the pass changes.
        table: String,
        /// The item's key.
        key: String,
        /// Times its conditional write found it changed.
        attempts: u32,
    },
    /// The pass's own options are wrong (a rate that is not a positive number, a failure share
    /// outside 0 to 1, failed items accepted without a dead-letter file), found before anything
    /// is read.
    #[error("pass over {table}: {problem}")]
    Options {
        /// The table the pass reads.
        table: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// More of the pass's items failed than its step accepts ([`FailureBudget`]); the failed
    /// items are in the dead-letter file.
    #[error(transparent)]
    TooManyFailed(Box<TooManyFailed>),
    /// The SDK could not build a request (a required field missing).
    #[error("building a request: {0}")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
}

/// A pass whose items failed, more of them than its step accepts.
#[derive(Debug, Error)]
#[error(
    "pass over {table}{into}: {failed} of {read} item(s) failed, and the step accepts {accepted}; they are in the dead-letter file {dead_letter}. {what_now}"
)]
pub struct TooManyFailed {
    /// The physical table the pass read.
    pub table: String,
    /// ` into <target>`, or nothing in place.
    pub into: String,
    /// Items the pass could not take (unreadable as the step's type, refused by its function, or
    /// refused by DynamoDB), over the whole pass.
    pub failed: u64,
    /// Items the pass read.
    pub read: u64,
    /// How many failed items the step accepts.
    pub accepted: FailureBudget,
    /// The file that holds the failed items, one JSON line each with its key and reason.
    pub dead_letter: String,
    /// What the failure means for the step's output, and the command to run.
    pub what_now: String,
}

impl DataError {
    /// Whether the error says that the run these checkpoints belong to no longer owns its
    /// migration (it lost its lock, or the migration ended): its writes are fenced.
    pub(crate) fn is_fenced(&self) -> bool {
        matches!(self, DataError::Checkpoint(e) if matches!(**e, crate::error::Error::NotDirty { .. } | crate::error::Error::LockLost { .. }))
    }
}

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Parallel scan segments; by default 8, more for large tables (one per 256 MiB).
    pub segments: Option<u32>,
    /// Items per scan page (DynamoDB's `Limit`); by default 500, or what fits in DynamoDB's
    /// 1 MB. A segment records its checkpoint and checks for Ctrl-C once per page.
    pub page_size: Option<i32>,
    /// The most writes in flight at once over all segments (`BatchWriteItem` calls into another
    /// table, single-item conditional writes in place); fewer while DynamoDB throttles.
    pub writers: usize,
    /// How fast the pass may write; by default no limit but DynamoDB's own throttling.
    pub rate: Option<RateLimit>,
    /// Where items that fail go, one JSON line each, instead of stopping the step.
    pub dead_letter: Option<PathBuf>,
    /// Into another table, a typed conversion may drop attributes its input type does not hold.
    pub drop_unknown_attributes: bool,
    /// In place, writes are conditional on this attribute (which the application changes on
    /// every write) and the changed ones, instead of on every attribute the function saw.
    pub version_attribute: Option<String>,
    /// Compute what the pass would write and count it, but write nothing (how `verify` proves
    /// that an in-place pass is idempotent).
    pub dry_run: bool,
    /// Scan with strongly consistent reads (a rebuild's copy: see `replay`'s rule).
    pub consistent_read: bool,
    /// How many items may fail (into the dead-letter file) with the pass still a success; by
    /// default none.
    pub max_failed: FailureBudget,
}

/// How many of a pass's items may fail, each kept in its dead-letter file, with the step still a
/// success. By default none may: a step whose items failed is a failed step, its migration is
/// `failed`, and a rebuild does not become current. A migration that accepts losses says how many.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum FailureBudget {
    /// No item may fail.
    #[default]
    None,
    /// At most this many items.
    Items(u64),
    /// At most this share (0 to 1) of the items read.
    Fraction(f64),
}

impl FailureBudget {
    /// Whether `failed` of `read` items is within the budget.
    pub fn allows(self, failed: u64, read: u64) -> bool {
        match self {
            FailureBudget::None => failed == 0,
            FailureBudget::Items(n) => failed <= n,
            FailureBudget::Fraction(share) => failed as f64 <= share * read as f64,
        }
    }

    /// Whether any failure is accepted at all.
    pub fn accepts_any(self) -> bool {
        !matches!(self, FailureBudget::None | FailureBudget::Items(0)) && self != FailureBudget::Fraction(0.0)
    }
}

impl std::fmt::Display for FailureBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureBudget::None => f.write_str("none"),
            FailureBudget::Items(n) => write!(f, "at most {n} item(s)"),
            FailureBudget::Fraction(share) => write!(f, "at most {}% of the items read", share * 100.0),
        }
    }
}

impl PassOptions {
    /// The options' own mistakes, before anything is read.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(rate) = self.rate {
            rate.check()?;
        }
        if let FailureBudget::Fraction(share) = self.max_failed
            && !(0.0..=1.0).contains(&share)
        {
            return Err(format!("max_failed_fraction({share}) is not a share from 0 to 1"));
        }
        if self.max_failed.accepts_any() && self.dead_letter.is_none() {
            return Err(format!(
                "it accepts failed items ({}) but names no dead-letter file to keep them in; add .dead_letter(\"<file>.jsonl\") to the step",
                self.max_failed
            ));
        }
        Ok(())
    }
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            segments: None,
            page_size: None,
            writers: 32,
            rate: None,
            dead_letter: None,
            drop_unknown_attributes: false,
            version_attribute: None,
            dry_run: false,
            consistent_read: false,
            max_failed: FailureBudget::None,
        }
    }
}

/// The context a data step runs in: the environment's client and table names, and where its
/// checkpoints go.
#[derive(Debug, Clone)]
pub struct DataContext {
    /// The client the passes write through.
    passes_client: Client,
    names: TableNames,
    checkpoints: CheckpointStore,
    step: usize,
    passes: Arc<AtomicUsize>,
    cancel: watch::Receiver<bool>,
    progress: bool,
    /// Every pass of this context computes its writes without making them.
    dry_run: bool,
    /// What the passes of this context wrote, or in a dry run would have written.
    tally: Arc<std::sync::Mutex<DataReport>>,
    /// How its passes are shared with workers.
    role: Role,
    /// What `client()` hands the step: in a worker, a client that only reads, since the step's
    /// code outside its passes runs in the run itself.
    client: Client,
    /// In a rehearsal, where each pass keeps every failed item (see `rehearse::collect`).
    rehearsal: Option<crate::rehearse::Collector>,
}

/// How a run shares its passes' segments with worker processes (`cargo xtask worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// This process works every segment.
    #[default]
    Alone,
    /// Each pass is opened to workers in the ledger; this process works segments too unless
    /// `work` is false, and waits until every segment is done. `workers` is how many are
    /// expected (0 when not known), so that a pass has segments enough for all of them.
    Open {
        /// This process works segments too; false with `migrate --workers-only`, where it only
        /// takes over segments whose workers stop renewing their lease, and waits.
        work: bool,
        /// Workers expected, 0 when not known.
        workers: u32,
        /// A budget of write capacity units a second for each pass, split among the processes
        /// working it; none for no budget (`[<env>.workers] max_write_units`).
        max_write_units: Option<u32>,
    },
}

/// What a context does with its passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The run: works (or opens to workers) every pass.
    Run(Sharing),
    /// A worker of the run, joining the pass at this place (shared by about `participants`
    /// processes); the passes before it are done, the ones after are not open yet.
    Join { place: String, participants: u32, max_write_units: Option<u32> },
}

/// Where the ledger says which pass is open to workers (see `workers`).
pub(crate) const OPEN_PASS: &str = "workers#pass";

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
        DataContext {
            passes_client: client.clone(),
            client,
            names,
            checkpoints,
            step,
            passes: Arc::new(AtomicUsize::new(0)),
            cancel,
            progress,
            dry_run: false,
            tally: Arc::default(),
            role: Role::Run(Sharing::Alone),
            rehearsal: None,
        }
    }

    /// The same context with its passes shared as `role` says, each segment's lease lasting
    /// `lease`.
    pub(crate) fn shared(mut self, role: Role, lease: std::time::Duration) -> Self {
        let (wait, claim_fresh, participants, budget) = match &role {
            Role::Run(Sharing::Alone) => (true, true, 1, None),
            // Workers started elsewhere are not counted: say a few, for segments enough.
            Role::Run(Sharing::Open { work, workers, max_write_units }) => {
                (true, *work, (*workers).max(if *workers == 0 { 4 } else { 1 }) + u32::from(*work), *max_write_units)
            }
            Role::Join { participants, max_write_units, .. } => {
                self.client = crate::client::read_only(
                    &self.passes_client,
                    "a worker's data step, which writes only through its passes",
                );
                (false, true, *participants, *max_write_units)
            }
        };
        if let Some(mut leases) = self.checkpoints.leases() {
            leases.worker.lease = lease;
            self.checkpoints =
                self.checkpoints.with_leases(checkpoint::Leases { wait, claim_fresh, participants, budget, ..leases });
        }
        self.role = role;
        self
    }

    /// The same context in a rehearsal: every pass keeps every failed item in a file of the
    /// rehearsal's own and accepts them all, and the collector records what it did.
    pub(crate) fn rehearsing(mut self, collector: Option<crate::rehearse::Collector>) -> Self {
        self.rehearsal = collector;
        self
    }

    /// The same context, for a second run of an in-place step over its own output: passes in
    /// place compute their writes without making them, passes into other tables do not run,
    /// and nothing is checkpointed.
    pub(crate) fn idempotence_check(&self) -> Self {
        let mut ctx = self.clone();
        ctx.checkpoints = CheckpointStore::default();
        ctx.passes = Arc::new(AtomicUsize::new(0));
        ctx.dry_run = true;
        ctx.progress = false;
        ctx.tally = Arc::default();
        ctx
    }

    /// What this context's passes wrote (in a dry run: would have written) so far.
    pub(crate) fn tally(&self) -> DataReport {
        *self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one pass; each pass of a step gets the next place (`step i, pass j`), so a re-run that
    /// makes the same passes in the same order resumes each where it stopped.
    pub(crate) async fn run_pass(
        &self,
        source: String,
        target: String,
        mut options: PassOptions,
        map: Arc<MapFn>,
    ) -> Result<DataReport, DataError> {
        options.check().map_err(|problem| DataError::Options { table: source.clone(), problem })?;
        let pass = self.passes.fetch_add(1, Ordering::SeqCst);
        if self.dry_run {
            if source != target {
                return Ok(DataReport::default());
            }
            options.dry_run = true;
        }
        if let Some(collector) = self.rehearsal.as_ref().filter(|c| c.discovering()) {
            // `plan` learns which passes the step makes, and runs none of them.
            collector.begin((self.step, pass), &source, &target, &mut options, false);
            return Ok(DataReport::default());
        }
        let started = std::time::Instant::now();
        let rehearsed = self.rehearsal.as_ref().map(|collector| {
            (collector, collector.begin((self.step, pass), &source, &target, &mut options, self.dry_run))
        });
        let identity = checkpoint::PassIdentity { place: format!("step {}, pass {pass}", self.step), source, target };
        let run = || {
            let (identity, options, map) = (identity.clone(), options.clone(), map.clone());
            engine::run(
                &self.passes_client,
                identity,
                options,
                map,
                &self.checkpoints,
                self.cancel.clone(),
                self.progress,
            )
        };
        let report = match &self.role {
            Role::Run(Sharing::Alone) => run().await,
            Role::Run(Sharing::Open { .. }) => match self.checkpoints.open_to_workers(&identity, true).await {
                Ok(()) => {
                    let report = run().await;
                    // Closed whatever the pass came to; a run that cannot close it (its lock
                    // lost) fences its workers anyway.
                    let closed = self.checkpoints.open_to_workers(&identity, false).await;
                    report.and_then(|report| closed.map(|()| report))
                }
                Err(e) => Err(e),
            },
            // A worker joins the open pass; one before it is done, one after it is not open yet.
            Role::Join { place, .. } if *place == identity.place => run().await,
            Role::Join { place, .. } => match self.checkpoints.done_report(&identity).await? {
                Some(done) => return Ok(done),
                None => return Err(DataError::NotOpen { place: identity.place, open: place.clone() }),
            },
        };
        if let Some((collector, place)) = rehearsed {
            collector.end(place, &report, started.elapsed());
        }
        let report = report?;
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        *tally = *tally + report;
        Ok(report)
    }

    /// Copies a sample of `source` into `target` (see `engine::sample`): items read, time taken.
    pub(crate) async fn sample_pass(
        &self,
        source: String,
        target: String,
        options: PassOptions,
        map: Arc<MapFn>,
    ) -> Result<(u64, std::time::Duration), DataError> {
        options.check().map_err(|problem| DataError::Options { table: source.clone(), problem })?;
        let identity = checkpoint::PassIdentity { place: format!("step {}, sample", self.step), source, target };
        engine::sample(&self.passes_client, identity, options, map).await
    }

    /// Adds what was done outside `run_pass` (an export's files) to what the context did.
    #[cfg(feature = "export")]
    pub(crate) fn add_to_tally(&self, report: DataReport) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        *tally = *tally + report;
    }

    /// The migration's checkpoints, with this context's leases.
    #[cfg(feature = "export")]
    pub(crate) fn checkpoints(&self) -> &CheckpointStore {
        &self.checkpoints
    }

    /// Shows a progress bar on a terminal.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// The DynamoDB client of the environment. In a worker process (see `cargo xtask worker`)
    /// it only reads: a step's code outside its passes runs in the run itself, and a write
    /// there would be made by every worker.
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

/// The raw-item function of a typed transform: reads `Old` exactly (or fails naming the
/// attribute), and makes `f(old)` of it, or `none` where it returns `None`.
pub(crate) fn typed_map<Old, New, F>(f: F, none: Change) -> Arc<MapFn>
where
    Old: DeserializeOwned + Serialize + 'static,
    New: Serialize + 'static,
    F: Fn(Old) -> Option<New> + Send + Sync + 'static,
{
    let fields = typed::field_names::<Old>();
    Arc::new(move |item: Item| -> Result<Mapped, String> {
        let typed::Read { value, seen, not_held } = typed::read_exact::<Old>(&item)?;
        let change = match f(value) {
            Some(new) => Change::Put(to_item(&new).map_err(|e| format!("the new value is not an item: {e}"))?),
            None => none.clone(),
        };
        Ok(Mapped::typed(change, seen, not_held, &item, fields))
    })
}

/// The function of a copy: every item as it is.
pub(crate) fn copy_map() -> Arc<MapFn> {
    Arc::new(|item| Ok(Mapped::raw(Change::Put(item))))
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
    /// Cuts the table into this many parallel scan segments (at least 1) instead of the default:
    /// one per 256 MiB of the table, at least 8 and at most 256 (and at least 4 per process
    /// expected when the pass is shared with workers). A pass resumed from checkpoints keeps the
    /// count it started with.
    pub fn segments(mut self, segments: u32) -> Self {
        self.options.segments = Some(segments.max(1));
        self
    }
    /// Items per scan page (DynamoDB's `Limit`, at least 1) instead of 500; a page that reaches
    /// DynamoDB's 1 MB ends sooner. A segment records its checkpoint once per page.
    pub fn page_size(mut self, items: i32) -> Self {
        self.options.page_size = Some(items.max(1));
        self
    }
    /// The most writes in flight at once over all segments (at least 1) instead of 32: fewer
    /// while DynamoDB throttles.
    pub fn writers(mut self, writers: usize) -> Self {
        self.options.writers = writers.max(1);
        self
    }
    /// Limits how fast the pass writes; a limit that is not a positive number stops the pass
    /// before it reads anything.
    pub fn rate(mut self, rate: RateLimit) -> Self {
        self.options.rate = Some(rate);
        self
    }
    /// Into another table, lets a typed conversion drop the attributes its input type does not
    /// hold. Without it, such an attribute stops the pass, naming it: dropping data must be a
    /// visible line in the migration.
    pub fn drop_unknown_attributes(mut self) -> Self {
        self.options.drop_unknown_attributes = true;
        self
    }
    /// Sends items that fail to this JSON-lines file instead of stopping the step at the first:
    /// the pass goes on to its end, and then fails if any item failed, unless the step accepts
    /// that many ([`PassBuilder::max_failed_items`], [`PassBuilder::max_failed_fraction`]).
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.dead_letter = Some(path.into());
        self
    }
    /// Accepts up to `n` failed items (kept in the dead-letter file, which the step must name):
    /// the step succeeds with them, and its report says how many.
    pub fn max_failed_items(mut self, n: u64) -> Self {
        self.options.max_failed = FailureBudget::Items(n);
        self
    }
    /// Accepts failed items up to this share (0 to 1) of the items read, as
    /// [`PassBuilder::max_failed_items`] does a number.
    pub fn max_failed_fraction(mut self, share: f64) -> Self {
        self.options.max_failed = FailureBudget::Fraction(share);
        self
    }
    /// In place, makes each write conditional on this attribute and the attributes it changes,
    /// instead of on every attribute the function saw: for applications that change a version
    /// attribute on every write, and items too wide to compare whole.
    pub fn version_attribute(mut self, name: &str) -> Self {
        self.options.version_attribute = Some(name.to_owned());
        self
    }
    /// In place, a transform's `None` deletes the item instead of leaving it.
    pub fn none_deletes(mut self) -> Self {
        self.none_deletes = true;
        self
    }

    /// A typed transform: reads each item as `Old`, writes `f(old)`; `None` leaves the item (or
    /// deletes it, with [`PassBuilder::none_deletes`]). An item that `Old` cannot hold exactly
    /// (an attribute of another DynamoDB type, a number it would round, a set read as a list) is
    /// an error naming the item and attribute. In place only the attributes `f` changed are
    /// written; into another table the whole new item is, and an attribute `Old` does not hold
    /// stops the pass unless it says [`PassBuilder::drop_unknown_attributes`].
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
        T: DeserializeOwned + Serialize + 'static,
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let fields = typed::field_names::<T>();
        let map = move |item: Item| -> Result<Mapped, String> {
            let typed::Read { value, seen, not_held } = typed::read_exact::<T>(&item)?;
            let change = if f(&value) { Change::Delete } else { Change::Keep };
            Ok(Mapped::typed(change, seen, not_held, &item, fields))
        };
        self.run(Arc::new(map)).await
    }

    /// A function of raw items, for what types cannot express. In place, only the attributes
    /// it changed are written, on the condition that the item is still what it read.
    pub async fn raw<F>(self, f: F) -> Result<DataReport, DataError>
    where
        F: Fn(Item) -> Result<Change, String> + Send + Sync + 'static,
    {
        self.run(Arc::new(move |item| f(item).map(Mapped::raw))).await
    }

    /// Copies every item unchanged, exactly as stored.
    pub async fn copy(self) -> Result<DataReport, DataError> {
        self.run(copy_map()).await
    }

    async fn run(self, map: Arc<MapFn>) -> Result<DataReport, DataError> {
        self.ctx.run_pass(self.source, self.target, self.options, map).await
    }
}
