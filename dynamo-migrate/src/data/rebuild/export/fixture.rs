//! Export fixtures for the tests: the objects DynamoDB writes for an export, in its layout
//! (`<prefix>/AWSDynamoDB/<id>/manifest-summary.json`, `manifest-files.json`,
//! `data/<name>.json.gz`, `_started`), or moto's (one `data/<id>.gz`, no manifest), built from
//! items and records, kept in memory or written into a folder that a [`DirStore`] reads like a
//! bucket.
//!
//! The manifests' `md5Checksum` and `etag` are placeholders: the reader does not check them.

use std::collections::BTreeMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_compression::tokio::write::GzipEncoder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::io::AsyncWriteExt;

use super::json::Line;
use super::json::{Record, write_item_line, write_record_line};
use super::reader::{ExportError, ExportFiles, ExportStore, ManifestFile, ManifestSummary, ObjectReader, open_file};
use crate::data::{Item, canonical_item};

/// One line of a fixture's data file.
#[derive(Debug, Clone)]
pub(crate) enum FixtureLine {
    Item(Item),
    Record(Record),
    /// Bytes as they are (a line that is not DynamoDB JSON), without the newline.
    Raw(Vec<u8>),
}

/// An export as DynamoDB writes it: data files of lines, and its manifests.
#[derive(Debug, Clone)]
pub(crate) struct ExportFixture {
    pub prefix: String,
    pub export_id: String,
    pub incremental: bool,
    pub files: Vec<Vec<FixtureLine>>,
}

/// Objects by key, as a bucket holds them.
pub(crate) type Objects = BTreeMap<String, Vec<u8>>;

impl ExportFixture {
    /// A full export of `files`, each a data file's items.
    pub fn full(prefix: &str, files: Vec<Vec<Item>>) -> Self {
        ExportFixture {
            prefix: prefix.to_owned(),
            export_id: "01733526000000-a1b2c3d4".to_owned(),
            incremental: false,
            files: files.into_iter().map(|items| items.into_iter().map(FixtureLine::Item).collect()).collect(),
        }
    }

    /// An incremental export of `files`, each a data file's records.
    pub fn incremental(prefix: &str, files: Vec<Vec<Record>>) -> Self {
        ExportFixture {
            prefix: prefix.to_owned(),
            export_id: "01733612400000-e5f6a7b8".to_owned(),
            incremental: true,
            files: files.into_iter().map(|records| records.into_iter().map(FixtureLine::Record).collect()).collect(),
        }
    }

    /// The export's ARN, as `DescribeExport` gives it.
    pub fn export_arn(&self) -> String {
        format!("arn:aws:dynamodb:us-east-1:123456789012:table/fixture/export/{}", self.export_id)
    }

    /// `<prefix>/AWSDynamoDB/<id>`.
    pub fn folder(&self) -> String {
        format!("{}/AWSDynamoDB/{}", self.prefix, self.export_id)
    }

    /// The key of data file `index`, named as DynamoDB names them (26 lowercase base32 letters).
    pub fn data_key(&self, index: usize) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut state = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let name: String = (0..26)
            .map(|_| {
                state ^= state >> 29;
                state = state.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                LETTERS[(state >> 59) as usize] as char
            })
            .collect();
        format!("{}/data/{name}.json.gz", self.folder())
    }

    /// Data file `index`'s lines, uncompressed.
    pub fn data_lines(&self, index: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.files[index] {
            match line {
                FixtureLine::Item(item) => write_item_line(&mut out, item),
                FixtureLine::Record(record) => write_record_line(&mut out, record),
                FixtureLine::Raw(bytes) => {
                    out.extend_from_slice(bytes);
                    out.push(b'\n');
                }
            }
        }
        out
    }

    /// The objects DynamoDB writes: `_started`, the data files (an empty partition's file has no
    /// bytes at all), `manifest-files.json`, `manifest-summary.json` and their checksum files.
    pub async fn objects(&self) -> Objects {
        let mut objects = Objects::new();
        objects.insert(format!("{}/_started", self.folder()), Vec::new());
        let mut manifest_files = Vec::new();
        let mut total = 0;
        for index in 0..self.files.len() {
            let lines = self.data_lines(index);
            let bytes = if lines.is_empty() { Vec::new() } else { gzip(&lines).await };
            let item_count = self.files[index].len() as u64;
            total += item_count;
            let file = ManifestFile {
                item_count,
                md5_checksum: Some("sQMSpEILNgoQmarvDFonGQ==".to_owned()),
                etag: Some(format!("{:032x}-1", index + 1)),
                data_file_s3_key: self.data_key(index),
            };
            manifest_files.extend(serde_json::to_vec(&file).unwrap());
            manifest_files.push(b'\n');
            objects.insert(self.data_key(index), bytes);
        }
        let summary = ManifestSummary {
            version: Some("2023-08-01".to_owned()),
            export_arn: Some(self.export_arn()),
            start_time: Some("2026-12-07T07:28:34.028Z".to_owned()),
            end_time: Some("2026-12-07T07:33:43.897Z".to_owned()),
            table_arn: Some("arn:aws:dynamodb:us-east-1:123456789012:table/fixture".to_owned()),
            table_id: Some("12345a12-abcd-123a-ab12-1234abc12345".to_owned()),
            export_time: Some("2026-12-07T07:28:34.028Z".to_owned()),
            s3_bucket: Some("fixture-exports".to_owned()),
            s3_prefix: Some(self.prefix.clone()),
            manifest_files_s3_key: format!("{}/manifest-files.json", self.folder()),
            billed_size_bytes: Some(self.files.iter().enumerate().map(|(i, _)| self.data_lines(i).len() as u64).sum()),
            item_count: Some(total),
            output_format: Some("DYNAMODB_JSON".to_owned()),
            export_type: Some(if self.incremental { "INCREMENTAL_EXPORT" } else { "FULL_EXPORT" }.to_owned()),
        };
        objects.insert(format!("{}/manifest-files.json", self.folder()), manifest_files);
        objects.insert(format!("{}/manifest-files.checksum", self.folder()), b"0123456789abcdef".to_vec());
        objects.insert(format!("{}/manifest-summary.json", self.folder()), serde_json::to_vec(&summary).unwrap());
        objects.insert(format!("{}/manifest-summary.checksum", self.folder()), b"fedcba9876543210".to_vec());
        objects
    }

    /// The objects moto's export writes: every line in one `data/<id>.gz`, in a folder of its
    /// own id (not the ARN's), and no manifest.
    pub async fn moto_objects(&self) -> Objects {
        let lines: Vec<u8> = (0..self.files.len()).flat_map(|i| self.data_lines(i)).collect();
        let key = format!("{}/AWSDynamoDB/5f0c4d9e-moto-export/data/0b9d1c2a-moto-file.gz", self.prefix);
        Objects::from([(key, gzip(&lines).await)])
    }
}

/// `bytes`, gzip'd.
pub(crate) async fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzipEncoder::new(Vec::new());
    encoder.write_all(bytes).await.unwrap();
    encoder.shutdown().await.unwrap();
    encoder.into_inner()
}

/// Writes `objects` under `dir`, each key a path.
pub(crate) fn write_objects(dir: &Path, objects: &Objects) {
    for (key, bytes) in objects {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A folder read as a bucket: each key a path under it.
pub(crate) struct DirStore {
    pub root: PathBuf,
}

impl ExportStore for DirStore {
    async fn open(&self, key: &str) -> io::Result<Option<ObjectReader>> {
        match tokio::fs::File::open(self.root.join(key)).await {
            Ok(file) => Ok(Some(Box::pin(file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        fn walk(dir: &Path, root: &Path, keys: &mut Vec<String>) -> io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(&path, root, keys)?;
                } else {
                    let relative = path.strip_prefix(root).expect("under the root");
                    keys.push(
                        relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
                    );
                }
            }
            Ok(())
        }
        let mut keys = Vec::new();
        if self.root.is_dir() {
            walk(&self.root, &self.root, &mut keys)?;
        }
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        let path = self.root.join(key);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(path, bytes).await
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.root.join(key)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A fresh folder for a test's objects, removed by [`TempDir::drop`].
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dynamo-migrate-export-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Items of every DynamoDB type, `count` of them, each with its own key `pk`: strings with
/// quotes, newlines and non-ASCII; numbers of 38 digits, negative and with exponents; binary
/// with every byte; booleans; null; lists and maps nested, an empty map and an empty list;
/// string, number and binary sets.
pub(crate) fn every_type_items(count: usize) -> Vec<Item> {
    (0..count)
        .map(|i| {
            let mut item: Item = Item::new();
            item.insert("pk".into(), AttributeValue::S(format!("item#{i:05}")));
            item.insert("s".into(), AttributeValue::S(format!("ünïcode \"quoted\"\n\t\u{1} {i}")));
            item.insert("n38".into(), AttributeValue::N(format!("123456789012345678{i:020}")));
            item.insert(
                "n".into(),
                AttributeValue::N(format!("-1.234567890123456789012345678901234567E-{}", 120 + i % 8)),
            );
            item.insert(
                "b".into(),
                AttributeValue::B(Blob::new((0..=255u8).map(|b| b.wrapping_add(i as u8)).collect::<Vec<_>>())),
            );
            item.insert("t".into(), AttributeValue::Bool(i % 2 == 0));
            item.insert("z".into(), AttributeValue::Null(true));
            item.insert("ss".into(), AttributeValue::Ss(vec![format!("a{i}"), "b".into(), "ç".into()]));
            item.insert(
                "ns".into(),
                AttributeValue::Ns(vec![
                    "1".into(),
                    "99999999999999999999999999999999999999".into(),
                    format!("-{i}.5"),
                ]),
            );
            item.insert("bs".into(), AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![0, 255, i as u8])]));
            item.insert(
                "l".into(),
                AttributeValue::L(vec![
                    AttributeValue::N("1".into()),
                    AttributeValue::M(Item::new()),
                    AttributeValue::L(vec![]),
                    AttributeValue::Ss(vec!["x".into()]),
                ]),
            );
            item.insert(
                "m".into(),
                AttributeValue::M(Item::from([
                    ("empty".to_owned(), AttributeValue::M(Item::new())),
                    (
                        "deep".to_owned(),
                        AttributeValue::M(Item::from([("n".to_owned(), AttributeValue::N("0.1".into()))])),
                    ),
                ])),
            );
            item
        })
        .collect()
}

/// An item as large as DynamoDB allows (400 KB, name and value): one string attribute.
pub(crate) fn largest_item() -> Item {
    let name = "big";
    let value = "x".repeat(400 * 1024 - name.len() - "pk".len() - "largest".len());
    Item::from([("pk".to_owned(), AttributeValue::S("largest".into())), (name.to_owned(), AttributeValue::S(value))])
}

/// A full export of files of 0 (an empty partition: no bytes at all), 1, 38 and 2 items: every
/// type, 38-digit numbers, the largest item DynamoDB allows; and its items.
pub(crate) fn full_fixture(prefix: &str) -> (ExportFixture, Vec<Item>) {
    let items = every_type_items(40);
    let mut third = items[1..38].to_vec();
    third.push(largest_item());
    let files = vec![vec![], vec![items[0].clone()], third, items[38..].to_vec()];
    let all: Vec<Item> = files.iter().flatten().cloned().collect();
    (ExportFixture::full(prefix, files), all)
}

/// Every line of every file of the export, in the manifest's order.
pub(crate) async fn read_all<S: ExportStore>(store: &S, export: &ExportFiles) -> Result<Vec<Line>, ExportError> {
    let mut lines = Vec::new();
    for file in &export.files {
        let mut reader = open_file(store, export, file).await?;
        while let Some(line) = reader.next().await? {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// Items in canonical DynamoDB JSON (sets and maps in order), sorted: equal exactly when the
/// items are, whatever the order of files, lines, set members and attributes.
pub(crate) fn canonical(items: &[Item]) -> Vec<String> {
    let mut texts: Vec<String> = items.iter().map(|i| canonical_item(i).to_string()).collect();
    texts.sort();
    texts
}

/// moto's server on a free loopback port, stopped by its process id when dropped.
pub(crate) struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// `None` where moto is not installed.
    pub fn start() -> Option<Moto> {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => panic!("moto_server: {e}"),
        };
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within a minute");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "moto"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Moto {
    /// A DynamoDB client of moto's (which has export, import and point-in-time recovery).
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        crate::client::connect(&crate::client::Target::local(&self.endpoint)).await
    }

    /// A DynamoDB Streams client of moto's.
    pub async fn streams(&self) -> aws_sdk_dynamodbstreams::Client {
        crate::client::connect_streams(&crate::client::Target::local(&self.endpoint)).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
