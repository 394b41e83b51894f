//! `init` in a new workspace, and `cargo xtask verify` there: the tool set up in one command.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::environments::run;

/// The repository's root (this crate is `tests/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A Cargo workspace with one crate of its own, as a team that adopts the tool has.
fn new_workspace(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("app/src")).unwrap();
    std::fs::write(root.join("Cargo.toml"), "[workspace]\nresolver = \"3\"\nmembers = [\"app\"]\n").unwrap();
    std::fs::write(root.join("app/Cargo.toml"), "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n")
        .unwrap();
    std::fs::write(root.join("app/src/lib.rs"), "pub fn serve() {}\n").unwrap();
    root
}

/// Every file under `dir` with its content, for before/after comparisons.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    stack.push(path);
                }
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn init_sets_up_a_new_workspace_that_verifies() {
    let root = new_workspace("init");
    let dir = root.to_str().unwrap();
    let engine = repository();
    let init = run("example", &["init", "--dir", dir, "--engine-path", engine.to_str().unwrap()]);
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
    for file in
        ["schema/src/lib.rs", "migrations/src/lib.rs", "runner/src/main.rs", "xtask/src/main.rs", "environments.toml"]
    {
        assert!(init.stdout.contains(&format!("wrote {file}")), "{file}: {}", init.stdout);
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"members = ["app", "schema", "migrations", "runner", "xtask"]"#), "{manifest}");
    assert!(manifest.contains("[profile.dev.package.\"*\"]\nopt-level = 2"), "{manifest}");

    // Twice: nothing changes, and a file the user edited is kept.
    std::fs::write(root.join("environments.toml"), "# mine\n").unwrap();
    let before = snapshot(&root);
    let again = run("example", &["init", "--dir", dir, "--engine-path", engine.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("already set up here; nothing written"), "{}", again.stdout);
    assert_eq!(snapshot(&root), before, "a second init wrote nothing");

    // Not a workspace: refused, nothing written.
    let plain = new_workspace("init-plain");
    std::fs::write(plain.join("Cargo.toml"), "[package]\nname = \"app\"\nversion = \"0.1.0\"\n").unwrap();
    let before = snapshot(&plain);
    let refused =
        run("example", &["init", "--dir", plain.to_str().unwrap(), "--engine-path", engine.to_str().unwrap()]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("has no [workspace]: init sets the tool up in a Cargo workspace"),
        "{}",
        refused.stderr
    );
    assert_eq!(snapshot(&plain), before);
    std::fs::remove_dir_all(&plain).unwrap();

    // An engine path that is not a checkout of dynamo-migrate: refused, nothing written.
    let elsewhere = new_workspace("init-elsewhere");
    let before = snapshot(&elsewhere);
    let not_engine = run("example", &["init", "--dir", elsewhere.to_str().unwrap(), "--engine-path", dir]);
    assert_eq!(not_engine.code, 2);
    assert!(
        not_engine.stderr.contains("holds no dynamo-migrate/Cargo.toml: give the root of a dynamo-migrate checkout"),
        "{}",
        not_engine.stderr
    );
    assert_eq!(snapshot(&elsewhere), before);
    std::fs::remove_dir_all(&elsewhere).unwrap();

    // The new workspace verifies. Its Cargo.lock and target directory are this one's, so that the
    // AWS SDK is not built again (a user's first build resolves and builds them once).
    std::fs::write(root.join("environments.toml"), include_str!("../../dynamo-migrate/templates/environments.toml"))
        .unwrap();
    std::fs::copy(repository().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let xtask = |args: &[&str]| xtask(&root, args);
    let verify = xtask(&["verify", "--no-docker"]);
    assert!(verify.contains("applied 0 migration(s) from empty") && verify.contains("verify passed"), "{verify}");

    // The user's first table, and the migration written from it.
    std::fs::write(root.join("schema/src/lib.rs"), ORDERS).unwrap();
    let new = xtask(&["new", "create_orders", "--from-schema"]);
    assert!(new.contains("wrote migrations/src/m0001_create_orders.rs"), "{new}");
    let verify = xtask(&["verify", "--no-docker"]);
    assert!(verify.contains("applied 1 migration(s) from empty") && verify.contains("verify passed"), "{verify}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// What a user writes in the schema crate: a table and its item type.
const ORDERS: &str = r#"//! The shop's tables.

use dynamo_model::{KeyAttr, TableDef, TableSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An order of a customer.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    pub customer: String,
    pub id: String,
    pub total_cents: u64,
}

/// Every table of the application.
pub fn tables() -> Vec<TableSchema> {
    vec![TableSchema::new::<Order>(TableDef::new("orders", KeyAttr::s("customer")).sort_key(KeyAttr::s("id")))]
}
"#;

/// Runs `cargo xtask args` in the workspace `root`, with this workspace's target directory, and
/// returns what it printed (it must succeed).
fn xtask(root: &Path, args: &[&str]) -> String {
    let target = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .arg("xtask")
        .args(args)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("$ cargo xtask {}\n{stdout}{stderr}", args.join(" "));
    assert!(output.status.success(), "cargo xtask {args:?}: {stdout}{stderr}");
    stdout
}

/// The xtask and runner `init` writes are this workspace's own.
#[test]
fn the_templates_are_this_workspaces_own_files() {
    let templates = repository().join("dynamo-migrate/templates");
    for (template, file) in [("xtask_main.rs", "xtask/src/main.rs"), ("runner_main.rs", "runner/src/main.rs")] {
        let template = std::fs::read_to_string(templates.join(template)).unwrap();
        let own = std::fs::read_to_string(repository().join(file)).unwrap();
        assert_eq!(template, own, "{file} and its template differ: copy one onto the other");
    }
}
