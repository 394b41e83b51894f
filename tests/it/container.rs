//! DynamoDB Local in a container, on a real Docker engine: schema steps, a data step and verify
//! run against it, and no container outlives its owner, whether dropped, dropped outside a
//! runtime, or SIGKILLed (by the guard, and by the sweep at the next start when the guard is
//! gone too). Without an engine these tests print that they were skipped, unless
//! `DYNAMO_MIGRATE_REQUIRE_DOCKER` is set (CI sets it), which makes a missing engine a failure.
//! The image is `$DYNAMO_MIGRATE_IMAGE`, else one built here from the cache and this machine's Java.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::IndexStatus;
use dynamo_migrate::local::{
    DynamoDbLocal, IMAGE_ENV, LocalOptions, OFFICIAL_IMAGE, VerifyOptions, build_image, cache_dir, docker_engine,
    verify,
};
use dynamo_migrate::run::{Migrator, TableNames, Target, connect};
use dynamo_migrate::schema_steps::{ExecOptions, execute, plan_step};
use dynamo_migrate::{DataStep, GlobalIndex, KeyAttr, Migration, SchemaStep, TableDef};
use serde::{Deserialize, Serialize};
use testcontainers::bollard::Docker;

const REQUIRE_ENV: &str = "DYNAMO_MIGRATE_REQUIRE_DOCKER";
const CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_CONTAINER_CHILD";

/// Options that start a container, or `None` (after saying so) when no Docker engine answers.
async fn container_options(test: &str) -> Option<LocalOptions> {
    if let Err(why) = docker_engine().await {
        assert!(std::env::var_os(REQUIRE_ENV).is_none(), "{REQUIRE_ENV} is set, but no Docker engine answers: {why}");
        println!("skipped {test}: no Docker engine answers ({why})");
        return None;
    }
    Some(LocalOptions { image: Some(image().to_owned()), ..LocalOptions::default() })
}

/// The image to run, built once per test binary when none is given.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(image) = std::env::var(IMAGE_ENV) {
            return image;
        }
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            match runtime.block_on(build_image(&cache_dir(None))) {
                Ok(built) => built.name,
                // Not Linux, for instance: the official image, where a registry is reachable.
                Err(e) => {
                    println!("no image built here ({e}); trying {OFFICIAL_IMAGE}");
                    OFFICIAL_IMAGE.to_owned()
                }
            }
        })
        .join()
        .unwrap()
    })
}

async fn start(options: &LocalOptions) -> DynamoDbLocal {
    let server = DynamoDbLocal::start(options).await.expect("DynamoDB Local starts");
    assert_eq!(server.backend(), "container", "not a container: {:?}", server.why_not_container());
    println!("container {} of {} ready in {:?}", server.container_id().unwrap(), image(), server.started_in());
    server
}

/// Whether the engine still has the container (running or not).
async fn exists(id: &str) -> bool {
    let docker = Docker::connect_with_defaults().unwrap();
    docker.inspect_container(id, None).await.is_ok()
}

async fn wait_gone(id: &str, why: &str) {
    let start = Instant::now();
    while exists(id).await {
        assert!(start.elapsed() < Duration::from_secs(30), "container {id} still exists 30 s after {why}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn container_runs_schema_steps() {
    let Some(options) = container_options("container_runs_schema_steps").await else { return };
    let server = start(&options).await;
    let client = connect(&Target::local(server.endpoint())).await;
    let names = TableNames::new("schema_");
    let exec = ExecOptions::new(true);
    let def = TableDef::new("customers", KeyAttr::n("customer_nr"));
    let steps = [
        SchemaStep::CreateTable { table: def.clone() },
        SchemaStep::AddGlobalIndex {
            table: "customers".into(),
            index: GlobalIndex::new("by_postcode", KeyAttr::s("postcode")),
        },
        SchemaStep::UpdateTtl { table: "customers".into(), attribute: Some("expires_at".into()) },
    ];
    let mut current = None;
    for step in &steps {
        let (calls, after) = plan_step(current.as_ref(), step).unwrap();
        for call in calls {
            execute(&client, &names.physical("customers"), &call, &exec).await.unwrap();
        }
        current = after;
    }
    let table = client.describe_table().table_name("schema_customers").send().await.unwrap().table.unwrap();
    let index = &table.global_secondary_indexes()[0];
    assert_eq!((index.index_name(), index.index_status()), (Some("by_postcode"), Some(&IndexStatus::Active)));
    let ttl = client.describe_time_to_live().table_name("schema_customers").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().unwrap().attribute_name(), Some("expires_at"));
}

#[derive(Debug, Serialize, Deserialize)]
struct Before {
    id: String,
    email: String,
}

#[derive(Debug, Serialize)]
struct After {
    id: String,
    email: String,
    email_normalised: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn container_runs_a_data_step() {
    let Some(options) = container_options("container_runs_a_data_step").await else { return };
    let server = start(&options).await;
    let client = connect(&Target::local(server.endpoint())).await;
    let step = DataStep::new("normalise", |ctx| async move {
        Ok(ctx
            .backfill("people", |b: Before| {
                Some(After { email_normalised: b.email.trim().to_lowercase(), id: b.id, email: b.email })
            })
            .await?)
    })
    .fixtures("people", (0..300).map(|i| Before { id: format!("p{i:03}"), email: format!(" Person{i}@Example.COM ") }));
    let migrations = vec![
        Migration::new(1, "create_people", "create people").create_table(TableDef::new("people", KeyAttr::s("id"))),
        Migration::new(2, "normalise_emails", "normalise emails").data(step),
    ];
    let migrator = Migrator::new(client.clone(), TableNames::new("data_"), true, "test").with_fixtures(true);
    let report = migrator.run(&migrations, None).await.expect("the migrations run");
    let data = report.applied[1].steps[0].data.expect("a data report");
    assert_eq!((data.scanned, data.written, data.failed), (300, 300, 0));
    let item = client
        .get_item()
        .table_name("data_people")
        .key("id", aws_sdk_dynamodb::types::AttributeValue::S("p007".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["email_normalised"].as_s().unwrap(), "person7@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn container_verify_passes_end_to_end() {
    let Some(local) = container_options("container_verify_passes_end_to_end").await else { return };
    let options = VerifyOptions { local, table_prefix: "verify_container_".into(), check_files: true };
    let report = verify(&schema::tables(), &migrations::all(), &options).await.expect("verify runs");
    assert_eq!(report.backend, "container", "not a container: {:?}", report.why_not_container);
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(report.applied.len(), migrations::all().len());
    assert_eq!(report.second_run_applied, Some(0));
}

#[test]
fn container_dropped_outside_a_runtime_is_removed_without_panic() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let Some(options) = runtime.block_on(container_options("container_dropped_outside_a_runtime")) else { return };
    let server = runtime.block_on(start(&options));
    let id = server.container_id().unwrap().to_owned();
    drop(runtime);
    // No runtime on this thread or anywhere: testcontainers' own Drop would panic here.
    drop(server);
    let check = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(!check.block_on(exists(&id)), "the container is gone once drop returns");
}

/// Not a test of its own: the body of the child process that the tests below start (this binary
/// again, with an environment variable) and kill, or ask which backend it got.
#[tokio::test(flavor = "multi_thread")]
async fn container_child_process_holding_a_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let server = DynamoDbLocal::start(&LocalOptions::default()).await.unwrap();
    println!(
        "BACKEND {} CONTAINER {} WHY {}",
        server.backend(),
        server.container_id().unwrap_or("-"),
        server.why_not_container().unwrap_or("-")
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Runs the child with `env`, and returns it with its first report line.
fn spawn_child(env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "container::container_child_process_holding_a_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().unwrap();
    let mut report = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // libtest prints the test's name on the same line first.
        if let Some((_, rest)) = line.unwrap().split_once("BACKEND ") {
            report = Some(rest.to_owned());
            break;
        }
    }
    (child, report.expect("the child reported its backend"))
}

fn container_of(report: &str) -> String {
    report.split("CONTAINER ").nth(1).unwrap().split(' ').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn container_is_removed_when_its_owner_is_killed() {
    if container_options("container_is_removed_when_its_owner_is_killed").await.is_none() {
        return;
    }
    let (mut child, report) = spawn_child(&[(IMAGE_ENV, image())]);
    assert!(report.starts_with("container "), "{report}");
    let id = container_of(&report);
    assert!(exists(&id).await);
    child.kill().unwrap(); // SIGKILL: no destructor runs in the child.
    child.wait().unwrap();
    wait_gone(&id, "its owner was killed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn container_left_by_a_killed_owner_and_guard_is_swept_at_the_next_start() {
    let Some(options) = container_options("container_left_by_a_killed_owner_and_guard").await else { return };
    let (mut child, report) = spawn_child(&[(IMAGE_ENV, image())]);
    let id = container_of(&report);
    // Kill the guard first, then the owner: nothing is left to remove the container.
    let guards = processes_mentioning(&id);
    assert_eq!(guards.len(), 1, "one guard holds container {id}");
    Command::new("kill").args(["-KILL", &guards[0].to_string()]).status().unwrap();
    wait_dead(guards[0]);
    // Checked while the owner lives: once it is dead, any test starting a server beside this one
    // may sweep the container first, which is what this test is about anyway.
    assert!(exists(&id).await, "with its guard gone, the container stays while its owner lives");
    child.kill().unwrap();
    child.wait().unwrap();
    let server = start(&options).await;
    assert!(!exists(&id).await, "the next start removed the dead owner's container");
    drop(server);
}

/// Waits until `pid` is gone or a zombie (its parent, the killed owner, may not have reaped it).
fn wait_dead(pid: u32) {
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    {
        assert!(start.elapsed() < Duration::from_secs(10), "process {pid} still runs 10 s after SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose command line mentions `text` (the container guard names its container).
fn processes_mentioning(text: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("dynamodb-local-container-guard") && c.contains(text)
            })
        })
        .collect()
}

#[test]
fn container_unreachable_engine_falls_back_to_java_and_says_why() {
    let (mut child, report) = spawn_child(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(report.starts_with("java "), "{report}");
    assert!(report.contains("/nonexistent/docker.sock"), "the reason names the engine: {report}");
}

#[test]
fn container_on_a_remote_docker_host_is_refused_and_java_used() {
    // A documentation address (TEST-NET-1): refused before anything connects to it.
    let (mut child, report) = spawn_child(&[("DOCKER_HOST", "tcp://192.0.2.10:2375")]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(report.starts_with("java "), "{report}");
    assert!(report.contains("not on this machine"), "{report}");
}
