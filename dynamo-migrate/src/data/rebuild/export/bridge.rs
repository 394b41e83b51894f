//! The bridge of an export rebuild: when the stream no longer holds every write since the export
//! time, the changes in between are applied by incremental exports first.
//!
//! An export rebuild's catch-up replays the old table's stream from before the export time (see
//! `path`). Stream records live 24 hours, and on a huge table the export, the transform and the
//! import can take longer; the replay then refuses ([`crate::data::ReplayError::RecordsExpired`]).
//! So, once the import is done, while the time from what is applied to now is longer than
//! [`BRIDGE_AFTER`], the rebuild asks DynamoDB for an incremental export
//! (`ExportType=INCREMENTAL_EXPORT`, `NEW_AND_OLD_IMAGES`) of the next window, at most 24 hours
//! (AWS's limit) from where the last one ended, and applies its records to the new table as the
//! replay applies stream records (`Replay::apply_writes`): the transform of the new image is put,
//! the key the old image had in the new table is deleted when it differs or when there is no new
//! image (a delete). The stream's catch-up then starts from the end of the last window.
//!
//! Why the rule of the replay still holds (see `data::replay`): an incremental export holds one
//! record per item changed in its window, with the item as it was just before the window's end
//! (none when deleted) and as it was at its start. Applied to a table that held the transform of
//! the old table as of the window's start, it leaves the transform of the old table as of its
//! end: per key the last write wins, and each key is in one record, so the order of the records
//! does not matter. Windows are contiguous and applied in order from the export time; a window
//! applied again after a crash writes the same items. The stream then replays every record it
//! holds, which includes every write from the end of the last window on (the bridge stops within
//! [`BRIDGE_AFTER`] of now), and a key's records end with its latest write.
//!
//! Each window is checkpointed in the ledger's export state: its times and its export's ARN once
//! DynamoDB answers (the call carries a client token), then, once applied, the time until which
//! the bridge reaches. A resumed run follows the export it finds.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::DateTime;
use aws_sdk_dynamodb::types::{ExportType, ExportViewType, IncrementalExportSpecification};
use serde::{Deserialize, Serialize};

use super::json::{Line, Record};
use super::path::{ExportRebuild, client_token};
use super::reader::{ExportFiles, ExportStore, export_files, open_file};
use crate::data::concurrency::Concurrency;
use crate::data::replay::{Replay, Write};
use crate::error::{Error, Result};

/// The bridge runs while the changes not yet applied go further back than this: well inside the
/// 24 hours a stream keeps records, so that the replay after it has hours to spare.
pub(crate) const BRIDGE_AFTER: Duration = Duration::from_secs(12 * 3600);
/// The longest window of one incremental export (AWS's limit).
pub(crate) const WINDOW_MAX: Duration = Duration::from_secs(24 * 3600);
/// The shortest window of one incremental export (AWS's limit).
pub(crate) const WINDOW_MIN: Duration = Duration::from_secs(15 * 60);
/// A window ends this long before now: point-in-time recovery, from which DynamoDB exports,
/// trails the clock by about five minutes.
pub(crate) const WINDOW_LAG: Duration = Duration::from_secs(10 * 60);
// Every window is at least AWS's shortest: the gap is longer than BRIDGE_AFTER.
const _: () = assert!(BRIDGE_AFTER.as_secs() - WINDOW_LAG.as_secs() >= WINDOW_MIN.as_secs());

/// Records applied at a time.
const PAGE: usize = 1000;

/// An incremental export of the bridge, as the ledger keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BridgeWindow {
    /// Its start (inclusive) and end (exclusive), in milliseconds since the epoch.
    pub from_ms: u64,
    pub to_ms: u64,
    /// Its export's ARN, once DynamoDB has answered the call.
    pub arn: Option<String>,
    /// How many exports of this window ended FAILED (each next one has a token of its own).
    pub attempt: u32,
}

/// What the bridge did, for the step's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bridged {
    /// Every change of the old table before this time is applied to the new one (milliseconds
    /// since the epoch); `None` when no bridge was needed.
    pub until_ms: Option<u64>,
    pub windows: u64,
    pub records: u64,
    pub puts: u64,
    pub deletes: u64,
    /// Records whose new image failed the transform (kept in the dead-letter file).
    pub failed: u64,
}

/// The next window to bridge when every change before `covered_ms` is applied and it is
/// `now_ms`: none while the gap is within [`BRIDGE_AFTER`], else from `covered_ms` for at most
/// [`WINDOW_MAX`], ending [`WINDOW_LAG`] before now.
pub(crate) fn next_window(covered_ms: u64, now_ms: u64) -> Option<(u64, u64)> {
    let gap = now_ms.saturating_sub(covered_ms);
    if gap <= BRIDGE_AFTER.as_millis() as u64 {
        return None;
    }
    let to = (covered_ms + WINDOW_MAX.as_millis() as u64).min(now_ms - WINDOW_LAG.as_millis() as u64);
    Some((covered_ms, to))
}

impl ExportRebuild<'_> {
    /// Where a window's export writes: a folder per window and attempt.
    fn bridge_prefix(&self, window: &BridgeWindow) -> String {
        match window.attempt {
            0 => format!("{}/incremental-{}", self.folder(), window.from_ms),
            n => format!("{}/incremental-{}-{n}", self.folder(), window.from_ms),
        }
    }

    /// Applies every window the gap from the export time to now needs, through `replay`'s
    /// writes, resuming a window an earlier run began. Run after the import, before the
    /// stream's catch-up, which then starts at `until_ms`.
    pub(crate) async fn bridge(&self, replay: &Replay, lines: &mut Vec<String>) -> Result<Bridged> {
        let Some(mut state) = self.replay.export_state().await? else {
            return Err(self.fail("the export's state is not in the ledger, so the changes since it cannot be bridged; run the migration again".to_owned()));
        };
        let mut bridged = Bridged::default();
        loop {
            let covered = state.bridged_until_ms.unwrap_or(state.export_time_ms);
            let mut window = match state.bridge.clone() {
                Some(window) => window,
                None => match next_window(covered, (self.now)()) {
                    Some((from_ms, to_ms)) => BridgeWindow { from_ms, to_ms, arn: None, attempt: 0 },
                    None => break,
                },
            };
            let arn = match &window.arn {
                Some(arn) => arn.clone(),
                None => {
                    if self.wait_for_recovery {
                        self.wait_until_restorable(window.to_ms).await?;
                    }
                    let arn = self.start_incremental(&window).await?;
                    window.arn = Some(arn.clone());
                    state.bridge = Some(window.clone());
                    self.replay.save_export_state(&state).await?;
                    lines.push(format!(
                        "incremental export of {} from {} to {} started: {arn}",
                        self.transform.source,
                        time_text(window.from_ms),
                        time_text(window.to_ms)
                    ));
                    arn
                }
            };
            if let Err(failed) = self.wait_for_export(&arn).await? {
                window.arn = None;
                window.attempt += 1;
                state.bridge = Some(window);
                self.replay.save_export_state(&state).await?;
                return Err(self.fail(failed));
            }
            let store = self.store();
            let export = export_files(&store, &self.bridge_prefix(&window), &arn)
                .await
                .map_err(|e| self.fail(format!("the incremental export {arn} cannot be read: {e}")))?;
            if !export.is_incremental() {
                return Err(self.fail(format!(
                    "{arn} is not an incremental export (its manifest says {}), though the bridge asked for one; nothing of it was applied. Look at it (`aws dynamodb describe-export --export-arn {arn}`, and s3://{}/{}/), then run {}, which reads this export again",
                    export.summary.as_ref().and_then(|s| s.export_type.as_deref()).unwrap_or("nothing of its type"),
                    self.place.bucket,
                    self.bridge_prefix(&window),
                    self.rerun()
                )));
            }
            let applied = apply_incremental(&store, &export, replay, &arn).await?;
            state.bridged_until_ms = Some(window.to_ms);
            state.bridge = None;
            self.replay.save_export_state(&state).await?;
            lines.push(format!(
                "bridged the changes of {} from {} to {} by the incremental export {arn}: {} record(s), {} put(s), {} delete(s){}",
                self.transform.source,
                time_text(window.from_ms),
                time_text(window.to_ms),
                applied.records,
                applied.puts,
                applied.deletes,
                match applied.failed {
                    0 => String::new(),
                    n => format!(", {n} failed and left out"),
                }
            ));
            bridged.windows += 1;
            bridged.records += applied.records;
            bridged.puts += applied.puts;
            bridged.deletes += applied.deletes;
            bridged.failed += applied.failed;
        }
        bridged.until_ms = state.bridged_until_ms;
        Ok(bridged)
    }

    async fn start_incremental(&self, window: &BridgeWindow) -> Result<String> {
        let source = &self.transform.source;
        let arn = self.table_arn().await?;
        let what = match window.attempt {
            0 => format!("incremental {}", window.from_ms),
            n => format!("incremental {} {n}", window.from_ms),
        };
        let token = client_token(&what, &self.transform.target, self.version, self.step, window.to_ms);
        let spec = IncrementalExportSpecification::builder()
            .export_from_time(DateTime::from_millis(window.from_ms as i64))
            .export_to_time(DateTime::from_millis(window.to_ms as i64))
            .export_view_type(ExportViewType::NewAndOldImages)
            .build();
        let out = self
            .place
            .export_request(self.client)
            .table_arn(&arn)
            .s3_prefix(self.bridge_prefix(window))
            .export_type(ExportType::IncrementalExport)
            .incremental_export_specification(spec)
            .client_token(token)
            .send()
            .await
            .map_err(Error::aws(format!(
                "ExportTableToPointInTime {source} (incremental) into s3://{}",
                self.place.bucket
            )))?;
        out.export_description
            .and_then(|d| d.export_arn)
            .ok_or_else(|| self.fail(format!("ExportTableToPointInTime {source} answered without an export ARN")))
    }
}

/// What applying one incremental export did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub records: u64,
    pub puts: u64,
    pub deletes: u64,
    pub failed: u64,
}

/// Applies every record of the incremental export `export` to the new table through `replay`.
///
/// An incremental export holds each item changed in its window once, as it was at the window's
/// start (`OldImage`) and end (`NewImage`), in no order of time: a key one item left (moved or
/// deleted) may be the key another took within the window. So every key left is deleted first,
/// over all the files, and then every item is put: a put always comes after any delete of its key,
/// whatever the order of the records. Each of the two readings is streamed page by page: this
/// task reads and parses while two pages are transformed and written by tasks of their own (on as
/// many cores), their writes in flight bounded together by the replay's writers; memory stays
/// flat in the export's size. Applying a window again leaves the same table.
pub(crate) async fn apply_incremental<S: ExportStore>(
    store: &S,
    export: &ExportFiles,
    replay: &Replay,
    arn: &str,
) -> Result<Applied> {
    let concurrency = Arc::new(Concurrency::new(replay.writers));
    let left = apply_reading(store, export, replay, arn, Reading::KeysLeft, &concurrency).await?;
    let put = apply_reading(store, export, replay, arn, Reading::Items, &concurrency).await?;
    Ok(Applied { records: put.records, puts: put.puts, deletes: left.deletes + put.deletes, failed: put.failed })
}

/// One reading of an incremental export's files: the keys its items left, or its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    KeysLeft,
    Items,
}

/// Pages of one reading being applied at once (their writes share the replay's writers).
const PAGES_IN_FLIGHT: usize = 2;

async fn apply_reading<S: ExportStore>(
    store: &S,
    export: &ExportFiles,
    replay: &Replay,
    arn: &str,
    reading: Reading,
    concurrency: &Arc<Concurrency>,
) -> Result<Applied> {
    let fail = |reason: String| Error::Rebuild { table: replay.source.clone(), reason };
    let (pages, mut received) = tokio::sync::mpsc::channel::<(usize, Vec<Write>)>(1);
    let read = async move {
        let mut records = 0u64;
        for (index, file) in export.files.iter().enumerate() {
            let unreadable = |e| fail(format!("the incremental export {arn} cannot be read: {e}"));
            let mut lines = open_file(store, export, file).await.map_err(unreadable)?;
            let mut page = Vec::with_capacity(PAGE);
            while let Some(line) = lines.next().await.map_err(unreadable)? {
                let Line::Record(record) = line else {
                    return Err(fail(format!(
                        "{}: an item in an incremental export's file ({arn}); nothing more of it was applied",
                        file.key
                    )));
                };
                records += 1;
                let Record { keys, new_image: new, old_image: old, .. } = record;
                match (reading, old, new) {
                    (Reading::KeysLeft, Some(old), new) => page.push(Write { keys, old: Some(old), new }),
                    (Reading::Items, _, Some(new)) => page.push(Write { keys, old: None, new: Some(new) }),
                    _ => {}
                }
                if page.len() == PAGE && pages.send((index, std::mem::take(&mut page))).await.is_err() {
                    // The application stopped on an error, which it returns.
                    return Ok(records);
                }
            }
            if !page.is_empty() && pages.send((index, page)).await.is_err() {
                return Ok(records);
            }
        }
        Ok(records)
    };
    // Each page is transformed and written by a task of its own, so that the transforms of the
    // pages in flight run on as many cores, while this task reads and parses the next.
    let shared = Arc::new(replay.clone());
    let apply = async {
        let mut running = tokio::task::JoinSet::new();
        let mut applied = Applied::default();
        let mut open = true;
        loop {
            while open && running.len() < PAGES_IN_FLIGHT {
                let Some((index, page)) = received.recv().await else {
                    open = false;
                    break;
                };
                let (replay, concurrency) = (shared.clone(), concurrency.clone());
                let (file, arn) = (export.files[index].key.clone(), arn.to_owned());
                running.spawn(async move { apply_page(&replay, reading, page, &file, &arn, &concurrency).await });
            }
            let Some(joined) = running.join_next().await else { break };
            let (puts, deletes, failed) =
                joined.map_err(|e| fail(format!("applying the incremental export {arn} stopped: {e}")))??;
            applied.puts += puts;
            applied.deletes += deletes;
            applied.failed += failed;
        }
        Ok::<_, Error>(applied)
    };
    let (records, mut applied) = tokio::try_join!(read, apply)?;
    applied.records = records;
    Ok(applied)
}

/// Applies one page of records of `file` as `reading` says: the keys their items left (the key
/// of the old image that the new one does not put again), or their items.
async fn apply_page(
    replay: &Replay,
    reading: Reading,
    page: Vec<Write>,
    file: &str,
    arn: &str,
    concurrency: &Arc<Concurrency>,
) -> Result<(u64, u64, u64)> {
    let writes = match reading {
        Reading::Items => page,
        Reading::KeysLeft => page
            .into_iter()
            .filter_map(|Write { keys, old, new }| {
                let old = old?;
                replay.stale_key(old.clone(), new).map(|_| Write { keys, old: Some(old), new: None })
            })
            .collect(),
    };
    let at = |_| format!("a record of {file} (incremental export {arn})");
    Ok(replay.apply_writes_within(writes, at, &format!("the incremental export {arn}"), concurrency).await?)
}

/// A time for people: RFC 3339, to the second.
fn time_text(ms: u64) -> String {
    DateTime::from_millis(ms as i64)
        .fmt(aws_sdk_dynamodb::primitives::DateTimeFormat::DateTime)
        .unwrap_or_else(|_| format!("{ms} ms"))
}

#[cfg(test)]
mod tests;
