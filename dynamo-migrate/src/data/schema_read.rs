//! Stored items read as the schema crate's item types, exactly: what `verify`, `rehearse` and
//! `status --items` (a sample of the live items, [`check_items`]) check of every item they read.
//!
//! An item reads exactly when the value its type reads, serialised back, is the item on every
//! attribute the type holds (the same DynamoDB types, sets as sets, numbers exactly); otherwise it
//! is refused, naming every attribute that fails. That is the read typed data steps make
//! (`data::from_item`), so an item the application's type would silently change is found before
//! the application writes it back.
//!
//! A `TableSchema` carries its item type erased (`TableSchema::exact`), while the exact read is
//! generic over the type. The erased type reaches it as [`SchemaValue`], whose `Deserialize` reads
//! through the erased function of the table being read. serde's `Deserialize` takes no value to
//! carry that function, so it is set for the current thread around the read, which is synchronous.

use std::cell::Cell;

use dynamo_model::erased_serde;
use dynamo_model::{ExactRead, TableSchema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::{Item, key_text};
use crate::error::Result;
use crate::names::TableNames;
use crate::rehearse::{Sample, SampleOptions, SampleReport, read_sample};

thread_local! {
    /// The item type being read on this thread, while [`read_exactly`] runs.
    static READING: Cell<Option<ExactRead>> = const { Cell::new(None) };
}

/// A value of the item type being read (see the module's header).
struct SchemaValue(Box<dyn erased_serde::Serialize>);

impl<'de> Deserialize<'de> for SchemaValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let read = READING.get().ok_or_else(|| D::Error::custom("no schema crate type is being read"))?;
        let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
        read(&mut erased).map(SchemaValue).map_err(D::Error::custom)
    }
}

impl Serialize for SchemaValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        erased_serde::serialize(&*self.0, serializer)
    }
}

/// Puts back the type read before, however the read ends.
struct Reading(Option<ExactRead>);

impl Drop for Reading {
    fn drop(&mut self) {
        READING.set(self.0);
    }
}

/// Reads `item` as `table`'s item type, exactly; the error names every attribute that fails,
/// with what would change and a field type that holds it.
pub fn read_exactly(table: &TableSchema, item: &Item) -> Result<(), String> {
    let _restore = Reading(READING.replace(Some(table.exact())));
    crate::data::from_item::<SchemaValue>(item).map(drop).map_err(|message| {
        // The exact read speaks of a data step's input type; here it is the schema crate's.
        message.replace("the step's input type", &format!("the schema crate's {}", table.item_type))
    })
}

/// An item that does not read as its table's Rust type.
#[derive(Debug, Clone, Serialize)]
pub struct BadItem {
    /// Its key, as `{name: value, …}`.
    pub key: String,
    /// Why it does not read: every attribute that fails, what would change, and a field type
    /// that holds it.
    pub error: String,
}

/// What a sample of a live table's items showed against the schema crate's item type.
#[derive(Debug, Clone, Serialize)]
pub struct ItemsCheck {
    /// The logical table.
    pub table: String,
    /// The physical name of the version the schema crate declares.
    pub physical: String,
    /// What was read; none when that version does not exist (yet).
    pub read: Option<SampleReport>,
    /// Items of the sample that do not read exactly as the item type (all counted).
    pub bad_items: u64,
    /// The first of them.
    pub bad_item_examples: Vec<BadItem>,
}

/// Reads `sample` of the items of each table of the schema crate (the version it declares,
/// under `names`' prefix) through `client`, and reads each exactly as the table's item type:
/// items that an old application instance writes (a field missing, another type) show before the
/// application reads them. Lists at most `listed` bad items per table; counts them all.
pub async fn check_items(
    client: &aws_sdk_dynamodb::Client,
    names: &TableNames,
    tables: &[TableSchema],
    sample: Sample,
    options: &SampleOptions,
    listed: usize,
) -> Result<Vec<ItemsCheck>> {
    let mut checks = Vec::new();
    for table in tables {
        let physical = table.def.physical_name(names.prefix());
        let keys: Vec<String> = table.def.keys().map(|k| k.name.clone()).collect();
        let found = std::sync::Mutex::new((0u64, Vec::new()));
        let read = match crate::rehearse::facts(client, &physical).await? {
            None => None,
            Some(_) => Some(
                read_sample(client, &physical, sample, options, |items| {
                    let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
                    for item in &items {
                        if let Err(error) = read_exactly(table, item) {
                            found.0 += 1;
                            if found.1.len() < listed {
                                found.1.push(BadItem { key: key_text(item, &keys), error });
                            }
                        }
                    }
                    std::future::ready(Ok(()))
                })
                .await?,
            ),
        };
        let (bad_items, bad_item_examples) = found.into_inner().unwrap_or_else(|e| e.into_inner());
        checks.push(ItemsCheck { table: table.name().to_owned(), physical, read, bad_items, bad_item_examples });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;
    use dynamo_model::{KeyAttr, TableDef};
    use schemars::JsonSchema;

    use super::*;

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Customer {
        customer_nr: u64,
        name: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
    }

    fn table() -> TableSchema {
        TableSchema::new::<Customer>(TableDef::new("customers", KeyAttr::n("customer_nr")))
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn an_item_that_fits_reads_and_one_that_would_change_is_refused_naming_each_attribute() {
        let nr = ("customer_nr", AttributeValue::N("7".into()));
        let name = ("name", AttributeValue::S("Ada".into()));
        assert_eq!(read_exactly(&table(), &item(&[nr.clone(), name.clone()])), Ok(()));
        // An attribute the type does not hold is left alone by the application: not a refusal.
        let extra = ("phone", AttributeValue::S("+44".into()));
        assert_eq!(read_exactly(&table(), &item(&[nr.clone(), name.clone(), extra])), Ok(()));

        let set = ("tags", AttributeValue::Ss(vec!["a".into()]));
        let refused = read_exactly(&table(), &item(&[nr.clone(), name, set])).unwrap_err();
        assert!(refused.contains("attribute tags: a string set (SS) would be written back as a list (L)"), "{refused}");

        let big = ("customer_nr", AttributeValue::N("123456789012345678901234567890".into()));
        let refused = read_exactly(&table(), &item(&[big])).unwrap_err();
        assert!(refused.contains("attribute customer_nr"), "{refused}");
        assert!(refused.contains("attribute name"), "a missing field is named too: {refused}");
        println!("{refused}");
        assert!(refused.contains("the schema crate's Customer"), "{refused}");
        assert!(!refused.contains("step"), "{refused}");
    }
}
