//! The export path of a rebuild: `ExportTableToPointInTime`, the rebuild's transform over the
//! exported files, `ImportTable` of the transformed ones. The stream catch-up and the convergence
//! check after it are the copy path's (see `data::rebuild`).
//!
//! Why the catch-up after it keeps the replay's rule (see `data::replay`): the stream is ACTIVE
//! before the export time (the rebuild's header, saved once the stream is, gives that time), the
//! export is the old table as of that time, and the import writes the transform of each of its
//! items and nothing else; so the new table holds what the copy would have written from a scan at
//! that moment, and every write after it has a record in the stream, which the replay reads from
//! its start.
//!
//! Every phase is checkpointed in the ledger beside the rebuild's replay items: the export's ARN
//! (saved as soon as DynamoDB answers; the call also carries a client token, so that a run killed
//! between the call and the save does not start a second export on AWS), each data file once its
//! transformed parts are written (with their item counts), and the import's ARN. A resumed run
//! follows the export or import it finds instead of starting another, and transforms only the
//! files not done; a file redone writes the same part names (deterministic: `<file>-<part>`), so
//! a retry overwrites and never duplicates.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    ExportFormat, ExportStatus, ImportStatus, InputCompressionType, InputFormat, S3BucketSource, S3SseAlgorithm,
    TableCreationParameters,
};
use dynamo_model::{Billing, TableDef};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::bridge::BridgeWindow;
use super::json::{JsonItem, Line, write_item_line};
use super::reader::{DataFile, ExportError, ExportFiles, ExportStore, export_files, open_file};
use super::s3::S3Store;
use crate::data::EXPORT_FILES;
use crate::data::checkpoint::{PassIdentity, SegmentState};
use crate::data::engine::{LeasedPass, work_leased};
use crate::data::{
    Change, CheckpointStore, DataError, DataReport, DeadLetters, FailureBudget, MapFn, ReplayStore, into_other_table,
    key_of, key_text, panic_message,
};
use crate::error::{Error, Result};

/// ImportTable reads at most this many objects in one import (AWS's quota).
pub(crate) const IMPORT_MAX_OBJECTS: usize = 50_000;
/// A transformed part is closed, compressed and uploaded at this many bytes of JSON lines, so
/// that a worker holds at most one part's compressed bytes whatever the size of the file.
pub(crate) const PART_BYTES: usize = 64 << 20;

/// Where an environment's export rebuilds keep their files.
#[derive(Debug, Clone)]
pub struct ExportPlace {
    /// The S3 client.
    pub s3: aws_sdk_s3::Client,
    /// The bucket DynamoDB exports into and imports from.
    pub bucket: String,
    /// The key prefix of the environment's rebuild folders, without a trailing `/`.
    pub prefix: String,
    /// The KMS key's ARN that encrypts the rebuild's objects (SSE-KMS), if the environment names
    /// one: given to the export and to every object the rebuild writes.
    pub kms_key: Option<String>,
    /// The account that owns the bucket, if the environment names it: given to the export and
    /// the import, and expected by S3 on every request.
    pub bucket_owner: Option<String>,
}

impl ExportPlace {
    /// The objects of the bucket, read and written as the place says (owner, encryption).
    pub(crate) fn store(&self) -> S3Store {
        S3Store::new(self.s3.clone(), self.bucket.clone())
            .expected_owner(self.bucket_owner.clone())
            .encrypted_by(self.kms_key.clone())
    }

    /// `ExportTableToPointInTime` into the bucket, with its owner and encryption as the place
    /// says; the caller adds the table, time, type, prefix and token.
    pub(crate) fn export_request(
        &self,
        client: &Client,
    ) -> aws_sdk_dynamodb::operation::export_table_to_point_in_time::builders::ExportTableToPointInTimeFluentBuilder
    {
        let request = client
            .export_table_to_point_in_time()
            .s3_bucket(&self.bucket)
            .set_s3_bucket_owner(self.bucket_owner.clone())
            .export_format(ExportFormat::DynamodbJson);
        match &self.kms_key {
            Some(key) => request.s3_sse_algorithm(S3SseAlgorithm::Kms).s3_sse_kms_key_id(key),
            None => request,
        }
    }
}

/// Where an export rebuild stands, as the ledger keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExportState {
    /// The export's ARN, once DynamoDB has answered the call.
    pub export_arn: Option<String>,
    /// When the export's snapshot is taken (milliseconds since the epoch).
    pub export_time_ms: u64,
    /// The export's data files, once it has completed.
    pub files: Option<u64>,
    /// The import's ARN, once DynamoDB has answered the call.
    pub import_arn: Option<String>,
    /// How many imports ended without every item (each is started with a token of its own).
    #[serde(default)]
    pub import_attempt: u32,
    /// How many exports ended FAILED (each is started with a token of its own: AWS answers a
    /// token it knows with the export it started, failed or not).
    #[serde(default)]
    pub export_attempt: u32,
    /// The import, completed and checked.
    pub imported: bool,
    /// Every change of the old table before this time (milliseconds since the epoch) is applied
    /// to the new table by incremental exports (see `bridge`).
    #[serde(default)]
    pub bridged_until_ms: Option<u64>,
    /// The incremental export of the window being bridged.
    #[serde(default)]
    pub bridge: Option<BridgeWindow>,
}

/// A data file of the export, transformed: its parts and what it held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileDone {
    /// The part objects written, each with its item count, in order.
    pub parts: Vec<(String, u64)>,
    pub read: u64,
    pub written: u64,
    /// The transform said to leave it out (`None`, `Change::Keep`, `Change::Delete`).
    pub left_out: u64,
    pub failed: u64,
}

/// What the export path did, for the step's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExportOutcome {
    pub export_arn: String,
    pub import_arn: String,
    pub files: u64,
    pub parts: u64,
    pub read: u64,
    pub written: u64,
    pub left_out: u64,
    pub failed: u64,
    /// Per phase: export, transform, check, import (this run's time; zero for a phase an earlier
    /// run finished).
    pub took: [Duration; 4],
}

/// The transform of one item into the new table, as the copy does it: the rebuild's function,
/// a panic caught, refused when it would lose attributes or lacks the new key.
pub(crate) struct Transform {
    pub map: Arc<MapFn>,
    pub target: String,
    pub target_keys: Vec<String>,
    pub source: String,
    pub source_keys: Vec<String>,
    pub drop_unknown_attributes: bool,
}

impl Transform {
    /// `Ok(Some)` to write, `Ok(None)` to leave out, `Err` with why it failed.
    fn apply(&self, item: crate::data::Item) -> std::result::Result<Option<crate::data::Item>, String> {
        let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.map)(item)))
            .map_err(|panic| format!("the transform panicked: {}", panic_message(panic.as_ref())))??;
        match into_other_table(mapped, &self.target, &self.target_keys, self.drop_unknown_attributes)? {
            Change::Put(new) => Ok(Some(new)),
            Change::Keep | Change::Delete => Ok(None),
        }
    }
}

/// The export rebuild of one step: the calls, the files and the ledger.
pub(crate) struct ExportRebuild<'a> {
    pub client: &'a Client,
    pub place: &'a ExportPlace,
    pub replay: &'a ReplayStore,
    /// The new version, as the import creates it.
    pub table: &'a TableDef,
    pub transform: Arc<Transform>,
    /// The rebuild's migration and step, for names and client tokens.
    pub version: u32,
    pub step: u32,
    pub max_failed: FailureBudget,
    pub dead_letters: Option<Arc<DeadLetters>>,
    /// How many files are transformed at once.
    pub concurrency: usize,
    /// How often a running export or import is asked about (seconds on AWS).
    pub poll: Duration,
    /// The size of the transformed parts, in bytes of lines ([`PART_BYTES`]).
    pub part_bytes: usize,
    /// Wait, before the export, until point-in-time recovery covers the export time (on AWS its
    /// latest restorable time trails the clock by about five minutes, and an export of a later
    /// time is refused); a stand-in on loopback may never move it (moto does not).
    pub wait_for_recovery: bool,
    /// In a migration, the files are claimed under leases in the ledger, so that worker
    /// processes share them (see `SharedFiles`); without, this process transforms every file.
    pub shared: Option<SharedFiles>,
    /// The time, in milliseconds since the epoch (`now_ms`; a test's clock runs ahead).
    pub now: fn() -> u64,
}

/// How the data files of an export are shared by the run and its workers: each file is a
/// segment of a pass of its own (`step <n>, export files`) in the ledger's checkpoints, claimed
/// under a lease as a scan segment is (see `data::checkpoint`), renewed while the file is
/// transformed. A file's result is saved in the replay's items (`export-file#<n>`) before its
/// segment is marked done; that result is what the check and the import read, so a file whose
/// holder died midway is transformed again by whoever takes it over, from its start (its parts
/// are deleted first and have the same names), and the check before the import reads every part
/// back whoever wrote it.
#[derive(Clone)]
pub(crate) struct SharedFiles {
    /// The migration's checkpoints, with this process's leases.
    pub checkpoints: CheckpointStore,
    pub cancel: tokio::sync::watch::Receiver<bool>,
    /// Say in the ledger that the files are open to workers (a run of `migrate --workers`).
    pub open: bool,
}

/// The place, in its migration, of the pass whose segments are an export's data files.
pub(crate) fn files_place(step: u32) -> String {
    format!("step {step}, {EXPORT_FILES}")
}

/// How long the export waits for point-in-time recovery to cover its time before it gives up.
const RECOVERY_WAIT: Duration = Duration::from_secs(30 * 60);

/// The folder of a rebuild's files under the environment's prefix: one per migration, step and
/// new table, so that two rebuilds never share one.
pub(crate) fn rebuild_folder(prefix: &str, target: &str, version: u32, step: u32) -> String {
    let folder = format!("{target}/m{version:04}-step{step:03}");
    if prefix.is_empty() { folder } else { format!("{prefix}/{folder}") }
}

/// A client token for a call of this rebuild: the same for a resumed run, so that AWS answers
/// with the export or import it already started (tokens last 8 hours there).
pub(super) fn client_token(what: &str, target: &str, version: u32, step: u32, at_ms: u64) -> String {
    let digest = Sha256::digest(format!("dynamo-migrate {what} {target} {version} {step} {at_ms}"));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl ExportRebuild<'_> {
    pub(super) fn folder(&self) -> String {
        rebuild_folder(&self.place.prefix, &self.transform.target, self.version, self.step)
    }

    /// Where the export of this attempt writes: a failed export's objects stay apart from the
    /// next one's.
    fn export_prefix(&self, state: &ExportState) -> String {
        match state.export_attempt {
            0 => format!("{}/export", self.folder()),
            n => format!("{}/export-{n}", self.folder()),
        }
    }

    pub(super) fn store(&self) -> S3Store {
        self.place.store()
    }

    pub(super) fn fail(&self, reason: String) -> Error {
        Error::Rebuild { table: self.transform.source.clone(), reason }
    }

    /// The command that runs the failed migration again.
    pub(super) fn rerun(&self) -> String {
        format!("`cargo xtask recover --env <environment> --version {} --rerun`", self.version)
    }

    /// Marks `files` as not transformed: the next run transforms them again.
    async fn forget(&self, files: impl IntoIterator<Item = usize>) -> Result<()> {
        for index in files {
            self.replay.forget_export_file(index).await?;
        }
        Ok(())
    }

    /// Runs, or resumes, every phase up to a completed and checked import; the new table exists
    /// then, with its keys, indexes and billing (the settings ImportTable cannot set are the
    /// caller's).
    pub async fn run(&self, export_time_ms: u64, lines: &mut Vec<String>) -> Result<ExportOutcome> {
        // Workers are told of the files before the export, which may take hours on AWS: they
        // wait for its files in the pass instead of ending idle (see `fill::work_export_files`).
        // The pass is closed once the files are done, or when the run fails before.
        let opened = self.shared.as_ref().filter(|shared| shared.open);
        if let Some(shared) = opened {
            shared.checkpoints.open_to_workers(&self.files_pass(), true).await?;
        }
        let result = self.run_phases(export_time_ms, lines).await;
        if let (Some(shared), Err(_)) = (opened, &result) {
            // Best effort: a run that lost its lock fences its workers anyway.
            let _ = shared.checkpoints.open_to_workers(&self.files_pass(), false).await;
        }
        result
    }

    async fn run_phases(&self, export_time_ms: u64, lines: &mut Vec<String>) -> Result<ExportOutcome> {
        let mut state: ExportState =
            self.replay.export_state().await?.unwrap_or(ExportState { export_time_ms, ..ExportState::default() });
        let mut outcome = ExportOutcome::default();

        // 1. The export.
        let started = Instant::now();
        let export_arn = match &state.export_arn {
            Some(arn) => arn.clone(),
            None => {
                if self.wait_for_recovery {
                    self.wait_until_restorable(state.export_time_ms).await?;
                }
                let arn = self.start_export(&state).await?;
                state.export_arn = Some(arn.clone());
                self.replay.save_export_state(&state).await?;
                lines.push(format!("export of {} started: {arn}", self.transform.source));
                arn
            }
        };
        let exported = match self.wait_for_export(&export_arn).await? {
            Ok(exported) => exported,
            Err(failed) => {
                // The next run starts another export of the same time, with a token of its own.
                state.export_arn = None;
                state.export_attempt += 1;
                self.replay.save_export_state(&state).await?;
                return Err(self.fail(failed));
            }
        };
        outcome.took[0] = started.elapsed();
        let store = self.store();
        let export = export_files(&store, &self.export_prefix(&state), &export_arn)
            .await
            .map_err(|e| self.fail(format!("the export {export_arn} cannot be read: {e}")))?;
        if export.is_incremental() {
            return Err(
                self.fail(format!("{export_arn} is an incremental export, not the full one this rebuild started"))
            );
        }
        if state.files.is_none() {
            state.files = Some(export.files.len() as u64);
            self.replay.save_export_state(&state).await?;
            lines.push(format!(
                "exported {}: {} item(s) in {} file(s) ({export_arn})",
                self.transform.source,
                exported.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                export.files.len()
            ));
        }
        outcome.export_arn = export_arn.clone();

        // 2. The transform, file by file.
        let started = Instant::now();
        let done = self.transform_files(&store, &export).await?;
        outcome.took[1] = started.elapsed();
        outcome.files = done.len() as u64;
        for file in done.values() {
            outcome.parts += file.parts.len() as u64;
            outcome.read += file.read;
            outcome.written += file.written;
            outcome.left_out += file.left_out;
            outcome.failed += file.failed;
        }
        if let Some(expected) = export.item_count().or(exported)
            && expected != outcome.read
        {
            self.forget(done.keys().copied()).await?;
            return Err(self.fail(format!(
                "the export {export_arn} holds {expected} item(s) but its files gave {}; nothing was imported. Its files are read again when the migration runs again: {}",
                outcome.read,
                self.rerun()
            )));
        }
        if !self.max_failed.allows(outcome.failed, outcome.read) {
            let failing: Vec<usize> = done.iter().filter(|(_, f)| f.failed > 0).map(|(index, _)| *index).collect();
            self.forget(failing.iter().copied()).await?;
            return Err(self.fail(format!(
                "{} of the {} exported items of {} fail the transform{}, and the rebuild accepts {}; nothing was imported. Fix the transform, or accept the losses with .max_failed_items(n), then run {}: the {} file(s) with failures are transformed again (their failures are written to the dead-letter file again), nothing is exported again",
                outcome.failed,
                outcome.read,
                self.transform.source,
                self.dead_letters.as_ref().map(|d| format!(" (each is in {})", d.path().display())).unwrap_or_default(),
                self.max_failed,
                self.rerun(),
                failing.len()
            )));
        }

        // 3. Before the import: what was written is what the ledger says, once.
        let started = Instant::now();
        if !state.imported && state.import_arn.is_none() {
            self.check_output(&store, &done, outcome.written).await?;
        }
        outcome.took[2] = started.elapsed();

        // 4. The import.
        let started = Instant::now();
        let import_arn = match &state.import_arn {
            Some(arn) => arn.clone(),
            None => {
                let arn = self.start_import(&state).await?;
                state.import_arn = Some(arn.clone());
                self.replay.save_export_state(&state).await?;
                lines.push(format!("import into {} started: {arn}", self.transform.target));
                arn
            }
        };
        if !state.imported {
            if let Err(failed) = self.wait_for_import(&import_arn, outcome.written).await? {
                // The next run transforms every file again (the transform may be what the
                // import refused) and starts a new import, with a token of its own.
                state.import_arn = None;
                state.import_attempt += 1;
                self.replay.save_export_state(&state).await?;
                self.forget(done.keys().copied()).await?;
                return Err(self.fail(failed));
            }
            state.imported = true;
            self.replay.save_export_state(&state).await?;
        }
        outcome.took[3] = started.elapsed();
        outcome.import_arn = import_arn;
        Ok(outcome)
    }

    /// Waits until the old table's point-in-time recovery reaches `export_time_ms`.
    pub(super) async fn wait_until_restorable(&self, export_time_ms: u64) -> Result<()> {
        let source = &self.transform.source;
        let started = Instant::now();
        loop {
            let out = self
                .client
                .describe_continuous_backups()
                .table_name(source)
                .send()
                .await
                .map_err(Error::aws(format!("DescribeContinuousBackups {source}")))?;
            let latest = out
                .continuous_backups_description
                .and_then(|d| d.point_in_time_recovery_description)
                .and_then(|p| p.latest_restorable_date_time)
                .and_then(|t| t.to_millis().ok());
            match latest {
                Some(latest) if latest >= export_time_ms as i64 => return Ok(()),
                _ if started.elapsed() > RECOVERY_WAIT => {
                    return Err(self.fail(format!(
                        "point-in-time recovery of {source} has not reached the export time ({export_time_ms} ms since the epoch; its latest restorable time is {}) after {} minutes; nothing was exported. Check that recovery is on, then run the migration again",
                        latest.map_or_else(|| "not described".to_owned(), |ms| format!("{ms} ms")),
                        RECOVERY_WAIT.as_secs() / 60
                    )));
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// The old table's ARN, which the export calls name it by.
    pub(super) async fn table_arn(&self) -> Result<String> {
        let source = &self.transform.source;
        let described = self
            .client
            .describe_table()
            .table_name(source)
            .send()
            .await
            .map_err(Error::aws(format!("DescribeTable {source}")))?;
        Ok(described.table.and_then(|t| t.table_arn).unwrap_or_default())
    }

    async fn start_export(&self, state: &ExportState) -> Result<String> {
        let export_time_ms = state.export_time_ms;
        let source = &self.transform.source;
        let arn = self.table_arn().await?;
        // The first export's token is the one earlier versions of this tool used.
        let what = match state.export_attempt {
            0 => "export".to_owned(),
            n => format!("export {n}"),
        };
        let token = client_token(&what, &self.transform.target, self.version, self.step, export_time_ms);
        let out = self
            .place
            .export_request(self.client)
            .table_arn(&arn)
            .export_time(aws_sdk_dynamodb::primitives::DateTime::from_millis(export_time_ms as i64))
            .s3_prefix(self.export_prefix(state))
            .client_token(token)
            .send()
            .await
            .map_err(Error::aws(format!("ExportTableToPointInTime {source} into s3://{}", self.place.bucket)))?;
        out.export_description
            .and_then(|d| d.export_arn)
            .ok_or_else(|| self.fail(format!("ExportTableToPointInTime {source} answered without an export ARN")))
    }

    /// Waits for the export to end; its item count when DynamoDB gives one, or `Err` with what
    /// to do when it failed.
    pub(super) async fn wait_for_export(&self, arn: &str) -> Result<std::result::Result<Option<u64>, String>> {
        loop {
            let out = self
                .client
                .describe_export()
                .export_arn(arn)
                .send()
                .await
                .map_err(Error::aws(format!("DescribeExport {arn}")))?;
            let description = out
                .export_description
                .unwrap_or_else(|| aws_sdk_dynamodb::types::ExportDescription::builder().export_arn(arn).build());
            match description.export_status {
                Some(ExportStatus::Completed) => return Ok(Ok(description.item_count.map(|n| n.max(0) as u64))),
                Some(ExportStatus::Failed) => {
                    return Ok(Err(format!(
                        "the export {arn} of {} failed: {} {}; nothing was imported. Fix what it names (the bucket's policy, its encryption key, point-in-time recovery), then run {}, which starts a new export of the same time",
                        self.transform.source,
                        description.failure_code.unwrap_or_default(),
                        description.failure_message.unwrap_or_default(),
                        self.rerun()
                    )));
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Transforms every file not done by an earlier run; returns every file's result, by index.
    async fn transform_files(&self, store: &S3Store, export: &ExportFiles) -> Result<BTreeMap<usize, FileDone>> {
        if let Some(shared) = &self.shared {
            return Ok(Box::pin(self.transform_shared(store, export, shared)).await?.1);
        }
        let mut done = BTreeMap::new();
        let mut todo = Vec::new();
        for (index, file) in export.files.iter().enumerate() {
            match self.replay.export_file(index).await? {
                Some(file) => {
                    done.insert(index, file);
                }
                None => todo.push((index, file.clone())),
            }
        }
        let out = format!("{}/transformed/data", self.folder());
        let mut running = tokio::task::JoinSet::new();
        let mut todo = todo.into_iter();
        loop {
            while running.len() < self.concurrency.max(1) {
                let Some((index, file)) = todo.next() else { break };
                let (store, export, out) = (store.clone(), export.clone(), out.clone());
                let (transform, dead, part_bytes) =
                    (self.transform.clone(), self.dead_letters.clone(), self.part_bytes);
                running.spawn(async move {
                    let result =
                        transform_file(&store, &export, &file, index, &out, &transform, dead.as_deref(), part_bytes)
                            .await;
                    (index, file, result)
                });
            }
            let Some(joined) = running.join_next().await else { break };
            let (index, file, result) = joined.map_err(|e| self.fail(format!("a file's transform stopped: {e}")))?;
            let result = result.map_err(|e| self.fail(format!("{e}; nothing was imported: fix it, then run the migration again, which goes on with the files not done")))?;
            self.replay.save_export_file(index, &result).await?;
            tracing::debug!(file = file.key, written = result.written, "transformed");
            done.insert(index, result);
        }
        Ok(done)
    }

    fn files_pass(&self) -> PassIdentity {
        PassIdentity {
            place: files_place(self.step),
            source: self.transform.source.clone(),
            target: self.transform.target.clone(),
        }
    }

    /// The files' transform shared under leases (see `SharedFiles`): the run (which waits)
    /// records the pass, makes claimable again every file a refusal forgot, opens it to workers
    /// when it has them, works files itself, takes over those whose holder stopped renewing, and
    /// returns every file's result once each is done. A worker claims files until none is left,
    /// and returns what it did itself.
    async fn transform_shared(
        &self,
        store: &S3Store,
        export: &ExportFiles,
        shared: &SharedFiles,
    ) -> Result<(DataReport, BTreeMap<usize, FileDone>)> {
        let pass = self.files_pass();
        let files = export.files.len() as u32;
        let Some(role) = shared.checkpoints.leases() else {
            return Err(self.fail("the export's files are shared, and the checkpoints have no leases".to_owned()));
        };
        let wait = role.wait;
        if wait {
            shared.checkpoints.start(&pass, files).await?;
            for (segment, state) in shared.checkpoints.segments(&pass, files).await? {
                // A file a refusal forgot (its result is gone from the ledger) is done again.
                if state.done && self.replay.export_file(segment as usize).await?.is_none() {
                    shared.checkpoints.save(&pass, segment, &mut SegmentState::default()).await?;
                }
            }
        }
        let progress = indicatif::ProgressBar::hidden();
        let leased = LeasedPass {
            checkpoints: &shared.checkpoints,
            pass: &pass,
            segments: files,
            active: self.concurrency.max(1),
            cancel: &shared.cancel,
            progress: &progress,
            limiter: None,
        };
        let work = |segment: u32, claimed: SegmentState| {
            let file = FileWork {
                store: store.clone(),
                export: export.clone(),
                out: format!("{}/transformed/data", self.folder()),
                transform: self.transform.clone(),
                dead_letters: self.dead_letters.clone(),
                part_bytes: self.part_bytes,
                replay: self.replay.clone(),
                checkpoints: shared.checkpoints.clone(),
                pass: pass.clone(),
                renew_every: role.worker.lease / 3,
            };
            file.run(segment, claimed)
        };
        let worked = work_leased(&leased, role.clone(), work).await;
        let closed = if wait && shared.open { shared.checkpoints.open_to_workers(&pass, false).await } else { Ok(()) };
        let (own, done) = worked.map_err(|e| match e {
            DataError::File { file, error } => self.fail(format!(
                "{file}: {error}; nothing was imported: fix it, then run the migration again, which goes on with the files not done"
            )),
            other => other.into(),
        })?;
        closed?;
        if done < files {
            return Err(DataError::Interrupted { table: self.transform.source.clone(), done, segments: files }.into());
        }
        let mut results = BTreeMap::new();
        if wait {
            for index in 0..export.files.len() {
                let Some(result) = self.replay.export_file(index).await? else {
                    return Err(self.fail(format!(
                        "data file {index} of the export is done, and its result is not in the ledger; run {}, which transforms it again",
                        self.rerun()
                    )));
                };
                results.insert(index, result);
            }
        }
        Ok((own, results))
    }

    /// A worker's part of the export's files, opened to workers by the run (see `SharedFiles`),
    /// once the export `export_arn` of `state` has completed: the files it transformed itself.
    pub(crate) async fn work_files(
        &self,
        shared: &SharedFiles,
        state: &ExportState,
        export_arn: &str,
    ) -> Result<DataReport> {
        let store = self.store();
        let export = export_files(&store, &self.export_prefix(state), export_arn)
            .await
            .map_err(|e| self.fail(format!("the export {export_arn} cannot be read: {e}")))?;
        Ok(self.transform_shared(&store, &export, shared).await?.0)
    }

    /// Reads every part back: each holds the count the ledger has, they add up to `written`, no
    /// key is in two of them (ImportTable would keep one silently), and the folder holds no other
    /// object (a part of an earlier, different attempt).
    async fn check_output(&self, store: &S3Store, done: &BTreeMap<usize, FileDone>, written: u64) -> Result<()> {
        let parts: Vec<&(String, u64)> = done.values().flat_map(|f| &f.parts).collect();
        if parts.len() > IMPORT_MAX_OBJECTS {
            return Err(self.fail(format!(
                "the transform wrote {} objects, more than the {IMPORT_MAX_OBJECTS} one import reads; nothing was imported",
                parts.len()
            )));
        }
        let folder = format!("{}/transformed/data/", self.folder());
        let listed =
            store.list(&folder).await.map_err(|e| self.fail(format!("s3://{}/{folder}: {e}", self.place.bucket)))?;
        let expected: HashSet<&str> = parts.iter().map(|(key, _)| key.as_str()).collect();
        if let Some(stray) = listed.iter().find(|key| !expected.contains(key.as_str())) {
            let bucket = &self.place.bucket;
            return Err(self.fail(format!(
                "s3://{bucket}/{stray} is not a part this rebuild wrote, and ImportTable would read it, so nothing was imported: delete it (`aws s3 rm s3://{bucket}/{stray}`), then run {}",
                self.rerun()
            )));
        }
        let mut keys: HashSet<u128> = HashSet::new();
        let mut total = 0;
        let mut line = Vec::new();
        let empty = ExportFiles { folder: folder.clone(), summary: None, files: vec![] };
        for (index, file_done) in done {
            for (key, count) in &file_done.parts {
                // A part read back unlike the ledger says (changed, cut short, removed): its
                // file is transformed again by the next run.
                let changed = async |e: ExportError| -> Result<()> {
                    self.forget([*index]).await?;
                    let (why, cause) = match e {
                        ExportError::Missing { .. } => {
                            ("is missing".to_owned(), ": it was removed after it was written")
                        }
                        ExportError::Count { found, .. } => {
                            (format!("holds {found} item(s)"), ": it was changed after it was written")
                        }
                        other => (format!("cannot be read back ({other})"), ""),
                    };
                    Err(self.fail(format!(
                        "s3://{}/{key} {why}, and this rebuild wrote {count} item(s) into it{cause}, so nothing was imported; run {}, which transforms data file {index} again",
                        self.place.bucket,
                        self.rerun()
                    )))
                };
                let file = DataFile { key: key.clone(), item_count: Some(*count) };
                let mut lines = match open_file(store, &empty, &file).await {
                    Ok(lines) => lines,
                    Err(e) => return changed(e).await,
                };
                loop {
                    let item = match lines.next().await {
                        Ok(Some(Line::Item(item))) => item,
                        Ok(Some(Line::Record(_))) => continue,
                        Ok(None) => break,
                        Err(e) => return changed(e).await,
                    };
                    line.clear();
                    let key_item = key_of(&item, &self.transform.target_keys);
                    serde_json::to_writer(&mut line, &JsonItem(&key_item)).expect("a key always serialises");
                    if !keys.insert(xxhash_rust::xxh3::xxh3_128(&line)) {
                        // The transform must change: every file is transformed again.
                        self.forget(done.keys().copied()).await?;
                        return Err(self.fail(format!(
                            "two items of the transform have the key {} in {}: ImportTable would keep one of them silently, so nothing was imported. The transform must map distinct old keys to distinct new ones; fix it, then run {}",
                            key_text(&item, &self.transform.target_keys),
                            self.transform.target,
                            self.rerun()
                        )));
                    }
                    total += 1;
                }
            }
        }
        if total != written {
            self.forget(done.keys().copied()).await?;
            return Err(self.fail(format!(
                "the transformed parts hold {total} item(s), the ledger counted {written}; nothing was imported. Run {}, which transforms every file again",
                self.rerun()
            )));
        }
        Ok(())
    }

    async fn start_import(&self, state: &ExportState) -> Result<String> {
        let table = self.table;
        let target = &self.transform.target;
        let mut parameters = TableCreationParameters::builder()
            .table_name(target)
            .set_key_schema(Some(crate::sdk::key_schema(&table.partition_key, table.sort_key.as_ref())?))
            .set_attribute_definitions(Some(crate::sdk::attribute_definitions(&table.attribute_definitions())?))
            .billing_mode(crate::sdk::billing_mode(&table.billing));
        if let Billing::Provisioned(t) = table.billing {
            parameters = parameters.provisioned_throughput(crate::sdk::throughput(t)?);
        }
        for index in &table.global_indexes {
            parameters = parameters.global_secondary_indexes(crate::sdk::global_index(index)?);
        }
        let source = S3BucketSource::builder()
            .s3_bucket(&self.place.bucket)
            .set_s3_bucket_owner(self.place.bucket_owner.clone())
            .s3_key_prefix(format!("{}/transformed/data/", self.folder()))
            .build()?;
        let what = format!("import {}", state.import_attempt);
        let token = client_token(&what, target, self.version, self.step, state.export_time_ms);
        let out = self
            .client
            .import_table()
            .client_token(token)
            .s3_bucket_source(source)
            .input_format(InputFormat::DynamodbJson)
            .input_compression_type(InputCompressionType::Gzip)
            .table_creation_parameters(parameters.build()?)
            .send()
            .await
            .map_err(Error::aws(format!("ImportTable {target} from s3://{}", self.place.bucket)))?;
        out.import_table_description
            .and_then(|d| d.import_arn)
            .ok_or_else(|| self.fail(format!("ImportTable {target} answered without an import ARN")))
    }

    /// Waits for the import to end; `Err` with what to do when it did not import every item
    /// written, or had an error.
    async fn wait_for_import(&self, arn: &str, written: u64) -> Result<std::result::Result<(), String>> {
        loop {
            let out = self
                .client
                .describe_import()
                .import_arn(arn)
                .send()
                .await
                .map_err(Error::aws(format!("DescribeImport {arn}")))?;
            let Some(d) = out.import_table_description else {
                return Err(self.fail(format!("DescribeImport {arn} answered without a description")));
            };
            let errors = d.error_count;
            let imported = d.imported_item_count.max(0) as u64;
            let logs = d.cloud_watch_log_group_arn.clone().map_or_else(
                || "its CloudWatch log group (the import's CloudWatchLogGroupArn)".to_owned(),
                |group| format!("the CloudWatch log group {group}"),
            );
            let status = d.import_status.clone();
            match status {
                Some(ImportStatus::Completed) if errors == 0 && imported == written => return Ok(Ok(())),
                Some(ImportStatus::Completed | ImportStatus::Failed | ImportStatus::Cancelled) => {
                    let status = status.map(|s| s.as_str().to_owned()).unwrap_or_default();
                    return Ok(Err(format!(
                        "the import {arn} into {} ended {status} with {errors} error(s), {imported} of the {written} item(s) imported{}; see {logs}. {} was not made current: delete it if it is there (`aws dynamodb delete-table --table-name {}`), fix what the log names, then run {}: every file is transformed again and imported anew, nothing is exported again",
                        self.transform.target,
                        match (d.failure_code, d.failure_message) {
                            (None, None) => String::new(),
                            (code, message) =>
                                format!(" ({} {})", code.unwrap_or_default(), message.unwrap_or_default()),
                        },
                        self.transform.target,
                        self.transform.target,
                        self.rerun()
                    )));
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }
}

/// One data file claimed under a lease, and what its transform needs.
struct FileWork {
    store: S3Store,
    export: ExportFiles,
    out: String,
    transform: Arc<Transform>,
    dead_letters: Option<Arc<DeadLetters>>,
    part_bytes: usize,
    replay: ReplayStore,
    checkpoints: CheckpointStore,
    pass: PassIdentity,
    renew_every: Duration,
}

impl FileWork {
    /// Transforms the claimed file, renewing its lease meanwhile, saves its result, then marks
    /// it done; a file whose result an earlier holder saved is only marked done.
    async fn run(self, segment: u32, mut state: SegmentState) -> std::result::Result<(DataReport, bool), DataError> {
        let index = segment as usize;
        let ledger = |e: crate::data::ReplayError| DataError::Checkpoint(Box::new(e.into()));
        let result = match self.replay.export_file(index).await.map_err(ledger)? {
            Some(result) => result,
            None => {
                let file = &self.export.files[index];
                let transformed = transform_file(
                    &self.store,
                    &self.export,
                    file,
                    index,
                    &self.out,
                    &self.transform,
                    self.dead_letters.as_deref(),
                    self.part_bytes,
                );
                tokio::pin!(transformed);
                let result = loop {
                    tokio::select! {
                        result = &mut transformed => break result,
                        // A lease lost here (taken over) stops the file: the taker does it again.
                        () = tokio::time::sleep(self.renew_every) => self.checkpoints.save(&self.pass, segment, &mut state).await?,
                    }
                };
                let result = result.map_err(|error| DataError::File { file: file.key.clone(), error })?;
                // Still this worker's, or another took it over and does it again.
                self.checkpoints.save(&self.pass, segment, &mut state).await?;
                self.replay.save_export_file(index, &result).await.map_err(ledger)?;
                result
            }
        };
        state.done = true;
        state.counts = DataReport {
            scanned: result.read,
            written: result.written,
            unchanged: result.left_out,
            failed: result.failed,
            ..DataReport::default()
        };
        self.checkpoints.save(&self.pass, segment, &mut state).await?;
        Ok((state.counts, true))
    }
}

/// One part being written: its lines compressed as they come.
struct Part {
    encoder: async_compression::tokio::write::GzipEncoder<Vec<u8>>,
    raw: usize,
    items: u64,
}

impl Part {
    fn new() -> Self {
        Part {
            // The fastest level: the parts are read once, by ImportTable, which bills what they
            // hold uncompressed; compression at the default level costs the transform half its speed.
            encoder: async_compression::tokio::write::GzipEncoder::with_quality(
                Vec::new(),
                async_compression::Level::Fastest,
            ),
            raw: 0,
            items: 0,
        }
    }
}

/// Transforms one data file of the export into parts under `out` named `<index>-<part>`, each
/// closed at `part_bytes` of lines. The parts an earlier attempt at the file left (a run killed
/// midway, or one whose transform was refused) are deleted first: none of them stays beside the
/// new ones for the import to read.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn transform_file<S: ExportStore>(
    store: &S,
    export: &ExportFiles,
    file: &DataFile,
    index: usize,
    out: &str,
    transform: &Transform,
    dead_letters: Option<&DeadLetters>,
    part_bytes: usize,
) -> std::result::Result<FileDone, String> {
    for earlier in store.list(&format!("{out}/{index:06}-")).await.map_err(|e| e.to_string())? {
        store.delete(&earlier).await.map_err(|e| e.to_string())?;
    }
    let mut lines = open_file(store, export, file).await.map_err(|e| e.to_string())?;
    let mut done = FileDone::default();
    let mut part = Part::new();
    let mut buffer = Vec::with_capacity(64 << 10);
    let io = |e: std::io::Error| format!("compressing a part of {}: {e}", file.key);
    while let Some(line) = lines.next().await.map_err(|e: ExportError| e.to_string())? {
        let Line::Item(item) = line else {
            return Err(format!("{}: a record in a full export", file.key));
        };
        done.read += 1;
        let key = key_of(&item, &transform.source_keys);
        match transform.apply(item) {
            Ok(Some(new)) => {
                buffer.clear();
                write_item_line(&mut buffer, &new);
                part.encoder.write_all(&buffer).await.map_err(io)?;
                part.raw += buffer.len();
                part.items += 1;
                done.written += 1;
                if part.raw >= part_bytes {
                    let full = std::mem::replace(&mut part, Part::new());
                    done.parts.push(upload(store, out, index, done.parts.len(), full).await?);
                }
            }
            Ok(None) => done.left_out += 1,
            Err(error) => match dead_letters {
                Some(dead) => {
                    done.failed += 1;
                    dead.write(&transform.source, &key, &error, None)
                        .map_err(|e| format!("the dead-letter file {}: {e}", dead.path().display()))?;
                }
                None => {
                    return Err(format!(
                        "item {} of {} ({}, line {}) fails the transform: {error}",
                        key_text(&key, &transform.source_keys),
                        transform.source,
                        file.key,
                        lines.items()
                    ));
                }
            },
        }
    }
    if part.items > 0 {
        done.parts.push(upload(store, out, index, done.parts.len(), part).await?);
    }
    Ok(done)
}

/// Closes `part` and writes it as `<out>/<index>-<number>.json.gz`.
async fn upload<S: ExportStore>(
    store: &S,
    out: &str,
    index: usize,
    number: usize,
    mut part: Part,
) -> std::result::Result<(String, u64), String> {
    part.encoder.shutdown().await.map_err(|e| format!("compressing a part: {e}"))?;
    let bytes = part.encoder.into_inner();
    let key = format!("{out}/{index:06}-{number:04}.json.gz");
    store.put(&key, bytes).await.map_err(|e| e.to_string())?;
    Ok((key, part.items))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_sdk_dynamodb::types::{AttributeValue, PointInTimeRecoverySpecification};
    use dynamo_model::{KeyAttr, TableDef};

    use super::*;
    use crate::data::rebuild::export::fixture::{Moto, canonical, every_type_items};
    use crate::data::{Mapped, copy_map, now_ms};
    use crate::ledger::Ledger;
    use crate::names::TableNames;

    #[test]
    fn tokens_and_folders_are_the_same_for_a_resumed_run_and_differ_between_rebuilds() {
        let a = client_token("export", "prod_customers_v2", 7, 0, 1_700_000_000_000);
        assert_eq!(a, client_token("export", "prod_customers_v2", 7, 0, 1_700_000_000_000));
        assert_eq!(a.len(), 32);
        assert_ne!(a, client_token("import", "prod_customers_v2", 7, 0, 1_700_000_000_000));
        assert_ne!(a, client_token("export", "prod_customers_v2", 7, 1, 1_700_000_000_000));
        assert_ne!(a, client_token("export", "prod_customers_v2", 7, 0, 1_700_000_000_001));
        assert_eq!(rebuild_folder("dm/prod", "prod_customers_v2", 7, 0), "dm/prod/prod_customers_v2/m0007-step000");
        assert_eq!(rebuild_folder("", "t_v2", 1, 2), "t_v2/m0001-step002");
    }

    /// A table in moto with every DynamoDB type, a 350 KB item (moto counts an item's size more
    /// generously than DynamoDB, and refuses `largest_item`), and point-in-time recovery.
    async fn old_table(client: &Client, name: &str) -> Vec<crate::data::Item> {
        client
            .create_table()
            .table_name(name)
            .key_schema(crate::sdk::key_schema(&KeyAttr::s("pk"), None).unwrap().remove(0))
            .set_attribute_definitions(Some(crate::sdk::attribute_definitions(&[KeyAttr::s("pk")]).unwrap()))
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        let on = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().unwrap();
        client
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(on)
            .send()
            .await
            .unwrap();
        let mut items: Vec<crate::data::Item> = every_type_items(300)
            .into_iter()
            .map(|item| item.into_iter().map(|(k, v)| (k, moto_reads(v))).collect())
            .collect();
        items.push(crate::data::Item::from([
            ("pk".to_owned(), AttributeValue::S("large".into())),
            ("text".to_owned(), AttributeValue::S("y".repeat(350 << 10))),
        ]));
        for item in &items {
            client.put_item().table_name(name).set_item(Some(item.clone())).send().await.unwrap();
        }
        items
    }

    /// `value` as moto's ImportTable can read it: its JSON reader (py_partiql_parser's) reads no
    /// escape in a string (a quote ends it, `\\n` stays two characters) and drops an item with an
    /// empty map, so those become plain strings and one-entry maps. Every other type is as it
    /// was; escapes and empty maps are exact through the engine's own reader and writer
    /// (`json`'s tests), and DynamoDB's ImportTable reads standard JSON.
    fn moto_reads(value: AttributeValue) -> AttributeValue {
        let plain = |s: String| {
            if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) { format!("plain {}", s.len()) } else { s }
        };
        match value {
            AttributeValue::S(s) => AttributeValue::S(plain(s)),
            AttributeValue::Ss(set) => {
                let mut set: Vec<String> = set.into_iter().map(plain).collect();
                set.sort();
                set.dedup();
                AttributeValue::Ss(set)
            }
            AttributeValue::L(list) => AttributeValue::L(list.into_iter().map(moto_reads).collect()),
            AttributeValue::M(map) if map.is_empty() => {
                AttributeValue::M([("was".to_owned(), AttributeValue::S("empty".into()))].into())
            }
            AttributeValue::M(map) => {
                AttributeValue::M(map.into_iter().map(|(k, v)| (plain(k), moto_reads(v))).collect())
            }
            other => other,
        }
    }

    struct Setup {
        moto: Moto,
        client: Client,
        place: ExportPlace,
        replay: ReplayStore,
        items: Vec<crate::data::Item>,
    }

    async fn setup(test: &str) -> Option<Setup> {
        let moto = Moto::start()?;
        let client = moto.dynamodb().await;
        let s3 = moto.client();
        s3.create_bucket().bucket("rebuilds").send().await.unwrap();
        let items = old_table(&client, &format!("{test}_old")).await;
        let ledger = Ledger::new(client.clone(), &TableNames::new(format!("{test}_")));
        ledger.ensure().await.unwrap();
        let replay = ReplayStore::open(ledger, 7, 0, &format!("{test}_new")).await.unwrap();
        let place =
            ExportPlace { s3, bucket: "rebuilds".into(), prefix: "dm/test".into(), kms_key: None, bucket_owner: None };
        Some(Setup { moto, client, place, replay, items })
    }

    impl Setup {
        fn rebuild<'a>(&'a self, table: &'a TableDef, test: &str, map: Arc<MapFn>) -> ExportRebuild<'a> {
            ExportRebuild {
                client: &self.client,
                place: &self.place,
                replay: &self.replay,
                table,
                transform: Arc::new(Transform {
                    map,
                    target: format!("{test}_new"),
                    target_keys: vec!["pk".into()],
                    source: format!("{test}_old"),
                    source_keys: vec!["pk".into()],
                    drop_unknown_attributes: false,
                }),
                version: 7,
                step: 0,
                max_failed: FailureBudget::None,
                dead_letters: None,
                concurrency: 2,
                poll: Duration::from_millis(50),
                // Small parts, so that the file is written in many.
                part_bytes: 16 << 10,
                // moto's latest restorable time stays where recovery was turned on.
                wait_for_recovery: false,
                shared: None,
                now: now_ms,
            }
        }

        async fn keys(&self) -> Vec<String> {
            S3Store::new(self.place.s3.clone(), "rebuilds").list("").await.unwrap()
        }

        async fn scan(&self, table: &str) -> Vec<crate::data::Item> {
            let mut items = self.client.scan().table_name(table).into_paginator().items().send();
            let mut all = Vec::new();
            while let Some(item) = items.next().await {
                all.push(item.unwrap());
            }
            all
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_rebuild_imports_every_type_exactly_and_resumes_without_exporting_twice() {
        let Some(setup) = setup("exact").await else {
            eprintln!("moto_server is not installed: the export path is not tested against it");
            return;
        };
        let table = TableDef::new("things", KeyAttr::s("pk")).version(2);
        // The first run's transform fails on one item: the step stops before any import, naming
        // the item, with the export's ARN in the ledger.
        let failing: Arc<MapFn> = Arc::new(|item: crate::data::Item| {
            if item.get("pk") == Some(&AttributeValue::S("item#00150".into())) {
                return Err("no such customer".to_owned());
            }
            Ok(Mapped { change: Change::Put(item), seen: None, not_held: vec![], absent: vec![] })
        });
        let mut lines = Vec::new();
        let error = setup.rebuild(&table, "exact", failing).run(now_ms(), &mut lines).await.unwrap_err().to_string();
        assert!(error.contains("item {pk: \"item#00150\"} of exact_old"), "{error}");
        assert!(error.contains("no such customer") && error.contains("nothing was imported"), "{error}");
        let state = setup.replay.export_state().await.unwrap().unwrap();
        let first_export = state.export_arn.clone().unwrap();
        assert!(state.import_arn.is_none());
        assert!(setup.client.describe_table().table_name("exact_new").send().await.is_err());
        let exports = |keys: &[String]| {
            let mut folders: Vec<String> = keys
                .iter()
                .filter(|k| k.contains("/export/AWSDynamoDB/"))
                .map(|k| k.split("/data/").next().unwrap().to_owned())
                .collect();
            folders.dedup();
            folders
        };
        assert_eq!(exports(&setup.keys().await).len(), 1);

        // Run again with the transform fixed: the same export is read, the files transformed
        // into many parts, imported, and the new table is the old one exactly.
        let mut lines = Vec::new();
        let outcome = setup.rebuild(&table, "exact", copy_map()).run(now_ms(), &mut lines).await.unwrap();
        assert_eq!(outcome.export_arn, first_export, "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("export of")), "no second export: {lines:?}");
        assert_eq!(exports(&setup.keys().await).len(), 1);
        assert_eq!((outcome.read, outcome.written, outcome.failed), (301, 301, 0));
        assert!(outcome.parts > 4, "{} parts", outcome.parts);
        assert_eq!(canonical(&setup.scan("exact_new").await), canonical(&setup.items));
        assert!(setup.replay.export_state().await.unwrap().unwrap().imported);

        // A third run finds everything done and calls nothing new.
        let again = setup.rebuild(&table, "exact", copy_map()).run(now_ms(), &mut lines).await.unwrap();
        assert_eq!((again.export_arn, again.import_arn), (outcome.export_arn, outcome.import_arn));
        drop(setup.moto);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_with_errors_fails_the_rebuild_naming_the_import() {
        let Some(setup) = setup("errors").await else {
            eprintln!("moto_server is not installed: the export path is not tested against it");
            return;
        };
        // The transform writes one key as a number into a table keyed by a string: ImportTable
        // counts it as an error (and keeps the rest).
        let table = TableDef::new("things", KeyAttr::s("pk")).version(2);
        let wrong: Arc<MapFn> = Arc::new(|mut item: crate::data::Item| {
            if item.get("pk") == Some(&AttributeValue::S("item#00007".into())) {
                item.insert("pk".into(), AttributeValue::N("7".into()));
            }
            Ok(Mapped { change: Change::Put(item), seen: None, not_held: vec![], absent: vec![] })
        });
        let mut lines = Vec::new();
        let error = setup.rebuild(&table, "errors", wrong).run(now_ms(), &mut lines).await.unwrap_err().to_string();
        assert!(error.contains("the import arn:aws:dynamodb:"), "{error}");
        assert!(
            error.contains("into errors_new ended FAILED with 1 error(s), 300 of the 301 item(s) imported"),
            "{error}"
        );
        assert!(error.contains("CloudWatch log group"), "{error}");
        assert!(error.contains("recover --env <environment> --version 7 --rerun`: every file is transformed again"));
        let state = setup.replay.export_state().await.unwrap().unwrap();
        assert_eq!((state.imported, state.import_arn.as_ref(), state.import_attempt), (false, None, 1));

        // As the error says: the table deleted, the transform fixed, the migration run again.
        setup.client.delete_table().table_name("errors_new").send().await.unwrap();
        let fixed = setup.rebuild(&table, "errors", copy_map()).run(now_ms(), &mut lines).await.unwrap();
        assert_eq!((fixed.read, fixed.written), (301, 301));
        assert_eq!(canonical(&setup.scan("errors_new").await), canonical(&setup.items));
        drop(setup.moto);
    }

    /// A part of `items` written under `data` as part `number` of data file 0.
    async fn put_part(store: &S3Store, data: &str, number: usize, items: &[crate::data::Item]) {
        let mut part = Part::new();
        for item in items {
            let mut line = Vec::new();
            write_item_line(&mut line, item);
            part.encoder.write_all(&line).await.unwrap();
            part.items += 1;
        }
        upload(store, data, 0, number, part).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stray_or_changed_part_is_refused_before_the_import_and_its_file_transformed_again() {
        let Some(setup) = setup("parts").await else {
            eprintln!("moto_server is not installed: the export path is not tested against it");
            return;
        };
        let table = TableDef::new("things", KeyAttr::s("pk")).version(2);
        let store = S3Store::new(setup.place.s3.clone(), "rebuilds");
        let data = format!("{}/transformed/data", rebuild_folder("dm/test", "parts_new", 7, 0));
        let leftover = format!("{data}/leftover.json.gz");
        // What a run killed in the middle of data file 0 leaves: parts, and no ledger item for the
        // file. The file's transform deletes them first (else the check below would name the
        // first of them, which sorts before the stray object, or a key in two parts).
        put_part(&store, &data, 0, &setup.items[..1]).await;
        put_part(&store, &data, 99, &setup.items[..1]).await;
        store.put(&leftover, b"not a part".to_vec()).await.unwrap();
        let no_import = async |setup: &Setup| {
            assert!(setup.client.describe_table().table_name("parts_new").send().await.is_err());
            assert!(setup.replay.export_state().await.unwrap().unwrap().import_arn.is_none());
        };

        // An object in the folder that this rebuild did not write.
        let mut lines = Vec::new();
        let error = setup.rebuild(&table, "parts", copy_map()).run(now_ms(), &mut lines).await.unwrap_err().to_string();
        assert!(error.contains(&format!("s3://rebuilds/{leftover} is not a part this rebuild wrote")), "{error}");
        assert!(error.contains(&format!("(`aws s3 rm s3://rebuilds/{leftover}`), then run `cargo xtask recover --env <environment> --version 7 --rerun`")), "{error}");
        no_import(&setup).await;
        let written = setup.keys().await.into_iter().filter(|k| k.starts_with(&data)).count();

        // The stray deleted, a part cut short (as a hand or another tool might): refused, naming
        // the part, and the next run transforms its file again.
        store.delete(&leftover).await.unwrap();
        put_part(&store, &data, 1, &[]).await;
        let error = setup.rebuild(&table, "parts", copy_map()).run(now_ms(), &mut lines).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "s3://rebuilds/{data}/000000-0001.json.gz holds 0 item(s), and this rebuild wrote "
            )),
            "{error}"
        );
        assert!(error.contains("--rerun`, which transforms data file 0 again"), "{error}");
        no_import(&setup).await;

        let done = setup.rebuild(&table, "parts", copy_map()).run(now_ms(), &mut lines).await.unwrap();
        assert_eq!((done.read, done.written, done.files), (301, 301, 1));
        assert_eq!(setup.keys().await.into_iter().filter(|k| k.starts_with(&data)).count(), written - 1);
        assert_eq!(canonical(&setup.scan("parts_new").await), canonical(&setup.items));
        drop(setup.moto);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_beyond_the_budget_stop_before_the_import_and_their_files_are_transformed_again() {
        let Some(setup) = setup("budget").await else {
            eprintln!("moto_server is not installed: the export path is not tested against it");
            return;
        };
        let table = TableDef::new("things", KeyAttr::s("pk")).version(2);
        let path = std::env::temp_dir().join(format!("dead-letters-export-budget-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let unknown = ["item#00010", "item#00020", "item#00030"];
        let failing: Arc<MapFn> = Arc::new(move |item: crate::data::Item| {
            if unknown.iter().any(|k| item.get("pk") == Some(&AttributeValue::S((*k).into()))) {
                return Err("no such customer".to_owned());
            }
            Ok(Mapped { change: Change::Put(item), seen: None, not_held: vec![], absent: vec![] })
        });
        let run = |max_failed| {
            let mut rebuild = setup.rebuild(&table, "budget", failing.clone());
            rebuild.max_failed = max_failed;
            rebuild.dead_letters = Some(Arc::new(DeadLetters::open(&path).unwrap()));
            rebuild
        };
        let lines_in = |path: &std::path::Path| std::fs::read_to_string(path).unwrap().lines().count();

        let mut lines = Vec::new();
        let error = run(FailureBudget::Items(2)).run(now_ms(), &mut lines).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "3 of the 301 exported items of budget_old fail the transform (each is in {})",
                path.display()
            )),
            "{error}"
        );
        assert!(error.contains("the rebuild accepts at most 2 item(s); nothing was imported"), "{error}");
        assert!(error.contains("--version 7 --rerun`: the 1 file(s) with failures are transformed again"), "{error}");
        assert!(setup.client.describe_table().table_name("budget_new").send().await.is_err());
        assert_eq!(lines_in(&path), 3);

        // The losses accepted: the file is transformed again, and the import has the rest.
        let done = run(FailureBudget::Items(3)).run(now_ms(), &mut lines).await.unwrap();
        assert_eq!((done.read, done.written, done.failed), (301, 298, 3));
        let kept: Vec<crate::data::Item> = setup
            .items
            .iter()
            .filter(|item| !unknown.iter().any(|k| item.get("pk") == Some(&AttributeValue::S((*k).into()))))
            .cloned()
            .collect();
        assert_eq!(canonical(&setup.scan("budget_new").await), canonical(&kept));
        assert_eq!(lines_in(&path), 6, "the file's failures are written again with it");
        std::fs::remove_file(&path).unwrap();
        drop(setup.moto);
    }
}
