//! Bad and awkward input, round two (issue 15): each is refused before anything happens, with
//! the exit code the README documents, a message that names the thing and ends with the
//! complete command to run next, and nothing written. Through the command line, in child
//! processes (this test binary), as `bad_input` does.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use dynamo_migrate::{DataReport, DataStep, KeyAttr, Migration, Project, TableDef, TableSchema};

use crate::environments::{Envs, Run, cli, finished, run};
use crate::support;

/// The projects the child processes below run, by name.
pub fn project(name: &str) -> Project {
    const ALPHA: &str = "//! Creates alpha.\n";
    let alpha = || {
        Migration::from_file("m0001_create_alpha.rs", "migrations/src/m0001_create_alpha.rs", ALPHA)
            .create_table(TableDef::new("alpha", KeyAttr::s("id")))
    };
    let migrations = match name {
        // A file copied from m0001 and registered as the next migration, its migration!(..)
        // unchanged: it registers m0001's file.
        "refusals:copied" => vec![
            alpha(),
            Migration::from_file("m0001_create_alpha.rs", "migrations/src/m0002_copied.rs", ALPHA)
                .create_table(TableDef::new("alpha", KeyAttr::s("id"))),
        ],
        // Two files of the same version.
        "refusals:duplicate" => vec![
            alpha(),
            Migration::new(1, "create_beta", "beta").create_table(TableDef::new("beta", KeyAttr::s("id"))),
        ],
        // A migration as `new` writes it, never finished, and one whose generated header still
        // asks why.
        "refusals:unfinished" => vec![
            alpha(),
            Migration::from_file(
                "m0002_add_orders.rs",
                "migrations/src/m0002_add_orders.rs",
                &dynamo_migrate::authoring::render_empty("m0002_add_orders.rs"),
            ),
            Migration::from_file(
                "m0003_beta.rs",
                "migrations/src/m0003_beta.rs",
                "//! Brings the tables to what the schema crate declares:\n//! - create table beta.\n//!\n//! Written by `cargo xtask new beta --from-schema`: say here why.\n",
            )
            .create_table(TableDef::new("beta", KeyAttr::s("id"))),
        ],
        "refusals:fine" => {
            let migrations = vec![
                alpha(),
                Migration::new(2, "nothing", "nothing")
                    .data(DataStep::new("nothing", |_| async { Ok(DataReport::default()) })),
            ];
            let tables = vec![TableSchema::new::<Alpha>(TableDef::new("alpha", KeyAttr::s("id")))];
            return Project { tables, migrations };
        }
        other => panic!("no project {other}"),
    };
    Project { tables: vec![], migrations }
}

/// An item of table alpha.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Alpha {
    id: String,
}

/// The line of stderr that starts with `error: `.
fn error_line(run: &Run) -> &str {
    run.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default()
}

/// An environments file of this test's own: removed when dropped.
struct File(PathBuf);

impl File {
    fn new(test: &str, text: &str) -> File {
        let path = std::env::temp_dir().join(format!("refusals-{test}-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        File(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Tables whose names start with `prefix`.
async fn tables(prefix: &str) -> Vec<String> {
    let all = dynamo_migrate::schema_steps::list_tables(&support::client().await).await.unwrap();
    all.into_iter().filter(|t| t.starts_with(prefix)).collect()
}

// ---------------------------------------------------------------------------------------------
// The twelve that went wrong (items 3 to 6 and 10 are in `authoring` and `init`, 12 in
// `interrupt`).
// ---------------------------------------------------------------------------------------------

/// Item 1: two environments on one endpoint with one prefix and their own ledgers passed the
/// check, and a later `migrate --allow-drift` ran into the other's tables.
#[tokio::test]
async fn environments_whose_tables_meet_are_refused_whatever_their_ledgers() {
    let prefix = support::names("meet").prefix().to_owned();
    let endpoint = support::endpoint();
    let file = File::new(
        "meet",
        &format!(
            "[dev]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\n\n\
             [other]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\nledger_table = \"other_ledger\"\n"
        ),
    );
    for args in [
        vec!["status", "--env", "other", "--environments", file.path()],
        vec!["migrate", "--env", "dev", "--environments", file.path(), "--allow-drift"],
    ] {
        let refused = run("example", &args);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            error_line(&refused).starts_with(&format!(
                "error: {}: environments dev and other use the same tables (endpoint {endpoint}, table prefix \"{prefix}\"), so they would overwrite each other's tables, whatever their ledgers",
                file.path()
            )),
            "{}",
            refused.stderr
        );
        assert!(
            error_line(&refused).ends_with(&format!(
                "then run `cargo xtask {} --env {} --environments {}`",
                args[0],
                args[2],
                file.path()
            )),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(tables(&prefix).await, Vec::<String>::new(), "nothing was written");
}

/// Item 2: `migrate --target 99` with 6 migrations applied everything.
#[tokio::test]
async fn a_target_or_version_that_names_no_migration_is_refused() {
    let envs = Envs::new("no_target", "");
    let file = envs.file();
    for command in ["migrate", "plan"] {
        let refused = run("example", &[command, "--env", "dev", "--environments", file, "--target", "99"]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert_eq!(
            error_line(&refused),
            format!(
                "error: --target 99 names no migration: the migrations are 1 to 6; to stop after migration 6, run `cargo xtask {command} --env dev --environments {file} --target 6`"
            )
        );
    }
    let negative = run("example", &["migrate", "--env", "dev", "--environments", file, "--target", "-1"]);
    assert_eq!(negative.code, 2, "{}", negative.stderr);
    assert!(negative.stderr.contains("invalid value '-1' for '--target <TARGET>'"), "{}", negative.stderr);
    let recover = run("example", &["recover", "--env", "dev", "--environments", file, "--version", "99", "--rerun"]);
    assert_eq!(recover.code, 2, "{}", recover.stderr);
    assert_eq!(
        error_line(&recover),
        format!(
            "error: --version 99 names no migration of the code, whose migrations are 1 to 6: if the ledger records it, restore its file (migrations are append-only); see which migration is left to recover with `cargo xtask status --env dev --environments {file}`"
        )
    );
    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written, not even the ledger");
}

/// Items 7 and 8: `bench --item-bytes 100` ran with 300-byte items, `--items 0` printed NaN.
#[test]
fn bench_values_out_of_range_are_refused_naming_the_range() {
    for (args, expected) in [
        (
            ["bench", "--item-bytes", "100"],
            "invalid value '100' for '--item-bytes <ITEM_BYTES>': 100 is not in 300..=400000",
        ),
        (["bench", "--items", "0"], "invalid value '0' for '--items <ITEMS>': 0 is not in 1..=100000000"),
        (["bench", "--items", "-1"], "invalid value '-1' for '--items <ITEMS>'"),
    ] {
        let refused = run("example", &args);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.starts_with(&format!("error: {expected}")), "{}", refused.stderr);
    }
}

/// Item 9: `local` on a port where another DynamoDB Local answers said it had started one.
#[test]
fn local_on_a_port_another_server_holds_is_refused_naming_it() {
    let endpoint = support::endpoint();
    let port = endpoint.rsplit(':').next().unwrap();
    let file = File::new("taken", &format!("[dev]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n"));
    let mut child =
        cli("example", &["local", "--env", "dev", "--environments", file.path(), "--no-docker"], &[]).spawn().unwrap();
    // Refused at once; were it not, it would wait for Ctrl-C: stop it then, and fail.
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("local is still running on a taken port");
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    }
    let refused = finished(child.wait_with_output().unwrap());
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let line = error_line(&refused);
    assert!(
        line.starts_with(&format!("error: port {port} on 127.0.0.1 is taken, by process "))
            && line.contains("(java), which answers as DynamoDB does (a DynamoDB Local already running there")
            && line.ends_with(&format!(
                "stop it, or give environment dev another port in its endpoint (in {}), then run `cargo xtask local --env dev --environments {}`",
                file.path(),
                file.path()
            )),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("is running at"), "{}", refused.stdout);
}

/// Item 11: `recover --resolved --restart-passes` deleted the checkpoints and recorded the
/// migration applied.
#[tokio::test]
async fn restart_passes_goes_only_with_rerun() {
    let envs = Envs::new("restart_resolved", "");
    let args = |more: &[&'static str]| [&["recover", "--env", "dev", "--environments", envs.file()][..], more].concat();
    let failed = run("bad_input:broken", &["migrate", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let ledger = dynamo_migrate::run::Ledger::new(support::client().await, &envs.names);
    let before = ledger.records().await.unwrap();
    let refused = run("bad_input:fixed", &args(&["--version", "2", "--resolved", "--restart-passes"]));
    assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.starts_with("error: the argument '--resolved' cannot be used with '--restart-passes'"),
        "{}",
        refused.stderr
    );
    assert_eq!(ledger.records().await.unwrap(), before, "the record is as it was");
    let rerun = run("bad_input:fixed", &args(&["--version", "2", "--rerun", "--restart-passes"]));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
}

// ---------------------------------------------------------------------------------------------
// The unclear ones: the next step, the thing named, this tool's words.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_or_empty_environments_file_says_what_to_write_and_what_to_run() {
    let missing = std::env::temp_dir().join(format!("no-such-environments-{}.toml", std::process::id()));
    let missing = missing.to_str().unwrap();
    let refused = run("example", &["status", "--env", "dev", "--environments", missing]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(
        error_line(&refused),
        format!(
            "error: there is no environments file {missing}: write it (`cargo xtask init` writes environments.toml at the workspace root), or name yours with --environments <file>; then run `cargo xtask status --env dev --environments {missing}`"
        )
    );
    let empty = File::new("empty", "# nothing yet\n");
    let refused = run("example", &["migrate", "--env", "dev", "--environments", empty.path()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        error_line(&refused)
            .starts_with(&format!("error: {} defines no environment: add one as a table, e.g. [dev]", empty.path()))
            && error_line(&refused)
                .ends_with(&format!("then run `cargo xtask migrate --env dev --environments {}`", empty.path())),
        "{}",
        refused.stderr
    );
    // A typo: the nearest name, and the command with it; an empty name is refused by the option.
    let envs = Envs::new("typo", "");
    let typo = run("example", &["status", "--env", "dve", "--environments", envs.file()]);
    assert_eq!(typo.code, 2);
    assert!(
        error_line(&typo)
            .ends_with(&format!("did you mean dev? `cargo xtask status --env dev --environments {}`", envs.file())),
        "{}",
        typo.stderr
    );
    for args in [&["status", "--env", ""][..], &["verify", "--endpoint", ""][..]] {
        let refused = run("example", args);
        assert_eq!(refused.code, 2, "{args:?}");
        assert!(
            refused.stderr.starts_with(&format!("error: a value is required for '{} <", args[1])),
            "{}",
            refused.stderr
        );
    }
}

#[tokio::test]
async fn endpoints_and_regions_that_cannot_work_are_named() {
    let names = support::names("named");
    let prefix = names.prefix();
    for (text, expected) in [
        (
            "[dev]\nregion = \"us-east-1\"\nendpoint = \"http://0.0.0.0:8000\"\n",
            "endpoint = \"http://0.0.0.0:8000\" is not a URL (0.0.0.0 is where a server listens, not an address to connect to: use 127.0.0.1)",
        ),
        ("[dev]\nregion = \"\"\nendpoint = \"http://127.0.0.1:8000\"\n", "region \"\" is not an AWS region"),
        (
            "[dev]\nregion = \"eu west\"\nendpoint = \"http://127.0.0.1:8000\"\n",
            "region \"eu west\" is not an AWS region",
        ),
    ] {
        let file = File::new("named", text);
        let refused = run("example", &["status", "--env", "dev", "--environments", file.path()]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(error_line(&refused).contains(expected), "{expected}\n  not in: {}", refused.stderr);
        assert!(
            error_line(&refused)
                .ends_with(&format!("then run `cargo xtask status --env dev --environments {}`", file.path())),
            "{}",
            refused.stderr
        );
        assert!(!refused.stderr.contains("Interceptor"), "no SDK internals: {}", refused.stderr);
    }

    // Nothing listens: how to start DynamoDB Local there.
    let envs = Envs::new("unreachable_next", "");
    let refused = run("example", &["plan", "--env", "unreachable", "--environments", envs.file()]);
    assert_eq!(refused.code, 2);
    assert!(
        error_line(&refused).ends_with(&format!(
            "start DynamoDB Local there (`cargo xtask local --env unreachable --environments {file}`), or correct the endpoint of [unreachable] in the environments file, then run `cargo xtask plan --env unreachable --environments {file}`",
            file = envs.file()
        )),
        "{}",
        refused.stderr
    );

    // Something that is not DynamoDB answers: a web server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 15\r\nconnection: close\r\n\r\n<html>hi</html>",
            );
        }
    });
    let file = File::new(
        "web",
        &format!("[web]\nregion = \"us-east-1\"\nendpoint = \"{web}\"\ntable_prefix = \"{prefix}\"\n"),
    );
    let refused = run("example", &["status", "--env", "web", "--environments", file.path()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        error_line(&refused).starts_with(&format!(
            "error: environment web: what answers at {web} is not DynamoDB (its answer to ListTables cannot be read"
        )),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn credentials_problems_name_sts_and_the_profile_in_this_tools_words() {
    let endpoint = support::endpoint();
    let prefix = support::names("credentials").prefix().to_owned();
    // An STS that does not answer is not a matter of credentials.
    let file = File::new(
        "sts",
        &format!(
            "[guarded]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nsts_endpoint = \"http://127.0.0.1:9\"\naccount_id = \"123456789012\"\ntable_prefix = \"{prefix}\"\n"
        ),
    );
    let home = std::env::temp_dir().join(format!("refusals-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let missing_config = home.join("no-such-config");
    let output = cli("example", &["status", "--env", "guarded", "--environments", file.path()], &[])
        .env("AWS_CONFIG_FILE", &missing_config)
        .output()
        .unwrap();
    let refused = finished(output);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(
        error_line(&refused),
        format!(
            "error: environment guarded: cannot reach STS at http://127.0.0.1:9 to ask whose credentials these are, so nothing is done: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111); check this machine's network and the sts_endpoint of the environment, then run `cargo xtask status --env guarded --environments {}`",
            file.path()
        )
    );
    // AWS_CONFIG_FILE naming no file: said once, in this tool's words, without colour codes.
    assert!(
        refused.stderr.starts_with(&format!(
            "warning: AWS_CONFIG_FILE names {}, which does not exist, so the AWS SDK reads no profile from it; unset AWS_CONFIG_FILE or point it at your file\n",
            missing_config.display()
        )),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("WARN") && !refused.stderr.contains('\u{1b}'), "{:?}", refused.stderr);

    // A profile no file defines is named.
    let file = File::new(
        "profile",
        &format!(
            "[staging]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nsts_endpoint = \"http://127.0.0.1:9\"\nprofile = \"shop-staging\"\naccount_id = \"123456789012\"\ntable_prefix = \"{prefix}\"\n"
        ),
    );
    let output = cli("example", &["migrate", "--env", "staging", "--environments", file.path()], &[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("HOME", &home)
        .output()
        .unwrap();
    let refused = finished(output);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(
        error_line(&refused),
        format!(
            "error: environment staging: profile shop-staging is in neither {home}/.aws/config nor {home}/.aws/credentials, so its credentials cannot be had and nothing is done; add it (`aws configure --profile shop-staging`, or `aws configure sso --profile shop-staging`), or name an existing profile in [staging] of the environments file, then run `cargo xtask migrate --env staging --environments {}`",
            file.path(),
            home = home.display()
        )
    );
    assert!(!refused.stderr.contains("WARN"), "{}", refused.stderr);
    std::fs::remove_dir_all(&home).unwrap();
    assert_eq!(tables(&prefix).await, Vec::<String>::new(), "nothing was written");
}

#[tokio::test]
async fn bad_migrations_name_the_file_and_what_to_run_with_nothing_written() {
    // A copied file: its registration names it, before anything else is said or written.
    let envs = Envs::new("copied", "");
    let copied = run("refusals:copied", &["migrate", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(copied.code, 1, "{}", copied.stderr);
    assert_eq!(
        error_line(&copied),
        "error: nothing was applied: 1 problem(s) in the migrations to apply: migration 1 (create_alpha): migrations/src/m0002_copied.rs registers migration!(\"m0001_create_alpha.rs\"), another migration's file: each migration registers its own file, so that its checksum is of its own source; write migration!(\"m0002_copied.rs\") in it (its version and name come from its file's name), then run `cargo xtask verify`; fix them, then check with `cargo xtask verify`"
    );
    let duplicate = run("refusals:duplicate", &["plan", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(duplicate.code, 1, "{}", duplicate.stderr);
    assert_eq!(
        error_line(&duplicate),
        "error: the ledger refuses to run: migration version 1 is used twice in the code (create_alpha and create_beta): give create_beta the next free version, 2: rename its file m0002_create_beta.rs (and the name in its migration!(..) and lib.rs), then run `cargo xtask verify`"
    );
    let duplicate = run("refusals:duplicate", &["migrate", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(duplicate.code, 1, "{}", duplicate.stderr);
    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written, not even the ledger");

    // A failed data step says how to recover.
    let failed = run("bad_input:broken", &["migrate", "--env", "dev", "--environments", envs.file()]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        error_line(&failed).starts_with("error: migration 2 (fix_alpha), data step explode: a customer has no name; the ledger records migration 2 as failed")
            && error_line(&failed).ends_with(&format!(
                "then run `cargo xtask recover --env dev --environments {file} --version 2 --rerun` to apply it again, or `cargo xtask recover --env dev --environments {file} --version 2 --resolved` if you complete it by hand",
                file = envs.file()
            )),
        "{}",
        failed.stderr
    );
    // Resolved by hand: status shows it applied, without its old failure.
    let resolved = run(
        "bad_input:fixed",
        &["recover", "--env", "dev", "--environments", envs.file(), "--version", "2", "--resolved"],
    );
    assert_eq!(resolved.code, 0, "{}", resolved.stderr);
    let status = run("bad_input:fixed", &["status", "--env", "dev", "--environments", envs.file()]);
    let row = status.stdout.lines().find(|l| l.contains("0002 fix_alpha")).unwrap_or_default();
    assert!(
        row.contains(" applied ") && row.contains("(recovered by ") && !row.contains("no name"),
        "{}",
        status.stdout
    );
}

#[tokio::test]
async fn recover_waiting_for_a_live_holder_names_no_option_it_lacks() {
    let envs = Envs::new("recover_wait", "");
    let client = support::client().await;
    let ledger = dynamo_migrate::run::Ledger::new(client.clone(), &envs.names);
    assert_eq!(run("bad_input:broken", &["migrate", "--env", "dev", "--environments", envs.file()]).code, 1);
    let lock = dynamo_migrate::run::Lock::acquire(
        &client,
        ledger.table(),
        &dynamo_migrate::run::LockOptions::new("a live run"),
    )
    .await
    .unwrap();
    let mut child = cli(
        "bad_input:fixed",
        &["recover", "--env", "dev", "--environments", envs.file(), "--version", "2", "--rerun"],
        &[],
    )
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let waiting = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr).lines().map_while(Result::ok).find(|l| l.starts_with("waiting for the migration lock"))
    })
    .await
    .unwrap()
    .expect("recover says whom it waits for");
    child.kill().unwrap();
    child.wait().unwrap();
    lock.release().await.unwrap();
    assert!(waiting.ends_with("waiting at most 30 s"), "{waiting}");
}

#[tokio::test]
async fn lint_files_are_read_exactly_and_their_errors_say_where() {
    let dir = std::env::temp_dir().join(format!("refusals-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let no_reason = file("no_reason.toml", "[[acknowledge]]\nmigration = 5\nrule = \"rebuild\"\n");
    let refused = run("authoring:risky", &["lint", "--acknowledged", &no_reason]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(
        error_line(&refused),
        format!(
            "error: {no_reason}: acknowledge #1 (migration 5, rule rebuild) has no reason: say why the risk is taken; fix it, then run `cargo xtask lint --acknowledged {no_reason}`"
        )
    );
    let broken = file("broken.toml", "[[acknowledge]]\nmigration = 5\nrule = rebuild\n");
    let refused = run("authoring:risky", &["lint", "--acknowledged", &broken]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        error_line(&refused).starts_with(&format!(
            "error: cannot read the acknowledgements file {broken}: TOML parse error at line 3, column 8: "
        )),
        "{}",
        refused.stderr
    );
    let missing = dir.join("missing.toml");
    let refused = run("authoring:risky", &["lint", "--acknowledged", missing.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(
        error_line(&refused),
        format!(
            "error: --acknowledged {}: there is no such file; name the file of acknowledged findings (without --acknowledged, lint.toml), then run `cargo xtask lint`",
            missing.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn schemas_into_a_directory_that_cannot_be_made_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("refusals-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-file"), "").unwrap();
    let target = dir.join("a-file/schemas");
    let refused = run("example", &["schemas", "--dir", target.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        error_line(&refused)
            .starts_with(&format!("error: cannot write the JSON Schemas into {}: creating", target.display()))
            && error_line(&refused).ends_with("; name a directory you can write, `cargo xtask schemas --dir <dir>`"),
        "{}",
        refused.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Found while adopting the tool.
// ---------------------------------------------------------------------------------------------

/// `status --check` is CI's gate: exit 1 on drift (and a changed, missing, running or failed
/// migration), 0 otherwise.
#[tokio::test]
async fn status_check_fails_on_drift() {
    let envs = Envs::new("status_check", "");
    let args = ["status", "--env", "dev", "--environments", envs.file(), "--check"];
    let migrate = run("example", &["migrate", "--env", "dev", "--environments", envs.file(), "--target", "2"]);
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let clean = run("example", &args);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);

    let client = support::client().await;
    let customers = envs.names.physical("customers");
    let delete = aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
        .delete(
            aws_sdk_dynamodb::types::DeleteGlobalSecondaryIndexAction::builder()
                .index_name("by_postcode")
                .build()
                .unwrap(),
        )
        .build();
    client.update_table().table_name(&customers).global_secondary_index_updates(delete).send().await.unwrap();
    dynamo_migrate::schema_steps::wait_until_active(&client, &customers, Duration::from_secs(60)).await.unwrap();
    let drifted = run("example", &args);
    assert_eq!(drifted.code, 1, "{}{}", drifted.stdout, drifted.stderr);
    assert_eq!(
        error_line(&drifted),
        format!(
            "error: status --check: 1 table(s) drifted; see above, put it right (`cargo xtask recover` for a migration left running or failed), then run `cargo xtask status --env dev --environments {} --check`",
            envs.file()
        )
    );
    let plain = run("example", &args[..5]);
    assert_eq!(plain.code, 0, "without --check, status only shows: {}", plain.stderr);
}

/// `verify` refuses a migration `new` wrote that nobody finished, and says when the JSON
/// Schemas are stale.
#[test]
fn verify_refuses_unfinished_migrations_and_says_the_schemas_are_stale() {
    let dir = std::env::temp_dir().join(format!("refusals-verify-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    let output = crate::environments::child("refusals:unfinished", &["verify", "--endpoint", support::endpoint()])
        .current_dir(&dir)
        .output()
        .unwrap();
    let verify = finished(output);
    assert_eq!(verify.code, 1, "{}{}", verify.stdout, verify.stderr);
    for problem in [
        "  - migration 2 (add_orders) has no steps: write them in migrations/src/m0002_add_orders.rs (or remove the migration and its registration), then run `cargo xtask verify`",
        "  - migration 2 (add_orders): its header still says \"//! TODO: say what this migration changes, and why.\", as `cargo xtask new` wrote it: say there what it changes and why in migrations/src/m0002_add_orders.rs, then run `cargo xtask verify`",
        "  - migration 3 (beta): its header still says \"//! Written by `cargo xtask new beta --from-schema`: say here why.\", as `cargo xtask new` wrote it: say there what it changes and why in migrations/src/m0003_beta.rs, then run `cargo xtask verify`",
    ] {
        assert!(verify.stdout.contains(problem), "{problem}\n  not in:\n{}", verify.stdout);
    }
    assert!(
        verify.stdout.contains(
            "note: the JSON Schemas in schemas/ are not what the schema crate gives (environments.json), so `cargo xtask schemas --check` fails: write them with `cargo xtask schemas`"
        ),
        "{}",
        verify.stdout
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // The same migrations finished: verify passes.
    let fine = run("refusals:fine", &["verify", "--endpoint", support::endpoint()]);
    assert_eq!(fine.code, 0, "{}{}", fine.stdout, fine.stderr);
}
