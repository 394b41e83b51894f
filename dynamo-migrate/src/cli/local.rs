//! `local`: DynamoDB Local for development, until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::verify::print_migration;
use super::{Failure, Output, usage};
use crate::Project;
use crate::client::{Target, connect, connect_streams};
use crate::environment::Environments;
use crate::local::VERSION as DYNAMODB_LOCAL_VERSION;
use crate::local::{Docker, DynamoDbLocal, LocalOptions};
use crate::migrator::Migrator;

/// Start DynamoDB Local for development
///
/// Prints its endpoint, optionally applies the migrations (with their fixture items), and keeps
/// it running until Ctrl-C.
///
/// Example: `cargo xtask local --apply`
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Apply every migration after start-up, with the table prefix of the environment.
    #[arg(long)]
    apply: bool,
    /// The environment whose table prefix to use.
    #[arg(long, default_value = "local", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(super) env: String,
    /// The environments file.
    #[arg(long, default_value = crate::environment::DEFAULT_FILE)]
    pub(super) environments: PathBuf,
    /// Make table and index status changes take time, as on AWS.
    #[arg(long)]
    delay_transient_statuses: bool,
    /// Do not try a Docker engine; start DynamoDB Local with Java.
    #[arg(long)]
    no_docker: bool,
}

impl LocalArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        let environments = Environments::load(&self.environments).map_err(usage)?;
        let env = environments.get(&self.env).map_err(usage)?;
        // Listen where the environment expects DynamoDB Local, so that plan, migrate and status
        // with --env local reach it.
        let port = env
            .endpoint
            .as_deref()
            .filter(|_| env.is_local())
            .and_then(|e| e.rsplit(':').next()?.trim_end_matches('/').parse().ok());
        let options = LocalOptions {
            delay_transient_statuses: self.delay_transient_statuses,
            docker: if self.no_docker { Docker::Never } else { Docker::Auto },
            port,
            ..LocalOptions::default()
        };
        let server = DynamoDbLocal::start(&options).await.map_err(|e| match e {
            crate::local::LocalError::PortTaken { .. } => usage(super::NextStep::new(
                e,
                format!(
                    "stop it, or give environment {} another port in its endpoint (in {}), then run `cargo xtask local --env {}{}`",
                    self.env,
                    self.environments.display(),
                    self.env,
                    if self.environments == std::path::Path::new(crate::environment::DEFAULT_FILE) {
                        String::new()
                    } else {
                        format!(" --environments {}", self.environments.display())
                    }
                ),
            )),
            e => usage(e),
        })?;
        let backend = match (server.image(), server.why_not_container()) {
            (Some(image), _) => format!("container of {image}"),
            (None, Some(why)) => format!("{}; no container: {why}", server.backend()),
            (None, None) => server.backend().to_owned(),
        };
        out.line(format_args!(
            "DynamoDB Local {DYNAMODB_LOCAL_VERSION} ({backend}) is running at {} (ready in {:.2} s)",
            server.endpoint(),
            server.started_in().as_secs_f64()
        ));
        out.facts(serde_json::json!({ "endpoint": server.endpoint(), "backend": backend }));
        if self.apply {
            let client = connect(&Target::local(server.endpoint())).await;
            let streams = connect_streams(&Target::local(server.endpoint())).await;
            let migrator = Migrator::new(client, env.names(), true, "local")
                .with_fixtures(true)
                .with_streams(streams)
                .with_rules(crate::rules::RuleScope::EachMigration);
            let report = migrator.run(&project.migrations, None).await.context("applying the migrations")?;
            out.line(format_args!(
                "applied {} migration(s) with table prefix {:?}:",
                report.applied.len(),
                env.table_prefix
            ));
            if out.is_human() {
                for m in &report.applied {
                    print_migration(m);
                }
            }
            out.facts(serde_json::json!({ "applied": report.applied }));
        }
        out.line(format_args!("use it with: AWS_ENDPOINT_URL_DYNAMODB={} (any access key works)", server.endpoint()));
        out.line("press Ctrl-C to stop");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        out.line("stopping DynamoDB Local");
        drop(server);
        Ok(())
    }
}
