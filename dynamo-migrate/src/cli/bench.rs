//! `bench`: the data engine's speed against what DynamoDB Local allows, in one run.
//!
//! Fills a table with N items (about 300 bytes each, or `--item-bytes`), then:
//! (a) the naive copy, a scan and one `PutItem` per item, as a hand-written script does;
//! (b) the copy ceiling, a raw 8-segment scan feeding 32 batch writers, written here without the
//! engine; (c) the engine's typed transform into a new table; (d) the in-place ceiling, a raw
//! 8-segment scan feeding 32 concurrent conditional `UpdateItem` calls (conditional single-item
//! writes cannot be batched, so this is what an in-place pass on a live table can reach);
//! (e) the engine's typed backfill in place; (f) the check ceiling, raw 8-segment consistent
//! scans of the source and the engine's copy at once; (g) the convergence check of that copy
//! (both tables scanned, the source's items through the same typed transform, compared by key).
//! Each engine pass runs in a process of its own, so that its peak memory is the pass's alone.
//! Then the transform of a rebuild's export files against reading them (see `export`).
//! The last lines are `engine/ceiling = R` (copy), `in-place/ceiling = R` and `check/ceiling = R`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest, ScalarAttributeType,
    WriteRequest,
};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod bridge;
mod export;

use super::{Failure, Output, usage};
use crate::client::{Target, connect};
use crate::data::{DataContext, Item};
use crate::local::{Docker, DynamoDbLocal, LocalOptions};
use crate::names::TableNames;

/// Scan segments and writes in flight of the ceilings, as the engine's defaults.
const SEGMENTS: i32 = 8;
const WRITERS: usize = 32;

/// Measure the data engine against DynamoDB Local
///
/// Items/s of a naive one-by-one copy, of a raw parallel copy and a raw parallel conditional update (the ceilings), and of the engine's
/// typed transform into a new table and in place, with each pass's peak memory.
/// Build it in release (`cargo xtask bench` does).
///
/// Example: `cargo xtask bench --items 50000`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Items in the source table: 1 to 100000000.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    items: u64,
    /// About how many bytes each item has in DynamoDB: 300 (the smallest item the benchmark
    /// writes) to 400000 (DynamoDB's limit is 400 KB).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(300..=400_000))]
    item_bytes: u64,
    /// Skip the naive one-by-one copy (it is slow on large tables).
    #[arg(long, alias = "skip-seed")]
    skip_naive: bool,
    /// How many times each ceiling and engine pass runs; the best run of each counts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Measure only the transform of a rebuild's export files (no DynamoDB Local).
    #[arg(long)]
    export_only: bool,
    /// Use this running DynamoDB Local instead of starting one.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    endpoint: Option<String>,
    /// Run one engine pass in this process and print what it did (the benchmark starts itself
    /// this way for each engine pass).
    #[arg(long, hide = true, requires_all = ["endpoint", "source", "target"])]
    pass: Option<PassKind>,
    #[arg(long, hide = true)]
    source: Option<String>,
    #[arg(long, hide = true)]
    target: Option<String>,
    /// With `--pass shared`: the benchmark's migration to run, and its worker processes.
    #[arg(long, hide = true)]
    version: Option<u32>,
    #[arg(long, hide = true)]
    workers: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PassKind {
    Copy,
    InPlace,
    Check,
    /// A migration whose one data step copies the source, shared with `--workers` processes.
    Shared,
    /// One of those worker processes.
    Worker,
}

/// The benchmark's item: about 300 bytes in DynamoDB, more with a longer note.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    customer: String,
    email: String,
    city: String,
    total: f64,
    items: u32,
    placed_at: u64,
    tags: Vec<String>,
    note: String,
}

/// The typed transform's output: the order with a derived attribute, named as the pass says.
#[derive(Debug, Serialize)]
struct OrderV2 {
    #[serde(flatten)]
    order: Order,
    #[serde(flatten)]
    derived: BTreeMap<String, u64>,
}

const NOTE: &str = "Leave the parcel with the neighbour at number twelve if nobody answers the door; \
                    call ahead on weekdays between nine and five, thanks.";

fn order(i: u64, item_bytes: u64) -> Order {
    let mut note = NOTE.to_owned();
    while ((note.len() + 300 - NOTE.len()) as u64) < item_bytes {
        note.push_str(" And thank you again.");
    }
    Order {
        id: format!("order-{i:010}"),
        customer: format!("Customer Number {}", i % 9973),
        email: format!("customer{}@example.com", i % 9973),
        city: ["Amsterdam", "Berlin", "Lisbon", "Oslo", "Vienna"][(i % 5) as usize].to_owned(),
        total: (i % 100_000) as f64 / 100.0,
        items: (i % 17) as u32 + 1,
        placed_at: 1_700_000_000 + i,
        tags: vec!["priority".to_owned(), format!("batch-{}", i % 31), "web".to_owned()],
        note,
    }
}

fn derive(order: Order, attribute: &str) -> OrderV2 {
    let cents = (order.total * 100.0).round() as u64;
    OrderV2 { order, derived: [(attribute.to_owned(), cents)].into() }
}

/// A line of `/proc/self/status` in MiB: `VmHWM` is the peak resident memory, `VmRSS` the current.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The process's peak resident memory so far, in MiB (0 where `/proc` does not say).
pub(crate) fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Samples `VmRSS` every 50 ms until dropped and keeps the largest: the peak of one phase,
/// whether or not the kernel lets `VmHWM` be reset.
struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn({
            let peak = peak.clone();
            async move {
                loop {
                    peak.fetch_max((status_mib("VmRSS:") * 1024.0) as u64, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        });
        RssSampler { peak, task }
    }

    fn stop(self) -> f64 {
        self.task.abort();
        self.peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    }
}

async fn create_table(client: &Client, name: &str) -> anyhow::Result<()> {
    client
        .create_table()
        .table_name(name)
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build()?)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(())
}

impl BenchArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        if let Some(kind) = self.pass {
            return self.run_one_pass(kind).await;
        }
        if self.export_only {
            let [read, copied, transformed] = export::bench(out, self.items, self.item_bytes, self.rounds).await?;
            out.facts(serde_json::json!({
                "items": self.items,
                "item_bytes": self.item_bytes,
                "items_per_s": { "export_read": read, "export_copy": copied, "export_transform": transformed },
                "export_transform_over_read": transformed / read,
                "export_transform_over_copy": transformed / copied,
            }));
            return Ok(());
        }
        let options = LocalOptions {
            endpoint: self.endpoint.clone(),
            docker: Docker::Never,
            for_throughput: true,
            ..LocalOptions::default()
        };
        let server = DynamoDbLocal::start(&options).await.map_err(usage)?;
        let client = connect(&Target::local(server.endpoint())).await;
        let prefix = format!("bench{}_", std::process::id());
        let table = |name: &str| format!("{prefix}{name}");
        let ctx = DataContext::new(client.clone(), TableNames::new(prefix.clone()));
        out.line(format_args!(
            "DynamoDB Local at {} ({}), {} items of about {} bytes",
            server.endpoint(),
            server.backend(),
            self.items,
            self.item_bytes
        ));

        create_table(&client, &table("source")).await?;
        let start = Instant::now();
        let chunk = 5_000;
        let mut next = 0;
        while next < self.items {
            let end = (next + chunk).min(self.items);
            let items: Vec<Item> = (next..end)
                .map(|i| serde_dynamo::to_item(order(i, self.item_bytes)).expect("an order is an item"))
                .collect();
            ctx.put_items("source", items).await?;
            next = end;
        }
        report(out, "fill (engine writers)", self.items, start);

        let mut naive = None;
        if !self.skip_naive {
            create_table(&client, &table("naive")).await?;
            let start = Instant::now();
            let copied = naive_copy(&client, &table("source"), &table("naive")).await?;
            naive = Some(report(out, "(a) naive copy: scan + PutItem each", copied, start));
        }

        // Each ceiling and engine pass runs `rounds` times (twice by default), alternately, and the
        // best run of each counts: DynamoDB Local's JIT and the machine's other load make any
        // single run noisy.
        let (mut ceiling, mut engine, mut in_place_ceiling, mut in_place) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut copy_rss, mut in_place_rss) = (0.0f64, 0.0f64);
        for round in 1..=self.rounds {
            let target = table(&format!("ceiling{round}"));
            create_table(&client, &target).await?;
            let start = Instant::now();
            let copied = ceiling_copy(&client, &table("source"), &target).await?;
            let what = format!("(b) copy ceiling, run {round}: raw {SEGMENTS}-segment scan + {WRITERS} batch writers");
            ceiling = ceiling.max(report(out, &what, copied, start));

            let target = table(&format!("engine{round}"));
            create_table(&client, &target).await?;
            let (rate, rss) = self.child_pass(server.endpoint(), PassKind::Copy, &table("source"), &target)?;
            out.line(format_args!(
                "(c) engine copy, run {round}: typed transform into a new table: {rate:.0} items/s, peak RSS {rss:.1} MiB"
            ));
            engine = engine.max(rate);
            copy_rss = copy_rss.max(rss);
        }
        // The check of the first copy, against two raw scans of the same tables, before the
        // passes in place change the source.
        let (mut check_ceiling, mut check, mut check_rss) = (0.0f64, 0.0f64, 0.0f64);
        for round in 1..=self.rounds {
            let start = Instant::now();
            let scanned = ceiling_scans(&client, &[table("source"), table("engine1")]).await?;
            let what =
                format!("(f) check ceiling, run {round}: raw {SEGMENTS}-segment consistent scans of both tables");
            check_ceiling = check_ceiling.max(report(out, &what, scanned, start));
            let (rate, rss) =
                self.child_pass(server.endpoint(), PassKind::Check, &table("source"), &table("engine1"))?;
            out.line(format_args!(
                "(g) convergence check, run {round}: both tables, the source through the typed transform, compared by key: {rate:.0} items/s, peak RSS {rss:.1} MiB"
            ));
            check = check.max(rate);
            check_rss = check_rss.max(rss);
        }
        // One pass of a migration in one process, and the same shared by 4 worker processes
        // with the run only coordinating: what sharing costs, on one DynamoDB Local.
        let (mut single, mut shared, mut worker_rss) = (0.0f64, 0.0f64, 0.0f64);
        for round in 1..=self.rounds {
            for (workers, version) in [(0, round * 2 - 1), (4, round * 2)] {
                create_table(&client, &table(&format!("shared{version}"))).await?;
                let (rate, rss) = self.child_shared(server.endpoint(), &prefix, version, workers)?;
                if workers == 0 {
                    out.line(format_args!(
                        "(i) engine copy in a migration, one process, run {round}: {rate:.0} items/s, peak RSS {rss:.1} MiB"
                    ));
                    single = single.max(rate);
                } else {
                    out.line(format_args!(
                        "(j) the same shared by {workers} worker processes, run {round}: {rate:.0} items/s, peak RSS per worker {rss:.1} MiB"
                    ));
                    shared = shared.max(rate);
                    worker_rss = worker_rss.max(rss);
                }
            }
        }
        // In place after every copy, so that the copies read the items as filled.
        let mut batched_ceiling = 0.0f64;
        for round in 1..=self.rounds {
            let start = Instant::now();
            let attribute = format!("ceiling{round}");
            let updated = ceiling_update(&client, &table("source"), &attribute).await?;
            let what = format!(
                "(d) in-place ceiling, run {round}: raw {SEGMENTS}-segment scan + {WRITERS} concurrent conditional UpdateItem"
            );
            in_place_ceiling = in_place_ceiling.max(report(out, &what, updated, start));

            let start = Instant::now();
            let updated = ceiling_update_batched(&client, &table("source"), &format!("batched{round}")).await?;
            let what = format!(
                "(h) in-place batched ceiling, run {round}: raw {SEGMENTS}-segment scan + {WRITERS} concurrent BatchExecuteStatement of 25 conditional UPDATEs"
            );
            batched_ceiling = batched_ceiling.max(report(out, &what, updated, start));

            let (rate, rss) =
                self.child_pass(server.endpoint(), PassKind::InPlace, &table("source"), &format!("engine{round}"))?;
            out.line(format_args!(
                "(e) engine in place, run {round}: typed backfill, a conditional UpdateItem per item: {rate:.0} items/s, peak RSS {rss:.1} MiB"
            ));
            in_place = in_place.max(rate);
            in_place_rss = in_place_rss.max(rss);
        }
        let (bridge, bridge_rss) =
            bridge::bench(out, &client, server.endpoint(), &prefix, self.items, self.item_bytes, self.rounds).await?;
        let [export_read, export_copy, export_transform] =
            export::bench(out, self.items, self.item_bytes, self.rounds).await?;
        out.line(format_args!(
            "peak RSS of the runner during a pass: copy {copy_rss:.1} MiB, in place {in_place_rss:.1} MiB, check {check_rss:.1} MiB"
        ));
        if let Some(naive) = naive {
            out.line(format_args!("engine/naive = {:.1}", engine / naive));
        }
        out.line(format_args!("engine/ceiling = {:.2}", engine / ceiling));
        out.line(format_args!("in-place/ceiling = {:.2}", in_place / in_place_ceiling));
        out.line(format_args!("check/ceiling = {:.2}", check / check_ceiling));
        out.line(format_args!("batched/single-item ceiling = {:.2}", batched_ceiling / in_place_ceiling));
        out.line(format_args!("workers/single = {:.2}", shared / single));
        out.line(format_args!("bridge/copy ceiling = {:.2}", bridge / ceiling));
        out.facts(serde_json::json!({
            "items": self.items,
            "item_bytes": self.item_bytes,
            "items_per_s": {
                "naive_copy": naive,
                "copy_ceiling": ceiling,
                "engine_copy": engine,
                "in_place_ceiling": in_place_ceiling,
                "engine_in_place": in_place,
                "check_ceiling": check_ceiling,
                "check": check,
                "in_place_batched_ceiling": batched_ceiling,
                "migration_single": single,
                "migration_4_workers": shared,
                "bridge": bridge,
            },
            "peak_rss_mib": { "copy": copy_rss, "in_place": in_place_rss, "check": check_rss, "worker": worker_rss, "bridge": bridge_rss },
            "engine_over_ceiling": engine / ceiling,
            "in_place_over_ceiling": in_place / in_place_ceiling,
            "check_over_ceiling": check / check_ceiling,
            "batched_over_single_item": batched_ceiling / in_place_ceiling,
            "workers_over_single": shared / single,
            "bridge_over_copy_ceiling": bridge / ceiling,
            "export_items_per_s": { "read": export_read, "copy": export_copy, "transform": export_transform },
            "export_transform_over_read": export_transform / export_read,
            "export_transform_over_copy": export_transform / export_copy,
        }));
        Ok(())
    }

    /// Runs one engine pass in a child process (this binary again) and returns its items/s and
    /// its peak resident memory.
    fn child_pass(&self, endpoint: &str, kind: PassKind, source: &str, target: &str) -> anyhow::Result<(f64, f64)> {
        let kind = match kind {
            PassKind::Copy => "copy",
            PassKind::InPlace => "in-place",
            PassKind::Check => "check",
            PassKind::Shared | PassKind::Worker => unreachable!("started by child_shared"),
        };
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["bench", "--pass", kind, "--endpoint", endpoint, "--source", source, "--target", target])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running an engine pass in a child process")?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(out.status.success(), "the engine pass failed: {text}");
        let field = |name: &str| -> anyhow::Result<f64> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("the engine pass printed no {name}: {text}"))
        };
        Ok((field("items_per_s")?, field("peak_rss_mib")?))
    }

    /// Runs migration `version` of the benchmark's migrations (see `shared_migrations`) in a
    /// child process, its pass shared with `workers` more child processes (the run then only
    /// coordinates); returns items/s and the peak RSS of the run, or with workers the largest
    /// of theirs.
    fn child_shared(&self, endpoint: &str, prefix: &str, version: u32, workers: u32) -> anyhow::Result<(f64, f64)> {
        let exe = std::env::current_exe()?;
        let args = |kind: &str| {
            let mut args: Vec<String> =
                ["bench", "--pass", kind, "--endpoint", endpoint, "--source", prefix, "--target", "-"]
                    .map(str::to_owned)
                    .to_vec();
            args.extend(["--version".to_owned(), version.to_string(), "--workers".to_owned(), workers.to_string()]);
            args
        };
        let children: Vec<std::process::Child> = (0..workers)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(args("worker"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
            })
            .collect::<Result<_, _>>()
            .context("starting a worker process")?;
        let run = std::process::Command::new(&exe)
            .args(args("shared"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running a migration in a child process")?;
        let field = |text: &str, name: &str| -> anyhow::Result<f64> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("the child printed no {name}: {text}"))
        };
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        anyhow::ensure!(run.status.success(), "the migration failed: {text}");
        let mut rss = field(&text, "peak_rss_mib")?;
        if workers > 0 {
            rss = 0.0;
            for child in children {
                let out = child.wait_with_output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                anyhow::ensure!(out.status.success(), "a worker failed: {text}");
                rss = rss.max(field(&text, "peak_rss_mib")?);
            }
        }
        Ok((field(&text, "items_per_s")?, rss))
    }

    /// The body of a child process: one engine pass, then what it did on one line.
    async fn run_one_pass(self, kind: PassKind) -> Result<(), Failure> {
        let (endpoint, source, target) =
            (self.endpoint.unwrap_or_default(), self.source.unwrap_or_default(), self.target.unwrap_or_default());
        let client = connect(&Target::local(&endpoint)).await;
        if matches!(kind, PassKind::Shared | PassKind::Worker) {
            let (prefix, version, workers) = (source, self.version.unwrap_or(1), self.workers.unwrap_or(0));
            let names = TableNames::new(prefix);
            let migrations = shared_migrations(version);
            let sampler = RssSampler::start();
            let start = Instant::now();
            let items = if kind == PassKind::Shared {
                let sharing = match workers {
                    0 => crate::data::Sharing::Alone,
                    n => crate::data::Sharing::Open { work: false, workers: n, max_write_units: None },
                };
                let migrator = crate::migrator::Migrator::new(client, names, true, "bench").with_sharing(sharing);
                let report =
                    migrator.run(&migrations, Some(version)).await.map_err(|f| anyhow::anyhow!("{}", f.error))?;
                report.applied.iter().flat_map(|m| &m.steps).filter_map(|s| s.data).map(|d| d.written).sum()
            } else {
                let options = crate::workers::WorkerOptions {
                    wait_for_run: std::time::Duration::from_secs(60),
                    ..crate::workers::WorkerOptions::default()
                };
                let (_, cancel) = tokio::sync::watch::channel(false);
                let done = crate::workers::work(&client, &names, &migrations, &options, cancel).await?;
                done.passes.iter().map(|p| p.report.written).sum::<u64>()
            };
            let secs = start.elapsed().as_secs_f64();
            let peak = sampler.stop().max(peak_rss_mib());
            println!("items={items} items_per_s={:.1} peak_rss_mib={peak:.1}", items as f64 / secs);
            return Ok(());
        }
        if kind == PassKind::Check {
            let sampler = RssSampler::start();
            let check = crate::rebuild::bench_check(
                client,
                &source,
                &target,
                crate::data::typed_map(|o: Order| Some(derive(o, "total_cents")), crate::data::Change::Keep),
                SEGMENTS as u32,
            )
            .await?;
            // The comparison's own time, as the ceiling's: without the process's start.
            let secs = check.millis as f64 / 1000.0;
            let peak = sampler.stop().max(peak_rss_mib());
            if !check.is_clean() {
                return Err(anyhow::anyhow!(
                    "the engine's copy is not the transform of the source: {}",
                    check.summary()
                )
                .into());
            }
            let items = check.old_items + check.new_items;
            println!("items={items} items_per_s={:.1} peak_rss_mib={peak:.1}", items as f64 / secs);
            return Ok(());
        }
        let ctx = DataContext::new(client, TableNames::new(""));
        let sampler = RssSampler::start();
        let start = Instant::now();
        let done = match kind {
            PassKind::Copy => {
                ctx.pass(&source)
                    .into_physical(target)
                    .segments(SEGMENTS as u32)
                    .transform(|o: Order| Some(derive(o, "total_cents")))
                    .await?
            }
            PassKind::InPlace => {
                ctx.pass(&source).segments(SEGMENTS as u32).transform(move |o: Order| Some(derive(o, &target))).await?
            }
            PassKind::Check | PassKind::Shared | PassKind::Worker => unreachable!("run above"),
        };
        let secs = start.elapsed().as_secs_f64();
        let peak = sampler.stop().max(peak_rss_mib());
        println!("items={} items_per_s={:.1} peak_rss_mib={peak:.1}", done.written, done.written as f64 / secs);
        Ok(())
    }
}

fn report(out: &Output, what: &str, items: u64, start: Instant) -> f64 {
    let secs = start.elapsed().as_secs_f64();
    let rate = items as f64 / secs;
    out.line(format_args!("{what}: {items} items in {secs:.2} s = {rate:.0} items/s"));
    rate
}

/// The naive copy: scan page by page and put each item with its own call.
async fn naive_copy(client: &Client, source: &str, target: &str) -> anyhow::Result<u64> {
    let mut copied = 0;
    let mut items = client.scan().table_name(source).into_paginator().items().send();
    while let Some(item) = items.next().await {
        client.put_item().table_name(target).set_item(Some(item?)).send().await?;
        copied += 1;
    }
    Ok(copied)
}

/// The copy ceiling: what a hand-written copy reaches without the engine's transform,
/// checkpoints or accounting: 8 scan segments feed a bounded channel drained by 32 batch writers.
async fn ceiling_copy(client: &Client, source: &str, target: &str) -> anyhow::Result<u64> {
    let (tx, rx) = mpsc::channel::<Vec<WriteRequest>>(WRITERS * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut scanners = tokio::task::JoinSet::new();
    for segment in 0..SEGMENTS {
        let (client, source, tx) = (client.clone(), source.to_owned(), tx.clone());
        scanners.spawn(async move {
            let mut pages =
                client.scan().table_name(source).segment(segment).total_segments(SEGMENTS).into_paginator().send();
            while let Some(page) = pages.next().await {
                let mut batch = Vec::with_capacity(25);
                for item in page?.items.unwrap_or_default() {
                    batch.push(
                        WriteRequest::builder()
                            .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                            .build(),
                    );
                    if batch.len() == 25 {
                        tx.send(std::mem::take(&mut batch)).await?;
                    }
                }
                if !batch.is_empty() {
                    tx.send(batch).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (client, target, rx) = (client.clone(), target.to_owned(), rx.clone());
        writers.spawn(async move {
            let mut written = 0u64;
            loop {
                let Some(mut batch) = rx.lock().await.recv().await else { break };
                written += batch.len() as u64;
                while !batch.is_empty() {
                    let out = client.batch_write_item().request_items(&target, batch).send().await?;
                    batch = out.unprocessed_items.and_then(|mut u| u.remove(&target)).unwrap_or_default();
                }
            }
            anyhow::Ok(written)
        });
    }
    while let Some(done) = scanners.join_next().await {
        done??;
    }
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        written += done??;
    }
    Ok(written)
}

/// The benchmark's migrations up to `last`: each copies `source` into `shared<version>` through the
/// typed transform, in a data step (the same for every version, so that any one can be run
/// alone: the ledger is the run's own).
fn shared_migrations(last: u32) -> Vec<crate::migration::Migration> {
    (1..=last)
        .map(|version| {
            let target = format!("shared{version}");
            crate::migration::Migration::new(version, format!("copy_{version}"), "bench").data(
                crate::migration::DataStep::new("copy", move |ctx| {
                    let target = target.clone();
                    async move {
                        Ok(ctx
                            .pass("source")
                            .into_table(&target)
                            .transform(|o: Order| Some(derive(o, "total_cents")))
                            .await?)
                    }
                }),
            )
        })
        .collect()
}

/// The in-place ceiling in batches: what `BatchExecuteStatement` reaches with the same
/// conditions as `ceiling_update`, 25 statements a call, each with its own condition and result.
async fn ceiling_update_batched(client: &Client, table: &str, attribute: &str) -> anyhow::Result<u64> {
    use aws_sdk_dynamodb::types::BatchStatementRequest;
    let (tx, rx) = mpsc::channel::<Vec<Item>>(WRITERS * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut scanners = tokio::task::JoinSet::new();
    for segment in 0..SEGMENTS {
        let (client, table, tx) = (client.clone(), table.to_owned(), tx.clone());
        scanners.spawn(async move {
            let mut pages =
                client.scan().table_name(table).segment(segment).total_segments(SEGMENTS).into_paginator().send();
            while let Some(page) = pages.next().await {
                for chunk in page?.items.unwrap_or_default().chunks(25) {
                    tx.send(chunk.to_vec()).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (client, table, rx, attribute) = (client.clone(), table.to_owned(), rx.clone(), attribute.to_owned());
        writers.spawn(async move {
            let mut written = 0u64;
            loop {
                let Some(items) = rx.lock().await.recv().await else { break };
                let mut statements = Vec::with_capacity(items.len());
                for item in &items {
                    let Some(AttributeValue::N(total)) = item.get("total") else { continue };
                    let cents = (total.parse::<f64>()? * 100.0).round() as u64;
                    let mut condition = format!("\"id\" = ? AND \"{attribute}\" IS MISSING");
                    let mut parameters = vec![AttributeValue::N(cents.to_string()), item["id"].clone()];
                    for (name, value) in item.iter().filter(|(name, _)| *name != "id") {
                        condition.push_str(&format!(" AND \"{name}\" = ?"));
                        parameters.push(value.clone());
                    }
                    statements.push(
                        BatchStatementRequest::builder()
                            .statement(format!("UPDATE \"{table}\" SET \"{attribute}\" = ? WHERE {condition}"))
                            .set_parameters(Some(parameters))
                            .build()?,
                    );
                }
                let out = client.batch_execute_statement().set_statements(Some(statements)).send().await?;
                let failed: Vec<String> = out
                    .responses()
                    .iter()
                    .filter_map(|r| r.error().map(|e| format!("{:?}: {:?}", e.code(), e.message())))
                    .collect();
                anyhow::ensure!(failed.is_empty(), "statements failed: {failed:?}");
                written += items.len() as u64;
            }
            anyhow::Ok(written)
        });
    }
    while let Some(done) = scanners.join_next().await {
        done??;
    }
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        written += done??;
    }
    Ok(written)
}

/// The check ceiling: raw parallel scans of `tables` at once, strongly consistent (as the check
/// reads), 8 segments each; the items read.
async fn ceiling_scans(client: &Client, tables: &[String]) -> anyhow::Result<u64> {
    let mut scanners = tokio::task::JoinSet::new();
    for table in tables {
        for segment in 0..SEGMENTS {
            let (client, table) = (client.clone(), table.clone());
            scanners.spawn(async move {
                let mut pages = client
                    .scan()
                    .table_name(table)
                    .segment(segment)
                    .total_segments(SEGMENTS)
                    .consistent_read(true)
                    .into_paginator()
                    .send();
                let mut read = 0u64;
                while let Some(page) = pages.next().await {
                    read += page?.items.unwrap_or_default().len() as u64;
                }
                anyhow::Ok(read)
            });
        }
    }
    let mut read = 0;
    while let Some(done) = scanners.join_next().await {
        read += done??;
    }
    Ok(read)
}

/// The in-place ceiling: the same requests the engine makes, hand-written: 8 scan segments feed 32
/// workers, each making one conditional `UpdateItem` at a time that SETs the derived attribute on
/// the condition that the item exists and every attribute it read is unchanged (what keeps a
/// concurrent application write from being overwritten by a value computed from stale input).
async fn ceiling_update(client: &Client, table: &str, attribute: &str) -> anyhow::Result<u64> {
    let (tx, rx) = mpsc::channel::<Item>(WRITERS * 4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut scanners = tokio::task::JoinSet::new();
    for segment in 0..SEGMENTS {
        let (client, table, tx) = (client.clone(), table.to_owned(), tx.clone());
        scanners.spawn(async move {
            let mut pages =
                client.scan().table_name(table).segment(segment).total_segments(SEGMENTS).into_paginator().send();
            while let Some(page) = pages.next().await {
                for item in page?.items.unwrap_or_default() {
                    tx.send(item).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (client, table, rx, attribute) = (client.clone(), table.to_owned(), rx.clone(), attribute.to_owned());
        writers.spawn(async move {
            let mut written = 0u64;
            loop {
                let Some(item) = rx.lock().await.recv().await else { break };
                let Some(AttributeValue::N(total)) = item.get("total") else { continue };
                let cents = (total.parse::<f64>()? * 100.0).round() as u64;
                let mut update = client
                    .update_item()
                    .table_name(&table)
                    .key("id", item["id"].clone())
                    .update_expression("SET #derived = :cents")
                    .expression_attribute_names("#derived", &attribute)
                    .expression_attribute_values(":cents", AttributeValue::N(cents.to_string()));
                let mut condition = "attribute_exists(id) AND attribute_not_exists(#derived)".to_owned();
                for (i, (name, value)) in item.iter().filter(|(name, _)| *name != "id").enumerate() {
                    condition.push_str(&format!(" AND #a{i} = :a{i}"));
                    update = update
                        .expression_attribute_names(format!("#a{i}"), name)
                        .expression_attribute_values(format!(":a{i}"), value.clone());
                }
                update.condition_expression(condition).send().await?;
                written += 1;
            }
            anyhow::Ok(written)
        });
    }
    while let Some(done) = scanners.join_next().await {
        done??;
    }
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        written += done??;
    }
    Ok(written)
}
