//! Backfills `email_normalised` (the email trimmed and in lower case) on every customer.
//!
//! The item types are this migration's own frozen copies of the customer as it was before and
//! after, not the schema crate's `Customer`, which will go on changing.

use dynamo_migrate::{DataStep, Migration, migration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Before {
    customer_nr: u64,
    name: String,
    email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

#[derive(Debug, Serialize)]
struct After {
    customer_nr: u64,
    name: String,
    email: String,
    email_normalised: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    postcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

fn normalise(before: Before) -> After {
    After {
        email_normalised: before.email.trim().to_lowercase(),
        customer_nr: before.customer_nr,
        name: before.name,
        email: before.email,
        postcode: before.postcode,
        expires_at: before.expires_at,
    }
}

/// Customers as they were before this migration, for `verify` and `cargo xtask local`.
fn fixtures() -> Vec<Before> {
    let customer = |nr, name: &str, email: &str, postcode: Option<&str>| Before {
        customer_nr: nr,
        name: name.to_owned(),
        email: email.to_owned(),
        postcode: postcode.map(str::to_owned),
        expires_at: None,
    };
    vec![
        customer(1001, "Ada Lovelace", " Ada@Example.com", Some("EC1A 1BB")),
        customer(1002, "Alan Turing", "alan.turing@example.org", Some("M13 9PL")),
        // No postcode yet: not in the sparse by_postcode index.
        customer(1003, "Grace Hopper", "GRACE@example.net ", None),
    ]
}

pub fn migration() -> Migration {
    let step = DataStep::new("backfill_email_normalised", |ctx| async move {
        Ok(ctx.backfill("customers", |before: Before| Some(normalise(before))).await?)
    })
    .fixtures("customers", fixtures());
    migration!("m0004_backfill_email_normalised.rs").data(step)
}
