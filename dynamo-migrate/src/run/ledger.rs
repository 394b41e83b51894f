//! The ledger: one DynamoDB table per environment, one item per migration that was started.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType, KeysAndAttributes,
    Put, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_smithy_types::date_time::{DateTime, Format};

use crate::error::{Error, Result};
use crate::executor::wait_until_active;
use crate::lock::LOCK_ID;
use crate::names::TableNames;
use crate::rules::Recorded;
use crate::sequence::{AppliedMigration, Status};

const ID: &str = "id";
const MIGRATION_PREFIX: &str = "migration#";
/// The ledger's item of a table's control-plane changes that AWS counts (see `rules`).
const CONTROL_PREFIX: &str = "control#";
/// How long a recorded control-plane change is kept: the longest window a rule counts in.
const CONTROL_KEPT_MS: u64 = crate::rules::TABLE_CLASS_WINDOW_MS;

/// The ledger's item id of a migration, zero-padded so that ids sort like versions.
fn record_id(version: u32) -> String {
    format!("{MIGRATION_PREFIX}{version:010}")
}

/// The current time as RFC 3339, as the ledger stores it.
pub fn now() -> String {
    DateTime::from(SystemTime::now()).fmt(Format::DateTime).unwrap_or_default()
}

/// A time in milliseconds since the epoch as RFC 3339.
pub(crate) fn rfc3339_millis(ms: u64) -> String {
    DateTime::from_millis(ms as i64).fmt(Format::DateTime).unwrap_or_default()
}

/// The ledger of one environment.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
    /// The token of the lock this run holds: when set, every write is fenced by it.
    fence: Option<String>,
}

/// A condition on an item's own write: an expression, with its attribute names and values.
#[derive(Debug, Clone, Default)]
pub(crate) struct ItemCondition {
    pub expression: String,
    pub names: Vec<(String, String)>,
    pub values: Vec<(String, AttributeValue)>,
}

impl Ledger {
    /// The ledger table `names` gives (`<prefix>dynamo_migrate_ledger` unless the environment
    /// names another), read and written through `client`; unfenced until [`Ledger::fenced`].
    pub fn new(client: Client, names: &TableNames) -> Self {
        Ledger { client, table: names.ledger().to_owned(), fence: None }
    }

    /// The same ledger, every write fenced by the lock with `token` (see `lock`).
    pub fn fenced(mut self, token: &str) -> Self {
        self.fence = Some(token.to_owned());
        self
    }

    /// The ledger's physical table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// True when the ledger table exists.
    pub async fn exists(&self) -> Result<bool> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(false),
            Err(e) => Err(Error::aws(format!("DescribeTable {} (the ledger)", self.table))(e)),
        }
    }

    /// Creates the ledger table unless it exists; a concurrent creation by another run is fine.
    pub async fn ensure(&self) -> Result<()> {
        if !self.exists().await? {
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .key_schema(KeySchemaElement::builder().attribute_name(ID).key_type(KeyType::Hash).build()?)
                .attribute_definitions(
                    AttributeDefinition::builder().attribute_name(ID).attribute_type(ScalarAttributeType::S).build()?,
                )
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(e) => return Err(Error::aws(format!("CreateTable {} (the ledger)", self.table))(e)),
            }
        }
        wait_until_active(&self.client, &self.table, std::time::Duration::from_secs(300)).await
    }

    /// Every migration record, by version; empty when the ledger table does not exist yet.
    pub async fn records(&self) -> Result<Vec<AppliedMigration>> {
        if !self.exists().await? {
            return Ok(Vec::new());
        }
        let mut items =
            self.client.scan().table_name(&self.table).consistent_read(true).into_paginator().items().send();
        let mut records = Vec::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(Error::aws(format!("Scan {} (the ledger)", self.table)))?;
            let Some(AttributeValue::S(id)) = item.get(ID) else { continue };
            if !id.starts_with(MIGRATION_PREFIX) || id == LOCK_ID {
                continue;
            }
            let id = id.clone();
            let record: AppliedMigration = serde_dynamo::from_item(item).map_err(|e| Error::LedgerRecord {
                table: self.table.clone(),
                id,
                reason: e.to_string(),
            })?;
            records.push(record);
        }
        records.sort_by_key(|r| r.version);
        Ok(records)
    }

    /// Records that a migration has started; refuses if another run recorded it first.
    pub async fn start(&self, record: &AppliedMigration) -> Result<()> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(record).expect("a ledger record is always an item");
        item.insert(ID.to_owned(), AttributeValue::S(record_id(record.version)));
        if let Some(token) = &self.fence {
            item.insert(TOKEN.to_owned(), AttributeValue::S(token.clone()));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", ID)
            .build()?;
        let conflict = || Error::LedgerConflict { version: record.version, name: record.name.clone() };
        self.transact(TransactWriteItem::builder().put(put).build(), record.version, conflict).await
    }

    /// Records that an interrupted or re-run migration runs again, keeping its checkpoints.
    pub async fn resume(&self, record: &AppliedMigration) -> Result<()> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(record.version)))
            .update_expression(format!(
                "SET #status = :running, started_at = :now, applied_by = :by, tool_version = :tool, checksum = :checksum{} REMOVE finished_at, #error",
                if self.fence.is_some() { ", #token = :token" } else { "" }
            ))
            .condition_expression("#status IN (:interrupted, :rerun)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":running", AttributeValue::S(Status::Running.to_string()))
            .expression_attribute_values(":interrupted", AttributeValue::S(Status::Interrupted.to_string()))
            .expression_attribute_values(":rerun", AttributeValue::S(Status::Rerun.to_string()))
            .expression_attribute_values(":now", AttributeValue::S(record.started_at.clone()))
            .expression_attribute_values(":by", AttributeValue::S(record.applied_by.clone()))
            .expression_attribute_values(":tool", AttributeValue::S(record.tool_version.clone()))
            .expression_attribute_values(":checksum", AttributeValue::S(record.checksum.clone()));
        if let Some(token) = &self.fence {
            update = update
                .expression_attribute_names("#token", TOKEN)
                .expression_attribute_values(":token", AttributeValue::S(token.clone()));
        }
        let conflict = || Error::LedgerConflict { version: record.version, name: record.name.clone() };
        self.transact(TransactWriteItem::builder().update(update.build()?).build(), record.version, conflict).await
    }

    /// Applies a recovery that `sequence::plan_recovery` allowed, on the condition that the
    /// record is still as it was read (and, fenced, that this run holds the lock).
    pub async fn recover(&self, plan: &crate::sequence::RecoveryPlan, by: &str) -> Result<()> {
        let version = plan.version;
        let update = Update::builder()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(version)))
            .update_expression("SET #status = :to, checksum = :checksum, recovered_by = :by, recovered_at = :now")
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", AttributeValue::S(plan.to.to_string()))
            .expression_attribute_values(":from", AttributeValue::S(plan.from.to_string()))
            .expression_attribute_values(":checksum", AttributeValue::S(plan.checksum.clone()))
            .expression_attribute_values(":by", AttributeValue::S(by.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(now()))
            .build()?;
        let changed = || Error::NotDirty { table: self.table.clone(), version };
        self.transact(TransactWriteItem::builder().update(update).build(), version, changed).await
    }

    /// Records how a running migration ended; only a record that is still `running` (and, when
    /// fenced, still this run's) changes.
    pub async fn finish(&self, record: &AppliedMigration, status: Status, error: Option<String>) -> Result<()> {
        let status_value = AttributeValue::S(status.to_string());
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(record.version)))
            .update_expression(if error.is_some() {
                "SET #status = :status, finished_at = :now, #error = :error"
            } else {
                "SET #status = :status, finished_at = :now REMOVE #error"
            })
            .condition_expression(self.fenced_condition("#status = :running"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":status", status_value)
            .expression_attribute_values(":now", AttributeValue::S(now()))
            .expression_attribute_values(":running", AttributeValue::S(Status::Running.to_string()));
        if let Some(error) = error {
            update = update.expression_attribute_values(":error", AttributeValue::S(error));
        }
        if let Some(token) = &self.fence {
            update = update
                .expression_attribute_names("#token", TOKEN)
                .expression_attribute_values(":token", AttributeValue::S(token.clone()));
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Err(self
                .lost_or(
                    || Error::LedgerConflict { version: record.version, name: record.name.clone() },
                    record.version,
                )),
            Err(e) => Err(Error::aws(format!("UpdateItem {} (finish migration {})", self.table, record.version))(e)),
        }
    }

    /// The checkpoint item `id` (see `data::checkpoint`), read strongly consistent.
    pub(crate) async fn checkpoint(&self, id: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(Error::aws(format!("GetItem {} (checkpoint {id})", self.table)))?;
        Ok(out.item)
    }

    /// The checkpoint items with these ids that exist, read consistently, by id.
    pub(crate) async fn checkpoints(&self, ids: &[String]) -> Result<HashMap<String, HashMap<String, AttributeValue>>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|id| HashMap::from([(ID.to_owned(), AttributeValue::S(id.clone()))])).collect();
            let mut attempt = 0;
            while !keys.is_empty() {
                let request =
                    KeysAndAttributes::builder().set_keys(Some(keys.clone())).consistent_read(true).build()?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(Error::aws(format!("BatchGetItem {} (checkpoints)", self.table)))?;
                for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    if let Some(AttributeValue::S(id)) = item.get(ID) {
                        found.insert(id.clone(), item);
                    }
                }
                keys = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
                attempt += 1;
                if !keys.is_empty() {
                    tokio::time::sleep(crate::data::backoff(attempt)).await;
                }
            }
        }
        Ok(found)
    }

    /// The token of the run whose writes this ledger is fenced by, if it is.
    pub(crate) fn fence_token(&self) -> Option<&str> {
        self.fence.as_deref()
    }

    /// Writes the checkpoint item `item` (whose `id` is set) of migration `version`, in a
    /// transaction with the condition that the migration's record is running and, when fenced,
    /// still this run's, and with `condition` on the item itself, if given (a segment's lease:
    /// see `data::checkpoint`; when it fails, [`Error::CheckpointTaken`]). A checkpoint item of
    /// its own per segment keeps every item small, however many segments and however long their
    /// keys.
    pub(crate) async fn save_checkpoint(
        &self,
        version: u32,
        mut item: HashMap<String, AttributeValue>,
        condition: Option<ItemCondition>,
    ) -> Result<()> {
        item.insert("migration".to_owned(), AttributeValue::N(version.to_string()));
        let id = match item.get(ID) {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => String::new(),
        };
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(version)))
            .condition_expression(self.fenced_condition("#status = :running"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":running", AttributeValue::S(Status::Running.to_string()));
        if let Some(token) = &self.fence {
            check = check
                .expression_attribute_names("#token", TOKEN)
                .expression_attribute_values(":token", AttributeValue::S(token.clone()));
        }
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some(condition) = condition {
            put = put.condition_expression(condition.expression);
            for (name, attribute) in condition.names {
                put = put.expression_attribute_names(name, attribute);
            }
            for (name, value) in condition.values {
                put = put.expression_attribute_values(name, value);
            }
        }
        let items = vec![
            TransactWriteItem::builder().condition_check(check.build()?).build(),
            TransactWriteItem::builder().put(put.build()?).build(),
        ];
        let sent = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = e.as_service_error() {
                    let failed = |i: usize| {
                        cancelled.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                    };
                    if failed(0) {
                        return Err(self.lost_or(|| Error::NotDirty { table: self.table.clone(), version }, version));
                    }
                    if failed(1) {
                        return Err(Error::CheckpointTaken { table: self.table.clone(), id });
                    }
                }
                Err(Error::aws(format!("TransactWriteItems {} (checkpoint of migration {version})", self.table))(e))
            }
        }
    }

    /// Writes an item of migration `version`'s rebuild replay (see `data::replay`), fenced by the
    /// migration lock alone: unlike a scan checkpoint, a replay also runs after its migration
    /// succeeded (`sync`, and the `delete_old_table` step of a later migration).
    pub(crate) async fn save_replay(&self, version: u32, mut item: HashMap<String, AttributeValue>) -> Result<()> {
        item.insert("migration".to_owned(), AttributeValue::N(version.to_string()));
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build()?;
        // The put has no condition of its own: only the lock check can cancel the transaction.
        self.transact(TransactWriteItem::builder().put(put).build(), version, || Error::LedgerConflict {
            version,
            name: "(rebuild replay)".to_owned(),
        })
        .await
    }

    /// Deletes every checkpoint item of migration `version`, so that its passes start over,
    /// and the replay items of its rebuild, so that a rebuild starts over from a new stream
    /// position; returns how many there were.
    pub async fn delete_checkpoints(&self, version: u32) -> Result<usize> {
        let prefix = crate::data::checkpoint_prefix(version);
        let replay = crate::data::replay_prefix(version);
        let mut items = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(#id, :prefix) OR begins_with(#id, :replay)")
            .expression_attribute_names("#id", ID)
            .expression_attribute_values(":prefix", AttributeValue::S(prefix))
            .expression_attribute_values(":replay", AttributeValue::S(replay))
            .projection_expression("#id")
            .into_paginator()
            .items()
            .send();
        let mut deleted = 0;
        while let Some(item) = items.next().await {
            let item = item.map_err(Error::aws(format!("Scan {} (checkpoints of migration {version})", self.table)))?;
            let Some(id) = item.get(ID).cloned() else { continue };
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(ID, id)
                .send()
                .await
                .map_err(Error::aws(format!("DeleteItem {} (checkpoint of migration {version})", self.table)))?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The control-plane changes this tool made to the physical table `physical` that AWS
    /// counts (TTL changes, switches to on-demand, table class changes), oldest first; none when
    /// the ledger table does not exist yet.
    pub(crate) async fn control_changes(&self, physical: &str) -> Result<Vec<Recorded>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(format!("{CONTROL_PREFIX}{physical}")))
            .consistent_read(true)
            .send()
            .await;
        let item = match got {
            Ok(out) => out.item,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
            Err(e) => {
                return Err(Error::aws(format!("GetItem {} (control-plane changes of {physical})", self.table))(e));
            }
        };
        let Some(item) = item else { return Ok(Vec::new()) };
        let Some(changes) = item.get("changes").cloned() else { return Ok(Vec::new()) };
        let changes: Vec<Recorded> = serde_dynamo::from_attribute_value(changes).map_err(|e| Error::LedgerRecord {
            table: self.table.clone(),
            id: format!("{CONTROL_PREFIX}{physical}"),
            reason: e.to_string(),
        })?;
        Ok(changes)
    }

    /// Adds `change`, made to `physical` by migration `change.version`, to the table's recorded
    /// control-plane changes, forgetting those older than any rule counts; fenced by the lock.
    pub(crate) async fn record_control_change(&self, physical: &str, change: Recorded) -> Result<()> {
        let mut changes = self.control_changes(physical).await?;
        changes.retain(|c| c.at_ms + CONTROL_KEPT_MS > change.at_ms);
        let version = change.version;
        changes.push(change);
        let mut item: HashMap<String, AttributeValue> = HashMap::new();
        item.insert(ID.to_owned(), AttributeValue::S(format!("{CONTROL_PREFIX}{physical}")));
        item.insert("table".to_owned(), AttributeValue::S(physical.to_owned()));
        item.insert(
            "changes".to_owned(),
            serde_dynamo::to_attribute_value(&changes).expect("recorded changes are always an attribute value"),
        );
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build()?;
        // The put has no condition of its own: only the lock check can cancel the transaction.
        self.transact(TransactWriteItem::builder().put(put).build(), version, || Error::LedgerConflict {
            version,
            name: format!("(control-plane changes of {physical})"),
        })
        .await
    }

    /// Copies this ledger's records of migrations and of control-plane changes (what decides
    /// which migrations are pending, and what AWS's rules count) into `into`, which exists; the
    /// lock, checkpoints and rebuild replays stay. Returns how many items were copied.
    #[cfg_attr(not(feature = "local"), allow(dead_code))]
    pub(crate) async fn copy_records_into(&self, into: &Ledger) -> Result<usize> {
        if !self.exists().await? {
            return Ok(0);
        }
        let mut items =
            self.client.scan().table_name(&self.table).consistent_read(true).into_paginator().items().send();
        let mut copied = 0;
        while let Some(item) = items.next().await {
            let item = item.map_err(Error::aws(format!("Scan {} (the ledger)", self.table)))?;
            let Some(AttributeValue::S(id)) = item.get(ID) else { continue };
            if id == LOCK_ID || !(id.starts_with(MIGRATION_PREFIX) || id.starts_with(CONTROL_PREFIX)) {
                continue;
            }
            into.client
                .put_item()
                .table_name(&into.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(Error::aws(format!("PutItem {}", into.table)))?;
            copied += 1;
        }
        Ok(copied)
    }

    /// `condition`, and when fenced, that the record is still this run's.
    fn fenced_condition(&self, condition: &str) -> String {
        if self.fence.is_some() { format!("{condition} AND #token = :token") } else { condition.to_owned() }
    }

    fn lost_or(&self, otherwise: impl FnOnce() -> Error, version: u32) -> Error {
        if self.fence.is_some() { Error::LockLost { table: self.table.clone(), version } } else { otherwise() }
    }

    /// Writes `item`, in a transaction with a check that the lock item still carries this run's
    /// token when the ledger is fenced. A failed condition on the record becomes `conflict()`.
    async fn transact(&self, item: TransactWriteItem, version: u32, conflict: impl FnOnce() -> Error) -> Result<()> {
        let mut items = Vec::with_capacity(2);
        if let Some(token) = &self.fence {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key(ID, AttributeValue::S(LOCK_ID.to_owned()))
                // The token alone: a run that took the lock over wrote its own. Whether this
                // run's lease still holds is its own clock's to judge (see `lock`), never
                // DynamoDB's wall clock against the time another machine wrote.
                .condition_expression("#token = :token")
                .expression_attribute_names("#token", "token")
                .expression_attribute_values(":token", AttributeValue::S(token.clone()))
                .build()?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        items.push(item);
        let fenced = self.fence.is_some();
        let mut attempt = 0;
        loop {
            let sent = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let Err(e) = sent else { return Ok(()) };
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = e.as_service_error() {
                let failed: Vec<bool> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code() == Some("ConditionalCheckFailed"))
                    .collect();
                if fenced && failed.first() == Some(&true) {
                    return Err(Error::LockLost { table: self.table.clone(), version });
                }
                if failed.last() == Some(&true) {
                    return Err(conflict());
                }
                // Another transaction touched the same item at the same moment: try again.
                if attempt < 5 {
                    attempt += 1;
                    tokio::time::sleep(crate::data::backoff(attempt)).await;
                    continue;
                }
            }
            return Err(Error::aws(format!("TransactWriteItems {} (migration {version})", self.table))(e));
        }
    }
}

/// The attribute of a migration's record that holds the token of the lock it runs under.
const TOKEN: &str = "lock_token";
