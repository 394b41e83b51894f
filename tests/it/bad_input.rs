//! Bad input through the command line, in child processes: each is refused with a clear error,
//! the exit code the README documents, the complete command to run next, and nothing written.
//! With `--format json`, stdout is exactly one JSON document, whether the command worked or not.

use dynamo_migrate::{DataReport, DataStep, Destructive, KeyAttr, Migration, Project, TableDef};

use crate::environments::{Envs, Run, run};
use crate::support;

/// The projects the child processes below run, by name.
pub fn project(name: &str) -> Project {
    let alpha =
        || Migration::new(1, "create_alpha", "create alpha").create_table(TableDef::new("alpha", KeyAttr::s("id")));
    let migrations = match name {
        // A valid first migration, then one that deletes a table that does not exist.
        "bad_input:invalid" => vec![
            alpha(),
            Migration::new(2, "delete_nothing", "gone").delete_table("nosuch", Destructive::because("unused")),
        ],
        // A second migration that fails running, and the same migration fixed in its file.
        "bad_input:broken" => vec![
            alpha(),
            Migration::new(2, "fix_alpha", "the broken file")
                .data(DataStep::new("explode", |_| async { anyhow::bail!("a customer has no name") })),
        ],
        "bad_input:fixed" => vec![
            alpha(),
            Migration::new(2, "fix_alpha", "the fixed file")
                .data(DataStep::new("explode", |_| async { Ok(DataReport::default()) })),
        ],
        other => panic!("no project {other}"),
    };
    Project { tables: vec![], migrations }
}

/// The one JSON document on stdout.
fn document(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", run.stdout, run.stderr))
}

/// The first line of stderr, as the closing note's table shows it.
fn first_line(run: &Run) -> &str {
    run.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default()
}

#[tokio::test]
async fn an_invalid_migration_is_refused_by_plan_and_migrate_before_anything_is_written() {
    let envs = Envs::new("invalid", "");
    let args = |command: &'static str| [command, "--env", "dev", "--environments", envs.file()];

    let plan = run("bad_input:invalid", &args("plan"));
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("(would fail: table nosuch does not exist here, so there is nothing to delete"),
        "{}",
        plan.stdout
    );
    assert!(
        first_line(&plan).starts_with(
            "error: nothing was applied: 1 problem(s) in the migrations to apply: migration 2 (delete_nothing), DESTRUCTIVE delete table nosuch (unused): table nosuch does not exist here"
        ),
        "{}",
        plan.stderr
    );
    assert!(first_line(&plan).ends_with("fix them, then check with `cargo xtask verify`"), "{}", plan.stderr);

    let json = run("bad_input:invalid", &[&args("plan")[..], &["--format", "json"]].concat());
    assert_eq!(json.code, 1);
    let doc = document(&json);
    assert_eq!(
        (doc["command"].as_str(), doc["ok"].as_bool(), doc["exit_code"].as_u64()),
        (Some("plan"), Some(false), Some(1))
    );
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("nothing was applied: 1 problem(s)"), "{doc}");
    assert_eq!(doc["problems"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["pending"].as_array().unwrap().len(), 2, "{doc}");

    let migrate = run("bad_input:invalid", &args("migrate"));
    assert_eq!(migrate.code, 1, "{}", migrate.stderr);
    assert!(first_line(&migrate).starts_with("error: nothing was applied: 1 problem(s)"), "{}", migrate.stderr);
    assert_eq!(migrate.stderr.matches("does not exist here").count(), 1, "said once: {}", migrate.stderr);
    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written, not even the ledger");
}

#[tokio::test]
async fn a_failed_migration_fixed_in_its_file_can_be_resolved_or_rerun() {
    // Resolved by hand: the record takes the fixed file's checksum, and migrate goes on.
    let envs = Envs::new("resolved", "");
    let args = |command: &'static str| vec![command, "--env", "dev", "--environments", envs.file()];
    let failed = run("bad_input:broken", &args("migrate"));
    assert_eq!(failed.code, 1);
    assert!(
        first_line(&failed).starts_with("error: migration 2 (fix_alpha), data step explode: a customer has no name"),
        "{}",
        failed.stderr
    );
    let refused = run("bad_input:fixed", &args("migrate"));
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains(&format!(
            "then run `cargo xtask recover --env dev --environments {} --version 2 --rerun` to apply it again",
            envs.file()
        )) && refused.stderr.contains(&format!(
            "or `cargo xtask recover --env dev --environments {} --version 2 --resolved` if you completed it",
            envs.file()
        )),
        "{}",
        refused.stderr
    );
    let resolved = run("bad_input:fixed", &[args("recover"), vec!["--version", "2", "--resolved"]].concat());
    assert_eq!(resolved.code, 0, "{}", resolved.stderr);
    assert!(resolved.stdout.contains("migration 2 (failed before) is recorded as applied with the code's checksum; go on with `cargo xtask migrate --env dev`"), "{}", resolved.stdout);
    let after = run("bad_input:fixed", &args("migrate"));
    assert_eq!(after.code, 0, "the changed checksum is accepted: {}", after.stderr);
    assert!(after.stdout.contains("nothing to apply"), "{}", after.stdout);
    // An applied migration is never run again.
    let again = run("bad_input:fixed", &[args("recover"), vec!["--version", "2", "--rerun"]].concat());
    assert_eq!(again.code, 2);
    assert!(
        first_line(&again)
            .ends_with(&format!("an applied migration never runs again and never changes: put the change in a new migration, then run `cargo xtask migrate --env dev --environments {}`", envs.file())),
        "{}",
        again.stderr
    );
    let unknown = run("bad_input:fixed", &[args("recover"), vec!["--version", "9", "--rerun"]].concat());
    assert_eq!(unknown.code, 2);
    assert!(
        first_line(&unknown).starts_with("error: --version 9 names no migration of the code"),
        "{}",
        unknown.stderr
    );

    // Re-run: the fixed file runs, and the ledger records it.
    let envs = Envs::new("rerun", "");
    let args = |command: &'static str| vec![command, "--env", "dev", "--environments", envs.file()];
    let not_started = run("bad_input:broken", &[args("recover"), vec!["--version", "2", "--rerun"]].concat());
    assert_eq!(not_started.code, 2);
    assert!(
        first_line(&not_started).ends_with(&format!(
            "nothing to recover: `cargo xtask migrate --env dev --environments {}` applies it",
            envs.file()
        )),
        "{}",
        not_started.stderr
    );
    assert_eq!(run("bad_input:broken", &args("migrate")).code, 1);
    let rerun =
        run("bad_input:fixed", &[args("recover"), vec!["--version", "2", "--rerun", "--format", "json"]].concat());
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let doc = document(&rerun);
    assert_eq!(
        (doc["ok"].as_bool(), doc["from"].as_str(), doc["to"].as_str()),
        (Some(true), Some("failed"), Some("rerun"))
    );
    let applied = run("bad_input:fixed", &args("migrate"));
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(applied.stdout.contains("applied 1 migration(s)"), "{}", applied.stdout);
    let ledger = dynamo_migrate::run::Ledger::new(support::client().await, &envs.names);
    let record = &ledger.records().await.unwrap()[1];
    assert_eq!(record.checksum, dynamo_migrate::authoring::checksum("the fixed file"));
}

#[tokio::test]
async fn a_bad_environments_file_is_refused_at_load_with_nothing_written() {
    let envs = Envs::new("bad_config", "");
    let endpoint = support::endpoint();
    let prefix = envs.names.prefix();
    let local = |extra: &str| format!("[dev]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n{extra}");
    for (text, expected) in [
        (
            "[dev]\nregion = \"us-east-1\"\nendpoint = \"not a url\"\n".to_owned(),
            "environment dev: endpoint = \"not a url\" is not a URL (relative URL without a base)".to_owned(),
        ),
        (local("table_prefix = \"dev/\"\n"), "environment dev: table_prefix \"dev/\" holds '/'".to_owned()),
        (
            local(&format!("table_prefix = \"{}\"\n", "p".repeat(60))),
            "is 60 characters long; at most 48 leave room for table names".to_owned(),
        ),
        (
            format!(
                "{}[staging]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\n",
                local(&format!("table_prefix = \"{prefix}\"\n"))
            ),
            format!("environments dev and staging use the same tables (endpoint {endpoint}, table prefix \"{prefix}\""),
        ),
        (
            local(&format!("table_prefix = \"{prefix}\"\nledger_table = \"customers\"\n")),
            "environment dev: ledger_table \"customers\" is the name of table customers, which the migrations create"
                .to_owned(),
        ),
    ] {
        let path = std::env::temp_dir().join(format!("bad-config-{}-{}.toml", std::process::id(), prefix));
        std::fs::write(&path, &text).unwrap();
        let file = path.to_str().unwrap();
        let refused = run("example", &["migrate", "--env", "dev", "--environments", file]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(refused.code, 2, "{text}: {}", refused.stderr);
        assert!(first_line(&refused).starts_with(&format!("error: {file}: ")), "{}", refused.stderr);
        assert!(refused.stderr.contains(&expected), "{expected}\n  not in: {}", refused.stderr);
    }
    assert_eq!(envs.tables().await, Vec::<String>::new(), "nothing was written");
}

#[tokio::test]
async fn every_command_gives_one_json_document_and_errors_are_short() {
    let envs = Envs::new("json", "");
    let file = envs.file();

    // Success: unlock, which used to print text under --format json.
    let unlock = run("example", &["unlock", "--env", "dev", "--environments", file, "--format", "json"]);
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);
    let doc = document(&unlock);
    assert_eq!((doc["command"].as_str(), doc["ok"].as_bool()), (Some("unlock"), Some(true)));
    assert!(doc["lock"].is_null() && doc["error"].is_null(), "{doc}");

    // A usage error clap finds, and one verify finds: exit 2, still one document.
    let bad_flag = run("example", &["migrate", "--env", "dev", "--nosuch", "--format", "json"]);
    assert_eq!(bad_flag.code, 2);
    assert!(document(&bad_flag)["error"]["message"].as_str().unwrap().contains("--nosuch"));
    let remote =
        run("example", &["verify", "--endpoint", "https://dynamodb.eu-west-1.amazonaws.com", "--format", "json"]);
    assert_eq!(remote.code, 2);
    let doc = document(&remote);
    assert_eq!((doc["command"].as_str(), doc["exit_code"].as_u64()), (Some("verify"), Some(2)));
    assert!(doc["error"]["message"].as_str().unwrap().contains("is not local"), "{doc}");

    // Nothing answers at a given endpoint: a setup problem (2), said in one short line.
    let unreachable = run("example", &["verify", "--endpoint", "http://127.0.0.1:9", "--no-docker"]);
    assert_eq!(unreachable.code, 2, "{}", unreachable.stderr);
    assert!(
        first_line(&unreachable).starts_with("error: no DynamoDB answers at http://127.0.0.1:9 (dispatch failure"),
        "{}",
        unreachable.stderr
    );
    for run in [&unreachable, &run("example", &["migrate", "--env", "unreachable", "--environments", file])] {
        let line = first_line(run);
        assert!(line.len() < 500 && !line.contains(" { "), "an SDK error as a sentence, not a Debug dump: {line}");
    }
}

/// What DynamoDB refuses comes back as its error code, message and request id, after the call
/// that failed: not the SDK's kilobytes of `Debug`.
#[tokio::test]
async fn a_refused_call_says_its_code_message_and_request_id() {
    let client = support::client().await;
    let physical = support::names("sdk_error").physical("alpha");
    support::create_table(&client, &physical, false).await;
    let call =
        dynamo_migrate::schema_steps::Call::DeleteGlobalIndex { table: "alpha".into(), index: "by_nothing".into() };
    let options = dynamo_migrate::schema_steps::ExecOptions::new(true);
    let error = dynamo_migrate::schema_steps::execute(&client, &physical, &call, &options).await.unwrap_err();
    let failure = error.sdk_failure().expect("a refused call").clone();
    println!("{error}");
    let code = failure.code.clone().expect("DynamoDB's error code");
    let request_id = failure.request_id.clone().expect("DynamoDB's request id");
    assert_eq!(
        error.to_string(),
        format!("UpdateTable {physical}: delete GSI by_nothing: {code}: {} (request id {request_id})", failure.message)
    );
    assert!(!failure.message.is_empty() && error.to_string().len() < 400, "{error}");
}
