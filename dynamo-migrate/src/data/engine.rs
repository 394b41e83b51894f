//! One pass over a table: a parallel scan feeding a transform and bounded writers, with a
//! checkpoint per segment after every page whose writes are all done.
//!
//! Each segment is a task that scans a page, transforms it, writes it, records its checkpoint,
//! and meanwhile scans the next page. Into another table, items go in batches of 25; in place,
//! each changed item is one conditional write (see `in_place`). The writes in flight of all
//! segments share one adaptive bound (see `concurrency`). Memory is bounded by two pages for each
//! of at most `ACTIVE_SEGMENTS` running segments and the writes in flight, whatever the table's
//! size.
//!
//! The pass's calls go through a client without the SDK's own retries: every throttle then
//! reaches the pass, which retries it with backoff and lowers its concurrency, instead of the
//! SDK retrying out of sight while the pass keeps as many writes in flight as before.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::SdkFailure;
use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use futures::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use super::checkpoint::{CheckpointStore, Leases, PassIdentity, SegmentState, live_workers};
use super::concurrency::Concurrency;
use super::dead_letter::DeadLetters;
use super::fidelity::{key_of, key_text};
use super::in_place::{self, Op, Write};
use super::rate::{Limiter, RateLimit};
use super::writer::{BATCH, Rate, Writer, backoff, is_retryable, is_throttling};
use super::{Change, DataError, DataReport, Item, MapFn, Mapped, PassOptions};

/// Times an in-place write may find its item changed since it was read before the pass stops.
const MAX_CONFLICTS: u32 = 10;
/// Attempts at one write after throttling or a transient failure before the pass stops.
const MAX_ATTEMPTS: u32 = 15;

/// The same client without the SDK's retries (see the module's header).
pub(crate) fn without_retries(client: &Client) -> Client {
    Client::from_conf(client.config().to_builder().retry_config(RetryConfig::disabled()).build())
}

/// Segments scanned at once, whatever their number.
const ACTIVE_SEGMENTS: usize = 16;

/// Batches a segment prepares ahead of the writers: enough for every write slot to be busy while
/// the segments run, few enough that transformed items waiting for a slot stay few.
const BATCHES_AHEAD: usize = 8;

/// Items per scan page unless the pass says otherwise. DynamoDB's own limit is 1 MB a page,
/// which for small items is thousands of them, several MB once parsed; a pass holds two pages per
/// segment, so a smaller page keeps its memory low at the cost of a few more Scan calls.
const DEFAULT_PAGE_ITEMS: i32 = 500;

/// Segments for a table of this size: at least 8, one more per 256 MiB, at most 256.
pub(crate) fn default_segments(size_bytes: i64) -> u32 {
    (size_bytes.max(0) / (256 << 20)).clamp(8, 256) as u32
}

/// What a pass needs to know of a table.
#[derive(Debug)]
struct TableInfo {
    keys: Vec<String>,
    item_count: i64,
    size_bytes: i64,
    write_capacity: Option<i64>,
}

async fn table_info(client: &Client, table: &str, role: &str) -> Result<TableInfo, DataError> {
    let out = match client.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return Err(DataError::MissingTable { table: table.to_owned(), role: role.to_owned() });
        }
        Err(e) => {
            return Err(DataError::Aws {
                action: format!("DescribeTable {table}"),
                detail: SdkFailure::of(&e).to_string(),
            });
        }
    };
    let Some(table) = out.table else {
        return Err(DataError::MissingTable { table: table.to_owned(), role: role.to_owned() });
    };
    let on_demand = table
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .is_some_and(|m| *m == aws_sdk_dynamodb::types::BillingMode::PayPerRequest);
    Ok(TableInfo {
        keys: table.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect(),
        item_count: table.item_count().unwrap_or(0),
        size_bytes: table.table_size_bytes().unwrap_or(0),
        write_capacity: (!on_demand)
            .then(|| table.provisioned_throughput().and_then(|p| p.write_capacity_units()))
            .flatten(),
    })
}

/// Everything the segments of a pass share.
struct Shared {
    client: Client,
    pass: PassIdentity,
    source: String,
    source_keys: Vec<String>,
    in_place: bool,
    dry_run: bool,
    consistent_read: bool,
    drop_unknown_attributes: bool,
    version_attribute: Option<String>,
    segments: u32,
    page_size: Option<i32>,
    map: Arc<MapFn>,
    writer: Writer,
    writers: usize,
    dead_letters: Option<DeadLetters>,
    checkpoints: CheckpointStore,
    progress: ProgressBar,
    cancel: watch::Receiver<bool>,
    /// A sample: each segment stops after this many pages.
    max_pages: Option<u32>,
}

/// Runs a pass to its end (or to Ctrl-C), resuming from the checkpoints of an earlier run.
pub(crate) async fn run(
    client: &Client,
    pass: PassIdentity,
    options: PassOptions,
    map: Arc<MapFn>,
    checkpoints: &CheckpointStore,
    cancel: watch::Receiver<bool>,
    show_progress: bool,
) -> Result<DataReport, DataError> {
    run_pages(client, pass, options, map, checkpoints, cancel, show_progress, None).await
}

/// Copies a sample (the first page of every segment, nothing checkpointed) into the target and
/// returns how many items it read and how long it took: the measured rate a rebuild estimates
/// its copy's duration from. Items it writes are written again by the copy itself.
pub(crate) async fn sample(
    client: &Client,
    pass: PassIdentity,
    mut options: PassOptions,
    map: Arc<MapFn>,
) -> Result<(u64, std::time::Duration), DataError> {
    let (_, cancel) = watch::channel(false);
    options.page_size = Some(options.page_size.unwrap_or(100).min(100));
    // Items that fail in the sample are counted, not kept: the copy itself meets them again, and
    // keeps each once in the dead-letter file (or stops on the first).
    options.dead_letter = None;
    // The sample measures what the tables allow; a rate limit is applied to the estimate
    // instead, so that a slow limit does not make the sample itself slow.
    options.rate = None;
    let started = std::time::Instant::now();
    let report = run_pages(client, pass, options, map, &CheckpointStore::default(), cancel, false, Some(1)).await?;
    Ok((report.scanned, started.elapsed()))
}

#[expect(clippy::too_many_arguments, reason = "the one internal function behind run and sample")]
async fn run_pages(
    client: &Client,
    pass: PassIdentity,
    options: PassOptions,
    map: Arc<MapFn>,
    checkpoints: &CheckpointStore,
    cancel: watch::Receiver<bool>,
    show_progress: bool,
    max_pages: Option<u32>,
) -> Result<DataReport, DataError> {
    let source = table_info(client, &pass.source, "source").await?;
    let in_place = pass.source == pass.target;
    let target = if in_place { None } else { Some(table_info(client, &pass.target, "target").await?) };
    let target_info = target.as_ref().unwrap_or(&source);

    let stored = checkpoints.load(&pass).await?;
    let segments = match &stored {
        Some(stored) => stored.segments,
        // Shared with workers, a pass has a few segments for each of them, so that a worker
        // that ends early finds more to claim.
        None => options.segments.unwrap_or_else(|| {
            let sharing = checkpoints.leases().map_or(1, |l| l.participants).clamp(1, 256);
            default_segments(source.size_bytes).max(4 * sharing)
        }),
    };
    // The run records what the pass is; a worker joins it as recorded.
    if checkpoints.leases().is_none_or(|l| l.wait) {
        checkpoints.start(&pass, segments).await?;
    }

    // A shared pass with a capacity budget: this process's share of it, recomputed as workers
    // come and go (see `run_leased`).
    let budget = checkpoints.leases().and_then(|l| Some((l.budget?, l.participants.max(1))));
    let rate = match options.rate {
        _ if budget.is_some() => {
            budget.map(|(units, processes)| Rate::Capacity(Limiter::new(f64::from(units) / f64::from(processes))))
        }
        None => None,
        Some(RateLimit::ItemsPerSecond(n)) => Some(Rate::Items(Limiter::new(n))),
        Some(RateLimit::WriteCapacityShare(share)) => {
            let wcu = target_info.write_capacity.ok_or_else(|| DataError::RateLimit {
                table: pass.target.clone(),
                reason: "the table is on demand, so it has no provisioned write capacity to take a share of; use RateLimit::ItemsPerSecond".to_owned(),
            })?;
            Some(Rate::Capacity(Limiter::new(share * wcu as f64)))
        }
    };
    let dead_letters = match &options.dead_letter {
        Some(path) => Some(
            DeadLetters::open(path).map_err(|e| DataError::DeadLetter { path: path.clone(), error: e.to_string() })?,
        ),
        None => None,
    };

    let progress = if show_progress {
        ProgressBar::with_draw_target(Some(source.item_count.max(0) as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} items, {per_sec}, ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_message(format!("{} -> {}", pass.source, pass.target));

    let client = without_retries(client);
    let shared = Arc::new(Shared {
        client: client.clone(),
        source: pass.source.clone(),
        source_keys: source.keys.clone(),
        in_place,
        dry_run: options.dry_run,
        consistent_read: options.consistent_read,
        drop_unknown_attributes: options.drop_unknown_attributes,
        version_attribute: options.version_attribute.clone(),
        segments,
        page_size: Some(options.page_size.unwrap_or(DEFAULT_PAGE_ITEMS)),
        map,
        writer: Writer {
            client,
            table: pass.target.clone(),
            keys: target_info.keys.clone(),
            concurrency: Arc::new(Concurrency::new(options.writers)),
            rate,
        },
        writers: options.writers.max(1),
        dead_letters,
        checkpoints: checkpoints.clone(),
        progress,
        cancel,
        max_pages,
        pass,
    });

    let stored = stored.map(|s| s.states).unwrap_or_default();
    let resumed: u64 = stored.values().map(|s| s.counts.scanned).sum();
    shared.progress.inc(resumed);
    let ran = match checkpoints.leases() {
        Some(role) => run_leased(&shared, role).await,
        None => run_alone(&shared, stored).await,
    };
    shared.progress.finish_and_clear();
    let (mut report, segments_done) = ran?;
    if segments_done < segments && shared.max_pages.is_none() {
        return Err(DataError::Interrupted { table: shared.source.clone(), done: segments_done, segments });
    }
    report.resumed = resumed;
    if shared.max_pages.is_none() && !options.max_failed.allows(report.failed, report.scanned) {
        return Err(too_many_failed(&shared, &options, checkpoints, report));
    }
    Ok(report)
}

/// A pass whose failed items are more than its step accepts: a failed step, whatever it wrote.
fn too_many_failed(
    shared: &Shared,
    options: &PassOptions,
    checkpoints: &CheckpointStore,
    report: DataReport,
) -> DataError {
    let recover = match checkpoints.migration() {
        Some(version) => format!(
            "`cargo xtask recover --env <environment> --version {version} --rerun --restart-passes` (the passes start over, since the file changed)"
        ),
        None => "the step again".to_owned(),
    };
    let what_now = if shared.in_place {
        format!(
            "The step is failed: the other items are changed, the failed ones are as they were. Fix the transform (or accept the losses in the step with .max_failed_items(n)), then run {recover}"
        )
    } else {
        format!(
            "The step is failed, so nothing it wrote into {} becomes current and no old table is deleted on its word. Fix the transform (or accept the losses in the step with .max_failed_items(n)), then run {recover}",
            shared.pass.target
        )
    };
    DataError::TooManyFailed(Box::new(super::TooManyFailed {
        table: shared.source.clone(),
        into: if shared.in_place { String::new() } else { format!(" into {}", shared.pass.target) },
        failed: report.failed,
        read: report.scanned,
        accepted: options.max_failed,
        dead_letter: shared
            .dead_letters
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |d| d.path().display().to_string()),
        what_now,
    }))
}

/// Every segment in this process, without leases (a pass outside a migration, a sample, a dry
/// run): at most `ACTIVE_SEGMENTS` at once. Returns the counts and how many segments ended.
async fn run_alone(
    shared: &Arc<Shared>,
    mut stored: BTreeMap<u32, SegmentState>,
) -> Result<(DataReport, u32), DataError> {
    let mut tasks = tokio::task::JoinSet::new();
    // A big table has up to 256 segments; at most ACTIVE_SEGMENTS of them run at once, so that
    // the pages held (two per running segment) do not grow with the table.
    let active = Arc::new(tokio::sync::Semaphore::new(ACTIVE_SEGMENTS));
    for segment in 0..shared.segments {
        let state = stored.remove(&segment).unwrap_or_default();
        let (shared, active) = (shared.clone(), active.clone());
        tasks.spawn(async move {
            let _running = active.acquire_owned().await.expect("the semaphore is never closed");
            if *shared.cancel.borrow() && !state.done {
                // Ctrl-C before this segment started: it stays where it was, for the next run.
                let counts = state.counts;
                return Ok((counts, false));
            }
            run_segment(&shared, segment, state).await
        });
    }
    let mut report = DataReport::default();
    let mut segments_done = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined_segment(&shared.source, joined) {
            Some(Ok((counts, done))) => {
                report = report + counts;
                segments_done += u32::from(done);
            }
            // The first error stops the pass; other segments stop at their next page.
            Some(Err(e)) => {
                tasks.abort_all();
                return Err(e);
            }
            None => {}
        }
    }
    Ok((report, segments_done))
}

/// A segment task's result; `None` for one aborted after another failed.
fn joined_segment<T>(
    table: &str,
    joined: Result<Result<T, DataError>, tokio::task::JoinError>,
) -> Option<Result<T, DataError>> {
    match joined {
        Ok(result) => Some(result),
        Err(e) if e.is_panic() => Some(Err(DataError::Panicked {
            table: table.to_owned(),
            key: "(not known)".to_owned(),
            message: panic_message(e.into_panic().as_ref()),
        })),
        Err(_) => None,
    }
}

/// The segments of a scan pass shared by workers: `work_leased` over its segments, each run by
/// `run_segment`, the pass's write budget shared among the workers alive.
async fn run_leased(shared: &Arc<Shared>, role: Leases) -> Result<(DataReport, u32), DataError> {
    let limiter = match (role.budget, &shared.writer.rate) {
        (Some(_), Some(Rate::Capacity(limiter))) => Some(limiter),
        _ => None,
    };
    let leased = LeasedPass {
        checkpoints: &shared.checkpoints,
        pass: &shared.pass,
        segments: shared.segments,
        active: ACTIVE_SEGMENTS,
        cancel: &shared.cancel,
        progress: &shared.progress,
        limiter,
    };
    let work = |segment, claimed| {
        let shared = shared.clone();
        async move { run_segment(&shared, segment, claimed).await }
    };
    work_leased(&leased, role, work).await
}

/// A pass whose segments are claimed under leases (see `checkpoint`), whatever a segment is:
/// a scan segment of a table, or a data file of an export.
pub(crate) struct LeasedPass<'a> {
    pub checkpoints: &'a CheckpointStore,
    pub pass: &'a PassIdentity,
    pub segments: u32,
    /// At most this many segments at once in this process.
    pub active: usize,
    pub cancel: &'a watch::Receiver<bool>,
    /// Where the run shows how far the pass is (items of every segment).
    pub progress: &'a ProgressBar,
    /// The pass's write budget, shared among the workers alive.
    pub limiter: Option<&'a Limiter>,
}

/// The segments of a pass shared by workers (see `checkpoint`'s leases): this process claims
/// what is claimable, at most its share of them and `active` at once, and runs each claimed one
/// with `work` (which renews its lease as it goes, and returns its counts and whether it ended).
/// With `wait` (the run that opened the pass) it goes on until every segment is done, taking
/// over segments whose lease stood still for a whole lease; without, it leaves once nothing is
/// left to claim. Returns the counts (with `wait`, of every segment, whoever worked it) and how
/// many segments are done.
pub(crate) async fn work_leased<W, F>(
    leased: &LeasedPass<'_>,
    role: Leases,
    work: W,
) -> Result<(DataReport, u32), DataError>
where
    W: Fn(u32, SegmentState) -> F,
    F: Future<Output = Result<(DataReport, bool), DataError>> + Send + 'static,
{
    let Leases { worker, wait, claim_fresh, participants, budget } = role;
    let (pass, segments) = (leased.pass, leased.segments);
    // Its share of the segments at once, so that the first process to start does not take all
    // of them before the others have started.
    let active = (segments.div_ceil(participants.max(1)) as usize).clamp(1, leased.active.max(1));
    let mut running = tokio::task::JoinSet::new();
    let mut mine = std::collections::BTreeSet::new();
    // The version each lease of another worker was seen with, and since when by this clock.
    let mut watched: HashMap<u32, (String, std::time::Instant)> = HashMap::new();
    let mut own = DataReport::default();
    let poll = (worker.lease / 4).clamp(std::time::Duration::from_millis(200), std::time::Duration::from_secs(2));
    loop {
        let now = leased.checkpoints.segments(pass, segments).await?;
        let done = now.values().filter(|s| s.done).count() as u32;
        if let (Some(units), Some(limiter)) = (budget, leased.limiter) {
            limiter.set_rate(f64::from(units) / live_workers(&now, &worker.run, &worker.id) as f64);
        }
        if wait {
            let scanned: u64 = now.values().map(|s| s.counts.scanned).sum();
            leased.progress.set_position(scanned);
        }
        if done == segments && running.is_empty() {
            let everyone = now.values().fold(DataReport::default(), |sum, s| sum + s.counts);
            return Ok((if wait { everyone } else { own }, done));
        }
        let stopping = *leased.cancel.borrow();
        for segment in 0..segments {
            if stopping || running.len() >= active {
                break;
            }
            let seen = now.get(&segment);
            if mine.contains(&segment) || seen.is_some_and(|s| s.done) {
                continue;
            }
            let claimable = match seen.and_then(|s| s.lease.as_ref()) {
                None => claim_fresh,
                // A lease of an earlier run: that run is fenced, its worker writes nothing more.
                Some(lease) if lease.run != worker.run => true,
                Some(lease) if lease.owner == worker.id => true,
                Some(lease) => {
                    let seen_since =
                        watched.entry(segment).or_insert_with(|| (lease.rvn.clone(), std::time::Instant::now()));
                    if seen_since.0 != lease.rvn {
                        *seen_since = (lease.rvn.clone(), std::time::Instant::now());
                    }
                    seen_since.1.elapsed() >= worker.lease
                }
            };
            if !claimable {
                continue;
            }
            match leased.checkpoints.claim(pass, segment, seen, &worker).await {
                Ok(Some(claimed)) => {
                    watched.remove(&segment);
                    mine.insert(segment);
                    let segment_work = work(segment, claimed);
                    running.spawn(async move { (segment, segment_work.await) });
                }
                Ok(None) => {}
                // The run that opened the pass lost its lock or ended with segments left: this
                // worker stops, and says so (non-zero). Segments it is working meet the same
                // fence at their next checkpoint.
                Err(e) if !wait && e.is_fenced() && running.is_empty() => return Err(e),
                Err(e) if !wait && e.is_fenced() => break,
                Err(e) => return Err(e),
            }
        }
        if running.is_empty() && (!wait || stopping) {
            let done = leased.checkpoints.segments(pass, segments).await?.values().filter(|s| s.done).count() as u32;
            return Ok((own, if stopping { done } else { segments }));
        }
        tokio::select! {
            Some(joined) = running.join_next() => {
                let joined = joined.map(|(segment, result)| {
                    mine.remove(&segment);
                    result
                });
                match joined_segment(&pass.source, joined) {
                    Some(Ok((counts, _))) => own = own + counts,
                    // Taken over by another worker: it goes on from the last checkpoint.
                    Some(Err(DataError::SegmentTaken { .. })) | None => {}
                    Some(Err(e)) => {
                        running.abort_all();
                        return Err(e);
                    }
                }
            }
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Runs one segment from where it stands; returns its counts and whether it reached its end.
/// Under a lease, a page that takes long renews the lease meanwhile, so that a slow rate
/// limit does not lose it.
async fn run_segment(shared: &Arc<Shared>, segment: u32, state: SegmentState) -> Result<(DataReport, bool), DataError> {
    let mut counts = state.counts;
    if state.done {
        return Ok((counts, true));
    }
    let mut saved = state.clone();
    let renew_every = shared.checkpoints.leases().map(|l| l.worker.lease / 3);
    let mut done = false;
    let mut pages = 0;
    let mut next = Some(tokio::spawn(scan_page(shared.clone(), segment, state.key)));
    while let Some(page) = next.take() {
        let (items, last_key) = page.await.expect("a scan task does not panic")?;
        pages += 1;
        let more = shared.max_pages.is_none_or(|max| pages < max);
        if last_key.is_some() && more && !*shared.cancel.borrow() {
            next = Some(tokio::spawn(scan_page(shared.clone(), segment, last_key.clone())));
        }
        let scanned = items.len() as u64;
        {
            let written = write_page(shared, items, &mut counts);
            tokio::pin!(written);
            loop {
                match renew_every {
                    Some(every) => tokio::select! {
                        result = &mut written => break result?,
                        _ = tokio::time::sleep(every) => shared.checkpoints.save(&shared.pass, segment, &mut saved).await?,
                    },
                    None => break (&mut written).await?,
                }
            }
        }
        counts.scanned += scanned;
        shared.progress.inc(scanned);
        done = last_key.is_none();
        saved = SegmentState { key: last_key, done, counts, lease: saved.lease };
        shared.checkpoints.save(&shared.pass, segment, &mut saved).await?;
    }
    Ok((counts, done))
}

/// One page of one segment, retried on throttling and server errors beyond the SDK's retries.
async fn scan_page(
    shared: Arc<Shared>,
    segment: u32,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>), DataError> {
    let mut attempt = 0;
    loop {
        let result = shared
            .client
            .scan()
            .table_name(&shared.source)
            .segment(segment as i32)
            .total_segments(shared.segments as i32)
            .set_limit(shared.page_size)
            .consistent_read(shared.consistent_read)
            .set_exclusive_start_key(start.clone())
            .send()
            .await;
        match result {
            Ok(out) => return Ok((out.items.unwrap_or_default(), out.last_evaluated_key)),
            Err(e) if is_retryable(&e) && attempt < 15 => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                return Err(DataError::Aws {
                    action: format!("Scan {} (segment {segment})", shared.source),
                    detail: SdkFailure::of(&e).to_string(),
                });
            }
        }
    }
}

/// Runs the pass's function on one item; a panic in it becomes an error naming the item.
fn map_one(shared: &Shared, item: Item, key: &Item) -> Result<Result<Mapped, String>, DataError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| (shared.map)(item))).map_err(|panic| DataError::Panicked {
        table: shared.source.clone(),
        key: key_text(key, &shared.source_keys),
        message: panic_message(panic.as_ref()),
    })
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// Transforms one item into its write request into another table, if any; an item that fails
/// goes to the dead-letter file or stops the pass with its key.
fn transform_one(shared: &Shared, item: Item, counts: &mut DataReport) -> Result<Option<WriteRequest>, DataError> {
    let key = key_of(&item, &shared.source_keys);
    let change = map_one(shared, item, &key)?.and_then(|mapped| copied(shared, mapped));
    Ok(match change {
        Ok(Change::Put(new)) => {
            Some(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(new)).build()?).build())
        }
        // Into another table, a deletion means: do not copy it.
        Ok(Change::Keep | Change::Delete) => {
            counts.unchanged += 1;
            None
        }
        Err(error) => {
            fail(shared, &key, &error, counts)?;
            None
        }
    })
}

/// What goes into another table: a whole item with the target's whole key, and nothing lost
/// that the step did not say it may lose.
fn copied(shared: &Shared, mapped: Mapped) -> Result<Change, String> {
    into_other_table(mapped, &shared.writer.table, &shared.writer.keys, shared.drop_unknown_attributes)
}

/// What a function made of an item, as a whole item for table `target` (keyed by `keys`): refused
/// when it would lose attributes its input type does not hold (unless `drop_unknown_attributes`)
/// or lacks a key attribute. The copy and the rebuild's replay both go through it.
pub(crate) fn into_other_table(
    mapped: Mapped,
    target: &str,
    keys: &[String],
    drop_unknown_attributes: bool,
) -> Result<Change, String> {
    let Change::Put(new) = &mapped.change else { return Ok(mapped.change) };
    if !mapped.not_held.is_empty() && !drop_unknown_attributes {
        let names: Vec<String> = mapped.not_held.iter().map(|(name, kind)| format!("{name} ({kind})")).collect();
        return Err(format!(
            "the step's input type does not hold attribute(s) {}, so the item written to {target} would lose them; add fields for them, or call .drop_unknown_attributes() on the step to drop them on purpose",
            names.join(", "),
        ));
    }
    for name in keys {
        match new.get(name) {
            Some(AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::B(_)) => {}
            Some(_) => {
                return Err(format!("key attribute {name} of table {target} is not a string, number or binary"));
            }
            None => {
                return Err(format!("the transform dropped key attribute {name} of table {target}"));
            }
        }
    }
    Ok(mapped.change)
}

/// Transforms a page and writes it as it goes.
async fn write_page(shared: &Shared, items: Vec<Item>, counts: &mut DataReport) -> Result<(), DataError> {
    if shared.in_place {
        write_page_in_place(shared, items, counts).await
    } else {
        copy_page(shared, items, counts).await
    }
}

/// Into another table: a batch of 25 is written as soon as it is full, so that only the batches
/// in flight hold transformed items, not the whole page.
async fn copy_page(shared: &Shared, items: Vec<Item>, counts: &mut DataReport) -> Result<(), DataError> {
    let mut transformed = DataReport::default();
    let mut error = None;
    let written = {
        let mut items = items.into_iter();
        let (transformed, error) = (&mut transformed, &mut error);
        let batches = std::iter::from_fn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            for item in items.by_ref() {
                match transform_one(shared, item, transformed) {
                    Ok(Some(request)) => {
                        batch.push(request);
                        if batch.len() == BATCH {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        *error = Some(e);
                        // Nothing more of this page is written once an item has failed.
                        return None;
                    }
                }
            }
            (!batch.is_empty()).then_some(batch)
        });
        futures::stream::iter(batches)
            .map(|batch| async move {
                let puts = batch.len() as u64;
                if shared.dry_run {
                    return Ok((puts, Vec::new()));
                }
                shared.writer.write(batch).await.map(|refused| (puts, refused))
            })
            .buffer_unordered(shared.writers.min(BATCHES_AHEAD))
            .try_collect::<Vec<_>>()
            .await
    };
    *counts = *counts + transformed;
    if let Some(e) = error {
        return Err(e);
    }
    for (puts, refused) in written? {
        counts.written += puts;
        for r in refused {
            counts.written -= 1;
            refused_item(shared, r, counts)?;
        }
    }
    Ok(())
}

/// What became of one item in place.
enum Outcome {
    Unchanged,
    Written,
    Deleted,
    /// Deleted by someone else before the pass's write: nothing to do.
    Vanished,
    /// The transform or DynamoDB refused it: to the dead-letter file, or the pass stops.
    Failed {
        key: Item,
        error: String,
    },
}

/// In place: each item the function changes is one conditional write, made as the items are
/// transformed, at most as many at once as the pass allows.
async fn write_page_in_place(shared: &Shared, items: Vec<Item>, counts: &mut DataReport) -> Result<(), DataError> {
    // Each outcome comes with how many times its write found the item changed and was redone.
    let outcomes: Vec<(Outcome, u64)> = futures::stream::iter(items)
        .map(|item| change_in_place(shared, item))
        .buffer_unordered(shared.writers)
        .try_collect()
        .await?;
    for (outcome, conflicts) in outcomes {
        counts.conflicts += conflicts;
        match outcome {
            Outcome::Unchanged => counts.unchanged += 1,
            Outcome::Written => counts.written += 1,
            Outcome::Deleted => counts.deleted += 1,
            Outcome::Vanished => counts.vanished += 1,
            Outcome::Failed { key, error } => fail(shared, &key, &error, counts)?,
        }
    }
    Ok(())
}

/// Transforms one item and writes the difference, conditional on what was read; when the item
/// changed meanwhile, DynamoDB returns it as it is now, and it is transformed again.
async fn change_in_place(shared: &Shared, mut read: Item) -> Result<(Outcome, u64), DataError> {
    let key = key_of(&read, &shared.source_keys);
    let mut conflicts = 0;
    loop {
        let mapped = match map_one(shared, read.clone(), &key)? {
            Ok(mapped) => mapped,
            Err(error) => return Ok((Outcome::Failed { key, error }, conflicts)),
        };
        let write = match in_place::plan(&read, &shared.source_keys, mapped, shared.version_attribute.as_deref()) {
            Ok(Some(write)) => write,
            Ok(None) => return Ok((Outcome::Unchanged, conflicts)),
            Err(error) => return Ok((Outcome::Failed { key, error }, conflicts)),
        };
        let delete = write.op == Op::Delete;
        if shared.dry_run {
            return Ok((if delete { Outcome::Deleted } else { Outcome::Written }, conflicts));
        }
        match conditional_write(shared, &write).await? {
            Written::Done => {
                return Ok((if delete { Outcome::Deleted } else { Outcome::Written }, conflicts));
            }
            Written::Refused(error) => return Ok((Outcome::Failed { key, error }, conflicts)),
            Written::Changed(None) => return Ok((Outcome::Vanished, conflicts + 1)),
            Written::Changed(Some(now)) => {
                conflicts += 1;
                if conflicts as u32 >= MAX_CONFLICTS {
                    return Err(DataError::Contended {
                        table: shared.source.clone(),
                        key: key_text(&key, &shared.source_keys),
                        attempts: MAX_CONFLICTS,
                    });
                }
                read = now;
            }
        }
    }
}

/// What a conditional write came to.
enum Written {
    Done,
    /// The condition failed: the item as it is now, or `None` when it is gone.
    Changed(Option<Item>),
    /// DynamoDB refused the write itself (too large, a wrong type).
    Refused(String),
}

/// One `UpdateItem` or `DeleteItem`, retried with backoff on throttling and transient failures.
async fn conditional_write(shared: &Shared, write: &Write) -> Result<Written, DataError> {
    let writer = &shared.writer;
    let e = write.expressions(&shared.source_keys[0]);
    let capacity = matches!(writer.rate, Some(Rate::Capacity(_)));
    let mut attempt = 0;
    loop {
        let _slot = writer.concurrency.slot().await;
        if let Some(Rate::Items(limiter) | Rate::Capacity(limiter)) = &writer.rate {
            limiter.take(1.0).await;
        }
        let consumed = if capacity { ReturnConsumedCapacity::Total } else { ReturnConsumedCapacity::None };
        // UpdateItem and DeleteItem take the same conditional parts through builders of
        // different types; the macro sends either and reads its outcome the same way.
        macro_rules! send_conditional {
            ($builder:expr, $error:path) => {{
                let sent = $builder
                    .table_name(&writer.table)
                    .set_key(Some(write.key.clone()))
                    .condition_expression(&e.condition)
                    .set_expression_attribute_names(Some(e.names.iter().cloned().collect()))
                    .set_expression_attribute_values((!e.values.is_empty()).then(|| e.values.iter().cloned().collect()))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .return_consumed_capacity(consumed)
                    .send()
                    .await;
                let used = sent.as_ref().ok().and_then(|o| o.consumed_capacity()).and_then(|c| c.capacity_units());
                let sent = sent.map(drop).map_err(|e| match e.as_service_error() {
                    Some($error(c)) => Failure::Changed(c.item.clone()),
                    _ => Failure::Other(classify(&e)),
                });
                (sent, used)
            }};
        }
        let (sent, used) = match &write.op {
            Op::Update { .. } => send_conditional!(
                writer.client.update_item().set_update_expression(e.update.clone()),
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException
            ),
            Op::Delete => send_conditional!(
                writer.client.delete_item(),
                aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException
            ),
        };
        if let (Some(Rate::Capacity(limiter)), Some(used)) = (&writer.rate, used) {
            limiter.settle(used - 1.0).await;
        }
        match sent {
            Ok(()) => {
                writer.concurrency.succeeded();
                return Ok(Written::Done);
            }
            Err(Failure::Changed(now)) => {
                writer.concurrency.succeeded();
                return Ok(Written::Changed(now));
            }
            Err(Failure::Other(Class::Invalid(message))) => return Ok(Written::Refused(message)),
            Err(Failure::Other(Class::Retry { throttled, detail })) if attempt < MAX_ATTEMPTS => {
                if throttled {
                    writer.concurrency.throttled();
                }
                attempt += 1;
                tracing::debug!(table = %writer.table, "retrying a write: {detail}");
                drop(_slot);
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(Failure::Other(Class::Retry { detail, .. } | Class::Fatal(detail))) => {
                return Err(DataError::Aws {
                    action: format!(
                        "{} {} {}",
                        if write.op == Op::Delete { "DeleteItem on" } else { "UpdateItem on" },
                        writer.table,
                        key_text(&write.key, &shared.source_keys)
                    ),
                    detail,
                });
            }
        }
    }
}

enum Failure {
    Changed(Option<Item>),
    Other(Class),
}

/// What to do about a failed call.
enum Class {
    Retry { throttled: bool, detail: String },
    Invalid(String),
    Fatal(String),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: &SdkError<E, R>,
) -> Class {
    let detail = SdkFailure::of(error).to_string();
    if is_retryable(error) {
        Class::Retry { throttled: is_throttling(error), detail }
    } else if let SdkError::ServiceError(s) = error
        && s.err().code() == Some("ValidationException")
    {
        Class::Invalid(format!("DynamoDB refused it: {}", s.err().message().unwrap_or(&detail)))
    } else {
        Class::Fatal(detail)
    }
}

/// An item DynamoDB refused: to the dead-letter file, or the pass stops with its key.
fn refused_item(shared: &Shared, refused: super::writer::Refused, counts: &mut DataReport) -> Result<(), DataError> {
    let request = &refused.request;
    let item = request.put_request.as_ref().map(|p| &p.item);
    if shared.max_pages.is_some() {
        counts.failed += 1;
        return Ok(());
    }
    match &shared.dead_letters {
        Some(dead) => {
            counts.failed += 1;
            let key = key_of(
                item.or(request.delete_request.as_ref().map(|d| &d.key)).expect("a request has an item"),
                &shared.writer.keys,
            );
            dead.write(&shared.writer.table, &key, &refused.error, item)
                .map_err(|e| DataError::DeadLetter { path: dead.path().to_owned(), error: e.to_string() })
        }
        None => Err(DataError::Item {
            table: shared.writer.table.clone(),
            key: shared.writer.key_of(request),
            error: refused.error,
        }),
    }
}

fn fail(shared: &Shared, key: &Item, error: &str, counts: &mut DataReport) -> Result<(), DataError> {
    if shared.max_pages.is_some() {
        counts.failed += 1;
        return Ok(());
    }
    match &shared.dead_letters {
        Some(dead) => {
            counts.failed += 1;
            dead.write(&shared.source, key, error, None)
                .map_err(|e| DataError::DeadLetter { path: dead.path().to_owned(), error: e.to_string() })
        }
        None => Err(DataError::Item {
            table: shared.source.clone(),
            key: key_text(key, &shared.source_keys),
            error: error.to_owned(),
        }),
    }
}

/// Writes items with the pass machinery (batches, retries, bounded concurrency), without a scan.
pub(crate) async fn put_items(
    client: &Client,
    table: &str,
    items: Vec<Item>,
    writers: usize,
) -> Result<u64, DataError> {
    let keys = table_info(client, table, "target").await?.keys;
    let writer = Writer {
        client: without_retries(client),
        table: table.to_owned(),
        keys,
        concurrency: Arc::new(Concurrency::new(writers)),
        rate: None,
    };
    let mut requests = Vec::with_capacity(items.len());
    for item in items {
        requests.push(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build()?).build());
    }
    let mut written = 0;
    let batches: Vec<Vec<WriteRequest>> = requests.chunks(BATCH).map(<[_]>::to_vec).collect();
    let results: Vec<(usize, Vec<_>)> = futures::stream::iter(batches)
        .map(|batch| {
            let writer = &writer;
            async move {
                let n = batch.len();
                writer.write(batch).await.map(|refused| (n, refused))
            }
        })
        .buffer_unordered(writers.max(1))
        .try_collect()
        .await?;
    for (n, refused) in results {
        if let Some(r) = refused.into_iter().next() {
            return Err(DataError::Item { table: table.to_owned(), key: writer.key_of(&r.request), error: r.error });
        }
        written += n as u64;
    }
    Ok(written)
}
