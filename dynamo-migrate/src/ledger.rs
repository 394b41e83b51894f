//! The ledger: one DynamoDB table per environment, one item per migration that was started.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_smithy_types::date_time::{DateTime, Format};

use crate::error::{Error, Result};
use crate::executor::wait_until_active;
use crate::names::TableNames;
use crate::sequence::{AppliedMigration, Status};

const ID: &str = "id";
const MIGRATION_PREFIX: &str = "migration#";

/// The ledger's item id of a migration, zero-padded so that ids sort like versions.
fn record_id(version: u32) -> String {
    format!("{MIGRATION_PREFIX}{version:010}")
}

/// The current time as RFC 3339, as the ledger stores it.
pub fn now() -> String {
    DateTime::from(SystemTime::now()).fmt(Format::DateTime).unwrap_or_default()
}

/// The ledger of one environment.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
}

impl Ledger {
    pub fn new(client: Client, names: &TableNames) -> Self {
        Ledger { client, table: names.ledger().to_owned() }
    }

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
            if !id.starts_with(MIGRATION_PREFIX) {
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
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", ID)
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(Error::LedgerConflict { version: record.version, name: record.name.clone() })
            }
            Err(e) => Err(Error::aws(format!("PutItem {} (start migration {})", self.table, record.version))(e)),
        }
    }

    /// The checkpoint attribute `name` of a migration's record.
    pub(crate) async fn checkpoint(&self, version: u32, name: &str) -> Result<Option<AttributeValue>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(version)))
            .consistent_read(true)
            .projection_expression("#cp")
            .expression_attribute_names("#cp", name)
            .send()
            .await
            .map_err(Error::aws(format!("GetItem {} (checkpoint of migration {version})", self.table)))?;
        Ok(out.item.and_then(|mut item| item.remove(name)))
    }

    /// Creates the checkpoint attribute `name` with `init`, unless it exists.
    pub(crate) async fn start_checkpoint(&self, version: u32, name: &str, init: AttributeValue) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(version)))
            .update_expression("SET #cp = if_not_exists(#cp, :init)")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#cp", name)
            .expression_attribute_names("#id", ID)
            .expression_attribute_values(":init", init)
            .send()
            .await
            .map_err(Error::aws(format!("UpdateItem {} (checkpoint of migration {version})", self.table)))?;
        Ok(())
    }

    /// Sets one entry of the checkpoint attribute `name`.
    pub(crate) async fn save_checkpoint(
        &self,
        version: u32,
        name: &str,
        entry: &str,
        value: AttributeValue,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(version)))
            .update_expression("SET #cp.#entry = :value")
            .expression_attribute_names("#cp", name)
            .expression_attribute_names("#entry", entry)
            .expression_attribute_values(":value", value)
            .send()
            .await
            .map_err(Error::aws(format!("UpdateItem {} (checkpoint of migration {version})", self.table)))?;
        Ok(())
    }

    /// Records that an interrupted or re-run migration runs again, keeping its checkpoints.
    pub async fn resume(&self, record: &AppliedMigration) -> Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(record.version)))
            .update_expression(
                "SET #status = :running, started_at = :now, applied_by = :by, tool_version = :tool, checksum = :checksum REMOVE finished_at, #error",
            )
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
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(Error::LedgerConflict { version: record.version, name: record.name.clone() })
            }
            Err(e) => Err(Error::aws(format!("UpdateItem {} (resume migration {})", self.table, record.version))(e)),
        }
    }

    /// Recovers a dirty migration (running after a crash, failed, or interrupted): marks it for
    /// re-run (the next run applies it again, resuming its data steps' checkpoints) or resolved
    /// (the operator made the tables right by hand), recording who did it.
    pub async fn recover(&self, version: u32, to: Status, by: &str) -> Result<()> {
        assert!(matches!(to, Status::Rerun | Status::Succeeded), "recovery marks for re-run or resolved");
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id(version)))
            .update_expression("SET #status = :to, recovered_by = :by, recovered_at = :now")
            .condition_expression("#status IN (:running, :failed, :interrupted)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", AttributeValue::S(to.to_string()))
            .expression_attribute_values(":by", AttributeValue::S(by.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(now()))
            .expression_attribute_values(":running", AttributeValue::S(Status::Running.to_string()))
            .expression_attribute_values(":failed", AttributeValue::S(Status::Failed.to_string()))
            .expression_attribute_values(":interrupted", AttributeValue::S(Status::Interrupted.to_string()));
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(Error::NotDirty { table: self.table.clone(), version })
            }
            Err(e) => Err(Error::aws(format!("UpdateItem {} (recover migration {version})", self.table))(e)),
        }
    }

    /// Records how a running migration ended; only a record that is still `running` changes.
    pub async fn finish(&self, record: &AppliedMigration, status: Status, error: Option<String>) -> Result<()> {
        let status_value = serde_dynamo::to_attribute_value::<_, AttributeValue>(status).expect("a status is a string");
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
            .condition_expression("#status = :running")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":status", status_value)
            .expression_attribute_values(":now", AttributeValue::S(now()))
            .expression_attribute_values(":running", AttributeValue::S(Status::Running.to_string()));
        if let Some(error) = error {
            update = update.expression_attribute_values(":error", AttributeValue::S(error));
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(Error::LedgerConflict { version: record.version, name: record.name.clone() })
            }
            Err(e) => Err(Error::aws(format!("UpdateItem {} (finish migration {})", self.table, record.version))(e)),
        }
    }
}
