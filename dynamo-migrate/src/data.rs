//! What a data step gets to work with: the client, physical table names, and typed helpers that
//! scan in parallel and write in batches.
//!
//! This is the seam between migrations and the data engine: a step only sees `DataContext`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::future::try_join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::names::TableNames;

type Item = HashMap<String, AttributeValue>;

/// BatchWriteItem takes at most 25 requests.
const BATCH: usize = 25;
/// Parallel scan segments used by the helpers.
const SEGMENTS: i32 = 4;
/// Retries of a batch's unprocessed items before giving up.
const MAX_ATTEMPTS: u32 = 12;

/// Counts of what a data step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DataReport {
    pub scanned: u64,
    pub written: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub failed: u64,
}

impl DataReport {
    fn add(mut self, other: DataReport) -> DataReport {
        self.scanned += other.scanned;
        self.written += other.written;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self
    }
}

/// The context a data step runs in.
#[derive(Debug, Clone)]
pub struct DataContext {
    client: Client,
    names: TableNames,
}

impl DataContext {
    pub(crate) fn new(client: Client, names: TableNames) -> Self {
        DataContext { client, names }
    }

    /// The DynamoDB client of the environment.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The physical name of a logical table in this environment.
    pub fn table(&self, logical: &str) -> String {
        self.names.physical(logical)
    }

    /// Reads every item of `table` as `Old` and writes `f(old)` in its place where `f` returns
    /// `Some`; `None` leaves the item unchanged. An item that does not read as `Old` stops the
    /// step with its key.
    pub async fn update_each<Old, New, F>(&self, table: &str, f: F) -> anyhow::Result<DataReport>
    where
        Old: DeserializeOwned,
        New: Serialize,
        F: Fn(Old) -> Option<New> + Sync,
    {
        let physical = self.table(table);
        let keys = self.key_names(&physical).await?;
        let segments = (0..SEGMENTS).map(|segment| {
            let (physical, keys, f) = (&physical, &keys, &f);
            async move {
                let mut report = DataReport::default();
                let mut pages = self
                    .client
                    .scan()
                    .table_name(physical)
                    .segment(segment)
                    .total_segments(SEGMENTS)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.with_context(|| format!("scanning table {physical}"))?;
                    let mut writes = Vec::new();
                    for item in page.items() {
                        report.scanned += 1;
                        let old: Old = serde_dynamo::from_item(item.clone()).with_context(|| {
                            format!("table {physical}: item {} does not read as the step's input type", key_text(item, keys))
                        })?;
                        match f(old) {
                            Some(new) => {
                                let new: Item = serde_dynamo::to_item(new).with_context(|| {
                                    format!("table {physical}: item {}: the new value is not an item", key_text(item, keys))
                                })?;
                                for key in keys {
                                    if new.get(key) != item.get(key) {
                                        bail!(
                                            "table {physical}: item {}: the transform changed or dropped key attribute {key}",
                                            key_text(item, keys)
                                        );
                                    }
                                }
                                writes.push(new);
                            }
                            None => report.unchanged += 1,
                        }
                    }
                    report.written += writes.len() as u64;
                    self.put_all(physical, writes).await?;
                }
                anyhow::Ok(report)
            }
        });
        let reports = try_join_all(segments).await?;
        Ok(reports.into_iter().fold(DataReport::default(), DataReport::add))
    }

    /// Writes items to the physical table in batches of 25, retrying unprocessed items with
    /// exponential backoff and jitter.
    pub async fn put_all(&self, physical: &str, items: Vec<Item>) -> anyhow::Result<()> {
        let mut requests: Vec<WriteRequest> = Vec::with_capacity(items.len());
        for item in items {
            requests
                .push(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build()?).build());
        }
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(BATCH));
            let mut batch = std::mem::replace(&mut requests, rest);
            let mut attempt = 0;
            while !batch.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(physical, batch)
                    .send()
                    .await
                    .with_context(|| format!("BatchWriteItem to table {physical}"))?;
                batch = out.unprocessed_items.and_then(|mut u| u.remove(physical)).unwrap_or_default();
                if batch.is_empty() {
                    break;
                }
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    bail!(
                        "table {physical}: {} items were still unprocessed after {MAX_ATTEMPTS} attempts",
                        batch.len()
                    );
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(())
    }

    async fn key_names(&self, physical: &str) -> anyhow::Result<Vec<String>> {
        let described = self
            .client
            .describe_table()
            .table_name(physical)
            .send()
            .await
            .with_context(|| format!("table {physical} cannot be described"))?;
        let table = described.table.with_context(|| format!("table {physical} has no description"))?;
        Ok(table.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect())
    }
}

/// Exponential backoff with full jitter: a random delay up to 50 ms × 2^attempt, at most 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(50).saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(5));
    cap.mul_f64(fastrand::f64())
}

/// An item's key as `{name: value, …}`, for error messages.
pub fn key_text(item: &Item, keys: &[String]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            let value = match item.get(k) {
                Some(AttributeValue::S(s)) => format!("{s:?}"),
                Some(AttributeValue::N(n)) => n.clone(),
                Some(AttributeValue::B(b)) => format!("<{} bytes>", b.as_ref().len()),
                Some(other) => format!("{other:?}"),
                None => "absent".to_owned(),
            };
            format!("{k}: {value}")
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}
