//! The tool around the commands: `cargo xtask --help`, shell completions, which build of the
//! runner each command runs, and what the production build and the application link.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::environments::run;

/// The repository's root (this crate is `tests/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// `cargo xtask --help` says what the tool is for, and lists each command on one line that fits
/// a terminal; each command's own --help has the details and an example.
#[test]
fn help_lists_each_command_in_one_short_line_and_each_command_has_an_example() {
    let help = run("example", &["--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    let first = help.stdout.lines().next().unwrap();
    assert_eq!(first, "Typed DynamoDB tables and migrations: verify them on DynamoDB Local, apply them to AWS");
    let commands: Vec<&str> =
        help.stdout.lines().skip_while(|l| *l != "Commands:").skip(1).take_while(|l| !l.is_empty()).collect();
    assert!(commands.len() >= 18, "{}", help.stdout);
    for line in &commands {
        assert!(line.chars().count() <= 80, "longer than 80 characters: {line}");
    }
    let names: Vec<&str> =
        commands.iter().filter_map(|l| l.split_whitespace().next()).filter(|n| *n != "help").collect();
    for name in names {
        let help = run("example", &[name, "--help"]);
        assert_eq!(help.code, 0, "{name}: {}", help.stderr);
        assert!(help.stdout.contains("cargo xtask"), "{name} --help names no command: {}", help.stdout);
        let example = help.stdout.contains("Example: ") || help.stdout.contains("  export ");
        assert!(example, "{name} --help has no example:\n{}", help.stdout);
    }
}

/// bash completes `cargo xtask <TAB>` with the commands and `cargo xtask plan --e<TAB>` with the
/// options, through the script `completions bash` prints; zsh and fish get scripts tied to cargo
/// (checked by their shells where installed).
#[test]
fn completions_complete_cargo_xtask_in_bash_and_tie_zsh_and_fish_to_cargo() {
    let bash = run("example", &["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    let script = std::env::temp_dir().join(format!("completions-{}.bash", std::process::id()));
    std::fs::write(&script, &bash.stdout).unwrap();
    let complete = |words: &[&str]| -> String {
        let words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
        let probe = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _cargo_xtask_dispatch cargo \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD - 1]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let output = Command::new("bash").args(["--norc", "-c", &probe]).output().expect("bash runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(complete(&["cargo", "xtask", "ver"]), "verify");
    assert_eq!(complete(&["cargo", "xtask", "plan", "--env"]), "--env --environments");
    assert_eq!(complete(&["cargo", "xtask", "build-runner", "--t"]), "--target-dir");
    assert!(complete(&["cargo", "xtask", "completions", ""]).ends_with("bash zsh fish"));
    std::fs::remove_file(&script).unwrap();

    let zsh = run("example", &["completions", "zsh"]);
    assert_eq!(zsh.code, 0, "{}", zsh.stderr);
    assert!(zsh.stdout.starts_with("#compdef cargo-xtask") && zsh.stdout.contains("_cargo-xtask()"), "{}", zsh.stdout);
    let fish = run("example", &["completions", "fish"]);
    assert_eq!(fish.code, 0, "{}", fish.stderr);
    assert!(fish.stdout.contains("complete -c cargo -n \"__fish_cargo_xtask_needs_command\""), "{}", fish.stdout);
    assert!(fish.stdout.contains("if test \"$cmd[2]\" != xtask"), "{}", fish.stdout);
    assert!(!fish.stdout.contains("complete -c cargo_xtask"), "{}", fish.stdout);
    for (shell, script) in [("zsh", &zsh.stdout), ("fish", &fish.stdout)] {
        let Ok(mut check) = Command::new(shell).arg("-n").stdin(std::process::Stdio::piped()).spawn() else {
            eprintln!("{shell} is not installed: its script was checked as text only");
            continue;
        };
        use std::io::Write as _;
        check.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(check.wait().unwrap().success(), "{shell} -n refuses the script");
    }
}

/// The xtask, built in this test's target directory and run with a `cargo` that records what it
/// is asked to do.
struct Xtask {
    binary: PathBuf,
    dir: PathBuf,
}

impl Xtask {
    fn build(name: &str) -> Xtask {
        let target = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_owned();
        let status = Command::new(cargo())
            .args(["build", "--quiet", "--package", "xtask"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(repository())
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --package xtask");
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The stand-in for cargo writes its arguments, one a line.
        let fake = dir.join("cargo");
        std::fs::write(&fake, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", dir.join("args").display()))
            .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        Xtask { binary: target.join("debug/xtask"), dir }
    }

    /// What cargo was asked for, and what the xtask said on stderr, for `cargo xtask args`; the
    /// target directory is an empty one, so no release runner is built yet.
    fn cargo_args(&self, args: &[&str]) -> (String, String) {
        let _ = std::fs::remove_file(self.dir.join("args"));
        let output = Command::new(&self.binary)
            .args(args)
            .env("CARGO", self.dir.join("cargo"))
            .env("CARGO_TARGET_DIR", self.dir.join("target"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let called = std::fs::read_to_string(self.dir.join("args")).unwrap().lines().collect::<Vec<_>>().join(" ");
        (called, String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

impl Drop for Xtask {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Commands that read or apply schema run the dev build (the one verify and the tests make);
/// migrate, sync and worker run the release build without DynamoDB Local, saying so the first
/// time; bench and rehearse the release build with it; build-runner builds the production one,
/// without building the dev runner first.
#[test]
fn the_xtask_builds_the_runner_each_command_needs() {
    let xtask = Xtask::build("xtask-builds");
    for command in ["verify", "plan", "status", "lint", "unlock", "recover", "new", "init"] {
        let (called, said) = xtask.cargo_args(&[command, "--env", "prod"]);
        assert_eq!(called, format!("run --quiet --package runner -- {command} --env prod"), "{command}");
        assert_eq!(said, "", "{command}");
    }
    for command in ["migrate", "sync", "worker"] {
        let (called, said) = xtask.cargo_args(&[command, "--env", "prod"]);
        assert_eq!(
            called,
            format!("run --quiet --package runner --release --no-default-features -- {command} --env prod")
        );
        assert!(said.starts_with("building the runner in release, once: a few minutes for the AWS SDK"), "{said}");
    }
    // What moves data through a DynamoDB Local of its own: release, with DynamoDB Local.
    let (called, _) = xtask.cargo_args(&["bench", "--items", "10"]);
    assert_eq!(called, "run --quiet --package runner --release -- bench --items 10");
    let (called, _) = xtask.cargo_args(&["rehearse", "--env", "prod"]);
    assert_eq!(called, "run --quiet --package runner --release -- rehearse --env prod");
    let (called, said) = xtask.cargo_args(&["build-runner", "--target-dir", "/tmp/runner-cache"]);
    assert_eq!(called, "build --release --no-default-features --package runner --target-dir /tmp/runner-cache");
    assert!(said.starts_with("building the runner in release, without DynamoDB Local (minutes"), "{said}");
}

/// The packages and features of `package`'s normal dependencies, as cargo resolves them for a
/// build of it alone (`args` added).
fn tree(package: &str, args: &[&str]) -> Vec<String> {
    tree_in(&repository(), package, args)
}

/// [`tree`] in the workspace at `dir`.
pub(crate) fn tree_in(dir: &Path, package: &str, args: &[&str]) -> Vec<String> {
    let output = Command::new(cargo())
        .args(["tree", "--quiet", "--package", package, "--edges", "normal", "--prefix", "none", "--format", "{p} {f}"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim_end_matches(" (*)").to_owned())
        // Workspace crates name their folder: keep the name and version.
        .map(|l| match l.split_once(" (/") {
            Some((package, rest)) => format!("{package}{}", rest.split_once(')').map_or("", |(_, f)| f)),
            None => l,
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// The crates `application` shares with `runner` (two [`tree`]s) whose features cargo resolves
/// differently for each, so that each build compiles its own copy. A crate can appear twice in a
/// tree, once for proc macros (built for the host) and once for the target: the application's
/// features of it must be one of the runner's.
pub(crate) fn built_twice(application: &[String], runner: &[String]) -> Vec<String> {
    let features = |lines: &[String]| {
        let mut packages = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        for line in lines {
            let mut parts = line.splitn(3, ' ');
            if let (Some(name), Some(version)) = (parts.next(), parts.next()) {
                packages.entry(format!("{name} {version}")).or_default().insert(parts.next().unwrap_or("").to_owned());
            }
        }
        packages
    };
    let runner = features(runner);
    let mut differing = Vec::new();
    for (package, theirs) in features(application) {
        let Some(ours) = runner.get(&package) else { continue };
        for set in theirs.difference(ours) {
            differing.push(format!("{package}: the application's [{set}], the runner's {ours:?}"));
        }
    }
    differing
}

/// The runner that migrate, sync and worker run links neither testcontainers nor a Docker
/// client; the one verify runs does.
#[test]
fn the_production_runner_links_no_testcontainers_nor_docker_client() {
    let names = |lines: &[String]| -> Vec<String> {
        lines.iter().filter_map(|l| l.split_whitespace().next().map(str::to_owned)).collect()
    };
    let production = names(&tree("runner", &["--no-default-features"]));
    for docker in ["testcontainers", "bollard", "hyperlocal"] {
        assert!(!production.iter().any(|p| p == docker), "the production runner links {docker}");
    }
    assert!(production.iter().any(|p| p == "aws-sdk-dynamodb"));
    let dev = names(&tree("runner", &[]));
    assert!(dev.iter().any(|p| p == "testcontainers"), "the dev runner has DynamoDB Local");
}

/// The example application links no engine, and cargo resolves the same features for every crate
/// it shares with the runner, in both its builds (with DynamoDB Local, whose Docker client turns
/// on more of hyper, tower and time, and without), so that one build of the SDK serves them all
/// (in a profile); and no crate of the SDK comes in two versions.
#[test]
fn the_application_shares_the_runners_sdk_build_without_the_engine() {
    let application = tree("app", &[]);
    assert!(!application.iter().any(|p| p.starts_with("dynamo-migrate ")), "the application links the engine");
    let production = tree("runner", &["--no-default-features"]);
    let sdk = production.iter().find(|p| p.starts_with("aws-sdk-dynamodb ")).unwrap();
    assert!(application.contains(sdk), "the application's SDK is the runner's {sdk}");
    assert_eq!(built_twice(&application, &production), Vec::<String>::new(), "built twice: app and migrate");
    let dev = tree("runner", &[]);
    assert!(dev.iter().any(|p| p.starts_with("testcontainers ")));
    assert_eq!(built_twice(&application, &dev), Vec::<String>::new(), "built twice: app and verify");
    // Without the workspace-hack crate, that second build is there: the check sees it.
    let without: Vec<String> = application
        .iter()
        .map(|p| if p.starts_with("hyper ") { p.replace(",server", "") } else { p.clone() })
        .collect();
    assert!(built_twice(&without, &dev).iter().any(|d| d.starts_with("hyper ")));

    let output = Command::new(cargo())
        .args(["tree", "--quiet", "--duplicates", "--edges", "normal", "--package", "app", "--package", "runner"])
        .current_dir(repository())
        .output()
        .unwrap();
    let duplicates = String::from_utf8_lossy(&output.stdout);
    assert!(!duplicates.lines().any(|l| l.starts_with("aws-")), "a second version of the SDK:\n{duplicates}");
}
