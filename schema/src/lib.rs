//! The example application's tables: each table's Rust item type and its definition.
//!
//! The application depends on this crate to name its tables and to read and write its items;
//! `cargo xtask verify` proves that the migrations produce exactly these tables and that every
//! item they leave reads as these types. This crate never links the AWS SDK.

pub mod customers;

use dynamo_model::TableSchema;

/// Every table of the application.
pub fn tables() -> Vec<TableSchema> {
    vec![customers::table()]
}
