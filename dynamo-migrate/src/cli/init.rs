//! `init`: set the tool up in an existing Cargo workspace.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use toml_edit::{Array, DocumentMut, Item, Table, value};

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
/// AWS SDK fast to the root Cargo.toml. Never overwrites a file: one that exists is kept as it is
/// (and listed), so running it twice changes nothing. Then: `cargo xtask verify`.
///
/// Example: `dynamo-migrate init --engine-git https://github.com/acme/dynamo-migrate --engine-rev v0.1.0`
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
    #[arg(long, requires = "engine_git")]
    engine_rev: Option<String>,
}

impl InitArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let root = &self.dir;
        let manifest_path = root.join("Cargo.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("{} has no Cargo.toml: run init at the root of a Cargo workspace", root.display()))
            .map_err(usage)?;
        let mut manifest: DocumentMut = manifest
            .parse()
            .with_context(|| format!("{} is not valid TOML", manifest_path.display()))
            .map_err(usage)?;
        if manifest.get("workspace").and_then(Item::as_table).is_none() {
            return Err(usage(anyhow!(
                "{} has no [workspace]: init sets the tool up in a Cargo workspace; add `[workspace]` (with your crates as members) first",
                manifest_path.display()
            )));
        }
        let (engine, model) = self.dependencies()?;
        let mut written = Vec::new();
        let mut kept = Vec::new();
        let environments_schema = json_schemas(&[]).into_iter().find(|(name, _)| name == "environments.json");
        let schema_file = environments_schema.map(|(_, content)| ("schemas/environments.json", content));
        let files = FILES
            .iter()
            .map(|(path, template)| (*path, template.replace("{engine}", &engine).replace("{model}", &model)))
            .chain(schema_file);
        for (path, content) in files {
            let target = root.join(path);
            if target.exists() {
                kept.push(path.to_owned());
                continue;
            }
            write(&target, &content)?;
            written.push(path.to_owned());
        }
        match add_alias(&root.join(".cargo/config.toml"))? {
            true => written.push(".cargo/config.toml (alias xtask)".to_owned()),
            false => kept.push(".cargo/config.toml".to_owned()),
        }
        let added = add_to_workspace(&mut manifest);
        if !added.is_empty() {
            write(&manifest_path, &manifest.to_string())?;
            written.push(format!("Cargo.toml ({})", added.join(", ")));
        }
        out.facts(serde_json::json!({ "written": written, "kept": kept }));
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

    /// The dependency specifications of the engine and of the model, as Cargo.toml writes them.
    fn dependencies(&self) -> Result<(String, String), Failure> {
        if let Some(path) = &self.engine_path {
            let path =
                path.canonicalize().with_context(|| format!("--engine-path {}", path.display())).map_err(usage)?;
            for krate in ["dynamo-migrate", "dynamo-model"] {
                if !path.join(krate).join("Cargo.toml").exists() {
                    return Err(usage(anyhow!(
                        "--engine-path {} holds no {krate}/Cargo.toml: give the root of a dynamo-migrate checkout",
                        path.display()
                    )));
                }
            }
            let spec = |krate: &str| format!("{{ path = {:?} }}", path.join(krate).display().to_string());
            return Ok((spec("dynamo-migrate"), spec("dynamo-model")));
        }
        let git = self.engine_git.as_deref().expect("clap requires --engine-path or --engine-git");
        let rev = self.engine_rev.as_deref().map(|r| format!(", rev = {r:?}")).unwrap_or_default();
        Ok((format!("{{ git = {git:?}{rev} }}"), format!("{{ git = {git:?}{rev} }}")))
    }
}

fn write(path: &Path, content: &str) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Adds `xtask = "run --quiet --package xtask --"` to the cargo configuration, unless an xtask
/// alias is there; true when it wrote.
fn add_alias(path: &Path) -> Result<bool, Failure> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut config: DocumentMut =
        text.parse().with_context(|| format!("{} is not valid TOML", path.display())).map_err(usage)?;
    let alias = config.entry("alias").or_insert_with(|| Item::Table(Table::new()));
    let Some(alias) = alias.as_table_mut() else {
        return Err(usage(anyhow!("{}: [alias] is not a table", path.display())));
    };
    if alias.contains_key("xtask") {
        return Ok(false);
    }
    alias.insert("xtask", value("run --quiet --package xtask --"));
    write(path, &config.to_string())?;
    Ok(true)
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
