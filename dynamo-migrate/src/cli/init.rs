//! `init`: set the tool up in an existing Cargo workspace.
//!
//! Everything it will touch is read and checked before the first write, so a refusal leaves the
//! workspace as it was.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use toml_edit::{Array, DocumentMut, Item, Table, value};

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
];

/// The crates `init` adds to the workspace.
const MEMBERS: &[&str] = &["schema", "migrations", "runner", "xtask"];

/// Set dynamo-migrate up in an existing Cargo workspace.
///
/// Writes the schema and migrations crates, the runner, the xtask and its `.cargo` alias,
/// environments.toml and its JSON Schema, and adds the crates and the dev profile that keeps the
/// AWS SDK fast to the root Cargo.toml. Paths to the engine are written relative to the
/// workspace, the crates take the workspace's edition ([workspace.package] edition, else 2024),
/// and the Rust files are formatted with the workspace's rustfmt settings where rustfmt is
/// installed. Never overwrites a file: one that exists is kept as it is (and listed), so running
/// it twice changes nothing; a file it cannot use (a Cargo.toml or .cargo/config.toml that is not
/// valid TOML) stops it before anything is written. Then: `cargo xtask verify`.
///
/// Example: `cargo xtask init --dir ../my-service --engine-git https://github.com/acme/dynamo-migrate --engine-rev v0.1.0`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("engine").required(true).args(["engine_path", "engine_git"])))]
pub struct InitArgs {
    /// The workspace's root (holding the Cargo.toml with [workspace]).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Depend on the engine crates in this checkout of dynamo-migrate.
    #[arg(long)]
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
                    "{} has no Cargo.toml: run init at the root of a Cargo workspace, `cargo xtask init --dir <workspace root> {}`",
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
                "{} has no [workspace]: init sets the tool up in a Cargo workspace; add `[workspace]` (with your crates as members) first, then run `cargo xtask init --dir {} {}`",
                manifest_path.display(),
                root.display(),
                self.engine_options()
            )));
        }
        let edition = workspace_edition(&manifest);
        let engine = self.engine()?;
        let alias = self.alias(&root.join(".cargo/config.toml"))?;

        // Everything is read and checked: now what to write, then the writes.
        let edition_line = match &edition {
            Some(_) => "edition.workspace = true".to_owned(),
            None => format!("edition = \"{DEFAULT_EDITION}\""),
        };
        let environments_schema = json_schemas(&[]).into_iter().find(|(name, _)| name == "environments.json");
        let schema_file = environments_schema.map(|(_, content)| ("schemas/environments.json", content));
        let files = FILES
            .iter()
            .map(|(path, template)| {
                let content = template
                    .replace("{engine}", &engine.dependency("dynamo-migrate", path))
                    .replace("{model}", &engine.dependency("dynamo-model", path))
                    // The templates' own line, which is this workspace's edition.
                    .replace("edition = \"2024\"", &edition_line);
                (*path, content)
            })
            .chain(schema_file);
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
        out.facts(serde_json::json!({
            "written": written,
            "kept": kept,
            "edition": edition.as_deref().unwrap_or(DEFAULT_EDITION),
            "formatted": formatted,
        }));
        for path in &written {
            out.line(format_args!("  wrote {path}"));
        }
        for path in &kept {
            out.line(format_args!("  kept  {path} (it exists)"));
        }
        out.line(if written.is_empty() {
            "dynamo-migrate was already set up here; nothing written"
        } else {
            "set up: declare a table in schema/src/lib.rs, then `cargo xtask new <name> --from-schema` and `cargo xtask verify`"
        });
        Ok(())
    }

    /// `--engine-path <path>` or `--engine-git <url> [--engine-rev <rev>]`, as given.
    fn engine_options(&self) -> String {
        match (&self.engine_path, &self.engine_git) {
            (Some(path), _) => format!("--engine-path {}", path.display()),
            (None, Some(git)) => match &self.engine_rev {
                Some(rev) => format!("--engine-git {git} --engine-rev {rev}"),
                None => format!("--engine-git {git}"),
            },
            (None, None) => String::new(),
        }
    }

    /// The command to run once `path` is fixed.
    fn again(&self) -> String {
        format!("`cargo xtask init --dir {} {}`", self.dir.display(), self.engine_options())
    }

    /// A file init must read and cannot use: nothing is written.
    fn unusable(&self, path: &Path, problem: String) -> Failure {
        usage(anyhow!("{} {problem}; nothing was written: fix it, then run {}", path.display(), self.again()))
    }

    /// Where the engine comes from: checked, with the workspace's root for relative paths.
    fn engine(&self) -> Result<Engine, Failure> {
        let Some(given) = &self.engine_path else {
            let git = self.engine_git.clone().expect("clap requires --engine-path or --engine-git");
            return Ok(Engine::Git { git, rev: self.engine_rev.clone() });
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
    /// and checked out anywhere beside the engine.
    fn dependency(&self, krate: &str, manifest: &str) -> String {
        match self {
            Engine::Path { checkout, root } => {
                let dir = Path::new(manifest).parent().map_or_else(|| root.clone(), |d| root.join(d));
                format!("{{ path = {:?} }}", relative_path(&dir, &checkout.join(krate)).display().to_string())
            }
            Engine::Git { git, rev } => {
                let rev = rev.as_deref().map(|r| format!(", rev = {r:?}")).unwrap_or_default();
                format!("{{ git = {git:?}{rev} }}")
            }
        }
    }
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
