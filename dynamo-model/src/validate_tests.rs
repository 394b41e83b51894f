use super::*;
use crate::table::{GlobalIndex, KeyAttr, LocalIndex, Projection, TableDef};

fn base() -> TableDef {
    TableDef::new("orders", KeyAttr::s("customer")).sort_key(KeyAttr::n("order_nr"))
}

fn errors(def: &TableDef) -> Vec<ValidationError> {
    def.validate().err().map(|e| e.0).unwrap_or_default()
}

fn only_error(def: &TableDef) -> ValidationError {
    let errors = errors(def);
    assert_eq!(errors.len(), 1, "expected exactly one error, got {errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn a_plain_table_is_valid() {
    assert_eq!(base().validate(), Ok(()));
}

#[test]
fn table_names_follow_dynamodb_pattern_and_length() {
    for bad in ["ab", "has space", "ümlaut", &"x".repeat(256)] {
        let def = TableDef::new(bad, KeyAttr::s("id"));
        assert!(matches!(only_error(&def), ValidationError::TableName { ref name } if name == bad), "{bad}");
    }
    for good in ["abc", "a.b-c_D9", &"x".repeat(255)] {
        assert_eq!(TableDef::new(good, KeyAttr::s("id")).validate(), Ok(()), "{good}");
    }
}

#[test]
fn index_names_follow_the_pattern_and_are_unique() {
    let def = base().global_index(GlobalIndex::new("x", KeyAttr::s("a")));
    let error = only_error(&def);
    assert_eq!(
        error.to_string(),
        format!(
            "table orders: index name \"x\" is invalid: it must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'"
        )
    );

    let def = base()
        .global_index(GlobalIndex::new("by_a", KeyAttr::s("a")))
        .local_index(LocalIndex::new("by_a", KeyAttr::s("b")));
    assert_eq!(only_error(&def).to_string(), "table orders: index name by_a is used more than once");
}

#[test]
fn at_most_twenty_global_indexes() {
    let mut def = base();
    for i in 0..20 {
        def = def.global_index(GlobalIndex::new(format!("gsi_{i}"), KeyAttr::s("a")));
    }
    assert_eq!(def.validate(), Ok(()));
    def = def.global_index(GlobalIndex::new("gsi_20", KeyAttr::s("a")));
    assert!(matches!(only_error(&def), ValidationError::TooManyGlobalIndexes { count: 21, .. }));
}

#[test]
fn at_most_five_local_indexes() {
    let mut def = base();
    for i in 0..5 {
        def = def.local_index(LocalIndex::new(format!("lsi_{i}"), KeyAttr::s("a")));
    }
    assert_eq!(def.validate(), Ok(()));
    def = def.local_index(LocalIndex::new("lsi_5", KeyAttr::s("a")));
    assert!(matches!(only_error(&def), ValidationError::TooManyLocalIndexes { count: 6, .. }));
}

#[test]
fn a_local_index_needs_a_table_sort_key() {
    let def =
        TableDef::new("orders", KeyAttr::s("customer")).local_index(LocalIndex::new("by_date", KeyAttr::s("date")));
    assert_eq!(
        only_error(&def).to_string(),
        "table orders: local index by_date needs the table to have a sort key (an LSI shares the table's partition key and adds its own sort key)"
    );
}

#[test]
fn a_local_index_sort_key_is_not_the_partition_key() {
    let def = base().local_index(LocalIndex::new("by_customer", KeyAttr::s("customer")));
    assert!(matches!(only_error(&def), ValidationError::SameKeyTwice { index: Some(ref i), .. } if i == "by_customer"));
}

#[test]
fn one_type_per_attribute() {
    let def = base().global_index(GlobalIndex::new("by_order", KeyAttr::s("order_nr")));
    assert_eq!(
        only_error(&def).to_string(),
        "table orders: key attribute order_nr is declared as N and as S; an attribute has one type"
    );
}

#[test]
fn partition_and_sort_key_differ() {
    let def = TableDef::new("orders", KeyAttr::s("id")).sort_key(KeyAttr::s("id"));
    assert_eq!(only_error(&def).to_string(), "table orders: partition key and sort key are both id");
    let def = base().global_index(GlobalIndex::new("by_x", KeyAttr::s("x")).sort_key(KeyAttr::s("x")));
    assert_eq!(only_error(&def).to_string(), "table orders: index by_x: partition key and sort key are both x");
}

#[test]
fn attribute_names_are_one_to_255_bytes() {
    let def = base().global_index(GlobalIndex::new("by_long", KeyAttr::s("y".repeat(256))));
    assert!(matches!(only_error(&def), ValidationError::AttributeName { .. }));
    let def = base().ttl("");
    assert!(matches!(only_error(&def), ValidationError::AttributeName { .. }));
}

#[test]
fn projections_are_non_empty_without_repeats_and_at_most_100_in_all() {
    let def = base().global_index(GlobalIndex::new("by_a", KeyAttr::s("a")).projection(Projection::Include(vec![])));
    assert_eq!(
        only_error(&def).to_string(),
        "table orders: index by_a: an INCLUDE projection needs at least one attribute"
    );

    let twice = Projection::Include(vec!["x".into(), "x".into()]);
    let def = base().local_index(LocalIndex::new("by_b", KeyAttr::s("b")).projection(twice));
    assert_eq!(only_error(&def).to_string(), "table orders: index by_b: attribute x is projected twice");

    // 60 + 40 is allowed, 60 + 41 is not: the limit is summed over indexes, counting repeats.
    let attrs = |n: usize| Projection::Include((0..n).map(|i| format!("attr_{i}")).collect());
    let def = base()
        .global_index(GlobalIndex::new("by_a", KeyAttr::s("a")).projection(attrs(60)))
        .local_index(LocalIndex::new("by_b", KeyAttr::s("b")).projection(attrs(40)));
    assert_eq!(def.validate(), Ok(()));
    let def = base()
        .global_index(GlobalIndex::new("by_a", KeyAttr::s("a")).projection(attrs(60)))
        .local_index(LocalIndex::new("by_b", KeyAttr::s("b")).projection(attrs(41)));
    assert!(matches!(only_error(&def), ValidationError::TooManyProjectedAttributes { count: 101, .. }));
}

#[test]
fn provisioned_capacity_is_positive_and_given_to_every_global_index() {
    let def = base().provisioned(0, 5);
    assert_eq!(only_error(&def).to_string(), "table orders: read and write capacity must be at least 1, got 0/5");

    let def = base().provisioned(5, 5).global_index(GlobalIndex::new("by_a", KeyAttr::s("a")));
    assert_eq!(
        only_error(&def).to_string(),
        "table orders: global index by_a needs a throughput because the table is provisioned"
    );
    let def = base().provisioned(5, 5).global_index(GlobalIndex::new("by_a", KeyAttr::s("a")).throughput(1, -1));
    assert_eq!(
        only_error(&def).to_string(),
        "table orders: index by_a: read and write capacity must be at least 1, got 1/-1"
    );

    let def = base().global_index(GlobalIndex::new("by_a", KeyAttr::s("a")).throughput(1, 1));
    assert!(matches!(only_error(&def), ValidationError::UnexpectedIndexThroughput { .. }));
}

#[test]
fn tags_follow_aws_limits() {
    let def = base().tag("aws:owner", "me");
    assert!(matches!(only_error(&def), ValidationError::Tag { ref key, .. } if key == "aws:owner"));
    let def = base().tag("team", "v".repeat(257));
    assert!(matches!(only_error(&def), ValidationError::Tag { .. }));
    let mut def = base();
    for i in 0..51 {
        def = def.tag(format!("k{i}"), "v");
    }
    assert!(matches!(only_error(&def), ValidationError::TooManyTags { count: 51, .. }));
}

#[test]
fn all_broken_rules_are_reported_together() {
    let def = TableDef::new("x", KeyAttr::s("id")).local_index(LocalIndex::new("y", KeyAttr::s("a"))).tag("aws:x", "");
    let messages: Vec<String> = errors(&def).iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
}
