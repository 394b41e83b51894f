//! The engine: applies ordered migrations to DynamoDB tables, keeps the ledger, and provides
//! DynamoDB Local. It knows nothing of any particular workspace's tables: the schema and
//! migrations crates hand it their lists, and the runner binary links all three.

pub mod cli;
mod client;
mod data;
mod drift;
mod environment;
mod error;
mod executor;
mod guard;
mod ledger;
mod live;
mod local;
mod lock;
mod migration;
mod migrator;
mod names;
mod planner;
mod preview;
mod rules;
mod sdk;
mod sequence;
mod verify;

pub use client::{Target, connect, connect_streams, connect_sts, is_local_endpoint};
pub use data::{
    Change, DataContext, DataError, DataReport, PassBuilder, PassOptions, Phase, RESUME_LIMIT, RateLimit, ReplayError,
    ReplayHeader, ReplayReport, ReplayStore, canonical_item, canonical_json, canonical_number, from_item, key_text,
    to_item,
};
pub use drift::{DriftKind, TableDrift, drift, expected_tables, known_tables};
pub use environment::{ConfigError, Environment, Environments};
pub use error::{Error, Result};
pub use executor::{ExecOptions, Outcome, execute, wait_until_active};
pub use guard::{CallerIdentity, GuardError, check_account, confirm};
pub use ledger::Ledger;
pub use live::{LiveTable, NOT_CHECKED_ON_LOCAL, describe, list_tables};
pub use local::{
    BuiltImage, ContainerNetwork, Docker, DynamoDbLocal, IMAGE_ENV, IMAGE_REPOSITORY, LocalError, LocalOptions,
    NETWORK_ENV, OFFICIAL_IMAGE, VERSION as DYNAMODB_LOCAL_VERSION, build_image, cache_dir, docker_engine,
    ensure_installed,
};
pub use lock::{Lock, LockHolder, LockOptions, force_unlock, holder as lock_holder};
pub use migration::{
    DataStep, Destructive, Fixture, Migration, MigrationInfo, RebuildStep, SchemaStep, Step, checksum,
};
pub use migrator::{
    COPY_LIMIT, DEFAULT_QUIET_WINDOW, MigrationReport, Migrator, RebuildState, RunFailure, RunReport, StepReport,
    SyncReport, names_after, rebuild_states,
};
pub use names::TableNames;
pub use planner::{Call, PlanError, describe_step, plan_step};
pub use preview::{PlannedMigration, PlannedStep, preview};
pub use rules::{ChangeKind, Decreases, Described, History, Recorded, Refusal, Rule, RuleBook, RuleScope};
pub use sequence::{AppliedMigration, SequenceError, SequenceErrors, Status, pending};
pub use verify::{BadItem, TableCheck, VerifyOptions, VerifyReport, verify};

/// What typed items use to keep DynamoDB's types (sets, binary), re-exported so that a
/// migration uses the same versions as the engine.
pub use {serde_bytes, serde_dynamo};

/// The table model, re-exported so that migrations need only this crate.
pub use dynamo_model as model;
pub use dynamo_model::{
    Billing, GlobalIndex, KeyAttr, KeyType, LocalIndex, Number, NumberSet, Projection, StreamView, TableClass,
    TableDef, TableSchema, Throughput,
};

/// The project a runner is built for: the schema crate's tables and the ordered migrations.
#[derive(Debug, Clone)]
pub struct Project {
    pub tables: Vec<TableSchema>,
    pub migrations: Vec<Migration>,
}
