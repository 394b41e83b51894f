//! Where each segment of a pass has got to, kept in the ledger table so that a killed or
//! interrupted run resumes instead of starting again.
//!
//! Each pass has a header item (`checkpoint#<version>#<pass>`) saying what the pass is: its
//! source and target tables, the checksum of the migration's file it was started by, and its
//! number of segments. Each segment has an item of its own (`…#s<segment>`) with its
//! `LastEvaluatedKey` after the last page whose writes are all done, whether it is done, and its
//! counts. A resume whose pass differs (passes reordered, another table, an edited file) is
//! refused: continuing would mix the output of two different steps. Every write is fenced by the
//! migration's record (see `Ledger::save_checkpoint`) and retried when it fails transiently, so
//! that a long pass does not fail for one lost checkpoint.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DataError, DataReport, Item};
use crate::error::Error;
use crate::ledger::Ledger;

/// Where one segment stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SegmentState {
    /// The key to resume after; `None` with `done` false means from the start.
    pub key: Option<Item>,
    pub done: bool,
    pub counts: DataReport,
}

/// What a pass is, as its checkpoints record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassIdentity {
    /// The pass's place in its migration: `step <i>, pass <j>`.
    pub place: String,
    pub source: String,
    pub target: String,
}

/// A pass as found in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredPass {
    pub segments: u32,
    pub states: BTreeMap<u32, SegmentState>,
}

/// The ledger that holds a migration's checkpoints, or nowhere (a data step run outside a
/// migration keeps none).
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckpointStore {
    record: Option<Record>,
}

#[derive(Debug, Clone)]
struct Record {
    ledger: Ledger,
    version: u32,
    migration: String,
    checksum: String,
}

/// The prefix of every checkpoint item of migration `version`.
pub(crate) fn checkpoint_prefix(version: u32) -> String {
    format!("checkpoint#{version:010}#")
}

impl CheckpointStore {
    pub(crate) fn in_ledger(ledger: Ledger, version: u32, migration: &str, checksum: &str) -> Self {
        CheckpointStore {
            record: Some(Record { ledger, version, migration: migration.to_owned(), checksum: checksum.to_owned() }),
        }
    }

    /// The version of the migration whose checkpoints these are, if any.
    pub(crate) fn migration(&self) -> Option<u32> {
        self.record.as_ref().map(|r| r.version)
    }

    fn header_id(record: &Record, pass: &PassIdentity) -> String {
        format!("{}{}", checkpoint_prefix(record.version), pass.place.replace(", ", "#").replace(' ', ""))
    }

    /// The stored state of `pass`, if an earlier run started it; refused when the earlier run's
    /// pass was another one.
    pub(crate) async fn load(&self, pass: &PassIdentity) -> Result<Option<StoredPass>, DataError> {
        let Some(record) = &self.record else { return Ok(None) };
        let header_id = Self::header_id(record, pass);
        let Some(header) = record.ledger.checkpoint(&header_id).await.map_err(checkpoint_error)? else {
            return Ok(None);
        };
        let text = |name: &str| match header.get(name) {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => String::new(),
        };
        let (source, target, checksum) = (text("source"), text("target"), text("checksum"));
        let mut differences = Vec::new();
        if source != pass.source || target != pass.target {
            differences.push(format!(
                "it was started as a pass over {source} into {target}, and the code now makes it a pass over {} into {}",
                pass.source, pass.target
            ));
        }
        if checksum != record.checksum {
            differences.push(format!(
                "it was started by the migration's file with checksum {}, and the file now has {}",
                short(&checksum),
                short(&record.checksum)
            ));
        }
        if !differences.is_empty() {
            return Err(DataError::CheckpointMismatch {
                version: record.version,
                migration: record.migration.clone(),
                place: pass.place.clone(),
                differences: differences.join("; "),
            });
        }
        let segments = match header.get("segments") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        let mut states = BTreeMap::new();
        for segment in 0..segments {
            let Some(state) =
                record.ledger.checkpoint(&segment_id(&header_id, segment)).await.map_err(checkpoint_error)?
            else {
                continue;
            };
            let counts: DataReport = serde_dynamo::from_item(state.clone()).unwrap_or_default();
            let key = match state.get("key") {
                Some(AttributeValue::M(key)) => Some(key.clone()),
                _ => None,
            };
            let done = matches!(state.get("done"), Some(AttributeValue::Bool(true)));
            states.insert(segment, SegmentState { key, done, counts });
        }
        Ok((segments > 0).then_some(StoredPass { segments, states }))
    }

    /// Records that `pass` runs with `segments` segments (a resumed run keeps the stored number).
    pub(crate) async fn start(&self, pass: &PassIdentity, segments: u32) -> Result<(), DataError> {
        let Some(record) = &self.record else { return Ok(()) };
        let item: Item = [
            ("id".to_owned(), AttributeValue::S(Self::header_id(record, pass))),
            ("pass".to_owned(), AttributeValue::S(pass.place.clone())),
            ("source".to_owned(), AttributeValue::S(pass.source.clone())),
            ("target".to_owned(), AttributeValue::S(pass.target.clone())),
            ("checksum".to_owned(), AttributeValue::S(record.checksum.clone())),
            ("segments".to_owned(), AttributeValue::N(segments.to_string())),
        ]
        .into();
        save_retrying(record, item).await
    }

    /// Records where a segment stands.
    pub(crate) async fn save(&self, pass: &PassIdentity, segment: u32, state: &SegmentState) -> Result<(), DataError> {
        let Some(record) = &self.record else { return Ok(()) };
        let mut item: Item = serde_dynamo::to_item(state.counts).expect("counts are an item");
        item.insert("id".to_owned(), AttributeValue::S(segment_id(&Self::header_id(record, pass), segment)));
        item.insert("done".to_owned(), AttributeValue::Bool(state.done));
        if let Some(key) = &state.key {
            item.insert("key".to_owned(), AttributeValue::M(key.clone()));
        }
        save_retrying(record, item).await
    }
}

fn segment_id(header_id: &str, segment: u32) -> String {
    format!("{header_id}#s{segment:03}")
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

fn checkpoint_error(e: Error) -> DataError {
    DataError::Checkpoint(Box::new(e))
}

/// Saves a checkpoint item; a transient failure is tried again (a long pass should not fail for
/// one lost write), a lost lock or a record no longer running is not.
async fn save_retrying(record: &Record, item: Item) -> Result<(), DataError> {
    let mut attempt = 0;
    loop {
        match record.ledger.save_checkpoint(record.version, item.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ Error::NotDirty { .. }) => return Err(checkpoint_error(e)),
            Err(e) if e.is_lock_lost() => return Err(checkpoint_error(e)),
            Err(e) if attempt < 8 => {
                attempt += 1;
                tracing::warn!("saving a checkpoint failed, trying again: {e:#}");
                tokio::time::sleep(super::backoff(attempt)).await;
            }
            Err(e) => return Err(checkpoint_error(e)),
        }
    }
}
