//! JSON Schemas for editors and CI: one per table's item type, and one of `environments.toml`
//! (`cargo xtask schemas` writes them; `--check` fails when the committed files are stale).

use std::collections::BTreeMap;
use std::path::Path;

use dynamo_model::TableSchema;

use crate::environment::Environment;

/// The file name and content of every schema: `<table>.item.json` for each table,
/// `environments.json` for the environments file.
pub fn json_schemas(tables: &[TableSchema]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> =
        tables.iter().map(|t| (format!("{}.item.json", t.name()), pretty(&t.item_schema))).collect();
    let mut environments = schemars::schema_for!(BTreeMap<String, Environment>);
    environments.insert("title".into(), "environments.toml".into());
    environments.insert(
        "description".into(),
        "One table per environment: where its DynamoDB tables live and how carefully to treat it.".into(),
    );
    files.push(("environments.json".to_owned(), pretty(&environments)));
    files
}

fn pretty(schema: &schemars::Schema) -> String {
    format!("{}\n", serde_json::to_string_pretty(schema).expect("a schema is JSON"))
}

/// The files in `dir` that are missing or differ from what `tables` give.
pub fn stale_schemas(dir: &Path, tables: &[TableSchema]) -> Vec<String> {
    json_schemas(tables)
        .into_iter()
        .filter(|(name, content)| std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(content))
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_changed_files_are_stale_and_written_ones_are_not() {
        let dir = std::env::temp_dir().join(format!("schemas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(stale_schemas(&dir, &[]), ["environments.json"]);
        for (name, content) in json_schemas(&[]) {
            std::fs::write(dir.join(name), content).unwrap();
        }
        assert_eq!(stale_schemas(&dir, &[]), Vec::<String>::new());
        std::fs::write(dir.join("environments.json"), "{}").unwrap();
        assert_eq!(stale_schemas(&dir, &[]), ["environments.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
