//! A table as the schema crate declares it: its definition and its Rust item type.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Item;
use crate::item_schema::{check_item_schema, check_projection};
use crate::table::TableDef;
use crate::validate::ValidationErrors;

/// A table definition together with the Rust type of its items.
///
/// The item type is erased into its JSON Schema and functions that read an item into it, so that
/// a list of tables of different types can be checked by the engine.
#[derive(Clone)]
pub struct TableSchema {
    /// The table's definition.
    pub def: TableDef,
    /// The item type's name, without its module path, as errors name it.
    pub item_type: &'static str,
    /// The item type's JSON Schema, as schemars derives it: the fields serde reads and writes,
    /// which [`Self::validate`] checks the key attributes against.
    pub item_schema: schemars::Schema,
    read_item: fn(Item) -> Result<(), serde_dynamo::Error>,
    /// The types the application reads from the table's indexes, checked by [`Self::validate`].
    pub projections: Vec<IndexProjection>,
    exact: ExactRead,
}

/// The Rust type an application reads from one index of a table: what a query on a `KEYS_ONLY`
/// or `INCLUDE` index returns is only part of an item, so it gets a type of its own, checked
/// against what the index projects.
#[derive(Debug, Clone)]
///
/// Made by [`TableSchema::projection`].
pub struct IndexProjection {
    /// The name of the global or local index the type is read from.
    pub index: String,
    /// The type's name, without its module path, as errors name it.
    pub type_name: &'static str,
    /// The type's JSON Schema, as schemars derives it.
    pub schema: schemars::Schema,
}

/// The item type with its type erased: reads a value from any deserializer and gives it back as
/// something serialisable. The engine serialises what it read and compares it with the stored
/// item, so that an item reads exactly or is refused naming every attribute that fails (a set
/// the type would write back as a list, a number it would round), as a typed data step reads.
pub type ExactRead = for<'de> fn(
    &mut dyn erased_serde::Deserializer<'de>,
) -> Result<Box<dyn erased_serde::Serialize>, erased_serde::Error>;

fn read_erased<T: DeserializeOwned + Serialize + 'static>(
    deserializer: &mut dyn erased_serde::Deserializer<'_>,
) -> Result<Box<dyn erased_serde::Serialize>, erased_serde::Error> {
    let value: T = erased_serde::deserialize(deserializer)?;
    Ok(Box::new(value))
}

impl fmt::Debug for TableSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableSchema").field("def", &self.def).field("item_type", &self.item_type).finish()
    }
}

impl TableSchema {
    /// The table `def`, whose items are `T`. `T` serialises too: an application writes its items,
    /// and the engine reads stored items exactly by serialising what `T` read back.
    pub fn new<T: JsonSchema + DeserializeOwned + Serialize + 'static>(def: TableDef) -> Self {
        let item_type = std::any::type_name::<T>();
        TableSchema {
            def,
            item_type: item_type.rsplit("::").next().unwrap_or(item_type),
            item_schema: schemars::schema_for!(T),
            read_item: |item| serde_dynamo::from_item::<_, T>(item).map(drop),
            projections: Vec::new(),
            exact: read_erased::<T>,
        }
    }

    /// Declares `P` as the type the application reads from `index` (a global or local index of
    /// this table), so that [`Self::validate`] (and with it `cargo xtask verify`) checks that the
    /// index returns every field `P` has: each is a key of the table or the index, or an
    /// attribute the index projects (any field of the item type for an `ALL` projection), of the
    /// item type; and a field `P` requires is one every item in the index has (a key, or a
    /// required field of the item type).
    ///
    /// ```
    /// # use dynamo_model::{GlobalIndex, KeyAttr, Projection, TableDef, TableSchema};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// struct Customer { customer_nr: u64, name: String, postcode: Option<String> }
    /// /// What a query on `by_postcode` returns.
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// struct CustomerInPostcode { customer_nr: u64, postcode: String }
    ///
    /// let by_postcode = GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(Projection::KeysOnly);
    /// let table = TableSchema::new::<Customer>(TableDef::new("customers", KeyAttr::n("customer_nr")).global_index(by_postcode))
    ///     .projection::<CustomerInPostcode>("by_postcode");
    /// assert!(table.validate().is_ok());
    /// ```
    pub fn projection<P: JsonSchema + DeserializeOwned>(mut self, index: &str) -> Self {
        let type_name = std::any::type_name::<P>();
        self.projections.push(IndexProjection {
            index: index.to_owned(),
            type_name: type_name.rsplit("::").next().unwrap_or(type_name),
            schema: schemars::schema_for!(P),
        });
        self
    }

    /// The table's logical name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Checks DynamoDB's rules ([`TableDef::validate`]), the key attributes against the item
    /// type (each a field of the matching type; the table's own keys required, index keys may be
    /// optional), and each [`projection`](Self::projection) against its index, and returns every
    /// error found.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = self.def.validate().err().map(|e| e.0).unwrap_or_default();
        errors.extend(check_item_schema(&self.def, &self.item_schema, self.item_type));
        for projection in &self.projections {
            errors.extend(check_projection(&self.def, &self.item_schema, projection));
        }
        ValidationErrors(errors).into_result()
    }

    /// Reads an item into the Rust type, as serde does (without checking that nothing is lost:
    /// for that, the engine reads through [`TableSchema::exact`]).
    pub fn read_item(&self, item: Item) -> Result<(), serde_dynamo::Error> {
        (self.read_item)(item)
    }

    /// The item type, erased, for the engine's exact reads of stored items.
    pub fn exact(&self) -> ExactRead {
        self.exact
    }
}
