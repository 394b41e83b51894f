//! The example application's data access: how a service reads and writes the tables the
//! migrations make, with the schema crate's item types and physical names, and without the
//! engine (which it never links).
//!
//! - The table prefix comes from the environment variable that `environments.toml` names for
//!   each environment (`application_prefix_env`): [`PREFIX_VARIABLE`]. The schema crate turns it
//!   into the physical name of the current version of each table, so the application follows a
//!   rebuild by deploying with the new schema crate.
//! - Items go through `dynamo_model::to_item` / `from_item`, which keep DynamoDB's types exactly
//!   (`Number`, `NumberSet`, sets) and refuse an item the type would change, as the engine's data
//!   steps do.
//! - What a query on an index returns is read into the type the schema crate declares for that
//!   index (`TableSchema::projection`), which `cargo xtask verify` checks against the index's
//!   projection.

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use schema::customers::{self, Customer, CustomerInPostcode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable that holds the table prefix where the application runs; every
/// environment in `environments.toml` names it as its `application_prefix_env`.
pub const PREFIX_VARIABLE: &str = "SHOP_TABLE_PREFIX";

/// The shop's tables in one environment.
#[derive(Debug, Clone)]
pub struct Shop {
    client: Client,
    customers: String,
}

impl Shop {
    /// The shop as it runs in production: the table prefix from [`PREFIX_VARIABLE`], credentials,
    /// region and endpoint from the AWS SDK's standard chain (`AWS_ENDPOINT_URL_DYNAMODB` points
    /// it at DynamoDB Local).
    pub async fn from_env() -> anyhow::Result<Shop> {
        let prefix = dynamo_model::table_prefix_from_env(PREFIX_VARIABLE)?;
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        Ok(Shop::new(Client::new(&config), &prefix))
    }

    /// The shop's tables with `prefix`, through `client`.
    pub fn new(client: Client, prefix: &str) -> Shop {
        Shop { client, customers: customers::table().def.physical_name(prefix) }
    }

    /// The physical name of the customers table.
    pub fn customers_table(&self) -> &str {
        &self.customers
    }

    /// Writes a customer's profile.
    pub async fn put_customer(&self, customer: &Customer) -> anyhow::Result<()> {
        put(&self.client, &self.customers, customer).await
    }

    /// A customer's profile, if there is one.
    pub async fn customer(&self, customer_nr: u64) -> anyhow::Result<Option<Customer>> {
        let key = [
            ("customer_nr".to_owned(), AttributeValue::N(customer_nr.to_string())),
            ("record".to_owned(), AttributeValue::S(customers::PROFILE.to_owned())),
        ];
        get(&self.client, &self.customers, key.into()).await
    }

    /// The customers in a postcode, as the `by_postcode` index returns them.
    pub async fn customers_in_postcode(&self, postcode: &str) -> anyhow::Result<Vec<CustomerInPostcode>> {
        let pages = self
            .client
            .query()
            .table_name(&self.customers)
            .index_name(customers::BY_POSTCODE)
            .key_condition_expression("postcode = :postcode")
            .expression_attribute_values(":postcode", AttributeValue::S(postcode.to_owned()))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        pages
            .into_iter()
            .map(|item| Ok(dynamo_model::from_item(item.context("querying by_postcode")?.into())?))
            .collect()
    }
}

/// Writes `value` into `table` as one item, its DynamoDB types exact.
pub async fn put<T: Serialize>(client: &Client, table: &str, value: &T) -> anyhow::Result<()> {
    let item = dynamo_model::to_item(value)?;
    client.put_item().table_name(table).set_item(Some(item.into())).send().await.context("PutItem")?;
    Ok(())
}

/// Reads the item of `table` at `key` into `T`, exactly or not at all.
pub async fn get<T: DeserializeOwned + Serialize>(
    client: &Client,
    table: &str,
    key: std::collections::HashMap<String, AttributeValue>,
) -> anyhow::Result<Option<T>> {
    let output =
        client.get_item().table_name(table).set_key(Some(key)).consistent_read(true).send().await.context("GetItem")?;
    Ok(output.item.map(|item| dynamo_model::from_item(item.into())).transpose()?)
}
