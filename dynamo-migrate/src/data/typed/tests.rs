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

const NUMBER_38: &str = "12345678901234567890123456789012345678";

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
