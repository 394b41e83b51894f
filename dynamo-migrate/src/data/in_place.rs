//! Writing in place on a live table: only what changed, and only if what was read still holds.
//!
//! The application keeps writing while a pass runs, and the scan that fed the pass is eventually
//! consistent. So an in-place change is never a whole-item put: it is an `UpdateItem` that SETs
//! the attributes the function changed and REMOVEs those it dropped, or a `DeleteItem`, each on
//! the condition that the item still exists and every attribute the function saw (and every one
//! it changes) still has the value that was read. Attributes the function never saw, and writes
//! the application makes meanwhile, survive by construction: a write that lands between the read
//! and ours fails our condition, and we read the item again (the failed call returns it, strongly
//! consistent), transform it again and retry, a bounded number of times.
//!
//! A step may name a version attribute instead (one the application changes on every write): the
//! condition is then on it and the changed attributes, which is cheaper for wide items.
//!
//! "What the function saw" includes what it saw absent: a typed function's input type names the
//! attributes it could hold, and those the item lacked must still be absent.
//!
//! DynamoDB limits an expression to 4 KB: the attributes the function changes are always in the
//! condition; the other attributes it saw are added while the condition stays within that size.

use aws_sdk_dynamodb::types::AttributeValue;

use super::typed::same_value;
use super::{Change, Item, Mapped};

/// DynamoDB's limit on one expression's length, less room for the parts around it.
const MAX_EXPRESSION: usize = 3_800;

/// One conditional write of one item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write {
    pub key: Item,
    pub op: Op,
    /// The attributes the write is conditional on, with the value read (`None`: absent).
    pub expect: Vec<(String, Option<AttributeValue>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Update { set: Vec<(String, AttributeValue)>, remove: Vec<String> },
    Delete,
}

/// What to write, if anything, so that the item `read` becomes what the function made of it.
/// With a `version` attribute (one the application changes on every write), the condition is on
/// it and the changed attributes instead of on everything the function saw.
pub(crate) fn plan(
    read: &Item,
    keys: &[String],
    mapped: Mapped,
    version: Option<&str>,
) -> Result<Option<Write>, String> {
    let key: Item = keys.iter().filter_map(|k| Some((k.clone(), read.get(k)?.clone()))).collect();
    let base = mapped.seen.as_ref().unwrap_or(read);
    let seen_names = || -> Vec<String> {
        match version {
            Some(version) => vec![version.to_owned()],
            None => {
                base.keys().filter(|name| !keys.contains(name)).cloned().chain(mapped.absent.iter().cloned()).collect()
            }
        }
    };
    match mapped.change {
        Change::Keep => Ok(None),
        Change::Delete => Ok(Some(Write { key, op: Op::Delete, expect: expectations(read, Vec::new(), seen_names()) })),
        Change::Put(new) => {
            for name in keys {
                match new.get(name) {
                    None => {
                        return Err(format!(
                            "the transform dropped key attribute {name}; in place, the new item keeps the key it was read with"
                        ));
                    }
                    Some(value) if !read.get(name).is_some_and(|old| same_value(old, value)) => {
                        return Err(format!(
                            "the transform changed key attribute {name}; a key cannot change in place"
                        ));
                    }
                    Some(_) => {}
                }
            }
            // Every stored attribute the function saw and dropped is removed; one the type filled
            // in by default and dropped again was never stored.
            let mut remove: Vec<String> = base
                .keys()
                .filter(|name| !keys.contains(name) && !new.contains_key(*name) && read.contains_key(*name))
                .cloned()
                .collect();
            let mut set: Vec<(String, AttributeValue)> = new
                .into_iter()
                .filter(|(name, value)| {
                    !keys.contains(name) && !base.get(name).or(read.get(name)).is_some_and(|old| same_value(old, value))
                })
                .collect();
            set.sort_by(|a, b| a.0.cmp(&b.0));
            remove.sort();
            if set.is_empty() && remove.is_empty() {
                return Ok(None);
            }
            let changed: Vec<String> = set.iter().map(|(n, _)| n.clone()).chain(remove.iter().cloned()).collect();
            let expect = expectations(read, changed, seen_names());
            Ok(Some(Write { key, op: Op::Update { set, remove }, expect }))
        }
    }
}

/// The condition's attributes: those changed first (always), then the others the function saw.
fn expectations(read: &Item, changed: Vec<String>, seen: Vec<String>) -> Vec<(String, Option<AttributeValue>)> {
    let mut names = changed;
    for name in seen {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let value = read.get(&name).cloned();
            (name, value)
        })
        .collect()
}

/// The parts of an `UpdateItem` or `DeleteItem` request, with placeholders for every name and value.
#[derive(Debug, Default)]
pub(crate) struct Expressions {
    pub update: Option<String>,
    pub condition: String,
    pub names: Vec<(String, String)>,
    pub values: Vec<(String, AttributeValue)>,
}

impl Write {
    /// The expressions of this write. The key's partition attribute must exist, so that an item
    /// deleted meanwhile is not created again by an update.
    pub(crate) fn expressions(&self, partition_key: &str) -> Expressions {
        let mut e = Expressions::default();
        let name = |e: &mut Expressions, attribute: &str| {
            let placeholder = format!("#a{}", e.names.len());
            e.names.push((placeholder.clone(), attribute.to_owned()));
            placeholder
        };
        let value = |e: &mut Expressions, v: &AttributeValue| {
            let placeholder = format!(":v{}", e.values.len());
            e.values.push((placeholder.clone(), v.clone()));
            placeholder
        };
        if let Op::Update { set, remove } = &self.op {
            let mut parts = Vec::new();
            if !set.is_empty() {
                let sets: Vec<String> = set
                    .iter()
                    .map(|(n, v)| {
                        let n = name(&mut e, n);
                        let v = value(&mut e, v);
                        format!("{n} = {v}")
                    })
                    .collect();
                parts.push(format!("SET {}", sets.join(", ")));
            }
            if !remove.is_empty() {
                let removes: Vec<String> = remove.iter().map(|n| name(&mut e, n)).collect();
                parts.push(format!("REMOVE {}", removes.join(", ")));
            }
            e.update = Some(parts.join(" "));
        }
        let key = name(&mut e, partition_key);
        let mut condition = format!("attribute_exists({key})");
        let changed = match &self.op {
            Op::Update { set, remove } => set.len() + remove.len(),
            Op::Delete => 0,
        };
        for (i, (attribute, expected)) in self.expect.iter().enumerate() {
            let mut clause = String::new();
            let mark = (e.names.len(), e.values.len());
            let n = name(&mut e, attribute);
            match expected {
                Some(v) => {
                    let v = value(&mut e, v);
                    clause.push_str(&format!(" AND {n} = {v}"));
                }
                None => clause.push_str(&format!(" AND attribute_not_exists({n})")),
            }
            if i >= changed && condition.len() + clause.len() > MAX_EXPRESSION {
                e.names.truncate(mark.0);
                e.values.truncate(mark.1);
                break;
            }
            condition.push_str(&clause);
        }
        e.condition = condition;
        e
    }
}

#[cfg(test)]
mod tests;
