//! The convergence check of a rebuild: is the new table the transform of the old one?
//!
//! A rebuild promises that, for every key, the new table holds the transform of the old table's
//! item, or nothing. The replay's argument (`data::replay`) says why it should; this check shows
//! that it does, on the tables as they are, before anything irreversible happens on its word.
//!
//! # How
//!
//! 1. **Digests.** Both tables are scanned at once, strongly consistent, segment by segment. Each
//!    old item is put through the rebuild's transform (the same function the copy and the replay
//!    use); each item it gives, and each item of the new table, is hashed (XXH3-128 of its
//!    canonical form: attribute names sorted, numbers canonical, sets sorted) into a bucket chosen
//!    by its key's hash, where the hashes are summed. Nothing else is kept: memory is the buckets
//!    (48 bytes each, one per 32 items, at most 2^21), never the tables.
//! 2. **Differences.** Where a bucket's sums differ, both tables are scanned again, keeping only
//!    the items of those buckets: keys the old side has and the new lacks (missing), keys the
//!    new has and no old item gives (extra), and keys whose items differ (different).
//! 3. **A second look.** Each difference is read again on both sides (consistent reads), after
//!    the caller has replayed the stream once more: equal now (settled by the stream); the old
//!    item changed since the scan (in flight: its stream record carries the change to the next
//!    replay); or neither, a real difference, which is repaired from the old table, the source of
//!    truth until cut-over (the transform of the old item put, or the extra key deleted) when the
//!    check may repair, and reported otherwise.
//!
//! A clean check is one in which no real difference is found. The transform must be a function
//! of the item alone (the copy and the replay assume it too): one that reads the clock would
//! never converge, and the check says so.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, ReturnConsumedCapacity, WriteRequest,
};
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::data::{
    BATCH, Change, Concurrency, DataError, Item, MapFn, Writer, backoff, canonical_number, into_other_table,
    is_retryable, key_of, key_text, panic_message, without_retries,
};
use crate::error::SdkFailure;

/// Buckets per item of the old table, and the bounds on their number.
const ITEMS_PER_BUCKET: i64 = 32;
const MIN_BUCKETS: usize = 1 << 10;
const MAX_BUCKETS: usize = 1 << 21;
/// The most buckets whose items one look at the differences holds; more wait for the next round.
const MAX_DIFFERING_BUCKETS: usize = 4096;
/// Segments scanned at once on each side.
const ACTIVE_SEGMENTS: usize = 16;
/// Items per scan page.
const PAGE_ITEMS: i32 = 500;
/// Attempts at one read after throttling or a transient failure.
const MAX_ATTEMPTS: u32 = 15;
/// Differences named in a report.
const EXAMPLES: usize = 10;

/// One rebuild's two tables and its transform.
pub(crate) struct Convergence {
    pub client: Client,
    pub source: String,
    pub source_keys: Vec<String>,
    pub target: String,
    pub target_keys: Vec<String>,
    pub map: Arc<MapFn>,
    pub drop_unknown_attributes: bool,
    /// Parallel scan segments on each side.
    pub segments: u32,
    /// The old table's item count, to size the buckets.
    pub item_count: i64,
}

/// What kind of difference a key shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// The old item's transform is not in the new table.
    Missing,
    /// The new table holds a key no old item's transform gives.
    Extra,
    /// The new table's item is not the old item's transform.
    Different,
}

impl std::fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Extra => "extra",
            DifferenceKind::Different => "different",
        })
    }
}

/// What a check found (over all its rounds, for the counts of repairs; the last round's for the
/// rest).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The old table (physical name), the source of truth until cut-over.
    pub source: String,
    /// The new version's table (physical name).
    pub target: String,
    /// Items read from the old table (the last round's first scan).
    pub old_items: u64,
    /// Items read from the new table (the same scan).
    pub new_items: u64,
    /// Old items the transform fails on: the new table has nothing for them.
    pub failed: u64,
    /// Keys found different by the last round, before their second look: the old item's
    /// transform missing from the new table.
    pub missing: u64,
    /// Of those keys: new items that no old item's transform gives.
    pub extra: u64,
    /// Of those keys: new items that are not the old item's transform.
    pub different: u64,
    /// Of those, equal when read again: the stream had carried the change meanwhile.
    pub settled: u64,
    /// Of those, whose old item changed since it was read: the stream carries the change.
    pub in_flight: u64,
    /// Real differences, repaired from the old table, over all rounds.
    pub repaired: u64,
    /// Real differences left as they are (a check that only compares), in the last round.
    pub unrepaired: u64,
    /// The first real differences, for people: kind and key.
    pub examples: Vec<String>,
    /// Read capacity the scans and reads consumed, over all rounds.
    pub read_units: f64,
    /// Rounds run: one for a check that only compares; a check that repairs goes on until a round
    /// finds no real difference, five rounds at most.
    pub rounds: u32,
    /// How long the check took over all rounds, in milliseconds.
    pub millis: u128,
}

impl CheckReport {
    /// Forgets what the last round found (the repairs and read units stay counted).
    pub(crate) fn start_round(&mut self, round: u32) {
        *self = CheckReport {
            source: std::mem::take(&mut self.source),
            target: std::mem::take(&mut self.target),
            repaired: self.repaired,
            read_units: self.read_units,
            rounds: round,
            ..CheckReport::default()
        };
    }

    /// The last round found no real difference.
    pub fn is_clean(&self) -> bool {
        self.unrepaired == 0 && self.last_round_real() == 0
    }

    fn last_round_real(&self) -> u64 {
        (self.missing + self.extra + self.different).saturating_sub(self.settled + self.in_flight)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} -> {}: {} old item(s) through the transform against {} new one(s)",
            self.source, self.target, self.old_items, self.new_items
        );
        if self.failed > 0 {
            line += &format!(", {} failing the transform (left out)", self.failed);
        }
        let found = self.missing + self.extra + self.different;
        if found == 0 {
            line += ": equal";
        } else {
            line += &format!(
                ": {found} key(s) differed ({} missing, {} extra, {} different); read again, {} were settled by the stream and {} are in flight (the stream holds their change)",
                self.missing, self.extra, self.different, self.settled, self.in_flight
            );
        }
        if self.repaired > 0 {
            line += &format!("; {} repaired from the old table", self.repaired);
        }
        if self.unrepaired > 0 {
            line += &format!("; {} differ (first: {})", self.unrepaired, self.examples.join("; "));
        }
        line + &format!(
            " ({} round(s), {:.0} read units, {:.1} s)",
            self.rounds,
            self.read_units,
            self.millis as f64 / 1000.0
        )
    }
}

/// A key found different, with what the comparison saw of it.
#[derive(Debug, Clone)]
pub(crate) struct Difference {
    pub kind: DifferenceKind,
    /// The key in the new table.
    pub new_key: Item,
    /// The old item's key, when an old item gives this new key.
    pub old_key: Option<Item>,
    /// The digest of the transform of the old item as read (none when no old item gives it).
    pub expected: Option<u128>,
}

/// Sums of item digests, by bucket, for one side.
struct Buckets {
    sums: Vec<[AtomicU64; 3]>,
}

impl Buckets {
    fn new(n: usize) -> Self {
        Buckets { sums: (0..n).map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]).collect() }
    }

    fn add(&self, bucket: usize, digest: u128) {
        let [low, high, count] = &self.sums[bucket];
        low.fetch_add(digest as u64, Ordering::Relaxed);
        high.fetch_add((digest >> 64) as u64, Ordering::Relaxed);
        count.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, bucket: usize) -> [u64; 3] {
        let [low, high, count] = &self.sums[bucket];
        [low.load(Ordering::Relaxed), high.load(Ordering::Relaxed), count.load(Ordering::Relaxed)]
    }
}

/// What one side of a scan does with each item.
enum Side {
    Old,
    New,
}

/// Counts a scan keeps.
#[derive(Default)]
struct Tally {
    items: AtomicU64,
    failed: AtomicU64,
    /// Read capacity units, in thousandths.
    milli_units: AtomicU64,
}

/// The second scan's buckets, and what it keeps of their items.
type Only = (Arc<HashSet<usize>>, Arc<std::sync::Mutex<Kept>>);

/// What the second scan keeps of the items in differing buckets: by the new key's digest, the
/// old side's (old key, new key, expected digest) and the new side's (new key, digest).
#[derive(Default)]
struct Kept {
    old: HashMap<u128, (Item, Item, u128)>,
    new: HashMap<u128, (Item, u128)>,
}

impl Convergence {
    fn buckets(&self) -> usize {
        ((self.item_count.max(0) / ITEMS_PER_BUCKET) as usize).clamp(MIN_BUCKETS, MAX_BUCKETS)
    }

    /// Compares the two tables (steps 1 and 2 of the module's header): the keys that differ, at
    /// most those of [`MAX_DIFFERING_BUCKETS`] buckets (the next round finds the rest).
    pub(crate) async fn differences(&self, report: &mut CheckReport) -> Result<Vec<Difference>, DataError> {
        let buckets = self.buckets();
        let (old, new) = (Arc::new(Buckets::new(buckets)), Arc::new(Buckets::new(buckets)));
        let tally = Arc::new(Tally::default());
        let new_tally = Arc::new(Tally::default());
        let (a, b) =
            tokio::join!(self.scan(Side::Old, None, &old, &tally), self.scan(Side::New, None, &new, &new_tally));
        a?;
        b?;
        report.old_items = tally.items.load(Ordering::Relaxed);
        report.new_items = new_tally.items.load(Ordering::Relaxed);
        report.failed = tally.failed.load(Ordering::Relaxed);
        report.read_units += units(&tally) + units(&new_tally);
        let differing: HashSet<usize> =
            (0..buckets).filter(|&b| old.get(b) != new.get(b)).take(MAX_DIFFERING_BUCKETS).collect();
        if differing.is_empty() {
            return Ok(Vec::new());
        }
        let differing = Arc::new(differing);
        let kept = Arc::new(std::sync::Mutex::new(Kept::default()));
        let (second, second_new) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let only = Some((differing, kept.clone()));
        let (a, b) = tokio::join!(
            self.scan(Side::Old, only.clone(), &old, &second),
            self.scan(Side::New, only, &new, &second_new)
        );
        a?;
        b?;
        report.read_units += units(&second) + units(&second_new);
        let kept = std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()));
        let mut found = Vec::new();
        for (id, (old_key, new_key, expected)) in &kept.old {
            match kept.new.get(id) {
                None => found.push(Difference {
                    kind: DifferenceKind::Missing,
                    new_key: new_key.clone(),
                    old_key: Some(old_key.clone()),
                    expected: Some(*expected),
                }),
                Some((_, digest)) if digest != expected => found.push(Difference {
                    kind: DifferenceKind::Different,
                    new_key: new_key.clone(),
                    old_key: Some(old_key.clone()),
                    expected: Some(*expected),
                }),
                Some(_) => {}
            }
        }
        for (id, (new_key, _)) in &kept.new {
            if !kept.old.contains_key(id) {
                found.push(Difference {
                    kind: DifferenceKind::Extra,
                    new_key: new_key.clone(),
                    old_key: None,
                    expected: None,
                });
            }
        }
        for d in &found {
            match d.kind {
                DifferenceKind::Missing => report.missing += 1,
                DifferenceKind::Extra => report.extra += 1,
                DifferenceKind::Different => report.different += 1,
            }
        }
        Ok(found)
    }

    /// Reads each difference again on both sides (step 3): counts it settled, in flight or real,
    /// and with `repair`, rewrites each real one from the old table.
    pub(crate) async fn second_look(
        &self,
        found: Vec<Difference>,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<(), DataError> {
        // Extras whose new item carries the old table's key attributes are looked up there: an
        // old item created since the scan may give them now.
        let candidates: Vec<Option<Item>> = found
            .iter()
            .map(|d| {
                d.old_key.clone().or_else(|| {
                    let key = key_of(&d.new_key, &self.source_keys);
                    (key.len() == self.source_keys.len()).then_some(key)
                })
            })
            .collect();
        let new_keys: Vec<Item> = found.iter().map(|d| d.new_key.clone()).collect();
        let (old_now, new_now) = tokio::join!(
            self.get_many(&self.source, &self.source_keys, candidates.iter().flatten().cloned().collect()),
            self.get_many(&self.target, &self.target_keys, new_keys)
        );
        let ((old_now, old_units), (new_now, new_units)) = (old_now?, new_now?);
        report.read_units += old_units + new_units;
        let mut repairs = Vec::new();
        for (difference, candidate) in found.iter().zip(&candidates) {
            let old_item = candidate.as_ref().and_then(|k| old_now.get(&key_digest(k, &self.source_keys)));
            let new_item = new_now.get(&key_digest(&difference.new_key, &self.target_keys));
            // What the old side gives this new key now.
            let expected_now = old_item.and_then(|item| match self.transform(item.clone()) {
                Ok(Some(put)) if key_of(&put, &self.target_keys) == difference.new_key => Some(put),
                _ => None,
            });
            if expected_now.as_ref().map(item_digest) == new_item.map(item_digest) {
                report.settled += 1;
            } else if expected_now.as_ref().map(item_digest) != difference.expected {
                report.in_flight += 1;
            } else {
                if report.examples.len() < EXAMPLES {
                    report.examples.push(format!(
                        "{} {}",
                        difference.kind,
                        key_text(&difference.new_key, &self.target_keys)
                    ));
                }
                repairs.push(match expected_now {
                    Some(put) => {
                        WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(put)).build()?).build()
                    }
                    None => WriteRequest::builder()
                        .delete_request(DeleteRequest::builder().set_key(Some(difference.new_key.clone())).build()?)
                        .build(),
                });
            }
        }
        if !repair {
            report.unrepaired = repairs.len() as u64;
            return Ok(());
        }
        let writer = Writer {
            client: without_retries(&self.client),
            table: self.target.clone(),
            keys: self.target_keys.clone(),
            concurrency: Arc::new(Concurrency::new(8)),
            rate: None,
        };
        for batch in repairs.chunks(BATCH) {
            let refused = writer.write(batch.to_vec()).await?;
            if let Some(r) = refused.into_iter().next() {
                return Err(DataError::Item {
                    table: self.target.clone(),
                    key: writer.key_of(&r.request),
                    error: r.error,
                });
            }
            report.repaired += batch.len() as u64;
        }
        Ok(())
    }

    /// The transform of an old item as the new table would hold it: `None` for an item the
    /// transform leaves out, an error for one it fails on.
    fn transform(&self, item: Item) -> Result<Option<Item>, String> {
        let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.map)(item)))
            .unwrap_or_else(|panic| Err(format!("the transform panicked: {}", panic_message(panic.as_ref()))))?;
        match into_other_table(mapped, &self.target, &self.target_keys, self.drop_unknown_attributes)? {
            Change::Put(item) => Ok(Some(item)),
            Change::Keep | Change::Delete => Ok(None),
        }
    }

    /// Scans one side: every segment, pages prefetched. Without `only`, adds each item's digest
    /// to its bucket; with it, keeps the items of those buckets.
    async fn scan(
        &self,
        side: Side,
        only: Option<Only>,
        sums: &Arc<Buckets>,
        tally: &Arc<Tally>,
    ) -> Result<(), DataError> {
        let client = without_retries(&self.client);
        let (table, keys) = match side {
            Side::Old => (&self.source, &self.source_keys),
            Side::New => (&self.target, &self.target_keys),
        };
        let buckets = sums.sums.len();
        let process = |items: Vec<Item>| {
            for item in items {
                tally.items.fetch_add(1, Ordering::Relaxed);
                let (new_item, old_key) = match side {
                    Side::New => (item, None),
                    Side::Old => {
                        let old_key = key_of(&item, keys);
                        match self.transform(item) {
                            Ok(Some(put)) => (put, Some(old_key)),
                            Ok(None) => continue,
                            Err(_) => {
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                };
                let new_key = key_of(&new_item, &self.target_keys);
                let id = key_digest(&new_key, &self.target_keys);
                let bucket = (id % buckets as u128) as usize;
                match &only {
                    None => sums.add(bucket, item_digest(&new_item)),
                    Some((differing, kept)) if differing.contains(&bucket) => {
                        let digest = item_digest(&new_item);
                        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                        match old_key {
                            Some(old_key) => kept.old.insert(id, (old_key, new_key, digest)).map(drop),
                            None => kept.new.insert(id, (new_key, digest)).map(drop),
                        };
                    }
                    Some(_) => {}
                }
            }
        };
        let segments = self.segments.max(1);
        let scans = (0..segments).map(|segment| {
            let client = client.clone();
            let process = &process;
            async move {
                let mut next = Some(tokio::spawn(scan_page(client.clone(), table.clone(), segment, segments, None)));
                while let Some(page) = next.take() {
                    let (items, last, milli_units) = page.await.expect("a scan task does not panic")?;
                    tally.milli_units.fetch_add(milli_units, Ordering::Relaxed);
                    if last.is_some() {
                        next = Some(tokio::spawn(scan_page(client.clone(), table.clone(), segment, segments, last)));
                    }
                    process(items);
                }
                Ok::<(), DataError>(())
            }
        });
        use futures::StreamExt as _;
        let mut running = futures::stream::iter(scans).buffer_unordered(ACTIVE_SEGMENTS);
        while let Some(done) = running.next().await {
            done?;
        }
        Ok(())
    }

    /// Items by their keys, read consistently (`BatchGetItem`, 100 at a time), by key digest, and
    /// the read units they took.
    async fn get_many(
        &self,
        table: &str,
        keys: &[String],
        wanted: Vec<Item>,
    ) -> Result<(HashMap<u128, Item>, f64), DataError> {
        let client = without_retries(&self.client);
        let mut found = HashMap::new();
        let mut read_units = 0.0;
        let mut seen = HashSet::new();
        let wanted: Vec<Item> = wanted.into_iter().filter(|k| seen.insert(key_digest(k, keys))).collect();
        for chunk in wanted.chunks(100) {
            let mut pending: Vec<Item> = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let request =
                    KeysAndAttributes::builder().set_keys(Some(pending.clone())).consistent_read(true).build()?;
                let sent = client
                    .batch_get_item()
                    .request_items(table, request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await;
                match sent {
                    Ok(out) => {
                        read_units += out.consumed_capacity().iter().filter_map(|c| c.capacity_units()).sum::<f64>();
                        for item in out.responses.and_then(|mut r| r.remove(table)).unwrap_or_default() {
                            found.insert(key_digest(&key_of(&item, keys), keys), item);
                        }
                        pending =
                            out.unprocessed_keys.and_then(|mut u| u.remove(table)).map(|k| k.keys).unwrap_or_default();
                        if pending.is_empty() {
                            break;
                        }
                    }
                    Err(e) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {}
                    Err(e) => {
                        return Err(DataError::Aws {
                            action: format!("BatchGetItem {table}"),
                            detail: SdkFailure::of(&e).to_string(),
                        });
                    }
                }
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    return Err(DataError::Unprocessed {
                        table: table.to_owned(),
                        count: pending.len(),
                        attempts: attempt,
                    });
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok((found, read_units))
    }
}

/// One page of one segment, strongly consistent, retried on throttling and transient failures:
/// its items, where to go on from, and the read units it consumed (in thousandths).
async fn scan_page(
    client: Client,
    table: String,
    segment: u32,
    segments: u32,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>, u64), DataError> {
    let mut attempt = 0;
    loop {
        let sent = client
            .scan()
            .table_name(&table)
            .segment(segment as i32)
            .total_segments(segments as i32)
            .limit(PAGE_ITEMS)
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .set_exclusive_start_key(start.clone())
            .send()
            .await;
        match sent {
            Ok(out) => {
                let units = out.consumed_capacity().and_then(|c| c.capacity_units()).unwrap_or(0.0);
                return Ok((out.items.unwrap_or_default(), out.last_evaluated_key, (units * 1000.0) as u64));
            }
            Err(e) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                return Err(DataError::Aws {
                    action: format!("Scan {table} (segment {segment}, convergence check)"),
                    detail: SdkFailure::of(&e).to_string(),
                });
            }
        }
    }
}

fn units(tally: &Tally) -> f64 {
    tally.milli_units.load(Ordering::Relaxed) as f64 / 1000.0
}

/// The digest of a key (its attributes in the table's key order).
fn key_digest(key: &Item, names: &[String]) -> u128 {
    let mut hasher = Xxh3::new();
    for name in names {
        if let Some(value) = key.get(name) {
            feed(&mut hasher, value);
        }
    }
    hasher.digest128()
}

/// The digest of a whole item in canonical form: equal items (numbers as numbers, sets as sets)
/// have equal digests.
pub(crate) fn item_digest(item: &Item) -> u128 {
    let mut hasher = Xxh3::new();
    let mut names: Vec<&String> = item.keys().collect();
    names.sort_unstable();
    for name in names {
        feed_bytes(&mut hasher, name.as_bytes());
        feed(&mut hasher, &item[name]);
    }
    hasher.digest128()
}

fn feed_bytes(hasher: &mut Xxh3, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn feed_number(hasher: &mut Xxh3, text: &str) {
    match canonical_number(text) {
        Some((negative, digits, exponent)) => {
            hasher.update(&[u8::from(negative)]);
            feed_bytes(hasher, digits.as_bytes());
            hasher.update(&exponent.to_le_bytes());
        }
        None => feed_bytes(hasher, text.as_bytes()),
    }
}

fn feed(hasher: &mut Xxh3, value: &AttributeValue) {
    use AttributeValue as A;
    match value {
        A::S(s) => {
            hasher.update(b"S");
            feed_bytes(hasher, s.as_bytes());
        }
        A::N(n) => {
            hasher.update(b"N");
            feed_number(hasher, n);
        }
        A::B(b) => {
            hasher.update(b"B");
            feed_bytes(hasher, b.as_ref());
        }
        A::Bool(b) => hasher.update(&[b'T', u8::from(*b)]),
        A::Null(_) => hasher.update(b"0"),
        A::Ss(set) => {
            let mut set: Vec<&String> = set.iter().collect();
            set.sort_unstable();
            set.dedup();
            hasher.update(b"SS");
            hasher.update(&(set.len() as u64).to_le_bytes());
            set.into_iter().for_each(|s| feed_bytes(hasher, s.as_bytes()));
        }
        A::Ns(set) => {
            let mut set: Vec<_> = set.iter().map(|n| canonical_number(n).ok_or_else(|| n.clone())).collect();
            set.sort_unstable();
            set.dedup();
            hasher.update(b"NS");
            hasher.update(&(set.len() as u64).to_le_bytes());
            for n in set {
                match n {
                    Ok((negative, digits, exponent)) => {
                        hasher.update(&[u8::from(negative)]);
                        feed_bytes(hasher, digits.as_bytes());
                        hasher.update(&exponent.to_le_bytes());
                    }
                    Err(text) => feed_bytes(hasher, text.as_bytes()),
                }
            }
        }
        A::Bs(set) => {
            let mut set: Vec<&[u8]> = set.iter().map(|b| b.as_ref()).collect();
            set.sort_unstable();
            set.dedup();
            hasher.update(b"BS");
            hasher.update(&(set.len() as u64).to_le_bytes());
            set.into_iter().for_each(|b| feed_bytes(hasher, b));
        }
        A::L(list) => {
            hasher.update(b"L");
            hasher.update(&(list.len() as u64).to_le_bytes());
            list.iter().for_each(|v| feed(hasher, v));
        }
        A::M(map) => {
            hasher.update(b"M");
            hasher.update(&(map.len() as u64).to_le_bytes());
            let mut names: Vec<&String> = map.keys().collect();
            names.sort_unstable();
            for name in names {
                feed_bytes(hasher, name.as_bytes());
                feed(hasher, &map[name]);
            }
        }
        other => {
            hasher.update(b"?");
            feed_bytes(hasher, format!("{other:?}").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn equal_items_have_equal_digests_and_a_change_anywhere_changes_it() {
        use AttributeValue as A;
        let a = item(&[
            ("id", A::N("1.50".into())),
            ("tags", A::Ss(vec!["b".into(), "a".into()])),
            ("m", A::M([("x".to_owned(), A::Ns(vec!["2".into(), "1E0".into()]))].into())),
            ("b", A::B(Blob::new(vec![0, 1]))),
        ]);
        let same = item(&[
            ("b", A::B(Blob::new(vec![0, 1]))),
            ("m", A::M([("x".to_owned(), A::Ns(vec!["1".into(), "2.0".into()]))].into())),
            ("tags", A::Ss(vec!["a".into(), "b".into()])),
            ("id", A::N("1.5".into())),
        ]);
        assert_eq!(item_digest(&a), item_digest(&same));
        for changed in [
            item(&[("id", A::N("1.5".into()))]),
            {
                let mut c = a.clone();
                c.insert("tags".into(), A::L(vec![A::S("a".into()), A::S("b".into())]));
                c
            },
            {
                let mut c = a.clone();
                c.insert("b".into(), A::S("\u{0}\u{1}".into()));
                c
            },
            {
                let mut c = a.clone();
                c.insert("m".into(), A::M([("x".to_owned(), A::Ns(vec!["1".into()]))].into()));
                c
            },
        ] {
            assert_ne!(item_digest(&a), item_digest(&changed), "{changed:?}");
        }
        // A name and a value cannot trade bytes.
        assert_ne!(item_digest(&item(&[("ab", A::S("c".into()))])), item_digest(&item(&[("a", A::S("bc".into()))])));
    }
}
