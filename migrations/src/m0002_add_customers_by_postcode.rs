//! Adds the `by_postcode` index to customers, in place (DynamoDB backfills it).

use dynamo_migrate::{GlobalIndex, KeyAttr, Migration, migration};

pub fn migration() -> Migration {
    migration!("m0002_add_customers_by_postcode.rs")
        .add_global_index("customers", GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
}
