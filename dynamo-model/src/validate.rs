//! DynamoDB's rules for a table definition, checked before anything is sent.
//!
//! The limits are AWS's documented ones (names, counts, projections, capacity, tags). Every error
//! names the table, and the index or attribute where there is one, so that it can be found in code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::table::{Billing, KeyType, Projection, TableDef};

/// At most this many global secondary indexes per table (AWS's default quota).
pub const MAX_GLOBAL_INDEXES: usize = 20;
/// At most this many local secondary indexes per table (a hard limit).
pub const MAX_LOCAL_INDEXES: usize = 5;
/// At most this many projected non-key attributes, summed over every index of a table.
pub const MAX_PROJECTED_ATTRIBUTES: usize = 100;
const MAX_TAGS: usize = 50;

/// One broken rule.
///
/// Every variant names the table by its logical name (`table`, or `name` for the table's own
/// name), and the index or attribute where there is one. [`TableDef::validate`] finds the
/// variants up to [`Tag`](Self::Tag); the checks against the item type
/// ([`check_item_schema`](crate::check_item_schema), [`TableSchema`](crate::TableSchema)) find the
/// rest. Its `Display` is a sentence that says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The table's logical name is not 3 to 255 characters of `a-z`, `A-Z`, `0-9`, `_`, `-` and
    /// `.`.
    #[error("table name {name:?} is invalid: it must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'")]
    TableName {
        /// The name as given.
        name: String,
    },
    /// An index name is not 3 to 255 characters of `a-z`, `A-Z`, `0-9`, `_`, `-` and `.`.
    #[error(
        "table {table}: index name {index:?} is invalid: it must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    IndexName {
        /// The table's logical name.
        table: String,
        /// The index name as given.
        index: String,
    },
    /// Two indexes, global or local, share a name; reported once for each repeat.
    #[error("table {table}: index name {index} is used more than once")]
    DuplicateIndex {
        /// The table's logical name.
        table: String,
        /// The repeated index name.
        index: String,
    },
    /// More than 20 global indexes (AWS's default quota).
    #[error("table {table}: {count} global secondary indexes, DynamoDB allows at most {MAX_GLOBAL_INDEXES}")]
    TooManyGlobalIndexes {
        /// The table's logical name.
        table: String,
        /// How many global indexes the table declares.
        count: usize,
    },
    /// More than 5 local indexes (a hard limit).
    #[error("table {table}: {count} local secondary indexes, DynamoDB allows at most {MAX_LOCAL_INDEXES}")]
    TooManyLocalIndexes {
        /// The table's logical name.
        table: String,
        /// How many local indexes the table declares.
        count: usize,
    },
    /// A local index on a table without a sort key, which DynamoDB does not allow; reported for
    /// each local index.
    #[error(
        "table {table}: local index {index} needs the table to have a sort key (an LSI shares the table's partition key and adds its own sort key)"
    )]
    LocalIndexWithoutTableSortKey {
        /// The table's logical name.
        table: String,
        /// The local index's name.
        index: String,
    },
    /// A key attribute, projected attribute or TTL attribute whose name is empty or longer than
    /// 255 bytes.
    #[error("table {table}: attribute name {attribute:?} is invalid: it must be 1 to 255 bytes")]
    AttributeName {
        /// The table's logical name.
        table: String,
        /// The attribute name as given.
        attribute: String,
    },
    /// The same attribute is a key of two types (in the table and an index, or in two indexes):
    /// DynamoDB declares each key attribute once, with one type.
    #[error(
        "table {table}: key attribute {attribute} is declared as {first} and as {second}; an attribute has one type"
    )]
    ConflictingAttributeType {
        /// The table's logical name.
        table: String,
        /// The attribute's name.
        attribute: String,
        /// The type it has where it is first declared (table keys, then global, then local
        /// indexes).
        first: KeyType,
        /// The other type it is declared with.
        second: KeyType,
    },
    /// The partition key and the sort key of the table, or of an index, are the same attribute
    /// (for a local index: its sort key is the table's partition key).
    #[error("table {table}{}: partition key and sort key are both {attribute}", index_suffix(.index))]
    SameKeyTwice {
        /// The table's logical name.
        table: String,
        /// The index's name, or `None` for the table's own keys.
        index: Option<String>,
        /// The attribute used twice.
        attribute: String,
    },
    /// An [`INCLUDE`](crate::Projection::Include) projection with no attribute.
    #[error("table {table}: index {index}: an INCLUDE projection needs at least one attribute")]
    EmptyProjection {
        /// The table's logical name.
        table: String,
        /// The index's name.
        index: String,
    },
    /// An [`INCLUDE`](crate::Projection::Include) projection names the same attribute twice.
    #[error("table {table}: index {index}: attribute {attribute} is projected twice")]
    DuplicateProjectedAttribute {
        /// The table's logical name.
        table: String,
        /// The index's name.
        index: String,
        /// The repeated attribute.
        attribute: String,
    },
    /// The `INCLUDE` projections of all the table's indexes together name more than
    /// 100 attributes; an attribute projected into two indexes counts twice.
    #[error(
        "table {table}: {count} projected non-key attributes over all indexes, DynamoDB allows at most {MAX_PROJECTED_ATTRIBUTES}"
    )]
    TooManyProjectedAttributes {
        /// The table's logical name.
        table: String,
        /// How many projected attributes the indexes name in all.
        count: usize,
    },
    /// Provisioned read or write capacity below 1, of the table or of a global index.
    #[error("table {table}{}: read and write capacity must be at least 1, got {read}/{write}", index_suffix(.index))]
    Capacity {
        /// The table's logical name.
        table: String,
        /// The global index's name, or `None` for the table's own capacity.
        index: Option<String>,
        /// The read capacity units given.
        read: i64,
        /// The write capacity units given.
        write: i64,
    },
    /// A global index without a throughput on a provisioned table.
    #[error("table {table}: global index {index} needs a throughput because the table is provisioned")]
    MissingIndexThroughput {
        /// The table's logical name.
        table: String,
        /// The global index's name.
        index: String,
    },
    /// A global index with a throughput on an on-demand table.
    #[error(
        "table {table}: global index {index} has a throughput but the table is on demand (pay per request); remove it"
    )]
    UnexpectedIndexThroughput {
        /// The table's logical name.
        table: String,
        /// The global index's name.
        index: String,
    },
    /// More than 50 tags.
    #[error("table {table}: {count} tags, DynamoDB allows at most {MAX_TAGS}")]
    TooManyTags {
        /// The table's logical name.
        table: String,
        /// How many tags the table has.
        count: usize,
    },
    /// A tag whose key is not 1 to 128 characters or starts with `aws:`, or whose value is longer
    /// than 256 characters.
    #[error(
        "table {table}: tag {key:?} is invalid: keys are 1 to 128 characters, values at most 256, and 'aws:' is reserved"
    )]
    Tag {
        /// The table's logical name.
        table: String,
        /// The tag's key (also when it is the value that is too long).
        key: String,
    },
    /// A key attribute of the table or an index is not a field of the item type (by serde's
    /// name).
    #[error("table {table}: key attribute {attribute} ({ty}) is not a field of the item type {item_type}")]
    KeyNotInItem {
        /// The table's logical name.
        table: String,
        /// The key attribute's name.
        attribute: String,
        /// The key attribute's type in the table.
        ty: KeyType,
        /// The item type's name.
        item_type: String,
    },
    /// The item type's field for a key attribute has a type that does not serialise as the key's
    /// DynamoDB type.
    #[error(
        "table {table}: key attribute {attribute} is {ty} in the table but the item type {item_type} has it as {found}"
    )]
    KeyTypeMismatch {
        /// The table's logical name.
        table: String,
        /// The key attribute's name.
        attribute: String,
        /// The key attribute's type in the table.
        ty: KeyType,
        /// The item type's name.
        item_type: String,
        /// The JSON Schema types the field has, joined with `or` (such as `integer`).
        found: String,
    },
    /// A key of the table itself is an optional or nullable field of the item type; every item
    /// must have the table's keys (only an index's keys may be missing).
    #[error(
        "table {table}: key attribute {attribute} must be a required field of the item type {item_type} (it is optional); only index keys may be optional"
    )]
    OptionalTableKey {
        /// The table's logical name.
        table: String,
        /// The key attribute's name.
        attribute: String,
        /// The item type's name.
        item_type: String,
    },
    /// A type is declared, with [`TableSchema::projection`](crate::TableSchema::projection), as
    /// what an index returns, but the table has no index of that name.
    #[error("table {table}: {type_name} is declared as what index {index} returns, but the table has no index {index}")]
    ProjectionIndex {
        /// The table's logical name.
        table: String,
        /// The index name given.
        index: String,
        /// The declared type's name.
        type_name: String,
    },
    /// A field of a type declared as what an index returns that the index does not return, or
    /// that items may lack while the type requires it.
    #[error("table {table}: index {index}: field {attribute} of {type_name}: {problem}")]
    ProjectionField {
        /// The table's logical name.
        table: String,
        /// The index's name.
        index: String,
        /// The declared type's name.
        type_name: String,
        /// The field's (serde) name; empty when the type is not a struct with named fields.
        attribute: String,
        /// What is wrong with it and how to fix it.
        problem: String,
    },
}

fn index_suffix(index: &Option<String>) -> String {
    index.as_ref().map(|i| format!(": index {i}")).unwrap_or_default()
}

/// Every rule a definition breaks, so that all of them can be fixed at once.
///
/// Its `Display` joins the errors' messages with `; `. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl ValidationErrors {
    pub(crate) fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// True for a name DynamoDB accepts for a table or an index.
pub fn is_valid_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl TableDef {
    /// Checks the definition against DynamoDB's rules and returns every rule it breaks.
    ///
    /// The rules are AWS's documented limits on names, index counts, key attributes, projections,
    /// capacity and tags; see [`ValidationError`] for each. Only the logical
    /// [`name`](TableDef::name) is checked, not a physical name with its prefix and version. The
    /// check is local: nothing is sent to DynamoDB.
    ///
    /// ```
    /// # use dynamo_model::{KeyAttr, LocalIndex, TableDef, ValidationError};
    /// let def = TableDef::new("orders", KeyAttr::s("customer"))
    ///     .local_index(LocalIndex::new("by_date", KeyAttr::s("placed_on")));
    /// let errors = def.validate().unwrap_err();
    /// assert_eq!(
    ///     errors.0,
    ///     [ValidationError::LocalIndexWithoutTableSortKey { table: "orders".into(), index: "by_date".into() }]
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let table = || self.name.clone();
        if !is_valid_name(&self.name) {
            errors.push(ValidationError::TableName { name: self.name.clone() });
        }

        let mut index_names = BTreeSet::new();
        let index_names_in_order =
            self.global_indexes.iter().map(|g| &g.name).chain(self.local_indexes.iter().map(|l| &l.name));
        for name in index_names_in_order {
            if !is_valid_name(name) {
                errors.push(ValidationError::IndexName { table: table(), index: name.clone() });
            }
            if !index_names.insert(name) {
                errors.push(ValidationError::DuplicateIndex { table: table(), index: name.clone() });
            }
        }
        if self.global_indexes.len() > MAX_GLOBAL_INDEXES {
            errors.push(ValidationError::TooManyGlobalIndexes { table: table(), count: self.global_indexes.len() });
        }
        if self.local_indexes.len() > MAX_LOCAL_INDEXES {
            errors.push(ValidationError::TooManyLocalIndexes { table: table(), count: self.local_indexes.len() });
        }
        if self.sort_key.is_none() {
            for lsi in &self.local_indexes {
                errors.push(ValidationError::LocalIndexWithoutTableSortKey { table: table(), index: lsi.name.clone() });
            }
        }

        // One type per attribute, across the table and all its indexes.
        let mut types: BTreeMap<&str, KeyType> = BTreeMap::new();
        for attr in self.all_key_attrs() {
            if attr.name.is_empty() || attr.name.len() > 255 {
                errors.push(ValidationError::AttributeName { table: table(), attribute: attr.name.clone() });
            }
            match types.get(attr.name.as_str()) {
                Some(&first) if first != attr.ty => errors.push(ValidationError::ConflictingAttributeType {
                    table: table(),
                    attribute: attr.name.clone(),
                    first,
                    second: attr.ty,
                }),
                Some(_) => {}
                None => {
                    types.insert(&attr.name, attr.ty);
                }
            }
        }
        if let Some(sort) = &self.sort_key
            && sort.name == self.partition_key.name
        {
            errors.push(ValidationError::SameKeyTwice { table: table(), index: None, attribute: sort.name.clone() });
        }
        for gsi in &self.global_indexes {
            if let Some(sort) = &gsi.sort_key
                && sort.name == gsi.partition_key.name
            {
                errors.push(ValidationError::SameKeyTwice {
                    table: table(),
                    index: Some(gsi.name.clone()),
                    attribute: sort.name.clone(),
                });
            }
        }
        for lsi in &self.local_indexes {
            if lsi.sort_key.name == self.partition_key.name {
                errors.push(ValidationError::SameKeyTwice {
                    table: table(),
                    index: Some(lsi.name.clone()),
                    attribute: lsi.sort_key.name.clone(),
                });
            }
        }

        // Projections: non-empty INCLUDE lists without repeats, and at most 100 in all.
        let projections = self
            .global_indexes
            .iter()
            .map(|g| (&g.name, &g.projection))
            .chain(self.local_indexes.iter().map(|l| (&l.name, &l.projection)));
        let mut projected = 0;
        for (index, projection) in projections {
            let Projection::Include(attributes) = projection else { continue };
            if attributes.is_empty() {
                errors.push(ValidationError::EmptyProjection { table: table(), index: index.clone() });
            }
            let mut seen = BTreeSet::new();
            for attribute in attributes {
                if attribute.is_empty() || attribute.len() > 255 {
                    errors.push(ValidationError::AttributeName { table: table(), attribute: attribute.clone() });
                }
                if !seen.insert(attribute) {
                    errors.push(ValidationError::DuplicateProjectedAttribute {
                        table: table(),
                        index: index.clone(),
                        attribute: attribute.clone(),
                    });
                }
            }
            projected += attributes.len();
        }
        if projected > MAX_PROJECTED_ATTRIBUTES {
            errors.push(ValidationError::TooManyProjectedAttributes { table: table(), count: projected });
        }

        // Capacity: provisioned tables give every GSI a throughput, on-demand ones none.
        match self.billing {
            Billing::Provisioned(t) => {
                if t.read < 1 || t.write < 1 {
                    errors.push(ValidationError::Capacity {
                        table: table(),
                        index: None,
                        read: t.read,
                        write: t.write,
                    });
                }
                for gsi in &self.global_indexes {
                    match gsi.throughput {
                        None => errors
                            .push(ValidationError::MissingIndexThroughput { table: table(), index: gsi.name.clone() }),
                        Some(t) if t.read < 1 || t.write < 1 => errors.push(ValidationError::Capacity {
                            table: table(),
                            index: Some(gsi.name.clone()),
                            read: t.read,
                            write: t.write,
                        }),
                        Some(_) => {}
                    }
                }
            }
            Billing::PayPerRequest => {
                for gsi in self.global_indexes.iter().filter(|g| g.throughput.is_some()) {
                    errors.push(ValidationError::UnexpectedIndexThroughput { table: table(), index: gsi.name.clone() });
                }
            }
        }

        if let Some(ttl) = &self.ttl_attribute
            && (ttl.is_empty() || ttl.len() > 255)
        {
            errors.push(ValidationError::AttributeName { table: table(), attribute: ttl.clone() });
        }

        if self.tags.len() > MAX_TAGS {
            errors.push(ValidationError::TooManyTags { table: table(), count: self.tags.len() });
        }
        for (key, value) in &self.tags {
            let key_ok = (1..=128).contains(&key.chars().count()) && !key.starts_with("aws:");
            if !key_ok || value.chars().count() > 256 {
                errors.push(ValidationError::Tag { table: table(), key: key.clone() });
            }
        }

        ValidationErrors(errors).into_result()
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
