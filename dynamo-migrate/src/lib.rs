//! The engine: applies ordered migrations to DynamoDB tables, keeps the ledger, and provides
//! DynamoDB Local. It knows nothing of any particular workspace's tables: the schema and
//! migrations crates hand it their lists, and the runner binary links all three.

// A generated migration is compiled with the engine's tests (`generate_tests.rs`), and names the
// engine as a migrations crate does.
#[cfg(test)]
extern crate self as dynamo_migrate;

#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod data;
mod drift;
mod environment;
mod error;
mod executor;
mod generate;
mod guard;
pub mod iam;
mod ledger;
mod lint;
mod live;
#[cfg(feature = "local")]
mod local;
mod lock;
mod migration;
mod migrator;
mod names;
mod planner;
mod preview;
mod rebuild;
mod rehearse;
mod rules;
mod schema_read;
mod schemas;
mod sdk;
mod sequence;
#[cfg(feature = "local")]
mod verify;
mod workers;

pub use client::{
    READ_OPERATIONS, Target, WriteRefused, connect, connect_streams, connect_sts, is_local_endpoint, read_only,
};
pub use data::Sharing;
pub use data::{
    Change, DataContext, DataError, DataReport, FailureBudget, PassBuilder, PassOptions, Phase, RESUME_LIMIT,
    RateLimit, ReplayError, ReplayHeader, ReplayReport, ReplayStore, canonical_item, canonical_json, canonical_number,
    from_item, key_text, to_item,
};
pub use drift::{DriftKind, SimulatedTables, TableDrift, drift, expected_tables, known_tables};
pub use environment::{ConfigError, Environment, Environments, WorkersConfig};
pub use error::{COMMAND_PLACEHOLDER, ENVIRONMENT_PLACEHOLDER, Error, Result, SdkFailure};
pub use executor::{ExecOptions, Outcome, execute, wait_until_active};
pub use generate::{
    GenerateError, GenerateErrors, GeneratedKind, GeneratedStep, Generation, NotGenerated, generate, render,
    render_empty,
};
pub use guard::{CallerIdentity, GuardError, check_account, confirm};
pub use ledger::Ledger;
pub use lint::{Acknowledgement, Acknowledgements, Finding, LintError, Rule, lint};
pub use live::{LiveTable, NOT_CHECKED_ON_LOCAL, describe, list_tables};
#[cfg(feature = "local")]
pub use local::{
    BuiltImage, ContainerNetwork, Docker, DynamoDbLocal, IMAGE_ENV, IMAGE_REPOSITORY, LocalError, LocalOptions,
    NETWORK_ENV, OFFICIAL_IMAGE, VERSION as DYNAMODB_LOCAL_VERSION, build_image, cache_dir, docker_engine,
    ensure_installed,
};
pub use lock::{
    HolderProcess, Lock, LockFenced, LockHolder, LockLoss, LockOptions, MIN_LEASE, Watched, force_unlock,
    holder as lock_holder, remove_unchanged, watch as watch_lock,
};
pub use migration::{
    DataStep, Destructive, Fixture, Migration, MigrationInfo, RebuildStep, SchemaStep, Step, check_files, checksum,
    parse_file_name,
};
pub use migrator::{MigrationReport, Migrator, RunFailure, RunReport, StepReport, names_after};
pub use names::TableNames;
pub use planner::{Call, PlanError, describe_step, plan_step};
pub use preview::{Pending, PlannedMigration, PlannedStep, preview, validate};
pub use rebuild::{COPY_LIMIT, CheckReport, DEFAULT_QUIET_WINDOW, RebuildState, SyncCheck, SyncReport, rebuild_states};
#[cfg(feature = "local")]
pub use rehearse::{
    CopiedTable, ListedFailure, LocalServer, RehearsalOptions, RehearsalReport, RehearseError, RehearsedMigration,
    RehearsedPass, RehearsedStep, rehearse,
};
pub use rehearse::{
    Estimate, FailedItem, PassForecast, PassRun, Sample, SampleOptions, SampleReport, StepForecast, TableFacts,
    UnitsPerSecond, deploy_sequence, facts as table_facts, forecast, read_sample,
};
pub use rules::{ChangeKind, Decreases, Described, History, Recorded, Refusal, Rule as AwsRule, RuleBook, RuleScope};
pub use schema_read::{BadItem, ItemsCheck, check_items, read_exactly};
pub use schemas::{json_schemas, stale_schemas};
pub use sequence::{
    AppliedMigration, Recovery, RecoveryError, RecoveryPlan, SequenceError, SequenceErrors, Status, pending,
    plan_recovery,
};
#[cfg(feature = "local")]
pub use verify::{TableCheck, VerifyOptions, VerifyReport, verify};
pub use workers::{JoinedPass, OpenPass, WorkerOptions, WorkerReport, open_pass, work as work_passes};

/// What typed items use to keep DynamoDB's types (sets, binary), re-exported so that a
/// migration uses the same versions as the engine.
pub use {dynamo_model::schemars, serde_bytes, serde_dynamo};

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
