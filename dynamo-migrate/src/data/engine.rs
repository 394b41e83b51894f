//! One pass over a table: a parallel scan feeding a transform and bounded batch writers, with a
//! checkpoint per segment after every page whose writes are all done.
//!
//! Each segment is a task that scans a page, transforms it, writes it in batches of 25 (the
//! writers of all segments share one bound), records its checkpoint, and meanwhile scans the next
//! page. Memory is bounded by two pages per segment, whatever the table's size.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Semaphore, watch};

use super::checkpoint::{CheckpointStore, SegmentState};
use super::dead_letter::DeadLetters;
use super::fidelity::{key_of, key_text};
use super::rate::{Limiter, RateLimit};
use super::writer::{BATCH, Rate, Writer, backoff, is_retryable};
use super::{Change, DataError, DataReport, Item, MapFn, PassOptions};

/// Segments for a table of this size: at least 8, one more per 256 MiB, at most 256.
fn default_segments(size_bytes: i64) -> u32 {
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
                detail: DisplayErrorContext(&e).to_string(),
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
    id: String,
    source: String,
    source_keys: Vec<String>,
    in_place: bool,
    segments: u32,
    page_size: Option<i32>,
    map: Arc<MapFn>,
    writer: Writer,
    writers: usize,
    dead_letters: Option<DeadLetters>,
    checkpoints: CheckpointStore,
    progress: ProgressBar,
    cancel: watch::Receiver<bool>,
}

/// A pass as the data API describes it.
pub(crate) struct Pass {
    pub id: String,
    pub source: String,
    pub target: String,
    pub options: PassOptions,
    pub map: Arc<MapFn>,
}

/// Runs a pass to its end (or to Ctrl-C), resuming from the checkpoints of an earlier run.
pub(crate) async fn run(
    client: &Client,
    pass: Pass,
    checkpoints: &CheckpointStore,
    cancel: watch::Receiver<bool>,
    show_progress: bool,
) -> Result<DataReport, DataError> {
    let source = table_info(client, &pass.source, "source").await?;
    let in_place = pass.source == pass.target;
    let target = if in_place { None } else { Some(table_info(client, &pass.target, "target").await?) };
    let target_info = target.as_ref().unwrap_or(&source);

    let stored = checkpoints.load(&pass.id).await.map_err(|e| DataError::Checkpoint(Box::new(e)))?;
    let segments = match &stored {
        Some(stored) => stored.segments,
        None => pass.options.segments.unwrap_or_else(|| default_segments(source.size_bytes)),
    };
    checkpoints.start(&pass.id, segments).await.map_err(|e| DataError::Checkpoint(Box::new(e)))?;

    let rate = match pass.options.rate {
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
    let dead_letters = match &pass.options.dead_letter {
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

    let shared = Arc::new(Shared {
        client: client.clone(),
        id: pass.id.clone(),
        source: pass.source.clone(),
        source_keys: source.keys.clone(),
        in_place,
        segments,
        page_size: pass.options.page_size,
        map: pass.map,
        writer: Writer {
            client: client.clone(),
            table: pass.target.clone(),
            keys: target_info.keys.clone(),
            permits: Arc::new(Semaphore::new(pass.options.writers.max(1))),
            rate,
        },
        writers: pass.options.writers.max(1),
        dead_letters,
        checkpoints: checkpoints.clone(),
        progress,
        cancel,
    });

    let mut tasks = tokio::task::JoinSet::new();
    let mut resumed = 0;
    for segment in 0..segments {
        let state = stored.as_ref().and_then(|s| s.states.get(&segment).cloned()).unwrap_or_default();
        resumed += state.counts.scanned;
        shared.progress.inc(state.counts.scanned);
        let shared = shared.clone();
        tasks.spawn(async move { run_segment(&shared, segment, state).await });
    }
    let mut report = DataReport::default();
    let mut segments_done = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let Ok(result) = joined else { continue }; // aborted after another segment failed
        match result {
            Ok((counts, done)) => {
                report = report + counts;
                segments_done += u32::from(done);
            }
            // The first error stops the pass; other segments stop at their next page.
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                    tasks.abort_all();
                }
            }
        }
    }
    shared.progress.finish_and_clear();
    if let Some(e) = first_error {
        return Err(e);
    }
    if segments_done < segments {
        return Err(DataError::Interrupted { table: pass.source, done: segments_done, segments });
    }
    report.resumed = resumed;
    Ok(report)
}

/// Runs one segment from where it stands; returns its counts and whether it reached its end.
async fn run_segment(shared: &Arc<Shared>, segment: u32, state: SegmentState) -> Result<(DataReport, bool), DataError> {
    let mut counts = state.counts;
    if state.done {
        return Ok((counts, true));
    }
    let mut done = false;
    let mut next = Some(tokio::spawn(scan_page(shared.clone(), segment, state.key)));
    while let Some(page) = next.take() {
        let (items, last_key) = page.await.expect("a scan task does not panic")?;
        if last_key.is_some() && !*shared.cancel.borrow() {
            next = Some(tokio::spawn(scan_page(shared.clone(), segment, last_key.clone())));
        }
        let scanned = items.len() as u64;
        write_page(shared, items, &mut counts).await?;
        counts.scanned += scanned;
        shared.progress.inc(scanned);
        done = last_key.is_none();
        let state = SegmentState { key: last_key, done, counts };
        shared.checkpoints.save(&shared.id, segment, &state).await.map_err(|e| DataError::Checkpoint(Box::new(e)))?;
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
                    detail: DisplayErrorContext(&e).to_string(),
                });
            }
        }
    }
}

/// Transforms one item into its write request, if any; an item that fails goes to the
/// dead-letter file or stops the pass with its key.
fn transform_one(shared: &Shared, item: Item, counts: &mut DataReport) -> Result<Option<WriteRequest>, DataError> {
    let key = key_of(&item, &shared.source_keys);
    let change = (shared.map)(item).and_then(|change| check_keys(shared, &key, change));
    Ok(match change {
        Ok(Change::Put(new)) => {
            Some(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(new)).build()?).build())
        }
        Ok(Change::Delete) if shared.in_place => {
            Some(WriteRequest::builder().delete_request(DeleteRequest::builder().set_key(Some(key)).build()?).build())
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

/// Transforms a page and writes it as it goes: a batch of 25 is written as soon as it is full,
/// so that only the batches in flight hold transformed items, not the whole page.
async fn write_page(shared: &Shared, items: Vec<Item>, counts: &mut DataReport) -> Result<(), DataError> {
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
                let puts = batch.iter().filter(|r| r.put_request.is_some()).count() as u64;
                let deletes = batch.len() as u64 - puts;
                shared.writer.write(batch).await.map(|refused| (puts, deletes, refused))
            })
            .buffer_unordered(shared.writers)
            .try_collect::<Vec<_>>()
            .await
    };
    *counts = *counts + transformed;
    if let Some(e) = error {
        return Err(e);
    }
    for (puts, deletes, refused) in written? {
        counts.written += puts;
        counts.deleted += deletes;
        for r in refused {
            if r.request.put_request.is_some() {
                counts.written -= 1;
            } else {
                counts.deleted -= 1;
            }
            refused_item(shared, r, counts)?;
        }
    }
    Ok(())
}

/// An item DynamoDB refused: to the dead-letter file, or the pass stops with its key.
fn refused_item(shared: &Shared, refused: super::writer::Refused, counts: &mut DataReport) -> Result<(), DataError> {
    let request = &refused.request;
    let item = request.put_request.as_ref().map(|p| &p.item);
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

/// The key of what is written must be the key that was read (in place), or a whole key of the
/// target table (into another table).
fn check_keys(shared: &Shared, key: &Item, change: Change) -> Result<Change, String> {
    let Change::Put(new) = &change else { return Ok(change) };
    if shared.in_place {
        for (name, value) in key {
            if new.get(name) != Some(value) {
                return Err(format!("the transform changed or dropped key attribute {name}"));
            }
        }
    } else {
        for name in &shared.writer.keys {
            match new.get(name) {
                Some(AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::B(_)) => {}
                Some(_) => {
                    return Err(format!(
                        "key attribute {name} of table {} is not a string, number or binary",
                        shared.writer.table
                    ));
                }
                None => {
                    return Err(format!("the transform dropped key attribute {name} of table {}", shared.writer.table));
                }
            }
        }
    }
    Ok(change)
}

fn fail(shared: &Shared, key: &Item, error: &str, counts: &mut DataReport) -> Result<(), DataError> {
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

/// The number of items in a table, by a parallel `Select: COUNT` scan (exact, unlike
/// `ItemCount`, which AWS refreshes about every six hours).
pub(crate) async fn count_items(client: &Client, table: &str) -> Result<u64, DataError> {
    const SEGMENTS: i32 = 8;
    let counts = futures::future::try_join_all((0..SEGMENTS).map(|segment| async move {
        let mut count = 0u64;
        let mut pages = client
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .segment(segment)
            .total_segments(SEGMENTS)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DataError::Aws {
                action: format!("Scan {table} (count)"),
                detail: DisplayErrorContext(&e).to_string(),
            })?;
            count += page.count() as u64;
        }
        Ok::<_, DataError>(count)
    }))
    .await?;
    Ok(counts.into_iter().sum())
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
        client: client.clone(),
        table: table.to_owned(),
        keys,
        permits: Arc::new(Semaphore::new(writers.max(1))),
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
