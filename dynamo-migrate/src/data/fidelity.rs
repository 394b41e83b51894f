//! Keeping items exact: keys for messages, canonical numbers, canonical DynamoDB JSON.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Value, json};

use super::Item;

/// An item's key as `{name: value, …}`, for messages.
pub fn key_text(item: &Item, keys: &[String]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            let value = match item.get(k) {
                Some(AttributeValue::S(s)) => format!("{s:?}"),
                Some(AttributeValue::N(n)) => n.clone(),
                Some(AttributeValue::B(b)) => format!("<{} bytes>", b.as_ref().len()),
                Some(other) => format!("{other:?}"),
                None => "absent".to_owned(),
            };
            format!("{k}: {value}")
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The key attributes of an item, copied.
pub(crate) fn key_of(item: &Item, keys: &[String]) -> Item {
    keys.iter().filter_map(|k| Some((k.clone(), item.get(k)?.clone()))).collect()
}

pub use dynamo_model::canonical_number;

/// An attribute value in DynamoDB's JSON form (`{"S": "…"}`), with set members and map keys
/// sorted, so that equal items print equal. Used for dead-letter files and content hashes.
pub fn canonical_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": aws_smithy_types::base64::encode(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::Ss(ss) => json!({ "SS": sorted(ss.clone()) }),
        AttributeValue::Ns(ns) => json!({ "NS": sorted(ns.clone()) }),
        AttributeValue::Bs(bs) => {
            json!({ "BS": sorted(bs.iter().map(|b| aws_smithy_types::base64::encode(b.as_ref())).collect()) })
        }
        AttributeValue::L(list) => json!({ "L": list.iter().map(canonical_json).collect::<Vec<_>>() }),
        AttributeValue::M(map) => json!({ "M": canonical_item(map) }),
        _ => json!({ "UNKNOWN": format!("{value:?}") }),
    }
}

/// A whole item in canonical DynamoDB JSON (keys sorted).
pub fn canonical_item(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), canonical_json(v))).collect::<Map<_, _>>())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_numbers_have_one_canonical_form() {
        for (a, b) in [("1.50", "1.5"), ("15E-1", "1.5"), ("0.00", "0"), ("-0", "0"), ("100", "1E2"), ("+7", "7")] {
            assert_eq!(canonical_number(a), canonical_number(b), "{a} vs {b}");
        }
        assert_ne!(canonical_number("1.5"), canonical_number("1.05"));
        assert_ne!(canonical_number("-1"), canonical_number("1"));
        assert_eq!(canonical_number("abc"), None);
        assert_eq!(canonical_number(""), None);
    }
}
