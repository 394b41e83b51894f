//! Keeping items exact: keys for messages, canonical numbers, and the check that a typed
//! transform's input type holds every number it reads without rounding.

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

/// A number in canonical form (sign, significant digits, exponent), so that `1.50`, `1.5` and
/// `15E-1` compare equal; `None` for text that is not a number.
pub fn canonical_number(text: &str) -> Option<(bool, String, i64)> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let exponent = exponent - frac.len() as i64;
    let trimmed_start = digits.trim_start_matches('0');
    if trimmed_start.is_empty() {
        return Some((false, "0".to_owned(), 0));
    }
    let significant = trimmed_start.trim_end_matches('0');
    let exponent = exponent + (trimmed_start.len() - significant.len()) as i64;
    Some((negative, significant.to_owned(), exponent))
}

/// True when the number's text would change if read into an `f64` and written back: the only
/// Rust number type that rounds instead of failing. Items without such numbers need no check.
fn inexact_as_f64(text: &str) -> bool {
    // Fast path, without allocating: a decimal of at most 15 significant digits and a modest
    // exponent always comes back from an f64 unchanged (15 is f64's DIG). That is nearly every
    // number real items hold, and this runs for every number of every item a transform reads.
    let bytes = text.as_bytes();
    let mantissa_end = bytes.iter().position(|b| matches!(b, b'e' | b'E')).unwrap_or(bytes.len());
    if mantissa_end == bytes.len() && bytes.len() <= 40 {
        let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
        let leading_zeros =
            bytes.iter().take_while(|b| matches!(b, b'0' | b'.' | b'-' | b'+')).filter(|b| **b == b'0').count();
        if digits - leading_zeros <= 15 && bytes.iter().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+')) {
            return false;
        }
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => canonical_number(&f.to_string()) != canonical_number(text),
        _ => true,
    }
}

fn has_inexact_number(value: &AttributeValue) -> bool {
    match value {
        AttributeValue::N(n) => inexact_as_f64(n),
        AttributeValue::Ns(ns) => ns.iter().any(|n| inexact_as_f64(n)),
        AttributeValue::L(list) => list.iter().any(has_inexact_number),
        AttributeValue::M(map) => map.values().any(has_inexact_number),
        _ => false,
    }
}

/// True when some number of the item cannot be held exactly by an `f64`; only such items need
/// [`check_numbers_kept`].
pub(crate) fn needs_number_check(item: &Item) -> bool {
    item.values().any(has_inexact_number)
}

/// Compares every number of `original` with the same attribute after a round trip through the
/// step's input type; an attribute the type does not have is not compared. The error names the
/// attribute path.
pub(crate) fn check_numbers_kept(original: &Item, round_trip: &Item) -> Result<(), String> {
    for (name, value) in original {
        if let Some(after) = round_trip.get(name) {
            compare(name, value, after)?;
        }
    }
    Ok(())
}

fn compare(path: &str, before: &AttributeValue, after: &AttributeValue) -> Result<(), String> {
    match (before, after) {
        (AttributeValue::N(a), AttributeValue::N(b)) if canonical_number(a) != canonical_number(b) => Err(format!(
            "attribute {path}: the number {a} cannot be held exactly by the step's input type (it reads as {b}); use a wider type, such as a decimal or a string"
        )),
        (AttributeValue::Ns(a), AttributeValue::Ns(b)) => {
            let mut a: Vec<_> = a.iter().map(|n| canonical_number(n)).collect();
            let mut b: Vec<_> = b.iter().map(|n| canonical_number(n)).collect();
            a.sort();
            b.sort();
            if a != b {
                return Err(format!(
                    "attribute {path}: a number of the set cannot be held exactly by the step's input type"
                ));
            }
            Ok(())
        }
        (AttributeValue::L(a), AttributeValue::L(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(&format!("{path}[{i}]"), x, y)?;
            }
            Ok(())
        }
        (AttributeValue::M(a), AttributeValue::M(b)) => {
            for (k, x) in a {
                if let Some(y) = b.get(k) {
                    compare(&format!("{path}.{k}"), x, y)?;
                }
            }
            Ok(())
        }
        // A number read into a string (or any other change of type) keeps its digits.
        (AttributeValue::N(_), AttributeValue::S(_)) => Ok(()),
        _ => Ok(()),
    }
}

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

    #[test]
    fn only_numbers_an_f64_would_round_need_a_check() {
        assert!(!inexact_as_f64("19.99"));
        assert!(!inexact_as_f64("42"));
        assert!(!inexact_as_f64("-0.000123456789012345"));
        assert!(!inexact_as_f64("123456789012345"));
        assert!(inexact_as_f64("1234567890123456789"));
        assert!(inexact_as_f64("0.1234567890123456789"));
        assert!(inexact_as_f64("12345678901234567890123456789012345678"));
        assert!(!inexact_as_f64("1E-130"), "its shortest f64 form is the same number");
        assert!(inexact_as_f64("9.9999999999999999999999999999999999999E+125"));
    }

    #[test]
    fn a_rounded_number_is_named_by_its_path() {
        let original: Item = [(
            "price".to_owned(),
            AttributeValue::M([("net".to_owned(), AttributeValue::N("0.12345678901234567890123".into()))].into()),
        )]
        .into();
        let rounded: Item = [(
            "price".to_owned(),
            AttributeValue::M([("net".to_owned(), AttributeValue::N("0.12345678901234568".into()))].into()),
        )]
        .into();
        let error = check_numbers_kept(&original, &rounded).unwrap_err();
        assert!(
            error.starts_with("attribute price.net: the number 0.12345678901234567890123 cannot be held exactly"),
            "{error}"
        );
        assert_eq!(check_numbers_kept(&original, &original), Ok(()));
        assert_eq!(check_numbers_kept(&original, &Item::new()), Ok(()), "attributes the type lacks are not compared");
    }
}
