//! `iam-policy`: the least-privilege IAM policy of an environment's commands.

use clap::Args;

use super::session::EnvArgs;
use super::{Failure, NextStep, Output, usage};
use crate::Project;
use crate::environment::Environments;
use crate::iam::{Access, physical_tables, policy};

/// Print the IAM policy an environment's commands need
///
/// Prints, as JSON, the least-privilege policy for migrate, sync, worker, recover, unlock and
/// baseline in the environment (which also covers plan and status): the control-plane and item
/// actions on each table the migrations create, in every version, with the environment's prefix,
/// queries on their indexes, reads of their streams (a rebuild's replay), the ledger's items, and
/// ListTables and sts:GetCallerIdentity, which IAM scopes to no table. With --read-only, the
/// policy for plan, status and rehearse: reads only. Attach it to the role environments.toml
/// names (role_arn), or to the one a CI job assumes. It is computed from the code: print it again
/// when a migration adds a table.
///
/// Example: `cargo xtask iam-policy --env prod --read-only`
#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// The read-only policy of plan, status and rehearse.
    #[arg(long)]
    read_only: bool,
}

impl IamPolicyArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        // The policy is the code's and the environment file's: nothing is asked of AWS.
        let environments = Environments::load(&self.env.environments).map_err(usage)?;
        let env = environments.get(&self.env.env).map_err(usage)?;
        let access = if self.read_only { Access::ReadOnly } else { Access::Apply };
        let document = policy(env, &project.migrations, &project.tables, access).map_err(|e| {
            usage(NextStep::new(e, format!("then run `cargo xtask iam-policy {}`", self.env.options())))
        })?;
        let tables = physical_tables(env, &project.migrations, &project.tables).map_err(Failure::work)?;
        if out.is_human() {
            println!("{}", serde_json::to_string_pretty(&document).expect("a policy is JSON"));
        } else {
            out.facts(serde_json::json!({
                "environment": env.name,
                "access": if self.read_only { "read-only" } else { "apply" },
                "tables": tables,
                "policy": document,
            }));
        }
        Ok(())
    }
}
