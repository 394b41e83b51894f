//! The catch-up of a table rebuild: every record of the old table's stream, replayed into the
//! new table through the rebuild's transform, with a checkpoint per shard in the ledger.
//!
//! A record is replayed as whole items: INSERT and MODIFY put the transform of the new image;
//! REMOVE deletes the key the old image had in the new table (the transform of the old image);
//! a MODIFY whose new image transforms to another key, or to nothing (`Change::Keep`/`Delete`),
//! deletes the old image's key too. A conversion's `not_held` attributes are refused as in the
//! copy, unless the rebuild says `drop_unknown_attributes`.
//!
//! # The rule
//!
//! After a catch-up, for every key, the new table holds the transform of the old table's latest
//! item (as of the moment the catch-up started: it reads each shard until it is closed, until an
//! empty page, or until a record written after that moment, so that an application that keeps
//! writing is not chased for ever), or nothing if it was deleted;
//! this holds for items created, changed or deleted while the copy ran, before or after the scan
//! passed them. The argument:
//!
//! 1. The stream is enabled (or found usable) and ACTIVE before the copy's scan starts, so every
//!    write to the old table after the scan started has a record in the stream.
//! 2. The copy writes, for each key the scan meets, the transform of the item as the scan read it
//!    (a strongly consistent scan), and nothing else writes to the new table before the replay.
//! 3. The replay starts at `TRIM_HORIZON`: every record the stream holds, which includes every
//!    record since before the copy began. Shards are read parent before child, and a key's
//!    records are in one shard at a time, in the order of its writes; within a page, writes are
//!    collapsed per key of the new table (the last one wins) and pages are applied one after
//!    the other. Each write is a whole item (put) or a delete, so applying a key's records in
//!    order leaves the new table holding what the last one says, whatever it held before.
//! 4. A key of the old table with a record since the scan began therefore ends as its last
//!    record says: the transform of its latest image, or absent after a REMOVE. A key without
//!    such a record did not change since before the scan, so the copy wrote the transform of its
//!    latest item, or it had none and the copy wrote nothing.
//! 5. Replaying a prefix of a shard's records again (after a crash, between the last checkpoint
//!    and the crash) replays them in the same order, followed by the rest: by 3 the end state is
//!    the same. So the replay is idempotent and resumes from its shard checkpoints.
//!
//! It assumes that the transform maps distinct old keys to distinct new keys, and that the new
//! table has no writer but the rebuild until cut-over (the application moves to it by deploying
//! code that resolves the new physical name, after the migration). Records live 24 hours: a
//! replay that may have lost some to expiry is refused (see [`ReplayError::RecordsExpired`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::SdkFailure;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use aws_sdk_dynamodbstreams::Client as StreamsClient;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, OperationType, Record, Shard, ShardIteratorType};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;

use super::concurrency::Concurrency;
use super::engine::{into_other_table, panic_message, without_retries};
use super::fidelity::{key_of, key_text};
use super::records::{MendRecords, UnreadableRecord};
use super::writer::{BATCH, Writer, backoff};
use super::{Change, Item, MapFn};
use crate::ledger::Ledger;

/// How long stream records live.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A replay refuses to go on when its oldest record not yet applied may be older than this:
/// records near the end of their 24 hours may be trimmed while the replay reads.
pub const RESUME_LIMIT: Duration = Duration::from_secs(20 * 3600);
/// Consecutive empty pages after which an open shard is taken as read to its end.
const EMPTY_PAGES: u32 = 1;
/// How coarse a record's `ApproximateCreationDateTime` may be.
const CREATION_TIME_GRANULE_MS: u64 = 60_000;
/// Records asked for in one `GetRecords`.
const PAGE_RECORDS: i32 = 1000;
/// Attempts at one stream call after throttling or a transient failure.
const MAX_ATTEMPTS: u32 = 10;

/// Why a replay stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A DynamoDB Streams call (or the `DescribeTable` of a table's keys) failed in a way that is
    /// not retried, or went on failing.
    #[error("stream of {table}: {action}: {detail}")]
    Aws {
        /// The old table whose stream is read, or the table described.
        table: String,
        /// The call (`GetRecords (shard <id>)`, `DescribeTable <table>`).
        action: String,
        /// What AWS said.
        detail: String,
    },
    /// A record could not be replayed (its image unreadable, the transform failing on it, or
    /// DynamoDB refusing the write) and the rebuild keeps no dead-letter file.
    #[error("replay of {table} into {target}: item {key} ({at}): {error}")]
    Item {
        /// The old table.
        table: String,
        /// The new table.
        target: String,
        /// The item's key: the old table's, or the new table's for a write DynamoDB refused.
        key: String,
        /// Where: the record's sequence number, shard and stream, or the shard it was written
        /// from.
        at: String,
        /// Why it failed.
        error: String,
    },
    /// Records not yet applied may be older than [`RESUME_LIMIT`], or DynamoDB says they are
    /// trimmed: some may have expired (stream records live 24 hours), so the new table cannot be
    /// proved current and the old one is not deleted. The rebuild must start over.
    #[error(
        "replay of {table} into {target}: records not yet applied may be {age_h} h old, and stream records are kept for 24 h, so some may be gone; the new table cannot be proved current, and the old one is not deleted. Rebuild again from the start: delete {target}, then `cargo xtask recover --env <environment> --version {version} --rerun --restart-passes` (it forgets the copy's and the replay's checkpoints) and `cargo xtask migrate --env <environment>`; once migration {version} has succeeded, run `cargo xtask sync --env <environment>` at least daily until cut-over"
    )]
    RecordsExpired {
        /// The old table.
        table: String,
        /// The new table.
        target: String,
        /// The migration whose rebuild this is.
        version: u32,
        /// How old the oldest record not yet applied may be, in hours.
        age_h: u64,
    },
    /// The old table's stream is not the one the rebuild started from (a stream disabled and
    /// enabled again has a new ARN), so the records in between are lost; the rebuild must start
    /// over.
    #[error(
        "replay of {table}: the table's stream is now {now}, not the {then} the rebuild started from, so records in between are lost; rebuild again from the start: delete {target}, then `cargo xtask recover --env <environment> --version {version} --rerun --restart-passes`"
    )]
    StreamChanged {
        /// The old table.
        table: String,
        /// The new table.
        target: String,
        /// The migration whose rebuild this is.
        version: u32,
        /// The ARN of the stream the rebuild started from, as its replay header records it.
        then: String,
        /// The ARN of the table's stream now.
        now: String,
    },
    /// A stream record that neither DynamoDB's format nor this tool's reader knows; this
    /// rebuild's replay stops before it (other rebuilds go on).
    #[error(
        "replay of {table} into {target}: stream {stream}, shard {shard}: {record}. The replay of this rebuild stops before that record (what came before it is applied); other rebuilds go on. It is a record neither DynamoDB's format nor this tool's reader knows: report it with this message"
    )]
    UnreadableRecord {
        /// The old table.
        table: String,
        /// The new table.
        target: String,
        /// The stream's ARN.
        stream: String,
        /// The shard's id.
        shard: String,
        /// The record (sequence number, keys) and the attribute in it that holds no DynamoDB
        /// attribute value.
        record: String,
    },
    /// Ctrl-C stopped the replay at a shard checkpoint; the next run resumes from there.
    #[error("replay of {table}: interrupted at a shard checkpoint; run again to resume")]
    Interrupted {
        /// The old table.
        table: String,
    },
    /// Reading or saving the replay's items in the ledger failed, or the run lost the migration
    /// lock that fences them.
    #[error("replay checkpoints: {0}")]
    Checkpoint(Box<crate::error::Error>),
    /// The rebuild's dead-letter file could not be opened for appending, or written.
    #[error("dead-letter file {path}: {error}")]
    DeadLetter {
        /// The file.
        path: String,
        /// The I/O error.
        error: String,
    },
    /// Writing the replayed items into the new table failed.
    #[error("replay of {table} into {target}: {cause}")]
    Write {
        /// The old table.
        table: String,
        /// The new table.
        target: String,
        /// The batch writer's error.
        cause: Box<super::DataError>,
    },
}

/// Where a rebuild stands, as its replay header in the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The old table's items are being copied into the new version (or the copy was
    /// interrupted, and resumes from its checkpoints).
    Copying,
    /// Copied; the old table's stream records since before the copy are being replayed.
    CatchingUp,
    /// Caught up and checked: the new version is current, and the old table stays until a
    /// `delete_old_table` step deletes it; `sync` replays what is written to it meanwhile.
    WaitingForCutOver,
    /// The last replay and check before `delete_old_table` are done: the old version may be
    /// deleted, and nothing more is replayed from it.
    CutOver,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching_up",
            Phase::WaitingForCutOver => "waiting_for_cut_over",
            Phase::CutOver => "cut_over",
        }
    }

    fn parse(text: &str) -> Option<Phase> {
        [Phase::Copying, Phase::CatchingUp, Phase::WaitingForCutOver, Phase::CutOver]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// A rebuild's replay, as the ledger holds it (`replay#<version>#step<step>#stream`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayHeader {
    /// The migration whose rebuild this is.
    pub version: u32,
    /// The rebuild's step in its migration, from 0.
    pub step: u32,
    /// The old table (physical name), whose stream is replayed.
    pub source: String,
    /// The new version's table (physical name).
    pub target: String,
    /// The ARN of the old table's stream the rebuild started from; another stream there later
    /// is [`ReplayError::StreamChanged`].
    pub stream_arn: String,
    /// Where the rebuild stands.
    pub phase: Phase,
    /// When the copy started (milliseconds since the epoch); the stream was usable before it.
    pub copy_started_ms: u64,
    /// When the last completed catch-up started: every record older than that is applied.
    pub synced_from_ms: Option<u64>,
    /// The creation time of the newest record replayed: the old table's last known write.
    pub last_write_ms: Option<u64>,
    /// Records replayed over all runs.
    pub records: u64,
    /// Items that failed the transform and were left out of the new table (kept in
    /// `dead_letter`), as the copy and the replays counted them; only a rebuild that accepts
    /// failed items gets past one.
    pub failed: u64,
    /// The rebuild's dead-letter file, if it has one.
    pub dead_letter: Option<String>,
    /// When the last convergence check ran (milliseconds since the epoch).
    pub checked_at_ms: Option<u64>,
    /// What that check found, as one line for people.
    pub check: Option<String>,
}

/// Where one shard stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ShardState {
    /// The sequence number of the last record applied.
    after: Option<String>,
    /// Closed and read to its end.
    done: bool,
    /// Every record of the shard older than this is applied (milliseconds since the epoch).
    applied_until_ms: u64,
}

/// The ledger items of a rebuild's replay, fenced by the migration lock (a replay also runs
/// after its migration succeeded, from `sync` and `delete_old_table`).
#[derive(Debug, Clone)]
pub struct ReplayStore {
    ledger: Ledger,
    version: u32,
    step: u32,
    /// Where this rebuild's items are: `replay#<version>#<step>#` (see [`ReplayStore::open`]).
    items: String,
}

/// The prefix of every replay item of migration `version`, whatever its step.
pub(crate) fn prefix(version: u32) -> String {
    format!("replay#{version:010}#")
}

/// The prefix of the replay items of the rebuild that is step `step` (from 0) of migration
/// `version`: a migration may rebuild several tables, each with a stream and shards of its own.
fn step_prefix(version: u32, step: u32) -> String {
    format!("{}step{step:03}#", prefix(version))
}

fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

impl ReplayStore {
    /// The replay items of the rebuild that is step `step` (from 0) of migration `version`.
    ///
    /// Ledgers written before rebuilds were kept per step hold one rebuild per migration under
    /// `replay#<version>#`; such a header is still found, when it is this rebuild's (its target
    /// is `target`), so that a rebuild waiting for cut-over under an older version of this tool
    /// is synced and cut over as before.
    pub async fn open(ledger: Ledger, version: u32, step: u32, target: &str) -> Result<Self, ReplayError> {
        let store = ReplayStore { ledger, version, step, items: step_prefix(version, step) };
        if store.header().await?.is_some() {
            return Ok(store);
        }
        let legacy = ReplayStore { items: prefix(store.version), ..store.clone() };
        match legacy.header().await? {
            Some(header) if header.target == target => Ok(legacy),
            _ => Ok(store),
        }
    }

    /// The replay header of the rebuild, if it went through the online path.
    pub async fn header(&self) -> Result<Option<ReplayHeader>, ReplayError> {
        let id = format!("{}stream", self.items);
        let Some(item) = self.ledger.checkpoint(&id).await.map_err(|e| ReplayError::Checkpoint(Box::new(e)))? else {
            return Ok(None);
        };
        Ok(Some(ReplayHeader {
            version: self.version,
            step: self.step,
            source: text(&item, "source").unwrap_or_default(),
            target: text(&item, "target").unwrap_or_default(),
            stream_arn: text(&item, "stream_arn").unwrap_or_default(),
            phase: text(&item, "phase").and_then(|p| Phase::parse(&p)).unwrap_or(Phase::Copying),
            copy_started_ms: number(&item, "copy_started_ms").unwrap_or(0),
            synced_from_ms: number(&item, "synced_from_ms"),
            last_write_ms: number(&item, "last_write_ms"),
            records: number(&item, "records").unwrap_or(0),
            failed: number(&item, "failed").unwrap_or(0),
            dead_letter: text(&item, "dead_letter"),
            checked_at_ms: number(&item, "checked_at_ms"),
            check: text(&item, "check"),
        }))
    }

    /// Writes `header` into the ledger, fenced by the migration lock; a transient failure is
    /// tried again (up to 8 times), a lost lock is not.
    pub async fn save_header(&self, header: &ReplayHeader) -> Result<(), ReplayError> {
        let mut item: Item = [
            ("id".to_owned(), AttributeValue::S(format!("{}stream", self.items))),
            ("source".to_owned(), AttributeValue::S(header.source.clone())),
            ("target".to_owned(), AttributeValue::S(header.target.clone())),
            ("stream_arn".to_owned(), AttributeValue::S(header.stream_arn.clone())),
            ("phase".to_owned(), AttributeValue::S(header.phase.as_str().to_owned())),
            ("copy_started_ms".to_owned(), AttributeValue::N(header.copy_started_ms.to_string())),
            ("records".to_owned(), AttributeValue::N(header.records.to_string())),
            ("failed".to_owned(), AttributeValue::N(header.failed.to_string())),
        ]
        .into();
        if let Some(path) = &header.dead_letter {
            item.insert("dead_letter".to_owned(), AttributeValue::S(path.clone()));
        }
        if let Some(ms) = header.checked_at_ms {
            item.insert("checked_at_ms".to_owned(), AttributeValue::N(ms.to_string()));
        }
        if let Some(check) = &header.check {
            item.insert("check".to_owned(), AttributeValue::S(check.clone()));
        }
        if let Some(ms) = header.synced_from_ms {
            item.insert("synced_from_ms".to_owned(), AttributeValue::N(ms.to_string()));
        }
        if let Some(ms) = header.last_write_ms {
            item.insert("last_write_ms".to_owned(), AttributeValue::N(ms.to_string()));
        }
        self.save(item).await
    }

    async fn shard(&self, shard: &str) -> Result<Option<ShardState>, ReplayError> {
        let id = format!("{}shard#{shard}", self.items);
        let item = self.ledger.checkpoint(&id).await.map_err(|e| ReplayError::Checkpoint(Box::new(e)))?;
        Ok(item.map(|item| ShardState {
            after: text(&item, "after"),
            done: matches!(item.get("done"), Some(AttributeValue::Bool(true))),
            applied_until_ms: number(&item, "applied_until_ms").unwrap_or(0),
        }))
    }

    async fn save_shard(&self, shard: &str, state: &ShardState) -> Result<(), ReplayError> {
        let mut item: Item = [
            ("id".to_owned(), AttributeValue::S(format!("{}shard#{shard}", self.items))),
            ("done".to_owned(), AttributeValue::Bool(state.done)),
            ("applied_until_ms".to_owned(), AttributeValue::N(state.applied_until_ms.to_string())),
        ]
        .into();
        if let Some(after) = &state.after {
            item.insert("after".to_owned(), AttributeValue::S(after.clone()));
        }
        self.save(item).await
    }

    /// A JSON value the export path keeps under `name` among this rebuild's items.
    #[cfg(feature = "export")]
    async fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ReplayError> {
        let id = format!("{}{name}", self.items);
        let item = self.ledger.checkpoint(&id).await.map_err(|e| ReplayError::Checkpoint(Box::new(e)))?;
        let Some(text) = item.as_ref().and_then(|item| text(item, "state")) else { return Ok(None) };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            let reason = format!("ledger item {id} is not what this version writes ({e})");
            ReplayError::Checkpoint(Box::new(crate::error::Error::Rebuild { table: self.items.clone(), reason }))
        })
    }

    #[cfg(feature = "export")]
    async fn save_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ReplayError> {
        let item: Item = [
            ("id".to_owned(), AttributeValue::S(format!("{}{name}", self.items))),
            ("state".to_owned(), AttributeValue::S(serde_json::to_string(value).expect("a state serialises"))),
        ]
        .into();
        self.save(item).await
    }

    /// Where the rebuild's export path stands, if it took it.
    #[cfg(feature = "export")]
    pub(crate) async fn export_state(
        &self,
    ) -> Result<Option<crate::data::rebuild::export::path::ExportState>, ReplayError> {
        self.json("export").await
    }

    /// Saves where the rebuild's export path stands.
    #[cfg(feature = "export")]
    pub(crate) async fn save_export_state(
        &self,
        state: &crate::data::rebuild::export::path::ExportState,
    ) -> Result<(), ReplayError> {
        self.save_json("export", state).await
    }

    /// The export path's result for data file `index`, once it is transformed.
    #[cfg(feature = "export")]
    pub(crate) async fn export_file(
        &self,
        index: usize,
    ) -> Result<Option<crate::data::rebuild::export::path::FileDone>, ReplayError> {
        // A file to be done again is kept as `null` (see `forget_export_file`).
        Ok(self.json::<Option<_>>(&format!("export-file#{index:06}")).await?.flatten())
    }

    /// Marks data file `index` as not transformed, so that the next run transforms it again.
    #[cfg(feature = "export")]
    pub(crate) async fn forget_export_file(&self, index: usize) -> Result<(), ReplayError> {
        self.save_json(&format!("export-file#{index:06}"), &None::<()>).await
    }

    /// Saves the export path's result for data file `index`.
    #[cfg(feature = "export")]
    pub(crate) async fn save_export_file(
        &self,
        index: usize,
        done: &crate::data::rebuild::export::path::FileDone,
    ) -> Result<(), ReplayError> {
        self.save_json(&format!("export-file#{index:06}"), done).await
    }

    /// Saves one item; a transient failure is tried again, a lost lock is not.
    async fn save(&self, item: Item) -> Result<(), ReplayError> {
        let mut attempt = 0;
        loop {
            match self.ledger.save_replay(self.version, item.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_lock_lost() => return Err(ReplayError::Checkpoint(Box::new(e))),
                Err(e) if attempt < 8 => {
                    attempt += 1;
                    tracing::warn!("saving a replay checkpoint failed, trying again: {e:#}");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(ReplayError::Checkpoint(Box::new(e))),
            }
        }
    }
}

/// What one catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Stream records read and applied.
    pub records: u64,
    /// Items put into the new table (a page's records are collapsed per key, the last one
    /// winning, so puts and deletes may be fewer than records).
    pub puts: u64,
    /// Keys deleted from the new table.
    pub deletes: u64,
    /// Records whose new image the transform failed on, kept in the rebuild's dead-letter file
    /// (only a rebuild that accepts failed items goes on past one).
    pub failed: u64,
    /// Shards of the stream gone through, those already read to their end included.
    pub shards: u64,
    /// How long it took, in milliseconds.
    pub millis: u128,
}

/// A rebuild's replay: the stream of `source` into `target` through `map`.
#[derive(Clone)]
pub(crate) struct Replay {
    pub dynamo: Client,
    pub streams: StreamsClient,
    pub source: String,
    pub source_keys: Vec<String>,
    pub target: String,
    pub target_keys: Vec<String>,
    pub stream_arn: String,
    pub map: Arc<MapFn>,
    /// The rebuild copies items unchanged into a table with the same key attributes: a record's
    /// keys are then the new table's key, without an old image.
    pub keys_carry_over: bool,
    pub drop_unknown_attributes: bool,
    pub store: ReplayStore,
    pub cancel: watch::Receiver<bool>,
    pub writers: usize,
    pub progress: bool,
    /// Where records whose new image the transform fails on go, when the rebuild accepts failed
    /// items: the old key is then deleted from the new table, as the copy leaves such an item out.
    pub dead_letters: Option<Arc<super::dead_letter::DeadLetters>>,
    /// The stream is DynamoDB Local's, whose records' creation times are rounded to the minute.
    pub coarse_times: bool,
    /// The time against which records are judged too old to be still in the stream (`now_ms`;
    /// a test's clock runs ahead).
    pub now: fn() -> u64,
}

/// One write to the old table, as a replay applies it: the item's keys, its image before the
/// write (when known) and after it (none for a delete).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Write {
    pub keys: Item,
    pub old: Option<Item>,
    pub new: Option<Item>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// One item of a stream record in the DynamoDB client's types; a type this SDK does not know is
/// an error, never a value changed in silence.
fn from_stream(item: &HashMap<String, StreamValue>) -> Result<Item, String> {
    item.iter().map(|(k, v)| Ok((k.clone(), value(v).map_err(|e| format!("attribute {k}: {e}"))?))).collect()
}

fn value(v: &StreamValue) -> Result<AttributeValue, String> {
    Ok(match v {
        StreamValue::S(s) => AttributeValue::S(s.clone()),
        StreamValue::N(n) => AttributeValue::N(n.clone()),
        StreamValue::B(b) => AttributeValue::B(Blob::new(b.as_ref().to_vec())),
        StreamValue::Ss(s) => AttributeValue::Ss(s.clone()),
        StreamValue::Ns(n) => AttributeValue::Ns(n.clone()),
        StreamValue::Bs(b) => AttributeValue::Bs(b.iter().map(|b| Blob::new(b.as_ref().to_vec())).collect()),
        StreamValue::M(m) => AttributeValue::M(from_stream(m)?),
        StreamValue::L(l) => AttributeValue::L(l.iter().map(value).collect::<Result<_, _>>()?),
        StreamValue::Null(n) => AttributeValue::Null(*n),
        StreamValue::Bool(b) => AttributeValue::Bool(*b),
        other => return Err(format!("a value of a type this version does not know: {other:?}")),
    })
}

impl Replay {
    /// Replays every record not yet applied, shard by shard, parent before child, until every
    /// shard has been read to its end; saves the header with what it learnt.
    pub(crate) async fn catch_up(&self, header: &mut ReplayHeader) -> Result<ReplayReport, ReplayError> {
        let started = std::time::Instant::now();
        let started_ms = now_ms();
        let mut report = ReplayReport::default();
        let mut states: BTreeMap<String, ShardState> = BTreeMap::new();
        let mut handled: std::collections::BTreeSet<String> = Default::default();
        let mut checked_expiry = false;
        let progress = self.progress_bar();
        loop {
            let shards = self.shards().await?;
            for shard in &shards {
                let id = shard.shard_id().unwrap_or_default().to_owned();
                if let std::collections::btree_map::Entry::Vacant(entry) = states.entry(id) {
                    let state = self.store.shard(entry.key()).await?.unwrap_or_default();
                    entry.insert(state);
                }
            }
            if !checked_expiry {
                self.check_expiry(header, &shards, &states)?;
                checked_expiry = true;
            }
            let ids: std::collections::BTreeSet<&str> = shards.iter().filter_map(|s| s.shard_id()).collect();
            let mut round = 0;
            for shard in parents_first(&shards) {
                let id = shard.shard_id().unwrap_or_default().to_owned();
                let parent_pending =
                    shard.parent_shard_id().is_some_and(|p| ids.contains(p) && states.get(p).is_some_and(|s| !s.done));
                if parent_pending || handled.contains(&id) {
                    continue;
                }
                let state = states.get_mut(&id).expect("loaded above");
                if !state.done {
                    self.read_shard(&id, state, header, started_ms, &mut report, &progress).await?;
                }
                handled.insert(id);
                round += 1;
            }
            // New child shards appeared while the parents were read: read them too.
            if round == 0 {
                break;
            }
        }
        progress.finish_and_clear();
        report.shards = handled.len() as u64;
        report.millis = started.elapsed().as_millis();
        header.synced_from_ms = Some(started_ms);
        header.records += report.records;
        header.failed += report.failed;
        self.store.save_header(header).await?;
        Ok(report)
    }

    /// One page of a shard's records, read through `mend` (see `records`).
    async fn get_records(
        &self,
        iterator: &str,
        mend: MendRecords,
    ) -> Result<
        aws_sdk_dynamodbstreams::operation::get_records::GetRecordsOutput,
        aws_sdk_dynamodbstreams::error::SdkError<aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError>,
    > {
        self.streams
            .get_records()
            .shard_iterator(iterator)
            .limit(PAGE_RECORDS)
            .customize()
            .interceptor(mend)
            .send()
            .await
    }

    /// Refuses a replay whose oldest record not yet applied may have expired.
    fn check_expiry(
        &self,
        header: &ReplayHeader,
        shards: &[Shard],
        states: &BTreeMap<String, ShardState>,
    ) -> Result<(), ReplayError> {
        let fallback = header.synced_from_ms.unwrap_or(header.copy_started_ms);
        let oldest = shards
            .iter()
            .filter_map(|s| states.get(s.shard_id().unwrap_or_default()))
            .filter(|s| !s.done)
            .map(|s| if s.applied_until_ms > 0 { s.applied_until_ms.max(fallback) } else { fallback })
            .min()
            .unwrap_or(fallback);
        let age = Duration::from_millis((self.now)().saturating_sub(oldest));
        if age > RESUME_LIMIT {
            return Err(ReplayError::RecordsExpired {
                table: self.source.clone(),
                target: self.target.clone(),
                version: self.store.version,
                age_h: age.as_secs() / 3600,
            });
        }
        Ok(())
    }

    fn progress_bar(&self) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        bar
    }

    /// Every shard of the stream (DescribeStream pages by `LastEvaluatedShardId`).
    async fn shards(&self) -> Result<Vec<Shard>, ReplayError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .retrying("DescribeStream", || {
                    self.streams
                        .describe_stream()
                        .stream_arn(&self.stream_arn)
                        .set_exclusive_start_shard_id(start.clone())
                        .send()
                })
                .await?;
            let Some(description) = out.stream_description else { break };
            shards.extend(description.shards.unwrap_or_default());
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        Ok(shards)
    }

    /// Reads one shard from its checkpoint to its end (a closed shard) or to the present (an
    /// open one), applying each page and saving the checkpoint after it.
    async fn read_shard(
        &self,
        shard: &str,
        state: &mut ShardState,
        header: &mut ReplayHeader,
        started_ms: u64,
        report: &mut ReplayReport,
        progress: &indicatif::ProgressBar,
    ) -> Result<(), ReplayError> {
        let mut iterator = Some(self.iterator(shard, state).await?);
        let (mut empty, mut attempts) = (0, 0);
        while let Some(current) = iterator.take() {
            if *self.cancel.borrow() {
                return Err(ReplayError::Interrupted { table: self.source.clone() });
            }
            let read_at = now_ms();
            let out = match self.get_records(&current, MendRecords::default()).await {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_expired_iterator_exception()) => {
                    iterator = Some(self.iterator(shard, state).await?);
                    continue;
                }
                Err(e) if e.as_service_error().is_some_and(|e| e.is_trimmed_data_access_exception()) => {
                    return Err(self.expired(header));
                }
                Err(e) if super::writer::is_retryable(&e) && attempts < MAX_ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(backoff(attempts)).await;
                    iterator = Some(current);
                    continue;
                }
                // A page the SDK could not read: read once more, checking every record, to name
                // the one that cannot be read.
                Err(e) => match self.get_records(&current, MendRecords::diagnose()).await {
                    Ok(out) => out,
                    Err(again) => {
                        return Err(match UnreadableRecord::in_error(&again) {
                            Some(record) => ReplayError::UnreadableRecord {
                                table: self.source.clone(),
                                target: self.target.clone(),
                                stream: self.stream_arn.clone(),
                                shard: shard.to_owned(),
                                record: record.to_string(),
                            },
                            None => ReplayError::Aws {
                                table: self.source.clone(),
                                action: format!("GetRecords (shard {shard})"),
                                detail: SdkFailure::of(&e).to_string(),
                            },
                        });
                    }
                },
            };
            attempts = 0;
            let records = out.records.unwrap_or_default();
            let next = out.next_shard_iterator;
            let mut newest = None;
            if !records.is_empty() {
                empty = 0;
                // A record's creation time is approximate (rounded down to the second on AWS,
                // coarser on DynamoDB Local), so the last write is put as late as it can have
                // been: a granule after the record's time, but no later than the read that
                // returned it. The quiet window is then never taken for longer than it was.
                newest = records
                    .iter()
                    .filter_map(|r| r.dynamodb.as_ref()?.approximate_creation_date_time)
                    .filter_map(|t| t.to_millis().ok())
                    .max()
                    .map(|ms| ms.max(0) as u64);
                let (puts, deletes, failed) = self.apply(shard, &records).await?;
                report.records += records.len() as u64;
                report.puts += puts;
                report.deletes += deletes;
                report.failed += failed;
                state.after = records.last().and_then(|r| r.dynamodb.as_ref()?.sequence_number.clone());
                if let Some(newest) = newest {
                    state.applied_until_ms = state.applied_until_ms.max(newest);
                    let latest = (newest + CREATION_TIME_GRANULE_MS).min(now_ms());
                    header.last_write_ms = Some(header.last_write_ms.unwrap_or(0).max(latest));
                }
                let lag = newest.map_or(0, |ms| now_ms().saturating_sub(ms) / 1000);
                progress.set_message(format!(
                    "catching up {} -> {}: {} records replayed, newest applied record {lag} s old",
                    self.source, self.target, report.records
                ));
                progress.tick();
            } else {
                empty += 1;
            }
            match next {
                None => {
                    state.done = true;
                    state.applied_until_ms = state.applied_until_ms.max(read_at);
                    self.store.save_shard(shard, state).await?;
                }
                Some(_) if records.is_empty() && empty >= EMPTY_PAGES => {
                    // An open shard read to the present: every record written before this
                    // read is applied.
                    state.applied_until_ms = state.applied_until_ms.max(read_at);
                    self.store.save_shard(shard, state).await?;
                }
                Some(_) if newest.is_some_and(|ms| ms >= started_ms) => {
                    // Caught up with the moment this catch-up started: an application that
                    // keeps writing would otherwise be chased for ever. What it writes from
                    // here on is for the next replay (`sync`, `delete_old_table`).
                    self.store.save_shard(shard, state).await?;
                }
                Some(_) if self.coarse_times && records.len() < PAGE_RECORDS as usize => {
                    // DynamoDB Local stamps records to the minute, so the rule above would chase
                    // a writer until the minute turns. Its page shorter than asked for is every
                    // record there was when it was read, which was after this catch-up started.
                    self.store.save_shard(shard, state).await?;
                }
                Some(next) => {
                    if !records.is_empty() {
                        self.store.save_shard(shard, state).await?;
                    }
                    iterator = Some(next);
                }
            }
        }
        Ok(())
    }

    fn expired(&self, header: &ReplayHeader) -> ReplayError {
        let since = header.synced_from_ms.unwrap_or(header.copy_started_ms);
        ReplayError::RecordsExpired {
            table: self.source.clone(),
            target: self.target.clone(),
            version: self.store.version,
            age_h: (self.now)().saturating_sub(since) / 3_600_000,
        }
    }

    /// An iterator just after the shard's checkpoint, or at its oldest record.
    async fn iterator(&self, shard: &str, state: &ShardState) -> Result<String, ReplayError> {
        let kind =
            if state.after.is_some() { ShardIteratorType::AfterSequenceNumber } else { ShardIteratorType::TrimHorizon };
        let sent = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(state.after.clone())
            .send()
            .await;
        match sent {
            Ok(out) => Ok(out.shard_iterator.unwrap_or_default()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_trimmed_data_access_exception()) => {
                Err(ReplayError::RecordsExpired {
                    table: self.source.clone(),
                    target: self.target.clone(),
                    version: self.store.version,
                    age_h: RETENTION.as_secs() / 3600,
                })
            }
            Err(e) => Err(ReplayError::Aws {
                table: self.source.clone(),
                action: format!("GetShardIterator (shard {shard})"),
                detail: SdkFailure::of(&e).to_string(),
            }),
        }
    }

    /// A stream call, retried on throttling and transient failures.
    async fn retrying<T, E, R, F, Fut>(&self, action: &str, call: F) -> Result<T, ReplayError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, aws_sdk_dynamodbstreams::error::SdkError<E, R>>>,
        E: std::error::Error + aws_sdk_dynamodbstreams::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(out) => return Ok(out),
                Err(e) if super::writer::is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    return Err(ReplayError::Aws {
                        table: self.source.clone(),
                        action: action.to_owned(),
                        detail: SdkFailure::of(&e).to_string(),
                    });
                }
            }
        }
    }

    /// The transform of one image, a panic in it caught.
    fn transform(&self, image: Item) -> Result<super::Mapped, String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.map)(image)))
            .unwrap_or_else(|panic| Err(format!("the transform panicked: {}", panic_message(panic.as_ref()))))
    }

    /// What the new table holds for `image`: the transform's item, checked as the new table's
    /// (`None` when the transform keeps it out).
    fn put_of(&self, image: Item) -> Result<Option<Item>, String> {
        let change = self
            .transform(image)
            .and_then(|m| into_other_table(m, &self.target, &self.target_keys, self.drop_unknown_attributes))?;
        Ok(match change {
            Change::Put(item) => Some(item),
            Change::Keep | Change::Delete => None,
        })
    }

    /// The key the item's `old` image had in the new table, when its `new` image (none: it was
    /// deleted) does not put it at that key again: the key a delete must remove.
    #[cfg(feature = "export")]
    pub(crate) fn stale_key(&self, old: Item, new: Option<Item>) -> Option<Item> {
        let old_key = self.target_key(old)?;
        let new_key = new.and_then(|new| self.put_of(new).ok().flatten()).map(|item| key_of(&item, &self.target_keys));
        (new_key.as_ref() != Some(&old_key)).then_some(old_key)
    }

    /// The key an image had in the new table, if the copy or an earlier record put it there.
    fn target_key(&self, image: Item) -> Option<Item> {
        match self.transform(image).ok()?.change {
            Change::Put(new) => Some(key_of(&new, &self.target_keys)),
            Change::Keep | Change::Delete => None,
        }
    }

    /// Applies one page of a shard's records (see [`Replay::apply_writes`]).
    async fn apply(&self, shard: &str, records: &[Record]) -> Result<(u64, u64, u64), ReplayError> {
        let at = |sequence: Option<&str>| {
            format!(
                "record {} of shard {shard}, stream {}",
                sequence.unwrap_or("(without a sequence number)"),
                self.stream_arn
            )
        };
        let mut writes = Vec::with_capacity(records.len());
        for record in records {
            let Some(stream) = &record.dynamodb else { continue };
            let keys = stream.keys.as_ref().map(from_stream).transpose().unwrap_or_default().unwrap_or_default();
            let image = |image: &Option<HashMap<String, StreamValue>>| {
                image.as_ref().map(from_stream).transpose().map_err(|error| ReplayError::Item {
                    table: self.source.clone(),
                    target: self.target.clone(),
                    key: key_text(&keys, &self.source_keys),
                    at: at(stream.sequence_number.as_deref()),
                    error,
                })
            };
            let old = image(&stream.old_image)?;
            let new = match record.event_name {
                Some(OperationType::Remove) => None,
                _ => image(&stream.new_image)?,
            };
            writes.push(Write { keys, old, new });
        }
        let sequences: Vec<Option<&str>> =
            records.iter().filter_map(|r| r.dynamodb.as_ref()).map(|s| s.sequence_number.as_deref()).collect();
        self.apply_writes(writes, |i| at(sequences[i]), &format!("shard {shard}, stream {}", self.stream_arn)).await
    }

    /// Applies writes to the old table, in their order: collapsed to the last write per key of
    /// the new table, then written in batches that never hold one key twice. `at(i)` names the
    /// `i`th write for an error, `from` where they all come from. Returns the puts, deletes and
    /// items failed (kept in the dead-letter file).
    pub(crate) async fn apply_writes(
        &self,
        writes: Vec<Write>,
        at: impl Fn(usize) -> String,
        from: &str,
    ) -> Result<(u64, u64, u64), ReplayError> {
        self.apply_writes_within(writes, at, from, &Arc::new(Concurrency::new(self.writers))).await
    }

    /// [`Replay::apply_writes`], its writes in flight bounded by `concurrency`, which pages
    /// applied at once share.
    pub(crate) async fn apply_writes_within(
        &self,
        writes: Vec<Write>,
        at: impl Fn(usize) -> String,
        from: &str,
        concurrency: &Arc<Concurrency>,
    ) -> Result<(u64, u64, u64), ReplayError> {
        let mut last: HashMap<String, (Item, Option<Item>)> = HashMap::new();
        let mut failed = 0;
        for (index, Write { keys, old, new }) in writes.into_iter().enumerate() {
            let item_error = |error: String| ReplayError::Item {
                table: self.source.clone(),
                target: self.target.clone(),
                key: key_text(&keys, &self.source_keys),
                at: at(index),
                error,
            };
            let old_key = match old {
                Some(old) => self.target_key(old),
                // Without old images (a reused NEW_IMAGE stream, allowed only for a plain copy
                // into the same key attributes) the record's keys are the new table's.
                None if self.keys_carry_over => Some(key_of(&keys, &self.target_keys)),
                None => None,
            };
            let put = match new {
                None => None,
                Some(new) => match (self.put_of(new), &self.dead_letters) {
                    (Ok(put), _) => put,
                    (Err(error), Some(dead)) => {
                        dead.write(&self.source, &keys, &format!("{error} ({})", at(index)), None).map_err(|e| {
                            ReplayError::DeadLetter { path: dead.path().display().to_string(), error: e.to_string() }
                        })?;
                        failed += 1;
                        None
                    }
                    (Err(error), None) => return Err(item_error(error)),
                },
            };
            let put_key = put.as_ref().map(|item| key_of(item, &self.target_keys));
            if let Some(old_key) = old_key
                && put_key.as_ref() != Some(&old_key)
            {
                last.insert(key_text(&old_key, &self.target_keys), (old_key, None));
            }
            if let (Some(key), Some(item)) = (put_key, put) {
                last.insert(key_text(&key, &self.target_keys), (key, Some(item)));
            }
        }
        let (mut puts, mut deletes) = (0, 0);
        let mut requests = Vec::with_capacity(last.len());
        for (_, (key, item)) in last {
            let request = match item {
                Some(item) => {
                    puts += 1;
                    let put = PutRequest::builder().set_item(Some(item)).build().expect("the item is set");
                    WriteRequest::builder().put_request(put).build()
                }
                None => {
                    deletes += 1;
                    let delete = DeleteRequest::builder().set_key(Some(key)).build().expect("the key is set");
                    WriteRequest::builder().delete_request(delete).build()
                }
            };
            requests.push(request);
        }
        let writer = Writer {
            client: without_retries(&self.dynamo),
            table: self.target.clone(),
            keys: self.target_keys.clone(),
            concurrency: concurrency.clone(),
            rate: None,
        };
        let batches: Vec<Vec<WriteRequest>> = requests.chunks(BATCH).map(<[_]>::to_vec).collect();
        let refused: Vec<Vec<super::writer::Refused>> = futures::stream::iter(batches)
            .map(|batch| writer.write(batch))
            .buffer_unordered(self.writers.max(1))
            .try_collect()
            .await
            .map_err(|source| ReplayError::Write {
                table: self.source.clone(),
                target: self.target.clone(),
                cause: Box::new(source),
            })?;
        if let Some(r) = refused.into_iter().flatten().next() {
            return Err(ReplayError::Item {
                table: self.source.clone(),
                target: self.target.clone(),
                key: writer.key_of(&r.request),
                at: format!("written from {from}"),
                error: r.error,
            });
        }
        Ok((puts, deletes, failed))
    }
}

/// The key attribute names of a table (partition key first).
pub(crate) async fn key_attributes(client: &Client, table: &str) -> Result<Vec<String>, ReplayError> {
    let out = client.describe_table().table_name(table).send().await.map_err(|e| ReplayError::Aws {
        table: table.to_owned(),
        action: format!("DescribeTable {table}"),
        detail: SdkFailure::of(&e).to_string(),
    })?;
    let mut keys: Vec<_> = out.table.map(|t| t.key_schema.unwrap_or_default()).unwrap_or_default();
    keys.sort_by_key(|k| k.key_type != aws_sdk_dynamodb::types::KeyType::Hash);
    Ok(keys.into_iter().map(|k| k.attribute_name).collect())
}

/// The shards in an order where every parent comes before its children.
fn parents_first(shards: &[Shard]) -> Vec<&Shard> {
    let by_id: HashMap<&str, &Shard> = shards.iter().filter_map(|s| Some((s.shard_id()?, s))).collect();
    let mut ordered = Vec::with_capacity(shards.len());
    let mut placed = std::collections::HashSet::new();
    fn place<'a>(
        shard: &'a Shard,
        by_id: &HashMap<&str, &'a Shard>,
        placed: &mut std::collections::HashSet<&'a str>,
        ordered: &mut Vec<&'a Shard>,
    ) {
        let Some(id) = shard.shard_id() else { return };
        if !placed.insert(id) {
            return;
        }
        if let Some(parent) = shard.parent_shard_id().and_then(|p| by_id.get(p)) {
            place(parent, by_id, placed, ordered);
        }
        ordered.push(shard);
    }
    for shard in shards {
        place(shard, &by_id, &mut placed, &mut ordered);
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>) -> Shard {
        Shard::builder().shard_id(id).set_parent_shard_id(parent.map(str::to_owned)).build()
    }

    #[test]
    fn parents_come_before_their_children_whatever_the_listing_order() {
        let shards = [shard("c2", Some("b")), shard("c1", Some("b")), shard("b", Some("a")), shard("a", None)];
        let order: Vec<&str> = parents_first(&shards).iter().filter_map(|s| s.shard_id()).collect();
        let at = |id: &str| order.iter().position(|s| *s == id).unwrap();
        assert!(at("a") < at("b") && at("b") < at("c1") && at("b") < at("c2"), "{order:?}");
        assert_eq!(order.len(), 4);
    }
}
