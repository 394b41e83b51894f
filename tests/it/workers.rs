//! One data pass shared by many workers: local worker processes claim segments under leases
//! beside the run, with an application writing beside them, and the result is exact; a worker
//! killed mid-segment is taken over after its lease; a worker paused past its lease writes nothing
//! that survives; a worker of a run that lost its lock stops; a worker with nothing to join ends.
//! Everything runs through the command line in child processes (this test binary), the workers
//! started by `migrate --workers` through `$DYNAMO_MIGRATE_WORKER_COMMAND`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::{Change, DataReport, DataStep, KeyAttr, Migration, Project, RateLimit, RebuildStep, TableDef};
use serde::{Deserialize, Serialize};

use crate::app_writer::{AppWriter, WriterOptions, customer, summary};
use crate::environments::{Envs, cli, finished};
use crate::support::{self, Item, content_hash, expected_hash};

/// The items of the big test; `WORKERS_ITEMS` changes it for a measurement.
fn items() -> u64 {
    std::env::var("WORKERS_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

/// The customer as the steps read it.
#[derive(Serialize, Deserialize)]
struct Customer {
    customer_nr: u64,
    name: String,
    email: String,
}

/// In place, one customer in ten gets a `tier`.
fn tiered(item: Item) -> Result<Change, String> {
    let Some(AttributeValue::N(nr)) = item.get("customer_nr") else { return Err("no customer_nr".into()) };
    if nr.parse::<u64>().map_err(|e| e.to_string())? % 10 != 0 || item.contains_key("tier") {
        return Ok(Change::Keep);
    }
    let mut item = item;
    item.insert("tier".to_owned(), AttributeValue::S("gold".to_owned()));
    Ok(Change::Put(item))
}

#[derive(Serialize)]
struct Profile {
    customer_nr: u64,
    record: &'static str,
    name: String,
    email_lower: String,
}

fn profile(c: Customer) -> Option<Profile> {
    Some(Profile { customer_nr: c.customer_nr, record: "profile", name: c.name, email_lower: c.email.to_lowercase() })
}

/// The conversion over a raw item, written independently of the typed one.
fn converted(item: &Item) -> Item {
    let AttributeValue::S(email) = &item["email"] else { panic!("{item:?}") };
    Item::from([
        ("customer_nr".to_owned(), item["customer_nr"].clone()),
        ("record".to_owned(), AttributeValue::S("profile".to_owned())),
        ("name".to_owned(), item["name"].clone()),
        ("email_lower".to_owned(), AttributeValue::S(email.to_lowercase())),
    ])
}

/// The projects the child processes run, by name.
pub fn project(name: &str) -> Project {
    let table = |name: &str| TableDef::new(name, KeyAttr::n("customer_nr"));
    let migrations = match name {
        // In place, into another table, and a rebuild, each pass shared.
        "workers:big" => vec![
            Migration::new(1, "create", "create").create_table(table("customers")).create_table(table("archive")),
            Migration::new(2, "tier", "in place").data(DataStep::new("tier_customers", |ctx| async move {
                Ok(ctx.pass("customers").raw(tiered).await?)
            })),
            Migration::new(3, "archive", "into another table")
                .data(DataStep::new("archive_customers", |ctx| async move {
                    Ok(ctx.pass("customers").into_table("archive").copy().await?)
                })),
            Migration::new(4, "rebuild", "rebuild").rebuild_table(
                RebuildStep::convert(
                    TableDef::new("customers", KeyAttr::n("customer_nr")).version(2).sort_key(KeyAttr::s("record")),
                    profile,
                )
                .drop_unknown_attributes(),
            ),
        ],
        // A slow pass in place (a rate limit for each process), to kill or pause a worker in.
        "workers:slow" => vec![
            Migration::new(1, "create", "create").create_table(table("customers")),
            Migration::new(2, "tier", "in place, slowly").data(DataStep::new("tier_slowly", |ctx| async move {
                Ok(ctx.pass("customers").page_size(50).rate(RateLimit::ItemsPerSecond(400.0)).raw(tiered).await?)
            })),
        ],
        other => panic!("no project {other}"),
    };
    Project { tables: vec![], migrations }
}

const WORKER_ARGS_MARK: &str = "--";

/// Not a test of its own: a local worker, as `migrate --workers` starts it through the stand-in
/// below. Its command line follows libtest's `--`; its project is its parent's.
#[tokio::test(flavor = "multi_thread")]
async fn worker_started_by_migrate() {
    let Ok(project) = std::env::var(crate::environments::CLI_PROJECT_ENV) else { return };
    if !std::env::args().any(|a| a == WORKER_ARGS_MARK) {
        return;
    }
    let args: Vec<String> = std::env::args().skip_while(|a| a != WORKER_ARGS_MARK).skip(1).collect();
    let code = dynamo_migrate::cli::run(args, &crate::environments::project(&project)).await;
    std::process::exit(i32::from(code));
}

/// A stand-in for the runner that `migrate --workers` starts: this test binary's worker.
pub(crate) fn worker_command() -> String {
    let exe = std::env::current_exe().unwrap().display().to_string();
    serde_json::to_string(&[
        exe.as_str(),
        "--exact",
        "workers::worker_started_by_migrate",
        "--nocapture",
        "--test-threads=1",
        WORKER_ARGS_MARK,
    ])
    .unwrap()
}

/// The segments of every pass of migration `version`: their owners (workers), by pass.
async fn owners(client: &Client, ledger: &str, version: u32) -> BTreeMap<String, BTreeSet<String>> {
    let prefix = format!("checkpoint#{version:010}#");
    let mut items = client.scan().table_name(ledger).consistent_read(true).into_paginator().items().send();
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        let (Some(AttributeValue::S(id)), Some(AttributeValue::S(owner))) = (item.get("id"), item.get("owner")) else {
            continue;
        };
        if let Some(rest) = id.strip_prefix(&prefix) {
            let pass = rest.rsplit_once("#s").map_or(rest, |(pass, _)| pass).to_owned();
            owners.entry(pass).or_default().insert(owner.clone());
        }
    }
    owners
}

async fn all_items(client: &Client, table: &str) -> Vec<Item> {
    let mut items = client.scan().table_name(table).consistent_read(true).into_paginator().items().send();
    let mut all = Vec::new();
    while let Some(item) = items.next().await {
        all.push(item.unwrap());
    }
    all
}

fn put_by_application(i: u64, n: u64) -> Item {
    let mut item = customer(i);
    item.insert("name".to_owned(), AttributeValue::S(format!("Customer {i}, put {n}")));
    item
}

#[tokio::test]
async fn a_worker_with_nothing_to_join_ends_at_once_saying_so() {
    let envs = Envs::new("workers_none", "");
    let args = |more: &[&'static str]| [more, &["--env", "dev", "--environments", envs.file()][..]].concat();
    let none = finished(cli("workers:slow", &args(&["worker"]), &[]).output().unwrap());
    assert_eq!(none.code, 0, "{}", none.stderr);
    assert!(none.stdout.contains("worker done: no run has started in "), "{}", none.stdout);
    let created = finished(cli("workers:slow", &args(&["migrate", "--target", "1"]), &[]).output().unwrap());
    assert_eq!(created.code, 0, "{}", created.stderr);
    let none = finished(cli("workers:slow", &args(&["worker"]), &[]).output().unwrap());
    assert_eq!(none.code, 0, "{}", none.stderr);
    assert!(
        none.stdout.contains("worker done: no pass is open, and no run holds the migration lock"),
        "{}",
        none.stdout
    );
    let bad = finished(cli("workers:slow", &args(&["migrate", "--workers", "many"]), &[]).output().unwrap());
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("\"many\" is neither a number of local workers from 1 to 256, `batch` nor `external`"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_only_run_whose_local_workers_all_end_stops_at_a_checkpoint_naming_them() {
    let envs = Envs::new("workers_gone", "");
    let client = support::client().await;
    let args = |more: &[&'static str]| [more, &["--env", "dev", "--environments", envs.file()][..]].concat();
    let created = finished(cli("workers:big", &args(&["migrate", "--target", "1"]), &[]).output().unwrap());
    assert_eq!(created.code, 0, "{}", created.stderr);
    let seed: Vec<Item> = (0..300).map(customer).collect();
    dynamo_migrate::DataContext::new(client.clone(), envs.names.clone()).put_items("customers", seed).await.unwrap();

    // Workers that end at once (here `false`; in life a worker built from another commit, or
    // one without the environment's permissions): the run, which claims nothing itself, would
    // wait for ever. It stops at a checkpoint instead, naming how each worker ended.
    let child = cli(
        "workers:big",
        &args(&["migrate", "--target", "2", "--workers", "2", "--workers-only"]),
        &[("DYNAMO_MIGRATE_WORKER_COMMAND", r#"["false"]"#)],
    )
    .spawn()
    .unwrap();
    let stopped = crate::export::ended_within(child, std::time::Duration::from_secs(300)).await;
    assert_ne!(stopped.code, 0, "{}", stopped.stderr);
    for expected in [
        "every local worker ended while the run",
        "worker 1 exit status: 1",
        "worker 2 exit status: 1",
        &format!("cargo xtask migrate --env dev --environments {}", envs.file()),
    ] {
        assert!(stopped.stderr.contains(expected), "{expected:?} in {}", stopped.stderr);
    }

    // What it says to do goes on where it stopped.
    let again = finished(cli("workers:big", &args(&["migrate", "--target", "2"]), &[]).output().unwrap());
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_local_workers_share_each_pass_and_the_result_is_exact_beside_an_application() {
    let envs = Envs::new("workers_big", "");
    let client = support::client().await;
    let args = |more: &[&'static str]| [more, &["--env", "dev", "--environments", envs.file()][..]].concat();
    let created = finished(cli("workers:big", &args(&["migrate", "--target", "1"]), &[]).output().unwrap());
    assert_eq!(created.code, 0, "{}", created.stderr);
    let (customers, archive) = (envs.names.physical("customers"), envs.names.physical("archive"));
    let seed: Vec<Item> = (0..items()).map(customer).collect();
    dynamo_migrate::DataContext::new(client.clone(), envs.names.clone())
        .put_items("customers", seed.clone())
        .await
        .unwrap();

    let writer = AppWriter::start(
        client.clone(),
        &customers,
        &["customer_nr"],
        seed,
        "name",
        put_by_application,
        WriterOptions { workers: 4, writes_per_second: 100.0, mix: (6, 2, 2), fresh_keys: 500 },
    );
    let command = worker_command();
    let started = Instant::now();
    let migrated = finished(
        cli(
            "workers:big",
            &args(&["migrate", "--target", "4", "--workers", "4", "--format", "json"]),
            &[("DYNAMO_MIGRATE_WORKER_COMMAND", command.as_str())],
        )
        .output()
        .unwrap(),
    );
    let took = started.elapsed();
    let log = writer.stop().await;
    println!(
        "{}",
        migrated
            .stderr
            .lines()
            .filter(|l| l.starts_with("local workers") || l.starts_with("worker "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(migrated.code, 0, "{}\n{}", migrated.stdout, migrated.stderr);
    let report: serde_json::Value = serde_json::from_str(&migrated.stdout).unwrap();
    let ended = report["local_workers"].as_array().unwrap();
    assert_eq!(ended.len(), 4, "{report}");
    assert!(ended.iter().all(|w| w.as_str().unwrap().ends_with("exit status: 0")), "{ended:?}");

    // Each pass was shared: its segments have more than one owner.
    for version in [2, 3, 4] {
        let owners = owners(&client, envs.names.ledger(), version).await;
        println!("migration {version}: {owners:?}");
        assert!(owners.values().all(|o| o.len() >= 2), "migration {version}'s pass was not shared: {owners:?}");
    }
    // The totals are every segment's: every item of the table scanned once per pass.
    let applied = report["report"]["applied"].as_array().unwrap();
    let data = |version: usize| -> DataReport {
        serde_json::from_value(applied[version - 2]["steps"][0]["data"].clone()).unwrap()
    };
    let (tier, copy, rebuild) = (data(2), data(3), data(4));
    println!("in place {tier:?}\ninto another table {copy:?}\nrebuild {rebuild:?}\n{} items in {took:.1?}", items());
    for pass in [tier, copy, rebuild] {
        assert!(pass.scanned >= items() - log.counts().deletes && pass.scanned <= items() + 500, "{pass:?}");
        assert_eq!(pass.failed, 0, "{pass:?}");
    }
    assert!(tier.written >= items() / 10 - log.counts().deletes, "{tier:?}");

    // Exact: the application lost nothing, and each table is what its step makes of the old.
    let violations = log.check(&client, &customers, &["tier"], |item| {
        let nr: u64 = match item.get("customer_nr") {
            Some(AttributeValue::N(n)) => n.parse().unwrap(),
            _ => return Err("no customer_nr".to_owned()),
        };
        // The application's later puts have no tier; what has one is the step's.
        match (nr.is_multiple_of(10), item.get("tier")) {
            (_, None) => Ok(()),
            (true, Some(AttributeValue::S(t))) if t == "gold" => Ok(()),
            (_, tier) => Err(format!("customer {nr} has tier {tier:?}")),
        }
    });
    let violations = violations.await;
    assert!(violations.is_empty(), "{}", summary(&violations));
    // What the application wrote after the rebuild's catch-up, replayed.
    let synced = finished(cli("workers:big", &args(&["sync"]), &[]).output().unwrap());
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    let old = all_items(&client, &customers).await;
    assert_eq!(
        content_hash(&client, &envs.names.physical_version("customers", 2)).await,
        expected_hash(&old.iter().map(converted).collect::<Vec<_>>())
    );
    // The archive is a copy made while the application wrote: every item it holds is one the
    // table held (the application's later writes are not the copy's business).
    assert!(all_items(&client, &archive).await.len() as u64 >= items() - log.counts().deletes);
}

/// The segments of migration `version`'s first pass whose owner is the process `pid`: their ids,
/// and whether each has made progress and is done.
async fn segments_of(client: &Client, ledger: &str, version: u32, pid: u32) -> Vec<(String, bool, bool)> {
    let prefix = format!("checkpoint#{version:010}#step0#pass0#s");
    let marker = format!(" pid {pid} (");
    let mut found = Vec::new();
    if client.describe_table().table_name(ledger).send().await.is_err() {
        return found;
    }
    for item in all_items(client, ledger).await {
        let (Some(AttributeValue::S(id)), Some(AttributeValue::S(owner))) = (item.get("id"), item.get("owner")) else {
            continue;
        };
        if id.starts_with(&prefix) && owner.contains(&marker) {
            let done = matches!(item.get("done"), Some(AttributeValue::Bool(true)));
            found.push((id.clone(), item.contains_key("key"), done));
        }
    }
    found
}

/// Waits until `reached` holds, failing if 5 minutes pass.
async fn until<F, Fut>(what: &str, reached: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !reached().await {
        assert!(started.elapsed() < std::time::Duration::from_secs(300), "{what} did not happen in 5 minutes");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn signal(pid: u32, signal: &str) {
    assert!(std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

/// The slow project's table seeded, migration 1 applied; the application writing beside it.
async fn slow_table(envs: &Envs, client: &Client, items: u64) -> AppWriter {
    let args = [&["migrate", "--target", "1"][..], &["--env", "dev", "--environments", envs.file()][..]].concat();
    let created = finished(cli("workers:slow", &args, &[]).output().unwrap());
    assert_eq!(created.code, 0, "{}", created.stderr);
    let seed: Vec<Item> = (0..items).map(customer).collect();
    dynamo_migrate::DataContext::new(client.clone(), envs.names.clone())
        .put_items("customers", seed.clone())
        .await
        .unwrap();
    AppWriter::start(
        client.clone(),
        &envs.names.physical("customers"),
        &["customer_nr"],
        seed,
        "name",
        put_by_application,
        WriterOptions { workers: 2, writes_per_second: 40.0, mix: (6, 2, 2), fresh_keys: 50 },
    )
}

/// After the slow pass: the application lost nothing, and what has a tier is the step's.
async fn slow_pass_is_exact(client: &Client, envs: &Envs, writer: AppWriter) {
    let table = envs.names.physical("customers");
    let log = writer.stop().await;
    let violations = log
        .check(client, &table, &["tier"], |item| match (item.get("customer_nr"), item.get("tier")) {
            (_, None) => Ok(()),
            (Some(AttributeValue::N(n)), Some(AttributeValue::S(t)))
                if t == "gold" && n.parse::<u64>().unwrap().is_multiple_of(10) =>
            {
                Ok(())
            }
            (nr, tier) => Err(format!("customer {nr:?} has tier {tier:?}")),
        })
        .await;
    assert!(violations.is_empty(), "{}", summary(&violations));
    // Every customer the step saw that should have a tier has one: the seed's that the
    // application did not put again or delete.
    let missing: Vec<u64> = all_items(client, &table)
        .await
        .iter()
        .filter_map(|item| match item.get("customer_nr") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
            _ => None,
        })
        .filter(|nr| nr.is_multiple_of(10))
        .filter(|nr| {
            let key =
                log.entries().iter().find(|e| e.key.get("customer_nr") == Some(&AttributeValue::N(nr.to_string())));
            key.is_none_or(|e| e.last_write.is_none())
        })
        .collect();
    let table_items = all_items(client, &table).await;
    let without: Vec<&u64> = missing
        .iter()
        .filter(|nr| {
            table_items
                .iter()
                .any(|i| i.get("customer_nr") == Some(&AttributeValue::N(nr.to_string())) && !i.contains_key("tier"))
        })
        .collect();
    assert!(without.is_empty(), "customers the step never tiered: {without:?}");
}

/// A slow pass in place over 8,000 customers beside the application, its run started with
/// `migrate --workers external` and `run_options`, and one worker, returned once that worker has
/// made progress in a segment it has not finished.
struct WorkerInASegment {
    envs: Envs,
    client: Client,
    writer: AppWriter,
    run: std::process::Child,
    worker: std::process::Child,
    ledger: String,
}

async fn worker_in_a_segment(test: &str, run_options: &[&str]) -> WorkerInASegment {
    let envs = Envs::new(test, "");
    let client = support::client().await;
    let writer = slow_table(&envs, &client, 8_000).await;
    let env = ["--env", "dev", "--environments", envs.file()];
    let migrate = [&["migrate", "--workers", "external"][..], run_options, &env[..]].concat();
    // The worker starts first and waits for the run, so that its start is not raced against the
    // run's pass (which the run works too).
    let worker =
        cli("workers:slow", &[&["worker", "--wait-for-run", "300"][..], &env[..]].concat(), &[]).spawn().unwrap();
    let run = cli("workers:slow", &migrate, &[]).spawn().unwrap();
    let ledger = envs.names.ledger().to_owned();
    until("the worker's progress in a segment", || async {
        segments_of(&client, &ledger, 2, worker.id()).await.iter().any(|(_, progress, done)| *progress && !done)
    })
    .await;
    WorkerInASegment { envs, client, writer, run, worker, ledger }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_segment_is_taken_over_after_its_lease() {
    let WorkerInASegment { envs, client, writer, run, worker, ledger } =
        worker_in_a_segment("workers_kill", &["--segment-lease", "5"]).await;
    let pid = worker.id();
    let held: Vec<String> =
        segments_of(&client, &ledger, 2, pid).await.into_iter().filter(|s| !s.2).map(|s| s.0).collect();
    signal(pid, "-KILL");
    let _ = finished(worker.wait_with_output().unwrap());

    let run = finished(run.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // The killed worker's segments were finished by another, from their checkpoints.
    let after = segments_of(&client, &ledger, 2, pid).await;
    assert!(
        held.iter().all(|id| !after.iter().any(|(a, _, _)| a == id)),
        "{held:?} still the killed worker's: {after:?}"
    );
    println!("the killed worker held {} segment(s), taken over after their 5 s lease", held.len());
    slow_pass_is_exact(&client, &envs, writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_is_taken_over_and_what_it_writes_late_changes_nothing() {
    let WorkerInASegment { envs, client, writer, run, worker, .. } =
        worker_in_a_segment("workers_pause", &["--segment-lease", "5"]).await;
    let pid = worker.id();
    signal(pid, "-STOP");
    let run = finished(run.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "the run took the paused worker's segments over: {}", run.stderr);
    let log = writer.stop().await;
    let table = envs.names.physical("customers");
    let before: BTreeMap<String, Item> = all_items(&client, &table)
        .await
        .into_iter()
        .map(|i| (serde_json::to_string(&dynamo_migrate::data::canonical_item(&i)).unwrap(), i))
        .collect();

    // Resumed, it may still send the writes it had in flight, each the step's own transform,
    // conditional on what it read: they change nothing. Its next checkpoint finds the
    // migration over, and it stops, saying so.
    signal(pid, "-CONT");
    let worker = finished(worker.wait_with_output().unwrap());
    println!("the paused worker, resumed: {}", worker.stderr.trim());
    assert_eq!(worker.code, 1, "{}", worker.stderr);
    assert!(worker.stderr.contains("no longer owns it"), "{}", worker.stderr);
    let after: BTreeMap<String, Item> = all_items(&client, &table)
        .await
        .into_iter()
        .map(|i| (serde_json::to_string(&dynamo_migrate::data::canonical_item(&i)).unwrap(), i))
        .collect();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the late writes changed the table"
    );
    let violations = log.check(&client, &table, &["tier"], |_| Ok(())).await;
    assert!(violations.is_empty(), "{}", summary(&violations));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_a_run_that_lost_its_lock_stops_at_its_next_page() {
    let WorkerInASegment { envs, client, writer, run: first, worker, .. } =
        worker_in_a_segment("workers_fenced", &["--lock-lease", "3"]).await;
    let env = ["--env", "dev", "--environments", envs.file()];
    let migrate = [&["migrate", "--workers", "external", "--lock-lease", "3"][..], &env[..]].concat();
    // The run is paused past its lock's lease, and its worker with it, mid-segment (so that it
    // cannot finish the pass meanwhile); another run takes the lock over and, once the migration
    // is marked for a rerun, resumes it under its own token and finishes it.
    signal(first.id(), "-STOP");
    signal(worker.id(), "-STOP");
    let refused = finished(cli("workers:slow", &migrate, &[]).output().unwrap());
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let recovered = finished(
        cli("workers:slow", &[&["recover", "--version", "2", "--rerun"][..], &env[..]].concat(), &[]).output().unwrap(),
    );
    assert_eq!(recovered.code, 0, "{}", recovered.stderr);
    let resumed = finished(cli("workers:slow", &migrate, &[]).output().unwrap());
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);

    // The first run's worker goes on: at its next checkpoint it finds its run fenced, and stops.
    signal(worker.id(), "-CONT");
    let worker = finished(worker.wait_with_output().unwrap());
    println!("the first run's worker: {}\n{}", worker.stdout.trim(), worker.stderr.trim());
    assert_eq!(worker.code, 1, "{}", worker.stderr);
    assert!(
        worker.stderr.contains("the run that opened migration 2's pass no longer owns it")
            && worker.stderr.contains("stopped at its next page"),
        "{}",
        worker.stderr
    );
    signal(first.id(), "-KILL");
    let _ = first.wait_with_output();
    slow_pass_is_exact(&client, &envs, writer).await;
}

#[tokio::test]
async fn the_emitted_manifests_name_the_worker_command() {
    let workers = "[dev.workers]\ncount = 3\nimage = \"registry.example/runner:7\"\njob_queue = \"migrations\"\njob_definition = \"runner\"\n";
    let envs = Envs::new("workers_emit", workers);
    let file = envs.file().to_owned();
    let env = ["--env", "dev", "--environments", file.as_str()];
    let emit = |what: &'static str| {
        finished(cli("workers:slow", &[&["workers", "--emit", what][..], &env[..]].concat(), &[]).output().unwrap())
    };
    let want = vec!["worker", "--env", "dev", "--environments", file.as_str(), "--wait-for-run", "600"];

    let command = emit("command");
    assert_eq!(command.code, 0, "{}", command.stderr);
    assert_eq!(command.stdout.trim(), format!("cargo xtask {}", want.join(" ")));

    let kubernetes = emit("kubernetes");
    assert_eq!(kubernetes.code, 0, "{}", kubernetes.stderr);
    let manifest: serde_json::Value = serde_json::from_str(&kubernetes.stdout).unwrap();
    assert_eq!((manifest["kind"].as_str(), manifest["apiVersion"].as_str()), (Some("Job"), Some("batch/v1")));
    assert_eq!(manifest["spec"]["completionMode"], "Indexed");
    assert_eq!(manifest["spec"]["completions"], 3);
    let container = &manifest["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/runner:7");
    assert_eq!(container["args"], serde_json::json!(want));

    let batch = emit("batch-json");
    assert_eq!(batch.code, 0, "{}", batch.stderr);
    let input: serde_json::Value = serde_json::from_str(&batch.stdout).unwrap();
    assert_eq!((input["jobQueue"].as_str(), input["jobDefinition"].as_str()), (Some("migrations"), Some("runner")));
    assert_eq!(input["arrayProperties"]["size"], 3);
    assert_eq!(input["containerOverrides"]["command"], serde_json::json!(want));

    // Without an image, the manifest cannot be written: the key to add is named.
    let bare = Envs::new("workers_emit_bare", "");
    let args =
        [&["workers", "--emit", "kubernetes"][..], &["--env", "dev", "--environments", bare.file()][..]].concat();
    let refused = finished(cli("workers:slow", &args, &[]).output().unwrap());
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("environment dev names no workers image: add `image = "), "{}", refused.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_submits_an_aws_batch_array_job_whose_children_share_the_pass() {
    let Some(moto) = support::moto_endpoint() else {
        println!(
            "skipped: moto's server is not installed (pip install 'moto[server]'), so there is no AWS Batch to submit to"
        );
        return;
    };
    // The queue and definition a team keeps for its workers, in moto's AWS Batch.
    let config = aws_sdk_batch::config::Builder::new()
        .behavior_version(aws_sdk_batch::config::BehaviorVersion::latest())
        .region(aws_sdk_batch::config::Region::new("us-east-1"))
        .endpoint_url(moto)
        .credentials_provider(aws_sdk_batch::config::Credentials::new("testing", "testing", None, None, "test"))
        .build();
    let batch = aws_sdk_batch::Client::from_conf(config);
    let name = format!("workers{}", std::process::id());
    create_role(moto, &name);
    let environment = batch
        .create_compute_environment()
        .compute_environment_name(&name)
        .r#type(aws_sdk_batch::types::CeType::Unmanaged)
        .state(aws_sdk_batch::types::CeState::Enabled)
        .service_role(format!("arn:aws:iam::123456789012:role/{name}"))
        .send()
        .await
        .unwrap();
    batch
        .create_job_queue()
        .job_queue_name(&name)
        .state(aws_sdk_batch::types::JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            aws_sdk_batch::types::ComputeEnvironmentOrder::builder()
                .order(1)
                .compute_environment(environment.compute_environment_arn().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();
    batch
        .register_job_definition()
        .job_definition_name(&name)
        .r#type(aws_sdk_batch::types::JobDefinitionType::Container)
        .container_properties(
            aws_sdk_batch::types::ContainerProperties::builder()
                .image("runner:latest")
                .resource_requirements(
                    aws_sdk_batch::types::ResourceRequirement::builder()
                        .r#type(aws_sdk_batch::types::ResourceType::Vcpu)
                        .value("1")
                        .build(),
                )
                .resource_requirements(
                    aws_sdk_batch::types::ResourceRequirement::builder()
                        .r#type(aws_sdk_batch::types::ResourceType::Memory)
                        .value("512")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let workers = format!(
        "[dev.workers]\ncount = 2\njob_queue = \"{name}\"\njob_definition = \"{name}\"\nbatch_endpoint = \"{moto}\"\n"
    );
    let envs = Envs::new("workers_batch", &workers);
    let file = envs.file().to_owned();
    let client = support::client().await;
    let writer = slow_table(&envs, &client, 4_000).await;
    let env = ["--env", "dev", "--environments", file.as_str()];
    let run = cli(
        "workers:slow",
        &[&["migrate", "--workers", "batch", "--workers-only", "--format", "json"][..], &env[..]].concat(),
        &[],
    )
    .spawn()
    .unwrap();
    // The array job's children, as AWS Batch would start them: the same runner, each with its
    // index.
    let children: Vec<_> = (0..2)
        .map(|index| {
            let index = index.to_string();
            cli(
                "workers:slow",
                &[&["worker", "--wait-for-run", "300"][..], &env[..]].concat(),
                &[("AWS_BATCH_JOB_ARRAY_INDEX", index.as_str())],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    let run = finished(run.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for child in children {
        let child = finished(child.wait_with_output().unwrap());
        assert_eq!(child.code, 0, "{}", child.stderr);
    }
    assert!(run.stderr.contains("submitted AWS Batch array job "), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let id = report["batch_job"]["id"].as_str().unwrap().to_owned();

    // What Batch was asked: an array of 2 children on the queue and definition, each running
    // the worker of this environment.
    let described = batch.describe_jobs().jobs(&id).send().await.unwrap();
    let job = &described.jobs()[0];
    assert_eq!(job.array_properties().and_then(|a| a.size()), Some(2));
    assert_eq!(job.job_queue().and_then(|q| q.rsplit('/').next()), Some(name.as_str()));
    let command = job.container().map(|c| c.command().to_vec()).unwrap_or_default();
    assert_eq!(command, ["worker", "--env", "dev", "--environments", file.as_str(), "--wait-for-run", "600"]);
    // And its children did the pass, each named by its index: with `--workers-only` the run
    // works no segment itself (how many segments each child got is the machine's business).
    let owners = owners(&client, envs.names.ledger(), 2).await;
    let all: Vec<&String> = owners.values().flatten().collect();
    assert!(!all.is_empty(), "{owners:?}");
    assert!(all.iter().all(|o| o.contains(" index 0#") || o.contains(" index 1#")), "{owners:?}");
    slow_pass_is_exact(&client, &envs, writer).await;
}

/// Creates an IAM role in moto (which AWS Batch there requires of a compute environment) with
/// IAM's query API; moto routes it by the credential scope and checks no signature.
fn create_role(moto: &str, name: &str) {
    use std::io::{Read as _, Write as _};
    let body = format!("Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument=%7B%7D");
    let authority = moto.trim_start_matches("http://");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "moto did not create the role: {answer}");
}
