//! `baseline`: the first migration, written from tables that already run, and recorded as
//! applied in the environment they run in.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::new::NewArgs;
use super::session::EnvArgs;
use super::{Failure, Output, usage};
use crate::Project;
use crate::generate::generate;
use crate::guard::confirm;
use crate::ledger::{Ledger, now};
use crate::live::{describe, list_tables};
use crate::lock::{Lock, LockOptions};
use crate::migration::checksum;
use crate::sequence::{AppliedMigration, Status};

/// Write the first migration from an environment's live tables
///
/// It is recorded as applied there.
///
/// For a team whose tables already run in production: reads every table with the environment's
/// prefix (the ledger aside), writes `m0001_baseline.rs` with their create_table steps and
/// registers it, shows what it will record, then (after the account guard, and --yes or the
/// prompt for a protected environment) records it in the environment's ledger as applied, so
/// that migrate goes on from there. Only for a workspace without migrations.
///
/// Example: `cargo xtask baseline --env prod`
#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
    /// The migrations crate's source directory [default: migrations/src].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl BaselineArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        let session = self.env.open(Some(project), false, self.yes).await?;
        let env = &session.env.name;
        if let Some(first) = project.migrations.first() {
            return Err(usage(anyhow!(
                "the workspace already has migrations (the first is {} {}): a baseline is the first migration of a workspace whose tables already run; to apply the migrations, run `cargo xtask migrate --env {env}`",
                first.version,
                first.name
            )));
        }
        let ledger = Ledger::new(session.client.clone(), &session.names);
        if !ledger.records().await?.is_empty() {
            return Err(usage(anyhow!(
                "environment {env}'s ledger {} already records migrations, which this workspace does not have; see `cargo xtask status --env {env}`",
                ledger.table()
            )));
        }
        let mut live = Vec::new();
        for physical in list_tables(&session.client).await? {
            let Some((logical, version)) = session.names.logical(&physical) else { continue };
            if let Some(table) = describe(&session.client, &physical, logical, version, session.env.is_local()).await? {
                live.push(table.def);
            }
        }
        if live.is_empty() {
            return Err(usage(anyhow!(
                "environment {env} has no table with the prefix {:?}, so there is nothing to baseline; start with `cargo xtask new <name> --from-schema`",
                session.names.prefix()
            )));
        }
        let generation = generate(&live, &[]).map_err(|e| Failure::work(anyhow!("{e}")))?;
        let tables: Vec<String> = live.iter().map(|t| session.names.physical_version(&t.name, t.version)).collect();
        out.line(format_args!("environment {env}: {} table(s): {}", tables.len(), tables.join(", ")));
        out.line(format_args!(
            "will write migration 1 (baseline) that creates them, and record it in {} as applied, so that migrate starts after it",
            ledger.table()
        ));
        confirm(&session.env, self.yes).map_err(usage)?;

        let new = NewArgs::for_baseline("baseline", self.dir);
        let command = format!("cargo xtask baseline --env {env}");
        let file =
            new.write(project, out, Some(generation), &command, &format!("that create the live tables of {env}"))?;
        let source = std::fs::read_to_string(&file).map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
        let record = AppliedMigration {
            version: 1,
            name: "baseline".to_owned(),
            checksum: checksum(&source),
            status: Status::Succeeded,
            started_at: now(),
            finished_at: Some(now()),
            applied_by: session.caller.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            error: None,
            recovered_by: Some(format!("baseline of the live tables by {}", session.caller)),
            recovered_at: Some(now()),
        };
        ledger.ensure().await?;
        let options = LockOptions { env: Some(env.clone()), announce: true, ..LockOptions::new(&session.caller) };
        let lock = Lock::acquire(&session.client, ledger.table(), &options).await?;
        let recorded =
            Ledger::new(lock.fence(&session.client), &session.names).fenced(lock.token()).start(&record).await;
        lock.release().await?;
        recorded?;
        out.facts(serde_json::json!({ "environment": env, "tables": tables, "file": file, "recorded": record }));
        out.line(format_args!(
            "recorded migration 1 (baseline) as applied in {}; commit {}, and from now on change the tables with migrations",
            ledger.table(),
            file.display()
        ));
        Ok(())
    }
}
