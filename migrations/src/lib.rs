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
    use std::path::Path;

    use super::*;

    /// A migration's file is `mNNNN_<name>.rs`, and every such file is registered in `all()`.
    #[test]
    fn files_match_versions_and_names_and_all_are_registered() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| n.starts_with('m') && n.ends_with(".rs"))
            .collect();
        files.sort();
        let expected: Vec<String> = all().iter().map(|m| format!("m{:04}_{}.rs", m.version, m.name)).collect();
        assert_eq!(files, expected);
    }

    #[test]
    fn checksums_are_of_each_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for m in all() {
            let source = std::fs::read_to_string(dir.join(format!("m{:04}_{}.rs", m.version, m.name))).unwrap();
            assert_eq!(m.checksum, dynamo_migrate::checksum(&source), "migration {}", m.version);
        }
    }

    #[test]
    fn the_sequence_is_valid() {
        let known: Vec<_> = all().iter().map(Migration::info).collect();
        assert_eq!(dynamo_migrate::pending(&[], &known).unwrap().len(), known.len());
    }
}
