//! An export's data files, found from its manifest as DynamoDB writes it, and read as streams.
//!
//! DynamoDB writes an export under `<prefix>/AWSDynamoDB/<export id>/`: `manifest-summary.json`
//! (the export's ARN, times, table, bucket and prefix, `manifestFilesS3Key`, `itemCount`,
//! `outputFormat`, `exportType`), `manifest-files.json` (one JSON object a line: `itemCount`,
//! `md5Checksum`, `etag`, `dataFileS3Key`) and the data files `data/<name>.json.gz`, gzip'd JSON
//! lines of `{"Item":…}` (a full export) or of records (an incremental one, see [`super::json`]).
//! The manifest is what says which files belong to the export and how many items each holds, so
//! the reader is driven by it, and a file whose count differs from its manifest line is an error
//! naming the file. Where there is no manifest (moto's export writes one `data/<id>.gz` and
//! nothing else) the reader lists `data/` instead, and has no counts to check.
//!
//! A data file is read as a stream: the object's bytes are gunzipped as they arrive and cut into
//! lines one at a time, so a reader holds one line (at most [`MAX_LINE_BYTES`]) whatever the
//! file's size. Where the bytes come from is an [`ExportStore`]: S3 in a run, a local folder in
//! the tests.

use std::future::Future;
use std::io;
use std::pin::Pin;

use async_compression::tokio::bufread::GzipDecoder;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::json::{Line, read_line};

/// The longest line the reader accepts. DynamoDB's items are at most 400 KB; as DynamoDB JSON a
/// binary attribute grows by a third (base64) and a string of control characters up to six times
/// (`\u0001`), so 8 MiB holds any item and stops a file without newlines from filling memory.
pub(crate) const MAX_LINE_BYTES: usize = 8 << 20;

/// The folder, under an export's prefix, in which DynamoDB writes each export's own folder.
const EXPORTS_FOLDER: &str = "AWSDynamoDB";

/// An object's bytes, as a stream.
pub(crate) type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// Where an export's objects are read from, by key: the bucket in a run, a local folder in the
/// tests.
pub(crate) trait ExportStore: Sync {
    /// The object at `key` as a stream of its bytes, or `None` when there is no such object.
    fn open(&self, key: &str) -> impl Future<Output = io::Result<Option<ObjectReader>>> + Send;

    /// The keys of the objects whose key starts with `prefix`, in order.
    fn list(&self, prefix: &str) -> impl Future<Output = io::Result<Vec<String>>> + Send;

    /// Writes `bytes` as the object at `key`, replacing one that is there.
    fn put(&self, key: &str, bytes: Vec<u8>) -> impl Future<Output = io::Result<()>> + Send;

    /// Deletes the object at `key`, if there is one.
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<()>> + Send;
}

/// Objects held in memory, by key: for the benchmark, which measures the transform without a
/// network.
#[cfg(any(test, feature = "cli"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryStore {
    objects: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<Vec<u8>>>>>,
}

#[cfg(any(test, feature = "cli"))]
impl MemoryStore {
    /// The object at `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<std::sync::Arc<Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }
}

#[cfg(any(test, feature = "cli"))]
impl ExportStore for MemoryStore {
    async fn open(&self, key: &str) -> io::Result<Option<ObjectReader>> {
        Ok(self.get(key).map(|bytes| Box::pin(io::Cursor::new(ArcBytes(bytes))) as ObjectReader))
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(objects.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), std::sync::Arc::new(bytes));
        Ok(())
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        Ok(())
    }
}

/// Shared bytes, readable through a cursor.
#[cfg(any(test, feature = "cli"))]
struct ArcBytes(std::sync::Arc<Vec<u8>>);

#[cfg(any(test, feature = "cli"))]
impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `manifest-summary.json`: what DynamoDB says of a finished export. The fields are AWS's (see
/// "DynamoDB table export output format" in the DynamoDB developer guide); the reader needs
/// `manifestFilesS3Key`, checks `outputFormat` and `itemCount`, and keeps the rest for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestSummary {
    pub version: Option<String>,
    pub export_arn: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub table_arn: Option<String>,
    pub table_id: Option<String>,
    pub export_time: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub manifest_files_s3_key: String,
    pub billed_size_bytes: Option<u64>,
    pub item_count: Option<u64>,
    /// `DYNAMODB_JSON` or `ION`; only the first is read.
    pub output_format: Option<String>,
    /// `FULL_EXPORT` or `INCREMENTAL_EXPORT` (absent from older full exports).
    pub export_type: Option<String>,
}

/// A `manifest-files.json` line: one data file of the export and how many items it holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestFile {
    pub item_count: u64,
    pub md5_checksum: Option<String>,
    pub etag: Option<String>,
    pub data_file_s3_key: String,
}

/// One data file of an export: its key and, when a manifest names it, how many lines it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataFile {
    pub key: String,
    pub item_count: Option<u64>,
}

/// An export's data files, as its manifest lists them (or, without a manifest, as `data/` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportFiles {
    /// The export's folder, `<prefix>/AWSDynamoDB/<export id>`.
    pub folder: String,
    /// The summary manifest; `None` where the export wrote none and the files were listed.
    pub summary: Option<ManifestSummary>,
    pub files: Vec<DataFile>,
}

impl ExportFiles {
    /// How many items the export holds, when its manifest says.
    pub fn item_count(&self) -> Option<u64> {
        self.files.iter().map(|f| f.item_count).sum()
    }

    /// Whether its lines are an incremental export's records rather than items.
    pub fn is_incremental(&self) -> bool {
        self.summary.as_ref().and_then(|s| s.export_type.as_deref()) == Some("INCREMENTAL_EXPORT")
    }
}

/// What went wrong reading an export, naming the object, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// The store could not list or open an object.
    #[error("{key}: {source}")]
    Store { key: String, source: io::Error },
    /// An object a manifest names is not there.
    #[error("{key} is missing, though {named_by} names it")]
    Missing { key: String, named_by: String },
    /// A manifest that does not read as DynamoDB writes it.
    #[error("{key}: {problem}")]
    Manifest { key: String, problem: String },
    /// A data file whose bytes stop being gzip, or whose reading failed, after `line` lines.
    #[error("{file}, after line {line}: {source}")]
    Read { file: String, line: u64, source: io::Error },
    /// A line of a data file that is no export line.
    #[error("{file}, line {line}: {problem}")]
    Line { file: String, line: u64, problem: String },
    /// A data file with another number of items than its manifest line says.
    #[error("{file} holds {found} items, but manifest-files.json says {expected}")]
    Count { file: String, expected: u64, found: u64 },
    /// No export under the prefix.
    #[error("no export under {prefix}/: neither a manifest-summary.json nor data files")]
    NotFound { prefix: String },
    /// Several exports without manifests under the prefix, and nothing to choose one.
    #[error("several exports under {prefix}/ and none named by the export's ARN: {}", folders.join(", "))]
    Ambiguous { prefix: String, folders: Vec<String> },
}

/// The folder DynamoDB writes the export `export_arn` into under `prefix`:
/// `<prefix>/AWSDynamoDB/<export id>`, the export id being the ARN's last part
/// (`arn:aws:dynamodb:…:table/<table>/export/<export id>`).
pub(crate) fn export_folder(prefix: &str, export_arn: &str) -> String {
    let id = export_arn.rsplit('/').next().unwrap_or(export_arn);
    join(prefix, &format!("{EXPORTS_FOLDER}/{id}"))
}

fn join(prefix: &str, key: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}/{key}") }
}

/// A key as a manifest gives it, as a key of the bucket. AWS's manifests name keys from the
/// bucket's root, prefix included, but the developer guide's own example shows them without the
/// prefix (`AWSDynamoDB/<id>/…` while `s3Prefix` is set): both are read.
fn manifest_key(prefix: &str, key: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() || key.starts_with(&format!("{prefix}/")) || !key.starts_with(&format!("{EXPORTS_FOLDER}/")) {
        key.to_owned()
    } else {
        format!("{prefix}/{key}")
    }
}

/// The data files of the export `export_arn` under `prefix`, from its manifest; where the export
/// wrote no manifest (moto), the data files of the one export under `prefix` (or of the one whose
/// folder the ARN names, if there are several).
pub(crate) async fn export_files<S: ExportStore>(
    store: &S,
    prefix: &str,
    export_arn: &str,
) -> Result<ExportFiles, ExportError> {
    let folder = export_folder(prefix, export_arn);
    let summary_key = format!("{folder}/manifest-summary.json");
    let Some(summary_bytes) = read_small(store, &summary_key).await? else {
        return listed_files(store, prefix, &folder).await;
    };
    let summary: ManifestSummary = serde_json::from_slice(&summary_bytes)
        .map_err(|e| ExportError::Manifest { key: summary_key.clone(), problem: e.to_string() })?;
    if let Some(format) = summary.output_format.as_deref().filter(|f| *f != "DYNAMODB_JSON") {
        return Err(ExportError::Manifest {
            key: summary_key,
            problem: format!("the export's outputFormat is {format}; only DYNAMODB_JSON is read"),
        });
    }
    let files_key = manifest_key(prefix, &summary.manifest_files_s3_key);
    let Some(files_bytes) = read_small(store, &files_key).await? else {
        return Err(ExportError::Missing { key: files_key, named_by: summary_key });
    };
    let mut files = Vec::new();
    for (n, line) in files_bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let file: ManifestFile = serde_json::from_slice(line)
            .map_err(|e| ExportError::Manifest { key: files_key.clone(), problem: format!("line {}: {e}", n + 1) })?;
        files.push(DataFile { key: manifest_key(prefix, &file.data_file_s3_key), item_count: Some(file.item_count) });
    }
    let listed: u64 = files.iter().filter_map(|f| f.item_count).sum();
    if let Some(total) = summary.item_count
        && total != listed
    {
        return Err(ExportError::Manifest {
            key: summary_key,
            problem: format!("itemCount is {total}, but the files {files_key} lists hold {listed}"),
        });
    }
    Ok(ExportFiles { folder, summary: Some(summary), files })
}

/// The export's data files found by listing, where it has no manifest.
async fn listed_files<S: ExportStore>(store: &S, prefix: &str, folder: &str) -> Result<ExportFiles, ExportError> {
    let exports = join(prefix, &format!("{EXPORTS_FOLDER}/"));
    let keys = store.list(&exports).await.map_err(|source| ExportError::Store { key: exports.clone(), source })?;
    // Every `<prefix>/AWSDynamoDB/<id>/data/<file>`, by folder.
    let mut by_folder: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for key in keys {
        let Some((id, rest)) = key[exports.len()..].split_once('/') else { continue };
        if let Some(name) = rest.strip_prefix("data/")
            && !name.is_empty()
            && !name.contains('/')
        {
            by_folder.entry(format!("{exports}{id}")).or_default().push(key);
        }
    }
    let chosen = match by_folder.remove(folder) {
        Some(files) => Some((folder.to_owned(), files)),
        None if by_folder.len() == 1 => by_folder.pop_first(),
        None if by_folder.is_empty() => None,
        None => {
            return Err(ExportError::Ambiguous {
                prefix: prefix.trim_matches('/').to_owned(),
                folders: by_folder.into_keys().collect(),
            });
        }
    };
    let Some((folder, keys)) = chosen else {
        return Err(ExportError::NotFound { prefix: prefix.trim_matches('/').to_owned() });
    };
    let files = keys.into_iter().map(|key| DataFile { key, item_count: None }).collect();
    Ok(ExportFiles { folder, summary: None, files })
}

/// A manifest's bytes (manifests are small: one line a data file), or `None` if it is missing.
async fn read_small<S: ExportStore>(store: &S, key: &str) -> Result<Option<Vec<u8>>, ExportError> {
    let Some(mut reader) =
        store.open(key).await.map_err(|source| ExportError::Store { key: key.to_owned(), source })?
    else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.map_err(|source| ExportError::Store { key: key.to_owned(), source })?;
    Ok(Some(bytes))
}

/// Opens `file` of an export for reading.
pub(crate) async fn open_file<S: ExportStore>(
    store: &S,
    export: &ExportFiles,
    file: &DataFile,
) -> Result<ExportLines<ObjectReader>, ExportError> {
    match store.open(&file.key).await {
        Ok(Some(reader)) => Ok(ExportLines::new(file, reader)),
        Ok(None) => Err(ExportError::Missing {
            key: file.key.clone(),
            named_by: match export.summary {
                Some(_) => format!("{}/manifest-files.json", export.folder),
                None => "the listing of its data folder".to_owned(),
            },
        }),
        Err(source) => Err(ExportError::Store { key: file.key.clone(), source }),
    }
}

/// The lines of one gzip'd data file, read one at a time from a stream of its bytes.
pub(crate) struct ExportLines<R> {
    file: String,
    expected: Option<u64>,
    source: Source<R>,
    buffer: Vec<u8>,
    line: u64,
    items: u64,
    done: bool,
}

/// The file's bytes: compressed until the first read shows whether there are any (DynamoDB
/// writes an empty partition's file with no bytes at all, which is no gzip stream).
enum Source<R> {
    Compressed(Option<BufReader<R>>),
    /// Boxed: the decoder's state is a few hundred bytes, the enum stays small.
    Lines(Box<BufReader<GzipDecoder<BufReader<R>>>>),
}

impl<R: AsyncRead + Unpin> ExportLines<R> {
    /// The lines of `file`, whose gzip'd bytes `source` streams.
    pub fn new(file: &DataFile, source: R) -> Self {
        ExportLines {
            file: file.key.clone(),
            expected: file.item_count,
            source: Source::Compressed(Some(BufReader::new(source))),
            buffer: Vec::new(),
            line: 0,
            items: 0,
            done: false,
        }
    }

    /// The next line as an item or a record; `None` at the end of the file, once its count has
    /// been checked against the manifest's.
    pub async fn next(&mut self) -> Result<Option<Line>, ExportError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if !self.read_raw_line().await? {
                self.done = true;
                if let Some(expected) = self.expected
                    && expected != self.items
                {
                    return Err(ExportError::Count { file: self.file.clone(), expected, found: self.items });
                }
                return Ok(None);
            }
            let text = self.buffer.strip_suffix(b"\n").unwrap_or(&self.buffer);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.is_empty() {
                continue;
            }
            let line = read_line(text).map_err(|problem| ExportError::Line {
                file: self.file.clone(),
                line: self.line,
                problem,
            })?;
            self.items += 1;
            return Ok(Some(line));
        }
    }

    /// How many items and records have been read so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The bytes the reader holds for its current line: the longest line's, whatever the file's
    /// size.
    #[cfg(test)]
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Reads the next line, newline included, into the buffer; `false` at the end of the file.
    async fn read_raw_line(&mut self) -> Result<bool, ExportError> {
        self.buffer.clear();
        let read_error = |line, source| ExportError::Read { file: self.file.clone(), line, source };
        if let Source::Compressed(raw) = &mut self.source {
            let mut raw = raw.take().expect("a file's source is taken once");
            let empty = raw.fill_buf().await.map_err(|e| read_error(0, e))?.is_empty();
            if empty {
                return Ok(false);
            }
            let mut decoder = GzipDecoder::new(raw);
            // A file of several gzip members reads as their concatenation, as gunzip does.
            decoder.multiple_members(true);
            self.source = Source::Lines(Box::new(BufReader::with_capacity(64 << 10, decoder)));
        }
        let Source::Lines(lines) = &mut self.source else { unreachable!("the source was just decompressed") };
        loop {
            let available = lines.fill_buf().await.map_err(|e| read_error(self.line, e))?;
            if available.is_empty() {
                if self.buffer.is_empty() {
                    return Ok(false);
                }
                self.line += 1;
                return Ok(true);
            }
            let (taken, complete) = match memchr_newline(available) {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if self.buffer.len() + taken > MAX_LINE_BYTES {
                return Err(ExportError::Line {
                    file: self.file.clone(),
                    line: self.line + 1,
                    problem: format!("longer than {MAX_LINE_BYTES} bytes, which no item is"),
                });
            }
            self.buffer.extend_from_slice(&available[..taken]);
            lines.consume(taken);
            if complete {
                self.line += 1;
                return Ok(true);
            }
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests;
