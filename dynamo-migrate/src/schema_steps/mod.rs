//! Schema steps against AWS's rules: what a step asks of DynamoDB's control plane
//! ([`plan_step`]'s [`Call`]s, planned from the live table), the rules AWS enforces over a table's
//! recent history that DynamoDB Local does not ([`RuleBook`]), the pre-flight of every pending
//! migration ([`validate`], [`preview`]), making the calls ([`execute`]), reading tables back
//! ([`describe`]) and how live tables drifted from what the ledger says ([`drift()`]).

pub(crate) mod drift;
pub(crate) mod executor;
pub(crate) mod live;
pub(crate) mod planner;
pub(crate) mod preview;
pub(crate) mod rules;

pub use drift::{DriftKind, SimulatedTables, TableDrift, drift, expected_tables, known_tables};
pub use executor::{ExecOptions, Outcome, execute, wait_until_active};
pub use live::{LiveTable, NOT_CHECKED_ON_LOCAL, describe, list_tables};
pub use planner::{Call, PlanError, describe_step, plan_step};
pub use preview::{Pending, PlannedMigration, PlannedStep, preview, validate};
pub use rules::{ChangeKind, Decreases, Described, History, Recorded, Refusal, Rule as AwsRule, RuleBook, RuleScope};
