//! Ctrl-C and a CI runner's cancel through the real `cargo xtask`: the xtask binary, built from
//! this workspace, runs in a process group of its own as a terminal runs a command, with a
//! stand-in for cargo that runs the command line of this test binary (the runner) on a slow
//! data step. SIGINT, or SIGTERM, sent a few seconds into `migrate` stops the run at a
//! checkpoint; the command the shell waits for ends only when the runner has ended, with the
//! runner's exit code and its last message printed, and the next run resumes.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::Project;
use dynamo_migrate::run::Status;

use crate::environments::{Envs, run};
use crate::support::{self, content_hash, expected_hash};

/// Set in the runner that the stand-in for cargo starts.
const RUNNER_ENV: &str = "DYNAMO_MIGRATE_TEST_XTASK_RUNNER";

/// Not a test of its own: the runner, as cargo would run it for the xtask. Its arguments are
/// cargo's (`run --quiet --package runner --release -- <the command>`) after libtest's `--`.
#[tokio::test(flavor = "multi_thread")]
async fn runner_run_by_the_xtask() {
    if std::env::var(RUNNER_ENV).is_err() {
        return;
    }
    let mut args = std::env::args().skip_while(|a| a != "--").skip(1);
    let command: Vec<String> = args.by_ref().skip_while(|a| a != "--").skip(1).collect();
    let project = Project { tables: vec![], migrations: crate::environments::slow_migrations() };
    std::process::exit(i32::from(dynamo_migrate::cli::run(command, &project).await));
}

/// The repository's root (this crate is `tests/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The xtask binary of this workspace, built into a target directory of its own inside this
/// test binary's: `init`'s test builds the xtask of another workspace into the shared one, under
/// the same name. The xtask is light (xshell and anyhow), so this takes seconds.
fn xtask_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let shared = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_owned();
            let target = shared.join("interrupt-test");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "--package", "xtask"])
                .current_dir(repository())
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .unwrap();
            assert!(status.success(), "the xtask builds");
            target.join("debug").join("xtask")
        })
        .clone()
}

/// A stand-in for cargo: what follows `--` in its arguments (the runner's) goes to this test
/// binary's runner.
fn cargo_stand_in(dir: &Path) -> PathBuf {
    let script = dir.join("cargo");
    let test_binary = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' --exact interrupt::runner_run_by_the_xtask --nocapture --test-threads=1 -- \"$@\"\n",
            test_binary.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    script
}

/// Whether any process of group `group` is left.
fn group_alive(group: u32) -> bool {
    Command::new("kill").args(["-0", "--", &format!("-{group}")]).stderr(Stdio::null()).status().unwrap().success()
}

/// Where a signal goes: the whole process group (a terminal's Ctrl-C), or only the process the
/// shell started (a job runner's cancel may signal only that).
#[derive(Debug, Clone, Copy)]
enum To {
    Group,
    Process,
}

/// How `cargo xtask migrate` ended after a signal.
struct Ended {
    code: Option<i32>,
    stderr: String,
}

/// Runs `cargo xtask migrate` (the real xtask, in a process group of its own) on `envs`, sends
/// `signal` once the copy is under way, and waits for the xtask: the group must be empty when
/// it has ended, so that the runner ended first.
async fn migrate_and_signal(envs: &Envs, signal: &str, to: To) -> Ended {
    let dir = std::env::temp_dir().join(format!("xtask-{}-{}", std::process::id(), envs.names.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut xtask = Command::new(xtask_binary())
        .args(["migrate", "--env", "dev", "--environments", envs.file()])
        .env("CARGO", cargo_stand_in(&dir))
        .env(RUNNER_ENV, "1")
        .env(support::ENDPOINT_ENV, support::endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let group = xtask.id();
    let mut stderr = xtask.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });

    // A few seconds in: the copy has written part of the table.
    let (client, copy) = (support::client().await, envs.names.physical("copy"));
    let count = || async {
        let scan = client.scan().table_name(&copy).select(aws_sdk_dynamodb::types::Select::Count).send().await;
        scan.map_or(0, |s| s.count())
    };
    let mut waited = Duration::ZERO;
    while count().await < 3_000 {
        if let Some(status) = xtask.try_wait().unwrap() {
            panic!("the run ended before the signal ({status}):\n{}", reader.join().unwrap());
        }
        assert!(waited < Duration::from_secs(120), "the copy did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let target = match to {
        To::Group => format!("-{group}"),
        To::Process => group.to_string(),
    };
    assert!(Command::new("kill").args(["-s", signal, "--", &target]).status().unwrap().success());

    let status = tokio::task::spawn_blocking(move || xtask.wait().unwrap()).await.unwrap();
    // Nothing of the command is left once the process the shell waits for has ended: the runner
    // ended before, and said everything it said before.
    if group_alive(group) {
        // Leave nothing behind, then fail.
        let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{group}")]).status();
        panic!("the xtask ended while a process of its group ran on");
    }
    let stderr = reader.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    println!("$ cargo xtask migrate (then SIGINT/SIGTERM)\n{stderr}");
    Ended { code: status.code(), stderr }
}

/// `accounts` created and filled (20,000 items), `copy` empty: migration 2 pending.
async fn seeded(test: &str) -> (Envs, Vec<support::Item>) {
    let envs = Envs::new(test, "");
    let created = run("slow", &["migrate", "--env", "dev", "--environments", envs.file(), "--target", "1"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let items: Vec<support::Item> = (0..20_000)
        .map(|i| {
            [
                ("id".to_owned(), AttributeValue::S(format!("acct-{i:06}"))),
                ("n".to_owned(), AttributeValue::N(i.to_string())),
            ]
            .into()
        })
        .collect();
    let ctx = dynamo_migrate::DataContext::new(support::client().await, envs.names.clone());
    ctx.put_items("accounts", items.clone()).await.unwrap();
    (envs, items)
}

/// After the signal: exit 1 with the runner's last message, migration 2 recorded as interrupted,
/// the lock free, and the next run finishes the copy from the checkpoints.
async fn check_stopped_and_resumable(envs: &Envs, items: &[support::Item], ended: &Ended, by: &str) {
    assert_eq!(ended.code, Some(1), "the runner's code for a stopped run: {}", ended.stderr);
    assert!(
        ended.stderr.contains(&format!("{by}: finishing the call in flight, then stopping at a checkpoint")),
        "{}",
        ended.stderr
    );
    let last = ended.stderr.lines().rfind(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(
        last.starts_with("error: migration 2 (copy_accounts), data step copy_accounts_slowly: ")
            && last.contains(": interrupted with ")
            && last.ends_with(&format!(
                "stopped by {by}: the ledger records where; to go on, run `cargo xtask migrate --env dev --environments {}`",
                envs.file()
            )),
        "{}",
        ended.stderr
    );
    let client = support::client().await;
    let ledger = dynamo_migrate::run::Ledger::new(client.clone(), &envs.names);
    assert_eq!(ledger.records().await.unwrap()[1].status, Status::Interrupted);
    assert_eq!(dynamo_migrate::run::lock_holder(&client, ledger.table()).await.unwrap(), None, "the lock is released");

    let resumed = run("slow", &["migrate", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(content_hash(&client, &envs.names.physical("copy")).await, expected_hash(items));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_in_a_terminal_ends_cargo_xtask_only_after_the_runner() {
    let (envs, items) = seeded("xtask_sigint").await;
    let ended = migrate_and_signal(&envs, "INT", To::Group).await;
    check_stopped_and_resumable(&envs, &items, &ended, "Ctrl-C").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ci_cancel_sigterm_ends_cargo_xtask_only_after_the_runner() {
    // To the whole group, as a terminal would send it.
    let (envs, items) = seeded("xtask_sigterm").await;
    let ended = migrate_and_signal(&envs, "TERM", To::Group).await;
    check_stopped_and_resumable(&envs, &items, &ended, "SIGTERM").await;

    // To the process the job runner started alone: it is the runner, so the signal reaches it.
    let (envs, items) = seeded("xtask_sigterm_pid").await;
    let ended = migrate_and_signal(&envs, "TERM", To::Process).await;
    check_stopped_and_resumable(&envs, &items, &ended, "SIGTERM").await;
}
