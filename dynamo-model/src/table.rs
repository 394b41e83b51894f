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
///
/// Used for the table's partition and sort keys and for the keys of its indexes; DynamoDB wants
/// each such attribute declared once, with one type (see [`TableDef::attribute_definitions`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyAttr {
    /// The attribute's name as it is stored in items (serde's name for the field, not the Rust
    /// one): 1 to 255 bytes.
    pub name: String,
    /// The attribute's DynamoDB type; serialised as `type`.
    #[serde(rename = "type")]
    pub ty: KeyType,
}

impl KeyAttr {
    /// A key attribute named `name` of type `ty`; [`KeyAttr::s`], [`KeyAttr::n`] and
    /// [`KeyAttr::b`] are shorter.
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
///
/// DynamoDB cannot change an index's projection in place. Serialised as `"all"`, `"keys_only"` or
/// `{"include": [...]}`.
pub enum Projection {
    /// Every attribute of the item (DynamoDB's `ALL`).
    All,
    /// Only the table's and the index's key attributes (DynamoDB's `KEYS_ONLY`).
    KeysOnly,
    /// The keys and these non-key attributes (DynamoDB's `INCLUDE`). The list must not be empty
    /// nor name an attribute twice, and a table projects at most 100 non-key attributes over all
    /// its indexes (see [`TableDef::validate`]).
    Include(Vec<String>),
}

/// Provisioned read and write capacity units, of a table or of a global index.
///
/// [`TableDef::validate`] wants both to be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// Read capacity units: each is one strongly consistent read per second of an item of up to
    /// 4 KB.
    pub read: i64,
    /// Write capacity units: each is one write per second of an item of up to 1 KB.
    pub write: i64,
}

/// How a table is billed, and so whether it and its global indexes carry a [`Throughput`].
///
/// Serialised as `"pay_per_request"` or `{"provisioned": {"read": .., "write": ..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// On demand (DynamoDB's `PAY_PER_REQUEST`): no capacity to declare, and no global index may
    /// have a throughput. The default of [`TableDef::new`].
    PayPerRequest,
    /// Provisioned capacity for the table; every global index then needs its own
    /// [`GlobalIndex::throughput`].
    Provisioned(Throughput),
}

/// What each record of a table's DynamoDB stream carries, when the table has one (DynamoDB's
/// `StreamViewType`, and serialised with its names, such as `"NEW_AND_OLD_IMAGES"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamView {
    /// Only the key attributes of the changed item.
    KeysOnly,
    /// The item as it is after the change.
    NewImage,
    /// The item as it was before the change.
    OldImage,
    /// The item both before and after the change.
    NewAndOldImages,
}

/// A table's storage class (DynamoDB's `TableClass`, serialised with its names, such as
/// `"STANDARD"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableClass {
    /// DynamoDB Standard, the default.
    #[default]
    Standard,
    /// DynamoDB Standard-Infrequent Access: cheaper storage, dearer reads and writes.
    StandardInfrequentAccess,
}

/// A global secondary index: another partition key (and optionally sort key) by which the
/// table's items can be queried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalIndex {
    /// The index's name, unique among the table's indexes: 3 to 255 characters of `a-z`, `A-Z`,
    /// `0-9`, `_`, `-` and `.`.
    pub name: String,
    /// The index's partition key. Items that lack it are not in the index (a sparse index).
    pub partition_key: KeyAttr,
    /// The index's sort key, if it has one.
    pub sort_key: Option<KeyAttr>,
    /// The attributes the index copies from the table; [`Projection::All`] unless set.
    pub projection: Projection,
    /// Required when the table is provisioned, absent when it is on demand.
    pub throughput: Option<Throughput>,
}

impl GlobalIndex {
    /// An index that projects every attribute; change it with the builder methods.
    pub fn new(name: impl Into<String>, partition_key: KeyAttr) -> Self {
        GlobalIndex { name: name.into(), partition_key, sort_key: None, projection: Projection::All, throughput: None }
    }
    /// Gives the index a sort key.
    pub fn sort_key(mut self, key: KeyAttr) -> Self {
        self.sort_key = Some(key);
        self
    }
    /// Sets which attributes the index copies (instead of [`Projection::All`]).
    pub fn projection(mut self, projection: Projection) -> Self {
        self.projection = projection;
        self
    }
    /// Gives the index its own read and write capacity units, which it needs when the table is
    /// [provisioned](TableDef::provisioned) and must not have when the table is on demand.
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
///
/// DynamoDB only creates local indexes with the table, and allows them only on a table with a
/// sort key, at most five of them.
pub struct LocalIndex {
    /// The index's name, unique among the table's indexes: 3 to 255 characters of `a-z`, `A-Z`,
    /// `0-9`, `_`, `-` and `.`.
    pub name: String,
    /// The index's sort key, which takes the place of the table's sort key in the index; it must
    /// not be the table's partition key.
    pub sort_key: KeyAttr,
    /// The attributes the index copies from the table; [`Projection::All`] unless set.
    pub projection: Projection,
}

impl LocalIndex {
    /// A local index named `name`, sorted by `sort_key`, that projects every attribute.
    pub fn new(name: impl Into<String>, sort_key: KeyAttr) -> Self {
        LocalIndex { name: name.into(), sort_key, projection: Projection::All }
    }
    /// Sets which attributes the index copies (instead of [`Projection::All`]).
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
///
/// Build one with [`TableDef::new`] and the builder methods, and check it with
/// [`TableDef::validate`]. The fields are public so that a definition can also be read back or
/// compared (see [`diff_tables`](crate::diff_tables)); their serde names are the field names.
pub struct TableDef {
    /// The logical name the application uses, without prefix or version: 3 to 255 characters of
    /// `a-z`, `A-Z`, `0-9`, `_`, `-` and `.`.
    pub name: String,
    /// The table's version: 1 for a table never rebuilt (the default), and the physical name
    /// ends in `_v<version>` from 2 on.
    pub version: u32,
    /// The partition (hash) key. Every item must have it, so the item type must require it.
    pub partition_key: KeyAttr,
    /// The sort (range) key, if any. Every item must have it, and local indexes need it.
    pub sort_key: Option<KeyAttr>,
    /// The global secondary indexes, at most 20 (AWS's default quota).
    pub global_indexes: Vec<GlobalIndex>,
    /// The local secondary indexes, at most 5.
    pub local_indexes: Vec<LocalIndex>,
    /// The attribute DynamoDB's time to live reads: a number of seconds since the Unix epoch
    /// after which DynamoDB may delete the item. `None` (the default) turns TTL off.
    pub ttl_attribute: Option<String>,
    /// The stream of the table's changes and what it carries; `None` (the default) for no stream.
    pub stream: Option<StreamView>,
    /// On demand (the default) or provisioned capacity.
    pub billing: Billing,
    /// Whether DynamoDB refuses to delete the table; off by default.
    pub deletion_protection: bool,
    /// The storage class; [`TableClass::Standard`] by default.
    pub table_class: TableClass,
    /// Whether the table has continuous backups, from which DynamoDB can restore it as it was at
    /// an earlier second; off by default.
    pub point_in_time_recovery: bool,
    /// The table's tags, at most 50: keys of 1 to 128 characters that do not start with `aws:`,
    /// values of at most 256.
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
    /// Gives the table a sort key. DynamoDB cannot add or change one later: that is a rebuild.
    pub fn sort_key(mut self, key: KeyAttr) -> Self {
        self.sort_key = Some(key);
        self
    }
    /// Adds a global secondary index.
    pub fn global_index(mut self, index: GlobalIndex) -> Self {
        self.global_indexes.push(index);
        self
    }
    /// Adds a local secondary index (the table needs a sort key).
    pub fn local_index(mut self, index: LocalIndex) -> Self {
        self.local_indexes.push(index);
        self
    }
    /// Turns time to live on, with `attribute` holding each item's expiry time in seconds since
    /// the Unix epoch (a DynamoDB number).
    pub fn ttl(mut self, attribute: impl Into<String>) -> Self {
        self.ttl_attribute = Some(attribute.into());
        self
    }
    /// Turns the table's stream on, carrying `view`.
    pub fn stream(mut self, view: StreamView) -> Self {
        self.stream = Some(view);
        self
    }
    /// Bills the table by provisioned capacity: `read` and `write` capacity units. Each global
    /// index then needs its own [`GlobalIndex::throughput`].
    pub fn provisioned(mut self, read: i64, write: i64) -> Self {
        self.billing = Billing::Provisioned(Throughput { read, write });
        self
    }
    /// Turns deletion protection on or off: while it is on, DynamoDB refuses to delete the table.
    pub fn deletion_protection(mut self, on: bool) -> Self {
        self.deletion_protection = on;
        self
    }
    /// Sets the storage class.
    pub fn table_class(mut self, class: TableClass) -> Self {
        self.table_class = class;
        self
    }
    /// Turns point-in-time recovery (continuous backups) on or off.
    pub fn point_in_time_recovery(mut self, on: bool) -> Self {
        self.point_in_time_recovery = on;
        self
    }
    /// Adds the tag `key` with `value`, replacing an earlier value of the same key.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// The table's name in an environment whose table prefix is `prefix` (see
    /// [`physical_name`]).
    ///
    /// ```
    /// # use dynamo_model::{KeyAttr, TableDef};
    /// let orders = TableDef::new("orders", KeyAttr::s("customer"));
    /// assert_eq!(orders.physical_name("prod_"), "prod_orders");
    /// assert_eq!(orders.version(3).physical_name("prod_"), "prod_orders_v3");
    /// ```
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

    /// The global index named `name`, if the table has one.
    pub fn global_index_named(&self, name: &str) -> Option<&GlobalIndex> {
        self.global_indexes.iter().find(|g| g.name == name)
    }
}

/// The physical name of version `version` of the logical table `name`: the prefix, the name, and
/// `_v<version>` from version 2 on.
pub fn physical_name(prefix: &str, name: &str, version: u32) -> String {
    if version <= 1 { format!("{prefix}{name}") } else { format!("{prefix}{name}_v{version}") }
}

/// The logical name and version of a physical name that starts with `prefix`, or `None` when it
/// does not start with it: the reverse of [`physical_name`].
///
/// A name without a `_v<n>` suffix of 2 or more is version 1 under its whole name (so
/// `orders_v1` is the logical table `orders_v1`).
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
