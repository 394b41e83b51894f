//! Lets DynamoDB expire unconfirmed sign-ups through TTL on `expires_at`.

use dynamo_migrate::{Migration, migration};

pub fn migration() -> Migration {
    migration!("m0003_enable_customers_ttl.rs").enable_ttl("customers", "expires_at")
}
