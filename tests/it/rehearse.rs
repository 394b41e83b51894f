//! `rehearse`, `status --items` and `plan`'s estimates, through the command line in child
//! processes. "prod" is an environment on a DynamoDB Local of its own, reached through the fault
//! proxy, which counts every operation that reaches it and answers any write with an error: a
//! rehearsal must send it nothing but reads. The rehearsal starts a DynamoDB Local of its own for
//! its copy. Tests that apply the example's migrations (TTL on) do it on prod's server too, and
//! delete their tables at their end, since DynamoDB Local stops creating indexes once a few tables
//! with TTL on are left (see `support::rules_endpoint`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::local::{Docker, DynamoDbLocal, LocalOptions};
use dynamo_migrate::rehearse::{Sample, SampleOptions};
use dynamo_migrate::run::{Migrator, READ_OPERATIONS, TableNames, Target};
use dynamo_migrate::{
    DataContext, DataStep, Destructive, KeyAttr, Migration, Number, Project, RebuildStep, TableDef, TableSchema,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app_writer::{AppWriter, WriterOptions, summary};
use crate::environments::{Envs, Run, cli, finished, run};
use crate::fault_proxy::{FaultProxy, Faults};
use crate::support::{self, Item, content_hash};

static PROD: OnceLock<DynamoDbLocal> = OnceLock::new();

/// The DynamoDB Local that plays production: a server of its own, so that what reaches it is
/// only what the test sends and what a rehearsal sends through the proxy.
fn prod_endpoint() -> &'static str {
    PROD.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let options = LocalOptions { docker: Docker::Never, ..LocalOptions::default() };
            runtime.block_on(DynamoDbLocal::start(&options)).expect("DynamoDB Local starts")
        })
        .join()
        .unwrap()
    })
    .endpoint()
}

async fn prod_client() -> Client {
    dynamo_migrate::run::connect(&Target::local(prod_endpoint())).await
}

/// Every DynamoDB operation that changes something; the proxy answers each with a server error.
const WRITES: [&str; 18] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "ExecuteStatement",
    "BatchExecuteStatement",
    "ExecuteTransaction",
    "CreateTable",
    "UpdateTable",
    "DeleteTable",
    "UpdateTimeToLive",
    "UpdateContinuousBackups",
    "TagResource",
    "UntagResource",
    "CreateBackup",
    "RestoreTableFromBackup",
    "PutResourcePolicy",
];

/// A proxy in front of prod that refuses every write and counts what reaches it.
async fn guarded_prod() -> FaultProxy {
    FaultProxy::start(prod_endpoint(), Faults { server_error: 1.0, ..Faults::default() }, &WRITES).await
}

/// Asserts that only reads reached prod through `proxy`.
fn only_reads_reached(proxy: &FaultProxy) {
    let seen = proxy.operations();
    let writes: Vec<_> = seen.keys().filter(|op| !READ_OPERATIONS.contains(&op.as_str())).collect();
    assert!(writes.is_empty(), "operations other than reads reached prod: {seen:?}");
    assert_eq!(proxy.stats().server_errors, 0, "{seen:?}");
    assert!(seen.contains_key("Scan"), "the rehearsal read prod: {seen:?}");
}

/// An environments file with `prod` (protected: a rehearsal needs no `--yes`, since it only
/// reads) and `empty` (another prefix, nothing in it) on `endpoint`.
struct ProdEnvs {
    path: PathBuf,
}

impl ProdEnvs {
    fn new(names: &TableNames, endpoint: &str) -> ProdEnvs {
        let path = std::env::temp_dir().join(format!("environments-{}-{}.toml", std::process::id(), names.prefix()));
        let text = format!(
            "[prod]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\nprotected = true\n\n\
             [empty]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}empty_\"\n",
            prefix = names.prefix(),
        );
        std::fs::write(&path, text).unwrap();
        ProdEnvs { path }
    }

    fn file(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ProdEnvs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs the command line in a child process without blocking this test's runtime, where the proxy
/// runs.
async fn run_beside(project: &'static str, args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        finished(cli(project, &args, &[]).output().unwrap())
    })
    .await
    .unwrap()
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// Each table with `names`' prefix: its definition and its content, read consistently.
async fn dump(client: &Client, names: &TableNames) -> String {
    let mut out = String::new();
    for table in dynamo_migrate::schema_steps::list_tables(client).await.unwrap() {
        if !table.starts_with(names.prefix()) {
            continue;
        }
        let described = client.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
        let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
        out.push_str(&format!(
            "{table}: keys {:?}, attributes {:?}, GSIs {:?}, LSIs {:?}, stream {:?}, billing {:?}, TTL {:?}, {}\n",
            described.key_schema,
            described.attribute_definitions,
            described
                .global_secondary_indexes
                .map(|g| g.into_iter().map(|g| (g.index_name, g.key_schema)).collect::<Vec<_>>()),
            described
                .local_secondary_indexes
                .map(|l| l.into_iter().map(|l| (l.index_name, l.key_schema)).collect::<Vec<_>>()),
            described.stream_specification,
            described.billing_mode_summary.and_then(|b| b.billing_mode),
            ttl.time_to_live_description,
            content_hash(client, &table).await,
        ));
    }
    out
}

// The test project: 1 creates customers (applied in prod before each test), 2 backfills
// email_normalised in place, 3 rebuilds customers as version 2 with a `profile` record, 4 deletes
// version 1. "strict" is as first written; "fixed" holds what prod's old items hold; the schema
// crate's type of "fixed" still reads `weight` as an f64, that of "fixed_schema" exactly.

#[derive(Serialize, Deserialize)]
struct Before {
    customer_nr: u64,
    name: String,
    email: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct Backfilled {
    customer_nr: u64,
    name: String,
    email: String,
    email_normalised: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<f64>,
}

/// The fixed shapes: an optional email, tags as the string set they are, weights exactly, and the
/// nickname some old items carry.
#[derive(Serialize, Deserialize)]
struct FixedBefore {
    customer_nr: u64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, with = "dynamo_migrate::serde_dynamo::string_set", skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct FixedBackfilled {
    customer_nr: u64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    email_normalised: String,
    #[serde(default, with = "dynamo_migrate::serde_dynamo::string_set", skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

#[derive(Serialize)]
struct Profile<T> {
    #[serde(flatten)]
    customer: T,
    record: &'static str,
}

/// The schema crate's customer, version 2.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Customer {
    customer_nr: u64,
    record: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    email_normalised: String,
    #[schemars(with = "Vec<String>")]
    #[serde(default, with = "dynamo_migrate::serde_dynamo::string_set", skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

/// The same, reading weights exactly.
#[derive(Serialize, Deserialize, JsonSchema)]
struct ExactCustomer {
    customer_nr: u64,
    record: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    email_normalised: String,
    #[schemars(with = "Vec<String>")]
    #[serde(default, with = "dynamo_migrate::serde_dynamo::string_set", skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    weight: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

fn v2() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr")).version(2).sort_key(KeyAttr::s("record"))
}

fn create() -> Migration {
    Migration::new(1, "create_customers", "create customers")
        .create_table(TableDef::new("customers", KeyAttr::n("customer_nr")))
}

/// The test projects (see above), `rehearse:<name>`.
pub fn project(name: &str) -> Project {
    let fixed = name != "rehearse:strict";
    let backfill = if fixed {
        DataStep::new("backfill_email_normalised", |ctx| async move {
            let f = |b: FixedBefore| {
                let email_normalised = b.email.as_deref().unwrap_or_default().trim().to_lowercase();
                let FixedBefore { customer_nr, name, email, tags, weight, nickname } = b;
                Some(FixedBackfilled { customer_nr, name, email, email_normalised, tags, weight, nickname })
            };
            Ok(ctx.backfill("customers", f).await?)
        })
    } else {
        DataStep::new("backfill_email_normalised", |ctx| async move {
            let f = |b: Before| {
                let email_normalised = b.email.trim().to_lowercase();
                let Before { customer_nr, name, email, tags, weight } = b;
                Some(Backfilled { customer_nr, name, email, email_normalised, tags, weight })
            };
            Ok(ctx.backfill("customers", f).await?)
        })
    };
    let rebuild = if fixed {
        RebuildStep::convert(v2(), |customer: FixedBackfilled| Some(Profile { customer, record: "profile" }))
    } else {
        RebuildStep::convert(v2(), |customer: Backfilled| Some(Profile { customer, record: "profile" }))
    };
    let source = |what: &str| format!("{what} {}", if fixed { "fixed" } else { "strict" });
    let migrations = vec![
        create(),
        Migration::new(2, "backfill_email_normalised", &source("backfill")).data(backfill),
        Migration::new(3, "rebuild_customers_with_records", &source("rebuild")).rebuild_table(rebuild),
        Migration::new(4, "delete_customers_v1", "delete v1").delete_old_table(
            "customers",
            1,
            Destructive::because("version 2 holds every customer"),
        ),
    ];
    let tables = match name {
        "rehearse:fixed_schema" => vec![TableSchema::new::<ExactCustomer>(v2())],
        _ => vec![TableSchema::new::<Customer>(v2())],
    };
    match name {
        "rehearse:light" => light(),
        "rehearse:not_idempotent" => Project {
            tables,
            migrations: vec![create(), Migration::new(2, "count_visits", "count").data(count_visits())],
        },
        "rehearse:strict" | "rehearse:fixed" | "rehearse:fixed_schema" => Project { tables, migrations },
        other => panic!("no project {other}"),
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// A customer as the application has always written it.
fn good(i: u64) -> Item {
    Item::from([
        ("customer_nr".to_owned(), n(i)),
        ("name".to_owned(), s(&format!("Customer {i}"))),
        ("email".to_owned(), s(&format!(" Customer.{i}@Example.com"))),
        ("weight".to_owned(), n(format!("{}.5", i % 90))),
    ])
}

/// The four items that old writers left, each refused by "strict" for its own attribute.
fn bad() -> Vec<(u64, &'static str, Item)> {
    let with = |i: u64, name: &str, value: Option<AttributeValue>| {
        let mut item = good(i);
        match value {
            Some(value) => item.insert(name.to_owned(), value),
            None => item.remove(name),
        };
        item
    };
    vec![
        (1_000_001, "tags", with(1_000_001, "tags", Some(AttributeValue::Ss(vec!["vip".into(), "eu".into()])))),
        (1_000_002, "weight", with(1_000_002, "weight", Some(n("12345678901234567890.123456789")))),
        (1_000_003, "email", with(1_000_003, "email", None)),
        (1_000_004, "nickname", with(1_000_004, "nickname", Some(s("Ada")))),
    ]
}

/// Prod with migration 1 applied and `good` customers plus the bad ones.
async fn seed_prod(names: &TableNames, good_items: u64) -> Vec<Item> {
    let client = prod_client().await;
    Migrator::new(client.clone(), names.clone(), true, "the test")
        .run(&project("rehearse:strict").migrations, Some(1))
        .await
        .unwrap();
    let mut items: Vec<Item> = (0..good_items).map(good).collect();
    items.extend(bad().into_iter().map(|(_, _, item)| item));
    DataContext::new(client, names.clone()).put_items("customers", items.clone()).await.unwrap();
    items
}

/// The failures a rehearsal's JSON lists for step 0 of migration `version`: key and error.
fn failures(report: &serde_json::Value, version: u64) -> Vec<(String, String)> {
    let migration = report["migrations"].as_array().unwrap().iter().find(|m| m["version"] == version).unwrap();
    migration["steps"][0]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_owned(), f["error"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_names_the_items_the_migrations_refuse_and_prod_sees_only_reads() {
    let names = support::names("rehearse_bad");
    seed_prod(&names, 300).await;
    let prod = prod_client().await;
    let proxy = guarded_prod().await;
    let envs = ProdEnvs::new(&names, &proxy.endpoint());
    let before = dump(&prod, &names).await;
    let args = |more: &[&str]| -> Vec<String> {
        let mut args = vec!["rehearse", "--env", "prod", "--environments", envs.file(), "--no-docker"];
        args.extend(more);
        args.into_iter().map(str::to_owned).collect()
    };

    // The migrations as first written refuse four items, each for its own attribute.
    let strict = run_beside("rehearse:strict", args(&["--all", "--format", "json"])).await;
    println!("{}", strict.stderr);
    assert_eq!(strict.code, 1, "{}{}", strict.stdout, strict.stderr);
    let document = json(&strict);
    let report = &document["report"];
    assert_eq!(report["pending"], serde_json::json!([2, 3, 4]));
    assert_eq!(report["tables"][0]["read"]["items"], 304);
    let backfill = failures(report, 2);
    let keys: BTreeSet<&str> = backfill.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["{customer_nr: 1000001}", "{customer_nr: 1000002}", "{customer_nr: 1000003}"]));
    for (key, error) in &backfill {
        let attribute = bad().into_iter().find(|(i, _, _)| key.contains(&i.to_string())).unwrap().1;
        assert!(error.contains(&format!("attribute {attribute}")), "{key}: {error}");
    }
    let rebuild = failures(report, 3);
    let nickname = rebuild.iter().find(|(k, _)| k == "{customer_nr: 1000004}").expect("the rebuild refuses 1000004");
    assert!(nickname.1.contains("nickname"), "{}", nickname.1);
    let step = &report["migrations"][0]["steps"][0];
    let pass = &step["passes"][0];
    assert_eq!((pass["report"]["scanned"].as_u64(), pass["report"]["failed"].as_u64()), (Some(304), Some(3)));
    assert_eq!(pass["estimate"]["items"], 304, "the whole table was read: nothing to extrapolate");
    let why = step["would_fail"].as_str().unwrap();
    assert_eq!(why, "3 of the environment's 304 item(s) failed, and the step accepts none");
    assert!(document["error"]["message"].as_str().unwrap().contains("`cargo xtask rehearse --env prod`"), "{document}");

    // For people: each failing item with its key and attribute, under the step it fails. A sample
    // of 300 of the 304 items holds nearly all the bad ones (that none is is about one chance in
    // ten million), and its failures are extrapolated to the table.
    let human = run_beside("rehearse:strict", args(&["--sample", "300"])).await;
    println!("{}{}", human.stdout, human.stderr);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("would fail: "), "{}", human.stdout);
    assert!(
        human.stderr.contains("error: the rehearsal found 2 problem(s) that `migrate --env prod` would meet"),
        "{}",
        human.stderr
    );
    assert!(human.stdout.contains("of the 300 item(s) read here failed (about"), "{}", human.stdout);

    // The migrations fixed: every step takes every item, but the schema crate's type still reads
    // weights as f64, which cannot hold one of them.
    let fixed = run_beside("rehearse:fixed", args(&["--sample", "1000", "--read-rate", "500"])).await;
    println!("{}{}", fixed.stdout, fixed.stderr);
    assert_eq!(fixed.code, 1);
    assert!(fixed.stdout.contains("customers: 0 difference(s); 304 item(s) read, 1 unreadable"), "{}", fixed.stdout);
    assert!(
        fixed.stdout.contains("item {customer_nr: 1000002, record: \"profile\"}: attribute weight"),
        "{}",
        fixed.stdout
    );
    assert!(!fixed.stdout.contains("would fail"), "{}", fixed.stdout);

    let passed = run_beside("rehearse:fixed_schema", args(&[])).await;
    println!("{}{}", passed.stdout, passed.stderr);
    assert_eq!(passed.code, 0, "{}{}", passed.stdout, passed.stderr);
    assert!(passed.stdout.contains("rehearsal passed"), "{}", passed.stdout);

    // prod is as it was, and only reads reached it.
    assert_eq!(dump(&prod, &names).await, before);
    only_reads_reached(&proxy);

    // An environment without a ledger: everything is pending, and nothing is created there.
    let empty =
        run_beside("rehearse:fixed_schema", args(&[]).into_iter().map(|a| a.replace("prod", "empty")).collect()).await;
    assert_eq!(empty.code, 0, "{}{}", empty.stdout, empty.stderr);
    assert!(empty.stdout.contains("applied 4 of 4 pending migration(s) to the copy"), "{}", empty.stdout);
    let tables = dynamo_migrate::schema_steps::list_tables(&prod).await.unwrap();
    assert!(!tables.iter().any(|t| t.contains("empty_")), "{tables:?}");
    support::delete_tables(&prod, &names).await;
}

/// A thing of about 300 bytes.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Thing {
    id: String,
    payload: String,
}

fn thing(i: u64) -> Item {
    Item::from([("id".to_owned(), s(&format!("thing-{i:08}"))), ("payload".to_owned(), s(&"x".repeat(270)))])
}

/// Things, and a data step that reads every one of them as its type and changes none.
fn light() -> Project {
    let look = DataStep::new("look_at_every_thing", |ctx| async move {
        Ok(ctx.pass("things").delete_where(|_: &Thing| false).await?)
    });
    Project {
        tables: vec![TableSchema::new::<Thing>(TableDef::new("things", KeyAttr::s("id")))],
        migrations: vec![
            Migration::new(1, "create_things", "create things").create_table(TableDef::new("things", KeyAttr::s("id"))),
            Migration::new(2, "look_at_every_thing", "look").data(look),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_beside_the_application_disturbs_none_of_its_writes() {
    let names = support::names("rehearse_live");
    let seed = seed_prod(&names, 2_000).await;
    let prod = prod_client().await;
    let table = names.physical("customers");
    // Slots: the 2,000 good customers, the 4 old items, then keys the application creates.
    let key = |slot: u64| match slot {
        0..2_000 => slot,
        2_000..2_004 => 1_000_001 + slot - 2_000,
        _ => 2_000_000 + slot,
    };
    let put = move |slot: u64, n: u64| {
        let mut item = good(key(slot));
        item.insert("name".to_owned(), s(&format!("Customer {}, put {n}", key(slot))));
        item
    };
    let options = WriterOptions { workers: 4, writes_per_second: 100.0, mix: (6, 2, 2), fresh_keys: 100 };
    let writer = AppWriter::start(prod.clone(), &table, &["customer_nr"], seed, "name", put, options);
    let proxy = guarded_prod().await;
    let envs = ProdEnvs::new(&names, &proxy.endpoint());
    while writer.acknowledged() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = writer.acknowledged();
    let args = ["rehearse", "--env", "prod", "--environments", envs.file(), "--all", "--no-docker"];
    let rehearsal = run_beside("rehearse:fixed_schema", args.iter().map(|a| (*a).to_owned()).collect()).await;
    let during = writer.acknowledged() - before;
    let log = writer.stop().await;
    println!("{}{}", rehearsal.stdout, rehearsal.stderr);
    assert_eq!(rehearsal.code, 0, "{}{}", rehearsal.stdout, rehearsal.stderr);
    assert!(during > 0, "the application wrote while the rehearsal ran");
    let violations = log.check(&prod, &table, &[], |_| Ok(())).await;
    assert!(violations.is_empty(), "{}", summary(&violations));
    println!("application: {} acknowledged ({during} during the rehearsal), {:?}", log.acknowledged(), log.counts());
    only_reads_reached(&proxy);
    support::delete_tables(&prod, &names).await;
}

#[tokio::test]
async fn a_sample_is_spread_over_the_key_space_and_all_reads_every_item() {
    let names = support::names("rehearse_sample");
    let client = support::client().await;
    let table = names.physical("things");
    support::create_table(&client, &table, false).await;
    let items: Vec<Item> = (0..5_000).map(thing).collect();
    DataContext::new(client.clone(), names.clone()).put_items("things", items).await.unwrap();
    let reader = dynamo_migrate::run::read_only(&client, "the test's table");
    let id = |item: &Item| match &item["id"] {
        AttributeValue::S(id) => id.clone(),
        other => panic!("{other:?}"),
    };
    let sample_in = |sample: Sample, segments: Option<u32>| {
        let (reader, table) = (reader.clone(), table.clone());
        async move {
            let keys = std::sync::Mutex::new(Vec::new());
            let options = SampleOptions { segments, ..SampleOptions::default() };
            let report = dynamo_migrate::rehearse::read_sample(&reader, &table, sample, &options, |page| {
                keys.lock().unwrap().extend(page.iter().map(id));
                std::future::ready(Ok(()))
            })
            .await
            .unwrap();
            (report, keys.into_inner().unwrap())
        }
    };
    let sample = |sample: Sample| sample_in(sample, None);

    // The first 200 keys of a plain scan: the lowest hashes, always the same ones.
    let first: BTreeSet<String> =
        client.scan().table_name(&table).limit(200).send().await.unwrap().items().iter().map(id).collect();
    let (report, keys) = sample(Sample::Items(200)).await;
    let distinct: BTreeSet<String> = keys.iter().cloned().collect();
    println!("{report:?}");
    assert_eq!((keys.len(), distinct.len()), (200, 200));
    assert!(report.segments >= 500 && report.segments_read >= 25, "{report:?}");
    let shared = distinct.intersection(&first).count();
    assert!(shared < 100, "a sample is not the first keys of a scan: {shared} of 200 in common");
    let (_, again) = sample(Sample::Items(200)).await;
    assert_ne!(distinct, again.into_iter().collect::<BTreeSet<_>>(), "each sample picks its own segments");

    // Cut into fewer segments than the sample has pages, it reads more pages of each.
    let (few, keys) = sample_in(Sample::Items(200), Some(4)).await;
    assert_eq!((few.segments, few.segments_read, keys.len()), (4, 4, 200), "{few:?}");

    let (all, keys) = sample(Sample::All).await;
    assert!(all.whole_table, "{all:?}");
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>().len(), 5_000);
    // A sample as large as the table reads all of it.
    let (whole, _) = sample(Sample::Items(5_000)).await;
    assert!(whole.whole_table && whole.items == 5_000, "{whole:?}");
    support::delete_tables(&client, &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsing_every_item_of_a_large_table_streams_it_through_little_memory() {
    let count: u64 = std::env::var("REHEARSE_ITEMS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let names = support::names("rehearse_all");
    let prod = prod_client().await;
    Migrator::new(prod.clone(), names.clone(), true, "the test").run(&light().migrations, Some(1)).await.unwrap();
    let fill = std::time::Instant::now();
    let context = DataContext::new(prod.clone(), names.clone());
    for start in (0..count).step_by(10_000) {
        context.put_items("things", (start..(start + 10_000).min(count)).map(thing).collect()).await.unwrap();
    }
    println!("filled {count} items in {:.1} s", fill.elapsed().as_secs_f64());
    let envs = ProdEnvs::new(&names, prod_endpoint());
    let args = ["rehearse", "--env", "prod", "--environments", envs.file(), "--all", "--no-docker", "--format", "json"];
    let started = std::time::Instant::now();
    let rehearsal = run_beside("rehearse:light", args.iter().map(|a| (*a).to_owned()).collect()).await;
    let took = started.elapsed().as_secs_f64();
    println!("{}", rehearsal.stderr);
    assert_eq!(rehearsal.code, 0, "{}{}", rehearsal.stdout, rehearsal.stderr);
    let document = json(&rehearsal);
    let read = &document["report"]["tables"][0]["read"];
    assert_eq!(read["items"], count);
    let rss = document["peak_rss_mib"].as_f64().unwrap();
    assert!(rss < 100.0, "the rehearsal's peak RSS was {rss:.1} MiB");

    // A plain parallel scan of the same table (8 segments, nothing else), in the same run.
    let scan = std::time::Instant::now();
    let mut segments = tokio::task::JoinSet::new();
    for segment in 0..8 {
        let (prod, table) = (prod.clone(), names.physical("things"));
        segments.spawn(async move {
            let mut pages = prod.scan().table_name(table).segment(segment).total_segments(8).into_paginator().send();
            let mut items = 0;
            while let Some(page) = pages.next().await {
                items += page.unwrap().items().len() as u64;
            }
            items
        });
    }
    let segments = segments.join_all().await;
    let scan_secs = scan.elapsed().as_secs_f64();
    assert_eq!(segments.iter().sum::<u64>(), count);
    let copy_secs = read["millis"].as_f64().unwrap() / 1000.0;
    println!(
        "rehearse --all of {count} items: {took:.1} s in all ({:.1} s the whole report), copy {copy_secs:.1} s = {:.0} items/s, {} read units; plain 8-segment scan {scan_secs:.1} s = {:.0} items/s; copy/scan = {:.2}; peak RSS {rss:.1} MiB",
        document["report"]["millis"].as_f64().unwrap() / 1000.0,
        count as f64 / copy_secs,
        read["read_units"],
        count as f64 / scan_secs,
        scan_secs / copy_secs,
    );
    support::delete_tables(&prod, &names).await;
}

#[tokio::test]
async fn status_items_finds_an_item_an_old_instance_wrote_after_the_backfill() {
    // On prod's server, whose tables these tests delete at their end: DynamoDB Local runs out of
    // threads for index creation once a few tables with TTL on are left (see `support`).
    let names = support::names("status_items");
    let envs = ProdEnvs::new(&names, prod_endpoint());
    let file = envs.file();
    let migrate = run("example", &["migrate", "--env", "prod", "--environments", file, "--yes"]);
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let client = prod_client().await;
    let v2 = names.physical_version("customers", 2);
    let customer = |i: u64| {
        Item::from([
            ("customer_nr".to_owned(), n(i)),
            ("record".to_owned(), s("profile")),
            ("name".to_owned(), s(&format!("Customer {i}"))),
            ("email".to_owned(), s(&format!("c{i}@example.com"))),
            ("email_normalised".to_owned(), s(&format!("c{i}@example.com"))),
        ])
    };
    for i in 0..200 {
        client.put_item().table_name(&v2).set_item(Some(customer(i))).send().await.unwrap();
    }
    let status = |more: &[&str]| {
        let mut args = vec!["status", "--env", "prod", "--environments", file];
        args.extend(more);
        run("example", &args)
    };
    let clean = status(&["--items"]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("read 200 from"), "{}", clean.stdout);
    assert!(clean.stdout.contains("0 do not read as the schema crate's type"), "{}", clean.stdout);

    // An old instance of the application, from before the backfill, writes a customer.
    let mut old = customer(4242);
    old.remove("email_normalised");
    client.put_item().table_name(&v2).set_item(Some(old)).send().await.unwrap();
    let found = status(&["--items", "500"]);
    println!("{}{}", found.stdout, found.stderr);
    assert_eq!(found.code, 1);
    assert!(
        found.stdout.contains(
            "! {customer_nr: 4242, record: \"profile\"}: attribute email_normalised: the item does not have it"
        ),
        "{}",
        found.stdout
    );
    let again = format!("then run `cargo xtask status --env prod --environments {} --items`", envs.file());
    assert!(found.stderr.contains(&again), "{}", found.stderr);
    let document = json(&status(&["--items", "--format", "json"]));
    assert_eq!(document["items"][0]["bad_items"], 1, "{document}");
    assert_eq!(document["exit_code"], 1);
    support::delete_tables(&client, &names).await;
}

#[tokio::test]
async fn plan_estimates_pending_data_steps_and_the_deploy_sequence_around_a_rebuild() {
    let names = support::names("plan_estimates");
    let envs = ProdEnvs::new(&names, prod_endpoint());
    let file = envs.file();
    let migrate = run("example", &["migrate", "--env", "prod", "--environments", file, "--target", "3", "--yes"]);
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let client = prod_client().await;
    let customers = names.physical("customers");
    let tables_of = || async {
        let all = dynamo_migrate::schema_steps::list_tables(&prod_client().await).await.unwrap();
        all.into_iter().filter(|t| t.starts_with(names.prefix())).collect::<Vec<_>>()
    };
    let before: Vec<Item> = (0..500)
        .map(|i| {
            Item::from([
                ("customer_nr".to_owned(), n(i)),
                ("name".to_owned(), s(&format!("Customer {i}"))),
                ("email".to_owned(), s(&format!(" C{i}@Example.com"))),
            ])
        })
        .collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", before).await.unwrap();
    let (tables, content) = (tables_of().await, content_hash(&client, &customers).await);
    let records = dynamo_migrate::run::Ledger::new(client.clone(), &names).records().await.unwrap();

    let plan = run("example", &["plan", "--env", "prod", "--environments", file]);
    println!("{}", plan.stdout);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let prefix = names.prefix();
    assert!(plan.stdout.contains(&format!("estimate, pass over {prefix}customers: 500 items")), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!("estimate, pass over {prefix}customers into {prefix}customers_v2: 500 items")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("deploy sequence: migration 5 rebuilds customers as version 2 and migration 6 deletes version 1: apply up to the rebuild (`cargo xtask migrate --env prod --target 5`), deploy the application that reads and writes customers version 2"),
        "{}",
        plan.stdout
    );
    let document = json(&run("example", &["plan", "--env", "prod", "--environments", file, "--format", "json"]));
    let backfill = &document["estimates"][0];
    assert_eq!((backfill["version"].as_u64(), backfill["step"].as_u64()), (Some(4), Some(0)));
    let estimate = &backfill["passes"][0]["estimate"];
    assert_eq!((estimate["items"].as_u64(), estimate["write_units"].as_f64()), (Some(500), Some(500.0)), "{estimate}");
    assert!(estimate["on_demand_usd"].as_f64().unwrap() > 0.0, "{estimate}");
    assert_eq!(document["deploy_sequence"].as_array().unwrap().len(), 1);

    // plan ran the data step to find its passes, and wrote nothing.
    assert_eq!(tables_of().await, tables);
    assert_eq!(content_hash(&client, &customers).await, content);
    assert_eq!(dynamo_migrate::run::Ledger::new(client.clone(), &names).records().await.unwrap(), records);
    support::delete_tables(&client, &names).await;
}

#[tokio::test]
async fn bad_input_to_rehearse_and_status_items_is_refused_with_exit_2_and_nothing_written() {
    let envs = Envs::new("rehearse_bad_input", "");
    let file = envs.file();
    for (args, expected) in [
        (vec!["rehearse", "--env", "dev", "--sample", "0"], "invalid value '0' for '--sample <ITEMS>'"),
        (vec!["rehearse", "--env", "dev", "--read-rate", "-3"], "is not a positive number of read units a second"),
        (vec!["rehearse", "--env", "dev", "--read-rate", "lots"], "lots is not a positive number"),
        (
            vec!["rehearse", "--env", "dev", "--all", "--sample", "5"],
            "the argument '--all' cannot be used with '--sample <ITEMS>'",
        ),
        (vec!["rehearse", "--env", "dev", "--segments", "0"], "invalid value '0' for '--segments <SEGMENTS>'"),
        (vec!["status", "--env", "dev", "--items", "0"], "invalid value '0' for '--items [<ITEMS>]'"),
        (vec!["rehearse", "--env", "nosuch"], "unknown environment \"nosuch\""),
        (
            vec!["rehearse", "--env", "unreachable"],
            "environment unreachable: cannot reach DynamoDB at http://127.0.0.1:9",
        ),
    ] {
        let mut args = args;
        args.extend(["--environments", file]);
        if args[0] == "rehearse" {
            args.push("--no-docker");
        }
        let refused = run("example", &args);
        assert_eq!(refused.code, 2, "{args:?}: {}{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains(expected), "{args:?}: {}", refused.stderr);
    }
    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written");
}

/// A data step that adds one to every customer's visits each time it runs: not idempotent.
fn count_visits() -> DataStep {
    DataStep::new("count_visits", |ctx| async move {
        let step = ctx
            .pass("customers")
            .raw(|mut item| {
                let visits = match item.get("visits") {
                    Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|e| e.to_string())?,
                    _ => 0,
                };
                item.insert("visits".to_owned(), n(visits + 1));
                Ok(dynamo_migrate::Change::Put(item))
            })
            .await?;
        Ok(step)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_stops_the_run_is_the_problem_and_the_later_steps_are_not_applied() {
    let names = support::names("rehearse_stops");
    seed_prod(&names, 40).await;
    let proxy = guarded_prod().await;
    let envs = ProdEnvs::new(&names, &proxy.endpoint());
    let args = ["rehearse", "--env", "prod", "--environments", envs.file(), "--no-docker", "--format", "json"];
    let stopped = run_beside("rehearse:not_idempotent", args.iter().map(|a| (*a).to_owned()).collect()).await;
    assert_eq!(stopped.code, 1, "{}{}", stopped.stdout, stopped.stderr);
    let report = &json(&stopped)["report"];
    let step = &report["migrations"][0]["steps"][0];
    let why = step["would_fail"].as_str().unwrap();
    assert!(why.starts_with("the run stops here: data step count_visits is not idempotent"), "{why}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["migrations"][0]["applied"], false);
    assert_eq!(report["checked"], serde_json::json!([]), "a run that stopped is not checked against the schema crate");
    only_reads_reached(&proxy);
    support::delete_tables(&prod_client().await, &names).await;
}
