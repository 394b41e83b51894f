//! Rebuilds through DynamoDB's Export to S3 and Import from S3 (`RebuildStep::via_export`), end
//! to end against moto's server on loopback, which has DynamoDB with its streams, point-in-time
//! recovery, `ExportTableToPointInTime`, `ImportTable` and S3 (DynamoDB Local has no export or
//! import). moto's export writes one data file and no manifest, so the manifest-driven reading is
//! tested on fixtures in AWS's layout, in the engine's own tests (`data/rebuild/export/reader`).

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue as A, PointInTimeRecoverySpecification};
use dynamo_migrate::data::ExportPlace;
use dynamo_migrate::run::{
    Ledger, LockOptions, Migrator, Sharing, TableNames, Target, WorkerOptions, connect, connect_s3, connect_streams,
    work_passes,
};
use dynamo_migrate::{DataContext, KeyAttr, LocalIndex, Migration, RebuildStep, StreamView, TableDef};
use std::collections::{BTreeSet, HashMap};

use dynamo_migrate::{Number, NumberSet};
use serde::{Deserialize, Serialize};

use crate::exact::{Whole, awkward};
use crate::support::{self, Item, content_hash, expected_hash};

/// Version 2 of `things`: keyed by `id` and a new sort key `kind`, with a stream (which
/// ImportTable cannot set, so the rebuild sets it after the import).
fn v2() -> TableDef {
    TableDef::new("things", KeyAttr::s("id")).version(2).sort_key(KeyAttr::s("kind")).stream(StreamView::NewImage)
}

/// Every attribute of the old item, exactly, and the new sort key.
#[derive(Serialize)]
struct Kinded<T> {
    #[serde(flatten)]
    whole: T,
    kind: &'static str,
}

/// `Whole` without its binary attributes: moto's stream records carry a binary value as the bytes
/// of its base64 text, so that a replay of them writes other bytes (the convergence check then
/// repairs them from the old table, which would hide a fault of the import). The engine's own
/// tests import every type, binary included, into moto (`data/rebuild/export/path.rs`).
#[derive(Serialize, Deserialize)]
struct Textual {
    id: String,
    name: String,
    weight: f32,
    phone: String,
    #[serde(with = "serde_dynamo::string_set")]
    tags: BTreeSet<String>,
    levels: NumberSet,
    big: Number,
    prefs: HashMap<String, NumberSet>,
    history: Vec<Option<serde_json::Value>>,
}

/// `awkward(i)` without its binary attributes.
fn textual(i: u64) -> Item {
    let mut item = awkward(i);
    item.remove("raw");
    item.remove("blobs");
    item
}

pub(crate) fn migrations(rebuild: RebuildStep) -> Vec<Migration> {
    vec![
        Migration::new(1, "create_things", "create")
            .create_table(TableDef::new("things", KeyAttr::s("id")).stream(StreamView::NewAndOldImages)),
        Migration::new(2, "rebuild_things", "rebuild").rebuild_table(rebuild),
    ]
}

/// The transform, written over raw items independently of the typed one.
fn kinded(item: &Item) -> Item {
    let mut item = item.clone();
    item.insert("kind".to_owned(), A::S("thing".to_owned()));
    item
}

struct Moto {
    client: Client,
    place: ExportPlace,
    streams: aws_sdk_dynamodbstreams::Client,
}

async fn moto(test: &str) -> Option<Moto> {
    let endpoint = support::moto_endpoint()?;
    let target = Target::local(endpoint);
    let s3 = connect_s3(&target, Some(endpoint)).await;
    let bucket = format!("exports-{}-{}", test.replace('_', "-"), std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Some(Moto {
        client: connect(&target).await,
        place: ExportPlace { s3, bucket, prefix: "dynamo-migrate/test".to_owned(), kms_key: None, bucket_owner: None },
        streams: connect_streams(&target).await,
    })
}

impl Moto {
    fn migrator(&self, names: &TableNames) -> Migrator {
        Migrator::new(self.client.clone(), names.clone(), true, "test")
            .with_streams(self.streams.clone())
            .with_export(self.place.clone())
    }

    async fn keys(&self) -> Vec<String> {
        let out = self.place.s3.list_objects_v2().bucket(&self.place.bucket).send().await.unwrap();
        out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }

    async fn point_in_time_recovery(&self, table: &str) {
        let on = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().unwrap();
        self.client
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(on)
            .send()
            .await
            .unwrap();
    }
}

async fn all_items(client: &Client, table: &str) -> Vec<Item> {
    let mut items = client.scan().table_name(table).into_paginator().items().send();
    let mut all = Vec::new();
    while let Some(item) = items.next().await {
        all.push(item.unwrap());
    }
    all
}

async fn exists(client: &Client, table: &str) -> bool {
    client.describe_table().table_name(table).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rebuild_exports_transforms_imports_and_catches_up_exactly() {
    let Some(moto) = moto("export_rebuild").await else {
        println!(
            "skipped: moto's server is not installed (pip install 'moto[server]'), so there is no export or import"
        );
        return;
    };
    let names = support::names("export_rebuild");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let step = plain_step;
    let migrator = moto.migrator(&names);
    migrator.run(&migrations(step()), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..600).map(textual).collect();
    DataContext::new(moto.client.clone(), names.clone()).put_items("things", seed).await.unwrap();

    // Without point-in-time recovery there is no export: refused before anything is written.
    let refused = migrator.run(&migrations(step()), None).await.unwrap_err();
    let message = format!("{:#}", refused.error);
    assert!(message.contains(&format!("point-in-time recovery is off on {old}")), "{message}");
    assert!(message.contains("aws dynamodb update-continuous-backups --table-name"), "{message}");
    assert!(!exists(&moto.client, &new).await, "no table was imported");
    assert_eq!(moto.keys().await, Vec::<String>::new(), "nothing was exported");

    // Once recovery is on, the migration runs again, as `cargo xtask recover --rerun` allows.
    moto.point_in_time_recovery(&old).await;
    support::rerun(&Ledger::new(moto.client.clone(), &names), &migrations(step()), 2).await;
    // The application writes while the rebuild runs: changes, deletes and new items, which the
    // stream's catch-up brings into the new version.
    let writer = {
        let client = moto.client.clone();
        let table = old.clone();
        tokio::spawn(async move {
            for round in 0..40u64 {
                let mut changed = textual(round * 7);
                changed.insert("name".to_owned(), A::S(format!("changed in round {round}")));
                client.put_item().table_name(&table).set_item(Some(changed)).send().await.unwrap();
                client.put_item().table_name(&table).set_item(Some(textual(10_000 + round))).send().await.unwrap();
                let gone = A::S(format!("item-{:05}", 300 + round));
                client.delete_item().table_name(&table).key("id", gone).send().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let report = migrator.run(&migrations(step()), None).await.unwrap();
    writer.await.unwrap();
    let calls = &report.applied[0].steps[0].calls;
    for line in calls {
        println!("rebuild: {line}");
    }
    assert!(calls.iter().any(|l| l.starts_with(&format!("export of {old} started: "))), "{calls:#?}");
    assert!(calls.iter().any(|l| l.starts_with(&format!("import into {new} started: "))), "{calls:#?}");
    let summary = calls.iter().find(|l| l.starts_with(&format!("exported {old} and imported {new}: "))).unwrap();
    assert!(summary.contains("0 failed"), "{summary}");
    // The import held the transform of the export: the check after the catch-up found nothing to
    // repair (what it saw differ, the application's writes meanwhile, the stream settled).
    let checked = calls.iter().find(|l| l.starts_with(&format!("checked {old} -> {new}: "))).unwrap();
    assert!(!checked.contains("repaired") && !checked.contains(" differ (first"), "{checked}");
    // The stream ImportTable cannot set, set after it.
    assert!(calls.iter().any(|l| l.contains("stream")), "{calls:#?}");
    let described = moto.client.describe_table().table_name(&new).send().await.unwrap();
    let stream = described.table.unwrap().stream_specification.unwrap();
    assert!(stream.stream_enabled);

    // The transformed parts are under the rebuild's own folder, named by file and part.
    let keys = moto.keys().await;
    let parts: Vec<&String> = keys.iter().filter(|k| k.contains("/transformed/data/")).collect();
    assert!(!parts.is_empty(), "{keys:#?}");
    assert!(parts.iter().all(|k| k.starts_with(&format!("dynamo-migrate/test/{new}/m0002-step000/transformed/data/"))
        && k.ends_with(".json.gz")));

    // What the application wrote meanwhile is replayed; then the new version is exactly the
    // transform of the old one, every DynamoDB type included.
    migrator.sync(&migrations(step()), None).await.unwrap();
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(expected.len(), 600, "40 deleted, 40 added");
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rebuild_whose_transform_gives_two_items_one_key_is_refused_before_the_import() {
    let Some(moto) = moto("export_duplicates").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    let names = support::names("export_duplicates");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    // Every item of the same colour lands on one key of version 2.
    let step = || {
        RebuildStep::convert(v2(), |w: Whole| {
            let kind = if w.id.ends_with('1') { "odd-one" } else { "thing" };
            Some(Kinded { kind, whole: Whole { id: "same".into(), ..w } })
        })
        .via_export()
    };
    let migrator = moto.migrator(&names);
    migrator.run(&migrations(step()), Some(1)).await.unwrap();
    DataContext::new(moto.client.clone(), names.clone())
        .put_items("things", (0..20).map(awkward).collect())
        .await
        .unwrap();
    moto.point_in_time_recovery(&old).await;
    let refused = migrator.run(&migrations(step()), None).await.unwrap_err();
    let message = format!("{:#}", refused.error);
    assert!(message.contains("two items of the transform have the key"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    assert!(!exists(&moto.client, &new).await, "no table was imported");
}

/// On DynamoDB Local, which has no Export to S3, and without a bucket, a rebuild that asks for
/// the export copies instead, with the same transform, and says so; so `verify` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rebuild_on_dynamodb_local_without_a_bucket_copies_and_says_so() {
    let (client, names) = (support::client().await, support::names("export_local"));
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let step = plain_step;
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_streams(support::streams().await);
    migrator.run(&migrations(step()), Some(1)).await.unwrap();
    let seed: Vec<Item> = (0..50).map(textual).collect();
    DataContext::new(client.clone(), names.clone()).put_items("things", seed.clone()).await.unwrap();
    let report = migrator.run(&migrations(step()), None).await.unwrap();
    let calls = &report.applied[0].steps[0].calls;
    assert!(
        calls.iter().any(|l| l.starts_with(&format!("{old}: copied, not exported: this endpoint has no Export to S3"))),
        "{calls:#?}"
    );
    assert!(calls.iter().any(|l| l.starts_with(&format!("copied {old} -> {new}: 50 items scanned, 50 written"))));
    let expected: Vec<Item> = seed.iter().map(kinded).collect();
    assert_eq!(content_hash(&client, &new).await, expected_hash(&expected));
}

/// A new version with a local secondary index cannot be imported (ImportTable creates none): the
/// rebuild that asks for the export is refused before anything is written, naming the index and
/// the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rebuild_of_a_version_with_a_local_index_is_refused_before_writing() {
    let Some(moto) = moto("export_local_index").await else {
        println!("skipped: moto's server is not installed, so there is no bucket to name");
        return;
    };
    let (client, names) = (support::client().await, support::names("export_local_index"));
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let with_index = v2().local_index(LocalIndex::new("by_name", KeyAttr::s("name")));
    let step = || RebuildStep::convert(with_index.clone(), |w: Textual| Some(Kinded { whole: w, kind: "thing" }));
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test")
        .with_streams(support::streams().await)
        .with_export(moto.place.clone());
    migrator.run(&migrations(step().via_export()), Some(1)).await.unwrap();
    let refused = migrator.run(&migrations(step().via_export()), None).await.unwrap_err();
    let message = format!("{:#}", refused.error);
    assert!(message.contains("has the local secondary index by_name, and ImportTable cannot create"), "{message}");
    assert!(message.contains("rebuild it by copy (.via_copy()); nothing was written"), "{message}");
    assert!(!exists(&client, &new).await);
    assert_eq!(moto.keys().await, Vec::<String>::new(), "nothing was exported");
    // The old table is untouched and still the current version.
    assert!(exists(&client, &old).await);
}

/// On AWS (an endpoint that is not local), a rebuild that asks for the export in an environment
/// that names no bucket is refused before anything is written, saying what to add and the way
/// out; it never falls back to a copy there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rebuild_in_an_environment_without_a_bucket_is_refused_on_aws() {
    let Some(moto) = moto("export_no_bucket").await else {
        println!("skipped: moto's server is not installed, so there is no endpoint with export");
        return;
    };
    let names = support::names("export_no_bucket");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let step = plain_step;
    moto.migrator(&names).run(&migrations(step()), Some(1)).await.unwrap();
    DataContext::new(moto.client.clone(), names.clone())
        .put_items("things", (0..20).map(textual).collect())
        .await
        .unwrap();
    moto.point_in_time_recovery(&old).await;
    // As `migrate --env prod` runs it: not local, and no `[prod.exports]`.
    let on_aws = Migrator::new(moto.client.clone(), names.clone(), false, "test").with_streams(moto.streams.clone());
    let refused = on_aws.run(&migrations(step()), None).await.unwrap_err();
    let message = format!("{:#}", refused.error);
    assert!(message.contains("the rebuild asks for Export to S3 (.via_export()), and environment "), "{message}");
    assert!(message.contains(".exports]` with `bucket = \"<bucket>\"` to environments.toml"), "{message}");
    assert!(message.contains("or rebuild by copy with .via_copy(); nothing was written"), "{message}");
    assert!(!exists(&moto.client, &new).await, "nothing was created");
    assert_eq!(moto.keys().await, Vec::<String>::new(), "nothing was exported");
}

const CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_EXPORT_CHILD";
const MOTO_ENV: &str = "DYNAMO_MIGRATE_TEST_EXPORT_MOTO";
const BUCKET_ENV: &str = "DYNAMO_MIGRATE_TEST_EXPORT_BUCKET";
const STALL_ENV: &str = "DYNAMO_MIGRATE_TEST_EXPORT_STALL";

/// `step()`'s transform, which in the child process (where `STALL_ENV` names a file) stops for
/// good at `item-00300`, in the middle of the export's data file, once it has said so in that
/// file: the parent kills it there, however fast or slow the machine is. The same code in both
/// processes, so the migration is the same.
fn stalling_step() -> RebuildStep {
    RebuildStep::convert(v2(), |w: Textual| {
        if w.id == "item-00300"
            && let Ok(path) = std::env::var(STALL_ENV)
        {
            std::fs::write(path, "stalled").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Some(Kinded { whole: w, kind: "thing" })
    })
    .via_export()
}

/// A child process's moto and bucket, as its parent names them.
async fn child_place() -> (Target, ExportPlace) {
    let endpoint = std::env::var(MOTO_ENV).unwrap();
    let target = Target::local(&endpoint);
    let place = ExportPlace {
        s3: connect_s3(&target, Some(&endpoint)).await,
        bucket: std::env::var(BUCKET_ENV).unwrap(),
        prefix: "dynamo-migrate/test".to_owned(),
        kms_key: None,
        bucket_owner: None,
    };
    (target, place)
}

/// Not a test of its own: the body of the child process that the SIGKILL test below starts and
/// kills in the middle of its transform.
#[tokio::test]
async fn child_process_running_an_export_rebuild() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else { return };
    let (target, place) = child_place().await;
    // A lease short enough that the parent takes the lock over soon after the kill.
    let lock = LockOptions { lease: Duration::from_secs(10), ..LockOptions::new("export child") };
    Migrator::new(connect(&target).await, TableNames::new(prefix), true, "test")
        .with_streams(connect_streams(&target).await)
        .with_export(place)
        .with_lock(lock)
        .run(&migrations(stalling_step()), Some(2))
        .await
        .unwrap();
}

/// Migration 1 run, 600 items in `things`, point-in-time recovery on; the migrator.
async fn six_hundred_things(moto: &Moto, names: &TableNames, step: fn() -> RebuildStep) -> Migrator {
    let migrator = moto.migrator(names);
    migrator.run(&migrations(step()), Some(1)).await.unwrap();
    DataContext::new(moto.client.clone(), names.clone())
        .put_items("things", (0..600).map(textual).collect())
        .await
        .unwrap();
    moto.point_in_time_recovery(&names.physical("things")).await;
    migrator
}

/// Starts the child test `child` (its own variable `envs.0` set), waits until its transform says
/// in the file `envs.1` names that it stalled, and kills it (SIGKILL) there.
async fn kill_once_stalled(child: &str, envs: (&str, &str), moto: &Moto, names: &TableNames) {
    let stalled = std::env::temp_dir().join(format!("{child}-{}", std::process::id()));
    let _ = std::fs::remove_file(&stalled);
    let mut process = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("export::{child}"), "--test-threads=1"])
        .env(envs.0, names.prefix())
        .env(MOTO_ENV, support::moto_endpoint().unwrap())
        .env(BUCKET_ENV, &moto.place.bucket)
        .env(envs.1, &stalled)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !stalled.exists() {
        if let Ok(Some(status)) = process.try_wait() {
            panic!("{child} ended ({status}) before its transform stalled");
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{child}'s transform did not stall in 5 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.kill().unwrap();
    process.wait().unwrap();
    std::fs::remove_file(&stalled).unwrap();
}

/// The ledger's items of migration 2's rebuild whose id has `part` in it.
async fn export_items(client: &Client, names: &TableNames, part: &str) -> Vec<Item> {
    all_items(client, names.ledger())
        .await
        .into_iter()
        .filter(|item| {
            matches!(item.get("id"), Some(A::S(id)) if id.starts_with("replay#0000000002#step000#") && id.contains(part))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rebuild_killed_with_sigkill_mid_file_resumes_with_its_export_and_imports_each_item_once() {
    let Some(moto) = moto("export_killed").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    let names = support::names("export_killed");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let migrator = six_hundred_things(&moto, &names, stalling_step).await;

    // The child's transform stalls at item-00300.
    kill_once_stalled("child_process_running_an_export_rebuild", (CHILD_ENV, STALL_ENV), &moto, &names).await;

    // Killed in the middle of the file: the export is in the ledger, the file is not, nothing
    // was imported.
    let export = export_items(&moto.client, &names, "#export").await;
    assert_eq!(export.len(), 1, "{export:?}");
    assert!(
        matches!(export[0].get("state"), Some(A::S(state)) if state.contains("\"export_arn\":\"arn:")),
        "{export:?}"
    );
    assert!(!exists(&moto.client, &new).await);
    let exports = |keys: Vec<String>| {
        let mut folders: Vec<String> = keys
            .into_iter()
            .filter(|k| k.contains("/export/AWSDynamoDB/"))
            .map(|k| k.split("/data/").next().unwrap().to_owned())
            .collect();
        folders.dedup();
        folders
    };
    let exported = exports(moto.keys().await);
    assert_eq!(exported.len(), 1, "{exported:?}");

    // The run goes on (through recover --rerun): the same export, the file transformed anew,
    // imported once, and after the catch-up the new version is the transform of the old one.
    support::rerun(&migrator.ledger(), &migrations(stalling_step()), 2).await;
    let resumed = migrator.run(&migrations(stalling_step()), Some(2)).await.unwrap();
    let calls = &resumed.applied[0].steps[0].calls;
    assert!(!calls.iter().any(|l| l.starts_with(&format!("export of {old} started"))), "{calls:#?}");
    assert!(calls.iter().any(|l| l.starts_with(&format!("import into {new} started"))), "{calls:#?}");
    let summary = calls.iter().find(|l| l.starts_with(&format!("exported {old} and imported {new}: "))).unwrap();
    assert!(summary.contains("1 file(s), 600 item(s) read, 600 written"), "{summary}");
    assert_eq!(exports(moto.keys().await), exported, "no second export");
    migrator.sync(&migrations(stalling_step()), None).await.unwrap();
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
}

/// Set by the shared-files test for its first run only: the transform refuses one item, so that
/// the run stops after the export, before any file is transformed.
static REFUSE_ONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const WORKER_CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_EXPORT_WORKER";
const WORKER_STALL_ENV: &str = "DYNAMO_MIGRATE_TEST_EXPORT_WORKER_STALL";

/// The rebuild of the shared-files test: in the child worker, the transform stops for good at
/// its first item, after saying so in a file.
fn shared_step() -> RebuildStep {
    RebuildStep::convert(v2(), |w: Textual| {
        if let Ok(path) = std::env::var(WORKER_STALL_ENV) {
            std::fs::write(path, "stalled").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        if REFUSE_ONE.load(std::sync::atomic::Ordering::SeqCst) && w.id == "item-00300" {
            panic!("refused on purpose, once");
        }
        Some(Kinded { whole: w, kind: "thing" })
    })
    .via_export()
}

/// Not a test of its own: the worker process that the shared-files test starts beside its run,
/// and kills once it stalls in a file it claimed.
#[tokio::test]
async fn child_process_working_export_files() {
    let Ok(prefix) = std::env::var(WORKER_CHILD_ENV) else { return };
    let (target, place) = child_place().await;
    let options = WorkerOptions {
        wait_for_run: Duration::from_secs(300),
        poll: Duration::from_millis(100),
        export: Some(place),
        ..WorkerOptions::default()
    };
    let (_, cancel) = tokio::sync::watch::channel(false);
    work_passes(&connect(&target).await, &TableNames::new(prefix), &migrations(shared_step()), &options, cancel)
        .await
        .unwrap();
}

/// Splits the export's one data file (moto writes one) into `files` gzip'd files of its lines,
/// as AWS writes an export of a bigger table.
async fn split_export(moto: &Moto, files: usize) -> usize {
    use std::io::{Read as _, Write as _};
    let s3 = &moto.place.s3;
    let data: Vec<String> =
        moto.keys().await.into_iter().filter(|k| k.contains("/export/AWSDynamoDB/") && k.contains("/data/")).collect();
    assert_eq!(data.len(), 1, "{data:?}");
    let object = s3.get_object().bucket(&moto.place.bucket).key(&data[0]).send().await.unwrap();
    let gzipped = object.body.collect().await.unwrap().into_bytes();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&gzipped[..]).read_to_string(&mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let folder = data[0].rsplit_once('/').unwrap().0;
    for (n, chunk) in lines.chunks(lines.len().div_ceil(files)).enumerate() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for line in chunk {
            writeln!(gz, "{line}").unwrap();
        }
        let body = gz.finish().unwrap();
        let key = format!("{folder}/split-{n:02}.json.gz");
        s3.put_object().bucket(&moto.place.bucket).key(key).body(body.into()).send().await.unwrap();
    }
    s3.delete_object().bucket(&moto.place.bucket).key(&data[0]).send().await.unwrap();
    lines.len()
}

/// The owners of the export files' leases in the ledger, and whether each file is done.
async fn file_leases(client: &Client, names: &TableNames) -> Vec<(String, bool)> {
    all_items(client, names.ledger())
        .await
        .into_iter()
        .filter(|item| matches!(item.get("id"), Some(A::S(id)) if id.starts_with("checkpoint#0000000002#step0#exportfiles#s")))
        .map(|item| {
            let owner = match item.get("owner") {
                Some(A::S(owner)) => owner.clone(),
                _ => String::new(),
            };
            (owner, matches!(item.get("done"), Some(A::Bool(true))))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_are_shared_by_workers_and_a_killed_workers_files_are_taken_over() {
    let Some(moto) = moto("export_shared").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    let names = support::names("export_shared");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let migrator = six_hundred_things(&moto, &names, shared_step).await;

    // A first run stops after the export: its transform refuses an item.
    REFUSE_ONE.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = migrator.run(&migrations(shared_step()), Some(2)).await;
    REFUSE_ONE.store(false, std::sync::atomic::Ordering::SeqCst);
    let error = format!("{:#}", refused.unwrap_err());
    assert!(error.contains("refused on purpose, once") && error.contains("nothing was imported"), "{error}");
    assert_eq!(split_export(&moto, 6).await, 600);
    support::rerun(&migrator.ledger(), &migrations(shared_step()), 2).await;

    // The run only waits and takes over files whose worker stopped renewing its lease (as
    // `migrate --workers-only`); a worker process joins, claims its share and stalls in them.
    let run = moto
        .migrator(&names)
        .with_sharing(Sharing::Open { work: false, workers: 2, max_write_units: None })
        .with_segment_lease(Duration::from_secs(3));
    let run = tokio::spawn(async move { run.run(&migrations(shared_step()), Some(2)).await });
    // The worker transforms only files it claimed: it holds at least one, which it never ends.
    kill_once_stalled("child_process_working_export_files", (WORKER_CHILD_ENV, WORKER_STALL_ENV), &moto, &names).await;

    // A worker in this process shares the rest with the run, which takes the killed worker's
    // files over once their leases stand still.
    let options = WorkerOptions {
        wait_for_run: Duration::from_secs(60),
        poll: Duration::from_millis(100),
        export: Some(moto.place.clone()),
        ..WorkerOptions::default()
    };
    let (_, cancel) = tokio::sync::watch::channel(false);
    let worked = work_passes(&moto.client, &names, &migrations(shared_step()), &options, cancel).await.unwrap();
    // The worker ends once the run released its lock; a run that never took the killed worker's
    // files over would wait for ever.
    let done = tokio::time::timeout(Duration::from_secs(600), run).await.expect("the run ended").unwrap().unwrap();
    let mine: u64 = worked.passes.iter().map(|p| p.report.scanned).sum();
    assert!(mine > 0, "the worker transformed files: {worked:?}");

    let calls = &done.applied[0].steps[0].calls;
    assert!(!calls.iter().any(|l| l.starts_with(&format!("export of {old} started"))), "{calls:#?}");
    let summary = calls.iter().find(|l| l.starts_with(&format!("exported {old} and imported {new}: "))).unwrap();
    assert!(summary.contains("6 file(s), 600 item(s) read, 600 written"), "{summary}");
    let leases = file_leases(&moto.client, &names).await;
    let me = format!("pid {} ", std::process::id());
    assert_eq!(leases.len(), 6, "{leases:?}");
    let owners: BTreeSet<&String> = leases.iter().map(|(owner, _)| owner).collect();
    println!("6 files done by {} lease holder(s) in this test's process; its worker read {mine} item(s)", owners.len());
    assert!(leases.iter().all(|(owner, done)| *done && owner.contains(&me)), "{leases:?}");
    migrator.sync(&migrations(shared_step()), None).await.unwrap();
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_fails_fails_the_rebuild_by_name_and_its_rerun_exports_again() {
    let Some(moto) = moto("export_failed").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    // moto's exports always complete: a proxy in front of it says this one FAILED, as AWS does
    // when the bucket's policy refuses DynamoDB.
    let proxy = crate::rules_proxy::RulesProxy::start(support::moto_endpoint().unwrap()).await;
    let client = crate::rules_proxy::client_of(&proxy).await;
    let names = support::names("export_failed");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test")
        .with_streams(moto.streams.clone())
        .with_export(moto.place.clone());
    let step = plain_step;
    migrator.run(&migrations(step()), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone()).put_items("things", (0..50).map(textual).collect()).await.unwrap();
    moto.point_in_time_recovery(&old).await;

    proxy.fail_exports(Some(("S3AccessDenied", "Access Denied to the bucket")));
    let error = format!("{:#}", migrator.run(&migrations(step()), Some(2)).await.unwrap_err());
    assert!(error.contains(&format!(" of {old} failed: S3AccessDenied Access Denied to the bucket")), "{error}");
    assert!(error.contains("nothing was imported"), "{error}");
    assert!(error.contains("`cargo xtask recover --env <environment> --version 2 --rerun`"), "{error}");
    assert!(!exists(&moto.client, &new).await);

    // The rerun starts a new export (the failed one is not followed again) and goes on to the end.
    proxy.fail_exports(None);
    support::rerun(&migrator.ledger(), &migrations(step()), 2).await;
    let done = migrator.run(&migrations(step()), Some(2)).await.unwrap();
    let calls = &done.applied[0].steps[0].calls;
    assert!(calls.iter().any(|l| l.starts_with(&format!("export of {old} started"))), "{calls:#?}");
    let summary = calls.iter().find(|l| l.starts_with(&format!("exported {old} and imported {new}: "))).unwrap();
    assert!(summary.contains("1 file(s), 50 item(s) read, 50 written"), "{summary}");
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
}

/// The rebuild through the export, with the typed transform and nothing else.
pub(crate) fn plain_step() -> RebuildStep {
    RebuildStep::convert(v2(), |w: Textual| Some(Kinded { whole: w, kind: "thing" })).via_export()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_with_local_workers_only_has_them_transform_the_export_files_through_the_command_line() {
    use crate::environments::cli;
    let Some(moto) = moto("export_cli").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    let names = support::names("export_cli");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    // DynamoDB behind the rules proxy, which keeps the export's and the import's requests; the
    // bucket encrypted with a KMS key of its own and owned by moto's account.
    let proxy = crate::rules_proxy::RulesProxy::start(support::moto_endpoint().unwrap()).await;
    let key = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    let owner = "123456789012";
    let more = format!("kms_key = \"{key}\"\nbucket_owner = \"{owner}\"\n");
    let file = environments_on_moto(&moto, &names, "export-cli", &proxy.endpoint(), Some(&more));
    let file = file.to_str().unwrap();
    let args = |more: &[&'static str]| [more, &["--env", "dev", "--environments", file][..]].concat();
    things_on_moto(&moto, &names, file).await;

    let command = crate::workers::worker_command();
    let child = cli(
        "export:shared",
        &args(&["migrate", "--target", "2", "--workers", "2", "--workers-only", "--format", "json"]),
        &[("DYNAMO_MIGRATE_WORKER_COMMAND", command.as_str())],
    )
    .spawn()
    .unwrap();
    let migrated = ended_within(child, Duration::from_secs(600)).await;
    let _ = std::fs::remove_file(file);
    assert_eq!(migrated.code, 0, "{}\n{}", migrated.stdout, migrated.stderr);
    let report: serde_json::Value = serde_json::from_str(&migrated.stdout).unwrap();
    // The run transformed no file itself (`--workers-only`): its workers did, with the
    // environment's bucket, and each ended well.
    let ended = report["local_workers"].as_array().unwrap();
    assert_eq!(ended.len(), 2, "{report}");
    assert!(ended.iter().all(|w| w.as_str().unwrap().ends_with("exit status: 0")), "{ended:?}");
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));

    // The export was asked to encrypt with the key, into the bucket of that owner; the import to
    // read the bucket of that owner; every part the workers wrote is encrypted with the key.
    let exports = proxy.requests("ExportTableToPointInTime");
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert_eq!(
        (&exports[0]["S3SseAlgorithm"], &exports[0]["S3SseKmsKeyId"], &exports[0]["S3BucketOwner"]),
        (&serde_json::json!("KMS"), &serde_json::json!(key), &serde_json::json!(owner)),
        "{}",
        exports[0]
    );
    let imports = proxy.requests("ImportTable");
    assert_eq!(imports.len(), 1, "{imports:?}");
    assert_eq!(imports[0]["S3BucketSource"]["S3BucketOwner"], serde_json::json!(owner), "{}", imports[0]);
    let s3 = &moto.place.s3;
    let listed = s3.list_objects_v2().bucket(&moto.place.bucket).prefix("dynamo-migrate/test/").send().await.unwrap();
    let parts: Vec<&str> =
        listed.contents().iter().filter_map(|o| o.key()).filter(|k| k.contains("/transformed/data/")).collect();
    assert!(!parts.is_empty(), "no parts: {listed:?}");
    for part in parts {
        let head = s3.head_object().bucket(&moto.place.bucket).key(part).send().await.unwrap();
        assert_eq!(
            (head.server_side_encryption().map(|e| e.as_str()), head.ssekms_key_id()),
            (Some("aws:kms"), Some(key)),
            "{part}"
        );
    }
}

/// An environments file whose `dev` is moto (DynamoDB at `dynamodb`: moto, or a proxy in front of
/// it), with its bucket for exports and `more` of `[dev.exports]`, or without a bucket.
fn environments_on_moto(
    moto: &Moto,
    names: &TableNames,
    name: &str,
    dynamodb: &str,
    exports: Option<&str>,
) -> std::path::PathBuf {
    let endpoint = support::moto_endpoint().unwrap();
    let file = std::env::temp_dir().join(format!("environments-{}-{name}.toml", std::process::id()));
    let mut text =
        format!("[dev]\nregion = \"us-east-1\"\nendpoint = \"{dynamodb}\"\ntable_prefix = \"{}\"\n", names.prefix());
    if let Some(more) = exports {
        text += &format!(
            "\n[dev.exports]\nbucket = \"{}\"\nprefix = \"dynamo-migrate/test\"\ns3_endpoint = \"{endpoint}\"\n{more}",
            moto.place.bucket
        );
    }
    std::fs::write(&file, text).unwrap();
    file
}

/// Migration 1 through the command line, 300 items in `things`, point-in-time recovery on.
async fn things_on_moto(moto: &Moto, names: &TableNames, environments: &str) {
    let environments = environments.to_owned();
    // Waited for off the runtime: DynamoDB may be a proxy served by this test's runtime.
    let output = tokio::task::spawn_blocking(move || {
        let args = ["migrate", "--target", "1", "--env", "dev", "--environments", &environments];
        crate::environments::cli("export:shared", &args, &[]).output().unwrap()
    });
    let created = crate::environments::finished(output.await.unwrap());
    assert_eq!(created.code, 0, "{}", created.stderr);
    DataContext::new(moto.client.clone(), names.clone())
        .put_items("things", (0..300).map(textual).collect())
        .await
        .unwrap();
    moto.point_in_time_recovery(&names.physical("things")).await;
}

/// The child's end, or a failure naming what it said when it runs past `limit` (a run whose
/// workers cannot transform a file waits for them).
pub(crate) async fn ended_within(mut child: std::process::Child, limit: Duration) -> crate::environments::Run {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!(
                "the child did not end in {limit:?}: {:?}",
                crate::environments::finished(child.wait_with_output().unwrap()).stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::environments::finished(child.wait_with_output().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_environment_names_no_bucket_refuses_the_export_files_and_another_does_them() {
    use crate::environments::cli;
    let Some(moto) = moto("export_nobucket").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    let names = support::names("export_nobucket");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let endpoint = support::moto_endpoint().unwrap();
    let with = environments_on_moto(&moto, &names, "export-bucket", endpoint, Some(""));
    let without = environments_on_moto(&moto, &names, "export-nobucket", endpoint, None);
    let (with, without) = (with.to_str().unwrap(), without.to_str().unwrap());
    things_on_moto(&moto, &names, with).await;

    // The run waits for workers started elsewhere, and transforms no file itself.
    let run = cli(
        "export:shared",
        &[
            "migrate",
            "--target",
            "2",
            "--workers",
            "external",
            "--workers-only",
            "--env",
            "dev",
            "--environments",
            with,
        ],
        &[],
    )
    .spawn()
    .unwrap();
    let worker = |environments: &str| {
        let args = ["worker", "--wait-for-run", "300", "--env", "dev", "--environments", environments];
        cli("export:shared", &args, &[]).spawn().unwrap()
    };
    let refused = ended_within(worker(without), Duration::from_secs(600)).await;
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains(&format!(
            "{old}: the pass open to workers (step 0, export files) is the export files of its rebuild, and this worker's environment names no bucket for exports: start the worker with the run's environments.toml"
        )),
        "{}",
        refused.stderr
    );
    let worked = ended_within(worker(with), Duration::from_secs(600)).await;
    assert_eq!(worked.code, 0, "{}", worked.stderr);
    let migrated = ended_within(run, Duration::from_secs(600)).await;
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
    let _ = std::fs::remove_file(with);
    let _ = std::fs::remove_file(without);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waits_in_the_export_files_pass_while_the_export_runs_and_then_does_the_files() {
    let Some(moto) = moto("export_wait").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    // An export takes minutes to hours on AWS: the proxy holds this one IN_PROGRESS.
    let proxy = crate::rules_proxy::RulesProxy::start(support::moto_endpoint().unwrap()).await;
    let client = crate::rules_proxy::client_of(&proxy).await;
    let names = support::names("export_wait");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test")
        .with_streams(moto.streams.clone())
        .with_export(moto.place.clone());
    migrator.run(&migrations(plain_step()), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone()).put_items("things", (0..300).map(textual).collect()).await.unwrap();
    moto.point_in_time_recovery(&old).await;

    proxy.hold_exports(true);
    let run = migrator
        .with_sharing(Sharing::Open { work: false, workers: 1, max_write_units: None })
        .with_segment_lease(Duration::from_secs(3));
    let run = tokio::spawn(async move { run.run(&migrations(plain_step()), Some(2)).await });
    // The files' pass is open before the export has ended.
    let ledger = Ledger::new(moto.client.clone(), &names);
    let started = std::time::Instant::now();
    loop {
        let open = dynamo_migrate::run::open_pass(&ledger).await.unwrap();
        if open.is_some_and(|open| open.open && open.pass == "step 0, export files") {
            break;
        }
        assert!(!run.is_finished(), "the run ended: {:?}", run.await);
        assert!(started.elapsed() < Duration::from_secs(300), "the export files' pass did not open in 5 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A worker whose idle time is shorter than the export stays in the pass, waiting for its
    // files; the run claims nothing itself (workers-only), so it ends only if the worker did them.
    let options = WorkerOptions {
        idle: Duration::from_secs(1),
        poll: Duration::from_millis(100),
        export: Some(moto.place.clone()),
        ..WorkerOptions::default()
    };
    let (_, cancel) = tokio::sync::watch::channel(false);
    let (client_of_worker, names_of_worker) = (moto.client.clone(), names.clone());
    let worker = tokio::spawn(async move {
        work_passes(&client_of_worker, &names_of_worker, &migrations(plain_step()), &options, cancel).await
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!worker.is_finished(), "the worker left while the export ran: {:?}", worker.await);
    proxy.hold_exports(false);
    let done = tokio::time::timeout(Duration::from_secs(600), run).await.expect("the run ended").unwrap().unwrap();
    let worked = worker.await.unwrap().unwrap();
    let mine: u64 = worked.passes.iter().map(|p| p.report.scanned).sum();
    assert_eq!(mine, 300, "{worked:?}");
    let summary = done.applied[0].steps[0]
        .calls
        .iter()
        .find(|l| l.starts_with(&format!("exported {old} and imported {new}: ")))
        .unwrap()
        .clone();
    assert!(summary.contains("1 file(s), 300 item(s) read, 300 written"), "{summary}");
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
}

/// How far ahead of the system's clock the bridge test's rebuild reads the time.
static CLOCK_AHEAD_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn system_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn clock_ahead() -> u64 {
    system_ms() + CLOCK_AHEAD_MS.load(std::sync::atomic::Ordering::SeqCst)
}

/// `value` in DynamoDB JSON, as an export's lines hold it (no binary: `textual` items have none).
fn dynamodb_json(value: &A) -> serde_json::Value {
    use serde_json::json;
    match value {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::Ss(s) => json!({ "SS": s }),
        A::Ns(n) => json!({ "NS": n }),
        A::M(m) => json!({ "M": item_json(m) }),
        A::L(l) => json!({ "L": l.iter().map(dynamodb_json).collect::<Vec<_>>() }),
        A::Null(n) => json!({ "NULL": n }),
        A::Bool(b) => json!({ "BOOL": b }),
        other => panic!("not in a textual item: {other:?}"),
    }
}

fn item_json(item: &Item) -> serde_json::Value {
    serde_json::Value::Object(item.iter().map(|(k, v)| (k.clone(), dynamodb_json(v))).collect())
}

/// Writes, for the incremental export `export` that moto answered with a full one, the files
/// AWS writes: one gzip'd data file of `records` (keys, the item at the window's end, at its
/// start), `manifest-files.json` and `manifest-summary.json` under `AWSDynamoDB/<export id>/`.
async fn write_incremental_export(
    place: &ExportPlace,
    export: &crate::rules_proxy::IncrementalExport,
    records: &[(Item, Option<Item>, Option<Item>)],
) {
    use std::io::Write as _;
    let id = export.arn.rsplit('/').next().unwrap();
    let folder = format!("{}/AWSDynamoDB/{id}", export.prefix.trim_end_matches('/'));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for (keys, new, old) in records {
        let mut line = serde_json::json!({
            "Metadata": { "WriteTimestampMicros": { "N": (export.from_ms * 1000 + 1).to_string() } },
            "Keys": item_json(keys),
        });
        if let Some(new) = new {
            line["NewImage"] = item_json(new);
        }
        if let Some(old) = old {
            line["OldImage"] = item_json(old);
        }
        writeln!(gz, "{line}").unwrap();
    }
    let data_key = format!("{folder}/data/a1b2c3d4e5f6g7h8i9j0k1l2m3.json.gz");
    let files_key = format!("{folder}/manifest-files.json");
    let manifest_files = serde_json::json!({
        "itemCount": records.len(), "md5Checksum": "sQMSpEILNgoQmarvDFonGQ==", "etag": "0f0e-1", "dataFileS3Key": data_key,
    });
    let summary = serde_json::json!({
        "version": "2023-08-01", "exportArn": export.arn, "s3Bucket": export.bucket, "s3Prefix": export.prefix,
        "manifestFilesS3Key": files_key, "itemCount": records.len(), "outputFormat": "DYNAMODB_JSON",
        "outputView": export.view, "exportType": "INCREMENTAL_EXPORT",
    });
    for (key, body) in [
        (data_key, gz.finish().unwrap()),
        (files_key, format!("{manifest_files}\n").into_bytes()),
        (format!("{folder}/manifest-summary.json"), summary.to_string().into_bytes()),
    ] {
        place.s3.put_object().bucket(&export.bucket).key(key).body(body.into()).send().await.unwrap();
    }
}

/// Waits (bounded) until the proxy has let through `count` incremental exports.
async fn incremental_exports(
    proxy: &crate::rules_proxy::RulesProxy,
    count: usize,
    run: &tokio::task::JoinHandle<Result<dynamo_migrate::run::RunReport, dynamo_migrate::run::RunFailure>>,
) -> Vec<crate::rules_proxy::IncrementalExport> {
    let started = std::time::Instant::now();
    loop {
        let exports = proxy.incremental_exports();
        if exports.len() >= count {
            return exports;
        }
        assert!(!run.is_finished(), "the run ended before incremental export {count} was asked for");
        assert!(started.elapsed() < Duration::from_secs(300), "incremental export {count} not asked for in 5 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_import_ends_a_day_after_its_export_bridges_the_gap_by_incremental_exports() {
    let Some(moto) = moto("export_bridge").await else {
        println!("skipped: moto's server is not installed, so there is no export or import");
        return;
    };
    // The proxy holds the exports while the test writes and moves the clock, refuses incremental
    // windows AWS refuses, and trims the stream as AWS does after 24 hours.
    let proxy = crate::rules_proxy::RulesProxy::start(support::moto_endpoint().unwrap()).await;
    let client = crate::rules_proxy::client_of(&proxy).await;
    let streams = connect_streams(&Target::local(proxy.endpoint())).await;
    let names = support::names("export_bridge");
    let (old, new) = (names.physical("things"), names.physical_version("things", 2));
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test")
        .with_streams(streams)
        .with_export(moto.place.clone())
        .with_clock(clock_ahead);
    migrator.run(&migrations(plain_step()), Some(1)).await.unwrap();
    DataContext::new(client.clone(), names.clone()).put_items("things", (0..120).map(textual).collect()).await.unwrap();
    moto.point_in_time_recovery(&old).await;

    proxy.hold_exports(true);
    let run = {
        let migrator = migrator.clone();
        tokio::spawn(async move { migrator.run(&migrations(plain_step()), Some(2)).await })
    };
    let started = std::time::Instant::now();
    while proxy.passed("ExportTableToPointInTime") == 0 {
        assert!(!run.is_finished(), "the run ended before its export: {:?}", run.await);
        assert!(started.elapsed() < Duration::from_secs(300), "no export in 5 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While the export runs, the application changes the old table: 10 items changed, 5 deleted,
    // 5 added. Then 40 hours pass (the rebuild's clock), and the stream keeps none of it.
    let before: HashMap<String, Item> =
        all_items(&moto.client, &old).await.into_iter().map(|i| (format!("{:?}", i["id"]), i)).collect();
    for i in 0..10u64 {
        let mut changed = textual(i * 11);
        changed.insert("name".to_owned(), A::S(format!("changed {i}")));
        moto.client.put_item().table_name(&old).set_item(Some(changed)).send().await.unwrap();
        if i < 5 {
            let gone = A::S(format!("item-{:05}", 100 + i));
            moto.client.delete_item().table_name(&old).key("id", gone).send().await.unwrap();
            moto.client.put_item().table_name(&old).set_item(Some(textual(5000 + i))).send().await.unwrap();
        }
    }
    let after: HashMap<String, Item> =
        all_items(&moto.client, &old).await.into_iter().map(|i| (format!("{:?}", i["id"]), i)).collect();
    let mut changes = Vec::new();
    for key in before.keys().chain(after.keys().filter(|k| !before.contains_key(*k))) {
        let (was, now) = (before.get(key), after.get(key));
        if was != now {
            let id = was.or(now).unwrap()["id"].clone();
            changes.push((Item::from([("id".to_owned(), id)]), now.cloned(), was.cloned()));
        }
    }
    assert_eq!(changes.len(), 20);
    CLOCK_AHEAD_MS.store(40 * 3_600_000, std::sync::atomic::Ordering::SeqCst);
    proxy.trim_stream_before(Some(system_ms() + 1));
    proxy.hold_exports(false);

    // The first window: the day from the export time, holding every change. Its export fails
    // first (as AWS's does when the bucket refuses it): the run fails naming it, and its rerun
    // asks again for the same window, with a token and a folder of its own.
    let failed = incremental_exports(&proxy, 1, &run).await[0].clone();
    assert_eq!(failed.to_ms - failed.from_ms, 24 * 3_600_000, "{failed:?}");
    assert!(failed.from_ms <= system_ms(), "it starts at the export time: {failed:?}");
    assert_eq!(failed.view, "NEW_AND_OLD_IMAGES");
    let folder = format!("dynamo-migrate/test/{new}/m0002-step000/incremental-{}", failed.from_ms);
    assert_eq!(failed.prefix, folder);
    proxy.fail_exports(Some(("S3AccessDenied", "Access Denied to the bucket")));
    proxy.deliver_export(&failed.arn);
    let error = tokio::time::timeout(Duration::from_secs(600), run).await.expect("the run ended").unwrap().unwrap_err();
    let error = format!("{:#}", error.error);
    assert!(error.contains(&format!("the export {} of {old} failed: S3AccessDenied", failed.arn)), "{error}");
    assert!(error.contains("`cargo xtask recover --env <environment> --version 2 --rerun`"), "{error}");
    proxy.fail_exports(None);
    support::rerun(&migrator.ledger(), &migrations(plain_step()), 2).await;
    let run = {
        let migrator = migrator.clone();
        tokio::spawn(async move { migrator.run(&migrations(plain_step()), Some(2)).await })
    };
    let first = incremental_exports(&proxy, 2, &run).await[1].clone();
    assert_eq!((first.from_ms, first.to_ms), (failed.from_ms, failed.to_ms));
    assert_eq!(first.prefix, format!("{folder}-1"));
    assert_eq!(proxy.passed("ExportTableToPointInTime"), 3, "the full export is not asked for again");
    // The application goes on writing while the bridge runs: 3 items changed, 1 deleted. These
    // records are after the trim, so the stream's catch-up after the bridge brings them.
    for i in 0..3u64 {
        let mut changed = textual(60 + i);
        changed.insert("name".to_owned(), A::S(format!("changed during the bridge {i}")));
        moto.client.put_item().table_name(&old).set_item(Some(changed)).send().await.unwrap();
    }
    moto.client.delete_item().table_name(&old).key("id", A::S("item-00070".to_owned())).send().await.unwrap();
    // An export that completes with files that are no incremental export's (here moto's own
    // full export) is refused by name, nothing of it applied; the rerun reads the same export
    // again, without asking for another.
    proxy.deliver_export(&first.arn);
    let error = tokio::time::timeout(Duration::from_secs(600), run).await.expect("the run ended").unwrap().unwrap_err();
    let error = format!("{:#}", error.error);
    assert!(error.contains(&format!("{} is not an incremental export", first.arn)), "{error}");
    assert!(error.contains("nothing of it was applied"), "{error}");
    assert!(error.contains(&format!("aws dynamodb describe-export --export-arn {}", first.arn)), "{error}");
    assert!(error.contains("`cargo xtask recover --env <environment> --version 2 --rerun`"), "{error}");
    write_incremental_export(&moto.place, &first, &changes).await;
    support::rerun(&migrator.ledger(), &migrations(plain_step()), 2).await;
    let run = {
        let migrator = migrator.clone();
        tokio::spawn(async move { migrator.run(&migrations(plain_step()), Some(2)).await })
    };
    // The second: from the end of the first to (nearly) now, nothing changed in it.
    let second = incremental_exports(&proxy, 3, &run).await[2].clone();
    assert_eq!(second.from_ms, first.to_ms, "contiguous: {second:?}");
    assert!(second.to_ms <= clock_ahead() && second.to_ms > clock_ahead() - 3_600_000, "{second:?}");
    write_incremental_export(&moto.place, &second, &[]).await;
    proxy.deliver_export(&second.arn);

    let done = tokio::time::timeout(Duration::from_secs(600), run).await.expect("the run ended").unwrap().unwrap();
    let calls = &done.applied[0].steps[0].calls;
    for line in calls {
        println!("rebuild: {line}");
    }
    let bridged: Vec<&String> =
        calls.iter().filter(|l| l.starts_with(&format!("bridged the changes of {old}"))).collect();
    assert_eq!(bridged.len(), 2, "{calls:#?}");
    assert!(bridged[0].contains("20 record(s), 15 put(s), 5 delete(s)"), "{}", bridged[0]);
    assert_eq!(proxy.refusals(), vec![], "every window is one AWS accepts");
    // Nothing was left for the check to repair: the bridge brought every change before the trim,
    // and the stream, trimmed, brought those after it.
    let check = done.applied[0].steps[0].check.as_ref().unwrap();
    assert_eq!((check.missing, check.extra, check.different, check.repaired), (0, 0, 0, 0), "{check:?}");
    let replayed = done.applied[0].steps[0].replay.unwrap();
    assert_eq!((replayed.puts, replayed.deletes), (3, 1), "the writes beside the bridge, and no other: {replayed:?}");
    let expected: Vec<Item> = all_items(&moto.client, &old).await.iter().map(kinded).collect();
    assert_eq!(expected.len(), 119);
    assert_eq!(content_hash(&moto.client, &new).await, expected_hash(&expected));
}
