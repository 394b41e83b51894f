//! `bench`: the data engine's speed against what DynamoDB Local allows, in one run.
//!
//! Fills a table with N items of about 300 bytes, then copies it three ways into new tables:
//! (a) the seeds' way, a scan and one `PutItem` per item; (b) the ceiling, a raw 8-segment scan
//! feeding 32 batch writers, written here without the engine; (c) the engine's typed transform.
//! Every phase streams, so memory does not grow with N. The last line is `engine/ceiling = R`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PutRequest, ScalarAttributeType, WriteRequest,
};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Failure, usage};
use crate::client::{Target, connect};
use crate::data::{DataContext, Item};
use crate::local::{Docker, DynamoDbLocal, LocalOptions};
use crate::names::TableNames;

/// Measure the data engine against DynamoDB Local: items/s of the seeds' one-by-one copy, of a
/// raw parallel copy (the ceiling), and of the engine's typed transform, with peak memory.
/// Build it in release (`cargo xtask bench` does).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Items in the source table.
    #[arg(long, default_value_t = 50_000)]
    items: u64,
    /// Skip the seeds' one-by-one copy (it is slow on large tables).
    #[arg(long)]
    skip_seed: bool,
    /// Use this running DynamoDB Local instead of starting one.
    #[arg(long)]
    endpoint: Option<String>,
}

/// The benchmark's item: about 300 bytes in DynamoDB.
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

/// The typed transform's output: the order with a derived attribute.
#[derive(Debug, Serialize)]
struct OrderV2 {
    #[serde(flatten)]
    order: Order,
    total_cents: u64,
}

fn order(i: u64) -> Order {
    Order {
        id: format!("order-{i:010}"),
        customer: format!("Customer Number {}", i % 9973),
        email: format!("customer{}@example.com", i % 9973),
        city: ["Amsterdam", "Berlin", "Lisbon", "Oslo", "Vienna"][(i % 5) as usize].to_owned(),
        total: (i % 100_000) as f64 / 100.0,
        items: (i % 17) as u32 + 1,
        placed_at: 1_700_000_000 + i,
        tags: vec!["priority".to_owned(), format!("batch-{}", i % 31), "web".to_owned()],
        note: "Leave the parcel with the neighbour at number twelve if nobody answers the door; \
               call ahead on weekdays between nine and five, thanks."
            .to_owned(),
    }
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

fn peak_rss_mib() -> f64 {
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
    pub async fn run(self) -> Result<(), Failure> {
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
        println!(
            "DynamoDB Local at {} ({}), {} items of about 300 bytes",
            server.endpoint(),
            server.backend(),
            self.items
        );

        create_table(&client, &table("source")).await?;
        let start = Instant::now();
        let chunk = 5_000;
        let mut next = 0;
        while next < self.items {
            let end = (next + chunk).min(self.items);
            let items: Vec<Item> =
                (next..end).map(|i| serde_dynamo::to_item(order(i)).expect("an order is an item")).collect();
            ctx.put_items("source", items).await?;
            next = end;
        }
        report("fill (engine writers)", self.items, start);

        let mut seed = None;
        if !self.skip_seed {
            create_table(&client, &table("seed")).await?;
            let start = Instant::now();
            let copied = seed_copy(&client, &table("source"), &table("seed")).await?;
            seed = Some(report("(a) seeds' way: scan + PutItem each", copied, start));
        }

        // The ceiling and the engine run twice each, alternately, and the better run of each
        // counts: DynamoDB Local's JIT and the machine's other load make any single run noisy.
        let (mut ceiling, mut engine) = (0.0f64, 0.0f64);
        let mut peak_engine = 0.0f64;
        for round in 1..=2 {
            let target = table(&format!("ceiling{round}"));
            create_table(&client, &target).await?;
            let start = Instant::now();
            let copied = ceiling_copy(&client, &table("source"), &target).await?;
            ceiling = ceiling.max(report(
                &format!("(b) ceiling, run {round}: raw 8-segment scan + 32 batch writers"),
                copied,
                start,
            ));

            let target = table(&format!("engine{round}"));
            create_table(&client, &target).await?;
            if round == 1 {
                println!("peak RSS before the engine: {:.1} MiB", peak_rss_mib());
            }
            let sampler = RssSampler::start();
            let start = Instant::now();
            let done = ctx
                .pass("source")
                .into_physical(target)
                .segments(8)
                .transform(|order: Order| {
                    let total_cents = (order.total * 100.0).round() as u64;
                    Some(OrderV2 { order, total_cents })
                })
                .await?;
            engine = engine.max(report(
                &format!("(c) engine, run {round}: typed transform into a new table"),
                done.written,
                start,
            ));
            peak_engine = peak_engine.max(sampler.stop());
        }
        println!("peak RSS of the tool while the engine ran (sampled): {peak_engine:.1} MiB");
        if let Some(seed) = seed {
            println!("engine/seeds = {:.1}", engine / seed);
        }
        println!("engine/ceiling = {:.2}", engine / ceiling);
        Ok(())
    }
}

fn report(what: &str, items: u64, start: Instant) -> f64 {
    let secs = start.elapsed().as_secs_f64();
    let rate = items as f64 / secs;
    println!("{what}: {items} items in {secs:.2} s = {rate:.0} items/s");
    rate
}

/// The seeds' data migration: scan page by page and put each item with its own call.
async fn seed_copy(client: &Client, source: &str, target: &str) -> anyhow::Result<u64> {
    let mut copied = 0;
    let mut items = client.scan().table_name(source).into_paginator().items().send();
    while let Some(item) = items.next().await {
        client.put_item().table_name(target).set_item(Some(item?)).send().await?;
        copied += 1;
    }
    Ok(copied)
}

/// The ceiling: what a hand-written copy reaches without the engine's transform, checkpoints
/// or accounting: 8 scan segments feed a bounded channel drained by 32 batch writers.
async fn ceiling_copy(client: &Client, source: &str, target: &str) -> anyhow::Result<u64> {
    const SEGMENTS: i32 = 8;
    const WRITERS: usize = 32;
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
