//! One DynamoDB Local for the whole test binary, and a unique table prefix per test.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::Client;
use dynamo_migrate::data::canonical_item;
use dynamo_migrate::local::{Docker, DynamoDbLocal, LocalOptions};
use dynamo_migrate::run::{TableNames, Target, connect};
use dynamo_migrate::schema_steps::{ExecOptions, execute, plan_step};
use dynamo_migrate::{KeyAttr, SchemaStep, TableDef};
use sha2::{Digest, Sha256};

/// An item as the SDK holds it.
pub type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

static SERVER: OnceLock<DynamoDbLocal> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Set in a child process that a test starts, so that it uses the parent's server.
pub const ENDPOINT_ENV: &str = "DYNAMO_MIGRATE_TEST_ENDPOINT";

/// The shared server's endpoint, started on first use. It stops when the test binary exits:
/// the guard around Java sees its stdin close.
pub fn endpoint() -> &'static str {
    static GIVEN: OnceLock<Option<String>> = OnceLock::new();
    if let Some(given) = GIVEN.get_or_init(|| std::env::var(ENDPOINT_ENV).ok()) {
        return given;
    }
    SERVER.get_or_init(start_server).endpoint()
}

/// A DynamoDB Local with Java, started on a thread of its own: tests call this from inside their
/// tokio runtimes.
fn start_server() -> DynamoDbLocal {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime
            .block_on(DynamoDbLocal::start(&LocalOptions { docker: Docker::Never, ..LocalOptions::default() }))
            .expect("DynamoDB Local starts")
    })
    .join()
    .unwrap()
}

/// A client of the shared server.
pub async fn client() -> Client {
    connect(&Target::local(endpoint())).await
}

static RULES_SERVER: OnceLock<DynamoDbLocal> = OnceLock::new();

/// A server of their own for the tests of AWS's control-plane rules (`aws_rules`, `rules_proxy`).
///
/// DynamoDB Local runs one TTL deletion job per table with TTL on, each holding a thread of a pool
/// of 10 that also runs GSI creation and deletion: with 7 tables with TTL on, no index is created
/// or deleted any more (it stays CREATING or DELETING). These tests turn TTL on in many tables, so
/// they keep to this server and delete their tables when they end ([`delete_tables`]).
pub fn rules_endpoint() -> &'static str {
    RULES_SERVER.get_or_init(start_server).endpoint()
}

/// A client of the rules tests' server.
pub async fn rules_client() -> Client {
    connect(&Target::local(rules_endpoint())).await
}

static EXAMPLE_SERVER: OnceLock<DynamoDbLocal> = OnceLock::new();

/// A server of their own for the tests that make the example's tables (TTL on) beside the
/// application (`app`) and under the IAM recorder (`iam`), for the reason given at
/// [`rules_endpoint`]: on the shared server they would leave other tests' indexes CREATING.
pub fn example_endpoint() -> &'static str {
    EXAMPLE_SERVER.get_or_init(start_server).endpoint()
}

/// A client of [`example_endpoint`]'s server.
pub async fn example_client() -> Client {
    connect(&Target::local(example_endpoint())).await
}

/// Deletes every table whose name starts with `names`' prefix (a test's tables, its ledger too).
pub async fn delete_tables(client: &Client, names: &TableNames) {
    let tables = dynamo_migrate::schema_steps::list_tables(client).await.unwrap();
    for table in tables.iter().filter(|t| t.starts_with(names.prefix())) {
        client.delete_table().table_name(table).send().await.unwrap();
    }
}

/// A DynamoDB Streams client of the shared server (DynamoDB Local serves streams on its port).
pub async fn streams() -> aws_sdk_dynamodbstreams::Client {
    dynamo_migrate::run::connect_streams(&Target::local(endpoint())).await
}

/// Table names with a prefix no other test uses.
pub fn names(test: &str) -> TableNames {
    TableNames::new(format!("t{}_{test}_", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Creates an on-demand table keyed by `id` (S), or by `id` and `sk` (N) when `sort` is set.
pub async fn create_table(client: &Client, physical: &str, sort: bool) {
    let mut def = TableDef::new("unused", KeyAttr::s("id"));
    if sort {
        def = def.sort_key(KeyAttr::n("sk"));
    }
    for call in plan_step(None, &SchemaStep::CreateTable { table: def }).unwrap().0 {
        execute(client, physical, &call, &ExecOptions::new(true)).await.unwrap();
    }
}

/// Creates an on-demand table with this partition key and no sort key.
pub async fn create_table_keyed_by(client: &Client, physical: &str, key: KeyAttr) {
    let def = TableDef::new("unused", key);
    for call in plan_step(None, &SchemaStep::CreateTable { table: def }).unwrap().0 {
        execute(client, physical, &call, &ExecOptions::new(true)).await.unwrap();
    }
}

/// Every item of a table in canonical DynamoDB JSON, sorted, hashed: equal iff the contents are.
pub async fn content_hash(client: &Client, physical: &str) -> String {
    let mut lines = Vec::new();
    let mut items = client.scan().table_name(physical).into_paginator().items().send();
    while let Some(item) = items.next().await {
        lines.push(canonical_item(&item.unwrap()).to_string());
    }
    hash_lines(lines)
}

/// The hash `content_hash` gives a table holding exactly these items.
pub fn expected_hash(items: &[Item]) -> String {
    hash_lines(items.iter().map(|i| canonical_item(i).to_string()).collect())
}

fn hash_lines(mut lines: Vec<String>) -> String {
    lines.sort();
    let digest = Sha256::digest(lines.join("\n").as_bytes());
    format!("{} items, sha256 {}", lines.len(), digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A guarded child process: it ends when this process does, however this process ends (the
/// shell kills it when its stdin, our pipe, closes), as the engine does for DynamoDB Local.
struct Guarded(#[expect(dead_code, reason = "held: when its stdin closes, the server stops")] std::process::Child);

const GUARD: &str = "exec 3<&0\n\"$@\" </dev/null >/dev/null 2>&1 &\npid=$!\n{ read -r _ <&3; kill \"$pid\" 2>/dev/null; } &\nwait \"$pid\"\n";

static MOTO: OnceLock<Option<(Guarded, String)>> = OnceLock::new();

/// The endpoint of moto's server (a real STS that answers `GetCallerIdentity` for account
/// 123456789012), started on first use; `None` when moto is not installed.
pub fn moto_endpoint() -> Option<&'static str> {
    MOTO.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = std::process::Command::new("sh")
            .args(["-c", GUARD, "moto-guard", "moto_server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let guarded = Guarded(child);
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some((guarded, format!("http://127.0.0.1:{port}")));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    })
    .as_ref()
    .map(|(_, endpoint)| endpoint.as_str())
}

/// Whether `moto_server` is on the PATH.
pub fn has_moto() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A data step that copies `accounts` into `copy` slowly (4,000 items/s, pages of 250), so that a
/// test can kill or interrupt it in the middle.
pub fn slow_copy_step() -> dynamo_migrate::DataStep {
    dynamo_migrate::DataStep::new("copy_accounts_slowly", |ctx| async move {
        let done = ctx
            .pass("accounts")
            .into_table("copy")
            .page_size(250)
            .rate(dynamo_migrate::RateLimit::ItemsPerSecond(4_000.0))
            .copy()
            .await?;
        Ok(done)
    })
}

/// Marks migration `version` of `migrations` for re-run, as `cargo xtask recover --rerun` does.
pub async fn rerun(ledger: &dynamo_migrate::run::Ledger, migrations: &[dynamo_migrate::Migration], version: u32) {
    let records = ledger.records().await.unwrap();
    let code = migrations.iter().find(|m| m.version == version).map(dynamo_migrate::Migration::info);
    let record = records.iter().find(|r| r.version == version);
    let plan = dynamo_migrate::run::plan_recovery(record, code.as_ref(), version, dynamo_migrate::run::Recovery::Rerun)
        .unwrap();
    ledger.recover(&plan, "the test").await.unwrap();
}
