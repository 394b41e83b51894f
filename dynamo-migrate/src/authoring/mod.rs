//! Writing migrations: the migration files' checks ([`check_files`], [`checksum`]), the
//! generator of a migration from the schema crate's diff ([`generate()`], behind `cargo xtask new
//! --from-schema`), the lint of risky steps ([`lint()`]) and the JSON Schemas of the workspace's
//! files ([`json_schemas`]).
//!
//! The types a migration is written with ([`Migration`](crate::Migration),
//! [`DataStep`](crate::DataStep), …) are at the crate's root and in [`prelude`](crate::prelude).

pub(crate) mod generate;
pub(crate) mod lint;
pub(crate) mod migration;
pub(crate) mod schemas;

pub use generate::{
    GenerateError, GenerateErrors, GeneratedKind, GeneratedStep, Generation, NotGenerated, generate, render,
    render_empty,
};
pub use lint::{Acknowledgement, Acknowledgements, Finding, LintError, Rule, lint};
pub use migration::{MigrationInfo, check_files, checksum, parse_file_name};
pub use schemas::{json_schemas, stale_schemas};
