//! `verify`: all migrations from empty on DynamoDB Local, checked against the schema crate.
//! The command needs the `local` feature; how a migration's report is printed, which `migrate`
//! shares, does not.

#[cfg(feature = "local")]
pub(crate) use command::VerifyArgs;

use crate::migrator::MigrationReport;

#[cfg(feature = "local")]
mod command {
    use anyhow::anyhow;
    use clap::Args;

    use super::super::{Failure, Output, usage};
    use super::print_migration;
    use crate::Project;
    use crate::local::VERSION as DYNAMODB_LOCAL_VERSION;
    use crate::local::{Docker, LocalOptions};
    use crate::verify::{VerifyOptions, VerifyReport, verify};

    /// Apply every migration on DynamoDB Local; check the end state
    ///
    /// Applies every migration from empty on DynamoDB Local, compares the end state with the
    /// schema crate field by field, reads every item into its Rust type, and checks that a second
    /// run is a no-op. Never touches a real account: any endpoint that is not local is refused.
    ///
    /// Example: `cargo xtask verify`
    #[derive(Debug, Args)]
    pub struct VerifyArgs {
        /// Use this running DynamoDB Local instead of starting one (must be a loopback address).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        endpoint: Option<String>,
        /// Make table and index status changes take time, as on AWS (exercises the waiters).
        #[arg(long)]
        delay_transient_statuses: bool,
        /// Do not try a Docker engine; start DynamoDB Local with Java.
        #[arg(long)]
        no_docker: bool,
    }

    impl VerifyArgs {
        pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
            let options = VerifyOptions {
                local: LocalOptions {
                    endpoint: self.endpoint,
                    delay_transient_statuses: self.delay_transient_statuses,
                    docker: if self.no_docker { Docker::Never } else { Docker::Auto },
                    ..LocalOptions::default()
                },
                // A prefix of its own, so that a shared --endpoint is never confused with other tables.
                table_prefix: format!("verify{}_", std::process::id()),
                check_files: true,
            };
            let report = verify(&project.tables, &project.migrations, &options).await.map_err(usage)?;
            let stale = super::super::schemas::stale_note(project);
            if out.is_human() {
                print_human(&report);
            } else {
                out.facts(serde_json::json!({ "report": report }));
            }
            out.facts(
                serde_json::json!({ "stale_schemas": stale.as_ref().map(|(s, _)| s.clone()).unwrap_or_default() }),
            );
            if let Some((_, note)) = &stale {
                out.line(note);
            }
            if report.ok() {
                Ok(())
            } else {
                Err(Failure::work(anyhow!("verify found {} problem(s)", report.problems.len())))
            }
        }
    }

    fn print_human(report: &VerifyReport) {
        let backend = match (&report.image, &report.why_not_container) {
            (Some(image), _) => format!("container of {image}"),
            (None, Some(why)) => format!("{}; no container: {why}", report.backend),
            (None, None) => report.backend.clone(),
        };
        println!(
            "DynamoDB Local {DYNAMODB_LOCAL_VERSION} ({backend}) at {}, ready in {:.2} s",
            report.endpoint,
            report.local_start_ms as f64 / 1000.0
        );
        println!("applied {} migration(s) from empty:", report.applied.len());
        for m in &report.applied {
            print_migration(m);
        }
        println!("checked {} table(s) against the schema crate:", report.tables.len());
        for t in &report.tables {
            if !t.exists {
                println!("  {}: missing", t.table);
                continue;
            }
            let not_checked = if t.not_checked.is_empty() {
                String::new()
            } else {
                format!(" (not checkable on DynamoDB Local: {})", t.not_checked.join(", "))
            };
            println!("  {}: {} difference(s){not_checked}", t.table, t.diffs.len());
            for d in &t.diffs {
                println!("      {}: schema crate {}, after migrations {}", d.field, d.expected, d.actual);
            }
            println!("      {} item(s) read, {} unreadable", t.items_read, t.bad_items);
            for bad in &t.bad_item_examples {
                println!("      item {}: {}", bad.key, bad.error);
            }
        }
        if let Some(n) = report.second_run_applied {
            println!("second run: {n} migration(s) applied{}", if n == 0 { " (no-op, as it should be)" } else { "" });
        }
        if report.ok() {
            println!("verify passed in {:.1} s", report.millis as f64 / 1000.0);
        } else {
            println!("verify FAILED with {} problem(s):", report.problems.len());
            for p in &report.problems {
                println!("  - {p}");
            }
        }
    }
}

pub(crate) fn print_migration(m: &MigrationReport) {
    println!("  {:04} {} ({} ms)", m.version, m.name, m.millis);
    for step in &m.steps {
        println!("      {}", step.step);
        for call in &step.calls {
            println!("        {call}");
        }
        for skipped in &step.skipped {
            println!("        skipped {skipped}");
        }
        if step.fixtures_written > 0 {
            println!("        {} fixture item(s) written first", step.fixtures_written);
        }
        if let Some(d) = &step.data {
            let mut line = format!(
                "        scanned {}, written {}, unchanged {}, deleted {}, failed {}",
                d.scanned, d.written, d.unchanged, d.deleted, d.failed
            );
            if d.conflicts + d.vanished > 0 {
                line.push_str(&format!(
                    " ({} re-read and redone after a concurrent write, {} deleted by someone else meanwhile)",
                    d.conflicts, d.vanished
                ));
            }
            println!("{line}");
        }
        for check in &step.checked {
            println!("        {check}");
        }
    }
}
