//! Rebuilds customers as version 2: keyed by customer number and record type, so that a
//! customer's addresses and preferences can later live beside the profile in one partition, with
//! a local index by normalised email. DynamoDB cannot add a sort key or an LSI to a table in
//! place, hence the rebuild; every customer is converted into a `profile` record.
//!
//! The old table stays until migration 6 deletes it.

use dynamo_migrate::{GlobalIndex, KeyAttr, LocalIndex, Migration, RebuildStep, TableDef, migration};
use serde::{Deserialize, Serialize};

/// A customer as migration 4 left it.
#[derive(Debug, Serialize, Deserialize)]
struct Before {
    customer_nr: u64,
    name: String,
    email: String,
    email_normalised: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

/// The customer as a `profile` record of version 2.
#[derive(Debug, Serialize)]
struct Profile {
    customer_nr: u64,
    record: &'static str,
    name: String,
    email: String,
    email_normalised: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    postcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

fn profile(before: Before) -> Profile {
    Profile {
        customer_nr: before.customer_nr,
        record: "profile",
        name: before.name,
        email: before.email,
        email_normalised: before.email_normalised,
        postcode: before.postcode,
        expires_at: before.expires_at,
    }
}

pub fn migration() -> Migration {
    let customers_v2 = TableDef::new("customers", KeyAttr::n("customer_nr"))
        .version(2)
        .sort_key(KeyAttr::s("record"))
        .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
        .local_index(LocalIndex::new("by_email", KeyAttr::s("email_normalised")))
        .ttl("expires_at");
    migration!("m0005_rebuild_customers_with_records.rs")
        .rebuild_table(RebuildStep::convert(customers_v2, |before: Before| Some(profile(before))))
}
