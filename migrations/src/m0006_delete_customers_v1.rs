//! Deletes version 1 of customers, which migration 5 replaced. Run it once the application reads
//! and writes version 2 everywhere (it resolves the physical name through the schema crate).

use dynamo_migrate::{Destructive, Migration, migration};

pub fn migration() -> Migration {
    migration!("m0006_delete_customers_v1.rs").delete_old_table(
        "customers",
        1,
        Destructive::because("version 2 holds every customer since migration 5"),
    )
}
