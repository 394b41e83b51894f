//! Why a typed read is refused: every attribute of the item that the step's input type cannot
//! hold exactly, each named by its path, with its DynamoDB type there, what would change, and a
//! field type that would hold it.
//!
//! This runs only for an item already refused, so it may read the item many times over. serde
//! stops at the first error, so after each refusal the value it names is replaced by a stand-in
//! that the type reads (`NULL`, a number, a string, an empty list or map, …, tried in turn) and the
//! item is read again, until the type reads it; that value, serialised back, is compared with the item for what
//! would change (a set written back as a list, a number rounded, an attribute lost). Stand-ins are
//! never reported, and never compared.
//!
//! serde_path_to_error names the value that failed, except through `#[serde(flatten)]`: serde
//! reads a flattened field from values it buffered, and the path is lost. An error without a path
//! is then pinned on a top-level attribute by taking each one away in turn (or standing in for
//! it): the one whose absence changes the error is the one the error is about. For "changes" to
//! mean that, every read is of a clone of one serde_dynamo value, whose maps are visited in the
//! same order each time; a map built anew would be visited in a new random order, and the first
//! of two errors could change for no reason.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::{Item, canonical_number, inexact_as_f64, same_value, to_item, type_name};

/// An item as serde_dynamo reads it: the form every read here clones.
type Value = serde_dynamo::AttributeValue;

/// The most reads one explanation makes. Each failing attribute takes a few (one per stand-in
/// tried), an error without a path a few per top-level attribute; an item that needs more is
/// reported with what was found by then.
const MAX_READS: usize = 256;

/// Why `item` does not read exactly as `T`, every failing attribute named. `marked` is the item
/// with the numbers that need text handed over as text, when it has any (see `read_exact`).
pub(super) fn explain<T: DeserializeOwned + Serialize>(item: &Item, marked: Option<&Item>) -> String {
    let plain = Diagnosis::of::<T>(item, item);
    let found = match marked {
        Some(marked) => plain.confirm(Diagnosis::of::<T>(item, marked)),
        None => plain,
    };
    found.to_string()
}

/// One step of a path into an item: a map key, or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where a value is in an item: a top-level attribute's name, then keys and indexes inside it.
/// Empty for the item as a whole.
type Path = Vec<Step>;

fn key(name: &str) -> Step {
    Step::Key(name.to_owned())
}

/// One attribute the type cannot hold exactly.
#[derive(Debug, Clone)]
struct Failure {
    path: Path,
    /// What is wrong there, and what would hold it.
    what: String,
}

/// Why the reads stopped before the type read the item.
#[derive(Debug, Clone)]
enum Stop {
    /// No stand-in at this path lets the type read on.
    At(Path),
    /// `MAX_READS` were spent.
    Reads,
}

/// The failing attributes of one item, read one way.
#[derive(Debug, Default)]
struct Diagnosis {
    failures: Vec<Failure>,
    /// Set when attributes the type did not reach were not checked.
    stopped: Option<Stop>,
}

/// A refused read: the path serde_path_to_error followed, and serde's message.
struct Refusal {
    segments: Vec<Segment>,
    message: String,
}

/// A value put where the type refused one; `None` takes the attribute away.
type StandIn = Option<Value>;

/// A place in the input where a stand-in is read instead of the item's value.
struct StoodIn {
    path: Path,
    stand_ins: Vec<StandIn>,
    /// The stand-in to try when the current one is refused too.
    next: usize,
}

impl StoodIn {
    /// The value standing in now; `None` when the attribute is taken away.
    fn current(&self) -> Option<&Value> {
        self.stand_ins.get(self.next.checked_sub(1)?)?.as_ref()
    }
}

impl Diagnosis {
    /// Reads `input` as `T` until it reads, standing in for each value refused, then compares
    /// the value serialised back with `original` (of which `input` is `original` itself, or
    /// `original` with numbers as text).
    fn of<T: DeserializeOwned + Serialize>(original: &Item, input: &Item) -> Diagnosis {
        let input: serde_dynamo::Item = input.clone().into();
        let mut probe = Probe { original, input: Value::M(input.into()), stood_in: Vec::new(), reads: Cell::new(0) };
        let mut found = Diagnosis::default();
        while probe.reads.get() < MAX_READS {
            let refusal = match probe.read::<T>(&probe.input) {
                Ok(value) => {
                    found.write_back(original, &value, &probe.stood_in);
                    return found.sorted();
                }
                Err(refusal) => refusal,
            };
            if let Err(stop) = probe.answer::<T>(&refusal, &mut found) {
                found.stopped = stop;
                return found.sorted();
            }
        }
        found.stopped = Some(Stop::Reads);
        found.sorted()
    }

    /// An attribute fails only if it fails both ways the item is read. Read plainly, a `Number`
    /// field rounds a long number that it reads exactly as text; read with numbers as text, an
    /// `f64` field refuses the text, where its plain failure (the number rounded) says more. So
    /// the failures of the read with text (`text`) are kept where the plain read (`self`) fails
    /// too, in the plain read's words.
    fn confirm(self, text: Diagnosis) -> Diagnosis {
        let related = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        let failures: Vec<Failure> = text
            .failures
            .iter()
            .filter_map(|failure| match self.failures.iter().find(|plain| plain.path == failure.path) {
                Some(plain) => Some(plain.clone()),
                None if self.stopped.is_some() || self.failures.iter().any(|p| related(&p.path, &failure.path)) => {
                    Some(failure.clone())
                }
                None => None,
            })
            .collect();
        // Nothing in common: no single reading holds the item, and the read with text at least
        // never blames a `Number` field for a number it holds.
        if failures.is_empty() { text } else { Diagnosis { failures, stopped: text.stopped } }
    }

    fn push(&mut self, path: Path, what: String) {
        if !self.failures.iter().any(|f| f.path == path) {
            self.failures.push(Failure { path, what });
        }
    }

    fn sorted(mut self) -> Diagnosis {
        self.failures.sort_by(|a, b| a.path.cmp(&b.path));
        self
    }

    /// Compares the value read, serialised back, with the item: every value inside every
    /// attribute that would change, except where a stand-in was read.
    fn write_back<T: Serialize>(&mut self, original: &Item, value: &T, stood_in: &[StoodIn]) {
        let seen = match to_item(value) {
            Ok(seen) => seen,
            Err(e) => {
                let what = format!("the step's input type does not serialise back into an item: {}", clean(&e));
                return self.push(Vec::new(), what);
            }
        };
        let skip: Vec<&Path> = stood_in.iter().map(|s| &s.path).collect();
        for (name, stored) in original {
            if let Some(back) = seen.get(name) {
                differences(&mut vec![key(name)], stored, back, &skip, &mut self.failures);
            }
        }
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            f.write_str("does not read exactly as the step's input type")?;
        }
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if !failure.path.is_empty() {
                write!(f, "attribute {}: ", Shown(&failure.path))?;
            }
            f.write_str(&failure.what)?;
        }
        match &self.stopped {
            Some(Stop::At(path)) => {
                write!(f, "; the read cannot get past {}, so the rest of the item was not checked", Shown(path))
            }
            Some(Stop::Reads) => write!(f, "; the rest of the item was not checked (after {MAX_READS} reads)"),
            None => Ok(()),
        }
    }
}

/// The reads of one item, with the stand-ins put in so far.
struct Probe<'a> {
    original: &'a Item,
    input: Value,
    stood_in: Vec<StoodIn>,
    reads: Cell<usize>,
}

impl Probe<'_> {
    fn read<T: DeserializeOwned>(&self, input: &Value) -> Result<T, Refusal> {
        self.reads.set(self.reads.get() + 1);
        let deserializer = serde_dynamo::Deserializer::from_attribute_value(input.clone());
        serde_path_to_error::deserialize(deserializer)
            .map_err(|e| Refusal { segments: e.path().iter().cloned().collect(), message: e.inner().to_string() })
    }

    /// Records what `refusal` says about the item, if anything, and puts a stand-in where the
    /// read failed; `Err` when the reads cannot get further.
    fn answer<T: DeserializeOwned>(&mut self, refusal: &Refusal, found: &mut Diagnosis) -> Result<(), Option<Stop>> {
        let (at, followed) = resolve(&self.input, &refusal.segments);
        // A missing field is at the end of the path, unless the path could not be followed
        // there (into what serde buffered): then it is said of the deepest value followed.
        let missing = missing_field(&refusal.message).filter(|_| followed);
        let path = match missing {
            Some(field) => [at.clone(), vec![key(field)]].concat(),
            None => at.clone(),
        };
        // A refusal of a stand-in is no news about the item: try the next stand-in, or, where a
        // stand-in map lacks a field, stand in for that field too.
        if let Some(owner) = self.stood_in.iter().filter(|s| path.starts_with(&s.path)).max_by_key(|s| s.path.len()) {
            let owner = owner.path.clone();
            if missing.is_some() && owner != path {
                return self.stand_in(path, stand_ins(&refusal.message, false), 0);
            }
            return self.next_stand_in(&owner);
        }
        if missing.is_some() {
            let what = "the item does not have it, and the step's input type requires it; make the field an Option, \
                        or give it #[serde(default)]";
            found.push(path.clone(), what.to_owned());
            return self.stand_in(path, stand_ins(&refusal.message, false), 0);
        }
        if at.is_empty() {
            // No path: a value read through #[serde(flatten)], or the item as a whole. It may be
            // about a stand-in for a flattened field, which does not fit it.
            let misfits = self.stood_in.iter().find(|s| s.current().is_some_and(|v| misfit(v, &refusal.message)));
            if let Some(stood_in) = misfits {
                let path = stood_in.path.clone();
                return self.next_stand_in(&path);
            }
            let Some((name, stand_ins, next)) = self.culprit::<T>(refusal) else {
                found.push(Vec::new(), format!("does not read as the step's input type: {}", clean(&refusal.message)));
                return Err((self.reads.get() >= MAX_READS).then_some(Stop::Reads));
            };
            let path = vec![key(&name)];
            if let Some(stored) = self.original.get(&name) {
                found.push(path.clone(), refused(stored, &refusal.message));
            }
            return self.stand_in(path, stand_ins, next);
        }
        // The deepest value of the item on the path: inside a number handed over as text, or
        // inside a set, that is the number or the set.
        let deepest =
            (1..=at.len()).rev().find_map(|n| value_at(self.original, &at[..n]).map(|v| (at[..n].to_vec(), v)));
        let Some((path, stored)) = deepest else {
            found.push(Vec::new(), format!("does not read as the step's input type: {}", clean(&refusal.message)));
            return Err(None);
        };
        found.push(path.clone(), refused(stored, &refusal.message));
        // Taking a value away is the stand-in only for a field the type refuses to have: for
        // one it requires, a type may fail without a path, and nothing would say it was that.
        let unknown = refusal.message.starts_with("unknown field `") && matches!(path.last(), Some(Step::Key(_)));
        self.stand_in(path, stand_ins(&refusal.message, unknown), 0)
    }

    /// Stands in for the value at `path`, starting with `stand_ins[next]`.
    fn stand_in(&mut self, path: Path, stand_ins: Vec<StandIn>, next: usize) -> Result<(), Option<Stop>> {
        self.stood_in.push(StoodIn { path: path.clone(), stand_ins, next });
        self.next_stand_in(&path)
    }

    /// Puts the next stand-in at `path`, whose current one was refused.
    fn next_stand_in(&mut self, path: &Path) -> Result<(), Option<Stop>> {
        // Stand-ins inside the one replaced go with it.
        self.stood_in.retain(|s| s.path == *path || !s.path.starts_with(path));
        let Some(stood_in) = self.stood_in.iter_mut().find(|s| s.path == *path) else { return Err(None) };
        while let Some(stand_in) = stood_in.stand_ins.get(stood_in.next) {
            stood_in.next += 1;
            if set(&mut self.input, path, stand_in.clone()) {
                return Ok(());
            }
        }
        Err(Some(Stop::At(path.clone())))
    }

    /// The top-level attribute an error without a path is about, the stand-ins for it, and the
    /// one that lets the read past it.
    ///
    /// Taking away the attribute the error is about changes the error; taking away another one
    /// leaves it, because a struct checks for missing fields only after reading every value it
    /// has. One exception: a struct checks its own fields before the fields it flattens, so taking
    /// away a field it requires changes the error to "missing field" whatever the error was. For
    /// those, stand-ins decide: one that fits the attribute's field leaves the error as it was if
    /// the error is about another attribute, and ends or changes it if the error is about this
    /// one; one the field refuses fails with a path (a field of the struct's own) or in serde's
    /// words for the stand-in (`misfit`), and says nothing.
    ///
    /// An attribute is named only with a stand-in that fits, so that a tag or a field read before
    /// the one the error is about is never blamed for it. The stand-in chosen is a value where one
    /// fits: an absent field that a type requires may fail later without a path, and nothing would
    /// tie that failure to the field.
    fn culprit<T: DeserializeOwned>(&self, refusal: &Refusal) -> Option<(String, Vec<StandIn>, usize)> {
        let Value::M(attributes) = &self.input else { return None };
        let mut names: Vec<&String> =
            attributes.keys().filter(|name| !self.stood_in.iter().any(|s| s.path == [key(name)])).collect();
        names.sort();
        for name in names {
            let path = vec![key(name)];
            let stand_ins = stand_ins(&refusal.message, true);
            let mut absent_ends_it = false;
            for (i, stand_in) in stand_ins.iter().enumerate() {
                if self.reads.get() >= MAX_READS {
                    return None;
                }
                let mut trial = self.input.clone();
                set(&mut trial, &path, stand_in.clone());
                let error = match self.read::<T>(&trial) {
                    Ok(_) => return Some((name.clone(), stand_ins, i)),
                    Err(error) => error,
                };
                let at_root = error.segments.is_empty();
                let changed = at_root && error.message != refusal.message;
                match stand_in {
                    None if missing_field(&error.message) == Some(name.as_str()) => {}
                    None if changed => absent_ends_it = true,
                    None => break,
                    Some(value) if misfit(value, &error.message) => {}
                    Some(_) if changed => return Some((name.clone(), stand_ins, i)),
                    // A value that fits leaves the error as it was: it is about another attribute.
                    Some(_) if at_root => {
                        absent_ends_it = false;
                        break;
                    }
                    Some(_) => {}
                }
            }
            if absent_ends_it {
                return Some((name.clone(), stand_ins, 0));
            }
        }
        None
    }
}

/// The stand-ins for a refused value, in the order tried: absent (where asked for), `NULL` (an
/// `Option`), a number, the enum variant the message expects, a string, a boolean, an empty list,
/// map and binary. Between them they satisfy most field types; a struct is given an empty map
/// and then a stand-in for each field it says it lacks.
fn stand_ins(message: &str, may_be_absent: bool) -> Vec<StandIn> {
    let mut all: Vec<StandIn> = Vec::with_capacity(9);
    if may_be_absent {
        all.push(None);
    }
    all.push(Some(Value::Null(true)));
    all.push(Some(Value::N("0".to_owned())));
    if let Some(variant) = expected_variant(message) {
        all.push(Some(Value::S(variant)));
    }
    all.extend(
        [
            Value::S("0".to_owned()),
            Value::Bool(false),
            Value::L(Vec::new()),
            Value::M(HashMap::new()),
            Value::B(Vec::new()),
        ]
        .map(Some),
    );
    all
}

/// Whether an error read through `#[serde(flatten)]` is about the stand-in itself, in serde's
/// words for a value of the wrong type, rather than about another attribute.
fn misfit(stand_in: &Value, message: &str) -> bool {
    let unexpected = match stand_in {
        Value::Null(_) => "unit value".to_owned(),
        Value::N(n) => format!("integer `{n}`"),
        Value::S(s) => {
            if message.starts_with(&format!("unknown variant `{s}`")) {
                return true;
            }
            format!("string {s:?}")
        }
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::L(_) => "sequence".to_owned(),
        Value::M(_) => "map".to_owned(),
        Value::B(_) => "byte array".to_owned(),
        _ => return false,
    };
    message.starts_with(&format!("invalid type: {unexpected}"))
        || message.starts_with(&format!("invalid value: {unexpected}"))
}

/// The field serde says a struct lacks (its message for a missing field).
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// The first variant serde says an enum expects, from its message for an unknown variant.
fn expected_variant(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown variant `")?;
    let expected = &rest[rest.find("`, expected ")? + "`, expected ".len()..];
    let start = expected.find('`')? + 1;
    let len = expected[start..].find('`')?;
    Some(expected[start..start + len].to_owned())
}

/// The path serde_path_to_error followed, as far as it leads into `input`, and whether it led
/// all the way. It stops at a set (the set is the value) and at anything it cannot follow.
fn resolve(input: &Value, segments: &[Segment]) -> (Path, bool) {
    let mut path = Vec::new();
    let mut at = input;
    for segment in segments {
        let next = match (segment, at) {
            (Segment::Map { key } | Segment::Enum { variant: key }, Value::M(map)) => {
                map.get_key_value(key).map(|(k, v)| (Step::Key(k.clone()), v))
            }
            (Segment::Seq { index }, Value::L(list)) => list.get(*index).map(|v| (Step::Index(*index), v)),
            _ => None,
        };
        let Some((step, value)) = next else { return (path, false) };
        path.push(step);
        at = value;
    }
    (path, true)
}

/// The value at `path` in an item.
fn value_at<'a>(item: &'a Item, path: &[Step]) -> Option<&'a AttributeValue> {
    let (Step::Key(first), rest) = path.split_first()? else { return None };
    rest.iter().try_fold(item.get(first)?, |value, step| match (value, step) {
        (AttributeValue::M(map), Step::Key(k)) => map.get(k),
        (AttributeValue::L(list), Step::Index(i)) => list.get(*i),
        _ => None,
    })
}

/// Puts `stand_in` at `path` in `input`; false where it cannot go (a list element cannot be
/// taken away).
fn set(input: &mut Value, path: &[Step], stand_in: StandIn) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut at = input;
    for step in parents {
        let next = match (at, step) {
            (Value::M(map), Step::Key(k)) => map.get_mut(k),
            (Value::L(list), Step::Index(i)) => list.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match (at, last, stand_in) {
        (Value::M(map), Step::Key(k), None) => map.remove(k).is_some(),
        (Value::M(map), Step::Key(k), Some(value)) => {
            map.insert(k.clone(), value);
            true
        }
        (Value::L(list), Step::Index(i), Some(value)) if *i < list.len() => {
            list[*i] = value;
            true
        }
        _ => false,
    }
}

/// What would change if `stored` (at `path`) were written back as `back`: each value inside it
/// that differs, except at the paths in `skip`.
fn differences(
    path: &mut Path,
    stored: &AttributeValue,
    back: &AttributeValue,
    skip: &[&Path],
    out: &mut Vec<Failure>,
) {
    use AttributeValue as A;
    if skip.contains(&&*path) {
        return;
    }
    let what = match (stored, back) {
        (A::L(a), A::L(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                path.push(Step::Index(i));
                differences(path, x, y, skip, out);
                path.pop();
            }
            return;
        }
        (A::L(a), A::L(b)) => format!("the list of {} element(s) would be written back with {}", a.len(), b.len()),
        (A::M(a), A::M(b)) => {
            for (k, x) in a {
                path.push(key(k));
                match b.get(k) {
                    Some(y) => differences(path, x, y, skip, out),
                    None if !skip.contains(&&*path) => out.push(Failure {
                        path: path.clone(),
                        what: format!(
                            "the step's input type does not hold it ({}), so it would be lost; add a field for it and {}",
                            type_name(x),
                            hint(x)
                        ),
                    }),
                    None => {}
                }
                path.pop();
            }
            return;
        }
        _ if same_value(stored, back) => return,
        (A::N(a), A::N(b)) => format!(
            "the number {a} would be written back as {b}: the step's input type cannot hold it exactly; {}",
            number_hint(a)
        ),
        (A::Ns(a), A::Ns(b)) => {
            let lost: Vec<&String> =
                a.iter().filter(|n| !b.iter().any(|m| canonical_number(m) == canonical_number(n))).collect();
            format!("the number set would be written back without {lost:?} (rounded to {b:?}); {}", hint(stored))
        }
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            format!("{} would be written back as {}; {}", type_name(a), type_name(b), hint(a))
        }
        (a, _) => {
            format!("{} would be written back changed: the step's input type does not keep its value", type_name(a))
        }
    };
    out.push(Failure { path: path.clone(), what });
}

/// The message for a value the type refused.
fn refused(stored: &AttributeValue, message: &str) -> String {
    let advice = if message.starts_with("unknown field `") { "add a field for it".to_owned() } else { hint(stored) };
    format!("{} does not read as the step's input type ({}); {advice}", type_name(stored), clean(message))
}

/// Which field type holds a value exactly, as advice.
fn hint(stored: &AttributeValue) -> String {
    use AttributeValue as A;
    let advice = match stored {
        A::N(n) => return number_hint(n),
        A::Ns(members) => return number_set_hint(members),
        A::S(_) => "hold it as a String",
        A::B(_) => "hold it as serde_bytes::ByteBuf, or with #[serde(with = \"serde_bytes\")] on a Vec<u8>",
        A::Bool(_) => "hold it as a bool",
        A::Null(_) => "hold it as an Option without skip_serializing_if, or as ()",
        A::Ss(_) => "hold it with #[serde(with = \"serde_dynamo::string_set\")] on a Vec<String> or set field",
        A::Bs(_) => "hold it with #[serde(with = \"serde_dynamo::binary_set\")] on a Vec of serde_bytes::ByteBuf",
        A::L(_) => "hold it as a Vec, or a tuple, of types that hold its elements",
        A::M(_) => "hold it as a struct, or a map, whose fields hold its attributes",
        _ => "give the field a type of the same kind",
    };
    advice.to_owned()
}

/// The Rust number type that reads a number exactly as serde_dynamo hands it over, if any: an
/// integer type when it parses as one, `f64` when an `f64` holds it.
fn number_type(text: &str) -> Option<&'static str> {
    if text.parse::<i64>().is_ok() {
        Some("i64")
    } else if text.parse::<u64>().is_ok() {
        Some("u64")
    } else if !inexact_as_f64(text) {
        Some("f64")
    } else {
        None
    }
}

fn number_hint(text: &str) -> String {
    match number_type(text) {
        Some("i64") => "hold it as i64 (or a smaller integer type it fits), or as dynamo_migrate::Number".to_owned(),
        Some(number) => format!("hold it as {number}, or as dynamo_migrate::Number"),
        None => "hold it as dynamo_migrate::Number, which holds any DynamoDB number (an f64 holds about 15 digits)"
            .to_owned(),
    }
}

fn number_set_hint(members: &[String]) -> String {
    let types: Vec<Option<&str>> = members.iter().map(|n| number_type(n)).collect();
    let element = if types.iter().all(|t| *t == Some("i64")) {
        Some("a Vec or set of i64")
    } else if types.iter().all(|t| matches!(t, Some("i64" | "u64"))) && !members.iter().any(|n| n.starts_with('-')) {
        Some("a Vec or set of u64")
    } else if types.iter().all(Option::is_some) {
        Some("a Vec<f64>")
    } else {
        None
    };
    match element {
        Some(element) => format!(
            "hold it as dynamo_migrate::NumberSet, or with #[serde(with = \"serde_dynamo::number_set\")] on {element}"
        ),
        None => "hold it as dynamo_migrate::NumberSet, which holds any DynamoDB numbers".to_owned(),
    }
}

/// Text with its control characters escaped, so that a name or a value from the item cannot
/// break a line or a terminal.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A path as a message shows it: `tags`, `address.zip`, `lines[2].sku`; a name that holds `.`,
/// `[`, `]`, quotes, a backslash, white space or control characters is quoted, with quotes,
/// backslashes and control characters escaped (`"a.b"`, `"x\u{0}y"`).
struct Shown<'a>(&'a [Step]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::Key(name) => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    write_name(f, name)?;
                }
            }
        }
        Ok(())
    }
}

fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let plain = !name.is_empty()
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '.' | '[' | ']' | '"' | '\\'));
    if plain {
        return f.write_str(name);
    }
    f.write_char('"')?;
    for c in name.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "{}", c.escape_unicode())?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}
