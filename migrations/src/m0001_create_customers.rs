//! Creates the customers table, keyed by customer number.

use dynamo_migrate::{KeyAttr, Migration, TableDef};

pub fn migration() -> Migration {
    Migration::new(1, "create_customers", include_str!("m0001_create_customers.rs"))
        .create_table(TableDef::new("customers", KeyAttr::n("customer_nr")))
}
