//! `iam-policy`: every call a full run makes is allowed by the policy for its resource. A
//! recording proxy in front of DynamoDB Local sees each request of `migrate` (every example
//! migration: tables, an index, TTL, a backfill over items, a rebuild with its stream replay and
//! check, a delete), `sync`, `unlock` and `recover`; and of `plan` and `status`, which the
//! read-only policy must allow. Each call's resource ARN (its table, index or stream, in the
//! policy's account and region) is checked against the policy's statements as IAM matches them.

use serde_json::Value;

use crate::environments::{cli, finished, run};
use crate::fault_proxy::FaultProxy;
use crate::support;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";

/// An environments file with `rec` on the proxy, and `prod`, the same tables in an account, for
/// the policy (no run goes there).
fn environments(prefix: &str, endpoint: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("environments-{}-{prefix}.toml", std::process::id()));
    let text = format!(
        "[rec]\nregion = \"{REGION}\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\n\n\
         [prod]\nregion = \"{REGION}\"\naccount_id = \"{ACCOUNT}\"\ntable_prefix = \"{prefix}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

// Multi-threaded: the proxy's tasks answer the child processes while this test waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_full_run_is_allowed_by_the_policy_for_its_resource() {
    let upstream = support::example_endpoint();
    let proxy = FaultProxy::start_recording(upstream).await;
    let names = support::names("iam");
    let file = environments(names.prefix(), &proxy.endpoint());
    let file = file.to_str().unwrap();
    let policy = |read_only: bool| -> Value {
        let mut args = vec!["iam-policy", "--env", "prod", "--environments", file];
        if read_only {
            args.push("--read-only");
        }
        let printed = tokio::task::block_in_place(|| run("example", &args));
        assert_eq!(printed.code, 0, "{}", printed.stderr);
        serde_json::from_str(&printed.stdout).unwrap()
    };
    let (apply, read_only) = (policy(false), policy(true));
    let cli_run = |args: &[&str]| {
        let args = [args, &["--env", "rec", "--environments", file]].concat();
        let result = tokio::task::block_in_place(|| finished(cli("example", &args, &[]).output().unwrap()));
        assert_eq!(result.code, 0, "{args:?}: {}{}", result.stdout, result.stderr);
    };

    // The first three migrations, then items for the backfill and the rebuild to move, then the
    // rest; sync, unlock and recover's look at the ledger.
    cli_run(&["migrate", "--target", "3"]);
    let client = support::example_client().await;
    for nr in 1..=20 {
        client
            .put_item()
            .table_name(names.physical("customers"))
            .item("customer_nr", aws_sdk_dynamodb::types::AttributeValue::N(nr.to_string()))
            .item("name", aws_sdk_dynamodb::types::AttributeValue::S(format!("customer {nr}")))
            .item("email", aws_sdk_dynamodb::types::AttributeValue::S(format!("C{nr}@Example.com")))
            .send()
            .await
            .unwrap();
    }
    cli_run(&["migrate"]);
    cli_run(&["sync"]);
    cli_run(&["unlock"]);
    let applying = proxy.recorded();
    cli_run(&["plan"]);
    cli_run(&["status"]);
    let reading = proxy.recorded().split_off(applying.len());

    let operations: std::collections::BTreeSet<&str> = applying.iter().map(|(o, _)| o.as_str()).collect();
    for expected in
        ["CreateTable", "UpdateTable", "UpdateTimeToLive", "UpdateItem", "BatchWriteItem", "GetRecords", "DeleteTable"]
    {
        assert!(operations.contains(expected), "the run made no {expected}: {operations:?}");
    }
    let mut refused = Vec::new();
    for (policy, calls, what) in [(&apply, &applying, "apply"), (&read_only, &reading, "read-only")] {
        let streams: Vec<String> = calls
            .iter()
            .filter(|(o, _)| o == "GetShardIterator")
            .filter_map(|(_, body)| body["StreamArn"].as_str().map(in_account))
            .collect();
        for (operation, body) in calls {
            for (action, resource) in resources(operation, body, &streams) {
                if !allowed(policy, &action, &resource) {
                    refused.push(format!("{what}: {action} on {resource}"));
                }
            }
        }
    }
    refused.sort();
    refused.dedup();
    assert_eq!(refused, Vec::<String>::new(), "calls the policy does not allow");
    // The read-only policy writes nothing, and both let the guard ask STS who is calling.
    let read_actions = actions(&read_only);
    let writes = ["Create", "Update", "Delete", "Put", "BatchWrite", "TagResource", "UntagResource"];
    for action in &read_actions {
        let name = action.strip_prefix("dynamodb:").unwrap_or(action);
        assert!(!writes.iter().any(|w| name.starts_with(w)), "the read-only policy allows {action}");
    }
    for policy in [&apply, &read_only] {
        assert!(allowed(policy, "sts:GetCallerIdentity", "*"));
    }
    // Least privilege: another prefix's tables are not covered.
    let elsewhere = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other_customers");
    assert!(!allowed(&apply, "dynamodb:DeleteTable", &elsewhere));
    support::delete_tables(&client, &names).await;
}

/// The IAM actions a call needs, each with the resource it acts on, as an ARN in the policy's
/// account and region. A transaction needs, for each of its items, the action of that item's
/// operation (IAM has no action of the transaction itself).
fn resources(operation: &str, body: &Value, streams: &[String]) -> Vec<(String, String)> {
    if let Some(items) = body["TransactItems"].as_array() {
        return items
            .iter()
            .filter_map(|item| {
                let (kind, what) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "ConditionCheck" => "ConditionCheckItem".to_owned(),
                    other => format!("{other}Item"),
                };
                let table = what["TableName"].as_str()?;
                Some((format!("dynamodb:{action}"), format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")))
            })
            .collect();
    }
    let action = format!("dynamodb:{operation}");
    call_resources(operation, body, streams).into_iter().map(|r| (action.clone(), r)).collect()
}

fn call_resources(operation: &str, body: &Value, streams: &[String]) -> Vec<String> {
    let table = |name: &str| format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}");
    if operation == "ListTables" {
        return vec!["*".to_owned()];
    }
    if let Some(stream) = body["StreamArn"].as_str() {
        return vec![in_account(stream)];
    }
    if operation == "GetRecords" {
        // The shard iterator names its stream only to DynamoDB: each stream this run read.
        return streams.to_vec();
    }
    if let Some(name) = body["TableName"].as_str() {
        return vec![match body["IndexName"].as_str() {
            Some(index) => format!("{}/index/{index}", table(name)),
            None => table(name),
        }];
    }
    if let Some(items) = body["RequestItems"].as_object() {
        return items.keys().map(|name| table(name)).collect();
    }
    if let Some(arn) = body["ResourceArn"].as_str() {
        return vec![in_account(arn)];
    }
    panic!("a {operation} call whose resource this test does not know: {body}");
}

/// An ARN of DynamoDB Local (region `ddblocal`, account 000000000000) in the policy's region
/// and account.
fn in_account(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:{}", parts[5])
}

fn actions(policy: &Value) -> Vec<String> {
    statements(policy).flat_map(|s| list(&s["Action"])).collect()
}

fn statements(policy: &Value) -> impl Iterator<Item = &Value> {
    policy["Statement"].as_array().unwrap().iter()
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        other => panic!("not a string or a list: {other}"),
    }
}

/// Whether an Allow statement of `policy` matches the action and the resource, as IAM matches
/// them: actions case-insensitively, both with the wildcards `*` and `?`.
fn allowed(policy: &Value, action: &str, resource: &str) -> bool {
    statements(policy).any(|s| {
        s["Effect"] == "Allow"
            && list(&s["Action"]).iter().any(|a| matches(&a.to_lowercase(), &action.to_lowercase()))
            && list(&s["Resource"]).iter().any(|r| matches(r, resource))
    })
}

fn matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[test]
fn the_policy_needs_an_account_and_says_how_to_get_one() {
    let file = environments("iam_refused_", "http://127.0.0.1:8000");
    let refused = run("example", &["iam-policy", "--env", "rec", "--environments", file.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("error: environment rec has no account_id, and a policy names the account's tables; give the environment its account_id in the environments file; then run `cargo xtask iam-policy --env rec --environments "),
        "{}",
        refused.stderr
    );
    let _ = std::fs::remove_file(file);
}
