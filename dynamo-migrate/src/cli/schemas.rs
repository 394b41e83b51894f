//! `schemas`: write the JSON Schemas of the tables' items and of environments.toml.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::{Failure, Output, usage};
use crate::Project;
use crate::schemas::{json_schemas, stale_schemas};

/// Where `cargo xtask schemas` writes the JSON Schemas unless `--dir` names another folder.
const DIR: &str = "schemas";

/// The JSON Schemas in the workspace's `schemas/` that are missing or stale, when that folder
/// exists, with the line that says so and how to write them (for `new` and `verify`).
pub(super) fn stale_note(project: &Project) -> Option<(Vec<String>, String)> {
    let dir = std::path::Path::new(DIR);
    if !dir.is_dir() {
        return None;
    }
    let stale = stale_schemas(dir, &project.tables);
    (!stale.is_empty()).then(|| {
        let line = format!(
            "note: the JSON Schemas in {DIR}/ are not what the schema crate gives ({}), so `cargo xtask schemas --check` fails: write them with `cargo xtask schemas`",
            stale.join(", ")
        );
        (stale, line)
    })
}

/// Write the JSON Schemas of the items and of environments.toml
///
/// One for every table's item type, and one for environments.toml.
///
/// Editors validate environments.toml with it, and other languages read the tables' items with
/// it. With --check, write nothing and fail when the committed files are not what the schema
/// crate gives (for CI).
///
/// Example: `cargo xtask schemas --check`
#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// The folder to write them to.
    #[arg(long, default_value = DIR)]
    dir: PathBuf,
    /// Write nothing; exit 1 when a file is missing or stale.
    #[arg(long)]
    check: bool,
}

impl SchemasArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        let dir = &self.dir;
        if self.check {
            let stale = stale_schemas(dir, &project.tables);
            out.facts(serde_json::json!({ "dir": dir, "stale": stale }));
            if !stale.is_empty() {
                return Err(Failure::work(anyhow!(
                    "{} is not what the schema crate gives: {}; run `cargo xtask schemas` and commit the result",
                    dir.display(),
                    stale.join(", ")
                )));
            }
            out.line(format_args!("{}: every schema is fresh", dir.display()));
            return Ok(());
        }
        // A directory that cannot be written is a usage error: say so before writing any file.
        let unwritable = |what: String, e: std::io::Error| {
            usage(anyhow!(
                "cannot write the JSON Schemas into {}: {what}: {e}; name a directory you can write, `cargo xtask schemas --dir <dir>`",
                dir.display()
            ))
        };
        std::fs::create_dir_all(dir).map_err(|e| unwritable(format!("creating {}", dir.display()), e))?;
        let probe = dir.join(format!(".dynamo-migrate-{}", std::process::id()));
        std::fs::write(&probe, "").map_err(|e| unwritable(format!("writing in {}", dir.display()), e))?;
        let _ = std::fs::remove_file(&probe);
        let mut written = Vec::new();
        for (name, content) in json_schemas(&project.tables) {
            let path = dir.join(&name);
            std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
            out.line(format_args!("wrote {}", path.display()));
            written.push(name);
        }
        out.facts(serde_json::json!({ "dir": dir, "written": written }));
        Ok(())
    }
}
