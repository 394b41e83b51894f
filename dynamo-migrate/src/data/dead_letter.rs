//! A dead-letter file: one JSON line per item that a step could not convert or write, with the
//! error, so that nothing is dropped silently when a migration opts out of stopping.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::Item;
use super::fidelity::canonical_item;

#[derive(Debug)]
pub(crate) struct DeadLetters {
    path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl DeadLetters {
    /// Opens the file for appending, so that a resumed run adds to what an earlier one wrote.
    pub(crate) fn open(path: &Path) -> std::io::Result<DeadLetters> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetters { path: path.to_owned(), file: Mutex::new(std::io::BufWriter::new(file)) })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one failed item and flushes, so that a crash loses no line.
    pub(crate) fn write(&self, table: &str, key: &Item, error: &str, item: Option<&Item>) -> std::io::Result<()> {
        let line = json!({
            "table": table,
            "key": canonical_item(key),
            "error": error,
            "item": item.map(canonical_item),
        });
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(file, "{line}")?;
        file.flush()
    }
}
