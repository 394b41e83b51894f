//! `bench`'s export part: the transform of a rebuild's export files (see
//! `data::rebuild::export::path`) against reading the same files, per worker, without a network
//! (the files are in memory), so that what is measured is the transform's own cost.
//!
//! The files are gzip'd `{"Item":…}` lines of the benchmark's orders, as DynamoDB exports them.
//! (j) the read ceiling: each file gunzipped and every line parsed into an item, nothing more;
//! (k) the copy ceiling: each item also written back as a line into a gzip'd part, untransformed;
//! (l) the export transform: the same through the rebuild's typed transform (`derive`), as a
//! worker runs it. The last lines are `export-transform/read = R` and `export-transform/copy = R`.

use std::time::Instant;

use tokio::io::AsyncWriteExt as _;

use super::{Order, derive, order};
use crate::cli::Output;
use crate::data::rebuild::export::json::{Line, write_item_line};
use crate::data::rebuild::export::path::{PART_BYTES, Transform, transform_file};
use crate::data::rebuild::export::reader::{DataFile, ExportFiles, ExportStore, MemoryStore, open_file};
use crate::data::{Change, copy_map, typed_map};

/// The export's data files: `files` of them.
const FILES: u64 = 4;

/// Measures (j), (k) and (l) over `items` orders of about `item_bytes` bytes; returns the items/s
/// of each.
pub(super) async fn bench(out: &Output, items: u64, item_bytes: u64, rounds: u32) -> anyhow::Result<[f64; 3]> {
    let store = MemoryStore::default();
    let started = Instant::now();
    let export = export_of(&store, "bench/AWSDynamoDB/01700000000000-bench", items, |i, line| {
        write_item_line(line, &serde_dynamo::to_item(order(i, item_bytes))?);
        Ok(())
    })
    .await?;
    let bytes: usize = export.files.iter().filter_map(|f| store.get(&f.key)).map(|b| b.len()).sum();
    out.line(format_args!(
        "export files: {items} items in {FILES} gzip'd files of {:.1} MiB in all, written in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    ));

    let transform = |map| Transform {
        map,
        target: "bench_v2".to_owned(),
        target_keys: vec!["id".to_owned()],
        source: "bench".to_owned(),
        source_keys: vec!["id".to_owned()],
        drop_unknown_attributes: false,
    };
    let copy = transform(copy_map());
    let typed = transform(typed_map(|o: Order| Some(derive(o, "total_cents")), Change::Keep));
    let (mut read, mut copied, mut transformed) = (0.0f64, 0.0f64, 0.0f64);
    for round in 1..=rounds {
        let started = Instant::now();
        let mut n = 0u64;
        for file in &export.files {
            let mut lines = open_file(&store, &export, file).await?;
            while let Some(line) = lines.next().await? {
                if let Line::Item(item) = line {
                    n += u64::from(!item.is_empty());
                }
            }
        }
        read = read.max(rate(out, &format!("(j) export read ceiling, run {round}: gunzip + parse"), n, started));

        for (what, transform, best) in
            [("(k) export copy ceiling", &copy, &mut copied), ("(l) export transform", &typed, &mut transformed)]
        {
            let started = Instant::now();
            let mut n = 0u64;
            for (index, file) in export.files.iter().enumerate() {
                let out = format!("bench/out{round}");
                let done = transform_file(&store, &export, file, index, &out, transform, None, PART_BYTES)
                    .await
                    .map_err(anyhow::Error::msg)?;
                anyhow::ensure!(done.written == done.read, "{what}: {} of {} written", done.written, done.read);
                n += done.written;
            }
            let line = format!("{what}, run {round}: gunzip + parse + transform + write + gzip, one worker");
            *best = best.max(rate(out, &line, n, started));
        }
    }
    out.line(format_args!("export-transform/read = {:.2}", transformed / read));
    out.line(format_args!("export-transform/copy = {:.2}", transformed / copied));
    Ok([read, copied, transformed])
}

/// An export of `items` lines in `FILES` gzip'd data files under `folder` in `store`, line `i`
/// written by `line(i, buffer)`.
pub(super) async fn export_of(
    store: &MemoryStore,
    folder: &str,
    items: u64,
    line: impl Fn(u64, &mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<ExportFiles> {
    let mut files = Vec::new();
    let per_file = items.div_ceil(FILES);
    for f in 0..FILES {
        let mut encoder = async_compression::tokio::write::GzipEncoder::new(Vec::new());
        let mut buffer = Vec::new();
        let range = (f * per_file)..((f + 1) * per_file).min(items);
        let count = range.end.saturating_sub(range.start);
        for i in range {
            buffer.clear();
            line(i, &mut buffer)?;
            encoder.write_all(&buffer).await?;
        }
        encoder.shutdown().await?;
        let key = format!("{folder}/data/{f:04}.json.gz");
        store.put(&key, encoder.into_inner()).await?;
        files.push(DataFile { key, item_count: Some(count) });
    }
    Ok(ExportFiles { folder: folder.into(), summary: None, files })
}

fn rate(out: &Output, what: &str, items: u64, started: Instant) -> f64 {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = items as f64 / secs;
    out.line(format_args!("{what}: {items} items in {secs:.2} s = {rate:.0} items/s"));
    rate
}
