//! `new`: the next migration, written beside the others and registered; with `--from-schema`,
//! its steps too.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use serde_json::json;

use super::rustfmt::{crate_edition, format_files, format_source};
use super::{Failure, Output, usage};
use crate::Project;
use crate::drift::expected_tables;
use crate::generate::{Generation, generate, render, render_empty};
use crate::migration::{Migration, locate, parse_file_name};

/// Write the next migration and register it
///
/// Writes `mNNNN_<name>.rs`, with the version after the last, beside the registered migrations
/// (else in migrations/src), and registers it in that crate's lib.rs: its `mod` line and its
/// entry in `all()`. Never overwrites a file.
///
/// With --from-schema, the migration holds the steps from the tables the migrations leave to the
/// schema crate's tables, as DynamoDB needs them: one GSI per step, a rebuild into the next
/// version where keys or LSIs change, deletes last. What only its author can write (the reason of
/// a destructive step, a rebuild's new key values) is left as `reason_required!()` or
/// `value_required!(..)`, which do not compile until replaced.
///
/// Example: cargo xtask new add_orders_by_customer --from-schema
#[derive(Debug, Args)]
pub struct NewArgs {
    /// What the migration does, in lowercase words joined by _ (add_orders_by_customer).
    name: String,
    /// Write the steps from the tables the migrations leave to the schema crate's tables.
    #[arg(long)]
    from_schema: bool,
    /// The migrations crate's source directory [default: where the registered migrations' files
    /// are, else migrations/src].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl NewArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        check_name(&self.name, self.from_schema)?;
        let generation = if self.from_schema { Some(from_schema(project, &self.name)?) } else { None };
        let what = match project.migrations.len() {
            0 => "from no table to the schema crate's".to_owned(),
            1 => "from the tables migration 1 leaves to the schema crate's".to_owned(),
            n => format!("from the tables the {n} migrations leave to the schema crate's"),
        };
        let command = format!("cargo xtask new {} --from-schema", self.name);
        self.write(project, out, generation, &command, &what).map(drop)
    }

    /// `baseline`'s way in: the migration `name`, holding `generation` (rendered with `command`
    /// in its header), written into `dir` (else found as `new` finds it) and registered.
    pub(crate) fn for_baseline(name: &str, dir: Option<PathBuf>) -> NewArgs {
        NewArgs { name: name.to_owned(), from_schema: true, dir }
    }

    /// Writes and registers the migration; `what` says what its steps do. Returns the file
    /// written.
    pub(crate) fn write(
        &self,
        project: &Project,
        out: &Output,
        generation: Option<Generation>,
        command: &str,
        what: &str,
    ) -> Result<PathBuf, Failure> {
        let name = &self.name;
        let again = if self.from_schema { format!(" {name} --from-schema") } else { format!(" {name}") };
        if let Some(taken) = project.migrations.iter().find(|m| &m.name == name) {
            return Err(usage(anyhow!(
                "migration {} is already named {name}: give this one a name of its own, e.g. `cargo xtask new {name}_2{}`",
                taken.version,
                if self.from_schema { " --from-schema" } else { "" }
            )));
        }
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => find_dir(project).ok_or_else(|| {
                usage(anyhow!(
                    "cannot find the migrations crate: no registered migration's file is here and there is no migrations/src; run this from the workspace root, or name the crate's source directory: `cargo xtask new{again} --dir <migrations crate>/src`"
                ))
            })?,
        };
        let registry = ["lib.rs", "mod.rs"].map(|f| dir.join(f)).into_iter().find(|p| p.is_file()).ok_or_else(|| {
            usage(anyhow!(
                "{} has no lib.rs or mod.rs to register the migration in: name the migrations crate's source directory, `cargo xtask new{again} --dir <migrations crate>/src`",
                shown(&dir)
            ))
        })?;
        let files = migration_files(&dir)?;
        let unregistered: Vec<&String> = files.iter().filter(|f| !is_registered(project, f)).collect();
        if !unregistered.is_empty() {
            let list: Vec<String> = unregistered.iter().map(|f| shown(&dir.join(f))).collect();
            return Err(usage(anyhow!(
                "{} {} a migration file that no migration!(..) registers, so the next version is not clear: register {} in {} or remove {}, then run `cargo xtask new{again}`",
                list.join(", "),
                if list.len() == 1 { "is" } else { "are" },
                if list.len() == 1 { "it" } else { "them" },
                shown(&registry),
                if list.len() == 1 { "it" } else { "them" },
            )));
        }
        let last = project
            .migrations
            .iter()
            .map(|m| m.version)
            .chain(files.iter().filter_map(|f| parse_file_name(f).map(|(v, _)| v)))
            .max()
            .unwrap_or(0);
        let version = last + 1;
        if version > 9999 {
            return Err(Failure::work(anyhow!("migration {last} is the last a four-digit version allows")));
        }
        let module = format!("m{version:04}_{name}");
        let file_name = format!("{module}.rs");
        let file = dir.join(&file_name);

        let source = match &generation {
            Some(generation) => render(&file_name, command, generation),
            None => render_empty(&file_name),
        };
        let registry_source = std::fs::read_to_string(&registry)
            .map_err(|e| Failure::work(anyhow!("cannot read {}: {e}", shown(&registry))))?;
        let edition = crate_edition(&dir);
        // lib.rs is formatted again after the registration only where it was formatted before,
        // so that nothing else in it changes.
        let registry_dir = registry.parent().unwrap_or(Path::new("."));
        let formatted_before =
            format_source(&registry_source, registry_dir, &edition).as_ref() == Some(&registry_source);
        let registered = register(&registry_source, &module).ok_or_else(|| {
            usage(anyhow!(
                "{} has no migration!(..) list to add to (a `mod mNNNN_<name>;` line and `mNNNN_<name>::migration()` entries in a vec![..], or an empty vec![] in `fn all`): nothing was written; add `mod {module};` and `{module}::migration(),` by hand after writing {}",
                shown(&registry),
                shown(&file)
            ))
        })?;

        let registered = match formatted_before {
            true => format_source(&registered, registry_dir, &edition).unwrap_or(registered),
            false => registered,
        };

        write_new(&file, &source)?;
        if let Err(e) = replace(&registry, &registered) {
            let _ = std::fs::remove_file(&file);
            return Err(Failure::work(anyhow!(
                "cannot register {module} in {}: {e}; nothing was written",
                shown(&registry)
            )));
        }
        let formatted = format_files(std::slice::from_ref(&file), &edition);

        let holes = generation.as_ref().map(Generation::holes).unwrap_or_default();
        let steps: Vec<serde_json::Value> = generation
            .iter()
            .flat_map(|g| &g.steps)
            .map(|s| json!({ "step": s.to_string(), "to_write": s.needs_author() }))
            .collect();
        out.facts(json!({
            "version": version,
            "name": name,
            "file": shown(&file),
            "registered_in": shown(&registry),
            "from_schema": self.from_schema,
            "steps": steps,
            "not_generated": generation.as_ref().map(|g| g.not_generated.clone()).unwrap_or_default(),
            "notes": generation.as_ref().map(|g| g.notes.clone()).unwrap_or_default(),
            "formatted": formatted,
            "stale_schemas": super::schemas::stale_note(project).map(|(stale, _)| stale).unwrap_or_default(),
        }));
        if let Some(generation) = &generation {
            out.line(format!("migration {version} ({name}): {} step(s) {what}", generation.steps.len(),));
            for step in &generation.steps {
                out.line(format!("  {} {step}", if step.needs_author() { "!" } else { "+" }));
            }
        }
        out.line(format!("wrote {}", shown(&file)));
        out.line(format!(
            "registered it in {}: `mod {module};` and `{module}::migration()` in all()",
            shown(&registry)
        ));
        for note in generation.iter().flat_map(|g| &g.notes) {
            out.line(format!("note: {note}"));
        }
        for missing in generation.iter().flat_map(|g| &g.not_generated) {
            out.line(format!("not generated: {missing}"));
        }
        if let Some((_, note)) = super::schemas::stale_note(project) {
            out.line(note);
        }
        out.line(if !holes.is_empty() {
            format!(
                "next: write what each {} in {} asks for (it does not compile until then), then run `cargo xtask verify`",
                holes.join(" and "),
                shown(&file)
            )
        } else if self.from_schema {
            "next: say why in its header, then run `cargo xtask verify`".to_owned()
        } else {
            format!("next: write its steps in {}, then run `cargo xtask verify`", shown(&file))
        });
        Ok(file)
    }
}

/// The longest migration name: it names a file (`mNNNN_<name>.rs`, which file systems allow up
/// to 255 bytes) and a Rust module that `lib.rs` names twice, so it stays readable.
const MAX_NAME: usize = 100;

/// Refuses a name that is not lowercase words joined by `_`, or is too long to name a file,
/// suggesting one that is not.
fn check_name(name: &str, from_schema: bool) -> Result<(), Failure> {
    let again = if from_schema { " --from-schema" } else { "" };
    if name.len() > MAX_NAME {
        return Err(usage(anyhow!(
            "migration name {:?}… is {} characters long; it names the migration's file and module, so at most {MAX_NAME}: run `cargo xtask new {}{again}`",
            name.chars().take(40).collect::<String>(),
            name.chars().count(),
            shorter(&crate::generate::snake_case(name))
        )));
    }
    if parse_file_name(&format!("m0001_{name}.rs")).is_some() {
        return Ok(());
    }
    let suggestion = crate::generate::snake_case(name);
    let suggestion = if suggestion.is_empty() { "add_orders_by_customer".to_owned() } else { suggestion };
    Err(usage(anyhow!(
        "migration name {name:?} is not lowercase words joined by _ (letters a-z and digits): run `cargo xtask new {suggestion}{}`",
        if from_schema { " --from-schema" } else { "" }
    )))
}

/// `name` cut to its first words within 40 characters (or its first 40 characters).
fn shorter(name: &str) -> String {
    let mut short = String::new();
    for word in name.split('_').filter(|w| !w.is_empty()) {
        let next = if short.is_empty() { word.to_owned() } else { format!("{short}_{word}") };
        if next.len() > 40 {
            break;
        }
        short = next;
    }
    if short.is_empty() { name.chars().filter(char::is_ascii_alphanumeric).take(40).collect() } else { short }
}

/// The directory of the latest registered migration's file, else `migrations/src`.
fn find_dir(project: &Project) -> Option<PathBuf> {
    let latest = project
        .migrations
        .iter()
        .filter_map(|m| Some((m.version, locate(m.source_file.as_deref()?)?)))
        .max_by_key(|(version, _)| *version);
    if let Some((_, path)) = latest {
        return path.parent().map(Path::to_owned);
    }
    let default = PathBuf::from("migrations/src");
    default.is_dir().then_some(default)
}

/// The `mNNNN_<name>.rs` files in `dir`, by name.
fn migration_files(dir: &Path) -> Result<Vec<String>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| usage(anyhow!("cannot read {}: {e}", shown(dir))))?;
    let mut files: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| parse_file_name(f).is_some())
        .collect();
    files.sort();
    Ok(files)
}

fn is_registered(project: &Project, file: &str) -> bool {
    project
        .migrations
        .iter()
        .any(|m: &Migration| m.source_file.as_deref().and_then(|s| Path::new(s).file_name()?.to_str()) == Some(file))
}

/// The migration that takes the migrations' end state to the schema crate's tables.
fn from_schema(project: &Project, name: &str) -> Result<Generation, Failure> {
    let current = expected_tables(&project.migrations).map_err(|e| {
        Failure::work(anyhow!(
            "the migrations cannot be followed from empty ({e}), so there is nothing to compare the schema crate with; fix them (`cargo xtask verify` says more), then run `cargo xtask new {name} --from-schema`"
        ))
    })?;
    // The schema crate's tables must pass their own check (DynamoDB's rules, keys against the
    // item types), as `verify` requires: a migration towards tables that cannot be is not written.
    let mut invalid = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for table in &project.tables {
        if !seen.insert(table.name()) {
            invalid.push(format!("table {} is declared twice", table.name()));
        }
        if let Err(errors) = table.validate() {
            invalid.extend(errors.0.iter().map(ToString::to_string));
        }
    }
    if !invalid.is_empty() {
        return Err(Failure::work(anyhow!(
            "nothing was written: the schema crate's tables fail their check: {}; fix the schema crate, then run `cargo xtask new {name} --from-schema`",
            invalid.join("; ")
        )));
    }
    let desired: Vec<_> = project.tables.iter().map(|t| t.def.clone()).collect();
    let generation = generate(&desired, &current).map_err(|e| {
        Failure::work(anyhow!("nothing was written: {e}; then run `cargo xtask new {name} --from-schema`"))
    })?;
    if generation.steps.is_empty() {
        if generation.not_generated.is_empty() {
            return Err(Failure::work(anyhow!(
                "nothing to generate: the migrations already leave the tables the schema crate declares; for a migration of data, run `cargo xtask new {name}`"
            )));
        }
        let missing: Vec<String> = generation.not_generated.iter().map(ToString::to_string).collect();
        return Err(Failure::work(anyhow!("nothing was written: {}", missing.join("; "))));
    }
    Ok(generation)
}

/// `source` (a migrations crate's lib.rs) with `module` declared and added to the list of
/// migrations, after the last of each; `None` when it has no such list.
pub(crate) fn register(source: &str, module: &str) -> Option<String> {
    let entry = add_entry(source, module)?;
    Some(add_mod(&entry, module))
}

/// Adds `module::migration()` after the last `mNNNN_..::migration()` in `source`, in its style
/// (one a line, or several on one), or into an empty `vec![]` after `fn all`.
fn add_entry(source: &str, module: &str) -> Option<String> {
    let call = "::migration()";
    let mut last = None;
    for (at, _) in source.match_indices(call) {
        let start = source[..at].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        if parse_file_name(&format!("{}.rs", &source[start..at])).is_some() {
            last = Some((start, at + call.len()));
        }
    }
    let Some((start, end)) = last else {
        let all = source.find("fn all")?;
        let empty = all + source[all..].find("vec![]")?;
        let open = empty + "vec![".len();
        return Some(format!("{}{module}{call}{}", &source[..open], &source[open..]));
    };
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = &source[line_start..start];
    let own_line = before.trim().is_empty();
    let comma = source[end..].starts_with(',');
    let (at, text) = match (own_line, comma) {
        (true, true) => (end + 1, format!("\n{before}{module}{call},")),
        (true, false) => (end, format!(",\n{before}{module}{call}")),
        (false, true) => (end + 1, format!(" {module}{call},")),
        (false, false) => (end, format!(", {module}{call}")),
    };
    Some(format!("{}{text}{}", &source[..at], &source[at..]))
}

/// Adds `mod module;` after the last `mod mNNNN_..;` line (keeping its `pub`), else after the
/// last `mod` line, else before the first `use`, else after the crate's doc comment.
fn add_mod(source: &str, module: &str) -> String {
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    // The module a `mod x;` line (`pub` or not) declares.
    let declares = |line: &str| -> Option<String> {
        let (prefix, rest) = line.trim().split_once("mod ")?;
        let name = rest.strip_suffix(';')?;
        let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ((prefix.is_empty() || prefix.starts_with("pub")) && plain).then(|| name.to_owned())
    };
    let is_migration = |name: &str| parse_file_name(&format!("{name}.rs")).is_some();
    let last_migration = lines.iter().rposition(|l| declares(l).is_some_and(|n| is_migration(&n)));
    let (at, line) = match last_migration {
        Some(i) => {
            let template = lines[i];
            let name = declares(template).expect("a mod line");
            (i + 1, template.replacen(&name, module, 1))
        }
        None => match lines.iter().rposition(|l| declares(l).is_some()) {
            Some(i) => (i + 1, format!("mod {module};\n")),
            None => match lines.iter().position(|l| l.starts_with("use ")) {
                Some(i) => (i, format!("mod {module};\n\n")),
                None => {
                    let docs = lines.iter().take_while(|l| l.starts_with("//!") || l.trim().is_empty()).count();
                    (docs, format!("mod {module};\n\n"))
                }
            },
        },
    };
    let line = if line.ends_with('\n') { line } else { format!("\n{line}") };
    let mut out: String = lines[..at].concat();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&line);
    out.push_str(&lines[at..].concat());
    out
}

/// Writes a file that must not exist yet.
fn write_new(file: &Path, source: &str) -> Result<(), Failure> {
    let mut handle = match std::fs::OpenOptions::new().write(true).create_new(true).open(file) {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(usage(anyhow!(
                "{} exists, and `new` never overwrites a file: nothing was written",
                shown(file)
            )));
        }
        Err(e) => return Err(Failure::work(anyhow!("cannot write {}: {e}", shown(file)))),
    };
    handle.write_all(source.as_bytes()).map_err(|e| {
        let _ = std::fs::remove_file(file);
        Failure::work(anyhow!("cannot write {}: {e}", shown(file)))
    })
}

/// Replaces `file`'s content whole: written beside it, then renamed over it.
fn replace(file: &Path, content: &str) -> std::io::Result<()> {
    let temporary = file.with_extension(format!("rs.new-{}", std::process::id()));
    std::fs::write(&temporary, content)?;
    std::fs::rename(&temporary, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// A path as the user gave it or relative to the current directory (the workspace root).
fn shown(path: &Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_owned));
    relative.unwrap_or_else(|| path.to_owned()).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "//! Migrations.\n\nmod m0001_create_customers;\nmod m0002_add_index;\n\nuse dynamo_migrate::Migration;\n\npub fn all() -> Vec<Migration> {\n    vec![\n        m0001_create_customers::migration(),\n        m0002_add_index::migration(),\n    ]\n}\n";

    #[test]
    fn a_migration_is_registered_after_the_last_one_in_the_same_style() {
        assert_eq!(
            register(LIB, "m0003_enable_ttl").unwrap(),
            "//! Migrations.\n\nmod m0001_create_customers;\nmod m0002_add_index;\nmod m0003_enable_ttl;\n\nuse dynamo_migrate::Migration;\n\npub fn all() -> Vec<Migration> {\n    vec![\n        m0001_create_customers::migration(),\n        m0002_add_index::migration(),\n        m0003_enable_ttl::migration(),\n    ]\n}\n"
        );
        let one_line = "pub mod m0001_a;\npub fn all() -> Vec<Migration> {\n    vec![m0001_a::migration()]\n}\n";
        assert_eq!(
            register(one_line, "m0002_b").unwrap(),
            "pub mod m0001_a;\npub mod m0002_b;\npub fn all() -> Vec<Migration> {\n    vec![m0001_a::migration(), m0002_b::migration()]\n}\n"
        );
    }

    #[test]
    fn the_first_migration_goes_into_an_empty_list() {
        let empty =
            "//! Migrations.\n\nuse dynamo_migrate::Migration;\n\npub fn all() -> Vec<Migration> {\n    vec![]\n}\n";
        assert_eq!(
            register(empty, "m0001_create_orders").unwrap(),
            "//! Migrations.\n\nmod m0001_create_orders;\n\nuse dynamo_migrate::Migration;\n\npub fn all() -> Vec<Migration> {\n    vec![m0001_create_orders::migration()]\n}\n"
        );
        assert_eq!(register("pub fn all() -> Vec<Migration> { list() }\n", "m0001_x"), None);
    }
}
