//! An application writer to run beside a data step, and the check afterwards that the step lost
//! nothing the application wrote.
//!
//! A migration runs while the application serves traffic, so a data path is tested that way:
//! [`AppWriter`] updates, deletes and puts items of the table with one write in flight per key,
//! and logs what DynamoDB acknowledged into a model of the table. After the step,
//! [`AppLog::check`] reads the table and reports every acknowledged write that is missing,
//! every deleted item that came back, and every attribute the step did not name that changed.
//!
//! The model is exact only while the writer is the table's only other writer, and only for
//! writes DynamoDB answered: a write that fails without an answer (a timeout) may or may not
//! have happened, so its key becomes uncertain and is left out of the check (and counted).
//! [`customer`] builds seed items with attributes of every awkward type, which a step that
//! rewrites whole items from a typed view of them would drop or alter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::data::{canonical_item, canonical_json, canonical_number};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::support::Item;

/// The writer stops by itself after this long, so that a test that never calls `stop` (or
/// hangs elsewhere) still ends.
const SAFETY_CAP: Duration = Duration::from_secs(10 * 60);
/// The longest one write may take, retries included, before its key is taken as uncertain.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the check's scan may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How the application writes.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Tasks writing in parallel; each owns a disjoint share of the keys.
    pub workers: usize,
    /// Writes per second over all workers.
    pub writes_per_second: f64,
    /// The weights of updates, deletes and puts. Each write picks its kind by these weights
    /// whatever the model says of its key, so updates of deleted keys (refused by their
    /// condition) and deletes of absent keys happen too, as they do in an application.
    pub mix: (u32, u32, u32),
    /// Keys beyond the seed's, absent at the start, that puts create.
    pub fresh_keys: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { workers: 8, writes_per_second: 300.0, mix: (6, 2, 2), fresh_keys: 200 }
    }
}

/// What the application did, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Acknowledged `UpdateItem`s.
    pub updates: u64,
    /// Acknowledged `DeleteItem`s.
    pub deletes: u64,
    /// Acknowledged `PutItem`s.
    pub puts: u64,
    /// Updates refused by their condition because the item did not exist: not written.
    pub not_written: u64,
    /// Writes that failed without an answer, leaving their key uncertain.
    pub uncertain: u64,
}

impl WriteCounts {
    fn add(&mut self, other: WriteCounts) {
        self.updates += other.updates;
        self.deletes += other.deletes;
        self.puts += other.puts;
        self.not_written += other.not_written;
        self.uncertain += other.uncertain;
    }
}

/// The kind of the last acknowledged write to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Update,
    Delete,
    Put,
}

/// What the model expects of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// The item, exactly.
    Present(Item),
    /// No item.
    Absent,
    /// A write failed without an answer; the key is not checked.
    Uncertain,
}

/// One key of the model: its key attributes, what the table should hold, and the last
/// acknowledged write (with the number that made its values unique), if the application wrote it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Item,
    pub expected: Expected,
    pub last_write: Option<(WriteKind, u64)>,
}

/// A running application writer; it owns its tasks, and dropping it aborts them.
pub struct AppWriter {
    plan: Arc<Plan>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<(Vec<(usize, Entry)>, WorkerLog)>,
    keys: Vec<String>,
    app_attribute: String,
}

/// What one worker saw, besides its share of the model.
#[derive(Default)]
struct WorkerLog {
    counts: WriteCounts,
    /// Violations seen while writing, which the table may no longer show when it is checked.
    observed: Vec<Violation>,
}

/// What the writer needs to make one write, shared by its workers.
struct Plan {
    client: Client,
    table: String,
    partition_key: String,
    app_attribute: String,
    new_item: Box<dyn Fn(u64, u64) -> Item + Send + Sync>,
    mix: (u32, u32, u32),
    /// Numbers writes so that every value written is unique, and a lost one detectable.
    counter: AtomicU64,
    /// Writes acknowledged so far, for tests that wait for some.
    acknowledged: AtomicU64,
}

impl AppWriter {
    /// Starts writing. `table` is the physical name, `keys` the key attribute names (partition
    /// key first), `seed` the items in the table now, and `app_attribute` the one attribute
    /// that updates set. `new_item(slot, n)` builds a whole item for a put: slots
    /// `0..seed.len()` are the seed's items in order, the next `fresh_keys` are new keys whose
    /// key attributes are those of `new_item(slot, 0)`; a put's key attributes are always the
    /// slot's. `n` is unique per write.
    ///
    /// Panics on a seed item without its key, or on a fresh key that repeats another: these
    /// are mistakes in the test.
    pub fn start(
        client: Client,
        table: &str,
        keys: &[&str],
        seed: Vec<Item>,
        app_attribute: &str,
        new_item: impl Fn(u64, u64) -> Item + Send + Sync + 'static,
        options: WriterOptions,
    ) -> AppWriter {
        assert!(options.workers > 0 && options.writes_per_second > 0.0, "{options:?}");
        let (update, delete, put) = options.mix;
        assert!(update + delete + put > 0, "the mix must have a kind of write: {options:?}");
        let keys: Vec<String> = keys.iter().map(|&k| k.to_owned()).collect();
        let seed_len = seed.len() as u64;
        let mut entries: Vec<Entry> = seed
            .into_iter()
            .map(|item| Entry { key: key_of(&item, &keys), expected: Expected::Present(item), last_write: None })
            .collect();
        entries.extend((seed_len..seed_len + options.fresh_keys).map(|slot| Entry {
            key: key_of(&new_item(slot, 0), &keys),
            expected: Expected::Absent,
            last_write: None,
        }));
        let mut seen = HashSet::new();
        for entry in &entries {
            assert_eq!(entry.key.len(), keys.len(), "an item lacks a key attribute: {:?}", entry.key);
            assert!(seen.insert(key_id(&entry.key)), "two slots share the key {}", key_id(&entry.key));
        }

        let plan = Arc::new(Plan {
            client,
            table: table.to_owned(),
            partition_key: keys[0].clone(),
            app_attribute: app_attribute.to_owned(),
            new_item: Box::new(new_item),
            mix: options.mix,
            counter: AtomicU64::new(1),
            acknowledged: AtomicU64::new(0),
        });
        // Every worker writes at its share of the rate, so the total is the one asked for.
        let period = Duration::from_secs_f64(options.workers as f64 / options.writes_per_second);
        let deadline = Instant::now() + SAFETY_CAP;
        let (stop, stopped) = watch::channel(false);
        let mut shares: Vec<Vec<(usize, Entry)>> = vec![Vec::new(); options.workers];
        for (slot, entry) in entries.into_iter().enumerate() {
            shares[slot % options.workers].push((slot, entry));
        }
        let mut tasks = JoinSet::new();
        for share in shares {
            tasks.spawn(work(Arc::clone(&plan), share, period, deadline, stopped.clone()));
        }
        AppWriter { plan, stop, tasks, keys, app_attribute: app_attribute.to_owned() }
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.plan.acknowledged.load(Ordering::Relaxed)
    }

    /// Stops writing, waits for the writes in flight, and returns the log.
    pub async fn stop(mut self) -> AppLog {
        // Workers look at the flag between writes, never in the middle of one.
        self.stop.send_replace(true);
        let mut entries = Vec::new();
        let mut counts = WriteCounts::default();
        let mut observed = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            let (share, log) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            entries.extend(share);
            counts.add(log.counts);
            observed.extend(log.observed);
        }
        entries.sort_by_key(|(slot, _)| *slot);
        AppLog {
            keys: self.keys,
            app_attribute: self.app_attribute,
            entries: entries.into_iter().map(|(_, entry)| entry).collect(),
            counts,
            observed,
        }
    }
}

/// One worker: writes to its own keys at its pace until told to stop or the safety cap.
async fn work(
    plan: Arc<Plan>,
    mut share: Vec<(usize, Entry)>,
    period: Duration,
    deadline: Instant,
    mut stopped: watch::Receiver<bool>,
) -> (Vec<(usize, Entry)>, WorkerLog) {
    let mut log = WorkerLog::default();
    let mut ticker = tokio::time::interval(period);
    // A slow write delays the next one rather than bringing a burst after it.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rng = fastrand::Rng::new();
    while !share.is_empty() {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            () = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => {}
        }
        if *stopped.borrow() {
            break;
        }
        let pick = rng.usize(..share.len());
        let (slot, entry) = &mut share[pick];
        if matches!(entry.expected, Expected::Uncertain) {
            // Its state is unknown, so nothing written to it now could be checked.
            continue;
        }
        write(&plan, *slot as u64, entry, &mut log, &mut rng).await;
    }
    (share, log)
}

/// Makes one write to `entry`'s key and logs what DynamoDB answered into it.
async fn write(plan: &Plan, slot: u64, entry: &mut Entry, log: &mut WorkerLog, rng: &mut fastrand::Rng) {
    let counts = &mut log.counts;
    let n = plan.counter.fetch_add(1, Ordering::Relaxed);
    let (update, delete, _) = plan.mix;
    let roll = rng.u32(..plan.mix.0 + plan.mix.1 + plan.mix.2);
    let table = &plan.table;
    let outcome = if roll < update {
        let value = format!("app update {n} of slot {slot}");
        let sent = plan
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(entry.key.clone()))
            .update_expression("SET #a = :v")
            // Without the condition an update of a deleted item would create a partial one.
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#a", &plan.app_attribute)
            .expression_attribute_names("#k", &plan.partition_key)
            .expression_attribute_values(":v", AttributeValue::S(value.clone()))
            .send();
        match tokio::time::timeout(WRITE_TIMEOUT, sent).await {
            Ok(Ok(_)) => {
                if let Expected::Present(item) = &mut entry.expected {
                    item.insert(plan.app_attribute.clone(), AttributeValue::S(value));
                } else {
                    // The model said absent, yet the update found an item: something other than
                    // this writer made it, a resurrection if the application had deleted it. The
                    // table may not show it by the check, so it is reported now; what the item
                    // holds besides the value just written is unknown, so it is checked no more.
                    let before = describe(entry.last_write)
                        .map_or_else(|| "it was never created".to_owned(), |write| format!("{write} deleted it"));
                    log.observed.push(Violation {
                        kind: ViolationKind::Resurrected,
                        key: key_id(&entry.key),
                        detail: format!("{before}, yet the application's update {n} found it"),
                    });
                    entry.expected = Expected::Uncertain;
                }
                counts.updates += 1;
                Ok(WriteKind::Update)
            }
            Ok(Err(e)) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                counts.not_written += 1;
                return;
            }
            Ok(Err(e)) => Err(DisplayErrorContext(e).to_string()),
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        }
    } else if roll < update + delete {
        let sent = plan.client.delete_item().table_name(table).set_key(Some(entry.key.clone())).send();
        match tokio::time::timeout(WRITE_TIMEOUT, sent).await {
            Ok(Ok(_)) => {
                entry.expected = Expected::Absent;
                counts.deletes += 1;
                Ok(WriteKind::Delete)
            }
            Ok(Err(e)) => Err(DisplayErrorContext(e).to_string()),
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        }
    } else {
        let mut item = (plan.new_item)(slot, n);
        item.extend(entry.key.clone());
        let sent = plan.client.put_item().table_name(table).set_item(Some(item.clone())).send();
        match tokio::time::timeout(WRITE_TIMEOUT, sent).await {
            Ok(Ok(_)) => {
                entry.expected = Expected::Present(item);
                counts.puts += 1;
                Ok(WriteKind::Put)
            }
            Ok(Err(e)) => Err(DisplayErrorContext(e).to_string()),
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        }
    };
    match outcome {
        Ok(kind) => {
            entry.last_write = Some((kind, n));
            plan.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => {
            eprintln!("app writer: write {n} to slot {slot} failed without an answer, its key is uncertain: {error}");
            entry.expected = Expected::Uncertain;
            counts.uncertain += 1;
        }
    }
}

/// The log of a stopped writer: the model of the table it leaves, and its counts.
#[derive(Debug, Clone)]
pub struct AppLog {
    keys: Vec<String>,
    app_attribute: String,
    entries: Vec<Entry>,
    counts: WriteCounts,
    observed: Vec<Violation>,
}

/// Which rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// The application attribute differs from the last acknowledged write of it.
    LostWrite,
    /// An item the application deleted (or never created) is there.
    Resurrected,
    /// An item the model holds is not there.
    Missing,
    /// Attributes the step did not name are gone.
    Dropped,
    /// Attributes the step did not name appeared.
    Added,
    /// Attributes the step did not name have other values (the application attribute
    /// included, where the application never wrote it).
    Changed,
    /// The step's own attributes fail the test's check.
    Step,
    /// An item the model has no key for.
    Unknown,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationKind::LostWrite => "acknowledged write lost",
            ViolationKind::Resurrected => "deleted item back",
            ViolationKind::Missing => "item missing",
            ViolationKind::Dropped => "unnamed attributes dropped",
            ViolationKind::Added => "unnamed attributes added",
            ViolationKind::Changed => "unnamed attributes changed",
            ViolationKind::Step => "step check failed",
            ViolationKind::Unknown => "unknown item",
        })
    }
}

/// One thing the table holds that it should not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The item's key in canonical DynamoDB JSON.
    pub key: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.kind, self.key, self.detail)
    }
}

/// The number of violations of each kind.
pub fn tally(violations: &[Violation]) -> BTreeMap<ViolationKind, usize> {
    let mut counts = BTreeMap::new();
    for violation in violations {
        *counts.entry(violation.kind).or_default() += 1;
    }
    counts
}

/// The counts by kind and the first violations, for a failed assertion's message: up to 20,
/// and the first of every kind among them, since one kind can outnumber the rest.
pub fn summary(violations: &[Violation]) -> String {
    let tally = tally(violations);
    let counts: Vec<String> = tally.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
    let mut text = format!("{} violations ({})", violations.len(), counts.join(", "));
    let per_kind = (20 / tally.len().max(1)).max(1);
    for kind in tally.keys() {
        for violation in violations.iter().filter(|v| v.kind == *kind).take(per_kind) {
            text.push_str(&format!("\n  {violation}"));
        }
    }
    text
}

impl AppLog {
    /// Writes DynamoDB acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.counts.updates + self.counts.deletes + self.counts.puts
    }

    pub fn counts(&self) -> WriteCounts {
        self.counts
    }

    /// The model, one entry per key the writer knows, seed keys first in the seed's order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads the whole table with a consistent scan and returns every violation: those the
    /// writer saw while it ran (an update that found an item it had deleted), an
    /// acknowledged write of the application attribute missing, a deleted item back, an item
    /// missing, an item the model does not know, and any attribute other than
    /// `step_attributes` that is not the model's, present where the model has none or absent
    /// where it has one. Values compare in canonical DynamoDB JSON with numbers in canonical
    /// form, since DynamoDB itself stores `1.50` as `1.5`. `check_step` checks the step's own
    /// attributes of every item there is.
    ///
    /// Panics when the table cannot be read.
    pub async fn check(
        &self,
        client: &Client,
        table: &str,
        step_attributes: &[&str],
        check_step: impl Fn(&Item) -> Result<(), String>,
    ) -> Vec<Violation> {
        let mut found = tokio::time::timeout(CHECK_TIMEOUT, self.scan(client, table))
            .await
            .unwrap_or_else(|_| panic!("scanning {table} for the check took over {CHECK_TIMEOUT:?}"));
        let mut violations = self.observed.clone();
        for entry in &self.entries {
            let id = key_id(&entry.key);
            let item = found.remove(&id);
            let mut violation = |kind, detail| violations.push(Violation { kind, key: id.clone(), detail });
            match (&entry.expected, item) {
                (Expected::Uncertain, _) | (Expected::Absent, None) => {}
                (Expected::Absent, Some(item)) => {
                    let before = describe(entry.last_write)
                        .map_or_else(|| "it was never created".to_owned(), |write| format!("{write} deleted it"));
                    violation(ViolationKind::Resurrected, format!("{before}, yet it holds {}", short(&item)));
                }
                (Expected::Present(_), None) => {
                    let before = describe(entry.last_write)
                        .map_or_else(|| "it was in the seed".to_owned(), |write| format!("{write} left it there"));
                    violation(ViolationKind::Missing, format!("{before}, yet it is not there"));
                }
                (Expected::Present(expected), Some(item)) => {
                    self.compare(entry, expected, &item, step_attributes, &mut violation);
                    if let Err(error) = check_step(&item) {
                        violation(ViolationKind::Step, error);
                    }
                }
            }
        }
        for (id, item) in found {
            if let Err(error) = check_step(&item) {
                violations.push(Violation { kind: ViolationKind::Step, key: id.clone(), detail: error });
            }
            violations.push(Violation { kind: ViolationKind::Unknown, key: id, detail: short(&item) });
        }
        violations
    }

    async fn scan(&self, client: &Client, table: &str) -> HashMap<String, Item> {
        let mut found = HashMap::new();
        let mut items = client.scan().table_name(table).consistent_read(true).into_paginator().items().send();
        while let Some(item) = items.next().await {
            let item = item.unwrap_or_else(|e| panic!("scanning {table}: {}", DisplayErrorContext(e)));
            found.insert(key_id(&key_of(&item, &self.keys)), item);
        }
        found
    }

    /// Compares an item that should be there with the model, attribute by attribute.
    fn compare(
        &self,
        entry: &Entry,
        expected: &Item,
        item: &Item,
        step_attributes: &[&str],
        violation: &mut impl FnMut(ViolationKind, String),
    ) {
        let app = self.app_attribute.as_str();
        if !step_attributes.contains(&app) && expected.get(app).map(canonical) != item.get(app).map(canonical) {
            let (want, got) = (shown(expected.get(app)), shown(item.get(app)));
            match (entry.last_write, describe(entry.last_write)) {
                (Some((WriteKind::Update | WriteKind::Put, _)), Some(write)) => {
                    violation(ViolationKind::LostWrite, format!("{write} set {app} to {want}, yet it is {got}"));
                }
                _ => violation(ViolationKind::Changed, format!("{app} is {got}, not {want}")),
            }
        }
        // The attributes the step did not name, other than the application's.
        let unnamed = |name: &str| name != app && !step_attributes.contains(&name);
        let mut dropped: Vec<&str> =
            expected.keys().map(String::as_str).filter(|name| unnamed(name) && !item.contains_key(*name)).collect();
        let mut added: Vec<&str> =
            item.keys().map(String::as_str).filter(|name| unnamed(name) && !expected.contains_key(*name)).collect();
        let mut changed: Vec<String> = expected
            .iter()
            .filter(|(name, _)| unnamed(name))
            .filter_map(|(name, want)| {
                let got = item.get(name)?;
                (canonical(want) != canonical(got))
                    .then(|| format!("{name} is {}, not {}", shown(Some(got)), shown(Some(want))))
            })
            .collect();
        for (kind, names) in [(ViolationKind::Dropped, &mut dropped), (ViolationKind::Added, &mut added)] {
            if !names.is_empty() {
                names.sort_unstable();
                violation(kind, names.join(", "));
            }
        }
        if !changed.is_empty() {
            changed.sort_unstable();
            violation(ViolationKind::Changed, changed.join("; "));
        }
    }
}

/// The last acknowledged write, named for a message.
fn describe(last_write: Option<(WriteKind, u64)>) -> Option<String> {
    let (kind, n) = last_write?;
    Some(format!("the application's {} {n}", format!("{kind:?}").to_lowercase()))
}

/// The key attributes of an item.
fn key_of(item: &Item, keys: &[String]) -> Item {
    keys.iter().filter_map(|k| Some((k.clone(), item.get(k)?.clone()))).collect()
}

/// A key as text that is equal exactly when the keys are.
fn key_id(key: &Item) -> String {
    canonical_item(key).to_string()
}

/// A value in canonical DynamoDB JSON, with its numbers in canonical form.
fn canonical(value: &AttributeValue) -> serde_json::Value {
    canonical_json(&numbers_canonical(value))
}

fn numbers_canonical(value: &AttributeValue) -> AttributeValue {
    let number = |text: &String| match canonical_number(text) {
        Some((negative, digits, exponent)) => format!("{}{digits}E{exponent}", if negative { "-" } else { "" }),
        None => text.clone(),
    };
    match value {
        AttributeValue::N(n) => AttributeValue::N(number(n)),
        AttributeValue::Ns(ns) => AttributeValue::Ns(ns.iter().map(number).collect()),
        AttributeValue::L(list) => AttributeValue::L(list.iter().map(numbers_canonical).collect()),
        AttributeValue::M(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), numbers_canonical(v))).collect())
        }
        other => other.clone(),
    }
}

fn shown(value: Option<&AttributeValue>) -> String {
    value.map_or_else(|| "absent".to_owned(), |value| canonical_json(value).to_string())
}

/// An item for a message, cut short.
fn short(item: &Item) -> String {
    let text = canonical_item(item).to_string();
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// A customer as an application stores it: the key `customer_nr` (N), `name` and `email` (S,
/// mixed case inside spaces), and attributes no migration names, of the types a typed rewrite
/// loses or alters: `phone` (S), `tags` (SS), `big` (an N of 38 digits, more than an f64
/// holds), `blob` (B with zero bytes inside) and `prefs` (M holding an NS that only a 38-digit
/// decimal tells apart).
pub fn customer(i: u64) -> Item {
    let weights = vec!["0.1".to_owned(), "0.10000000000000000000000000000000000001".to_owned()];
    HashMap::from([
        ("customer_nr".to_owned(), AttributeValue::N(i.to_string())),
        ("name".to_owned(), AttributeValue::S(format!("Customer {i}"))),
        ("email".to_owned(), AttributeValue::S(format!("  Customer.{i}@Example.COM "))),
        ("phone".to_owned(), AttributeValue::S(format!("+44 20 7946 {:04}", i % 10_000))),
        ("tags".to_owned(), AttributeValue::Ss(vec!["customer".to_owned(), format!("cohort-{}", i % 12)])),
        ("big".to_owned(), AttributeValue::N(format!("123456789012345678901234567890{:08}", i % 100_000_000))),
        ("blob".to_owned(), AttributeValue::B(Blob::new(vec![0, 1, 0, 2, (i % 256) as u8, 0]))),
        ("prefs".to_owned(), AttributeValue::M(HashMap::from([("weights".to_owned(), AttributeValue::Ns(weights))]))),
    ])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::types::AttributeValue;
    use dynamo_migrate::KeyAttr;

    use super::{AppWriter, Entry, Expected, ViolationKind, WriteKind, WriterOptions, customer, key_id, summary};
    use crate::support::{self, Item};

    /// What this test's application puts: a customer with a name unique to the write.
    fn put_customer(i: u64, n: u64) -> Item {
        let mut item = customer(i);
        item.insert("name".to_owned(), AttributeValue::S(format!("Customer {i}, put {n}")));
        item
    }

    /// The step attribute of this test must, where present, be the email's lowercase.
    fn lowercase_email(item: &Item) -> Result<(), String> {
        match (item.get("email"), item.get("email_lowercase")) {
            (_, None) => Ok(()),
            (Some(AttributeValue::S(email)), Some(AttributeValue::S(lower))) if *lower == email.to_lowercase() => {
                Ok(())
            }
            (email, lower) => Err(format!("email_lowercase is {lower:?} for the email {email:?}")),
        }
    }

    async fn set(client: &Client, table: &str, entry: &Entry, attribute: &str, value: AttributeValue) {
        client
            .update_item()
            .table_name(table)
            .set_key(Some(entry.key.clone()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_check_reports_every_kind_of_tampering_and_nothing_else() {
        let client = support::client().await;
        let table = support::names("app_writer_check").physical("customers");
        support::create_table_keyed_by(&client, &table, KeyAttr::n("customer_nr")).await;
        let seed: Vec<Item> = (0..48).map(customer).collect();
        for item in &seed {
            client.put_item().table_name(&table).set_item(Some(item.clone())).send().await.unwrap();
        }

        let options = WriterOptions { workers: 4, writes_per_second: 400.0, mix: (2, 1, 1), fresh_keys: 8 };
        let writer = AppWriter::start(client.clone(), &table, &["customer_nr"], seed, "name", put_customer, options);
        // Enough writes that every key was likely written several times; bounded, not timed.
        for _ in 0..600 {
            if writer.acknowledged() >= 400 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = writer.stop().await;
        let counts = log.counts();
        assert!(log.acknowledged() >= 400, "{counts:?}");
        assert_eq!(counts.uncertain, 0, "{counts:?}");
        assert!(counts.updates > 0 && counts.deletes > 0 && counts.puts > 0, "{counts:?}");

        // Untouched, the table is exactly what the application wrote.
        let violations = log.check(&client, &table, &["email_lowercase"], lowercase_email).await;
        assert!(violations.is_empty(), "{}", summary(&violations));

        // Tamper behind the application's back, each time with a key of its own.
        let updated = |e: &&Entry| {
            matches!(e.expected, Expected::Present(_)) && matches!(e.last_write, Some((WriteKind::Update, _)))
        };
        let deleted = |e: &&Entry| matches!(e.last_write, Some((WriteKind::Delete, _)));
        let present = |e: &&Entry| matches!(e.expected, Expected::Present(_)) && !updated(e);
        let lost = log.entries().iter().find(updated).expect("an item the application updated last");
        let resurrected = log.entries().iter().find(deleted).expect("an item the application deleted last");
        let others: Vec<&Entry> = log.entries().iter().filter(present).take(5).collect();
        let [changed, dropped, added, missing, step] = others[..] else {
            panic!("five items the application did not update last are needed: {counts:?}");
        };
        set(&client, &table, lost, "name", AttributeValue::S("overwritten by an old copy".into())).await;
        let mut back = customer(0);
        back.extend(resurrected.key.clone());
        client.put_item().table_name(&table).set_item(Some(back)).send().await.unwrap();
        set(&client, &table, changed, "big", AttributeValue::N("12345678901234567000000000000000000000".into())).await;
        client
            .update_item()
            .table_name(&table)
            .set_key(Some(dropped.key.clone()))
            .update_expression("REMOVE #a")
            .expression_attribute_names("#a", "blob")
            .send()
            .await
            .unwrap();
        set(&client, &table, added, "extra", AttributeValue::Bool(true)).await;
        client.delete_item().table_name(&table).set_key(Some(missing.key.clone())).send().await.unwrap();
        set(&client, &table, step, "email_lowercase", AttributeValue::S("not the email".into())).await;
        let unknown = customer(1_000_000);
        client.put_item().table_name(&table).set_item(Some(unknown.clone())).send().await.unwrap();
        // A step attribute that is right passes, and is not reported as added.
        let Expected::Present(item) = &changed.expected else { unreachable!() };
        let Some(AttributeValue::S(email)) = item.get("email") else { panic!("{item:?}") };
        set(&client, &table, changed, "email_lowercase", AttributeValue::S(email.to_lowercase())).await;

        let violations = log.check(&client, &table, &["email_lowercase"], lowercase_email).await;
        let got: BTreeSet<(ViolationKind, String)> = violations.iter().map(|v| (v.kind, v.key.clone())).collect();
        let want: BTreeSet<(ViolationKind, String)> = [
            (ViolationKind::LostWrite, lost),
            (ViolationKind::Resurrected, resurrected),
            (ViolationKind::Changed, changed),
            (ViolationKind::Dropped, dropped),
            (ViolationKind::Added, added),
            (ViolationKind::Missing, missing),
            (ViolationKind::Step, step),
        ]
        .into_iter()
        .map(|(kind, entry)| (kind, key_id(&entry.key)))
        .chain([(ViolationKind::Unknown, key_id(&super::key_of(&unknown, &["customer_nr".to_owned()])))])
        .collect();
        assert_eq!(got, want, "{}", summary(&violations));
        assert_eq!(violations.len(), want.len(), "{}", summary(&violations));
    }
}
