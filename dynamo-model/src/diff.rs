//! A field-by-field comparison of two table definitions.
//!
//! Both sides go through serde_json, so every field of `TableDef` is compared without a hand-kept
//! list; lists of named things (indexes) are matched by name, not by position.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::table::TableDef;

/// One field that differs: its path (`global_indexes.by_postcode.projection`) and both values
/// as compact JSON (`absent` where one side lacks the field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// The logical name of the expected table.
    pub table: String,
    /// The path of the field, dot-separated; an index is named by its name, as in
    /// `global_indexes.by_postcode.projection`, and a tag by its key, as in `tags.team`.
    pub field: String,
    /// The expected value as compact JSON (as [`TableDef`] serialises), or `absent`.
    pub expected: String,
    /// The actual value as compact JSON, or `absent`.
    pub actual: String,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table {}: {}: expected {}, found {}", self.table, self.field, self.expected, self.actual)
    }
}

/// Every field in which `actual` differs from `expected`, except the top-level fields named in
/// `skip` (those that cannot be read back from the endpoint, such as tags on DynamoDB Local).
///
/// The tables' names are never compared; their versions are. Fields are listed in order of their
/// path, and an empty list means the two definitions agree.
///
/// ```
/// # use dynamo_model::{KeyAttr, TableDef, diff_tables};
/// let expected = TableDef::new("orders", KeyAttr::s("customer")).deletion_protection(true);
/// let actual = TableDef::new("orders", KeyAttr::s("customer"));
/// let diffs = diff_tables(&expected, &actual, &[]);
/// assert_eq!(diffs.len(), 1);
/// assert_eq!(diffs[0].to_string(), "table orders: deletion_protection: expected true, found false");
/// assert!(diff_tables(&expected, &actual, &["deletion_protection"]).is_empty());
/// ```
pub fn diff_tables(expected: &TableDef, actual: &TableDef, skip: &[&str]) -> Vec<FieldDiff> {
    let mut expected_value = normalise(serde_json::to_value(expected).expect("a TableDef is JSON"));
    let mut actual_value = normalise(serde_json::to_value(actual).expect("a TableDef is JSON"));
    for field in skip.iter().copied().chain(["name"]) {
        for value in [&mut expected_value, &mut actual_value] {
            if let Value::Object(map) = value {
                map.remove(field);
            }
        }
    }
    let mut out = Vec::new();
    compare(&expected.name, "", Some(&expected_value), Some(&actual_value), &mut out);
    out
}

/// Turns the index lists into objects keyed by index name, so that indexes are compared by name
/// and a missing one shows up as its own field.
fn normalise(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if matches!(k.as_str(), "global_indexes" | "local_indexes") { by_name(v) } else { v };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

fn by_name(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut map = Map::new();
            for item in items {
                let name = item["name"].as_str().unwrap_or_default().to_owned();
                map.insert(name, item);
            }
            Value::Object(map)
        }
        other => other,
    }
}

fn compare(table: &str, path: &str, expected: Option<&Value>, actual: Option<&Value>, out: &mut Vec<FieldDiff>) {
    match (expected, actual) {
        (Some(Value::Object(e)), Some(Value::Object(a))) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for key in keys {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                compare(table, &child, e.get(key), a.get(key), out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(FieldDiff {
            table: table.to_owned(),
            field: path.to_owned(),
            expected: e.map_or_else(|| "absent".to_owned(), Value::to_string),
            actual: a.map_or_else(|| "absent".to_owned(), Value::to_string),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{GlobalIndex, KeyAttr, Projection};

    fn customers() -> TableDef {
        TableDef::new("customers", KeyAttr::n("customer_nr"))
            .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
            .ttl("expires_at")
    }

    fn lines(diffs: &[FieldDiff]) -> Vec<String> {
        diffs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_tables_have_no_diff() {
        assert_eq!(diff_tables(&customers(), &customers(), &[]), []);
    }

    #[test]
    fn a_missing_index_is_named() {
        let mut actual = customers();
        actual.global_indexes.clear();
        assert_eq!(
            lines(&diff_tables(&customers(), &actual, &[])),
            [
                "table customers: global_indexes.by_postcode: expected {\"name\":\"by_postcode\",\"partition_key\":{\"name\":\"postcode\",\"type\":\"S\"},\"projection\":\"all\",\"sort_key\":null,\"throughput\":null}, found absent"
            ]
        );
        let actual = customers().global_index(GlobalIndex::new("by_name", KeyAttr::s("name")));
        let diffs = diff_tables(&customers(), &actual, &[]);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "global_indexes.by_name");
        assert_eq!(diffs[0].expected, "absent");
    }

    #[test]
    fn indexes_are_matched_by_name_and_compared_field_by_field() {
        let expected = customers().global_index(GlobalIndex::new("by_name", KeyAttr::s("name")));
        let mut actual = customers().global_index(GlobalIndex::new("by_name", KeyAttr::s("name")));
        actual.global_indexes.reverse();
        assert_eq!(diff_tables(&expected, &actual, &[]), []);
        actual.global_indexes[0].projection = Projection::KeysOnly;
        assert_eq!(
            lines(&diff_tables(&expected, &actual, &[])),
            ["table customers: global_indexes.by_name.projection: expected \"all\", found \"keys_only\""]
        );
    }

    #[test]
    fn scalar_fields_are_compared_and_skipped_fields_are_not() {
        let actual = customers().deletion_protection(true).tag("team", "billing").point_in_time_recovery(true);
        let all = lines(&diff_tables(&customers(), &actual, &[]));
        assert_eq!(
            all,
            [
                "table customers: deletion_protection: expected false, found true",
                "table customers: point_in_time_recovery: expected false, found true",
                "table customers: tags.team: expected absent, found \"billing\"",
            ]
        );
        let checked = diff_tables(&customers(), &actual, &["tags", "point_in_time_recovery"]);
        assert_eq!(lines(&checked), ["table customers: deletion_protection: expected false, found true"]);
    }
}
