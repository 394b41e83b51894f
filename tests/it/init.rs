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
    assert!(
        manifest.contains(r#"members = ["app", "schema", "migrations", "runner", "xtask", "workspace-hack"]"#),
        "{manifest}"
    );
    assert!(manifest.contains("[profile.dev.package.\"*\"]\nopt-level = 2"), "{manifest}");
    // Paths to the engine are relative, so that the workspace can be committed.
    let schema = std::fs::read_to_string(root.join("schema/Cargo.toml")).unwrap();
    let relative = relative_to(&root.join("schema"), &engine.join("dynamo-model"));
    assert!(schema.contains(&format!("dynamo-model = {{ path = \"{relative}\" }}")), "{schema}");
    assert!(relative.starts_with("../") && !schema.contains("path = \"/"), "{schema}");
    assert!(schema.contains("edition = \"2024\""), "{schema}");
    // The migrations crate takes the engine without its default features; the runner chooses.
    let runner = std::fs::read_to_string(root.join("runner/Cargo.toml")).unwrap();
    assert!(runner.contains("default-features = false, features = [\"cli\"] }"), "{runner}");
    assert!(runner.contains("local = [\"dynamo-migrate/local\"]"), "{runner}");
    // The workspace starts from the engine's tested versions, and its application crates get
    // the SDK with the engine's features.
    assert!(init.stdout.contains("wrote Cargo.lock (the engine's tested versions of "), "{}", init.stdout);
    assert_sdk_dependencies_are_the_engines(&manifest);
    // And the crate that gives every build the features the runner's DynamoDB Local turns on in
    // the SDK's dependencies is this workspace's own.
    assert_eq!(
        std::fs::read_to_string(root.join("workspace-hack/Cargo.toml")).unwrap(),
        std::fs::read_to_string(engine.join("workspace-hack/Cargo.toml")).unwrap()
    );
    assert!(runner.contains("workspace-hack = { path = \"../workspace-hack\" }"), "{runner}");
    // An application crate that takes the SDK and that crate from the workspace shares the SDK's
    // build with the runner that verify builds and the one migrate builds.
    std::fs::write(
        root.join("app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n\
         aws-config.workspace = true\naws-sdk-dynamodb.workspace = true\ntokio.workspace = true\n\
         workspace-hack.workspace = true\n",
    )
    .unwrap();
    let application = crate::tooling::tree_in(&root, "app", &[]);
    assert!(application.iter().any(|p| p.starts_with("aws-sdk-dynamodb ")), "{application:?}");
    for runner in [&[][..], &["--no-default-features"][..]] {
        let runner = crate::tooling::tree_in(&root, "runner", runner);
        assert_eq!(crate::tooling::built_twice(&application, &runner), Vec::<String>::new());
    }

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

    // The new workspace verifies. Its target directory is this one's, and its Cargo.lock the
    // engine's, so that the AWS SDK is not built again.
    std::fs::write(root.join("environments.toml"), include_str!("../../dynamo-migrate/templates/environments.toml"))
        .unwrap();
    let xtask = |args: &[&str]| xtask(&root, args);
    let verify = xtask(&["verify", "--no-docker"]);
    assert!(verify.contains("applied 0 migration(s) from empty") && verify.contains("verify passed"), "{verify}");
    // Every crate cargo resolved is at a version the engine was tested with.
    let untested = untested_versions(&std::fs::read_to_string(root.join("Cargo.lock")).unwrap());
    assert_eq!(untested, Vec::<String>::new(), "crates at versions the engine's Cargo.lock does not have");

    // The user's first table, and the migration written from it.
    std::fs::write(root.join("schema/src/lib.rs"), ORDERS).unwrap();
    let new = xtask(&["new", "create_orders", "--from-schema"]);
    assert!(new.contains("wrote migrations/src/m0001_create_orders.rs"), "{new}");
    // Until its header says why, verify refuses it; then it passes.
    let file = root.join("migrations/src/m0001_create_orders.rs");
    let source = std::fs::read_to_string(&file).unwrap();
    assert!(source.contains(": say here why.\n"), "{source}");
    std::fs::write(&file, source.replace(": say here why.", ": the shop keeps its orders.")).unwrap();
    // What init and new wrote is what `cargo fmt` makes of it, with rustfmt's default settings.
    if has_rustfmt() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let fmt = Command::new(cargo).args(["fmt", "--check"]).current_dir(&root).output().unwrap();
        assert!(fmt.status.success(), "cargo fmt --check:\n{}", String::from_utf8_lossy(&fmt.stdout));
    }
    let verify = xtask(&["verify", "--no-docker"]);
    assert!(verify.contains("applied 1 migration(s) from empty") && verify.contains("verify passed"), "{verify}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The registry crates of `lock` at a version the engine's Cargo.lock does not have.
fn untested_versions(lock: &str) -> Vec<String> {
    let engine = registry_versions(&std::fs::read_to_string(repository().join("Cargo.lock")).unwrap());
    registry_versions(lock).into_iter().filter(|package| !engine.contains(package)).collect()
}

/// `name version` of every registry package of a Cargo.lock.
fn registry_versions(lock: &str) -> std::collections::BTreeSet<String> {
    let lock: toml::Table = toml::from_str(lock).unwrap();
    lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("source").is_some())
        .map(|p| format!("{} {}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect()
}

/// The SDK crates in the new workspace's [workspace.dependencies] are this workspace's: the same
/// versions and features as the engine's (serde_dynamo with the feature the engine turns on).
fn assert_sdk_dependencies_are_the_engines(manifest: &str) {
    let theirs: toml::Table = toml::from_str(manifest).unwrap();
    let ours: toml::Table = toml::from_str(&std::fs::read_to_string(repository().join("Cargo.toml")).unwrap()).unwrap();
    let engine: toml::Table =
        toml::from_str(&std::fs::read_to_string(repository().join("dynamo-migrate/Cargo.toml")).unwrap()).unwrap();
    for name in [
        "aws-config",
        "aws-sdk-dynamodb",
        "serde_dynamo",
        "tokio",
        "aws-sdk-sts",
        "futures",
        "tracing",
        "tracing-subscriber",
    ] {
        let spec = |table: &toml::Table, engines: bool| -> (String, bool, Vec<String>) {
            let dependency = &table["workspace"]["dependencies"][name];
            let version = dependency.get("version").unwrap_or(dependency).as_str().unwrap().to_owned();
            let defaults =
                dependency.as_table().and_then(|d| d.get("default-features")).is_none_or(|d| d.as_bool().unwrap());
            let mut features: Vec<String> = dependency
                .as_table()
                .and_then(|d| d.get("features"))
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect();
            // Features the engine adds where it uses the workspace's dependency.
            let extra = engine["dependencies"][name].get("features").and_then(|f| f.as_array());
            if engines {
                features.extend(extra.into_iter().flatten().map(|f| f.as_str().unwrap().to_owned()));
            }
            features.sort();
            (version, defaults, features)
        };
        assert_eq!(spec(&theirs, false), spec(&ours, true), "{name} in the new workspace and in the engine's");
    }
}

/// A workspace with a lock of its own: each crate it shares with the engine moves to the
/// engine's version, except where its own requirement excludes that version; init says which.
#[test]
fn init_moves_a_workspaces_lock_to_the_engines_tested_versions() {
    let root = new_workspace("init-lock");
    std::fs::write(
        root.join("app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\nitoa = \"1\"\nryu = \">=1.0.22, <1.0.23\"\n",
    )
    .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for args in
        [&["generate-lockfile", "--quiet"][..], &["update", "--quiet", "--package", "itoa", "--precise", "1.0.10"]]
    {
        let status = Command::new(&cargo).args(args).current_dir(&root).status().unwrap();
        assert!(status.success(), "cargo {args:?}");
    }
    let engine_lock = std::fs::read_to_string(repository().join("Cargo.lock")).unwrap();
    let tested = |name: &str| {
        registry_versions(&engine_lock).into_iter().find_map(|p| p.strip_prefix(&format!("{name} ")).map(str::to_owned))
    };
    let (itoa, ryu) = (tested("itoa").unwrap(), tested("ryu").unwrap());
    assert!(ryu.as_str() > "1.0.22", "the engine's ryu {ryu} is one the workspace's requirement excludes");

    let init =
        run("example", &["init", "--dir", root.to_str().unwrap(), "--engine-path", repository().to_str().unwrap()]);
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
    assert!(
        init.stdout
            .contains(&format!("Cargo.lock: 1 crate(s) moved to the engine's tested versions: itoa 1.0.10 → {itoa}")),
        "{}",
        init.stdout
    );
    assert!(
        init.stdout.contains(&format!(
            "Cargo.lock: kept ryu 1.0.22 (the engine was tested with {ryu}; a requirement of the workspace's excludes it)"
        )),
        "{}",
        init.stdout
    );
    // Everything else the workspace now needs is at the engine's version.
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    assert_eq!(untested_versions(&lock), ["ryu 1.0.22"]);
    std::fs::remove_dir_all(&root).unwrap();
}

/// The workflow `init --ci github` writes: verify and lint on pull requests, the plan for prod as
/// the job summary, migrate on main with an OIDC role; every command in it is one the runner
/// accepts, and one the README shows.
#[test]
fn init_ci_github_writes_a_workflow_whose_commands_exist() {
    let root = new_workspace("init-ci");
    let init = run(
        "example",
        &["init", "--dir", root.to_str().unwrap(), "--engine-path", repository().to_str().unwrap(), "--ci", "github"],
    );
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
    assert!(init.stdout.contains("wrote .github/workflows/dynamo-migrate.yml"), "{}", init.stdout);
    let text = std::fs::read_to_string(root.join(".github/workflows/dynamo-migrate.yml")).unwrap();
    let workflow: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let on = &workflow["on"];
    assert!(on.get("pull_request").is_some(), "{text}");
    assert_eq!(on["push"]["branches"][0].as_str(), Some("main"));

    let job = |name: &str| &workflow["jobs"][name];
    let runs = |name: &str| -> Vec<String> {
        job(name)["steps"].as_sequence().unwrap().iter().filter_map(|s| s["run"].as_str().map(str::to_owned)).collect()
    };
    let uses = |name: &str| -> Vec<String> {
        job(name)["steps"].as_sequence().unwrap().iter().filter_map(|s| s["uses"].as_str().map(str::to_owned)).collect()
    };
    assert!(job("verify")["if"].as_str().unwrap().contains("pull_request"));
    assert_eq!(commands(&runs("verify").join("\n")), ["verify", "lint", "schemas --check"]);
    assert!(job("plan")["if"].as_str().unwrap().contains("pull_request"));
    let plan = runs("plan").join("\n");
    assert_eq!(commands(&plan), ["plan --env prod"]);
    assert!(plan.contains(">> \"$GITHUB_STEP_SUMMARY\"") && plan.contains("exit $status"), "{plan}");
    let migrate = job("migrate");
    assert!(migrate["if"].as_str().unwrap().contains("refs/heads/main"), "{text}");
    assert_eq!(migrate["permissions"]["id-token"].as_str(), Some("write"));
    assert_eq!(job("plan")["permissions"]["id-token"].as_str(), Some("write"));
    for name in ["plan", "migrate"] {
        let step = job(name)["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@")))
            .unwrap_or_else(|| panic!("{name} assumes a role through OIDC: {text}"));
        assert!(step["with"]["role-to-assume"].as_str().unwrap().contains("vars.DYNAMO_MIGRATE"), "{text}");
    }
    assert!(uses("verify").iter().any(|u| u.starts_with("actions/setup-java@")), "verify needs Java");
    assert_eq!(
        commands(&runs("migrate").join("\n")),
        ["build-runner --target-dir \"$RUNNER_DIR\"", "status --env prod --check", "migrate --env prod --yes"]
    );

    // Each command exists, as written, and the README shows it.
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    for command in ["verify", "lint", "schemas"]
        .iter()
        .map(|c| c.to_string())
        .chain(["plan", "migrate"].into_iter().flat_map(|job| commands(&runs(job).join("\n"))))
    {
        let args: Vec<String> =
            command.split_whitespace().map(|a| a.trim_matches('"').replace("$RUNNER_DIR", "/r")).collect();
        if let Err(e) = dynamo_migrate::cli::check_command_line(&args) {
            panic!("the workflow's `{command}` is no command of the runner: {e}");
        }
        let shown = command.replace("\"$RUNNER_DIR\"", "");
        assert!(readme.contains(shown.trim()), "the README does not show `{shown}`");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// The runner commands in shell script `script`: what follows `cargo xtask` or the built runner
/// (`…/release/runner`), up to a redirection or the end of the line.
fn commands(script: &str) -> Vec<String> {
    let mut commands = Vec::new();
    for line in script.lines() {
        let Some(rest) = line
            .split_once("cargo xtask ")
            .map(|(_, r)| r)
            .or_else(|| line.split_once("/release/runner\" ").map(|(_, r)| r))
        else {
            continue;
        };
        let end = rest.find(['>', '|', ';', '\'', '`']).unwrap_or(rest.len());
        // A command shown again (in a summary's title) counts once.
        let command = rest[..end].trim().to_owned();
        if !commands.contains(&command) {
            commands.push(command);
        }
    }
    commands
}

/// The path from directory `from` to `to`, both absolute and canonical.
fn relative_to(from: &Path, to: &Path) -> String {
    let (from, to) = (from.canonicalize().unwrap_or(from.to_owned()), to.canonicalize().unwrap());
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = std::iter::repeat_n(std::path::Component::ParentDir, from.len() - common).collect();
    path.extend(&to[common..]);
    path.display().to_string()
}

fn has_rustfmt() -> bool {
    let found = Command::new("rustfmt").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped the formatting checks: rustfmt is not installed (rustup component add rustfmt); CI has it");
    }
    found
}

/// Items 4 to 6 of issue 15, and an engine path that does not exist: refused (exit 2) before
/// anything is written, saying what to run.
#[test]
fn init_refuses_what_it_cannot_use_and_writes_nothing() {
    let engine = repository();
    let engine = engine.to_str().unwrap();
    let cases: [(&str, Option<&str>, Vec<&str>, &str); 6] = [
        (
            "init-version",
            None,
            vec!["--engine-version", "latest"],
            "error: --engine-version \"latest\" is not a version of the engine crates (like 0.1.0); run `cargo xtask init --dir ",
        ),
        (
            "init-two-engines",
            None,
            vec!["--engine-version", "0.1.0", "--engine-path", engine],
            "error: the argument '--engine-version <ENGINE_VERSION>' cannot be used with '--engine-path <ENGINE_PATH>'",
        ),
        (
            "init-rev",
            None,
            vec!["--engine-path", engine, "--engine-rev", "v1"],
            "error: the argument '--engine-path <ENGINE_PATH>' cannot be used with '--engine-rev <ENGINE_REV>'",
        ),
        (
            "init-config",
            Some("not [ toml\n"),
            vec!["--engine-path", engine],
            ".cargo/config.toml is not valid TOML (TOML parse error at line 1, column 5: ",
        ),
        (
            "init-alias",
            Some("alias = 3\n"),
            vec!["--engine-path", engine],
            ".cargo/config.toml has an `alias` that is not a table",
        ),
        (
            "init-no-engine",
            None,
            vec!["--engine-path", "/no/such/checkout"],
            "error: --engine-path /no/such/checkout: ",
        ),
    ];
    for (name, config, args, expected) in cases {
        let root = new_workspace(name);
        if let Some(config) = config {
            std::fs::create_dir_all(root.join(".cargo")).unwrap();
            std::fs::write(root.join(".cargo/config.toml"), config).unwrap();
        }
        let before = snapshot(&root);
        let dir = root.to_str().unwrap();
        let refused = run("example", &[&["init", "--dir", dir][..], &args].concat());
        assert_eq!(refused.code, 2, "{name}: {}{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains(expected), "{name}: {expected}\n  not in: {}", refused.stderr);
        if config.is_some() {
            assert!(
                refused.stderr.contains(&format!(
                    "; nothing was written: fix it, then run `cargo xtask init --dir {dir} --engine-path {engine}`"
                )),
                "{}",
                refused.stderr
            );
        }
        assert_eq!(snapshot(&root), before, "{name}: nothing was written");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// A workspace with an edition of its own and rustfmt settings of its own: the crates take its
/// edition, and what init writes is what rustfmt makes of it there.
#[test]
fn init_follows_the_workspaces_edition_and_rustfmt_settings() {
    let root = new_workspace("init-2021");
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"app\"]\n\n[workspace.package]\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(root.join("rustfmt.toml"), "hard_tabs = true\nmax_width = 80\n").unwrap();
    let init =
        run("example", &["init", "--dir", root.to_str().unwrap(), "--engine-path", repository().to_str().unwrap()]);
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
    for manifest in ["schema", "migrations", "runner", "xtask"] {
        let text = std::fs::read_to_string(root.join(manifest).join("Cargo.toml")).unwrap();
        assert!(text.contains("\nedition.workspace = true\n") && !text.contains("2024"), "{manifest}: {text}");
    }
    if has_rustfmt() {
        let files = ["schema/src/lib.rs", "migrations/src/lib.rs", "runner/src/main.rs", "xtask/src/main.rs"];
        let check = Command::new("rustfmt")
            .args(["--check", "--edition", "2021"])
            .args(files.iter().map(|f| root.join(f)))
            .output()
            .unwrap();
        assert!(check.status.success(), "rustfmt --check:\n{}", String::from_utf8_lossy(&check.stdout));
        assert!(std::fs::read_to_string(root.join("runner/src/main.rs")).unwrap().contains("\n\tlet tables"));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn init_help_names_cargo_xtask_init() {
    let help = run("example", &["init", "--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Example: `cargo xtask init --dir ../my-service"), "{}", help.stdout);
    assert!(!help.stdout.contains("dynamo-migrate init"), "{}", help.stdout);
}

/// The templates are what rustfmt makes of them, with its default settings and with this
/// workspace's, in either edition: a team's `cargo fmt --check` passes on what init writes even
/// where rustfmt could not format it.
#[test]
fn the_templates_are_rustfmt_clean_under_default_settings_and_this_workspaces() {
    if !has_rustfmt() {
        return;
    }
    let templates = repository().join("dynamo-migrate/templates");
    let base = std::env::temp_dir().join(format!("templates-fmt-{}", std::process::id()));
    for (settings, rustfmt_toml) in
        [("default", None), ("workspace", Some(std::fs::read_to_string(repository().join("rustfmt.toml")).unwrap()))]
    {
        let dir = base.join(settings);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(config) = &rustfmt_toml {
            std::fs::write(dir.join("rustfmt.toml"), config).unwrap();
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&templates).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let copy = dir.join(path.file_name().unwrap());
                std::fs::copy(&path, &copy).unwrap();
                files.push(copy);
            }
        }
        for edition in ["2021", "2024"] {
            let check = Command::new("rustfmt").args(["--check", "--edition", edition]).args(&files).output().unwrap();
            assert!(
                check.status.success(),
                "{settings} settings, edition {edition}:\n{}",
                String::from_utf8_lossy(&check.stdout)
            );
        }
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// What a user writes in the schema crate: a table and its item type (as rustfmt lays it out).
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
    let orders = TableDef::new("orders", KeyAttr::s("customer")).sort_key(KeyAttr::s("id"));
    vec![TableSchema::new::<Order>(orders)]
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
