//! Logical table names (as the schema crate uses them) and physical ones (as in the account).

/// Maps logical table names to physical ones: the environment's prefix, then the logical name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    prefix: String,
    ledger: String,
}

/// The ledger table's logical name, unless the environment names it.
pub const DEFAULT_LEDGER_TABLE: &str = "dynamo_migrate_ledger";

impl TableNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        TableNames::with_ledger(prefix, DEFAULT_LEDGER_TABLE)
    }

    pub fn with_ledger(prefix: impl Into<String>, ledger: &str) -> Self {
        let prefix = prefix.into();
        TableNames { ledger: format!("{prefix}{ledger}"), prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The physical name of a logical table.
    pub fn physical(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The logical name of a physical table, if it carries this prefix and is not the ledger.
    pub fn logical<'a>(&self, physical: &'a str) -> Option<&'a str> {
        if physical == self.ledger {
            return None;
        }
        physical.strip_prefix(self.prefix.as_str())
    }

    /// The physical name of the ledger table.
    pub fn ledger(&self) -> &str {
        &self.ledger
    }
}
