//! Creates the customers table, keyed by customer number.

use dynamo_migrate::{KeyAttr, Migration, TableDef, migration};

pub fn migration() -> Migration {
    migration!("m0001_create_customers.rs").create_table(TableDef::new("customers", KeyAttr::n("customer_nr")))
}
