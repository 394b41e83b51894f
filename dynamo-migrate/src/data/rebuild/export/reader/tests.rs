use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::io::ReadBuf;

use super::*;
use crate::data::Item;
use crate::data::rebuild::export::fixture::{
    DirStore, ExportFixture, FixtureLine, Objects, TempDir, canonical, every_type_items, full_fixture, gzip,
    largest_item, read_all, write_objects,
};
use crate::data::rebuild::export::json::Record;

/// `objects` written into a fresh folder, and a store that reads it.
fn store_of(name: &str, objects: &Objects) -> (TempDir, DirStore) {
    let dir = TempDir::new(name);
    write_objects(&dir.0, objects);
    let store = DirStore { root: dir.0.clone() };
    (dir, store)
}

fn items_of(lines: Vec<Line>) -> Vec<Item> {
    lines
        .into_iter()
        .map(|line| match line {
            Line::Item(item) => item,
            Line::Record(record) => panic!("a full export has items, not records: {record:?}"),
        })
        .collect()
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.into())
}

#[tokio::test]
async fn a_full_export_reads_exactly_its_items_from_the_manifest() {
    let (fixture, items) = full_fixture("exports/rebuild-7");
    let (_dir, store) = store_of("full", &fixture.objects().await);

    let export = export_files(&store, "exports/rebuild-7", &fixture.export_arn()).await.unwrap();
    assert_eq!(export.folder, fixture.folder());
    assert_eq!(export.files.len(), 4, "every file the manifest lists, the empty one included");
    assert_eq!(export.files[2], DataFile { key: fixture.data_key(2), item_count: Some(38) });
    assert_eq!(export.item_count(), Some(41));
    assert!(!export.is_incremental());
    let summary = export.summary.as_ref().unwrap();
    assert_eq!(summary.export_arn.as_deref(), Some(fixture.export_arn().as_str()));
    assert_eq!(summary.output_format.as_deref(), Some("DYNAMODB_JSON"));

    let read = items_of(read_all(&store, &export).await.unwrap());
    assert_eq!(read.len(), items.len());
    assert_eq!(canonical(&read), canonical(&items));
    // Beyond canonical equality, the values are the very ones written: 38 digits kept as text,
    // the 400 KB item whole.
    let first = read.iter().find(|i| i.get("pk") == Some(&s("item#00000"))).unwrap();
    assert_eq!(first.get("n38"), Some(&AttributeValue::N("12345678901234567800000000000000000000".into())));
    assert!(read.iter().any(|i| i == &largest_item()));
}

#[tokio::test]
async fn a_prefix_with_slashes_at_its_ends_finds_the_same_export() {
    let (fixture, items) = full_fixture("exports/rebuild-7");
    let (_dir, store) = store_of("slashes", &fixture.objects().await);
    let export = export_files(&store, "/exports/rebuild-7/", &fixture.export_arn()).await.unwrap();
    assert_eq!(canonical(&items_of(read_all(&store, &export).await.unwrap())), canonical(&items));
}

#[tokio::test]
async fn an_incremental_export_reads_its_records_inserts_updates_and_deletes() {
    let keys = |i: usize| Item::from([("pk".to_owned(), s(&format!("item#{i:05}")))]);
    let items = every_type_items(3);
    let inserted = Record {
        write_micros: Some(1_765_092_514_000_001),
        keys: keys(0),
        new_image: Some(items[0].clone()),
        old_image: None,
    };
    let updated = Record {
        write_micros: Some(1_765_092_514_000_002),
        keys: keys(1),
        new_image: Some(items[1].clone()),
        old_image: Some(items[2].clone()),
    };
    let deleted = Record {
        write_micros: Some(1_765_092_514_000_003),
        keys: keys(2),
        new_image: None,
        old_image: Some(items[2].clone()),
    };
    let deleted_new_image_view =
        Record { write_micros: Some(1_765_092_514_000_004), keys: keys(3), new_image: None, old_image: None };
    let records = vec![inserted, updated, deleted, deleted_new_image_view];
    let fixture =
        ExportFixture::incremental("exports/bridge", vec![records[..2].to_vec(), vec![], records[2..].to_vec()]);
    let (_dir, store) = store_of("incremental", &fixture.objects().await);

    let export = export_files(&store, "exports/bridge", &fixture.export_arn()).await.unwrap();
    assert!(export.is_incremental());
    assert_eq!(export.item_count(), Some(4));
    let read: Vec<Record> = read_all(&store, &export)
        .await
        .unwrap()
        .into_iter()
        .map(|line| match line {
            Line::Record(record) => record,
            Line::Item(item) => panic!("an incremental export has records, not items: {item:?}"),
        })
        .collect();
    assert_eq!(read, records);
    let deletes: Vec<_> = read.iter().filter(|r| r.new_image.is_none()).map(|r| r.keys.clone()).collect();
    assert_eq!(deletes, vec![keys(2), keys(3)], "no NewImage: a delete, with or without its old image");
}

#[tokio::test]
async fn a_file_with_another_count_than_its_manifest_line_is_an_error_naming_it() {
    let (fixture, _) = full_fixture("exports/counted");
    let mut objects = fixture.objects().await;
    // The manifest says one more item in the third file than it holds.
    let manifest_key = format!("{}/manifest-files.json", fixture.folder());
    let mut lines: Vec<ManifestFile> = objects[&manifest_key]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    lines[2].item_count += 1;
    objects.insert(
        manifest_key,
        lines.iter().flat_map(|l| [serde_json::to_vec(l).unwrap(), b"\n".to_vec()].concat()).collect(),
    );
    let summary_key = format!("{}/manifest-summary.json", fixture.folder());
    let mut summary: ManifestSummary = serde_json::from_slice(&objects[&summary_key]).unwrap();
    summary.item_count = summary.item_count.map(|n| n + 1);
    objects.insert(summary_key, serde_json::to_vec(&summary).unwrap());
    let (_dir, store) = store_of("counted", &objects);

    let export = export_files(&store, "exports/counted", &fixture.export_arn()).await.unwrap();
    let error = read_all(&store, &export).await.unwrap_err();
    assert!(matches!(&error, ExportError::Count { expected: 39, found: 38, .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("{} holds 38 items, but manifest-files.json says 39", fixture.data_key(2)));
}

#[tokio::test]
async fn a_summary_whose_count_is_not_its_files_is_refused_before_any_file_is_read() {
    let (fixture, _) = full_fixture("exports/summary");
    let mut objects = fixture.objects().await;
    let summary_key = format!("{}/manifest-summary.json", fixture.folder());
    let mut summary: ManifestSummary = serde_json::from_slice(&objects[&summary_key]).unwrap();
    summary.item_count = Some(40);
    objects.insert(summary_key.clone(), serde_json::to_vec(&summary).unwrap());
    let (_dir, store) = store_of("summary", &objects);
    let error = export_files(&store, "exports/summary", &fixture.export_arn()).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!("{summary_key}: itemCount is 40, but the files {}/manifest-files.json lists hold 41", fixture.folder())
    );
}

#[tokio::test]
async fn a_line_that_is_not_dynamodb_json_names_its_file_and_line() {
    let mut fixture = ExportFixture::full("exports/bad", vec![every_type_items(2), every_type_items(5)]);
    fixture.files[1].insert(3, FixtureLine::Raw(br#"{"Item":{"pk":{"S":"x"},"n":{"X":"1"}}}"#.to_vec()));
    fixture.files[1].insert(4, FixtureLine::Raw(b"{\"Item\":".to_vec()));
    let (_dir, store) = store_of("bad-line", &fixture.objects().await);
    let export = export_files(&store, "exports/bad", &fixture.export_arn()).await.unwrap();

    let error = read_all(&store, &export).await.unwrap_err();
    assert!(matches!(&error, ExportError::Line { line: 4, .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.starts_with(&format!("{}, line 4: ", fixture.data_key(1))), "{text}");
    assert!(text.contains("attribute n: X is no DynamoDB type"), "{text}");

    // The next bad line, once the first is skipped, is named as line 5.
    let mut reader = open_file(&store, &export, &export.files[1]).await.unwrap();
    for _ in 0..3 {
        reader.next().await.unwrap().unwrap();
    }
    assert!(reader.next().await.is_err());
    let error = reader.next().await.unwrap_err().to_string();
    assert!(error.starts_with(&format!("{}, line 5: ", fixture.data_key(1))), "{error}");
}

#[tokio::test]
async fn a_data_file_that_is_not_gzip_names_its_file() {
    let fixture = ExportFixture::full("exports/plain", vec![every_type_items(3)]);
    let mut objects = fixture.objects().await;
    objects.insert(fixture.data_key(0), fixture.data_lines(0));
    let (_dir, store) = store_of("plain", &objects);
    let export = export_files(&store, "exports/plain", &fixture.export_arn()).await.unwrap();
    let error = read_all(&store, &export).await.unwrap_err();
    assert!(matches!(&error, ExportError::Read { line: 0, .. }), "{error:?}");
    assert!(error.to_string().starts_with(&format!("{}, after line 0: ", fixture.data_key(0))), "{error}");
}

#[tokio::test]
async fn a_file_the_manifest_names_but_the_bucket_lacks_is_missing() {
    let (fixture, _) = full_fixture("exports/lost");
    let mut objects = fixture.objects().await;
    objects.remove(&fixture.data_key(3));
    let (_dir, store) = store_of("lost", &objects);
    let export = export_files(&store, "exports/lost", &fixture.export_arn()).await.unwrap();
    let error = read_all(&store, &export).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!("{} is missing, though {}/manifest-files.json names it", fixture.data_key(3), fixture.folder())
    );
}

#[tokio::test]
async fn keys_in_the_manifest_without_the_prefix_are_read_under_it() {
    // The developer guide's example manifest names `AWSDynamoDB/<id>/…` while `s3Prefix` is set.
    let (fixture, items) = full_fixture("exports/guide");
    let mut objects = fixture.objects().await;
    let strip = |key: &str| key.strip_prefix("exports/guide/").unwrap().to_owned();
    let manifest_key = format!("{}/manifest-files.json", fixture.folder());
    let lines: Vec<ManifestFile> = objects[&manifest_key]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<ManifestFile>(l).unwrap())
        .map(|f| ManifestFile { data_file_s3_key: strip(&f.data_file_s3_key), ..f })
        .collect();
    objects.insert(
        manifest_key.clone(),
        lines.iter().flat_map(|l| [serde_json::to_vec(l).unwrap(), b"\n".to_vec()].concat()).collect(),
    );
    let summary_key = format!("{}/manifest-summary.json", fixture.folder());
    let mut summary: ManifestSummary = serde_json::from_slice(&objects[&summary_key]).unwrap();
    summary.manifest_files_s3_key = strip(&manifest_key);
    objects.insert(summary_key, serde_json::to_vec(&summary).unwrap());
    let (_dir, store) = store_of("guide", &objects);

    let export = export_files(&store, "exports/guide", &fixture.export_arn()).await.unwrap();
    assert_eq!(export.files[1].key, fixture.data_key(1));
    assert_eq!(canonical(&items_of(read_all(&store, &export).await.unwrap())), canonical(&items));
}

#[tokio::test]
async fn an_ion_export_is_refused() {
    let (fixture, _) = full_fixture("exports/ion");
    let mut objects = fixture.objects().await;
    let summary_key = format!("{}/manifest-summary.json", fixture.folder());
    let mut summary: ManifestSummary = serde_json::from_slice(&objects[&summary_key]).unwrap();
    summary.output_format = Some("ION".into());
    objects.insert(summary_key.clone(), serde_json::to_vec(&summary).unwrap());
    let (_dir, store) = store_of("ion", &objects);
    let error = export_files(&store, "exports/ion", &fixture.export_arn()).await.unwrap_err().to_string();
    assert_eq!(error, format!("{summary_key}: the export's outputFormat is ION; only DYNAMODB_JSON is read"));
}

#[tokio::test]
async fn without_a_manifest_the_data_folder_is_listed_as_moto_writes_it() {
    let (fixture, items) = full_fixture("exports/moto");
    let (_dir, store) = store_of("moto", &fixture.moto_objects().await);

    // moto's ARN names no folder of the bucket: the one export under the prefix is read.
    let export = export_files(&store, "exports/moto", &fixture.export_arn()).await.unwrap();
    assert!(export.summary.is_none());
    assert_eq!(export.folder, "exports/moto/AWSDynamoDB/5f0c4d9e-moto-export");
    assert_eq!(export.files.len(), 1);
    assert_eq!(export.item_count(), None, "nothing to count against");
    assert_eq!(canonical(&items_of(read_all(&store, &export).await.unwrap())), canonical(&items));
}

#[tokio::test]
async fn without_a_manifest_several_exports_are_ambiguous_and_none_is_not_found() {
    let (fixture, _) = full_fixture("exports/two");
    let mut objects = fixture.moto_objects().await;
    objects.insert("exports/two/AWSDynamoDB/another/data/x.gz".into(), gzip(b"").await);
    objects.insert("exports/two/AWSDynamoDB/another/_started".into(), Vec::new());
    let (_dir, store) = store_of("two", &objects);
    let error = export_files(&store, "exports/two", &fixture.export_arn()).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "several exports under exports/two/ and none named by the export's ARN: exports/two/AWSDynamoDB/5f0c4d9e-moto-export, exports/two/AWSDynamoDB/another"
    );
    // The one the ARN names is chosen, though.
    let named = "arn:aws:dynamodb:us-east-1:123456789012:table/fixture/export/another";
    let export = export_files(&store, "exports/two", named).await.unwrap();
    assert_eq!(
        export.files,
        vec![DataFile { key: "exports/two/AWSDynamoDB/another/data/x.gz".into(), item_count: None }]
    );

    let error = export_files(&store, "exports/none", named).await.unwrap_err().to_string();
    assert_eq!(error, "no export under exports/none/: neither a manifest-summary.json nor data files");
}

/// A stream of `bytes` delivered a few KB at a time, counting what it has delivered.
struct Trickle {
    bytes: Arc<Vec<u8>>,
    at: usize,
    delivered: Arc<AtomicUsize>,
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (self.bytes.len() - self.at).min(buf.remaining()).min(4096);
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        self.delivered.store(self.at, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_file_is_read_as_a_stream_whatever_its_size() {
    // 20,000 items of every type: about 30 MB of lines, a few MB gzip'd.
    let template = every_type_items(1).remove(0);
    let mut lines = Vec::new();
    let mut longest = 0;
    for i in 0..20_000u32 {
        let mut item = template.clone();
        item.insert("pk".into(), s(&format!("item#{i:06}")));
        item.insert("noise".into(), AttributeValue::N(format!("{}", i.wrapping_mul(2_654_435_761))));
        let before = lines.len();
        crate::data::rebuild::export::json::write_item_line(&mut lines, &item);
        longest = longest.max(lines.len() - before);
    }
    let compressed = Arc::new(gzip(&lines).await);
    let delivered = Arc::new(AtomicUsize::new(0));
    let source = Trickle { bytes: compressed.clone(), at: 0, delivered: delivered.clone() };
    let file = DataFile { key: "exports/big/AWSDynamoDB/x/data/big.json.gz".into(), item_count: Some(20_000) };
    let mut reader = ExportLines::new(&file, source);

    let first = reader.next().await.unwrap().unwrap();
    assert!(matches!(&first, Line::Item(item) if item.get("pk") == Some(&s("item#000000"))));
    let at_first = delivered.load(Ordering::SeqCst);
    assert!(
        at_first * 20 < compressed.len(),
        "the first item comes after {at_first} of {} compressed bytes, not after the whole file",
        compressed.len()
    );
    let mut count = 1;
    let mut last = String::new();
    while let Some(line) = reader.next().await.unwrap() {
        let Line::Item(item) = line else { panic!("items") };
        let Some(AttributeValue::S(pk)) = item.get("pk") else { panic!("a key") };
        last.clone_from(pk);
        count += 1;
    }
    assert_eq!((count, last.as_str()), (20_000, "item#019999"));
    assert_eq!(reader.items(), 20_000);
    assert_eq!(delivered.load(Ordering::SeqCst), compressed.len());
    // What the reader holds is one line, not the file.
    assert!(reader.buffer_capacity() <= 2 * longest, "{} bytes held for lines of {longest}", reader.buffer_capacity());
    assert!(lines.len() > 1000 * reader.buffer_capacity());
}

#[tokio::test]
async fn a_line_longer_than_any_item_is_refused_without_reading_on() {
    let mut lines = b"{\"Item\":{\"pk\":{\"S\":\"a\"}}}\n".to_vec();
    lines.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    let file = DataFile { key: "k/data/long.json.gz".into(), item_count: None };
    let mut reader = ExportLines::new(&file, io::Cursor::new(gzip(&lines).await));
    assert!(reader.next().await.unwrap().is_some());
    let error = reader.next().await.unwrap_err().to_string();
    assert_eq!(error, format!("k/data/long.json.gz, line 2: longer than {MAX_LINE_BYTES} bytes, which no item is"));
    assert!(reader.buffer_capacity() <= 2 * MAX_LINE_BYTES);
}

#[tokio::test]
async fn a_file_of_several_gzip_members_reads_as_one() {
    let items = every_type_items(4);
    let mut first = Vec::new();
    let mut second = Vec::new();
    for item in &items[..2] {
        crate::data::rebuild::export::json::write_item_line(&mut first, item);
    }
    for item in &items[2..] {
        crate::data::rebuild::export::json::write_item_line(&mut second, item);
    }
    let bytes = [gzip(&first).await, gzip(&second).await].concat();
    let file = DataFile { key: "k/data/members.json.gz".into(), item_count: Some(4) };
    let mut reader = ExportLines::new(&file, io::Cursor::new(bytes));
    let mut read = Vec::new();
    while let Some(line) = reader.next().await.unwrap() {
        read.push(line);
    }
    assert_eq!(canonical(&items_of(read)), canonical(&items));
}

#[test]
fn an_export_folder_is_the_arns_last_part_under_the_prefix() {
    let arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/export/01733526000000-a1b2c3d4";
    assert_eq!(export_folder("exports/", arn), "exports/AWSDynamoDB/01733526000000-a1b2c3d4");
    assert_eq!(export_folder("", arn), "AWSDynamoDB/01733526000000-a1b2c3d4");
    assert_eq!(manifest_key("exports", "exports/AWSDynamoDB/x/data/a.json.gz"), "exports/AWSDynamoDB/x/data/a.json.gz");
    assert_eq!(manifest_key("exports", "AWSDynamoDB/x/data/a.json.gz"), "exports/AWSDynamoDB/x/data/a.json.gz");
    assert_eq!(manifest_key("", "AWSDynamoDB/x/data/a.json.gz"), "AWSDynamoDB/x/data/a.json.gz");
}
