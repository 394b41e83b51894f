//! What the data passes of a rehearsal did, and the items that failed them.
//!
//! In production a pass stops at its first failed item, or with a dead-letter file goes on and
//! fails at its end when more items failed than its step accepts. A rehearsal wants to see every
//! failure of every step instead, so a migrator that rehearses gives each pass a dead-letter file
//! of the rehearsal's own (in a private temporary folder, removed when the rehearsal ends) and
//! accepts every failure, keeping the step's own budget to judge it by afterwards. The report
//! reads the first lines of each file; the counts come from the pass itself. Without DynamoDB
//! Local (the `local` feature) there is no rehearsal, only `plan`'s discovery of passes.
#![cfg_attr(not(feature = "local"), allow(dead_code))]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::data::{DataError, DataReport, FailureBudget, PassOptions, RateLimit};

/// One pass of a data step (or a rebuild's copy) as it ran in a rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct PassRun {
    /// The migration's version.
    pub migration: u32,
    /// The step in its migration, from 0.
    pub step: usize,
    /// The pass in its step, from 0.
    pub pass: usize,
    /// The table it read (physical name).
    pub source: String,
    /// The table it wrote (physical name; the same in place).
    pub target: String,
    /// What the step accepts of failed items (the rehearsal itself accepts them all, to see them).
    #[serde(serialize_with = "as_text")]
    pub budget: FailureBudget,
    /// The pass's own rate limit, if it has one.
    #[serde(skip)]
    pub rate: Option<RateLimit>,
    /// Scans with strongly consistent reads (twice the read units).
    pub consistent_read: bool,
    /// What it did, once it ended.
    pub report: Option<DataReport>,
    /// Why it stopped, when it did not end.
    pub error: Option<String>,
    /// How long it ran, in milliseconds.
    pub millis: u128,
    /// The second run of an in-place pass over its own output (the idempotence check), which
    /// writes nothing.
    pub again: bool,
    #[serde(skip)]
    pub(crate) dead_letter: PathBuf,
}

fn as_text<S: serde::Serializer>(budget: &FailureBudget, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(budget)
}

/// An item that failed, as its dead-letter line says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedItem {
    /// The table the line names (physical): the table the pass read, or the table written when
    /// DynamoDB refused the write.
    pub table: String,
    /// The item's key in canonical DynamoDB JSON.
    pub key: serde_json::Value,
    /// Why: for a typed read, every attribute that fails and what would hold it.
    pub error: String,
}

/// The private folder of a rehearsal's dead-letter files; removed, with what is in it, when the
/// last handle goes.
#[derive(Debug)]
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Collects the passes of one rehearsal's migrations; clones share what they collected.
#[derive(Debug, Clone)]
pub(crate) struct Collector {
    /// Where the passes keep their failed items; none when passes are only discovered.
    folder: Option<Arc<Folder>>,
    runs: Arc<Mutex<Vec<PassRun>>>,
    /// The migration whose steps run now.
    migration: u32,
}

impl Collector {
    /// A collector with a new private folder for its files (only this user can read it: the
    /// items in it are the environment's).
    pub(crate) fn new() -> std::io::Result<Collector> {
        let dir = std::env::temp_dir().join(format!(
            "dynamo-migrate-rehearsal-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        Ok(Collector { folder: Some(Arc::new(Folder(dir))), runs: Arc::default(), migration: 0 })
    }

    /// A collector that only records which passes a data step makes, without running them
    /// (`plan` estimates them): [`Collector::discovering`] tells the pass to return at once.
    pub(crate) fn discovery() -> Collector {
        Collector { folder: None, runs: Arc::default(), migration: 0 }
    }

    /// True for a collector that only discovers passes.
    pub(crate) fn discovering(&self) -> bool {
        self.folder.is_none()
    }

    /// Where this rehearsal's files go.
    fn folder(&self) -> &Path {
        self.folder.as_ref().map_or(Path::new("."), |f| &f.0)
    }

    /// The same collector, for the steps of migration `version`.
    pub(crate) fn for_migration(&self, version: u32) -> Collector {
        Collector { migration: version, ..self.clone() }
    }

    /// Records that pass `pass` of step `step` starts, and makes it keep every failed item in a
    /// file of the rehearsal's own, accepting them all; returns the pass's place in the record.
    pub(crate) fn begin(
        &self,
        (step, pass): (usize, usize),
        source: &str,
        target: &str,
        options: &mut PassOptions,
        again: bool,
    ) -> usize {
        let which = if again { "again" } else { "pass" };
        let file = self.folder().join(format!("m{}-step{step}-{which}{pass}.jsonl", self.migration));
        let run = PassRun {
            migration: self.migration,
            step,
            pass,
            source: source.to_owned(),
            target: target.to_owned(),
            budget: options.max_failed,
            rate: options.rate,
            consistent_read: options.consistent_read,
            report: None,
            error: None,
            millis: 0,
            again,
            dead_letter: file.clone(),
        };
        options.dead_letter = Some(file);
        options.max_failed = FailureBudget::Fraction(1.0);
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.push(run);
        runs.len() - 1
    }

    /// Records how the pass at `place` ended.
    pub(crate) fn end(&self, place: usize, result: &Result<DataReport, DataError>, took: Duration) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let run = &mut runs[place];
        run.millis = took.as_millis();
        match result {
            Ok(report) => run.report = Some(*report),
            Err(e) => run.error = Some(e.to_string()),
        }
    }

    /// The file where the replay of the rebuild at step `step` of migration `version` keeps the
    /// records it could not transform.
    pub(crate) fn replay_file(&self, version: u32, step: u32) -> PathBuf {
        self.folder().join(format!("m{version}-step{step}-replay.jsonl"))
    }

    /// Every pass recorded so far, in the order they started.
    pub(crate) fn runs(&self) -> Vec<PassRun> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first `most` distinct items (by table and key) that failed step `step` of migration
    /// `version`: its passes' files, then its replay's.
    pub(crate) fn failures(&self, version: u32, step: usize, most: usize) -> Vec<FailedItem> {
        let mut files: Vec<PathBuf> = self
            .runs()
            .into_iter()
            .filter(|r| r.migration == version && r.step == step && !r.again)
            .map(|r| r.dead_letter)
            .collect();
        files.push(self.replay_file(version, step as u32));
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for file in files {
            for item in read_failures(&file) {
                if found.len() == most {
                    return found;
                }
                if seen.insert((item.table.clone(), item.key.to_string())) {
                    found.push(item);
                }
            }
        }
        found
    }
}

/// The failed items of a dead-letter file, read lazily (the file may be long: only what is
/// listed is read); none when the file does not exist (nothing failed).
fn read_failures(path: &Path) -> impl Iterator<Item = FailedItem> {
    let lines = std::fs::File::open(path).ok().map(|f| std::io::BufReader::new(f).lines());
    lines.into_iter().flatten().map_while(Result::ok).filter_map(|line| {
        let value: serde_json::Value = serde_json::from_str(&line).ok()?;
        Some(FailedItem {
            table: value.get("table")?.as_str()?.to_owned(),
            key: value.get("key")?.clone(),
            error: value.get("error")?.as_str()?.to_owned(),
        })
    })
}

/// A key in canonical DynamoDB JSON as people read it, `{customer_nr: 1042, record: "profile"}`,
/// its attributes in `order` (the key schema's) first.
pub(crate) fn key_display(key: &serde_json::Value, order: &[String]) -> String {
    let Some(map) = key.as_object() else { return key.to_string() };
    let mut names: Vec<&String> = order.iter().filter(|n| map.contains_key(*n)).collect();
    names.extend(map.keys().filter(|k| !order.contains(k)));
    let parts: Vec<String> = names
        .into_iter()
        .map(|name| {
            let value = &map[name];
            let shown = if let Some(s) = value.get("S").and_then(|s| s.as_str()) {
                format!("{s:?}")
            } else if let Some(n) = value.get("N").and_then(|n| n.as_str()) {
                n.to_owned()
            } else if let Some(b) = value.get("B").and_then(|b| b.as_str()) {
                format!("<{} bytes>", aws_smithy_types::base64::decode(b).map_or(0, |b| b.len()))
            } else {
                value.to_string()
            };
            format!("{name}: {shown}")
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_keeps_its_failures_in_a_file_of_its_own_and_accepts_them_all() {
        let collector = Collector::new().unwrap().for_migration(4);
        let mut options = PassOptions { max_failed: FailureBudget::Items(3), ..PassOptions::default() };
        let place = collector.begin((0, 0), "t", "t", &mut options, false);
        assert_eq!(options.max_failed, FailureBudget::Fraction(1.0));
        let file = options.dead_letter.clone().unwrap();
        let line = |key: u32, error: &str| {
            format!("{}\n", serde_json::json!({"table": "t", "key": {"id": {"N": key.to_string()}}, "error": error}))
        };
        std::fs::write(&file, line(1, "bad") + &line(2, "worse") + &line(1, "bad again")).unwrap();
        collector.end(place, &Ok(DataReport { scanned: 10, failed: 3, ..DataReport::default() }), Duration::ZERO);
        let runs = collector.runs();
        assert_eq!(runs[0].budget, FailureBudget::Items(3), "the step's own budget is kept to judge it by");
        let failures = collector.failures(4, 0, 10);
        assert_eq!(failures.iter().map(|f| f.error.as_str()).collect::<Vec<_>>(), ["bad", "worse"], "once per key");
        assert_eq!(collector.failures(4, 0, 1).len(), 1);
        assert!(collector.failures(4, 1, 10).is_empty());
        assert_eq!(key_display(&failures[1].key, &["id".to_owned()]), "{id: 2}");

        let folder = file.parent().unwrap().to_owned();
        drop(collector);
        assert!(!folder.exists(), "the folder goes with the collector");
    }
}
