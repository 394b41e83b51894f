//! Brings the tables to what the schema crate declares:
//! - create table invoices;
//! - replace the stream of customers by a NEW_AND_OLD_IMAGES one (destructive: write why);
//! - rebuild table customers as version 2 with a conversion (write the values it marks);
//! - delete global index by_customer of orders (destructive: write why);
//! - provision orders with 10 RCU / 5 WCU;
//! - add global index by_customer to orders;
//! - turn the stream of orders to NEW_IMAGE;
//! - turn deletion protection of audit off;
//! - delete table audit (destructive: write why).
//!
//! Written by `cargo xtask new everything --from-schema`: say here why.
//! It compiles once every `reason_required!()` and `value_required!(..)` is replaced by what it asks for.

use dynamo_migrate::{
    Billing, Destructive, GlobalIndex, KeyAttr, Migration, Number, Projection, RebuildStep, StreamView, TableDef,
    Throughput, migration,
};
use serde::{Deserialize, Serialize};

/// An item of customers as version 1 holds it. Add every attribute its items have: one that this
/// type does not hold stops the rebuild, naming it (unless it says `.drop_unknown_attributes()`).
#[derive(Debug, Serialize, Deserialize)]
struct CustomersV1 {
    customer_nr: Number,
}

/// An item of customers as version 2 holds it.
#[derive(Debug, Serialize)]
struct CustomersV2 {
    customer_nr: Number,
    record: String,
}

fn convert_customers(old: CustomersV1) -> Option<CustomersV2> {
    Some(CustomersV2 {
        customer_nr: old.customer_nr,
        // Every item of version 2 needs its record, its new sort key.
        record: "profile".to_owned(),
    })
}

pub fn migration() -> Migration {
    let customers_v2 = TableDef::new("customers", KeyAttr::n("customer_nr"))
        .version(2)
        .sort_key(KeyAttr::s("record"))
        .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
        .ttl("expires_at");
    let index_throughput = vec![("by_status".into(), Throughput { read: 1, write: 1 })];
    let by_customer =
        GlobalIndex::new("by_customer", KeyAttr::s("customer_id")).projection(Projection::KeysOnly).throughput(5, 5);
    migration!("m0007_everything.rs")
        .create_table(TableDef::new("invoices", KeyAttr::s("invoice_id")).sort_key(KeyAttr::b("digest")))
        // The rebuild replays the old version's stream, which must carry new and old images: this
        // replaces the KEYS_ONLY stream, and its consumers lose their place.
        .replace_stream(
            "customers",
            StreamView::NewAndOldImages,
            Destructive::because("reviewed"),
        )
        // Version 2 is a new table: every item is converted into it, then the stream is replayed
        // until the application moves to it.
        .rebuild_table(RebuildStep::convert(customers_v2, convert_customers))
        // DynamoDB cannot change an index's projection in place: it is dropped here and created
        // again below, and queries on it fail until its backfill ends.
        .delete_global_index("orders", "by_customer", Destructive::because("reviewed"))
        // AWS limits how often a table may switch billing mode in 24 hours: `cargo xtask lint`
        // flags the switch.
        .update_billing("orders", Billing::Provisioned(Throughput { read: 10, write: 5 }), index_throughput)
        .add_global_index("orders", by_customer)
        .update_stream("orders", Some(StreamView::NewImage))
        .deletion_protection("audit", false)
        // The schema crate no longer declares audit.
        .delete_table("audit", Destructive::because("reviewed"))
}
