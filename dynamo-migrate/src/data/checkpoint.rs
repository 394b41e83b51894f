//! Where each segment of a pass has got to, kept in the ledger table so that a killed or
//! interrupted run resumes instead of starting again, and who works it, so that many workers
//! share one pass.
//!
//! Each pass has a header item (`checkpoint#<version>#<pass>`) saying what the pass is: its
//! source and target tables, the checksum of the migration's file it was started by, and its
//! number of segments. Each segment has an item of its own (`…#s<segment>`) with its
//! `LastEvaluatedKey` after the last page whose writes are all done, whether it is done, and its
//! counts. A resume whose pass differs (passes reordered, another table, an edited file) is
//! refused: continuing would mix the output of two different steps. Every write is fenced by the
//! migration's record (see `Ledger::save_checkpoint`) and retried when it fails transiently, so
//! that a long pass does not fail for one lost checkpoint.
//!
//! # Leases
//!
//! In a migration, a segment is worked under a lease on its item, as the Kinesis Client
//! Library's lease table does it: the worker that claims it writes its id, the run's token and a
//! new record version number (`rvn`), conditional on the version it read; every checkpoint it
//! saves renews the lease with another version, conditional on the one it holds. A segment is
//! claimable when nobody leases it, when its lease belongs to another run (fenced: that run's
//! token is no longer the record's), or when its version has stood still for a whole lease by
//! the claimer's own clock (its worker died or was paused). So a segment is worked by at most
//! one live lease holder; a takeover resumes from its last checkpoint; and a holder whose lease
//! was taken finds out at its next checkpoint, whose condition fails, and stops there.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DataError, DataReport, Item};
use crate::error::Error;
use crate::ledger::{ItemCondition, Ledger};

/// Where one segment stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SegmentState {
    /// The key to resume after; `None` with `done` false means from the start.
    pub key: Option<Item>,
    pub done: bool,
    pub counts: DataReport,
    /// Who works it, if anyone does or did.
    pub lease: Option<Lease>,
}

/// A segment's lease (see the module's header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The worker that holds it.
    pub owner: String,
    /// The token of the run the worker works for.
    pub run: String,
    /// The record version number, new at every claim and renewal.
    pub rvn: String,
}

/// This process as one worker of a run.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    pub id: String,
    /// The run's token (its lock's), which fences the worker's ledger writes.
    pub run: String,
    /// How long a lease lasts without a renewal before another worker may take it over.
    pub lease: std::time::Duration,
}

impl Worker {
    /// A worker of the run whose token is `run`, with an id no other process has.
    pub(crate) fn new(run: &str, lease: std::time::Duration) -> Worker {
        // A child of an AWS Batch array job or of a Kubernetes Indexed Job says which.
        let index = ["AWS_BATCH_JOB_ARRAY_INDEX", "JOB_COMPLETION_INDEX"]
            .iter()
            .find_map(|name| std::env::var(name).ok())
            .map(|i| format!(" index {i}"))
            .unwrap_or_default();
        Worker {
            id: format!("{}{index}#{:016x}", crate::lock::owner("worker"), fastrand::u64(..)),
            run: run.to_owned(),
            lease,
        }
    }
}

/// How long a segment's lease lasts without a renewal, unless the run says otherwise.
pub(crate) const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

fn new_rvn() -> String {
    format!("{:016x}", fastrand::u64(..))
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
    /// How this process shares the passes' segments with other workers of its run.
    leases: Option<Leases>,
}

/// How a process works a pass's segments under leases.
#[derive(Debug, Clone)]
pub(crate) struct Leases {
    pub worker: Worker,
    /// Stay until every segment is done (the run that opens the pass), taking over segments
    /// whose workers stopped renewing; otherwise leave when nothing is left to claim.
    pub wait: bool,
    /// Claim segments nobody has started; without, only take over lapsed ones.
    pub claim_fresh: bool,
    /// How many processes are expected to share each pass (for its number of segments).
    pub participants: u32,
    /// Write capacity units per second for the whole pass, split among the processes alive.
    pub budget: Option<u32>,
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
    /// The checkpoints of migration `version` in `ledger`, worked under leases by this process
    /// as the one worker of the run that the ledger is fenced by, which waits for every segment.
    pub(crate) fn in_ledger(ledger: Ledger, version: u32, migration: &str, checksum: &str) -> Self {
        let run = ledger.fence_token().unwrap_or("unfenced").to_owned();
        CheckpointStore {
            record: Some(Record { ledger, version, migration: migration.to_owned(), checksum: checksum.to_owned() }),
            leases: Some(Leases {
                worker: Worker::new(&run, DEFAULT_LEASE),
                wait: true,
                claim_fresh: true,
                participants: 1,
                budget: None,
            }),
        }
    }

    /// The same checkpoints, shared as `leases` says.
    pub(crate) fn with_leases(mut self, leases: Leases) -> Self {
        if self.record.is_some() {
            self.leases = Some(leases);
        }
        self
    }

    /// How this process shares segments, in a migration.
    pub(crate) fn leases(&self) -> Option<Leases> {
        self.leases.clone()
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
            states.insert(segment, segment_state(&state));
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
        save_retrying(record, item, None).await
    }

    /// Records where a segment stands. A segment under a lease (see the module's header) is
    /// saved only while its lease is still this worker's, and the save renews it.
    pub(crate) async fn save(
        &self,
        pass: &PassIdentity,
        segment: u32,
        state: &mut SegmentState,
    ) -> Result<(), DataError> {
        let Some(record) = &self.record else { return Ok(()) };
        let id = segment_id(&Self::header_id(record, pass), segment);
        let Some(held) = state.lease.clone() else {
            return save_retrying(record, item_of(&id, state), None).await;
        };
        let renewed = Lease { rvn: new_rvn(), ..held.clone() };
        let condition = ItemCondition {
            expression: "#owner = :owner AND #rvn = :rvn".to_owned(),
            names: vec![("#owner".to_owned(), "owner".to_owned()), ("#rvn".to_owned(), "rvn".to_owned())],
            values: vec![
                (":owner".to_owned(), AttributeValue::S(held.owner.clone())),
                (":rvn".to_owned(), AttributeValue::S(held.rvn.clone())),
            ],
        };
        let item = item_of(&id, &SegmentState { lease: Some(renewed.clone()), ..state.clone() });
        match save_retrying(record, item, Some(condition)).await {
            Ok(()) => {}
            // A write that landed although its answer was lost leaves the new version there.
            Err(DataError::SegmentTaken { .. })
                if self.segment_item(record, &id).await?.and_then(|s| s.lease) == Some(renewed.clone()) => {}
            Err(e) => return Err(e),
        }
        state.lease = Some(renewed);
        Ok(())
    }

    /// Every segment of `pass` as the ledger has it now (consistent reads).
    pub(crate) async fn segments(
        &self,
        pass: &PassIdentity,
        segments: u32,
    ) -> Result<BTreeMap<u32, SegmentState>, DataError> {
        let Some(record) = &self.record else { return Ok(BTreeMap::new()) };
        let header = Self::header_id(record, pass);
        let ids: Vec<String> = (0..segments).map(|s| segment_id(&header, s)).collect();
        let found = record.ledger.checkpoints(&ids).await.map_err(checkpoint_error)?;
        Ok((0..segments).filter_map(|s| Some((s, segment_state(found.get(&segment_id(&header, s))?)))).collect())
    }

    /// Claims `segment` for `me`, as it was read (`seen`); `None` when another worker changed it
    /// first. Returns the segment as claimed: where to resume, with `me`'s lease.
    pub(crate) async fn claim(
        &self,
        pass: &PassIdentity,
        segment: u32,
        seen: Option<&SegmentState>,
        me: &Worker,
    ) -> Result<Option<SegmentState>, DataError> {
        let Some(record) = &self.record else { return Ok(None) };
        let id = segment_id(&Self::header_id(record, pass), segment);
        let lease = Lease { owner: me.id.clone(), run: me.run.clone(), rvn: new_rvn() };
        let claimed = SegmentState { lease: Some(lease.clone()), ..seen.cloned().unwrap_or_default() };
        let condition = match seen.and_then(|s| s.lease.as_ref()) {
            None if seen.is_none() => ItemCondition {
                expression: "attribute_not_exists(#id)".to_owned(),
                names: vec![("#id".to_owned(), "id".to_owned())],
                values: vec![],
            },
            None => ItemCondition {
                expression: "attribute_not_exists(#rvn)".to_owned(),
                names: vec![("#rvn".to_owned(), "rvn".to_owned())],
                values: vec![],
            },
            Some(old) => ItemCondition {
                expression: "#rvn = :rvn".to_owned(),
                names: vec![("#rvn".to_owned(), "rvn".to_owned())],
                values: vec![(":rvn".to_owned(), AttributeValue::S(old.rvn.clone()))],
            },
        };
        match save_retrying(record, item_of(&id, &claimed), Some(condition)).await {
            Ok(()) => Ok(Some(claimed)),
            Err(DataError::SegmentTaken { .. }) => {
                // Unless the claim landed and only its answer was lost.
                let now = self.segment_item(record, &id).await?;
                Ok(now.filter(|s| s.lease.as_ref() == Some(&lease)))
            }
            Err(e) => Err(e),
        }
    }

    /// Says in the ledger that `pass` is open to workers (or, with `open` false, closed), for the
    /// run that the ledger is fenced by (see `workers`).
    pub(crate) async fn open_to_workers(&self, pass: &PassIdentity, open: bool) -> Result<(), DataError> {
        let (Some(record), Some(leases)) = (&self.record, &self.leases) else { return Ok(()) };
        let item: Item = [
            ("id".to_owned(), AttributeValue::S(super::OPEN_PASS.to_owned())),
            ("open".to_owned(), AttributeValue::Bool(open)),
            ("version".to_owned(), AttributeValue::N(record.version.to_string())),
            ("name".to_owned(), AttributeValue::S(record.migration.clone())),
            ("checksum".to_owned(), AttributeValue::S(record.checksum.clone())),
            ("pass".to_owned(), AttributeValue::S(pass.place.clone())),
            ("source".to_owned(), AttributeValue::S(pass.source.clone())),
            ("target".to_owned(), AttributeValue::S(pass.target.clone())),
            ("run".to_owned(), AttributeValue::S(leases.worker.run.clone())),
            ("lease_ms".to_owned(), AttributeValue::N(leases.worker.lease.as_millis().to_string())),
            ("participants".to_owned(), AttributeValue::N(leases.participants.to_string())),
        ]
        .into();
        let mut item = item;
        if let Some(budget) = leases.budget {
            item.insert("max_write_units".to_owned(), AttributeValue::N(budget.to_string()));
        }
        save_retrying(record, item, None).await
    }

    /// The counts of `pass` when every one of its segments is done.
    pub(crate) async fn done_report(&self, pass: &PassIdentity) -> Result<Option<DataReport>, DataError> {
        let Some(stored) = self.load(pass).await? else { return Ok(None) };
        let done = stored.states.len() as u32 == stored.segments && stored.states.values().all(|s| s.done);
        Ok(done.then(|| stored.states.values().fold(DataReport::default(), |sum, s| sum + s.counts)))
    }

    async fn segment_item(&self, record: &Record, id: &str) -> Result<Option<SegmentState>, DataError> {
        Ok(record.ledger.checkpoint(id).await.map_err(checkpoint_error)?.map(|item| segment_state(&item)))
    }
}

fn segment_id(header_id: &str, segment: u32) -> String {
    format!("{header_id}#s{segment:03}")
}

/// A segment's item as the ledger holds it.
fn item_of(id: &str, state: &SegmentState) -> Item {
    let mut item: Item = serde_dynamo::to_item(state.counts).expect("counts are an item");
    item.insert("id".to_owned(), AttributeValue::S(id.to_owned()));
    item.insert("done".to_owned(), AttributeValue::Bool(state.done));
    if let Some(key) = &state.key {
        item.insert("key".to_owned(), AttributeValue::M(key.clone()));
    }
    if let Some(lease) = &state.lease {
        item.insert("owner".to_owned(), AttributeValue::S(lease.owner.clone()));
        item.insert("run".to_owned(), AttributeValue::S(lease.run.clone()));
        item.insert("rvn".to_owned(), AttributeValue::S(lease.rvn.clone()));
    }
    item
}

/// A segment as its item says.
fn segment_state(item: &Item) -> SegmentState {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    };
    SegmentState {
        key: match item.get("key") {
            Some(AttributeValue::M(key)) => Some(key.clone()),
            _ => None,
        },
        done: matches!(item.get("done"), Some(AttributeValue::Bool(true))),
        counts: serde_dynamo::from_item(item.clone()).unwrap_or_default(),
        lease: match (text("owner"), text("run"), text("rvn")) {
            (Some(owner), Some(run), Some(rvn)) => Some(Lease { owner, run, rvn }),
            _ => None,
        },
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

fn checkpoint_error(e: Error) -> DataError {
    DataError::Checkpoint(Box::new(e))
}

/// Saves a checkpoint item, on `condition` when there is one; a transient failure is tried
/// again (a long pass should not fail for one lost write), a lost lock, a record no longer
/// running or a failed condition is not.
async fn save_retrying(record: &Record, item: Item, condition: Option<ItemCondition>) -> Result<(), DataError> {
    let mut attempt = 0;
    loop {
        match record.ledger.save_checkpoint(record.version, item.clone(), condition.clone()).await {
            Ok(()) => return Ok(()),
            Err(Error::CheckpointTaken { id, .. }) => return Err(DataError::SegmentTaken { id }),
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

/// How many processes are working `segments` now: the holders of leases of the run `run` on
/// segments not done, and `me`.
pub(crate) fn live_workers(segments: &BTreeMap<u32, SegmentState>, run: &str, me: &str) -> usize {
    let mut owners: std::collections::BTreeSet<&str> = segments
        .values()
        .filter(|s| !s.done)
        .filter_map(|s| s.lease.as_ref())
        .filter(|lease| lease.run == run)
        .map(|lease| lease.owner.as_str())
        .collect();
    owners.insert(me);
    owners.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased(owner: &str, run: &str, done: bool) -> SegmentState {
        let lease = Lease { owner: owner.to_owned(), run: run.to_owned(), rvn: "1".to_owned() };
        SegmentState { done, lease: Some(lease), ..SegmentState::default() }
    }

    #[test]
    fn the_live_workers_are_this_runs_holders_of_segments_not_done_and_this_one() {
        let segments: BTreeMap<u32, SegmentState> = [
            (0, leased("a", "run", false)),
            (1, leased("a", "run", false)),
            (2, leased("b", "run", false)),
            // Done: its holder may have left.
            (3, leased("c", "run", true)),
            // An earlier run's: fenced.
            (4, leased("d", "old", false)),
            (5, SegmentState::default()),
        ]
        .into();
        assert_eq!(live_workers(&segments, "run", "me"), 3);
        assert_eq!(live_workers(&segments, "run", "a"), 2);
        assert_eq!(live_workers(&BTreeMap::new(), "run", "me"), 1);
    }
}
