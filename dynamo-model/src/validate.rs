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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("table name {name:?} is invalid: it must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'")]
    TableName { name: String },
    #[error(
        "table {table}: index name {index:?} is invalid: it must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    IndexName { table: String, index: String },
    #[error("table {table}: index name {index} is used more than once")]
    DuplicateIndex { table: String, index: String },
    #[error("table {table}: {count} global secondary indexes, DynamoDB allows at most {MAX_GLOBAL_INDEXES}")]
    TooManyGlobalIndexes { table: String, count: usize },
    #[error("table {table}: {count} local secondary indexes, DynamoDB allows at most {MAX_LOCAL_INDEXES}")]
    TooManyLocalIndexes { table: String, count: usize },
    #[error(
        "table {table}: local index {index} needs the table to have a sort key (an LSI shares the table's partition key and adds its own sort key)"
    )]
    LocalIndexWithoutTableSortKey { table: String, index: String },
    #[error("table {table}: attribute name {attribute:?} is invalid: it must be 1 to 255 bytes")]
    AttributeName { table: String, attribute: String },
    #[error(
        "table {table}: key attribute {attribute} is declared as {first} and as {second}; an attribute has one type"
    )]
    ConflictingAttributeType { table: String, attribute: String, first: KeyType, second: KeyType },
    #[error("table {table}{}: partition key and sort key are both {attribute}", index_suffix(.index))]
    SameKeyTwice { table: String, index: Option<String>, attribute: String },
    #[error("table {table}: index {index}: an INCLUDE projection needs at least one attribute")]
    EmptyProjection { table: String, index: String },
    #[error("table {table}: index {index}: attribute {attribute} is projected twice")]
    DuplicateProjectedAttribute { table: String, index: String, attribute: String },
    #[error(
        "table {table}: {count} projected non-key attributes over all indexes, DynamoDB allows at most {MAX_PROJECTED_ATTRIBUTES}"
    )]
    TooManyProjectedAttributes { table: String, count: usize },
    #[error("table {table}{}: read and write capacity must be at least 1, got {read}/{write}", index_suffix(.index))]
    Capacity { table: String, index: Option<String>, read: i64, write: i64 },
    #[error("table {table}: global index {index} needs a throughput because the table is provisioned")]
    MissingIndexThroughput { table: String, index: String },
    #[error(
        "table {table}: global index {index} has a throughput but the table is on demand (pay per request); remove it"
    )]
    UnexpectedIndexThroughput { table: String, index: String },
    #[error("table {table}: {count} tags, DynamoDB allows at most {MAX_TAGS}")]
    TooManyTags { table: String, count: usize },
    #[error(
        "table {table}: tag {key:?} is invalid: keys are 1 to 128 characters, values at most 256, and 'aws:' is reserved"
    )]
    Tag { table: String, key: String },
    #[error("table {table}: key attribute {attribute} ({ty}) is not a field of the item type {item_type}")]
    KeyNotInItem { table: String, attribute: String, ty: KeyType, item_type: String },
    #[error(
        "table {table}: key attribute {attribute} is {ty} in the table but the item type {item_type} has it as {found}"
    )]
    KeyTypeMismatch { table: String, attribute: String, ty: KeyType, item_type: String, found: String },
    #[error(
        "table {table}: key attribute {attribute} must be a required field of the item type {item_type} (it is optional); only index keys may be optional"
    )]
    OptionalTableKey { table: String, attribute: String, item_type: String },
    #[error("table {table}: {type_name} is declared as what index {index} returns, but the table has no index {index}")]
    ProjectionIndex { table: String, index: String, type_name: String },
    #[error("table {table}: index {index}: field {attribute} of {type_name}: {problem}")]
    ProjectionField { table: String, index: String, type_name: String, attribute: String, problem: String },
}

fn index_suffix(index: &Option<String>) -> String {
    index.as_ref().map(|i| format!(": index {i}")).unwrap_or_default()
}

/// Every rule a definition breaks, so that all of them can be fixed at once.
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
