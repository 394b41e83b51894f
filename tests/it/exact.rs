//! Typed data steps are exact or refused: every DynamoDB type survives a typed pass in place,
//! a conversion into another table loses an attribute only when the step says so, numbers a
//! field would round and panicking transforms stop the step naming the item, and checkpoints
//! refuse a resume by another pass.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue as A;
use dynamo_migrate::run::{Migrator, Status, TableNames};
use dynamo_migrate::{DataContext, DataError, DataStep, Error, Migration, Number, NumberSet, RebuildStep};
use serde::{Deserialize, Serialize};

use crate::support::{self, Item, content_hash, create_table, expected_hash};

/// An item with attributes no migration names, of every awkward DynamoDB type.
pub(crate) fn awkward(i: u64) -> Item {
    let s = |v: &str| A::S(v.to_owned());
    [
        ("id".to_owned(), s(&format!("item-{i:05}"))),
        ("name".to_owned(), s(&format!("Name {i}"))),
        ("weight".to_owned(), A::N(format!("{}.5", i % 1_000))),
        ("phone".to_owned(), s(&format!("+47 555 {i:05}"))),
        ("tags".to_owned(), A::Ss(vec!["b".into(), format!("t{}", i % 7)])),
        ("levels".to_owned(), A::Ns(vec!["0.1".into(), "0.10000000000000000000000000000000000001".into()])),
        ("blobs".to_owned(), A::Bs(vec![Blob::new(vec![0, 0, 1]), Blob::new(vec![0])])),
        ("big".to_owned(), A::N("12345678901234567890123456789012345678".into())),
        ("raw".to_owned(), A::B(Blob::new(vec![0, 159, 146, 150, 0]))),
        (
            "prefs".to_owned(),
            A::M([("sizes".to_owned(), A::Ns(vec!["1".into(), "12345678901234567890.123".into()]))].into()),
        ),
        ("history".to_owned(), A::L(vec![A::Null(true), A::Bool(false), s("")])),
    ]
    .into()
}

async fn filled(client: &Client, names: &TableNames, table: &str, n: u64) -> Vec<Item> {
    create_table(client, &names.physical(table), false).await;
    let items: Vec<Item> = (0..n).map(awkward).collect();
    DataContext::new(client.clone(), names.clone()).put_items(table, items.clone()).await.unwrap();
    items
}

/// The input type of a step that names only two attributes.
#[derive(Debug, Serialize, Deserialize)]
struct Named {
    id: String,
    name: String,
}

/// An input type that holds every attribute of `awkward` exactly (its weights, `n.5`, are exact
/// in an `f32`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Whole {
    pub id: String,
    pub name: String,
    pub weight: f32,
    pub phone: String,
    #[serde(with = "serde_dynamo::string_set")]
    pub tags: BTreeSet<String>,
    pub levels: NumberSet,
    #[serde(with = "serde_dynamo::binary_set")]
    pub blobs: Vec<serde_bytes::ByteBuf>,
    pub big: Number,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub prefs: HashMap<String, NumberSet>,
    pub history: Vec<Option<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_upper: Option<String>,
}

#[tokio::test]
async fn a_typed_identity_backfill_in_place_changes_nothing_of_any_type() {
    let (client, names) = (support::client().await, support::names("identity"));
    let items = filled(&client, &names, "things", 500).await;
    let before = content_hash(&client, &names.physical("things")).await;
    assert_eq!(before, expected_hash(&items));
    let ctx = DataContext::new(client.clone(), names.clone());

    let narrow = ctx.backfill("things", |n: Named| Some(n)).await.unwrap();
    assert_eq!((narrow.scanned, narrow.written, narrow.unchanged), (500, 0, 500));
    let whole = ctx.backfill("things", |w: Whole| Some(w)).await.unwrap();
    assert_eq!((whole.scanned, whole.written, whole.unchanged, whole.failed), (500, 0, 500, 0));
    assert_eq!(content_hash(&client, &names.physical("things")).await, before);
}

#[tokio::test]
async fn a_typed_change_in_place_writes_one_attribute_and_keeps_every_other_byte() {
    let (client, names) = (support::client().await, support::names("oneattr"));
    let items = filled(&client, &names, "things", 500).await;
    let ctx = DataContext::new(client.clone(), names.clone());
    // The type holds every set, map, list and binary attribute, so the condition of every write
    // compares them with what was read: none may fail spuriously.
    let report =
        ctx.backfill("things", |w: Whole| Some(Whole { name_upper: Some(w.name.to_uppercase()), ..w })).await.unwrap();
    assert_eq!((report.written, report.conflicts, report.failed), (500, 0, 0));
    let expected: Vec<Item> = items
        .into_iter()
        .map(|mut item| {
            let A::S(name) = &item["name"] else { unreachable!() };
            let upper = A::S(name.to_uppercase());
            item.insert("name_upper".into(), upper);
            item
        })
        .collect();
    assert_eq!(content_hash(&client, &names.physical("things")).await, expected_hash(&expected));
}

#[tokio::test]
async fn a_conversion_into_another_table_drops_an_attribute_only_when_the_step_says_so() {
    let (client, names) = (support::client().await, support::names("convert"));
    let items = filled(&client, &names, "things", 300).await;
    create_table(&client, &names.physical("copy"), false).await;
    let ctx = DataContext::new(client.clone(), names.clone());

    /// Holds everything but the phone.
    #[derive(Debug, Serialize, Deserialize)]
    struct NoPhone {
        id: String,
        name: String,
        weight: f64,
        #[serde(with = "serde_dynamo::string_set")]
        tags: BTreeSet<String>,
        levels: NumberSet,
        #[serde(with = "serde_dynamo::binary_set")]
        blobs: Vec<serde_bytes::ByteBuf>,
        big: Number,
        #[serde(with = "serde_bytes")]
        raw: Vec<u8>,
        prefs: HashMap<String, NumberSet>,
        history: Vec<Option<serde_json::Value>>,
    }
    let e = ctx.pass("things").into_table("copy").transform(|t: NoPhone| Some(t)).await.unwrap_err();
    let DataError::Item { key, error, .. } = &e else { panic!("expected an item error, got {e}") };
    assert!(key.starts_with("{id: \"item-"), "{key}");
    assert!(
        error.starts_with(
            "the step's input type does not hold attribute(s) phone (a string (S)), so the item written to"
        ),
        "{error}"
    );
    assert!(error.contains(".drop_unknown_attributes()"), "{error}");

    let report =
        ctx.pass("things").into_table("copy").drop_unknown_attributes().transform(|t: NoPhone| Some(t)).await.unwrap();
    assert_eq!(report.written, 300);
    let expected: Vec<Item> = items
        .into_iter()
        .map(|mut item| {
            item.remove("phone");
            item
        })
        .collect();
    assert_eq!(content_hash(&client, &names.physical("copy")).await, expected_hash(&expected));
}

#[tokio::test]
async fn numbers_sets_and_binary_a_type_would_change_stop_the_step_naming_the_attribute() {
    let (client, names) = (support::client().await, support::names("refuse"));
    let mut items = filled(&client, &names, "things", 50).await;
    let ctx = DataContext::new(client.clone(), names.clone());
    let item_error = |e: DataError| match e {
        DataError::Item { key, error, .. } => (key, error),
        other => panic!("expected an item error, got {other}"),
    };

    #[derive(Debug, Serialize, Deserialize)]
    struct F32 {
        id: String,
        weight: f32,
    }
    client
        .update_item()
        .table_name(names.physical("things"))
        .key("id", A::S("item-00007".into()))
        .update_expression("SET weight = :w")
        .expression_attribute_values(":w", A::N("16777217".into()))
        .send()
        .await
        .unwrap();
    let (key, error) = item_error(ctx.backfill("things", |f: F32| Some(f)).await.unwrap_err());
    assert_eq!(key, "{id: \"item-00007\"}");
    assert!(error.starts_with("attribute weight: the number 16777217 would be written back as 16777216"), "{error}");

    #[derive(Debug, Serialize, Deserialize)]
    struct SetAsList {
        id: String,
        tags: Vec<String>,
    }
    let (_, error) = item_error(ctx.backfill("things", |t: SetAsList| Some(t)).await.unwrap_err());
    assert!(error.starts_with("attribute tags: a string set (SS) would be written back as a list (L)"), "{error}");

    #[derive(Debug, Serialize, Deserialize)]
    struct RoundedSet {
        id: String,
        #[serde(with = "serde_dynamo::number_set")]
        levels: Vec<f64>,
    }
    let (_, error) = item_error(ctx.backfill("things", |t: RoundedSet| Some(t)).await.unwrap_err());
    assert!(error.starts_with("attribute levels: the number set would be written back without"), "{error}");

    #[derive(Debug, Serialize, Deserialize)]
    struct BigAsF64 {
        id: String,
        big: f64,
    }
    let (_, error) = item_error(ctx.backfill("things", |t: BigAsF64| Some(t)).await.unwrap_err());
    assert!(error.starts_with("attribute big: the number 12345678901234567890123456789012345678 would be"), "{error}");

    #[derive(Debug, Serialize, Deserialize)]
    struct BytesAsList {
        id: String,
        raw: Vec<u8>,
    }
    let (_, error) = item_error(ctx.backfill("things", |t: BytesAsList| Some(t)).await.unwrap_err());
    assert!(error.starts_with("attribute raw: binary (B) does not read as the step's input type"), "{error}");
    assert!(error.contains("serde_bytes::ByteBuf"), "{error}");

    // Identity transforms that stop: nothing was written but the test's own update above.
    items[7].insert("weight".to_owned(), A::N("16777217".into()));
    assert_eq!(content_hash(&client, &names.physical("things")).await, expected_hash(&items));
}

fn panicking_migration() -> Vec<Migration> {
    let step = DataStep::new("explode_on_42", |ctx| async move {
        Ok(ctx
            .backfill("things", |n: Named| {
                assert!(n.id != "item-00042", "the transform cannot handle {}", n.id);
                Some(n)
            })
            .await?)
    });
    vec![Migration::new(1, "explode", "a migration whose transform panics").data(step)]
}

#[tokio::test]
async fn a_panicking_transform_fails_the_step_with_its_message_and_key() {
    let (client, names) = (support::client().await, support::names("panic"));
    filled(&client, &names, "things", 200).await;
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test");
    let failure = migrator.run(&panicking_migration(), None).await.unwrap_err();
    let message = failure.error.to_string();
    assert!(!failure.error.is_interrupted(), "{message}");
    assert!(
        message.contains("item {id: \"item-00042\"}: the transform panicked: the transform cannot handle item-00042"),
        "{message}"
    );
    let record = &migrator.ledger().records().await.unwrap()[0];
    assert_eq!(record.status, Status::Failed);
    assert!(
        record.error.as_deref().is_some_and(|e| e.contains("the transform cannot handle item-00042")),
        "{record:?}"
    );
}

/// Two passes copying `things` slowly into `first` and `second`, in this order or reversed.
fn two_passes(reversed: bool) -> Vec<Migration> {
    let step = DataStep::new("two_copies", move |ctx| async move {
        let (a, b) = if reversed { ("second", "first") } else { ("first", "second") };
        let mut done = dynamo_migrate::DataReport::default();
        for target in [a, b] {
            done = done
                + ctx
                    .pass("things")
                    .into_table(target)
                    .page_size(100)
                    .rate(dynamo_migrate::RateLimit::ItemsPerSecond(2_000.0))
                    .copy()
                    .await?;
        }
        Ok(done)
    });
    vec![Migration::new(1, "two_copies", "two passes").data(step)]
}

#[tokio::test]
async fn a_resume_by_reordered_passes_is_refused_and_recover_can_restart_them() {
    let (client, names) = (support::client().await, support::names("reorder"));
    let items = filled(&client, &names, "things", 6_000).await;
    for table in ["first", "second"] {
        create_table(&client, &names.physical(table), false).await;
    }
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_cancel(cancelled);
    let run = tokio::spawn({
        let migrator = migrator.clone();
        async move { migrator.run(&two_passes(false), None).await }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    cancel.send(true).unwrap();
    assert!(run.await.unwrap().unwrap_err().error.is_interrupted());

    let migrator = Migrator::new(client.clone(), names.clone(), true, "test");
    let refused = migrator.run(&two_passes(true), None).await.unwrap_err();
    let message = refused.error.to_string();
    assert!(
        message.contains(
            "step 0, pass 0: the checkpoints of an earlier run belong to another pass: it was started as a pass over"
        ),
        "{message}"
    );
    assert!(message.contains("--restart-passes"), "{message}");
    assert_eq!(migrator.ledger().records().await.unwrap()[0].status, Status::Failed);

    // The operator restarts the passes on purpose: the reordered step then runs from the start.
    let ledger = migrator.ledger();
    support::rerun(&ledger, &two_passes(true), 1).await;
    assert!(ledger.delete_checkpoints(1).await.unwrap() > 0);
    let report = migrator.run(&two_passes(true), None).await.unwrap();
    assert_eq!(report.applied[0].steps[0].data.unwrap().resumed, 0);
    for table in ["first", "second"] {
        assert_eq!(content_hash(&client, &names.physical(table)).await, expected_hash(&items), "{table}");
    }
}

#[tokio::test]
async fn a_rebuild_conversion_refuses_to_lose_attributes_unless_told() {
    let (client, names) = (support::client().await, support::names("rebuildlose"));
    let table = dynamo_migrate::TableDef::new("things", dynamo_migrate::KeyAttr::s("id"));
    let migrations = |drop: bool| {
        let mut convert = RebuildStep::convert(table.clone().version(2), |n: Named| Some(n));
        if drop {
            convert = convert.drop_unknown_attributes();
        }
        vec![
            Migration::new(1, "create", "create").create_table(table.clone()),
            Migration::new(2, "rebuild", if drop { "rebuild, dropping" } else { "rebuild" }).rebuild_table(convert),
        ]
    };
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_streams(support::streams().await);
    migrator.run(&migrations(false)[..1], None).await.unwrap();
    DataContext::new(client.clone(), names.clone()).put_items("things", (0..20).map(awkward).collect()).await.unwrap();
    let failure = migrator.run(&migrations(false), None).await.unwrap_err();
    assert!(matches!(failure.error, Error::Step { .. }), "{}", failure.error);
    assert!(
        failure.error.to_string().contains("does not hold attribute(s) big (a number (N)), blobs"),
        "{}",
        failure.error
    );
}

#[tokio::test]
async fn a_step_that_is_not_idempotent_is_named_when_checked() {
    let (client, names) = (support::client().await, support::names("idempotent"));
    filled(&client, &names, "things", 30).await;
    let exclaim = DataStep::new("exclaim_names", |ctx| async move {
        Ok(ctx.backfill("things", |n: Named| Some(Named { name: format!("{}!", n.name), ..n })).await?)
    });
    let migrations = vec![Migration::new(1, "exclaim", "appends to every name").data(exclaim)];
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_idempotence_check(true);
    let failure = migrator.run(&migrations, None).await.unwrap_err();
    assert_eq!(
        failure.error.to_string(),
        "migration 1 (exclaim), data step exclaim_names: data step exclaim_names is not idempotent: run a second time over its own output it would write 30 item(s) and delete 0; a step in place must leave what it already changed alone (after a crash, the page in flight is done again)"
    );
}
