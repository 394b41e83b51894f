//! The IAM policies an environment's commands need, least privilege by resource.
//!
//! The tables are known from the code: every physical table any migration creates (each version
//! a rebuild makes) and the schema crate's, with the environment's prefix, and the ledger. Each
//! statement names the actions the engine calls on one kind of resource (the tables, their
//! indexes, their streams, the ledger); only `ListTables` and STS's `GetCallerIdentity` need
//! `*`, since IAM scopes neither to a resource. `tests/it/iam.rs` records every call a full run
//! makes and checks each against the policy for its resource.
//!
//! An environment with `[<env>.exports]` also gets what a rebuild through Export to S3 and
//! Import from S3 calls (`data::rebuild::export::path`): the export of the old table and the
//! import creating the new one (both among the tables above), the import's CloudWatch log group,
//! and the objects under the bucket's prefix, which DynamoDB writes and reads with the caller's
//! permissions.

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
/// An export rebuild on the tables: whether the old one has point-in-time recovery, its export,
/// and the import that creates the new one.
const EXPORT_TABLE_ACTIONS: &[&str] = &[
    "dynamodb:ExportTableToPointInTime",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:ImportTable",
    "dynamodb:DescribeImport",
];
/// What AWS documents an import needs of CloudWatch Logs (its log group, `/aws-dynamodb/...`).
const IMPORT_LOG_ACTIONS: &[&str] = &[
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
];
/// The objects of an export rebuild: the export's files (written by DynamoDB with the caller's
/// permissions, which AWS documents as these four), and the transformed parts (written by the
/// engine, read by the import).
const EXPORT_OBJECT_ACTIONS: &[&str] =
    &["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectAcl"];

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
    // A rebuild through Export to S3 and Import from S3 (`migrate` only), in the environment's
    // bucket and under its prefix.
    if access == Access::Apply
        && let Some(exports) = &env.exports
    {
        let partition = partition(&env.region);
        // ImportTable and DescribeImport take the table or its import (`…/import/<id>`).
        let imports: Vec<String> = arns("").into_iter().chain(arns("/import/*")).collect();
        statements.push(statement("ExportsTables", EXPORT_TABLE_ACTIONS, json!(arns(""))));
        statements.push(statement("ExportsExports", &["dynamodb:DescribeExport"], json!(arns("/export/*"))));
        statements.push(statement(
            "ExportsImports",
            &["dynamodb:ImportTable", "dynamodb:DescribeImport"],
            json!(imports),
        ));
        let logs = format!("arn:{partition}:logs:{}:{account}:log-group:/aws-dynamodb/*", env.region);
        statements.push(statement("ExportsImportLogs", IMPORT_LOG_ACTIONS, json!([logs])));
        // Every rebuild's folder is `<prefix>/<table>/m<version>-step<step>` (the prefix may be empty).
        let keys = match exports.prefix_or_default(&env.table_prefix) {
            prefix if prefix.is_empty() => "*".to_owned(),
            prefix => format!("{prefix}/*"),
        };
        let bucket = format!("arn:{partition}:s3:::{}", exports.bucket);
        statements.push(statement("ExportsObjects", EXPORT_OBJECT_ACTIONS, json!([format!("{bucket}/{keys}")])));
        let mut list = statement("ExportsList", &["s3:ListBucket"], json!([bucket]));
        list["Condition"] = json!({ "StringLike": { "s3:prefix": [keys] } });
        statements.push(list);
        // SSE-KMS: the export and the parts are encrypted with the key (a data key each), and
        // reading them back (the transform, the check, the import) decrypts.
        if let Some(key) = &exports.kms_key {
            statements.push(statement("ExportsKms", &["kms:GenerateDataKey", "kms:Decrypt"], json!([key])));
        }
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

    fn find<'a>(policy: &'a Value, sid: &str) -> &'a Value {
        let statements = policy["Statement"].as_array().unwrap();
        statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid} in {policy}"))
    }

    #[test]
    fn an_environment_with_exports_may_export_import_and_use_its_prefix_and_nothing_else() {
        use crate::migration::RebuildStep;
        use dynamo_model::{KeyAttr, TableDef};
        let migrations = vec![
            Migration::new(1, "create_customers", "1").create_table(TableDef::new("customers", KeyAttr::n("nr"))),
            Migration::new(2, "rekey_customers", "2").rebuild_table(
                RebuildStep::copy(TableDef::new("customers", KeyAttr::n("nr")).version(2).sort_key(KeyAttr::s("kind")))
                    .via_export(),
            ),
        ];
        let env = environment("[prod.exports]\nbucket = \"acme-exports\"\nprefix = \"/rebuilds/prod/\"\n");
        let apply = policy(&env, &migrations, &[], Access::Apply).unwrap();
        let exports: Vec<&str> = sids(&apply).into_iter().filter(|s| s.starts_with("Exports")).collect();
        assert_eq!(
            exports,
            ["ExportsTables", "ExportsExports", "ExportsImports", "ExportsImportLogs", "ExportsObjects", "ExportsList"]
        );
        let old = "arn:aws:dynamodb:eu-west-1:123456789012:table/prod_customers";
        let new = "arn:aws:dynamodb:eu-west-1:123456789012:table/prod_customers_v2";
        assert_eq!(
            find(&apply, "ExportsTables"),
            &json!({
                "Sid": "ExportsTables",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:ExportTableToPointInTime",
                    "dynamodb:DescribeContinuousBackups",
                    "dynamodb:ImportTable",
                    "dynamodb:DescribeImport"
                ],
                "Resource": [old, new]
            })
        );
        assert_eq!(
            find(&apply, "ExportsExports"),
            &json!({
                "Sid": "ExportsExports",
                "Effect": "Allow",
                "Action": ["dynamodb:DescribeExport"],
                "Resource": [format!("{old}/export/*"), format!("{new}/export/*")]
            })
        );
        assert_eq!(
            find(&apply, "ExportsImports"),
            &json!({
                "Sid": "ExportsImports",
                "Effect": "Allow",
                "Action": ["dynamodb:ImportTable", "dynamodb:DescribeImport"],
                "Resource": [old, new, format!("{old}/import/*"), format!("{new}/import/*")]
            })
        );
        assert_eq!(
            find(&apply, "ExportsImportLogs"),
            &json!({
                "Sid": "ExportsImportLogs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogGroups",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                    "logs:PutRetentionPolicy"
                ],
                "Resource": ["arn:aws:logs:eu-west-1:123456789012:log-group:/aws-dynamodb/*"]
            })
        );
        assert_eq!(
            find(&apply, "ExportsObjects"),
            &json!({
                "Sid": "ExportsObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectAcl"],
                "Resource": ["arn:aws:s3:::acme-exports/rebuilds/prod/*"]
            })
        );
        assert_eq!(
            find(&apply, "ExportsList"),
            &json!({
                "Sid": "ExportsList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": ["arn:aws:s3:::acme-exports"],
                "Condition": { "StringLike": { "s3:prefix": ["rebuilds/prod/*"] } }
            })
        );
        // Without a prefix, the environment's default one (dynamo-migrate/<table prefix>).
        let default =
            policy(&environment("[prod.exports]\nbucket = \"acme-exports\"\n"), &migrations, &[], Access::Apply)
                .unwrap();
        assert_eq!(
            find(&default, "ExportsObjects")["Resource"],
            json!(["arn:aws:s3:::acme-exports/dynamo-migrate/prod/*"])
        );
        assert_eq!(
            find(&default, "ExportsList")["Condition"]["StringLike"]["s3:prefix"],
            json!(["dynamo-migrate/prod/*"])
        );
        assert!(!sids(&apply).contains(&"ExportsKms"), "no key, no KMS statement: {apply}");
        // With a KMS key, its use on that key alone; nothing else changes.
        let key = "arn:aws:kms:eu-west-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let kms = environment(&format!(
            "[prod.exports]\nbucket = \"acme-exports\"\nprefix = \"/rebuilds/prod/\"\nkms_key = \"{key}\"\nbucket_owner = \"210987654321\"\n"
        ));
        let encrypted = policy(&kms, &migrations, &[], Access::Apply).unwrap();
        assert_eq!(
            find(&encrypted, "ExportsKms"),
            &json!({
                "Sid": "ExportsKms",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": [key]
            })
        );
        let mut without_kms = encrypted.clone();
        without_kms["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != "ExportsKms");
        assert_eq!(without_kms, apply);
        // Nothing else changes; reads never export, and an environment without [exports] gets none of it.
        let alone = policy(&environment(""), &migrations, &[], Access::Apply).unwrap();
        let mut rest = apply.clone();
        rest["Statement"].as_array_mut().unwrap().retain(|s| !s["Sid"].as_str().unwrap().starts_with("Exports"));
        assert_eq!(rest, alone);
        assert!(!sids(&alone).iter().any(|s| s.starts_with("Exports")), "{alone}");
        let read = policy(&env, &migrations, &[], Access::ReadOnly).unwrap();
        assert!(!sids(&read).iter().any(|s| s.starts_with("Exports")), "{read}");
        assert_eq!(read, policy(&environment(""), &migrations, &[], Access::ReadOnly).unwrap());
    }

    #[test]
    fn regions_name_their_partition() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
