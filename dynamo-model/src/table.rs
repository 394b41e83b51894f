//! What a DynamoDB table is, field by field, as code declares it and as `DescribeTable` reports it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The scalar types DynamoDB allows for key attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::S => "S",
            KeyType::N => "N",
            KeyType::B => "B",
        })
    }
}

/// A key attribute: its name and scalar type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyAttr {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: KeyType,
}

impl KeyAttr {
    pub fn new(name: impl Into<String>, ty: KeyType) -> Self {
        KeyAttr { name: name.into(), ty }
    }
    /// A string key attribute.
    pub fn s(name: impl Into<String>) -> Self {
        KeyAttr::new(name, KeyType::S)
    }
    /// A number key attribute.
    pub fn n(name: impl Into<String>) -> Self {
        KeyAttr::new(name, KeyType::N)
    }
    /// A binary key attribute.
    pub fn b(name: impl Into<String>) -> Self {
        KeyAttr::new(name, KeyType::B)
    }
}

/// Which attributes an index copies from the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    All,
    KeysOnly,
    /// The keys and these non-key attributes.
    Include(Vec<String>),
}

/// Read and write capacity units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    pub read: i64,
    pub write: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    PayPerRequest,
    Provisioned(Throughput),
}

/// What a table's stream carries, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamView {
    KeysOnly,
    NewImage,
    OldImage,
    NewAndOldImages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableClass {
    #[default]
    Standard,
    StandardInfrequentAccess,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalIndex {
    pub name: String,
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    pub projection: Projection,
    /// Required when the table is provisioned, absent when it is on demand.
    pub throughput: Option<Throughput>,
}

impl GlobalIndex {
    /// An index that projects every attribute; change it with the builder methods.
    pub fn new(name: impl Into<String>, partition_key: KeyAttr) -> Self {
        GlobalIndex { name: name.into(), partition_key, sort_key: None, projection: Projection::All, throughput: None }
    }
    pub fn sort_key(mut self, key: KeyAttr) -> Self {
        self.sort_key = Some(key);
        self
    }
    pub fn projection(mut self, projection: Projection) -> Self {
        self.projection = projection;
        self
    }
    pub fn throughput(mut self, read: i64, write: i64) -> Self {
        self.throughput = Some(Throughput { read, write });
        self
    }
    /// The index's key attributes, partition key first.
    pub fn keys(&self) -> impl Iterator<Item = &KeyAttr> {
        std::iter::once(&self.partition_key).chain(self.sort_key.as_ref())
    }
}

/// A local secondary index. It always shares the table's partition key, so the model only holds
/// its sort key: an LSI with another partition key cannot be written down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalIndex {
    pub name: String,
    pub sort_key: KeyAttr,
    pub projection: Projection,
}

impl LocalIndex {
    pub fn new(name: impl Into<String>, sort_key: KeyAttr) -> Self {
        LocalIndex { name: name.into(), sort_key, projection: Projection::All }
    }
    pub fn projection(mut self, projection: Projection) -> Self {
        self.projection = projection;
        self
    }
}

/// A table: the logical name the application uses, and everything DynamoDB knows about it.
///
/// The physical name in an account is the environment's prefix, then `name`, then `_v<version>`
/// from version 2 on: a table rebuilt because DynamoDB cannot change it in place (keys, LSIs,
/// projections, a new item shape) is a new physical table with the next version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub version: u32,
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    pub global_indexes: Vec<GlobalIndex>,
    pub local_indexes: Vec<LocalIndex>,
    pub ttl_attribute: Option<String>,
    pub stream: Option<StreamView>,
    pub billing: Billing,
    pub deletion_protection: bool,
    pub table_class: TableClass,
    pub point_in_time_recovery: bool,
    pub tags: BTreeMap<String, String>,
}

impl TableDef {
    /// An on-demand table with only a partition key; add the rest with the builder methods.
    pub fn new(name: impl Into<String>, partition_key: KeyAttr) -> Self {
        TableDef {
            name: name.into(),
            version: 1,
            partition_key,
            sort_key: None,
            global_indexes: Vec::new(),
            local_indexes: Vec::new(),
            ttl_attribute: None,
            stream: None,
            billing: Billing::PayPerRequest,
            deletion_protection: false,
            table_class: TableClass::Standard,
            point_in_time_recovery: false,
            tags: BTreeMap::new(),
        }
    }
    /// The table's version: 1 unless it was rebuilt.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }
    pub fn sort_key(mut self, key: KeyAttr) -> Self {
        self.sort_key = Some(key);
        self
    }
    pub fn global_index(mut self, index: GlobalIndex) -> Self {
        self.global_indexes.push(index);
        self
    }
    pub fn local_index(mut self, index: LocalIndex) -> Self {
        self.local_indexes.push(index);
        self
    }
    pub fn ttl(mut self, attribute: impl Into<String>) -> Self {
        self.ttl_attribute = Some(attribute.into());
        self
    }
    pub fn stream(mut self, view: StreamView) -> Self {
        self.stream = Some(view);
        self
    }
    pub fn provisioned(mut self, read: i64, write: i64) -> Self {
        self.billing = Billing::Provisioned(Throughput { read, write });
        self
    }
    pub fn deletion_protection(mut self, on: bool) -> Self {
        self.deletion_protection = on;
        self
    }
    pub fn table_class(mut self, class: TableClass) -> Self {
        self.table_class = class;
        self
    }
    pub fn point_in_time_recovery(mut self, on: bool) -> Self {
        self.point_in_time_recovery = on;
        self
    }
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// The table's name in an environment whose table prefix is `prefix`.
    pub fn physical_name(&self, prefix: &str) -> String {
        physical_name(prefix, &self.name, self.version)
    }

    /// The table's own key attributes, partition key first.
    pub fn keys(&self) -> impl Iterator<Item = &KeyAttr> {
        std::iter::once(&self.partition_key).chain(self.sort_key.as_ref())
    }

    /// Every key attribute of the table and its indexes, each as often as it is used.
    pub fn all_key_attrs(&self) -> impl Iterator<Item = &KeyAttr> {
        self.keys()
            .chain(self.global_indexes.iter().flat_map(GlobalIndex::keys))
            .chain(self.local_indexes.iter().map(|l| &l.sort_key))
    }

    /// The attribute definitions DynamoDB wants: every key attribute once, sorted by name.
    pub fn attribute_definitions(&self) -> Vec<KeyAttr> {
        let mut seen: BTreeMap<&str, &KeyAttr> = BTreeMap::new();
        for attr in self.all_key_attrs() {
            seen.entry(&attr.name).or_insert(attr);
        }
        seen.into_values().cloned().collect()
    }

    pub fn global_index_named(&self, name: &str) -> Option<&GlobalIndex> {
        self.global_indexes.iter().find(|g| g.name == name)
    }
}

/// The physical name of version `version` of the logical table `name`: the prefix, the name, and
/// `_v<version>` from version 2 on.
pub fn physical_name(prefix: &str, name: &str, version: u32) -> String {
    if version <= 1 { format!("{prefix}{name}") } else { format!("{prefix}{name}_v{version}") }
}

/// The logical name and version of a physical name that starts with `prefix`.
pub fn parse_physical_name<'a>(prefix: &str, physical: &'a str) -> Option<(&'a str, u32)> {
    let rest = physical.strip_prefix(prefix)?;
    if let Some((name, version)) = rest.rsplit_once("_v")
        && let Ok(version) = version.parse::<u32>()
        && version >= 2
        && !name.is_empty()
    {
        return Some((name, version));
    }
    Some((rest, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_names_carry_prefix_and_version() {
        let def = TableDef::new("customers", KeyAttr::n("nr"));
        assert_eq!(def.physical_name("prod_"), "prod_customers");
        assert_eq!(def.clone().version(2).physical_name("prod_"), "prod_customers_v2");
        assert_eq!(parse_physical_name("prod_", "prod_customers_v2"), Some(("customers", 2)));
        assert_eq!(parse_physical_name("prod_", "prod_customers"), Some(("customers", 1)));
        assert_eq!(parse_physical_name("prod_", "prod_customers_v1"), Some(("customers_v1", 1)));
        assert_eq!(parse_physical_name("prod_", "dev_customers"), None);
    }
}
