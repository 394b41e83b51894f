//! The engine: applies ordered migrations to DynamoDB tables, keeps the ledger, and provides
//! DynamoDB Local. It knows nothing of any particular workspace's tables: the schema and
//! migrations crates hand it their lists, and the runner binary links all three.

// A generated migration is compiled with the engine's tests (`generate_tests.rs`), and names the
// engine as a migrations crate does.
#[cfg(test)]
extern crate self as dynamo_migrate;

#[cfg(feature = "cli")]
pub mod cli;

pub mod authoring;
pub mod data;
#[cfg(feature = "local")]
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
pub use authoring::migration::{DataStep, Destructive, Fixture, Migration, RebuildStep, SchemaStep, Step};
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
        LocalIndex, Migration, Number, NumberSet, Project, Projection, RateLimit, RebuildStep, SchemaStep, StreamView,
        TableDef, TableSchema, Throughput,
    };
}

/// The project a runner is built for: the schema crate's tables and the ordered migrations.
#[derive(Debug, Clone)]
pub struct Project {
    pub tables: Vec<TableSchema>,
    pub migrations: Vec<Migration>,
}
