//! Cross-checks a table definition against its item type's JSON Schema (from schemars).
//!
//! The schema is what serde will read and write, so a key attribute that the item type lacks,
//! names differently or types differently would only show up at run time, item by item.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::table::{KeyAttr, KeyType, Projection, TableDef};
use crate::table_schema::IndexProjection;
use crate::validate::ValidationError;

/// The JSON types a property can hold, and whether it may be absent or null.
struct PropertyShape {
    types: BTreeSet<String>,
    nullable: bool,
}

/// Checks every key attribute of `def` against the item type's schema: each must be a field of a
/// matching type; the table's own keys must be required, index keys may be optional (a sparse index).
///
/// `schema` is the item type's JSON Schema (`schemars::schema_for!`), so fields are matched by
/// serde's names. A matching type is a string (or an enum of unit variants) for
/// [`KeyType::S`], an integer or number for [`KeyType::N`], and an array of bytes for
/// [`KeyType::B`]. Each error names the table, the attribute and `item_type`:
/// [`ValidationError::KeyNotInItem`], [`ValidationError::KeyTypeMismatch`] or
/// [`ValidationError::OptionalTableKey`]; an empty list means the keys fit.
/// [`TableSchema::validate`](crate::TableSchema::validate) runs this check with the rest.
pub fn check_item_schema(def: &TableDef, schema: &schemars::Schema, item_type: &str) -> Vec<ValidationError> {
    let root = schema.as_value();
    let root = resolve(root, root);
    let properties = root.get("properties").and_then(Value::as_object);
    let required: BTreeSet<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let table_keys: BTreeSet<&str> = def.keys().map(|k| k.name.as_str()).collect();

    let mut errors = Vec::new();
    let mut checked = BTreeSet::new();
    for attr in def.all_key_attrs() {
        if !checked.insert(attr.name.as_str()) {
            continue;
        }
        let Some(property) = properties.and_then(|p| p.get(&attr.name)) else {
            errors.push(ValidationError::KeyNotInItem {
                table: def.name.clone(),
                attribute: attr.name.clone(),
                ty: attr.ty,
                item_type: item_type.to_owned(),
            });
            continue;
        };
        let shape = shape(root, property);
        if !matches_key_type(root, property, &shape, attr) {
            errors.push(ValidationError::KeyTypeMismatch {
                table: def.name.clone(),
                attribute: attr.name.clone(),
                ty: attr.ty,
                item_type: item_type.to_owned(),
                found: shape.types.iter().cloned().collect::<Vec<_>>().join(" or "),
            });
        }
        let is_table_key = table_keys.contains(attr.name.as_str());
        if is_table_key && (shape.nullable || !required.contains(attr.name.as_str())) {
            errors.push(ValidationError::OptionalTableKey {
                table: def.name.clone(),
                attribute: attr.name.clone(),
                item_type: item_type.to_owned(),
            });
        }
    }
    errors
}

/// Checks the type an application reads from an index against what the index returns (see
/// `TableSchema::projection`).
pub(crate) fn check_projection(
    def: &TableDef,
    item_schema: &schemars::Schema,
    projection: &IndexProjection,
) -> Vec<ValidationError> {
    let error = |attribute: &str, problem: String| ValidationError::ProjectionField {
        table: def.name.clone(),
        index: projection.index.clone(),
        type_name: projection.type_name.to_owned(),
        attribute: attribute.to_owned(),
        problem,
    };
    let (index_keys, projected): (Vec<&KeyAttr>, &Projection) =
        match def.global_indexes.iter().find(|i| i.name == projection.index) {
            Some(index) => (index.keys().collect(), &index.projection),
            None => match def.local_indexes.iter().find(|i| i.name == projection.index) {
                Some(index) => (vec![&index.sort_key], &index.projection),
                None => {
                    return vec![ValidationError::ProjectionIndex {
                        table: def.name.clone(),
                        index: projection.index.clone(),
                        type_name: projection.type_name.to_owned(),
                    }];
                }
            },
        };
    // What every item in the index has: the table's keys and the index's.
    let keys: BTreeSet<&str> = def.keys().chain(index_keys).map(|k| k.name.as_str()).collect();
    let item_root = resolve(item_schema.as_value(), item_schema.as_value());
    let item_properties = item_root.get("properties").and_then(Value::as_object);
    let item_required = required(item_root);
    let root = projection.schema.as_value();
    let root = resolve(root, root);
    let Some(properties) = root.get("properties").and_then(Value::as_object) else {
        return vec![error("", "it is not a struct with named fields".to_owned())];
    };
    let required_here = required(root);
    let mut errors = Vec::new();
    for name in properties.keys() {
        let is_key = keys.contains(name.as_str());
        let returned = is_key
            || match projected {
                Projection::All => true,
                Projection::KeysOnly => false,
                Projection::Include(attributes) => attributes.iter().any(|a| a == name),
            };
        if !returned {
            let what = match projected {
                Projection::KeysOnly => "the index is KEYS_ONLY and it is no key".to_owned(),
                _ => "the index does not project it (add it to the INCLUDE projection, or drop the field)".to_owned(),
            };
            errors.push(error(name, format!("the index never returns it: {what}")));
            continue;
        }
        if !item_properties.is_some_and(|p| p.contains_key(name)) {
            errors.push(error(name, "it is not a field of the table's item type".to_owned()));
            continue;
        }
        if required_here.contains(name.as_str()) && !is_key && !item_required.contains(name.as_str()) {
            errors.push(error(
                name,
                "it is required here but optional in the item type, so an item may come back without it (make it an Option)".to_owned(),
            ));
        }
    }
    errors
}

/// The names a schema object requires.
fn required(object: &Value) -> BTreeSet<&str> {
    object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn matches_key_type(root: &Value, property: &Value, shape: &PropertyShape, attr: &KeyAttr) -> bool {
    let non_null: Vec<&str> = shape.types.iter().map(String::as_str).filter(|t| *t != "null").collect();
    match attr.ty {
        KeyType::S => non_null == ["string"],
        KeyType::N => !non_null.is_empty() && non_null.iter().all(|t| matches!(*t, "integer" | "number")),
        // Bytes (with serde_bytes) are an array of 8-bit integers in the schema.
        KeyType::B => {
            non_null == ["array"]
                && items_of(root, property).is_some_and(|items| {
                    let items = resolve(root, items);
                    items.get("type").and_then(Value::as_str) == Some("integer")
                        && items.get("maximum").and_then(Value::as_u64) == Some(255)
                })
        }
    }
}

fn items_of<'a>(root: &'a Value, property: &'a Value) -> Option<&'a Value> {
    let property = resolve(root, property);
    if let Some(items) = property.get("items") {
        return Some(items);
    }
    ["anyOf", "oneOf"]
        .iter()
        .filter_map(|k| property.get(*k).and_then(Value::as_array))
        .flatten()
        .find_map(|v| items_of(root, v))
}

/// Follows a local `$ref` (`#/$defs/Name`) to what it names.
fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    let mut value = value;
    for _ in 0..32 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else { break };
        match reference.strip_prefix('#').and_then(|pointer| root.pointer(pointer)) {
            Some(target) => value = target,
            None => break,
        }
    }
    value
}

fn shape(root: &Value, property: &Value) -> PropertyShape {
    let mut out = PropertyShape { types: BTreeSet::new(), nullable: false };
    collect(root, property, &mut out, 0);
    out.nullable |= out.types.contains("null");
    out
}

fn collect(root: &Value, value: &Value, out: &mut PropertyShape, depth: usize) {
    if depth > 32 {
        return;
    }
    let value = resolve(root, value);
    match value.get("type") {
        Some(Value::String(t)) => {
            out.types.insert(t.clone());
        }
        Some(Value::Array(ts)) => out.types.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    if value.get("const").is_some_and(Value::is_string)
        || value.get("enum").and_then(Value::as_array).is_some_and(|e| e.iter().all(Value::is_string))
    {
        out.types.insert("string".to_owned());
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for sub in value.get(key).and_then(Value::as_array).into_iter().flatten() {
            collect(root, sub, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::table::GlobalIndex;

    #[derive(Deserialize, Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Customer {
        customer_nr: u64,
        name: String,
        postcode: Option<String>,
        #[serde(rename = "Region")]
        region: Region,
        score: f64,
    }

    #[derive(Deserialize, Serialize, JsonSchema)]
    #[allow(dead_code)]
    enum Region {
        North,
        South,
    }

    fn messages(def: &TableDef) -> Vec<String> {
        check_item_schema(def, &schemars::schema_for!(Customer), "Customer").iter().map(ToString::to_string).collect()
    }

    #[test]
    fn matching_keys_pass_and_index_keys_may_be_optional() {
        let def = TableDef::new("customers", KeyAttr::n("customer_nr"))
            .sort_key(KeyAttr::s("Region"))
            .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).sort_key(KeyAttr::n("score")));
        assert_eq!(messages(&def), Vec::<String>::new());
    }

    #[test]
    fn a_key_missing_from_the_item_is_named() {
        let def = TableDef::new("customers", KeyAttr::n("customer_id"));
        assert_eq!(
            messages(&def),
            ["table customers: key attribute customer_id (N) is not a field of the item type Customer"]
        );
        // The Rust field name does not count: serde's name does.
        let def = TableDef::new("customers", KeyAttr::n("customer_nr")).sort_key(KeyAttr::s("region"));
        assert_eq!(
            messages(&def),
            ["table customers: key attribute region (S) is not a field of the item type Customer"]
        );
    }

    #[test]
    fn a_key_of_another_type_is_named() {
        let def = TableDef::new("customers", KeyAttr::s("customer_nr"));
        assert_eq!(
            messages(&def),
            [
                "table customers: key attribute customer_nr is S in the table but the item type Customer has it as integer"
            ]
        );
        let def = TableDef::new("customers", KeyAttr::n("customer_nr"))
            .global_index(GlobalIndex::new("by_name", KeyAttr::b("name")));
        assert_eq!(messages(&def).len(), 1);
    }

    #[test]
    fn a_table_key_must_be_required() {
        let def = TableDef::new("customers", KeyAttr::s("postcode"));
        assert_eq!(
            messages(&def),
            [
                "table customers: key attribute postcode must be a required field of the item type Customer (it is optional); only index keys may be optional"
            ]
        );
    }

    /// What a query on an index returns, declared as its own type, is checked against the
    /// index's projection.
    #[test]
    fn a_projection_type_holds_only_what_its_index_returns() {
        use crate::table::Projection;
        use crate::table_schema::TableSchema;

        #[derive(Deserialize, JsonSchema)]
        #[allow(dead_code)]
        struct Keys {
            customer_nr: u64,
            postcode: String,
        }
        #[derive(Deserialize, JsonSchema)]
        #[allow(dead_code)]
        struct WithName {
            customer_nr: u64,
            postcode: String,
            name: String,
            score: Option<f64>,
        }
        let table = |projection: Projection| {
            TableDef::new("customers", KeyAttr::n("customer_nr"))
                .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(projection))
        };
        let errors = |schema: TableSchema| -> Vec<String> {
            schema.validate().err().map(|e| e.0.iter().map(ToString::to_string).collect()).unwrap_or_default()
        };
        let keys_only = || TableSchema::new::<Customer>(table(Projection::KeysOnly));
        assert_eq!(errors(keys_only().projection::<Keys>("by_postcode")), Vec::<String>::new());
        assert_eq!(
            errors(keys_only().projection::<WithName>("by_postcode")),
            [
                "table customers: index by_postcode: field name of WithName: the index never returns it: the index is KEYS_ONLY and it is no key",
                "table customers: index by_postcode: field score of WithName: the index never returns it: the index is KEYS_ONLY and it is no key",
            ]
        );
        let include = TableSchema::new::<Customer>(table(Projection::Include(vec!["name".into(), "score".into()])));
        assert_eq!(errors(include.projection::<WithName>("by_postcode")), Vec::<String>::new());
        assert_eq!(
            errors(keys_only().projection::<Keys>("by_name")),
            ["table customers: Keys is declared as what index by_name returns, but the table has no index by_name"]
        );
        // A non-key field the item type may lack must be optional where it is read.
        #[derive(Deserialize, JsonSchema)]
        #[allow(dead_code)]
        struct Strict {
            customer_nr: u64,
            score: f64,
        }
        #[derive(Deserialize, JsonSchema)]
        #[allow(dead_code)]
        struct Loose {
            customer_nr: u64,
            score: Option<f64>,
            name: Option<String>,
        }
        let def = TableDef::new("customers", KeyAttr::n("customer_nr"))
            .global_index(GlobalIndex::new("by_score", KeyAttr::n("customer_nr")).projection(Projection::All));
        #[derive(Deserialize, Serialize, JsonSchema)]
        #[allow(dead_code)]
        struct Item {
            customer_nr: u64,
            name: String,
            score: Option<f64>,
        }
        let all = || TableSchema::new::<Item>(def.clone());
        assert_eq!(
            errors(all().projection::<Strict>("by_score")),
            [
                "table customers: index by_score: field score of Strict: it is required here but optional in the item type, so an item may come back without it (make it an Option)"
            ]
        );
        assert_eq!(errors(all().projection::<Loose>("by_score")), Vec::<String>::new());
    }
}
