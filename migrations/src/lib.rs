//! The example application's migrations: ordered, append-only, forward-only.
//!
//! Each file is one migration, named for its version and purpose. Once a migration is applied
//! anywhere, its file never changes (its SHA-256 is in the ledger): put any change in a new one.
//! A migration spells out its tables instead of borrowing the schema crate's definitions, so
//! that editing the schema crate can never change what an applied migration did.

mod m0001_create_customers;
mod m0002_add_customers_by_postcode;
mod m0003_enable_customers_ttl;
mod m0004_backfill_email_normalised;
mod m0005_rebuild_customers_with_records;
mod m0006_delete_customers_v1;

use dynamo_migrate::Migration;

/// Every migration, in version order.
pub fn all() -> Vec<Migration> {
    vec![
        m0001_create_customers::migration(),
        m0002_add_customers_by_postcode::migration(),
        m0003_enable_customers_ttl::migration(),
        m0004_backfill_email_normalised::migration(),
        m0005_rebuild_customers_with_records::migration(),
        m0006_delete_customers_v1::migration(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's checks, which verify and migrate run too: every `mNNNN_*.rs` file here is
    /// registered, each registers its own file, and the sequence of versions is valid.
    #[test]
    fn files_and_registrations_agree() {
        let all = all();
        assert!(all.iter().all(|m| m.registration_error.is_none() && m.source_file.is_some()));
        assert_eq!(dynamo_migrate::authoring::check_files(&all), Vec::<String>::new());
        let known: Vec<_> = all.iter().map(Migration::info).collect();
        assert_eq!(dynamo_migrate::run::pending(&[], &known).unwrap().len(), known.len());
    }
}
