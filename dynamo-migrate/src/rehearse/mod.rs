//! `rehearse`: the pending migrations of an environment, run on a copy of its data before
//! `migrate` runs them there, so that the items fixtures never show (written years ago by another
//! service, a set where the type has a list, a number an `f64` cannot hold, an attribute the
//! transform does not know) are found before they stop a migration in production mid-way.
//!
//! It reads the environment and never writes to it: every client it holds for the environment is
//! read-only by construction (`client::read_only`), so even a bug here could not send a write.
//! It reads the environment's ledger and describes its tables, starts a DynamoDB Local of its own
//! (in memory), creates the tables there as they are described, copies a sample of their items
//! (`sample`: spread over the key space; or all of them), and copies the ledger's records, so that
//! exactly the migrations pending in the environment are pending in the copy. Then it applies them
//! there through the same `Migrator` as `migrate`, with what `verify` adds (in-place passes run
//! twice, the end state and every item checked against the schema crate), and with every pass
//! keeping every failed item (`collect`), so that each step runs to its end and shows all it
//! cannot take. The report extrapolates each pass to the whole table (`estimate`).

pub(crate) mod collect;
pub(crate) mod estimate;
mod forecast;
#[cfg(feature = "local")]
mod run;
pub(crate) mod sample;

pub(crate) use collect::Collector;
pub use collect::{FailedItem, PassRun};
pub use estimate::{Estimate, TableFacts, UnitsPerSecond, facts};
pub use forecast::{PassForecast, StepForecast, deploy_sequence, forecast};
#[cfg(feature = "local")]
pub use run::{
    CopiedTable, ListedFailure, LocalServer, RehearsalOptions, RehearsalReport, RehearseError, RehearsedMigration,
    RehearsedPass, RehearsedStep, rehearse,
};
pub use sample::{Sample, SampleOptions, SampleReport, read_sample};
