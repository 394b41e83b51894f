use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue as A;
use dynamo_model::{Number, NumberSet};
use serde::{Deserialize, Serialize};

use super::*;

fn item(pairs: &[(&str, A)]) -> Item {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn n(text: &str) -> A {
    A::N(text.to_owned())
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Exact {
    id: u64,
    #[serde(with = "serde_dynamo::string_set")]
    tags: BTreeSet<String>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    big: Number,
    prefs: HashMap<String, NumberSet>,
    ratio: f64,
}

fn every_type() -> Item {
    item(&[
        ("id", n("7")),
        ("tags", A::Ss(vec!["b".into(), "a".into()])),
        ("blob", A::B(Blob::new(vec![0, 1, 0, 255]))),
        ("big", n("12345678901234567890123456789012345678")),
        (
            "prefs",
            A::M(
                [("levels".to_owned(), A::Ns(vec!["0.1".into(), "0.10000000000000000000000000000000000001".into()]))]
                    .into(),
            ),
        ),
        ("ratio", n("0.25")),
    ])
}

#[test]
fn a_type_that_holds_every_attribute_reads_and_writes_back_exactly() {
    let stored = every_type();
    let read = read_exact::<Exact>(&stored).unwrap();
    assert!(read.not_held.is_empty());
    assert_eq!(read.value.big.as_str(), "12345678901234567890123456789012345678");
    for (name, value) in &stored {
        assert!(same_value(value, &read.seen[name]), "{name}: {value:?} vs {:?}", read.seen[name]);
    }
    // And what the transform returns is written as DynamoDB numbers and sets, not marker maps.
    let written = to_item(&read.value).unwrap();
    assert!(matches!(&written["big"], A::N(text) if text == "12345678901234567890123456789012345678"));
    let A::M(prefs) = &written["prefs"] else { panic!("prefs is a map: {written:?}") };
    assert!(matches!(&prefs["levels"], A::Ns(set) if set.len() == 2), "{prefs:?}");
}

#[test]
fn a_set_read_as_a_list_is_refused_naming_the_attribute_and_the_codec() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Lists {
        id: u64,
        tags: Vec<String>,
    }
    let stored = item(&[("id", n("1")), ("tags", A::Ss(vec!["a".into()]))]);
    let error = read_exact::<Lists>(&stored).unwrap_err();
    assert!(error.starts_with("attribute tags: a string set (SS) would be written back as a list (L)"), "{error}");
    assert!(error.contains("serde_dynamo::string_set"), "{error}");
}

#[test]
fn numbers_a_field_would_round_are_refused() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Floats {
        id: u64,
        weight: f32,
        price: f64,
    }
    let f32_rounds = item(&[("id", n("1")), ("weight", n("16777217")), ("price", n("1.5"))]);
    let error = read_exact::<Floats>(&f32_rounds).unwrap_err();
    assert!(error.starts_with("attribute weight: the number 16777217 would be written back as 16777216"), "{error}");

    let f64_rounds = item(&[("id", n("1")), ("weight", n("1.5")), ("price", n("0.12345678901234567890123"))]);
    let error = read_exact::<Floats>(&f64_rounds).unwrap_err();
    assert!(
        error.starts_with("attribute price: the number 0.12345678901234567890123 would be written back"),
        "{error}"
    );
    assert!(error.contains("Number"), "{error}");

    let exact = item(&[("id", n("1")), ("weight", n("0.5")), ("price", n("19.99"))]);
    assert!(read_exact::<Floats>(&exact).is_ok());
}

#[test]
fn numbers_in_sets_that_would_round_are_refused() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Sets {
        #[serde(with = "serde_dynamo::number_set")]
        levels: Vec<f64>,
    }
    let stored = item(&[("levels", A::Ns(vec!["0.1".into(), "0.10000000000000000000000000000000000001".into()]))]);
    let error = read_exact::<Sets>(&stored).unwrap_err();
    assert!(error.starts_with("attribute levels: the number set would be written back without"), "{error}");
}

#[test]
fn attributes_the_type_lacks_are_reported_as_not_held_and_nested_ones_are_refused() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Narrow {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nickname: Option<String>,
        address: Address,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Address {
        city: String,
    }
    let stored = item(&[
        ("id", n("1")),
        ("phone", A::S("555".into())),
        ("blob", A::B(Blob::new(vec![0]))),
        ("address", A::M([("city".to_owned(), A::S("Oslo".into()))].into())),
    ]);
    let read = read_exact::<Narrow>(&stored).unwrap();
    assert_eq!(read.not_held, ["blob", "phone"]);

    let nested = item(&[
        ("id", n("1")),
        ("address", A::M([("city".to_owned(), A::S("Oslo".into())), ("zip".to_owned(), A::S("0150".into()))].into())),
    ]);
    let error = read_exact::<Narrow>(&nested).unwrap_err();
    assert!(
        error.starts_with("attribute address.zip: the step's input type does not hold it (a string (S))"),
        "{error}"
    );
}

#[test]
fn values_compare_as_dynamodb_compares_them() {
    assert!(same_value(&n("1.50"), &n("15E-1")));
    assert!(!same_value(&n("1.5"), &n("1.05")));
    assert!(same_value(&A::Ss(vec!["a".into(), "b".into()]), &A::Ss(vec!["b".into(), "a".into()])));
    assert!(!same_value(&A::Ss(vec!["a".into()]), &A::L(vec![A::S("a".into())])));
    assert!(!same_value(&A::L(vec![n("1"), n("2")]), &A::L(vec![n("2"), n("1")])), "lists keep their order");
}

#[test]
fn only_numbers_an_f64_would_round_are_handed_over_as_text() {
    assert!(!inexact_as_f64("19.99"));
    assert!(!inexact_as_f64("42"));
    assert!(!inexact_as_f64("-0.000123456789012345"));
    assert!(!inexact_as_f64("123456789012345"));
    assert!(inexact_as_f64("1234567890123456789"));
    assert!(inexact_as_f64("0.1234567890123456789"));
    assert!(inexact_as_f64("12345678901234567890123456789012345678"));
    assert!(!inexact_as_f64("1E-130"), "its shortest f64 form is the same number");
    assert!(inexact_as_f64("9.9999999999999999999999999999999999999E+125"));
}

#[test]
fn a_struct_names_the_attributes_it_can_hold() {
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Customer {
        id: u64,
        #[serde(rename = "eMail")]
        email: Option<String>,
    }
    assert_eq!(field_names::<Customer>(), Some(&["id", "eMail"][..]));
    assert_eq!(field_names::<HashMap<String, String>>(), None);
}

const STRING_SET_HINT: &str =
    "hold it with #[serde(with = \"serde_dynamo::string_set\")] on a Vec<String> or set field";
const NUMBER_38: &str = "12345678901234567890123456789012345678";

fn map(pairs: &[(&str, A)]) -> A {
    A::M(item(pairs))
}

fn s(text: &str) -> A {
    A::S(text.to_owned())
}

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    total: Number,
    lines: Vec<Line>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    sku: String,
    tags: Vec<String>,
}

#[test]
fn the_set_deep_in_a_list_is_named_not_the_number_field_that_holds_its_number() {
    let stored = item(&[
        ("id", n("1")),
        ("total", n(NUMBER_38)),
        (
            "lines",
            A::L(vec![
                map(&[("sku", s("a")), ("tags", A::L(vec![s("x")]))]),
                map(&[("sku", s("b")), ("tags", A::Ss(vec!["x".into(), "y".into()]))]),
            ]),
        ),
    ]);
    let error = read_exact::<Order>(&stored).unwrap_err();
    assert_eq!(
        error,
        format!("attribute lines[1].tags: a string set (SS) would be written back as a list (L); {STRING_SET_HINT}")
    );

    // Without the set, the same type reads the item, the long number exactly.
    let mut fixed = stored.clone();
    let A::L(lines) = fixed.get_mut("lines").unwrap() else { unreachable!() };
    lines[1] = map(&[("sku", s("b")), ("tags", A::L(vec![s("x")]))]);
    assert_eq!(read_exact::<Order>(&fixed).unwrap().value.total.as_str(), NUMBER_38);
}

#[test]
fn an_f64_that_rounds_is_named_beside_a_number_field_that_does_not() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Priced {
        total: Number,
        price: f64,
    }
    let stored = item(&[("total", n(NUMBER_38)), ("price", n("0.12345678901234567890123"))]);
    let error = read_exact::<Priced>(&stored).unwrap_err();
    assert_eq!(
        error,
        "attribute price: the number 0.12345678901234567890123 would be written back as 0.12345678901234568: the \
         step's input type cannot hold it exactly; hold it as dynamo_migrate::Number, which holds any DynamoDB \
         number (an f64 holds about 15 digits)"
    );
}

#[test]
fn an_integer_field_and_a_number_field_read_long_numbers_from_one_item() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Counted {
        count: u64,
        total: Number,
    }
    // 12345678901234567890 needs more digits than an f64 holds, but is a u64.
    let stored = item(&[("count", n("12345678901234567890")), ("total", n(NUMBER_38))]);
    let read = read_exact::<Counted>(&stored).unwrap();
    assert_eq!(read.value.count, 12_345_678_901_234_567_890);
    assert_eq!(read.value.total.as_str(), NUMBER_38);
}

#[test]
fn a_rounded_number_is_told_which_type_holds_it_never_to_use_f64() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Floats {
        single: f32,
        double: f64,
    }
    let hint_for = |single: &str, double: &str| {
        let error = read_exact::<Floats>(&item(&[("single", n(single)), ("double", n(double))])).unwrap_err();
        error.split_once("exactly; ").map(|(_, hint)| hint.to_owned()).unwrap_or(error)
    };
    // 2^53 + 1: an f64 rounds it, an i64 holds it.
    assert_eq!(
        hint_for("0.5", "9007199254740993"),
        "hold it as i64 (or a smaller integer type it fits), or as dynamo_migrate::Number"
    );
    assert_eq!(hint_for("0.5", "18446744073709551615"), "hold it as u64, or as dynamo_migrate::Number");
    let beyond = hint_for("0.5", "123456789012345678901234567890");
    assert_eq!(
        beyond,
        "hold it as dynamo_migrate::Number, which holds any DynamoDB number (an f64 holds about 15 digits)"
    );
    // An f32 that rounds is told what holds the number: an integer type, or f64.
    assert_eq!(
        hint_for("16777217", "0.5"),
        "hold it as i64 (or a smaller integer type it fits), or as dynamo_migrate::Number"
    );
    assert_eq!(hint_for("0.123456789", "0.5"), "hold it as f64, or as dynamo_migrate::Number");
}

#[derive(Debug, Serialize, Deserialize)]
struct Audited {
    id: u64,
    #[serde(flatten)]
    audit: Audit,
}

#[derive(Debug, Serialize, Deserialize)]
struct Audit {
    by: String,
    version: u32,
    #[serde(default)]
    labels: Vec<String>,
}

#[test]
fn a_flattened_struct_names_the_attribute_it_cannot_read() {
    let error = read_exact::<Audited>(&item(&[("id", n("1")), ("by", n("5")), ("version", n("2"))])).unwrap_err();
    assert_eq!(
        error,
        "attribute by: a number (N) does not read as the step's input type (invalid type: integer `5`, expected a \
         string); hold it as i64 (or a smaller integer type it fits), or as dynamo_migrate::Number"
    );

    // Two flattened fields and one of the struct's own, whichever serde meets first.
    let stored = item(&[("id", s("one")), ("by", n("5")), ("version", s("two"))]);
    let error = read_exact::<Audited>(&stored).unwrap_err();
    let named: Vec<&str> = error.split("; ").filter_map(|part| part.strip_prefix("attribute ")).collect();
    assert_eq!(
        named,
        [
            "by: a number (N) does not read as the step's input type (invalid type: integer `5`, expected a string)",
            "id: a string (S) does not read as the step's input type (Expected num)",
            "version: a string (S) does not read as the step's input type (invalid type: string \"two\", expected u32)",
        ],
        "{error}"
    );

    // A flattened field the item lacks, and a set a flattened Vec would write back as a list.
    let stored = item(&[("id", n("1")), ("version", n("2")), ("labels", A::Ss(vec!["x".into()]))]);
    let error = read_exact::<Audited>(&stored).unwrap_err();
    assert_eq!(
        error,
        format!(
            "attribute by: the item does not have it, and the step's input type requires it; make the field an \
             Option, or give it #[serde(default)]; attribute labels: a string set (SS) would be written back as a \
             list (L); {STRING_SET_HINT}"
        )
    );

    // A flattened map that holds what the struct does not name.
    #[derive(Debug, Serialize, Deserialize)]
    struct Open {
        id: u64,
        #[serde(flatten)]
        rest: HashMap<String, String>,
    }
    let stored = item(&[("id", n("1")), ("note", s("x")), ("size", n("3")), ("zone", s("z"))]);
    let error = read_exact::<Open>(&stored).unwrap_err();
    assert!(error.starts_with("attribute size: a number (N) does not read as the step's input type"), "{error}");
    assert!(!error.contains("; attribute"), "only size fails: {error}");

    // A flattened Number holds its long number; the flattened Vec is what fails.
    #[derive(Debug, Serialize, Deserialize)]
    struct Totals {
        id: u64,
        #[serde(flatten)]
        money: Money,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Money {
        total: Number,
        parts: Vec<String>,
    }
    let stored = item(&[("id", n("1")), ("total", n(NUMBER_38)), ("parts", A::Ss(vec!["a".into()]))]);
    let error = read_exact::<Totals>(&stored).unwrap_err();
    assert_eq!(
        error,
        format!("attribute parts: a string set (SS) would be written back as a list (L); {STRING_SET_HINT}")
    );
}

#[test]
fn an_enum_read_from_buffered_values_blames_the_field_not_the_tag() {
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(tag = "kind")]
    enum Event {
        Click { x: u32 },
        Key { code: String },
    }
    let error = read_exact::<Event>(&item(&[("kind", s("Click")), ("x", s("ten"))])).unwrap_err();
    assert_eq!(
        error,
        "attribute x: a string (S) does not read as the step's input type (invalid type: string \"ten\", expected \
         u32); hold it as a String"
    );
    let error = read_exact::<Event>(&item(&[("kind", s("Scroll")), ("x", n("1"))])).unwrap_err();
    assert!(
        error.starts_with(
            "attribute kind: a string (S) does not read as the step's input type (unknown variant `Scroll`"
        ),
        "{error}"
    );

    // An untagged enum says only that no variant matched: no attribute is blamed for it.
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Shape {
        Circle { r: u32 },
        Square { side: u32 },
    }
    let error = read_exact::<Shape>(&item(&[("r", s("big"))])).unwrap_err();
    assert_eq!(error, "does not read as the step's input type: data did not match any variant of untagged enum Shape");
}

#[test]
fn awkward_names_are_quoted_and_their_control_characters_escaped() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Awkward {
        #[serde(rename = "a.b")]
        dotted: String,
        #[serde(rename = "x[0]")]
        bracketed: Vec<String>,
        #[serde(rename = "x\u{0}y")]
        nul: String,
        #[serde(rename = "say \"hi\"")]
        quoted: String,
        meta: HashMap<String, u32>,
    }
    let stored = item(&[
        ("a.b", n("1")),
        ("x[0]", A::Ss(vec!["s".into()])),
        ("x\u{0}y", A::Bool(true)),
        ("say \"hi\"", n("3")),
        ("meta", map(&[("k.1", s("one")), ("plain", n("2"))])),
    ]);
    let error = read_exact::<Awkward>(&stored).unwrap_err();
    let paths: Vec<&str> = error
        .split("; ")
        .filter_map(|part| part.strip_prefix("attribute ")?.split_once(": ").map(|(path, _)| path))
        .collect();
    assert_eq!(paths, ["\"a.b\"", "meta.\"k.1\"", "\"say \\\"hi\\\"\"", "\"x\\u{0}y\"", "\"x[0]\""], "{error}");
    assert!(!error.contains('\u{0}'), "{error:?}");
}

#[test]
fn control_characters_in_a_message_are_escaped() {
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        id: u64,
    }
    let error = read_exact::<Strict>(&item(&[("id", n("1")), ("bad\u{7}\nname", s("x"))])).unwrap_err();
    assert!(error.starts_with("attribute \"bad\\u{7}\\u{a}name\": a string (S) does not read"), "{error}");
    assert!(!error.chars().any(char::is_control), "{error:?}");
    assert!(error.ends_with("; add a field for it"), "{error}");
}

#[test]
fn a_nested_value_is_named_with_its_own_type() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Customer {
        id: u64,
        address: Address,
        visits: Vec<Visit>,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Address {
        zip: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Visit {
        day: String,
    }
    let stored = item(&[
        ("id", n("1")),
        ("address", map(&[("zip", n("150"))])),
        ("visits", A::L(vec![map(&[("day", s("mon"))]), map(&[("day", A::Ss(vec!["tue".into()]))])])),
    ]);
    let error = read_exact::<Customer>(&stored).unwrap_err();
    assert_eq!(
        error,
        format!(
            "attribute address.zip: a number (N) does not read as the step's input type (Expected string); hold it \
             as i64 (or a smaller integer type it fits), or as dynamo_migrate::Number; attribute visits[1].day: a \
             string set (SS) does not read as the step's input type (Expected string); {STRING_SET_HINT}"
        )
    );
}

#[test]
fn every_failing_attribute_of_an_item_is_named() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Account {
        id: u64,
        name: String,
        tags: Vec<String>,
        rate: f64,
        status: Status,
        address: Address,
        since: String,
        #[serde(default)]
        note: Option<String>,
    }
    #[derive(Debug, Serialize, Deserialize)]
    enum Status {
        Active,
        Closed,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Address {
        city: String,
        zip: String,
    }
    let stored = item(&[
        ("id", s("acct-1")),
        ("name", n("7")),
        ("tags", A::Ss(vec!["a".into()])),
        ("rate", n("0.12345678901234567890123")),
        ("status", s("Actve")),
        ("address", map(&[("city", s("Oslo"))])),
        ("note", A::L(vec![])),
        ("phone", s("555")),
    ]);
    let error = read_exact::<Account>(&stored).unwrap_err();
    let named: Vec<&str> = error.split("; ").filter(|part| part.starts_with("attribute ")).collect();
    assert_eq!(
        named,
        [
            "attribute address.zip: the item does not have it, and the step's input type requires it",
            "attribute id: a string (S) does not read as the step's input type (Expected num)",
            "attribute name: a number (N) does not read as the step's input type (Expected string)",
            "attribute note: a list (L) does not read as the step's input type (Expected string)",
            "attribute rate: the number 0.12345678901234567890123 would be written back as 0.12345678901234568: the \
             step's input type cannot hold it exactly",
            "attribute since: the item does not have it, and the step's input type requires it",
            "attribute status: a string (S) does not read as the step's input type (unknown variant `Actve`, \
             expected `Active` or `Closed`)",
            "attribute tags: a string set (SS) would be written back as a list (L)",
        ],
        "{error}"
    );
    assert!(!error.contains("phone"), "an attribute the type does not name is no failure: {error}");
}

#[test]
fn a_value_no_stand_in_gets_past_is_named_and_the_rest_said_unchecked() {
    /// A field type that refuses every value.
    #[derive(Debug, Serialize)]
    struct Never;
    impl<'de> Deserialize<'de> for Never {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(serde::de::Error::custom("never reads"))
        }
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Stuck {
        never: Never,
    }
    let error = read_exact::<Stuck>(&item(&[("never", s("x"))])).unwrap_err();
    assert_eq!(
        error,
        "attribute never: a string (S) does not read as the step's input type (never reads); hold it as a String; \
         the read cannot get past never, so the rest of the item was not checked"
    );
}
