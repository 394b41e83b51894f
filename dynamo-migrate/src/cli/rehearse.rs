//! `rehearse`: the pending migrations of an environment, run on a copy of its data.

use std::io::IsTerminal as _;

use anyhow::anyhow;
use clap::Args;

use super::session::{EnvArgs, Session};
use super::{Failure, Output, usage};
use crate::Project;
use crate::client::read_only;
use crate::local::{Docker, LocalOptions};
use crate::rehearse::estimate::duration;
use crate::rehearse::{RehearsalOptions, RehearsalReport, RehearseError, RehearsedStep, Sample, rehearse};

/// Rehearse pending migrations on a read-only copy of the data
///
/// Rehearses the migrations pending in an environment on a copy of its data, reading it and never
/// writing to it: read the ledger and a sample of each table's items spread over its key space
/// (or all of them), copy them into a DynamoDB Local of its own (in memory), apply the pending
/// migrations there as `migrate` would, check the result as `verify` does, and report every step
/// with the items it cannot take (key, attribute and reason) and what it would take on the whole
/// table (time, read and write units, cost on demand). Exits 1 when a step would fail or an item
/// would not read as the schema crate's type, 0 otherwise.
///
/// Example: `cargo xtask rehearse --env prod --sample 20000`
#[derive(Debug, Args)]
pub struct RehearseArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Items to read of each table, spread over its key space.
    #[arg(long, default_value_t = 1000, value_name = "ITEMS", value_parser = clap::value_parser!(u64).range(1..))]
    sample: u64,
    /// Read every item of every table instead of a sample.
    #[arg(long, conflicts_with = "sample")]
    all: bool,
    /// Parallel scan segments to cut each table into (by default about one per page of the
    /// sample's share of the table).
    #[arg(long, value_name = "SEGMENTS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    segments: Option<u32>,
    /// At most this many read units a second from the environment.
    #[arg(long, value_name = "UNITS", value_parser = positive, allow_negative_numbers = true)]
    read_rate: Option<f64>,
    /// Rehearse even though the live tables differ from what the applied migrations produced
    /// (as `migrate --allow-drift` would apply).
    #[arg(long)]
    allow_drift: bool,
    /// Failed items listed per step (all are counted).
    #[arg(long, default_value_t = 10, value_name = "ITEMS")]
    list: usize,
    /// Do not try a Docker engine for the rehearsal's DynamoDB Local; start it with Java.
    #[arg(long)]
    no_docker: bool,
}

/// A rate: a positive number.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{text} is not a positive number of read units a second (for example 100)")),
    }
}

impl RehearseArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        // Read only: no confirmation, and the client is made read-only before anything is read.
        let Session { env, client, names, .. } = self.env.open(Some(project), false, false).await?;
        let client = read_only(&client, format!("environment {}", env.name));
        let options = RehearsalOptions {
            sample: if self.all { Sample::All } else { Sample::Items(self.sample) },
            segments: self.segments,
            read_units_per_second: self.read_rate,
            local: LocalOptions {
                docker: if self.no_docker { Docker::Never } else { Docker::Auto },
                ..LocalOptions::default()
            },
            environment: env.name.clone(),
            environment_is_local: env.is_local(),
            check_files: true,
            allow_drift: self.allow_drift,
            progress: std::io::stderr().is_terminal(),
            listed: self.list,
        };
        out.line(format!(
            "rehearsal of environment {} (region {}), ledger {}: {}",
            env.name,
            env.region,
            names.ledger(),
            options.sample
        ));
        let narrate = |line: String| out.line(line);
        let report = match rehearse(&client, &names, project, &options, &narrate).await {
            Ok(report) => report,
            Err(RehearseError::Local(e)) => return Err(usage(e)),
            Err(e) => return Err(Failure::work(e)),
        };
        out.facts(serde_json::json!({
            "environment": env.name,
            "report": report,
            "peak_rss_mib": super::bench::peak_rss_mib(),
        }));
        if out.is_human() {
            print_human(&report);
        }
        if report.ok() {
            Ok(())
        } else {
            Err(Failure::work(anyhow!(
                "the rehearsal found {} problem(s) that `migrate --env {}` would meet (the report lists them); fix the migrations (or the items), then run `cargo xtask rehearse --env {}` again",
                report.problems.len(),
                env.name,
                env.name
            )))
        }
    }
}

fn print_human(report: &RehearsalReport) {
    if report.pending.is_empty() {
        println!("nothing is pending in environment {}: nothing to rehearse", report.environment);
        return;
    }
    println!(
        "applied {} of {} pending migration(s) to the copy:",
        report.migrations.iter().filter(|m| m.applied).count(),
        report.pending.len()
    );
    for m in &report.migrations {
        let how = if m.applied { format!("{} ms", m.millis) } else { "not applied".to_owned() };
        println!("  {:04} {} ({how})", m.version, m.name);
        for step in &m.steps {
            print_step(step);
        }
    }
    if let Some(error) = &report.run_error {
        println!("the run stopped: {error}");
    }
    if !report.checked.is_empty() {
        println!("checked {} table(s) against the schema crate:", report.checked.len());
    }
    for t in &report.checked {
        println!(
            "  {}: {} difference(s); {} item(s) read, {} unreadable",
            t.table,
            t.diffs.len(),
            t.items_read,
            t.bad_items
        );
        for bad in &t.bad_item_examples {
            println!("    ! item {}: {}", bad.key, bad.error);
        }
    }
    let total: f64 = report
        .migrations
        .iter()
        .flat_map(|m| &m.steps)
        .flat_map(|s| &s.passes)
        .filter_map(|p| p.estimate.as_ref()?.seconds)
        .sum();
    println!(
        "read {:.1} read units of the environment; the data steps would take about {} on the whole tables",
        report.read_units,
        duration(total)
    );
    if report.ok() {
        println!("rehearsal passed in {:.1} s", report.millis as f64 / 1000.0);
    } else {
        println!("rehearsal FAILED with {} problem(s):", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
    }
}

fn print_step(step: &RehearsedStep) {
    let mark = if step.would_fail.is_some() { "!" } else { " " };
    println!("    {mark} {}", step.step);
    if let Some(done) = &step.report {
        for call in &done.calls {
            println!("        {call}");
        }
        for skipped in &done.skipped {
            println!("        skipped {skipped}");
        }
    }
    for pass in &step.passes {
        let run = &pass.run;
        let place = if run.source == run.target {
            format!("over {}", run.source)
        } else {
            format!("over {} into {}", run.source, run.target)
        };
        match (&run.report, &run.error) {
            (Some(d), _) => println!(
                "        pass {place}: scanned {}, written {}, unchanged {}, deleted {}, failed {} ({:.0} items/s)",
                d.scanned, d.written, d.unchanged, d.deleted, d.failed, pass.items_per_s
            ),
            (None, Some(error)) => println!("        pass {place} stopped: {error}"),
            (None, None) => println!("        pass {place} did not end"),
        }
        if let Some(estimate) = &pass.estimate {
            println!("          on the whole table: {estimate}");
        }
    }
    if let Some(units) = step.check_read_units {
        println!("          its convergence check on the whole table: about {units:.0} read units");
    }
    if let Some(done) = &step.report {
        for check in &done.checked {
            println!("        {check}");
        }
    }
    for failure in &step.failures {
        println!("      ! {} {}: {}", failure.table, failure.key, failure.error);
    }
    if let Some(why) = &step.would_fail {
        println!("      ! would fail: {why}");
    }
}
