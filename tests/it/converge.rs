//! Rebuilds that prove themselves: the convergence check finds what differs between a new table
//! and the transform of the old one, repairs it before the new version becomes current, reports
//! it before the old version is deleted, and survives dropped connections; a rebuild whose items
//! fail is a failed rebuild unless it says how many failures it accepts, and each failed item is
//! kept once in its dead-letter file.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::data::{ReplayStore, SyncCheck, rebuild_states};
use dynamo_migrate::run::{Migrator, Status, TableNames};
use dynamo_migrate::{DataContext, Destructive, KeyAttr, Migration, RebuildStep, TableDef};
use serde::{Deserialize, Serialize};

use crate::app_writer::{AppWriter, WriterOptions, customer, summary};
use crate::environments::{Envs, run};
use crate::fault_proxy::{FaultProxy, Faults, Tamper};
use crate::support::{self, Item, content_hash, expected_hash};

#[derive(Serialize, Deserialize)]
struct Before {
    customer_nr: u64,
    name: String,
    email: String,
}

#[derive(Serialize)]
struct Profile {
    customer_nr: u64,
    record: &'static str,
    name: String,
    email_lower: String,
}

fn profile(before: Before) -> Option<Profile> {
    Some(Profile {
        customer_nr: before.customer_nr,
        record: "profile",
        name: before.name,
        email_lower: before.email.trim().to_lowercase(),
    })
}

/// The same conversion over a raw item, written independently of the typed one; `None` for an
/// item the typed read refuses (an email that is not a string).
fn converted(item: &Item) -> Option<Item> {
    let AttributeValue::S(email) = &item["email"] else { return None };
    Some(Item::from([
        ("customer_nr".to_owned(), item["customer_nr"].clone()),
        ("record".to_owned(), AttributeValue::S("profile".to_owned())),
        ("name".to_owned(), item["name"].clone()),
        ("email_lower".to_owned(), AttributeValue::S(email.trim().to_lowercase())),
    ]))
}

fn v2() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr")).version(2).sort_key(KeyAttr::s("record"))
}

/// Create, rebuild with `rebuild`, delete the old version.
fn migrations(rebuild: RebuildStep) -> Vec<Migration> {
    vec![
        Migration::new(1, "create_customers", "create")
            .create_table(TableDef::new("customers", KeyAttr::n("customer_nr"))),
        Migration::new(2, "rebuild_customers", "rebuild").rebuild_table(rebuild),
        Migration::new(3, "delete_customers_v1", "delete").delete_old_table(
            "customers",
            1,
            Destructive::because("version 2 holds every customer"),
        ),
    ]
}

fn convert() -> RebuildStep {
    RebuildStep::convert(v2(), profile).drop_unknown_attributes()
}

async fn migrator(client: &Client, names: &TableNames) -> Migrator {
    Migrator::new(client.clone(), names.clone(), true, "test").with_streams(support::streams().await)
}

async fn all_items(client: &Client, table: &str) -> Vec<Item> {
    let mut items = client.scan().table_name(table).consistent_read(true).into_paginator().items().send();
    let mut all = Vec::new();
    while let Some(item) = items.next().await {
        all.push(item.unwrap());
    }
    all
}

async fn transform_of_old(client: &Client, old: &str) -> String {
    let expected: Vec<Item> = all_items(client, old).await.iter().filter_map(converted).collect();
    expected_hash(&expected)
}

fn put_by_application(i: u64, n: u64) -> Item {
    let mut item = customer(i);
    item.insert("name".to_owned(), AttributeValue::S(format!("Customer {i}, put {n}")));
    item
}

fn key(i: u64) -> Item {
    Item::from([
        ("customer_nr".to_owned(), AttributeValue::N(i.to_string())),
        ("record".to_owned(), AttributeValue::S("profile".to_owned())),
    ])
}

/// Puts a stale, a foreign and a missing item into the new table, as a late write of a run
/// that lost its lock, a stray writer and a lost write would.
async fn tamper_with(client: &Client, new: &str) {
    let mut stale = converted(&customer(3)).unwrap();
    stale.insert("name".to_owned(), AttributeValue::S("a name from long ago".to_owned()));
    client.put_item().table_name(new).set_item(Some(stale)).send().await.unwrap();
    let mut foreign = key(1_000_000);
    foreign.insert("name".to_owned(), AttributeValue::S("nobody".to_owned()));
    client.put_item().table_name(new).set_item(Some(foreign)).send().await.unwrap();
    client.delete_item().table_name(new).set_key(Some(key(5))).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_before_the_new_version_becomes_current_repairs_what_differs() {
    let (client, names) = (support::client().await, support::names("converge_gate"));
    let (old, new) = (names.physical("customers"), names.physical_version("customers", 2));
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(convert()), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone())
        .put_items("customers", (0..500).map(customer).collect())
        .await
        .unwrap();

    // The rebuild's catch-up is held once the copy is done; meanwhile the new table is
    // tampered with, as nothing but the rebuild should write it.
    let hold = Tamper { hold_when: Some(format!("table/{old}/stream")), ..Tamper::default() };
    let proxy = FaultProxy::start_tampering(support::endpoint(), hold, &["GetRecords"]).await;
    let held = Migrator::new(client.clone(), names.clone(), true, "test").with_streams(
        dynamo_migrate::run::connect_streams(&dynamo_migrate::run::Target::local(proxy.endpoint())).await,
    );
    let run = tokio::spawn(async move { held.run(&migrations(convert()), Some(2)).await });
    while proxy.stats().held == 0 {
        assert!(!run.is_finished(), "the rebuild ended before its catch-up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tamper_with(&client, &new).await;
    proxy.release();
    let report = run.await.unwrap().unwrap();
    let step = &report.applied[0].steps[0];
    for line in &step.calls {
        println!("{line}");
    }
    let check = step.check.as_ref().expect("the rebuild was checked");
    assert_eq!((check.missing, check.extra, check.different), (0, 0, 0), "the last round is clean: {check:?}");
    assert_eq!(check.repaired, 3, "{check:?}");
    assert!(check.rounds >= 2, "a round to repair, a round to prove it: {check:?}");
    assert_eq!(content_hash(&client, &new).await, transform_of_old(&client, &old).await);
    let header = ReplayStore::open(migrator.ledger(), 2, 0, &new).await.unwrap().header().await.unwrap().unwrap();
    assert!(header.check.as_deref().unwrap().contains("3 repaired from the old table"), "{header:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difference_after_cut_over_is_reported_by_sync_check_and_refuses_the_delete_until_repaired() {
    let (client, names) = (support::client().await, support::names("converge_delete"));
    let (old, new) = (names.physical("customers"), names.physical_version("customers", 2));
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(convert()), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone())
        .put_items("customers", (0..500).map(customer).collect())
        .await
        .unwrap();
    migrator.run(&migrations(convert()), Some(2)).await.unwrap();
    let states = rebuild_states(&migrator.ledger(), &names, &migrations(convert())).await.unwrap();
    let state = states[0].to_string();
    assert!(state.contains("last convergence check at ") && state.contains(": equal"), "{state}");

    // What a late write, a stray writer and a lost write would leave.
    tamper_with(&client, &new).await;
    let compared = migrator.sync_and_check(&migrations(convert()), None, SyncCheck::Compare).await.unwrap();
    let error = compared[0].error.as_deref().expect("the check finds the differences");
    println!("sync --check: {error}");
    for part in [
        format!("{new} is not the transform of {old}, so the rebuild is not proved"),
        "3 key(s) differed (1 missing, 1 extra, 1 different)".to_owned(),
        "3 differ (first: ".to_owned(),
        "--check --repair".to_owned(),
    ] {
        assert!(error.contains(&part), "{part:?} in {error}");
    }

    // The delete is refused, not failed: it runs again once the tables agree.
    let refused = migrator.run(&migrations(convert()), None).await.unwrap_err();
    let message = format!("{:#}", refused.error);
    assert!(message.contains("so the old table is not deleted"), "{message}");
    assert!(message.contains("--accept-differences"), "{message}");
    assert_eq!(migrator.ledger().records().await.unwrap()[2].status, Status::Interrupted);
    assert!(client.describe_table().table_name(&old).send().await.is_ok(), "the old table is still there");

    let repaired = migrator.sync_and_check(&migrations(convert()), None, SyncCheck::Repair).await.unwrap();
    assert_eq!(repaired[0].error, None);
    assert_eq!(repaired[0].check.as_ref().map(|c| c.repaired), Some(3));
    assert_eq!(content_hash(&client, &new).await, transform_of_old(&client, &old).await);
    let deleted = migrator.run(&migrations(convert()), None).await.unwrap();
    let lines = &deleted.applied[0].steps[0].calls;
    assert!(lines.iter().any(|l| l.contains("checked ") && l.contains(": equal")), "{lines:?}");
    assert!(client.describe_table().table_name(&old).send().await.is_err(), "the old table is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differences_the_application_made_are_deleted_over_only_when_accepted() {
    let (client, names) = (support::client().await, support::names("converge_accept"));
    let (old, new) = (names.physical("customers"), names.physical_version("customers", 2));
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(convert()), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone())
        .put_items("customers", (0..100).map(customer).collect())
        .await
        .unwrap();
    migrator.run(&migrations(convert()), Some(2)).await.unwrap();
    // The application moved to version 2 and changed an item there.
    let mut changed = converted(&customer(9)).unwrap();
    changed.insert("name".to_owned(), AttributeValue::S("renamed in version 2".to_owned()));
    client.put_item().table_name(&new).set_item(Some(changed.clone())).send().await.unwrap();

    let refused = migrator.run(&migrations(convert()), None).await.unwrap_err();
    assert!(
        format!("{:#}", refused.error).contains("1 differ (first: different {customer_nr: 9"),
        "{:#}",
        refused.error
    );
    let accepting = migrator.clone().with_accepted_differences(true);
    let deleted = accepting.run(&migrations(convert()), None).await.unwrap();
    let lines = &deleted.applied[0].steps[0].calls;
    assert!(lines.iter().any(|l| l.contains("the differences are accepted (--accept-differences)")), "{lines:?}");
    assert!(client.describe_table().table_name(&old).send().await.is_err(), "the old table is gone");
    // The application's write stays as it made it.
    let got = client.get_item().table_name(&new).set_key(Some(key(9))).send().await.unwrap().item.unwrap();
    assert_eq!(got, changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_beside_an_application_and_through_dropped_connections_ends_clean() {
    let (client, names) = (support::client().await, support::names("converge_live"));
    let old = names.physical("customers");
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(convert()), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..3_000).map(customer).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed.clone()).await.unwrap();
    migrator.run(&migrations(convert()), Some(2)).await.unwrap();

    // Old instances keep writing to version 1 while sync replays and checks, through a proxy
    // that drops a tenth of the check's reads.
    let writer = AppWriter::start(
        client.clone(),
        &old,
        &["customer_nr"],
        seed,
        "name",
        put_by_application,
        WriterOptions { workers: 4, writes_per_second: 150.0, mix: (6, 2, 2), fresh_keys: 100 },
    );
    let faults = Faults { drop: 0.1, ..Faults::default() };
    let proxy = FaultProxy::start(support::endpoint(), faults, &["Scan", "BatchGetItem"]).await;
    let through = Migrator::new(
        dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await,
        names.clone(),
        true,
        "test",
    )
    .with_streams(support::streams().await);
    let checked = through.sync_and_check(&migrations(convert()), None, SyncCheck::Compare).await.unwrap();
    println!("{checked:#?}");
    let log = writer.stop().await;
    assert!(proxy.stats().dropped > 0, "{:?}", proxy.stats());
    assert_eq!(checked[0].error, None, "the writes in flight are in the stream, not differences");
    let check = checked[0].check.as_ref().unwrap();
    assert_eq!(check.unrepaired, 0);
    assert!(check.read_units > 0.0, "{check:?}");
    let violations = log.check(&client, &old, &[], |_| Ok(())).await;
    assert!(violations.is_empty(), "{}", summary(&violations));

    // Once the application stops, the tables agree exactly. The check's first look may still
    // meet the application's last writes before their stream records can be read (DynamoDB
    // Local's stream trails its table on a busy machine); those settle on its second look, and
    // nothing is left for a repair.
    let synced = migrator.sync_and_check(&migrations(convert()), None, SyncCheck::Compare).await.unwrap();
    assert_eq!(synced[0].error, None);
    let check = synced[0].check.as_ref().unwrap();
    assert_eq!((check.unrepaired, check.failed), (0, 0), "{check:?}");
    assert_eq!(check.missing + check.extra + check.different, check.settled, "{check:?}");
    let new = names.physical_version("customers", 2);
    assert_eq!(content_hash(&client, &new).await, transform_of_old(&client, &old).await);
}

/// A customer whose email is a number: the conversion's typed read refuses it.
fn unreadable(i: u64) -> Item {
    let mut item = customer(i);
    item.insert("email".to_owned(), AttributeValue::N(i.to_string()));
    item
}

fn dead_letter_file(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("dead-letters-{test}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn lines(path: &PathBuf) -> usize {
    std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_whose_items_fail_does_not_become_current_and_each_failure_is_kept_once() {
    let (client, names) = (support::client().await, support::names("converge_failed"));
    let old = names.physical("customers");
    let path = dead_letter_file("failed");
    let failing = || convert().dead_letter(&path);
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(failing()), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..2_000).map(|i| if i < 2 { customer(i) } else { unreadable(i) }).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed.clone()).await.unwrap();
    let writer = AppWriter::start(
        client.clone(),
        &old,
        &["customer_nr"],
        seed,
        "name",
        |i, n| if i < 2 { put_by_application(i, n) } else { unreadable(i) },
        WriterOptions { workers: 4, writes_per_second: 50.0, mix: (1, 0, 0), fresh_keys: 0 },
    );

    let refused = migrator.run(&migrations(failing()), None).await.unwrap_err();
    let message = format!("{:#}", refused.error);
    println!("{message}");
    assert!(message.contains("1998 of 2000 item(s) failed, and the step accepts none"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("nothing it wrote into"), "{message}");
    assert!(message.contains("--version 2 --rerun --restart-passes"), "{message}");
    let records = migrator.ledger().records().await.unwrap();
    assert_eq!(
        records.iter().map(|r| (r.version, r.status)).collect::<Vec<_>>(),
        [(1, Status::Succeeded), (2, Status::Failed)]
    );
    assert!(client.describe_table().table_name(&old).send().await.is_ok(), "the old table stays");
    // Each failed item once: the estimate's sample wrote none.
    assert_eq!(lines(&path), 1998);
    let log = writer.stop().await;
    assert!(log.check(&client, &old, &[], |_| Ok(())).await.is_empty());

    // A rebuild that accepts the losses says so, and becomes current with them counted.
    let (client, names) = (support::client().await, support::names("converge_accepted"));
    let (old, new_accepted) = (names.physical("customers"), names.physical_version("customers", 2));
    let path = dead_letter_file("accepted");
    let accepting = || convert().dead_letter(&path).max_failed_items(1998);
    let migrator = self::migrator(&client, &names).await;
    migrator.run(&migrations(accepting()), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..2_000).map(|i| if i < 2 { customer(i) } else { unreadable(i) }).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed).await.unwrap();
    let done = migrator.run(&migrations(accepting()), Some(2)).await.unwrap();
    let calls = &done.applied[0].steps[0].calls;
    assert!(
        calls
            .iter()
            .any(|l| l.contains("1998 failed and left out (the step accepts at most 1998 item(s); they are in ")),
        "{calls:?}"
    );
    assert_eq!(lines(&path), 1998);
    assert_eq!(content_hash(&client, &new_accepted).await, transform_of_old(&client, &old).await);
    migrator.run(&migrations(accepting()), None).await.unwrap();
    assert!(client.describe_table().table_name(&old).send().await.is_err(), "cut over, the old table deleted");
    let state = rebuild_states(&migrator.ledger(), &names, &migrations(accepting())).await.unwrap()[0].to_string();
    assert!(state.contains("1998 item(s) failed the transform and were left out (in "), "{state}");
    std::fs::remove_file(&path).unwrap();
}

/// The projects the command-line test below runs in child processes.
pub fn project(name: &str) -> dynamo_migrate::Project {
    match name {
        "converge:rebuild" => dynamo_migrate::Project { tables: vec![], migrations: migrations(convert()) },
        other => panic!("no project {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_shows_checks_and_takes_sync_check_and_accept_differences() {
    let envs = Envs::new("converge_cli", "");
    let client = support::client().await;
    let (old, new) = (envs.names.physical("customers"), envs.names.physical_version("customers", 2));
    // The command first, then the environment.
    let args = |more: &[&'static str]| [more, &["--env", "dev", "--environments", envs.file()][..]].concat();
    let created = run("converge:rebuild", &args(&["migrate", "--target", "1"]));
    assert_eq!(created.code, 0, "{}", created.stderr);
    DataContext::new(client.clone(), envs.names.clone())
        .put_items("customers", (0..50).map(customer).collect())
        .await
        .unwrap();
    let rebuilt = run("converge:rebuild", &args(&["migrate", "--target", "2"]));
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    // Too few items for the estimate's sample to measure a rate: it says so.
    assert!(rebuilt.stdout.contains("too few to measure a rate, so no duration is estimated"), "{}", rebuilt.stdout);
    assert!(rebuilt.stdout.contains(&format!("checked {old} -> {new}: 50 old item(s)")), "{}", rebuilt.stdout);

    for command in ["status", "plan"] {
        let shown = run("converge:rebuild", &args(&[command]));
        assert!(
            shown.stdout.contains("last convergence check at ") && shown.stdout.contains(": equal ("),
            "{command}: {}",
            shown.stdout
        );
    }

    let bad = run("converge:rebuild", &args(&["sync", "--repair"]));
    assert_eq!(bad.code, 2, "--repair without --check: {}", bad.stderr);
    assert!(bad.stderr.contains("--check"), "{}", bad.stderr);

    tamper_with(&client, &new).await;
    let compared = run("converge:rebuild", &args(&["sync", "--check"]));
    assert_eq!(compared.code, 1, "{}{}", compared.stdout, compared.stderr);
    assert!(compared.stdout.contains("3 differ (first: "), "{}", compared.stdout);
    assert!(
        compared.stderr.contains("1 of 1 rebuild(s) could not be synced")
            && compared
                .stderr
                .contains(&format!("run `cargo xtask sync --env dev --environments {}` again", envs.file())),
        "{}",
        compared.stderr
    );
    let refused = run("converge:rebuild", &args(&["migrate"]));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let accept = format!("`cargo xtask migrate --env dev --environments {} --accept-differences`", envs.file());
    assert!(refused.stderr.contains(&accept), "{}", refused.stderr);
    let accepted = run("converge:rebuild", &args(&["migrate", "--accept-differences"]));
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
    assert!(client.describe_table().table_name(&old).send().await.is_err(), "the old table is gone");
}
