//! `init`: set the tool up in an existing Cargo workspace.
//!
//! Everything it will touch is read and checked before the first write, so a refusal leaves the
//! workspace as it was.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use super::rustfmt::{DEFAULT_EDITION, format_files};
use super::{Failure, Output, usage};
use crate::schemas::json_schemas;

/// The crates and files `init` writes, relative to the workspace root, with their templates.
const FILES: &[(&str, &str)] = &[
    ("schema/Cargo.toml", include_str!("../../templates/schema_Cargo.toml")),
    ("schema/src/lib.rs", include_str!("../../templates/schema_lib.rs")),
    ("migrations/Cargo.toml", include_str!("../../templates/migrations_Cargo.toml")),
    ("migrations/src/lib.rs", include_str!("../../templates/migrations_lib.rs")),
    ("runner/Cargo.toml", include_str!("../../templates/runner_Cargo.toml")),
    ("runner/src/main.rs", include_str!("../../templates/runner_main.rs")),
    ("xtask/Cargo.toml", include_str!("../../templates/xtask_Cargo.toml")),
    ("xtask/src/main.rs", include_str!("../../templates/xtask_main.rs")),
    ("environments.toml", include_str!("../../templates/environments.toml")),
    ("workspace-hack/Cargo.toml", include_str!("../../templates/workspace_hack_Cargo.toml")),
    ("workspace-hack/src/lib.rs", include_str!("../../templates/workspace_hack_lib.rs")),
];

/// The crates `init` adds to the workspace.
const MEMBERS: &[&str] = &["schema", "migrations", "runner", "xtask", "workspace-hack"];

/// The CI workflow `init --ci github` writes.
const GITHUB_WORKFLOW: (&str, &str) =
    (".github/workflows/dynamo-migrate.yml", include_str!("../../templates/github_workflow.yml"));

/// The dependency versions this engine was tested with (its `Cargo.lock`; see `build.rs`).
const ENGINE_LOCK: &str = include_str!(concat!(env!("OUT_DIR"), "/engine.lock"));

/// What an application needs of the AWS SDK, as the engine depends on it: the same versions and
/// features, so that one build of the SDK serves the application and the runner. `init` adds them
/// to `[workspace.dependencies]`; a test checks them against the engine's own workspace.
const APPLICATION_DEPENDENCIES: &[(&str, &str)] = &[
    (
        "aws-config",
        r#"{ version = "1.13", default-features = false, features = ["default-https-client", "rt-tokio", "credentials-process", "sso"] }"#,
    ),
    (
        "aws-sdk-dynamodb",
        r#"{ version = "1.136", default-features = false, features = ["default-https-client", "rt-tokio"] }"#,
    ),
    ("serde_dynamo", r#"{ version = "4.3", features = ["aws-sdk-dynamodb+1"] }"#),
    (
        "tokio",
        r#"{ version = "1", features = ["rt-multi-thread", "macros", "time", "signal", "process", "sync", "io-util", "net", "fs"] }"#,
    ),
    // Those the engine uses: an application that uses them gets the engine's features.
    (
        "aws-sdk-sts",
        r#"{ version = "1.124", default-features = false, features = ["default-https-client", "rt-tokio"] }"#,
    ),
    ("futures", r#""0.3""#),
    ("tracing", r#""0.1""#),
    ("tracing-subscriber", r#"{ version = "0.3", features = ["env-filter", "fmt"] }"#),
    // Not called: an application crate that depends on it gets every feature the runner turns on
    // in the SDK's own dependencies, and shares its build of the SDK (see its Cargo.toml).
    ("workspace-hack", r#"{ path = "workspace-hack" }"#),
];

/// Set dynamo-migrate up in an existing Cargo workspace
///
/// Writes the schema and migrations crates, the runner, the xtask and its `.cargo` alias,
/// environments.toml and its JSON Schema, and adds the crates and the dev profile that keeps the
/// AWS SDK fast to the root Cargo.toml. The engine is the published version (this one's, or
/// --engine-version), a checkout (--engine-path, written relative to the workspace) or a git
/// repository (--engine-git). The crates take the workspace's edition ([workspace.package]
/// edition, else 2024), and the Rust files are formatted with the workspace's rustfmt settings
/// where rustfmt is installed.
///
/// The workspace gets the dependency versions the engine was tested with: without a Cargo.lock,
/// the engine's becomes its start; with one, each crate both use is moved to the engine's version
/// (`cargo update --precise`), and what changed is listed. The AWS SDK crates are added to
/// [workspace.dependencies] with the engine's features, so that an application crate that uses
/// them (`aws-sdk-dynamodb.workspace = true`) shares the runner's build of the SDK.
/// With --ci github, it also writes a GitHub Actions workflow (verify and lint on pull requests,
/// the plan for prod as the job summary, migrate on main).
///
/// Never overwrites a file: one that exists is kept as it is (and listed), so running it twice
/// changes nothing; a file it cannot use (a Cargo.toml, Cargo.lock or .cargo/config.toml that is
/// not valid TOML) stops it before anything is written. Then: `cargo xtask verify`.
///
/// Example: `cargo xtask init --dir ../my-service --ci github`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The workspace's root (holding the Cargo.toml with [workspace]).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Depend on this published version of the engine crates (default: this engine's version).
    #[arg(long, conflicts_with_all = ["engine_path", "engine_git"])]
    engine_version: Option<String>,
    /// Depend on the engine crates in this checkout of dynamo-migrate instead.
    #[arg(long, conflicts_with = "engine_git")]
    engine_path: Option<PathBuf>,
    /// Depend on the engine crates from this git repository.
    #[arg(long)]
    engine_git: Option<String>,
    /// With --engine-git: the tag, branch or commit to use.
    // `requires` alone lets `--engine-path . --engine-rev v1` through: `--engine-git` conflicts
    // with `--engine-path` in the group, and clap counts a requirement that conflicts with a
    // given argument as met.
    #[arg(long, requires = "engine_git", conflicts_with = "engine_path")]
    engine_rev: Option<String>,
    /// Also write a CI workflow for this service.
    #[arg(long, value_enum)]
    ci: Option<Ci>,
}

/// The CI services `init --ci` writes a workflow for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ci {
    /// GitHub Actions: .github/workflows/dynamo-migrate.yml.
    Github,
}

/// A file `init` will write: where, relative to the root, and what.
struct Planned {
    path: String,
    content: String,
}

impl InitArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let root = &self.dir;
        let manifest_path = root.join("Cargo.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .with_context(|| {
                format!(
                    "{} has no Cargo.toml: run init at the root of a Cargo workspace, `cargo xtask init --dir <workspace root>{}`",
                    root.display(),
                    self.engine_options()
                )
            })
            .map_err(usage)?;
        let mut manifest: DocumentMut = manifest
            .parse()
            .map_err(|e| self.unusable(&manifest_path, format!("is not valid TOML ({})", one_line(&e))))?;
        if manifest.get("workspace").and_then(Item::as_table).is_none() {
            return Err(usage(anyhow!(
                "{} has no [workspace]: init sets the tool up in a Cargo workspace; add `[workspace]` (with your crates as members) first, then run `cargo xtask init --dir {}{}`",
                manifest_path.display(),
                root.display(),
                self.engine_options()
            )));
        }
        let edition = workspace_edition(&manifest);
        let engine = self.engine()?;
        let alias = self.alias(&root.join(".cargo/config.toml"))?;
        let lock_path = root.join("Cargo.lock");
        let lock = self.workspace_lock(&lock_path)?;
        let engine_lock = engine.lock()?;

        // Everything is read and checked: now what to write, then the writes.
        let edition_line = match &edition {
            Some(_) => "edition.workspace = true".to_owned(),
            None => format!("edition = \"{DEFAULT_EDITION}\""),
        };
        let environments_schema = json_schemas(&[]).into_iter().find(|(name, _)| name == "environments.json");
        let schema_file = environments_schema.map(|(_, content)| ("schemas/environments.json", content));
        let workflow = self.ci.map(|Ci::Github| (GITHUB_WORKFLOW.0, GITHUB_WORKFLOW.1.to_owned()));
        let files = FILES
            .iter()
            .map(|(path, template)| {
                let content = template
                    .replace("{engine_cli}", &engine.dependency("dynamo-migrate", path, &["cli"]))
                    .replace("{engine}", &engine.dependency("dynamo-migrate", path, &[]))
                    .replace("{model}", &engine.dependency("dynamo-model", path, &[]))
                    // The templates' own line, which is this workspace's edition.
                    .replace("edition = \"2024\"", &edition_line);
                (*path, content)
            })
            .chain(schema_file)
            .chain(workflow);
        let (mut planned, mut kept) = (Vec::new(), Vec::new());
        for (path, content) in files {
            if root.join(path).exists() {
                kept.push(path.to_owned());
            } else {
                planned.push(Planned { path: path.to_owned(), content });
            }
        }
        match alias {
            Some(content) => planned.push(Planned { path: ".cargo/config.toml".to_owned(), content }),
            None => kept.push(".cargo/config.toml".to_owned()),
        }
        let added = add_to_workspace(&mut manifest);
        for file in &planned {
            self.check_writable(root, &file.path)?;
        }

        let mut written = Vec::new();
        for file in &planned {
            write(&root.join(&file.path), &file.content)?;
            written.push(match file.path.as_str() {
                ".cargo/config.toml" => ".cargo/config.toml (alias xtask)".to_owned(),
                path => path.to_owned(),
            });
        }
        if !added.is_empty() {
            write(&manifest_path, &manifest.to_string())?;
            written.push(format!("Cargo.toml ({})", added.join(", ")));
        }
        let rust: Vec<PathBuf> =
            planned.iter().filter(|f| f.path.ends_with(".rs")).map(|f| root.join(&f.path)).collect();
        let formatted = format_files(&rust, edition.as_deref().unwrap_or(DEFAULT_EDITION));
        for path in &written {
            out.line(format_args!("  wrote {path}"));
        }
        for path in &kept {
            out.line(format_args!("  kept  {path} (it exists)"));
        }

        // The engine's tested versions: its lock as the workspace's start, or its pins for the
        // crates both use. Only once the crates are there can cargo resolve them.
        let pins = match (&engine_lock, lock) {
            (None, _) => Pins::default(),
            (Some(engine_lock), None) => {
                let start = registry_packages(engine_lock);
                write(&lock_path, &start.to_string())?;
                // Cargo resolves the workspace now, keeping the versions it can use and dropping
                // the rest, so that the lock is settled before the first build (and a second init
                // finds nothing to change). Where it cannot, the first build says why.
                let _ = cargo(root, &["tree", "--quiet", "--depth", "0"]);
                let count = start.get("package").and_then(Item::as_array_of_tables).map_or(0, ArrayOfTables::len);
                out.line(format_args!(
                    "  wrote Cargo.lock (the engine's tested versions of {count} crates: cargo keeps each one your crates can use)"
                ));
                written.push("Cargo.lock".to_owned());
                Pins::default()
            }
            (Some(engine_lock), Some(lock)) => {
                let pins = pin_shared(root, lock, engine_lock)?;
                pins.print(out);
                pins
            }
        };
        out.facts(serde_json::json!({
            "written": written,
            "kept": kept,
            "edition": edition.as_deref().unwrap_or(DEFAULT_EDITION),
            "formatted": formatted,
            "engine": engine.to_string(),
            "lock": { "pinned": pins.pinned, "kept": pins.kept },
        }));
        out.line(if written.is_empty() {
            "dynamo-migrate was already set up here; nothing written"
        } else {
            "set up: declare a table in schema/src/lib.rs, then `cargo xtask new <name> --from-schema` and `cargo xtask verify`"
        });
        Ok(())
    }

    /// The workspace's Cargo.lock, if it has one; refused when it is not TOML.
    fn workspace_lock(&self, path: &Path) -> Result<Option<DocumentMut>, Failure> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                text.parse().map(Some).map_err(|e| self.unusable(path, format!("is not valid TOML ({})", one_line(&e))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.unusable(path, format!("cannot be read ({e})"))),
        }
    }

    /// ` --engine-path <path>`, ` --engine-git <url> [--engine-rev <rev>]` or
    /// ` --engine-version <v>`, as given (nothing for the default), and ` --ci github`.
    fn engine_options(&self) -> String {
        let engine = match (&self.engine_path, &self.engine_git, &self.engine_version) {
            (Some(path), _, _) => format!(" --engine-path {}", path.display()),
            (None, Some(git), _) => match &self.engine_rev {
                Some(rev) => format!(" --engine-git {git} --engine-rev {rev}"),
                None => format!(" --engine-git {git}"),
            },
            (None, None, Some(version)) => format!(" --engine-version {version}"),
            (None, None, None) => String::new(),
        };
        let ci = if self.ci.is_some() { " --ci github" } else { "" };
        format!("{engine}{ci}")
    }

    /// The command to run once `path` is fixed.
    fn again(&self) -> String {
        format!("`cargo xtask init --dir {}{}`", self.dir.display(), self.engine_options())
    }

    /// A file init must read and cannot use: nothing is written.
    fn unusable(&self, path: &Path, problem: String) -> Failure {
        usage(anyhow!("{} {problem}; nothing was written: fix it, then run {}", path.display(), self.again()))
    }

    /// Where the engine comes from: checked, with the workspace's root for relative paths.
    fn engine(&self) -> Result<Engine, Failure> {
        if let Some(git) = &self.engine_git {
            return Ok(Engine::Git { git: git.clone(), rev: self.engine_rev.clone() });
        }
        let Some(given) = &self.engine_path else {
            let version = self.engine_version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
            if !is_version(&version) {
                return Err(usage(anyhow!(
                    "--engine-version {version:?} is not a version of the engine crates (like {}); run `cargo xtask init --dir {} --engine-version {}`",
                    env!("CARGO_PKG_VERSION"),
                    self.dir.display(),
                    env!("CARGO_PKG_VERSION")
                )));
            }
            return Ok(Engine::Version(version));
        };
        let checkout = given.canonicalize().map_err(|e| {
            usage(anyhow!(
                "--engine-path {}: {e}; give the root of a dynamo-migrate checkout, e.g. `cargo xtask init --dir {} --engine-path <checkout>`, or use --engine-git <url>",
                given.display(),
                self.dir.display()
            ))
        })?;
        for krate in ["dynamo-migrate", "dynamo-model"] {
            if !checkout.join(krate).join("Cargo.toml").exists() {
                return Err(usage(anyhow!(
                    "--engine-path {} holds no {krate}/Cargo.toml: give the root of a dynamo-migrate checkout, e.g. `cargo xtask init --dir {} --engine-path <checkout>`",
                    checkout.display(),
                    self.dir.display()
                )));
            }
        }
        let root = self.dir.canonicalize().map_err(|e| usage(anyhow!("--dir {}: {e}", self.dir.display())))?;
        Ok(Engine::Path { checkout, root })
    }

    /// The cargo configuration with `xtask = "run --quiet --package xtask --"` added, unless an
    /// xtask alias is there (`None`); refused when the file is not TOML or its `alias` is not a
    /// table.
    fn alias(&self, path: &Path) -> Result<Option<String>, Failure> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(self.unusable(path, format!("cannot be read ({e})"))),
        };
        let mut config: DocumentMut =
            text.parse().map_err(|e| self.unusable(path, format!("is not valid TOML ({})", one_line(&e))))?;
        let alias = config.entry("alias").or_insert_with(|| Item::Table(Table::new()));
        let Some(alias) = alias.as_table_like_mut() else {
            return Err(
                self.unusable(path, "has an `alias` that is not a table ([alias], with one key per alias)".into())
            );
        };
        if alias.contains_key("xtask") {
            return Ok(None);
        }
        alias.insert("xtask", value("run --quiet --package xtask --"));
        Ok(Some(config.to_string()))
    }

    /// Refuses a file whose directory cannot be made: a part of its path is a file.
    fn check_writable(&self, root: &Path, path: &str) -> Result<(), Failure> {
        let mut at = root.to_owned();
        let parts: Vec<Component> = Path::new(path).components().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at.push(part);
            if at.exists() && !at.is_dir() {
                return Err(self.unusable(&at, format!("is a file, so {path} cannot be written")));
            }
        }
        Ok(())
    }
}

/// Where the engine crates come from.
enum Engine {
    /// A published version.
    Version(String),
    /// A checkout on this machine (canonical), and the workspace's root (canonical).
    Path {
        checkout: PathBuf,
        root: PathBuf,
    },
    Git {
        git: String,
        rev: Option<String>,
    },
}

impl Engine {
    /// The dependency on `krate` as the Cargo.toml at `manifest` (relative to the root) writes
    /// it: a path relative to the manifest's directory, so that the workspace can be committed
    /// and checked out anywhere beside the engine. The engine (not the model) is taken without
    /// its default features, and with `features`.
    fn dependency(&self, krate: &str, manifest: &str, features: &[&str]) -> String {
        let source = match self {
            Engine::Version(version) => format!("version = {version:?}"),
            Engine::Path { checkout, root } => {
                let dir = Path::new(manifest).parent().map_or_else(|| root.clone(), |d| root.join(d));
                format!("path = {:?}", relative_path(&dir, &checkout.join(krate)).display().to_string())
            }
            Engine::Git { git, rev } => {
                let rev = rev.as_deref().map(|r| format!(", rev = {r:?}")).unwrap_or_default();
                format!("git = {git:?}{rev}")
            }
        };
        if krate != "dynamo-migrate" {
            return format!("{{ {source} }}");
        }
        let features = match features {
            [] => String::new(),
            some => format!(", features = [{}]", some.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")),
        };
        format!("{{ {source}, default-features = false{features} }}")
    }

    /// The Cargo.lock the engine was tested with: a checkout's own, else the one this engine was
    /// built with (`None` when there is none).
    fn lock(&self) -> Result<Option<DocumentMut>, Failure> {
        let text = match self {
            Engine::Path { checkout, .. } if checkout.join("Cargo.lock").exists() => {
                let path = checkout.join("Cargo.lock");
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
            }
            _ => ENGINE_LOCK.to_owned(),
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(text.parse().context("the engine's Cargo.lock is not TOML")?))
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Version(version) => write!(f, "version {version}"),
            Engine::Path { checkout, .. } => write!(f, "path {}", checkout.display()),
            Engine::Git { git, rev: Some(rev) } => write!(f, "git {git} {rev}"),
            Engine::Git { git, rev: None } => write!(f, "git {git}"),
        }
    }
}

/// True for a version such as `0.1.0` or `0.2.0-rc.1`.
fn is_version(text: &str) -> bool {
    let (release, pre) = text.split_once('-').unwrap_or((text, ""));
    let parts: Vec<&str> = release.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// The registry packages of a Cargo.lock: what a workspace's own lock starts from. Path packages
/// (the engine's workspace members) are left out; cargo writes the workspace's own.
fn registry_packages(lock: &DocumentMut) -> DocumentMut {
    let mut start = lock.clone();
    if let Some(packages) = start.get_mut("package").and_then(Item::as_array_of_tables_mut) {
        packages.retain(|p| p.get("source").is_some());
    }
    start
}

/// What `pin_shared` did: crates moved to the engine's versions, and crates kept at theirs.
#[derive(Debug, Default)]
struct Pins {
    /// `name from → to`.
    pinned: Vec<String>,
    /// `name version (the engine's: v; why)`.
    kept: Vec<String>,
}

impl Pins {
    fn print(&self, out: &Output) {
        if self.pinned.is_empty() {
            out.line(
                "  Cargo.lock: every crate the workspace shares with the engine is at the engine's tested version",
            );
        } else {
            out.line(format_args!(
                "  Cargo.lock: {} crate(s) moved to the engine's tested versions: {}",
                self.pinned.len(),
                self.pinned.join(", ")
            ));
        }
        for kept in &self.kept {
            out.line(format_args!("  Cargo.lock: kept {kept}"));
        }
    }
}

/// The registry packages of a lock, by name: each name's versions.
fn versions(lock: &DocumentMut) -> BTreeMap<String, Vec<String>> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in lock.get("package").and_then(Item::as_array_of_tables).into_iter().flatten() {
        let field = |key: &str| package.get(key).and_then(Item::as_str).map(str::to_owned);
        if let (Some(name), Some(version), Some(_)) = (field("name"), field("version"), field("source")) {
            versions.entry(name).or_default().push(version);
        }
    }
    versions
}

/// Gives a workspace that has a lock the engine's tested versions: in its lock, each crate it
/// shares with the engine (once in each) takes the engine's version, as `cargo update --precise`
/// would, and the engine's other packages are added (cargo prefers a locked version when it
/// resolves the new crates). Cargo then resolves the workspace: where a requirement of the
/// workspace's excludes the engine's version, it chooses another, which is reported as kept.
fn pin_shared(root: &Path, mut lock: DocumentMut, engine_lock: &DocumentMut) -> Result<Pins, Failure> {
    let theirs = versions(&lock);
    let engine = registry_packages(engine_lock);
    let tested = versions(&engine);
    let single = |map: &BTreeMap<String, Vec<String>>, name: &str| match map.get(name).map(Vec::as_slice) {
        Some([version]) => Some(version.clone()),
        _ => None,
    };
    // Shared crates whose versions differ: the workspace's entry gives way to the engine's.
    let moved: BTreeMap<String, (String, String)> = theirs
        .keys()
        .filter_map(|name| {
            let (current, pinned) = (single(&theirs, name)?, single(&tested, name)?);
            (current != pinned).then(|| (name.clone(), (current, pinned)))
        })
        .collect();
    let name_of = |p: &Table| p.get("name").and_then(Item::as_str).map(str::to_owned);
    if let Some(packages) = lock.get_mut("package").and_then(Item::as_array_of_tables_mut) {
        packages.retain(|p| !(p.get("source").is_some() && name_of(p).is_some_and(|n| moved.contains_key(&n))));
        for package in engine.get("package").and_then(Item::as_array_of_tables).into_iter().flatten() {
            if name_of(package).is_some_and(|n| moved.contains_key(&n) || !theirs.contains_key(&n)) {
                packages.push(package.clone());
            }
        }
    }
    let lock_path = root.join("Cargo.lock");
    let before = std::fs::read_to_string(&lock_path).context("reading Cargo.lock")?;
    write(&lock_path, &lock.to_string())?;
    // Cargo resolves the workspace with the new crates, keeping every locked version that fits,
    // and writes the lock.
    if let Err(e) = cargo(root, &["tree", "--quiet", "--depth", "0"]) {
        // The workspace's lock stays as it was.
        write(&lock_path, &before)?;
        return Err(Failure::work(anyhow!(
            "the crates written need versions the workspace's crates exclude ({e}); Cargo.lock was left as it was: loosen the requirement named above, then run `cargo xtask verify`"
        )));
    }
    let now: DocumentMut = std::fs::read_to_string(&lock_path)
        .context("reading Cargo.lock")?
        .parse()
        .context("cargo wrote a Cargo.lock that is not TOML")?;
    let now = versions(&now);
    let mut pins = Pins::default();
    for (name, (current, pinned)) in &moved {
        match now.get(name).map(Vec::as_slice) {
            Some([version]) if version == pinned => pins.pinned.push(format!("{name} {current} → {pinned}")),
            Some(versions) => pins.kept.push(format!(
                "{name} {} (the engine was tested with {pinned}; a requirement of the workspace's excludes it)",
                versions.join(" and ")
            )),
            None => {}
        }
    }
    Ok(pins)
}

/// Runs cargo in the workspace; its stderr's first error line when it fails.
fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output =
        Command::new(cargo).args(args).current_dir(root).output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    // Cargo's error and the lines that say why, on one line.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.iter().position(|l| l.starts_with("error")).unwrap_or(0);
    let why: Vec<&str> = lines[start..].iter().take(4).copied().collect();
    Err(format!("cargo {}: {}", args[0], why.join(" ")))
}

/// A TOML error on one line: where, and what (toml_edit says where on its first line, shows
/// the line with a caret, and says what on its last).
fn one_line(e: &toml_edit::TomlError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
        _ => lines.join(" "),
    }
}

/// The workspace's edition (`[workspace.package] edition`), if it has one.
fn workspace_edition(manifest: &DocumentMut) -> Option<String> {
    manifest.get("workspace")?.get("package")?.get("edition")?.as_str().map(str::to_owned)
}

/// The path from directory `from` to `to`, both absolute.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<Component>, Vec<Component>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = std::iter::repeat_n(Component::ParentDir, from.len() - common).collect();
    path.extend(&to[common..]);
    if path.as_os_str().is_empty() { PathBuf::from(".") } else { path }
}

fn write(path: &Path, content: &str) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Adds the crates to `[workspace] members` and the dev profile settings that keep the AWS SDK
/// fast, where they are missing; returns what it added.
fn add_to_workspace(manifest: &mut DocumentMut) -> Vec<String> {
    let mut added = Vec::new();
    let workspace = manifest["workspace"].as_table_mut().expect("checked: [workspace] is a table");
    let members = workspace.entry("members").or_insert_with(|| Item::Value(Array::new().into()));
    if let Some(members) = members.as_array_mut() {
        for member in MEMBERS {
            if !members.iter().any(|m| m.as_str() == Some(member)) {
                members.push(*member);
                added.push(format!("member {member}"));
            }
        }
    }
    // The SDK as the engine has it, for the application's crates (`aws-sdk-dynamodb.workspace =
    // true`): with other features, cargo would build the SDK a second time for them.
    let dependencies = workspace.entry("dependencies").or_insert_with(|| Item::Table(Table::new()));
    if let Some(dependencies) = dependencies.as_table_mut() {
        let mut sdk = Vec::new();
        for (name, spec) in APPLICATION_DEPENDENCIES {
            if !dependencies.contains_key(name) {
                let spec: toml_edit::Value = spec.parse().expect("the application dependencies are TOML");
                dependencies.insert(name, Item::Value(spec));
                sdk.push(*name);
            }
        }
        if !sdk.is_empty() {
            added.push(format!("workspace.dependencies {} with the engine's features", sdk.join(", ")));
        }
    }
    let profile = manifest.entry("profile").or_insert_with(|| Item::Table(implicit()));
    let Some(profile) = profile.as_table_mut() else { return added };
    let dev = profile.entry("dev").or_insert_with(|| Item::Table(Table::new()));
    let Some(dev) = dev.as_table_mut() else { return added };
    if !dev.contains_key("debug") {
        dev.insert("debug", value("line-tables-only"));
        added.push("profile.dev.debug".to_owned());
    }
    // The AWS SDK is slow to build and slow unoptimised: optimise dependencies in dev builds,
    // which verify and the tests use, and keep the workspace's own crates quick to rebuild.
    let package = dev.entry("package").or_insert_with(|| Item::Table(implicit()));
    let Some(package) = package.as_table_mut() else { return added };
    if !package.contains_key("*") {
        let mut all = Table::new();
        all.insert("opt-level", value(2));
        all.insert("debug", value(false));
        package.insert("*", Item::Table(all));
        added.push("profile.dev.package.\"*\" (opt-level 2)".to_owned());
    }
    added
}

fn implicit() -> Table {
    let mut table = Table::new();
    table.set_implicit(true);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_manifest() {
        let path = |from: &str, to: &str| relative_path(Path::new(from), Path::new(to)).display().to_string();
        assert_eq!(path("/w/shop/schema", "/w/dynamo-migrate/dynamo-model"), "../../dynamo-migrate/dynamo-model");
        assert_eq!(path("/w/shop", "/w/shop/engine/dynamo-model"), "engine/dynamo-model");
        assert_eq!(path("/w/shop", "/w/shop"), ".");
    }
}
