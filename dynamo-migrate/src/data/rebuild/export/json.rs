//! DynamoDB JSON, the format of an export's lines (`{"Item":{"id":{"S":"a"}}}`) and of the files
//! ImportTable reads: read straight into the SDK's `AttributeValue`s and written straight from
//! them, with no `serde_json::Value` in between, since every exported item passes through here
//! twice. Numbers stay the text DynamoDB gave (38 digits are kept as they are), binary values are
//! base64, sets stay sets.
//!
//! An incremental export's line is a record instead:
//! `{"Metadata":{"WriteTimestampMicros":{"N":"…"}},"Keys":{…},"NewImage":{…},"OldImage":{…}}`,
//! with no `NewImage` when the item was deleted.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::data::Item;

/// One line of an export: a full export's item, or an incremental export's record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    Item(Item),
    Record(Record),
}

/// One record of an incremental export: the item's keys, its image after the write (none for a
/// delete) and before it (when the export asked for both), and when it was written.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Record {
    pub write_micros: Option<u64>,
    pub keys: Item,
    pub new_image: Option<Item>,
    pub old_image: Option<Item>,
}

/// Reads one line of an export.
pub(crate) fn read_line(line: &[u8]) -> Result<Line, String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let parsed = LineSeed.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    parsed
}

/// Writes `item` as one line of the files ImportTable reads (`{"Item":…}` and a newline).
pub(crate) fn write_item_line(out: &mut Vec<u8>, item: &Item) {
    out.extend_from_slice(b"{\"Item\":");
    serde_json::to_writer(&mut *out, &JsonItem(item)).expect("an item always serialises");
    out.extend_from_slice(b"}\n");
}

/// Writes `record` as one line of an incremental export, as DynamoDB writes it: the write time
/// in `Metadata`, the `Keys`, and the images there are (no `NewImage` for a delete).
#[cfg(any(test, feature = "cli"))]
pub(crate) fn write_record_line(out: &mut Vec<u8>, record: &Record) {
    out.push(b'{');
    if let Some(micros) = record.write_micros {
        out.extend_from_slice(format!("\"Metadata\":{{\"WriteTimestampMicros\":{{\"N\":\"{micros}\"}}}},").as_bytes());
    }
    out.extend_from_slice(b"\"Keys\":");
    serde_json::to_writer(&mut *out, &JsonItem(&record.keys)).expect("an item always serialises");
    for (name, image) in [("NewImage", &record.new_image), ("OldImage", &record.old_image)] {
        if let Some(image) = image {
            out.extend_from_slice(format!(",\"{name}\":").as_bytes());
            serde_json::to_writer(&mut *out, &JsonItem(image)).expect("an item always serialises");
        }
    }
    out.extend_from_slice(b"}\n");
}

/// An item as DynamoDB JSON, for `serde_json`.
pub(crate) struct JsonItem<'a>(pub &'a Item);

impl Serialize for JsonItem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &JsonValue(value))?;
        }
        map.end()
    }
}

struct JsonValue<'a>(&'a AttributeValue);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self.0 {
            AttributeValue::S(v) => map.serialize_entry("S", v)?,
            AttributeValue::N(v) => map.serialize_entry("N", v)?,
            AttributeValue::B(v) => map.serialize_entry("B", &aws_smithy_types::base64::encode(v.as_ref()))?,
            AttributeValue::Bool(v) => map.serialize_entry("BOOL", v)?,
            AttributeValue::Null(v) => map.serialize_entry("NULL", v)?,
            AttributeValue::Ss(v) => map.serialize_entry("SS", v)?,
            AttributeValue::Ns(v) => map.serialize_entry("NS", v)?,
            AttributeValue::Bs(v) => map.serialize_entry("BS", &Base64s(v))?,
            AttributeValue::L(v) => map.serialize_entry("L", &JsonList(v))?,
            AttributeValue::M(v) => map.serialize_entry("M", &JsonItem(v))?,
            other => {
                return Err(serde::ser::Error::custom(format!(
                    "a value of a type this version does not know: {other:?}"
                )));
            }
        }
        map.end()
    }
}

struct JsonList<'a>(&'a [AttributeValue]);

impl Serialize for JsonList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            seq.serialize_element(&JsonValue(value))?;
        }
        seq.end()
    }
}

struct Base64s<'a>(&'a [Blob]);

impl Serialize for Base64s<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for blob in self.0 {
            seq.serialize_element(&aws_smithy_types::base64::encode(blob.as_ref()))?;
        }
        seq.end()
    }
}

/// Reads a line: an object with `Item`, or with `Keys`/`NewImage`/`OldImage`/`Metadata`.
struct LineSeed;

impl<'de> DeserializeSeed<'de> for LineSeed {
    type Value = Result<Line, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(LineVisitor)
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Result<Line, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an export line: an object with Item, or with Keys and NewImage")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut item, mut record, mut is_record) = (None, Record::default(), false);
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match name.as_ref() {
                "Item" => item = Some(map.next_value_seed(ItemSeed)?),
                "Keys" => {
                    is_record = true;
                    record.keys = map.next_value_seed(ItemSeed)?;
                }
                "NewImage" => {
                    is_record = true;
                    record.new_image = Some(map.next_value_seed(ItemSeed)?);
                }
                "OldImage" => {
                    is_record = true;
                    record.old_image = Some(map.next_value_seed(ItemSeed)?);
                }
                "Metadata" => {
                    let metadata = map.next_value_seed(ItemSeed)?;
                    record.write_micros = match metadata.get("WriteTimestampMicros") {
                        Some(AttributeValue::N(n)) => n.parse().ok(),
                        _ => None,
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match (item, is_record) {
            (Some(item), false) => Ok(Line::Item(item)),
            (None, true) if !record.keys.is_empty() => Ok(Line::Record(record)),
            (None, true) => Err("an incremental export's record without Keys".to_owned()),
            (Some(_), true) => Err("a line with both Item and a record's Keys or images".to_owned()),
            (None, false) => Err("a line with neither Item nor Keys".to_owned()),
        })
    }
}

/// Reads `{"name": {"S": …}, …}` into an item.
struct ItemSeed;

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_map(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an item in DynamoDB JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut item = HashMap::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(name) = map.next_key::<String>()? {
            let value =
                map.next_value_seed(ValueSeed).map_err(|e| de::Error::custom(format!("attribute {name}: {e}")))?;
            item.insert(name, value);
        }
        Ok(item)
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = AttributeValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttributeValue, D::Error> {
        d.deserialize_map(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = AttributeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DynamoDB value: an object with one of S, N, B, BOOL, NULL, SS, NS, BS, L, M")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeValue, A::Error> {
        let Some(kind) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
            return Err(de::Error::custom("an empty object is no DynamoDB value"));
        };
        let blob = |text: &str| {
            aws_smithy_types::base64::decode(text)
                .map(Blob::new)
                .map_err(|e| de::Error::custom(format!("binary value that is not base64: {e}")))
        };
        let value = match kind.as_ref() {
            "S" => AttributeValue::S(map.next_value()?),
            "N" => AttributeValue::N(map.next_value()?),
            "B" => AttributeValue::B(blob(&map.next_value::<std::borrow::Cow<'de, str>>()?)?),
            "BOOL" => AttributeValue::Bool(map.next_value()?),
            "NULL" => AttributeValue::Null(map.next_value()?),
            "SS" => AttributeValue::Ss(map.next_value()?),
            "NS" => AttributeValue::Ns(map.next_value()?),
            "BS" => {
                let texts: Vec<std::borrow::Cow<'de, str>> = map.next_value()?;
                AttributeValue::Bs(texts.iter().map(|t| blob(t)).collect::<Result<_, _>>()?)
            }
            "L" => AttributeValue::L(map.next_value_seed(ListSeed)?),
            "M" => AttributeValue::M(map.next_value_seed(ItemSeed)?),
            other => return Err(de::Error::custom(format!("{other} is no DynamoDB type"))),
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a DynamoDB value with more than one type"));
        }
        Ok(value)
    }
}

struct ListSeed;

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<AttributeValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<AttributeValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of DynamoDB values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(value) = seq.next_element_seed(ValueSeed)? {
            list.push(value);
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_type() -> Item {
        let mut item: Item = HashMap::new();
        item.insert("s".into(), AttributeValue::S("ünïcode \"quoted\"\n".into()));
        item.insert("n".into(), AttributeValue::N("-1.2345678901234567890123456789012345678E-120".into()));
        item.insert("b".into(), AttributeValue::B(Blob::new(vec![0, 255, 10, 13])));
        item.insert("t".into(), AttributeValue::Bool(true));
        item.insert("z".into(), AttributeValue::Null(true));
        item.insert("ss".into(), AttributeValue::Ss(vec!["a".into(), "b".into()]));
        item.insert("ns".into(), AttributeValue::Ns(vec!["1".into(), "99999999999999999999999999999999999999".into()]));
        item.insert("bs".into(), AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![2, 3])]));
        item.insert(
            "l".into(),
            AttributeValue::L(vec![AttributeValue::N("1".into()), AttributeValue::M(HashMap::new())]),
        );
        item.insert("m".into(), AttributeValue::M([("inner".to_owned(), AttributeValue::L(vec![]))].into()));
        item
    }

    #[test]
    fn an_item_of_every_type_reads_back_as_written() {
        let item = every_type();
        let mut line = Vec::new();
        write_item_line(&mut line, &item);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(read_line(&line[..line.len() - 1]).unwrap(), Line::Item(item));
    }

    #[test]
    fn an_incremental_record_reads_with_its_images_and_time() {
        let line = br#"{"Metadata":{"WriteTimestampMicros":{"N":"1700000000123456"}},"Keys":{"id":{"S":"a"}},"OldImage":{"id":{"S":"a"},"v":{"N":"1"}}}"#;
        let Line::Record(record) = read_line(line).unwrap() else { panic!("a record") };
        assert_eq!(record.write_micros, Some(1_700_000_000_123_456));
        assert_eq!(record.keys, [("id".to_owned(), AttributeValue::S("a".into()))].into());
        assert!(record.new_image.is_none(), "no NewImage: a delete");
        assert_eq!(record.old_image.unwrap().len(), 2);
    }

    #[test]
    fn lines_that_are_not_dynamodb_json_are_named() {
        let bad = |line: &str| read_line(line.as_bytes()).unwrap_err();
        assert!(
            bad(r#"{"Item":{"a":{"X":"1"}}}"#).contains("attribute a: X is no DynamoDB type"),
            "{}",
            bad(r#"{"Item":{"a":{"X":"1"}}}"#)
        );
        assert!(bad(r#"{"Item":{"a":{"S":"1","N":"1"}}}"#).contains("more than one type"));
        assert!(bad(r#"{"Item":{"a":{"B":"not base64!"}}}"#).contains("not base64"));
        assert_eq!(bad(r#"{"Other":1}"#), "a line with neither Item nor Keys");
        assert!(read_line(b"{\"Item\":{}} trailing").is_err());
    }
}
