//! Makes the planned calls against DynamoDB and waits for each to settle.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types as ddb;
use dynamo_model::Billing;

use crate::error::{Error, Result};
use crate::planner::Call;
use crate::sdk;

/// What happened to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call was made, and the table has settled.
    Done,
    /// Not possible on this endpoint (tags and point-in-time recovery on DynamoDB Local).
    Skipped(&'static str),
}

/// How the executor behaves on this endpoint.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The endpoint is DynamoDB Local: calls it cannot make are skipped, and tags are left out
    /// of a create.
    pub local: bool,
    /// How long to wait for a table or index to become ACTIVE; a GSI backfill on a big table
    /// can take hours on AWS.
    pub wait_timeout: Duration,
}

impl ExecOptions {
    /// Options for DynamoDB Local (`local`: a 5-minute wait) or AWS (a 24-hour wait, for the
    /// backfill of a GSI on a big table).
    pub fn new(local: bool) -> Self {
        ExecOptions { local, wait_timeout: Duration::from_secs(if local { 300 } else { 24 * 3600 }) }
    }
}

/// Makes one call on the physical table `physical`, then waits until the table and every index
/// are ACTIVE again (or, for a deleted table, gone).
pub async fn execute(client: &Client, physical: &str, call: &Call, options: &ExecOptions) -> Result<Outcome> {
    let action = call.describe(physical);
    let outcome = send(client, physical, call, options).await.map_err(|e| match e {
        Error::Aws { failure, .. } => Error::Aws { action: action.clone(), failure },
        other => other,
    })?;
    if outcome == Outcome::Done {
        match call {
            Call::DeleteTable { .. } => wait_until_deleted(client, physical, options.wait_timeout).await?,
            _ => wait_until_active(client, physical, options.wait_timeout).await?,
        }
    }
    Ok(outcome)
}

async fn send(client: &Client, physical: &str, call: &Call, options: &ExecOptions) -> Result<Outcome> {
    let action = || format!("{call:?}");
    match call {
        Call::CreateTable { table } => {
            let mut request = client
                .create_table()
                .table_name(physical)
                .set_key_schema(Some(sdk::key_schema(&table.partition_key, table.sort_key.as_ref())?))
                .set_attribute_definitions(Some(sdk::attribute_definitions(&table.attribute_definitions())?))
                .billing_mode(sdk::billing_mode(&table.billing))
                .deletion_protection_enabled(table.deletion_protection)
                .table_class(sdk::table_class(table.table_class));
            if let Billing::Provisioned(t) = table.billing {
                request = request.provisioned_throughput(sdk::throughput(t)?);
            }
            for g in &table.global_indexes {
                request = request.global_secondary_indexes(sdk::global_index(g)?);
            }
            for l in &table.local_indexes {
                request = request.local_secondary_indexes(sdk::local_index(l, &table.partition_key)?);
            }
            if let Some(view) = table.stream {
                request = request.stream_specification(
                    ddb::StreamSpecification::builder()
                        .stream_enabled(true)
                        .stream_view_type(sdk::stream_view(view))
                        .build()?,
                );
            }
            // DynamoDB Local has no tagging; on AWS the tags go with the table from its first moment.
            if !options.local {
                for (key, value) in &table.tags {
                    request = request.tags(ddb::Tag::builder().key(key).value(value).build()?);
                }
            }
            request.send().await.map_err(Error::aws(action()))?;
        }
        Call::CreateGlobalIndex { index, definition, .. } => {
            client
                .update_table()
                .table_name(physical)
                .set_attribute_definitions(Some(sdk::attribute_definitions(&definition.attribute_definitions())?))
                .global_secondary_index_updates(
                    ddb::GlobalSecondaryIndexUpdate::builder().create(sdk::create_global_index(index)?).build(),
                )
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::DeleteGlobalIndex { index, .. } => {
            let delete = ddb::DeleteGlobalSecondaryIndexAction::builder().index_name(index).build()?;
            client
                .update_table()
                .table_name(physical)
                .global_secondary_index_updates(ddb::GlobalSecondaryIndexUpdate::builder().delete(delete).build())
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::EnableTtl { attribute, .. } | Call::DisableTtl { attribute, .. } => {
            let enabled = matches!(call, Call::EnableTtl { .. });
            let spec = ddb::TimeToLiveSpecification::builder().enabled(enabled).attribute_name(attribute).build()?;
            client
                .update_time_to_live()
                .table_name(physical)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::UpdateBilling { billing, index_throughput, .. } => {
            let mut request = client.update_table().table_name(physical);
            if let Some(billing) = billing {
                request = request.billing_mode(sdk::billing_mode(billing));
                if let Billing::Provisioned(t) = billing {
                    request = request.provisioned_throughput(sdk::throughput(*t)?);
                }
            }
            for (index, t) in index_throughput {
                let update = ddb::UpdateGlobalSecondaryIndexAction::builder()
                    .index_name(index)
                    .provisioned_throughput(sdk::throughput(*t)?)
                    .build()?;
                request = request
                    .global_secondary_index_updates(ddb::GlobalSecondaryIndexUpdate::builder().update(update).build());
            }
            request.send().await.map_err(Error::aws(action()))?;
        }
        Call::EnableStream { view, .. } => {
            let spec = ddb::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(sdk::stream_view(*view))
                .build()?;
            client
                .update_table()
                .table_name(physical)
                .stream_specification(spec)
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::DisableStream { .. } => {
            let spec = ddb::StreamSpecification::builder().stream_enabled(false).build()?;
            client
                .update_table()
                .table_name(physical)
                .stream_specification(spec)
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::SetDeletionProtection { enabled, .. } => {
            client
                .update_table()
                .table_name(physical)
                .deletion_protection_enabled(*enabled)
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::SetTableClass { class, .. } => {
            let sent = client.update_table().table_name(physical).table_class(sdk::table_class(*class)).send().await;
            match sent {
                Ok(_) => {}
                // DynamoDB Local takes a table class at creation but keeps none, and refuses
                // an update of it as a ValidationException ("Nothing to update").
                Err(e)
                    if options.local && e.as_service_error().and_then(|e| e.code()) == Some("ValidationException") =>
                {
                    return Ok(Outcome::Skipped("DynamoDB Local keeps no table class"));
                }
                Err(e) => return Err(Error::aws(action())(e)),
            }
        }
        Call::SetPointInTimeRecovery { enabled, .. } => {
            if options.local {
                return Ok(Outcome::Skipped("DynamoDB Local has no point-in-time recovery"));
            }
            let spec =
                ddb::PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(*enabled).build()?;
            client
                .update_continuous_backups()
                .table_name(physical)
                .point_in_time_recovery_specification(spec)
                .send()
                .await
                .map_err(Error::aws(action()))?;
        }
        Call::TagTable { tags, .. } => {
            if options.local {
                return Ok(Outcome::Skipped("DynamoDB Local has no tags"));
            }
            let described = client.describe_table().table_name(physical).send().await.map_err(Error::aws(action()))?;
            let arn = described.table().and_then(|t| t.table_arn()).unwrap_or_default().to_owned();
            let tags =
                tags.iter().map(|(k, v)| ddb::Tag::builder().key(k).value(v).build()).collect::<Result<Vec<_>, _>>()?;
            client.tag_resource().resource_arn(arn).set_tags(Some(tags)).send().await.map_err(Error::aws(action()))?;
        }
        Call::DeleteTable { .. } => {
            client.delete_table().table_name(physical).send().await.map_err(Error::aws(action()))?;
        }
    }
    Ok(Outcome::Done)
}

/// Waits until the table is ACTIVE and every GSI is ACTIVE and done backfilling.
///
/// The SDK's `wait_until_table_exists` only looks at the table's own status; an index that is
/// still CREATING or backfilling refuses the next `UpdateTable`, so this waiter looks at both.
pub async fn wait_until_active(client: &Client, physical: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let out = client
            .describe_table()
            .table_name(physical)
            .send()
            .await
            .map_err(Error::aws(format!("DescribeTable {physical}")))?;
        let table = out.table();
        let table_status = table.and_then(|t| t.table_status()).cloned();
        let mut waiting_for = Vec::new();
        if table_status != Some(ddb::TableStatus::Active) {
            waiting_for.push(format!("table {}", table_status.map_or("unknown".to_owned(), |s| s.as_str().to_owned())));
        }
        for g in table.map(|t| t.global_secondary_indexes()).unwrap_or_default() {
            let name = g.index_name().unwrap_or_default();
            if g.index_status() != Some(&ddb::IndexStatus::Active) {
                let status = g.index_status().map_or("unknown", |s| s.as_str());
                waiting_for.push(format!("index {name} {status}"));
            } else if g.backfilling() == Some(true) {
                waiting_for.push(format!("index {name} backfilling"));
            }
        }
        if waiting_for.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::WaitTimeout {
                table: physical.to_owned(),
                waited_s: start.elapsed().as_secs(),
                state: waiting_for.join(", "),
            });
        }
        tracing::debug!(table = physical, state = %waiting_for.join(", "), "waiting");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Waits until the table no longer exists, through the SDK's waiter. A `DescribeTable` that
/// fails while it waits (access denied, throttled past the retries) is that call's error, naming
/// the table; only running out of time is a time-out.
pub async fn wait_until_deleted(client: &Client, physical: &str, timeout: Duration) -> Result<()> {
    use aws_sdk_dynamodb::client::Waiters;
    use aws_smithy_runtime_api::client::waiters::error::WaiterError;
    match client.wait_until_table_not_exists().table_name(physical).wait(timeout).await {
        Ok(_) => Ok(()),
        Err(WaiterError::OperationFailed(failed)) => {
            Err(Error::aws(format!("DescribeTable {physical} (waiting for its deletion)"))(failed.into_error()))
        }
        Err(other) => Err(Error::WaitTimeout {
            table: physical.to_owned(),
            waited_s: timeout.as_secs(),
            state: format!("still there, being deleted: {other}"),
        }),
    }
}
