//! `schemas`: write the JSON Schemas of the tables' items and of environments.toml.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::{Failure, Output};
use crate::Project;
use crate::schemas::{json_schemas, stale_schemas};

/// Write the JSON Schema of every table's item type and of environments.toml.
///
/// Editors validate environments.toml with it, and other languages read the tables' items with
/// it. With --check, write nothing and fail when the committed files are not what the schema
/// crate gives (for CI).
///
/// Example: `cargo xtask schemas --check`
#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// The folder to write them to.
    #[arg(long, default_value = "schemas")]
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
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
