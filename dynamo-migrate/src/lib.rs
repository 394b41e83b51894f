//! Typed DynamoDB schemas and ordered migrations, applied safely.
//!
//! A team keeps its tables in a Cargo workspace: a **schema crate** says what every table is (a
//! [`TableDef`] and the Rust type of its items, as a [`TableSchema`]), a **migrations crate** says,
//! in order, how the tables got there (a list of [`Migration`]s), and a small **runner** binary
//! links both with this engine. `cargo xtask verify` runs every migration from empty on DynamoDB
//! Local and checks that the end state is the schema crate's; `cargo xtask migrate --env prod`
//! applies what is pending to a real account, under a lock, with a ledger, resuming where it
//! stopped. `cargo xtask init` sets all of this up in an existing workspace; the repository's
//! README is the user's guide to the commands.
//!
//! # Describing a table
//!
//! The schema crate declares each table as it should be now: its definition and the type of its
//! items (the schema crate depends on `dynamo-model` only, so it never links the AWS SDK).
//! `verify` checks that the migrations leave exactly this table, and that every item they leave
//! reads as the type.
//!
//! ```
//! use dynamo_migrate::prelude::*;
//! use dynamo_migrate::schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! #[schemars(crate = "dynamo_migrate::schemars")]
//! struct Customer {
//!     customer_nr: u64,
//!     email: String,
//!     #[serde(default, skip_serializing_if = "Option::is_none")]
//!     expires_at: Option<u64>,
//! }
//!
//! let customers = TableSchema::new::<Customer>(
//!     TableDef::new("customers", KeyAttr::n("customer_nr"))
//!         .global_index(GlobalIndex::new("by_email", KeyAttr::s("email")))
//!         .ttl("expires_at"),
//! );
//! // DynamoDB's rules, and the keys against the item type (`customer_nr` is a number in both).
//! customers.validate().unwrap();
//! assert_eq!(customers.name(), "customers");
//! ```
//!
//! # Writing migrations
//!
//! A migration is a version, a name and its steps, applied in order: schema steps (the control
//! plane's calls, planned from the live table and held to AWS's rules), data steps (async Rust
//! over a [`DataContext`]: typed passes in place or into another table, with checkpoints) and
//! rebuilds (a new version of a table, copied while the application writes, caught up from the
//! old table's stream and proved equal before it becomes current). In a migrations crate each
//! file registers its own with [`migration!`], which takes the version and name from the file's
//! name and the checksum from its content; here [`Migration::new`] does the same by hand.
//!
//! ```
//! use dynamo_migrate::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Before { customer_nr: u64, email: String }
//! #[derive(Serialize)]
//! struct After { customer_nr: u64, email: String, email_normalised: String }
//!
//! let create = Migration::new(1, "create_customers", "source of m0001")
//!     .create_table(TableDef::new("customers", KeyAttr::n("customer_nr")).ttl("expires_at"));
//! let index = Migration::new(2, "add_by_email", "source of m0002")
//!     .add_global_index("customers", GlobalIndex::new("by_email", KeyAttr::s("email")));
//! // A backfill: every item read exactly as `Before` (or refused, naming its key), written back
//! // with only what the function changed, on the condition that what it saw still holds.
//! let backfill = Migration::new(3, "backfill_email_normalised", "source of m0003").data(
//!     DataStep::new("email_normalised", |ctx| async move {
//!         Ok(ctx
//!             .backfill("customers", |b: Before| {
//!                 let email_normalised = b.email.trim().to_lowercase();
//!                 Some(After { customer_nr: b.customer_nr, email: b.email, email_normalised })
//!             })
//!             .await?)
//!     })
//!     // What `verify` writes before the step runs, to prove it on.
//!     .fixtures("customers", [Before { customer_nr: 1, email: " Ada@Example.com".into() }]),
//! );
//! let migrations = vec![create, index, backfill];
//!
//! // On an empty ledger, all three are pending, in order.
//! let known: Vec<_> = migrations.iter().map(Migration::info).collect();
//! assert_eq!(dynamo_migrate::run::pending(&[], &known).unwrap(), vec![1, 2, 3]);
//! assert_eq!(migrations[2].steps.len(), 1);
//! ```
//!
//! A change DynamoDB cannot make in place (a new sort key, a local index) is a rebuild: version 2
//! of the table, each item converted by a typed function; the old version stays until a later
//! migration deletes it ([`Migration::delete_old_table`], a destructive step that says why).
//!
//! ```
//! use dynamo_migrate::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Customer { customer_nr: u64, name: String }
//! #[derive(Serialize)]
//! struct Profile { customer_nr: u64, record: &'static str, name: String }
//!
//! let v2 = TableDef::new("customers", KeyAttr::n("customer_nr")).sort_key(KeyAttr::s("record"));
//! let rebuild = Migration::new(5, "rebuild_customers", "source of m0005").rebuild_table(
//!     RebuildStep::convert(v2, |c: Customer| {
//!         Some(Profile { customer_nr: c.customer_nr, record: "profile", name: c.name })
//!     })
//!     // Stop before cut-over if more than 10 items cannot be converted (the default is none).
//!     .max_failed_items(10),
//! );
//! let delete = Migration::new(6, "delete_customers_v1", "source of m0006").delete_old_table(
//!     "customers",
//!     1,
//!     Destructive::because("version 2 is current and the application reads only it"),
//! );
//! assert!(matches!(&rebuild.steps[..], [Step::Rebuild(_)]));
//! assert!(matches!(&delete.steps[..], [Step::Schema(s)] if s.destructive().is_some()));
//! ```
//!
//! # The runner
//!
//! The runner is the engine's command line with the workspace's lists (`init` writes it):
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     let tables = schema::tables();
//!     let migrations = migrations::all();
//!     dynamo_migrate::cli::main(dynamo_migrate::Project { tables, migrations })
//! }
//! ```
//!
//! # The engine's parts
//!
//! The root has what a migration is written with ([`prelude`] in one import). The rest is
//! grouped by concept, for programs of their own and for reading the engine:
//!
//! - [`run`]: the [`Migrator`](run::Migrator) that applies migrations, the [`Ledger`](run::Ledger),
//!   the lock that fences a run, what is pending and how to recover, environments and the account
//!   guard, SDK clients, the workers that share a run's passes, the IAM policy;
//! - [`schema_steps`]: schema steps against AWS's rules (the planner, the rule book, the
//!   pre-flight, the executor, tables read back, drift);
//! - [`data`]: data passes and online rebuilds;
//! - [`authoring`]: the migration files' checks, the generator behind `new --from-schema`, the lint;
//! - `local` (feature `local`): DynamoDB Local, found or started, and `verify`;
//! - [`rehearse`]: the pending migrations run on a read-only sample of an environment's data;
//! - `cli` (feature `cli`): the commands of `cargo xtask`.
//!
//! # Features
//!
//! - `cli` (default): the command line (clap, the AWS Batch client for `migrate --workers batch`);
//!   it turns `export` on.
//! - `export`: rebuilds through DynamoDB's Export to S3 and Import from S3
//!   (`RebuildStep::via_export`): the S3 client and gzip streams.
//! - `local` (default): DynamoDB Local and `verify`; the only part that links testcontainers and a
//!   Docker client. A runner built for production (`--no-default-features --features cli`) has
//!   the commands that work on real environments.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// A generated migration is compiled with the engine's tests (`generate_tests.rs`), and names the
// engine as a migrations crate does.
#[cfg(test)]
extern crate self as dynamo_migrate;

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;

pub mod authoring;
pub mod data;
#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local;
pub mod rehearse;
pub mod run;
pub mod schema_steps;

mod error;
mod sdk;

// Each module by its short name for the engine's own code (`crate::ledger`, `crate::planner`):
// the folders group them by concept, the code names them by what they are. Some serve only the
// command line, or only it and DynamoDB Local.
use authoring::migration;
#[cfg(feature = "cli")]
use authoring::{generate, lint, schemas};
use data::rebuild;
#[cfg(any(feature = "cli", feature = "local"))]
use data::schema_read;
#[cfg(feature = "local")]
use local::verify;
use run::{client, environment, ledger, lock, migrator, names, sequence};
#[cfg(feature = "cli")]
use run::{guard, iam, workers};
use schema_steps::{drift, executor, live, planner, preview, rules};

pub use error::{Error, Result};

// What a migration is written with: its steps, the data step's context and options, the table
// model. The engine's other parts are in the modules above.
pub use authoring::migration::{DataStep, Destructive, Fixture, Migration, RebuildPath, RebuildStep, SchemaStep, Step};
pub use data::{
    Change, DataContext, DataError, DataReport, FailureBudget, PassBuilder, PassOptions, RateLimit, from_item, to_item,
};

/// What typed items use to keep DynamoDB's types (sets, binary), re-exported so that a
/// migration uses the same versions as the engine.
pub use {dynamo_model::schemars, serde_bytes, serde_dynamo};

/// The table model, re-exported so that migrations need only this crate.
pub use dynamo_model as model;
pub use dynamo_model::{
    Billing, GlobalIndex, KeyAttr, KeyType, LocalIndex, Number, NumberSet, Projection, StreamView, TableClass,
    TableDef, TableSchema, Throughput,
};

/// Everything a schema or migrations crate usually names, in one import:
/// `use dynamo_migrate::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Billing, Change, DataContext, DataStep, Destructive, FailureBudget, Fixture, GlobalIndex, KeyAttr, KeyType,
        LocalIndex, Migration, Number, NumberSet, Project, Projection, RateLimit, RebuildStep, SchemaStep, Step,
        StreamView, TableDef, TableSchema, Throughput,
    };
}

/// The project a runner is built for: the schema crate's tables and the ordered migrations.
#[derive(Debug, Clone)]
pub struct Project {
    /// Every table the schema crate declares, as it should be once every migration is applied
    /// (the schema crate's `tables()`).
    pub tables: Vec<TableSchema>,
    /// Every migration, in version order (the migrations crate's `all()`).
    pub migrations: Vec<Migration>,
}
