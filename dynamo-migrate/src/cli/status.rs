//! `status`: the ledger, the lock and the drift of one environment, and with `--items` the
//! drift of its data from the schema crate's item types.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;

use clap::Args;
use serde::Serialize;

use super::plan::{drift_of, print_drift};
use super::session::EnvArgs;
use super::{Failure, Output};
use crate::Project;
use crate::client::read_only;
use crate::ledger::Ledger;
use crate::lock::holder;
use crate::rebuild::rebuild_states;
use crate::rehearse::{Sample, SampleOptions};
use crate::schema_read::{ItemsCheck, check_items};
use crate::sequence::Status;

/// Show applied and pending migrations, the lock and drift
///
/// Shows every migration as applied (when, by whom), pending, changed or missing, the lock's
/// holder if any, and the drift of each live table from what the applied migrations produced,
/// field by field; with `--items`, the items that do not read as the schema crate's types. Reads
/// only.
///
/// With --check (for CI, before a deploy) it exits 1 on what stops `migrate`: a table that
/// drifted, a migration changed or missing, or one left running or failed.
///
/// Example: `cargo xtask status --env prod --check`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Exit 1 on drift, a changed or missing migration, or one left running or failed.
    #[arg(long)]
    check: bool,
    /// Also read a sample of each table's items (1000 unless given), spread over its key space,
    /// and read each exactly as the schema crate's item type: items an old application instance
    /// wrote after a backfill (a field missing, another type) show before the application reads
    /// them. Exits 1 when one does not read.
    #[arg(long, value_name = "ITEMS", num_args = 0..=1, default_missing_value = "1000", value_parser = clap::value_parser!(u64).range(1..))]
    items: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Row {
    version: u32,
    name: String,
    state: String,
    at: Option<String>,
    by: Option<String>,
    detail: Option<String>,
}

impl StatusArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        let session = self.env.open(Some(project), false, false).await?;
        let ledger = Ledger::new(session.client.clone(), &session.names);
        let records = ledger.records().await?;
        let by_version: BTreeMap<u32, _> = records.iter().map(|r| (r.version, r)).collect();
        let mut rows = Vec::new();
        for m in &project.migrations {
            let row = match by_version.get(&m.version) {
                None => Row {
                    version: m.version,
                    name: m.name.clone(),
                    state: "pending".into(),
                    at: None,
                    by: None,
                    detail: None,
                },
                Some(r) => {
                    let state = if r.status == Status::Succeeded && r.checksum != m.checksum {
                        "changed".to_owned()
                    } else if r.status == Status::Succeeded {
                        "applied".to_owned()
                    } else {
                        r.status.to_string()
                    };
                    let detail = match state.as_str() {
                        "changed" => Some(format!(
                            "applied with checksum {}, the code now has {}",
                            &r.checksum[..12],
                            &m.checksum[..12]
                        )),
                        // Resolved by hand: its old failure is history, not its state.
                        "applied" => r.recovered_by.as_ref().map(|by| format!("recovered by {by}")),
                        _ => r.error.clone().or(r.recovered_by.as_ref().map(|by| format!("recovered by {by}"))),
                    };
                    Row {
                        version: m.version,
                        name: m.name.clone(),
                        state,
                        at: Some(r.finished_at.clone().unwrap_or_else(|| r.started_at.clone())),
                        by: Some(r.applied_by.clone()),
                        detail,
                    }
                }
            };
            rows.push(row);
        }
        for r in records.iter().filter(|r| !project.migrations.iter().any(|m| m.version == r.version)) {
            rows.push(Row {
                version: r.version,
                name: r.name.clone(),
                state: "missing".into(),
                at: Some(r.started_at.clone()),
                by: Some(r.applied_by.clone()),
                detail: Some("in the ledger but not in the code".into()),
            });
        }
        let lock = holder(&session.client, session.names.ledger()).await?;
        let rebuilds = if ledger.exists().await? {
            rebuild_states(&ledger, &session.names, &project.migrations).await?
        } else {
            vec![]
        };
        let drifts = drift_of(&session, project, &records).await?;
        let items = match self.items {
            None => None,
            Some(n) => {
                let reader = read_only(&session.client, format!("environment {}", session.env.name));
                let options = SampleOptions { progress: std::io::stderr().is_terminal(), ..SampleOptions::default() };
                Some(check_items(&reader, &session.names, &project.tables, Sample::Items(n), &options, 10).await?)
            }
        };
        out.facts(serde_json::json!({
            "environment": session.env.name,
            "caller": session.caller,
            "migrations": rows,
            "lock": lock,
            "rebuilds": rebuilds,
            "drift": drifts,
            "items": items,
        }));
        if out.is_human() {
            println!(
                "environment {} (region {}), ledger {}",
                session.env.name,
                session.env.region,
                session.names.ledger()
            );
            for r in &rows {
                let when = r.at.as_deref().map(|a| format!(" {a}")).unwrap_or_default();
                let by = r.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
                let detail = r.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                println!("  {:04} {:<40} {}{when}{by}{detail}", r.version, r.name, r.state);
            }
            match &lock {
                Some(h) => println!("lock: held by {h}"),
                None => println!("lock: free"),
            }
            for rebuild in &rebuilds {
                println!("rebuild: {rebuild}");
            }
            print_drift(&drifts);
            for check in items.iter().flatten() {
                print_items(check);
            }
        }
        let bad: Vec<String> = items
            .iter()
            .flatten()
            .filter(|c| c.bad_items > 0)
            .map(|c| format!("{} of {} ({})", c.bad_items, c.physical, c.table))
            .collect();
        if !bad.is_empty() {
            return Err(Failure::work(anyhow::anyhow!(
                "items do not read as the schema crate's types: {}; the application would fail to read them or lose what its types do not hold: fix those items (or the types), then run `cargo xtask status {} --items`",
                bad.join(", "),
                self.env.options()
            )));
        }
        if !self.check {
            return Ok(());
        }
        let mut problems: Vec<String> = rows
            .iter()
            .filter(|r| matches!(r.state.as_str(), "changed" | "missing" | "running" | "failed"))
            .map(|r| format!("migration {} ({}) is {}", r.version, r.name, r.state))
            .collect();
        if !drifts.is_empty() {
            problems.push(format!("{} table(s) drifted", drifts.len()));
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(Failure::work(anyhow::anyhow!(
                "status --check: {}; see above, put it right (`cargo xtask recover` for a migration left running or failed), then run `cargo xtask status {} --check`",
                problems.join(", "),
                self.env.options()
            ))),
        }
    }
}

fn print_items(check: &ItemsCheck) {
    let Some(read) = &check.read else {
        println!("items of {}: {} does not exist (yet), nothing read", check.table, check.physical);
        return;
    };
    println!(
        "items of {} ({}): read {} from {} of {} segment(s), {:.1} read units: {} do not read as the schema crate's type",
        check.table, check.physical, read.items, read.segments_read, read.segments, read.read_units, check.bad_items
    );
    for bad in &check.bad_item_examples {
        println!("  ! {}: {}", bad.key, bad.error);
    }
}
