//! Online table rebuilds the way production runs them: an application keeps writing to the old
//! table during the copy, the catch-up and after them; `sync` replays what it wrote; the new
//! table must then be exactly the transform of the old one (content hash), and the old table's
//! deletion must wait until nothing writes to it. A catch-up killed with SIGKILL resumes from its
//! shard checkpoints and ends exact.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::data::{Phase, ReplayStore};
use dynamo_migrate::run::{LockOptions, Migrator, TableNames};
use dynamo_migrate::{
    DataContext, Destructive, KeyAttr, Migration, PassOptions, RateLimit, RebuildStep, StreamView, TableDef,
};
use serde::{Deserialize, Serialize};

use crate::app_writer::{AppWriter, WriterOptions, customer, summary, tally};
use crate::fault_proxy::{FaultProxy, Tamper};
use crate::support::{self, Item, content_hash, expected_hash};

/// The customer as the conversion reads it; the rest of the application's attributes are
/// dropped on purpose (`drop_unknown_attributes`).
#[derive(Serialize, Deserialize)]
struct Before {
    customer_nr: u64,
    name: String,
    email: String,
}

/// The customer as a `profile` record of version 2: a new sort key, and a converted attribute.
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

/// The same conversion over a raw item, written independently of the typed one, to compute the
/// content the new table must have.
fn converted(item: &Item) -> Item {
    let text = |name: &str| match &item[name] {
        AttributeValue::S(s) => s.clone(),
        other => panic!("{name} is {other:?}"),
    };
    Item::from([
        ("customer_nr".to_owned(), item["customer_nr"].clone()),
        ("record".to_owned(), AttributeValue::S("profile".to_owned())),
        ("name".to_owned(), AttributeValue::S(text("name"))),
        ("email_lower".to_owned(), AttributeValue::S(text("email").trim().to_lowercase())),
    ])
}

fn v1(stream: bool) -> TableDef {
    let table = TableDef::new("customers", KeyAttr::n("customer_nr"));
    if stream { table.stream(StreamView::NewAndOldImages) } else { table }
}

fn migrations(stream: bool) -> Vec<Migration> {
    let v2 = TableDef::new("customers", KeyAttr::n("customer_nr")).version(2).sort_key(KeyAttr::s("record"));
    vec![
        Migration::new(1, "create_customers", "create").create_table(v1(stream)),
        Migration::new(2, "rebuild_customers", "rebuild")
            .rebuild_table(RebuildStep::convert(v2, profile).drop_unknown_attributes()),
        Migration::new(3, "delete_customers_v1", "delete").delete_old_table(
            "customers",
            1,
            Destructive::because("version 2 holds every customer"),
        ),
    ]
}

/// What the application puts: a customer with a name and email unique to the write.
fn put_by_application(i: u64, n: u64) -> Item {
    let mut item = customer(i);
    item.insert("name".to_owned(), AttributeValue::S(format!("Customer {i}, put {n}")));
    item.insert("email".to_owned(), AttributeValue::S(format!("  Put.{n}.Of.{i}@Example.COM ")));
    item
}

async fn migrator(client: &Client, names: &TableNames) -> Migrator {
    Migrator::new(client.clone(), names.clone(), true, "test").with_streams(support::streams().await)
}

/// Every item of `table`, read consistently.
async fn all_items(client: &Client, table: &str) -> Vec<Item> {
    let mut items = client.scan().table_name(table).consistent_read(true).into_paginator().items().send();
    let mut all = Vec::new();
    while let Some(item) = items.next().await {
        all.push(item.unwrap());
    }
    all
}

/// The hash the new table must have: the conversion of every item the old table holds.
async fn transform_of_old(client: &Client, old: &str) -> String {
    let expected: Vec<Item> = all_items(client, old).await.iter().map(converted).collect();
    expected_hash(&expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_beside_an_application_ends_exactly_the_transform_of_the_old_table() {
    let (client, names) = (support::client().await, support::names("online_rebuild"));
    let (old, new) = (names.physical("customers"), names.physical_version("customers", 2));
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(false), Some(1)).await.unwrap();
    // 20,000 items and 300 writes/s; the measurement in the README runs this same test with
    // more of both (REBUILD_ITEMS=50000 REBUILD_WRITES_PER_SECOND=500).
    let number = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (items, writes_per_second) = (number("REBUILD_ITEMS", 20_000), number("REBUILD_WRITES_PER_SECOND", 300));
    let seed: Vec<Item> = (0..items).map(customer).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed.clone()).await.unwrap();

    let writer = AppWriter::start(
        client.clone(),
        &old,
        &["customer_nr"],
        seed,
        "name",
        put_by_application,
        WriterOptions { workers: 8, writes_per_second: writes_per_second as f64, mix: (6, 2, 2), fresh_keys: 500 },
    );
    // The application is serving before the rebuild starts, and goes on after it ends.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let rebuilt = tokio::time::timeout(Duration::from_secs(5 * 60), migrator.run(&migrations(false), Some(2)))
        .await
        .expect("the rebuild ends within 5 minutes")
        .unwrap();
    let rebuild_took = started.elapsed();
    for line in &rebuilt.applied[0].steps[0].calls {
        println!("rebuild: {line}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // While the application still writes, the old table is not deleted.
    let strict = migrator.clone().with_quiet_window(Duration::from_secs(2));
    let refused = strict.run(&migrations(false), None).await.unwrap_err();
    println!("delete_old_table while the application writes: {}", refused.error);
    assert!(refused.error.is_not_quiet(), "{:#}", refused.error);
    assert!(client.describe_table().table_name(&old).send().await.is_ok(), "the old table is still there");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = writer.stop().await;
    let violations = log.check(&client, &old, &[], |_| Ok(())).await;
    println!("application: {} acknowledged, {:?}", log.acknowledged(), log.counts());
    assert!(log.counts().updates > 0 && log.counts().deletes > 0 && log.counts().puts > 0, "{:?}", log.counts());
    assert_eq!(log.counts().uncertain, 0, "DynamoDB Local answers every write");
    assert!(violations.is_empty(), "the old table is the application's model: {}", summary(&violations));

    let sync_started = Instant::now();
    let synced = migrator.sync(&migrations(false), None).await.unwrap();
    let sync_took = sync_started.elapsed();
    println!("sync: {synced:?}");
    assert_eq!(synced.len(), 1);
    let want = transform_of_old(&client, &old).await;
    let got = content_hash(&client, &new).await;
    println!("old table converted: {want}; new table: {got}");
    println!(
        "{items} items, application at {writes_per_second} writes/s: rebuild (copy + catch-up) {rebuild_took:.1?}, sync after the application stopped {sync_took:.1?}, from the rebuild's start to the new table exact {:.1?}",
        started.elapsed()
    );
    assert_eq!(got, want, "the new table is exactly the conversion of the old one");
    // Every acknowledged write is in the new table as the conversion of the model's item.
    let model: Vec<Item> = log
        .entries()
        .iter()
        .filter_map(|e| match &e.expected {
            crate::app_writer::Expected::Present(item) => Some(converted(item)),
            _ => None,
        })
        .collect();
    assert_eq!(got, expected_hash(&model), "violations by kind: {:?}", tally(&violations));

    // Once the application has stopped and the window has passed, the old table goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deleted = strict.run(&migrations(false), None).await.unwrap();
    assert_eq!(deleted.applied.last().map(|m| m.version), Some(3));
    assert!(client.describe_table().table_name(&old).send().await.is_err(), "the old table is gone");
    let header = ReplayStore::open(migrator.ledger(), 2, 0, &new).await.unwrap().header().await.unwrap().unwrap();
    assert_eq!(header.phase, Phase::CutOver);
}

const CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_REBUILD_PREFIX";
/// The streams endpoint of the child (a proxy in front of the shared server).
const STREAMS_ENV: &str = "DYNAMO_MIGRATE_TEST_REBUILD_STREAMS";
/// Which migrations the child runs: `one` ([`migrations`]) or `three` ([`three_rebuilds`]).
const WHICH_ENV: &str = "DYNAMO_MIGRATE_TEST_REBUILD_WHICH";

/// Not a test of its own: the body of the child processes that the SIGKILL tests below start
/// and kill. Its streams go through the parent's proxy, which holds its `GetRecords` at a point
/// the parent chooses, so that the parent kills it there, however fast or slow the machine is.
#[tokio::test]
async fn child_process_running_a_rebuild() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else { return };
    let streams = std::env::var(STREAMS_ENV).unwrap();
    // A lease long enough for a loaded machine's heartbeats (a quarter of it each), short enough
    // that the parent takes the lock over soon after the kill.
    let lock = LockOptions { lease: Duration::from_secs(10), ..LockOptions::new("rebuild child") };
    let client = support::client().await;
    let migrator = Migrator::new(client, TableNames::new(prefix), true, "test")
        .with_streams(dynamo_migrate::run::connect_streams(&dynamo_migrate::run::Target::local(streams)).await)
        .with_lock(lock);
    let which = if std::env::var(WHICH_ENV).as_deref() == Ok("three") { three_rebuilds() } else { migrations(true) };
    migrator.run(&which, Some(2)).await.unwrap();
}

/// Starts the child process running migrations up to 2 of `which` under `names`, with its
/// streams through `proxy`.
fn spawn_child(names: &TableNames, proxy: &FaultProxy, which: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rebuild::child_process_running_a_rebuild", "--test-threads=1"])
        .env(CHILD_ENV, names.prefix())
        .env(STREAMS_ENV, proxy.endpoint())
        .env(WHICH_ENV, which)
        .env(support::ENDPOINT_ENV, support::endpoint())
        // Its failures show in the test's output, should it end before it is killed.
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits until `reached` holds, failing the test if the child ends first or 5 minutes pass.
async fn wait_for_child<F, Fut>(child: &mut std::process::Child, what: &str, reached: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child ended ({status}) before {what}");
        }
        if reached().await {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the child did not reach {what} in 5 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The replay's shard checkpoints in the ledger that have applied records.
async fn shard_checkpoints(client: &Client, ledger: &str) -> usize {
    if client.describe_table().table_name(ledger).send().await.is_err() {
        return 0;
    }
    all_items(client, ledger)
        .await
        .iter()
        .filter(|item| {
            matches!(item.get("id"), Some(AttributeValue::S(id)) if id.starts_with("replay#0000000002#step000#shard#"))
                && item.contains_key("after")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_killed_with_sigkill_resumes_from_its_shard_checkpoints() {
    let (client, names) = (support::client().await, support::names("rebuild_crash"));
    let (old, new) = (names.physical("customers"), names.physical_version("customers", 2));
    // The old table has its stream from the start, so that the seed itself (20,000 INSERTs)
    // is a backlog the catch-up takes a while to replay.
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(true), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..20_000).map(customer).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed).await.unwrap();
    // Some changes and deletes, so that the replay has more than inserts to get right.
    for i in (0..20_000).step_by(7) {
        let key = Item::from([("customer_nr".to_owned(), AttributeValue::N(i.to_string()))]);
        if i % 2 == 0 {
            client.delete_item().table_name(&old).set_key(Some(key)).send().await.unwrap();
        } else {
            client.put_item().table_name(&old).set_item(Some(put_by_application(i, 1))).send().await.unwrap();
        }
    }

    // The child's catch-up reads three pages of records (and checkpoints each), then its next
    // GetRecords is held, and it is killed there.
    let hold = Tamper { hold_when: Some(format!("table/{old}/stream")), hold_after: 3, ..Tamper::default() };
    let proxy = FaultProxy::start_tampering(support::endpoint(), hold, &["GetRecords"]).await;
    let mut child = spawn_child(&names, &proxy, "one");
    wait_for_child(&mut child, "its catch-up was held after a shard checkpoint", || async {
        proxy.stats().held > 0 && shard_checkpoints(&client, names.ledger()).await > 0
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let header = ReplayStore::open(migrator.ledger(), 2, 0, &new).await.unwrap().header().await.unwrap().unwrap();
    println!("killed in phase {}", header.phase);
    assert_eq!(header.phase, Phase::CatchingUp);

    support::rerun(&migrator.ledger(), &migrations(true), 2).await;
    let resumed = migrator.run(&migrations(true), Some(2)).await.unwrap();
    let step = &resumed.applied[0].steps[0];
    for line in &step.calls {
        println!("resumed: {line}");
    }
    let replay = step.replay.unwrap();
    // The stream holds 20,000 inserts and 2,858 changes or deletes: the resumed catch-up read
    // only what the killed one had not checkpointed (at least three pages of 1,000).
    assert!(replay.records <= 22_858 - 3_000, "{replay:?}");
    assert_eq!(content_hash(&client, &new).await, transform_of_old(&client, &old).await);
}

/// Three tables created, then rebuilt in one migration: `alpha` and `gamma` copied as they are,
/// `beta` converted into customer profiles with a new sort key.
fn three_rebuilds() -> Vec<Migration> {
    let table = |name: &str| TableDef::new(name, KeyAttr::n("customer_nr"));
    let profile_v2 = TableDef::new("beta", KeyAttr::n("customer_nr")).version(2).sort_key(KeyAttr::s("record"));
    vec![
        Migration::new(1, "create_three", "create")
            .create_table(table("alpha"))
            .create_table(table("beta"))
            .create_table(table("gamma")),
        Migration::new(2, "rebuild_three", "rebuild")
            .rebuild_table(RebuildStep::copy(table("alpha").version(2)))
            .rebuild_table(RebuildStep::convert(profile_v2, profile).drop_unknown_attributes())
            .rebuild_table(RebuildStep::copy(table("gamma").version(2))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rebuilds_in_one_migration_each_keep_their_own_replay_and_resume_after_sigkill() {
    let (client, names) = (support::client().await, support::names("three_rebuilds"));
    let migrator = migrator(&client, &names).await.with_drift_check(true);
    migrator.run(&three_rebuilds(), Some(1)).await.unwrap();
    let context = DataContext::new(client.clone(), names.clone());
    let mut writers = Vec::new();
    for table in ["alpha", "beta", "gamma"] {
        let seed: Vec<Item> = (0..2_000).map(customer).collect();
        context.put_items(table, seed.clone()).await.unwrap();
        let options = WriterOptions { workers: 4, writes_per_second: 60.0, mix: (6, 2, 2), fresh_keys: 100 };
        let old = names.physical(table);
        writers.push((
            table,
            AppWriter::start(client.clone(), &old, &["customer_nr"], seed, "name", put_by_application, options),
        ));
    }

    // The child copies alpha and catches up with it, copies beta, and is killed while beta's
    // catch-up waits for its first page of records.
    let beta = names.physical("beta");
    let hold = Tamper { hold_when: Some(format!("table/{beta}/stream")), ..Tamper::default() };
    let proxy = FaultProxy::start_tampering(support::endpoint(), hold, &["GetRecords"]).await;
    let mut child = spawn_child(&names, &proxy, "three");
    wait_for_child(&mut child, "beta's catch-up", || async { proxy.stats().held > 0 }).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let ledger = migrator.ledger();
    let target = |table: &str| names.physical_version(table, 2);
    let header = |step: u32, table: &'static str| {
        let ledger = ledger.clone();
        async move { ReplayStore::open(ledger, 2, step, &target(table)).await.unwrap().header().await.unwrap() }
    };
    let (alpha, killed) = (header(0, "alpha").await.unwrap(), header(1, "beta").await.unwrap());
    assert_eq!((alpha.phase, killed.phase), (Phase::WaitingForCutOver, Phase::CatchingUp));
    assert_eq!((alpha.source.as_str(), killed.source.as_str()), (names.physical("alpha").as_str(), beta.as_str()));
    assert!(header(2, "gamma").await.is_none(), "gamma's rebuild had not started");

    // The run goes on where the killed one stopped: through recover --rerun, and with the drift
    // check on (the killed run's streams and new tables are its own work, not drift).
    support::rerun(&ledger, &three_rebuilds(), 2).await;
    let resumed = migrator.run(&three_rebuilds(), Some(2)).await.unwrap();
    for (i, step) in resumed.applied[0].steps.iter().enumerate() {
        for line in &step.calls {
            println!("resumed step {i}: {line}");
        }
    }
    for (step, table) in [(0, "alpha"), (1, "beta"), (2, "gamma")] {
        let header = header(step, table).await.unwrap();
        assert_eq!(header.phase, Phase::WaitingForCutOver, "{table}");
        assert_eq!((header.source, header.target), (names.physical(table), target(table)));
    }

    for (table, writer) in writers {
        let old = names.physical(table);
        let log = writer.stop().await;
        let violations = log.check(&client, &old, &[], |_| Ok(())).await;
        assert!(violations.is_empty(), "{table}: {}", summary(&violations));
    }
    let synced = migrator.sync(&three_rebuilds(), None).await.unwrap();
    assert_eq!(
        synced.iter().map(|r| (r.step, r.error.is_none())).collect::<Vec<_>>(),
        [(0, true), (1, true), (2, true)]
    );
    for table in ["alpha", "gamma"] {
        let (old, new) = (names.physical(table), target(table));
        assert_eq!(content_hash(&client, &new).await, content_hash(&client, &old).await, "{table}");
    }
    assert_eq!(content_hash(&client, &target("beta")).await, transform_of_old(&client, &beta).await);
}

/// A customer whose attributes hold empty maps: at the top, inside a map, inside a list.
fn with_empty_maps(i: u64, n: u64) -> Item {
    let empty = || AttributeValue::M(Default::default());
    let mut item = customer(i);
    item.insert("name".to_owned(), AttributeValue::S(format!("Customer {i}, put {n}")));
    item.insert("settings".to_owned(), empty());
    item.insert("profile".to_owned(), AttributeValue::M([("extra".to_owned(), empty())].into()));
    item.insert("history".to_owned(), AttributeValue::L(vec![empty(), AttributeValue::L(vec![])]));
    item
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_maps_in_stream_records_are_replayed_as_maps() {
    let (client, names) = (support::client().await, support::names("rebuild_empty_maps"));
    let (old, new) = (names.physical("customers"), names.physical_version("customers", 2));
    let copy = || {
        vec![
            Migration::new(1, "create", "create").create_table(v1(true)),
            Migration::new(2, "copy", "copy")
                .rebuild_table(RebuildStep::copy(TableDef::new("customers", KeyAttr::n("customer_nr")).version(2))),
        ]
    };
    let migrator = migrator(&client, &names).await;
    migrator.run(&copy(), Some(1)).await.unwrap();
    // Written after the stream: the catch-up replays their INSERT records, whose images DynamoDB
    // Local sends with `{}` for each empty map.
    let seed: Vec<Item> = (0..300).map(|i| with_empty_maps(i, 0)).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed.clone()).await.unwrap();
    let writer = AppWriter::start(
        client.clone(),
        &old,
        &["customer_nr"],
        seed,
        "name",
        with_empty_maps,
        WriterOptions { workers: 4, writes_per_second: 100.0, mix: (4, 2, 4), fresh_keys: 50 },
    );
    let rebuilt = migrator.run(&copy(), None).await.unwrap();
    let replay = rebuilt.applied[0].steps[0].replay.unwrap();
    assert!(replay.records >= 300, "the seed's records were replayed: {replay:?}");
    let log = writer.stop().await;
    assert!(log.check(&client, &old, &[], |_| Ok(())).await.is_empty());
    let synced = migrator.sync(&copy(), None).await.unwrap();
    assert_eq!(synced[0].error, None);
    assert_eq!(content_hash(&client, &new).await, content_hash(&client, &old).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_read_stops_its_own_rebuild_naming_it_and_sync_goes_on_with_the_others() {
    let (client, names) = (support::client().await, support::names("rebuild_unreadable"));
    let migrator = migrator(&client, &names).await;
    let copies = || {
        let table = |name: &str| TableDef::new(name, KeyAttr::n("customer_nr"));
        vec![
            Migration::new(1, "create", "create").create_table(table("alpha")).create_table(table("beta")),
            Migration::new(2, "copy", "copy")
                .rebuild_table(RebuildStep::copy(table("alpha").version(2)))
                .rebuild_table(RebuildStep::copy(table("beta").version(2))),
        ]
    };
    migrator.run(&copies(), None).await.unwrap();
    // After cut-over, old instances write to both old tables; one of beta's records holds a value
    // that the proxy turns into something no DynamoDB type is.
    let (alpha, beta) = (names.physical("alpha"), names.physical("beta"));
    for i in 0..20 {
        client.put_item().table_name(&alpha).set_item(Some(customer(i))).send().await.unwrap();
        let mut item = customer(i);
        if i == 7 {
            item.insert("note".to_owned(), AttributeValue::S("poison".to_owned()));
        }
        client.put_item().table_name(&beta).set_item(Some(item)).send().await.unwrap();
    }
    // A value the SDK does not know (`{"X": …}`) reads as an unknown type, and the replay names the
    // item and its record; one it cannot read at all (`{"S": […]}`) fails the whole page, and the
    // replay reads it again to find and name the record.
    let through = |from: &str, to: &str| {
        let tamper = Tamper { rewrite: Some((from.to_owned(), to.to_owned())), ..Tamper::default() };
        let client = client.clone();
        let names = names.clone();
        async move {
            let proxy = FaultProxy::start_tampering(support::endpoint(), tamper, &["GetRecords"]).await;
            let migrator = Migrator::new(client, names, true, "test").with_streams(
                dynamo_migrate::run::connect_streams(&dynamo_migrate::run::Target::local(proxy.endpoint())).await,
            );
            (proxy, migrator)
        }
    };
    let (_unknown, unknown_type) = through(r#"{"S":"poison"}"#, r#"{"X":"poison"}"#).await;
    let synced = unknown_type.sync(&copies(), None).await.unwrap();
    let error = synced[1].error.as_deref().expect("beta's replay stops");
    assert!(
        error.contains("item {customer_nr: 7} (record 0")
            && error.contains(&format!("stream {}", "arn:aws:dynamodb:"))
            && error.contains("attribute note: a value of a type this version does not know"),
        "{error}"
    );

    let (_proxy, unreadable) = through(r#"{"S":"poison"}"#, r#"{"S":["poison"]}"#).await;
    let synced = unreadable.sync(&copies(), None).await.unwrap();
    println!("{synced:#?}");
    assert_eq!(synced.len(), 2);
    assert_eq!(synced[0].error, None);
    assert_eq!(content_hash(&client, &names.physical_version("alpha", 2)).await, content_hash(&client, &alpha).await);
    let error = synced[1].error.as_deref().expect("beta's replay stops");
    for part in [
        format!("replay of {beta} into {}", names.physical_version("beta", 2)),
        "shard ".to_owned(),
        "stream arn:aws:dynamodb:".to_owned(),
        r#"(keys {"customer_nr":{"N":"7"}}): NewImage attribute note is {"S":["poison"]}"#.to_owned(),
        "other rebuilds go on".to_owned(),
    ] {
        assert!(error.contains(&part), "{part:?} in {error}");
    }
    assert!(error.contains("record 0"), "the record's sequence number: {error}");
}

#[tokio::test]
async fn a_copy_estimated_to_outlast_the_stream_retention_is_refused_with_its_estimate() {
    let (client, names) = (support::client().await, support::names("rebuild_estimate"));
    let migrator = migrator(&client, &names).await.with_copy_limit(Duration::from_secs(60));
    migrator.run(&migrations(false), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..2_000).map(customer).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed).await.unwrap();
    // At 10 items/s, 2,000 items take 200 s: more than the 60 s this migrator allows.
    let v2 = TableDef::new("customers", KeyAttr::n("customer_nr")).version(2).sort_key(KeyAttr::s("record"));
    let slow = RebuildStep::convert(v2, profile)
        .options(PassOptions { rate: Some(RateLimit::ItemsPerSecond(10.0)), ..PassOptions::default() })
        .drop_unknown_attributes();
    let mut slow_migrations = migrations(false);
    slow_migrations[1] = Migration::new(2, "rebuild_customers", "rebuild").rebuild_table(slow);
    let refused = migrator.run(&slow_migrations, Some(2)).await.unwrap_err();
    let message = refused.error.to_string();
    println!("{message}");
    assert!(
        message.contains(
            "estimated copy: 2000 items (the table's ItemCount) at 10 items/s (the step's rate limit; a sample of "
        ),
        "{message}"
    );
    assert!(message.contains("more than the 60 s a copy may take"), "{message}");
    // 200 s of copying fits 60 s in 4 processes: this one and 3 workers.
    assert!(message.contains("About 4 processes at this rate would copy it in time"), "{message}");
    assert!(message.contains("--workers 3`"), "{message}");
}

#[tokio::test]
async fn a_catch_up_whose_records_may_have_expired_is_refused_saying_what_to_do() {
    let (client, names) = (support::client().await, support::names("rebuild_expired"));
    let migrator = migrator(&client, &names).await;
    migrator.run(&migrations(false), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone())
        .put_items("customers", (0..100).map(customer).collect())
        .await
        .unwrap();
    migrator.run(&migrations(false), Some(2)).await.unwrap();

    // Make the replay's checkpoints 21 hours old, as if the last sync had been that long ago.
    let long_ago = (SystemTime::now() - Duration::from_secs(21 * 3600)).duration_since(UNIX_EPOCH).unwrap().as_millis();
    for mut item in all_items(&client, names.ledger()).await {
        let Some(AttributeValue::S(id)) = item.get("id") else { continue };
        if !id.starts_with("replay#0000000002#") {
            continue;
        }
        for field in ["synced_from_ms", "copy_started_ms", "applied_until_ms", "last_write_ms"] {
            if item.contains_key(field) {
                item.insert(field.to_owned(), AttributeValue::N(long_ago.to_string()));
            }
        }
        client.put_item().table_name(names.ledger()).set_item(Some(item)).send().await.unwrap();
    }
    // The rebuild's report says so; the run itself (which would go on with other rebuilds) ends.
    let synced = migrator.sync(&migrations(false), None).await.unwrap();
    let message = synced[0].error.clone().expect("the replay is refused");
    println!("{message}");
    assert!(message.contains("records not yet applied may be 21 h old"), "{message}");
    assert!(message.contains("--rerun --restart-passes"), "{message}");
}

#[tokio::test]
async fn a_stream_without_what_the_replay_needs_is_refused_not_replaced_and_a_copy_reuses_new_images() {
    let (client, names) = (support::client().await, support::names("rebuild_stream_view"));
    let old = names.physical("customers");
    let with_new_images = || {
        vec![
            Migration::new(1, "create_customers", "create")
                .create_table(TableDef::new("customers", KeyAttr::n("customer_nr")).stream(StreamView::NewImage)),
        ]
    };
    let migrator = migrator(&client, &names).await;
    migrator.run(&with_new_images(), None).await.unwrap();
    DataContext::new(client.clone(), names.clone())
        .put_items("customers", (0..50).map(customer).collect())
        .await
        .unwrap();

    // A conversion needs old images (a REMOVE must find the converted key): refused, and the
    // stream its consumers read is left as it is.
    let mut converting = migrations(false);
    converting[0] = with_new_images().remove(0);
    let refused = migrator.run(&converting, Some(2)).await.unwrap_err();
    let message = refused.error.to_string();
    assert!(message.contains("already has a stream with view NEW_IMAGE"), "{message}");
    assert!(message.contains("Replacing it would stop its consumers"), "{message}");
    let described = client.describe_table().table_name(&old).send().await.unwrap().table.unwrap();
    assert_eq!(
        described.stream_specification().and_then(|s| s.stream_view_type()).map(|v| v.as_str()),
        Some("NEW_IMAGE")
    );

    // A plain copy into the same key attributes can use it: a REMOVE's keys are the new key.
    let (client2, names2) = (support::client().await, support::names("rebuild_stream_copy"));
    let migrator = self::migrator(&client2, &names2).await;
    let copy = |v: u32| TableDef::new("customers", KeyAttr::n("customer_nr")).version(v);
    let copies = vec![
        with_new_images().remove(0),
        Migration::new(2, "copy_customers", "copy").rebuild_table(RebuildStep::copy(copy(2))),
    ];
    migrator.run(&copies[..1], None).await.unwrap();
    DataContext::new(client2.clone(), names2.clone())
        .put_items("customers", (0..50).map(customer).collect())
        .await
        .unwrap();
    migrator.run(&copies, None).await.unwrap();
    let old2 = names2.physical_version("customers", 1);
    for i in 0..10u64 {
        let key = Item::from([("customer_nr".to_owned(), AttributeValue::N(i.to_string()))]);
        client2.delete_item().table_name(&old2).set_key(Some(key)).send().await.unwrap();
    }
    migrator.sync(&copies, None).await.unwrap();
    assert_eq!(
        content_hash(&client2, &names2.physical_version("customers", 2)).await,
        content_hash(&client2, &old2).await
    );
}
