//! Reads a table back from the account into the same `TableDef` the code declares.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types as sdk;
use dynamo_model::{Billing, GlobalIndex, KeyAttr, KeyType, LocalIndex, TableDef, Throughput};

use crate::error::{Error, Result};
use crate::rules::{Decreases, Described};
use crate::sdk::{key_type_from, projection_from, stream_view_from, table_class_from};

/// Fields that DynamoDB Local cannot report (it has no `ListTagsOfResource` and no
/// `DescribeContinuousBackups`, and it accepts a table class but always describes STANDARD),
/// so they are left out of comparisons there.
pub const NOT_CHECKED_ON_LOCAL: [&str; 3] = ["tags", "point_in_time_recovery", "table_class"];

/// A table as the account has it, with the fields that could not be read.
#[derive(Debug, Clone)]
pub struct LiveTable {
    /// The table as described, in the model the code declares tables in, named logically.
    pub def: TableDef,
    /// The fields of `def` this endpoint cannot report, which comparisons leave out (see
    /// [`NOT_CHECKED_ON_LOCAL`]).
    pub not_checked: Vec<&'static str>,
    /// DynamoDB's `ItemCount`, which it updates about every six hours: an estimate.
    pub item_count: Option<i64>,
    /// When the table was created, in milliseconds since the epoch.
    pub created_ms: Option<u64>,
    /// What the descriptions say of the table's recent control-plane changes (see `rules`).
    pub described: Described,
}

impl LiveTable {
    /// The live definition, with the fields this endpoint cannot report taken from `declared`:
    /// what cannot be seen is assumed to be as the code says.
    pub fn assuming_unchecked_as(&self, declared: &TableDef) -> TableDef {
        let mut def = self.def.clone();
        for field in &self.not_checked {
            match *field {
                "tags" => def.tags = declared.tags.clone(),
                "point_in_time_recovery" => def.point_in_time_recovery = declared.point_in_time_recovery,
                "table_class" => def.table_class = declared.table_class,
                _ => {}
            }
        }
        def
    }
}

/// Reads the physical table `physical` as version `version` of the logical table `logical`;
/// `None` when it does not exist. On a local endpoint, what DynamoDB Local cannot report is not
/// read (see [`NOT_CHECKED_ON_LOCAL`]).
pub async fn describe(
    client: &Client,
    physical: &str,
    logical: &str,
    version: u32,
    local: bool,
) -> Result<Option<LiveTable>> {
    let described = match client.describe_table().table_name(physical).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => return Ok(None),
        Err(e) => return Err(Error::aws(format!("DescribeTable {physical}"))(e)),
    };
    let Some(table) = described.table else { return Ok(None) };
    let mut def =
        from_description(&table, logical).map_err(|reason| Error::Unreadable { table: physical.to_owned(), reason })?;
    def.version = version;
    let created_ms = table.creation_date_time().and_then(millis);
    let mut described = described_changes(&table, created_ms);

    let ttl = client
        .describe_time_to_live()
        .table_name(physical)
        .send()
        .await
        .map_err(Error::aws(format!("DescribeTimeToLive {physical}")))?;
    if let Some(ttl) = ttl.time_to_live_description() {
        if matches!(ttl.time_to_live_status(), Some(sdk::TimeToLiveStatus::Enabled | sdk::TimeToLiveStatus::Enabling)) {
            def.ttl_attribute = ttl.attribute_name().map(str::to_owned);
        }
        described.ttl_in_transition = matches!(
            ttl.time_to_live_status(),
            Some(sdk::TimeToLiveStatus::Enabling | sdk::TimeToLiveStatus::Disabling)
        );
    }

    let mut not_checked = Vec::new();
    if local {
        not_checked.extend(NOT_CHECKED_ON_LOCAL);
    } else {
        let backups = client
            .describe_continuous_backups()
            .table_name(physical)
            .send()
            .await
            .map_err(Error::aws(format!("DescribeContinuousBackups {physical}")))?;
        def.point_in_time_recovery = backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            == Some(&sdk::PointInTimeRecoveryStatus::Enabled);
        if let Some(arn) = table.table_arn() {
            // ListTagsOfResource answers a page at a time (the SDK has no paginator for it).
            let mut next = None;
            loop {
                let page = client
                    .list_tags_of_resource()
                    .resource_arn(arn)
                    .set_next_token(next)
                    .send()
                    .await
                    .map_err(Error::aws(format!("ListTagsOfResource {physical}")))?;
                def.tags.extend(page.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())));
                next = page.next_token;
                if next.is_none() {
                    break;
                }
            }
        }
    }
    Ok(Some(LiveTable { def, not_checked, item_count: table.item_count(), created_ms, described }))
}

/// A timestamp in milliseconds since the epoch; `None` for the epoch itself, which DynamoDB Local
/// reports for changes that never happened.
fn millis(t: &aws_smithy_types::DateTime) -> Option<u64> {
    u64::try_from(t.to_millis().ok()?).ok().filter(|ms| *ms > 0)
}

/// What `DescribeTable` says of the table's last switch to on-demand, last class change and
/// throughput decreases. A switch at the table's creation is its creation on demand, not a switch.
fn described_changes(table: &sdk::TableDescription, created_ms: Option<u64>) -> Described {
    let decreases = |t: Option<&sdk::ProvisionedThroughputDescription>| {
        t.map(|t| Decreases {
            today: t.number_of_decreases_today().map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            last_ms: t.last_decrease_date_time().and_then(millis),
        })
        .filter(|d| d.today > 0 || d.last_ms.is_some())
    };
    let mut by_target = BTreeMap::new();
    if let Some(d) = decreases(table.provisioned_throughput()) {
        by_target.insert(String::new(), d);
    }
    for g in table.global_secondary_indexes() {
        if let Some(d) = decreases(g.provisioned_throughput()) {
            by_target.insert(g.index_name().unwrap_or_default().to_owned(), d);
        }
    }
    let switched = table
        .billing_mode_summary()
        .and_then(|b| b.last_update_to_pay_per_request_date_time())
        .and_then(millis)
        .filter(|at| created_ms.is_none_or(|created| at.abs_diff(created) > 60_000));
    Described {
        last_switch_to_on_demand_ms: switched,
        last_table_class_update_ms: table
            .table_class_summary()
            .and_then(|c| c.last_update_date_time())
            .and_then(millis),
        ttl_in_transition: false,
        decreases: by_target,
    }
}

/// The model of a `TableDescription`; an error names what DynamoDB returned that the model lacks.
fn from_description(table: &sdk::TableDescription, logical: &str) -> Result<TableDef, String> {
    let types: BTreeMap<&str, KeyType> = table
        .attribute_definitions()
        .iter()
        .filter_map(|a| Some((a.attribute_name(), key_type_from(a.attribute_type())?)))
        .collect();
    let keys = |schema: &[sdk::KeySchemaElement]| -> Result<(KeyAttr, Option<KeyAttr>), String> {
        let attr = |e: &sdk::KeySchemaElement| -> Result<KeyAttr, String> {
            let ty = types
                .get(e.attribute_name())
                .ok_or_else(|| format!("key attribute {} has no type", e.attribute_name()))?;
            Ok(KeyAttr::new(e.attribute_name(), *ty))
        };
        let hash = schema.iter().find(|e| e.key_type() == &sdk::KeyType::Hash).ok_or("no partition key")?;
        let range = schema.iter().find(|e| e.key_type() == &sdk::KeyType::Range);
        Ok((attr(hash)?, range.map(attr).transpose()?))
    };

    let (partition_key, sort_key) = keys(table.key_schema())?;
    let on_demand =
        table.billing_mode_summary().and_then(|b| b.billing_mode()) == Some(&sdk::BillingMode::PayPerRequest);
    let capacity = |t: Option<&sdk::ProvisionedThroughputDescription>| Throughput {
        read: t.and_then(|t| t.read_capacity_units()).unwrap_or_default(),
        write: t.and_then(|t| t.write_capacity_units()).unwrap_or_default(),
    };

    let mut global_indexes = Vec::new();
    for g in table.global_secondary_indexes() {
        let (pk, sk) = keys(g.key_schema())?;
        global_indexes.push(GlobalIndex {
            name: g.index_name().unwrap_or_default().to_owned(),
            partition_key: pk,
            sort_key: sk,
            projection: projection_from(g.projection()),
            throughput: (!on_demand).then(|| capacity(g.provisioned_throughput())),
        });
    }
    let mut local_indexes = Vec::new();
    for l in table.local_secondary_indexes() {
        let name = l.index_name().unwrap_or_default().to_owned();
        let (pk, sk) = keys(l.key_schema())?;
        if pk != partition_key {
            return Err(format!("local index {name} has partition key {} unlike the table", pk.name));
        }
        let sort_key = sk.ok_or_else(|| format!("local index {name} has no sort key"))?;
        local_indexes.push(LocalIndex { name, sort_key, projection: projection_from(l.projection()) });
    }

    Ok(TableDef {
        name: logical.to_owned(),
        version: 1,
        partition_key,
        sort_key,
        global_indexes,
        local_indexes,
        ttl_attribute: None,
        stream: table
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type())
            .and_then(stream_view_from),
        billing: if on_demand {
            Billing::PayPerRequest
        } else {
            Billing::Provisioned(capacity(table.provisioned_throughput()))
        },
        deletion_protection: table.deletion_protection_enabled().unwrap_or(false),
        table_class: table_class_from(table.table_class_summary().and_then(|c| c.table_class())),
        point_in_time_recovery: false,
        tags: BTreeMap::new(),
    })
}

/// Every physical table name in the account, through the SDK's paginator.
pub async fn list_tables(client: &Client) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut pages = client.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(Error::aws("ListTables"))?;
        names.extend(page.table_names().iter().cloned());
    }
    Ok(names)
}
