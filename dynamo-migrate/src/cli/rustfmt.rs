//! rustfmt for the files the command line writes into a workspace (`init`, `new`): with the
//! workspace's settings and the crate's edition, as `cargo fmt` formats them, where rustfmt is
//! installed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The edition of a crate written without one.
pub(crate) const DEFAULT_EDITION: &str = "2024";

/// Formats `files` in place. rustfmt finds the settings from each file's directory upwards, as
/// `cargo fmt` does; a file's out-of-line modules are formatted too, so this is only for files
/// that declare none. True when rustfmt ran and succeeded.
pub(crate) fn format_files(files: &[PathBuf], edition: &str) -> bool {
    if files.is_empty() {
        return true;
    }
    Command::new("rustfmt")
        .args(["--edition", edition])
        .args(files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `source` formatted as it would be in `dir` (whose settings rustfmt finds upwards from there),
/// without touching the modules it declares; `None` when rustfmt is not installed or fails.
pub(crate) fn format_source(source: &str, dir: &Path, edition: &str) -> Option<String> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", edition, "--emit", "stdout"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(source.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// The edition of the crate whose sources are in `src` (its `Cargo.toml` is in `src` or a
/// directory above): its `package.edition`, or the workspace's with `edition.workspace = true`.
pub(crate) fn crate_edition(src: &Path) -> String {
    let manifest =
        |dir: &Path| -> Option<toml::Table> { std::fs::read_to_string(dir.join("Cargo.toml")).ok()?.parse().ok() };
    let Some((dir, package)) =
        src.ancestors().find_map(|dir| Some((dir, manifest(dir).filter(|m| m.contains_key("package"))?)))
    else {
        return DEFAULT_EDITION.to_owned();
    };
    match package.get("package").and_then(|p| p.get("edition")) {
        Some(toml::Value::String(edition)) => edition.clone(),
        Some(toml::Value::Table(inherited))
            if inherited.get("workspace").and_then(toml::Value::as_bool) == Some(true) =>
        {
            let workspace = dir.ancestors().find_map(|dir| manifest(dir).filter(|m| m.contains_key("workspace")));
            let edition = workspace.as_ref().and_then(|w| w.get("workspace")?.get("package")?.get("edition")?.as_str());
            edition.unwrap_or(DEFAULT_EDITION).to_owned()
        }
        // Cargo's edition for a package that names none.
        _ => "2015".to_owned(),
    }
}
