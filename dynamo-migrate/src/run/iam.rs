//! The IAM policies an environment's commands need, least privilege by resource.
//!
//! The tables are known from the code: every physical table any migration creates (each version
//! a rebuild makes) and the schema crate's, with the environment's prefix, and the ledger. Each
//! statement names the actions the engine calls on one kind of resource (the tables, their
//! indexes, their streams, the ledger); only `ListTables` and STS's `GetCallerIdentity` need
//! `*`, since IAM scopes neither to a resource. `tests/it/iam.rs` records every call a full run
//! makes and checks each against the policy for its resource.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::drift::SimulatedTables;
use crate::environment::Environment;
use crate::migration::Migration;
use dynamo_model::{TableSchema, physical_name};

/// What the policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `migrate`, `sync`, `worker`, `recover`, `unlock`, `baseline`, and what they read.
    Apply,
    /// `plan`, `status` and `rehearse`: reads only.
    ReadOnly,
}

/// Control-plane and data-plane actions on the migrations' tables.
const TABLE_ACTIONS: &[&str] = &[
    "dynamodb:CreateTable",
    "dynamodb:UpdateTable",
    "dynamodb:DeleteTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:TagResource",
    "dynamodb:UntagResource",
    "dynamodb:ListTagsOfResource",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
];
/// What `plan`, `status` and `rehearse` read of the tables (rehearse samples their items).
const TABLE_READS: &[&str] = &[
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:ListTagsOfResource",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
];
/// The ledger: created on first use, then items (records, the lock, checkpoints, leases).
const LEDGER_ACTIONS: &[&str] = &[
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
];
const LEDGER_READS: &[&str] = &["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"];
/// A rebuild's replay reads the old table's stream.
const STREAM_ACTIONS: &[&str] = &["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"];
/// Actions IAM does not scope to a table.
const ANYWHERE: &[&str] = &["dynamodb:ListTables", "sts:GetCallerIdentity"];

/// Why no policy can be written for an environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The environment names no account, and a policy's ARNs need one.
    #[error(
        "environment {env} has no account_id, and a policy names the account's tables; give the environment its account_id in the environments file"
    )]
    NoAccount {
        /// The environment's name.
        env: String,
    },
    /// The migrations cannot be followed from empty (a step on a table that does not exist, …),
    /// so their tables are not known.
    #[error("the migrations cannot be simulated to find their tables: {0}")]
    Plan(#[from] crate::planner::PlanError),
}

/// Every physical table the code can make in `env`: each version of each table any migration
/// creates, and the schema crate's tables; sorted.
pub fn physical_tables(
    env: &Environment,
    migrations: &[Migration],
    tables: &[TableSchema],
) -> Result<Vec<String>, PolicyError> {
    let mut names = BTreeSet::new();
    let mut simulation = SimulatedTables::default();
    for step in migrations.iter().flat_map(|m| &m.steps) {
        simulation.apply(step)?;
        names.extend(simulation.tables().iter().map(|t| physical_name(&env.table_prefix, &t.name, t.version)));
    }
    names.extend(tables.iter().map(|t| t.def.physical_name(&env.table_prefix)));
    Ok(names.into_iter().collect())
}

/// The IAM policy document for `access` in `env`.
pub fn policy(
    env: &Environment,
    migrations: &[Migration],
    tables: &[TableSchema],
    access: Access,
) -> Result<Value, PolicyError> {
    let account = env.account_id.as_deref().ok_or_else(|| PolicyError::NoAccount { env: env.name.clone() })?;
    let prefix = format!("arn:{}:dynamodb:{}:{account}:table/", partition(&env.region), env.region);
    let physical = physical_tables(env, migrations, tables)?;
    let arns = |suffix: &str| -> Vec<String> { physical.iter().map(|t| format!("{prefix}{t}{suffix}")).collect() };
    let ledger = format!("{prefix}{}", env.names().ledger());
    let (table_actions, ledger_actions) = match access {
        Access::Apply => (TABLE_ACTIONS, LEDGER_ACTIONS),
        Access::ReadOnly => (TABLE_READS, LEDGER_READS),
    };
    let statement = |sid: &str, actions: &[&str], resources: Value| json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources });
    let mut statements = vec![
        statement("Tables", table_actions, json!(arns(""))),
        statement("Indexes", &["dynamodb:Query", "dynamodb:Scan"], json!(arns("/index/*"))),
    ];
    // plan and status read a rebuild's progress from the ledger, not from the stream.
    if access == Access::Apply {
        statements.push(statement("Streams", STREAM_ACTIONS, json!(arns("/stream/*"))));
    }
    statements.push(statement("Ledger", ledger_actions, json!([ledger])));
    statements.push(statement("Anywhere", ANYWHERE, json!("*")));
    // `migrate --workers batch` submits the environment's array job of workers and follows it.
    if access == Access::Apply
        && let Some(workers) = &env.workers
        && let (Some(queue), Some(definition)) = (&workers.job_queue, &workers.job_definition)
    {
        let batch = format!("arn:{}:batch:{}:{account}:", partition(&env.region), env.region);
        let queue = if queue.starts_with("arn:") { queue.clone() } else { format!("{batch}job-queue/{queue}") };
        // A definition named without a revision is submitted at its latest one, whichever that is.
        let definition = match definition {
            d if d.starts_with("arn:") => d.clone(),
            d if d.contains(':') => format!("{batch}job-definition/{d}"),
            d => format!("{batch}job-definition/{d}:*"),
        };
        statements.push(statement("WorkersSubmit", &["batch:SubmitJob"], json!([queue, definition])));
        // IAM scopes DescribeJobs to no resource.
        statements.push(statement("WorkersFollow", &["batch:DescribeJobs"], json!("*")));
    }
    Ok(json!({ "Version": "2012-10-17", "Statement": statements }))
}

/// The ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(workers: &str) -> Environment {
        let text = format!(
            "[prod]\nregion = \"eu-west-1\"\naccount_id = \"123456789012\"\ntable_prefix = \"prod_\"\n{workers}"
        );
        let all = crate::environment::Environments::parse(std::path::Path::new("environments.toml"), &text).unwrap();
        all.get("prod").unwrap().clone()
    }

    fn sids(policy: &Value) -> Vec<&str> {
        policy["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect()
    }

    #[test]
    fn an_environment_with_a_batch_queue_may_submit_its_workers_there_and_nowhere_else() {
        let env = environment("[prod.workers]\njob_queue = \"workers\"\njob_definition = \"runner\"\n");
        let apply = policy(&env, &[], &[], Access::Apply).unwrap();
        let submit = apply["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "WorkersSubmit").unwrap();
        assert_eq!(submit["Action"], json!(["batch:SubmitJob"]));
        assert_eq!(
            submit["Resource"],
            json!([
                "arn:aws:batch:eu-west-1:123456789012:job-queue/workers",
                "arn:aws:batch:eu-west-1:123456789012:job-definition/runner:*"
            ])
        );
        assert!(sids(&apply).contains(&"WorkersFollow"));
        // Reads never submit; an environment without a queue has no Batch statement.
        let read = policy(&env, &[], &[], Access::ReadOnly).unwrap();
        assert!(!sids(&read).iter().any(|s| s.starts_with("Workers")), "{read}");
        let alone = policy(&environment(""), &[], &[], Access::Apply).unwrap();
        assert!(!sids(&alone).iter().any(|s| s.starts_with("Workers")), "{alone}");
        // A definition with its revision, or either as an ARN, is taken as written.
        let pinned = environment(
            "[prod.workers]\njob_queue = \"arn:aws:batch:eu-west-1:123456789012:job-queue/q\"\njob_definition = \"runner:7\"\n",
        );
        let pinned = policy(&pinned, &[], &[], Access::Apply).unwrap();
        let submit = pinned["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "WorkersSubmit").unwrap();
        assert_eq!(
            submit["Resource"],
            json!([
                "arn:aws:batch:eu-west-1:123456789012:job-queue/q",
                "arn:aws:batch:eu-west-1:123456789012:job-definition/runner:7"
            ])
        );
    }

    #[test]
    fn regions_name_their_partition() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
