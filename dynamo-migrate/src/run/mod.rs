//! Running migrations against an environment: the [`Migrator`] and its report, the ledger that
//! records every migration, the lock that fences a run, the decision of what is pending and how
//! to recover a failed migration, environments and the account guard, SDK clients, the workers
//! that share a run's passes, and the IAM policy a run needs.
//!
//! The command line (`cargo xtask migrate`, `sync`, `status`, `recover`, `worker`) is built on
//! these; a program of its own can use them the same way.

pub(crate) mod client;
pub(crate) mod environment;
pub(crate) mod guard;
pub mod iam;
pub(crate) mod ledger;
pub(crate) mod lock;
pub(crate) mod migrator;
pub(crate) mod names;
pub(crate) mod sequence;
pub(crate) mod workers;

#[cfg(feature = "export")]
#[cfg_attr(docsrs, doc(cfg(feature = "export")))]
pub use client::connect_s3;
pub use client::{
    READ_OPERATIONS, Target, WriteRefused, connect, connect_streams, connect_sts, is_local_endpoint, read_only,
};
pub use environment::{ConfigError, Environment, Environments, ExportsConfig, WorkersConfig};
pub use guard::{CallerIdentity, GuardError, check_account, confirm};
pub use ledger::Ledger;
pub use lock::{
    HolderProcess, Lock, LockFenced, LockHolder, LockLoss, LockOptions, MIN_LEASE, Watched, force_unlock,
    holder as lock_holder, remove_unchanged, watch as watch_lock,
};
pub use migrator::{MigrationReport, Migrator, RunFailure, RunReport, StepReport, names_after};
pub use names::TableNames;
pub use sequence::{
    AppliedMigration, Recovery, RecoveryError, RecoveryPlan, SequenceError, SequenceErrors, Status, pending,
    plan_recovery,
};
pub use workers::{JoinedPass, OpenPass, WorkerOptions, WorkerReport, open_pass, work as work_passes};

pub use crate::data::Sharing;
pub use crate::error::{COMMAND_PLACEHOLDER, ENVIRONMENT_PLACEHOLDER, SdkFailure};
