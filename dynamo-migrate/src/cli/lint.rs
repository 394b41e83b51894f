//! `lint`: the risky changes in the migrations, for CI.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use serde_json::json;

use super::session::EnvArgs;
use super::{Failure, NextStep, Output, usage};
use crate::Project;
use crate::ledger::Ledger;
use crate::lint::{Acknowledgements, Finding, lint};
use crate::migration::Migration;
use crate::sequence::pending;

/// Flag the risky changes in the migrations, for CI
///
/// Lists every step that deletes a table or an index, rebuilds a table, replaces a stream or
/// switches billing mode, with the rule that fired (delete-table, delete-index, rebuild,
/// stream-replacement, billing-switch): in the migrations pending in an environment (--env,
/// which reads its ledger), or in every migration without one. Exits 1 while a finding is not
/// acknowledged. A destructive step's reason acknowledges it; any other finding is acknowledged,
/// after review, by an entry in lint.toml:
///
///   [[acknowledge]]
///   migration = 7
///   rule = "rebuild"
///   reason = "orders v2: the application moves with release 42"
///
/// Acknowledged findings are still listed.
///
/// Example: cargo xtask lint --env prod --format json
// Verbatim, so that the lint.toml entry keeps its lines.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LintArgs {
    /// Lint only the migrations pending in this environment (as named in the environments
    /// file); without it, every migration.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(super) env: Option<String>,
    /// The environments file.
    #[arg(long, default_value = crate::environment::DEFAULT_FILE)]
    pub(super) environments: PathBuf,
    /// The file of acknowledged findings [default: lint.toml, which may be missing; a file
    /// named here must exist].
    #[arg(long, value_name = "FILE")]
    acknowledged: Option<PathBuf>,
}

/// The acknowledgements file unless `--acknowledged` names another.
const ACKNOWLEDGED: &str = "lint.toml";

impl LintArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        if let Some(file) = &self.acknowledged
            && !file.exists()
        {
            return Err(usage(anyhow!(
                "--acknowledged {}: there is no such file; name the file of acknowledged findings (without --acknowledged, {ACKNOWLEDGED}), then run `cargo xtask lint{}`",
                file.display(),
                self.env.as_ref().map(|e| format!(" --env {e}")).unwrap_or_default()
            )));
        }
        let acknowledgements = Acknowledgements::load(self.acknowledged(), &project.migrations)
            .map_err(|e| usage(NextStep::new(e, format!("fix it, then run `{}`", self.again()))))?;
        let mut findings = lint(&project.migrations)?;
        let unused = acknowledgements.apply(&mut findings);
        let pending = match &self.env {
            None => None,
            Some(env) => Some(self.pending(env, project).await?),
        };
        let linted: Vec<&Migration> =
            project.migrations.iter().filter(|m| pending.as_ref().is_none_or(|p| p.contains(&m.version))).collect();
        findings.retain(|f| linted.iter().any(|m| m.version == f.version));
        // Against an environment, an acknowledgement of an applied migration is simply done.
        let unused: Vec<String> = if pending.is_none() {
            unused.iter().map(|(version, rule)| format!("migration {version}, rule {rule}")).collect()
        } else {
            vec![]
        };
        let open: Vec<&Finding> = findings.iter().filter(|f| f.acknowledged.is_none()).collect();

        out.facts(json!({
            "scope": if pending.is_some() { "pending" } else { "all" },
            "environment": self.env,
            "migrations": linted.iter().map(|m| m.version).collect::<Vec<_>>(),
            "findings": findings,
            "unacknowledged": open.len(),
            "unused_acknowledgements": unused,
        }));
        if out.is_human() {
            print_findings(&self, &linted, &findings, &unused);
        }
        if open.is_empty() {
            return Ok(());
        }
        let first = open[0];
        let list: Vec<String> = open
            .iter()
            .map(|f| format!("migration {} ({}) step {}: {}", f.version, f.migration, f.step, f.rule))
            .collect();
        Err(Failure::work(anyhow!(
            "{} risky change(s) not acknowledged: {}; after review, acknowledge each in {} ([[acknowledge]] migration = {}, rule = \"{}\", reason = \"why the risk is taken\"), then run `cargo xtask lint{}`",
            open.len(),
            list.join(", "),
            self.acknowledged().display(),
            first.version,
            first.rule,
            self.again().trim_start_matches("cargo xtask lint"),
        )))
    }

    /// The acknowledgements file read.
    fn acknowledged(&self) -> &Path {
        self.acknowledged.as_deref().unwrap_or(Path::new(ACKNOWLEDGED))
    }

    /// This command again, as it was given.
    fn again(&self) -> String {
        let mut command = "cargo xtask lint".to_owned();
        if let Some(env) = &self.env {
            command.push_str(&format!(" --env {env}"));
            if self.environments != Path::new(crate::environment::DEFAULT_FILE) {
                command.push_str(&format!(" --environments {}", self.environments.display()));
            }
        }
        if let Some(file) = &self.acknowledged {
            command.push_str(&format!(" --acknowledged {}", file.display()));
        }
        command
    }

    /// The versions pending in the environment, as its ledger says.
    async fn pending(&self, env: &str, project: &Project) -> Result<Vec<u32>, Failure> {
        let args = EnvArgs { env: env.to_owned(), environments: self.environments.clone() };
        let session = args.open(Some(project), false, false).await?;
        let records = Ledger::new(session.client.clone(), &session.names).records().await?;
        let known: Vec<_> = project.migrations.iter().map(Migration::info).collect();
        pending(&records, &known).map_err(|e| Failure::work(anyhow!("the ledger refuses to run: {e}")))
    }
}

fn print_findings(args: &LintArgs, linted: &[&Migration], findings: &[Finding], unused: &[String]) {
    let open = findings.iter().filter(|f| f.acknowledged.is_none()).count();
    let scope = match &args.env {
        Some(env) => format!("{} migration(s) pending in {env}", linted.len()),
        None => format!("{} migration(s), all (no environment given)", linted.len()),
    };
    println!("lint: {scope}: {} risky change(s), {open} not acknowledged", findings.len());
    let mut last = None;
    for finding in findings {
        if last != Some(finding.version) {
            println!("  {:04} {}", finding.version, finding.migration);
            last = Some(finding.version);
        }
        let mark = if finding.acknowledged.is_some() { " " } else { "!" };
        println!("   {mark} step {} [{}] {}", finding.step, finding.rule, finding.message);
        match &finding.acknowledged {
            Some(ack) => println!("        {ack}"),
            None => println!("        not acknowledged"),
        }
    }
    for entry in unused {
        println!("note: {} acknowledges {entry}, which raises no finding: remove it", args.acknowledged().display());
    }
}
