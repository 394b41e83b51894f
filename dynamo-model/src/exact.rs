//! Types that hold DynamoDB numbers exactly, in typed items.
//!
//! DynamoDB numbers have up to 38 significant digits; Rust's `f64` holds about 15, and serde
//! passes every number through `i64`, `u64` or `f64`. [`Number`] keeps a number's decimal text,
//! and [`NumberSet`] a number set of them, so that a typed migration can read and write such
//! numbers without rounding. (For string and binary sets and binary values, serde_dynamo's
//! `string_set` and `binary_set` codecs and `serde_bytes` already keep the DynamoDB type.)
//!
//! serde has no way to carry a number as text, so both types serialise as a one-entry map whose
//! key is a marker ([`NUMBER_MARKER`], [`NUMBER_SET_MARKER`]); this crate's item conversion
//! ([`to_item`](crate::to_item), [`from_item`](crate::from_item)), which the engine's typed data
//! steps follow, turns such maps into DynamoDB numbers, and hands these types numbers that an
//! `f64` would round in the same form. Plain `serde_dynamo` calls do not: convert items that hold
//! these types with `to_item` and `from_item`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The key of the map a [`Number`] serialises as; the value is the number's text.
pub const NUMBER_MARKER: &str = "\u{037e}dynamo-migrate:N\u{037e}";
/// The key of the map a [`NumberSet`] serialises as; the value is a list of the numbers' texts.
pub const NUMBER_SET_MARKER: &str = "\u{037e}dynamo-migrate:NS\u{037e}";

/// A DynamoDB number, held exactly as its decimal text (for example `"12345678901234567890.5"`).
///
/// Use it for a field whose numbers may have more digits than an `f64` holds (DynamoDB allows 38
/// significant digits). Make one by parsing text (`"1.5".parse()`, which refuses what is not a
/// number with [`NotANumber`]) or from any Rust integer. Equality and hashing compare the text,
/// so `1.5` and `1.50` are different `Number`s; [`canonical_number`](crate::canonical_number)
/// compares values.
///
/// A `Number` only reaches DynamoDB as a number through [`to_item`](crate::to_item) and
/// [`from_item`](crate::from_item) (plain serde_dynamo writes it as a marker map), and its
/// JSON Schema is `number`, so it may be a key attribute of type [`N`](crate::KeyType::N).
///
/// ```
/// # use dynamo_model::Number;
/// let balance: Number = "12345678901234567890.123456789".parse().unwrap();
/// assert_eq!(balance.as_str(), "12345678901234567890.123456789");
/// assert_eq!(Number::from(42u8).to_string(), "42");
/// assert!("12,5".parse::<Number>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number(String);

/// Text that is not a number DynamoDB can store, refused by [`Number`]'s `FromStr`; it holds the
/// text.
///
/// Only the form is checked (digits with an optional sign, decimal point and exponent), not
/// DynamoDB's range or its 38 significant digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a number DynamoDB can store (digits, an optional sign, point and exponent)")]
pub struct NotANumber(pub String);

impl Number {
    /// The number's text, as read or as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, moved out.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for Number {
    type Err = NotANumber;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let mantissa = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits_ok =
            !(int.is_empty() && frac.is_empty()) && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
        let exponent_ok = exponent.is_none_or(|e| e.parse::<i32>().is_ok());
        if digits_ok && exponent_ok { Ok(Number(text.to_owned())) } else { Err(NotANumber(text.to_owned())) }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! number_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Number {
            fn from(n: $t) -> Self {
                Number(n.to_string())
            }
        }
    )*};
}
number_from!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(NUMBER_MARKER, &self.0)?;
        map.end()
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Number, E> {
        Ok(Number::from(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Number, E> {
        Ok(Number::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Number, E> {
        // Only reached for numbers an f64 holds exactly: the engine hands others over as text.
        if n.is_finite() { Ok(Number(n.to_string())) } else { Err(E::custom(format!("{n} is not a DynamoDB number"))) }
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Number, E> {
        text.parse().map_err(E::custom)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Number, A::Error> {
        match map.next_entry::<String, String>()? {
            Some((key, text)) if key == NUMBER_MARKER => text.parse().map_err(de::Error::custom),
            _ => Err(de::Error::custom("expected a number")),
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor)
    }
}

impl schemars::JsonSchema for Number {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Number".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "number" })
    }
}

/// A DynamoDB number set (`NS`) whose members are held exactly.
///
/// Written through [`to_item`](crate::to_item) as an `NS` of the members' texts, in the order
/// held; this type does not remove duplicates, nor does it refuse to be empty, and DynamoDB
/// refuses both an empty set and one with the same number twice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumberSet(pub Vec<Number>);

impl Serialize for NumberSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<&str> = self.0.iter().map(Number::as_str).collect();
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(NUMBER_SET_MARKER, &texts)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for NumberSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetVisitor;
        impl<'de> Visitor<'de> for SetVisitor {
            type Value = NumberSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number set")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NumberSet, A::Error> {
                let mut numbers = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(n) = seq.next_element::<Number>()? {
                    numbers.push(n);
                }
                Ok(NumberSet(numbers))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NumberSet, A::Error> {
                match map.next_entry::<String, Vec<String>>()? {
                    Some((key, texts)) if key == NUMBER_SET_MARKER => texts
                        .iter()
                        .map(|t| t.parse().map_err(de::Error::custom))
                        .collect::<Result<_, _>>()
                        .map(NumberSet),
                    _ => Err(de::Error::custom("expected a number set")),
                }
            }
        }
        deserializer.deserialize_any(SetVisitor)
    }
}

impl schemars::JsonSchema for NumberSet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NumberSet".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "array", "items": { "type": "number" }, "uniqueItems": true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbers_parse() {
        for good in ["0", "-1", "+2.5", "1E-130", "9.9999999999999999999999999999999999999E+125", ".5", "5."] {
            assert!(good.parse::<Number>().is_ok(), "{good}");
        }
        for bad in ["", "abc", "1.2.3", "1e", "--1", "0x10", "1E5.5"] {
            assert!(bad.parse::<Number>().is_err(), "{bad}");
        }
    }
}
