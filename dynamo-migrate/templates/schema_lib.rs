//! The application's tables: each table's Rust item type and its definition.
//!
//! The application depends on this crate to name its tables and to read and write its items;
//! `cargo xtask verify` proves that the migrations produce exactly these tables. It never links
//! the AWS SDK. Declare a table next to its item type, list it below, then let
//! `cargo xtask new <name> --from-schema` write the migration that creates it.

use dynamo_model::TableSchema;

/// Every table of the application.
pub fn tables() -> Vec<TableSchema> {
    vec![]
}
