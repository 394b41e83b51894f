//! The DynamoDB Local module: install from an empty cache, start, stop, and never leave Java behind.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use dynamo_migrate::local::{Docker, DynamoDbLocal, LocalOptions, ensure_installed};
use dynamo_migrate::run::{TableNames, Target, connect};
use dynamo_migrate::schema_steps::{ExecOptions, execute, plan_step, wait_until_active};
use dynamo_migrate::{GlobalIndex, KeyAttr, SchemaStep, TableDef};

const CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_CHILD";

fn java_options() -> LocalOptions {
    LocalOptions { docker: Docker::Never, ..LocalOptions::default() }
}

/// Java processes serving DynamoDB Local on `port`, found by their command line (the guard
/// shell around Java carries the same arguments, so the program itself must be java).
fn java_serving(port: u16) -> Vec<u32> {
    let wanted = format!("-port\0{port}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                let program = c.split('\0').next().unwrap_or_default();
                program.rsplit('/').next() == Some("java") && c.contains("DynamoDBLocal.jar") && c.contains(&wanted)
            })
        })
        .collect()
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn java_stops_when_its_owner_is_dropped() {
    let server = DynamoDbLocal::start(&java_options()).await.unwrap();
    assert_eq!(server.backend(), "java");
    let port = port_of(server.endpoint());
    assert_eq!(java_serving(port).len(), 1);
    let client = connect(&Target::local(server.endpoint())).await;
    client.list_tables().send().await.expect("it answers");
    drop(server);
    assert!(java_serving(port).is_empty(), "Java is gone once drop returns");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Not a test of its own: the body of the child process that `java_stops_when_its_owner_is_killed`
/// starts (this binary again, with an environment variable) and kills.
#[tokio::test]
async fn child_process_holding_a_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let server = DynamoDbLocal::start(&java_options()).await.unwrap();
    println!("ENDPOINT {}", server.endpoint());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[test]
fn java_stops_when_its_owner_is_killed() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "local::child_process_holding_a_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut port = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // libtest prints the test's name on the same line first.
        if let Some((_, endpoint)) = line.unwrap().split_once("ENDPOINT ") {
            port = Some(port_of(endpoint.trim()));
            break;
        }
    }
    let port = port.expect("the child printed its endpoint");
    assert_eq!(java_serving(port).len(), 1);
    child.kill().unwrap(); // SIGKILL: no destructor runs in the child.
    child.wait().unwrap();
    wait_for("Java to stop after its owner was killed", || java_serving(port).is_empty());
}

#[test]
fn installs_into_an_empty_cache_and_replaces_a_corrupt_one() {
    let cache = std::env::temp_dir().join(format!("dynamo-migrate-test-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let dir: PathBuf = ensure_installed(&cache).expect("installs DynamoDB Local");
    assert!(dir.join("DynamoDBLocal.jar").is_file() && dir.join("DynamoDBLocal_lib").is_dir());

    std::fs::write(dir.join("DynamoDBLocal.jar"), b"not the pinned jar").unwrap();
    let again = ensure_installed(&cache);
    // A folder that fails the checksum is never used: it is replaced or refused.
    match again {
        Ok(dir) => assert_ne!(std::fs::read(dir.join("DynamoDBLocal.jar")).unwrap(), b"not the pinned jar"),
        Err(e) => assert!(e.to_string().contains("could not be installed"), "{e}"),
    }
    std::fs::remove_dir_all(&cache).unwrap();
}

#[tokio::test]
async fn waiters_wait_out_delayed_index_creation() {
    let server =
        DynamoDbLocal::start(&LocalOptions { delay_transient_statuses: true, ..java_options() }).await.unwrap();
    let client = connect(&Target::local(server.endpoint())).await;
    let names = TableNames::new("delay_");
    let exec = ExecOptions::new(true);
    let def = TableDef::new("customers", KeyAttr::n("customer_nr"));
    for call in plan_step(None, &SchemaStep::CreateTable { table: def.clone() }).unwrap().0 {
        execute(&client, &names.physical("customers"), &call, &exec).await.unwrap();
    }

    // Through the engine: when the step returns, the index is ACTIVE.
    let step = SchemaStep::AddGlobalIndex {
        table: "customers".into(),
        index: GlobalIndex::new("by_postcode", KeyAttr::s("postcode")),
    };
    for call in plan_step(Some(&def), &step).unwrap().0 {
        execute(&client, &names.physical("customers"), &call, &exec).await.unwrap();
    }
    let status = |out: aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput, index: &str| {
        out.table()
            .unwrap()
            .global_secondary_indexes()
            .iter()
            .find(|g| g.index_name() == Some(index))
            .unwrap()
            .index_status()
            .cloned()
    };
    let described = client.describe_table().table_name("delay_customers").send().await.unwrap();
    assert_eq!(status(described, "by_postcode"), Some(IndexStatus::Active));

    // Without the waiter, the same kind of call leaves the index CREATING: the flag is in force.
    client
        .update_table()
        .table_name("delay_customers")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("name")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name("by_name")
                        .key_schema(
                            KeySchemaElement::builder().attribute_name("name").key_type(KeyType::Hash).build().unwrap(),
                        )
                        .projection(Projection::builder().projection_type(ProjectionType::All).build())
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let described = client.describe_table().table_name("delay_customers").send().await.unwrap();
    assert_eq!(status(described, "by_name"), Some(IndexStatus::Creating));
    wait_until_active(&client, "delay_customers", Duration::from_secs(120)).await.unwrap();
    let described = client.describe_table().table_name("delay_customers").send().await.unwrap();
    assert_eq!(status(described, "by_name"), Some(IndexStatus::Active));
}
