//! Environments, the account guard, plan / migrate / status / unlock / recover, and the lock,
//! through the runner's command line in child processes (real exit codes, real environment
//! variables), against DynamoDB Local and, for STS, moto's server.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::run::TableNames;
use dynamo_migrate::{KeyAttr, Migration, Project, TableDef};

use crate::support::{self, content_hash, expected_hash};

const CLI_ARGS_ENV: &str = "DYNAMO_MIGRATE_TEST_CLI_ARGS";
pub(crate) const CLI_PROJECT_ENV: &str = "DYNAMO_MIGRATE_TEST_CLI_PROJECT";

/// The projects a child can run: the example workspace, or one with a slow copy to kill.
pub(crate) fn project(name: &str) -> Project {
    match name {
        "slow" => Project { tables: vec![], migrations: slow_migrations() },
        other if other.starts_with("bad_input:") => crate::bad_input::project(other),
        other if other.starts_with("authoring:") => crate::authoring::project(other),
        other if other.starts_with("converge:") => crate::converge::project(other),
        other if other.starts_with("refusals:") => crate::refusals::project(other),
        other if other.starts_with("workers:") => crate::workers::project(other),
        other if other.starts_with("rehearse:") => crate::rehearse::project(other),
        "export:shared" => {
            Project { tables: vec![], migrations: crate::export::migrations(crate::export::plain_step()) }
        }
        _ => Project { tables: schema::tables(), migrations: migrations::all() },
    }
}

pub(crate) fn slow_migrations() -> Vec<Migration> {
    vec![
        Migration::new(1, "create_tables", "create accounts and copy")
            .create_table(TableDef::new("accounts", KeyAttr::s("id")))
            .create_table(TableDef::new("copy", KeyAttr::s("id"))),
        Migration::new(2, "copy_accounts", "copy accounts slowly").data(support::slow_copy_step()),
    ]
}

/// Not a test of its own: the body of every child process below. It runs the command line with
/// the arguments it is given and exits with its exit code.
#[tokio::test]
async fn child_process_running_the_command_line() {
    let Ok(args) = std::env::var(CLI_ARGS_ENV) else { return };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let project = project(&std::env::var(CLI_PROJECT_ENV).unwrap_or_default());
    let code = dynamo_migrate::cli::run(args, &project).await;
    std::process::exit(i32::from(code));
}

/// A run of the command line in a child process.
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) fn cli(project: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = child(project, args);
    command
        .env(support::ENDPOINT_ENV, support::endpoint())
        // Credentials for STS (moto takes any); DynamoDB Local takes any too.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// The command line in a child process, for commands that need no DynamoDB (`cli` adds the
/// shared DynamoDB Local and credentials).
pub(crate) fn child(project: &str, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "environments::child_process_running_the_command_line", "--nocapture", "--test-threads=1"])
        .env(CLI_ARGS_ENV, serde_json::to_string(args).unwrap())
        .env(CLI_PROJECT_ENV, project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub(crate) fn finished(output: Output) -> Run {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // libtest names the test first, on the same line as the command's own output.
    let marker = "child_process_running_the_command_line ... ";
    let stdout = stdout.split_once(marker).map_or(stdout.clone(), |(_, rest)| rest.to_owned());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Run { code: output.status.code().unwrap_or(-1), stdout, stderr }
}

pub(crate) fn run(project: &str, args: &[&str]) -> Run {
    finished(cli(project, args, &[]).output().unwrap())
}

/// An environments file for one test, with environments on the shared DynamoDB Local.
pub(crate) struct Envs {
    path: PathBuf,
    pub names: TableNames,
}

impl Envs {
    pub fn new(test: &str, extra: &str) -> Envs {
        let names = support::names(test);
        let path = std::env::temp_dir().join(format!("environments-{}-{}.toml", std::process::id(), names.prefix()));
        let text = format!(
            "[dev]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\nshares_tables = true\n\n\
             [guarded]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nsts_endpoint = \"{sts}\"\naccount_id = \"123456789012\"\ntable_prefix = \"{prefix}\"\nshares_tables = true\n\n\
             [other]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nsts_endpoint = \"{sts}\"\naccount_id = \"999988887777\"\ntable_prefix = \"{prefix}\"\nshares_tables = true\n\n\
             [prod]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\nshares_tables = true\nprotected = true\n\n\
             [unreachable]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9\"\ntable_prefix = \"{prefix}\"\n{extra}",
            endpoint = support::endpoint(),
            sts = if support::has_moto() {
                support::moto_endpoint().unwrap_or("http://127.0.0.1:9")
            } else {
                "http://127.0.0.1:9"
            },
            prefix = names.prefix(),
        );
        std::fs::write(&path, text).unwrap();
        Envs { path, names }
    }

    pub fn file(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Physical tables with this test's prefix (the ledger included).
    pub async fn tables(&self) -> Vec<String> {
        let all = dynamo_migrate::schema_steps::list_tables(&support::client().await).await.unwrap();
        all.into_iter().filter(|t| t.starts_with(self.names.prefix())).collect()
    }
}

impl Drop for Envs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn help_describes_every_option() {
    for (command, options) in [
        ("plan", &["--env", "--environments", "--format"][..]),
        ("migrate", &["--env", "--yes", "--allow-drift", "--target", "--lock-wait", "--lock-lease", "--format"][..]),
        ("status", &["--env", "--format"][..]),
        ("sync", &["--env", "--yes", "--until-quiet", "--lock-wait", "--lock-lease", "--format"][..]),
        ("unlock", &["--env", "--force"][..]),
        ("recover", &["--env", "--version", "--rerun", "--resolved"][..]),
    ] {
        let help = run("example", &[command, "--help"]);
        assert_eq!(help.code, 0, "{command} --help");
        for option in options {
            assert!(help.stdout.contains(option), "{command} --help does not describe {option}:\n{}", help.stdout);
        }
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_exit_2_and_nothing_written() {
    let envs = Envs::new("bad_input", "");
    let file = envs.file();

    let unknown = run("example", &["migrate", "--env", "nosuch", "--environments", file]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains(&format!(
            "unknown environment \"nosuch\"; {file} defines: dev, guarded, other, prod, unreachable"
        )),
        "{}",
        unknown.stderr
    );

    let protected = run("example", &["migrate", "--env", "prod", "--environments", file]);
    assert_eq!(protected.code, 2);
    assert!(
        protected.stderr.contains("environment prod (region us-east-1) is protected: pass --yes, or run in a terminal"),
        "{}",
        protected.stderr
    );

    let unreachable = run("example", &["migrate", "--env", "unreachable", "--environments", file]);
    assert_eq!(unreachable.code, 2);
    assert!(
        unreachable.stderr.contains("environment unreachable: cannot reach DynamoDB at http://127.0.0.1:9"),
        "{}",
        unreachable.stderr
    );

    // Credentials that do not resolve: no keys in the environment, no profile files.
    let home = std::env::temp_dir().join(format!("empty-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let output = cli("example", &["migrate", "--env", "guarded", "--environments", file], &[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .output()
        .unwrap();
    let no_credentials = finished(output);
    assert_eq!(no_credentials.code, 2, "{}", no_credentials.stderr);
    assert!(
        no_credentials
            .stderr
            .contains("environment guarded: cannot tell whose credentials these are, so nothing is done"),
        "{}",
        no_credentials.stderr
    );

    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written");

    for (text, expected) in [
        ("[prod]\nregion = \"eu-west-1\"\naccount_id = 12\n", "line 3"),
        ("[prod]\nregion = \"eu-west-1\"\n", "environment prod has no account_id"),
        ("[prod]\nregion = \"eu-west-1\"\naccount_id = \"123\"\n", "account_id 123 must be 12 digits"),
    ] {
        let path = std::env::temp_dir().join(format!("bad-environments-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let bad = run("example", &["migrate", "--env", "prod", "--environments", path.to_str().unwrap()]);
        assert_eq!(bad.code, 2);
        assert!(bad.stderr.contains(path.to_str().unwrap()) && bad.stderr.contains(expected), "{}", bad.stderr);
        std::fs::remove_file(&path).unwrap();
    }
}

#[tokio::test]
async fn the_account_guard_applies_to_the_right_account_only() {
    let Some(_) = support::has_moto().then(support::moto_endpoint).flatten() else {
        eprintln!("skipped: moto's server is not installed (pip install 'moto[server]'); .ci/run installs it");
        return;
    };
    let envs = Envs::new("guard", "");
    let other = run("example", &["migrate", "--env", "other", "--environments", envs.file()]);
    assert_eq!(other.code, 2, "{}", other.stderr);
    assert!(
        other.stderr.contains(
            "environment other is account 999988887777, but the credentials belong to account 123456789012 (arn:aws:"
        ),
        "{}",
        other.stderr
    );
    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written");

    let good = run("example", &["migrate", "--env", "guarded", "--environments", envs.file()]);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(good.stdout.contains("applied 6 migration(s)"), "{}", good.stdout);
    let ledger = dynamo_migrate::run::Ledger::new(support::client().await, &envs.names);
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 6);
    assert!(records[0].applied_by.starts_with("arn:aws:"), "the caller's ARN is recorded: {}", records[0].applied_by);
}

#[tokio::test]
async fn plan_writes_nothing_and_lists_the_calls() {
    let envs = Envs::new("plan", "");
    let plan = run("example", &["plan", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("0001 create_customers"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!("+ CreateTable {}customers (key customer_nr N)", envs.names.prefix())),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("! DESTRUCTIVE delete version 1 of table customers"), "{}", plan.stdout);
    assert_eq!(envs.tables().await, Vec::<String>::new(), "plan created nothing, not even the ledger");

    let migrate = run("example", &["migrate", "--env", "dev", "--environments", envs.file(), "--target", "3"]);
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let client = support::client().await;
    let ledger = dynamo_migrate::run::Ledger::new(client.clone(), &envs.names);
    let (records, tables) = (ledger.records().await.unwrap(), envs.tables().await);
    let customers = envs.names.physical("customers");
    let described = client.describe_table().table_name(&customers).send().await.unwrap().table.unwrap();

    let plan = run("example", &["plan", "--env", "dev", "--environments", envs.file(), "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let pending: Vec<u64> =
        json["pending"].as_array().unwrap().iter().map(|m| m["version"].as_u64().unwrap()).collect();
    assert_eq!(pending, [4, 5, 6]);
    assert_eq!(json["drift"], serde_json::json!([]));
    assert_eq!(ledger.records().await.unwrap(), records, "the ledger is untouched");
    assert_eq!(envs.tables().await, tables);
    let after = client.describe_table().table_name(&customers).send().await.unwrap().table.unwrap();
    assert_eq!(
        (after.item_count(), after.global_secondary_indexes().len()),
        (described.item_count(), described.global_secondary_indexes().len())
    );

    // Drift: an index that no migration made stops migrate, and status names it.
    let drift_index = aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
        .delete(
            aws_sdk_dynamodb::types::DeleteGlobalSecondaryIndexAction::builder()
                .index_name("by_postcode")
                .build()
                .unwrap(),
        )
        .build();
    client.update_table().table_name(&customers).global_secondary_index_updates(drift_index).send().await.unwrap();
    dynamo_migrate::schema_steps::wait_until_active(&client, &customers, Duration::from_secs(60)).await.unwrap();
    let status = run("example", &["status", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("0002 add_customers_by_postcode") && status.stdout.contains(" applied "),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("0004 backfill_email_normalised") && status.stdout.contains("pending"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains(&format!("table customers ({customers}) differs: global_indexes.by_postcode: expected {{")),
        "{}",
        status.stdout
    );
    let refused = run("example", &["migrate", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("the live tables differ from what the applied migrations produced, so nothing was applied"),
        "{}",
        refused.stderr
    );
    assert_eq!(ledger.records().await.unwrap(), records);
}

#[tokio::test]
async fn the_example_rebuild_waits_for_cut_over_and_sync_replays_what_is_written_meanwhile() {
    let envs = Envs::new("sync", "");
    let args = |command: &'static str, more: &[&'static str]| {
        let mut args = vec![command, "--env", "dev", "--environments", envs.file(), "--format", "json"];
        args.extend_from_slice(more);
        args
    };
    let json = |run: &Run| -> serde_json::Value {
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
    };
    let migrate = run("example", &args("migrate", &["--target", "5"]));
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let status = run("example", &args("status", &[]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status = json(&status);
    assert_eq!(status["rebuilds"][0]["phase"], "waiting_for_cut_over", "{status:#}");
    assert_eq!(status["drift"], serde_json::json!([]), "the stream the rebuild left is expected");

    // The application, not yet moved, writes to version 1; sync takes it to version 2.
    let client = support::client().await;
    let customer = dynamo_migrate::to_item(&serde_json::json!({
        "customer_nr": 77, "name": "Late", "email": "Late@Example.com", "email_normalised": "late@example.com"
    }))
    .unwrap();
    client.put_item().table_name(envs.names.physical("customers")).set_item(Some(customer)).send().await.unwrap();
    let sync = run("example", &args("sync", &[]));
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    let sync = json(&sync);
    assert_eq!(sync["ok"], true, "{sync:#}");
    assert_eq!(sync["rebuilds"][0]["version"], 5, "{sync:#}");
    assert_eq!(sync["rebuilds"][0]["replay"]["puts"], 1, "{sync:#}");
    let copied = client
        .get_item()
        .table_name(envs.names.physical_version("customers", 2))
        .key("customer_nr", AttributeValue::N("77".to_owned()))
        .key("record", AttributeValue::S("profile".to_owned()))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.item.and_then(|i| i.get("name").cloned()), Some(AttributeValue::S("Late".to_owned())));

    // A protected environment needs --yes for sync, as for migrate.
    let refused = run("example", &["sync", "--env", "prod", "--environments", envs.file()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);

    // On DynamoDB Local the quiet window is zero: migration 6 replays once more and cuts over.
    let migrate = run("example", &args("migrate", &[]));
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let status = json(&run("example", &args("status", &[])));
    assert_eq!(status["rebuilds"][0]["phase"], "cut_over", "{status:#}");
}

#[tokio::test]
async fn two_migrates_at_once_apply_each_migration_exactly_once() {
    let envs = Envs::new("concurrent", "");
    let args = ["migrate", "--env", "dev", "--environments", envs.file()];
    let first = cli("example", &args, &[]).spawn().unwrap();
    let second = cli("example", &args, &[]).spawn().unwrap();
    let (first, second) = (finished(first.wait_with_output().unwrap()), finished(second.wait_with_output().unwrap()));
    assert_eq!((first.code, second.code), (0, 0), "{}\n{}", first.stderr, second.stderr);
    let outputs = [first.stdout, second.stdout];
    assert_eq!(outputs.iter().filter(|o| o.contains("applied 6 migration(s)")).count(), 1, "{outputs:#?}");
    assert_eq!(outputs.iter().filter(|o| o.contains("nothing to apply")).count(), 1, "{outputs:#?}");
    let records = dynamo_migrate::run::Ledger::new(support::client().await, &envs.names).records().await.unwrap();
    assert_eq!(records.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert!(records.iter().all(|r| r.status == dynamo_migrate::run::Status::Succeeded));
}

#[tokio::test]
async fn a_killed_migrate_is_reported_dirty_and_recovers() {
    let envs = Envs::new("killed", "");
    let file = envs.file();
    let created = run("slow", &["migrate", "--env", "dev", "--environments", file, "--target", "1"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let client = support::client().await;
    let items: Vec<support::Item> = (0..20_000)
        .map(|i| {
            [
                ("id".to_owned(), AttributeValue::S(format!("acct-{i:06}"))),
                ("n".to_owned(), AttributeValue::N(i.to_string())),
            ]
            .into()
        })
        .collect();
    dynamo_migrate::DataContext::new(client.clone(), envs.names.clone())
        .put_items("accounts", items.clone())
        .await
        .unwrap();

    let mut child =
        cli("slow", &["migrate", "--env", "dev", "--environments", file, "--lock-lease", "3"], &[]).spawn().unwrap();
    let copy = envs.names.physical("copy");
    let mut waited = Duration::ZERO;
    while client.scan().table_name(&copy).select(aws_sdk_dynamodb::types::Select::Count).send().await.unwrap().count()
        < 3_000
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
        assert!(waited < Duration::from_secs(60), "the copy did not start");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // While the dead run's lease lasts, the lock is held; unlock shows the holder.
    let unlock = run("slow", &["unlock", "--env", "dev", "--environments", file]);
    assert_eq!(unlock.code, 0);
    assert!(
        unlock.stdout.contains("the migration lock is held by") && unlock.stdout.contains(" pid "),
        "{}",
        unlock.stdout
    );

    // After the lease, the next run takes the lock, finds the migration running, and says how to recover.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let dirty = run("slow", &["migrate", "--env", "dev", "--environments", file]);
    assert_eq!(dirty.code, 1);
    assert!(
        dirty.stderr.contains("migration 2 (copy_accounts) is running since")
            && dirty
                .stderr
                .contains(&format!("`cargo xtask recover --env dev --environments {file} --version 2 --rerun`")),
        "{}",
        dirty.stderr
    );
    let recover = run("slow", &["recover", "--env", "dev", "--environments", file, "--version", "2", "--rerun"]);
    assert_eq!(recover.code, 0, "{}", recover.stderr);
    let resumed = run("slow", &["migrate", "--env", "dev", "--environments", file]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(content_hash(&client, &copy).await, expected_hash(&items));

    let status = run("slow", &["status", "--env", "dev", "--environments", file, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["migrations"][1]["state"], "applied");
    assert_eq!(json["lock"], serde_json::Value::Null);
}

// On a runtime of several threads: the holder's heartbeat must run while `run` blocks one.
#[tokio::test(flavor = "multi_thread")]
async fn unlock_removes_only_a_lock_that_is_not_renewed() {
    let envs = Envs::new("unlock", "");
    let client = support::client().await;
    let ledger = dynamo_migrate::run::Ledger::new(client.clone(), &envs.names);
    ledger.ensure().await.unwrap();
    let options = dynamo_migrate::run::LockOptions {
        owner: "a run that will die".to_owned(),
        lease: Duration::from_secs(3),
        wait: Duration::ZERO,
        ..dynamo_migrate::run::LockOptions::new("test")
    };
    let lock = dynamo_migrate::run::Lock::acquire(&client, ledger.table(), &options).await.unwrap();
    let alive = run("example", &["unlock", "--env", "dev", "--environments", envs.file(), "--force"]);
    assert_eq!(alive.code, 2);
    assert!(alive.stderr.contains("the lock's holder is alive"), "{}", alive.stderr);
    // Dropped without release: the heartbeat stops, as when its run hangs (its process, this
    // one, lives on); unlock watches it for a lease without a renewal, then removes it.
    drop(lock);
    let holder = dynamo_migrate::run::lock_holder(&client, ledger.table()).await.unwrap().unwrap();
    assert_eq!(holder.owner, "a run that will die");
    let dead = run("example", &["unlock", "--env", "dev", "--environments", envs.file(), "--force"]);
    assert_eq!(dead.code, 0, "{}", dead.stderr);
    assert!(dead.stdout.contains("removed") && dead.stdout.contains("has not renewed the lock"), "{}", dead.stdout);
    assert_eq!(dynamo_migrate::run::lock_holder(&client, ledger.table()).await.unwrap(), None);
}
