//! `bench`'s bridge part: an incremental export's records applied to a table through the
//! rebuild's typed transform (see `data::rebuild::export::bridge`), against the copy ceiling of
//! the same DynamoDB Local.
//!
//! The export is in memory, in AWS's layout of records (`Keys`, `NewImage`, `OldImage`): every
//! order changed once (its old and new image), in 4 gzip'd files. (m) applies them, as the bridge
//! does after an import, into an empty table: a put per record, in batches, `WRITERS` at once.

use std::time::Instant;

use super::export::export_of;
use super::{Order, RssSampler, WRITERS, create_table, derive, order};
use crate::cli::Output;
use crate::data::rebuild::export::bridge::apply_incremental;
use crate::data::rebuild::export::json::{Record, write_record_line};
use crate::data::rebuild::export::reader::MemoryStore;
use crate::data::replay::Replay;
use crate::data::{Change, Item, ReplayStore, typed_map};
use crate::ledger::Ledger;
use crate::names::TableNames;
use aws_sdk_dynamodb::Client;

/// Measures (m) `rounds` times over `items` records; returns the best items/s and the peak RSS.
pub(super) async fn bench(
    out: &Output,
    client: &Client,
    endpoint: &str,
    prefix: &str,
    items: u64,
    item_bytes: u64,
    rounds: u32,
) -> anyhow::Result<(f64, f64)> {
    let store = MemoryStore::default();
    let export = export_of(&store, "bridge/AWSDynamoDB/01700000000000-bridge", items, |i, line| {
        let old: Item = serde_dynamo::to_item(order(i, item_bytes))?;
        let mut changed = order(i, item_bytes);
        changed.items += 1;
        let new: Item = serde_dynamo::to_item(changed)?;
        let keys = Item::from([("id".to_owned(), old["id"].clone())]);
        let record =
            Record { write_micros: Some(1_700_000_000_000_000 + i), keys, new_image: Some(new), old_image: Some(old) };
        write_record_line(line, &record);
        Ok(())
    })
    .await?;

    let names = TableNames::new(format!("{prefix}bridge_"));
    let ledger = Ledger::new(client.clone(), &names);
    ledger.ensure().await?;
    let streams = crate::client::connect_streams(&crate::client::Target::local(endpoint)).await;
    let (mut best, mut rss) = (0.0f64, 0.0f64);
    for round in 1..=rounds {
        let target = format!("{prefix}bridged{round}");
        create_table(client, &target).await?;
        let replay = Replay {
            dynamo: client.clone(),
            streams: streams.clone(),
            source: format!("{prefix}source"),
            source_keys: vec!["id".to_owned()],
            target: target.clone(),
            target_keys: vec!["id".to_owned()],
            stream_arn: "(the bench applies an export)".to_owned(),
            map: typed_map(|o: Order| Some(derive(o, "total_cents")), Change::Keep),
            keys_carry_over: false,
            drop_unknown_attributes: false,
            store: ReplayStore::open(ledger.clone(), round, 0, &target).await?,
            cancel: tokio::sync::watch::channel(false).1,
            writers: WRITERS,
            progress: false,
            dead_letters: None,
            coarse_times: true,
            now: crate::data::now_ms,
        };
        let sampler = RssSampler::start();
        let started = Instant::now();
        let applied = apply_incremental(&store, &export, &replay, "bench").await?;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let peak = sampler.stop();
        anyhow::ensure!(applied.puts == items, "(m): {} puts of {items} records", applied.puts);
        let rate = applied.records as f64 / secs;
        out.line(format_args!(
            "(m) bridge, run {round}: an incremental export's records through the typed transform, {WRITERS} batch writers: {} records in {secs:.2} s = {rate:.0} records/s, peak RSS {peak:.1} MiB",
            applied.records
        ));
        best = best.max(rate);
        rss = rss.max(peak);
    }
    Ok((best, rss))
}
