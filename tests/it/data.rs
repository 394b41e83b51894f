//! Data steps against DynamoDB Local: exact results, faults through a real proxy, a crash and
//! resume, Ctrl-C, fidelity of every DynamoDB type, and every kind of bad input named by key.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::data::{canonical_item, canonical_number};
use dynamo_migrate::run::{LockOptions, Migrator, Status, TableNames};
use dynamo_migrate::{Change, DataContext, DataError, Error, KeyAttr, Migration, RateLimit, RebuildStep, TableDef};
use serde::{Deserialize, Serialize};

use crate::fault_proxy::{FaultProxy, Faults};
use crate::support::{self, Item, content_hash, create_table, expected_hash};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    id: String,
    owner: String,
    balance: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
}

fn account(i: u64) -> Account {
    Account {
        id: format!("acct-{i:06}"),
        owner: format!("Owner {}", i % 97),
        balance: (i as i64 * 37) % 10_000 - 500,
        tier: None,
    }
}

fn item(a: &Account) -> Item {
    serde_dynamo::to_item(a).unwrap()
}

/// The backfill under test: a tier from the balance; already-tiered accounts are left alone.
fn tiered(mut a: Account) -> Option<Account> {
    if a.tier.is_some() {
        return None;
    }
    a.tier = Some(
        if a.balance < 0 {
            "overdrawn"
        } else if a.balance > 5_000 {
            "gold"
        } else {
            "standard"
        }
        .to_owned(),
    );
    Some(a)
}

async fn filled(client: &Client, names: &TableNames, table: &str, n: u64) -> Vec<Item> {
    create_table(client, &names.physical(table), false).await;
    let items: Vec<Item> = (0..n).map(|i| item(&account(i))).collect();
    DataContext::new(client.clone(), names.clone()).put_items(table, items.clone()).await.unwrap();
    items
}

#[tokio::test]
async fn a_typed_backfill_in_place_gives_exactly_the_expected_content() {
    let (client, names) = (support::client().await, support::names("backfill"));
    filled(&client, &names, "accounts", 3_000).await;
    let ctx = DataContext::new(client.clone(), names.clone());
    let report = ctx.backfill("accounts", tiered).await.unwrap();
    assert_eq!((report.scanned, report.written, report.unchanged, report.failed), (3_000, 3_000, 0, 0));
    let expected: Vec<Item> = (0..3_000).map(|i| item(&tiered(account(i)).unwrap())).collect();
    assert_eq!(content_hash(&client, &names.physical("accounts")).await, expected_hash(&expected));

    // Run again: every item is tiered already, so nothing is written.
    let again = ctx.backfill("accounts", tiered).await.unwrap();
    assert_eq!((again.scanned, again.written, again.unchanged), (3_000, 0, 3_000));
}

#[tokio::test]
async fn delete_where_and_none_deletes_remove_exactly_the_chosen_items() {
    let (client, names) = (support::client().await, support::names("delete"));
    filled(&client, &names, "accounts", 1_000).await;
    let ctx = DataContext::new(client.clone(), names.clone());
    let report = ctx.pass("accounts").delete_where(|a: &Account| a.balance < 0).await.unwrap();
    let kept: Vec<Item> = (0..1_000).map(account).filter(|a| a.balance >= 0).map(|a| item(&a)).collect();
    assert_eq!(report.deleted, 1_000 - kept.len() as u64);
    assert_eq!(content_hash(&client, &names.physical("accounts")).await, expected_hash(&kept));

    let report =
        ctx.pass("accounts").none_deletes().transform(|a: Account| (a.balance > 5_000).then_some(a)).await.unwrap();
    let rich: Vec<Item> = (0..1_000).map(account).filter(|a| a.balance > 5_000).map(|a| item(&a)).collect();
    // The rich are kept as they are, so nothing is written for them: in place only changes are.
    assert_eq!((report.written, report.unchanged), (0, rich.len() as u64));
    assert_eq!(report.deleted, kept.len() as u64 - rich.len() as u64);
    assert_eq!(content_hash(&client, &names.physical("accounts")).await, expected_hash(&rich));
}

#[tokio::test]
async fn a_copy_completes_exactly_through_throttling_server_errors_and_dropped_connections() {
    let (client, names) = (support::client().await, support::names("faults"));
    let source = filled(&client, &names, "accounts", 20_000).await;
    create_table(&client, &names.physical("copy"), false).await;
    let faults = Faults { throttle: 0.08, server_error: 0.04, drop: 0.03 };
    let proxy = FaultProxy::start(support::endpoint(), faults, &["BatchWriteItem", "Scan"]).await;
    let faulty = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await;
    let ctx = DataContext::new(faulty, names.clone());
    let report = ctx.pass("accounts").into_table("copy").copy().await.unwrap();
    assert_eq!((report.scanned, report.written), (20_000, 20_000));
    let stats = proxy.stats();
    let injected = stats.throttled + stats.server_errors + stats.dropped;
    assert!(injected * 10 >= stats.forwarded + injected, "at least 10% of the requests failed: {stats:?}");
    assert_eq!(content_hash(&client, &names.physical("copy")).await, expected_hash(&source));
}

#[tokio::test]
async fn an_in_place_backfill_completes_exactly_through_throttling_server_errors_and_dropped_connections() {
    let (client, names) = (support::client().await, support::names("faults_in_place"));
    filled(&client, &names, "accounts", 5_000).await;
    let faults = Faults { throttle: 0.10, server_error: 0.04, drop: 0.03 };
    let proxy = FaultProxy::start(support::endpoint(), faults, &["UpdateItem", "Scan"]).await;
    let faulty = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await;
    let report = DataContext::new(faulty, names.clone()).backfill("accounts", tiered).await.unwrap();
    assert_eq!((report.scanned, report.written, report.failed), (5_000, 5_000, 0));
    let stats = proxy.stats();
    assert!(stats.throttled > 0 && stats.server_errors > 0 && stats.dropped > 0, "{stats:?}");
    let expected: Vec<Item> = (0..5_000).map(|i| item(&tiered(account(i)).unwrap())).collect();
    assert_eq!(content_hash(&client, &names.physical("accounts")).await, expected_hash(&expected));
}

#[tokio::test]
async fn bad_items_are_named_by_key() {
    let (client, names) = (support::client().await, support::names("bad"));
    filled(&client, &names, "accounts", 200).await;
    let ctx = DataContext::new(client.clone(), names.clone());
    let physical = names.physical("accounts");
    let item_error = |e: DataError| match e {
        DataError::Item { table, key, error } => (table, key, error),
        other => panic!("expected an item error, got {other}"),
    };

    // A transform that drops a key attribute.
    #[derive(Serialize, Deserialize)]
    struct NoId {
        owner: String,
    }
    let e = ctx.pass("accounts").transform(|a: Account| Some(NoId { owner: a.owner })).await.unwrap_err();
    let (table, key, error) = item_error(e);
    assert_eq!(table, physical);
    assert!(key.starts_with("{id: \"acct-"), "{key}");
    assert_eq!(error, "the transform dropped key attribute id; in place, the new item keeps the key it was read with");

    // An item that does not read as the input type.
    #[derive(Serialize, Deserialize)]
    struct Wrong {
        id: String,
        balance: String,
    }
    let e = ctx.pass("accounts").transform(|w: Wrong| Some(w)).await.unwrap_err();
    let (_, key, error) = item_error(e);
    assert!(key.starts_with("{id: \"acct-"), "{key}");
    assert!(error.starts_with("attribute balance: a number (N) does not read as the step's input type"), "{error}");

    // An item that grows past 400 KB.
    let e = ctx
        .pass("accounts")
        .transform(|mut a: Account| {
            if a.id == "acct-000042" {
                a.owner = "x".repeat(410 * 1024);
            }
            Some(a)
        })
        .await
        .unwrap_err();
    let (_, key, error) = item_error(e);
    assert_eq!(key, "{id: \"acct-000042\"}");
    assert!(error.contains("size"), "{error}");

    // A target table that does not exist.
    let e = ctx.pass("accounts").into_table("nowhere").copy().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the target table {} does not exist; create it in an earlier step", names.physical("nowhere"))
    );

    // A number the input type would round.
    client
        .put_item()
        .table_name(&physical)
        .item("id", AttributeValue::S("precise".into()))
        .item("owner", AttributeValue::S("p".into()))
        .item("balance", AttributeValue::N("1".into()))
        .item("rate", AttributeValue::N("0.12345678901234567890123456789".into()))
        .send()
        .await
        .unwrap();
    #[derive(Serialize, Deserialize)]
    struct WithRate {
        id: String,
        #[serde(default)]
        rate: Option<f64>,
    }
    let e = ctx.pass("accounts").transform(|_: WithRate| None::<WithRate>).await.unwrap_err();
    let (_, key, error) = item_error(e);
    assert_eq!(key, "{id: \"precise\"}");
    assert!(
        error.starts_with(
            "attribute rate: the number 0.12345678901234567890123456789 would be written back as 0.12345678901234568"
        ),
        "{error}"
    );

    // Nothing was written by any of the failed passes.
    let expected: Vec<Item> = (0..200).map(|i| item(&account(i))).collect();
    client.delete_item().table_name(&physical).key("id", AttributeValue::S("precise".into())).send().await.unwrap();
    assert_eq!(content_hash(&client, &physical).await, expected_hash(&expected));
}

#[tokio::test]
async fn failed_items_go_to_the_dead_letter_file_when_the_step_says_so() {
    let (client, names) = (support::client().await, support::names("dead"));
    filled(&client, &names, "accounts", 500).await;
    let path = std::env::temp_dir().join(format!("dead-letters-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let ctx = DataContext::new(client.clone(), names.clone());
    let unlucky = |item: Item| match item.get("id") {
        Some(AttributeValue::S(id)) if id.ends_with('7') => Err(format!("{id} is unlucky")),
        _ => Ok(Change::Keep),
    };
    // By default a failed item fails the step, after the pass has kept every one in the file.
    let failed = ctx.pass("accounts").dead_letter(&path).raw(unlucky).await.unwrap_err();
    assert!(
        failed.to_string().starts_with(&format!(
            "pass over {}: 50 of 500 item(s) failed, and the step accepts none; they are in the dead-letter file {}. The step is failed",
            names.physical("accounts"),
            path.display()
        )),
        "{failed}"
    );
    // Accepting failures without a file to keep them in is refused before anything is read.
    let refused = ctx.pass("accounts").max_failed_items(50).raw(unlucky).await.unwrap_err();
    assert!(refused.to_string().contains("names no dead-letter file to keep them in"), "{refused}");
    let _ = std::fs::remove_file(&path);
    let report = ctx.pass("accounts").dead_letter(&path).max_failed_items(50).raw(unlucky).await.unwrap();
    assert_eq!((report.scanned, report.failed, report.unchanged), (500, 50, 450));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 50);
    let line = lines.iter().find(|l| l["key"]["id"]["S"] == "acct-000007").expect("acct-000007 is there");
    assert_eq!(line["error"], "acct-000007 is unlucky");
    assert_eq!(line["table"], names.physical("accounts"));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_capacity_rate_limit_needs_a_provisioned_table() {
    let (client, names) = (support::client().await, support::names("rate"));
    filled(&client, &names, "accounts", 10).await;
    let ctx = DataContext::new(client.clone(), names.clone());
    let e = ctx.pass("accounts").rate(RateLimit::WriteCapacityShare(0.5)).copy().await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("table {}: cannot rate-limit: the table is on demand", names.physical("accounts"))),
        "{e}"
    );
    let report = ctx
        .pass("accounts")
        .rate(RateLimit::ItemsPerSecond(1_000.0))
        .raw(|mut item| {
            item.insert("rated".to_owned(), AttributeValue::Bool(true));
            Ok(Change::Put(item))
        })
        .await
        .unwrap();
    assert_eq!(report.written, 10);

    // A rate that is not a positive number is refused before anything is read.
    for bad in
        [RateLimit::ItemsPerSecond(0.0), RateLimit::ItemsPerSecond(f64::NAN), RateLimit::WriteCapacityShare(-1.0)]
    {
        let e = ctx.pass("accounts").rate(bad).copy().await.unwrap_err();
        assert!(matches!(e, DataError::Options { .. }), "{e}");
        assert!(e.to_string().contains("must be"), "{e}");
    }
}

/// Every DynamoDB type and the edges of what it stores.
fn awkward_items() -> Vec<Item> {
    let mut items = Vec::new();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: &str| AttributeValue::N(v.to_owned());
    let mut every: Item = HashMap::new();
    every.insert("id".into(), s("every-type"));
    every.insert("s".into(), s("text"));
    every.insert("empty".into(), s(""));
    every.insert("n38".into(), n("12345678901234567890123456789012345678"));
    every.insert("tiny".into(), n("1E-130"));
    every.insert("huge".into(), n("9.9999999999999999999999999999999999999E+125"));
    every.insert("negative".into(), n("-0.000000000000000000000000000000000001"));
    every.insert("b".into(), AttributeValue::B(Blob::new(vec![0u8, 1, 0, 255, 0])));
    every.insert("empty_b".into(), AttributeValue::B(Blob::new(Vec::new())));
    every.insert("yes".into(), AttributeValue::Bool(true));
    every.insert("nothing".into(), AttributeValue::Null(true));
    every.insert("ss".into(), AttributeValue::Ss(vec!["a".into(), "b".into(), "ü".into()]));
    every.insert("ns".into(), AttributeValue::Ns(vec!["1".into(), "1E+100".into(), "-3.5".into()]));
    every.insert("bs".into(), AttributeValue::Bs(vec![Blob::new(vec![0u8]), Blob::new(vec![1u8, 2])]));
    every.insert(
        "l".into(),
        AttributeValue::L(vec![s("x"), n("1"), AttributeValue::Null(true), AttributeValue::L(vec![])]),
    );
    every.insert(
        "m".into(),
        AttributeValue::M(
            [("inner".to_owned(), s("v")), ("empty".to_owned(), AttributeValue::M(HashMap::new()))].into(),
        ),
    );
    // Names that are reserved words, hold dots, spaces, or are not ASCII.
    for name in ["status", "size", "a.b.c", "with space", "日本語", "émoji🙂", "#hash", ":colon"] {
        every.insert(name.into(), s(name));
    }
    items.push(every);

    // Maps nested 31 deep under the item.
    let mut nested = s("bottom");
    for depth in 0..31 {
        nested = AttributeValue::M([(format!("level{depth}"), nested)].into());
    }
    items.push([("id".to_owned(), s("nested")), ("deep".to_owned(), nested)].into());

    // An item right at 400 KB: 2 + 7 bytes of key, 4 of name, and the rest binary.
    let blob = vec![0xA5u8; 400 * 1024 - 2 - 7 - 4];
    items.push([("id".to_owned(), s("big-400")), ("blob".to_owned(), AttributeValue::B(Blob::new(blob)))].into());
    items
}

/// Canonical DynamoDB JSON with every number in canonical form, so that `1E-130` and
/// `0.000…01` compare equal.
fn numbers_canonical(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let number = |v: &Value| Value::String(format!("{:?}", canonical_number(v.as_str().unwrap()).unwrap()));
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("N", v) => (k, number(&v)),
                    ("NS", Value::Array(ns)) => {
                        let mut ns: Vec<Value> = ns.iter().map(number).collect();
                        ns.sort_by_key(ToString::to_string);
                        (k, Value::Array(ns))
                    }
                    (_, v) => (k, numbers_canonical(v)),
                })
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.into_iter().map(numbers_canonical).collect()),
        other => other,
    }
}

#[tokio::test]
async fn a_rebuild_without_a_transform_keeps_every_item_exactly() {
    let (client, names) = (support::client().await, support::names("fidelity"));
    let physical = names.physical("odd");
    create_table(&client, &physical, false).await;
    let items = awkward_items();
    for item in &items {
        client.put_item().table_name(&physical).set_item(Some(item.clone())).send().await.expect("DynamoDB takes it");
    }
    // DynamoDB stores each of them as written (it writes numbers out in plain decimals).
    for item in &items {
        let stored = client.get_item().table_name(&physical).key("id", item["id"].clone()).send().await.unwrap();
        assert_eq!(numbers_canonical(canonical_item(&stored.item.unwrap())), numbers_canonical(canonical_item(item)));
    }
    let before = content_hash(&client, &physical).await;

    let migrations = vec![
        Migration::new(1, "create_odd", "create").create_table(TableDef::new("odd", KeyAttr::s("id"))),
        Migration::new(2, "rebuild_odd", "rebuild")
            .rebuild_table(RebuildStep::copy(TableDef::new("odd", KeyAttr::s("id")).version(2))),
    ];
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_streams(support::streams().await);
    let report = migrator.run(&migrations, None).await.unwrap();
    assert_eq!(report.applied[1].steps[0].data.unwrap().written, items.len() as u64);
    let after = content_hash(&client, &names.physical_version("odd", 2)).await;
    assert_eq!(after, before);
}

const CRASH_CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_CRASH_PREFIX";

fn slow_copy_migrations() -> Vec<Migration> {
    vec![Migration::new(1, "copy_accounts", "copy accounts slowly").data(support::slow_copy_step())]
}

/// Not a test of its own: the body of the child process that `a_killed_copy_resumes_from_its_checkpoints`
/// starts (this binary again, with environment variables) and kills with SIGKILL.
#[tokio::test]
async fn child_process_running_a_slow_copy() {
    let Ok(prefix) = std::env::var(CRASH_CHILD_ENV) else { return };
    // A short lease, so that the parent need not wait long for the dead child's lock.
    let lock = LockOptions { lease: Duration::from_secs(3), ..LockOptions::new("crash child") };
    let migrator = Migrator::new(support::client().await, TableNames::new(prefix), true, "crash child").with_lock(lock);
    migrator.run(&slow_copy_migrations(), None).await.unwrap();
}

#[tokio::test]
async fn a_killed_copy_resumes_from_its_checkpoints() {
    let (client, names) = (support::client().await, support::names("crash"));
    let source = filled(&client, &names, "accounts", 20_000).await;
    create_table(&client, &names.physical("copy"), false).await;

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "data::child_process_running_a_slow_copy", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, names.prefix())
        .env(support::ENDPOINT_ENV, support::endpoint())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some segments have checkpoints, long before the copy can be done.
    let ledger = Migrator::new(client.clone(), names.clone(), true, "test").ledger();
    let mut waited = Duration::ZERO;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
        assert!(waited < Duration::from_secs(60), "the child made no checkpoint");
        let copied = client
            .scan()
            .table_name(names.physical("copy"))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .send()
            .await;
        if copied.is_ok_and(|c| c.count() > 3_000) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The next run finds the migration running and says how to recover.
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test");
    let refused = migrator.run(&slow_copy_migrations(), None).await.unwrap_err();
    assert!(refused.error.to_string().contains("migration 1 (copy_accounts) is running since"), "{}", refused.error);

    support::rerun(&ledger, &slow_copy_migrations(), 1).await;
    let report = migrator.run(&slow_copy_migrations(), None).await.unwrap();
    let resumed = &report.applied[0];
    assert!(resumed.resumed);
    let data = resumed.steps[0].data.unwrap();
    // The counts include what the killed run did before its last checkpoints, and this run
    // scanned only the rest again.
    assert_eq!(data.scanned, 20_000);
    assert!(data.resumed > 0, "{data:?}");
    assert!(data.scanned - data.resumed < 20_000);
    assert_eq!(content_hash(&client, &names.physical("copy")).await, expected_hash(&source));
    let record = &ledger.records().await.unwrap()[0];
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.recovered_by.as_deref(), Some("the test"));
}

#[tokio::test]
async fn ctrl_c_stops_at_a_checkpoint_and_the_next_run_resumes() {
    let (client, names) = (support::client().await, support::names("interrupt"));
    let source = filled(&client, &names, "accounts", 20_000).await;
    create_table(&client, &names.physical("copy"), false).await;
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_cancel(cancelled);
    let run = tokio::spawn({
        let migrator = migrator.clone();
        async move { migrator.run(&slow_copy_migrations(), None).await }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cancel.send(true).unwrap();
    let failure = run.await.unwrap().unwrap_err();
    assert!(matches!(failure.error, Error::Step { .. }) && failure.error.is_interrupted(), "{}", failure.error);
    assert!(failure.error.to_string().contains("the checkpoints are kept, run again to resume"), "{}", failure.error);
    let ledger = migrator.ledger();
    assert_eq!(ledger.records().await.unwrap()[0].status, Status::Interrupted);

    let migrator = Migrator::new(client.clone(), names.clone(), true, "test");
    let report = migrator.run(&slow_copy_migrations(), None).await.unwrap();
    assert!(report.applied[0].resumed);
    assert_eq!(content_hash(&client, &names.physical("copy")).await, expected_hash(&source));
}
