//! Logical table names (as the schema crate uses them) and physical ones (as in the account).

use std::collections::BTreeMap;

use dynamo_model::{parse_physical_name, physical_name};

/// Maps logical table names to physical ones: the environment's prefix, the logical name, and
/// the table's current version (`_v2` from version 2 on, after a rebuild).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    prefix: String,
    ledger: String,
    versions: BTreeMap<String, u32>,
}

/// The ledger table's logical name, unless the environment names it.
pub const DEFAULT_LEDGER_TABLE: &str = "dynamo_migrate_ledger";

impl TableNames {
    /// The names of an environment with table prefix `prefix` (possibly empty), every table at
    /// version 1, and the ledger `<prefix>dynamo_migrate_ledger`.
    pub fn new(prefix: impl Into<String>) -> Self {
        TableNames::with_ledger(prefix, DEFAULT_LEDGER_TABLE)
    }

    /// The same, with the ledger table `<prefix><ledger>`.
    pub fn with_ledger(prefix: impl Into<String>, ledger: &str) -> Self {
        let prefix = prefix.into();
        TableNames { ledger: format!("{prefix}{ledger}"), prefix, versions: BTreeMap::new() }
    }

    /// The environment's table prefix, put before every table name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The physical name of the current version of a logical table.
    pub fn physical(&self, logical: &str) -> String {
        physical_name(&self.prefix, logical, self.version(logical))
    }

    /// The physical name of a given version of a logical table.
    pub fn physical_version(&self, logical: &str, version: u32) -> String {
        physical_name(&self.prefix, logical, version)
    }

    /// The current version of a logical table (1 until it is rebuilt).
    pub fn version(&self, logical: &str) -> u32 {
        self.versions.get(logical).copied().unwrap_or(1)
    }

    /// Makes `version` the current one of `logical`.
    pub fn set_version(&mut self, logical: &str, version: u32) {
        self.versions.insert(logical.to_owned(), version);
    }

    /// The logical name and version of a physical table, if it carries this prefix and is not
    /// the ledger.
    pub fn logical<'a>(&self, physical: &'a str) -> Option<(&'a str, u32)> {
        if physical == self.ledger {
            return None;
        }
        parse_physical_name(&self.prefix, physical)
    }

    /// The physical name of the ledger table.
    pub fn ledger(&self) -> &str {
        &self.ledger
    }
}
