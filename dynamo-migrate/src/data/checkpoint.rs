//! Where each segment of a pass has got to, kept in the migration's ledger record so that a
//! killed or interrupted run resumes instead of starting again.
//!
//! A pass is stored as one map attribute of the record: the number of segments it was started
//! with (a resumed run keeps it) and, per segment, the `LastEvaluatedKey` after the last page
//! whose writes are all done, or that the segment is done, with the counts so far.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DataReport, Item};
use crate::error::Result;
use crate::ledger::Ledger;

/// Where one segment stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SegmentState {
    /// The key to resume after; `None` with `done` false means from the start.
    pub key: Option<Item>,
    pub done: bool,
    pub counts: DataReport,
}

/// A pass as found in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredPass {
    pub segments: u32,
    pub states: BTreeMap<u32, SegmentState>,
}

/// The ledger record that holds a migration's checkpoints, or nowhere (a data step run outside
/// a migration keeps none).
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckpointStore {
    record: Option<(Ledger, u32)>,
}

impl CheckpointStore {
    pub(crate) fn in_ledger(ledger: Ledger, version: u32) -> Self {
        CheckpointStore { record: Some((ledger, version)) }
    }

    /// The stored state of pass `id`, if an earlier run started it.
    pub(crate) async fn load(&self, id: &str) -> Result<Option<StoredPass>> {
        let Some((ledger, version)) = &self.record else { return Ok(None) };
        let Some(AttributeValue::M(map)) = ledger.checkpoint(*version, id).await? else { return Ok(None) };
        let segments = match map.get("segments") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        let mut states = BTreeMap::new();
        for (name, value) in &map {
            let (Some(segment), AttributeValue::M(state)) =
                (name.strip_prefix('s').and_then(|s| s.parse().ok()), value)
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

    /// Records that pass `id` runs with `segments` segments, unless an earlier run did.
    pub(crate) async fn start(&self, id: &str, segments: u32) -> Result<()> {
        let Some((ledger, version)) = &self.record else { return Ok(()) };
        let init = AttributeValue::M([("segments".to_owned(), AttributeValue::N(segments.to_string()))].into());
        ledger.start_checkpoint(*version, id, init).await
    }

    /// Records where a segment stands.
    pub(crate) async fn save(&self, id: &str, segment: u32, state: &SegmentState) -> Result<()> {
        let Some((ledger, version)) = &self.record else { return Ok(()) };
        let mut value: Item = serde_dynamo::to_item(state.counts).expect("counts are an item");
        value.insert("done".to_owned(), AttributeValue::Bool(state.done));
        if let Some(key) = &state.key {
            value.insert("key".to_owned(), AttributeValue::M(key.clone()));
        }
        ledger.save_checkpoint(*version, id, &format!("s{segment}"), AttributeValue::M(value)).await
    }
}
