//! The migration lock cannot be outrun: a run paused past its lease (SIGSTOP) is taken over by a
//! waiter that saw its record version unchanged for a whole lease, and once it resumes it writes
//! nothing to the ledger and no data but the writes it had in flight (its own transform,
//! conditional on what it read), and says why; expiry is judged by the record version,
//! never by the wall-clock time in the item; a dead holder on this machine is unlocked at once;
//! a waiter says whom it waits for; a lease too short is refused. Commands run in child
//! processes (this binary again), as `environments` does.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::run::{Ledger, Lock, LockFenced, LockLoss, LockOptions, TableNames};
use dynamo_migrate::{Change, DataStep, Error, KeyAttr, Migration, Project, RateLimit, TableDef};

use crate::support::{self, content_hash};

const CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_LOCK_CHILD";

/// What a child process does.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Child {
    /// Runs the command line with these arguments on the `touch` project and exits with its code.
    Cli(Vec<String>),
    /// Takes the lock of this ledger table through the library, says `LOCKED`, and waits.
    Hold(String),
}

/// Accounts created, then touched in place slowly (100 items/s, pages of 20), so that a test can
/// pause the run in the middle of its data step.
fn touch_project() -> Project {
    let touch = DataStep::new("touch_accounts", |ctx| async move {
        let done = ctx
            .pass("accounts")
            .page_size(20)
            .writers(4)
            .rate(RateLimit::ItemsPerSecond(100.0))
            .raw(|mut item| {
                item.insert("touched".to_owned(), AttributeValue::Bool(true));
                Ok(Change::Put(item))
            })
            .await?;
        Ok(done)
    });
    Project {
        tables: vec![],
        migrations: vec![
            Migration::new(1, "create_accounts", "create accounts")
                .create_table(TableDef::new("accounts", KeyAttr::s("id"))),
            Migration::new(2, "touch_accounts", "touch every account slowly").data(touch),
        ],
    }
}

/// Not a test of its own: the body of every child process below.
#[tokio::test(flavor = "multi_thread")]
async fn lock_child_process() {
    let Ok(child) = std::env::var(CHILD_ENV) else { return };
    match serde_json::from_str::<Child>(&child).unwrap() {
        Child::Cli(args) => {
            let code = dynamo_migrate::cli::run(args, &touch_project()).await;
            std::process::exit(i32::from(code));
        }
        Child::Hold(table) => {
            let options = LockOptions { owner: "a holder that will be killed".into(), ..LockOptions::new("test") };
            let _lock = Lock::acquire(&support::client().await, &table, &options).await.unwrap();
            println!("LOCKED");
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
    }
}

fn child(what: &Child) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "lock::lock_child_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, serde_json::to_string(what).unwrap())
        .env(support::ENDPOINT_ENV, support::endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A command line run in a child process, in `env` (an environments file), to its end.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finished(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn cli(envs: &Envs, args: &[&str]) -> Command {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(["--env".to_owned(), "dev".to_owned(), "--environments".to_owned(), envs.file()]);
    child(&Child::Cli(all))
}

fn run(envs: &Envs, args: &[&str]) -> Run {
    finished(cli(envs, args).output().unwrap())
}

/// An environments file with one environment, `dev`, on the shared DynamoDB Local.
struct Envs {
    path: PathBuf,
    names: TableNames,
}

impl Envs {
    fn new(test: &str) -> Envs {
        let names = support::names(test);
        let path =
            std::env::temp_dir().join(format!("environments-lock-{}-{}.toml", std::process::id(), names.prefix()));
        let text = format!(
            "[dev]\nregion = \"us-east-1\"\nendpoint = \"{}\"\ntable_prefix = \"{}\"\n",
            support::endpoint(),
            names.prefix()
        );
        std::fs::write(&path, text).unwrap();
        Envs { path, names }
    }

    fn file(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    fn ledger(&self) -> String {
        self.names.ledger().to_owned()
    }
}

impl Drop for Envs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn signal(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

/// Every item of `table` by its id, read consistently.
async fn items_by_id(client: &Client, table: &str) -> std::collections::BTreeMap<String, support::Item> {
    let mut items = client.scan().table_name(table).consistent_read(true).into_paginator().items().send();
    let mut all = std::collections::BTreeMap::new();
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        let Some(AttributeValue::S(id)) = item.get("id") else { panic!("an account without its id: {item:?}") };
        all.insert(id.clone(), item);
    }
    all
}

async fn touched(client: &Client, table: &str) -> i32 {
    let mut pages = client
        .scan()
        .table_name(table)
        .filter_expression("attribute_exists(touched)")
        .select(aws_sdk_dynamodb::types::Select::Count)
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.unwrap().count();
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_paused_past_its_lease_is_taken_over_and_once_resumed_writes_nothing_the_step_would_not() {
    let envs = Envs::new("paused");
    let client = support::client().await;
    let created = run(&envs, &["migrate", "--target", "1"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let accounts = envs.names.physical("accounts");
    let items: Vec<support::Item> = (0..1_000)
        .map(|i| {
            [
                ("id".to_owned(), AttributeValue::S(format!("acct-{i:05}"))),
                ("n".to_owned(), AttributeValue::N(i.to_string())),
            ]
            .into()
        })
        .collect();
    dynamo_migrate::DataContext::new(client.clone(), envs.names.clone()).put_items("accounts", items).await.unwrap();

    // The first run, with a short lease, touches accounts slowly; once it is well under way, it
    // is paused (SIGSTOP), as a laptop that sleeps or a process the scheduler forgets.
    let first = cli(&envs, &["migrate", "--lock-lease", "3"]).spawn().unwrap();
    let first_pid = first.id();
    let mut waited = Duration::ZERO;
    while touched(&client, &accounts).await < 100 {
        assert!(waited < Duration::from_secs(60), "the data step did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    signal(first_pid, "-STOP");

    // A second run waits, sees the lock's version unchanged for a whole lease, and takes it over:
    // it finds migration 2 left running and says how to recover it; recover then marks it.
    let second = run(&envs, &["migrate", "--lock-wait", "60"]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains("migration 2 (touch_accounts) is running since")
            && second.stderr.contains(&format!("recover --env dev --environments {} --version 2 --rerun", envs.file())),
        "{}",
        second.stderr
    );
    let recovered = run(&envs, &["recover", "--version", "2", "--rerun"]);
    assert_eq!(recovered.code, 0, "{}", recovered.stderr);
    let ledger = Ledger::new(client.clone(), &envs.names);
    assert_eq!(ledger.records().await.unwrap()[1].status, dynamo_migrate::run::Status::Rerun);

    // What the tables hold after the takeover. The first run resumes: it sends nothing once it
    // sees its lock lost, but a request that had passed that check when it was paused (at most
    // one per write in flight, 4 here) still goes out. What is guaranteed is that such a late
    // write changes nothing the migration itself would not write: in place, it is the step's own
    // transform, conditional on the item being what it read. (Into a new table, the rebuild's
    // convergence check finds and repairs it: `converge`.) The ledger is never written late.
    let data_before = items_by_id(&client, &accounts).await;
    let ledger_before = content_hash(&client, &envs.ledger()).await;
    signal(first_pid, "-CONT");
    let first = finished(first.wait_with_output().unwrap());
    let data_after = items_by_id(&client, &accounts).await;
    let late: Vec<&String> = data_before.keys().filter(|id| data_before[*id] != data_after[*id]).collect();
    println!("late writes of the paused run: {}", late.len());
    assert!(late.len() <= 4, "more late writes than writes in flight: {late:?}");
    for id in &late {
        let mut touched = data_before[*id].clone();
        touched.insert("touched".to_owned(), AttributeValue::Bool(true));
        assert_eq!(data_after[*id], touched, "a late write to {id} is not the step's own transform of what was there");
    }
    assert_eq!(data_after.len(), data_before.len());
    assert_eq!(content_hash(&client, &envs.ledger()).await, ledger_before, "the paused run wrote to the ledger");
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert!(
        first.stderr.contains(&format!("this run lost the migration lock in {}: ", envs.ledger()))
            && first.stderr.contains("wrote nothing after that")
            && first.stderr.contains("`cargo xtask status --env dev`, then go on with `cargo xtask migrate --env dev`"),
        "{}",
        first.stderr
    );

    assert!(
        second.stderr.contains(&format!("waiting for the migration lock in {}, held by ", envs.ledger()))
            && second.stderr.contains(&format!(" pid {first_pid} (local) since ")),
        "the waiter says whom it waits for: {}",
        second.stderr
    );

    // The command it names goes on where the takeover left the migration.
    let resumed = run(&envs, &["migrate"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(touched(&client, &accounts).await, 1_000);
}

/// Writes a lock item by hand, as another run (or an older version of this tool) would.
async fn put_lock(client: &Client, table: &str, token: &str, version: &str, lease_until_ms: i64) {
    client
        .put_item()
        .table_name(table)
        .item("id", AttributeValue::S("lock".into()))
        .item("owner", AttributeValue::S(format!("elsewhere pid 1 ({token})")))
        .item("token", AttributeValue::S(token.into()))
        .item("rvn", AttributeValue::S(version.into()))
        .item("lease_ms", AttributeValue::N("2000".into()))
        .item("host", AttributeValue::S("another-machine".into()))
        .item("pid", AttributeValue::N("1".into()))
        .item("lease_until_ms", AttributeValue::N(lease_until_ms.to_string()))
        .send()
        .await
        .unwrap();
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_is_judged_by_the_record_version_never_by_the_clock_in_the_item() {
    let client = support::client().await;
    let names = support::names("lock_version");
    let ledger = Ledger::new(client.clone(), &names);
    ledger.ensure().await.unwrap();
    let table = ledger.table();
    let day = 24 * 3600 * 1000;

    // A lease that by its writer's clock ends tomorrow, but whose version does not change: its
    // holder is dead, and the lock is taken once the version has stood still for its lease.
    put_lock(&client, table, "stuck", "v-stuck", epoch_ms() + day).await;
    let waiter = LockOptions { wait: Duration::from_secs(60), ..LockOptions::new("waiter") };
    let lock = Lock::acquire(&client, table, &waiter).await.expect("a lock not renewed for a lease is taken");
    let now = dynamo_migrate::run::lock_holder(&client, table).await.unwrap().unwrap();
    assert_eq!(now.token, lock.token());
    lock.release().await.unwrap();

    // A lease that by its writer's clock ended yesterday, but whose version changes: its holder
    // is alive (or its clock is wrong), and the lock is not taken.
    put_lock(&client, table, "alive", "v0", epoch_ms() - day).await;
    let renewer = {
        let (client, table) = (client.clone(), table.to_owned());
        tokio::spawn(async move {
            for i in 1.. {
                tokio::time::sleep(Duration::from_millis(300)).await;
                client
                    .update_item()
                    .table_name(&table)
                    .key("id", AttributeValue::S("lock".into()))
                    .update_expression("SET rvn = :v")
                    .expression_attribute_values(":v", AttributeValue::S(format!("v{i}")))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let impatient = LockOptions { wait: Duration::from_secs(5), ..LockOptions::new("waiter") };
    let refused = Lock::acquire(&client, table, &impatient).await.unwrap_err();
    renewer.abort();
    assert!(matches!(refused, Error::LockHeld { .. }), "{refused}");
    assert!(refused.to_string().contains("held by elsewhere pid 1 (alive) since"), "{refused}");
    assert_eq!(dynamo_migrate::run::lock_holder(&client, table).await.unwrap().unwrap().token, "alive");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_lock_stops_the_run_and_its_fenced_client_sends_nothing() {
    let client = support::client().await;
    let names = support::names("lock_fence");
    let ledger = Ledger::new(client.clone(), &names);
    ledger.ensure().await.unwrap();
    let table = ledger.table();
    let lock = Lock::acquire(&client, table, &LockOptions { lease: Duration::from_secs(3), ..LockOptions::new("t") })
        .await
        .unwrap();
    let fenced = lock.fence(&client);
    let (_ctrl_c, never) = tokio::sync::watch::channel(false);
    let mut stop = lock.stop_signal(never);
    fenced.describe_table().table_name(table).send().await.expect("while the lock holds, requests go");

    // Removed under the run (as `unlock --force` does): its next heartbeat finds it gone.
    assert!(dynamo_migrate::run::force_unlock(&client, table, lock.token()).await.unwrap());
    tokio::time::timeout(Duration::from_secs(30), stop.wait_for(|stopped| *stopped))
        .await
        .expect("the stop signal turns true")
        .unwrap();
    assert_eq!(lock.lost(), Some(LockLoss::Removed));

    let sent = fenced
        .put_item()
        .table_name(table)
        .item("id", AttributeValue::S("written after the loss".into()))
        .send()
        .await
        .unwrap_err();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&sent);
    let mut refused = None;
    while let Some(e) = source {
        refused = refused.or(e.downcast_ref::<LockFenced>());
        source = e.source();
    }
    let refused = refused.expect("the fence refused the request");
    assert_eq!(refused.table, table);
    assert!(refused.to_string().contains("it was removed (by `unlock --force`)"), "{refused}");
    let item = client
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S("written after the loss".into()))
        .send()
        .await
        .unwrap();
    assert!(item.item.is_none(), "nothing reached DynamoDB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_holder_on_this_machine_is_named_by_a_waiter_and_unlocked_at_once() {
    let envs = Envs::new("lock_dead");
    let client = support::client().await;
    Ledger::new(client.clone(), &envs.names).ensure().await.unwrap();
    let mut holder = child(&Child::Hold(envs.ledger())).spawn().unwrap();
    let pid = holder.id();
    let locked = BufReader::new(holder.stdout.take().unwrap()).lines().any(|line| line.unwrap().contains("LOCKED"));
    assert!(locked, "the child took the lock");
    holder.kill().unwrap(); // SIGKILL: its lock stays, with a lease of 60 s.
    holder.wait().unwrap();

    let waiter = run(&envs, &["migrate", "--lock-wait", "1"]);
    assert_eq!(waiter.code, 1, "{}", waiter.stderr);
    assert!(
        waiter.stderr.contains("held by ")
            && waiter.stderr.contains(&format!("its process {pid} on this machine ("))
            && waiter.stderr.contains("is dead; remove its lock at once with `cargo xtask unlock --env dev --force`"),
        "{}",
        waiter.stderr
    );

    let unlock = run(&envs, &["unlock", "--force"]);
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);
    assert!(
        !unlock.stderr.contains("watching the lock"),
        "a dead holder is not watched for a lease: {}",
        unlock.stderr
    );
    assert!(
        unlock.stdout.contains(&format!("removed: its process {pid} on this machine ("))
            && unlock.stdout.contains(") is dead"),
        "{}",
        unlock.stdout
    );
    assert_eq!(dynamo_migrate::run::lock_holder(&client, &envs.ledger()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiter_says_whom_it_waits_for_and_that_the_holder_is_alive() {
    let envs = Envs::new("lock_wait");
    let client = support::client().await;
    Ledger::new(client.clone(), &envs.names).ensure().await.unwrap();
    let options = LockOptions { owner: "a live run".into(), lease: Duration::from_secs(3), ..LockOptions::new("test") };
    let lock = Lock::acquire(&client, &envs.ledger(), &options).await.unwrap();
    let waiter = run(&envs, &["migrate", "--lock-wait", "2"]);
    lock.release().await.unwrap();
    assert_eq!(waiter.code, 1, "{}", waiter.stderr);
    assert!(
        waiter
            .stderr
            .contains(&format!("waiting for the migration lock in {}, held by a live run since ", envs.ledger()))
            && waiter.stderr.contains(
                "it is taken over once its heartbeat has not renewed it for 3 s; waiting at most 2 s (--lock-wait)"
            ),
        "{}",
        waiter.stderr
    );
    assert!(
        waiter.stderr.contains(&format!("error: the migration lock in {} is held by a live run since ", envs.ledger()))
            && waiter
                .stderr
                .contains(&format!("its holder is alive (its process {} on this machine runs)", std::process::id()))
            && waiter.stderr.contains("`cargo xtask status --env dev`"),
        "{}",
        waiter.stderr
    );
    assert!(!client.list_tables().send().await.unwrap().table_names().contains(&envs.names.physical("accounts")));
}

#[test]
fn a_lease_too_short_or_a_wait_too_long_is_a_usage_error_and_nothing_is_written() {
    let envs = Envs::new("lock_options");
    for (args, option, range) in [
        (&["migrate", "--lock-lease", "0"][..], "--lock-lease", "3..=3600"),
        (&["migrate", "--lock-lease", "2"][..], "--lock-lease", "3..=3600"),
        (&["sync", "--lock-lease", "1"][..], "--lock-lease", "3..=3600"),
        (&["migrate", "--lock-wait", "100000"][..], "--lock-wait", "0..=86400"),
    ] {
        let refused = run(&envs, args);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!("'{option} <SECS>'")) && refused.stderr.contains(range),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ledger = Ledger::new(runtime.block_on(support::client()), &envs.names);
    assert!(!runtime.block_on(ledger.exists()).unwrap(), "nothing was written");
}
