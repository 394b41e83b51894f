//! Typed items to and from DynamoDB's attribute values, exactly, for applications.
//!
//! An application reads and writes the schema crate's item types without the engine. Plain
//! `serde_dynamo` calls would get two things wrong: [`Number`](crate::Number) and
//! [`NumberSet`](crate::NumberSet) serialise as marker maps (serde has no way to carry a number
//! as text), and a read forgets what the type does not model (a set read into a list, a number's
//! digits beyond an `f64`). [`to_item`] writes the markers as DynamoDB numbers; [`from_item`]
//! hands numbers an `f64` would round to the type as text, and refuses an item whose value,
//! written back, would differ from it, naming the attributes. These are the rules the engine's
//! typed data steps follow, so what a migration writes the application reads, and back.
//!
//! The items are `serde_dynamo`'s, which do not depend on the AWS SDK; with `serde_dynamo`'s
//! `aws-sdk-dynamodb+1` feature they convert to and from the SDK's with `From`/`Into`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_dynamo::{AttributeValue, Item};

use crate::exact::{NUMBER_MARKER, NUMBER_SET_MARKER};

/// A typed value that is no DynamoDB item, or an item that its type does not read exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// The value does not serialise as an item (not a struct or map, or a map key that is not a
    /// string).
    #[error("{type_name} cannot be written as a DynamoDB item: {reason}")]
    Write {
        /// The Rust type's name, without its module path.
        type_name: &'static str,
        /// serde_dynamo's message.
        reason: String,
    },
    /// serde could not read the item into the type.
    #[error("the item cannot be read into {type_name}: {reason}")]
    Read {
        /// The Rust type's name, without its module path.
        type_name: &'static str,
        /// serde_dynamo's message (a missing field, an attribute of another type, ...).
        reason: String,
    },
    /// The type reads the item, but written back it would differ in these attributes.
    #[error(
        "the item does not read exactly into {type_name}: written back, attribute(s) {} would change (hold sets with serde_dynamo's string_set/number_set/binary_set, binary with serde_bytes, numbers of more than 15 digits as dynamo_model::Number)",
        attributes.join(", ")
    )]
    Inexact {
        /// The Rust type's name, without its module path.
        type_name: &'static str,
        /// The top-level attributes that would change, sorted by name.
        attributes: Vec<String>,
    },
}

/// Serialises `value` into an item, with [`Number`](crate::Number) and
/// [`NumberSet`](crate::NumberSet) fields written as DynamoDB numbers (`N` and `NS`), at any
/// depth.
///
/// Fails with [`ItemError::Write`] when `value` is not a struct or map with string keys.
pub fn to_item<T: Serialize>(value: &T) -> Result<Item, ItemError> {
    let mut item: Item = serde_dynamo::to_item(value)
        .map_err(|e| ItemError::Write { type_name: short_type_name::<T>(), reason: e.to_string() })?;
    item.values_mut().for_each(unmark);
    Ok(item)
}

/// Reads `item` into `T` exactly, or refuses it: every attribute `T` holds must come back, when
/// the value is written again, as the same DynamoDB type and value (numbers compared as numbers,
/// sets as sets, at any depth). Attributes `T` has no field for are left out, as serde does.
///
/// A number that an `f64` would round reaches `T` as text, which a [`Number`](crate::Number)
/// field keeps exactly; a field of another type that would round it makes the read fail with
/// [`ItemError::Inexact`]. An item `T` cannot read at all fails with [`ItemError::Read`].
pub fn from_item<T: DeserializeOwned + Serialize>(item: Item) -> Result<T, ItemError> {
    let type_name = short_type_name::<T>();
    let first = match attempt::<T>(&item, item.clone()) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    // Numbers that an f64 would round and no integer type holds are handed over a second time
    // as text, which `Number` fields read exactly; other types fail on them.
    if item.values().any(needs_text) {
        let marked: Item =
            item.iter().map(|(k, v)| (k.clone(), mark(v))).collect::<std::collections::HashMap<_, _>>().into();
        if let Ok(value) = attempt::<T>(&item, marked) {
            return Ok(value);
        }
    }
    Err(match first {
        Attempt::Unreadable(reason) => ItemError::Read { type_name, reason },
        Attempt::Differs(attributes) => ItemError::Inexact { type_name, attributes },
    })
}

/// Why one read failed.
enum Attempt {
    Unreadable(String),
    /// The attributes that would change, sorted.
    Differs(Vec<String>),
}

fn attempt<T: DeserializeOwned + Serialize>(original: &Item, input: Item) -> Result<T, Attempt> {
    let value: T = serde_dynamo::from_item(input).map_err(|e| Attempt::Unreadable(e.to_string()))?;
    let back = to_item(&value).map_err(|e| Attempt::Unreadable(e.to_string()))?;
    let mut differs: Vec<String> = original
        .iter()
        .filter(|(name, stored)| back.get(*name).is_some_and(|given| !holds(stored, given)))
        .map(|(name, _)| name.clone())
        .collect();
    if differs.is_empty() {
        return Ok(value);
    }
    differs.sort();
    Err(Attempt::Differs(differs))
}

fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    // The last path segment of the type, generic arguments aside.
    let base = name.split('<').next().unwrap_or(name);
    let start = base.rfind("::").map_or(0, |i| i + 2);
    &name[start..]
}

/// Whether what the type gives back holds what was stored: the same value, where a map given
/// back may have more attributes (those the type fills in by default), at any depth.
fn holds(stored: &AttributeValue, back: &AttributeValue) -> bool {
    use AttributeValue as A;
    match (stored, back) {
        (A::L(a), A::L(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| holds(x, y)),
        (A::M(a), A::M(b)) => a.iter().all(|(k, x)| b.get(k).is_some_and(|y| holds(x, y))),
        (A::N(x), A::N(y)) => x == y || canonical_number(x) == canonical_number(y),
        (A::Ns(x), A::Ns(y)) => numbers(x) == numbers(y),
        (A::Ss(x), A::Ss(y)) => sorted(x) == sorted(y),
        (A::Bs(x), A::Bs(y)) => sorted(x) == sorted(y),
        _ => stored == back,
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn numbers(v: &[String]) -> Vec<Option<(bool, String, i64)>> {
    let mut v: Vec<_> = v.iter().map(|n| canonical_number(n)).collect();
    v.sort();
    v.dedup();
    v
}

/// A number in canonical form (sign, significant digits, exponent), so that `1.50`, `1.5`,
/// `+1.5` and `15E-1` compare equal; `None` for text that is not a number. The engine compares
/// stored and written numbers with it too.
///
/// The tuple is `(negative, digits, exponent)`: the value is `digits × 10^exponent`, negated when
/// `negative` is true, with neither leading nor trailing zeros in `digits`; zero is
/// `(false, "0", 0)` whatever its sign.
///
/// ```
/// # use dynamo_model::canonical_number;
/// assert_eq!(canonical_number("1.50"), Some((false, "15".to_owned(), -1)));
/// assert_eq!(canonical_number("15E-1"), canonical_number("+1.5"));
/// assert_eq!(canonical_number("-0.0"), Some((false, "0".to_owned(), 0)));
/// assert_eq!(canonical_number("1,5"), None);
/// ```
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
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some((false, "0".to_owned(), 0));
    }
    let significant = trimmed.trim_end_matches('0');
    Some((negative, significant.to_owned(), exponent + (trimmed.len() - significant.len()) as i64))
}

/// True when some number in the value must reach the type as text to be read exactly.
fn needs_text(value: &AttributeValue) -> bool {
    match value {
        AttributeValue::N(n) => number_needs_text(n),
        AttributeValue::Ns(ns) => ns.iter().any(|n| number_needs_text(n)),
        AttributeValue::L(list) => list.iter().any(needs_text),
        AttributeValue::M(map) => map.values().any(needs_text),
        _ => false,
    }
}

/// True when an f64 would round the number and it is not an integer that serde_dynamo hands over
/// as an `i64` or `u64`.
fn number_needs_text(text: &str) -> bool {
    let inexact = match text.parse::<f64>() {
        Ok(f) if f.is_finite() => canonical_number(&f.to_string()) != canonical_number(text),
        _ => true,
    };
    inexact && text.parse::<i64>().is_err() && text.parse::<u64>().is_err()
}

/// The value with every number that needs text replaced by the marker map that `Number` (or, for
/// a set, `NumberSet`) reads exactly.
fn mark(value: &AttributeValue) -> AttributeValue {
    use AttributeValue as A;
    match value {
        A::N(n) if number_needs_text(n) => A::M([(NUMBER_MARKER.to_owned(), A::S(n.clone()))].into()),
        A::Ns(ns) if ns.iter().any(|n| number_needs_text(n)) => {
            A::M([(NUMBER_SET_MARKER.to_owned(), A::L(ns.iter().map(|n| A::S(n.clone())).collect()))].into())
        }
        A::L(list) => A::L(list.iter().map(mark).collect()),
        A::M(map) => A::M(map.iter().map(|(k, v)| (k.clone(), mark(v))).collect()),
        other => other.clone(),
    }
}

/// Turns the marker maps of `Number` and `NumberSet` into DynamoDB numbers, at any depth.
fn unmark(value: &mut AttributeValue) {
    use AttributeValue as A;
    let replacement = match value {
        A::M(map) if map.len() == 1 && map.contains_key(NUMBER_MARKER) => match map.remove(NUMBER_MARKER) {
            Some(A::S(text)) => Some(A::N(text)),
            other => other,
        },
        A::M(map) if map.len() == 1 && map.contains_key(NUMBER_SET_MARKER) => match map.remove(NUMBER_SET_MARKER) {
            Some(A::L(list)) => Some(A::Ns(
                list.into_iter()
                    .filter_map(|v| match v {
                        A::S(text) => Some(text),
                        _ => None,
                    })
                    .collect(),
            )),
            other => other,
        },
        A::M(map) => {
            map.values_mut().for_each(unmark);
            None
        }
        A::L(list) => {
            list.iter_mut().for_each(unmark);
            None
        }
        _ => None,
    };
    if let Some(replacement) = replacement {
        *value = replacement;
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::{Number, NumberSet};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Account {
        id: String,
        balance: Number,
        limits: NumberSet,
        #[serde(with = "serde_dynamo::string_set")]
        tags: Vec<String>,
        visits: u64,
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::HashMap<_, _>>().into()
    }

    #[test]
    fn exact_numbers_and_sets_go_both_ways() {
        let stored = item(&[
            ("id", AttributeValue::S("a1".into())),
            ("balance", AttributeValue::N("12345678901234567890.123456789".into())),
            ("limits", AttributeValue::Ns(vec!["1.5".into(), "99999999999999999999999".into()])),
            ("tags", AttributeValue::Ss(vec!["gold".into(), "new".into()])),
            ("visits", AttributeValue::N("18446744073709551615".into())),
            // An attribute the type does not hold is left out.
            ("note", AttributeValue::S("kept by whoever wrote it".into())),
        ]);
        let account: Account = from_item(stored.clone()).unwrap();
        assert_eq!(account.balance.as_str(), "12345678901234567890.123456789");
        assert_eq!(account.visits, u64::MAX);
        let mut back = to_item(&account).unwrap();
        assert_eq!(back.remove("balance"), stored.get("balance").cloned());
        assert_eq!(back.remove("limits"), stored.get("limits").cloned());
        assert_eq!(back.remove("tags"), stored.get("tags").cloned());
        assert!(!back.contains_key("note"));
    }

    #[test]
    fn an_item_its_type_would_change_is_refused_naming_the_attributes() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Loose {
            id: String,
            tags: Vec<String>,
            weight: f64,
        }
        let stored = item(&[
            ("id", AttributeValue::S("a1".into())),
            ("tags", AttributeValue::Ss(vec!["gold".into()])),
            ("weight", AttributeValue::N("16777217.000000000001".into())),
        ]);
        let error = from_item::<Loose>(stored).unwrap_err();
        assert_eq!(error, ItemError::Inexact { type_name: "Loose", attributes: vec!["tags".into(), "weight".into()] });
        assert!(error.to_string().starts_with(
            "the item does not read exactly into Loose: written back, attribute(s) tags, weight would change"
        ));
        let unreadable = item(&[("id", AttributeValue::N("1".into()))]);
        assert!(matches!(from_item::<Loose>(unreadable), Err(ItemError::Read { type_name: "Loose", .. })));
    }
}
