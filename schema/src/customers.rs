//! Customers of the shop: one partition per customer number, holding the customer's records
//! (the `profile` today), looked up by number, by postcode, or by email within a customer.

use dynamo_model::{GlobalIndex, KeyAttr, LocalIndex, TableDef, TableSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The logical name of the table; an environment's prefix gives the physical one.
pub const TABLE: &str = "customers";
/// Customers by postcode, for delivery planning. Sparse: customers without a postcode are not in it.
pub const BY_POSTCODE: &str = "by_postcode";
/// A customer's records by normalised email (a local index: within one customer's partition).
pub const BY_EMAIL: &str = "by_email";
/// The `record` of a customer's profile.
pub const PROFILE: &str = "profile";

/// A customer's profile record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    pub customer_nr: u64,
    /// Which of the customer's records this is: always [`PROFILE`] for now.
    pub record: String,
    pub name: String,
    pub email: String,
    /// The email trimmed and in lower case, for case-insensitive look-ups (backfilled by migration 4).
    pub email_normalised: String,
    // An absent Option must not be written as NULL: a NULL index key is rejected by DynamoDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    /// Unix time in seconds after which DynamoDB's TTL may delete the customer (unconfirmed sign-ups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// What a query on [`BY_POSTCODE`] gives the application: the fields delivery planning reads.
/// Declared with the table (`TableSchema::projection`), so that `cargo xtask verify` checks that
/// the index returns each of them; an index made `KEYS_ONLY` would fail that check on `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerInPostcode {
    pub customer_nr: u64,
    pub record: String,
    pub postcode: String,
    pub name: String,
}

impl Customer {
    /// The normalised form of an email address.
    pub fn normalise_email(email: &str) -> String {
        email.trim().to_lowercase()
    }
}

/// Version 2 since migration 5 rebuilt it with a sort key and a local index.
pub fn table() -> TableSchema {
    TableSchema::new::<Customer>(
        TableDef::new(TABLE, KeyAttr::n("customer_nr"))
            .version(2)
            .sort_key(KeyAttr::s("record"))
            .global_index(GlobalIndex::new(BY_POSTCODE, KeyAttr::s("postcode")))
            .local_index(LocalIndex::new(BY_EMAIL, KeyAttr::s("email_normalised")))
            .ttl("expires_at"),
    )
    .projection::<CustomerInPostcode>(BY_POSTCODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_valid_and_matches_its_item_type() {
        assert_eq!(table().validate(), Ok(()));
    }

    #[test]
    fn the_application_resolves_the_physical_name_of_the_current_version() {
        assert_eq!(table().def.physical_name("prod_"), "prod_customers_v2");
    }

    #[test]
    fn absent_optional_fields_are_not_written() {
        let customer = Customer {
            customer_nr: 1,
            record: PROFILE.into(),
            name: "Ada".into(),
            email: "Ada@Example.com ".into(),
            email_normalised: Customer::normalise_email("Ada@Example.com "),
            postcode: None,
            expires_at: None,
        };
        let json = serde_json::to_value(&customer).unwrap();
        assert_eq!(json.get("postcode"), None);
        assert_eq!(json["email_normalised"], "ada@example.com");
    }
}
