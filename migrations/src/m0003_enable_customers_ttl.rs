//! Lets DynamoDB expire unconfirmed sign-ups through TTL on `expires_at`.

use dynamo_migrate::Migration;

pub fn migration() -> Migration {
    Migration::new(3, "enable_customers_ttl", include_str!("m0003_enable_customers_ttl.rs"))
        .enable_ttl("customers", "expires_at")
}
