//! A sample of a live table, spread over its key space, read with `Scan` and nothing else.
//!
//! A parallel scan cuts a table into segments by the hash of the partition key, so the first
//! items of a plain scan are the items of the lowest hashes: always the same ones, from one
//! corner of the key space. A sample of N items here is read from randomly chosen segments instead:
//! the table is cut into segments of about P items each (P a page's limit: N / 32, from 1 to
//! 100), and a page of P items is read from segment after segment in random order until N items
//! are read; when a round through every segment falls short (segments hold more or fewer than
//! their share), it goes round again through those that hold more. `All` reads every segment to
//! its end. Either way each page goes to the caller as it arrives (the rehearsal writes it into its
//! copy), so memory holds at most two pages per segment being read, whatever the table's size.
//! Read units are measured (`ReturnConsumedCapacity`) and may be capped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::data::{Item, Limiter, backoff, default_segments, is_retryable};
use crate::error::{Error, Result, SdkFailure};

/// How much of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sample {
    /// About this many items, spread over the key space (all of them when the table holds fewer).
    Items(u64),
    /// Every item.
    All,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sample::Items(n) => write!(f, "a sample of {n} items"),
            Sample::All => f.write_str("every item"),
        }
    }
}

/// How a sample is read.
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// Segments to cut the table into; by default about one per page's worth of the sample's
    /// share of the table (a sample) or `default_segments` (all).
    pub segments: Option<u32>,
    /// At most this many read units a second, over all segments.
    pub read_units_per_second: Option<f64>,
    /// Shows a progress bar on stderr.
    pub progress: bool,
}

/// What reading a sample took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleReport {
    /// Items read.
    pub items: u64,
    /// Their size as DynamoDB counts it (attribute names and values).
    pub bytes: u64,
    /// Write units a put of each of them costs (1 per KB started), summed.
    pub write_units: u64,
    /// Read units the scans consumed, as DynamoDB reported them.
    pub read_units: f64,
    /// The parallel scan segments the table was cut into.
    pub segments: u32,
    /// How many of them were read from.
    pub segments_read: u32,
    /// Scan pages read.
    pub pages: u64,
    /// Every item was read (`All`, or a sample at least as large as the table).
    pub whole_table: bool,
    /// How long reading it took (the caller's handling of the pages included), in milliseconds.
    pub millis: u128,
}

/// Items per page when reading all of a table.
const ALL_PAGE: i32 = 500;
/// Segments read at once.
const CONCURRENT: usize = 8;
/// The most segments a scan may have (DynamoDB's limit).
const MAX_SEGMENTS: u64 = 1_000_000;

/// The page size and segments of a sample of `n` items of a table of about `item_count` items:
/// pages of at most 100 items, at least 32 of them when the sample allows, and about one
/// segment per page's worth of items in the table.
fn layout(n: u64, item_count: u64, segments: Option<u32>) -> (i32, u32) {
    let page = n.div_ceil(32).clamp(1, 100);
    let segments = segments.map_or_else(|| item_count.div_ceil(page).clamp(8, MAX_SEGMENTS) as u32, |s| s.max(1));
    (page as i32, segments)
}

/// Reads `sample` of the table `physical` and hands each page to `page` as it arrives; every
/// call is a `DescribeTable` or a `Scan`.
pub async fn read_sample<F, Fut>(
    client: &Client,
    physical: &str,
    sample: Sample,
    options: &SampleOptions,
    page: F,
) -> Result<SampleReport>
where
    F: Fn(Vec<Item>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let facts = super::estimate::facts(client, physical)
        .await?
        .ok_or_else(|| Error::NoSuchTable { table: physical.to_owned(), what: "it cannot be read".to_owned() })?;
    read(client, physical, (facts.item_count, facts.size_bytes), sample, options, page).await
}

/// Reads `sample` of the table `physical` (about `item_count` items, `size_bytes` bytes, as
/// `DescribeTable` says) and hands each page to `page` as it arrives.
pub(crate) async fn read<F, Fut>(
    client: &Client,
    physical: &str,
    (item_count, size_bytes): (i64, i64),
    sample: Sample,
    options: &SampleOptions,
    page: F,
) -> Result<SampleReport>
where
    F: Fn(Vec<Item>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started = Instant::now();
    let item_count = item_count.max(0) as u64;
    // DynamoDB updates ItemCount about every six hours, so a table may hold more than it says;
    // a sample that asks for all it says is read whole, to its end.
    let (limit, total, wanted) = match sample {
        Sample::Items(n) if n < item_count => {
            let (page, segments) = layout(n, item_count, options.segments);
            (page, segments, Some(n))
        }
        _ => (ALL_PAGE, options.segments.unwrap_or_else(|| default_segments(size_bytes)).max(1), None),
    };
    // Every segment once, in random order; a sample then goes round again through the segments
    // that hold more, in a new random order, until it is full.
    let mut round: Vec<(u32, Option<Item>)> = (0..total).map(|segment| (segment, None)).collect();
    let progress = if options.progress {
        let len = wanted.unwrap_or(item_count);
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} items, {per_sec}, ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_message(format!("reading {physical}"));
    let shared = Shared {
        client,
        table: physical,
        total,
        limit,
        wanted,
        taken: AtomicU64::new(0),
        limiter: options.read_units_per_second.map(|rate| Arc::new(Limiter::new(rate))),
        progress,
    };
    let mut report = SampleReport { segments: total, whole_table: wanted.is_none(), ..SampleReport::default() };
    while !round.is_empty() {
        fastrand::shuffle(&mut round);
        let reads: Vec<Result<SegmentRead>> = futures::stream::iter(round)
            .map(|(segment, start)| shared.segment(segment, start, &page))
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        round = Vec::new();
        for read in reads {
            let read = read?;
            report.items += read.items;
            report.bytes += read.bytes;
            report.write_units += read.write_units;
            report.read_units += read.read_units;
            report.pages += read.pages;
            report.segments_read += u32::from(read.first && read.pages > 0);
            round.extend(read.more);
        }
        if wanted.is_some_and(|wanted| shared.taken.load(Ordering::Relaxed) >= wanted) {
            break;
        }
    }
    shared.progress.finish_and_clear();
    report.millis = started.elapsed().as_millis();
    Ok(report)
}

/// What the segments of one read share.
struct Shared<'a> {
    client: &'a Client,
    table: &'a str,
    total: u32,
    limit: i32,
    /// The sample's size; `None` reads every segment to its end.
    wanted: Option<u64>,
    /// Items taken into the sample so far.
    taken: AtomicU64,
    limiter: Option<Arc<Limiter>>,
    progress: ProgressBar,
}

#[derive(Default)]
struct SegmentRead {
    items: u64,
    bytes: u64,
    write_units: u64,
    read_units: f64,
    pages: u64,
    /// The segment's first visit.
    first: bool,
    /// Where a sample goes on in this segment, if it holds more.
    more: Option<(u32, Option<Item>)>,
}

impl Shared<'_> {
    /// Reads one segment from `start`: a page of a sample (once the sample is full, nothing), or
    /// all of it to its end.
    async fn segment<F, Fut>(&self, segment: u32, start: Option<Item>, page: &F) -> Result<SegmentRead>
    where
        F: Fn(Vec<Item>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut read = SegmentRead { first: start.is_none(), ..SegmentRead::default() };
        let limit = match self.wanted {
            Some(wanted) => match wanted.saturating_sub(self.taken.load(Ordering::Relaxed)) {
                0 => return Ok(read),
                room => self.limit.min(room.min(i32::MAX as u64) as i32),
            },
            None => self.limit,
        };
        let mut scanned = self.scan(segment, limit, start).await;
        loop {
            let (mut items, last, units) = scanned?;
            read.pages += 1;
            read.read_units += units;
            if let Some(wanted) = self.wanted {
                // Segments read at once may together take more than the sample's room: the
                // items past it are left out.
                let before = self.taken.fetch_add(items.len() as u64, Ordering::Relaxed);
                items.truncate(wanted.saturating_sub(before) as usize);
            }
            for item in &items {
                let size = item_size(item);
                read.bytes += size;
                read.write_units += size.div_ceil(1024).max(1);
            }
            read.items += items.len() as u64;
            self.progress.inc(items.len() as u64);
            let written = async { if items.is_empty() { Ok(()) } else { page(items).await } };
            match (last, self.wanted) {
                (None, _) => return written.await.map(|()| read),
                // A sample reads a page of a segment per round (the segment holds about a page).
                (Some(last), Some(_)) => {
                    read.more = Some((segment, Some(last)));
                    return written.await.map(|()| read);
                }
                // All of a table: the next page is read while the one before is handed over.
                (Some(last), None) => {
                    let (written, next) = futures::join!(written, self.scan(segment, limit, Some(last)));
                    written?;
                    scanned = next;
                }
            }
        }
    }

    /// One page, retried on throttling and transient failures beyond the SDK's own retries.
    async fn scan(&self, segment: u32, limit: i32, start: Option<Item>) -> Result<(Vec<Item>, Option<Item>, f64)> {
        let mut attempt = 0;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.take(1.0).await;
            }
            let sent = self
                .client
                .scan()
                .table_name(self.table)
                .segment(segment as i32)
                .total_segments(self.total as i32)
                .limit(limit)
                .set_exclusive_start_key(start.clone())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            match sent {
                Ok(out) => {
                    let units = out.consumed_capacity().and_then(|c| c.capacity_units()).unwrap_or(0.0);
                    if let Some(limiter) = &self.limiter {
                        limiter.settle(units - 1.0).await;
                    }
                    return Ok((out.items.unwrap_or_default(), out.last_evaluated_key, units));
                }
                Err(e) if is_retryable(&e) && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    return Err(Error::Aws {
                        action: format!("Scan {} (segment {segment} of {})", self.table, self.total),
                        failure: SdkFailure::of(&e),
                    });
                }
            }
        }
    }
}

/// An item's size as DynamoDB counts it for capacity: each attribute's name and value (strings
/// and binary by their length, numbers by about half their digits, containers by their members
/// plus a few bytes each).
pub(crate) fn item_size(item: &Item) -> u64 {
    item.iter().map(|(name, value)| name.len() as u64 + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> u64 {
    use AttributeValue as A;
    let number = |n: &str| (n.bytes().filter(u8::is_ascii_digit).count() as u64).div_ceil(2) + 1;
    match value {
        A::S(s) => s.len() as u64,
        A::N(n) => number(n),
        A::B(b) => b.as_ref().len() as u64,
        A::Bool(_) | A::Null(_) => 1,
        A::Ss(ss) => ss.iter().map(|s| s.len() as u64).sum(),
        A::Ns(ns) => ns.iter().map(|n| number(n)).sum(),
        A::Bs(bs) => bs.iter().map(|b| b.as_ref().len() as u64).sum(),
        A::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<u64>(),
        A::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() as u64 + value_size(v)).sum::<u64>(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_spread_over_about_a_segment_per_page_of_the_table() {
        // 1000 of 100,000 items: pages of 32, a segment per 32 items of the table.
        assert_eq!(layout(1000, 100_000, None), (32, 3125));
        // Small samples read pages of an item or a few, from many segments.
        assert_eq!(layout(10, 100_000, None), (1, 100_000));
        // Large samples read pages of 100.
        assert_eq!(layout(50_000, 10_000_000, None), (100, 100_000));
        // Never fewer than 8 segments, never more than DynamoDB allows; a given number is kept.
        assert_eq!(layout(100, 20, None), (4, 8));
        assert_eq!(layout(10, 10_000_000_000, None), (1, 1_000_000));
        assert_eq!(layout(1000, 100_000, Some(64)), (32, 64));
    }

    #[test]
    fn item_sizes_count_names_and_values() {
        let item: Item = [
            ("id".to_owned(), AttributeValue::S("abc".to_owned())),
            ("n".to_owned(), AttributeValue::N("12345".to_owned())),
            ("tags".to_owned(), AttributeValue::Ss(vec!["a".to_owned(), "bc".to_owned()])),
        ]
        .into();
        assert_eq!(item_size(&item), (2 + 3) + (1 + 4) + (4 + 3));
    }
}
