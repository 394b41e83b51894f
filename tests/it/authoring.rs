//! Authoring through the command line, in child processes: `new` (and `--from-schema`) in a
//! temporary copy of a minimal workspace layout, never in the example's, and `lint`'s exit codes
//! and JSON, with and without an environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dynamo_migrate::run::Status;
use dynamo_migrate::{
    Billing, Destructive, GlobalIndex, KeyAttr, Migration, Project, Projection, RebuildStep, StreamView, TableDef,
    TableSchema, Throughput,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::environments::{Envs, Run, child, cli, finished, run};
use crate::support;

/// An item of the `things` table.
#[derive(Serialize, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Thing {
    id: String,
    owner: Option<String>,
    colour: Option<String>,
}

const M0001: &str = "//! Creates things.\n\nuse dynamo_migrate::{KeyAttr, Migration, TableDef, migration};\n\npub fn migration() -> Migration {\n    migration!(\"m0001_create_things.rs\").create_table(TableDef::new(\"things\", KeyAttr::s(\"id\")))\n}\n";
const M0002: &str = "//! Adds by_owner.\n\nuse dynamo_migrate::{GlobalIndex, KeyAttr, Migration, migration};\n\npub fn migration() -> Migration {\n    migration!(\"m0002_add_things_by_owner.rs\")\n        .add_global_index(\"things\", GlobalIndex::new(\"by_owner\", KeyAttr::s(\"owner\")))\n}\n";
const LIB: &str = "//! The migrations.\n\nmod m0001_create_things;\nmod m0002_add_things_by_owner;\n\nuse dynamo_migrate::Migration;\n\n/// Every migration, in version order.\npub fn all() -> Vec<Migration> {\n    vec![\n        m0001_create_things::migration(),\n        m0002_add_things_by_owner::migration(),\n    ]\n}\n";
/// The example's rustfmt settings, which `new` formats its file with where rustfmt is installed.
const RUSTFMT: &str = "max_width = 120\nuse_small_heuristics = \"Max\"\n";
const EMPTY_LIB: &str =
    "//! The migrations.\n\nuse dynamo_migrate::Migration;\n\npub fn all() -> Vec<Migration> {\n    vec![]\n}\n";

/// `things` as migrations 1 and 2 leave it.
fn things() -> TableDef {
    TableDef::new("things", KeyAttr::s("id")).global_index(GlobalIndex::new("by_owner", KeyAttr::s("owner")))
}

/// The projects the child processes below run, by name.
pub fn project(name: &str) -> Project {
    let registered = || {
        vec![
            Migration::from_file("m0001_create_things.rs", "migrations/src/m0001_create_things.rs", M0001)
                .create_table(TableDef::new("things", KeyAttr::s("id"))),
            Migration::from_file("m0002_add_things_by_owner.rs", "migrations/src/m0002_add_things_by_owner.rs", M0002)
                .add_global_index("things", GlobalIndex::new("by_owner", KeyAttr::s("owner"))),
        ]
    };
    let schema = |def: TableDef| vec![TableSchema::new::<Thing>(def)];
    match name {
        // The schema crate adds an index and TTL to what the migrations leave.
        "authoring:things" => Project {
            tables: schema(
                things()
                    .global_index(GlobalIndex::new("by_colour", KeyAttr::s("colour")).projection(Projection::KeysOnly))
                    .ttl("expires_at"),
            ),
            migrations: registered(),
        },
        "authoring:same" => Project { tables: schema(things()), migrations: registered() },
        "authoring:empty" => Project { tables: schema(things()), migrations: vec![] },
        "authoring:risky" => Project { tables: vec![], migrations: risky() },
        "authoring:none" => Project { tables: vec![], migrations: vec![] },
        "authoring:one" => Project { tables: schema(things()), migrations: registered()[..1].to_vec() },
        // An index on an attribute the item type does not have: the schema crate's own check
        // (`verify`'s) refuses it.
        "authoring:bad_schema" => Project {
            tables: schema(things().global_index(GlobalIndex::new("by_phone", KeyAttr::s("phone")))),
            migrations: registered(),
        },
        other => panic!("no project {other}"),
    }
}

/// One migration of each risk, the first of which is acknowledged by its own reason.
fn risky() -> Vec<Migration> {
    let alpha = TableDef::new("alpha", KeyAttr::s("id"))
        .global_index(GlobalIndex::new("by_x", KeyAttr::s("x")))
        .stream(StreamView::NewImage);
    vec![
        Migration::new(1, "create_alpha", "1").create_table(alpha),
        Migration::new(2, "drop_alpha_by_x", "2").delete_global_index(
            "alpha",
            "by_x",
            Destructive::because("no query uses it"),
        ),
        Migration::new(3, "alpha_keys_only", "3").replace_stream(
            "alpha",
            StreamView::KeysOnly,
            Destructive::because(" "),
        ),
        Migration::new(4, "provision_alpha", "4").update_billing(
            "alpha",
            Billing::Provisioned(Throughput { read: 5, write: 5 }),
            vec![],
        ),
        Migration::new(5, "rebuild_alpha", "5").rebuild_table(RebuildStep::copy(
            TableDef::new("alpha", KeyAttr::s("id")).version(2).sort_key(KeyAttr::n("at")).provisioned(5, 5),
        )),
    ]
}

/// A temporary directory laid out as a workspace's root: `migrations/src` with a lib.rs and the
/// migrations' files. Removed when dropped.
struct Workspace {
    root: PathBuf,
}

impl Workspace {
    fn new(test: &str, files: &[(&str, &str)]) -> Workspace {
        let root = std::env::temp_dir().join(format!("authoring-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        Workspace { root }
    }

    /// The example-like layout: migrations 1 and 2 registered, and the example's rustfmt settings
    /// (which `new` formats its file with, where rustfmt is installed).
    fn things(test: &str) -> Workspace {
        Workspace::new(
            test,
            &[
                ("rustfmt.toml", RUSTFMT),
                ("migrations/src/lib.rs", LIB),
                ("migrations/src/m0001_create_things.rs", M0001),
                ("migrations/src/m0002_add_things_by_owner.rs", M0002),
            ],
        )
    }

    /// The command line run from the workspace's root, as `cargo xtask` runs it.
    fn run(&self, project: &str, args: &[&str]) -> Run {
        finished(child(project, args).current_dir(&self.root).output().unwrap())
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap()
    }

    /// Every file and its content.
    fn files(&self) -> BTreeMap<String, String> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let name = path.strip_prefix(root).unwrap().display().to_string();
                    out.insert(name, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn document(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", run.stdout, run.stderr))
}

#[test]
fn new_writes_the_next_migration_and_registers_it() {
    let ws = Workspace::things("new");
    let new = ws.run("authoring:things", &["new", "enable_audit"]);
    assert_eq!(new.code, 0, "{}{}", new.stdout, new.stderr);
    assert!(new.stdout.contains("wrote migrations/src/m0003_enable_audit.rs\n"), "{}", new.stdout);
    assert!(
        new.stdout.contains("registered it in migrations/src/lib.rs: `mod m0003_enable_audit;` and `m0003_enable_audit::migration()` in all()"),
        "{}",
        new.stdout
    );
    assert_eq!(
        ws.read("migrations/src/m0003_enable_audit.rs"),
        dynamo_migrate::authoring::render_empty("m0003_enable_audit.rs")
    );
    assert_eq!(
        ws.read("migrations/src/lib.rs"),
        LIB.replace("mod m0002_add_things_by_owner;\n", "mod m0002_add_things_by_owner;\nmod m0003_enable_audit;\n")
            .replace(
                "        m0002_add_things_by_owner::migration(),\n",
                "        m0002_add_things_by_owner::migration(),\n        m0003_enable_audit::migration(),\n"
            )
    );

    // The same through JSON, in a fresh copy: one document that says where it wrote.
    let ws = Workspace::things("new_json");
    let json = ws.run("authoring:things", &["new", "enable_audit", "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc = document(&json);
    assert_eq!(
        (doc["command"].as_str(), doc["ok"].as_bool(), doc["version"].as_u64(), doc["file"].as_str()),
        (Some("new"), Some(true), Some(3), Some("migrations/src/m0003_enable_audit.rs"))
    );
    assert_eq!(doc["registered_in"], "migrations/src/lib.rs");
}

#[test]
fn new_refuses_bad_names_taken_names_and_unregistered_files_and_writes_nothing() {
    let ws = Workspace::things("refuse");
    let before = ws.files();
    for (name, suggestion) in [
        ("Add-Audit", "add_audit"),
        ("add__audit", "add_audit"),
        ("enable audit", "enable_audit"),
        ("ÄÖ", "add_orders_by_customer"),
    ] {
        let refused = ws.run("authoring:things", &["new", name]);
        assert_eq!(refused.code, 2, "{name}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!(
                "error: migration name {name:?} is not lowercase words joined by _ (letters a-z and digits): run `cargo xtask new {suggestion}`"
            )),
            "{}",
            refused.stderr
        );
    }
    let taken = ws.run("authoring:things", &["new", "create_things", "--from-schema"]);
    assert_eq!(taken.code, 2);
    assert!(
        taken.stderr.contains(
            "error: migration 1 is already named create_things: give this one a name of its own, e.g. `cargo xtask new create_things_2 --from-schema`"
        ),
        "{}",
        taken.stderr
    );
    assert_eq!(ws.files(), before, "nothing was written");

    // A migration file nobody registers: its version is taken, but by what? Never overwritten.
    std::fs::write(ws.root.join("migrations/src/m0003_half_done.rs"), "// work in progress\n").unwrap();
    let before = ws.files();
    let unclear = ws.run("authoring:things", &["new", "enable_audit"]);
    assert_eq!(unclear.code, 2);
    assert!(
        unclear.stderr.contains(
            "error: migrations/src/m0003_half_done.rs is a migration file that no migration!(..) registers, so the next version is not clear: register it in migrations/src/lib.rs or remove it, then run `cargo xtask new enable_audit`"
        ),
        "{}",
        unclear.stderr
    );
    assert_eq!(ws.files(), before, "nothing was written");

    // No migrations crate where it is looked for.
    let elsewhere = Workspace::new("refuse_elsewhere", &[("README.md", "not a workspace\n")]);
    let lost = elsewhere.run("authoring:empty", &["new", "create_things", "--format", "json"]);
    assert_eq!(lost.code, 2);
    assert!(
        document(&lost)["error"]["message"].as_str().unwrap().ends_with(
            "run this from the workspace root, or name the crate's source directory: `cargo xtask new create_things --dir <migrations crate>/src`"
        ),
        "{}",
        lost.stdout
    );
}

#[test]
fn new_from_schema_writes_the_steps_from_the_migrations_to_the_schema() {
    let ws = Workspace::things("from_schema");
    let new = ws.run("authoring:things", &["new", "things_by_colour", "--from-schema"]);
    assert_eq!(new.code, 0, "{}{}", new.stdout, new.stderr);
    assert_eq!(
        new.stdout.lines().take(4).collect::<Vec<_>>(),
        [
            "migration 3 (things_by_colour): 2 step(s) from the tables the 2 migrations leave to the schema crate's",
            "  + add global index by_colour to things",
            "  + enable TTL on things.expires_at",
            "wrote migrations/src/m0003_things_by_colour.rs",
        ]
    );
    let source = ws.read("migrations/src/m0003_things_by_colour.rs");
    assert!(
        source.contains(
            "    let by_colour = GlobalIndex::new(\"by_colour\", KeyAttr::s(\"colour\")).projection(Projection::KeysOnly);\n    migration!(\"m0003_things_by_colour.rs\").add_global_index(\"things\", by_colour).enable_ttl(\"things\", \"expires_at\")\n"
        ),
        "{source}"
    );
    assert!(ws.read("migrations/src/lib.rs").contains("        m0003_things_by_colour::migration(),\n    ]"));

    let fresh = Workspace::things("from_schema_json");
    let json = fresh.run("authoring:things", &["new", "things_by_colour", "--from-schema", "--format", "json"]);
    let doc = document(&json);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(
        doc["steps"],
        serde_json::json!([
            { "step": "add global index by_colour to things", "to_write": false },
            { "step": "enable TTL on things.expires_at", "to_write": false },
        ])
    );
}

/// Item 3 of issue 15: a name too long for a file failed writing it (exit 1).
#[test]
fn a_name_too_long_for_a_file_is_refused_with_a_shorter_one() {
    let ws = Workspace::things("long_name");
    let before = ws.files();
    let long = format!("keep_{}", "a".repeat(295));
    let refused = ws.run("authoring:things", &["new", &long, "--from-schema"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(
        refused.stderr.lines().next().unwrap_or_default(),
        format!(
            "error: migration name \"keep_{}\"… is 300 characters long; it names the migration's file and module, so at most 100: run `cargo xtask new keep --from-schema`",
            "a".repeat(35)
        )
    );
    assert_eq!(ws.files(), before, "nothing was written");
}

/// Item 10 of issue 15: an index on an attribute the item type lacks was generated, and only
/// `verify` refused the schema crate.
#[test]
fn new_from_schema_runs_the_schema_crates_own_check_first() {
    let ws = Workspace::things("bad_schema");
    let before = ws.files();
    let refused = ws.run("authoring:bad_schema", &["new", "add_by_phone", "--from-schema"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let line = refused.stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("error: nothing was written: the schema crate's tables fail their check: ")
            && line.contains("phone")
            && line.ends_with("; fix the schema crate, then run `cargo xtask new add_by_phone --from-schema`"),
        "{}",
        refused.stderr
    );
    assert_eq!(ws.files(), before, "nothing was written");
}

/// What `new` writes passes `cargo fmt --check` with rustfmt's default settings too (here no
/// rustfmt.toml), lib.rs's growing list included; and it says when the JSON Schemas are stale.
#[test]
fn new_writes_rustfmt_clean_code_under_default_settings_and_says_when_schemas_are_stale() {
    if std::process::Command::new("rustfmt").arg("--version").output().is_err() {
        eprintln!("skipped: rustfmt is not installed (rustup component add rustfmt); CI has it");
        return;
    }
    // One migration, its list on one line, as rustfmt lays it out: the second entry makes the
    // list too long for one line under rustfmt's default settings.
    let lib = "//! The migrations.\n\nmod m0001_create_things;\n\nuse dynamo_migrate::Migration;\n\n/// Every migration, in version order.\npub fn all() -> Vec<Migration> {\n    vec![m0001_create_things::migration()]\n}\n";
    let ws = Workspace::new(
        "default_fmt",
        &[("migrations/src/lib.rs", lib), ("migrations/src/m0001_create_things.rs", M0001)],
    );
    std::fs::create_dir_all(ws.root.join("schemas")).unwrap();
    let next = ws.run("authoring:one", &["new", "backfill_thing_owners"]);
    assert_eq!(next.code, 0, "{}{}", next.stdout, next.stderr);
    assert!(
        next.stdout.contains(
            "note: the JSON Schemas in schemas/ are not what the schema crate gives (things.item.json, environments.json), so `cargo xtask schemas --check` fails: write them with `cargo xtask schemas`"
        ),
        "{}",
        next.stdout
    );
    assert!(
        ws.read("migrations/src/lib.rs").contains(
            "    vec![\n        m0001_create_things::migration(),\n        m0002_backfill_thing_owners::migration(),\n    ]\n"
        ),
        "{}",
        ws.read("migrations/src/lib.rs")
    );
    // As rustfmt formats each file alone (through stdin: it does not follow lib.rs's modules).
    for file in ["lib.rs", "m0002_backfill_thing_owners.rs"] {
        let source = ws.read(&format!("migrations/src/{file}"));
        let mut rustfmt = std::process::Command::new("rustfmt")
            .args(["--edition", "2024", "--emit", "stdout"])
            .current_dir(&ws.root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut rustfmt.stdin.take().unwrap(), source.as_bytes()).unwrap();
        let formatted = String::from_utf8(rustfmt.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(formatted, source, "{file} is not what rustfmt makes of it");
    }
}

#[test]
fn new_from_schema_with_nothing_to_do_writes_nothing() {
    let ws = Workspace::things("nothing");
    let before = ws.files();
    let nothing = ws.run("authoring:same", &["new", "no_change", "--from-schema"]);
    assert_eq!(nothing.code, 1);
    assert!(
        nothing.stderr.contains(
            "error: nothing to generate: the migrations already leave the tables the schema crate declares; for a migration of data, run `cargo xtask new no_change`"
        ),
        "{}",
        nothing.stderr
    );
    assert_eq!(ws.files(), before);
}

#[test]
fn the_first_migration_of_an_empty_crate_creates_the_schema_crates_tables() {
    let ws = Workspace::new("first", &[("migrations/src/lib.rs", EMPTY_LIB), ("rustfmt.toml", RUSTFMT)]);
    let new = ws.run("authoring:empty", &["new", "create_things", "--from-schema"]);
    assert_eq!(new.code, 0, "{}{}", new.stdout, new.stderr);
    assert_eq!(
        ws.read("migrations/src/m0001_create_things.rs"),
        r#"//! Brings the tables to what the schema crate declares:
//! - create table things.
//!
//! Written by `cargo xtask new create_things --from-schema`: say here why.

use dynamo_migrate::{GlobalIndex, KeyAttr, Migration, TableDef, migration};

pub fn migration() -> Migration {
    let things =
        TableDef::new("things", KeyAttr::s("id")).global_index(GlobalIndex::new("by_owner", KeyAttr::s("owner")));
    migration!("m0001_create_things.rs").create_table(things)
}
"#
    );
    assert_eq!(
        ws.read("migrations/src/lib.rs"),
        "//! The migrations.\n\nmod m0001_create_things;\n\nuse dynamo_migrate::Migration;\n\npub fn all() -> Vec<Migration> {\n    vec![m0001_create_things::migration()]\n}\n"
    );
}

#[test]
fn lint_fails_until_each_risky_change_is_acknowledged() {
    let ws = Workspace::new("lint", &[]);
    let lint = ws.run("authoring:risky", &["lint"]);
    assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);
    assert_eq!(
        lint.stdout.lines().next(),
        Some("lint: 5 migration(s), all (no environment given): 4 risky change(s), 3 not acknowledged")
    );
    assert!(lint.stdout.contains("     step 1 [delete-index] deletes global index by_x of alpha: queries on it fail until it is created and backfilled again\n        acknowledged by its reason: no query uses it\n"), "{}", lint.stdout);
    assert!(lint.stdout.contains("   ! step 1 [rebuild] rebuilds alpha as version 2"), "{}", lint.stdout);
    assert!(
        lint.stderr.contains(
            "error: 3 risky change(s) not acknowledged: migration 3 (alpha_keys_only) step 1: stream-replacement, migration 4 (provision_alpha) step 1: billing-switch, migration 5 (rebuild_alpha) step 1: rebuild; after review, acknowledge each in lint.toml ([[acknowledge]] migration = 3, rule = \"stream-replacement\", reason = \"why the risk is taken\"), then run `cargo xtask lint`"
        ),
        "{}",
        lint.stderr
    );

    let json = ws.run("authoring:risky", &["lint", "--format", "json"]);
    assert_eq!(json.code, 1);
    let doc = document(&json);
    assert_eq!((doc["command"].as_str(), doc["exit_code"].as_u64()), (Some("lint"), Some(1)));
    let rules: Vec<(u64, &str, bool)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["version"].as_u64().unwrap(), f["rule"].as_str().unwrap(), !f["acknowledged"].is_null()))
        .collect();
    assert_eq!(
        rules,
        [
            (2, "delete-index", true),
            (3, "stream-replacement", false),
            (4, "billing-switch", false),
            (5, "rebuild", false)
        ]
    );
    assert_eq!(doc["unacknowledged"], 3);

    // Acknowledged after review: still listed, and CI passes.
    let acknowledgements = "[[acknowledge]]\nmigration = 3\nrule = \"stream-replacement\"\nreason = \"nothing reads the stream yet\"\n\n[[acknowledge]]\nmigration = 4\nrule = \"billing-switch\"\nreason = \"load is steady\"\n\n[[acknowledge]]\nmigration = 5\nrule = \"rebuild\"\nreason = \"the application moves with release 42\"\n";
    std::fs::write(ws.root.join("lint.toml"), acknowledgements).unwrap();
    let clean = ws.run("authoring:risky", &["lint", "--format", "json"]);
    assert_eq!(clean.code, 0, "{}", clean.stdout);
    let doc = document(&clean);
    assert_eq!((doc["ok"].as_bool(), doc["unacknowledged"].as_u64()), (Some(true), Some(0)));
    assert_eq!(doc["findings"].as_array().unwrap().len(), 4);
    assert_eq!(
        doc["findings"][3]["acknowledged"],
        serde_json::json!({ "by": "file", "file": "lint.toml", "reason": "the application moves with release 42" })
    );

    // A mistaken file is bad configuration.
    std::fs::write(ws.root.join("lint.toml"), "[[acknowledge]]\nmigration = 5\nrule = \"rebuilt\"\nreason = \"x\"\n")
        .unwrap();
    let mistaken = ws.run("authoring:risky", &["lint"]);
    assert_eq!(mistaken.code, 2);
    assert!(
        mistaken.stderr.contains("error: lint.toml: acknowledge #1 names rule \"rebuilt\", which is not a rule"),
        "{}",
        mistaken.stderr
    );
}

#[tokio::test]
async fn lint_with_an_environment_judges_only_its_pending_migrations() {
    let envs = Envs::new("lint_env", "");
    let migrate = run("authoring:risky", &["migrate", "--env", "dev", "--environments", envs.file(), "--target", "3"]);
    assert_eq!(migrate.code, 0, "{}{}", migrate.stdout, migrate.stderr);
    let lint = run("authoring:risky", &["lint", "--env", "dev", "--environments", envs.file(), "--format", "json"]);
    assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);
    let doc = document(&lint);
    assert_eq!((doc["scope"].as_str(), doc["environment"].as_str()), (Some("pending"), Some("dev")));
    assert_eq!(doc["migrations"], serde_json::json!([4, 5]));
    let rules: Vec<&str> = doc["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["billing-switch", "rebuild"]);
    let again = format!("then run `cargo xtask lint --env dev --environments {}`", envs.file());
    assert!(doc["error"]["message"].as_str().unwrap().ends_with(&again), "{doc}");
}

#[test]
fn help_describes_new_and_lint() {
    let ws = Workspace::new("help", &[]);
    for (command, options) in [
        (
            "new",
            &["--from-schema", "--dir", "--format", "Example: cargo xtask new add_orders_by_customer --from-schema"][..],
        ),
        ("lint", &["--env", "--environments", "--acknowledged", "--format", "[[acknowledge]]"][..]),
    ] {
        let help = ws.run("authoring:risky", &[command, "--help"]);
        assert_eq!(help.code, 0, "{command} --help");
        for option in options {
            assert!(help.stdout.contains(option), "{command} --help does not describe {option}:\n{}", help.stdout);
        }
    }
}

/// Tables that already run, and no migration: `baseline` writes the first migration from them
/// and records it as applied, after the usual guards.
#[tokio::test]
async fn baseline_writes_the_first_migration_from_live_tables_and_records_it() {
    let envs = Envs::new("baseline", "");
    let client = support::client().await;
    let physical = envs.names.physical("things");
    let create = dynamo_migrate::SchemaStep::CreateTable { table: things() };
    for call in dynamo_migrate::schema_steps::plan_step(None, &create).unwrap().0 {
        dynamo_migrate::schema_steps::execute(
            &client,
            &physical,
            &call,
            &dynamo_migrate::schema_steps::ExecOptions::new(true),
        )
        .await
        .unwrap();
    }
    let workspace = Workspace::new("baseline", &[("rustfmt.toml", RUSTFMT), ("migrations/src/lib.rs", EMPTY_LIB)]);
    let baseline = |env: &str| {
        let args = ["baseline", "--env", env, "--environments", envs.file()];
        finished(cli("authoring:none", &args, &[]).current_dir(&workspace.root).output().unwrap())
    };
    let ledger = dynamo_migrate::run::Ledger::new(client.clone(), &envs.names);

    // An environment without tables has nothing to baseline.
    let empty = Envs::new("baseline_empty", "");
    let args = ["baseline", "--env", "dev", "--environments", empty.file()];
    let nothing = finished(cli("authoring:none", &args, &[]).current_dir(&workspace.root).output().unwrap());
    assert_eq!(nothing.code, 2);
    assert!(
        nothing.stderr.contains("has no table with the prefix")
            && nothing.stderr.contains("cargo xtask new <name> --from-schema"),
        "{}",
        nothing.stderr
    );

    // A workspace that has migrations already is past its baseline.
    let args = ["baseline", "--env", "dev", "--environments", envs.file()];
    let has = finished(cli("authoring:same", &args, &[]).current_dir(&workspace.root).output().unwrap());
    assert_eq!(has.code, 2);
    assert!(
        has.stderr.contains("the workspace already has migrations (the first is 1 create_things)"),
        "{}",
        has.stderr
    );

    // A protected environment without --yes (and no terminal): shown, then refused, nothing written.
    let before = workspace.files();
    let refused = baseline("prod");
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stdout.contains(&format!("1 table(s): {physical}")), "{}", refused.stdout);
    assert!(refused.stderr.contains("environment prod (region us-east-1) is protected"), "{}", refused.stderr);
    assert_eq!(workspace.files(), before);
    assert!(!ledger.exists().await.unwrap());

    let done = baseline("dev");
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    let file = workspace.read("migrations/src/m0001_baseline.rs");
    assert!(
        file.contains("migration!(\"m0001_baseline.rs\")") && file.contains("GlobalIndex::new(\"by_owner\""),
        "{file}"
    );
    assert!(workspace.read("migrations/src/lib.rs").contains("m0001_baseline::migration()"));
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].version, records[0].name.as_str(), records[0].status), (1, "baseline", Status::Succeeded));
    assert_eq!(records[0].checksum, dynamo_migrate::authoring::checksum(&file), "the record is of the file as written");

    // Twice: the ledger already records it; nothing more is written.
    let before = workspace.files();
    let again = baseline("dev");
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already records migrations"), "{}", again.stderr);
    assert_eq!(workspace.files(), before);
}
