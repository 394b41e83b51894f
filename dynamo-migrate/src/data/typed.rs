//! Typed reads that are exact or refused, and typed writes that keep DynamoDB's types.
//!
//! A typed data step reads each item into the migration's Rust type. serde forgets what it does
//! not model: attributes the type has no field for, the difference between a set and a list, a
//! number's digits beyond what `f32`/`f64` hold. So before the transform sees a value, the value
//! is serialised back and compared with the item read, attribute by attribute: every attribute
//! the type holds must come back as the same DynamoDB type and value (numbers compared as
//! numbers, sets as sets, at any depth). Attributes the type does not hold at all are reported
//! as *not held*: in place they are simply left alone (the engine writes only what changed);
//! into another table they would be lost, which a step must ask for explicitly.
//!
//! Numbers an `f64` would round (and no `i64` or `u64` holds) reach `dynamo_model::Number` and
//! `NumberSet` fields as marker maps (see `dynamo_model::exact`); values serialised by the engine
//! turn such maps back into DynamoDB numbers.
//!
//! Reading an item that fits is one deserialisation and one comparison, and builds no message:
//! this runs for every item of every typed pass. A refused item is explained by `diagnosis`,
//! which names every attribute that fails.

use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_model::{NUMBER_MARKER, NUMBER_SET_MARKER};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Item;
use super::fidelity::canonical_number;

/// A value read exactly, with what the type made of the item.
#[derive(Debug)]
pub(crate) struct Read<T> {
    pub value: T,
    /// The value serialised back: equal to the item on every attribute the type holds, plus any
    /// the type fills in by default (an `Option` written as `NULL`, a `#[serde(default)]`).
    pub seen: Item,
    /// Attributes of the item that the type does not hold (sorted).
    pub not_held: Vec<String>,
}

/// Serialises a value into an item, turning the marker maps of exact numbers into numbers.
pub fn to_item<T: Serialize>(value: &T) -> Result<Item, String> {
    let mut item: Item = serde_dynamo::to_item(value).map_err(|e| e.to_string())?;
    for value in item.values_mut() {
        unmark(value);
    }
    Ok(item)
}

/// Turns the marker maps of exact numbers in an item serialised by plain serde_dynamo (fixtures)
/// into DynamoDB numbers.
pub(crate) fn unmark_item(item: &mut Item) {
    item.values_mut().for_each(unmark);
}

/// Reads an item into `T`, exactly or not at all: the error names every attribute that fails,
/// with its path, its DynamoDB type there, what would change, and what type would hold it.
pub fn from_item<T: DeserializeOwned + Serialize>(item: &Item) -> Result<T, String> {
    read_exact(item).map(|read| read.value)
}

/// Reads an item into `T` and compares the value, serialised back, with the item.
pub(crate) fn read_exact<T: DeserializeOwned + Serialize>(item: &Item) -> Result<Read<T>, String> {
    if let Some(read) = attempt::<T>(item, item.clone()) {
        return Ok(read);
    }
    // Numbers that an f64 would round and no integer type holds are handed to the type a second
    // time as text, which `Number` fields read exactly; other types fail on them.
    let needs_text = item.values().any(needs_text);
    if needs_text && let Some(read) = attempt::<T>(item, marked(item)) {
        return Ok(read);
    }
    // Only a refused item pays for finding out why, however many reads that takes.
    Err(diagnosis::explain::<T>(item, needs_text.then(|| marked(item)).as_ref()))
}

/// The item with the numbers that need text handed over as text.
fn marked(item: &Item) -> Item {
    item.iter().map(|(k, v)| (k.clone(), mark(v))).collect()
}

/// One read of `input` into `T`, and the value serialised back compared with `original`; `None`
/// when either fails. This is the fast path of every typed step: it builds no message.
fn attempt<T: DeserializeOwned + Serialize>(original: &Item, input: Item) -> Option<Read<T>> {
    let value: T = serde_dynamo::from_item(input).ok()?;
    let seen = to_item(&value).ok()?;
    let mut not_held = Vec::new();
    for (name, stored) in original {
        match seen.get(name) {
            None => not_held.push(name.clone()),
            Some(back) if holds(stored, back) => {}
            Some(_) => return None,
        }
    }
    not_held.sort();
    Some(Read { value, seen, not_held })
}

/// The attribute names a struct type can hold (its serde field names, renames applied), or
/// `None` for types that are not plain structs (maps, flattened structs). A typed write in place is
/// also conditional on those the item did not have staying absent: a value the function derived
/// from an attribute's absence is stale once the application adds it.
pub(crate) fn field_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    struct Probe;
    #[derive(Debug)]
    struct ProbeError(Option<&'static [&'static str]>);
    impl std::fmt::Display for ProbeError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("not a struct")
        }
    }
    impl std::error::Error for ProbeError {}
    impl serde::de::Error for ProbeError {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            ProbeError(None)
        }
    }
    impl<'de> serde::Deserializer<'de> for Probe {
        type Error = ProbeError;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
            Err(ProbeError(None))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, ProbeError> {
            Err(ProbeError(Some(fields)))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(ProbeError(fields)) => fields,
        Ok(_) => None,
    }
}

/// Whether two attribute values are the same to DynamoDB: the same type, numbers equal as
/// numbers, sets equal as sets, lists and maps equal member by member.
pub(crate) fn same_value(a: &AttributeValue, b: &AttributeValue) -> bool {
    use AttributeValue as A;
    match (a, b) {
        (A::N(x), A::N(y)) => x == y || canonical_number(x) == canonical_number(y),
        // Equal as they are (the common case: a set read and written back in its order), or
        // equal once sorted and, for numbers, made canonical.
        (A::Ns(x), A::Ns(y)) => x == y || number_set(x) == number_set(y),
        (A::Ss(x), A::Ss(y)) => x == y || sorted(x) == sorted(y),
        (A::Bs(x), A::Bs(y)) => {
            x == y
                || sorted(&x.iter().map(|b| b.as_ref()).collect::<Vec<_>>())
                    == sorted(&y.iter().map(|b| b.as_ref()).collect::<Vec<_>>())
        }
        (A::L(x), A::L(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y)),
        (A::M(x), A::M(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w))),
        _ => a == b,
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn number_set(v: &[String]) -> Vec<Option<(bool, String, i64)>> {
    let mut v: Vec<_> = v.iter().map(|n| canonical_number(n)).collect();
    v.sort();
    v.dedup();
    v
}

/// Whether what the type gives back holds what was stored: the same value, where a map given
/// back may have more attributes (those the type fills in by default), at any depth.
/// `diagnosis::differences` says what differs where this is false.
fn holds(stored: &AttributeValue, back: &AttributeValue) -> bool {
    use AttributeValue as A;
    match (stored, back) {
        (A::L(a), A::L(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| holds(x, y)),
        (A::M(a), A::M(b)) => a.iter().all(|(k, x)| b.get(k).is_some_and(|y| holds(x, y))),
        _ => same_value(stored, back),
    }
}

/// A DynamoDB type, in words.
pub(crate) fn type_name(value: &AttributeValue) -> &'static str {
    use AttributeValue as A;
    match value {
        A::S(_) => "a string (S)",
        A::N(_) => "a number (N)",
        A::B(_) => "binary (B)",
        A::Bool(_) => "a boolean (BOOL)",
        A::Null(_) => "NULL",
        A::Ss(_) => "a string set (SS)",
        A::Ns(_) => "a number set (NS)",
        A::Bs(_) => "a binary set (BS)",
        A::L(_) => "a list (L)",
        A::M(_) => "a map (M)",
        _ => "an unknown type",
    }
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
/// as an `i64` or `u64`: those every integer field and `Number` read exactly as they are, so that
/// a `u64` field and a `Number` field can read long numbers from the same item.
fn number_needs_text(text: &str) -> bool {
    inexact_as_f64(text) && text.parse::<i64>().is_err() && text.parse::<u64>().is_err()
}

/// True when the number's text would change if read into an `f64` and written back.
pub(crate) fn inexact_as_f64(text: &str) -> bool {
    // Fast path, without allocating: a plain decimal of at most 15 significant digits always
    // comes back from an f64 unchanged (15 is f64's DIG). That is nearly every number real
    // items hold, and this runs for every number of every item a typed step reads.
    let bytes = text.as_bytes();
    if bytes.len() <= 40 && bytes.iter().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+')) {
        let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
        let leading_zeros =
            bytes.iter().take_while(|b| matches!(b, b'0' | b'.' | b'-' | b'+')).filter(|b| **b == b'0').count();
        if digits - leading_zeros <= 15 {
            return false;
        }
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => canonical_number(&f.to_string()) != canonical_number(text),
        _ => true,
    }
}

/// The value with every number that needs text replaced by the marker map that
/// `dynamo_model::Number` (or, for a set, `NumberSet`) reads exactly.
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

/// Turns the marker maps of `Number` and `NumberSet` back into DynamoDB numbers, at any depth.
fn unmark(value: &mut AttributeValue) {
    use AttributeValue as A;
    let replacement = match value {
        A::M(map) if map.len() == 1 => match map.iter_mut().next() {
            Some((key, A::S(text))) if key == NUMBER_MARKER => Some(A::N(std::mem::take(text))),
            Some((key, A::L(list))) if key == NUMBER_SET_MARKER => Some(A::Ns(
                list.iter_mut()
                    .filter_map(|v| match v {
                        A::S(text) => Some(std::mem::take(text)),
                        _ => None,
                    })
                    .collect(),
            )),
            Some((_, inner)) => {
                unmark(inner);
                None
            }
            None => None,
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

mod diagnosis;

#[cfg(test)]
mod tests;
